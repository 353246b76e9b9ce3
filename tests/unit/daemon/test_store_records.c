/* The job store: job states, the record codec and its versions, transactions, the
 * pending index, listing, deletion and the environment (daemon/store.c,
 * store_records.c, store_jobs.c). Every test works in its own directory under
 * $KILN_TEST_TMPDIR. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* ---- job states and in-memory records ---- */

static void state_names_round_trip(void **state)
{
        static const char *const names[] = { "queued", "running", "done", "failed", "cancelled", "expired" };

        for (int i = 0; i < 6; i++) {
                enum kiln_job_state s;

                assert_string_equal(kiln_job_state_name((enum kiln_job_state)i), names[i]);
                assert_int_equal(kiln_job_state_from_name(names[i], &s), 0);
                assert_int_equal(s, i);
        }
        assert_null(kiln_job_state_name((enum kiln_job_state)6));
        assert_null(kiln_job_state_name((enum kiln_job_state)-1));
}

static void state_from_unknown_name_is_einval(void **state)
{
        enum kiln_job_state s = KILN_JOB_DONE;

        assert_int_equal(kiln_job_state_from_name("Queued", &s), -EINVAL);
        assert_int_equal(kiln_job_state_from_name("", &s), -EINVAL);
        assert_int_equal(kiln_job_state_from_name(NULL, &s), -EINVAL);
        assert_int_equal(s, KILN_JOB_DONE);
}

static void job_dup_copies_strings(void **state)
{
        struct store_job j, *d;

        fixture_full_job(&j);
        d = store_job_dup(&j);
        assert_non_null(d);
        assert_jobs_equal(&j, d);
        assert_ptr_not_equal(d->params, j.params);
        assert_ptr_not_equal(d->error_message, j.error_message);
        store_job_free(d);

        j.params = j.idem_key = j.error_code = j.error_message = NULL;
        d = store_job_dup(&j);
        assert_non_null(d);
        assert_null(d->params);
        assert_null(d->error_message);
        store_job_free(d);
        store_job_free(NULL);
}

/* ---- the record codec ---- */

static void record_starts_with_version_byte(void **state)
{
        struct store_job j;
        uint8_t *buf;
        size_t size;

        fixture_full_job(&j);
        assert_int_equal(store_record_encode(&j, &buf, &size), 0);
        assert_true(size > 1);
        assert_int_equal(buf[0], STORE_RECORD_VERSION);
        free(buf);
}

static void record_decode_rejects_every_truncation(void **state)
{
        struct store_job j, *d;
        uint8_t *buf, *copy;
        size_t size;

        fixture_full_job(&j);
        assert_int_equal(store_record_encode(&j, &buf, &size), 0);
        for (size_t n = 0; n < size; n++) {
                /* an exact-size heap copy, so an overread is caught by sanitizers */
                copy = malloc(n ? n : 1);
                assert_non_null(copy);
                memcpy(copy, buf, n);
                assert_int_equal(store_record_decode(j.id, copy, n, &d), -EIO);
                free(copy);
        }
        assert_int_equal(store_record_decode(j.id, buf, size, &d), 0);
        assert_jobs_equal(&j, d);
        store_job_free(d);

        copy = malloc(size + 1);
        assert_non_null(copy);
        memcpy(copy, buf, size);
        copy[size] = 0;
        assert_int_equal(store_record_decode(j.id, copy, size + 1, &d), -EIO);
        free(copy);
        free(buf);
}

