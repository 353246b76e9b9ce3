/* The scheduler (daemon/scheduler.c) with a fake owner: the sink below records what
 * the scheduler reports about items it runs on the real CPU backend (lens.nfw on
 * tiny grids) and, where the CUDA plugin was built, on its simulated failing
 * device (KILN_CUDA_FAULT=sim). With a memory budget (membudget.c), the test plays
 * the owner's part of giving back what finished items held. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "membudget.h"
#include "params.h"
#include "scheduler.h"
#include "util.h"

/* One item with its typed params and what the sink heard of it. */
struct fake {
        struct sched_item it;
        void *params;
        atomic_int holds;
        atomic_int started;
        _Atomic int64_t started_us; /* kiln_mono_us at the started call */
        atomic_int ended;          /* finished calls */
        enum sched_end end;
        enum kiln_err code;
        char message[256];
        char device[16];
        uint32_t batch;
        int n_parts;
        int order;                 /* 1-based finishing order */
        uint64_t need;             /* what prepare finds running it holds (0: mem_bytes) */
        atomic_int prepares;       /* prepare calls */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int finished_count;

static void s_hold(void *ctx, struct sched_item *it)
{
        atomic_fetch_add(&container_of(it, struct fake, it)->holds, 1);
}

static void s_release(void *ctx, struct sched_item *it)
{
        atomic_fetch_sub(&container_of(it, struct fake, it)->holds, 1);
}

static void s_started(void *ctx, struct sched_item *it, int64_t now_ms)
{
        pthread_mutex_lock(&lock);
        atomic_store(&container_of(it, struct fake, it)->started_us, kiln_mono_us());
        atomic_fetch_add(&container_of(it, struct fake, it)->started, 1);
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
}

static void s_progress(void *ctx, struct sched_item *it, int pct, const struct kiln_value *values, int n)
{
}

static void s_finished(void *ctx, struct sched_item *it, enum sched_end end, enum kiln_err code, const char *message,
                       const char *field, struct kiln_result *result, const char *device, uint32_t batch)
{
        struct fake *f = container_of(it, struct fake, it);
        pthread_mutex_lock(&lock);
        f->end = end;
        f->code = code;
        snprintf(f->message, sizeof(f->message), "%s", message ? message : "");
        snprintf(f->device, sizeof(f->device), "%s", device);
        f->batch = batch;
        f->n_parts = result ? result->n_parts : 0;
        if (result)
                kiln_result_clear(result);
        f->order = ++finished_count;
        atomic_fetch_add(&f->ended, 1);
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
}

static const struct sched_sink sink = { .hold = s_hold, .release = s_release, .started = s_started,
                                        .progress = s_progress, .finished = s_finished };

/* The batch hooks: a log of 'B' (batch_begin), 'E' (batch_end) and, between them
 * or not, the kind's first letter for each item finished ('s' sched.jobshop, 'l'
 * lens.nfw). */
static char hook_log[64];
static size_t hook_len;

static void hook_note(char c)
{
        pthread_mutex_lock(&lock);
        if (hook_len < sizeof(hook_log) - 1)
                hook_log[hook_len++] = c;
        pthread_mutex_unlock(&lock);
}

static void s_batch_begin(void *ctx)
{
        hook_note('B');
}

static void s_batch_end(void *ctx)
{
        hook_note('E');
}

static void s_finished_noted(void *ctx, struct sched_item *it, enum sched_end end, enum kiln_err code,
                             const char *message, const char *field, struct kiln_result *result, const char *device,
                             uint32_t batch)
{
        hook_note(it->kind->name[0] == 's' ? 's' : 'l');
        s_finished(ctx, it, end, code, message, field, result, device, batch);
}

static const struct sched_sink hooked_sink = { .hold = s_hold, .release = s_release, .started = s_started,
                                               .progress = s_progress, .finished = s_finished_noted,
                                               .batch_begin = s_batch_begin, .batch_end = s_batch_end };

static struct kiln_config *config(const char *const *extra)
{
        char *env[16];
        size_t n = 0;
        for (; extra && extra[n] && n < 15; n++)
                env[n] = (char *)extra[n];
        env[n] = NULL;
        static const char *kinds[] = { "lens.nfw", "lens.raytrace", NULL };
        struct kiln_config *cfg = NULL;
        struct kiln_config_error err;
        assert_int_equal(kiln_config_load("/nonexistent/kiln.conf", true, env, kinds, &cfg, &err), 0);
        return cfg;
}

static void fake_init_kind(struct fake *f, const char *kind_name, const char *params, enum kiln_priority prio)
{
        const struct kiln_kind *kind = kiln_kind_find(kind_name);
        memset(f, 0, sizeof(*f));
        f->params = calloc(1, kind->params_size);
        json_t *in = json_loads(params, 0, NULL), *canonical = NULL;
        struct kiln_error perr;
        assert_int_equal(kiln_params_validate(kind, in, &canonical, f->params, &perr), 0);
        json_decref(in);
        json_decref(canonical);
        f->it.kind = kind;
        f->it.params = f->params;
        f->it.tenant = "acme";
        f->it.priority = prio;
}

static void fake_init(struct fake *f, const char *params, enum kiln_priority prio)
{
        fake_init_kind(f, "lens.nfw", params, prio);
}

static void wait_finished(int n)
{
        pthread_mutex_lock(&lock);
        while (finished_count < n)
                pthread_cond_wait(&changed, &lock);
        pthread_mutex_unlock(&lock);
}

static int reset(void **state)
{
        finished_count = 0;
        return 0;
}

static const char tiny[] = "{\"mass\": 1e14, \"concentration\": 5, \"grid_size\": 8}";

static void test_items_run_and_are_reported_once(void **state)
{
        static const char *env[] = { "KILN_GPU_BACKEND=cpu", "KILN_CPU_THREADS=2", NULL };
        struct kiln_config *cfg = config(env);
        struct sched *s;
        assert_int_equal(sched_new(cfg, &sink, NULL, &s), 0);
        struct fake f[8];
        for (int i = 0; i < 8; i++) {
                fake_init(&f[i], tiny, KILN_PRIO_NORMAL);
                sched_push(s, &f[i].it);
        }
        wait_finished(8);
        sched_free(s);
        for (int i = 0; i < 8; i++) {
                assert_int_equal(atomic_load(&f[i].ended), 1);
                assert_int_equal(atomic_load(&f[i].started), 1);
                assert_int_equal(f[i].end, SCHED_END_DONE);
                assert_int_equal(f[i].n_parts, 1); /* kappa */
                assert_string_equal(f[i].device, "cpu");
                assert_true(f[i].batch >= 1);
                assert_int_equal(atomic_load(&f[i].holds), 0); /* every hold released */
                assert_int_equal(atomic_load(&f[i].it.attempts), 1);
                free(f[i].params);
        }
        kiln_config_free(cfg);
}

/* A worker gathering a batch (max_batch 4, max_delay 1 s) runs it as soon as the
 * jobs that fill it are queued, not when its delay ends: the job that fills the
 * queue wakes it, while the ones before it did not need to. */
static void test_a_batch_runs_once_its_queue_can_fill_it(void **state)
{
        static const char *env[] = { "KILN_GPU_BACKEND=cpu", "KILN_CPU_THREADS=2", "KILN_BATCH_LENS_NFW_MAX_BATCH=4",
                                     "KILN_BATCH_LENS_NFW_MAX_DELAY_US=1000000", NULL };
        struct kiln_config *cfg = config(env);
        struct sched *s;
        assert_int_equal(sched_new(cfg, &sink, NULL, &s), 0);
        struct fake f[4];
        for (int i = 0; i < 4; i++)
                fake_init(&f[i], tiny, KILN_PRIO_NORMAL);
        int64_t t0 = kiln_mono_us();
        sched_push(s, &f[0].it);
        /* A worker took it and gathers: running, not started (the batch has room). */
        while (sched_running(s) == 0)
                sched_yield();
        assert_int_equal(atomic_load(&f[0].started), 0);
        for (int i = 1; i < 4; i++)
                sched_push(s, &f[i].it);
        wait_finished(4);
        sched_free(s);
        for (int i = 0; i < 4; i++) {
                assert_int_equal(f[i].end, SCHED_END_DONE);
                assert_int_equal(f[i].batch, 4);
                /* before the gathering worker's delay (>= t0 + 1 s) could end it */
                assert_true(atomic_load(&f[i].started_us) - t0 < 900000);
                free(f[i].params);
        }
        kiln_config_free(cfg);
}

/* A pause ends a gathering worker's wait (max_delay 1 s) at once: its job goes
 * back to its queue unstarted, and the worker runs nothing more. */
static void test_a_pause_puts_a_gathered_job_back_at_once(void **state)
{
        static const char *env[] = { "KILN_GPU_BACKEND=cpu", "KILN_CPU_THREADS=2", "KILN_BATCH_LENS_NFW_MAX_BATCH=4",
                                     "KILN_BATCH_LENS_NFW_MAX_DELAY_US=1000000", NULL };
        struct kiln_config *cfg = config(env);
        struct sched *s;
        assert_int_equal(sched_new(cfg, &sink, NULL, &s), 0);
        struct fake f;
        fake_init(&f, tiny, KILN_PRIO_NORMAL);
        sched_push(s, &f.it);
        while (sched_running(s) == 0) /* taken: the worker gathers */
                sched_yield();
        int64_t t0 = kiln_mono_us();
        sched_pause(s);
        while (sched_running(s) != 0 && kiln_mono_us() - t0 < 10000000)
                sched_yield();
        assert_true(kiln_mono_us() - t0 < 600000);
        assert_int_equal(sched_queued(s), 1);
        assert_int_equal(atomic_load(&f.started), 0);
        assert_true(sched_remove(s, &f.it));
        sched_free(s);
        assert_int_equal(atomic_load(&f.ended), 0);
        free(f.params);
        kiln_config_free(cfg);
}

static void test_higher_priorities_run_first(void **state)
{
        static const char *env[] = { "KILN_GPU_BACKEND=cpu", "KILN_CPU_THREADS=1", NULL };
        struct kiln_config *cfg = config(env);
        struct sched *s;
        assert_int_equal(sched_new(cfg, &sink, NULL, &s), 0);
        /* One worker, kept busy by a big map while the others are queued. */
        struct fake busy, low, normal, critical;
        fake_init(&busy, "{\"mass\": 1e14, \"concentration\": 5, \"grid_size\": 2048, "
                         "\"maps\": [\"kappa\", \"gamma1\", \"psi\"]}",
                  KILN_PRIO_NORMAL);
        fake_init(&low, tiny, KILN_PRIO_LOW);
        fake_init(&normal, tiny, KILN_PRIO_NORMAL);
        fake_init(&critical, tiny, KILN_PRIO_CRITICAL);
        sched_push(s, &busy.it);
        pthread_mutex_lock(&lock);
        while (!atomic_load(&busy.started))
                pthread_cond_wait(&changed, &lock);
        pthread_mutex_unlock(&lock);
        sched_push(s, &low.it);
        sched_push(s, &normal.it);
        sched_push(s, &critical.it);
        wait_finished(4);
        sched_free(s);
        assert_int_equal(busy.order, 1);
        assert_int_equal(critical.order, 2);
        assert_int_equal(normal.order, 3);
        assert_int_equal(low.order, 4);
        free(busy.params);
        free(low.params);
        free(normal.params);
        free(critical.params);
        kiln_config_free(cfg);
}

static void test_a_removed_item_is_released_and_never_reported(void **state)
{
        static const char *env[] = { "KILN_GPU_BACKEND=cpu", "KILN_CPU_THREADS=1", NULL };
        struct kiln_config *cfg = config(env);
        struct sched *s;
        assert_int_equal(sched_new(cfg, &sink, NULL, &s), 0);
        sched_pause(s); /* nothing is taken */
        struct fake f;
        fake_init(&f, tiny, KILN_PRIO_NORMAL);
        sched_push(s, &f.it);
        assert_int_equal(sched_queued(s), 1);
        assert_int_equal(atomic_load(&f.holds), 1);
        assert_true(sched_remove(s, &f.it));
        assert_false(sched_remove(s, &f.it));
        assert_int_equal(atomic_load(&f.holds), 0);
        assert_int_equal(sched_queued(s), 0);
        sched_free(s);
        assert_int_equal(atomic_load(&f.ended), 0);
        free(f.params);
        kiln_config_free(cfg);
}

static void test_stops_and_deadlines_end_items_as_asked(void **state)
{
        static const char *env[] = { "KILN_GPU_BACKEND=cpu", "KILN_CPU_THREADS=1", NULL };
        struct kiln_config *cfg = config(env);
        struct sched *s;
        assert_int_equal(sched_new(cfg, &sink, NULL, &s), 0);
        struct fake cancel, shutdown, late;
        fake_init(&cancel, tiny, KILN_PRIO_NORMAL);
        fake_init(&shutdown, tiny, KILN_PRIO_NORMAL);
        fake_init(&late, tiny, KILN_PRIO_NORMAL);
        atomic_store(&cancel.it.stop, SCHED_STOP_CANCEL);
        atomic_store(&shutdown.it.stop, SCHED_STOP_SHUTDOWN);
        late.it.deadline_ms = kiln_wall_ms() - 1;
        sched_push(s, &cancel.it);
        sched_push(s, &shutdown.it);
        sched_push(s, &late.it);
        wait_finished(3);
        sched_free(s);
        assert_int_equal(cancel.end, SCHED_END_CANCELLED);
        assert_int_equal(cancel.code, KERR_CANCELLED);
        assert_int_equal(shutdown.end, SCHED_END_REQUEUED);
        assert_int_equal(late.end, SCHED_END_EXPIRED);
        assert_int_equal(late.code, KERR_TIMEOUT);
        assert_int_equal(atomic_load(&late.started), 0); /* expired before it began */
        free(cancel.params);
        free(shutdown.params);
        free(late.params);
        kiln_config_free(cfg);
}

/* ---- memory ---- */

static void wait_started(struct fake *f)
{
        pthread_mutex_lock(&lock);
        while (!atomic_load(&f->started))
                pthread_cond_wait(&changed, &lock);
        pthread_mutex_unlock(&lock);
}

static struct membudget_view budget_view(struct membudget *mb)
{
        struct membudget_view v;
        membudget_view(mb, &v);
        return v;
}

/* Process CPU time in ms, to tell a sleeping worker from a spinning one. */
static double cpu_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Half a second in which nothing happens: a worker waiting for memory must sleep
 * through it, not spin. Returns the CPU time the process used meanwhile. */
static double idle_cpu_ms(void)
{
        pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
        pthread_cond_t c = PTHREAD_COND_INITIALIZER;
        struct timespec until;
        double before = cpu_ms();
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 500 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&m);
        while (pthread_cond_timedwait(&c, &m, &until) != ETIMEDOUT)
                ;
        pthread_mutex_unlock(&m);
        return cpu_ms() - before;
}

