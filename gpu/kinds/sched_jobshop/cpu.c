/* sched.jobshop on the CPU: the instance, its lower bound, then one or more
 * independent tabu walks (search.h) until the time limit, the bound, the target
 * or a cancel; the best walk's schedule is the result. The jobs of a batch run
 * side by side, each on a thread of its own, so that none waits for the time
 * limits of the others.
 *
 * Walk 0 runs on the calling worker thread and reports progress (the best
 * makespan, the bound and the best schedule's start times, the same `starts` as
 * the result, so a client redraws its chart as the search improves); further walks
 * run on threads of their own. Without `walks` a job takes the cores that other
 * running jobshop jobs leave, so one job alone on an idle machine uses every
 * core and many jobs share them (one walk each at worst). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobshop.h"
#include "jtext.h"
#include "search.h"

/* Moves between clock readings: well under a millisecond on any instance. */
#define STEPS_PER_CHECK 8
#define REPORT_NEWS_NS (100 * 1000000LL)   /* a new best, at most this often (the daemon sends no more) */
#define REPORT_ANYWAY_NS (250 * 1000000LL) /* the time's share, with or without news */

/* Jobshop tasks running now in this process (for the automatic walk count). */
static atomic_int running_tasks;

/* What the reporting walk keeps for progress: the schedule it last showed, and
 * its own walk memory to evaluate a copied schedule in (js_load, as the result
 * is made), since the walk that found it goes on changing its own. */
struct shown {
        int32_t *seq;               /* n_ops: the machine orders copied from shared.best_seq */
        struct js_walk eval;
        void *eval_mem;
        js_time mk;                 /* the makespan of `starts`; -1: none yet */
        char *starts;               /* its start times as JSON (the result's `starts`), or NULL */
};

struct shared {
        pthread_mutex_t lock;
        js_time best_mk;            /* the best of every walk, under lock */
        int32_t *best_seq;          /* n_ops: its machine orders, under lock; NULL: not kept */
        int64_t best_ns;            /* when it was first found, since t0 */
        int best_walk;
        atomic_llong best_seen;     /* best_mk, readable without the lock */
        atomic_int stop;            /* a walk reached the bound or target, or time is up */
        int64_t t0_ns, deadline_ns;
        struct kiln_exec *ex;       /* the cancel flag and progress */
        const struct js_instance *in;
        struct shown shown;         /* the reporter's alone (walk 0, then solve) */
};

struct walker {
        struct shared *sh;
        struct js_walk w;
        void *mem;
        int index;
        uint64_t seed;
        js_time stop_at;
        struct js_config cfg;
        pthread_t thread;
        bool running;
};

static int64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void note_best(struct walker *wk, int64_t now)
{
        struct shared *sh = wk->sh;
        pthread_mutex_lock(&sh->lock);
        if (wk->w.best_mk < sh->best_mk) {
                sh->best_mk = wk->w.best_mk;
                sh->best_ns = now - sh->t0_ns;
                sh->best_walk = wk->index;
                /* This walk goes on changing its best_seq: the reporter reads the copy. */
                if (sh->best_seq)
                        memcpy(sh->best_seq, wk->w.best_seq, (size_t)wk->w.in.n_ops * sizeof(*sh->best_seq));
                atomic_store(&sh->best_seen, (long long)sh->best_mk);
        }
        pthread_mutex_unlock(&sh->lock);
}

/* starts: one array per job of its operations' start times, as JSON text
 * (malloc'd, in *ret). Returns >= 0 or -ENOMEM. */
static int starts_text(const struct js_instance *in, const int64_t *start, char **ret)
{
        struct kiln_jtext j;
        kiln_jtext_init(&j);
        kiln_jtext_open(&j);
        for (int32_t job = 0; job < in->n_jobs; job++) {
                kiln_jtext_open(&j);
                for (int32_t o = in->job_start[job]; o < in->job_start[job + 1]; o++)
                        kiln_jtext_int(&j, start[o]);
                kiln_jtext_close(&j);
        }
        kiln_jtext_close(&j);
        return kiln_jtext_finish(&j, ret);
}