static void record_decode_rejects_corrupt_fields(void **state)
{
        struct store_job j, *d;
        uint8_t *buf;
        size_t size;
        /* offsets in version 1: version 0, priority 1, state 2, fixed ints to 39, kind length 39 */
        const size_t kind_len_at = 3 + 3 * 8 + 3 * 4;

        fixture_job_init(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        j.params = "{}";
        assert_int_equal(store_record_encode(&j, &buf, &size), 0);

        buf[0] = STORE_RECORD_VERSION + 1;
        assert_int_equal(store_record_decode(j.id, buf, size, &d), -EIO);
        buf[0] = STORE_RECORD_VERSION;

        buf[1] = 5; /* priority */
        assert_int_equal(store_record_decode(j.id, buf, size, &d), -EIO);
        buf[1] = 2;

        buf[2] = 6; /* state */
        assert_int_equal(store_record_decode(j.id, buf, size, &d), -EIO);
        buf[2] = KILN_JOB_QUEUED;

        assert_int_equal(buf[kind_len_at], strlen("lens.nfw"));
        buf[kind_len_at] = 32; /* longer than the kind array allows */
        assert_int_equal(store_record_decode(j.id, buf, size, &d), -EIO);
        buf[kind_len_at] = 0xff;
        assert_int_equal(store_record_decode(j.id, buf, size, &d), -EIO);
        buf[kind_len_at] = (uint8_t)strlen("lens.nfw");

        buf[kind_len_at + 1] = '\0'; /* embedded NUL */
        assert_int_equal(store_record_decode(j.id, buf, size, &d), -EIO);
        buf[kind_len_at + 1] = 'l';

        /* params length (after kind, tenant, backend) claiming more than is there */
        size_t params_len_at = kind_len_at + 1 + 8 + 1 + 4 + 1;
        assert_int_equal(buf[params_len_at], 2);
        buf[params_len_at + 3] = 0x7f;
        assert_int_equal(store_record_decode(j.id, buf, size, &d), -EIO);
        buf[params_len_at + 3] = 0;

        assert_int_equal(store_record_decode(j.id, buf, size, &d), 0);
        assert_jobs_equal(&j, d);
        store_job_free(d);
        assert_int_equal(store_record_decode(j.id, NULL, 0, &d), -EIO);
        free(buf);
}

/* ---- record versions ---- */

/* A version 1 record, as the store wrote it before attempts, input_size and object:
 * job "risk.score" of tenant "acme", priority 3, done on "cuda:1", submitted
 * 1700000000123, finished 1700000004567, deadline 1700000600000, queue 12 ms, run
 * 3456 ms, batch 64, params {"model":"altman-z"}, idempotency key "k-7", no error. */
static const uint8_t record_v1[] = {
        0x01, 0x03, 0x02, 0x7b, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, 0xd7,
        0x79, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, 0xc0, 0x8f, 0xee, 0xcf, 0x8b,
        0x01, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x80, 0x0d, 0x00, 0x00, 0x40,
        0x00, 0x00, 0x00, 0x0a, 0x72, 0x69, 0x73, 0x6b, 0x2e, 0x73, 0x63, 0x6f,
        0x72, 0x65, 0x04, 0x61, 0x63, 0x6d, 0x65, 0x06, 0x63, 0x75, 0x64, 0x61,
        0x3a, 0x31, 0x14, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x6d, 0x6f, 0x64, 0x65,
        0x6c, 0x22, 0x3a, 0x22, 0x61, 0x6c, 0x74, 0x6d, 0x61, 0x6e, 0x2d, 0x7a,
        0x22, 0x7d, 0x03, 0x00, 0x00, 0x00, 0x6b, 0x2d, 0x37, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff,
};

static void v1_job(struct store_job *j)
{
        memset(j, 0, sizeof(*j));
        for (int i = 0; i < 16; i++)
                j->id[i] = (uint8_t)(0x10 + i);
        snprintf(j->kind, sizeof(j->kind), "risk.score");
        snprintf(j->tenant, sizeof(j->tenant), "acme");
        snprintf(j->backend, sizeof(j->backend), "cuda:1");
        j->priority = 3;
        j->state = KILN_JOB_DONE;
        j->submitted_ms = 1700000000123ll;
        j->finished_ms = 1700000004567ll;
        j->deadline_ms = 1700000600000ll;
        j->queue_ms = 12;
        j->run_ms = 3456;
        j->batch = 64;
        j->params = "{\"model\":\"altman-z\"}";
        j->idem_key = "k-7";
}

static void record_version_1_decodes_with_defaults(void **state)
{
        struct store_job want, *d;
        uint8_t *copy;

        v1_job(&want);
        assert_int_equal(store_record_decode(want.id, record_v1, sizeof(record_v1), &d), 0);
        assert_jobs_equal(&want, d);
        assert_int_equal(d->attempts, 0);
        assert_null(d->object);
        assert_true(d->input_size == 0);
        store_job_free(d);

        for (size_t n = 0; n < sizeof(record_v1); n++) {
                copy = malloc(n ? n : 1);
                assert_non_null(copy);
                memcpy(copy, record_v1, n);
                assert_int_equal(store_record_decode(want.id, copy, n, &d), -EIO);
                free(copy);
        }
        /* a version 1 record carrying version 2 fields is not a version 1 record */
        copy = malloc(sizeof(record_v1) + 16);
        assert_non_null(copy);
        memcpy(copy, record_v1, sizeof(record_v1));
        memset(copy + sizeof(record_v1), 0xff, 16);
        memset(copy + sizeof(record_v1), 0, 12);
        assert_int_equal(store_record_decode(want.id, copy, sizeof(record_v1) + 16, &d), -EIO);
        free(copy);
}

/* A version 2 record (before error_field) decodes with none; made here from a
 * version 3 record without the field, which is how version 2 wrote it. */
static void record_version_2_decodes_without_an_error_field(void **state)
{
        struct store_job j, *d;
        uint8_t *buf;
        size_t size;

        fixture_full_job(&j);
        j.error_field = NULL;
        assert_int_equal(store_record_encode(&j, &buf, &size), 0);
        static const uint8_t null_string[4] = { 0xff, 0xff, 0xff, 0xff };
        assert_memory_equal(buf + size - 4, null_string, 4);
        buf[0] = 2;
        assert_int_equal(store_record_decode(j.id, buf, size - 4, &d), 0);
        assert_jobs_equal(&j, d);
        assert_null(d->error_field);
        store_job_free(d);
        /* and version 2 with a trailing field is not version 2 */
        assert_int_equal(store_record_decode(j.id, buf, size, &d), -EIO);
        free(buf);
}

/* Version 1 records in a store read back (get, list), and are rewritten in the current version. */
static void record_version_1_in_store_reads_and_is_rewritten(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = "acme", .state = -1, .limit = 10 };
        struct store_job want, *got, **jobs;
        struct store_txn *t;
        uint8_t *buf;
        size_t n, size;
        bool more;
        uint8_t next[16];

        v1_job(&want);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_record_put_raw(t, want.id, record_v1, sizeof(record_v1)), 0);
        assert_int_equal(store_txn_commit(t), 0);
        store_fixture_reopen(f, STORE_SYNC_FULL);

        assert_int_equal(fixture_get_job(f->s, want.id, &got), 0);
        assert_jobs_equal(&want, got);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), 0);
        store_txn_abort(t);
        assert_int_equal(n, 1);
        assert_jobs_equal(&want, jobs[0]);
        store_job_free(jobs[0]);
        free(jobs);

        got->attempts = 2;
        got->object = strdup("risk.model/acme@3");
        got->input_size = 4096;
        fixture_put_job(f->s, got);
        assert_int_equal(store_record_encode(got, &buf, &size), 0);
        assert_int_equal(buf[0], STORE_RECORD_VERSION);
        free(buf);
        store_fixture_reopen(f, STORE_SYNC_FULL);
        struct store_job *again;
        assert_int_equal(fixture_get_job(f->s, want.id, &again), 0);
        assert_jobs_equal(got, again);
        assert_int_equal(again->attempts, 2);
        assert_string_equal(again->object, "risk.model/acme@3");
        assert_true(again->input_size == 4096);
        store_job_free(again);
        store_job_free(got);
}

