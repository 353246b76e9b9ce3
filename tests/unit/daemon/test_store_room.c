/* The store's free room (store_room in daemon/store.c): what the map and the file
 * system can still take, shrinking as results are written and coming back through
 * LMDB's freelist when they are deleted. Every test works in its own directory under
 * $KILN_TEST_TMPDIR. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include <setjmp.h>
#include <cmocka.h>

#include "store.h"
#include "store_fixture.h"
#include "store_impl.h"

static int setup(void **state)
{
        return store_fixture_setup(state, "room");
}

static int teardown(void **state)
{
        return store_fixture_teardown(state);
}

/* Writes job n as done with a pattern result of `size` bytes in one transaction. */
static int put_result(struct store *s, uint64_t n, size_t size)
{
        struct store_txn *t;
        struct store_job j;
        int r;

        fixture_job_init(&j, n, "acme", "image.relief", KILN_JOB_DONE);
        assert_int_equal(store_txn_begin(s, true, &t), 0);
        r = store_job_put(t, &j);
        if (r >= 0)
                r = store_result_put(t, j.id, size, pattern_piece, NULL);
        if (r < 0) {
                store_txn_abort(t);
                return r;
        }
        return store_txn_commit(t);
}

static void delete_job(struct store *s, uint64_t n)
{
        struct store_txn *t;
        struct store_job j;

        fixture_job_init(&j, n, "acme", "image.relief", KILN_JOB_DONE);
        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_job_delete(t, j.id), 0);
        assert_int_equal(store_txn_commit(t), 0);
}

/* What every report must satisfy whatever the store holds. */
static void assert_room_consistent(const struct store_room *r)
{
        assert_true(r->used <= r->map_size);
        assert_true(r->room <= r->map_free);
        assert_true(r->map_free <= r->map_size);
        assert_true(r->map_free >= r->map_size - r->used);
}

static void room_shrinks_as_results_are_written_and_grows_back_when_deleted(void **state)
{
        const size_t size = 8u << 20;
        struct fixture *f = *state;
        struct store_room r0, r1, r2;

        assert_int_equal(store_room(f->s, &r0), 0);
        assert_room_consistent(&r0);
        assert_int_equal(r0.map_size, MAP_SIZE);
        for (uint64_t n = 0; n < 4; n++)
                assert_int_equal(put_result(f->s, n, size), 0);
        assert_int_equal(store_room(f->s, &r1), 0);
        assert_room_consistent(&r1);
        /* Every byte of the results takes a byte of the map, and more for pages. */
        assert_true(r1.map_free + 4 * size <= r0.map_free);
        assert_true(r1.used >= r0.used + 4 * size);

        for (uint64_t n = 0; n < 4; n++)
                delete_job(f->s, n);
        assert_int_equal(store_room(f->s, &r2), 0);
        assert_room_consistent(&r2);
        /* The file does not shrink (the deletes' own page copies may grow it a
         * little); the pieces' pages are on the freelist. */
        assert_true(r2.used >= r1.used && r2.used <= r1.used + 64 * 4096);
        assert_true(r2.map_free + 64 * 4096 >= r1.map_free + 4 * size);
        assert_true(r2.map_free + 64 * 4096 >= r0.map_free);
        /* Those pages are reused: writing again does not move the used end. */
        assert_int_equal(put_result(f->s, 10, size), 0);
        assert_int_equal(store_room(f->s, &r1), 0);
        assert_true(r1.used <= r2.used + 64 * 4096);
}

/* A map far smaller than the free disk is what limits: room is what the map has left,
 * and it runs out where writes start failing with -ENOSPC. */
static void tiny_map_reports_map_limited_room(void **state)
{
        const uint64_t map = 2u << 20;
        struct fixture *f = *state;
        struct store_room r0, r1;
        uint64_t n = 0;
        int r;

        store_close(f->s);
        assert_int_equal(store_open(f->dir, map, STORE_SYNC_OFF, &f->s), 0);
        assert_int_equal(store_room(f->s, &r0), 0);
        assert_room_consistent(&r0);
        assert_int_equal(r0.map_size, map);
        assert_true(r0.fs_free > map);
        assert_int_equal(r0.room, r0.map_free);
        assert_true(r0.room < map);
        while ((r = put_result(f->s, n, 100000)) == 0)
                n++;
        assert_int_equal(r, -ENOSPC);
        assert_true(n >= 10);
        assert_int_equal(store_room(f->s, &r1), 0);
        assert_room_consistent(&r1);
        assert_int_equal(r1.room, r1.map_free);
        /* Less left than the result that did not fit (it needs 2 pieces of 16 pages). */
        assert_true(r1.room < 100000 + 64 * 4096);
        assert_true(r1.room + (n - 1) * 100000 <= r0.room);
}

