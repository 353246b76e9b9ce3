/* The store's group-commit writer (daemon/store_writer.c, store_ops.c): batching,
 * per-op errors, map full, FIFO order, sync modes, big results and inputs written in
 * slices. Every test works in its own
 * directory under $KILN_TEST_TMPDIR. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
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

/* ---- the writer ---- */

struct tracked_op {
        struct store_op op;
        struct store_job job;
        atomic_int calls;
        int order;            /* position in which done was called */
};

static atomic_int done_order;

static void tracked_done(struct store_op *op)
{
        struct tracked_op *t = (struct tracked_op *)((char *)op - offsetof(struct tracked_op, op));

        t->order = atomic_fetch_add(&done_order, 1);
        atomic_fetch_add(&t->calls, 1);
}

static void init_put(struct tracked_op *t, uint64_t n, const char *params)
{
        memset(&t->op, 0, sizeof(t->op));
        fixture_job_init(&t->job, n, "acme", "lens.nfw", KILN_JOB_QUEUED);
        t->job.params = (char *)params;
        t->op.type = STORE_OP_JOB_PUT;
        t->op.job = &t->job;
        t->op.done = tracked_done;
        t->op.status = 12345;
        atomic_init(&t->calls, 0);
}

/* Holds the writer inside a transaction: a JOB_PUT whose write_result blocks until
 * released, so that operations submitted meanwhile all land in the next batch. */
struct gate {
        struct tracked_op t;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool entered, released;
};

static void gate_write_result(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        struct gate *g = (struct gate *)((char *)op - offsetof(struct gate, t.op));

        pthread_mutex_lock(&g->lock);
        g->entered = true;
        pthread_cond_broadcast(&g->cond);
        while (!g->released)
                pthread_cond_wait(&g->cond, &g->lock);
        pthread_mutex_unlock(&g->lock);
        dst[0] = 'g';
}

/* Submits the gate and returns once the writer is blocked in it. */
static void gate_close(struct gate *g, struct store_writer *w)
{
        memset(g, 0, sizeof(*g));
        pthread_mutex_init(&g->lock, NULL);
        pthread_cond_init(&g->cond, NULL);
        init_put(&g->t, 999999, "{}");
        snprintf(g->t.job.tenant, sizeof(g->t.job.tenant), "gate");
        g->t.op.result_size = 1;
        g->t.op.write_result = gate_write_result;
        store_writer_submit(w, &g->t.op);
        pthread_mutex_lock(&g->lock);
        while (!g->entered)
                pthread_cond_wait(&g->cond, &g->lock);
        pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g)
{
        pthread_mutex_lock(&g->lock);
        g->released = true;
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->lock);
}

static void gate_destroy(struct gate *g)
{
        assert_int_equal(atomic_load(&g->t.calls), 1);
        assert_int_equal(g->t.op.status, 0);
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->cond);
}

#define SUBMITTERS 4
#define WRITER_OPS 10000

struct submitter {
        struct store_writer *w;
        struct tracked_op *ops;
        size_t n;
};

static void *submit_thread(void *arg)
{
        struct submitter *sb = arg;

        for (size_t i = 0; i < sb->n; i++)
                store_writer_submit(sb->w, &sb->ops[i].op);
        return NULL;
}

/* ~300 bytes of params, like a typical job. */
static char *make_params(void)
{
        char *p = malloc(301);

        assert_non_null(p);
        memset(p, 'x', 300);
        memcpy(p, "{\"pad\":\"", 8);
        memcpy(p + 298, "\"}", 2);
        p[300] = '\0';
        return p;
}

static void submit_from_threads(struct store_writer *w, struct tracked_op *ops)
{
        struct submitter sb[SUBMITTERS];
        pthread_t th[SUBMITTERS];

        for (int i = 0; i < SUBMITTERS; i++) {
                sb[i] = (struct submitter){ .w = w, .ops = ops + i * (WRITER_OPS / SUBMITTERS),
                                            .n = WRITER_OPS / SUBMITTERS };
                assert_int_equal(pthread_create(&th[i], NULL, submit_thread, &sb[i]), 0);
        }
        for (int i = 0; i < SUBMITTERS; i++)
                pthread_join(th[i], NULL);
}

static void assert_all_puts_done_and_stored(struct store *s, struct tracked_op *ops)
{
        struct store_txn *t;
        uint64_t jobs, pending, bytes;
        struct store_job *got;

        for (int i = 0; i < WRITER_OPS; i++) {
                assert_int_equal(atomic_load(&ops[i].calls), 1);
                assert_int_equal(ops[i].op.status, 0);
        }
        assert_int_equal(store_txn_begin(s, false, &t), 0);
        assert_int_equal(store_stat(t, &jobs, &pending, &bytes), 0);
        assert_true(jobs >= WRITER_OPS);
        for (int i = 0; i < WRITER_OPS; i += 997) {
                assert_int_equal(store_job_get(t, ops[i].job.id, &got), 0);
                assert_jobs_equal(&ops[i].job, got);
                store_job_free(got);
        }
        store_txn_abort(t);
}