static void record_version_2_fields_round_trip(void **state)
{
        struct store_job j, *d;
        uint8_t *buf;
        size_t size, base_size;
        const uint32_t attempts[] = { 0, 1, UINT32_MAX };

        v1_job(&j);
        assert_int_equal(store_record_encode(&j, &buf, &base_size), 0);
        free(buf);
        for (size_t i = 0; i < 3; i++) {
                j.attempts = attempts[i];
                j.input_size = i == 2 ? UINT64_MAX : i;
                j.object = i == 0 ? NULL : i == 1 ? "" : "vec.collection/docs@18446744073709551615";
                assert_int_equal(store_record_encode(&j, &buf, &size), 0);
                /* version 1 + u32 attempts + u64 input size + object + error_field (NULL) */
                assert_int_equal(size, sizeof(record_v1) + 4 + 8 + 4 + (j.object ? strlen(j.object) : 0) + 4);
                assert_int_equal(size, base_size + (j.object ? strlen(j.object) : 0));
                assert_int_equal(store_record_decode(j.id, buf, size, &d), 0);
                assert_jobs_equal(&j, d);
                if (i == 1) {
                        assert_non_null(d->object);
                        assert_string_equal(d->object, "");
                }
                store_job_free(d);

                /* an object length past the end, an embedded NUL */
                if (j.object && *j.object) {
                        size_t len_at = size - 4 - strlen(j.object) - 4;
                        buf[len_at + 2] = 0x7f;
                        assert_int_equal(store_record_decode(j.id, buf, size, &d), -EIO);
                        buf[len_at + 2] = 0;
                        buf[size - 4 - 1] = '\0';
                        assert_int_equal(store_record_decode(j.id, buf, size, &d), -EIO);
                }
                free(buf);
        }
}

static void job_dup_copies_object(void **state)
{
        struct store_job j, *d;

        fixture_full_job(&j);
        d = store_job_dup(&j);
        assert_non_null(d);
        assert_ptr_not_equal(d->object, j.object);
        assert_string_equal(d->object, "risk.model/acme@3");
        assert_int_equal(d->attempts, j.attempts);
        assert_true(d->input_size == j.input_size);
        store_job_free(d);
        j.object = NULL;
        d = store_job_dup(&j);
        assert_non_null(d);
        assert_null(d->object);
        store_job_free(d);
}

/* ---- the synchronous layer ---- */

static void put_get_round_trips_every_field(void **state)
{
        struct fixture *f = *state;
        struct store_job j, *got;

        fixture_full_job(&j);
        fixture_put_job(f->s, &j);
        assert_int_equal(fixture_get_job(f->s, j.id, &got), 0);
        assert_jobs_equal(&j, got);
        store_job_free(got);
}

static void put_get_keeps_null_and_empty_strings_apart(void **state)
{
        struct fixture *f = *state;
        struct store_job j, *got;

        fixture_job_init(&j, 1, "acme", "risk.score", KILN_JOB_QUEUED);
        j.params = "";
        j.idem_key = NULL;
        j.error_code = "";
        j.error_message = NULL;
        fixture_put_job(f->s, &j);
        assert_int_equal(fixture_get_job(f->s, j.id, &got), 0);
        assert_non_null(got->params);
        assert_string_equal(got->params, "");
        assert_null(got->idem_key);
        assert_non_null(got->error_code);
        assert_string_equal(got->error_code, "");
        assert_null(got->error_message);
        assert_string_equal(got->backend, "");
        store_job_free(got);
}

