/* xjson: the JSON reader behind risk.model reads what jansson reads, refuses what
 * is not JSON with a line and column, and reads XGBoost's non-finite tokens as null. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "zeros_json.h"
#include "risk_score/xjson.h"

static struct xj_doc *parse_ok(const char *text)
{
        struct xj_doc *doc = NULL;
        struct xj_error err;
        int r = xj_parse(text, strlen(text), &doc, &err);

        if (r < 0)
                fail_msg("refused %s: %s at %d:%d", text, err.text, err.line, err.column);
        return doc;
}

static void refused(const char *text, int line, int column)
{
        struct xj_doc *doc = NULL;
        struct xj_error err;

        if (xj_parse(text, strlen(text), &doc, &err) != -EINVAL)
                fail_msg("accepted %s", text);
        assert_null(doc);
        assert_true(strlen(err.text) > 3);
        assert_false(err.nomem);
        if (line)
                assert_int_equal(err.line, line);
        if (column)
                assert_int_equal(err.column, column);
}

static void test_scalars_and_containers(void **state)
{
        struct xj_doc *doc = parse_ok(" {\"a\": [1, -2, 3.5, -0, 1e2, true, false, null, \"x\"], \"b\": {}, \"c\": []}\n");
        const struct xj_value *root = xj_root(doc), *a = xj_get(root, "a");

        assert_true(xj_is(root, XJ_OBJECT));
        assert_int_equal(root->n, 3);
        assert_int_equal(xj_size(a), 9);
        assert_true(xj_is(xj_at(a, 0), XJ_INT) && xj_at(a, 0)->i == 1);
        assert_true(xj_is(xj_at(a, 1), XJ_INT) && xj_at(a, 1)->i == -2);
        assert_true(xj_is(xj_at(a, 2), XJ_REAL) && xj_at(a, 2)->d == 3.5);
        assert_true(xj_is(xj_at(a, 3), XJ_INT) && xj_at(a, 3)->i == 0);
        assert_true(xj_is(xj_at(a, 4), XJ_REAL) && xj_number(xj_at(a, 4)) == 100.0);
        assert_true(xj_is(xj_at(a, 5), XJ_BOOL) && xj_at(a, 5)->b);
        assert_true(xj_is(xj_at(a, 6), XJ_BOOL) && !xj_at(a, 6)->b);
        assert_true(xj_is(xj_at(a, 7), XJ_NULL));
        assert_true(xj_is(xj_at(a, 8), XJ_STRING) && !strcmp(xj_at(a, 8)->s, "x"));
        assert_null(xj_at(a, 9));
        assert_true(xj_is(xj_get(root, "b"), XJ_OBJECT) && xj_get(root, "b")->n == 0);
        assert_int_equal(xj_size(xj_get(root, "c")), 0);
        assert_null(xj_get(root, "d"));
        assert_null(xj_get(a, "a"));
        assert_null(xj_get(NULL, "a"));
        xj_free(doc);
        xj_free(NULL);
}

static void test_strings_are_decoded(void **state)
{
        struct xj_doc *doc = parse_ok("[\"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20ac\\ud83d\\ude00\", \"\xc3\xa9\","
                                      " \"a\\u0000b\"]");
        const struct xj_value *a = xj_root(doc);

        assert_string_equal(xj_at(a, 0)->s, "q\"b\\s/\b\f\n\r\t");
        assert_string_equal(xj_at(a, 1)->s, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
        assert_string_equal(xj_at(a, 2)->s, "\xc3\xa9");
        assert_int_equal(xj_at(a, 3)->n, 3);
        assert_memory_equal(xj_at(a, 3)->s, "a\0b", 3);
        xj_free(doc);
}

/* XGBoost's NaN / Infinity tokens are null outside strings and text inside them. */
static void test_nonfinite_tokens_read_as_null(void **state)
{
        struct xj_doc *doc = parse_ok("[NaN, Infinity, -Infinity, \"NaN\", -1]");
        const struct xj_value *a = xj_root(doc);

        for (int i = 0; i < 3; i++)
                assert_true(xj_is(xj_at(a, (size_t)i), XJ_NULL));
        assert_string_equal(xj_at(a, 3)->s, "NaN");
        assert_true(xj_at(a, 4)->i == -1);
        xj_free(doc);
}

