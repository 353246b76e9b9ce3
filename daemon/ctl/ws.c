/* kilnctl's WebSocket client on libwebsockets 4.1.6 (see ws.h). On ws:// the
 * connection is a libwebsockets raw socket framed by ws_frame.c (libwebsockets'
 * WebSocket client reads a 100 MB mesh one byte at a time, 0.4 s of CPU); on
 * wss:// it is libwebsockets' WebSocket client. KILNCTL_LWS_WS=1 forces the
 * latter for ws:// too. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "proto.h"
#include "ws.h"
#include "ws_frame.h"

enum ws_state {
        WS_CONNECTING,
        WS_OPEN,
        WS_CLOSED,
};

/* One queued outgoing message, with LWS_PRE bytes of headroom. A big one goes
 * out in fragments of OUT_FRAGMENT bytes, one per writeable callback: libwebsockets
 * would otherwise copy whatever the socket does not take at once. */
struct out_msg {
        struct out_msg *next;
        bool binary;
        size_t len;
        size_t sent;
        unsigned char buf[];
};

#define OUT_FRAGMENT (256u * 1024u)
/* What one read from the socket takes at most: libwebsockets reads into a buffer of
 * its context's pt_serv_buf_size, 4 KiB unless set, and a 100 MB result would
 * otherwise cost 25,000 reads and as many polls. */
#define RX_READ_BYTES (256u * 1024u)

struct ctl_ws {
        struct lws_context *ctx;
        struct lws *wsi;               /* set once connected, NULL once closed */
        enum ws_state state;
        bool closing;                  /* ctl_ws_free asked for a close */
        bool timer_fired;
        lws_sorted_usec_list_t sul;
        char err[320];
        char cert_refused[128];        /* why OpenSSL refused the server's certificate */

        struct out_msg *out_head, **out_tail;
        struct ctl_msg *in_head, **in_tail;

        /* the message being received */
        bool rx_active;
        bool rx_binary;
        bool rx_sunk;                  /* its bytes go to sink, not to rx */
        uint8_t *rx;
        size_t rx_len, rx_cap;
        ctl_ws_sink_fn sink;           /* where binary messages go, NULL: to rx */
        void (*sink_release)(void *sunk);
        void *sink_ctx;

        /* raw framing: the upgrade, the frame being read, what is owed */
        const char *subprotocol;
        struct kiln_ws_url url;
        bool upgrade_sent;
        char accept[32];
        struct kiln_ws_hs hs;          /* the upgrade response so far */
        struct kiln_ws_rx frx;
        bool pong_owed;
        uint8_t pong[KILN_WS_MAX_CONTROL];
        size_t pong_len;
        bool close_sent;
        uint64_t mask_state;
        uint8_t *wbuf;                 /* LWS_PRE + frames written at once */
};

void ctl_msg_free(struct ctl_msg *m)
{
        if (!m)
                return;
        if (m->sunk && m->release)
                m->release(m->sunk);
        free(m->data);
        free(m);
}

/* Records why the connection failed or closed; the first reason wins. */
__attribute__((format(printf, 2, 3))) static void set_error(struct ctl_ws *c, const char *fmt, ...)
{
        va_list ap;

        if (c->err[0])
                return;
        va_start(ap, fmt);
        vsnprintf(c->err, sizeof(c->err), fmt, ap);
        va_end(ap);
}

/* Makes room for `extra` more bytes (and a NUL) in the message being assembled. */
static int rx_reserve(struct ctl_ws *c, size_t extra)
{
        if (c->rx_len + extra + 1 <= c->rx_cap)
                return 0;
        if (extra > SIZE_MAX / 4 - c->rx_len) /* a frame's 64-bit length: the doubling would wrap */
                return -ENOMEM;
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        while (cap < c->rx_len + extra + 1)
                cap *= 2;
        uint8_t *p = realloc(c->rx, cap);
        if (!p)
                return -ENOMEM;
        c->rx = p;
        c->rx_cap = cap;
        return 0;
}

/* Appends a received chunk to the message being assembled, or hands it to the
 * sink; queues the message in the inbox once its last fragment is complete. */