static void put_rejects_invalid_job_and_txn_stays_usable(void **state)
{
        struct fixture *f = *state;
        struct store_txn *t;
        struct store_job j, *got;

        fixture_job_init(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        j.state = 6;
        assert_int_equal(store_job_put(t, &j), -EINVAL);
        j.state = KILN_JOB_QUEUED;
        j.priority = 5;
        assert_int_equal(store_job_put(t, &j), -EINVAL);
        j.priority = 0;
        memset(j.kind, 'x', sizeof(j.kind)); /* no terminating NUL */
        assert_int_equal(store_job_put(t, &j), -EINVAL);
        snprintf(j.kind, sizeof(j.kind), "lens.nfw");
        assert_int_equal(store_job_put(t, &j), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(fixture_get_job(f->s, j.id, &got), 0);
        assert_int_equal(got->priority, 0);
        store_job_free(got);
}

static void get_missing_job_is_enoent(void **state)
{
        struct fixture *f = *state;
        struct store_job *got = (struct store_job *)0x1;
        uint8_t id[16];

        fixture_job_id(id, 1, 1);
        assert_int_equal(fixture_get_job(f->s, id, &got), -ENOENT);
        assert_ptr_equal(got, (struct store_job *)0x1);
}

static void corrupt_record_in_store_is_eio(void **state)
{
        struct fixture *f = *state;
        struct store_job j, **jobs, *got;
        struct store_list_query q = { .tenant = "acme", .state = -1, .limit = 10 };
        struct store_txn *t;
        const uint8_t garbage[] = { STORE_RECORD_VERSION, 0, 0, 1, 2, 3 };
        size_t n;
        bool more;
        uint8_t next[16];

        fixture_job_init(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        fixture_put_job(f->s, &j);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_record_put_raw(t, j.id, garbage, sizeof(garbage)), 0);
        assert_int_equal(store_txn_commit(t), 0);

        assert_int_equal(fixture_get_job(f->s, j.id, &got), -EIO);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), -EIO);
        store_txn_abort(t);
}

static int count_cb(const struct store_job *job, void *userdata)
{
        (*(int *)userdata)++;
        return 0;
}

static void pending_entry_with_corrupt_record_is_eio(void **state)
{
        struct fixture *f = *state;
        struct store_job j;
        struct store_txn *t;
        const uint8_t garbage[] = { 0xee, 0xee };
        int count = 0;

        fixture_job_init(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        fixture_put_job(f->s, &j);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_record_put_raw(t, j.id, garbage, sizeof(garbage)), 0);
        assert_int_equal(store_pending_foreach(t, count_cb, &count), -EIO);
        assert_int_equal(count, 0);
        store_txn_abort(t);
}

struct collected {
        uint8_t ids[2048][16];
        uint8_t states[2048];
        size_t n;
        size_t stop_after; /* 0: never stop */
};

static int collect_cb(const struct store_job *job, void *userdata)
{
        struct collected *c = userdata;

        assert_true(c->n < 2048);
        memcpy(c->ids[c->n], job->id, 16);
        c->states[c->n] = job->state;
        c->n++;
        if (c->stop_after && c->n == c->stop_after)
                return -ECANCELED;
        return 0;
}

static void collect_pending(struct store *s, struct collected *c)
{
        struct store_txn *t;

        c->n = 0;
        assert_int_equal(store_txn_begin(s, false, &t), 0);
        assert_int_equal(store_pending_foreach(t, collect_cb, c), 0);
        store_txn_abort(t);
}

static void pending_tracks_state_transitions(void **state)
{
        struct fixture *f = *state;
        struct collected *c = calloc(1, sizeof(*c));
        struct store_txn *t;
        struct store_job j;
        const struct {
                enum kiln_job_state st;
                size_t pending;
        } steps[] = {
                { KILN_JOB_QUEUED, 1 },  { KILN_JOB_RUNNING, 1 }, { KILN_JOB_DONE, 0 },
                { KILN_JOB_QUEUED, 1 },  { KILN_JOB_FAILED, 0 },  { KILN_JOB_CANCELLED, 0 },
                { KILN_JOB_RUNNING, 1 }, { KILN_JOB_EXPIRED, 0 },
        };

        assert_non_null(c);
        fixture_job_init(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                j.state = (uint8_t)steps[i].st;
                fixture_put_job(f->s, &j);
                collect_pending(f->s, c);
                assert_int_equal(c->n, steps[i].pending);
                if (c->n)
                        assert_int_equal(c->states[0], steps[i].st);
        }
        j.state = KILN_JOB_QUEUED;
        fixture_put_job(f->s, &j);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_delete(t, j.id), 0);
        assert_int_equal(store_txn_commit(t), 0);
        collect_pending(f->s, c);
        assert_int_equal(c->n, 0);
        free(c);
}

static void pending_foreach_stops_on_negative_return(void **state)
{
        struct fixture *f = *state;
        struct collected *c = calloc(1, sizeof(*c));
        struct store_txn *t;
        struct store_job j;

        assert_non_null(c);
        for (int i = 0; i < 5; i++) {
                fixture_job_init(&j, (uint64_t)i, "acme", "lens.nfw", KILN_JOB_QUEUED);
                fixture_put_job(f->s, &j);
        }
        c->stop_after = 2;
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_pending_foreach(t, collect_cb, c), -ECANCELED);
        store_txn_abort(t);
        assert_int_equal(c->n, 2);
        free(c);
}

