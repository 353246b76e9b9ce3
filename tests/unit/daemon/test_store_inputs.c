/* Jobs' stored inputs (daemon/store_inputs.c): written in pieces with the job's
 * submit, read back after a restart, deleted with the job and by retention; and the
 * writer operations that carry them (SUBMIT, JOB_PUT, INPUT_GET). Every test works in
 * its own directory under $KILN_TEST_TMPDIR. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "store.h"
#include "store_internal.h"
#include "store_fixture.h"

#define PIECE 4096

static int setup(void **state)
{
        store_set_result_chunk(PIECE);
        return store_fixture_setup(state, "inputs");
}

static int teardown(void **state)
{
        store_set_result_chunk(0);
        return store_fixture_teardown(state);
}

/* Input bytes of job n: the pattern shifted by n, so inputs of two jobs differ. */
static void input_piece(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        pattern_piece(NULL, dst, offset + *(const size_t *)opaque, len);
}

static int input_of(struct store *s, const uint8_t id[16], uint8_t **data, size_t *size)
{
        struct store_txn *t;
        int r;

        assert_int_equal(store_txn_begin(s, false, &t), 0);
        r = store_input_get(t, id, data, size);
        store_txn_abort(t);
        return r;
}

/* Puts job n (state st) with an input of `size` bytes in one transaction. */
static void put_with_input(struct store *s, struct store_job *j, uint64_t n, enum kiln_job_state st, size_t size)
{
        struct store_txn *t;
        size_t shift = n;

        fixture_job_init(j, n, "acme", "risk.score", st);
        j->input_size = size;
        if (kiln_job_state_is_final(st))
                j->finished_ms = j->submitted_ms + 5;
        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_job_put(t, j), 0);
        assert_int_equal(store_input_put(t, j->id, size, input_piece, &shift), 0);
        assert_int_equal(store_txn_commit(t), 0);
}

static void assert_input(struct store *s, const struct store_job *j, uint64_t n, size_t size)
{
        uint8_t *data = NULL;
        size_t got = 12345;

        assert_int_equal(input_of(s, j->id, &data, &got), 0);
        assert_non_null(data);
        assert_int_equal(got, size);
        assert_pattern(data, got, n);
        free(data);
}

/* ---- the synchronous layer ---- */

/* Empty, one byte, exactly one piece, an exact multiple of pieces, many pieces and a
 * partial last one: each reads back whole after the store is closed and opened again,
 * as recovery after a restart reads it. */
static void inputs_of_every_size_read_back_after_reopen(void **state)
{
        struct fixture *f = *state;
        const size_t sizes[] = { 0, 1, PIECE, 3 * PIECE, 7 * PIECE + 123 };
        struct store_job jobs[5], *got;
        uint8_t *data;
        size_t size;

        for (size_t i = 0; i < 5; i++)
                put_with_input(f->s, &jobs[i], i, KILN_JOB_QUEUED, sizes[i]);
        store_fixture_reopen(f, STORE_SYNC_FULL);
        for (size_t i = 0; i < 5; i++) {
                assert_input(f->s, &jobs[i], i, sizes[i]);
                assert_int_equal(fixture_get_job(f->s, jobs[i].id, &got), 0);
                assert_true(got->input_size == sizes[i]);
                store_job_free(got);
                /* an input is not a result */
                struct store_txn *t;
                assert_int_equal(store_txn_begin(f->s, false, &t), 0);
                assert_int_equal(store_result_get(t, jobs[i].id, &data, &size), -ENOENT);
                store_txn_abort(t);
        }
}

/* A restart after a crash: the store closed, its lock file still naming the
 * process that held it (a clean close empties it), then opened again. */
static void reopen_after_a_crash(struct fixture *f)
{
        char path[sizeof(f->dir) + sizeof(STORE_LOCK_FILE) + 1];
        store_close(f->s);
        f->s = NULL;
        snprintf(path, sizeof(path), "%s/%s", f->dir, STORE_LOCK_FILE);
        FILE *lock = fopen(path, "w");
        assert_non_null(lock);
        fputs("12345\n", lock);
        assert_int_equal(fclose(lock), 0);
        assert_int_equal(store_open(f->dir, MAP_SIZE, STORE_SYNC_FULL, &f->s), 0);
}

/* Pieces of an input whose job record was never committed (a kill -9 between the
 * slices of a big submission and its record) are deleted at the next open after
 * that crash; the inputs of stored jobs around them, in key order, stay whole. A
 * clean stop leaves none, so the open after one does not look. */