/* A scheduler on `threads` CPU workers with a memory budget of 1000 bytes (1000 /
 * 64 = 15 of them kept for output: inputs and results take at most 985). */
struct budgeted {
        struct kiln_config *cfg;
        struct membudget *mb;
        struct sched *s;
};

static void budgeted_start_with(struct budgeted *b, int threads, const struct sched_sink *with)
{
        const char *env[] = { "KILN_GPU_BACKEND=cpu", threads == 1 ? "KILN_CPU_THREADS=1" : "KILN_CPU_THREADS=2",
                              NULL };
        b->cfg = config(env);
        assert_int_equal(membudget_new(1000, &b->mb), 0);
        struct sched_sink mine = *with;
        mine.ctx = b->mb;
        assert_int_equal(sched_new(b->cfg, &mine, b->mb, &b->s), 0);
}

static void budgeted_start(struct budgeted *b, int threads)
{
        budgeted_start_with(b, threads, &sink);
}

/* The owner's prepare as kilnd's (jobs.c, hold_bound_result): what running the
 * item holds past what was taken for it is taken now, or the item asks for it all
 * and goes back to wait. */
static int s_prepare(void *ctx, struct sched_item *it, enum kiln_err *ret_code, char *msg, char *field)
{
        struct fake *f = container_of(it, struct fake, it);
        atomic_fetch_add(&f->prepares, 1);
        if (f->need <= it->mem_held)
                return 0;
        if (!membudget_try_take(ctx, MEM_RESULTS, f->need - it->mem_held)) {
                it->mem_bytes = f->need;
                return SCHED_PREPARE_WAIT;
        }
        it->mem_held = f->need;
        return 0;
}

