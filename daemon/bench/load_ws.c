/* kiln-bench's WebSocket layer: receiving messages whole (text) or by their
 * header (binary parts), and writing them.
 *
 * For ws:// the connections are libwebsockets raw sockets and the WebSocket layer
 * (RFC 6455: the upgrade, masked client frames, fragments, ping, close) is done
 * here: libwebsockets' WebSocket client parses what it receives one byte at a
 * time, which for a job's 16 KiB part cost ~80 µs of client CPU per job, more than
 * the server spent on it, so kiln-bench measured itself. Here a part's payload is
 * skipped in bulk, and every pending submit of a connection goes out in one write.
 * For wss:// (TLS) libwebsockets' own WebSocket client is used, one message per
 * writeable callback (KILN_BENCH_LWS_WS=1 forces it for ws:// too). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "load_internal.h"

#define MAX_TEXT (16u << 20)     /* longest text message accepted */
#define HDR_KEEP 4096u           /* bytes of a binary part kept to read its header */

/* Takes one received chunk. Text is assembled whole; of a binary part only the
 * first HDR_KEEP bytes are kept (the KLNB header), the payload is counted and
 * dropped. Returns >= 0 or -ENOMEM / -EMSGSIZE. */
int load_rx_chunk(struct conn *c, const void *in, size_t len, bool binary, bool last)
{
        if (!c->rx_active) {
                c->rx_active = true;
                c->rx_binary = binary;
                c->rx_len = 0;
                c->rx_overflow = false;
        }
        size_t keep = len;
        if (c->rx_binary) {
                keep = c->rx_len >= HDR_KEEP ? 0 : (len < HDR_KEEP - c->rx_len ? len : HDR_KEEP - c->rx_len);
        } else if (c->rx_len + len > MAX_TEXT) {
                return -EMSGSIZE;
        }
        if (keep) {
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

/* ---- raw framing (ws:// without libwebsockets' WebSocket client) ---- */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_UPGRADE_RESPONSE 8192
#define RAW_OUT (256 * 1024)       /* bytes of frames written at once */

static uint64_t rng_next(uint64_t *x)
{
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

/* Appends one masked client frame (FIN set) carrying `len` bytes to dst; returns
 * its length. dst must have room for len + 14. */
static size_t frame_masked(struct bench *b, uint8_t *dst, uint8_t opcode, const void *data, size_t len)
{
        size_t h = 0;
        dst[h++] = (uint8_t)(0x80 | opcode);
        if (len < 126) {
                dst[h++] = (uint8_t)(0x80 | len);
        } else if (len <= 0xffff) {
                dst[h++] = 0x80 | 126;
                dst[h++] = (uint8_t)(len >> 8);
                dst[h++] = (uint8_t)len;
        } else {
                dst[h++] = 0x80 | 127;
                for (int i = 0; i < 8; i++)
                        dst[h++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        }
        uint32_t key = (uint32_t)rng_next(&b->rng);
        uint8_t mask[4];
        memcpy(mask, &key, 4);
        memcpy(dst + h, mask, 4);
        h += 4;
        const uint8_t *src = data;
        for (size_t i = 0; i < len; i++)
                dst[h + i] = src[i] ^ mask[i & 3];
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
                char key[32], accept_src[96], sha[20];
                for (int i = 0; i < 16; i += 8) {
                        uint64_t v = rng_next(&b->rng);
                        memcpy(nonce + i, &v, 8);
                }
                lws_b64_encode_string((const char *)nonce, 16, key, sizeof(key));
                snprintf(accept_src, sizeof(accept_src), "%s%s", key, WS_GUID);
                lws_SHA1((const unsigned char *)accept_src, strlen(accept_src), (unsigned char *)sha);
                lws_b64_encode_string(sha, 20, c->ws_accept, sizeof(c->ws_accept));
                int n = snprintf((char *)buf, 2048,
                                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                                 "Sec-WebSocket-Protocol: kiln.v1\r\nOrigin: http://%s\r\n\r\n",
                                 b->url.path, b->url.host_header, key, b->url.host_header);
                c->upgrade_unsent = false;
                c->st = CS_UPGRADING;
                return lws_write(wsi, buf, (size_t)n, LWS_WRITE_RAW) < n ? -1 : 0;
        }
        if (c->pong_unsent) {
                c->pong_unsent = false;
                used += frame_masked(b, buf + used, 0xA, c->pong, c->pong_len);
        }
        if (c->hello_unsent) {
                c->hello_unsent = false;
                used += frame_masked(b, buf + used, 0x1, b->hello, b->hello_len);
        }
        while (c->n_unsent && used + 2048 + 14 + BENCH_MAX_PART + 14 <= RAW_OUT) {
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
                        used += frame_masked(b, buf + used, 0x2, part, (size_t)np);
                sl->st = SL_SENT;
                if (b->o->rate <= 0)
                        sl->t_start_ns = now_ns();
                used += frame_masked(b, buf + used, 0x1, text, (size_t)n);
        }
        if (used && lws_write(wsi, buf, used, LWS_WRITE_RAW) < (int)used)
                return -1;
        if (c->n_unsent || c->pong_unsent)
                lws_callback_on_writable(wsi);
        return 0;
}

/* Reads the upgrade response; returns the bytes of `in` it used (frames may follow
 * in the same read), or -1 when the server refused. */
static long raw_upgrade_rx(struct conn *c, const uint8_t *in, size_t len)
{
        size_t had = c->hs_len, take = len;
        if (had + take > MAX_UPGRADE_RESPONSE)
                take = MAX_UPGRADE_RESPONSE - had;
        char *p = realloc(c->hs, had + take + 1);
        if (!p)
                return -1;
        c->hs = p;
        memcpy(c->hs + had, in, take);
        c->hs_len = had + take;
        c->hs[c->hs_len] = '\0';
        char *end = strstr(c->hs, "\r\n\r\n");
        if (!end) {
                if (c->hs_len >= MAX_UPGRADE_RESPONSE) {
                        load_conn_closed(c, "the upgrade response is too long");
                        return -1;
                }
                return (long)len;
        }
        size_t used = (size_t)(end + 4 - c->hs) - had;
        *end = '\0';
        bool ok = !strncmp(c->hs, "HTTP/1.1 101", 12);
        const char *a = NULL;
        for (char *line = strstr(c->hs, "\r\n"); ok && line; line = strstr(line + 2, "\r\n"))
                if (!strncasecmp(line + 2, "Sec-WebSocket-Accept:", 21)) {
                        a = line + 2 + 21;
                        a += strspn(a, " \t");
                        break;
                }
        if (!ok || !a || strncmp(a, c->ws_accept, strlen(c->ws_accept))) {
                char why[160];
                snprintf(why, sizeof(why), "upgrade refused: %.100s", c->hs);
                why[strcspn(why, "\r\n")] = '\0';
                load_conn_closed(c, why);
                return -1;
        }
        free(c->hs);
        c->hs = NULL;
        c->hs_len = 0;
        c->st = CS_HELLO;
        c->hello_unsent = true;
        lws_callback_on_writable(c->wsi);
        return (long)used;
}

/* The end of a control frame: ping is answered, close ends the connection. */
static int raw_control(struct conn *c)
{
        if (c->f_op == 0x9) {
                memcpy(c->pong, c->ctl, c->ctl_len);
                c->pong_len = c->ctl_len;
                c->pong_unsent = true;
                lws_callback_on_writable(c->wsi);
        } else if (c->f_op == 0x8) {
                if (c->ctl_len >= 2)
                        load_note_error(c->b, "connection %u closed by the server with %u", c->idx,
                                   (unsigned)(c->ctl[0] << 8 | c->ctl[1]));
                load_conn_closed(c, "the server closed the connection");
                return -1;
        }
        return 0;
}

/* Takes received bytes: the upgrade response, then frames. Returns -1 to close. */
int load_raw_rx(struct conn *c, const uint8_t *in, size_t len)
{
        if (c->st == CS_UPGRADING) {
                long used = raw_upgrade_rx(c, in, len);
                if (used < 0)
                        return -1;
                in += used;
                len -= (size_t)used;
        }
        while (len || (c->in_frame && !c->f_left)) {
                if (!c->in_frame) {
                        c->fh[c->fh_len++] = *in++;
                        len--;
                        if (c->fh_len < 2)
                                continue;
                        unsigned l7 = c->fh[1] & 0x7f;
                        unsigned need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
                        if (c->fh[1] & 0x80 || c->fh[0] & 0x70) {
                                load_conn_closed(c, "the server sent a masked frame or reserved bits");
                                return -1;
                        }
                        if (c->fh_len < need)
                                continue;
                        uint64_t n = l7;
                        if (l7 == 126)
                                n = (uint64_t)c->fh[2] << 8 | c->fh[3];
                        else if (l7 == 127)
                                for (int i = 0; i < 8; i++)
                                        n = n << 8 | c->fh[2 + i];
                        c->f_fin = c->fh[0] & 0x80;
                        c->f_op = c->fh[0] & 0x0f;
                        c->f_left = n;
                        c->fh_len = 0;
                        c->in_frame = true;
                        c->ctl_len = 0;
                        if (c->f_op >= 0x8 && (n > sizeof(c->ctl) || !c->f_fin)) {
                                load_conn_closed(c, "the server sent a malformed control frame");
                                return -1;
                        }
                }
                size_t take = len < c->f_left ? len : (size_t)c->f_left;
                bool end = take == c->f_left;
                if (c->f_op >= 0x8) {
                        memcpy(c->ctl + c->ctl_len, in, take);
                        c->ctl_len += take;
                } else if (c->st == CS_HELLO || c->st == CS_READY) {
                        bool binary = c->f_op == 0 ? c->rx_binary : c->f_op == 0x2;
                        int r = load_rx_chunk(c, in, take, binary, end && c->f_fin);
                        if (r < 0) {
                                load_conn_closed(c, r == -EMSGSIZE ? "text message too long" : "out of memory");
                                return -1;
                        }
                        if (c->st == CS_CLOSED)
                                return -1;
                }
                in += take;
                len -= take;
                c->f_left -= take;
                if (end) {
                        c->in_frame = false;
                        if (c->f_op >= 0x8 && raw_control(c) < 0)
                                return -1;
                }
        }
        return 0;
}
