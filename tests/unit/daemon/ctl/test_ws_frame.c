/* RFC 6455's client half (daemon/ctl/ws_frame.c): the upgrade key and answer,
 * masked frame headers and masking, reading server frames in any split (fragments,
 * a control frame between them), with every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws_frame.h"

/* RFC 6455 §1.3's sample nonce and accept value. */
static void test_key_matches_the_rfc_sample(void **state)
{
        const uint8_t nonce[16] = "the sample nonce";
        char key[32], accept[32];

        kiln_ws_key(nonce, key, accept);
        assert_string_equal(key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_upgrade_request_names_everything(void **state)
{
        char buf[512];
        int n = kiln_ws_upgrade_request(buf, sizeof(buf), "/ws", "h:8080", "KEY", "kiln.v1");

        assert_int_equal(n, (int)strlen(buf));
        assert_non_null(strstr(buf, "GET /ws HTTP/1.1\r\n"));
        assert_non_null(strstr(buf, "\r\nHost: h:8080\r\n"));
        assert_non_null(strstr(buf, "\r\nSec-WebSocket-Key: KEY\r\n"));
        assert_non_null(strstr(buf, "\r\nSec-WebSocket-Protocol: kiln.v1\r\n"));
        assert_non_null(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n"));
        assert_memory_equal(buf + n - 4, "\r\n\r\n", 4);
        assert_int_equal(kiln_ws_upgrade_request(buf, 40, "/ws", "h:8080", "KEY", "kiln.v1"), -1);
}

static void test_upgrade_response(void **state)
{
        const char *ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "sec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo= \r\n\r\n\x81\x02hi";
        const char *acc = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        char why[160];
        size_t hdr = strlen(ok) - 4;

        /* incomplete in every prefix, then the header's length exactly */
        for (size_t i = 0; i < hdr; i++)
                assert_int_equal(kiln_ws_upgrade_response(ok, i, acc, why, sizeof(why)), 0);
        assert_int_equal(kiln_ws_upgrade_response(ok, strlen(ok), acc, why, sizeof(why)), (long)hdr);

        assert_int_equal(kiln_ws_upgrade_response(ok, strlen(ok), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo", why, sizeof(why)),
                         -1);
        assert_string_equal(why, "upgrade refused: a wrong Sec-WebSocket-Accept");

        const char *none = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        assert_int_equal(kiln_ws_upgrade_response(none, strlen(none), acc, why, sizeof(why)), -1);
        assert_string_equal(why, "upgrade refused: no Sec-WebSocket-Accept");

        /* No header at all, in a buffer that ends where the reply does (no NUL after
         * it): nothing is read past its end. */
        static const char bare[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
        char *exact = malloc(sizeof(bare) - 1);
        assert_non_null(exact);
        memcpy(exact, bare, sizeof(bare) - 1);
        assert_int_equal(kiln_ws_upgrade_response(exact, sizeof(bare) - 1, acc, why, sizeof(why)), -1);
        assert_string_equal(why, "upgrade refused: no Sec-WebSocket-Accept");
        free(exact);

        const char *refused = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_int_equal(kiln_ws_upgrade_response(refused, strlen(refused), acc, why, sizeof(why)), -1);
        assert_string_equal(why, "upgrade refused: HTTP/1.1 403 Forbidden");
}

static void test_frame_header_lengths(void **state)
{
        const uint8_t mask[4] = { 1, 2, 3, 4 };
        uint8_t h[KILN_WS_MAX_HEADER];

        assert_int_equal(kiln_ws_frame_header(h, KILN_WS_OP_TEXT, true, 125, mask), 6);
        assert_int_equal(h[0], 0x81);
        assert_int_equal(h[1], 0x80 | 125);
        assert_memory_equal(h + 2, mask, 4);

        assert_int_equal(kiln_ws_frame_header(h, KILN_WS_OP_BINARY, false, 126, mask), 8);
        assert_int_equal(h[0], 0x02);
        assert_int_equal(h[1], 0x80 | 126);
        assert_int_equal(h[2] << 8 | h[3], 126);

        assert_int_equal(kiln_ws_frame_header(h, KILN_WS_OP_CONT, true, 0x10000, mask), 14);
        assert_int_equal(h[0], 0x80);
        assert_int_equal(h[1], 0x80 | 127);
        const uint8_t len64[8] = { 0, 0, 0, 0, 0, 1, 0, 0 };
        assert_memory_equal(h + 2, len64, 8);
        assert_memory_equal(h + 10, mask, 4);
}

/* Masking with any offset and length agrees with the byte-at-a-time definition,
 * and masking twice gives the data back. */
static void test_mask_matches_the_definition(void **state)
{
        const uint8_t mask[4] = { 0xde, 0xad, 0xbe, 0xef };
        uint8_t src[67], dst[67], back[67];

        for (size_t i = 0; i < sizeof(src); i++)
                src[i] = (uint8_t)(i * 37 + 5);
        for (uint64_t off = 0; off < 4; off++)
                for (size_t len = 0; len <= sizeof(src); len++) {
                        kiln_ws_mask(dst, src, len, mask, off);
                        for (size_t i = 0; i < len; i++)
                                assert_int_equal(dst[i], src[i] ^ mask[(off + i) & 3]);
                        kiln_ws_mask(back, dst, len, mask, off);
                        assert_memory_equal(back, src, len);
                }
}

/* Feeds `len` bytes in pieces of `step`; returns the bytes consumed before the
 * header completed (or -1). */
static long feed(struct kiln_ws_rx *rx, const uint8_t *in, size_t len, size_t step, const char **why)
{
        size_t at = 0;

        while (at < len && !rx->in_payload) {
                size_t n = len - at < step ? len - at : step;
                long u = kiln_ws_rx_header(rx, in + at, n, why);
                if (u < 0)
                        return -1;
                at += (size_t)u;
        }
        return (long)at;
}

static void test_rx_header_in_any_split(void **state)
{
        const uint8_t big[] = { 0x02, 127, 0, 0, 0, 0, 0x06, 0x46, 0x3e, 0xc8, 'x' };
        const uint8_t mid[] = { 0x01, 126, 0x01, 0x00, 'x' };
        const uint8_t small[] = { 0x89, 3, 'a', 'b', 'c' };
        const char *why;

        for (size_t step = 1; step <= sizeof(big); step++) {
                struct kiln_ws_rx rx = { 0 };
                assert_int_equal(feed(&rx, big, sizeof(big), step, &why), 10);
                assert_true(rx.in_payload);
                assert_false(rx.fin);
                assert_int_equal(rx.op, KILN_WS_OP_BINARY);
                assert_int_equal(rx.left, 105266888);
                assert_false(kiln_ws_rx_payload(&rx, 105266887));
                assert_true(kiln_ws_rx_payload(&rx, 1));
                assert_false(rx.in_payload);
        }
        struct kiln_ws_rx rx = { 0 };
        assert_int_equal(feed(&rx, mid, sizeof(mid), 1, &why), 4);
        assert_int_equal(rx.left, 256);
        assert_int_equal(rx.op, KILN_WS_OP_TEXT);
        memset(&rx, 0, sizeof(rx));
        assert_int_equal(feed(&rx, small, sizeof(small), 64, &why), 2);
        assert_true(rx.fin);
        assert_int_equal(rx.op, KILN_WS_OP_PING);
        assert_int_equal(rx.left, 3);

        /* an empty frame is complete at once */
        const uint8_t empty[] = { 0x81, 0 };
        memset(&rx, 0, sizeof(rx));
        assert_int_equal(feed(&rx, empty, sizeof(empty), 1, &why), 2);
        assert_true(rx.in_payload);
        assert_int_equal(rx.left, 0);
        assert_true(kiln_ws_rx_payload(&rx, 0));
}

static void refused(const uint8_t *in, size_t len, const char *expect)
{
        struct kiln_ws_rx rx = { 0 };
        const char *why = NULL;

        assert_int_equal(kiln_ws_rx_header(&rx, in, len, &why), -1);
        assert_string_equal(why, expect);
}

static void test_rx_header_refusals(void **state)
{
        refused((const uint8_t[]){ 0x82, 0x81, 0, 0, 0, 0 }, 6, "the server sent a masked frame");
        refused((const uint8_t[]){ 0xc2, 1 }, 2, "the server set reserved bits");
        refused((const uint8_t[]){ 0x83, 1 }, 2, "the server sent an unknown opcode");
        refused((const uint8_t[]){ 0x8b, 1 }, 2, "the server sent an unknown opcode");
        refused((const uint8_t[]){ 0x09, 1 }, 2, "the server sent a malformed control frame");
        refused((const uint8_t[]){ 0x88, 126, 0, 200 }, 4, "the server sent a malformed control frame");
        refused((const uint8_t[]){ 0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1 }, 10,
                "the server sent a frame length with the top bit set");
}

/* What kiln_ws_feed handed on, in order. */
struct seen {
        char data[64];
        size_t data_len;
        int lasts, last_at, pings, closes, frames;
        bool binary;
        int stop_after; /* data calls; 0: never stop */
        int calls;
};

static int on_frame(void *ctx, uint64_t len)
{
        struct seen *w = ctx;
        w->frames++;
        return 0;
}

static int on_data(void *ctx, const uint8_t *p, size_t len, bool binary, bool last)
{
        struct seen *w = ctx;
        memcpy(w->data + w->data_len, p, len);
        w->data_len += len;
        w->binary = binary;
        if (last) {
                w->lasts++;
                w->last_at = (int)w->data_len;
        }
        return w->stop_after && ++w->calls >= w->stop_after ? -1 : 0;
}

static int on_control(void *ctx, uint8_t op, const uint8_t *p, size_t len)
{
        struct seen *w = ctx;
        if (op == KILN_WS_OP_PING) {
                assert_int_equal(len, 1);
                assert_int_equal(p[0], 'p');
                w->pings++;
        } else if (op == KILN_WS_OP_CLOSE) {
                /* its payload as sent, however the frame was split: code 1000 */
                assert_int_equal(len, 2);
                assert_int_equal(p[0] << 8 | p[1], 1000);
                w->closes++;
        }
        return 0;
}

static const struct kiln_ws_rx_events events = { .frame = on_frame, .data = on_data, .control = on_control };

static int refuse_frame(void *ctx, uint64_t len)
{
        return -1;
}

static int refuse_control(void *ctx, uint8_t op, const uint8_t *p, size_t len)
{
        return -1;
}

/* A text message in three fragments, the last one empty, with a ping between the
 * first two; then a close. Fed in every piece size. */
static void test_feed_fragments_with_a_ping_between(void **state)
{
        const uint8_t in[] = { 0x01, 2, 'h', 'e', 0x89, 1, 'p', 0x00, 3, 'l', 'l', 'o', 0x80, 0,
                               0x88, 2, 0x03, 0xe8 };
        const char *why;

        for (size_t step = 1; step <= sizeof(in); step++) {
                struct kiln_ws_rx rx = { 0 };
                struct seen w = { 0 };
                for (size_t at = 0; at < sizeof(in); at += step) {
                        size_t n = sizeof(in) - at < step ? sizeof(in) - at : step;
                        assert_int_equal(kiln_ws_feed(&rx, in + at, n, &events, &w, &why), 0);
                }
                assert_int_equal(w.data_len, 5);
                assert_memory_equal(w.data, "hello", 5);
                assert_false(w.binary);
                assert_int_equal(w.lasts, 1);
                assert_int_equal(w.last_at, 5);
                assert_int_equal(w.pings, 1);
                assert_int_equal(w.closes, 1);
                assert_int_equal(w.frames, 3);
                assert_false(rx.in_message);
        }
}

static void test_feed_refuses_fragments_out_of_order_and_stops_when_asked(void **state)
{
        const uint8_t cont_first[] = { 0x80, 1, 'x' };
        const uint8_t text_in_text[] = { 0x01, 1, 'a', 0x81, 1, 'b' };
        const uint8_t two[] = { 0x82, 1, 'a', 0x82, 1, 'b' };
        struct kiln_ws_rx rx = { 0 };
        struct seen w = { 0 };
        const char *why;

        assert_int_equal(kiln_ws_feed(&rx, cont_first, sizeof(cont_first), &events, &w, &why), -1);
        assert_string_equal(why, "the server sent a fragment out of order");
        memset(&rx, 0, sizeof(rx));
        assert_int_equal(kiln_ws_feed(&rx, text_in_text, sizeof(text_in_text), &events, &w, &why), -1);
        assert_string_equal(why, "the server sent a fragment out of order");

        memset(&rx, 0, sizeof(rx));
        memset(&w, 0, sizeof(w));
        w.stop_after = 1;
        assert_int_equal(kiln_ws_feed(&rx, two, sizeof(two), &events, &w, &why), -1);
        assert_null(why);
        assert_int_equal(w.data_len, 1);
        assert_true(w.binary);

        /* The frame and control callbacks stop it too. */
        static const struct kiln_ws_rx_events no_frames = { .frame = refuse_frame, .data = on_data,
                                                             .control = on_control };
        static const struct kiln_ws_rx_events no_control = { .frame = on_frame, .data = on_data,
                                                              .control = refuse_control };
        const uint8_t ping_then_text[] = { 0x89, 1, 'p', 0x81, 1, 'x' };
        memset(&rx, 0, sizeof(rx));
        memset(&w, 0, sizeof(w));
        assert_int_equal(kiln_ws_feed(&rx, two, sizeof(two), &no_frames, &w, &why), -1);
        assert_null(why);
        assert_int_equal(w.data_len, 0);
        memset(&rx, 0, sizeof(rx));
        assert_int_equal(kiln_ws_feed(&rx, ping_then_text, sizeof(ping_then_text), &no_control, &w, &why), -1);
        assert_null(why);
        assert_int_equal(w.data_len, 0);
}

static void test_hs_feed_in_pieces_then_frames(void **state)
{
        const char *ans = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                          "\x81\x01x";
        const char *acc = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        size_t total = strlen(ans), hdr = total - 3;
        struct kiln_ws_hs h = { 0 };
        char why[160];

        assert_int_equal(kiln_ws_hs_feed(&h, (const uint8_t *)ans, 10, acc, why, sizeof(why)), 0);
        assert_int_equal(kiln_ws_hs_feed(&h, (const uint8_t *)ans + 10, hdr - 12, acc, why, sizeof(why)), 0);
        /* the last two bytes of the blank line and a frame in one read: 2 used */
        assert_int_equal(kiln_ws_hs_feed(&h, (const uint8_t *)ans + hdr - 2, 5, acc, why, sizeof(why)), 2);
        assert_null(h.buf);

        char big[9000];
        memset(big, 'a', sizeof(big));
        memcpy(big, "HTTP/1.1 101 x\r\n", 16);
        assert_int_equal(kiln_ws_hs_feed(&h, (const uint8_t *)big, sizeof(big), acc, why, sizeof(why)), -1);
        assert_string_equal(why, "the upgrade response is too long");
        assert_null(h.buf);
        kiln_ws_hs_free(&h);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_key_matches_the_rfc_sample),
                cmocka_unit_test(test_upgrade_request_names_everything),
                cmocka_unit_test(test_upgrade_response),
                cmocka_unit_test(test_frame_header_lengths),
                cmocka_unit_test(test_mask_matches_the_definition),
                cmocka_unit_test(test_rx_header_in_any_split),
                cmocka_unit_test(test_rx_header_refusals),
                cmocka_unit_test(test_feed_fragments_with_a_ping_between),
                cmocka_unit_test(test_feed_refuses_fragments_out_of_order_and_stops_when_asked),
                cmocka_unit_test(test_hs_feed_in_pieces_then_frames),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
