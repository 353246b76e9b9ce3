/* How a job ends: its `done` message and result (kept in memory, or read from the
 * store as it is sent), the final record and result going to the store, the
 * watchers hearing of it, and the room the store has for what is accepted. The
 * job object and its states are in jobs.c. */
#include "jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_internal.h"
#include "log.h"
#include "membudget.h"
#include "metrics.h"
#include "result_codec.h"
#include "storeq.h"
#include "util.h"

/* ---- the result and the done message (result_codec.h) ---- */

int job_take_blob(struct job *j, uint8_t *blob, size_t size)
{
        int r = result_blob_parse(blob, size, &j->result);
        if (r >= 0) {
                j->blob = blob;
                j->blob_size = size;
        }
        return r;
}

/* job_build_done, saying where its result's values lie in it (where may be
 * NULL; result_done_text_at); with `from_held`, its bytes come first out of the
 * room the job holds (kept for its done before it ran: hold_bound_result). */
static int build_done(struct job *j, struct done_scalars *where, bool from_held)
{
        int state = atomic_load(&j->state);
        int64_t queue_us, run_us;
        job_durations(j, &queue_us, &run_us);
        struct done_info in = {
                .job = j->id_text,
                .state = kiln_job_state_name(state),
                .queue_ms = queue_us / 1000,
                .run_ms = run_us / 1000,
                .result = &j->result,
                .backend = j->backend,
                .batch = j->batch,
                .not_kept = j->result_not_kept,
                .error_code = kiln_err_name(j->error_code),
                .error_message = j->error_message,
                .error_field = j->error_field,
        };
        char *text;
        int r = result_done_text_at(&in, &text, where);
        if (r < 0)
                return r;
        return done_text_set_held(&j->done, text, j->js->mem, from_held ? &j->item.mem_held : NULL);
}

int job_build_done(struct job *j)
{
        return build_done(j, NULL, false);
}

int job_loaded_done(struct job *j)
{
        int r = build_done(j, NULL, true);
        job_hold_result(j, j->blob_size + kiln_result_held_bytes(&j->result)); /* the blob, the values' texts */
        return r;
}

struct stored_blob_reader {
        struct store_txn *t;
        const uint8_t *blob;
};

static int stored_blob_read(void *opaque, uint64_t offset, void *dst, size_t len)
{
        struct stored_blob_reader *r = opaque;
        return store_result_read(r->t, r->blob, offset, dst, len);
}

int job_result_from_store(struct jobs *js, struct job *j, const uint8_t blob[16], uint64_t size)
{
        struct store_txn *t;
        int r = store_txn_begin(js->store, false, &t);
        if (r < 0)
                return r;
        if (size <= JOBS_COPY_MAX_BYTES) {
                /* Small: one copy, kept with the job like a computed result. */
                uint8_t *copy = malloc(size ? size : 1);
                r = copy ? store_result_read(t, blob, 0, copy, size) : -ENOMEM;
                store_txn_abort(t);
                if (r >= 0 && (r = job_take_blob(j, copy, size)) >= 0)
                        return 0;
                free(copy);
                return r;
        }
        struct stored_blob_reader rd = { .t = t, .blob = blob };
        r = result_blob_parse_with(stored_blob_read, &rd, size, &j->result, j->part_off);
        store_txn_abort(t);
        if (r < 0)
                return r;
        memcpy(j->stored_blob, blob, 16);
        j->result_in_store = true;
        return 0;
}

int job_reserve_load(struct jobs *js, struct job *j, const uint8_t blob[16], uint64_t size)
{
        uint64_t need = JOBS_LOAD_BYTES(size);
        if (!js->mem)
                return 0;
        if (size > JOBS_COPY_MAX_BYTES) {
                uint8_t head[12];
                struct store_txn *t;
                int r = store_txn_begin(js->store, false, &t);
                if (r < 0)
                        return r;
                r = store_result_read(t, blob, 0, head, sizeof(head));
                store_txn_abort(t);
                if (r < 0)
                        return r;
                uint32_t values = (uint32_t)head[8] | (uint32_t)head[9] << 8 | (uint32_t)head[10] << 16 |
                                  (uint32_t)head[11] << 24;
                need = 2 * (uint64_t)values + 8192 + 4096ull * KILN_MAX_PARTS;
        }
        struct membudget_view v;
        membudget_view(js->mem, &v);
        if (need > v.take_max)
                return -EFBIG;
        if (!membudget_try_take(js->mem, MEM_RESULTS, need))
                return -EAGAIN;
        j->item.mem_held = need;
        return 0;
}