static void test_numbers_as_strtod_reads_them(void **state)
{
        struct xj_doc *doc = parse_ok("[9223372036854775807, -9223372036854775808, 9223372036854775808, 1e400,"
                                      " 0.1, 1.00000011920928955078125, -1E-45, 123456789012345678901234567890.5]");
        const struct xj_value *a = xj_root(doc);

        assert_true(xj_is(xj_at(a, 0), XJ_INT) && xj_at(a, 0)->i == INT64_MAX);
        assert_true(xj_is(xj_at(a, 1), XJ_INT) && xj_at(a, 1)->i == INT64_MIN);
        assert_true(xj_is(xj_at(a, 2), XJ_REAL) && xj_at(a, 2)->d == 9223372036854775808.0);
        assert_true(isinf(xj_at(a, 3)->d));
        assert_true(xj_at(a, 4)->d == 0.1);
        assert_true((float)xj_at(a, 5)->d == 1.00000011920928955078125f);
        assert_true(xj_at(a, 6)->d == -1e-45);
        assert_true(xj_at(a, 7)->d == 123456789012345678901234567890.5);
        xj_free(doc);
}

static void test_what_is_not_json_is_refused_with_its_place(void **state)
{
        refused("", 1, 1);
        refused("   ", 1, 4);
        refused("{\"a\": 1,}", 1, 9);
        refused("[1 2]", 1, 4);
        refused("{\"a\" 1}", 1, 6);
        refused("{1: 2}", 1, 2);
        refused("[01]", 1, 3);
        refused("[1.]", 1, 2);
        refused("[.5]", 1, 2);
        refused("[1e]", 1, 2);
        refused("[-]", 1, 2);
        refused("[+1]", 1, 2);
        refused("[tru]", 1, 2);
        refused("[nan]", 1, 2);
        refused("[\"a]", 1, 2);
        refused("[\"a\\x\"]", 1, 4);
        refused("[\"\\u12\"]", 1, 3);
        refused("[\"\\ud800\"]", 1, 3);
        refused("[\"\\udc00\"]", 1, 3);
        refused("[\"\x01\"]", 1, 3);
        refused("[\"\xc3\"]", 1, 3);
        refused("[\"\xc0\xaf\"]", 1, 3);
        refused("[\"\xed\xa0\x80\"]", 1, 3);
        refused("{\"a\": 1,\n \"a\": 2}", 1, 1);
        refused("[1]\n x", 2, 2);
        refused("[1", 1, 3);
}

static void test_duplicates_in_large_objects_are_found(void **state)
{
        char text[8192];
        size_t o = 0;

        o += (size_t)snprintf(text + o, sizeof(text) - o, "{");
        for (int i = 0; i < 100; i++)
                o += (size_t)snprintf(text + o, sizeof(text) - o, "\"k%d\": %d,", i, i);
        snprintf(text + o, sizeof(text) - o, "\"k57\": 0}");
        refused(text, 1, 1);
        text[o - 1] = '}';
        text[o] = '\0';
        struct xj_doc *doc = parse_ok(text);
        assert_int_equal(xj_root(doc)->n, 100);
        assert_true(xj_get(xj_root(doc), "k99")->i == 99);
        xj_free(doc);
}

/* A parse capped at max_bytes: 100,000 one-digit values take 1.6 MB as values and
 * up to 6.4 MB while their array is open, so 4 MB is too little and 16 MB enough;
 * what was taken is freed either way (ASan checks). */
static void test_a_capped_parse_refuses_what_needs_more(void **state)
{
        size_t n = 100000, len;
        char *text = zeros_json(n, &len);
        struct xj_doc *doc = NULL;
        struct xj_error err;

        (void)state;
        assert_non_null(text);
        assert_int_equal(xj_parse_capped(text, len, (size_t)4 << 20, &doc, &err), -E2BIG);
        assert_null(doc);
        assert_false(err.nomem);
        assert_non_null(strstr(err.text, "more memory than allowed"));
        assert_int_equal(xj_parse_capped(text, len, (size_t)16 << 20, &doc, &err), 0);
        assert_int_equal(xj_root(doc)->n, n);
        xj_free(doc);
        assert_int_equal(xj_parse(text, len, &doc, &err), 0);
        xj_free(doc);
        free(text);
}

