/* The submit path: a submission becomes a job, or is answered at once.
 *
 *   jobs_submit: kind, limits, params -> hot copy of a cached result? answered now
 *             -> identical live job?  attached to it (coalescing)
 *             -> STORE_OP_SUBMIT: idempotency key, cache lookup and the record in
 *                one transaction of the writer
 *   on_committed_mail: STORED -> live (table, deadline, queue) and `accepted`;
 *                      IDEM -> the original job; CACHED -> done from the cache. */
#include "jobs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "hotcache.h"
#include "jobs_internal.h"
#include "log.h"
#include "membudget.h"
#include "objects.h"
#include "params.h"
#include "parts.h"
#include "storeq.h"
#include "util.h"

/* Jobs answered from hot copies whose records the store has not written yet: past
 * this, cache hits wait for the store again (answer_hot). */
#define HOT_RECORDING_MAX 8192

static void submit_error(struct proto_error *err, enum kiln_err code, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void submit_error(struct proto_error *err, enum kiln_err code, const char *field, const char *fmt, ...)
{
        va_list ap;
        err->code = code;
        snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
}

/* A new job in state queued, with a fresh UUIDv7 and the given validated params
 * (both taken over: params freed with free(), canonical with json_decref()).
 * Returns NULL on ENOMEM. */
static struct job *job_new(struct jobs *js, const struct kiln_kind *kind, void *params, json_t *canonical,
                           struct job_inputs *in, uint64_t object_version, const struct job_submit *rq,
                           int64_t timeout_ms)
{
        struct job *j = job_alloc(js, kind);
        if (!j)
                goto fail;
        kiln_str_copy(j->tenant, sizeof(j->tenant), rq->tenant); /* part of the cache key */
        j->params = params;
        params = NULL;
        j->in = *in;
        memset(in, 0, sizeof(*in));
        j->params_json = kiln_params_text(canonical);
        const char *object = object_version ? kiln_params_object_name(kind, canonical) : NULL;
        if (!j->params_json || (object && job_bind_object(j, object, object_version) < 0) ||
            job_init_cache_key(j) < 0)
                goto fail;
        if (rq->key && !(j->idem_key = strdup(rq->key)))
                goto fail;
        kiln_uuid7_new(j->id);
        kiln_uuid_format(j->id, j->id_text);
        j->priority = rq->priority;
        j->submitted_ms = kiln_wall_ms();
        j->submitted_us = kiln_mono_us();
        j->deadline_ms = timeout_ms > 0 ? j->submitted_ms + timeout_ms : 0;
        job_item_init(j);
        atomic_init(&j->state, KILN_JOB_QUEUED);
        json_decref(canonical);
        return j;
fail:
        free(params);
        job_inputs_clear(in);
        json_decref(canonical);
        job_unref(j);
        return NULL;
}

static void free_parts(const struct job_submit *rq)
{
        for (size_t i = 0; i < rq->n_parts; i++)
                part_free(rq->parts[i]);
}

static void submit_outputs_free(struct job *j)
{
        store_job_free(j->op.job_out);
        j->op.job_out = NULL;
        free(j->op.result_out);
        j->op.result_out = NULL;
}

void job_rejected(struct jobs *js, struct job *j, enum kiln_err code, const char *message)
{
        jobs_tenant_release(js, j, -1);
        jobs_submitter_release(js, j);
        js->ev.rejected(js->ev.ctx, j->submitter, j->submit_ref, code, NULL, message);
        while (j->acceptors) {
                struct job_acceptor *a = j->acceptors;
                j->acceptors = a->next;
                js->ev.rejected(js->ev.ctx, a->session, a->ref, code, NULL, message);
                json_decref(a->ref);
                free(a);
        }
}

void job_not_stored(struct jobs *js, struct job *j)
{
        /* One the store had no room for, which neither its key nor the cache
         * answered, was never meant to be stored: no error of the store's. */
        bool no_room = j->no_room && j->op.status == -ENOSPC;
        if (!no_room)
                log_error("job %s: storing it failed: %s", j->id_text, strerror(-j->op.status));
        jobs_coalesce_remove(js, j);
        job_rejected(js, j, KERR_UNAVAILABLE,
                     no_room                    ? j->no_room
                     : j->op.status == -ENOSPC ? "the job store is full: the job was not accepted"
                                               : "the job could not be stored");
        if (j->early) { /* live since its submission: it leaves the heap and the table */
                jobs_deadline_remove(js, j);
                j->delivered = true;
                jobs_table_remove(js, j);
        }
}

/* The tenant used this idempotency key before: the submitter gets the original job
 * (its events when it is live, its `done` when it has finished and watch is on).
 * -EAGAIN, nothing answered, while memory.max_bytes has no room to read that
 * job's result back: the submission then waits for room (answer_idempotent). */
static int answer_idempotent_now(struct jobs *js, struct job *j)
{
        struct store_job *rec = j->op.job_out;
        struct job *orig = jobs_find(js, rec->id);

        if (orig) {
                jobs_accept_one(js, orig, j->submitter, j->submit_ref, j->watch_submitter, false);
                return 0;
        }
        /* Its result only when its `done` is to go out (watch on). */
        bool with_result = j->watch_submitter && kiln_job_state_is_final(rec->state);
        int k = jobs_load_finished(js, rec, j->op.result_out ? &j->op.result_out : NULL, j->op.result_size,
                                   with_result, &orig);
        if (k == -EAGAIN)
                return k;
        if (k == -EFBIG) {
                js->ev.rejected(js->ev.ctx, j->submitter, j->submit_ref, KERR_TOO_LARGE, NULL,
                                "reading the result of this key's job back would take more memory than "
                                "memory.max_bytes lets kilnd hold; resubmit without watch");
                return 0;
        }
        if (k < 0) {
                js->ev.rejected(js->ev.ctx, j->submitter, j->submit_ref, KERR_INTERNAL, "key",
                                "the job of this key is unreadable");
                return 0;
        }
        /* A job that is not live and not finished is queued in the store (a
         * recovered job not yet taken): its `accepted` says so; it has no `done`. */
        jobs_accept_one(js, orig, j->submitter, j->submit_ref, with_result, false);
        job_unref(orig);
        return 0;
}

/* A cache hit whose result may be read back now (answer_cached). */
static void answer_cached_now(struct jobs *js, struct job *j)
{
        int k;
        if (j->op.result_out) {
                /* The room taken for the copy (reserve_copy) is what the job holds
                 * for its result, as a reservation for a read-back is: holding the
                 * result and its done trims it to what they take. */
                j->item.mem_held += j->mem_copy;
                j->mem_copy = 0;
                k = job_take_blob(j, j->op.result_out, j->op.result_size);
                if (k >= 0)
                        j->op.result_out = NULL; /* the job owns the blob now */
        } else {
                /* A big one, read from the store as it is sent. */
                k = job_result_from_store(js, j, j->op.hit.blob, j->op.result_size);
        }
        if (k >= 0) {
                j->finished_ms = j->started_ms = j->submitted_ms;
                j->finished_us = j->started_us = j->submitted_us;
                atomic_store(&j->pct, 100);
                atomic_store(&j->state, KILN_JOB_DONE);
                k = job_loaded_done(j);
        }
        if (k < 0) {
                log_error("job %s: the cached result is unreadable", j->id_text);
                job_rejected(js, j, KERR_INTERNAL, "the cached result is unreadable");
                return;
        }
        if (!j->idem_key && !j->result_in_store) {
                struct hot_source src = { .key = &j->cache_key, .id_text = j->id_text, .done_json = j->done ? j->done->text : NULL,
                                          .backend = j->backend, .result = &j->result,
                                          .blob_size = j->op.result_size, .hit = &j->op.hit };
                struct hot_entry *e = hotcache_put(js->store, &src, &j->blob);
                if (e)
                        j->hot = e; /* the job's parts now point into the entry's blob */
        }
        jobs_accepted(js, j, true);
}

/* Answers the cache hits (and idempotent resubmissions) that wait for memory to
 * read their result back, in order, as far as memory.max_bytes now has room. Loop
 * thread. */
static void retry_loads(struct jobs *js)
{
        while (js->loads_waiting) {
                struct job *j = js->loads_waiting;
                if (j->op.outcome == STORE_SUBMIT_IDEM) {
                        if (answer_idempotent_now(js, j) == -EAGAIN)
                                return; /* the ones behind it wait too */
                } else if (job_reserve_load(js, j, j->op.hit.blob, j->op.result_size) == -EAGAIN) {
                        return;
                }
                js->loads_waiting = j->load_next;
                if (!js->loads_waiting) {
                        js->loads_tail = NULL;
                        atomic_store(&js->loads_wanted, false);
                }
                j->load_next = NULL;
                j->load_waiting = false;
                if (j->op.outcome != STORE_SUBMIT_IDEM)
                        answer_cached_now(js, j);
                submit_outputs_free(j);
                job_unref(j);
        }
}

/* j waits, behind the others, for room to read its answer's result back. */
static void wait_for_room(struct jobs *js, struct job *j)
{
        j->load_next = NULL;
        j->load_waiting = true;
        if (js->loads_tail)
                js->loads_tail->load_next = j;
        else
                js->loads_waiting = j;
        js->loads_tail = job_ref(j);
        /* Set before looking again: a give after the reservation failed either
         * finds it set (and posts) or made room for the look. */
        atomic_store(&js->loads_wanted, true);
        retry_loads(js);
}

static void on_loads_mail(struct mail *m)
{
        struct jobs *js = container_of(m, struct jobs, loads_mail);
        atomic_store(&js->loads_posted, false);
        retry_loads(js);
}

/* The budget's hook: memory was given back (any thread, often the loop's own
 * writes to sockets); only while hits wait does it wake the loop. */
static void on_room(void *ctx)
{
        struct jobs *js = ctx;
        if (atomic_load(&js->loads_wanted) && !atomic_exchange(&js->loads_posted, true))
                mailbox_post(js->mailbox, &js->loads_mail);
}

void jobs_loads_start(struct jobs *js)
{
        js->loads_mail.fn = on_loads_mail;
        if (js->mem)
                membudget_on_give(js->mem, MEMBUDGET_HOOK_LOADS, on_room, js);
}

void jobs_loads_stop(struct jobs *js)
{
        if (js->mem) /* waits for a call in progress: none reaches js after */
                membudget_on_give(js->mem, MEMBUDGET_HOOK_LOADS, NULL, NULL);
}

/* A cache hit: the job was stored as done with the cached result. A big result
 * (read from the store, not copied out by the writer) is read back only once
 * what it will hold fits in memory.max_bytes: until then its submission waits
 * for `accepted`, in order, as a computed job waits queued, until memory is given
 * back (retry_loads). */
static void answer_cached(struct jobs *js, struct job *j)
{
        jobs_coalesce_remove(js, j);
        snprintf(j->backend, sizeof(j->backend), "%s", j->op.job_out->backend);
        if (!j->op.result_out &&
            (js->loads_waiting || job_reserve_load(js, j, j->op.hit.blob, j->op.result_size) == -EAGAIN)) {
                wait_for_room(js, j);
                return;
        }
        /* Read back now: reserved, or one that could never fit (or whose store
         * read failed) read all the same, as before the reservation. */
        answer_cached_now(js, j);
}

/* A resubmission under a used idempotency key: answered now, or, while the key's
 * job's result has no room to be read back (or other answers wait for room
 * before it), in its turn once memory is given back, as a cache hit is. */
static void answer_idempotent(struct jobs *js, struct job *j)
{
        if (js->loads_waiting || answer_idempotent_now(js, j) == -EAGAIN)
                wait_for_room(js, j);
}

static void on_committed_mail(struct mail *m)
{
        struct job *j = container_of(m, struct job, mail);
        struct jobs *js = j->js;

        storeq_answered(js->storeq);
        js->committing--;
        if (j->op.status >= 0 && j->op.outcome == STORE_SUBMIT_STORED)
                jobs_room_used(js, j->in.size);
        else
                job_unstored_release(js, j); /* not stored: no result of its own to keep */
        if (j->op.status < 0) {
                job_not_stored(js, j);
        } else if (j->op.outcome == STORE_SUBMIT_IDEM) {
                jobs_tenant_release(js, j, -1); /* the original job is the one that counts */
                jobs_submitter_release(js, j);
                answer_idempotent(js, j);
        } else if (j->op.outcome == STORE_SUBMIT_CACHED) {
                jobs_tenant_release(js, j, -1); /* a cache hit, not a finished run */
                jobs_submitter_release(js, j);
                answer_cached(js, j);
        } else {
                jobs_start(js, j);
                jobs_accepted(js, j, false);
        }
        if (!j->load_waiting) /* one waiting for room is answered from them later */
                submit_outputs_free(j);
        job_unref(j); /* the store operation's reference */
}

static void on_committed(struct store_op *op)
{
        job_op_to_loop(op, on_committed_mail);
}

/* ---- answering from a hot copy ---- */

/* The record of a job answered from a hot copy has been stored (or not). */
static void on_hot_recorded_mail(struct mail *m)
{
        struct job *j = container_of(m, struct job, mail);
        struct jobs *js = j->js;

        storeq_answered(js->storeq);
        js->hot_recording--;
        if (j->op.status < 0)
                log_error("job %s: answered from the cache, but its record could not be stored: %s", j->id_text,
                          strerror(-j->op.status));
        job_unref(j);
}

static void on_hot_recorded(struct store_op *op)
{
        job_op_to_loop(op, on_hot_recorded_mail);
}

static void hot_write_result(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        memcpy(dst, container_of(op, struct job, op)->hot->blob + offset, len);
}

/* Answers a submission from a hot copy of its cached result (hotcache.h): at once,
 * then stores the job's record behind the answer. Takes over j's reference.
 * Returns < 0 (j untouched) when it cannot. */
static int answer_hot(struct jobs *js, struct job *j, struct hot_entry *e, const struct job_submit *rq)
{
        if (done_text_set(&j->done, hotcache_done(e, j->id_text), js->mem) < 0)
                return -ENOMEM;
        j->hot = hot_entry_ref(e);
        j->result = e->result;
        memcpy(j->backend, e->backend, sizeof(j->backend));
        j->started_ms = j->finished_ms = j->submitted_ms;
        j->started_us = j->finished_us = j->submitted_us;
        j->batch = 0;
        atomic_store(&j->pct, 100);
        atomic_store(&j->state, KILN_JOB_DONE);

        job_to_record(j, &j->record);
        memset(&j->op, 0, sizeof(j->op));
        j->op.type = STORE_OP_CACHE_ANSWER;
        j->op.job = &j->record;
        j->op.cache_key = &j->cache_key;
        memcpy(j->op.blob, e->blob_id, 16);
        j->op.result_size = e->blob_size;
        j->op.write_result = hot_write_result;
        j->op.done = on_hot_recorded;
        jobs_accept_one(js, j, rq->session, rq->ref, rq->watch, true);
        js->hot_recording++;
        storeq_submit_loop(js->storeq, &j->op); /* the job's reference travels with the op */
        return 0;
}

/* ---- submit ---- */

/* Whether a job runs before anything of it is stored (jobs.h): a quick job of its
 * kind (kiln_kind.quick), not keyed (its key may name another job), with a small
 * result, and not in the store's cache when that may answer it (a cached result is
 * never computed again: the SUBMIT answers it). */
static bool run_early(struct jobs *js, const struct kiln_kind *kind, struct job *j, const struct job_submit *rq,
                      const struct store_cache_key *lookup)
{
        if (!kind->quick || rq->key || !js->sched || j->item.mem_bytes > JOBS_EARLY_MAX_BYTES ||
            !kind->quick(j->params, j->in.arrays, j->in.n))
                return false;
        if (!lookup || !js->store)
                return true;
        j->early_missed = !store_cache_holds(js->store, lookup, js->cfg->cache.ttl_s);
        return j->early_missed;
}

/* The inputs are stored with the record, in the same transaction. */
static void write_input_cb(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        memcpy(dst, container_of(op, struct job, op)->in.blob + offset, len);
}

/* A cached result (or a key's job's) the writer would copy out for j's answer
 * counts in memory.max_bytes before it is copied, as job_reserve_load counts one
 * read back later: without room it stays in the store, and the answer waits for
 * room (answer_cached). Writer thread; again for a batch that is retried. */
static bool reserve_copy(struct store_op *op, uint64_t size)
{
        struct job *j = container_of(op, struct job, op);
        uint64_t need = JOBS_LOAD_BYTES(size);
        if (!j->js->mem || j->mem_copy >= need)
                return true;
        /* Hits already wait for room to be read back: this one waits behind them
         * rather than take the room they wait for. */
        if (atomic_load(&j->js->loads_wanted))
                return false;
        if (!membudget_try_take(j->js->mem, MEM_RESULTS, need - j->mem_copy))
                return false;
        j->mem_copy = need;
        return true;
}

/* j's SUBMIT: its record as it is now (queued), with its input; looked up in the
 * cache under `lookup` when that is not NULL. */
static void submit_op_init(struct job *j, const struct store_cache_key *lookup, void (*done)(struct store_op *op))
{
        job_to_record(j, &j->record);
        memset(&j->op, 0, sizeof(j->op));
        j->op.type = STORE_OP_SUBMIT;
        j->op.job = &j->record;
        j->op.cache_key = lookup;
        j->op.input_size = j->in.size;
        j->op.write_input = j->in.size ? write_input_cb : NULL;
        j->op.copy_max = JOBS_COPY_MAX_BYTES; /* bigger cached results are sent from the store */
        j->op.copy_reserve = reserve_copy;
        j->op.done = done;
}

/* ---- quick jobs that will not run now ---- */

/* The queued record of a quick job that kilnd stopped before it ran is committed
 * (or not): its submitters hear `accepted` (queued: it runs after the restart), or
 * that it was not taken. Loop thread. */
static void on_early_queued_mail(struct mail *m)
{
        struct job *j = container_of(m, struct job, mail);
        struct jobs *js = j->js;

        storeq_answered(js->storeq);
        bool stored = j->op.status >= 0;
        if (!stored) {
                job_unstored_release(js, j);
                job_not_stored(js, j);
        } else {
                /* Stored now: should it still end here, it ends as any stored job
                 * does (its final record replaces the queued one, not a first). */
                j->early = false;
                js->n_early--;
                jobs_room_used(js, j->in.size);
                jobs_accepted(js, j, false);
        }
        submit_outputs_free(j);
        if (stored) {
                /* Taken out of its queue only to be stored: back to it, in its
                 * place (draining, the paused scheduler keeps it there, where a
                 * cancel or its deadline still finds it). A stop asked while it was
                 * stored ends it now: a paused queue would not look. */
                if (!job_end_stopped(j, atomic_load(&j->item.stop)) && js->sched)
                        sched_requeue(js->sched, &j->item);
        }
        job_unref(j); /* the store operation's reference */
}

static void on_early_queued(struct store_op *op)
{
        job_op_to_loop(op, on_early_queued_mail);
}

void jobs_early_store_queued(struct job *j)
{
        atomic_store(&j->state, KILN_JOB_QUEUED);
        submit_op_init(j, NULL, on_early_queued);
        job_ref(j);
        storeq_submit(j->js->storeq, &j->op);
}

/* ---- quick jobs that wait for a worker ---- */

/* A quick job is run before it is stored so that its one commit is its final
 * record; its submitter hears `accepted` only then. That is quick only while a
 * worker is free: behind a long job it would wait with no job id (not in `list`,
 * not cancellable). So each waits at most JOBS_EARLY_WAIT_MS; one still queued then
 * is stored queued, accepted, and queued again. */
static void on_early_mail(struct mail *m)
{
        struct jobs *js = container_of(m, struct jobs, early_mail);
        js->early_posted = false; /* the loop arms its timer after the mail */
}

/* Whether j, on the list, may still be waiting for a worker: early (not stored
 * queued since) and not finished. */
static bool early_waiting(const struct job *j)
{
        return j->early && !kiln_job_state_is_final(atomic_load(&j->state));
}

void jobs_early_unlist(struct jobs *js, struct job *j)
{
        if (!j->early_listed)
                return;
        if (j->early_prev)
                j->early_prev->early_next = j->early_next;
        else
                js->early_head = j->early_next;
        if (j->early_next)
                j->early_next->early_prev = j->early_prev;
        else
                js->early_tail = j->early_prev;
        j->early_prev = j->early_next = NULL;
        j->early_listed = false;
        job_unref(j);
}

static void early_watch(struct jobs *js, struct job *j)
{
        j->early_due_mono = kiln_mono_ms() + JOBS_EARLY_WAIT_MS;
        j->early_prev = js->early_tail;
        j->early_next = NULL;
        if (js->early_tail) {
                js->early_tail->early_next = j;
        } else {
                js->early_head = j;
                if (!js->early_posted && js->mailbox) {
                        js->early_posted = true;
                        js->early_mail.fn = on_early_mail;
                        mailbox_post(js->mailbox, &js->early_mail);
                }
        }
        js->early_tail = job_ref(j);
        j->early_listed = true;
}

/* The waits run on the monotonic clock (a wall clock stepped back would hold
 * them); the deadline timer speaks wall-clock times, converted at the edges. */
void jobs_early_due(struct jobs *js, int64_t now_ms)
{
        int64_t now = kiln_mono_ms() + (now_ms - kiln_wall_ms());
        struct job *last = js->early_tail; /* those watched again below come after it */

        for (bool more = true; more && js->early_head && js->early_head->early_due_mono <= now;) {
                struct job *j = job_ref(js->early_head);
                more = j != last;
                jobs_early_unlist(js, j);
                if (early_waiting(j) && js->sched) {
                        if (sched_remove(js->sched, &j->item))
                                jobs_early_store_queued(j); /* still in its queue */
                        else if (atomic_load(&j->state) == KILN_JOB_QUEUED)
                                early_watch(js, j); /* a worker is gathering it: it may come back */
                }
                job_unref(j);
        }
}

int64_t jobs_early_next(const struct jobs *js)
{
        /* Those done waiting are passed over (they leave at the next watch or when
         * due), so a finished one arms no timer. */
        for (const struct job *j = js->early_head; j; j = j->early_next)
                if (early_waiting(j)) {
                        int64_t left = j->early_due_mono - kiln_mono_ms();
                        return kiln_wall_ms() + (left > 0 ? left : 0);
                }
        return 0;
}

void jobs_early_clear(struct jobs *js)
{
        while (js->early_head)
                jobs_early_unlist(js, js->early_head);
}

/* Whether a submission (j) may share the live job `live`: the same priority and
 * the same timeout_ms, since the job has one place in the queues and one deadline
 * (measured from its own submission). Another priority or timeout is its own job:
 * a critical submission never waits as a low one, nor a short deadline as a long. */
static bool same_terms(const struct job *live, const struct job *j)
{
        int64_t live_timeout = live->deadline_ms ? live->deadline_ms - live->submitted_ms : 0;
        int64_t timeout = j->deadline_ms ? j->deadline_ms - j->submitted_ms : 0;
        return live->priority == j->priority && live_timeout == timeout;
}

/* Attaches a submission to an identical live job of its tenant. */
static int attach(struct jobs *js, struct job *live, const struct job_submit *rq, struct proto_error *ret_err)
{
        js->coalesced++;
        if (live->committed) {
                jobs_accept_one(js, live, rq->session, rq->ref, rq->watch, false);
                return 0;
        }
        struct job_acceptor *a = calloc(1, sizeof(*a));
        if (!a) {
                submit_error(ret_err, KERR_INTERNAL, NULL, "out of memory");
                return -ENOMEM;
        }
        a->session = rq->session;
        a->ref = rq->ref ? json_incref(rq->ref) : NULL;
        a->watch = rq->watch;
        a->next = live->acceptors;
        live->acceptors = a;
        return 0;
}

/* The params and inputs of a submission, checked: the typed params and canonical
 * JSON, and the inputs assembled (the parts are taken over). */
static int validate(struct jobs *js, const struct kiln_kind *kind, const struct job_submit *rq, void **ret_params,
                    json_t **ret_canonical, struct job_inputs *ret_in, uint64_t *ret_object_version,
                    struct proto_error *err)
{
        const struct kiln_config *cfg = js->cfg;
        struct job_inputs in = { 0 };
        json_t *canonical = NULL;
        struct kiln_error perr;
        struct kiln_error kerr;
        int r;

        void *params = calloc(1, kind->params_size ? kind->params_size : 1);
        if (!params) {
                free_parts(rq);
                submit_error(err, KERR_INTERNAL, NULL, "out of memory");
                return -ENOMEM;
        }
        if (kiln_params_validate(kind, rq->params, &canonical, params, &perr) < 0) {
                free_parts(rq);
                submit_error(err, KERR_BAD_PARAMS, perr.field, "%s", perr.message);
                r = -EINVAL;
                goto fail;
        }
        /* A stored object is named in the params: the job binds to its version now,
         * and is checked against the meta kept with that version below. */
        uint64_t version = 0;
        const uint8_t *meta = NULL;
        size_t meta_len = 0;
        const char *object = kind->object ? kiln_params_object_name(kind, canonical) : NULL;
        if (object && (!js->objects || objects_meta(js->objects, rq->tenant, kind->object->name, object, &version,
                                                    &meta, &meta_len) < 0)) {
                free_parts(rq);
                submit_error(err, KERR_NOT_FOUND, "", "your tenant has no %s named \"%s\"", kind->object->name,
                             object);
                snprintf(err->field, sizeof(err->field), "params.%s", kind->object_param);
                r = -ENOENT;
                goto fail;
        }
        r = job_inputs_assemble(kind, rq->params, rq->parts, rq->n_parts, cfg->limits.max_input_bytes, &in, err);
        if (r < 0)
                goto fail;
        /* A job bound to a stored object is checked here against what the object's
         * meta tells (a collection's dim, a model's features), and in full with the
         * loaded object when it runs (what only its data can tell, e.g. whether an
         * id is stored); any other (no object, or a built-in one) is checked in full
         * here. The meta lives until the next objects_changed: it is used at once. */
        r = object ? kiln_kind_check_meta(kind, params, in.arrays, in.n, version, meta, meta_len, &kerr)
                   : kiln_kind_check(kind, params, in.arrays, in.n, NULL, &kerr);
        if (r < 0) {
                submit_error(err, r == -EFBIG ? KERR_TOO_LARGE : KERR_BAD_PARAMS, kerr.field, "%s", kerr.message);
                goto fail;
        }
        uint64_t result_bytes = kiln_kind_result_bytes(kind, params, in.arrays, in.n, NULL);
        if (result_bytes > cfg->limits.max_result_bytes) {
                submit_error(err, KERR_TOO_LARGE, "params",
                             "these params ask for a result of %llu bytes, over the limit of %llu "
                             "(limits.max_result_bytes)",
                             (unsigned long long)result_bytes, (unsigned long long)cfg->limits.max_result_bytes);
                r = -EFBIG;
                goto fail;
        }
        struct membudget_view mv = { .take_max = UINT64_MAX };
        if (js->mem)
                membudget_view(js->mem, &mv);
        uint64_t mem_max = mv.take_max;
        if (result_bytes + in.size > mem_max) {
                submit_error(err, KERR_TOO_LARGE, "params",
                             "these params ask for a result of %llu bytes (and %zu bytes of inputs), more than kilnd "
                             "may hold in memory at all (memory.max_bytes %llu)",
                             (unsigned long long)result_bytes, in.size, (unsigned long long)mem_max);
                r = -EFBIG;
                goto fail;
        }
        *ret_params = params;
        *ret_canonical = canonical;
        *ret_in = in;
        *ret_object_version = version;
        return 0;
fail:
        free(params);
        json_decref(canonical);
        job_inputs_clear(&in);
        return r;
}

int jobs_submit(struct jobs *js, const struct job_submit *rq, struct proto_error *ret_err)
{
        const struct kiln_config *cfg = js->cfg;
        const struct kiln_kind *kind = kiln_kind_find(rq->kind);
        if (!kind) {
                free_parts(rq);
                submit_error(ret_err, KERR_UNKNOWN_KIND, "kind", "unknown job kind \"%s\"", rq->kind);
                return -EINVAL;
        }
        uint64_t tenant_fin[6];
        if (jobs_tenant_counts(js, rq->tenant, tenant_fin) >= cfg->limits.max_queued_per_tenant) {
                submit_error(ret_err, KERR_QUEUE_FULL, NULL,
                             "your tenant has %u unfinished jobs, its maximum (limits.max_queued_per_tenant); "
                             "retry later",
                             cfg->limits.max_queued_per_tenant);
                free_parts(rq);
                return -EAGAIN;
        }
        if (js->committing + (js->sched ? sched_queued(js->sched) : 0) >= cfg->jobs.max_queued) {
                submit_error(ret_err, KERR_QUEUE_FULL, NULL, "the queue holds its maximum of %u jobs; retry later",
                             cfg->jobs.max_queued);
                free_parts(rq);
                return -EAGAIN;
        }
        void *params = NULL;
        json_t *canonical = NULL;
        struct job_inputs in;
        uint64_t object_version = 0;
        int r = validate(js, kind, rq, &params, &canonical, &in, &object_version, ret_err);
        if (r < 0)
                return r;
        int64_t timeout = rq->timeout_ms > 0 ? rq->timeout_ms : cfg->jobs.default_timeout_ms;
        struct job *j = job_new(js, kind, params, canonical, &in, object_version, rq, timeout);
        if (!j || (j->deadline_ms && jobs_deadline_reserve(js) < 0)) {
                job_unref(j);
                submit_error(ret_err, KERR_INTERNAL, NULL, "out of memory");
                return -ENOMEM;
        }
        /* Nothing is accepted that the store could not keep. Without room, a keyed
         * submission or one the cache may answer still asks the store: its key may
         * name a job, or the cache hold its result (a small record either way). */
        char reason[256];
        bool no_room = jobs_store_refuses(js, job_store_estimate(j), "this job's input and result", reason);
        if (no_room && !rq->key && !(rq->cache && cfg->cache.enabled)) {
                submit_error(ret_err, KERR_UNAVAILABLE, NULL, "%s", reason);
                job_unref(j);
                return -ENOSPC;
        }
        if (no_room && !(j->no_room = strdup(reason))) {
                submit_error(ret_err, KERR_INTERNAL, NULL, "out of memory");
                job_unref(j);
                return -ENOMEM;
        }
        /* Its inputs are held until it ends; one the store has no room for only
         * asks for an answer, which needs none of them. */
        if (j->in.size && js->mem && !no_room) {
                if (!membudget_try_take(js->mem, MEM_INPUTS, j->in.size)) {
                        submit_error(ret_err, KERR_UNAVAILABLE, NULL,
                                     "kilnd's memory budget (memory.max_bytes) has no room for this job's %zu bytes "
                                     "of inputs now; retry later",
                                     j->in.size);
                        job_unref(j);
                        return -ENOMEM;
                }
                j->mem_inputs = j->in.size;
        }
        /* A hot copy of a cached result answers at once. Not for a keyed submission
         * (its key may name another job) or while the store lags far behind. */
        if (rq->cache && !rq->key && cfg->cache.enabled && js->hot_recording < HOT_RECORDING_MAX) {
                struct hot_entry *e = hotcache_find(js->store, cfg->cache.ttl_s, &j->cache_key, j->submitted_ms);
                if (e && answer_hot(js, j, e, rq) >= 0)
                        return 0;
        }
        /* Coalescing: an identical live job of this tenant takes the submission. A
         * keyed submission goes to the store first (its key may name another job),
         * and cache: false asks for a fresh computation. */
        struct job *live = rq->key || !rq->cache ? NULL : jobs_coalesce_find(js, rq->tenant, j->cache_key.hash);
        if (live && same_terms(live, j)) {
                r = attach(js, live, rq, ret_err);
                job_unref(j);
                return r;
        }
        j->submitter = rq->session;
        j->submitter_counted = true;
        jobs_tenant_hold(js, j);
        j->submit_ref = rq->ref ? json_incref(rq->ref) : NULL;
        j->watch_submitter = rq->watch;
        j->cache_store = cfg->cache.enabled;
        const struct store_cache_key *lookup = cfg->cache.enabled && rq->cache ? &j->cache_key : NULL;
        if (no_room) {
                /* Answered by its key or the cache, or refused: no room to promise, no
                 * input to keep (its digest is in its cache key already), nothing for
                 * another submission to attach to. */
                job_inputs_clear(&j->in);
                j->item.inputs = NULL;
                j->item.n_inputs = 0;
        } else {
                /* Its result is promised room in the store from now until its final
                 * record is in (or the submit turns out to need none). */
                j->unstored = j->item.mem_bytes;
                js->unstored += j->unstored;
                if (!rq->key)
                        jobs_coalesce_add(js, j);
                if (run_early(js, kind, j, rq, lookup)) {
                        /* Stored once, finished (job_finish): nothing goes to the store now. */
                        j->early = true;
                        js->n_early++;
                        jobs_start(js, j);
                        early_watch(js, j);
                        job_unref(j); /* the table holds it */
                        return 1;
                }
        }
        js->committing++;
        submit_op_init(j, lookup, on_committed);
        j->op.lookup_only = no_room;
        storeq_submit_loop(js->storeq, &j->op); /* the job's reference travels with the op */
        return 1;
}
