/* What each writer operation does inside the writer's transaction (store_writer.c
 * runs them; store.h describes them). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_impl.h"

/* Wall-clock ms: cache, retention and object times are stored and survive restarts. */
int64_t store_wall_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Resets the outputs before an op is applied (again, when a batch is retried). */
void store_op_clear_outputs(struct store_op *op)
{
        op->job_out = NULL;
        op->result_out = NULL;
        op->outcome = STORE_SUBMIT_STORED;
        op->purge_n = 0;
        op->result_stored = false;
        memset(&op->object_info, 0, sizeof(op->object_info));
        op->object_list = NULL;
        op->object_n = 0;
        /* An output of these (a SUBMIT's answer); a SUBMIT of a job that ran writes it. */
        if (op->type == STORE_OP_RESULT_GET || (op->type == STORE_OP_SUBMIT && !op->ran) ||
            op->type == STORE_OP_INPUT_GET || op->type == STORE_OP_OBJECT_GET)
                op->result_size = 0;
}

/* Frees what an op produced in a transaction that then failed. */
void store_op_free_outputs(struct store_op *op)
{
        store_job_free(op->job_out);
        free(op->result_out);
        store_object_info_clear(&op->object_info);
        store_object_infos_free(op->object_list, op->object_n);
        store_op_clear_outputs(op);
}

static void op_write_result(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        struct store_op *op = opaque;
        op->write_result(op, dst, offset, len);
}

static void op_write_input(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        struct store_op *op = opaque;
        op->write_input(op, dst, offset, len);
}

static void op_write_blob(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        struct store_op *op = opaque;
        op->write_blob(op, dst, offset, len);
}

/* The record with input_size set to what the op stores with it, then the input (the
 * part of it that earlier slices of a big op have not written). */
static int put_with_input(struct store_txn *t, struct store_op *op, const struct store_job *job)
{
        struct store_job rec;
        int r;

        if (op->input_size == 0)
                return store_job_put(t, job);
        rec = *job;
        rec.input_size = op->input_size;
        r = store_job_put(t, &rec);
        if (r < 0)
                return r;
        return store_pieces_put_range(t, t->s->inputs, job->id, 16, op->input_size, op->written_input,
                                      op->input_size, op_write_input, op);
}

/* A SUBMIT that stores no input after all (answered by its idempotency key or the
 * cache): drops what earlier slices of it wrote under its (new) id. */
static int drop_written_input(struct store_txn *t, struct store_op *op)
{
        return op->written_input > 0 ? store_input_delete(t, op->job->id) : 0;
}

static int op_apply_put(struct store_txn *t, struct store_op *op)
{
        int r;

        if (!op->job || (op->result_size > 0 && !op->write_result) || (op->input_size > 0 && !op->write_input))
                return -EINVAL;
        if (op->without_result) {
                /* The result did not fit: the record only (and no piece an earlier
                 * attempt or slice left, so the job has no result at all). */
                r = store_pieces_delete(t, t->s->results, op->job->id, 16);
                return r < 0 ? r : put_with_input(t, op, op->job);
        }
        /* A job that ran before anything of it was stored has an id nothing is
         * stored under: its record and result replace nothing. */
        bool fresh = op->type == STORE_OP_SUBMIT && op->ran;
        r = fresh ? store_job_put_new(t, op->job) : put_with_input(t, op, op->job);
        op->result_stored = r >= 0;
        if (r < 0 || op->result_size == 0)
                return r;
        r = fresh ? store_pieces_put_new(t, t->s->results, op->job->id, 16, op->result_size, op_write_result, op)
                  : store_pieces_put_range(t, t->s->results, op->job->id, 16, op->result_size, op->written_result,
                                           op->result_size, op_write_result, op);
        if (r < 0 || !op->cache_key || op->job->state != KILN_JOB_DONE)
                return r;
        return store_cache_put(t, op->cache_key, op->job->id, op->result_size, op->job->backend, store_wall_ms(),
                               t->s->has_policy ? t->s->policy.cache_max_bytes : UINT64_MAX);
}