static const struct sched_sink prepping_sink = { .hold = s_hold, .release = s_release, .prepare = s_prepare,
                                                 .started = s_started, .progress = s_progress,
                                                 .finished = s_finished };

/* Stops the workers, then frees the budget and the configuration. */
static void budgeted_stop(struct budgeted *b)
{
        sched_free(b->s);
        membudget_free(b->mb);
        kiln_config_free(b->cfg);
}

/* Two items that each fit the budget alone but not together: the second starts
 * only once the first one's owner gives its memory back. Meanwhile an item of
 * another tenant that fits runs, and the waiting tenant's next item keeps its
 * place behind its head. */
static void test_an_item_waits_until_memory_is_given_back(void **state)
{
        struct budgeted run;
        budgeted_start(&run, 1);
        struct sched *s = run.s;
        struct membudget *mb = run.mb;
        struct fake a, b, b_next, other;
        fake_init(&a, tiny, KILN_PRIO_NORMAL);
        fake_init(&b, tiny, KILN_PRIO_NORMAL);
        fake_init(&b_next, tiny, KILN_PRIO_NORMAL);
        fake_init(&other, tiny, KILN_PRIO_NORMAL);
        a.it.mem_bytes = 600;
        b.it.mem_bytes = 600;
        other.it.tenant = "globex";
        sched_push(s, &a.it);
        wait_started(&a);
        sched_push(s, &b.it);      /* 600 more: does not fit beside a's */
        sched_push(s, &b_next.it); /* needs nothing, but comes after b */
        sched_push(s, &other.it);  /* needs nothing, another tenant */
        wait_finished(2);          /* a, then other */

        assert_int_equal(a.end, SCHED_END_DONE);
        assert_int_equal(a.it.mem_held, 600);
        assert_int_equal(other.end, SCHED_END_DONE);
        assert_int_equal(other.it.mem_held, 0);
        assert_int_equal(atomic_load(&b.started), 0);
        assert_int_equal(atomic_load(&b_next.started), 0);
        assert_int_equal(sched_queued(s), 2);
        struct membudget_view v = budget_view(mb);
        assert_int_equal(v.used, 600);          /* a's result, until its owner lets go */
        assert_int_equal(v.by_use[MEM_RESULTS], 600);
        assert_int_equal(v.waits, 1);           /* b, counted once */
        /* The worker sleeps while nothing fits. */
        double spent = idle_cpu_ms();
        print_message("CPU time while an item waited for memory for 500 ms: %.1f ms\n", spent);
        assert_true(spent < 100.0);
        assert_int_equal(atomic_load(&b.started), 0);

        membudget_give(mb, MEM_RESULTS, a.it.mem_held); /* the owner frees a's result */
        wait_finished(4);
        assert_int_equal(b.end, SCHED_END_DONE);
        assert_int_equal(b.it.mem_held, 600);
        assert_int_equal(b_next.end, SCHED_END_DONE);
        assert_true(b.order < b_next.order || b.batch > 1);
        membudget_give(mb, MEM_RESULTS, b.it.mem_held);
        v = budget_view(mb);
        assert_int_equal(v.used, 0);
        assert_int_equal(v.peak, 600);          /* never both at once */
        budgeted_stop(&run);
        free(a.params);
        free(b.params);
        free(b_next.params);
        free(other.params);
}