int jobs_load_finished(struct jobs *js, const struct store_job *rec, uint8_t **result, size_t size,
                       bool with_result, struct job **ret)
{
        struct job *j = NULL;
        int k = job_from_record(js, rec, NULL, 0, &j);
        if (k >= 0 && rec->state == KILN_JOB_DONE && with_result) {
                if (result && *result) {
                        k = job_take_blob(j, *result, size);
                        if (k >= 0)
                                *result = NULL; /* the job owns the blob now */
                } else {
                        /* Not copied out: found where it is stored, read as it is sent. */
                        struct store_txn *t;
                        uint8_t blob[16];
                        uint64_t bytes = 0;
                        k = store_txn_begin(js->store, false, &t);
                        if (k >= 0) {
                                k = store_result_locate(t, rec->id, blob, &bytes);
                                store_txn_abort(t);
                        }
                        if (k >= 0)
                                k = job_reserve_load(js, j, blob, bytes);
                        if (k >= 0)
                                k = job_result_from_store(js, j, blob, bytes);
                        else if (k == -ENOENT)
                                k = 0, j->result_not_kept = true; /* done with its result not kept */
                }
        }
        if (k >= 0) {
                j->started_ms = rec->finished_ms - rec->run_ms;
                j->submitted_ms = rec->submitted_ms;
                k = job_loaded_done(j);
        }
        if (k < 0) {
                job_unref(j);
                return k;
        }
        *ret = j;
        return 0;
}

/* ---- finishing ---- */

void job_blob_out_free(struct job *j)
{
        result_blob_free(j->blob_out);
        j->blob_out = NULL;
        done_text_unref(j->blob_done);
        j->blob_done = NULL;
        job_mem_give(j->js, MEM_RESULTS, &j->blob_out_held);
}

static void write_result_cb(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        result_blob_write_range(container_of(op, struct job, op)->blob_out, dst, offset, len);
}

/* The final record and result of a done job are stored: a big result's data leaves
 * memory (and the budget); its parts now point at the store. */
static void result_to_store(struct job *j)
{
        if (!j->blob_out || j->hot || j->blob || kiln_result_bytes(&j->result) <= JOBS_COPY_MAX_BYTES)
                return;
        memcpy(j->stored_blob, j->id, 16);
        for (int i = 0; i < j->result.n_parts; i++) {
                struct kiln_part *p = &j->result.parts[i];
                j->part_off[i] = result_blob_part_offset(j->blob_out, i);
                if (!p->borrowed)
                        free(p->data);
                p->data = NULL;
                p->borrowed = true;
        }
        j->result_in_store = true;
        job_hold_result(j, kiln_result_held_bytes(&j->result)); /* the values' texts stay */
}

/* The `done` of a job whose result is delivered but not kept says so ("stored":
 * false): a later `result` of it finds none. */
static void done_not_kept(struct job *j)
{
        j->result_not_kept = true;
        if (job_build_done(j) < 0)
                log_error("job %s: out of memory building its done message", j->id_text);
}

/* The job's watchers hear that it finished, and it stops counting against its
 * tenant and submitter. Once per job. */
static void deliver(struct jobs *js, struct job *j)
{
        j->delivered = true;
        jobs_coalesce_remove(js, j);
        int state = atomic_load(&j->state);
        double queue_s = -1, run_s = 0;
        if (j->started_ms) {
                int64_t q, r;
                job_durations(j, &q, &r);
                queue_s = (double)q / 1e6;
                run_s = (double)r / 1e6;
        }
        metrics_job_finished(j->kind, state, queue_s, run_s);
        jobs_tenant_release(js, j, state);
        jobs_submitter_release(js, j);
        for (size_t i = 0; i < j->n_watchers; i++)
                js->ev.done(js->ev.ctx, j->watchers[i].session, j, j->watchers[i].ref);
        jobs_deadline_remove(js, j);
}

/* The final record is committed (or not): the watchers hear of it and the job
 * leaves the table. A record that found no room in the store is not a failed job:
 * its watchers get its `done` (with the result from memory, "stored": false), and
 * it stays in the table, answering for itself, until its record is stored when
 * room comes back (jobs_store_room); until then the store keeps it queued, so a
 * restart runs it again. Loop thread. */
