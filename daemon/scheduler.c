/* Priority queues, the dynamic batcher and the worker pool.
 *
 * A worker takes the oldest job of the highest non-empty priority (strict between
 * levels, FIFO within one), then gathers more queued jobs of the same kind and the
 * same priority, up to [batch.KIND] max_batch, waiting at most max_delay_us for the
 * batch to fill (Triton's dynamic batcher). While it gathers, no other worker starts
 * a batch from that queue, so a burst of small jobs becomes a few full batches. The
 * batch then goes to the first backend that runs it; a backend that loses a device
 * hands the unfinished tasks back and the next device or backend retries them.
 *
 * Every task of a running batch is "claimed" exactly once: by the worker when its
 * backend reports it finished, or by the reaper thread when its deadline passes
 * first, so a job ends `expired` on time even while its device is busy.
 *
 * A job starts only with its memory taken from the budget (sched_queue.c decides
 * which jobs fit); workers with nothing that fits sleep on `wake` until a push, or
 * until the budget's hook says memory was given back. */
#include "scheduler.h"
#include "scheduler_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "kind.h"
#include "log.h"
#include "membudget.h"
#include "metrics.h"
#include "util.h"

/* An absolute CLOCK_MONOTONIC time `ms` from now (condvars use that clock). */
static struct timespec after_ms(int64_t ms)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (ms < 0)
                ms = 0;
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
        }
        return ts;
}

static struct timespec after_us(uint32_t us)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += us / 1000000;
        ts.tv_nsec += (long)(us % 1000000) * 1000;
        if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
        }
        return ts;
}

/* A text progress value (KILN_V_STR, KILN_V_JSON) longer than this is left out
 * of `progress` (the `done` result still carries it): progress goes to every
 * watcher up to ten times a second, and sched.jobshop's schedule of 10,000
 * operations is about 100 KiB. */
#define PROGRESS_TEXT_MAX (256u << 10)

static bool is_text(const struct kiln_value *v)
{
        return v->type == KILN_V_STR || v->type == KILN_V_JSON;
}

/* Whether a value of the kind goes into `progress`: not a text over the limit (nor
 * a text value without its text). */
static bool progress_keeps(const struct kiln_value *v)
{
        return !is_text(v) || (v->text && strnlen(v->text, PROGRESS_TEXT_MAX + 1) <= PROGRESS_TEXT_MAX);
}

static bool value_equal(const struct kiln_value *a, const struct kiln_value *b)
{
        if (a->type != b->type || strcmp(a->name, b->name))
                return false;
        switch (a->type) {
        case KILN_V_NUM: return a->num == b->num;
        case KILN_V_INT: return a->i == b->i;
        case KILN_V_BOOL: return a->b == b->b;
        case KILN_V_STR:
        case KILN_V_JSON: return a->text == b->text || (a->text && b->text && !strcmp(a->text, b->text));
        default: return true; /* null */
        }
}

/* Whether the kind's values a[0..na) that progress keeps are the kept ones b[0..nb). */
static bool values_equal(const struct kiln_value *a, int na, const struct kiln_value *b, int nb)
{
        int k = 0;
        for (int i = 0; i < na; i++) {
                if (!progress_keeps(&a[i]))
                        continue;
                if (k >= nb || !value_equal(&a[i], &b[k]))
                        return false;
                k++;
        }
        return k == nb;
}

/* Frees the texts the progress context owns and forgets its values. */
static void progress_values_clear(struct progress_ctx *pc)
{
        for (int i = 0; i < pc->n_values; i++)
                if (is_text(&pc->values[i]))
                        free(pc->values[i].text);
        pc->n_values = 0;
}

/* Keeps the kind's values in the context: its texts are the kind's, gone after
 * the call, so each kept text is copied (a copy that fails leaves the value out). */
static void progress_values_set(struct progress_ctx *pc, const struct kiln_value *values, int n)
{
        progress_values_clear(pc);
        for (int i = 0; i < n; i++) {
                if (!progress_keeps(&values[i]))
                        continue;
                struct kiln_value *v = &pc->values[pc->n_values];
                *v = values[i];
                if (is_text(v) && !(v->text = strdup(values[i].text)))
                        continue;
                pc->n_values++;
        }
}

/* Publishes progress and the kind's own values: at most one report every 100 ms,
 * and none in an item's first 100 ms (progress_sent_ms starts at its start). A
 * change of the values alone is worth a report; the latest ones go with it. The
 * values (texts included) are the context's own copies, lent to the sink for the
 * call. Called by one thread of the task at a time (kind.h). */
