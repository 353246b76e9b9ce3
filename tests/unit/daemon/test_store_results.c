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
#include <time.h>

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

/* ---- ranged reads (store_result_locate, store_result_read) ---- */

/* Puts job n as done with a pattern result of `size` bytes. */
static void put_result(struct store *s, struct store_job *j, uint64_t n, size_t size)
{
        struct store_txn *t;

        fixture_job_init(j, n, "acme", "image.relief", KILN_JOB_DONE);
        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_job_put(t, j), 0);
        assert_int_equal(store_result_put(t, j->id, size, pattern_piece, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);
}

static int locate(struct store *s, const uint8_t id[16], uint8_t blob[16], uint64_t *size)
{
        struct store_txn *t;
        int r;

        assert_int_equal(store_txn_begin(s, false, &t), 0);
        r = store_result_locate(t, id, blob, size);
        store_txn_abort(t);
        return r;
}

/* One read in its own read transaction, as the event loop makes it. */
static int read_range(struct store *s, const uint8_t blob[16], uint64_t offset, void *dst, size_t len)
{
        struct store_txn *t;
        int r;

        assert_int_equal(store_txn_begin(s, false, &t), 0);
        r = store_result_read(t, blob, offset, dst, len);
        store_txn_abort(t);
        return r;
}

/* Reads [offset, offset + len) and checks it against the pattern. */
static void assert_range(struct store *s, const uint8_t blob[16], uint64_t offset, size_t len)
{
        uint8_t *buf = malloc(len ? len : 1);

        assert_non_null(buf);
        if (read_range(s, blob, offset, buf, len) != 0)
                fail_msg("read of [%llu, +%zu) failed", (unsigned long long)offset, len);
        assert_pattern(buf, len, (size_t)offset);
        free(buf);
}

static void ranged_read_of_empty_result(void **state)
{
        struct fixture *f = *state;
        struct store_job j;
        uint8_t blob[16], b;
        uint64_t size = 99;

        put_result(f->s, &j, 1, 0);
        assert_int_equal(locate(f->s, j.id, blob, &size), 0);
        assert_memory_equal(blob, j.id, 16);
        assert_int_equal(size, 0);
        assert_int_equal(read_range(f->s, blob, 0, &b, 0), 0);
        assert_int_equal(read_range(f->s, blob, 0, &b, 1), -EINVAL);
        assert_int_equal(read_range(f->s, blob, 1, &b, 0), -EINVAL);
}

static void ranged_read_of_one_byte_result(void **state)
{
        struct fixture *f = *state;
        struct store_job j;
        uint8_t blob[16], b[2] = { 0, 0 };
        uint64_t size;

        put_result(f->s, &j, 1, 1);
        assert_int_equal(locate(f->s, j.id, blob, &size), 0);
        assert_int_equal(size, 1);
        assert_int_equal(read_range(f->s, blob, 0, b, 1), 0);
        assert_int_equal(b[0], pattern_byte(0));
        assert_int_equal(read_range(f->s, blob, 1, b, 0), 0);
        assert_int_equal(read_range(f->s, blob, 0, b, 2), -EINVAL);
        assert_int_equal(read_range(f->s, blob, 1, b, 1), -EINVAL);
        assert_int_equal(read_range(f->s, blob, 2, b, 0), -EINVAL);
}

/* A result of exactly the store's own piece size (store_set_result_chunk(0)), and one
 * of exactly one overridden piece. */
static void ranged_read_of_exactly_one_piece(void **state)
{
        struct fixture *f = *state;
        struct store_job big, j;
        uint8_t blob[16], b;
        uint64_t size, piece;

        /* the store's piece size: the first piece of a bigger result */
        put_result(f->s, &big, 1, 200000);
        assert_int_equal(locate(f->s, big.id, blob, &size), 0);
        assert_int_equal(size, 200000);
        assert_int_equal(read_range(f->s, blob, 199999, &b, 1), 0);
        assert_int_equal(b, pattern_byte(199999));
        piece = 16 * 4096 - 16; /* 16 pages of 4 KiB less the page header */
        put_result(f->s, &j, 2, piece);
        assert_int_equal(locate(f->s, j.id, blob, &size), 0);
        assert_int_equal(size, piece);
        assert_range(f->s, blob, 0, piece);
        assert_range(f->s, blob, piece - 1, 1);
        assert_int_equal(read_range(f->s, blob, piece, &b, 1), -EINVAL);
        assert_int_equal(read_range(f->s, blob, piece, &b, 0), 0);

        store_set_result_chunk(4096);
        put_result(f->s, &j, 3, 4096);
        store_set_result_chunk(0);
        assert_int_equal(locate(f->s, j.id, blob, &size), 0);
        assert_int_equal(size, 4096);
        assert_range(f->s, blob, 0, 4096);
        assert_int_equal(read_range(f->s, blob, 4095, &b, 2), -EINVAL);
}

