/* RFC 6455, the client's half, without I/O (see ws_frame.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "ws_frame.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void kiln_ws_key(const uint8_t nonce[16], char key[32], char accept[32])
{
        char src[24 + sizeof(WS_GUID)];
        unsigned char sha[SHA_DIGEST_LENGTH];

        EVP_EncodeBlock((unsigned char *)key, nonce, 16);
        snprintf(src, sizeof(src), "%s%s", key, WS_GUID);
        SHA1((const unsigned char *)src, strlen(src), sha);
        EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);
}

int kiln_ws_upgrade_request(char *buf, size_t size, const char *path, const char *host_header, const char *key,
                            const char *subprotocol)
{
        int n = snprintf(buf, size,
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Protocol: %s\r\nOrigin: http://%s\r\n\r\n",
                         path, host_header, key, subprotocol, host_header);
        return n < 0 || (size_t)n >= size ? -1 : n;
}

/* The value of header `name` (with its colon) in the header block [p, end), or
 * NULL; *vlen gets its length without trailing blanks. */
static const char *header_value(const char *p, const char *end, const char *name, size_t *vlen)
{
        size_t nl = strlen(name);

        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                if (!eol)
                        eol = end;
                if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl)) {
                        const char *v = p + nl, *ve = eol;
                        while (v < ve && (*v == ' ' || *v == '\t'))
                                v++;
                        while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                                ve--;
                        *vlen = (size_t)(ve - v);
                        return v;
                }
                p = eol + 1;
        }
        return NULL;
}

long kiln_ws_upgrade_response(const char *buf, size_t len, const char *accept, char *why, size_t why_size)
{
        const char *end = NULL;

        for (size_t i = 3; i < len; i++)
                if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
                        end = buf + i + 1;
                        break;
                }
        if (!end)
                return 0;
        size_t status_len = strcspn(buf, "\r\n");
        if (status_len < 12 || strncmp(buf, "HTTP/1.1 101", 12)) {
                snprintf(why, why_size, "upgrade refused: %.*s", (int)(status_len < 100 ? status_len : 100), buf);
                return -1;
        }
        size_t vlen;
        const char *p = buf + status_len;
        while (p < end && (*p == '\r' || *p == '\n')) /* buf is not NUL-terminated */
                p++;
        const char *v = header_value(p, end, "Sec-WebSocket-Accept:", &vlen);
        if (!v || vlen != strlen(accept) || strncmp(v, accept, vlen)) {
                snprintf(why, why_size, "upgrade refused: %s Sec-WebSocket-Accept", v ? "a wrong" : "no");
                return -1;
        }
        return (long)(end - buf);
}

size_t kiln_ws_frame_header(uint8_t *dst, uint8_t opcode, bool fin, uint64_t len, const uint8_t mask[4])
{
        size_t h = 0;

        dst[h++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
        if (len < 126) {
                dst[h++] = (uint8_t)(0x80 | len);
        } else if (len <= 0xffff) {
                dst[h++] = 0x80 | 126;
                dst[h++] = (uint8_t)(len >> 8);
                dst[h++] = (uint8_t)len;
        } else {
                dst[h++] = 0x80 | 127;
                for (int i = 0; i < 8; i++)
                        dst[h++] = (uint8_t)(len >> (56 - 8 * i));
        }
        memcpy(dst + h, mask, 4);
        return h + 4;
}

void kiln_ws_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t mask[4], uint64_t offset)
{
        size_t i = 0;

        /* eight bytes at a time once aligned to the mask's period */
        while (i < len && ((offset + i) & 3))
                dst[i] = src[i] ^ mask[(offset + i) & 3], i++;
        uint64_t m;
        uint8_t m8[8];
        for (int k = 0; k < 8; k++)
                m8[k] = mask[k & 3];
        memcpy(&m, m8, 8);
        for (; i + 8 <= len; i += 8) {
                uint64_t v;
                memcpy(&v, src + i, 8);
                v ^= m;
                memcpy(dst + i, &v, 8);
        }
        for (; i < len; i++)
                dst[i] = src[i] ^ mask[(offset + i) & 3];
}