/* An item found to need more than was taken for it, with no more room, goes back
 * to its queue holding none and waits there like any item that does not fit: the
 * budget is never passed. Meanwhile another tenant's item runs, and a cancel
 * reaches the waiting item in its queue. */
static void test_an_item_that_needs_more_than_its_estimate_waits_for_it(void **state)
{
        struct budgeted run;
        budgeted_start_with(&run, 1, &prepping_sink);
        struct sched *s = run.s;
        struct membudget *mb = run.mb;
        struct fake a, b, other, cancelled;
        fake_init(&a, tiny, KILN_PRIO_NORMAL);
        fake_init(&b, tiny, KILN_PRIO_NORMAL);
        fake_init(&other, tiny, KILN_PRIO_NORMAL);
        fake_init(&cancelled, tiny, KILN_PRIO_NORMAL);
        a.it.mem_bytes = 600;
        b.it.mem_bytes = 100; /* its estimate */
        b.need = 500;         /* found when it is prepared: 400 more than that */
        other.it.tenant = "globex";
        cancelled.it.tenant = "initech";
        cancelled.it.mem_bytes = 100;
        cancelled.need = 500;
        sched_push(s, &a.it);
        wait_finished(1);
        assert_int_equal(a.it.mem_held, 600); /* held by its owner until given back */
        sched_push(s, &b.it);
        sched_push(s, &cancelled.it);
        sched_push(s, &other.it);
        wait_finished(2); /* other */
        assert_int_equal(other.end, SCHED_END_DONE);
        assert_int_equal(atomic_load(&b.started), 0);
        assert_true(atomic_load(&b.prepares) >= 1);
        assert_int_equal(b.it.mem_bytes, 500);
        assert_int_equal(sched_queued(s), 2);
        assert_true(sched_remove(s, &cancelled.it)); /* back in its queue: removed there */
        assert_int_equal(atomic_load(&cancelled.ended), 0);
        struct membudget_view v = budget_view(mb);
        assert_int_equal(v.used, 600); /* b gave back what it was gathered with */
        double spent = idle_cpu_ms();
        print_message("CPU time while a put-back item waited for memory for 500 ms: %.1f ms\n", spent);
        assert_true(spent < 100.0);

        membudget_give(mb, MEM_RESULTS, a.it.mem_held);
        wait_finished(3);
        assert_int_equal(b.end, SCHED_END_DONE);
        assert_int_equal(b.it.mem_held, 500);
        membudget_give(mb, MEM_RESULTS, b.it.mem_held);
        v = budget_view(mb);
        assert_int_equal(v.used, 0);
        assert_true(v.peak <= v.take_max);
        budgeted_stop(&run); /* its workers gone: every hold they had is released */
        assert_int_equal(atomic_load(&b.holds), 0);
        assert_int_equal(atomic_load(&cancelled.holds), 0);
        free(a.params);
        free(b.params);
        free(other.params);
        free(cancelled.params);
}