static void on_finished_mail(struct mail *m)
{
        struct job *j = container_of(m, struct job, mail);
        struct jobs *js = j->js;
        int status = j->op.status;

        storeq_answered(js->storeq);
        /* The room promised to it goes once its record is in, or when it leaves
         * memory without it; one that ended without a result needs none beyond its
         * record. Only a done job waiting for room keeps it. */
        if (status != -ENOSPC || atomic_load(&j->state) != KILN_JOB_DONE)
                job_unstored_release(js, j);
        if (status == -ENOSPC) {
                if (!j->delivered) {
                        log_warning("job %s: the store has no room for its final record; its result is delivered "
                                    "and the record is written when room comes back",
                                    j->id_text);
                        if (atomic_load(&j->state) == KILN_JOB_DONE)
                                done_not_kept(j);
                        deliver(js, j);
                }
                j->retry_next = js->store_retry;
                js->store_retry = j; /* keeps the op's reference */
                return;
        }
        if (status < 0) {
                log_error("job %s: storing its final state failed: %s; it stays queued in the store",
                          j->id_text, strerror(-status));
                if (!j->delivered && atomic_load(&j->state) == KILN_JOB_DONE) {
                        atomic_store(&j->state, KILN_JOB_FAILED);
                        kiln_result_clear(&j->result);
                        job_hold_result(j, 0);
                        j->error_code = KERR_INTERNAL;
                        snprintf(j->error_message, sizeof(j->error_message), "the result could not be stored: %s",
                                 strerror(-status));
                        job_build_done(j);
                }
        } else {
                jobs_room_used(js, j->op.result_stored ? j->op.result_size : 0);
                if (atomic_load(&j->state) == KILN_JOB_DONE && j->op.result_size && !j->op.result_stored) {
                        /* Stored as done without its result: the store had room for
                         * the record only. */
                        if (!j->result_not_kept)
                                done_not_kept(j);
                } else if (atomic_load(&j->state) == KILN_JOB_DONE && !j->result_not_kept) {
                        result_to_store(j);
                }
        }
        job_blob_out_free(j);
        if (!j->delivered)
                deliver(js, j);
        jobs_table_remove(js, j);
        job_unref(j); /* the store operation's reference */
}

void jobs_store_promise(struct jobs *js, uint64_t bytes)
{
        js->unstored += bytes;
}

void jobs_store_unpromise(struct jobs *js, uint64_t bytes)
{
        js->unstored -= bytes < js->unstored ? bytes : js->unstored;
}

void job_unstored_release(struct jobs *js, struct job *j)
{
        js->unstored -= j->unstored;
        j->unstored = 0;
}

void jobs_room_used(struct jobs *js, uint64_t bytes)
{
        /* Until the next measurement, what was just written is taken off the last one,
         * so a quick run of jobs cannot outpace it. */
        bytes += 4096; /* the record */
        js->room = js->room > bytes ? js->room - bytes : 0;
}

void jobs_store_room(struct jobs *js, uint64_t room)
{
        js->room_known = true;
        js->room = room;
        if (room < JOBS_STORE_LOW_BYTES)
                return;
        /* Room again: the final records that found none are tried once more. */
        struct job *list = js->store_retry;
        js->store_retry = NULL;
        while (list) {
                struct job *j = list;
                list = j->retry_next;
                j->retry_next = NULL;
                j->op.status = 0;
                j->op.next = NULL;
                storeq_submit(js->storeq, &j->op);
        }
}

bool jobs_store_refuses(const struct jobs *js, uint64_t bytes, const char *what, char *reason)
{
        if (jobs_store_full(js, reason))
                return true;
        if (!js->room_known || js->room >= JOBS_STORE_LOW_BYTES + js->unstored + bytes)
                return false;
        snprintf(reason, 256,
                 "the job store has %llu MiB of room left: not enough for %s (%llu MiB) "
                 "on top of the %llu MiB promised to accepted jobs and puts and the %llu MiB kept free; retry "
                 "when room comes back",
                 (unsigned long long)(js->room >> 20), what, (unsigned long long)((bytes + (1 << 20) - 1) >> 20),
                 (unsigned long long)(js->unstored >> 20), (unsigned long long)(JOBS_STORE_LOW_BYTES >> 20));
        return true;
}

uint64_t jobs_store_room_left(const struct jobs *js)
{
        return js->room;
}

bool jobs_store_full(const struct jobs *js, char *reason)
{
        if (!js->room_known || js->room >= JOBS_STORE_LOW_BYTES + js->unstored)
                return false;
        snprintf(reason, 256,
                 "the job store is full: %llu MiB of room left, %llu MiB promised to accepted jobs and puts, and "
                 "%llu MiB kept free; new work waits for room (finished jobs purged after jobs.retain_s, objects "
                 "dropped, or disk space freed)",
                 (unsigned long long)(js->room >> 20), (unsigned long long)(js->unstored >> 20),
                 (unsigned long long)(JOBS_STORE_LOW_BYTES >> 20));
        return true;
}

