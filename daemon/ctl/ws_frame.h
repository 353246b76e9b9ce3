/* The client's half of RFC 6455 on a plain socket, for kilnctl and kiln-bench:
 * the upgrade request and its answer, masked frames out, frame headers in.
 *
 * libwebsockets 4.1.6's WebSocket client parses what it receives one byte at a
 * time (about 4 ns a byte: 0.4 s for a 100 MB mesh, 80 µs for a 16 KiB part), so
 * on ws:// both tools open a libwebsockets raw socket and frame it with this;
 * wss:// keeps libwebsockets' client. Pure functions: no I/O, no allocation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KILN_WS_OP_CONT 0x0
#define KILN_WS_OP_TEXT 0x1
#define KILN_WS_OP_BINARY 0x2
#define KILN_WS_OP_CLOSE 0x8
#define KILN_WS_OP_PING 0x9
#define KILN_WS_OP_PONG 0xA

/* The longest client frame header: 2 + 8 (length) + 4 (mask). */
#define KILN_WS_MAX_HEADER 14
/* The longest control frame payload. */
#define KILN_WS_MAX_CONTROL 125

/* From 16 random bytes, the request's Sec-WebSocket-Key and the
 * Sec-WebSocket-Accept the server must answer with (both NUL-terminated base64,
 * 24 and 28 characters). */
void kiln_ws_key(const uint8_t nonce[16], char key[32], char accept[32]);

/* Writes the upgrade request for `path` on `host_header` naming `subprotocol`.
 * Returns its length, or -1 when it does not fit in size. */
int kiln_ws_upgrade_request(char *buf, size_t size, const char *path, const char *host_header, const char *key,
                            const char *subprotocol);

/* Looks at the first `len` bytes received (the upgrade response and maybe frames
 * after it). Returns 0 while the header is incomplete, the header's length
 * (through the blank line) once it says 101 with the expected accept, or -1 with
 * a sentence in why (the status line, or what is missing). Does not modify buf. */
long kiln_ws_upgrade_response(const char *buf, size_t len, const char *accept, char *why, size_t why_size);

/* Writes one masked frame header for a payload of `len` bytes into dst (room for
 * KILN_WS_MAX_HEADER) and returns its length; `mask` is the masking key. */
size_t kiln_ws_frame_header(uint8_t *dst, uint8_t opcode, bool fin, uint64_t len, const uint8_t mask[4]);

/* dst[i] = src[i] ^ mask[(offset + i) & 3] for len bytes (dst may be src). */
void kiln_ws_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t mask[4], uint64_t offset);

/* The upgrade answer being read: kept only until it is complete. */
struct kiln_ws_hs {
        char *buf;
        size_t len;
};

/* Takes received bytes of the upgrade answer (at most 8 KiB in all). Returns how
 * many bytes of `in` it used once the answer is complete and accepts (frames may
 * follow in the same read), 0 while it is incomplete (all of `in` taken), or -1
 * with a sentence in why. Frees what it kept once it returns non-zero. */
long kiln_ws_hs_feed(struct kiln_ws_hs *h, const uint8_t *in, size_t len, const char *accept, char *why,
                     size_t why_size);
/* Frees what an unfinished upgrade answer kept. */
void kiln_ws_hs_free(struct kiln_ws_hs *h);

/* A server frame being read, and the message it belongs to. */
struct kiln_ws_rx {
        uint8_t h[10];             /* header bytes so far */
        unsigned h_len;
        bool in_payload;           /* the header is complete: `left` payload bytes follow */
        bool fin;
        uint8_t op;
        uint64_t left;
        bool in_message;           /* a data message's later fragments are due */
        bool binary;               /* of that message */
        uint8_t ctl[KILN_WS_MAX_CONTROL];
        size_t ctl_len;
};

/* Consumes header bytes of the next frame from in[0..len) while !rx->in_payload.
 * Returns the bytes used (possibly all of len, the header still incomplete), or -1
 * with why set: a masked server frame, reserved bits, an unknown opcode, a
 * fragmented or over-long control frame, a length with the top bit set. */
long kiln_ws_rx_header(struct kiln_ws_rx *rx, const uint8_t *in, size_t len, const char **why);

/* Takes `n` payload bytes (n <= rx->left); returns true when that ended the frame
 * (rx is then ready for the next header). */
bool kiln_ws_rx_payload(struct kiln_ws_rx *rx, uint64_t n);

/* What kiln_ws_feed hands on. Each returns >= 0, or < 0 to stop the feed. */
struct kiln_ws_rx_events {
        /* A data frame of `len` payload bytes begins, so that room can be made for
         * it; may be NULL. */
        int (*frame)(void *ctx, uint64_t len);
        /* Payload bytes of a data message; last: its final ones. */
        int (*data)(void *ctx, const uint8_t *p, size_t len, bool binary, bool last);
        /* A whole control frame: ping (to be answered), pong, close (code and reason). */
        int (*control)(void *ctx, uint8_t op, const uint8_t *p, size_t len);
};

/* Runs received bytes through the frame reader, calling ev for what they carry.
 * Returns 0, or -1 with *why saying how the server broke the protocol (the above,
 * or a fragment out of order), or with *why NULL when a callback stopped it. */
int kiln_ws_feed(struct kiln_ws_rx *rx, const uint8_t *in, size_t len, const struct kiln_ws_rx_events *ev,
                 void *ctx, const char **why);