/* The best schedule as the result's `starts` text, in sh->shown: rebuilt when the
 * best has changed since it was last shown. Returns its makespan. */
static js_time show_best(struct shared *sh)
{
        struct shown *sw = &sh->shown;
        pthread_mutex_lock(&sh->lock);
        js_time mk = sh->best_mk;
        bool news = sw->eval_mem && mk != sw->mk && mk != INT64_MAX;
        if (news)
                memcpy(sw->seq, sh->best_seq, (size_t)sh->in->n_ops * sizeof(*sw->seq));
        pthread_mutex_unlock(&sh->lock);
        if (!news)
                return mk;
        char *text = NULL;
        js_load(&sw->eval, sw->seq); /* heads = the start times */
        free(sw->starts);
        sw->starts = starts_text(sh->in, sw->eval.head, &text) >= 0 ? text : NULL;
        sw->mk = mk;
        return mk;
}

/* Progress: the share of the time limit spent, the best makespan and the bound,
 * and the best schedule's start times (left out when they could not be kept). */
static void report(struct shared *sh, js_time lb, int64_t now)
{
        double span = (double)(sh->deadline_ns - sh->t0_ns);
        double frac = span > 0 ? (double)(now - sh->t0_ns) / span : 1.0;
        struct kiln_value v[3] = { { .name = "best", .type = KILN_V_INT },
                                   { .name = "lower_bound", .type = KILN_V_INT },
                                   { .name = "starts", .type = KILN_V_JSON } };
        v[0].i = show_best(sh);
        v[1].i = lb;
        v[2].text = sh->shown.starts;
        kiln_exec_report(sh->ex, frac < 0 ? 0 : frac > 1 ? 1 : frac, v, sh->shown.starts ? 3 : 2);
}

/* One walk until something stops them all. The reporting walk (walk 0) also
 * reports progress: a new best at most every REPORT_NEWS_NS, and the share of the
 * time limit spent every REPORT_ANYWAY_NS. */
static void walk_run(struct walker *wk, js_time lb)
{
        struct shared *sh = wk->sh;
        bool reporter = wk->index == 0;
        long long reported = -1;
        int64_t last_report = 0;

        js_walk_start(&wk->w, &wk->cfg, wk->seed, wk->stop_at);
        note_best(wk, now_ns());
        while (!wk->w.done && !atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
                bool better = false;
                for (int i = 0; i < STEPS_PER_CHECK && !wk->w.done; i++)
                        better |= js_step(&wk->w) != 0;
                int64_t now = now_ns();
                if (better)
                        note_best(wk, now);
                if (now >= sh->deadline_ns || kiln_exec_stopped(sh->ex))
                        break;
                long long seen = atomic_load_explicit(&sh->best_seen, memory_order_relaxed);
                if (reporter && ((seen != reported && now - last_report >= REPORT_NEWS_NS) ||
                                 now - last_report >= REPORT_ANYWAY_NS)) {
                        report(sh, lb, now);
                        reported = seen;
                        last_report = now;
                }
        }
        /* The bound or target is reached, or time is up: every walk stops. */
        atomic_store(&sh->stop, 1);
}

struct thread_arg {
        struct walker *wk;
        js_time lb;
};

static void *walk_thread(void *p)
{
        struct thread_arg *a = p;
        walk_run(a->wk, a->lb);
        return NULL;
}

/* How many walks: the asked number, or the cores left to this job. */
static int walk_count(const struct jobshop_params *p, int running)
{
        if (p->walks > 0)
                return p->walks > JS_MAX_WALKS ? JS_MAX_WALKS : p->walks;
        long n = (long)kiln_cpus() / (running > 0 ? running : 1);
        return n < 1 ? 1 : n > JS_MAX_WALKS ? JS_MAX_WALKS : (int)n;
}

