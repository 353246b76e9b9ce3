/* kiln-bench's WebSocket layer: receiving messages whole (text) or by their
 * header (binary parts), and writing them.
 *
 * For ws:// the connections are libwebsockets raw sockets and the WebSocket layer
 * (RFC 6455: the upgrade, masked client frames, fragments, ping, close) is done
 * here with ws_frame.h: libwebsockets' WebSocket client parses what it receives
 * one byte at a time, which for a job's 16 KiB part cost ~80 µs of client CPU per
 * job, more than the server spent on it, so kiln-bench measured itself. Here a part's payload is
 * skipped in bulk, and every pending submit of a connection goes out in one write.
 * For wss:// (TLS) libwebsockets' own WebSocket client is used, one message per
 * writeable callback (KILN_BENCH_LWS_WS=1 forces it for ws:// too). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load_internal.h"

#define MAX_TEXT (16u << 20)     /* longest text message accepted */
#define HDR_KEEP 4096u           /* bytes of a binary part kept to read its header */

/* Takes one received chunk. Text is assembled whole; of a binary part only the
 * first HDR_KEEP bytes are kept (the KLNB header), the payload is counted (its
 * size is checked) and dropped. Returns >= 0 or -ENOMEM / -EMSGSIZE. */
int load_rx_chunk(struct conn *c, const void *in, size_t len, bool binary, bool last)
{
        if (!c->rx_active) {
                c->rx_active = true;
                c->rx_binary = binary;
                c->rx_len = 0;
                c->rx_total = 0;
                c->rx_overflow = false;
        }
        c->rx_total += len;
        size_t keep = len;
        if (c->rx_binary) {
                keep = c->rx_len >= HDR_KEEP ? 0 : (len < HDR_KEEP - c->rx_len ? len : HDR_KEEP - c->rx_len);
        } else if (c->rx_len + len > MAX_TEXT) {
                return -EMSGSIZE;
        }
        /* Room for what is kept and a NUL, even when that is nothing (an empty text
         * message before any other). */
        if (c->rx_len + keep + 1 > c->rx_cap) {
                size_t cap = c->rx_cap ? c->rx_cap : 1024;
                while (cap < c->rx_len + keep + 1)
                        cap *= 2;
                char *p = realloc(c->rx, cap);
                if (!p)
                        return -ENOMEM;
                c->rx = p;
                c->rx_cap = cap;
        }
        if (keep) {
                memcpy(c->rx + c->rx_len, in, keep);
                c->rx_len += keep;
        }
        if (!last)
                return 0;
        c->rx_active = false;
        if (c->rx_binary) {
                load_on_part(c);
        } else {
                c->rx[c->rx_len] = '\0';
                load_on_text(c, c->rx, c->rx_len);
        }
        return 0;
}

int load_ws_writeable(struct conn *c, struct lws *wsi)
{
        struct bench *b = c->b;
        unsigned char buf[LWS_PRE + 1024];

        if (c->hello_unsent) {
                c->hello_unsent = false;
                memcpy(buf + LWS_PRE, b->hello, b->hello_len);
                if (lws_write(wsi, buf + LWS_PRE, b->hello_len, LWS_WRITE_TEXT) < (int)b->hello_len)
                        return -1;
        } else if (c->n_unsent) {
                unsigned i = c->unsent[c->unsent_head];
                c->unsent_head = (c->unsent_head + 1) % c->cap;
                c->n_unsent--;
                struct slot *s = &c->slots[i];
                if (s->st != SL_UNSENT)
                        goto more;
                if (!s->part_sent) {
                        /* The scenario's part first, one message per callback: the
                         * submit follows at the next. */
                        static unsigned char part[LWS_PRE + BENCH_MAX_PART];
                        int np = bench_submit_part(b->o->scenario, s->ref, &b->rng, part + LWS_PRE, BENCH_MAX_PART);
                        if (np < 0)
                                return -1;
                        if (np > 0) {
                                s->part_sent = true;
                                c->unsent_head = (c->unsent_head + c->cap - 1) % c->cap;
                                c->unsent[c->unsent_head] = i;
                                c->n_unsent++;
                                if (lws_write(wsi, part + LWS_PRE, (size_t)np, LWS_WRITE_BINARY) < np)
                                        return -1;
                                goto more;
                        }
                }
                s->part_sent = false;
                int n = bench_submit_text(b->o->scenario, s->ref, !b->o->accept_only, &b->rng, (char *)buf + LWS_PRE,
                                          sizeof(buf) - LWS_PRE);
                if (n < 0)
                        return -1;
                s->st = SL_SENT;
                if (b->o->rate <= 0)
                        s->t_start_ns = now_ns();
                if (lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_TEXT) < n)
                        return -1;
        }
more:
        if (c->n_unsent)
                lws_callback_on_writable(wsi);
        return 0;
}

/* ---- raw framing (ws:// without libwebsockets' WebSocket client: ws_frame.h) ---- */

#define RAW_OUT (256 * 1024)       /* bytes of frames written at once */