/* The result of job `id` for a SUBMIT's answer: copied out, or only its size when
 * it is bigger than op->copy_max or op->copy_reserve finds no room for it. */
static int submit_result(struct store_txn *t, struct store_op *op, const uint8_t id[16])
{
        if (op->copy_max) {
                uint8_t blob[16];
                uint64_t size;
                int r = store_result_locate(t, id, blob, &size);
                if (r < 0)
                        return r;
                if (size > op->copy_max || (op->copy_reserve && !op->copy_reserve(op, size))) {
                        op->result_out = NULL;
                        op->result_size = size;
                        return 0;
                }
        }
        return store_result_get(t, id, &op->result_out, &op->result_size);
}

/* SUBMIT, answered by the cache hit `hit`: the job is written as done, answering with
 * the cached result. */
static int submit_cached(struct store_txn *t, struct store_op *op, const struct store_cache_hit *hit)
{
        struct store_job *job = op->job, rec = *job;
        int r;

        rec.state = KILN_JOB_DONE;
        rec.finished_ms = rec.submitted_ms;
        rec.queue_ms = rec.run_ms = rec.batch = 0;
        rec.input_size = 0;
        memcpy(rec.backend, hit->backend, sizeof(rec.backend));
        rec.error_code = rec.error_message = rec.error_field = NULL;
        r = drop_written_input(t, op);
        if (r >= 0)
                r = store_job_put(t, &rec);
        if (r >= 0)
                r = store_result_alias(t, job->id, hit->blob);
        if (r >= 0 && job->idem_key)
                r = store_idem_put(t, job->tenant, job->idem_key, job->id);
        if (r >= 0)
                r = submit_result(t, op, job->id);
        if (r >= 0 && !(op->job_out = store_job_dup(&rec)))
                r = -ENOMEM;
        if (r < 0)
                return r;
        op->outcome = STORE_SUBMIT_CACHED;
        op->hit = *hit;
        t->delta.hits++;
        return 0;
}

/* SUBMIT: the tenant's idempotency key first, then the cache, then a new queued job
 * with its input; or, for a job that already ran, its final record (see store.h). */
static int op_apply_submit(struct store_txn *t, struct store_op *op)
{
        struct store_job *job = op->job;
        uint8_t orig[16];
        int r;

        if (!job || (op->input_size > 0 && !op->write_input))
                return -EINVAL;
        if (op->ran) {
                if (job->idem_key || op->input_size > 0)
                        return -EINVAL;
                op->outcome = STORE_SUBMIT_STORED;
                if (op->missed)
                        t->delta.misses++; /* the caller's lookup, before it ran */
                return op_apply_put(t, op);
        }
        if (job->idem_key) {
                r = store_idem_get(t, job->tenant, job->idem_key, orig);
                if (r >= 0) {
                        r = store_job_get(t, orig, &op->job_out);
                        if (r >= 0)
                                r = drop_written_input(t, op);
                        if (r >= 0) {
                                op->outcome = STORE_SUBMIT_IDEM;
                                if (op->job_out->state != KILN_JOB_DONE)
                                        return 0;
                                r = submit_result(t, op, orig);
                                return r == -ENOENT ? 0 : r;
                        }
                }
                if (r < 0 && r != -ENOENT)
                        return r;
                /* Unused, or naming a purged job: the key is free. */
        }
        if (op->cache_key) {
                struct store_cache_hit hit;
                r = store_cache_lookup(t, op->cache_key, store_wall_ms(),
                                       t->s->has_policy ? t->s->policy.cache_ttl_s : 0, &hit);
                if (r >= 0)
                        return submit_cached(t, op, &hit);
                if (r != -ENOENT)
                        return r;
                t->delta.misses++;
        }
        if (op->lookup_only)
                return -ENOSPC;
        r = put_with_input(t, op, job);
        if (r >= 0 && job->idem_key)
                r = store_idem_put(t, job->tenant, job->idem_key, job->id);
        return r;
}