static void on_report(struct kiln_exec *ex, double fraction, const struct kiln_value *values, int n)
{
        struct progress_ctx *pc = (struct progress_ctx *)ex;
        struct sched_item *it = pc->it;
        int pct = (int)(fraction * 100.0);
        if (pct < 0)
                pct = 0;
        if (pct > 99)
                pct = 99; /* 100 is reported by `finished` */
        if (n > KILN_MAX_PROGRESS_VALUES)
                n = KILN_MAX_PROGRESS_VALUES;
        if (n < 0)
                n = 0;
        bool changed = pct != atomic_load_explicit(&it->pct, memory_order_relaxed);
        if (n && values != pc->values && !values_equal(values, n, pc->values, pc->n_values)) {
                progress_values_set(pc, values, n);
                changed = true;
        }
        if (!changed)
                return;
        atomic_store_explicit(&it->pct, pct, memory_order_relaxed);
        int64_t now = kiln_mono_ms();
        if (now - it->progress_sent_ms < 100)
                return;
        it->progress_sent_ms = now;
        pc->s->sink.progress(pc->s->sink.ctx, it, pct, pc->values, pc->n_values);
}

static void on_progress(struct kiln_exec *ex, double fraction)
{
        struct progress_ctx *pc = (struct progress_ctx *)ex;
        on_report(ex, fraction, pc->values, pc->n_values);
}

static void finished(struct sched *s, struct sched_item *it, enum sched_end end, enum kiln_err code,
                     const char *message, struct kiln_result *result, const char *device, uint32_t batch)
{
        s->sink.finished(s->sink.ctx, it, end, code, message, NULL, result, device && *device ? device : "cpu",
                         batch);
}

/* Ends an item that failed, naming the input at fault ("" when it was none). */
static void finished_failed(struct sched *s, struct sched_item *it, enum kiln_err code, const char *message,
                            const char *field, const char *device, uint32_t batch)
{
        s->sink.finished(s->sink.ctx, it, SCHED_END_FAILED, code, message, field, NULL,
                         device && *device ? device : "cpu", batch);
}

/* Ends item i of a batch that this thread has claimed, from the task's outcome.
 * A cancel or a passed deadline asked before it ended wins over its result: a
 * kind that runs a batch's tasks as one (vec.search's shared product) stops only
 * when all of them are stopped, and a cancelled job must end cancelled whatever it
 * was batched with. */
static void finish_claimed(struct batch *b, size_t i, int status, const char *device)
{
        struct sched *s = b->s;
        struct sched_item *it = b->items[i];
        uint32_t n = (uint32_t)b->n;
        int stop = atomic_load(&it->stop);

        if (status >= 0 && stop != SCHED_STOP_CANCEL && stop != SCHED_STOP_EXPIRE) {
                finished(s, it, SCHED_END_DONE, 0, NULL, &b->results[i], device, n);
                kiln_result_clear(&b->results[i]); /* empty unless the owner left it */
                return;
        }
        kiln_result_clear(&b->results[i]);
        switch (stop) {
        case SCHED_STOP_CANCEL:
                finished(s, it, SCHED_END_CANCELLED, KERR_CANCELLED, "the job was cancelled while running", NULL,
                         device, n);
                return;
        case SCHED_STOP_EXPIRE:
                finished(s, it, SCHED_END_EXPIRED, KERR_TIMEOUT, "the job's deadline passed while it was running",
                         NULL, device, n);
                return;
        case SCHED_STOP_SHUTDOWN:
                /* Not finished: its record stays "queued" and it runs again after restart. */
                finished(s, it, SCHED_END_REQUEUED, 0, NULL, NULL, device, n);
                return;
        default:
                break;
        }
        char msg[256];
        unsigned attempts = atomic_load(&it->attempts);
        if (status == -ENODEV || status == -EIO || status == -E2BIG) {
                if (s->mode == KILN_BACKENDS_CUDA)
                        snprintf(msg, sizeof(msg),
                                 "no backend could run %s (gpu.backend = cuda and no CUDA device is in service)",
                                 it->kind->name);
                else if (attempts > atomic_load(&s->max_retries))
                        snprintf(msg, sizeof(msg),
                                 "no backend could run %s: a device failed on each of its %u attempts "
                                 "(jobs.max_retries = %u)",
                                 it->kind->name, attempts, atomic_load(&s->max_retries));
                else
                        snprintf(msg, sizeof(msg), "no backend could run %s (every device failed)", it->kind->name);
                finished(s, it, SCHED_END_FAILED, KERR_UNAVAILABLE, msg, NULL, device, n);
                return;
        }
        const struct kiln_error *bad = &b->tasks[i].error;
        if ((status == -EINVAL || status == -EFBIG) && bad->message[0]) {
                /* The job's own input is at fault: say so, naming the field. */
                finished_failed(s, it, status == -EFBIG ? KERR_TOO_LARGE : KERR_BAD_PARAMS, bad->message,
                                bad->field, device, n);
                return;
        }
        snprintf(msg, sizeof(msg), "%s failed on %s: %s", it->kind->name, device && *device ? device : "cpu",
                 strerror(-status));
        finished(s, it, SCHED_END_FAILED, status == -ENOMEM ? KERR_UNAVAILABLE : KERR_INTERNAL, msg, NULL, device,
                 n);
}

