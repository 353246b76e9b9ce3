/* Unit tests for one JSON value checked and copied compactly (daemon/json_compact.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_compact.h"

/* `text` is one value, written compactly as `want`, which jansson reads as the same value. */
static void expect_compact(const char *text, const char *want)
{
        size_t len = strlen(text), pos = 0, n = 0, n_only = 0;
        char *out = malloc(len + 1);

        assert_int_equal(json_value_compact(text, len, &pos, NULL, &n_only), 0);
        assert_int_equal(pos, len);
        pos = 0;
        assert_int_equal(json_value_compact(text, len, &pos, out, &n), 0);
        assert_int_equal(pos, len);
        assert_int_equal(n, n_only);
        out[n] = '\0';
        assert_string_equal(out, want);
        json_t *a = json_loads(text, JSON_DECODE_ANY, NULL), *b = json_loads(out, JSON_DECODE_ANY, NULL);
        assert_non_null(a);
        assert_true(json_equal(a, b));
        json_decref(a);
        json_decref(b);
        free(out);
}

/* No value begins at the start of `text`, and jansson agrees. */
static void expect_refused(const char *text, size_t len)
{
        size_t pos = 0;
        int r = json_value_compact(text, len, &pos, NULL, NULL);
        assert_true(r < 0 || pos != len);
        assert_null(json_loadb(text, len, JSON_DECODE_ANY, NULL));
}