static void writer_group_commits_puts_from_four_threads(void **state)
{
        struct fixture *f = *state;
        struct tracked_op *ops = calloc(WRITER_OPS, sizeof(*ops));
        char *params = make_params();
        struct store_writer *w;
        struct gate g;
        uint64_t commits, nops;

        assert_non_null(ops);
        for (int i = 0; i < WRITER_OPS; i++)
                init_put(&ops[i], (uint64_t)i, params);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        gate_close(&g, w);
        submit_from_threads(w, ops);
        gate_open(&g);
        wait_for_writer(w);
        store_writer_stats(w, &commits, &nops);
        store_writer_stop(w);

        assert_all_puts_done_and_stored(f->s, ops);
        gate_destroy(&g);
        /* the gate's batch, then the 10,000 puts and the barrier at 4096 per txn */
        assert_int_equal(nops, WRITER_OPS + 2);
        assert_int_equal(commits, 1 + (WRITER_OPS + 1 + 4095) / 4096);
        free(ops);
        free(params);
}

static void writer_concurrent_puts_complete_and_report_throughput(void **state)
{
        struct fixture *f = *state;
        struct tracked_op *ops = calloc(WRITER_OPS, sizeof(*ops));
        char *params = make_params();
        struct store_writer *w;
        struct timespec t0, t1;
        uint64_t commits, nops;
        double secs;

        assert_non_null(ops);
        for (int i = 0; i < WRITER_OPS; i++)
                init_put(&ops[i], (uint64_t)i, params);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        submit_from_threads(w, ops);
        wait_for_writer(w);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        store_writer_stats(w, &commits, &nops);
        store_writer_stop(w);

        secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        print_message("writer sync=full, %d submitters: %d JOB_PUT (300-byte params) in %.3f s = %.0f ops/s, "
                      "%llu commits\n", SUBMITTERS, WRITER_OPS, secs, WRITER_OPS / secs,
                      (unsigned long long)commits);
        assert_all_puts_done_and_stored(f->s, ops);
        assert_int_equal(nops, WRITER_OPS + 1);
        assert_true(commits >= 1 && commits <= nops);
        free(ops);
        free(params);
}

static void writer_get_after_put_in_same_batch_sees_it(void **state)
{
        struct fixture *f = *state;
        struct tracked_op put, get;
        struct store_writer *w;
        struct gate g;
        uint64_t commits;

        init_put(&put, 1, "{\"a\":1}");
        memset(&get, 0, sizeof(get));
        get.op.type = STORE_OP_JOB_GET;
        memcpy(get.op.id, put.job.id, 16);
        get.op.done = tracked_done;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        gate_close(&g, w);
        store_writer_submit(w, &put.op);
        store_writer_submit(w, &get.op);
        gate_open(&g);
        wait_for_writer(w);
        store_writer_stats(w, &commits, NULL);
        store_writer_stop(w);
        gate_destroy(&g);

        assert_int_equal(commits, 2); /* the gate's, then put + get + barrier */
        assert_int_equal(put.op.status, 0);
        assert_int_equal(get.op.status, 0);
        assert_non_null(get.op.job_out);
        assert_jobs_equal(&put.job, get.op.job_out);
        store_job_free(get.op.job_out);
}

/* A record of a job answered from the cache (nothing cached under its key: the
 * record alone is stored). */
static const struct store_cache_key answer_key = { .hash = { 7 }, .kind = "lens.nfw", .model = "", .params = "{}" };

static void init_cache_answer(struct tracked_op *t, uint64_t n)
{
        init_put(t, n, "{}");
        t->job.state = KILN_JOB_DONE;
        t->op.type = STORE_OP_CACHE_ANSWER;
        t->op.cache_key = &answer_key;
}

static bool job_stored(struct store *s, const uint8_t id[16])
{
        struct store_txn *t;
        struct store_job *got = NULL;
        assert_int_equal(store_txn_begin(s, false, &t), 0);
        int r = store_job_get(t, id, &got);
        store_txn_abort(t);
        store_job_free(got);
        return r >= 0;
}

/* Counts the batches the writer set aside (store_set_lazy_hook). */
struct set_aside {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int n;
};

static void set_aside_seen(void *arg)
{
        struct set_aside *a = arg;
        pthread_mutex_lock(&a->lock);
        a->n++;
        pthread_cond_broadcast(&a->cond);
        pthread_mutex_unlock(&a->lock);
}

/* Records of jobs answered from the cache wait for no one: a batch of only those
 * is set aside and committed with the next batch of anything else, in order. */
static void writer_commits_cache_answers_with_the_next_batch(void **state)
{
        struct fixture *f = *state;
        struct tracked_op a[3];
        struct store_writer *w;
        struct gate g;
        uint64_t commits;

        struct set_aside seen = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
        for (int i = 0; i < 3; i++)
                init_cache_answer(&a[i], 100 + (uint64_t)i);
        store_set_lazy_wait(60000);
        store_set_lazy_hook(set_aside_seen, &seen);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        gate_close(&g, w);
        for (int i = 0; i < 3; i++)
                store_writer_submit(w, &a[i].op);
        atomic_store(&done_order, 0);
        gate_open(&g);
        /* The writer takes the three alone (behind the gate) and sets them aside. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10; /* a writer that never sets them aside fails below, not hangs */
        pthread_mutex_lock(&seen.lock);
        while (seen.n == 0 && pthread_cond_timedwait(&seen.cond, &seen.lock, &until) == 0)
                ;
        int set_aside = seen.n;
        pthread_mutex_unlock(&seen.lock);
        assert_int_equal(set_aside, 1);
        for (int i = 0; i < 3; i++)
                assert_int_equal(atomic_load(&a[i].calls), 0);
        assert_false(job_stored(f->s, a[0].job.id));
        wait_for_writer(w); /* a barrier: another batch */
        store_writer_stats(w, &commits, NULL);
        store_writer_stop(w);
        store_set_lazy_wait(0);
        store_set_lazy_hook(NULL, NULL);
        gate_destroy(&g);
        assert_int_equal(seen.n, 1);

        assert_int_equal(commits, 2); /* the gate's, then the three with the barrier */
        for (int i = 0; i < 3; i++) {
                assert_int_equal(atomic_load(&a[i].calls), 1);
                assert_int_equal(a[i].op.status, 0);
                assert_int_equal(a[i].order, 1 + i); /* after the gate, in order */
                assert_true(job_stored(f->s, a[i].job.id));
        }
}