static void inputs_without_a_record_are_dropped_at_open(void **state)
{
        struct fixture *f = *state;
        struct store_job a, orphan, b, last;
        struct store_txn *t;
        size_t shift = 2;

        put_with_input(f->s, &a, 1, KILN_JOB_QUEUED, 3 * PIECE);
        fixture_job_init(&orphan, 2, "acme", "risk.score", KILN_JOB_QUEUED);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_input_put(t, orphan.id, 5 * PIECE + 9, input_piece, &shift), 0);
        assert_int_equal(store_txn_commit(t), 0);
        put_with_input(f->s, &b, 3, KILN_JOB_DONE, 2 * PIECE);
        /* An orphan with the highest id there can be: the walk ends after it. */
        fixture_job_init(&last, 4, "acme", "risk.score", KILN_JOB_QUEUED);
        memset(last.id, 0xff, sizeof(last.id));
        shift = 4;
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_input_put(t, last.id, PIECE, input_piece, &shift), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(store_orphan_pieces(f->s), 0);

        store_fixture_reopen(f, STORE_SYNC_FULL); /* clean: not looked for */
        assert_int_equal(store_orphan_pieces(f->s), 0);
        reopen_after_a_crash(f);
        assert_int_equal(store_orphan_pieces(f->s), 6 + 1);
        uint8_t *data = NULL;
        size_t size = 0;
        assert_int_equal(input_of(f->s, orphan.id, &data, &size), -ENOENT);
        assert_int_equal(input_of(f->s, last.id, &data, &size), -ENOENT);
        assert_input(f->s, &a, 1, 3 * PIECE);
        assert_input(f->s, &b, 3, 2 * PIECE);
        /* Nothing more to drop the next time. */
        reopen_after_a_crash(f);
        assert_int_equal(store_orphan_pieces(f->s), 0);
        assert_input(f->s, &a, 1, 3 * PIECE);
}

static void missing_input_is_enoent(void **state)
{
        struct fixture *f = *state;
        struct store_job j;
        uint8_t *data = NULL;
        size_t size = 5;

        fixture_job_init(&j, 1, "acme", "risk.score", KILN_JOB_QUEUED);
        assert_int_equal(input_of(f->s, j.id, &data, &size), -ENOENT);
        fixture_put_job(f->s, &j);
        assert_int_equal(input_of(f->s, j.id, &data, &size), -ENOENT);
        assert_null(data);
        assert_int_equal(size, 5);
}

/* A replaced input leaves none of the old pieces behind, and the input of the job
 * whose id follows is untouched. */
static void input_replaced_by_a_smaller_one_reads_back_whole(void **state)
{
        struct fixture *f = *state;
        struct store_job a, b;
        struct store_txn *t;
        size_t shift = 1;

        put_with_input(f->s, &a, 1, KILN_JOB_QUEUED, 9 * PIECE + 1);
        put_with_input(f->s, &b, 2, KILN_JOB_QUEUED, 2 * PIECE);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_input_put(t, a.id, PIECE + 7, input_piece, &shift), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_input(f->s, &a, 1, PIECE + 7);
        assert_input(f->s, &b, 2, 2 * PIECE);
}

static void input_is_deleted_with_its_job_only(void **state)
{
        struct fixture *f = *state;
        struct store_job a, b, *got;
        struct store_txn *t;
        uint8_t *data;
        size_t size;

        put_with_input(f->s, &a, 1, KILN_JOB_QUEUED, 5 * PIECE + 5);
        put_with_input(f->s, &b, 2, KILN_JOB_QUEUED, 3);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_delete(t, a.id), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(input_of(f->s, a.id, &data, &size), -ENOENT);
        assert_input(f->s, &b, 2, 3);

        /* store_input_delete drops only the input, and is quiet when there is none */
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_input_delete(t, b.id), 0);
        assert_int_equal(store_input_delete(t, b.id), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(input_of(f->s, b.id, &data, &size), -ENOENT);
        assert_int_equal(fixture_get_job(f->s, b.id, &got), 0);
        store_job_free(got);
}

static void retention_purges_inputs_with_finished_jobs(void **state)
{
        struct fixture *f = *state;
        struct store_policy p = { .cache_max_bytes = UINT64_MAX, .retain_s = 60 };
        struct store_job done, queued;
        struct store_txn *t;
        uint8_t *data;
        size_t size;

        put_with_input(f->s, &done, 1, KILN_JOB_DONE, 4 * PIECE);
        put_with_input(f->s, &queued, 2, KILN_JOB_QUEUED, 2 * PIECE + 1);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_maintain(t, &p, done.finished_ms + 59000, 100), 0);
        assert_int_equal(store_maintain(t, &p, done.finished_ms + 60000, 100), 1);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(input_of(f->s, done.id, &data, &size), -ENOENT);
        assert_int_equal(fixture_get_job(f->s, done.id, &(struct store_job *){ NULL }), -ENOENT); /* nothing to free */
        assert_input(f->s, &queued, 2, 2 * PIECE + 1);
}

