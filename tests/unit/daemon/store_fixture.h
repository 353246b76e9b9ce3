/* The fixture of the store's unit tests: a store (sync=full, 256 MiB map) opened in
 * a fresh scratch directory, removed with everything in it afterwards; and the
 * helpers the store's test files share (jobs, piece writers, running writer ops).
 * Include after <cmocka.h>. */
#pragma once

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_internal.h"
#include "unit_tmpdir.h"

#define MAP_SIZE (256ull << 20)

struct fixture {
        char dir[PATH_MAX];
        struct store *s;
};

/* Opens a store in a new directory PREFIX-XXXXXX; *state becomes the fixture. */
static inline int store_fixture_setup(void **state, const char *prefix)
{
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        unit_tmpdir_make(prefix, f->dir, sizeof(f->dir));
        assert_int_equal(store_open(f->dir, MAP_SIZE, STORE_SYNC_FULL, &f->s), 0);
        *state = f;
        return 0;
}

static inline int store_fixture_teardown(void **state)
{
        struct fixture *f = *state;

        store_close(f->s);
        unit_tmpdir_remove(f->dir);
        free(f);
        return 0;
}

/* Closes and opens the fixture's store again, as a restart would. */
static inline void store_fixture_reopen(struct fixture *f, enum store_sync_mode sync)
{
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(store_open(f->dir, MAP_SIZE, sync, &f->s), 0);
}

/* One transaction of a merge of the cache's recent entries, as the writer runs it:
 * 1 when it did something (committed), 0 when no merge is due. */
static inline int fixture_merge_step(struct store *s)
{
        struct store_txn *t;
        int r;

        assert_int_equal(store_txn_begin(s, true, &t), 0);
        r = store_cache_merge_step(t);
        assert_true(r >= 0);
        if (r > 0)
                assert_int_equal(store_txn_commit(t), 0);
        else
                store_txn_abort(t);
        return r;
}

/* Merges the cache's recent entries into "cache" now, to the end, as the writer does
 * once there are enough of them. Returns how many transactions it took. Leaves the
 * merge threshold at the store's own. */
static inline int fixture_merge_cache(struct store *s)
{
        int n = 0;

        store_set_cache_merge_at(1);
        while (fixture_merge_step(s) > 0)
                n++;
        store_set_cache_merge_at(0);
        return n;
}

/* ---- jobs ---- */

/* A UUIDv7-like id: 48-bit big-endian milliseconds, then a big-endian sequence. */
static inline void fixture_job_id(uint8_t id[16], uint64_t ms, uint32_t seq)
{
        memset(id, 0, 16);
        for (int i = 0; i < 6; i++)
                id[i] = (uint8_t)(ms >> (8 * (5 - i)));
        id[6] = 0x70;
        id[8] = 0x80;
        for (int i = 0; i < 4; i++)
                id[12 + i] = (uint8_t)(seq >> (8 * (3 - i)));
}

/* Job number n (its id and submit time follow n) of `tenant` and `kind` in state st. */
static inline void fixture_job_init(struct store_job *j, uint64_t n, const char *tenant, const char *kind,
                                    enum kiln_job_state st)
{
        memset(j, 0, sizeof(*j));
        fixture_job_id(j->id, 1700000000000ull + n, (uint32_t)n);
        snprintf(j->tenant, sizeof(j->tenant), "%s", tenant);
        snprintf(j->kind, sizeof(j->kind), "%s", kind);
        j->state = (uint8_t)st;
        j->priority = 2;
        j->submitted_ms = (int64_t)(1700000000000ull + n);
}

/* A job with every field set to a value that would show a mix-up, fixed strings at
 * their maximum length. */
static inline void fixture_full_job(struct store_job *j)
{
        fixture_job_init(j, 42, "", "", KILN_JOB_FAILED);
        memset(j->kind, 'k', sizeof(j->kind) - 1);
        memset(j->tenant, 't', sizeof(j->tenant) - 1);
        snprintf(j->backend, sizeof(j->backend), "cuda:15-abcdefg");
        j->priority = 4;
        j->submitted_ms = -1234567890123ll;
        j->finished_ms = INT64_MAX;
        j->deadline_ms = INT64_MIN;
        j->queue_ms = 0xfedcba98u;
        j->run_ms = 7;
        j->batch = 0x01020304u;
        j->params = "{\"n\":[1,2,3],\"s\":\"\xc3\xa9t\xc3\xa9\"}";
        j->idem_key = "key-1";
        j->error_code = "internal";
        j->error_message = "the device fell over";
        j->attempts = 0xa1b2c3d4u;
        j->object = "risk.model/acme@3";
        j->input_size = 0x0102030405060708ull;
        j->error_field = "params.model";
}