/* With nothing else coming, they are committed on their own once they have waited. */
static void writer_commits_cache_answers_alone_after_a_while(void **state)
{
        struct fixture *f = *state;
        struct tracked_op a[2];
        struct store_writer *w;
        struct timespec t0, t1;
        uint64_t commits;

        for (int i = 0; i < 2; i++)
                init_cache_answer(&a[i], 200 + (uint64_t)i);
        store_set_lazy_wait(30);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        store_writer_submit(w, &a[0].op);
        fixture_op_run(w, &a[1].op); /* submits the second and waits for its done */
        clock_gettime(CLOCK_MONOTONIC, &t1);
        store_writer_stats(w, &commits, NULL);
        store_writer_stop(w);
        store_set_lazy_wait(0);

        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        assert_int_equal(atomic_load(&a[0].calls), 1);
        assert_int_equal(a[1].op.status, 0);
        assert_true(ms >= 25);
        assert_int_equal(commits, 1);
        assert_true(job_stored(f->s, a[0].job.id));
        assert_true(job_stored(f->s, a[1].job.id));
}

static void writer_per_op_error_leaves_the_batch_alone(void **state)
{
        struct fixture *f = *state;
        struct tracked_op bad_get, good, bad_put, bad_del;
        struct store_job *got;
        struct store_writer *w;
        struct gate g;
        uint64_t commits;

        memset(&bad_get, 0, sizeof(bad_get));
        bad_get.op.type = STORE_OP_JOB_GET;
        fixture_job_id(bad_get.op.id, 5, 5);
        bad_get.op.done = tracked_done;
        init_put(&good, 1, "{}");
        init_put(&bad_put, 2, "{}");
        bad_put.job.state = 77;
        memset(&bad_del, 0, sizeof(bad_del));
        bad_del.op.type = STORE_OP_DELETE;
        fixture_job_id(bad_del.op.id, 6, 6);
        bad_del.op.done = tracked_done;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        gate_close(&g, w);
        store_writer_submit(w, &bad_get.op);
        store_writer_submit(w, &good.op);
        store_writer_submit(w, &bad_put.op);
        store_writer_submit(w, &bad_del.op);
        gate_open(&g);
        wait_for_writer(w);
        store_writer_stats(w, &commits, NULL);
        store_writer_stop(w);
        gate_destroy(&g);

        assert_int_equal(commits, 2);
        assert_int_equal(bad_get.op.status, -ENOENT);
        assert_null(bad_get.op.job_out);
        assert_int_equal(good.op.status, 0);
        assert_int_equal(bad_put.op.status, -EINVAL);
        assert_int_equal(bad_del.op.status, -ENOENT);
        assert_int_equal(fixture_get_job(f->s, good.job.id, &got), 0);
        store_job_free(got);
}

static void fill_result(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        for (size_t i = 0; i < len; i++)
                dst[i] = (uint8_t)((offset + i) ^ 0x5a);
}

/* A SUBMIT of a job that already ran writes it once: its record as done, its
 * result (here in three pieces) and its cache entry, in one transaction; one with an
 * idempotency key or an input is refused. */
static void writer_submit_of_a_job_that_ran_stores_record_result_and_entry(void **state)
{
        struct fixture *f = *state;
        struct tracked_op ran, keyed;
        struct store_cache_key key = { .hash = { 9, 9 }, .kind = "risk.score", .model = "", .params = "{}" };
        struct store_writer *w;
        struct store_job *got;
        struct store_txn *t;
        struct store_cache_hit hit;
        uint64_t commits;
        uint8_t *data;
        size_t size;

        init_put(&ran, 300, "{}");
        ran.job.state = KILN_JOB_DONE;
        ran.op.type = STORE_OP_SUBMIT;
        ran.op.ran = true;
        ran.op.result_size = 10000;
        ran.op.write_result = fill_result;
        ran.op.cache_key = &key;
        init_put(&keyed, 301, "{}");
        keyed.job.state = KILN_JOB_DONE;
        keyed.job.idem_key = "k";
        keyed.op.type = STORE_OP_SUBMIT;
        keyed.op.ran = true;

        assert_false(store_cache_holds(f->s, &key, 0));
        store_set_result_chunk(4096);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        store_writer_submit(w, &ran.op);
        store_writer_submit(w, &keyed.op);
        wait_for_writer(w);
        store_writer_stats(w, &commits, NULL);
        store_writer_stop(w);

        assert_int_equal(ran.op.status, 0);
        assert_int_equal(ran.op.outcome, STORE_SUBMIT_STORED);
        assert_true(ran.op.result_stored);
        assert_int_equal(keyed.op.status, -EINVAL);
        assert_int_equal(commits, 1);
        assert_int_equal(fixture_get_job(f->s, ran.job.id, &got), 0);
        assert_int_equal(got->state, KILN_JOB_DONE);
        store_job_free(got);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_result_get(t, ran.job.id, &data, &size), 0);
        assert_int_equal(size, 10000);
        for (size_t i = 0; i < size; i++)
                assert_int_equal(data[i], (uint8_t)(i ^ 0x5a));
        free(data);
        assert_int_equal(store_cache_lookup(t, &key, INT64_MAX / 2, 0, &hit), 0);
        assert_memory_equal(hit.blob, ran.job.id, 16);
        store_txn_abort(t);
        assert_true(store_cache_holds(f->s, &key, 0));
        assert_int_equal(fixture_get_job(f->s, keyed.job.id, &got), -ENOENT);
        store_set_result_chunk(0);
}