static int rx_chunk(struct ctl_ws *c, const void *in, size_t len, bool binary, bool last)
{
        if (!c->rx_active) {
                c->rx_active = true;
                c->rx_binary = binary;
                c->rx_sunk = binary && c->sink;
                c->rx_len = 0;
        }
        void *sunk = NULL;
        if (c->rx_sunk) {
                if (c->sink(c->sink_ctx, in, len, last, &sunk) < 0)
                        return -ENOMEM;
        } else {
                if (rx_reserve(c, len) < 0)
                        return -ENOMEM;
                if (len)
                        memcpy(c->rx + c->rx_len, in, len);
        }
        c->rx_len += len;
        if (!last)
                return 0;

        struct ctl_msg *m = calloc(1, sizeof(*m));
        if (!m || (c->rx_sunk && !(m->data = calloc(1, 1)))) {
                free(m);
                if (sunk && c->sink_release)
                        c->sink_release(sunk);
                return -ENOMEM;
        }
        if (sunk) {
                m->sunk = sunk;
                m->release = c->sink_release;
        }
        m->binary = c->rx_binary;
        m->len = c->rx_len;
        c->rx_len = 0;
        c->rx_active = false;
        if (!m->data) {
                /* Hand over the buffer itself: large parts are not copied again. */
                c->rx[m->len] = '\0';
                m->data = c->rx;
                c->rx = NULL;
                c->rx_cap = 0;
        }
        *c->in_tail = m;
        c->in_tail = &m->next;
        return 0;
}

/* The size of the next fragment of o: at most OUT_FRAGMENT bytes. */
static size_t out_fragment(const struct out_msg *o)
{
        return o->len - o->sent < OUT_FRAGMENT ? o->len - o->sent : OUT_FRAGMENT;
}

/* The head message's next n bytes are written; a message written whole leaves. */
static void out_sent(struct ctl_ws *c, size_t n)
{
        struct out_msg *o = c->out_head;

        o->sent += n;
        if (o->sent < o->len)
                return;
        c->out_head = o->next;
        if (!c->out_head)
                c->out_tail = &c->out_head;
        free(o);
}

/* ---- raw framing (ws://) ---- */

static void next_mask(struct ctl_ws *c, uint8_t mask[4])
{
        uint64_t *x = &c->mask_state;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        memcpy(mask, x, 4);
}

/* Appends one masked frame to the write buffer at *used. */
static void put_frame(struct ctl_ws *c, size_t *used, uint8_t op, bool fin, const void *data, size_t len)
{
        uint8_t mask[4], *p = c->wbuf + LWS_PRE + *used;
        next_mask(c, mask);
        size_t h = kiln_ws_frame_header(p, op, fin, len, mask);
        kiln_ws_mask(p + h, data, len, mask, 0);
        *used += h + len;
}

static int raw_writeable(struct ctl_ws *c, struct lws *wsi)
{
        char *req = (char *)c->wbuf + LWS_PRE;
        size_t used = 0;

        if (!c->upgrade_sent) {
                uint8_t nonce[16];
                char key[32];
                if (RAND_bytes(nonce, sizeof(nonce)) != 1 || RAND_bytes((uint8_t *)&c->mask_state, 8) != 1) {
                        set_error(c, "%s", "no random bytes for the WebSocket key");
                        return -1;
                }
                c->mask_state |= 1;
                kiln_ws_key(nonce, key, c->accept);
                int n = kiln_ws_upgrade_request(req, OUT_FRAGMENT, c->url.path, c->url.host_header, key,
                                                c->subprotocol);
                c->upgrade_sent = true;
                if (n < 0 || lws_write(wsi, (uint8_t *)req, (size_t)n, LWS_WRITE_RAW) < n) {
                        set_error(c, "%s", "writing the upgrade request failed");
                        return -1;
                }
                return 0;
        }
        if (c->state != WS_OPEN)
                return 0;
        if (c->pong_owed) {
                c->pong_owed = false;
                put_frame(c, &used, KILN_WS_OP_PONG, true, c->pong, c->pong_len);
        }
        struct out_msg *o = c->out_head;
        if (o) {
                size_t n = out_fragment(o);
                bool last = o->sent + n == o->len;
                uint8_t op = o->sent ? KILN_WS_OP_CONT : o->binary ? KILN_WS_OP_BINARY : KILN_WS_OP_TEXT;
                put_frame(c, &used, op, last, o->buf + LWS_PRE + o->sent, n);
                out_sent(c, n);
        } else if (c->closing && !c->close_sent) {
                static const uint8_t normal[2] = { 1000 >> 8, 1000 & 0xff };
                put_frame(c, &used, KILN_WS_OP_CLOSE, true, normal, sizeof(normal));
                c->close_sent = true;
        }
        if (used && lws_write(wsi, c->wbuf + LWS_PRE, used, LWS_WRITE_RAW) < (int)used) {
                set_error(c, "%s", "writing to the connection failed");
                return -1;
        }
        if (c->out_head || c->pong_owed || (c->closing && !c->close_sent))
                lws_callback_on_writable(wsi);
        return 0;
}