static void reopen_keeps_committed_and_drops_aborted(void **state)
{
        struct fixture *f = *state;
        struct store_job a, b, *got;
        struct store_txn *t;
        uint8_t *data;
        size_t size;

        fixture_full_job(&a);
        fixture_job_init(&b, 2, "acme", "lens.nfw", KILN_JOB_QUEUED);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &a), 0);
        assert_int_equal(store_result_put(t, a.id, 3, copy_piece, "abc"), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &b), 0);
        store_txn_abort(t);

        store_fixture_reopen(f, STORE_SYNC_FULL);
        assert_int_equal(fixture_get_job(f->s, a.id, &got), 0);
        assert_jobs_equal(&a, got);
        store_job_free(got);
        assert_int_equal(fixture_get_job(f->s, b.id, &got), -ENOENT);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_result_get(t, a.id, &data, &size), 0);
        store_txn_abort(t);
        assert_int_equal(size, 3);
        assert_memory_equal(data, "abc", 3);
        free(data);
}

static void recovery_yields_unfinished_jobs_oldest_first(void **state)
{
        struct fixture *f = *state;
        struct collected *c = calloc(1, sizeof(*c));
        struct store_txn *t;
        struct store_job j;
        size_t expected = 0, k;

        assert_non_null(c);
        /* inserted in a scrambled order: the order must come from the ids */
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        for (uint64_t i = 0; i < 1000; i++) {
                fixture_job_init(&j, (i * 7919) % 1000, "acme", "lens.nfw", KILN_JOB_QUEUED);
                assert_int_equal(store_job_put(t, &j), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        for (uint64_t i = 0; i < 1000; i++) {
                fixture_job_init(&j, i, "acme", "lens.nfw", KILN_JOB_QUEUED);
                if (i % 3 == 0)
                        j.state = KILN_JOB_DONE;
                else if (i % 10 == 1)
                        j.state = KILN_JOB_RUNNING;
                else
                        continue;
                assert_int_equal(store_job_put(t, &j), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);

        store_fixture_reopen(f, STORE_SYNC_FULL);
        collect_pending(f->s, c);
        for (uint64_t i = 0; i < 1000; i++)
                if (i % 3 != 0)
                        expected++;
        assert_int_equal(c->n, expected);
        k = 0;
        for (uint64_t i = 0; i < 1000; i++) {
                if (i % 3 == 0)
                        continue;
                fixture_job_init(&j, i, "acme", "lens.nfw", KILN_JOB_QUEUED);
                assert_memory_equal(c->ids[k], j.id, 16);
                assert_int_equal(c->states[k], i % 10 == 1 ? KILN_JOB_RUNNING : KILN_JOB_QUEUED);
                k++;
        }
        free(c);
}

/* Puts `n` jobs 0..n-1: tenant alternates acme/other, kind cycles over three, state
 * cycles queued/done. */
/* n jobs, every other one acme's, of three kinds; i % 4 < 2 in state `first`, the
 * others done. */
static void put_mixed_jobs(struct store *s, int n, enum kiln_job_state first)
{
        static const char *const kinds[] = { "lens.nfw", "risk.score", "vec.search" };
        struct store_txn *t;
        struct store_job j;

        assert_int_equal(store_txn_begin(s, true, &t), 0);
        for (int i = 0; i < n; i++) {
                fixture_job_init(&j, (uint64_t)i, i % 2 ? "other" : "acme", kinds[i % 3],
                         i % 4 < 2 ? first : KILN_JOB_DONE);
                assert_int_equal(store_job_put(t, &j), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);
}

static void list(struct store *s, const struct store_list_query *q, struct store_job ***jobs, size_t *n,
                 bool *more)
{
        struct store_txn *t;
        uint8_t next[16];

        assert_int_equal(store_txn_begin(s, false, &t), 0);
        assert_int_equal(store_job_list(t, q, jobs, n, more, next), 0);
        store_txn_abort(t);
}

static void list_is_newest_first_and_only_the_tenants(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = "acme", .state = -1, .limit = 1000 };
        struct store_job **jobs, j;
        size_t n;
        bool more = true;

        put_mixed_jobs(f->s, 40, KILN_JOB_QUEUED);
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 20);
        assert_false(more);
        for (size_t i = 0; i < n; i++) {
                fixture_job_init(&j, (uint64_t)(38 - 2 * i), "acme", "", KILN_JOB_QUEUED);
                assert_memory_equal(jobs[i]->id, j.id, 16);
                assert_string_equal(jobs[i]->tenant, "acme");
        }
        free_job_list(jobs, n);

        q.tenant = "nobody";
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 0);
        assert_false(more);
        free_job_list(jobs, n);
}

/* One call reads at most STORE_LIST_SCAN_MAX of the tenant's jobs (the writer is
 * held that long at most): past them it stops, with none found, and says where to
 * go on; the next call finds the rest. Other tenants' jobs are never read. */
static void list_reads_a_bounded_number_of_the_tenants_jobs_per_call(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = "acme", .state = KILN_JOB_DONE, .limit = 10 };
        struct store_job **jobs, j;
        struct store_txn *t;
        uint8_t next[16];
        size_t n;
        bool more;

        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        for (int i = 0; i < STORE_LIST_SCAN_MAX + 1005; i++) {
                fixture_job_init(&j, (uint64_t)i, "acme", "lens.nfw", i < 5 ? KILN_JOB_DONE : KILN_JOB_FAILED);
                assert_int_equal(store_job_put_new(t, &j), 0);
        }
        for (int i = 0; i < 1000; i++) { /* newer, another tenant's: not read */
                fixture_job_init(&j, (uint64_t)(30000 + i), "acmf", "lens.nfw", KILN_JOB_DONE);
                assert_int_equal(store_job_put_new(t, &j), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);

        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), 0);
        assert_int_equal(n, 0);
        assert_true(more);
        fixture_job_init(&j, 1005, "acme", "lens.nfw", KILN_JOB_FAILED); /* the last one read */
        assert_memory_equal(next, j.id, 16);
        free_job_list(jobs, n);
        q.has_after = true;
        memcpy(q.after, next, 16);
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), 0);
        assert_int_equal(n, 5);
        assert_false(more);
        for (size_t i = 0; i < n; i++) {
                fixture_job_init(&j, 4 - i, "acme", "lens.nfw", KILN_JOB_DONE);
                assert_memory_equal(jobs[i]->id, j.id, 16);
        }
        free_job_list(jobs, n);
        store_txn_abort(t);
}