static void writer_map_full_fails_only_the_op_that_does_not_fit(void **state)
{
        char dir[PATH_MAX];
        struct store *s;
        struct store_writer *w;
        struct tracked_op a, big, c, get_a, later;
        struct store_job *got;
        struct gate g;

        unit_tmpdir_make("store", dir, sizeof(dir));
        assert_int_equal(store_open(dir, 1u << 20, STORE_SYNC_FULL, &s), 0);
        init_put(&a, 1, "{}");
        init_put(&big, 2, "{}");
        big.op.result_size = 2u << 20;
        big.op.write_result = fill_result;
        init_put(&c, 3, "{}");
        c.op.result_size = 1000;
        c.op.write_result = fill_result;
        memset(&get_a, 0, sizeof(get_a));
        get_a.op.type = STORE_OP_JOB_GET;
        memcpy(get_a.op.id, a.job.id, 16);
        get_a.op.done = tracked_done;

        assert_int_equal(store_writer_start(s, &w), 0);
        gate_close(&g, w);
        store_writer_submit(w, &a.op);
        store_writer_submit(w, &big.op);
        store_writer_submit(w, &c.op);
        store_writer_submit(w, &get_a.op);
        gate_open(&g);
        wait_for_writer(w);

        assert_int_equal(a.op.status, 0);
        assert_int_equal(big.op.status, -ENOSPC);
        assert_int_equal(c.op.status, 0);
        assert_int_equal(get_a.op.status, 0);
        assert_non_null(get_a.op.job_out);
        assert_jobs_equal(&a.job, get_a.op.job_out);
        store_job_free(get_a.op.job_out);
        assert_int_equal(atomic_load(&big.calls), 1);

        /* still usable through the same writer */
        init_put(&later, 4, "{}");
        store_writer_submit(w, &later.op);
        wait_for_writer(w);
        assert_int_equal(later.op.status, 0);
        store_writer_stop(w);
        gate_destroy(&g);

        assert_int_equal(fixture_get_job(s, big.job.id, &got), -ENOENT);
        assert_int_equal(fixture_get_job(s, c.job.id, &got), 0);
        store_job_free(got);
        assert_int_equal(fixture_get_job(s, later.job.id, &got), 0);
        store_job_free(got);
        store_close(s);
        unit_tmpdir_remove(dir);
}

static void writer_result_get_returns_job_and_result(void **state)
{
        struct fixture *f = *state;
        struct tracked_op put, rget, rget_none, put2;
        struct store_writer *w;

        init_put(&put, 1, "{}");
        put.job.state = KILN_JOB_DONE;
        put.op.result_size = 5000;
        put.op.write_result = fill_result;
        init_put(&put2, 2, "{}");
        memset(&rget, 0, sizeof(rget));
        rget.op.type = STORE_OP_RESULT_GET;
        memcpy(rget.op.id, put.job.id, 16);
        rget.op.done = tracked_done;
        rget_none = rget;
        memcpy(rget_none.op.id, put2.job.id, 16);

        assert_int_equal(store_writer_start(f->s, &w), 0);
        store_writer_submit(w, &put.op);
        store_writer_submit(w, &put2.op);
        store_writer_submit(w, &rget.op);
        store_writer_submit(w, &rget_none.op);
        store_writer_stop(w);

        assert_int_equal(rget.op.status, 0);
        assert_jobs_equal(&put.job, rget.op.job_out);
        assert_int_equal(rget.op.result_size, 5000);
        for (size_t i = 0; i < 5000; i++)
                assert_int_equal(rget.op.result_out[i], (uint8_t)(i ^ 0x5a));
        store_job_free(rget.op.job_out);
        free(rget.op.result_out);

        /* a job without a result: the job, no result */
        assert_int_equal(rget_none.op.status, 0);
        assert_jobs_equal(&put2.job, rget_none.op.job_out);
        assert_null(rget_none.op.result_out);
        assert_int_equal(rget_none.op.result_size, 0);
        store_job_free(rget_none.op.job_out);
}