/* on_done of every task: the backend's word on one task. */
static void task_done(struct kiln_task *t)
{
        struct batch *b = t->opaque;
        size_t i = (size_t)(t - b->tasks);

        if (atomic_exchange(&b->claimed[i], true)) {
                kiln_result_clear(t->result); /* the reaper ended it already */
                return;
        }
        finish_claimed(b, i, t->status, t->device);
}

static void batch_free(struct batch *b)
{
        if (!b)
                return;
        for (size_t i = 0; i < b->n; i++) {
                if (b->results)
                        kiln_result_clear(&b->results[i]);
                if (b->pcs)
                        progress_values_clear(&b->pcs[i]);
                b->s->sink.release(b->s->sink.ctx, b->items[i]); /* the queue's hold */
        }
        free(b->items);
        free(b->tasks);
        free(b->results);
        free(b->pcs);
        free(b->claimed);
        free(b);
}

static struct batch *batch_new(struct sched *s, const struct kiln_kind *kind, size_t cap)
{
        struct batch *b = calloc(1, sizeof(*b));
        if (!b)
                return NULL;
        b->s = s;
        b->kind = kind;
        b->items = calloc(cap, sizeof(*b->items));
        if (!b->items) {
                batch_free(b);
                return NULL;
        }
        return b;
}

/* The per-task arrays, sized for the b->n items gathered (not for max_batch: most
 * batches of small jobs hold a few, and a task with its result is kilobytes to
 * zero). Lock not held. Returns >= 0 or -ENOMEM. */
static int batch_arrays(struct batch *b)
{
        b->tasks = calloc(b->n, sizeof(*b->tasks));
        b->results = calloc(b->n, sizeof(*b->results));
        b->pcs = calloc(b->n, sizeof(*b->pcs));
        b->claimed = calloc(b->n, sizeof(*b->claimed));
        return b->tasks && b->results && b->pcs && b->claimed ? 0 : -ENOMEM;
}

/* Counts one more attempt for every unfinished task of the batch, ending (as
 * failed on `last`) those that have had 1 + jobs.max_retries attempts already.
 * Returns how many tasks are left to run. */
static size_t attempts_begin(struct sched *s, struct batch *b, int last)
{
        size_t left = 0;
        for (size_t i = 0; i < b->n; i++) {
                struct kiln_task *t = &b->tasks[i];
                if (t->finished)
                        continue;
                if (atomic_load(&b->items[i]->attempts) > atomic_load(&s->max_retries)) {
                        t->finished = true;
                        t->status = last;
                        snprintf(t->device, sizeof(t->device), "none");
                        task_done(t);
                        continue;
                }
                atomic_fetch_add(&b->items[i]->attempts, 1);
                kiln_result_clear(&b->results[i]);
                left++;
        }
        return left;
}

/* A backend refused the batch without running it (-ENODEV, -E2BIG): that was no
 * attempt. */
static void attempts_undo(struct batch *b)
{
        for (size_t i = 0; i < b->n; i++)
                if (!b->tasks[i].finished)
                        atomic_fetch_sub(&b->items[i]->attempts, 1);
}

/* Offers the backend the objects the batch's tasks run against, so a device keeps
 * a resident copy (ggml's "run where the weights are"); a backend without the
 * hook, or one that cannot, copies them per batch. */
static void objects_upload(const struct kiln_backend *be, struct batch *b)
{
        const struct kiln_object *last = NULL;
        for (size_t i = 0; be->object_upload && i < b->n; i++) {
                const struct kiln_object *o = b->tasks[i].object;
                if (!o || b->tasks[i].finished || (last && last->snapshot == o->snapshot))
                        continue;
                be->object_upload(be->ctx, o);
                last = o;
        }
}

/* Runs the batch's unfinished tasks on the backends in order. A backend that loses
 * a device (-EIO) is asked again (it picks another device) as long as it has one in
 * service; -ENODEV and -E2BIG move on to the next backend. A task is tried at most
 * 1 + jobs.max_retries times (SPEC §7); then it fails `unavailable`. */