/* A job the tenant index lacks (written by a kilnd without it, into a store that
 * had it) is indexed at the next open: the index no longer counts every job once. */
static void a_job_missing_from_the_tenant_index_is_listed_after_reopening(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = "acme", .state = -1, .limit = 10 };
        struct store_job **jobs, j, old;
        struct store_txn *t;
        uint8_t next[16];
        size_t n;
        bool more;

        fixture_job_init(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        fixture_put_job(f->s, &j);
        v1_job(&old);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_record_put_raw(t, old.id, record_v1, sizeof(record_v1)), 0); /* not indexed */
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), 0);
        store_txn_abort(t);
        assert_int_equal(n, 1);
        free_job_list(jobs, n);

        store_fixture_reopen(f, STORE_SYNC_FULL);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), 0);
        store_txn_abort(t);
        assert_int_equal(n, 2);
        free_job_list(jobs, n);
}

/* Pages that stop at the bound never list a job twice: with the last jobs one call
 * reads matching, the next goes on past them, not from the last one that did not
 * match. */
static void list_pages_at_the_bound_list_each_job_once(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = "acme", .state = KILN_JOB_DONE, .limit = 10 };
        struct store_job **jobs, j;
        struct store_txn *t;
        uint8_t next[16];
        size_t n, total = 0;
        bool more = true;
        int total_jobs = STORE_LIST_SCAN_MAX + 100;

        /* Newest first, the call reads jobs total_jobs-1 down to 100: 100..104 done. */
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        for (int i = 0; i < total_jobs; i++) {
                fixture_job_init(&j, (uint64_t)i, "acme", "lens.nfw",
                                 i >= 100 && i < 105 ? KILN_JOB_DONE : KILN_JOB_FAILED);
                assert_int_equal(store_job_put_new(t, &j), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        for (int page = 0; more && page < 10; page++) {
                assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), 0);
                total += n;
                free_job_list(jobs, n);
                q.has_after = true;
                memcpy(q.after, next, 16);
        }
        store_txn_abort(t);
        assert_false(more);
        assert_int_equal(total, 5);
}

static void list_filters_by_state_and_kind(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = "acme", .state = KILN_JOB_DONE, .kind = "risk.score",
                                      .limit = 1000 };
        struct store_job **jobs;
        size_t n, want = 0;
        bool more;

        put_mixed_jobs(f->s, 120, KILN_JOB_CANCELLED);
        for (int i = 0; i < 120; i++)
                if (i % 2 == 0 && i % 3 == 1 && i % 4 >= 2)
                        want++;
        assert_true(want > 0);
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, want);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(jobs[i]->kind, "risk.score");
                assert_int_equal(jobs[i]->state, KILN_JOB_DONE);
                assert_string_equal(jobs[i]->tenant, "acme");
                if (i)
                        assert_true(memcmp(jobs[i - 1]->id, jobs[i]->id, 16) > 0);
        }
        free_job_list(jobs, n);

        q.kind = NULL;
        q.state = KILN_JOB_CANCELLED;
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 30); /* i even and i % 4 < 2: i % 4 == 0 */
        free_job_list(jobs, n);

        /* An unfinished record matches every state: the job's state is in memory
         * (a running job's record says queued), and the caller filters by it. */
        struct store_txn *t;
        struct store_job j;
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        fixture_job_init(&j, 1000, "acme", "risk.score", KILN_JOB_QUEUED);
        assert_int_equal(store_job_put_new(t, &j), 0);
        assert_int_equal(store_txn_commit(t), 0);
        static const int states[] = { KILN_JOB_QUEUED, KILN_JOB_RUNNING, KILN_JOB_DONE, KILN_JOB_FAILED };
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
                q.state = states[k];
                q.kind = "risk.score";
                list(f->s, &q, &jobs, &n, &more);
                assert_true(n >= 1);
                assert_memory_equal(jobs[0]->id, j.id, 16); /* the newest */
                free_job_list(jobs, n);
        }
}