static void test_values_are_copied_without_white_space(void **state)
{
        (void)state;
        expect_compact("0", "0");
        expect_compact(" -12.5e+3 ", "-12.5e+3");
        expect_compact("true", "true");
        expect_compact("[ ]", "[]");
        expect_compact("{ }", "{}");
        expect_compact(" [ 1 , \"a b\" , null , false ,{ \"k\" :\t[\n{}\r]} ] ", "[1,\"a b\",null,false,{\"k\":[{}]}]");
        expect_compact("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"",
                       "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"");
        expect_compact("[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]", "[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]");
}

static void test_what_is_not_json_is_refused(void **state)
{
        static const char *const bad[] = {
                "", " ", "[", "]", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{1:2}", "{\"a\" 1}",
                "01", "1.", ".5", "-", "1e", "1e+", "+1", "tru", "nul", "True", "\"abc", "\"\\x\"", "\"\\u12G4\"",
                "\"\\u12\"", "\"a\x01\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"",
                "\"\x80\"", "[1] 2", "[1]]", "{\"a\":1}}",
        };
        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_refused(bad[i], strlen(bad[i]));
        expect_refused("\"a\0b\"", 5); /* a NUL inside a string */
}

static void test_nesting_is_bounded(void **state)
{
        char deep[2 * JSON_COMPACT_MAX_DEPTH + 3];
        size_t pos = 0;
        (void)state;
        for (int d = 0; d < JSON_COMPACT_MAX_DEPTH; d++)
                deep[d] = '[', deep[2 * JSON_COMPACT_MAX_DEPTH - 1 - d] = ']';
        assert_int_equal(json_value_compact(deep, 2 * JSON_COMPACT_MAX_DEPTH, &pos, NULL, NULL), 0);
        memmove(deep + 1, deep, 2 * JSON_COMPACT_MAX_DEPTH);
        deep[0] = '[';
        deep[2 * JSON_COMPACT_MAX_DEPTH + 1] = ']';
        pos = 0;
        assert_int_equal(json_value_compact(deep, 2 * JSON_COMPACT_MAX_DEPTH + 2, &pos, NULL, NULL), -1);
}

/* Values one after another: each call reads one and stops past the white space after it. */
static void test_reads_one_value_at_a_time(void **state)
{
        const char *text = "{\"a\":[1, 2]}  \"x\" 3";
        size_t pos = 0, n;
        (void)state;
        assert_int_equal(json_value_compact(text, strlen(text), &pos, NULL, &n), 0);
        assert_int_equal(pos, 14);
        assert_int_equal(n, 11);
        assert_int_equal(json_value_compact(text, strlen(text), &pos, NULL, &n), 0);
        assert_int_equal(pos, 18);
        assert_int_equal(json_value_compact(text, strlen(text), &pos, NULL, &n), 0);
        assert_int_equal(pos, strlen(text));
        assert_int_equal(json_value_compact(text, strlen(text), &pos, NULL, &n), -1);
}

/* A member's value is found without the others being read into anything. */
static void test_object_members_are_found_by_key(void **state)
{
        const char *text = " {\"ref\":7, \"op\" : \"done\",\"result\":{\"ids\":[[\"a\",\"b\"]],\"parts\":1},"
                           "\"parts\":[{\"name\":\"scores\"}] , \"e\\u0073c\":1} ";
        size_t at, n;
        (void)state;
        assert_int_equal(json_object_member(text, strlen(text), "op", &at, &n), 0);
        assert_memory_equal(text + at, "\"done\"", n);
        assert_int_equal(n, 6);
        /* The top-level "parts", not the one inside "result". */
        assert_int_equal(json_object_member(text, strlen(text), "parts", &at, &n), 0);
        assert_int_equal(n, strlen("[{\"name\":\"scores\"}]"));
        assert_memory_equal(text + at, "[{\"name\":\"scores\"}]", n);
        assert_int_equal(json_object_member(text, strlen(text), "ids", &at, &n), -1);
        assert_int_equal(json_object_member(text, strlen(text), "esc", &at, &n), -1); /* written with an escape */
        assert_int_equal(json_object_member(text, strlen(text), "e\\u0073c", &at, &n), 0);
        /* A member holding a value as deep as json_value_compact takes, one level down. */
        char deep[2 * JSON_COMPACT_MAX_DEPTH + 64];
        size_t o = (size_t)sprintf(deep, "{\"result\":{\"v\":");
        for (int d = 0; d < JSON_COMPACT_MAX_DEPTH; d++)
                deep[o++] = '[';
        for (int d = 0; d < JSON_COMPACT_MAX_DEPTH; d++)
                deep[o++] = ']';
        o += (size_t)sprintf(deep + o, "},\"parts\":[]}");
        assert_int_equal(json_object_member(deep, o, "parts", &at, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(json_object_member("[1]", 3, "op", &at, &n), -1);
        assert_int_equal(json_object_member("{}", 2, "op", &at, &n), -1);
        assert_int_equal(json_object_member("{\"op\":", 6, "op", &at, &n), -1);
        assert_int_equal(json_object_member("{\"a\":1 \"op\":2}", 15, "op", &at, &n), -1);
}

/* Members one by one, in order, to the closing brace; trailing text is refused. */
static void test_object_members_are_walked_in_order(void **state)
{
        const char *text = " { \"a\" : [1, 2] , \"b\":{} } ";
        struct json_member m;
        size_t pos = 0;
        (void)state;
        assert_int_equal(json_object_next(text, strlen(text), &pos, &m), 1);
        assert_memory_equal(text + m.key_at, "\"a\"", m.key_len);
        assert_memory_equal(text + m.value_at, "[1, 2]", m.value_len);
        assert_int_equal(json_object_next(text, strlen(text), &pos, &m), 1);
        assert_memory_equal(text + m.key_at, "\"b\"", m.key_len);
        assert_int_equal(m.value_len, 2);
        assert_int_equal(json_object_next(text, strlen(text), &pos, &m), 0);
        pos = 0;
        assert_int_equal(json_object_next("{}", 2, &pos, &m), 0);
        pos = 0;
        assert_int_equal(json_object_next("{} x", 4, &pos, &m), -1);
        pos = 0;
        assert_int_equal(json_object_next("{\"a\":1}]", 8, &pos, &m), 1);
        assert_int_equal(json_object_next("{\"a\":1}]", 8, &pos, &m), -1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_values_are_copied_without_white_space),
                cmocka_unit_test(test_what_is_not_json_is_refused),
                cmocka_unit_test(test_nesting_is_bounded),
                cmocka_unit_test(test_reads_one_value_at_a_time),
                cmocka_unit_test(test_object_members_are_found_by_key),
                cmocka_unit_test(test_object_members_are_walked_in_order),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
