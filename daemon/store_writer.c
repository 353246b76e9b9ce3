/* The group-commit writer thread: takes queued operations, applies all that are
 * waiting in one write transaction, commits (one fsync for many), then calls each
 * operation's done callback; in between, syncs (store.sync=batch) and maintains.
 * Operations with a big result or input are set aside and written one slice per
 * transaction between the batches (see "Big writes" in store.h). Under
 * store.sync=batch the flushes run on store_syncer.c's thread. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_impl.h"

#define WRITER_BATCH_MAX 4096
/* Records of jobs answered from the cache wait for no one: under store.sync=full a
 * batch of nothing else is set aside and committed with the next other batch, or on
 * its own once this many are waiting or the oldest has waited this long. Each commit
 * costs an fsync (see writer_commit), and a stream of cache hits would otherwise
 * make one per batch. Measured with compare.py --scenarios cached (2 cores): 4,096
 * and 100 ms gave the same jobs/s as 512 and 12 ms but a p99 of 6.2-6.4 ms against
 * 4.1-4.2 ms (the loop thread then ends thousands of jobs at once). */
#define WRITER_LAZY_MAX 512
#define WRITER_LAZY_MS 12
#define WRITER_SYNC_INTERVAL_MS 100
#define MAINT_INTERVAL_MS 1000
#define MAINT_BUDGET 256
/* After a merge transaction fails (no room, no memory), the next try waits this long. */
#define MERGE_RETRY_MS 1000
/* Results and inputs bigger than this are written across several transactions, this
 * much each: a transaction of 8 MiB commits in milliseconds, so small operations
 * queued behind it wait that long, not the seconds a 2 GiB result takes. */
#define WRITER_SLICE_BYTES ((size_t)8 << 20)

static size_t slice_override;             /* 0: WRITER_SLICE_BYTES */
static int64_t lazy_wait_override;        /* 0: WRITER_LAZY_MS */
static void (*slice_hook)(void *arg);
static void *slice_hook_arg;
static void (*lazy_hook)(void *arg);
static void *lazy_hook_arg;

void store_set_write_slice(size_t bytes)
{
        slice_override = bytes;
}

void store_set_lazy_wait(int64_t ms)
{
        lazy_wait_override = ms;
}

static int64_t lazy_wait_ms(void)
{
        return lazy_wait_override ? lazy_wait_override : WRITER_LAZY_MS;
}

void store_set_lazy_hook(void (*hook)(void *arg), void *arg)
{
        lazy_hook = hook;
        lazy_hook_arg = arg;
}

void store_set_slice_hook(void (*hook)(void *arg), void *arg)
{
        slice_hook = hook;
        slice_hook_arg = arg;
}

static size_t slice_bytes(void)
{
        return slice_override ? slice_override : WRITER_SLICE_BYTES;
}

struct store_writer {
        struct store *s;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct store_op *head, *tail; /* FIFO, under lock */
        bool stopping;                /* under lock */

        /* Writer thread only: something committed without fsync since last_sync_ms. */
        bool dirty;
        /* store.sync=batch: flushes are asked of this thread (NULL otherwise). */
        struct store_syncer *syncer;
        /* Writer thread only: a commit left its meta page unflushed (writer_commit). */
        bool meta_unsynced;
        int64_t last_sync_ms;

        struct store_policy policy;   /* under lock: the latest store_writer_set_policy */
        bool has_policy;              /* under lock */
        int64_t next_maint_ms;        /* writer thread only */
        int64_t next_merge_ms;        /* writer thread only: 0, or after a failed merge */

        /* Writer thread only, FIFO lists: big ops written slice by slice (the first is
         * under way), and ops held until the big ones are done (ops on the same job,
         * barriers). Held ops exist only while a big op does. */
        struct store_op *big, *big_tail, *held, *held_tail;
        /* Writer thread only: the records set aside (WRITER_LAZY_MAX), FIFO. */
        struct store_op *lazy, *lazy_tail;
        size_t n_lazy;
        int64_t lazy_since_ms;