static void list_pages_with_limit_after_and_more(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = "acme", .state = -1, .limit = 8 };
        struct store_job **jobs, j;
        uint8_t seen[32][16];
        size_t n, total = 0;
        bool more;

        put_mixed_jobs(f->s, 50, KILN_JOB_QUEUED); /* acme: 25 jobs, even numbers 0..48 */
        for (int page = 0; page < 4; page++) {
                list(f->s, &q, &jobs, &n, &more);
                assert_int_equal(n, page < 3 ? 8 : 1);
                assert_int_equal(more, page < 3);
                for (size_t i = 0; i < n; i++)
                        memcpy(seen[total++], jobs[i]->id, 16);
                q.has_after = true;
                memcpy(q.after, jobs[n - 1]->id, 16);
                free_job_list(jobs, n);
        }
        assert_int_equal(total, 25);
        for (size_t i = 0; i < total; i++) {
                fixture_job_init(&j, 48 - 2 * i, "acme", "", KILN_JOB_QUEUED);
                assert_memory_equal(seen[i], j.id, 16);
        }

        /* `after` need not exist: an id between job 11 and 12 starts at job 10 */
        fixture_job_id(q.after, 1700000000000ull + 11, 11);
        q.after[15]++;
        q.limit = 1;
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 1);
        assert_true(more);
        fixture_job_init(&j, 10, "acme", "", KILN_JOB_QUEUED);
        assert_memory_equal(jobs[0]->id, j.id, 16);
        free_job_list(jobs, n);

        /* after an id newer than everything: starts at the newest */
        memset(q.after, 0xff, 16);
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 1);
        fixture_job_init(&j, 48, "acme", "", KILN_JOB_QUEUED);
        assert_memory_equal(jobs[0]->id, j.id, 16);
        free_job_list(jobs, n);

        /* after the oldest: nothing */
        fixture_job_init(&j, 0, "acme", "", KILN_JOB_QUEUED);
        memcpy(q.after, j.id, 16);
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 0);
        assert_false(more);
        free_job_list(jobs, n);
}

static void list_rejects_bad_query(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = NULL, .state = -1, .limit = 10 };
        struct store_job **jobs = NULL;
        struct store_txn *t;
        size_t n = 77;
        bool more;
        uint8_t next[16];

        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), -EINVAL);
        q.tenant = "acme";
        q.limit = 0;
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), -EINVAL);
        q.limit = 1001;
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), -EINVAL);
        q.limit = 10;
        q.state = 6;
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), -EINVAL);
        q.state = -2;
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more, next), -EINVAL);
        store_txn_abort(t);
        assert_null(jobs);
        assert_int_equal(n, 77);
}

static void delete_removes_record_result_and_pending(void **state)
{
        struct fixture *f = *state;
        struct store_job j, *got;
        struct store_txn *t;
        uint8_t *data;
        size_t size;
        uint64_t jobs, pending, bytes;

        fixture_job_init(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &j), 0);
        assert_int_equal(store_result_put(t, j.id, 10, pattern_piece, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);

        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_delete(t, j.id), 0);
        assert_int_equal(store_job_delete(t, j.id), -ENOENT);
        assert_int_equal(store_txn_commit(t), 0);

        assert_int_equal(fixture_get_job(f->s, j.id, &got), -ENOENT);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_result_get(t, j.id, &data, &size), -ENOENT);
        assert_int_equal(store_stat(t, &jobs, &pending, &bytes), 0);
        store_txn_abort(t);
        assert_int_equal(jobs, 0);
        assert_int_equal(pending, 0);
}

static void stat_counts_jobs_pending_and_bytes(void **state)
{
        struct fixture *f = *state;
        struct store_txn *t;
        uint64_t jobs, pending, bytes, bytes0;

        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_stat(t, &jobs, &pending, &bytes0), 0);
        store_txn_abort(t);
        assert_int_equal(jobs, 0);
        put_mixed_jobs(f->s, 400, KILN_JOB_QUEUED); /* i % 4 < 2 are queued */
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_stat(t, &jobs, &pending, &bytes), 0);
        store_txn_abort(t);
        assert_int_equal(jobs, 400);
        assert_int_equal(pending, 200);
        assert_true(bytes > bytes0);
        assert_true(bytes <= MAP_SIZE);
}

/* A record put as new (store_job_put_new) reads back, counts and is pending
 * exactly as one put the ordinary way. */
static void put_new_stores_what_put_stores(void **state)
{
        struct fixture *f = *state;
        struct collected *c = calloc(1, sizeof(*c));
        struct store_txn *t;
        struct store_job done, queued, *got;
        uint64_t jobs, pending, bytes;

        assert_non_null(c);
        fixture_job_init(&done, 1, "acme", "risk.score", KILN_JOB_DONE);
        fixture_job_init(&queued, 2, "acme", "risk.score", KILN_JOB_QUEUED);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put_new(t, &done), 0);
        assert_int_equal(store_job_put_new(t, &queued), 0);
        assert_int_equal(store_txn_commit(t), 0);

        assert_int_equal(fixture_get_job(f->s, done.id, &got), 0);
        assert_int_equal(got->state, KILN_JOB_DONE);
        assert_string_equal(got->kind, "risk.score");
        store_job_free(got);
        collect_pending(f->s, c);
        assert_int_equal(c->n, 1);
        assert_int_equal(c->states[0], KILN_JOB_QUEUED);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_stat(t, &jobs, &pending, &bytes), 0);
        store_txn_abort(t);
        assert_int_equal(jobs, 2);
        assert_int_equal(pending, 1);
        /* Later puts of the same jobs keep "pending" in step as ever. */
        queued.state = KILN_JOB_DONE;
        fixture_put_job(f->s, &queued);
        collect_pending(f->s, c);
        assert_int_equal(c->n, 0);
        free(c);
}