static int add_starts(struct kiln_result *res, const struct js_instance *in, const int64_t *start)
{
        char *text = NULL;
        int r = starts_text(in, start, &text);
        return r < 0 ? r : kiln_result_take_json(res, "starts", text);
}

int js_result_add(struct kiln_result *res, const struct js_instance *in, const int64_t *start, int64_t lb,
                  const struct js_outcome *o)
{
        int64_t mk = 0;
        int r;
        for (int32_t op = 0; op < in->n_ops; op++)
                if (start[op] + in->dur[op] > mk)
                        mk = start[op] + in->dur[op];
        if ((r = kiln_result_add_int(res, "makespan", mk)) < 0 ||
            (r = kiln_result_add_int(res, "lower_bound", lb)) < 0 ||
            (r = kiln_result_add_scalar(res, "gap", lb > 0 ? (double)(mk - lb) / (double)lb : 0.0)) < 0 ||
            (r = kiln_result_add_bool(res, "optimal", mk == lb)) < 0 ||
            (r = kiln_result_add_int(res, "iterations", o->iterations)) < 0 ||
            (r = kiln_result_add_int(res, "ms_to_best", o->ms_to_best)) < 0 ||
            (r = kiln_result_add_int(res, "walks", o->walks)) < 0 ||
            (r = kiln_result_add_int(res, "moves", o->moves)) < 0)
                return r;
        return add_starts(res, in, start);
}

/* The copies that let progress carry the schedule. Without memory for them the
 * search runs all the same, its progress without the schedule. */
static void shown_new(struct shared *sh, const struct js_inst *view, size_t walk_bytes)
{
        size_t seq_bytes = ((size_t)view->n_ops ? (size_t)view->n_ops : 1) * sizeof(int32_t);
        sh->best_seq = malloc(seq_bytes);
        sh->shown.seq = malloc(seq_bytes);
        sh->shown.eval_mem = malloc(walk_bytes);
        if (!sh->best_seq || !sh->shown.seq || !sh->shown.eval_mem) {
                free(sh->best_seq);
                free(sh->shown.seq);
                free(sh->shown.eval_mem);
                sh->best_seq = sh->shown.seq = NULL;
                sh->shown.eval_mem = NULL;
                return;
        }
        js_walk_bind(&sh->shown.eval, sh->shown.eval_mem, view);
}

static void shown_free(struct shared *sh)
{
        free(sh->best_seq);
        free(sh->shown.seq);
        free(sh->shown.eval_mem);
        free(sh->shown.starts);
}