/* Many pieces: every read that starts or ends on, just before or just after a piece
 * boundary, and ones spanning several pieces, match; so does the whole. */
static void ranged_reads_straddle_piece_boundaries(void **state)
{
        struct fixture *f = *state;
        const size_t P = 1000, size = 10 * 1000 + 123;
        const uint64_t offsets[] = { 0, 1, 998, 999, 1000, 1001, 1999, 2000, 5500, 9999, 10000, 10122 };
        const size_t lens[] = { 1, 2, 999, 1000, 1001, 2001, 3500 };
        static uint8_t buf[4000];
        struct store_job j;
        uint8_t blob[16];
        uint64_t got;

        store_set_result_chunk(P);
        put_result(f->s, &j, 1, size);
        assert_int_equal(locate(f->s, j.id, blob, &got), 0);
        assert_int_equal(got, size);
        for (size_t a = 0; a < sizeof(offsets) / sizeof(offsets[0]); a++) {
                for (size_t b = 0; b < sizeof(lens) / sizeof(lens[0]); b++) {
                        if (offsets[a] + lens[b] <= size)
                                assert_range(f->s, blob, offsets[a], lens[b]);
                        else
                                assert_int_equal(read_range(f->s, blob, offsets[a], buf, lens[b]), -EINVAL);
                }
        }
        assert_range(f->s, blob, 0, size);
        assert_range(f->s, blob, size - 123, 123);
        /* The stride is the blob's own: it reads right under another piece size. */
        store_set_result_chunk(0);
        assert_range(f->s, blob, 999, 1002);
        assert_int_equal(locate(f->s, j.id, blob, &got), 0);
        assert_int_equal(got, size);
}

/* A job answered from the cache locates the blob its alias names; a cache hit's blob
 * reads directly. */
static void ranged_read_resolves_alias_and_cache_hit(void **state)
{
        struct fixture *f = *state;
        const struct store_cache_key key = {
                .hash = { 7, 7, 7 }, .kind = "image.relief", .version = 1, .model = "", .params = "{}",
        };
        struct store_cache_hit hit;
        struct store_txn *t;
        struct store_job orig, answered;
        uint8_t blob[16];
        uint64_t size;

        store_set_result_chunk(512);
        put_result(f->s, &orig, 1, 5000);
        fixture_job_init(&answered, 2, "acme", "image.relief", KILN_JOB_DONE);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &answered), 0);
        assert_int_equal(store_result_alias(t, answered.id, orig.id), 0);
        assert_int_equal(store_cache_put(t, &key, orig.id, 5000, "cpu", 1000, UINT64_MAX), 0);
        assert_int_equal(store_cache_lookup(t, &key, 2000, 0, &hit), 0);
        assert_int_equal(store_txn_commit(t), 0);
        store_set_result_chunk(0);

        assert_int_equal(locate(f->s, answered.id, blob, &size), 0);
        assert_memory_equal(blob, orig.id, 16);
        assert_int_equal(size, 5000);
        assert_range(f->s, blob, 510, 1030);
        assert_memory_equal(hit.blob, orig.id, 16);
        assert_range(f->s, hit.blob, 4999, 1);
}

/* A piece gone from the middle, or the whole blob purged between two reads, is
 * -ENOENT; a job without a result is -ENOENT to locate. */