/* ---- the writer ---- */

struct input_op {
        struct store_op op;
        struct store_job job;
        size_t shift;
};

static void op_input_piece(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        struct input_op *io = (struct input_op *)((char *)op - offsetof(struct input_op, op));

        pattern_piece(NULL, dst, offset + io->shift, len);
}

static void op_result_piece(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        memset(dst, 'r', len);
}

static void init_op(struct input_op *io, enum store_op_type type, uint64_t n, size_t input_size)
{
        memset(io, 0, sizeof(*io));
        fixture_job_init(&io->job, n, "acme", "risk.score", KILN_JOB_QUEUED);
        io->job.params = "{\"rows\":\"input\"}";
        io->shift = n;
        io->op.type = type;
        io->op.job = &io->job;
        io->op.input_size = input_size;
        io->op.write_input = op_input_piece;
}

static void run_input_get(struct store_writer *w, const uint8_t id[16], struct store_op *op)
{
        memset(op, 0, sizeof(*op));
        op->type = STORE_OP_INPUT_GET;
        memcpy(op->id, id, 16);
        fixture_op_run(w, op);
}

/* SUBMIT writes the record and its input in one transaction; INPUT_GET reads both
 * back, and after a restart the pending job and its input are there to recover. */
static void submit_stores_input_with_the_record(void **state)
{
        struct fixture *f = *state;
        struct input_op sub;
        struct store_op get;
        struct store_writer *w;
        struct store_txn *t;
        uint64_t commits;

        init_op(&sub, STORE_OP_SUBMIT, 7, 6 * PIECE + 11);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        fixture_op_run(w, &sub.op);
        assert_int_equal(sub.op.status, 0);
        assert_int_equal(sub.op.outcome, STORE_SUBMIT_STORED);
        store_writer_stats(w, &commits, NULL);
        assert_int_equal(commits, 1);

        run_input_get(w, sub.job.id, &get);
        assert_int_equal(get.status, 0);
        assert_non_null(get.job_out);
        sub.job.input_size = 6 * PIECE + 11; /* the writer records it */
        assert_jobs_equal(&sub.job, get.job_out);
        assert_int_equal(get.result_size, 6 * PIECE + 11);
        assert_pattern(get.result_out, get.result_size, 7);
        store_job_free(get.job_out);
        free(get.result_out);
        store_writer_stop(w);

        store_fixture_reopen(f, STORE_SYNC_FULL);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        struct store_job *rec;
        assert_int_equal(store_job_get(t, sub.job.id, &rec), 0);
        assert_int_equal(rec->state, KILN_JOB_QUEUED);
        assert_true(rec->input_size == 6 * PIECE + 11);
        store_job_free(rec);
        store_txn_abort(t);
        assert_input(f->s, &sub.job, 7, 6 * PIECE + 11);
}