/* The end of a control frame: ping is answered, close ends the connection. */
static int raw_control(void *ctx, uint8_t op, const uint8_t *p, size_t len)
{
        struct ctl_ws *c = ctx;

        if (op == KILN_WS_OP_PING) {
                memcpy(c->pong, p, len);
                c->pong_len = len;
                c->pong_owed = true;
                lws_callback_on_writable(c->wsi);
        } else if (op == KILN_WS_OP_CLOSE) {
                if (len >= 2)
                        set_error(c, "the server closed the connection (close code %u%s%.*s)",
                                  (unsigned)(p[0] << 8 | p[1]), len > 2 ? ": " : "", (int)(len - 2),
                                  (const char *)p + 2);
                set_error(c, "%s", "the server closed the connection");
                return -1;
        }
        return 0;
}

/* A data frame begins: room for its whole payload at once, no doubling copies
 * (none needed when binary messages go to a sink: text ones are small). */
static int raw_frame(void *ctx, uint64_t len)
{
        struct ctl_ws *c = ctx;

        if (c->sink)
                return 0;
        if (len > SIZE_MAX / 2 || rx_reserve(c, (size_t)len) < 0) {
                set_error(c, "%s", "out of memory receiving a message");
                return -1;
        }
        return 0;
}

static int raw_data(void *ctx, const uint8_t *p, size_t len, bool binary, bool last)
{
        struct ctl_ws *c = ctx;

        if (rx_chunk(c, p, len, binary, last) < 0) {
                set_error(c, "%s", "out of memory receiving a message");
                return -1;
        }
        return 0;
}

static const struct kiln_ws_rx_events raw_events = {
        .frame = raw_frame,
        .data = raw_data,
        .control = raw_control,
};

