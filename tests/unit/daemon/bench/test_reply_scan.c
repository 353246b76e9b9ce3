/* kiln-bench's in-place reading of replies (daemon/bench/reply_scan.c): the fields
 * it keeps agree with jansson's whole parse, and what it must not take (escapes in
 * a kept field, refs that are not plain integers, malformed text) is left to
 * jansson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "reply_scan.h"

static int scan(const char *text, struct reply *r)
{
        return reply_scan(text, strlen(text), r);
}

/* When reply_scan takes `text`, jansson reads it too, with the same fields. */
static void assert_agrees_with_jansson(const char *text, size_t len)
{
        struct reply r;

        if (reply_scan(text, len, &r) < 0)
                return;
        json_error_t err;
        json_t *m = json_loadb(text, len, 0, &err);
        if (!m)
                fail_msg("reply_scan took what jansson refuses (%s): %.*s", err.text, (int)len, text);
        assert_true(json_is_object(m));
        json_t *ref = json_object_get(m, "ref");
        assert_int_equal(r.has_ref, json_is_integer(ref));
        if (r.has_ref)
                assert_int_equal(r.ref, (uint64_t)json_integer_value(ref));
        assert_string_equal(r.op, json_string_value(json_object_get(m, "op")) ?: "");
        assert_string_equal(r.job, json_string_value(json_object_get(m, "job")) ?: "");
        assert_string_equal(r.state, json_string_value(json_object_get(m, "state")) ?: "");
        assert_int_equal(r.n_parts, json_array_size(json_object_get(m, "parts")));
        json_decref(m);
}

static const char *const replies[] = {
        "{\"op\":\"accepted\",\"job\":\"01a24b57-521b-7478-8f6d-87a8ef677cf2\",\"state\":\"done\",\"cached\":false,"
        "\"ref\":7}",
        "{\"ref\":7,\"op\":\"done\",\"job\":\"01a24b57-521b-7478-8f6d-87a8ef677cf2\",\"state\":\"done\","
        "\"ms\":{\"queue\":3,\"run\":0},\"result\":{\"rows\":1,\"model_version\":null},\"parts\":[{\"name\":\"z\","
        "\"dtype\":\"f32\",\"shape\":[1],\"bytes\":4},{\"name\":\"zone\",\"dtype\":\"u8\",\"shape\":[1],\"bytes\":1}],"
        "\"backend\":\"cpu\",\"batch\":1}",
        "{\"op\":\"progress\",\"job\":\"01a24b57-521b-7478-8f6d-87a8ef677cf2\",\"pct\":40,\"best\":57,"
        "\"lower_bound\":55}",
        "{\"op\":\"done\",\"job\":\"j\",\"state\":\"failed\",\"error\":{\"code\":\"bad_params\",\"field\":\"rows\","
        "\"message\":\"rows: 5 features, the model has 4\"},\"ref\":3}",
        "{\"op\":\"error\",\"code\":\"rate_limited\",\"message\":\"slow down\",\"ref\":12}",
        "  {\n\t\"state\" : \"done\" ,\r\n \"parts\" : [ ] , \"op\" : \"done\" , \"ref\" : 0 }  ",
        "{\"op\":\"done\",\"result\":{\"a\":[1,-2.5e-3,0.0,1E+9,true,false,null,\"x\\\"y\\/\\n\"],\"b\":{}},"
        "\"state\":\"done\",\"parts\":[[],{},\"p\",3]}",
        "{}",
        "{\"op\":\"welcome\",\"kinds\":[\"risk.score\"],\"limits\":{\"max_queued\":100000}}",
};

static void test_kilnd_replies_read_as_jansson_does(void **state)
{
        struct reply r;

        for (size_t i = 0; i < sizeof(replies) / sizeof(*replies); i++) {
                assert_int_equal(scan(replies[i], &r), 0);
                assert_agrees_with_jansson(replies[i], strlen(replies[i]));
        }
        assert_int_equal(scan(replies[1], &r), 0);
        assert_string_equal(r.op, "done");
        assert_string_equal(r.state, "done");
        assert_string_equal(r.job, "01a24b57-521b-7478-8f6d-87a8ef677cf2");
        assert_true(r.has_ref);
        assert_int_equal(r.ref, 7);
        assert_int_equal(r.n_parts, 2);
        assert_int_equal(scan(replies[6], &r), 0);
        assert_int_equal(r.n_parts, 4);
        assert_false(r.has_ref);
}

static void test_the_last_of_a_repeated_key_counts(void **state)
{
        struct reply r;
        const char *text = "{\"op\":\"accepted\",\"ref\":1,\"op\":\"done\",\"ref\":2}";

        assert_int_equal(scan(text, &r), 0);
        assert_string_equal(r.op, "done");
        assert_int_equal(r.ref, 2);
        assert_agrees_with_jansson(text, strlen(text));
}

/* Left to jansson: kept fields it would have to unescape or convert, and fields
 * too long for kiln-bench's buffers. */