static void batch_run(struct sched *s, struct batch *b)
{
        int last = -ENODEV;

        for (size_t k = 0; k < s->backends->n; k++) {
                const struct kiln_backend *be = s->backends->list[k];
                if (!be->supports(be->ctx, b->kind))
                        continue;
                unsigned tries = be->n_devices(be->ctx) + 1;
                for (unsigned t = 0; t < tries; t++) {
                        if (!attempts_begin(s, b, last == -ENODEV ? -EIO : last))
                                return;
                        objects_upload(be, b);
                        int r = be->run_batch(be->ctx, b->kind, b->tasks, b->n);
                        if (r >= 0) {
                                metrics_batch_ran(b->kind, b->tasks[0].device[0] ? b->tasks[0].device : be->name,
                                                  (unsigned)b->n);
                                return;
                        }
                        last = r;
                        if (r != -EIO) {
                                attempts_undo(b);
                                break;
                        }
                        log_warning("%s: a %s device failed running a batch of %zu %s jobs; retrying elsewhere",
                                    be->name, be->name, b->n, b->kind->name);
                }
        }
        /* No backend could run it: the unfinished jobs fail `unavailable`. */
        for (size_t i = 0; i < b->n; i++) {
                struct kiln_task *t = &b->tasks[i];
                if (t->finished)
                        continue;
                t->finished = true;
                t->status = last;
                snprintf(t->device, sizeof(t->device), "none");
                task_done(t);
        }
}

/* Ends an item that a stop reached before it ran. */
static void end_unstarted(struct sched *s, struct sched_item *it, int stop, uint32_t batch)
{
        if (stop == SCHED_STOP_CANCEL)
                finished(s, it, SCHED_END_CANCELLED, KERR_CANCELLED, "the job was cancelled", NULL, "none", batch);
        else if (stop == SCHED_STOP_EXPIRE)
                finished(s, it, SCHED_END_EXPIRED, KERR_TIMEOUT, "the job's deadline passed while it was queued",
                         NULL, "none", batch);
        else /* shutdown: its record stays "queued" and it runs after the restart */
                finished(s, it, SCHED_END_REQUEUED, 0, NULL, NULL, "none", batch);
}

enum item_start { ITEM_RUNS, ITEM_ENDED, ITEM_PUT_BACK };

/* Readies one gathered item: ends it when its deadline passed or a stop reached
 * it, or when the owner's prepare fails it; puts it back at the head of its queue
 * when the owner finds it needs more memory than was taken (SCHED_PREPARE_WAIT):
 * it waits there as any item that does not fit. A stop set while it was out of
 * its queue (the owner's sched_remove missed it) is seen when it is next
 * gathered. Lock not held. */
static enum item_start item_start(struct sched *s, struct sched_item *it, int64_t now, uint32_t batch)
{
        if (it->deadline_ms && now >= it->deadline_ms) {
                finished(s, it, SCHED_END_EXPIRED, KERR_TIMEOUT, "the job's deadline passed while it was queued",
                         NULL, "none", batch);
                return ITEM_ENDED;
        }
        int stop = atomic_load(&it->stop);
        if (stop != SCHED_STOP_NONE) {
                end_unstarted(s, it, stop, batch);
                return ITEM_ENDED;
        }
        enum kiln_err code = KERR_INTERNAL;
        char msg[256] = "", field[128] = "";
        int r = s->sink.prepare ? s->sink.prepare(s->sink.ctx, it, &code, msg, field) : 0;
        if (r == SCHED_PREPARE_WAIT) {
                pthread_mutex_lock(&s->lock);
                stop = atomic_load(&it->stop);
                if (stop == SCHED_STOP_NONE) {
                        sched_queue_push_front(s, it);
                        s->running--;
                        /* The memory it gave back may let it (or another) run now,
                         * and a sleeping worker is woken only when one waits. */
                        pthread_cond_broadcast(&s->wake);
                }
                pthread_mutex_unlock(&s->lock);
                if (stop == SCHED_STOP_NONE)
                        return ITEM_PUT_BACK;
                end_unstarted(s, it, stop, batch);
                return ITEM_ENDED;
        }
        if (r < 0) {
                finished_failed(s, it, code, msg, field, "none", batch);
                return ITEM_ENDED;
        }
        return ITEM_RUNS;
}