        _Atomic uint64_t commits, ops;
};

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Commits t; `unsynced`: that nobody waits for it to reach the disk. Under
 * store.sync=full such a commit still fsyncs its pages and leaves out only the flush
 * of its meta page (MDB_NOMETASYNC): a power loss may undo it, never more. The next
 * synced commit flushes that page with its own, and the writer flushes it when it
 * stops. Committed with MDB_NOSYNC instead, its meta page could reach the disk
 * before its pages did, and a power loss in between would leave a store LMDB cannot
 * read. */
static int writer_commit(struct store_writer *w, struct store_txn *t, bool unsynced)
{
        if (unsynced) {
                mdb_env_set_flags(w->s->env, MDB_NOMETASYNC, 1);
                w->meta_unsynced = true;
        }
        int r = store_txn_commit(t);
        if (unsynced)
                mdb_env_set_flags(w->s->env, MDB_NOMETASYNC, 0);
        else if (r >= 0 && w->s->sync == STORE_SYNC_FULL)
                w->meta_unsynced = false; /* its fsync took the earlier meta page too */
        return r;
}

/* Applies `n` ops starting at `first` in one write transaction and commits it. Per-op
 * errors go to op->status; returns 0 when the transaction committed, or the error that
 * made it fail (then every op's outputs have been freed and cleared). */
static int writer_apply_txn(struct store_writer *w, struct store_op *first, size_t n)
{
        struct store_txn *t;
        struct store_op *op;
        size_t i;
        int r;

        r = store_txn_begin(w->s, true, &t);
        if (r < 0)
                return r;
        for (op = first, i = 0; i < n; op = op->next, i++) {
                store_op_clear_outputs(op);
                op->status = store_op_apply(t, op);
                if (t->err < 0)
                        break;
        }
        /* Records of jobs already answered from the cache (CACHE_ANSWER) wait for no
         * one: a transaction of nothing else is committed without the flush of its
         * meta page (writer_commit); the kernel writes that page back in its time. */
        bool lazy = w->s->sync == STORE_SYNC_FULL;
        for (op = first, i = 0; lazy && i < n; op = op->next, i++)
                lazy = op->type == STORE_OP_CACHE_ANSWER;
        r = writer_commit(w, t, lazy);
        if (r < 0) {
                for (op = first, i = 0; i < n; op = op->next, i++)
                        store_op_free_outputs(op);
                return r;
        }
        atomic_fetch_add(&w->commits, 1);
        atomic_fetch_add(&w->ops, n);
        if (w->s->sync == STORE_SYNC_BATCH)
                w->dirty = true;
        return 0;
}

/* ---- big ops ---- */

static void list_append(struct store_op **head, struct store_op **tail, struct store_op *op)
{
        op->next = NULL;
        if (*tail)
                (*tail)->next = op;
        else
                *head = op;
        *tail = op;
}

/* Whether op writes a result or input bigger than a slice (and is valid: an invalid
 * op fails in a batch like any other). */
static bool op_is_big(const struct store_op *op)
{
        size_t slice = slice_bytes();

        if (!op->job || (op->input_size > 0 && !op->write_input))
                return false;
        if (op->type == STORE_OP_SUBMIT)
                return op->input_size > slice;
        if (op->type != STORE_OP_JOB_PUT || (op->result_size > 0 && !op->write_result))
                return false;
        return op->result_size > slice || op->input_size > slice;
}

/* The job an op reads or writes, or NULL. */
static const uint8_t *op_job_id(const struct store_op *op)
{
        switch (op->type) {
        case STORE_OP_JOB_PUT:
        case STORE_OP_SUBMIT:
        case STORE_OP_CACHE_ANSWER:
                return op->job ? op->job->id : NULL;
        case STORE_OP_JOB_GET:
        case STORE_OP_RESULT_GET:
        case STORE_OP_DELETE:
        case STORE_OP_INPUT_GET:
                return op->id;
        default:
                return NULL;
        }
}

static bool list_names(const struct store_op *list, const uint8_t *id)
{
        for (; list; list = list->next) {
                const uint8_t *other = op_job_id(list);
                if (other && !memcmp(other, id, 16))
                        return true;
        }
        return false;
}

/* Whether op must wait for the big ops: a barrier, or an op on the same job as a big
 * or a held one (so ops on one job keep their order). */