static uint64_t statvfs_free(const char *dir)
{
        struct statvfs v;

        assert_int_equal(statvfs(dir, &v), 0);
        return (uint64_t)v.f_bavail * v.f_frsize;
}

/* fs_free is the file system's free space as statvfs gives it (other programs write
 * meanwhile: it must lie between a reading before and one after, give or take). */
static void fs_free_matches_statvfs(void **state)
{
        const uint64_t slack = 64u << 20;
        struct fixture *f = *state;
        struct store_room r;
        uint64_t before, after, lo, hi;

        before = statvfs_free(f->dir);
        assert_int_equal(store_room(f->s, &r), 0);
        after = statvfs_free(f->dir);
        lo = before < after ? before : after;
        hi = before < after ? after : before;
        assert_true(r.fs_free + slack >= lo);
        assert_true(r.fs_free <= hi + slack);
        assert_room_consistent(&r);
        if (r.fs_free >= r.map_size)
                assert_int_equal(r.room, r.map_free);
}

static double elapsed_us(const struct timespec *a, const struct timespec *b)
{
        return (double)(b->tv_sec - a->tv_sec) * 1e6 + (double)(b->tv_nsec - a->tv_nsec) / 1e3;
}

/* The file system's "no room" in any of its forms is -ENOSPC to the store's callers,
 * never one of the codes they read as kiln's own limits (-EDQUOT objects per tenant,
 * -EFBIG an object's bytes). */
static void file_system_limits_are_no_room(void **state)
{
        (void)state;
        assert_int_equal(store_mdb_errno(ENOSPC), -ENOSPC);
        assert_int_equal(store_mdb_errno(EDQUOT), -ENOSPC);
        assert_int_equal(store_mdb_errno(EFBIG), -ENOSPC);
        assert_int_equal(store_mdb_errno(MDB_MAP_FULL), -ENOSPC);
        assert_int_equal(store_mdb_errno(EIO), -EIO);
}

/* The cost of one report on a store whose freelist holds thousands of pages from
 * hundreds of transactions. Reported, not asserted (it depends on the machine). */
static void room_cost_with_thousands_of_free_pages(void **state)
{
        enum { JOBS = 400, CALLS = 2000 };
        struct fixture *f = *state;
        struct store_room r;
        struct timespec a, b;
        uint64_t free_pages;

        store_close(f->s);
        assert_int_equal(store_open(f->dir, MAP_SIZE, STORE_SYNC_OFF, &f->s), 0);
        for (uint64_t n = 0; n < JOBS; n++)
                assert_int_equal(put_result(f->s, n, 100000), 0);
        /* Every other job, each in its own transaction: many freelist entries. */
        for (uint64_t n = 0; n < JOBS; n += 2)
                delete_job(f->s, n);
        assert_int_equal(store_room(f->s, &r), 0);
        free_pages = (r.map_free - (r.map_size - r.used)) / 4096;
        /* 100000 bytes: a piece of 16 pages and one of 9 */
        assert_true(free_pages >= JOBS / 2 * 24);
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < CALLS; i++)
                assert_int_equal(store_room(f->s, &r), 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        print_message("store_room: %.1f us per call with %llu free pages\n", elapsed_us(&a, &b) / CALLS,
                      (unsigned long long)free_pages);
}

static const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(room_shrinks_as_results_are_written_and_grows_back_when_deleted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tiny_map_reports_map_limited_room, setup, teardown),
        cmocka_unit_test_setup_teardown(fs_free_matches_statvfs, setup, teardown),
        cmocka_unit_test_setup_teardown(room_cost_with_thousands_of_free_pages, setup, teardown),
        cmocka_unit_test(file_system_limits_are_no_room),
};

int main(void)
{
        return cmocka_run_group_tests(tests, NULL, NULL);
}
