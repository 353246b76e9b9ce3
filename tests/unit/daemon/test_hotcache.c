/* daemon/hotcache.c: in-memory copies of cache hits; which ones a sweep drops. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hotcache.h"
#include "store.h"
#include "store_fixture.h"
#include "store_impl.h"

#define ID "01a2b3c4-0000-7000-8000-000000000000"
#define TTL_S 60

static int setup(void **state)
{
        return store_fixture_setup(state, "hotcache");
}

static int teardown(void **state)
{
        hotcache_clear();
        return store_fixture_teardown(state);
}

/* A copy of the hit `n`, found at created_ms, at the store's generation now. */
static void put(struct fixture *f, uint8_t n, int64_t created_ms)
{
        struct store_cache_key key = { .kind = "lens.nfw", .version = 1, .model = "", .params = "{}" };
        struct store_cache_hit hit = { .size = 64, .created_ms = created_ms,
                                       .generation = store_cache_generation(f->s) };
        struct kiln_result result = { 0 };
        struct hot_source src = { .key = &key, .id_text = ID, .done_json = "{\"op\":\"done\",\"job\":\"" ID "\"}",
                                  .backend = "cpu", .result = &result, .blob_size = 64, .hit = &hit };
        uint8_t *blob = calloc(1, 64);

        key.hash[0] = n;
        hit.blob[0] = n;
        assert_non_null(blob);
        struct hot_entry *e = hotcache_put(f->s, &src, &blob);
        assert_non_null(e);
        assert_null(blob);
        hot_entry_unref(e); /* the table's reference stays */
}

/* Expired copies go at the sweep after their expiry, with the store's cache
 * unchanged (its generation the one they were found at), also when they were put
 * after a sweep that left no copies; the others stay. */
static void test_a_sweep_drops_expired_copies(void **state)
{
        struct fixture *f = *state;
        int64_t now = 1000000000;

        put(f, 1, now - (TTL_S + 1) * 1000); /* expired */
        put(f, 2, now);
        size_t both = hotcache_bytes();
        assert_true(both > 0);
        hotcache_sweep(f->s, TTL_S, now);
        size_t one = hotcache_bytes();
        assert_true(one > 0 && one < both);
        hotcache_sweep(f->s, TTL_S, now + (TTL_S + 1) * 1000);
        assert_int_equal(hotcache_bytes(), 0);
        put(f, 3, now + (TTL_S + 2) * 1000);
        hotcache_sweep(f->s, TTL_S, now + (TTL_S + 3) * 1000);
        assert_int_equal(hotcache_bytes(), one); /* not expired yet */
        hotcache_sweep(f->s, TTL_S, now + (2 * TTL_S + 3) * 1000);
        assert_int_equal(hotcache_bytes(), 0);
}

/* A change in the store's cache (its generation moved) makes every copy stale: the
 * next sweep drops them all. With no ttl, nothing expires. */
static void test_a_sweep_drops_copies_of_an_older_generation(void **state)
{
        struct fixture *f = *state;
        int64_t now = 1000000000;

        put(f, 1, now - 10 * TTL_S * 1000);
        put(f, 2, now);
        hotcache_sweep(f->s, 0, now);
        size_t both = hotcache_bytes();
        assert_true(both > 0);
        atomic_fetch_add(&f->s->cache_gen, 1); /* as a purge, expiry or eviction does */
        hotcache_sweep(f->s, 0, now);
        assert_int_equal(hotcache_bytes(), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_a_sweep_drops_expired_copies, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_sweep_drops_copies_of_an_older_generation, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