static bool op_must_wait(const struct store_writer *w, const struct store_op *op)
{
        const uint8_t *id;

        if (!w->big)
                return false;
        if (op->type == STORE_OP_BARRIER)
                return true;
        id = op_job_id(op);
        return id && (list_names(w->big, id) || list_names(w->held, id));
}

/* Takes the big ops and those that must wait for them out of the batch; returns how
 * many ops the batch keeps. */
static size_t writer_sort(struct store_writer *w, struct store_op **batch)
{
        struct store_op *op, *next, *keep = NULL, *keep_tail = NULL;
        size_t n = 0;

        for (op = *batch; op; op = next) {
                next = op->next;
                op->written_input = op->written_result = 0;
                op->without_result = false;
                if (op_must_wait(w, op)) {
                        list_append(&w->held, &w->held_tail, op);
                } else if (op_is_big(op)) {
                        list_append(&w->big, &w->big_tail, op);
                } else {
                        list_append(&keep, &keep_tail, op);
                        n++;
                }
        }
        *batch = keep;
        return n;
}

/* The first big op is done (op->status set): what its slices wrote goes when it
 * failed, done is called, and the ops held behind it go back to the head of the
 * queue, in their order. */
static void big_complete(struct store_writer *w, struct store_op *op)
{
        struct store_txn *t;

        if (op->status < 0 && (op->written_input > 0 || op->written_result > 0)) {
                /* Best effort: pieces without a record that says so are harmless,
                 * and an input's are swept at the next open (leftovers). A commit
                 * frees its transaction, failed or not. */
                bool dropped = false;
                if (store_txn_begin(w->s, true, &t) >= 0) {
                        if (store_op_slices_drop(t, op) < 0)
                                store_txn_abort(t);
                        else if (writer_commit(w, t, w->s->sync == STORE_SYNC_FULL) >= 0)
                                dropped = w->dirty = true;
                }
                if (!dropped && op->written_input > 0)
                        w->s->leftovers = true; /* read at store_close, after the writer stopped */
        }
        w->big = op->next;
        if (!w->big)
                w->big_tail = NULL;
        op->next = NULL;
        op->done(op);
        if (!w->held)
                return;
        pthread_mutex_lock(&w->lock);
        w->held_tail->next = w->head;
        if (!w->head)
                w->tail = w->held_tail;
        w->head = w->held;
        pthread_mutex_unlock(&w->lock);
        w->held = w->held_tail = NULL;
}

/* The last transaction of the first big op: the op itself, writing what is left of
 * its pieces. A per-op error aborts it, so nothing of the op is half applied.
 * Returns op->status. */
static int big_final(struct store_writer *w, struct store_txn *t, struct store_op *op)
{
        int r;

        store_op_clear_outputs(op);
        op->status = store_op_apply(t, op);
        if (op->status < 0) {
                store_txn_abort(t);
                store_op_free_outputs(op);
                return op->status;
        }
        r = writer_commit(w, t, false);
        if (r < 0) {
                store_op_free_outputs(op);
                op->status = r;
                return r;
        }
        op->written_input = op->written_result = 0;
        atomic_fetch_add(&w->commits, 1);
        atomic_fetch_add(&w->ops, 1);
        if (w->s->sync == STORE_SYNC_BATCH)
                w->dirty = true;
        return 0;
}

/* One transaction of the first big op: a slice of its pieces, or its last. A
 * result_optional result that does not fit is left out: the next transactions write
 * what is left of the input, and the last deletes the result's pieces. */
static void writer_slice(struct store_writer *w)
{
        struct store_op *op = w->big;
        size_t chunk = store_piece_size(w->s), step = slice_bytes() / chunk * chunk, input, result;
        struct store_txn *t;
        int r;

        r = store_txn_begin(w->s, true, &t);
        if (r < 0) {
                op->status = r;
                big_complete(w, op);
                return;
        }
        store_op_slices_check(t, op);
        if (store_op_slices_left(op) <= slice_bytes()) {
                r = big_final(w, t, op);
                if (r == -ENOSPC && store_op_result_can_go(op)) {
                        op->without_result = true;
                        return;
                }
                big_complete(w, op);
                return;
        }
        r = store_op_write_slice(t, op, step ? step : chunk, &input, &result);
        if (r < 0)
                store_txn_abort(t);
        else
                r = writer_commit(w, t, false);
        if (r == -ENOSPC && store_op_result_can_go(op)) {
                op->without_result = true;
                return;
        }
        if (r < 0) {
                op->status = r;
                big_complete(w, op);
                return;
        }
        op->written_input = input;
        op->written_result = result;
        atomic_fetch_add(&w->commits, 1);
        if (w->s->sync == STORE_SYNC_BATCH)
                w->dirty = true;
        if (slice_hook)
                slice_hook(slice_hook_arg);
}

