/* The cache's recent entries (store_cache_recent.c): appended to "cache_recent",
 * found through their index, merged into "cache" in hash order, and the same entries
 * whichever table holds them, across merges, aborts, full indexes and restarts. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <cmocka.h>

#include <lmdb.h>

#include "store.h"
#include "store_fixture.h"
#include "cache_fixture.h"

static int setup(void **state)
{
        return store_fixture_setup(state, "recent");
}

static int teardown(void **state)
{
        store_set_cache_merge_at(0);
        store_set_cache_recent_slots(0);
        return store_fixture_teardown(state);
}

/* Entries in table `name` of the store's file (the store closed). */
static size_t raw_count(const char *dir, const char *name)
{
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_stat st;

        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 64), 0);
        assert_int_equal(mdb_env_set_mapsize(env, MAP_SIZE), 0);
        assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, name, 0, &dbi), 0);
        assert_int_equal(mdb_stat(txn, dbi, &st), 0);
        mdb_txn_abort(txn);
        mdb_env_close(env);
        return st.ms_entries;
}

static void assert_tables(struct fixture *f, size_t in_cache, size_t in_recent)
{
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(raw_count(f->dir, "cache"), in_cache);
        assert_int_equal(raw_count(f->dir, "cache_recent"), in_recent);
        assert_int_equal(store_open(f->dir, MAP_SIZE, STORE_SYNC_FULL, &f->s), 0);
}

static void assert_counted(struct fixture *f, uint64_t entries, uint64_t bytes)
{
        struct store_cache_stats st;

        store_cache_stats(f->s, &st);
        assert_int_equal(st.entries, entries);
        assert_int_equal(st.bytes, bytes);
}

static char params[200][16];

static struct store_cache_key key_n(unsigned n)
{
        snprintf(params[n], sizeof(params[n]), "{\"n\":%u}", n);
        return key_of_params(params[n], (uint8_t)n);
}

/* Job n's result, cached under key n, of n bytes, at NOW. */
static void put_n(struct fixture *f, unsigned n)
{
        struct store_cache_key k = key_n(n);

        put_done_cached(f, n, n, (uint8_t)n, &k, UINT64_MAX, NOW);
}

static void assert_hits(struct fixture *f, unsigned n, uint32_t job)
{
        struct store_cache_key k = key_n(n);
        struct store_cache_hit hit;
        uint8_t id[16];

        assert_int_equal(lookup(f, &k, NOW, 0, &hit), 0);
        make_id(id, job);
        assert_memory_equal(hit.blob, id, 16);
}

static void entries_go_to_the_log_then_merge_into_cache(void **state)
{
        struct fixture *f = *state;
        uint64_t bytes = 0;

        for (unsigned n = 1; n <= 150; n++) {
                put_n(f, n);
                bytes += n;
        }
        assert_tables(f, 0, 150);
        assert_counted(f, 150, bytes);
        for (unsigned n = 1; n <= 150; n++)
                assert_hits(f, n, n);
        struct store_cache_stats st;
        store_cache_stats(f->s, &st);
        assert_int_equal(st.recent, 150);
        assert_int_equal(st.merges, 0);

        /* Not due below merge_at; due at it: a slice, then the truncation. */
        store_set_cache_merge_at(151);
        assert_int_equal(fixture_merge_step(f->s), 0);
        store_set_cache_merge_at(150);
        assert_true(store_cache_merge_due(f->s));
        assert_int_equal(fixture_merge_cache(f->s), 2);
        store_cache_stats(f->s, &st);
        assert_int_equal(st.recent, 0);
        assert_int_equal(st.merges, 1);
        assert_tables(f, 150, 0);
        assert_counted(f, 150, bytes);
        for (unsigned n = 1; n <= 150; n++)
                assert_hits(f, n, n);

        /* New entries and replacements go to the log again, the old copy goes. */
        struct store_cache_key k = key_n(5);
        put_done_cached(f, 201, 5, 1, &k, UINT64_MAX, NOW);
        put_n(f, 160);
        assert_tables(f, 149, 2);
        assert_counted(f, 151, bytes + 160);
        assert_hits(f, 5, 201);
        assert_hits(f, 160, 160);
}