static void map_full_fails_txn_and_store_stays_usable(void **state)
{
        char dir[PATH_MAX];
        struct store *s;
        struct store_txn *t;
        struct store_job a, b, *got;

        unit_tmpdir_make("store", dir, sizeof(dir));
        assert_int_equal(store_open(dir, 1u << 20, STORE_SYNC_FULL, &s), 0);
        fixture_job_init(&a, 1, "acme", "lens.nfw", KILN_JOB_DONE);
        fixture_job_init(&b, 2, "acme", "lens.nfw", KILN_JOB_DONE);
        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_job_put(t, &a), 0);
        assert_int_equal(store_result_put(t, a.id, 2u << 20, pattern_piece, NULL), -ENOSPC);
        assert_int_equal(store_job_put(t, &b), -ENOSPC);
        assert_int_equal(store_txn_commit(t), -ENOSPC);
        assert_int_equal(fixture_get_job(s, a.id, &got), -ENOENT);

        fixture_put_job(s, &b);
        assert_int_equal(fixture_get_job(s, b.id, &got), 0);
        store_job_free(got);
        store_close(s);
        unit_tmpdir_remove(dir);
}

static void open_creates_missing_directories_with_mode_0700(void **state)
{
        char base[PATH_MAX], path[PATH_MAX + 16];
        struct store *s;
        struct stat st;

        unit_tmpdir_make("store", base, sizeof(base));
        snprintf(path, sizeof(path), "%s/a/b/c", base);
        assert_int_equal(store_open(path, MAP_SIZE, STORE_SYNC_FULL, &s), 0);
        store_close(s);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
        unit_tmpdir_remove(base);
}

static void open_rejects_bad_arguments(void **state)
{
        char base[PATH_MAX], path[PATH_MAX + 16];
        struct store *s = NULL;
        FILE *fp;

        unit_tmpdir_make("store", base, sizeof(base));
        assert_int_equal(store_open(base, 0, STORE_SYNC_FULL, &s), -EINVAL);
        assert_int_equal(store_open(base, MAP_SIZE, (enum store_sync_mode)7, &s), -EINVAL);
        snprintf(path, sizeof(path), "%s/file", base);
        fp = fopen(path, "w");
        assert_non_null(fp);
        fclose(fp);
        assert_int_equal(store_open(path, MAP_SIZE, STORE_SYNC_FULL, &s), -ENOTDIR);
        assert_null(s);
        unit_tmpdir_remove(base);
}

static const struct CMUnitTest tests[] = {
        cmocka_unit_test(state_names_round_trip),
        cmocka_unit_test(state_from_unknown_name_is_einval),
        cmocka_unit_test(job_dup_copies_strings),
        cmocka_unit_test(record_starts_with_version_byte),
        cmocka_unit_test(record_decode_rejects_every_truncation),
        cmocka_unit_test(record_decode_rejects_corrupt_fields),
        cmocka_unit_test(record_version_1_decodes_with_defaults),
        cmocka_unit_test(record_version_2_decodes_without_an_error_field),
        cmocka_unit_test(record_version_2_fields_round_trip),
        cmocka_unit_test(job_dup_copies_object),
        cmocka_unit_test_setup_teardown(record_version_1_in_store_reads_and_is_rewritten, setup, teardown),
        cmocka_unit_test_setup_teardown(put_get_round_trips_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(put_get_keeps_null_and_empty_strings_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(put_rejects_invalid_job_and_txn_stays_usable, setup, teardown),
        cmocka_unit_test_setup_teardown(get_missing_job_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_record_in_store_is_eio, setup, teardown),
        cmocka_unit_test_setup_teardown(pending_entry_with_corrupt_record_is_eio, setup, teardown),
        cmocka_unit_test_setup_teardown(pending_tracks_state_transitions, setup, teardown),
        cmocka_unit_test_setup_teardown(pending_foreach_stops_on_negative_return, setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_keeps_committed_and_drops_aborted, setup, teardown),
        cmocka_unit_test_setup_teardown(recovery_yields_unfinished_jobs_oldest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(list_is_newest_first_and_only_the_tenants, setup, teardown),
        cmocka_unit_test_setup_teardown(list_reads_a_bounded_number_of_the_tenants_jobs_per_call, setup, teardown),
        cmocka_unit_test_setup_teardown(list_pages_at_the_bound_list_each_job_once, setup, teardown),
        cmocka_unit_test_setup_teardown(a_job_missing_from_the_tenant_index_is_listed_after_reopening, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(list_filters_by_state_and_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(list_pages_with_limit_after_and_more, setup, teardown),
        cmocka_unit_test_setup_teardown(list_rejects_bad_query, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_removes_record_result_and_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(stat_counts_jobs_pending_and_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(put_new_stores_what_put_stores, setup, teardown),
        cmocka_unit_test(map_full_fails_txn_and_store_stays_usable),
        cmocka_unit_test(open_creates_missing_directories_with_mode_0700),
        cmocka_unit_test(open_rejects_bad_arguments),
};

int main(void)
{
        return cmocka_run_group_tests(tests, NULL, NULL);
}