/* ---- batches ---- */

/* Runs one batch: all ops in one transaction; when that fails for lack of space, each
 * op in its own transaction, so only the ops that do not fit fail (or, with
 * result_optional, are stored without their result). Then calls the done
 * callbacks in FIFO order. Big ops and those that wait for them are set aside. */
static void writer_run_batch(struct store_writer *w, struct store_op *batch, size_t n)
{
        struct store_op *op, *next;
        int r;

        n = writer_sort(w, &batch);
        if (n == 0)
                return;
        r = writer_apply_txn(w, batch, n);
        if (r == -ENOSPC) {
                for (op = batch; op; op = op->next) {
                        r = n > 1 ? writer_apply_txn(w, op, 1) : -ENOSPC;
                        if (r == -ENOSPC && store_op_result_can_go(op)) {
                                op->without_result = true; /* the record alone */
                                r = writer_apply_txn(w, op, 1);
                        }
                        if (r < 0)
                                op->status = r;
                }
        } else if (r < 0) {
                for (op = batch; op; op = op->next)
                        op->status = r;
        }
        for (op = batch; op; op = next) {
                next = op->next;
                op->next = NULL;
                op->done(op);
        }
}

static void writer_maybe_sync(struct store_writer *w, bool force)
{
        int64_t now;

        if (!w->dirty)
                return;
        now = now_ms();
        if (!force && now - w->last_sync_ms < WRITER_SYNC_INTERVAL_MS)
                return;
        w->last_sync_ms = now;
        if (w->syncer && !force) {
                /* Flushed on the syncer's thread (which retries one that fails); while
                 * one is under way, asked again at the next interval. */
                if (store_syncer_request(w->syncer))
                        w->dirty = false;
                return;
        }
        if (w->syncer)
                store_syncer_idle(w->syncer);
        /* A failed sync is retried at the next interval; the data stays committed. */
        if (store_sync(w->s) >= 0)
                w->dirty = false;
}

/* Whether a merge of recent cache entries is due and may run now (not before
 * next_merge_ms after a failure). */
static bool merge_wanted(struct store_writer *w)
{
        return store_cache_merge_due(w->s) && (w->next_merge_ms == 0 || now_ms() >= w->next_merge_ms);
}

/* Waits (lock held) until there is work, a stop, a batch sync, a merge or maintenance
 * is due. */
static void writer_wait(struct store_writer *w)
{
        while (!w->head && !w->stopping && !w->big) {
                int64_t deadline = INT64_MAX;
                struct timespec ts;

                if (merge_wanted(w))
                        return;
                if (w->next_merge_ms && store_cache_merge_due(w->s))
                        deadline = w->next_merge_ms;
                if (w->dirty && w->last_sync_ms + WRITER_SYNC_INTERVAL_MS < deadline)
                        deadline = w->last_sync_ms + WRITER_SYNC_INTERVAL_MS;
                if (w->lazy && w->lazy_since_ms + lazy_wait_ms() < deadline)
                        deadline = w->lazy_since_ms + lazy_wait_ms();
                if (w->has_policy && w->next_maint_ms < deadline)
                        deadline = w->next_maint_ms;
                if (deadline == INT64_MAX) {
                        pthread_cond_wait(&w->cond, &w->lock);
                        continue;
                }
                if (now_ms() >= deadline)
                        return;
                ts.tv_sec = deadline / 1000;
                ts.tv_nsec = (deadline % 1000) * 1000000;
                pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        }
}