/* A stop that reached an item after it was taken from its queue ends it before it
 * runs or is prepared, as its owner asked. */
static void test_a_stop_set_before_its_batch_begins_ends_the_item_unrun(void **state)
{
        struct budgeted run;
        budgeted_start_with(&run, 1, &prepping_sink);
        struct fake c, e;
        fake_init(&c, tiny, KILN_PRIO_NORMAL);
        fake_init(&e, tiny, KILN_PRIO_NORMAL);
        atomic_store(&c.it.stop, SCHED_STOP_CANCEL);
        atomic_store(&e.it.stop, SCHED_STOP_EXPIRE);
        sched_push(run.s, &c.it);
        sched_push(run.s, &e.it);
        wait_finished(2);
        assert_int_equal(c.end, SCHED_END_CANCELLED);
        assert_int_equal(c.code, KERR_CANCELLED);
        assert_int_equal(e.end, SCHED_END_EXPIRED);
        assert_int_equal(atomic_load(&c.started) + atomic_load(&e.started), 0);
        assert_int_equal(atomic_load(&c.prepares) + atomic_load(&e.prepares), 0);
        budgeted_stop(&run);
        free(c.params);
        free(e.params);
}

/* An item whose memory does not fit does not hold back a smaller item of another
 * kind at its priority. */