static void test_nesting_is_limited(void **state)
{
        char text[2 * (XJ_MAX_DEPTH + 2) + 1];
        int d = XJ_MAX_DEPTH;

        memset(text, '[', (size_t)d);
        memset(text + d, ']', (size_t)d);
        text[2 * d] = '\0';
        xj_free(parse_ok(text));
        d = XJ_MAX_DEPTH + 1;
        memset(text, '[', (size_t)d);
        memset(text + d, ']', (size_t)d);
        text[2 * d] = '\0';
        refused(text, 1, XJ_MAX_DEPTH + 1);
}

/* Random documents written by jansson read back as the same values. */
static json_t *random_json(unsigned *seed, int depth)
{
        unsigned k = (unsigned)rand_r(seed) % (depth > 3 ? 5u : 7u);

        switch (k) {
        case 0: return json_integer((json_int_t)rand_r(seed) - RAND_MAX / 2);
        case 1: return json_real((double)rand_r(seed) / 7.0e3 - 1e5);
        case 2: {
                char s[8];
                for (int i = 0; i < 7; i++)
                        s[i] = (char)(' ' + rand_r(seed) % 95);
                s[7] = '\0';
                return json_string(s);
        }
        case 3: return json_null();
        case 4: return json_boolean(rand_r(seed) & 1);
        case 5: {
                json_t *a = json_array();
                for (int i = rand_r(seed) % 6; i > 0; i--)
                        json_array_append_new(a, random_json(seed, depth + 1));
                return a;
        }
        default: {
                json_t *o = json_object();
                for (int i = rand_r(seed) % 6; i > 0; i--) {
                        char key[8];
                        snprintf(key, sizeof(key), "k%d", rand_r(seed) % 50);
                        json_object_set_new(o, key, random_json(seed, depth + 1));
                }
                return o;
        }
        }
}

static void same(const json_t *j, const struct xj_value *v)
{
        switch (json_typeof(j)) {
        case JSON_INTEGER: assert_true(xj_is(v, XJ_INT) && v->i == json_integer_value(j)); break;
        case JSON_REAL: assert_true(xj_is_number(v) && xj_number(v) == json_real_value(j)); break;
        case JSON_STRING: assert_true(xj_is(v, XJ_STRING) && !strcmp(v->s, json_string_value(j))); break;
        case JSON_NULL: assert_true(xj_is(v, XJ_NULL)); break;
        case JSON_TRUE: assert_true(xj_is(v, XJ_BOOL) && v->b); break;
        case JSON_FALSE: assert_true(xj_is(v, XJ_BOOL) && !v->b); break;
        case JSON_ARRAY:
                assert_int_equal(xj_size(v), json_array_size(j));
                for (size_t i = 0; i < json_array_size(j); i++)
                        same(json_array_get(j, i), xj_at(v, i));
                break;
        case JSON_OBJECT: {
                const char *key;
                json_t *m;
                assert_true(xj_is(v, XJ_OBJECT));
                assert_int_equal(v->n, json_object_size(j));
                json_object_foreach((json_t *)j, key, m) same(m, xj_get(v, key));
                break;
        }
        }
}

static void test_reads_what_jansson_writes(void **state)
{
        unsigned seed = 12345;

        for (int i = 0; i < 300; i++) {
                json_t *j = random_json(&seed, 0);
                char *text = json_dumps(j, JSON_ENCODE_ANY | (i & 1 ? JSON_INDENT(2) : JSON_COMPACT));
                struct xj_doc *doc = parse_ok(text);
                same(j, xj_root(doc));
                xj_free(doc);
                free(text);
                json_decref(j);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_scalars_and_containers),
                cmocka_unit_test(test_strings_are_decoded),
                cmocka_unit_test(test_nonfinite_tokens_read_as_null),
                cmocka_unit_test(test_numbers_as_strtod_reads_them),
                cmocka_unit_test(test_what_is_not_json_is_refused_with_its_place),
                cmocka_unit_test(test_duplicates_in_large_objects_are_found),
                cmocka_unit_test(test_a_capped_parse_refuses_what_needs_more),
                cmocka_unit_test(test_nesting_is_limited),
                cmocka_unit_test(test_reads_what_jansson_writes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