static void writer_delete_then_get_is_enoent(void **state)
{
        struct fixture *f = *state;
        struct tracked_op put, del, get;
        struct store_writer *w;

        init_put(&put, 1, "{}");
        memset(&del, 0, sizeof(del));
        del.op.type = STORE_OP_DELETE;
        memcpy(del.op.id, put.job.id, 16);
        del.op.done = tracked_done;
        memset(&get, 0, sizeof(get));
        get.op.type = STORE_OP_JOB_GET;
        memcpy(get.op.id, put.job.id, 16);
        get.op.done = tracked_done;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        store_writer_submit(w, &put.op);
        store_writer_submit(w, &del.op);
        store_writer_submit(w, &get.op);
        store_writer_stop(w);
        assert_int_equal(put.op.status, 0);
        assert_int_equal(del.op.status, 0);
        assert_int_equal(get.op.status, -ENOENT);
        assert_null(get.op.job_out);
}

static void writer_calls_done_in_fifo_order(void **state)
{
        struct fixture *f = *state;
        struct tracked_op ops[300];
        struct store_writer *w;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        atomic_store(&done_order, 0);
        for (int i = 0; i < 300; i++) {
                if (i % 3 == 2) {
                        memset(&ops[i], 0, sizeof(ops[i]));
                        ops[i].op.type = i % 2 ? STORE_OP_BARRIER : STORE_OP_JOB_GET;
                        fixture_job_id(ops[i].op.id, 7, 7);
                        ops[i].op.done = tracked_done;
                } else {
                        init_put(&ops[i], (uint64_t)i, "{}");
                }
                store_writer_submit(w, &ops[i].op);
        }
        store_writer_stop(w); /* stop drains the queue */
        for (int i = 0; i < 300; i++) {
                assert_int_equal(atomic_load(&ops[i].calls), 1);
                assert_int_equal(ops[i].order, i);
        }
}

static void sync_mode_round_trip(struct fixture *f, enum store_sync_mode mode)
{
        struct tracked_op ops[50];
        struct store_writer *w;
        struct store_job *got;

        store_fixture_reopen(f, mode);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        for (int i = 0; i < 50; i++) {
                init_put(&ops[i], (uint64_t)i, "{}");
                store_writer_submit(w, &ops[i].op);
        }
        store_writer_stop(w);
        store_fixture_reopen(f, STORE_SYNC_FULL);
        for (int i = 0; i < 50; i++) {
                assert_int_equal(ops[i].op.status, 0);
                assert_int_equal(fixture_get_job(f->s, ops[i].job.id, &got), 0);
                store_job_free(got);
        }
}

static void batch_sync_mode_opens_and_keeps_writes(void **state)
{
        sync_mode_round_trip(*state, STORE_SYNC_BATCH);
}

static void off_sync_mode_opens_and_keeps_writes(void **state)
{
        sync_mode_round_trip(*state, STORE_SYNC_OFF);
}

