/* kilnctl's WebSocket client: one connection on a libwebsockets client context,
 * driven synchronously (no threads: every call runs the service loop until it has
 * what it waits for). On ws:// it is a raw socket framed by ws_frame.h, on wss://
 * libwebsockets' WebSocket client.
 *
 * Whole messages are delivered: fragments are accumulated until the final one, with
 * no size limit beyond memory (a 2048x2048 f32 part is 16 MiB), unless a sink takes
 * the binary ones as they arrive (ctl_ws_set_sink). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* One received message. `data` holds `len` bytes followed by a NUL (so a text
 * message is a C string). A binary message that went to a sink has no bytes in
 * `data` ("") and carries what the sink made of it in `sunk`. Owned by the caller;
 * free with ctl_msg_free (which releases `sunk` unless the caller took it, NULL). */
struct ctl_msg {
        struct ctl_msg *next;
        bool binary;
        size_t len;
        uint8_t *data;
        void *sunk;
        void (*release)(void *sunk);
};

void ctl_msg_free(struct ctl_msg *m);

struct ctl_ws;

/* Connects to `url` naming `subprotocol` (a string that outlives the connection), waiting at most timeout_ms for the
 * handshake. Returns >= 0 and a new connection in *ret, or -EINVAL (bad URL),
 * -ETIMEDOUT, -ECONNREFUSED (any failure to connect) or -ENOMEM, with a sentence
 * saying why in err (always written). */
int ctl_ws_connect(const char *url, const char *subprotocol, int timeout_ms, struct ctl_ws **ret, char *err,
                   size_t err_size);

/* Queues one text message; it is written while ctl_ws_recv or ctl_ws_free run the
 * service loop. Returns >= 0, -ENOMEM, or -ENOTCONN when the connection is closed. */
int ctl_ws_send_text(struct ctl_ws *c, const char *text, size_t len);

/* Queues one binary message made of the `n` pieces in iov (copied). Messages
 * larger than 256 KiB go out as several WebSocket fragments. Returns >= 0,
 * -ENOMEM, or -ENOTCONN when the connection is closed. */
int ctl_ws_send_binary(struct ctl_ws *c, const struct iovec *iov, int n);

/* Takes the bytes of a binary message as they arrive, in pieces; `last` marks its
 * final piece, with which the sink may hand back what it made of the message in
 * *ret_sunk (it then travels with the message, see struct ctl_msg). Returns >= 0,
 * or -ENOMEM to close the connection. */
typedef int (*ctl_ws_sink_fn)(void *ctx, const uint8_t *p, size_t len, bool last, void **ret_sunk);

/* Hands every binary message that begins from now on to `fn` instead of
 * assembling it in memory (fn NULL: whole messages again); `release` frees what
 * the sink handed back for a message nobody took. ctl_ws_recv still returns each
 * message in its place among the others. */
void ctl_ws_set_sink(struct ctl_ws *c, ctl_ws_sink_fn fn, void (*release)(void *sunk), void *ctx);

/* Runs the service loop until every queued message has been handed to the socket
 * (messages that arrive meanwhile are kept for ctl_ws_recv), waiting at most
 * timeout_ms (< 0: without limit). Returns >= 0, -ETIMEDOUT, or -ECONNRESET when
 * the connection closed first. */
int ctl_ws_drain(struct ctl_ws *c, int64_t timeout_ms);

/* The next whole message already received, without running the service loop.
 * Returns >= 0 and the message in *ret (caller frees), or -EAGAIN when none. */
int ctl_ws_try_recv(struct ctl_ws *c, struct ctl_msg **ret);

/* Returns the next whole message in *ret (caller frees), waiting at most
 * timeout_ms (< 0: without limit). Returns >= 0, -ETIMEDOUT, or -ECONNRESET when
 * the connection closed with nothing left to read (ctl_ws_error says how). */
int ctl_ws_recv(struct ctl_ws *c, int64_t timeout_ms, struct ctl_msg **ret);

/* Why the connection failed or closed; "" while it is open. Lives as long as c. */
const char *ctl_ws_error(const struct ctl_ws *c);

/* Sends a normal close (waiting briefly for it to go out) and frees everything.
 * Accepts NULL. */
void ctl_ws_free(struct ctl_ws *c);