/* Starts every item of a gathered batch and runs it. Lock not held. */
static void batch_start(struct sched *s, struct batch *b)
{
        int64_t now = kiln_wall_ms(), mono = kiln_mono_ms();
        uint32_t gathered = (uint32_t)b->n;
        size_t n = 0;

        /* The items put back leave the batch before anyone sees it. */
        for (size_t i = 0; i < b->n; i++) {
                enum item_start st = item_start(s, b->items[i], now, gathered);
                if (st == ITEM_PUT_BACK)
                        continue;
                b->items[n] = b->items[i];
                atomic_store(&b->claimed[n], st == ITEM_ENDED);
                n++;
        }
        b->n = n;
        for (size_t i = 0; i < b->n; i++) {
                struct sched_item *it = b->items[i];
                struct kiln_task *t = &b->tasks[i];
                b->pcs[i] = (struct progress_ctx){
                        .ex = { .stop = &it->stop, .progress = on_progress, .report = on_report }, .s = s, .it = it };
                *t = (struct kiln_task){ .params = it->params, .inputs = it->inputs, .n_inputs = it->n_inputs,
                                         .object = it->object, .result = &b->results[i], .exec = &b->pcs[i].ex,
                                         .on_done = task_done, .opaque = b };
                if (atomic_load(&b->claimed[i])) {
                        t->finished = true;
                        continue;
                }
                it->progress_sent_ms = mono;
                s->sink.started(s->sink.ctx, it, now);
        }
        pthread_mutex_lock(&s->lock);
        b->next = s->active;
        if (s->active)
                s->active->prev = b;
        s->active = b;
        pthread_cond_signal(&s->reap_wake);
        pthread_mutex_unlock(&s->lock);

        bool together = b->kind->run_cpu_batch && s->sink.batch_begin && s->sink.batch_end;
        if (together)
                s->sink.batch_begin(s->sink.ctx);
        batch_run(s, b);
        if (together)
                s->sink.batch_end(s->sink.ctx);

        pthread_mutex_lock(&s->lock);
        if (b->prev)
                b->prev->next = b->next;
        else
                s->active = b->next;
        if (b->next)
                b->next->prev = b->prev;
        s->running -= (unsigned)b->n;
        pthread_mutex_unlock(&s->lock);
        batch_free(b);
}

/* Ends, as expired, every running task whose deadline has passed and that no backend
 * has finished yet; sleeps until the next such deadline. */
