/* The store queue (daemon/storeq.c) over a real store and writer: a thread's plug
 * holds what it submits and hands it over as one chain, which the writer commits
 * in one transaction; other threads and unplugged queues go straight through; every
 * operation is counted in flight until answered. */
#include <errno.h>
#include <pthread.h>
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
#include "storeq.h"
#include "store_fixture.h"

#define OPS 16

struct tracked_op {
        struct store_op op;
        struct store_job job;
        atomic_int calls;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int done_count;

static void tracked_done(struct store_op *op)
{
        struct tracked_op *t = (struct tracked_op *)((char *)op - offsetof(struct tracked_op, op));

        atomic_fetch_add(&t->calls, 1);
        pthread_mutex_lock(&lock);
        done_count++;
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
}

static void init_put(struct tracked_op *t, uint64_t n)
{
        memset(t, 0, sizeof(*t));
        fixture_job_init(&t->job, n, "acme", "risk.score", KILN_JOB_DONE);
        t->job.params = "{}";
        t->op.type = STORE_OP_JOB_PUT;
        t->op.job = &t->job;
        t->op.done = tracked_done;
        t->op.status = 12345;
        atomic_init(&t->calls, 0);
}

/* Waits until `n` operations are done, at most 10 s (false then). */
static bool wait_done(int n)
{
        struct timespec until;
        bool ok = true;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        pthread_mutex_lock(&lock);
        while (ok && done_count < n)
                ok = pthread_cond_timedwait(&changed, &lock, &until) == 0 || done_count >= n;
        pthread_mutex_unlock(&lock);
        return ok;
}

static int done_now(void)
{
        pthread_mutex_lock(&lock);
        int n = done_count;
        pthread_mutex_unlock(&lock);
        return n;
}

struct harness {
        struct fixture *f;
        struct store_writer *w;
        struct storeq *q;
};

static int setup(void **state)
{
        struct harness *h = calloc(1, sizeof(*h));
        void *fs;

        assert_non_null(h);
        store_fixture_setup(&fs, "storeq");
        h->f = fs;
        assert_int_equal(store_writer_start(h->f->s, &h->w), 0);
        assert_int_equal(storeq_new(h->w, &h->q), 0);
        done_count = 0;
        *state = h;
        return 0;
}

static int teardown(void **state)
{
        struct harness *h = *state;
        void *fs = h->f;

        store_writer_stop(h->w);
        storeq_free(h->q);
        store_fixture_teardown(&fs);
        free(h);
        return 0;
}

static uint64_t commits(struct store_writer *w)
{
        uint64_t c, n;

        store_writer_stats(w, &c, &n);
        return c;
}

/* Puts an operation straight into the writer's queue (past any plug) and waits
 * until it is done: the writer takes its queue in order, so whatever had reached
 * the writer before it is done by then. */
static void writer_round_trip(struct harness *h, uint64_t n)
{
        struct tracked_op marker;
        int before = done_now();

        init_put(&marker, n);
        store_writer_submit(h->w, &marker.op);
        assert_true(wait_done(before + 1));
        assert_int_equal(atomic_load(&marker.calls), 1);
        pthread_mutex_lock(&lock);
        done_count--; /* the marker is not one of the test's operations */
        pthread_mutex_unlock(&lock);
}

/* Plugged, nothing reaches the writer; unplugged, all of it goes in one commit. */
static void test_a_plug_hands_its_operations_over_as_one_commit(void **state)
{
        struct harness *h = *state;
        struct tracked_op ops[OPS];

        storeq_plug(h->q);
        for (int i = 0; i < OPS; i++) {
                init_put(&ops[i], (uint64_t)i);
                storeq_submit(h->q, &ops[i].op);
        }
        assert_int_equal(storeq_in_flight(h->q), OPS);
        writer_round_trip(h, 100);
        assert_int_equal(done_now(), 0);
        uint64_t before = commits(h->w);

        storeq_unplug(h->q);
        assert_true(wait_done(OPS));
        assert_int_equal(commits(h->w), before + 1);
        for (int i = 0; i < OPS; i++) {
                assert_int_equal(atomic_load(&ops[i].calls), 1);
                assert_true(ops[i].op.status >= 0);
                storeq_answered(h->q);
        }
        assert_int_equal(storeq_in_flight(h->q), 0);

        /* Unplugged, a submission goes at once. */
        struct tracked_op one;
        init_put(&one, OPS);
        storeq_submit(h->q, &one.op);
        assert_true(wait_done(OPS + 1));
        storeq_answered(h->q);
}

struct other_thread {
        struct storeq *q;
        struct tracked_op *op;
};

static void *submit_elsewhere(void *arg)
{
        struct other_thread *o = arg;

        storeq_submit(o->q, &o->op->op);
        return NULL;
}

/* A plug is the calling thread's: another thread's submission is not held. */
static void test_a_plug_holds_only_its_own_threads_operations(void **state)
{
        struct harness *h = *state;
        struct tracked_op mine, theirs;
        pthread_t th;

        init_put(&mine, 1);
        init_put(&theirs, 2);
        storeq_plug(h->q);
        storeq_submit(h->q, &mine.op);
        struct other_thread o = { .q = h->q, .op = &theirs };
        assert_int_equal(pthread_create(&th, NULL, submit_elsewhere, &o), 0);
        pthread_join(th, NULL);
        assert_true(wait_done(1));
        assert_int_equal(atomic_load(&theirs.calls), 1);
        assert_int_equal(atomic_load(&mine.calls), 0);
        storeq_unplug(h->q);
        assert_true(wait_done(2));
        assert_int_equal(atomic_load(&mine.calls), 1);
        storeq_answered(h->q);
        storeq_answered(h->q);
}

/* Unplugging what is not plugged does nothing; plugging again hands over first. */
static void test_unplug_without_plug_and_plug_twice(void **state)
{
        struct harness *h = *state;
        struct tracked_op a, b;
        struct storeq *other;

        storeq_unplug(NULL);
        storeq_unplug(h->q);
        assert_int_equal(storeq_new(h->w, &other), 0);

        init_put(&a, 1);
        init_put(&b, 2);
        storeq_plug(h->q);
        storeq_submit(h->q, &a.op);
        storeq_unplug(other); /* not the plugged queue: a is still held */
        writer_round_trip(h, 100);
        assert_int_equal(done_now(), 0);
        storeq_plug(other); /* unplugs h->q first */
        assert_true(wait_done(1));
        assert_int_equal(atomic_load(&a.calls), 1);
        storeq_submit(h->q, &b.op); /* h->q is no longer plugged */
        assert_true(wait_done(2));
        storeq_unplug(other);
        storeq_answered(h->q);
        storeq_answered(h->q);
        storeq_free(other);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_a_plug_hands_its_operations_over_as_one_commit, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_plug_holds_only_its_own_threads_operations, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_unplug_without_plug_and_plug_twice, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
