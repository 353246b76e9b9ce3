/* The store's results: values stored in pieces (daemon/store_results.c). Shared
 * result blobs and the cache are in test_cache.c. Every test works in its own
 * directory under $KILN_TEST_TMPDIR. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "store.h"
#include "store_internal.h"
#include "store_fixture.h"

static int setup(void **state)
{
        return store_fixture_setup(state, "store");
}

static int teardown(void **state)
{
        return store_fixture_teardown(state);
}

static void result_of_32_mib_round_trips(void **state)
{
        struct fixture *f = *state;
        const size_t size = 32u << 20;
        struct store_txn *t;
        struct store_job j;
        uint8_t *data;
        size_t got_size;

        fixture_job_init(&j, 1, "acme", "image.relief", KILN_JOB_DONE);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &j), 0);
        assert_int_equal(store_result_put(t, j.id, size, pattern_piece, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);

        store_fixture_reopen(f, STORE_SYNC_FULL);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_result_get(t, j.id, &data, &got_size), 0);
        store_txn_abort(t);
        assert_int_equal(got_size, size);
        for (size_t i = 0; i < size; i++)
                if (data[i] != pattern_byte(i))
                        fail_msg("byte %zu differs", i);
        free(data);
}

/* Results are stored in pieces; a result of many pieces (and one that is an exact
 * multiple of the piece size) reads back whole, replacing one shrinks it, and delete
 * removes every piece. */
static void result_in_many_pieces_round_trips(void **state)
{
        struct fixture *f = *state;
        const size_t sizes[] = { 10 * 4096 + 123, 4 * 4096, 1 };
        struct store_txn *t;
        struct store_job j;
        uint8_t *data;
        size_t got_size;

        store_set_result_chunk(4096);
        fixture_job_init(&j, 1, "acme", "lens.nfw", KILN_JOB_DONE);
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
                assert_int_equal(store_txn_begin(f->s, true, &t), 0);
                assert_int_equal(store_job_put(t, &j), 0);
                assert_int_equal(store_result_put(t, j.id, sizes[k], pattern_piece, NULL), 0);
                assert_int_equal(store_txn_commit(t), 0);
                assert_int_equal(store_txn_begin(f->s, false, &t), 0);
                assert_int_equal(store_result_get(t, j.id, &data, &got_size), 0);
                store_txn_abort(t);
                assert_int_equal(got_size, sizes[k]);
                for (size_t i = 0; i < got_size; i++)
                        if (data[i] != pattern_byte(i))
                                fail_msg("size %zu: byte %zu differs", sizes[k], i);
                free(data);
        }
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_delete(t, j.id), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_result_get(t, j.id, &data, &got_size), -ENOENT);
        store_txn_abort(t);
        store_set_result_chunk(0);
}

/* Results written in id order take the append path, others the normal one; mixed
 * in one transaction, replaced with more or fewer pieces, every one reads back. */
static void id_piece(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        uint64_t n = *(const uint64_t *)opaque;

        for (size_t i = 0; i < len; i++)
                dst[i] = pattern_byte(offset + i + n);
}

static void results_put_in_any_order_read_back(void **state)
{
        enum { N = 300 };
        struct fixture *f = *state;
        struct store_txn *t;
        struct store_job j;
        size_t sizes[N];
        uint8_t *data;
        size_t got;

        store_set_result_chunk(1000);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        for (uint64_t k = 0; k < N; k++) {
                /* first a run in order, then scrambled, then a run backwards */
                uint64_t n = k < 100 ? k : k < 200 ? 100 + (k * 37) % 100 : 499 - k;
                sizes[n] = 1 + (n * 613) % 3500;
                fixture_job_init(&j, n, "acme", "lens.nfw", KILN_JOB_DONE);
                assert_int_equal(store_job_put(t, &j), 0);
                assert_int_equal(store_result_put(t, j.id, sizes[n], id_piece, &n), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);
        /* replace every seventh, growing some and shrinking others */
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        for (uint64_t n = 0; n < N; n += 7) {
                sizes[n] = n % 2 ? 1 : 4500;
                fixture_job_init(&j, n, "acme", "lens.nfw", KILN_JOB_DONE);
                assert_int_equal(store_result_put(t, j.id, sizes[n], id_piece, &n), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);

        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        for (uint64_t n = 0; n < N; n++) {
                fixture_job_init(&j, n, "acme", "lens.nfw", KILN_JOB_DONE);
                assert_int_equal(store_result_get(t, j.id, &data, &got), 0);
                assert_int_equal(got, sizes[n]);
                for (size_t i = 0; i < got; i++)
                        if (data[i] != pattern_byte(i + n))
                                fail_msg("job %llu: byte %zu differs", (unsigned long long)n, i);
                free(data);
        }
        store_txn_abort(t);
        store_set_result_chunk(0);
}

static void missing_result_is_enoent(void **state)
{
        struct fixture *f = *state;
        struct store_txn *t;
        uint8_t id[16], *data = NULL;
        size_t size = 5;

        fixture_job_id(id, 1, 1);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_result_get(t, id, &data, &size), -ENOENT);
        store_txn_abort(t);
        assert_null(data);
        assert_int_equal(size, 5);
}

static const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(result_of_32_mib_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(result_in_many_pieces_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(results_put_in_any_order_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_result_is_enoent, setup, teardown),
};

int main(void)
{
        return cmocka_run_group_tests(tests, NULL, NULL);
}