static int solve(struct kiln_task *t, const struct js_instance *in, const struct js_inst *view, js_time lb,
                 int64_t t0)
{
        const struct jobshop_params *p = t->params;
        int walks = walk_count(p, atomic_load(&running_tasks));
        struct walker *wk = calloc((size_t)walks, sizeof(*wk));
        struct shared sh = { .best_mk = INT64_MAX, .best_walk = 0, .t0_ns = t0, .ex = t->exec, .in = in,
                             .shown = { .mk = -1 } };
        struct js_config cfg = js_config_for(view);
        js_time stop_at = p->target > lb ? (js_time)p->target : lb;
        size_t bytes = js_walk_bind(NULL, NULL, view);
        int r = 0;

        if (!wk)
                return -ENOMEM;
        sh.deadline_ns = t0 + (int64_t)p->time_limit_ms * 1000000LL;
        atomic_init(&sh.best_seen, (long long)INT64_MAX);
        atomic_init(&sh.stop, 0);
        pthread_mutex_init(&sh.lock, NULL);
        if (t->exec && t->exec->report)
                shown_new(&sh, view, bytes);
        for (int i = 0; i < walks; i++) {
                wk[i].sh = &sh;
                wk[i].index = i;
                wk[i].seed = js_walk_seed((uint64_t)p->seed, (uint32_t)i);
                wk[i].stop_at = stop_at;
                wk[i].cfg = cfg;
                wk[i].mem = malloc(bytes);
                if (!wk[i].mem) {
                        r = -ENOMEM;
                        break;
                }
                js_walk_bind(&wk[i].w, wk[i].mem, view);
        }
        struct thread_arg *args = r >= 0 ? calloc((size_t)walks, sizeof(*args)) : NULL;
        if (r >= 0 && !args)
                r = -ENOMEM;
        for (int i = 1; r >= 0 && i < walks; i++) {
                args[i] = (struct thread_arg){ &wk[i], lb };
                /* A walk that cannot get a thread is left out; walk 0 always runs. */
                wk[i].running = pthread_create(&wk[i].thread, NULL, walk_thread, &args[i]) == 0;
        }
        if (r >= 0)
                walk_run(&wk[0], lb);
        int64_t iterations = 0, moves = 0;
        for (int i = 0; i < walks; i++) {
                if (wk[i].running)
                        pthread_join(wk[i].thread, NULL);
                iterations += wk[i].w.iter;
                moves += wk[i].w.moves;
        }
        if (r >= 0 && kiln_exec_stopped(t->exec))
                r = -ECANCELED;
        if (r >= 0) {
                struct js_walk *best = &wk[sh.best_walk].w;
                js_load(best, best->best_seq); /* heads = the start times */
                report(&sh, lb, now_ns());
                struct js_outcome o = { iterations, sh.best_ns / 1000000, walks, moves };
                r = js_result_add(t->result, in, best->head, lb, &o);
        }
        for (int i = 0; i < walks; i++)
                free(wk[i].mem);
        free(args);
        free(wk);
        shown_free(&sh);
        pthread_mutex_destroy(&sh.lock);
        return r;
}

/* One task; its count in running_tasks is the caller's. */
static int run_counted(struct kiln_task *t)
{
        const struct kiln_array *a = js_instance_input(t->inputs, t->n_inputs);
        struct js_instance *in = NULL;
        struct kiln_error err;
        int64_t t0 = now_ns();

        if (!a)
                return -EINVAL;
        int r = js_instance_parse(a->data, a->bytes, &in, &err);
        if (r < 0)
                return r;
        int32_t *derived = malloc(js_derived_ints(in->n_mach, in->n_ops) * sizeof(*derived));
        js_time lb = js_lower_bound(in);
        if (!derived || lb < 0) {
                free(derived);
                js_instance_free(in);
                return -ENOMEM;
        }
        struct js_inst view;
        js_inst_derive(&view, in->n_jobs, in->n_mach, in->n_ops, in->job_start, in->mach, in->dur, derived);
        r = solve(t, in, &view, lb, t0);
        free(derived);
        js_instance_free(in);
        return r;
}

int js_run_cpu(struct kiln_task *t)
{
        atomic_fetch_add(&running_tasks, 1);
        int r = run_counted(t);
        atomic_fetch_sub(&running_tasks, 1);
        return r;
}

static void *batch_thread(void *p)
{
        struct kiln_task *t = p;
        t->status = run_counted(t);
        return NULL;
}

int js_run_cpu_batch(struct kiln_task *const *t, size_t n)
{
        pthread_t *thread = calloc(n, sizeof(*thread));
        bool *started = calloc(n, sizeof(*started));

        if (!thread || !started) {
                free(thread);
                free(started);
                return -ENOMEM;
        }
        /* Counted before any starts, so that each takes its share of the cores. */
        atomic_fetch_add(&running_tasks, (int)n);
        for (size_t i = 1; i < n; i++)
                started[i] = pthread_create(&thread[i], NULL, batch_thread, t[i]) == 0;
        t[0]->status = run_counted(t[0]);
        for (size_t i = 1; i < n; i++) {
                if (started[i])
                        pthread_join(thread[i], NULL);
                else
                        t[i]->status = run_counted(t[i]); /* no thread: after the others */
        }
        atomic_fetch_sub(&running_tasks, (int)n);
        free(thread);
        free(started);
        return 0;
}
