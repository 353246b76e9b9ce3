/* The token bucket and counter table behind limits.rate_per_s, limits.burst and the
 * per-tenant job counts (daemon/limiter.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "limiter.h"

static void test_new_bucket_allows_burst_then_refuses(void **state)
{
        struct token_bucket b = { 0 };
        int passed = 0;
        for (int i = 0; i < 20; i++)
                passed += token_bucket_take(&b, 10.0, 5.0, 1000000);
        assert_int_equal(passed, 5);
}

static void test_bucket_refills_at_rate(void **state)
{
        struct token_bucket b = { 0 };
        for (int i = 0; i < 5; i++)
                assert_true(token_bucket_take(&b, 10.0, 5.0, 1000000));
        assert_false(token_bucket_take(&b, 10.0, 5.0, 1000000));
        /* 10 per second: 0.25 s later two more (2.5 tokens). */
        assert_true(token_bucket_take(&b, 10.0, 5.0, 1250000));
        assert_true(token_bucket_take(&b, 10.0, 5.0, 1250000));
        assert_false(token_bucket_take(&b, 10.0, 5.0, 1250000));
}

static void test_bucket_never_exceeds_burst(void **state)
{
        struct token_bucket b = { 0 };
        assert_true(token_bucket_take(&b, 100.0, 3.0, 1000000));
        int passed = 0;
        for (int i = 0; i < 10; i++)
                passed += token_bucket_take(&b, 100.0, 3.0, 1000000000);
        assert_int_equal(passed, 3);
}

static void test_zero_rate_is_unlimited(void **state)
{
        struct token_bucket b = { 0 };
        for (int i = 0; i < 100000; i++)
                assert_true(token_bucket_take(&b, 0.0, 1.0, 1000000));
}

static void test_clock_going_backwards_adds_nothing(void **state)
{
        struct token_bucket b = { 0 };
        assert_true(token_bucket_take(&b, 1.0, 1.0, 5000000));
        assert_false(token_bucket_take(&b, 1.0, 1.0, 1000000));
        assert_false(token_bucket_take(&b, 1.0, 1.0, 5000000));
}

static void test_map_creates_finds_and_keeps_entries(void **state)
{
        struct limits_map *m = limits_map_new();
        assert_non_null(m);
        assert_null(limits_map_find(m, "acme"));
        struct limits_entry *a = limits_map_get(m, "acme");
        assert_non_null(a);
        a->active = 7;
        char name[32];
        for (int i = 0; i < 1000; i++) {
                snprintf(name, sizeof(name), "tenant-%d", i);
                struct limits_entry *e = limits_map_get(m, name);
                assert_non_null(e);
                e->active = (uint32_t)i;
        }
        assert_int_equal(limits_map_count(m), 1001);
        assert_ptr_equal(limits_map_get(m, "acme"), a);
        assert_int_equal(limits_map_find(m, "acme")->active, 7);
        assert_int_equal(limits_map_find(m, "tenant-500")->active, 500);
        limits_map_free(m);
        limits_map_free(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_new_bucket_allows_burst_then_refuses),
                cmocka_unit_test(test_bucket_refills_at_rate),
                cmocka_unit_test(test_bucket_never_exceeds_burst),
                cmocka_unit_test(test_zero_rate_is_unlimited),
                cmocka_unit_test(test_clock_going_backwards_adds_nothing),
                cmocka_unit_test(test_map_creates_finds_and_keeps_entries),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