static void sync_flushes_without_error(void **state)
{
        struct fixture *f = *state;
        struct store_job j;

        store_fixture_reopen(f, STORE_SYNC_OFF);
        fixture_job_init(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        fixture_put_job(f->s, &j);
        assert_int_equal(store_sync(f->s), 0);
}

/* store.sync=batch's flushes run on the syncer's thread: one per request, and one
 * that fails is tried again on its own until one succeeds. */
static void syncer_flushes_each_request_and_retries_a_failed_one(void **state)
{
        struct fixture *f = *state;
        struct store_syncer *y;
        struct store_job j;

        store_fixture_reopen(f, STORE_SYNC_BATCH);
        assert_int_equal(store_syncer_start(f->s, &y), 0);
        fixture_job_init(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        fixture_put_job(f->s, &j);
        assert_true(store_syncer_request(y));
        store_syncer_idle(y);
        assert_int_equal(store_syncer_flushes(y), 1);

        /* Two failures, then the second retry flushes: three flushes for one request. */
        store_syncer_fail_next(y, 2);
        assert_true(store_syncer_request(y));
        assert_true(store_syncer_wait_flushes(y, 4, 10000));
        store_syncer_idle(y);
        assert_int_equal(store_syncer_flushes(y), 4);
        store_syncer_stop(y);
}

/* ---- big results and inputs, written in slices ---- */

#define SLICE (64 * 1024)
#define CHUNK 4096

/* Bytes of a big op's result or input: the pattern shifted by 1 (an older value of
 * the same job holds the unshifted one). */
static void shifted_bytes(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        (void)op;
        pattern_piece(NULL, dst, offset + 1, len);
}

/* What the slice hook sees between the slices of a big op, on the writer thread (read
 * by the test after the writer has stopped or a barrier came back). */
struct slice_watch {
        struct store *s;
        uint8_t id[16];              /* the big op's job */
        struct tracked_op *small;    /* queued behind it */
        int calls;                   /* slices committed before the last one */
        int record_done;             /* times the job's record already said done */
        int small_not_done;          /* times the small op was not done yet */
};

static void watch_slice(void *arg)
{
        struct slice_watch *sw = arg;
        struct store_txn *t;
        struct store_job *j;

        sw->calls++;
        if (sw->small && atomic_load(&sw->small->calls) != 1)
                sw->small_not_done++;
        if (store_txn_begin(sw->s, false, &t) < 0) {
                sw->record_done++;
                return;
        }
        if (store_job_get(t, sw->id, &j) >= 0) {
                if (j->state == KILN_JOB_DONE)
                        sw->record_done++;
                store_job_free(j);
        }
        store_txn_abort(t);
}

static int64_t wall_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void slicing_on(struct slice_watch *sw)
{
        store_set_result_chunk(CHUNK);
        store_set_write_slice(SLICE);
        store_set_slice_hook(watch_slice, sw);
}

static void slicing_off(void)
{
        store_set_slice_hook(NULL, NULL);
        store_set_write_slice(0);
        store_set_result_chunk(0);
}

/* A done job's result of 16 slices and a bit: a small put queued behind it commits
 * first; the job's record says done only after the last slice, and the result reads
 * back whole, without the pieces of the job's earlier, longer result. */
static void writer_big_result_is_written_in_slices_behind_small_ops(void **state)
{
        const size_t size = 16 * SLICE + 123;
        const struct store_cache_key key = {
                .hash = { 1, 2, 3 }, .kind = "lens.nfw", .version = 1, .model = "", .params = "{}",
        };
        struct fixture *f = *state;
        struct slice_watch sw = { .s = f->s };
        struct tracked_op big, small;
        struct store_cache_hit hit;
        struct store_writer *w;
        struct store_txn *t;
        struct store_job *job;
        uint64_t commits0, commits1;
        uint8_t *data;
        size_t got;

        slicing_on(&sw);
        init_put(&big, 1, "{}");
        big.job.state = KILN_JOB_RUNNING;
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &big.job), 0);
        assert_int_equal(store_result_put(t, big.job.id, 3 * size, pattern_piece, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);
        big.job.state = KILN_JOB_DONE;
        big.op.result_size = size;
        big.op.write_result = shifted_bytes;
        big.op.cache_key = &key;
        init_put(&small, 2, "{}");
        memcpy(sw.id, big.job.id, 16);
        sw.small = &small;
        atomic_store(&done_order, 0);

        assert_int_equal(store_writer_start(f->s, &w), 0);
        store_writer_stats(w, &commits0, NULL);
        big.op.next = &small.op;
        store_writer_submit_chain(w, &big.op, &small.op); /* one batch: big first */
        wait_for_writer(w);
        store_writer_stats(w, &commits1, NULL);
        store_writer_stop(w);
        slicing_off();

        assert_int_equal(atomic_load(&big.calls), 1);
        assert_int_equal(atomic_load(&small.calls), 1);
        assert_int_equal(big.op.status, 0);
        assert_int_equal(small.op.status, 0);
        assert_int_equal(small.order, 0);
        assert_int_equal(big.order, 1);
        /* 16 full slices before the last; the small op's batch, the last slice and the
         * barrier's batch: one commit each */
        assert_int_equal(sw.calls, 16);
        assert_int_equal(sw.record_done, 0);
        assert_int_equal(sw.small_not_done, 0);
        assert_int_equal(commits1 - commits0, 16 + 3);

        assert_int_equal(fixture_get_job(f->s, big.job.id, &job), 0);
        assert_int_equal(job->state, KILN_JOB_DONE);
        store_job_free(job);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_result_get(t, big.job.id, &data, &got), 0);
        assert_int_equal(store_cache_lookup(t, &key, wall_ms(), 0, &hit), 0);
        store_txn_abort(t);
        assert_int_equal(got, size);
        assert_pattern(data, got, 1);
        free(data);
        assert_memory_equal(hit.blob, big.job.id, 16);
        assert_int_equal(hit.size, size);
}

/* Ops on the same job as a big op, and barriers, wait for it and keep their order;
 * an op on another job does not. */
static void writer_ops_on_the_big_job_wait_for_it(void **state)
{
        struct fixture *f = *state;
        struct slice_watch sw = { .s = f->s };
        struct tracked_op big, get, del_other, other;
        struct store_writer *w;

        slicing_on(&sw);
        init_put(&big, 1, "{}");
        big.job.state = KILN_JOB_DONE;
        big.op.result_size = 3 * SLICE;
        big.op.write_result = shifted_bytes;
        memset(&get, 0, sizeof(get));
        get.op.type = STORE_OP_RESULT_GET;
        memcpy(get.op.id, big.job.id, 16);
        get.op.done = tracked_done;
        init_put(&other, 2, "{}");
        memset(&del_other, 0, sizeof(del_other));
        del_other.op.type = STORE_OP_DELETE;
        memcpy(del_other.op.id, other.job.id, 16);
        del_other.op.done = tracked_done;
        memcpy(sw.id, big.job.id, 16);
        atomic_store(&done_order, 0);

        assert_int_equal(store_writer_start(f->s, &w), 0);
        big.op.next = &get.op;
        get.op.next = &other.op;
        other.op.next = &del_other.op;
        store_writer_submit_chain(w, &big.op, &del_other.op);
        wait_for_writer(w);
        store_writer_stop(w);
        slicing_off();

        assert_int_equal(other.order, 0);
        assert_int_equal(del_other.order, 1);
        assert_int_equal(big.order, 2);
        assert_int_equal(get.order, 3);
        assert_int_equal(sw.calls, 2);
        assert_int_equal(sw.record_done, 0);
        assert_int_equal(big.op.status, 0);
        assert_int_equal(del_other.op.status, 0);
        assert_int_equal(get.op.status, 0);
        assert_int_equal(get.op.job_out->state, KILN_JOB_DONE);
        assert_int_equal(get.op.result_size, 3 * SLICE);
        assert_pattern(get.op.result_out, get.op.result_size, 1);
        store_job_free(get.op.job_out);
        free(get.op.result_out);
}