/* A job answered by its idempotency key or from the cache stores no input. */
static void submit_answered_by_key_or_cache_stores_no_input(void **state)
{
        struct fixture *f = *state;
        struct store_cache_key key = { .kind = "risk.score", .version = 1, .model = "", .params = "{}" };
        struct input_op first, again, producer, cached;
        struct store_writer *w;
        struct store_op get;
        uint8_t *data;
        size_t size;

        memset(key.hash, 0x42, 16);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        init_op(&first, STORE_OP_SUBMIT, 1, 100);
        first.job.idem_key = "k";
        fixture_op_run(w, &first.op);
        assert_int_equal(first.op.outcome, STORE_SUBMIT_STORED);
        init_op(&again, STORE_OP_SUBMIT, 2, 200);
        again.job.idem_key = "k";
        fixture_op_run(w, &again.op);
        assert_int_equal(again.op.status, 0);
        assert_int_equal(again.op.outcome, STORE_SUBMIT_IDEM);
        assert_memory_equal(again.op.job_out->id, first.job.id, 16);
        store_job_free(again.op.job_out);

        /* a done job whose result is cached under `key`, then a submit that hits it */
        init_op(&producer, STORE_OP_JOB_PUT, 3, 0);
        producer.job.state = KILN_JOB_DONE;
        producer.job.finished_ms = producer.job.submitted_ms + 1;
        producer.op.result_size = 10;
        producer.op.write_result = op_result_piece;
        producer.op.cache_key = &key;
        fixture_op_run(w, &producer.op);
        assert_int_equal(producer.op.status, 0);
        init_op(&cached, STORE_OP_SUBMIT, 4, 300);
        cached.op.cache_key = &key;
        fixture_op_run(w, &cached.op);
        assert_int_equal(cached.op.status, 0);
        assert_int_equal(cached.op.outcome, STORE_SUBMIT_CACHED);
        assert_true(cached.op.job_out->input_size == 0);
        store_job_free(cached.op.job_out);
        assert_int_equal(cached.op.result_size, 10);
        free(cached.op.result_out);

        run_input_get(w, cached.job.id, &get);
        assert_int_equal(get.status, 0);
        assert_null(get.result_out);
        assert_int_equal(get.result_size, 0);
        store_job_free(get.job_out);

        /* lookup_only (no room for a new job): answered by the key or the cache as
         * above, else -ENOSPC with nothing written. */
        struct input_op by_key, from_cache, refused;
        init_op(&by_key, STORE_OP_SUBMIT, 5, 0);
        by_key.job.idem_key = "k";
        by_key.op.lookup_only = true;
        fixture_op_run(w, &by_key.op);
        assert_int_equal(by_key.op.status, 0);
        assert_int_equal(by_key.op.outcome, STORE_SUBMIT_IDEM);
        store_job_free(by_key.op.job_out);
        init_op(&from_cache, STORE_OP_SUBMIT, 6, 0);
        from_cache.op.cache_key = &key;
        from_cache.op.lookup_only = true;
        fixture_op_run(w, &from_cache.op);
        assert_int_equal(from_cache.op.status, 0);
        assert_int_equal(from_cache.op.outcome, STORE_SUBMIT_CACHED);
        store_job_free(from_cache.op.job_out);
        free(from_cache.op.result_out);
        init_op(&refused, STORE_OP_SUBMIT, 7, 0);
        refused.job.idem_key = "new";
        refused.op.lookup_only = true;
        fixture_op_run(w, &refused.op);
        assert_int_equal(refused.op.status, -ENOSPC);
        struct store_job *none = NULL;
        assert_int_equal(fixture_get_job(f->s, refused.job.id, &none), -ENOENT);
        store_writer_stop(w);

        assert_int_equal(input_of(f->s, again.job.id, &data, &size), -ENOENT);
        assert_int_equal(input_of(f->s, cached.job.id, &data, &size), -ENOENT);
        assert_input(f->s, &first.job, 1, 100);
}

/* JOB_PUT stores an input with the record; INPUT_GET of a job without one gives no
 * bytes, of no job -ENOENT; an input without its writer is refused. */
static void job_put_input_and_input_get_edges(void **state)
{
        struct fixture *f = *state;
        struct input_op with, without, bad;
        struct store_writer *w;
        struct store_op get;

        init_op(&with, STORE_OP_JOB_PUT, 1, 1);
        init_op(&without, STORE_OP_JOB_PUT, 2, 0);
        init_op(&bad, STORE_OP_SUBMIT, 3, 10);
        bad.op.write_input = NULL;
        assert_int_equal(store_writer_start(f->s, &w), 0);
        fixture_op_run(w, &with.op);
        fixture_op_run(w, &without.op);
        fixture_op_run(w, &bad.op);
        assert_int_equal(with.op.status, 0);
        assert_int_equal(without.op.status, 0);
        assert_int_equal(bad.op.status, -EINVAL);

        run_input_get(w, with.job.id, &get);
        assert_int_equal(get.status, 0);
        assert_int_equal(get.result_size, 1);
        assert_pattern(get.result_out, 1, 1);
        assert_true(get.job_out->input_size == 1);
        store_job_free(get.job_out);
        free(get.result_out);

        run_input_get(w, without.job.id, &get);
        assert_int_equal(get.status, 0);
        assert_non_null(get.job_out);
        assert_null(get.result_out);
        assert_int_equal(get.result_size, 0);
        store_job_free(get.job_out);

        run_input_get(w, bad.job.id, &get);
        assert_int_equal(get.status, -ENOENT);
        assert_null(get.job_out);
        assert_null(get.result_out);
        store_writer_stop(w);
}

static const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(inputs_of_every_size_read_back_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(inputs_without_a_record_are_dropped_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_input_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(input_replaced_by_a_smaller_one_reads_back_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(input_is_deleted_with_its_job_only, setup, teardown),
        cmocka_unit_test_setup_teardown(retention_purges_inputs_with_finished_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(submit_stores_input_with_the_record, setup, teardown),
        cmocka_unit_test_setup_teardown(submit_answered_by_key_or_cache_stores_no_input, setup, teardown),
        cmocka_unit_test_setup_teardown(job_put_input_and_input_get_edges, setup, teardown),
};

int main(void)
{
        return cmocka_run_group_tests(tests, NULL, NULL);
}