static void test_an_item_that_does_not_fit_does_not_block_another_kind(void **state)
{
        struct budgeted run;
        budgeted_start(&run, 1);
        struct sched *s = run.s;
        struct membudget *mb = run.mb;
        membudget_charge(mb, MEM_OUTPUT, 700); /* held elsewhere: output buffers */
        struct fake big, small;
        fake_init(&big, tiny, KILN_PRIO_NORMAL);
        fake_init_kind(&small, "lens.raytrace",
                       "{\"mass\": 1e15, \"concentration\": 5, \"grid_size\": 16, \"fov_arcsec\": 120, "
                       "\"source\": {\"x_arcsec\": 1.0, \"y_arcsec\": 0.5, \"sigma_arcsec\": 2.0}}",
                       KILN_PRIO_NORMAL);
        big.it.mem_bytes = 600;
        small.it.mem_bytes = 285; /* 1000 less 1000 / 64 for output, less the 700 */
        sched_push(s, &big.it);
        sched_push(s, &small.it);
        wait_finished(1);
        assert_int_equal(small.end, SCHED_END_DONE);
        assert_int_equal(small.it.mem_held, 285);
        assert_int_equal(atomic_load(&big.started), 0);
        assert_int_equal(sched_queued(s), 1);
        membudget_give(mb, MEM_RESULTS, small.it.mem_held);
        assert_int_equal(atomic_load(&big.started), 0); /* 700 + 600 still over 1000 */
        membudget_give(mb, MEM_OUTPUT, 700);
        wait_finished(2);
        assert_int_equal(big.end, SCHED_END_DONE);
        assert_int_equal(big.it.mem_held, 600);
        membudget_give(mb, MEM_RESULTS, big.it.mem_held);
        budgeted_stop(&run);
        free(big.params);
        free(small.params);
}

/* Strict priority holds with memory too: while a critical item waits for memory
 * that will come back, a low one that would fit waits behind it; a critical item
 * that fits runs. */
static void test_lower_priorities_wait_behind_an_item_waiting_for_memory(void **state)
{
        struct budgeted run;
        budgeted_start(&run, 1);
        struct sched *s = run.s;
        struct membudget *mb = run.mb;
        struct fake holder, big, low, fits;
        fake_init(&holder, tiny, KILN_PRIO_NORMAL);
        fake_init(&big, tiny, KILN_PRIO_CRITICAL);
        fake_init(&low, tiny, KILN_PRIO_LOW);
        fake_init(&fits, tiny, KILN_PRIO_CRITICAL);
        holder.it.mem_bytes = 300;
        big.it.mem_bytes = 800;
        fits.it.tenant = "globex";
        sched_push(s, &holder.it);
        wait_started(&holder);
        sched_push(s, &big.it);
        sched_push(s, &low.it);
        sched_push(s, &fits.it);
        wait_finished(2); /* holder and fits */
        assert_int_equal(fits.end, SCHED_END_DONE);
        assert_int_equal(atomic_load(&big.started), 0);
        membudget_give(mb, MEM_RESULTS, holder.it.mem_held);
        wait_finished(4);
        assert_true(big.order < low.order);
        membudget_give(mb, MEM_RESULTS, big.it.mem_held);
        assert_int_equal(budget_view(mb).used, 0);
        budgeted_stop(&run);
        free(holder.params);
        free(big.params);
        free(low.params);
        free(fits.params);
}

/* An item bigger than the whole budget never runs and holds back nobody, not even
 * lower priorities; it waits, asleep, until it is taken back. */