static void test_fields_it_does_not_take(void **state)
{
        static const char *const texts[] = {
                "{\"op\":\"acc\\u0065pted\"}",        /* escaped kept value */
                "{\"o\\u0070\":\"accepted\"}",        /* escaped key */
                "{\"op\":\"accepted\",\"ref\":-1}",
                "{\"op\":\"accepted\",\"ref\":1.5}",
                "{\"op\":\"accepted\",\"ref\":1e3}",
                "{\"op\":\"accepted\",\"ref\":\"7\"}",
                "{\"op\":\"accepted\",\"ref\":null}",
                "{\"op\":\"accepted\",\"ref\":0123}",
                "{\"op\":\"accepted\",\"ref\":1234567890123456789}",
                "{\"op\":5}",
                "{\"op\":\"done\",\"parts\":null}",
                "{\"op\":\"done\",\"parts\":{}}",
                "{\"op\":\"this-op-is-far-too-long\"}",
                "{\"op\":\"done\",\"job\":\"0123456789012345678901234567890123456789012345678\"}",
                "{\"op\":\"done\",\"a\":\"\\u00e9\"}",             /* \u escapes anywhere */
                "{\"op\":\"done\",\"a\":\"\xc3\xa9\"}",             /* bytes past ASCII */
                "{\"op\":\"done\",\"a\":1234567890123456789}", /* past 18 digits */
                "{\"op\":\"done\",\"a\":1e400}",
        };
        struct reply r;

        for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++)
                if (scan(texts[i], &r) != -1)
                        fail_msg("took %s", texts[i]);
}

static void test_malformed_text_is_refused(void **state)
{
        static const char *const texts[] = {
                "", " ", "[]", "\"op\"", "{", "}", "{\"op\":\"done\"", "{\"op\":\"done\"}}", "{\"op\":\"done\"} x",
                "{\"op\" \"done\"}", "{\"op\":\"done\",}", "{,}", "{\"op\":}", "{op:\"done\"}", "{\"op\":'done'}",
                "{\"a\":01}", "{\"a\":1.}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":tru}",
                "{\"a\":nul}", "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":[1 2]}", "{\"a\":{\"b\"}}", "{\"a\":\"\\x\"}",
                "{\"a\":\"\\u12g4\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\u0000\"}",
                "{\"a\":\"\xc3\"}", "{\"a\":\"tab\there\"}", "{\"a\":\"open}",
                "{\"parts\":[1,2}",
        };
        struct reply r;

        for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++) {
                if (scan(texts[i], &r) != -1)
                        fail_msg("took %s", texts[i]);
                assert_agrees_with_jansson(texts[i], strlen(texts[i]));
        }
        /* A NUL inside the text is not whitespace. */
        assert_int_equal(reply_scan("{\"op\":\"done\"}\0", 14, &r), -1);
}

static void test_nesting_past_the_limit_is_left_to_jansson(void **state)
{
        char text[400];
        size_t n = 0;
        struct reply r;

        n += (size_t)snprintf(text + n, sizeof(text) - n, "{\"op\":\"done\",\"a\":");
        for (int i = 0; i < 100; i++)
                text[n++] = '[';
        for (int i = 0; i < 100; i++)
                text[n++] = ']';
        text[n++] = '}';
        text[n] = '\0';
        assert_int_equal(scan(text, &r), -1);
        /* Within the limit it is read. */
        assert_int_equal(scan("{\"op\":\"done\",\"a\":[[[[{\"b\":[[]]}]]]]}", &r), 0);
}

/* Every text derived from the replies above by deleting, doubling or replacing a
 * byte (a seeded walk): whenever reply_scan takes one, jansson reads the same. */
static void test_mutations_agree_with_jansson(void **state)
{
        static const char alphabet[] = "{}[]\",:\\ 0123456789.-+eEtrufalsn\x01\x7f\xc3\xa9u";
        uint64_t x = 0x9e3779b97f4a7c15u;
        char buf[1024];
        unsigned taken = 0;

        for (unsigned round = 0; round < 40000; round++) {
                const char *src = replies[round % (sizeof(replies) / sizeof(*replies))];
                size_t n = strlen(src);
                memcpy(buf, src, n);
                for (int edits = 1 + (int)(round % 3); edits > 0 && n > 0 && n < sizeof(buf) - 2; edits--) {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        size_t at = (size_t)(x % n);
                        char c = alphabet[(x >> 20) % (sizeof(alphabet) - 1)];
                        switch ((x >> 40) % 3) {
                        case 0:
                                memmove(buf + at, buf + at + 1, n - at - 1);
                                n--;
                                break;
                        case 1:
                                memmove(buf + at + 1, buf + at, n - at);
                                n++;
                                break;
                        default:
                                buf[at] = c;
                        }
                }
                struct reply r;
                taken += reply_scan(buf, n, &r) == 0;
                assert_agrees_with_jansson(buf, n);
        }
        /* The walk reaches both sides: some mutations stay valid. */
        assert_true(taken > 1000);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_kilnd_replies_read_as_jansson_does),
                cmocka_unit_test(test_the_last_of_a_repeated_key_counts),
                cmocka_unit_test(test_fields_it_does_not_take),
                cmocka_unit_test(test_malformed_text_is_refused),
                cmocka_unit_test(test_nesting_past_the_limit_is_left_to_jansson),
                cmocka_unit_test(test_mutations_agree_with_jansson),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