static void *reaper_main(void *arg)
{
        struct sched *s = arg;

        pthread_setname_np(pthread_self(), "kiln-reaper");
        pthread_mutex_lock(&s->lock);
        while (!s->stopping) {
                int64_t now = kiln_wall_ms(), next = 0;
                struct due { struct sched_item *it; uint32_t batch; } due[64];
                size_t n_due = 0;
                for (struct batch *b = s->active; b; b = b->next)
                        for (size_t i = 0; i < b->n; i++) {
                                struct sched_item *it = b->items[i];
                                if (!it->deadline_ms || atomic_load(&b->claimed[i]))
                                        continue;
                                if (it->deadline_ms <= now && n_due < 64) {
                                        if (!atomic_exchange(&b->claimed[i], true)) {
                                                atomic_store(&it->stop, SCHED_STOP_EXPIRE);
                                                s->sink.hold(s->sink.ctx, it);
                                                due[n_due++] = (struct due){ it, (uint32_t)b->n };
                                        }
                                } else if (!next || it->deadline_ms < next) {
                                        next = it->deadline_ms;
                                }
                        }
                if (n_due) {
                        pthread_mutex_unlock(&s->lock);
                        for (size_t i = 0; i < n_due; i++) {
                                finished(s, due[i].it, SCHED_END_EXPIRED, KERR_TIMEOUT,
                                         "the job's deadline passed while its batch was running", NULL, "none",
                                         due[i].batch);
                                s->sink.release(s->sink.ctx, due[i].it);
                        }
                        pthread_mutex_lock(&s->lock);
                        continue;
                }
                if (next) {
                        struct timespec ts = after_ms(next - now);
                        pthread_cond_timedwait(&s->reap_wake, &s->lock, &ts);
                } else {
                        pthread_cond_wait(&s->reap_wake, &s->lock);
                }
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

/* Backend housekeeping (device re-probes), by one worker at a time. Lock held; it
 * is released while the backends work. */
static void maybe_maintain(struct sched *s)
{
        int64_t now = kiln_mono_ms();
        if (s->maintaining || now < s->next_maintain_ms)
                return;
        s->maintaining = true;
        s->next_maintain_ms = now + MAINTAIN_MS;
        pthread_mutex_unlock(&s->lock);
        for (size_t k = 0; k < s->backends->n; k++)
                if (s->backends->list[k]->maintain)
                        s->backends->list[k]->maintain(s->backends->list[k]->ctx, now);
        pthread_mutex_lock(&s->lock);
        s->maintaining = false;
}

static void *worker_main(void *arg)
{
        struct sched *s = arg;

        pthread_setname_np(pthread_self(), "kiln-worker");
        pthread_mutex_lock(&s->lock);
        for (;;) {
                struct sched_item *j = NULL;
                unsigned k = 0;
                int p = 0;
                while (!s->stopping && (s->paused || !(j = sched_pick(s, &k, &p)))) {
                        struct timespec ts = after_ms(MAINTAIN_MS);
                        if (pthread_cond_timedwait(&s->wake, &s->lock, &ts) == ETIMEDOUT)
                                maybe_maintain(s);
                }
                if (s->stopping) {
                        if (j)
                                sched_queue_push_front(s, j);
                        break;
                }
                maybe_maintain(s);
                s->running++;
                size_t max = s->max_batch[k] ? s->max_batch[k] : 1;
                struct batch *b = batch_new(s, j->kind, max);
                if (!b) {
                        /* Out of memory for the batch bookkeeping: put it back. */
                        sched_queue_push_front(s, j);
                        s->running--;
                        pthread_mutex_unlock(&s->lock);
                        log_error("out of memory starting a batch; retrying");
                        pthread_mutex_lock(&s->lock);
                        continue;
                }
                b->items[0] = j;
                size_t n = sched_gather(s, k, p, b->items, 1, max);
                if (n < max && s->max_delay_us[k]) {
                        struct timespec until = after_us(s->max_delay_us[k]);
                        s->gathering[k][p] = true;
                        while (n < max && !s->stopping && !s->paused && !sched_higher_waiting(s, p)) {
                                s->gather_room[k][p] = (uint32_t)(max - n);
                                if (pthread_cond_timedwait(&s->wake, &s->lock, &until) == ETIMEDOUT) {
                                        n = sched_gather(s, k, p, b->items, n, max);
                                        break;
                                }
                                n = sched_gather(s, k, p, b->items, n, max);
                        }
                        s->gathering[k][p] = false;
                        /* Others may have skipped this queue meanwhile. */
                        pthread_cond_broadcast(&s->wake);
                }
                if (s->stopping || s->paused) {
                        /* Draining or stopping: the gathered jobs stay queued, but
                         * one a cancel or its deadline reached while it was gathered
                         * (the owner's sched_remove missed it) ends now: in a paused
                         * queue nothing reads its stop, and it would run after the
                         * restart. Counted running until it has ended (the drain
                         * waits for that). */
                        for (size_t i = n; i-- > 0;) {
                                struct sched_item *it = b->items[i];
                                int stop = atomic_load(&it->stop);
                                if (stop != SCHED_STOP_CANCEL && stop != SCHED_STOP_EXPIRE) {
                                        sched_queue_push_front(s, it);
                                        continue;
                                }
                                pthread_mutex_unlock(&s->lock);
                                end_unstarted(s, it, stop, 0);
                                s->sink.release(s->sink.ctx, it); /* the queue's hold */
                                pthread_mutex_lock(&s->lock);
                        }
                        s->running -= (unsigned)n;
                        b->n = 0;
                        batch_free(b);
                        if (s->stopping)
                                break;
                        continue;
                }
                b->n = n;
                pthread_mutex_unlock(&s->lock);
                if (batch_arrays(b) < 0) {
                        /* Out of memory for the batch bookkeeping: put them back. */
                        log_error("out of memory starting a batch of %zu; retrying", n);
                        pthread_mutex_lock(&s->lock);
                        for (size_t i = n; i-- > 0;)
                                sched_queue_push_front(s, b->items[i]);
                        s->running -= (unsigned)n;
                        b->n = 0;
                        batch_free(b);
                        continue;
                }
                batch_start(s, b);
                pthread_mutex_lock(&s->lock);
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

/* The budget's hook: memory was given back (on the owner's thread, or a worker's),
 * so a job that waited for it may fit now: wake the workers, when one left a job
 * waiting (sched_pick sets mem_wanted). The lock is error-checking: a worker that
 * gives memory back while holding it (sched_queue_push_front) gets EDEADLK here
 * instead of deadlocking, and the broadcast is as good under its hold. */
static void on_memory_given(void *ctx)
{
        struct sched *s = ctx;
        if (!atomic_exchange(&s->mem_wanted, false))
                return;
        int r = pthread_mutex_lock(&s->lock);
        pthread_cond_broadcast(&s->wake);
        if (r == 0)
                pthread_mutex_unlock(&s->lock);
}

/* The [batch.KIND] settings and jobs.max_retries. Lock held, or s not yet shared. */
static void set_config(struct sched *s, const struct kiln_config *cfg)
{
        atomic_store(&s->max_retries, cfg->jobs.max_retries);
        for (unsigned k = 0; k < s->n_kinds; k++) {
                struct kiln_batch_config bc = kiln_config_batch(cfg, kiln_kinds[k]->name);
                s->max_batch[k] = bc.max_batch ? bc.max_batch : 1;
                s->max_delay_us[k] = bc.max_delay_us;
        }
}

void sched_set_config(struct sched *s, const struct kiln_config *cfg)
{
        pthread_mutex_lock(&s->lock);
        set_config(s, cfg);
        pthread_mutex_unlock(&s->lock);
}

int sched_new(const struct kiln_config *cfg, const struct sched_sink *sink, struct membudget *mem,
              struct sched **ret)
{
        struct sched *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->sink = *sink;
        unsigned threads = cfg->cpu.threads;
        if (threads == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                threads = n > 0 ? (unsigned)n : 1;
        }
        while (kiln_kinds[s->n_kinds] && s->n_kinds < MAX_KINDS)
                s->n_kinds++;
        set_config(s, cfg);
        s->mode = cfg->gpu.backend == KILN_GPU_CUDA  ? KILN_BACKENDS_CUDA
                  : cfg->gpu.backend == KILN_GPU_CPU ? KILN_BACKENDS_CPU
                                                     : KILN_BACKENDS_AUTO;
        struct kiln_backends_config bcfg = {
                .mode = s->mode,
                .devices = cfg->gpu.devices,
                .memory_fraction = cfg->gpu.memory_fraction,
        };
        int r = kiln_backends_open(&bcfg, &s->backends);
        if (r < 0) {
                free(s);
                return r;
        }
        if (s->backends->plugin_path[0])
                log_notice("CUDA plugin %s: %s", s->backends->plugin_path, s->backends->plugin_status);
        else
                log_notice("CUDA plugin: %s", s->backends->plugin_status);
        if (s->mode == KILN_BACKENDS_CUDA && s->backends->n == 0)
                log_warning("gpu.backend = cuda but no CUDA device is usable: jobs will fail `unavailable`");

        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_mutexattr_t ma;
        pthread_mutexattr_init(&ma);
        pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
        pthread_mutex_init(&s->lock, &ma);
        pthread_mutexattr_destroy(&ma);
        pthread_cond_init(&s->wake, &ca);
        pthread_cond_init(&s->reap_wake, &ca);
        pthread_condattr_destroy(&ca);
        s->mem = mem;
        if (mem)
                membudget_on_give(mem, MEMBUDGET_HOOK_WORKERS, on_memory_given, s);
        s->threads = calloc(threads, sizeof(pthread_t));
        if (!s->threads) {
                sched_free(s);
                return -ENOMEM;
        }
        r = pthread_create(&s->reaper, NULL, reaper_main, s);
        if (r) {
                sched_free(s);
                return -r;
        }
        s->reaper_started = true;
        for (unsigned i = 0; i < threads; i++) {
                r = pthread_create(&s->threads[i], NULL, worker_main, s);
                if (r) {
                        sched_free(s);
                        return -r;
                }
                s->n_threads = i + 1;
        }
        *ret = s;
        return 0;
}

void sched_free(struct sched *s)
{
        if (!s)
                return;
        /* First, so that no hook call reaches the scheduler once it is gone (this
         * waits for one in progress). */
        if (s->mem)
                membudget_on_give(s->mem, MEMBUDGET_HOOK_WORKERS, NULL, NULL);
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->wake);
        pthread_cond_broadcast(&s->reap_wake);
        pthread_mutex_unlock(&s->lock);
        for (unsigned i = 0; i < s->n_threads; i++)
                pthread_join(s->threads[i], NULL);
        if (s->reaper_started)
                pthread_join(s->reaper, NULL);
        for (unsigned k = 0; k < s->n_kinds; k++)
                for (int p = 0; p < _KILN_PRIO_MAX; p++)
                        while (s->q[k][p].depth) {
                                struct sched_item *it = sched_queue_take(&s->q[k][p]);
                                s->sink.release(s->sink.ctx, it);
                        }
        kiln_backends_free(s->backends);
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->reap_wake);
        pthread_mutex_destroy(&s->lock);
        free(s->threads);
        free(s);
}

static void push(struct sched *s, struct sched_item *j, bool requeue)
{
        unsigned k = kind_index(j->kind);
        struct queue *q = &s->q[k][j->priority];

        s->sink.hold(s->sink.ctx, j);
        pthread_mutex_lock(&s->lock);
        if (requeue) { /* as it was: its place, and whether it waited for memory (counted once) */
                sched_queue_insert_by_seq(q, j);
        } else {
                j->seq = ++s->seq;
                j->mem_waited = false;
                sched_queue_push(q, j, false);
        }
        s->queued++;
        /* A job joining a queue that a worker is gathering a batch from (idle workers
         * skip that queue) wakes it only once the queue can fill the batch; it takes
         * what is there when its delay ends. One wake-up per batch instead of one per
         * job, each a context switch and a turn at this lock. Otherwise a gathering
         * worker (a higher priority) as well as an idle one. */
        if (!s->gathering[k][j->priority] || q->depth >= s->gather_room[k][j->priority])
                pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
}

void sched_push(struct sched *s, struct sched_item *j)
{
        push(s, j, false);
}

void sched_requeue(struct sched *s, struct sched_item *j)
{
        push(s, j, true);
}

bool sched_remove(struct sched *s, struct sched_item *j)
{
        bool removed = false;

        pthread_mutex_lock(&s->lock);
        if (j->in_queue) {
                sched_queue_unlink(&s->q[kind_index(j->kind)][j->priority], j);
                s->queued--;
                removed = true;
        }
        pthread_mutex_unlock(&s->lock);
        if (removed)
                s->sink.release(s->sink.ctx, j);
        return removed;
}

void sched_pause(struct sched *s)
{
        pthread_mutex_lock(&s->lock);
        s->paused = true;
        /* Tasks of running batches that no backend has begun stay queued in the store
         * and run after the restart; begun ones finish. */
        for (struct batch *b = s->active; b; b = b->next)
                for (size_t i = 0; i < b->n; i++)
                        if (!atomic_load(&b->claimed[i]) && !atomic_load(&b->tasks[i].started)) {
                                int none = SCHED_STOP_NONE;
                                atomic_compare_exchange_strong(&b->items[i]->stop, &none, SCHED_STOP_SHUTDOWN);
                        }
        /* A worker gathering a batch puts its jobs back now, not when its delay
         * (max_delay_us) ends: the drain waits for it. */
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
}

unsigned sched_running(struct sched *s)
{
        pthread_mutex_lock(&s->lock);
        unsigned n = s->running;
        pthread_mutex_unlock(&s->lock);
        return n;
}

uint32_t sched_queued(struct sched *s)
{
        pthread_mutex_lock(&s->lock);
        uint32_t n = s->queued;
        pthread_mutex_unlock(&s->lock);
        return n;
}

json_t *sched_backends_json(struct sched *s)
{
        json_t *list = json_array();
        unsigned running = sched_running(s);

        for (size_t k = 0; list && k < s->backends->n; k++) {
                const struct kiln_backend *be = s->backends->list[k];
                bool cpu = be == kiln_backend_cpu();
                json_t *devs = json_array();
                unsigned n = be->n_devices(be->ctx);
                for (unsigned i = 0; devs && i < n; i++) {
                        struct kiln_device_info di;
                        if (be->device_info(be->ctx, i, &di) < 0)
                                continue;
                        double util = cpu ? (s->n_threads ? (double)running / s->n_threads : 0.0)
                                          : (di.busy ? 1.0 : 0.0);
                        if (util > 1.0)
                                util = 1.0;
                        json_array_append_new(devs, json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:f}",
                                "name", di.name, "model", di.model,
                                "state", di.in_service ? "in_service" : "out_of_service",
                                "failures", (int)di.failures, "probes", (int)di.probes,
                                "memory_total_bytes", (json_int_t)di.memory_total,
                                "memory_used_bytes", (json_int_t)di.memory_used, "utilization", util));
                }
                json_t *o = json_pack("{s:s, s:o}", "name", be->name, "devices", devs);
                if (o && cpu)
                        json_object_set_new(o, "threads", json_integer(s->n_threads));
                if (o && !cpu)
                        json_object_set_new(o, "plugin", json_string(s->backends->plugin_path));
                json_array_append_new(list, o);
        }
        return list;
}

bool sched_ready(struct sched *s)
{
        if (!s || s->n_threads == 0)
                return false;
        for (size_t k = 0; k < s->backends->n; k++) {
                const struct kiln_backend *be = s->backends->list[k];
                unsigned n = be->n_devices(be->ctx);
                for (unsigned i = 0; i < n; i++) {
                        struct kiln_device_info di;
                        if (be->device_info(be->ctx, i, &di) >= 0 && di.in_service)
                                return true;
                }
        }
        return false;
}

unsigned sched_threads(struct sched *s)
{
        return s->n_threads;
}

uint32_t sched_depth(struct sched *s, unsigned kind, enum kiln_priority prio)
{
        if (kind >= s->n_kinds || prio >= _KILN_PRIO_MAX)
                return 0;
        pthread_mutex_lock(&s->lock);
        uint32_t n = s->q[kind][prio].depth;
        pthread_mutex_unlock(&s->lock);
        return n;
}

void sched_object_released(struct sched *s, const struct kiln_object *obj)
{
        for (size_t k = 0; k < s->backends->n; k++) {
                const struct kiln_backend *be = s->backends->list[k];
                if (be->object_release)
                        be->object_release(be->ctx, obj);
        }
}