/* Takes received bytes: the upgrade response, then frames. Returns -1 to close. */
static int raw_rx(struct ctl_ws *c, const uint8_t *in, size_t len)
{
        const char *why;

        if (c->state == WS_CONNECTING) {
                char refused[160];
                long used = kiln_ws_hs_feed(&c->hs, in, len, c->accept, refused, sizeof(refused));
                if (used < 0) {
                        set_error(c, "%s", refused);
                        return -1;
                }
                if (!used)
                        return 0;
                c->state = WS_OPEN;
                if (c->out_head || c->closing)
                        lws_callback_on_writable(c->wsi);
                in += used;
                len -= (size_t)used;
        }
        if (kiln_ws_feed(&c->frx, in, len, &raw_events, c, &why) < 0) {
                if (why)
                        set_error(c, "%s", why);
                return -1;
        }
        return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct lws_context *ctx = lws_get_context(wsi);
        struct ctl_ws *c = ctx ? lws_context_user(ctx) : NULL;

        if (!c)
                return 0;

        switch (reason) {
        case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
                /* user: the X509_STORE_CTX, len: OpenSSL's verdict. The first refusal
                 * is OpenSSL's reason, which libwebsockets' error does not give. */
                if (!len && user && !c->cert_refused[0])
                        snprintf(c->cert_refused, sizeof(c->cert_refused), "%s",
                                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(user)));
                break;

        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
                if (c->cert_refused[0])
                        set_error(c, "the server's certificate is not trusted (%s); kilnctl checks it against the "
                                  "system's certificate authorities, or those in SSL_CERT_FILE", c->cert_refused);
                else if (c->url.tls && in && strstr((const char *)in, "SSL"))
                        /* OpenSSL's own words ("error:00000001:lib(0)::reason(1)") say
                         * nothing of the usual cause. */
                        set_error(c, "the TLS handshake failed (does the server speak TLS on this port? a "
                                  "ws:// URL is for one that does not): %s", (const char *)in);
                else
                        set_error(c, "%s", in && len ? (const char *)in : "connection failed");
                c->state = WS_CLOSED;
                c->wsi = NULL;
                break;

        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                c->state = WS_OPEN;
                c->wsi = wsi;
                if (c->out_head || c->closing)
                        lws_callback_on_writable(wsi);
                break;

        case LWS_CALLBACK_CLIENT_WRITEABLE: {
                struct out_msg *o = c->out_head;
                if (!o) {
                        if (c->closing) {
                                lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
                                return -1;
                        }
                        break;
                }
                /* The LWS_PRE bytes before a later fragment are payload already
                 * sent: libwebsockets may write its frame header there. */
                size_t n = out_fragment(o);
                bool last = o->sent + n == o->len;
                int flags = lws_write_ws_flags(o->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT, o->sent == 0, last);
                int w = lws_write(wsi, o->buf + LWS_PRE + o->sent, n, (enum lws_write_protocol)flags);
                if (w < 0 || (size_t)w < n) {
                        set_error(c, "%s", "writing to the connection failed");
                        return -1;
                }
                out_sent(c, n);
                if (c->out_head || c->closing)
                        lws_callback_on_writable(wsi);
                break;
        }

        case LWS_CALLBACK_CLIENT_RECEIVE:
                if (rx_chunk(c, in, len, lws_frame_is_binary(wsi),
                             lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) < 0) {
                        set_error(c, "%s", "out of memory receiving a message");
                        return -1;
                }
                break;

        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
                if (len >= 2) {
                        const unsigned char *b = in;
                        char detail[160];
                        snprintf(detail, sizeof(detail), "close code %u%s%.*s", (unsigned)(b[0] << 8 | b[1]),
                                 len > 2 ? ": " : "", (int)(len - 2 < 120 ? len - 2 : 120), (const char *)b + 2);
                        set_error(c, "the server closed the connection (%s)", detail);
                }
                break;

        case LWS_CALLBACK_CLIENT_CLOSED:
        case LWS_CALLBACK_RAW_CLOSE:
                set_error(c, "%s", "the server closed the connection");
                c->state = WS_CLOSED;
                c->wsi = NULL;
                break;

        case LWS_CALLBACK_RAW_CONNECTED:
                c->wsi = wsi;
                lws_callback_on_writable(wsi);
                break;

        case LWS_CALLBACK_RAW_WRITEABLE:
                return raw_writeable(c, wsi);

        case LWS_CALLBACK_RAW_RX:
                return raw_rx(c, in, len);

        default:
                break;
        }
        return 0;
}

static const struct lws_protocols protocols[] = {
        { .name = "kiln.v1", .callback = callback, .rx_buffer_size = 65536 },
        { .name = NULL },
};

static void on_timer(lws_sorted_usec_list_t *sul)
{
        struct ctl_ws *c = lws_container_of(sul, struct ctl_ws, sul);
        c->timer_fired = true;
        /* libwebsockets runs a timer that is due and then, in the same
         * lws_service, waits for its next event (20 s for a server that never
         * answers): end that wait. */
        lws_cancel_service(c->ctx);
}

/* Runs the service loop until `done` holds for c, the connection closes or
 * timeout_ms passes (< 0: no limit). Returns true when the timer fired first. */
static bool service_until(struct ctl_ws *c, bool (*done)(const struct ctl_ws *), int64_t timeout_ms)
{
        c->timer_fired = false;
        if (timeout_ms >= 0)
                lws_sul_schedule(c->ctx, 0, &c->sul, on_timer, (lws_usec_t)timeout_ms * LWS_US_PER_MS);
        while (!done(c) && c->state != WS_CLOSED && !c->timer_fired)
                if (lws_service(c->ctx, 0) < 0)
                        break;
        bool fired = c->timer_fired && !done(c);
        if (timeout_ms >= 0)
                lws_sul_cancel(&c->sul);
        return fired;
}

/* After libwebsockets failed to connect (its reasons are vague: "Unable to
 * connect"), finds the system's reason by resolving the host and trying a plain
 * TCP connection. Writes nothing when TCP works (the failure was then in the
 * handshake and libwebsockets' reason stands). */