/* A step of background work in its own write transaction, committed without the
 * flush of its meta page (writer_commit): what it does is done again after a crash
 * (maintenance deletes what is still due, a merge copies entries still in the log),
 * so it need not wait for the disk; the next synced commit or the interval's flush
 * finishes it (none under store.sync=off). Returns what step returned (> 0: that
 * much done and committed), or a negative error. */
static int writer_background(struct store_writer *w, int (*step)(struct store_txn *t, void *ctx), void *ctx)
{
        struct store_txn *t;
        int n = store_txn_begin(w->s, true, &t);

        if (n < 0)
                return n;
        n = step(t, ctx);
        if (n <= 0) {
                store_txn_abort(t);
                return n;
        }
        int r = writer_commit(w, t, w->s->sync == STORE_SYNC_FULL);
        if (r < 0)
                return r;
        if (w->s->sync != STORE_SYNC_OFF)
                w->dirty = true;
        return n;
}

static int maintain_step(struct store_txn *t, void *ctx)
{
        struct store_writer *w = ctx;

        return store_maintain(t, &w->s->policy, store_wall_ms(), MAINT_BUDGET);
}

/* One round of store_maintain; again after queued ops when more is due. */
static void writer_maintain(struct store_writer *w)
{
        w->next_maint_ms = now_ms() + MAINT_INTERVAL_MS;
        if (writer_background(w, maintain_step, w) >= MAINT_BUDGET)
                w->next_maint_ms = now_ms();
}

static int merge_step(struct store_txn *t, void *ctx)
{
        return store_cache_merge_step(t);
}

/* One transaction of a merge of recent cache entries into "cache"
 * (store_cache_recent.c); after a failure (the store short of room), again in
 * MERGE_RETRY_MS. */
static void writer_merge(struct store_writer *w)
{
        w->next_merge_ms = writer_background(w, merge_step, NULL) < 0 ? now_ms() + MERGE_RETRY_MS : 0;
}

/* True when every op of the batch is a record of a job answered from the cache. */
static bool batch_is_lazy(const struct store_op *batch)
{
        for (const struct store_op *op = batch; op; op = op->next)
                if (op->type != STORE_OP_CACHE_ANSWER)
                        return false;
        return true;
}

/* Sets a lazy batch aside, or puts what was set aside in front of the batch (in
 * FIFO order) when the batch is another kind, enough waits, it waited long enough
 * or the writer stops. Returns the batch to run now (NULL: none), its size in *n. */
static struct store_op *lazy_merge(struct store_writer *w, struct store_op *batch, struct store_op *last, size_t *n,
                                   bool stop)
{
        if (batch && w->s->sync == STORE_SYNC_FULL && batch_is_lazy(batch)) {
                if (!w->lazy)
                        w->lazy_since_ms = now_ms();
                if (w->lazy_tail)
                        w->lazy_tail->next = batch;
                else
                        w->lazy = batch;
                w->lazy_tail = last;
                w->n_lazy += *n;
                if (lazy_hook)
                        lazy_hook(lazy_hook_arg);
                batch = NULL;
                *n = 0;
        }
        if (!w->lazy)
                return batch;
        if (!batch && !stop && w->n_lazy < WRITER_LAZY_MAX && now_ms() < w->lazy_since_ms + lazy_wait_ms())
                return NULL;
        w->lazy_tail->next = batch;
        batch = w->lazy;
        *n += w->n_lazy;
        w->lazy = w->lazy_tail = NULL;
        w->n_lazy = 0;
        return batch;
}