/* Between the slice that copies entries into "cache" and the truncation that drops
 * them from the log, a bump, a replacement and a deletion reach both copies: after
 * the merge the least recently used order is the one they made. */
static void writes_during_a_merge_reach_both_copies(void **state)
{
        struct fixture *f = *state;
        struct store_cache_key a = key_n(1), b = key_n(2), c = key_n(3), d = key_n(4), e = key_n(5), g = key_n(6);
        struct store_cache_hit hit;

        put_done_cached(f, 1, 100, 0, &a, UINT64_MAX, NOW);
        put_done_cached(f, 2, 100, 0, &b, UINT64_MAX, NOW);
        put_done_cached(f, 3, 100, 0, &c, UINT64_MAX, NOW);
        store_set_cache_merge_at(1);
        assert_int_equal(fixture_merge_step(f->s), 1); /* the slice: a, b and c are in both tables */

        assert_int_equal(lookup(f, &a, NOW + 5000, 0, &hit), 0); /* a used last */
        put_done_cached(f, 12, 100, 0, &b, UINT64_MAX, NOW + 1000); /* b replaced */
        assert_int_equal(fixture_merge_step(f->s), 1); /* the truncation */
        store_set_cache_merge_at(0);
        assert_int_equal(fixture_merge_step(f->s), 0); /* b's new entry waits in the log */
        assert_counted(f, 3, 300);
        assert_hits(f, 2, 12);

        /* 300 bytes at most: each put evicts the least recently used. */
        put_done_cached(f, 4, 100, 0, &d, 300, NOW + 6000);
        assert_int_equal(lookup(f, &c, NOW + 6000, 0, &hit), -ENOENT);
        put_done_cached(f, 5, 100, 0, &e, 300, NOW + 7000);
        assert_int_equal(lookup(f, &b, NOW + 7000, 0, &hit), -ENOENT);
        put_done_cached(f, 6, 100, 0, &g, 300, NOW + 8000);
        assert_int_equal(lookup(f, &a, NOW + 8000, 0, &hit), -ENOENT);
        assert_int_equal(lookup(f, &d, NOW + 8000, 0, &hit), 0);
        assert_int_equal(lookup(f, &e, NOW + 8000, 0, &hit), 0);
        assert_int_equal(lookup(f, &g, NOW + 8000, 0, &hit), 0);
        assert_counted(f, 3, 300);
}

/* A stop after the slice, before the truncation: each entry is in both tables, and
 * counted, found and purged once. */