static inline void fixture_put_job(struct store *s, const struct store_job *j)
{
        struct store_txn *t;

        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_job_put(t, j), 0);
        assert_int_equal(store_txn_commit(t), 0);
}

static inline int fixture_get_job(struct store *s, const uint8_t id[16], struct store_job **ret)
{
        struct store_txn *t;
        int r;

        assert_int_equal(store_txn_begin(s, false, &t), 0);
        r = store_job_get(t, id, ret);
        store_txn_abort(t);
        return r;
}

static inline void assert_string_or_null(const char *a, const char *b)
{
        if (!a || !b)
                assert_ptr_equal(a, b);
        else
                assert_string_equal(a, b);
}

static inline void assert_jobs_equal(const struct store_job *a, const struct store_job *b)
{
        assert_memory_equal(a->id, b->id, 16);
        assert_string_equal(a->kind, b->kind);
        assert_string_equal(a->tenant, b->tenant);
        assert_int_equal(a->priority, b->priority);
        assert_int_equal(a->state, b->state);
        assert_true(a->submitted_ms == b->submitted_ms);
        assert_true(a->finished_ms == b->finished_ms);
        assert_true(a->deadline_ms == b->deadline_ms);
        assert_int_equal(a->queue_ms, b->queue_ms);
        assert_int_equal(a->run_ms, b->run_ms);
        assert_int_equal(a->batch, b->batch);
        assert_string_equal(a->backend, b->backend);
        assert_string_or_null(a->params, b->params);
        assert_string_or_null(a->idem_key, b->idem_key);
        assert_string_or_null(a->error_code, b->error_code);
        assert_string_or_null(a->error_message, b->error_message);
        assert_int_equal(a->attempts, b->attempts);
        assert_string_or_null(a->object, b->object);
        assert_true(a->input_size == b->input_size);
        assert_string_or_null(a->error_field, b->error_field);
}

/* Frees a job list as store_job_list returns it. */
static inline void free_job_list(struct store_job **jobs, size_t n)
{
        for (size_t i = 0; i < n; i++)
                store_job_free(jobs[i]);
        free(jobs);
}

/* ---- piece writers (store_result_writer) ---- */

/* Copies from the buffer `opaque`. */
static inline void copy_piece(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        memcpy(dst, (const uint8_t *)opaque + offset, len);
}

static inline uint8_t pattern_byte(size_t i)
{
        return (uint8_t)(i * 2654435761u >> 13);
}

/* Writes pattern_byte(offset + i). */
static inline void pattern_piece(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        for (size_t i = 0; i < len; i++)
                dst[i] = pattern_byte(offset + i);
}

/* Fails unless data holds pattern_byte(i + shift) for i in 0..size-1. */
static inline void assert_pattern(const uint8_t *data, size_t size, size_t shift)
{
        for (size_t i = 0; i < size; i++)
                if (data[i] != pattern_byte(i + shift))
                        fail_msg("byte %zu of %zu differs", i, size);
}

/* ---- writer operations ---- */

struct fixture_wait {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done;
};

static inline void fixture_op_done(struct store_op *op)
{
        struct fixture_wait *w = op->userdata;

        pthread_mutex_lock(&w->lock);
        w->done = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

/* Submits op (setting its done and userdata) and waits until it is done. */
static inline void fixture_op_run(struct store_writer *wr, struct store_op *op)
{
        struct fixture_wait w = { .done = false };

        pthread_mutex_init(&w.lock, NULL);
        pthread_cond_init(&w.cond, NULL);
        op->done = fixture_op_done;
        op->userdata = &w;
        store_writer_submit(wr, op);
        pthread_mutex_lock(&w.lock);
        while (!w.done)
                pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        pthread_mutex_destroy(&w.lock);
        pthread_cond_destroy(&w.cond);
}

/* Waits, without stopping the writer, until everything submitted so far is done. */
static inline void wait_for_writer(struct store_writer *wr)
{
        struct store_op op;

        memset(&op, 0, sizeof(op));
        op.type = STORE_OP_BARRIER;
        fixture_op_run(wr, &op);
        assert_int_equal(op.status, 0);
}