static void ranged_read_of_missing_pieces_is_enoent(void **state)
{
        struct fixture *f = *state;
        struct store_txn *t;
        struct store_job j;
        uint8_t blob[16], buf[2000], none[16];
        uint64_t size;

        store_set_result_chunk(1000);
        put_result(f->s, &j, 1, 5500);
        store_set_result_chunk(0);
        assert_int_equal(locate(f->s, j.id, blob, &size), 0);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_result_piece_delete_raw(t, blob, 2), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_range(f->s, blob, 0, 2000);
        assert_int_equal(read_range(f->s, blob, 1500, buf, 1000), -ENOENT);
        assert_int_equal(read_range(f->s, blob, 2000, buf, 1), -ENOENT);
        assert_range(f->s, blob, 3000, 2500);

        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_delete(t, j.id), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(read_range(f->s, blob, 0, buf, 10), -ENOENT);
        assert_int_equal(read_range(f->s, blob, 0, buf, 0), -ENOENT);
        assert_int_equal(locate(f->s, j.id, blob, &size), -ENOENT);
        fixture_job_id(none, 99, 99);
        assert_int_equal(locate(f->s, none, blob, &size), -ENOENT);
}

static void ranged_read_past_the_end_is_einval(void **state)
{
        struct fixture *f = *state;
        struct store_job j;
        uint8_t blob[16], buf[64];
        uint64_t size;

        store_set_result_chunk(1000);
        put_result(f->s, &j, 1, 3000);
        store_set_result_chunk(0);
        assert_int_equal(locate(f->s, j.id, blob, &size), 0);
        assert_int_equal(size, 3000);
        assert_range(f->s, blob, 2936, 64);
        assert_int_equal(read_range(f->s, blob, 2937, buf, 64), -EINVAL);
        assert_int_equal(read_range(f->s, blob, 3000, buf, 1), -EINVAL);
        assert_int_equal(read_range(f->s, blob, 3001, buf, 0), -EINVAL);
        assert_int_equal(read_range(f->s, blob, 5000, buf, 1), -EINVAL);
        assert_int_equal(read_range(f->s, blob, UINT64_MAX, buf, 2), -EINVAL);
        assert_int_equal(read_range(f->s, blob, (uint64_t)UINT32_MAX * 1000 + 5, buf, 1), -EINVAL);
}

static double elapsed_ns(const struct timespec *a, const struct timespec *b)
{
        return (double)(b->tv_sec - a->tv_sec) * 1e9 + (double)(b->tv_nsec - a->tv_nsec);
}

/* What one streamed piece costs the event loop: a read transaction, a read of 16 KiB
 * from a 4 MiB result, and its end. Reported, not asserted (the figure depends on the
 * machine); the bytes are checked. */
static void ranged_read_cost_per_call(void **state)
{
        enum { N = 20000, LEN = 16384 };
        struct fixture *f = *state;
        static uint8_t buf[LEN];
        struct timespec a, b, c;
        struct store_txn *t;
        struct store_job j;
        uint8_t blob[16];
        uint64_t size, off = 0;

        put_result(f->s, &j, 1, 4u << 20);
        assert_int_equal(locate(f->s, j.id, blob, &size), 0);
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < N; i++) {
                assert_int_equal(store_txn_begin(f->s, false, &t), 0);
                store_txn_abort(t);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        for (int i = 0; i < N; i++) {
                off = (uint64_t)i * LEN % (size - LEN);
                assert_int_equal(store_txn_begin(f->s, false, &t), 0);
                assert_int_equal(store_result_read(t, blob, off, buf, LEN), 0);
                store_txn_abort(t);
        }
        clock_gettime(CLOCK_MONOTONIC, &c);
        assert_pattern(buf, LEN, (size_t)off);
        print_message("read txn begin+abort: %.2f us; begin+read of %d bytes+abort: %.2f us\n",
                      elapsed_ns(&a, &b) / N / 1000, LEN, elapsed_ns(&b, &c) / N / 1000);
}

static const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(result_of_32_mib_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(result_in_many_pieces_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(results_put_in_any_order_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_result_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(ranged_read_of_empty_result, setup, teardown),
        cmocka_unit_test_setup_teardown(ranged_read_of_one_byte_result, setup, teardown),
        cmocka_unit_test_setup_teardown(ranged_read_of_exactly_one_piece, setup, teardown),
        cmocka_unit_test_setup_teardown(ranged_reads_straddle_piece_boundaries, setup, teardown),
        cmocka_unit_test_setup_teardown(ranged_read_resolves_alias_and_cache_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(ranged_read_of_missing_pieces_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(ranged_read_past_the_end_is_einval, setup, teardown),
        cmocka_unit_test_setup_teardown(ranged_read_cost_per_call, setup, teardown),
};

int main(void)
{
        return cmocka_run_group_tests(tests, NULL, NULL);
}