/* A big result that runs out of map halfway fails -ENOSPC alone: the pieces its
 * slices wrote are deleted, no record is written, and the small op behind it and the
 * ones after it are fine. */
static void writer_big_result_out_of_space_fails_alone_and_leaves_nothing(void **state)
{
        struct slice_watch sw = { 0 };
        struct tracked_op big, small, later;
        struct store_room before, after;
        struct store_writer *w;
        struct store_job *got;
        struct store_txn *t;
        char dir[PATH_MAX];
        uint8_t blob[16];
        uint64_t size;
        struct store *s;

        (void)state;
        unit_tmpdir_make("store", dir, sizeof(dir));
        assert_int_equal(store_open(dir, 1u << 20, STORE_SYNC_FULL, &s), 0);
        sw.s = s;
        slicing_on(&sw);
        init_put(&big, 1, "{}");
        big.job.state = KILN_JOB_DONE;
        big.op.result_size = 4u << 20;
        big.op.write_result = shifted_bytes;
        init_put(&small, 2, "{}");
        memcpy(sw.id, big.job.id, 16);
        atomic_store(&done_order, 0);
        assert_int_equal(store_room(s, &before), 0);

        assert_int_equal(store_writer_start(s, &w), 0);
        big.op.next = &small.op;
        store_writer_submit_chain(w, &big.op, &small.op);
        wait_for_writer(w);
        init_put(&later, 3, "{}");
        store_writer_submit(w, &later.op);
        wait_for_writer(w);
        store_writer_stop(w);
        slicing_off();

        assert_int_equal(big.op.status, -ENOSPC);
        assert_int_equal(atomic_load(&big.calls), 1);
        assert_true(sw.calls >= 2); /* some slices did commit */
        assert_int_equal(small.op.status, 0);
        assert_int_equal(small.order, 0);
        assert_int_equal(later.op.status, 0);
        assert_int_equal(fixture_get_job(s, big.job.id, &got), -ENOENT);
        assert_int_equal(store_txn_begin(s, false, &t), 0);
        assert_int_equal(store_result_locate(t, big.job.id, blob, &size), -ENOENT);
        store_txn_abort(t);
        /* the slices' pages are free again */
        assert_int_equal(store_room(s, &after), 0);
        assert_true(after.map_free + 32 * 4096 >= before.map_free);
        store_close(s);
        unit_tmpdir_remove(dir);
}

static void init_submit(struct tracked_op *t, uint64_t n, const char *idem, size_t input)
{
        init_put(t, n, "{}");
        t->op.type = STORE_OP_SUBMIT;
        t->job.idem_key = (char *)idem;
        t->op.input_size = input;
        t->op.write_input = shifted_bytes;
}

/* A SUBMIT with a big input writes it in slices behind small ops; one that turns out
 * to repeat an idempotency key stores no input, and what its slices wrote goes. */
static void writer_big_submit_input_is_written_in_slices(void **state)
{
        const size_t size = 5 * SLICE + 7;
        struct fixture *f = *state;
        struct slice_watch sw = { .s = f->s };
        struct tracked_op sub, small, again;
        struct store_writer *w;
        struct store_job *job;
        struct store_txn *t;
        uint8_t *data;
        size_t got;
        int calls;

        slicing_on(&sw);
        init_submit(&sub, 1, "key-1", size);
        init_put(&small, 2, "{}");
        init_submit(&again, 3, "key-1", size);
        memcpy(sw.id, sub.job.id, 16);
        sw.small = &small;
        atomic_store(&done_order, 0);

        assert_int_equal(store_writer_start(f->s, &w), 0);
        sub.op.next = &small.op;
        store_writer_submit_chain(w, &sub.op, &small.op);
        wait_for_writer(w);
        calls = sw.calls;
        sw.small = NULL;
        memcpy(sw.id, again.job.id, 16);
        store_writer_submit(w, &again.op);
        wait_for_writer(w);
        store_writer_stop(w);
        slicing_off();

        assert_int_equal(sub.op.status, 0);
        assert_int_equal(sub.op.outcome, STORE_SUBMIT_STORED);
        assert_int_equal(small.order, 0);
        assert_int_equal(sub.order, 1);
        assert_int_equal(calls, 5);
        assert_int_equal(sw.small_not_done, 0);
        assert_int_equal(fixture_get_job(f->s, sub.job.id, &job), 0);
        assert_int_equal(job->input_size, size);
        assert_int_equal(job->state, KILN_JOB_QUEUED);
        store_job_free(job);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_input_get(t, sub.job.id, &data, &got), 0);
        assert_int_equal(got, size);
        assert_pattern(data, got, 1);
        free(data);

        /* the repeat: sliced too, then answered by the key */
        assert_int_equal(sw.calls, 2 * calls);
        assert_int_equal(again.op.status, 0);
        assert_int_equal(again.op.outcome, STORE_SUBMIT_IDEM);
        assert_memory_equal(again.op.job_out->id, sub.job.id, 16);
        assert_null(again.op.result_out);
        store_job_free(again.op.job_out);
        assert_int_equal(store_input_get(t, again.job.id, &data, &got), -ENOENT);
        assert_int_equal(store_job_get(t, again.job.id, &job), -ENOENT);
        store_txn_abort(t);
}

