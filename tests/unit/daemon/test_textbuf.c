/* The printf-free text building of daemon/textbuf.h and kiln_str_copy (util.h): the
 * same text snprintf makes, and nothing written past the buffer. */
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "textbuf.h"
#include "util.h"

static void test_integers_read_as_snprintf_writes_them(void **state)
{
        static const uint64_t u[] = { 0, 1, 9, 10, 99, 100, 4294967295u, 4294967296u, UINT64_MAX / 10,
                                      UINT64_MAX - 1, UINT64_MAX };
        static const int64_t i[] = { 0, -1, 1, -9, -10, INT64_MAX, INT64_MIN, INT64_MIN + 1 };
        char buf[32], want[32];
        uint64_t x = 0x9e3779b97f4a7c15u;

        for (size_t k = 0; k < sizeof(u) / sizeof(u[0]); k++) {
                struct textbuf b = textbuf_init(buf, sizeof(buf));
                textbuf_u64(&b, u[k]);
                snprintf(want, sizeof(want), "%" PRIu64, u[k]);
                assert_string_equal(buf, want);
                assert_int_equal(b.len, strlen(want));
        }
        for (size_t k = 0; k < sizeof(i) / sizeof(i[0]); k++) {
                struct textbuf b = textbuf_init(buf, sizeof(buf));
                textbuf_i64(&b, i[k]);
                snprintf(want, sizeof(want), "%" PRId64, i[k]);
                assert_string_equal(buf, want);
        }
        for (int k = 0; k < 10000; k++) { /* xorshift: every length of number */
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                uint64_t v = x >> (k % 64);
                struct textbuf b = textbuf_init(buf, sizeof(buf));
                textbuf_i64(&b, (int64_t)v);
                snprintf(want, sizeof(want), "%" PRId64, (int64_t)v);
                assert_string_equal(buf, want);
        }
}

static void test_pieces_join_in_order(void **state)
{
        char buf[64];
        struct textbuf b = textbuf_init(buf, sizeof(buf));

        textbuf_str(&b, "{\"bytes\":");
        textbuf_u64(&b, 60);
        textbuf_put(&b, ",\"x\":", 5);
        textbuf_i64(&b, -3);
        textbuf_str(&b, "");
        textbuf_put(&b, "}", 1);
        assert_false(textbuf_over(&b));
        assert_string_equal(buf, "{\"bytes\":60,\"x\":-3}");
        assert_int_equal(b.len, strlen(buf));
}

/* What does not fit is not written, the text stays terminated within the buffer,
 * and the overflow is remembered for every later piece. */
static void test_overflow_writes_nothing_past_the_buffer(void **state)
{
        char buf[12];
        memset(buf, 'Z', sizeof(buf));
        struct textbuf b = textbuf_init(buf, 8);

        textbuf_str(&b, "abcdefg"); /* 7 characters and the NUL: exactly full */
        assert_false(textbuf_over(&b));
        assert_string_equal(buf, "abcdefg");
        textbuf_str(&b, "h");
        assert_true(textbuf_over(&b));
        textbuf_str(&b, "");
        assert_true(textbuf_over(&b));
        assert_string_equal(buf, "abcdefg");
        for (size_t k = 8; k < sizeof(buf); k++)
                assert_int_equal(buf[k], 'Z');

        struct textbuf n = textbuf_init(buf, 4);
        textbuf_u64(&n, 12345); /* five digits do not fit in three */
        assert_true(textbuf_over(&n));
        assert_string_equal(buf, "");

        struct textbuf none = textbuf_init(NULL, 0);
        assert_true(textbuf_over(&none));
        textbuf_str(&none, "x");
        assert_true(textbuf_over(&none));
}

static void test_str_copy_cuts_like_snprintf(void **state)
{
        static const char *src[] = { "", "a", "tenant", "exactly-seven", "a name much longer than the buffer" };
        char got[8], want[8];

        for (size_t k = 0; k < sizeof(src) / sizeof(src[0]); k++) {
                memset(got, 'Z', sizeof(got));
                kiln_str_copy(got, sizeof(got), src[k]);
                snprintf(want, sizeof(want), "%s", src[k]);
                assert_string_equal(got, want);
        }
        kiln_str_copy(got, 1, "abc");
        assert_string_equal(got, "");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_integers_read_as_snprintf_writes_them),
                cmocka_unit_test(test_pieces_join_in_order),
                cmocka_unit_test(test_overflow_writes_nothing_past_the_buffer),
                cmocka_unit_test(test_str_copy_cuts_like_snprintf),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
