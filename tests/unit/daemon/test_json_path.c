/* Unit tests for the path of a JSON value at a byte offset (daemon/json_path.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "json_path.h"

/* The path json_path_at names where jansson refuses text. */
static void expect_refused_at(const char *text, const char *path)
{
        json_error_t e;
        char buf[128];
        json_t *j = json_loadb(text, strlen(text), JSON_REJECT_DUPLICATES, &e);

        assert_null(j);
        assert_int_equal(json_path_at(text, strlen(text), (size_t)e.position, buf, sizeof(buf)), 0);
        assert_string_equal(buf, path);
}

static void test_names_what_jansson_cannot_hold(void **state)
{
        (void)state;
        expect_refused_at("{\"k\":99999999999999999999}", "k");
        expect_refused_at("{\"a\":{\"b\":1,\"k\":-99999999999999999999}}", "a.k");
        expect_refused_at("{\"a\" : [ 1 , {\"x\":[]}, 1e999 ]}", "a[2]");
        expect_refused_at("[[1,2],[3,[4,99999999999999999999]]]", "[1][1][1]");
        expect_refused_at("{\"s\":\"a,]}\\\"\",\"k\":1e400}", "k");
        expect_refused_at("{\"a\":{\"x\":1},\"a\":2}", "a");
        expect_refused_at("{\"p\":{\"x\":1,\"y\":{},\"x\":2}}", "p.x");
        expect_refused_at("{\"we\\\"ird\":1e999}", "we\\\"ird");
}

static void test_no_path(void **state)
{
        char buf[16] = "unchanged";

        (void)state;
        assert_int_equal(json_path_at("", 0, 0, buf, sizeof(buf)), -1);
        assert_int_equal(json_path_at("{\"a\":1}", 7, 1, buf, sizeof(buf)), -1); /* only the '{' */
        assert_int_equal(json_path_at("]", 1, 1, buf, sizeof(buf)), -1);
        assert_int_equal(json_path_at("{\"a\":1}", 7, 7, buf, 0), -1);
}

static void test_too_deep_and_too_long(void **state)
{
        char deep[2 * JSON_PATH_MAX_DEPTH + 8], buf[8];
        size_t n = 0;

        (void)state;
        for (int i = 0; i <= JSON_PATH_MAX_DEPTH; i++)
                deep[n++] = '[';
        deep[n++] = '1';
        assert_int_equal(json_path_at(deep, n, n, buf, sizeof(buf)), -1);
        /* A path longer than the buffer is cut, still terminated. */
        assert_int_equal(json_path_at("{\"abcdefghij\":1}", 16, 15, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "abcdefg");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names_what_jansson_cannot_hold),
                cmocka_unit_test(test_no_path),
                cmocka_unit_test(test_too_deep_and_too_long),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