static void test_an_item_bigger_than_the_budget_stays_queued_without_spinning(void **state)
{
        struct budgeted run;
        budgeted_start(&run, 2);
        struct sched *s = run.s;
        struct membudget *mb = run.mb;
        struct fake huge, low;
        fake_init(&huge, tiny, KILN_PRIO_HIGH);
        fake_init(&low, tiny, KILN_PRIO_LOW);
        huge.it.mem_bytes = 986; /* more than inputs and results may ever hold (985) */
        low.it.mem_bytes = 985;
        sched_push(s, &huge.it);
        sched_push(s, &low.it);
        wait_finished(1);
        assert_int_equal(low.end, SCHED_END_DONE);
        membudget_give(mb, MEM_RESULTS, low.it.mem_held);
        double spent = idle_cpu_ms();
        print_message("CPU time while an oversized item stayed queued for 500 ms: %.1f ms\n", spent);
        assert_true(spent < 100.0);
        assert_int_equal(atomic_load(&huge.started), 0);
        assert_int_equal(sched_queued(s), 1);
        assert_true(sched_remove(s, &huge.it));
        assert_int_equal(huge.it.mem_held, 0);
        assert_int_equal(atomic_load(&huge.holds), 0);
        assert_int_equal(budget_view(mb).used, 0);
        assert_int_equal(budget_view(mb).waits, 1);
        budgeted_stop(&run);
        assert_int_equal(atomic_load(&huge.ended), 0);
        free(huge.params);
        free(low.params);
}

/* Queued jobs' inputs (held from their submit) fill the budget so that no result
 * fits: with nothing running, nothing would ever give memory back, so the oldest
 * job runs all the same (its memory charged), instead of every one of them waiting
 * until it expires. */
static void test_queued_inputs_never_keep_every_job_from_running(void **state)
{
        struct budgeted run;
        budgeted_start(&run, 1);
        struct sched *s = run.s;
        struct membudget *mb = run.mb;
        membudget_charge(mb, MEM_INPUTS, 900); /* the queued jobs' inputs */
        struct fake a, b;
        fake_init(&a, tiny, KILN_PRIO_NORMAL);
        fake_init(&b, tiny, KILN_PRIO_NORMAL);
        a.it.mem_bytes = 300;
        b.it.mem_bytes = 300;
        sched_push(s, &a.it);
        sched_push(s, &b.it);
        wait_finished(1);
        assert_int_equal(a.end, SCHED_END_DONE);
        assert_int_equal(a.it.mem_held, 300);
        /* a's result is still held: b waits, as the budget says. */
        assert_int_equal(atomic_load(&b.started), 0);
        membudget_give(mb, MEM_RESULTS, a.it.mem_held);
        wait_finished(2);
        assert_int_equal(b.end, SCHED_END_DONE);
        membudget_give(mb, MEM_RESULTS, b.it.mem_held);
        membudget_give(mb, MEM_INPUTS, 900);
        assert_int_equal(budget_view(mb).used, 0);
        budgeted_stop(&run);
        free(a.params);
        free(b.params);
}

/* The CUDA plugin's simulated device fails every batch; the CPU comes after it. */
static bool plugin_built(void)
{
        const char *dir = getenv("KILN_PLUGIN_DIR");
        char path[512];
        snprintf(path, sizeof(path), "%s/libkiln-cuda.so", dir ? dir : "");
        return dir && access(path, R_OK) == 0;
}

static void run_on_failing_device(const char *max_retries, struct fake *f)
{
        char retries[64];
        snprintf(retries, sizeof(retries), "KILN_JOBS_MAX_RETRIES=%s", max_retries);
        const char *env[] = { "KILN_GPU_BACKEND=auto", "KILN_CPU_THREADS=1", retries, NULL };
        struct kiln_config *cfg = config(env);
        struct sched *s;
        assert_int_equal(sched_new(cfg, &sink, NULL, &s), 0);
        fake_init(f, tiny, KILN_PRIO_NORMAL);
        sched_push(s, &f->it);
        wait_finished(1);
        sched_free(s);
        free(f->params);
        kiln_config_free(cfg);
}

static void test_max_retries_bounds_the_attempts_after_device_failures(void **state)
{
        if (!plugin_built()) {
                print_message("the CUDA plugin was not built here (no nvcc): nothing to fail over from\n");
                skip();
        }
        setenv("KILN_CUDA_FAULT", "sim,probe-ms=600000", 1);
        struct fake retried, refused;
        /* One retry allowed: the simulated device fails it, the CPU runs it. */
        run_on_failing_device("1", &retried);
        finished_count = 0;
        /* None allowed: the device failure ends it. */
        run_on_failing_device("0", &refused);
        unsetenv("KILN_CUDA_FAULT");

        assert_int_equal(retried.end, SCHED_END_DONE);
        assert_string_equal(retried.device, "cpu");
        assert_int_equal(atomic_load(&retried.it.attempts), 2);
        assert_int_equal(refused.end, SCHED_END_FAILED);
        assert_int_equal(refused.code, KERR_UNAVAILABLE);
        assert_int_equal(atomic_load(&refused.it.attempts), 1);
        assert_non_null(strstr(refused.message, "jobs.max_retries = 0"));
}