static void diagnose(const char *host, int port, char *ret, size_t size)
{
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
        char service[16];
        int err = 0;

        snprintf(service, sizeof(service), "%d", port);
        int g = getaddrinfo(host, service, &hints, &res);
        if (g) {
                snprintf(ret, size, "cannot resolve %.64s: %s", host, g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
                return;
        }
        for (ai = res; ai; ai = ai->ai_next) {
                int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
                if (fd < 0) {
                        err = errno;
                        continue;
                }
                if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno == EINPROGRESS) {
                        struct pollfd p = { .fd = fd, .events = POLLOUT };
                        socklen_t l = sizeof(err);
                        if (poll(&p, 1, 2000) == 1)
                                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
                        else
                                err = ETIMEDOUT;
                } else {
                        err = errno;
                }
                close(fd);
                if (!err)
                        break;
        }
        freeaddrinfo(res);
        if (err)
                snprintf(ret, size, "%s", strerror(err));
}

static bool is_open(const struct ctl_ws *c)
{
        return c->state == WS_OPEN;
}

static bool has_message(const struct ctl_ws *c)
{
        return c->in_head != NULL;
}

static bool is_closed(const struct ctl_ws *c)
{
        return c->state == WS_CLOSED;
}

static bool out_empty(const struct ctl_ws *c)
{
        return c->out_head == NULL;
}