long kiln_ws_rx_header(struct kiln_ws_rx *rx, const uint8_t *in, size_t len, const char **why)
{
        size_t used = 0;

        while (!rx->in_payload && used < len) {
                rx->h[rx->h_len++] = in[used++];
                if (rx->h_len < 2)
                        continue;
                uint8_t op = rx->h[0] & 0x0f;
                unsigned l7 = rx->h[1] & 0x7f;
                if (rx->h_len == 2) {
                        if (rx->h[1] & 0x80) {
                                *why = "the server sent a masked frame";
                                return -1;
                        }
                        if (rx->h[0] & 0x70) {
                                *why = "the server set reserved bits";
                                return -1;
                        }
                        if ((op > KILN_WS_OP_BINARY && op < KILN_WS_OP_CLOSE) || op > KILN_WS_OP_PONG) {
                                *why = "the server sent an unknown opcode";
                                return -1;
                        }
                        if (op >= KILN_WS_OP_CLOSE && (!(rx->h[0] & 0x80) || l7 > KILN_WS_MAX_CONTROL)) {
                                *why = "the server sent a malformed control frame";
                                return -1;
                        }
                }
                unsigned need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
                if (rx->h_len < need)
                        continue;
                uint64_t n = l7;
                if (l7 == 126) {
                        n = (uint64_t)rx->h[2] << 8 | rx->h[3];
                } else if (l7 == 127) {
                        if (rx->h[2] & 0x80) {
                                *why = "the server sent a frame length with the top bit set";
                                return -1;
                        }
                        n = 0;
                        for (int i = 0; i < 8; i++)
                                n = n << 8 | rx->h[2 + i];
                }
                rx->fin = rx->h[0] & 0x80;
                rx->op = op;
                rx->left = n;
                rx->h_len = 0;
                rx->in_payload = true;
        }
        return (long)used;
}

bool kiln_ws_rx_payload(struct kiln_ws_rx *rx, uint64_t n)
{
        rx->left -= n;
        if (rx->left)
                return false;
        rx->in_payload = false;
        return true;
}

#define HS_MAX 8192

long kiln_ws_hs_feed(struct kiln_ws_hs *h, const uint8_t *in, size_t len, const char *accept, char *why,
                     size_t why_size)
{
        size_t had = h->len, take = len < HS_MAX - had ? len : HS_MAX - had;
        char *p = realloc(h->buf, had + take);
        long end;

        if (!p) {
                snprintf(why, why_size, "out of memory");
                kiln_ws_hs_free(h);
                return -1;
        }
        h->buf = p;
        memcpy(h->buf + had, in, take);
        h->len = had + take;
        end = kiln_ws_upgrade_response(h->buf, h->len, accept, why, why_size);
        if (!end && h->len == HS_MAX) {
                snprintf(why, why_size, "the upgrade response is too long");
                end = -1;
        }
        if (!end)
                return 0;
        kiln_ws_hs_free(h);
        return end < 0 ? -1 : end - (long)had;
}

void kiln_ws_hs_free(struct kiln_ws_hs *h)
{
        free(h->buf);
        h->buf = NULL;
        h->len = 0;
}

int kiln_ws_feed(struct kiln_ws_rx *rx, const uint8_t *in, size_t len, const struct kiln_ws_rx_events *ev,
                 void *ctx, const char **why)
{
        *why = NULL;
        while (len || (rx->in_payload && !rx->left)) {
                if (!rx->in_payload) {
                        long used = kiln_ws_rx_header(rx, in, len, why);
                        if (used < 0)
                                return -1;
                        in += used;
                        len -= (size_t)used;
                        if (!rx->in_payload)
                                break;
                        rx->ctl_len = 0;
                        if (rx->op < KILN_WS_OP_CLOSE) {
                                bool first = rx->op != KILN_WS_OP_CONT;
                                if (first == rx->in_message) {
                                        *why = "the server sent a fragment out of order";
                                        return -1;
                                }
                                if (first)
                                        rx->binary = rx->op == KILN_WS_OP_BINARY;
                                rx->in_message = true;
                                if (ev->frame && ev->frame(ctx, rx->left) < 0)
                                        return -1;
                        }
                }
                size_t take = len < rx->left ? len : (size_t)rx->left;
                uint8_t op = rx->op;
                bool fin = rx->fin;
                bool end = kiln_ws_rx_payload(rx, take);
                if (op >= KILN_WS_OP_CLOSE) {
                        if (take)
                                memcpy(rx->ctl + rx->ctl_len, in, take);
                        rx->ctl_len += take;
                        if (end && ev->control(ctx, op, rx->ctl, rx->ctl_len) < 0)
                                return -1;
                } else {
                        if (end && fin)
                                rx->in_message = false;
                        if (ev->data(ctx, in, take, rx->binary, end && fin) < 0)
                                return -1;
                }
                in += take;
                len -= take;
        }
        return 0;
}