/* The batch hooks bracket each batch of a kind whose tasks end together (one with
 * run_cpu_batch, sched.jobshop here) on the worker that runs it, with every finish
 * of the batch between them; a kind that ends its tasks one by one (lens.nfw) runs
 * without them. */
static void test_batch_hooks_bracket_the_batches_whose_tasks_end_together(void **state)
{
        static const char *env[] = { "KILN_GPU_BACKEND=cpu", "KILN_CPU_THREADS=1", NULL };
        static const char instance[] = "2 2\n0 3 1 2\n1 4 0 1\n";
        struct kiln_array in = { .name = "instance", .dtype = KILN_DTYPE_BYTES, .ndim = 1,
                                 .shape = { sizeof(instance) - 1 }, .bytes = sizeof(instance) - 1,
                                 .data = instance };
        struct kiln_config *cfg = config(env);
        struct sched *s;
        struct fake f[5];

        hook_len = 0;
        memset(hook_log, 0, sizeof(hook_log));
        assert_int_equal(sched_new(cfg, &hooked_sink, NULL, &s), 0);
        for (int i = 0; i < 3; i++) {
                fake_init_kind(&f[i], "sched.jobshop", "{\"time_limit_ms\": 200}", KILN_PRIO_NORMAL);
                f[i].it.inputs = &in;
                f[i].it.n_inputs = 1;
                sched_push(s, &f[i].it);
        }
        for (int i = 3; i < 5; i++) {
                fake_init(&f[i], tiny, KILN_PRIO_NORMAL);
                sched_push(s, &f[i].it);
        }
        wait_finished(5);
        sched_free(s);

        pthread_mutex_lock(&lock);
        char log[sizeof(hook_log)];
        memcpy(log, hook_log, sizeof(log));
        pthread_mutex_unlock(&lock);
        print_message("batch hooks and finishes: %s\n", log);
        bool in_batch = false;
        int begins = 0, js = 0, lens = 0;
        for (const char *c = log; *c; c++) {
                switch (*c) {
                case 'B':
                        assert_false(in_batch); /* one worker: batches do not overlap */
                        in_batch = true;
                        begins++;
                        break;
                case 'E':
                        assert_true(in_batch);
                        in_batch = false;
                        break;
                case 's':
                        assert_true(in_batch);
                        js++;
                        break;
                default:
                        assert_false(in_batch);
                        lens++;
                }
        }
        assert_false(in_batch);
        assert_true(begins >= 1 && begins <= 3);
        assert_int_equal(js, 3);
        assert_int_equal(lens, 2);
        for (int i = 0; i < 5; i++) {
                assert_int_equal(f[i].end, SCHED_END_DONE);
                free(f[i].params);
        }
        kiln_config_free(cfg);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_items_run_and_are_reported_once, reset),
                cmocka_unit_test_setup(test_a_batch_runs_once_its_queue_can_fill_it, reset),
                cmocka_unit_test_setup(test_a_pause_puts_a_gathered_job_back_at_once, reset),
                cmocka_unit_test_setup(test_higher_priorities_run_first, reset),
                cmocka_unit_test_setup(test_a_removed_item_is_released_and_never_reported, reset),
                cmocka_unit_test_setup(test_stops_and_deadlines_end_items_as_asked, reset),
                cmocka_unit_test_setup(test_an_item_waits_until_memory_is_given_back, reset),
                cmocka_unit_test_setup(test_an_item_that_needs_more_than_its_estimate_waits_for_it, reset),
                cmocka_unit_test_setup(test_a_stop_set_before_its_batch_begins_ends_the_item_unrun, reset),
                cmocka_unit_test_setup(test_an_item_that_does_not_fit_does_not_block_another_kind, reset),
                cmocka_unit_test_setup(test_lower_priorities_wait_behind_an_item_waiting_for_memory, reset),
                cmocka_unit_test_setup(test_an_item_bigger_than_the_budget_stays_queued_without_spinning, reset),
                cmocka_unit_test_setup(test_queued_inputs_never_keep_every_job_from_running, reset),
                cmocka_unit_test_setup(test_max_retries_bounds_the_attempts_after_device_failures, reset),
                cmocka_unit_test_setup(test_batch_hooks_bracket_the_batches_whose_tasks_end_together, reset),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