int ctl_ws_connect(const char *url, const char *subprotocol, int timeout_ms, struct ctl_ws **ret, char *err,
                   size_t err_size)
{
        struct kiln_ws_url u;

        err[0] = '\0';
        int ur = kiln_ws_url_parse(url, &u);
        if (ur < 0) {
                snprintf(err, err_size, "%s", ur == -ERANGE ? "port out of range (1 to 65535)" : "not a ws:// or wss:// URL");
                return -EINVAL;
        }

        struct ctl_ws *c = calloc(1, sizeof(*c));
        if (!c) {
                snprintf(err, err_size, "out of memory");
                return -ENOMEM;
        }
        c->out_tail = &c->out_head;
        c->in_tail = &c->in_head;
        c->state = WS_CONNECTING;
        bool raw = !u.tls && !getenv("KILNCTL_LWS_WS"); /* framed here (ws_frame.h), not by libwebsockets */
        c->url = u;
        c->subprotocol = subprotocol;
        /* a pong, then a fragment or a close, written at once (raw_writeable) */
        c->wbuf = raw ? malloc(LWS_PRE + OUT_FRAGMENT + 2 * KILN_WS_MAX_HEADER + KILN_WS_MAX_CONTROL) : NULL;
        if (raw && !c->wbuf) {
                snprintf(err, err_size, "out of memory");
                free(c);
                return -ENOMEM;
        }

        const char *dbg = getenv("KILNCTL_DEBUG");
        lws_set_log_level(dbg && *dbg ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO | LLL_CLIENT : 0, NULL);

        struct lws_context_creation_info info;
        memset(&info, 0, sizeof(info));
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = protocols;
        info.user = c;
        info.options = u.tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
        info.timeout_secs = (unsigned)(timeout_ms > 0 ? (timeout_ms + 999) / 1000 : 10);
        info.pt_serv_buf_size = RX_READ_BYTES;
        c->ctx = lws_create_context(&info);
        if (!c->ctx) {
                snprintf(err, err_size, "cannot create a libwebsockets context");
                free(c->wbuf);
                free(c);
                return -ENOMEM;
        }

        struct lws_client_connect_info ci;
        memset(&ci, 0, sizeof(ci));
        ci.context = c->ctx;
        ci.address = u.host;
        ci.port = u.port;
        ci.ssl_connection = u.tls ? LCCSCF_USE_SSL : 0;
        ci.path = u.path;
        ci.host = u.host_header;
        ci.origin = u.host_header;
        ci.protocol = subprotocol;
        ci.local_protocol_name = protocols[0].name;
        ci.ietf_version_or_minus_one = -1;
        if (raw)
                ci.method = "RAW"; /* a plain socket: the upgrade and frames are done here */

        if (!lws_client_connect_via_info(&ci) && c->state != WS_CLOSED) {
                c->state = WS_CLOSED;
                set_error(c, "%s", "the connection could not be started");
        }

        bool timed_out = c->state == WS_CONNECTING && service_until(c, is_open, timeout_ms);
        if (c->state != WS_OPEN) {
                int r = -ECONNREFUSED;
                if (timed_out) {
                        if (timeout_ms % 1000)
                                snprintf(err, err_size, "no connection within %d ms", timeout_ms);
                        else
                                snprintf(err, err_size, "no connection within %d s", timeout_ms / 1000);
                        r = -ETIMEDOUT;
                } else {
                        char why[200] = "";
                        diagnose(u.host, u.port, why, sizeof(why));
                        snprintf(err, err_size, "%s", why[0] ? why : c->err[0] ? c->err : "connection failed");
                }
                ctl_ws_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* Queues one message made of the pieces in iov. */
static int queue_msg(struct ctl_ws *c, bool binary, const struct iovec *iov, int n)
{
        size_t len = 0;

        if (c->state == WS_CLOSED)
                return -ENOTCONN;
        for (int i = 0; i < n; i++)
                len += iov[i].iov_len;
        struct out_msg *o = malloc(sizeof(*o) + LWS_PRE + len);
        if (!o)
                return -ENOMEM;
        o->next = NULL;
        o->binary = binary;
        o->len = len;
        o->sent = 0;
        size_t at = LWS_PRE;
        for (int i = 0; i < n; i++) {
                if (iov[i].iov_len)
                        memcpy(o->buf + at, iov[i].iov_base, iov[i].iov_len);
                at += iov[i].iov_len;
        }
        *c->out_tail = o;
        c->out_tail = &o->next;
        if (c->wsi)
                lws_callback_on_writable(c->wsi);
        return 0;
}

int ctl_ws_send_text(struct ctl_ws *c, const char *text, size_t len)
{
        struct iovec iov = { .iov_base = (void *)text, .iov_len = len };
        return queue_msg(c, false, &iov, 1);
}

int ctl_ws_send_binary(struct ctl_ws *c, const struct iovec *iov, int n)
{
        return queue_msg(c, true, iov, n);
}

int ctl_ws_drain(struct ctl_ws *c, int64_t timeout_ms)
{
        if (c->out_head && c->state != WS_CLOSED && service_until(c, out_empty, timeout_ms))
                return -ETIMEDOUT;
        return c->out_head ? -ECONNRESET : 0;
}

void ctl_ws_set_sink(struct ctl_ws *c, ctl_ws_sink_fn fn, void (*release)(void *sunk), void *ctx)
{
        c->sink = fn;
        c->sink_release = release;
        c->sink_ctx = ctx;
}

int ctl_ws_try_recv(struct ctl_ws *c, struct ctl_msg **ret)
{
        struct ctl_msg *m = c->in_head;
        if (!m)
                return -EAGAIN;
        c->in_head = m->next;
        if (!c->in_head)
                c->in_tail = &c->in_head;
        m->next = NULL;
        *ret = m;
        return 0;
}

int ctl_ws_recv(struct ctl_ws *c, int64_t timeout_ms, struct ctl_msg **ret)
{
        if (!c->in_head && c->state != WS_CLOSED && service_until(c, has_message, timeout_ms))
                return -ETIMEDOUT;
        return ctl_ws_try_recv(c, ret) == -EAGAIN ? -ECONNRESET : 0;
}

const char *ctl_ws_error(const struct ctl_ws *c)
{
        return c->state == WS_CLOSED ? (c->err[0] ? c->err : "the connection closed") : "";
}

void ctl_ws_free(struct ctl_ws *c)
{
        if (!c)
                return;
        if (c->ctx && c->wsi && c->state == WS_OPEN) {
                c->closing = true;
                lws_callback_on_writable(c->wsi);
                service_until(c, is_closed, 1000);
        }
        /* Still there (a server that never answered the upgrade, or the close): cut
         * at once. lws_context_destroy would wait 20 s for it to go. */
        if (c->ctx && c->wsi && c->state != WS_CLOSED)
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
        if (c->ctx)
                lws_context_destroy(c->ctx);
        while (c->in_head) {
                struct ctl_msg *m = c->in_head;
                c->in_head = m->next;
                ctl_msg_free(m);
        }
        while (c->out_head) {
                struct out_msg *o = c->out_head;
                c->out_head = o->next;
                free(o);
        }
        free(c->rx);
        kiln_ws_hs_free(&c->hs);
        free(c->wbuf);
        free(c);
}