/* ---- result_optional: the record without its result when the result does not fit ---- */

/* Runs a done JOB_PUT of job n with a result of `size` bytes, result_optional, in a
 * store with a 1 MiB map, and checks that it is stored as done without a result or
 * cache entry, and that the room its pieces took is free again. */
static void check_result_left_out(size_t size, bool sliced)
{
        const struct store_cache_key key = {
                .hash = { 9 }, .kind = "lens.nfw", .version = 1, .model = "", .params = "{}",
        };
        struct slice_watch sw = { 0 };
        struct tracked_op put, fits, rget;
        struct store_room before, after;
        struct store_cache_hit hit;
        struct store_writer *w;
        struct store_job *got;
        struct store_txn *t;
        char dir[PATH_MAX];
        uint8_t blob[16];
        uint64_t bytes;
        struct store *s;

        unit_tmpdir_make("store", dir, sizeof(dir));
        assert_int_equal(store_open(dir, 1u << 20, STORE_SYNC_FULL, &s), 0);
        sw.s = s;
        if (sliced)
                slicing_on(&sw);
        init_put(&put, 1, "{}");
        put.job.state = KILN_JOB_DONE;
        put.op.result_size = size;
        put.op.write_result = shifted_bytes;
        put.op.result_optional = true;
        put.op.cache_key = &key;
        put.op.result_stored = true;
        init_put(&fits, 2, "{}");
        fits.job.state = KILN_JOB_DONE;
        fits.op.result_size = 1000;
        fits.op.write_result = shifted_bytes;
        fits.op.result_optional = true;
        memset(&rget, 0, sizeof(rget));
        rget.op.type = STORE_OP_RESULT_GET;
        memcpy(rget.op.id, put.job.id, 16);
        rget.op.done = tracked_done;
        memcpy(sw.id, put.job.id, 16);
        assert_int_equal(store_room(s, &before), 0);

        assert_int_equal(store_writer_start(s, &w), 0);
        store_writer_submit(w, &put.op);
        store_writer_submit(w, &fits.op);
        store_writer_submit(w, &rget.op);
        wait_for_writer(w);
        store_writer_stop(w);
        slicing_off();

        assert_int_equal(put.op.status, 0);
        assert_false(put.op.result_stored);
        assert_int_equal(fits.op.status, 0);
        assert_true(fits.op.result_stored);
        if (sliced)
                assert_true(sw.calls >= 2); /* slices were written, then dropped */
        assert_int_equal(rget.op.status, 0);
        assert_int_equal(rget.op.job_out->state, KILN_JOB_DONE);
        assert_null(rget.op.result_out);
        store_job_free(rget.op.job_out);
        assert_int_equal(fixture_get_job(s, put.job.id, &got), 0);
        assert_int_equal(got->state, KILN_JOB_DONE);
        store_job_free(got);
        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_result_locate(t, put.job.id, blob, &bytes), -ENOENT);
        assert_int_equal(store_cache_lookup(t, &key, wall_ms(), 0, &hit), -ENOENT);
        assert_int_equal(store_result_locate(t, fits.job.id, blob, &bytes), 0);
        assert_int_equal(bytes, 1000);
        store_txn_abort(t);
        assert_int_equal(store_room(s, &after), 0);
        assert_true(after.map_free + 32 * 4096 >= before.map_free);
        store_close(s);
        unit_tmpdir_remove(dir);
}

static void writer_optional_result_that_does_not_fit_is_left_out(void **state)
{
        (void)state;
        check_result_left_out(2u << 20, false);
}

static void writer_optional_big_result_that_runs_out_is_left_out(void **state)
{
        (void)state;
        check_result_left_out(4u << 20, true);
}

static const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(writer_group_commits_puts_from_four_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_concurrent_puts_complete_and_report_throughput, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_get_after_put_in_same_batch_sees_it, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_per_op_error_leaves_the_batch_alone, setup, teardown),
        cmocka_unit_test(writer_map_full_fails_only_the_op_that_does_not_fit),
        cmocka_unit_test_setup_teardown(writer_result_get_returns_job_and_result, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_delete_then_get_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_calls_done_in_fifo_order, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_sync_mode_opens_and_keeps_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(off_sync_mode_opens_and_keeps_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_flushes_without_error, setup, teardown),
        cmocka_unit_test_setup_teardown(syncer_flushes_each_request_and_retries_a_failed_one, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_big_result_is_written_in_slices_behind_small_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_ops_on_the_big_job_wait_for_it, setup, teardown),
        cmocka_unit_test(writer_big_result_out_of_space_fails_alone_and_leaves_nothing),
        cmocka_unit_test_setup_teardown(writer_big_submit_input_is_written_in_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_commits_cache_answers_with_the_next_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_submit_of_a_job_that_ran_stores_record_result_and_entry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(writer_commits_cache_answers_alone_after_a_while, setup, teardown),
        cmocka_unit_test(writer_optional_result_that_does_not_fit_is_left_out),
        cmocka_unit_test(writer_optional_big_result_that_runs_out_is_left_out),
};

int main(void)
{
        return cmocka_run_group_tests(tests, NULL, NULL);
}