static void *writer_main(void *arg)
{
        struct store_writer *w = arg;

        pthread_setname_np(pthread_self(), "kiln-writer");
        w->last_sync_ms = now_ms();
        for (;;) {
                struct store_op *batch, *last = NULL;
                size_t n = 0;
                bool stop, big;

                pthread_mutex_lock(&w->lock);
                writer_wait(w);
                batch = w->head;
                for (struct store_op *op = w->head; op && n < WRITER_BATCH_MAX; op = op->next) {
                        last = op;
                        n++;
                }
                if (last) {
                        w->head = last->next;
                        if (!w->head)
                                w->tail = NULL;
                        last->next = NULL;
                } else {
                        batch = NULL;
                }
                stop = !w->head && w->stopping;
                w->s->has_policy = w->has_policy;
                w->s->policy = w->policy;
                pthread_mutex_unlock(&w->lock);

                batch = lazy_merge(w, batch, last, &n, stop);
                if (batch)
                        writer_run_batch(w, batch, n);
                /* One slice at a time, so what was queued meanwhile commits in between. */
                big = w->big != NULL;
                if (big)
                        writer_slice(w);
                if (w->s->has_policy && !stop && now_ms() >= w->next_maint_ms)
                        writer_maintain(w);
                /* A merge goes one transaction at a time between batches, as a big op. */
                if (!stop && merge_wanted(w))
                        writer_merge(w);
                writer_maybe_sync(w, stop && !big);
                /* A big op that ends puts the ops held behind it back in the queue. */
                if (stop && !batch && !big) {
                        if (w->meta_unsynced)
                                store_sync(w->s); /* the last lazy commits' meta page */
                        break;
                }
        }
        return NULL;
}

int store_cond_init(pthread_cond_t *c)
{
        pthread_condattr_t attr;
        int r = pthread_condattr_init(&attr);

        if (r != 0)
                return r;
        r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (r == 0)
                r = pthread_cond_init(c, &attr);
        pthread_condattr_destroy(&attr);
        return r;
}

int store_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
        sigset_t all, old;

        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int r = pthread_create(t, NULL, fn, arg);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return r;
}

/* Starts the writer thread (with all signals blocked) over an open store. Returns >= 0
 * or -errno. */
int store_writer_start(struct store *s, struct store_writer **ret)
{
        struct store_writer *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        w->s = s;
        r = pthread_mutex_init(&w->lock, NULL);
        if (r != 0) {
                free(w);
                return -r;
        }
        r = store_cond_init(&w->cond);
        if (r != 0) {
                pthread_mutex_destroy(&w->lock);
                free(w);
                return -r;
        }
        if (s->sync == STORE_SYNC_BATCH) {
                r = store_syncer_start(s, &w->syncer);
                if (r < 0) {
                        pthread_cond_destroy(&w->cond);
                        pthread_mutex_destroy(&w->lock);
                        free(w);
                        return r;
                }
        }
        r = store_thread_start(&w->thread, writer_main, w);
        if (r != 0) {
                store_syncer_stop(w->syncer);
                pthread_cond_destroy(&w->cond);
                pthread_mutex_destroy(&w->lock);
                free(w);
                return -r;
        }
        *ret = w;
        return 0;
}

/* Queues `op` (thread-safe; never waits for disk). `op->done` must be set. */
void store_writer_submit(struct store_writer *w, struct store_op *op)
{
        op->next = NULL;
        pthread_mutex_lock(&w->lock);
        if (w->tail)
                w->tail->next = op;
        else
                w->head = op;
        w->tail = op;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

/* Queues a chain of ops linked through op->next at once; see store.h. */
void store_writer_submit_chain(struct store_writer *w, struct store_op *first, struct store_op *last)
{
        last->next = NULL;
        pthread_mutex_lock(&w->lock);
        if (w->tail)
                w->tail->next = first;
        else
                w->head = first;
        w->tail = last;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

/* Finishes every queued operation (in BATCH mode, ends with a sync), stops and joins
 * the thread, and frees w. Accepts NULL. No submission may race with it. */
void store_writer_stop(struct store_writer *w)
{
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        store_syncer_stop(w->syncer);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
}

/* Hands the writer new limits (thread-safe); maintenance starts at the next round. */
void store_writer_set_policy(struct store_writer *w, const struct store_policy *p)
{
        pthread_mutex_lock(&w->lock);
        if (!w->has_policy || memcmp(&w->policy, p, sizeof(*p))) {
                w->policy = *p;
                w->has_policy = true;
                pthread_cond_signal(&w->cond);
        }
        pthread_mutex_unlock(&w->lock);
}

/* Reports transactions committed and operations in them since start. Either output
 * may be NULL. */
void store_writer_stats(struct store_writer *w, uint64_t *ret_commits, uint64_t *ret_ops)
{
        if (ret_commits)
                *ret_commits = atomic_load(&w->commits);
        if (ret_ops)
                *ret_ops = atomic_load(&w->ops);
}