/* The one record of a job run before it was stored (jobs.h) is committed, or not.
 * Committed, its submitters are told it is accepted (watchers added, as the job is
 * still in the table) and then, as for any job, its watchers hear it finished. Not
 * committed, nothing of it was acknowledged: its submitters hear why, as for a
 * SUBMIT that failed, and it is dropped. Loop thread. */
static void on_early_stored_mail(struct mail *m)
{
        struct job *j = container_of(m, struct job, mail);
        struct jobs *js = j->js;
        int status = j->op.status;

        if (status >= 0) {
                jobs_accepted(js, j, false);
                on_finished_mail(m);
                return;
        }
        storeq_answered(js->storeq);
        job_unstored_release(js, j);
        job_blob_out_free(j);
        job_not_stored(js, j);
        job_unref(j); /* the store operation's reference */
}

static void on_early_stored(struct store_op *op)
{
        job_op_to_loop(op, on_early_stored_mail);
}

static void on_finished_stored(struct store_op *op)
{
        job_op_to_loop(op, on_finished_mail);
}

void job_finish(struct job *j, enum kiln_job_state state, enum kiln_err code, const char *message)
{
        j->finished_ms = kiln_wall_ms();
        j->finished_us = kiln_mono_us();
        atomic_store(&j->state, state);
        atomic_store(&j->pct, 100);
        if (state != KILN_JOB_DONE) {
                j->error_code = code;
                snprintf(j->error_message, sizeof(j->error_message), "%s", message ? message : "");
        }
        /* The values are formatted once, into the done message, and the blob
         * borrows them from it: a search's ids are in memory twice (the result's
         * value and the done), not three times. */
        struct done_scalars where = { 0 };
        if (build_done(j, &where, true) < 0) {
                log_error("job %s: out of memory building its done message", j->id_text);
                where = (struct done_scalars){ 0 }; /* the blob takes a copy of its own */
        }
        /* The done took its bytes from the room the job held (what was kept for
         * it before the job ran: hold_bound_result), so that no waiting job is let
         * in on that room meanwhile, nor is it counted twice; the rest is the
         * result's. */
        job_hold_result(j, kiln_result_held_bytes(&j->result));

        job_to_record(j, &j->record);
        memset(&j->op, 0, sizeof(j->op));
        j->op.type = STORE_OP_JOB_PUT;
        j->op.job = &j->record;
        if (state == KILN_JOB_DONE) {
                int rb;
                if (where.len) {
                        j->blob_done = done_text_ref(j->done);
                        rb = result_blob_new_shared(&j->result, j->done->text + where.at, where.len, &j->blob_out);
                } else {
                        rb = result_blob_new(&j->result, result_scalars_text(&j->result), &j->blob_out);
                }
                if (rb < 0) {
                        /* Out of memory for a few headers: the job fails rather than
                         * being stored without its result. */
                        kiln_result_clear(&j->result);
                        job_hold_result(j, 0);
                        atomic_store(&j->state, KILN_JOB_FAILED);
                        j->error_code = KERR_INTERNAL;
                        snprintf(j->error_message, sizeof(j->error_message), "out of memory storing the result");
                        job_build_done(j);
                        job_to_record(j, &j->record);
                } else {
                        j->op.result_size = result_blob_size(j->blob_out);
                        /* Its headers (and the values' text, when it had to take a copy). */
                        j->blob_out_held = result_blob_owned_bytes(j->blob_out);
                        if (j->js->mem)
                                membudget_charge(j->js->mem, MEM_RESULTS, j->blob_out_held);
                        j->op.write_result = write_result_cb;
                        /* No room for the result: the record is kept, the result delivered. */
                        j->op.result_optional = true;
                        if (j->cache_store)
                                j->op.cache_key = &j->cache_key;
                }
        }
        j->op.done = on_finished_stored;
        if (j->early) {
                /* Its first record and its last: a SUBMIT of a job that ran. Not
                 * accepted yet, so a result without room fails it rather than being
                 * delivered without being kept. */
                j->op.type = STORE_OP_SUBMIT;
                j->op.ran = true;
                j->op.missed = j->early_missed;
                j->op.result_optional = false;
                j->op.done = on_early_stored;
        }
        job_ref(j);
        storeq_submit(j->js->storeq, &j->op);
}