/* CACHE_ANSWER: see store.h. */
static int op_apply_cache_answer(struct store_txn *t, struct store_op *op)
{
        struct store_cache_hit hit;
        int r;

        if (!op->job || !op->cache_key || (op->result_size > 0 && !op->write_result))
                return -EINVAL;
        r = store_cache_lookup(t, op->cache_key, store_wall_ms(), t->s->has_policy ? t->s->policy.cache_ttl_s : 0,
                               &hit);
        if (r < 0 && r != -ENOENT)
                return r;
        bool same = r >= 0 && !memcmp(hit.blob, op->blob, 16);
        r = store_job_put(t, op->job);
        if (r < 0)
                return r;
        t->delta.hits++;
        if (same)
                return store_result_alias(t, op->job->id, op->blob);
        /* The entry went (purged, expired, evicted) or changed after the answer was
         * sent: the job keeps the result it was answered with. */
        if (op->result_size == 0)
                return 0;
        return store_result_put(t, op->job->id, op->result_size, op_write_result, op);
}

/* RESULT_GET and INPUT_GET: the job, and its result or input when there is one (none
 * gives status 0, result_out NULL and result_size 0). */
static int op_apply_job_and_bytes(struct store_txn *t, struct store_op *op, bool input)
{
        struct store_job *job;
        uint8_t *data = NULL;
        size_t size = 0;
        int r;

        r = store_job_get(t, op->id, &job);
        if (r < 0)
                return r;
        r = input ? store_input_get(t, op->id, &data, &size) : store_result_get(t, op->id, &data, &size);
        if (r < 0 && r != -ENOENT) {
                store_job_free(job);
                return r;
        }
        op->job_out = job;
        op->result_out = data;
        op->result_size = size;
        return 0;
}

static int op_apply_object_get(struct store_txn *t, struct store_op *op)
{
        struct store_object_info info;
        int r;

        r = store_object_get(t, &op->object, &info);
        if (r < 0 || !op->with_blob) {
                if (r >= 0)
                        op->object_info = info;
                return r;
        }
        r = store_object_blob_get(t, &op->object, &op->result_out, &op->result_size);
        if (r < 0) {
                store_object_info_clear(&info);
                return r;
        }
        op->object_info = info;
        return 0;
}

/* Applies one op; see store_impl.h. */
int store_op_apply(struct store_txn *t, struct store_op *op)
{
        switch (op->type) {
        case STORE_OP_JOB_PUT:
                return op_apply_put(t, op);
        case STORE_OP_JOB_GET:
                return store_job_get(t, op->id, &op->job_out);
        case STORE_OP_RESULT_GET:
                return op_apply_job_and_bytes(t, op, false);
        case STORE_OP_DELETE:
                return store_job_delete(t, op->id);
        case STORE_OP_BARRIER:
                return 0;
        case STORE_OP_SUBMIT:
                return op_apply_submit(t, op);
        case STORE_OP_CACHE_PURGE:
                return store_cache_purge(t, op->purge_kind, op->purge_tenant, &op->purge_n);
        case STORE_OP_CACHE_ANSWER:
                return op_apply_cache_answer(t, op);
        case STORE_OP_INPUT_GET:
                return op_apply_job_and_bytes(t, op, true);
        case STORE_OP_OBJECT_PUT:
                if (op->blob_size > 0 && !op->write_blob)
                        return -EINVAL;
                return store_object_put(t, &op->object, op->meta, op->meta_len, op->blob_size, op_write_blob, op,
                                        &op->limits, store_wall_ms(), &op->object_info);
        case STORE_OP_OBJECT_ITEMS_PUT:
                if (op->must_exist) {
                        struct store_object_info cur = { 0 };
                        int r = store_object_get(t, &op->object, &cur);
                        store_object_info_clear(&cur);
                        if (r < 0)
                                return r;
                }
                return store_object_items_put(t, &op->object, op->meta, op->meta_len, op->items, op->n_items,
                                              &op->limits, store_wall_ms(), &op->object_info);
        case STORE_OP_OBJECT_ITEMS_DELETE:
                return store_object_items_delete(t, &op->object, op->items, op->n_items, store_wall_ms(),
                                                 &op->object_info);
        case STORE_OP_OBJECT_DROP:
                return store_object_drop(t, &op->object);
        case STORE_OP_OBJECT_GET:
                return op_apply_object_get(t, op);
        case STORE_OP_OBJECT_LIST:
                return store_object_list(t, op->object.tenant, op->object.cls, &op->object_list, &op->object_n);
        }
        return -EINVAL;
}