static void a_stop_between_slice_and_truncation_counts_each_entry_once(void **state)
{
        struct fixture *f = *state;
        uint64_t n_purged;

        for (unsigned n = 1; n <= 20; n++)
                put_n(f, n);
        store_set_cache_merge_at(1);
        assert_int_equal(fixture_merge_step(f->s), 1);
        store_set_cache_merge_at(0);
        assert_tables(f, 20, 20);
        assert_counted(f, 20, 210);
        for (unsigned n = 1; n <= 20; n++)
                assert_hits(f, n, n);

        /* The next merge copies them again and truncates. */
        assert_int_equal(fixture_merge_cache(f->s), 2);
        assert_tables(f, 20, 0);
        assert_counted(f, 20, 210);

        struct store_txn *t = wtxn(f);
        assert_int_equal(store_cache_purge(t, NULL, NULL, &n_purged), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(n_purged, 20);
        assert_counted(f, 0, 0);
}

/* Purging in the middle of a merge deletes each entry once, from both tables. */
static void purge_during_a_merge_deletes_each_entry_once(void **state)
{
        struct fixture *f = *state;
        uint64_t n_purged;
        struct store_cache_hit hit;

        for (unsigned n = 1; n <= 10; n++)
                put_n(f, n);
        store_set_cache_merge_at(1);
        assert_int_equal(fixture_merge_step(f->s), 1);
        struct store_txn *t = wtxn(f);
        assert_int_equal(store_cache_purge(t, "lens.nfw", NULL, &n_purged), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(n_purged, 10);
        assert_int_equal(fixture_merge_step(f->s), 1);
        assert_int_equal(fixture_merge_step(f->s), 0);
        store_set_cache_merge_at(0);
        assert_counted(f, 0, 0);
        for (unsigned n = 1; n <= 10; n++) {
                struct store_cache_key k = key_n(n);
                assert_int_equal(lookup(f, &k, NOW, 0, &hit), -ENOENT);
        }
        assert_tables(f, 0, 0);
}

/* A transaction that aborts leaves the index as it was: its new entries are not
 * found, what it replaced or deleted still is. */
static void an_aborted_transaction_puts_the_index_back(void **state)
{
        struct fixture *f = *state;
        struct store_cache_key a = key_n(1), b = key_n(2);
        struct store_cache_hit hit;
        struct store_job j;
        uint64_t n_purged;
        uint8_t seed = 0;

        put_done_cached(f, 1, 10, 0, &a, UINT64_MAX, NOW);
        struct store_txn *t = wtxn(f);
        init_job(&j, 2, "acme", KILN_JOB_DONE, NOW);
        assert_int_equal(store_job_put(t, &j), 0);
        assert_int_equal(store_result_put(t, j.id, 10, fill, &seed), 0);
        assert_int_equal(store_cache_put(t, &b, j.id, 10, "cpu", NOW, UINT64_MAX), 0);
        assert_int_equal(store_cache_put(t, &a, j.id, 10, "cpu", NOW, UINT64_MAX), 0);
        assert_int_equal(store_cache_lookup(t, &b, NOW, 0, &hit), 0); /* seen inside */
        store_txn_abort(t);
        assert_hits(f, 1, 1);
        assert_int_equal(lookup(f, &b, NOW, 0, &hit), -ENOENT);

        t = wtxn(f);
        assert_int_equal(store_cache_purge(t, NULL, NULL, &n_purged), 0);
        assert_int_equal(n_purged, 1);
        store_txn_abort(t);
        assert_hits(f, 1, 1);

        put_done_cached(f, 3, 10, 0, &b, UINT64_MAX, NOW);
        assert_hits(f, 2, 3);
        assert_counted(f, 2, 20);
        assert_tables(f, 0, 2);
}

/* With the index full, new entries go to "cache" directly; all are found, before and
 * after a restart, and a merge takes the log's share. */
static void a_full_index_sends_new_entries_to_cache(void **state)
{
        struct fixture *f = *state;

        store_set_cache_recent_slots(16); /* at most 8 entries */
        store_fixture_reopen(f, STORE_SYNC_FULL);
        for (unsigned n = 1; n <= 30; n++)
                put_n(f, n);
        for (unsigned n = 1; n <= 30; n++)
                assert_hits(f, n, n);
        assert_tables(f, 22, 8);
        assert_counted(f, 30, 465);
        assert_int_equal(fixture_merge_cache(f->s), 2);
        assert_tables(f, 30, 0);
        for (unsigned n = 1; n <= 30; n++)
                assert_hits(f, n, n);
        /* Opened with a smaller index, a log with more entries moves what does not fit. */
        store_set_cache_recent_slots(0);
        store_fixture_reopen(f, STORE_SYNC_FULL);
        for (unsigned n = 31; n <= 50; n++)
                put_n(f, n);
        store_set_cache_recent_slots(8); /* at most 4 */
        assert_tables(f, 30, 20); /* opened again: 16 go to "cache" */
        assert_tables(f, 46, 4);
        assert_counted(f, 50, 1275);
        for (unsigned n = 1; n <= 50; n++)
                assert_hits(f, n, n);
}

/* A record the log never writes (a key of another size, a value too short for the
 * hash) is dropped at open, so appends after it still work. */
static void a_foreign_record_in_the_log_is_dropped_at_open(void **state)
{
        struct fixture *f = *state;
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        uint8_t k9[9], k8[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        MDB_val key = { .mv_size = 9, .mv_data = k9 }, val = { .mv_size = 3, .mv_data = "abc" };

        put_n(f, 1);
        store_close(f->s);
        f->s = NULL;
        memset(k9, 0xff, sizeof(k9));
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 64), 0);
        assert_int_equal(mdb_env_set_mapsize(env, MAP_SIZE), 0);
        assert_int_equal(mdb_env_open(env, f->dir, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, "cache_recent", 0, &dbi), 0);
        assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
        key = (MDB_val){ .mv_size = 8, .mv_data = k8 };
        assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
        assert_int_equal(store_open(f->dir, MAP_SIZE, STORE_SYNC_FULL, &f->s), 0);

        put_n(f, 2);
        assert_hits(f, 1, 1);
        assert_hits(f, 2, 2);
        assert_tables(f, 0, 2);
        assert_counted(f, 2, 3);
}

/* A merge does not start in a store with too little room left for it: the entries
 * stay in the log, found as before. */
static void a_store_short_of_room_puts_the_merge_off(void **state)
{
        struct fixture *f = *state;

        store_close(f->s);
        f->s = NULL;
        unit_tmpdir_remove(f->dir);
        unit_tmpdir_make("recent-small", f->dir, sizeof(f->dir));
        assert_int_equal(store_open(f->dir, 4ull << 20, STORE_SYNC_FULL, &f->s), 0); /* 4 MiB */
        for (unsigned n = 1; n <= 20; n++)
                put_n(f, n);
        store_set_cache_merge_at(1);
        struct store_txn *t = wtxn(f);
        assert_int_equal(store_cache_merge_step(t), -ENOSPC);
        store_txn_abort(t);
        assert_true(store_cache_merge_due(f->s));
        store_set_cache_merge_at(0);
        for (unsigned n = 1; n <= 20; n++)
                assert_hits(f, n, n);
        assert_counted(f, 20, 210);
}

/* The writer merges by itself once merge_at entries are there, between batches. */
static void the_writer_merges_in_the_background(void **state)
{
        struct fixture *f = *state;
        struct store_writer *w;

        for (unsigned n = 1; n <= 40; n++)
                put_n(f, n);
        store_set_cache_merge_at(10);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        for (int i = 0; i < 500 && store_cache_merge_due(f->s); i++)
                nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
        assert_false(store_cache_merge_due(f->s));
        store_writer_stop(w);
        store_set_cache_merge_at(0);
        assert_tables(f, 40, 0);
        assert_counted(f, 40, 820);
        for (unsigned n = 1; n <= 40; n++)
                assert_hits(f, n, n);
}

static const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(entries_go_to_the_log_then_merge_into_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(writes_during_a_merge_reach_both_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(a_stop_between_slice_and_truncation_counts_each_entry_once, setup, teardown),
        cmocka_unit_test_setup_teardown(purge_during_a_merge_deletes_each_entry_once, setup, teardown),
        cmocka_unit_test_setup_teardown(an_aborted_transaction_puts_the_index_back, setup, teardown),
        cmocka_unit_test_setup_teardown(a_full_index_sends_new_entries_to_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(a_foreign_record_in_the_log_is_dropped_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(a_store_short_of_room_puts_the_merge_off, setup, teardown),
        cmocka_unit_test_setup_teardown(the_writer_merges_in_the_background, setup, teardown),
};

int main(void)
{
        return cmocka_run_group_tests(tests, NULL, NULL);
}