static uint64_t rng_next(uint64_t *x)
{
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

/* Appends one masked client frame (FIN set) carrying `len` bytes to dst; returns
 * its length. dst must have room for len + KILN_WS_MAX_HEADER. */
static size_t frame_masked(struct bench *b, uint8_t *dst, uint8_t opcode, const void *data, size_t len)
{
        uint32_t key = (uint32_t)rng_next(&b->rng);
        uint8_t mask[4];
        memcpy(mask, &key, 4);
        size_t h = kiln_ws_frame_header(dst, opcode, true, len, mask);
        kiln_ws_mask(dst + h, data, len, mask, 0);
        return h + len;
}

int load_raw_writeable(struct conn *c, struct lws *wsi)
{
        static uint8_t out[LWS_PRE + RAW_OUT];
        struct bench *b = c->b;
        uint8_t *buf = out + LWS_PRE;
        size_t used = 0;

        if (c->upgrade_unsent) {
                uint8_t nonce[16];
                char key[32];
                for (int i = 0; i < 16; i += 8) {
                        uint64_t v = rng_next(&b->rng);
                        memcpy(nonce + i, &v, 8);
                }
                kiln_ws_key(nonce, key, c->ws_accept);
                int n = kiln_ws_upgrade_request((char *)buf, RAW_OUT, b->url.path, b->url.host_header, key, "kiln.v1");
                c->upgrade_unsent = false;
                c->st = CS_UPGRADING;
                return n < 0 || lws_write(wsi, buf, (size_t)n, LWS_WRITE_RAW) < n ? -1 : 0;
        }
        if (c->pong_unsent) {
                c->pong_unsent = false;
                used += frame_masked(b, buf + used, KILN_WS_OP_PONG, c->pong, c->pong_len);
        }
        if (c->hello_unsent) {
                c->hello_unsent = false;
                used += frame_masked(b, buf + used, KILN_WS_OP_TEXT, b->hello, b->hello_len);
        }
        while (c->n_unsent && used + 2048 + KILN_WS_MAX_HEADER + BENCH_MAX_PART + KILN_WS_MAX_HEADER <= RAW_OUT) {
                unsigned i = c->unsent[c->unsent_head];
                c->unsent_head = (c->unsent_head + 1) % c->cap;
                c->n_unsent--;
                struct slot *sl = &c->slots[i];
                if (sl->st != SL_UNSENT)
                        continue;
                char text[2048];
                static uint8_t part[BENCH_MAX_PART];
                int np = bench_submit_part(b->o->scenario, sl->ref, &b->rng, part, sizeof(part));
                int n = bench_submit_text(b->o->scenario, sl->ref, !b->o->accept_only, &b->rng, text, sizeof(text));
                if (n < 0 || np < 0)
                        return -1;
                if (np > 0)
                        used += frame_masked(b, buf + used, KILN_WS_OP_BINARY, part, (size_t)np);
                sl->st = SL_SENT;
                if (b->o->rate <= 0)
                        sl->t_start_ns = now_ns();
                used += frame_masked(b, buf + used, KILN_WS_OP_TEXT, text, (size_t)n);
        }
        if (used && lws_write(wsi, buf, used, LWS_WRITE_RAW) < (int)used)
                return -1;
        if (c->n_unsent || c->pong_unsent)
                lws_callback_on_writable(wsi);
        return 0;
}

/* The end of a control frame: ping is answered, close ends the connection. */
static int raw_control(void *ctx, uint8_t op, const uint8_t *p, size_t len)
{
        struct conn *c = ctx;

        if (op == KILN_WS_OP_PING) {
                memcpy(c->pong, p, len);
                c->pong_len = len;
                c->pong_unsent = true;
                lws_callback_on_writable(c->wsi);
        } else if (op == KILN_WS_OP_CLOSE) {
                if (len >= 2)
                        load_note_error(c->b, "connection %u closed by the server with %u", c->idx,
                                   (unsigned)(p[0] << 8 | p[1]));
                load_conn_closed(c, "the server closed the connection");
                return -1;
        }
        return 0;
}

static int raw_data(void *ctx, const uint8_t *p, size_t len, bool binary, bool last)
{
        struct conn *c = ctx;

        if (c->st != CS_HELLO && c->st != CS_READY)
                return 0;
        int r = load_rx_chunk(c, p, len, binary, last);
        if (r < 0) {
                load_conn_closed(c, r == -EMSGSIZE ? "text message too long" : "out of memory");
                return -1;
        }
        return c->st == CS_CLOSED ? -1 : 0;
}

static const struct kiln_ws_rx_events raw_events = {
        .data = raw_data,
        .control = raw_control,
};

/* Takes received bytes: the upgrade response, then frames. Returns -1 to close. */
int load_raw_rx(struct conn *c, const uint8_t *in, size_t len)
{
        const char *why;

        if (c->st == CS_UPGRADING) {
                char refused[160];
                long used = kiln_ws_hs_feed(&c->hs, in, len, c->ws_accept, refused, sizeof(refused));
                if (used < 0) {
                        load_conn_closed(c, refused);
                        return -1;
                }
                if (!used)
                        return 0;
                c->st = CS_HELLO;
                c->hello_unsent = true;
                lws_callback_on_writable(c->wsi);
                in += used;
                len -= (size_t)used;
        }
        if (kiln_ws_feed(&c->frx, in, len, &raw_events, c, &why) < 0) {
                if (why)
                        load_conn_closed(c, why);
                return -1;
        }
        return 0;
}