/* ---- big operations, written in slices (store_writer.c) ---- */

/* Bytes of result a big op writes (a SUBMIT's result_size is an output). */
static size_t op_result_bytes(const struct store_op *op)
{
        return op->type == STORE_OP_JOB_PUT && !op->without_result ? op->result_size : 0;
}

/* Whether the op may go on without its result when that does not fit. */
bool store_op_result_can_go(const struct store_op *op)
{
        return op->type == STORE_OP_JOB_PUT && op->result_optional && !op->without_result && op->job &&
               op->job->state == KILN_JOB_DONE && op->result_size > 0;
}

/* Bytes of the op's input and result that no slice has written yet. */
size_t store_op_slices_left(const struct store_op *op)
{
        size_t result = op_result_bytes(op);

        return (op->input_size - op->written_input) + (result > op->written_result ? result - op->written_result : 0);
}

/* Earlier slices' pieces must still be there (retention or eviction may have taken a
 * job that was final already): if not, writing starts over from the first piece. */
void store_op_slices_check(struct store_txn *t, struct store_op *op)
{
        if (op->written_input > 0 && !store_pieces_exist(t, t->s->inputs, op->job->id, 16))
                op->written_input = 0;
        if (op->written_result > 0 && !store_pieces_exist(t, t->s->results, op->job->id, 16))
                op->written_result = 0;
}

/* Writes the next slice of a big op: up to `step` bytes (a multiple of the piece
 * size) of its input, else of its result. Sets how far each is written once t
 * commits. Returns >= 0 or -errno. */
int store_op_write_slice(struct store_txn *t, struct store_op *op, size_t step, size_t *ret_input,
                         size_t *ret_result)
{
        size_t result = op_result_bytes(op), from, to;
        int r;

        *ret_input = op->written_input;
        *ret_result = op->written_result;
        if (op->written_input < op->input_size) {
                from = op->written_input;
                to = op->input_size - from < step ? op->input_size : from + step;
                r = store_pieces_put_range(t, t->s->inputs, op->job->id, 16, op->input_size, from, to,
                                           op_write_input, op);
                if (r >= 0)
                        *ret_input = to;
                return r;
        }
        from = op->written_result;
        to = result - from < step ? result : from + step;
        r = store_pieces_put_range(t, t->s->results, op->job->id, 16, result, from, to, op_write_result, op);
        if (r >= 0)
                *ret_result = to;
        return r;
}

/* Deletes what committed slices of a failed big op wrote, and forgets it. */
int store_op_slices_drop(struct store_txn *t, struct store_op *op)
{
        int r = 0;

        if (op->written_input > 0)
                r = store_pieces_delete(t, t->s->inputs, op->job->id, 16);
        if (r >= 0 && op->written_result > 0)
                r = store_pieces_delete(t, t->s->results, op->job->id, 16);
        if (r < 0)
                return r;
        op->written_input = op->written_result = 0;
        return 0;
}
