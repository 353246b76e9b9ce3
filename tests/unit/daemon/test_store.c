/* The job store: record codec, transactions, pending index, listing, results, and the
 * group-commit writer. Every test works in its own directory under $KILN_TEST_TMPDIR. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "store.h"
#include "store_internal.h"
#include "store_fixture.h"

/* ---- helpers ---- */

static int setup(void **state)
{
        return store_fixture_setup(state, "store");
}

static int teardown(void **state)
{
        return store_fixture_teardown(state);
}

static void reopen(struct fixture *f, enum store_sync_mode sync)
{
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(store_open(f->dir, MAP_SIZE, sync, &f->s), 0);
}

/* A UUIDv7-like id: 48-bit big-endian milliseconds, then a big-endian sequence. */
static void make_id(uint8_t id[16], uint64_t ms, uint32_t seq)
{
        memset(id, 0, 16);
        for (int i = 0; i < 6; i++)
                id[i] = (uint8_t)(ms >> (8 * (5 - i)));
        id[6] = 0x70;
        id[8] = 0x80;
        for (int i = 0; i < 4; i++)
                id[12 + i] = (uint8_t)(seq >> (8 * (3 - i)));
}

static void init_job(struct store_job *j, uint64_t n, const char *tenant, const char *kind,
                     enum kiln_job_state st)
{
        memset(j, 0, sizeof(*j));
        make_id(j->id, 1700000000000ull + n, (uint32_t)n);
        snprintf(j->tenant, sizeof(j->tenant), "%s", tenant);
        snprintf(j->kind, sizeof(j->kind), "%s", kind);
        j->state = (uint8_t)st;
        j->priority = 2;
        j->submitted_ms = (int64_t)(1700000000000ull + n);
}

static void put_one(struct store *s, const struct store_job *j)
{
        struct store_txn *t;

        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_job_put(t, j), 0);
        assert_int_equal(store_txn_commit(t), 0);
}

static int get_one(struct store *s, const uint8_t id[16], struct store_job **ret)
{
        struct store_txn *t;
        int r;

        assert_int_equal(store_txn_begin(s, false, &t), 0);
        r = store_job_get(t, id, ret);
        store_txn_abort(t);
        return r;
}

static void assert_string_or_null(const char *a, const char *b)
{
        if (!a || !b)
                assert_ptr_equal(a, b);
        else
                assert_string_equal(a, b);
}

static void assert_jobs_equal(const struct store_job *a, const struct store_job *b)
{
        assert_memory_equal(a->id, b->id, 16);
        assert_string_equal(a->kind, b->kind);
        assert_string_equal(a->tenant, b->tenant);
        assert_int_equal(a->priority, b->priority);
        assert_int_equal(a->state, b->state);
        assert_true(a->submitted_ms == b->submitted_ms);
        assert_true(a->finished_ms == b->finished_ms);
        assert_true(a->deadline_ms == b->deadline_ms);
        assert_int_equal(a->queue_ms, b->queue_ms);
        assert_int_equal(a->run_ms, b->run_ms);
        assert_int_equal(a->batch, b->batch);
        assert_string_equal(a->backend, b->backend);
        assert_string_or_null(a->params, b->params);
        assert_string_or_null(a->idem_key, b->idem_key);
        assert_string_or_null(a->error_code, b->error_code);
        assert_string_or_null(a->error_message, b->error_message);
}

/* A job with every field set to a value that would show a mix-up, fixed strings at
 * their maximum length. */
static void init_full_job(struct store_job *j)
{
        init_job(j, 42, "", "", KILN_JOB_FAILED);
        memset(j->kind, 'k', sizeof(j->kind) - 1);
        memset(j->tenant, 't', sizeof(j->tenant) - 1);
        snprintf(j->backend, sizeof(j->backend), "cuda:15-abcdefg");
        j->priority = 4;
        j->submitted_ms = -1234567890123ll;
        j->finished_ms = INT64_MAX;
        j->deadline_ms = INT64_MIN;
        j->queue_ms = 0xfedcba98u;
        j->run_ms = 7;
        j->batch = 0x01020304u;
        j->params = "{\"n\":[1,2,3],\"s\":\"\xc3\xa9t\xc3\xa9\"}";
        j->idem_key = "key-1";
        j->error_code = "internal";
        j->error_message = "the device fell over";
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

        init_full_job(&j);
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

        init_full_job(&j);
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

        init_full_job(&j);
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

        init_job(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
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

/* ---- the synchronous layer ---- */

static void put_get_round_trips_every_field(void **state)
{
        struct fixture *f = *state;
        struct store_job j, *got;

        init_full_job(&j);
        put_one(f->s, &j);
        assert_int_equal(get_one(f->s, j.id, &got), 0);
        assert_jobs_equal(&j, got);
        store_job_free(got);
}

static void put_get_keeps_null_and_empty_strings_apart(void **state)
{
        struct fixture *f = *state;
        struct store_job j, *got;

        init_job(&j, 1, "acme", "risk.score", KILN_JOB_QUEUED);
        j.params = "";
        j.idem_key = NULL;
        j.error_code = "";
        j.error_message = NULL;
        put_one(f->s, &j);
        assert_int_equal(get_one(f->s, j.id, &got), 0);
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

        init_job(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
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
        assert_int_equal(get_one(f->s, j.id, &got), 0);
        assert_int_equal(got->priority, 0);
        store_job_free(got);
}

static void get_missing_job_is_enoent(void **state)
{
        struct fixture *f = *state;
        struct store_job *got = (struct store_job *)0x1;
        uint8_t id[16];

        make_id(id, 1, 1);
        assert_int_equal(get_one(f->s, id, &got), -ENOENT);
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

        init_job(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        put_one(f->s, &j);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_record_put_raw(t, j.id, garbage, sizeof(garbage)), 0);
        assert_int_equal(store_txn_commit(t), 0);

        assert_int_equal(get_one(f->s, j.id, &got), -EIO);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more), -EIO);
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

        init_job(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        put_one(f->s, &j);
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
        init_job(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                j.state = (uint8_t)steps[i].st;
                put_one(f->s, &j);
                collect_pending(f->s, c);
                assert_int_equal(c->n, steps[i].pending);
                if (c->n)
                        assert_int_equal(c->states[0], steps[i].st);
        }
        j.state = KILN_JOB_QUEUED;
        put_one(f->s, &j);
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
                init_job(&j, (uint64_t)i, "acme", "lens.nfw", KILN_JOB_QUEUED);
                put_one(f->s, &j);
        }
        c->stop_after = 2;
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_pending_foreach(t, collect_cb, c), -ECANCELED);
        store_txn_abort(t);
        assert_int_equal(c->n, 2);
        free(c);
}


/* store_result_put writers for the tests. */
static void copy_piece(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        memcpy(dst, (const uint8_t *)opaque + offset, len);
}

static uint8_t pattern_byte(size_t i)
{
        return (uint8_t)(i * 2654435761u >> 13);
}

static void pattern_piece(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        for (size_t i = 0; i < len; i++)
                dst[i] = pattern_byte(offset + i);
}


static void reopen_keeps_committed_and_drops_aborted(void **state)
{
        struct fixture *f = *state;
        struct store_job a, b, *got;
        struct store_txn *t;
        uint8_t *data;
        size_t size;


        init_full_job(&a);
        init_job(&b, 2, "acme", "lens.nfw", KILN_JOB_QUEUED);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &a), 0);
        assert_int_equal(store_result_put(t, a.id, 3, copy_piece, "abc"), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &b), 0);
        store_txn_abort(t);

        reopen(f, STORE_SYNC_FULL);
        assert_int_equal(get_one(f->s, a.id, &got), 0);
        assert_jobs_equal(&a, got);
        store_job_free(got);
        assert_int_equal(get_one(f->s, b.id, &got), -ENOENT);
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
                init_job(&j, (i * 7919) % 1000, "acme", "lens.nfw", KILN_JOB_QUEUED);
                assert_int_equal(store_job_put(t, &j), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        for (uint64_t i = 0; i < 1000; i++) {
                init_job(&j, i, "acme", "lens.nfw", KILN_JOB_QUEUED);
                if (i % 3 == 0)
                        j.state = KILN_JOB_DONE;
                else if (i % 10 == 1)
                        j.state = KILN_JOB_RUNNING;
                else
                        continue;
                assert_int_equal(store_job_put(t, &j), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);

        reopen(f, STORE_SYNC_FULL);
        collect_pending(f->s, c);
        for (uint64_t i = 0; i < 1000; i++)
                if (i % 3 != 0)
                        expected++;
        assert_int_equal(c->n, expected);
        k = 0;
        for (uint64_t i = 0; i < 1000; i++) {
                if (i % 3 == 0)
                        continue;
                init_job(&j, i, "acme", "lens.nfw", KILN_JOB_QUEUED);
                assert_memory_equal(c->ids[k], j.id, 16);
                assert_int_equal(c->states[k], i % 10 == 1 ? KILN_JOB_RUNNING : KILN_JOB_QUEUED);
                k++;
        }
        free(c);
}

/* Puts `n` jobs 0..n-1: tenant alternates acme/other, kind cycles over three, state
 * cycles queued/done. */
static void put_mixed_jobs(struct store *s, int n)
{
        static const char *const kinds[] = { "lens.nfw", "risk.score", "vec.search" };
        struct store_txn *t;
        struct store_job j;

        assert_int_equal(store_txn_begin(s, true, &t), 0);
        for (int i = 0; i < n; i++) {
                init_job(&j, (uint64_t)i, i % 2 ? "other" : "acme", kinds[i % 3],
                         i % 4 < 2 ? KILN_JOB_QUEUED : KILN_JOB_DONE);
                assert_int_equal(store_job_put(t, &j), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);
}

static void list(struct store *s, const struct store_list_query *q, struct store_job ***jobs, size_t *n,
                 bool *more)
{
        struct store_txn *t;

        assert_int_equal(store_txn_begin(s, false, &t), 0);
        assert_int_equal(store_job_list(t, q, jobs, n, more), 0);
        store_txn_abort(t);
}

static void free_list(struct store_job **jobs, size_t n)
{
        for (size_t i = 0; i < n; i++)
                store_job_free(jobs[i]);
        free(jobs);
}

static void list_is_newest_first_and_only_the_tenants(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = "acme", .state = -1, .limit = 1000 };
        struct store_job **jobs, j;
        size_t n;
        bool more = true;

        put_mixed_jobs(f->s, 40);
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 20);
        assert_false(more);
        for (size_t i = 0; i < n; i++) {
                init_job(&j, (uint64_t)(38 - 2 * i), "acme", "", KILN_JOB_QUEUED);
                assert_memory_equal(jobs[i]->id, j.id, 16);
                assert_string_equal(jobs[i]->tenant, "acme");
        }
        free_list(jobs, n);

        q.tenant = "nobody";
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 0);
        assert_false(more);
        free_list(jobs, n);
}

static void list_filters_by_state_and_kind(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = "acme", .state = KILN_JOB_DONE, .kind = "risk.score",
                                      .limit = 1000 };
        struct store_job **jobs;
        size_t n, want = 0;
        bool more;

        put_mixed_jobs(f->s, 120);
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
        free_list(jobs, n);

        q.kind = NULL;
        q.state = KILN_JOB_QUEUED;
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 30); /* i even and i % 4 < 2: i % 4 == 0 */
        free_list(jobs, n);
}

static void list_pages_with_limit_after_and_more(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = "acme", .state = -1, .limit = 8 };
        struct store_job **jobs, j;
        uint8_t seen[32][16];
        size_t n, total = 0;
        bool more;

        put_mixed_jobs(f->s, 50); /* acme: 25 jobs, even numbers 0..48 */
        for (int page = 0; page < 4; page++) {
                list(f->s, &q, &jobs, &n, &more);
                assert_int_equal(n, page < 3 ? 8 : 1);
                assert_int_equal(more, page < 3);
                for (size_t i = 0; i < n; i++)
                        memcpy(seen[total++], jobs[i]->id, 16);
                q.has_after = true;
                memcpy(q.after, jobs[n - 1]->id, 16);
                free_list(jobs, n);
        }
        assert_int_equal(total, 25);
        for (size_t i = 0; i < total; i++) {
                init_job(&j, 48 - 2 * i, "acme", "", KILN_JOB_QUEUED);
                assert_memory_equal(seen[i], j.id, 16);
        }

        /* `after` need not exist: an id between job 11 and 12 starts at job 10 */
        make_id(q.after, 1700000000000ull + 11, 11);
        q.after[15]++;
        q.limit = 1;
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 1);
        assert_true(more);
        init_job(&j, 10, "acme", "", KILN_JOB_QUEUED);
        assert_memory_equal(jobs[0]->id, j.id, 16);
        free_list(jobs, n);

        /* after an id newer than everything: starts at the newest */
        memset(q.after, 0xff, 16);
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 1);
        init_job(&j, 48, "acme", "", KILN_JOB_QUEUED);
        assert_memory_equal(jobs[0]->id, j.id, 16);
        free_list(jobs, n);

        /* after the oldest: nothing */
        init_job(&j, 0, "acme", "", KILN_JOB_QUEUED);
        memcpy(q.after, j.id, 16);
        list(f->s, &q, &jobs, &n, &more);
        assert_int_equal(n, 0);
        assert_false(more);
        free_list(jobs, n);
}

static void list_rejects_bad_query(void **state)
{
        struct fixture *f = *state;
        struct store_list_query q = { .tenant = NULL, .state = -1, .limit = 10 };
        struct store_job **jobs = NULL;
        struct store_txn *t;
        size_t n = 77;
        bool more;

        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more), -EINVAL);
        q.tenant = "acme";
        q.limit = 0;
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more), -EINVAL);
        q.limit = 1001;
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more), -EINVAL);
        q.limit = 10;
        q.state = 6;
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more), -EINVAL);
        q.state = -2;
        assert_int_equal(store_job_list(t, &q, &jobs, &n, &more), -EINVAL);
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

        init_job(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &j), 0);
        assert_int_equal(store_result_put(t, j.id, 10, pattern_piece, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);

        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_delete(t, j.id), 0);
        assert_int_equal(store_job_delete(t, j.id), -ENOENT);
        assert_int_equal(store_txn_commit(t), 0);

        assert_int_equal(get_one(f->s, j.id, &got), -ENOENT);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_result_get(t, j.id, &data, &size), -ENOENT);
        assert_int_equal(store_stat(t, &jobs, &pending, &bytes), 0);
        store_txn_abort(t);
        assert_int_equal(jobs, 0);
        assert_int_equal(pending, 0);
}

static void result_of_32_mib_round_trips(void **state)
{
        struct fixture *f = *state;
        const size_t size = 32u << 20;
        struct store_txn *t;
        struct store_job j;
        uint8_t *data;
        size_t got_size;

        init_job(&j, 1, "acme", "image.relief", KILN_JOB_DONE);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &j), 0);
        assert_int_equal(store_result_put(t, j.id, size, pattern_piece, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);

        reopen(f, STORE_SYNC_FULL);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_result_get(t, j.id, &data, &got_size), 0);
        store_txn_abort(t);
        assert_int_equal(got_size, size);
        for (size_t i = 0; i < size; i++)
                if (data[i] != pattern_byte(i))
                        fail_msg("byte %zu differs", i);
        free(data);
}

/* Results are stored in pieces; a result of many pieces (and one that is an exact
 * multiple of the piece size) reads back whole, replacing one shrinks it, and delete
 * removes every piece. */
static void result_in_many_pieces_round_trips(void **state)
{
        struct fixture *f = *state;
        const size_t sizes[] = { 10 * 4096 + 123, 4 * 4096, 1 };
        struct store_txn *t;
        struct store_job j;
        uint8_t *data;
        size_t got_size;

        store_set_result_chunk(4096);
        init_job(&j, 1, "acme", "lens.nfw", KILN_JOB_DONE);
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
                assert_int_equal(store_txn_begin(f->s, true, &t), 0);
                assert_int_equal(store_job_put(t, &j), 0);
                assert_int_equal(store_result_put(t, j.id, sizes[k], pattern_piece, NULL), 0);
                assert_int_equal(store_txn_commit(t), 0);
                assert_int_equal(store_txn_begin(f->s, false, &t), 0);
                assert_int_equal(store_result_get(t, j.id, &data, &got_size), 0);
                store_txn_abort(t);
                assert_int_equal(got_size, sizes[k]);
                for (size_t i = 0; i < got_size; i++)
                        if (data[i] != pattern_byte(i))
                                fail_msg("size %zu: byte %zu differs", sizes[k], i);
                free(data);
        }
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_delete(t, j.id), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_result_get(t, j.id, &data, &got_size), -ENOENT);
        store_txn_abort(t);
        store_set_result_chunk(0);
}

/* Results written in id order take the append path, others the normal one; mixed
 * in one transaction, replaced with more or fewer pieces, every one reads back. */
static void id_piece(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        uint64_t n = *(const uint64_t *)opaque;

        for (size_t i = 0; i < len; i++)
                dst[i] = pattern_byte(offset + i + n);
}

static void results_put_in_any_order_read_back(void **state)
{
        enum { N = 300 };
        struct fixture *f = *state;
        struct store_txn *t;
        struct store_job j;
        size_t sizes[N];
        uint8_t *data;
        size_t got;

        store_set_result_chunk(1000);
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        for (uint64_t k = 0; k < N; k++) {
                /* first a run in order, then scrambled, then a run backwards */
                uint64_t n = k < 100 ? k : k < 200 ? 100 + (k * 37) % 100 : 499 - k;
                sizes[n] = 1 + (n * 613) % 3500;
                init_job(&j, n, "acme", "lens.nfw", KILN_JOB_DONE);
                assert_int_equal(store_job_put(t, &j), 0);
                assert_int_equal(store_result_put(t, j.id, sizes[n], id_piece, &n), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);
        /* replace every seventh, growing some and shrinking others */
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        for (uint64_t n = 0; n < N; n += 7) {
                sizes[n] = n % 2 ? 1 : 4500;
                init_job(&j, n, "acme", "lens.nfw", KILN_JOB_DONE);
                assert_int_equal(store_result_put(t, j.id, sizes[n], id_piece, &n), 0);
        }
        assert_int_equal(store_txn_commit(t), 0);

        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        for (uint64_t n = 0; n < N; n++) {
                init_job(&j, n, "acme", "lens.nfw", KILN_JOB_DONE);
                assert_int_equal(store_result_get(t, j.id, &data, &got), 0);
                assert_int_equal(got, sizes[n]);
                for (size_t i = 0; i < got; i++)
                        if (data[i] != pattern_byte(i + n))
                                fail_msg("job %llu: byte %zu differs", (unsigned long long)n, i);
                free(data);
        }
        store_txn_abort(t);
        store_set_result_chunk(0);
}

static void missing_result_is_enoent(void **state)
{
        struct fixture *f = *state;
        struct store_txn *t;
        uint8_t id[16], *data = NULL;
        size_t size = 5;

        make_id(id, 1, 1);
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_result_get(t, id, &data, &size), -ENOENT);
        store_txn_abort(t);
        assert_null(data);
        assert_int_equal(size, 5);
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
        put_mixed_jobs(f->s, 400); /* i % 4 < 2 are queued */
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_stat(t, &jobs, &pending, &bytes), 0);
        store_txn_abort(t);
        assert_int_equal(jobs, 400);
        assert_int_equal(pending, 200);
        assert_true(bytes > bytes0);
        assert_true(bytes <= MAP_SIZE);
}

static void map_full_fails_txn_and_store_stays_usable(void **state)
{
        char dir[PATH_MAX];
        struct store *s;
        struct store_txn *t;
        struct store_job a, b, *got;


        unit_tmpdir_make("store", dir, sizeof(dir));
        assert_int_equal(store_open(dir, 1u << 20, STORE_SYNC_FULL, &s), 0);
        init_job(&a, 1, "acme", "lens.nfw", KILN_JOB_DONE);
        init_job(&b, 2, "acme", "lens.nfw", KILN_JOB_DONE);
        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_job_put(t, &a), 0);
        assert_int_equal(store_result_put(t, a.id, 2u << 20, pattern_piece, NULL), -ENOSPC);
        assert_int_equal(store_job_put(t, &b), -ENOSPC);
        assert_int_equal(store_txn_commit(t), -ENOSPC);
        assert_int_equal(get_one(s, a.id, &got), -ENOENT);

        put_one(s, &b);
        assert_int_equal(get_one(s, b.id, &got), 0);
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

/* ---- the writer ---- */

struct tracked_op {
        struct store_op op;
        struct store_job job;
        atomic_int calls;
        int order;            /* position in which done was called */
};

static atomic_int done_order;

static void tracked_done(struct store_op *op)
{
        struct tracked_op *t = (struct tracked_op *)((char *)op - offsetof(struct tracked_op, op));

        t->order = atomic_fetch_add(&done_order, 1);
        atomic_fetch_add(&t->calls, 1);
}

static void init_put(struct tracked_op *t, uint64_t n, const char *params)
{
        memset(&t->op, 0, sizeof(t->op));
        init_job(&t->job, n, "acme", "lens.nfw", KILN_JOB_QUEUED);
        t->job.params = (char *)params;
        t->op.type = STORE_OP_JOB_PUT;
        t->op.job = &t->job;
        t->op.done = tracked_done;
        t->op.status = 12345;
        atomic_init(&t->calls, 0);
}

/* Holds the writer inside a transaction: a JOB_PUT whose write_result blocks until
 * released, so that operations submitted meanwhile all land in the next batch. */
struct gate {
        struct tracked_op t;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool entered, released;
};

static void gate_write_result(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        struct gate *g = (struct gate *)((char *)op - offsetof(struct gate, t.op));

        pthread_mutex_lock(&g->lock);
        g->entered = true;
        pthread_cond_broadcast(&g->cond);
        while (!g->released)
                pthread_cond_wait(&g->cond, &g->lock);
        pthread_mutex_unlock(&g->lock);
        dst[0] = 'g';
}

/* Submits the gate and returns once the writer is blocked in it. */
static void gate_close(struct gate *g, struct store_writer *w)
{
        memset(g, 0, sizeof(*g));
        pthread_mutex_init(&g->lock, NULL);
        pthread_cond_init(&g->cond, NULL);
        init_put(&g->t, 999999, "{}");
        snprintf(g->t.job.tenant, sizeof(g->t.job.tenant), "gate");
        g->t.op.result_size = 1;
        g->t.op.write_result = gate_write_result;
        store_writer_submit(w, &g->t.op);
        pthread_mutex_lock(&g->lock);
        while (!g->entered)
                pthread_cond_wait(&g->cond, &g->lock);
        pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g)
{
        pthread_mutex_lock(&g->lock);
        g->released = true;
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->lock);
}

static void gate_destroy(struct gate *g)
{
        assert_int_equal(atomic_load(&g->t.calls), 1);
        assert_int_equal(g->t.op.status, 0);
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->cond);
}

#define SUBMITTERS 4
#define WRITER_OPS 10000

struct submitter {
        struct store_writer *w;
        struct tracked_op *ops;
        size_t n;
};

static void *submit_thread(void *arg)
{
        struct submitter *sb = arg;

        for (size_t i = 0; i < sb->n; i++)
                store_writer_submit(sb->w, &sb->ops[i].op);
        return NULL;
}

/* ~300 bytes of params, like a typical job. */
static char *make_params(void)
{
        char *p = malloc(301);

        assert_non_null(p);
        memset(p, 'x', 300);
        memcpy(p, "{\"pad\":\"", 8);
        memcpy(p + 298, "\"}", 2);
        p[300] = '\0';
        return p;
}

static void submit_from_threads(struct store_writer *w, struct tracked_op *ops)
{
        struct submitter sb[SUBMITTERS];
        pthread_t th[SUBMITTERS];

        for (int i = 0; i < SUBMITTERS; i++) {
                sb[i] = (struct submitter){ .w = w, .ops = ops + i * (WRITER_OPS / SUBMITTERS),
                                            .n = WRITER_OPS / SUBMITTERS };
                assert_int_equal(pthread_create(&th[i], NULL, submit_thread, &sb[i]), 0);
        }
        for (int i = 0; i < SUBMITTERS; i++)
                pthread_join(th[i], NULL);
}

static void assert_all_puts_done_and_stored(struct store *s, struct tracked_op *ops)
{
        struct store_txn *t;
        uint64_t jobs, pending, bytes;
        struct store_job *got;

        for (int i = 0; i < WRITER_OPS; i++) {
                assert_int_equal(atomic_load(&ops[i].calls), 1);
                assert_int_equal(ops[i].op.status, 0);
        }
        assert_int_equal(store_txn_begin(s, false, &t), 0);
        assert_int_equal(store_stat(t, &jobs, &pending, &bytes), 0);
        assert_true(jobs >= WRITER_OPS);
        for (int i = 0; i < WRITER_OPS; i += 997) {
                assert_int_equal(store_job_get(t, ops[i].job.id, &got), 0);
                assert_jobs_equal(&ops[i].job, got);
                store_job_free(got);
        }
        store_txn_abort(t);
}

/* Waits, without stopping the writer, until everything submitted so far is done. */
struct waiter {
        struct store_op op;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done;
};

static void waiter_done(struct store_op *op)
{
        struct waiter *wt = (struct waiter *)((char *)op - offsetof(struct waiter, op));

        pthread_mutex_lock(&wt->lock);
        wt->done = true;
        pthread_cond_broadcast(&wt->cond);
        pthread_mutex_unlock(&wt->lock);
}

static void wait_for_writer(struct store_writer *w)
{
        struct waiter wt;

        memset(&wt, 0, sizeof(wt));
        pthread_mutex_init(&wt.lock, NULL);
        pthread_cond_init(&wt.cond, NULL);
        wt.op.type = STORE_OP_BARRIER;
        wt.op.done = waiter_done;
        store_writer_submit(w, &wt.op);
        pthread_mutex_lock(&wt.lock);
        while (!wt.done)
                pthread_cond_wait(&wt.cond, &wt.lock);
        pthread_mutex_unlock(&wt.lock);
        assert_int_equal(wt.op.status, 0);
        pthread_mutex_destroy(&wt.lock);
        pthread_cond_destroy(&wt.cond);
}

static void writer_group_commits_puts_from_four_threads(void **state)
{
        struct fixture *f = *state;
        struct tracked_op *ops = calloc(WRITER_OPS, sizeof(*ops));
        char *params = make_params();
        struct store_writer *w;
        struct gate g;
        uint64_t commits, nops;

        assert_non_null(ops);
        for (int i = 0; i < WRITER_OPS; i++)
                init_put(&ops[i], (uint64_t)i, params);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        gate_close(&g, w);
        submit_from_threads(w, ops);
        gate_open(&g);
        wait_for_writer(w);
        store_writer_stats(w, &commits, &nops);
        store_writer_stop(w);

        assert_all_puts_done_and_stored(f->s, ops);
        gate_destroy(&g);
        /* the gate's batch, then the 10,000 puts and the barrier at 4096 per txn */
        assert_int_equal(nops, WRITER_OPS + 2);
        assert_int_equal(commits, 1 + (WRITER_OPS + 1 + 4095) / 4096);
        free(ops);
        free(params);
}

static void writer_concurrent_puts_complete_and_report_throughput(void **state)
{
        struct fixture *f = *state;
        struct tracked_op *ops = calloc(WRITER_OPS, sizeof(*ops));
        char *params = make_params();
        struct store_writer *w;
        struct timespec t0, t1;
        uint64_t commits, nops;
        double secs;

        assert_non_null(ops);
        for (int i = 0; i < WRITER_OPS; i++)
                init_put(&ops[i], (uint64_t)i, params);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        submit_from_threads(w, ops);
        wait_for_writer(w);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        store_writer_stats(w, &commits, &nops);
        store_writer_stop(w);

        secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        print_message("writer sync=full, %d submitters: %d JOB_PUT (300-byte params) in %.3f s = %.0f ops/s, "
                      "%llu commits\n", SUBMITTERS, WRITER_OPS, secs, WRITER_OPS / secs,
                      (unsigned long long)commits);
        assert_all_puts_done_and_stored(f->s, ops);
        assert_int_equal(nops, WRITER_OPS + 1);
        assert_true(commits >= 1 && commits <= nops);
        free(ops);
        free(params);
}

static void writer_get_after_put_in_same_batch_sees_it(void **state)
{
        struct fixture *f = *state;
        struct tracked_op put, get, list_op;
        struct store_writer *w;
        struct gate g;
        uint64_t commits;

        init_put(&put, 1, "{\"a\":1}");
        memset(&get, 0, sizeof(get));
        get.op.type = STORE_OP_JOB_GET;
        memcpy(get.op.id, put.job.id, 16);
        get.op.done = tracked_done;
        memset(&list_op, 0, sizeof(list_op));
        list_op.op.type = STORE_OP_LIST;
        list_op.op.list = (struct store_list_query){ .tenant = "acme", .state = KILN_JOB_QUEUED, .limit = 10 };
        list_op.op.done = tracked_done;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        gate_close(&g, w);
        store_writer_submit(w, &put.op);
        store_writer_submit(w, &get.op);
        store_writer_submit(w, &list_op.op);
        gate_open(&g);
        wait_for_writer(w);
        store_writer_stats(w, &commits, NULL);
        store_writer_stop(w);
        gate_destroy(&g);

        assert_int_equal(commits, 2); /* the gate's, then put + get + list + barrier */
        assert_int_equal(put.op.status, 0);
        assert_int_equal(get.op.status, 0);
        assert_non_null(get.op.job_out);
        assert_jobs_equal(&put.job, get.op.job_out);
        store_job_free(get.op.job_out);
        assert_int_equal(list_op.op.status, 0);
        assert_int_equal(list_op.op.list_n, 1);
        assert_false(list_op.op.list_more);
        assert_memory_equal(list_op.op.list_out[0]->id, put.job.id, 16);
        free_list(list_op.op.list_out, list_op.op.list_n);
}

static void writer_per_op_error_leaves_the_batch_alone(void **state)
{
        struct fixture *f = *state;
        struct tracked_op bad_get, good, bad_put, bad_del;
        struct store_job *got;
        struct store_writer *w;
        struct gate g;
        uint64_t commits;

        memset(&bad_get, 0, sizeof(bad_get));
        bad_get.op.type = STORE_OP_JOB_GET;
        make_id(bad_get.op.id, 5, 5);
        bad_get.op.done = tracked_done;
        init_put(&good, 1, "{}");
        init_put(&bad_put, 2, "{}");
        bad_put.job.state = 77;
        memset(&bad_del, 0, sizeof(bad_del));
        bad_del.op.type = STORE_OP_DELETE;
        make_id(bad_del.op.id, 6, 6);
        bad_del.op.done = tracked_done;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        gate_close(&g, w);
        store_writer_submit(w, &bad_get.op);
        store_writer_submit(w, &good.op);
        store_writer_submit(w, &bad_put.op);
        store_writer_submit(w, &bad_del.op);
        gate_open(&g);
        wait_for_writer(w);
        store_writer_stats(w, &commits, NULL);
        store_writer_stop(w);
        gate_destroy(&g);

        assert_int_equal(commits, 2);
        assert_int_equal(bad_get.op.status, -ENOENT);
        assert_null(bad_get.op.job_out);
        assert_int_equal(good.op.status, 0);
        assert_int_equal(bad_put.op.status, -EINVAL);
        assert_int_equal(bad_del.op.status, -ENOENT);
        assert_int_equal(get_one(f->s, good.job.id, &got), 0);
        store_job_free(got);
}

static void fill_result(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        for (size_t i = 0; i < len; i++)
                dst[i] = (uint8_t)((offset + i) ^ 0x5a);
}

static void writer_map_full_fails_only_the_op_that_does_not_fit(void **state)
{
        char dir[PATH_MAX];
        struct store *s;
        struct store_writer *w;
        struct tracked_op a, big, c, get_a, later;
        struct store_job *got;
        struct gate g;

        unit_tmpdir_make("store", dir, sizeof(dir));
        assert_int_equal(store_open(dir, 1u << 20, STORE_SYNC_FULL, &s), 0);
        init_put(&a, 1, "{}");
        init_put(&big, 2, "{}");
        big.op.result_size = 2u << 20;
        big.op.write_result = fill_result;
        init_put(&c, 3, "{}");
        c.op.result_size = 1000;
        c.op.write_result = fill_result;
        memset(&get_a, 0, sizeof(get_a));
        get_a.op.type = STORE_OP_JOB_GET;
        memcpy(get_a.op.id, a.job.id, 16);
        get_a.op.done = tracked_done;

        assert_int_equal(store_writer_start(s, &w), 0);
        gate_close(&g, w);
        store_writer_submit(w, &a.op);
        store_writer_submit(w, &big.op);
        store_writer_submit(w, &c.op);
        store_writer_submit(w, &get_a.op);
        gate_open(&g);
        wait_for_writer(w);

        assert_int_equal(a.op.status, 0);
        assert_int_equal(big.op.status, -ENOSPC);
        assert_int_equal(c.op.status, 0);
        assert_int_equal(get_a.op.status, 0);
        assert_non_null(get_a.op.job_out);
        assert_jobs_equal(&a.job, get_a.op.job_out);
        store_job_free(get_a.op.job_out);
        assert_int_equal(atomic_load(&big.calls), 1);

        /* still usable through the same writer */
        init_put(&later, 4, "{}");
        store_writer_submit(w, &later.op);
        wait_for_writer(w);
        assert_int_equal(later.op.status, 0);
        store_writer_stop(w);
        gate_destroy(&g);

        assert_int_equal(get_one(s, big.job.id, &got), -ENOENT);
        assert_int_equal(get_one(s, c.job.id, &got), 0);
        store_job_free(got);
        assert_int_equal(get_one(s, later.job.id, &got), 0);
        store_job_free(got);
        store_close(s);
        unit_tmpdir_remove(dir);
}

static void writer_result_get_returns_job_and_result(void **state)
{
        struct fixture *f = *state;
        struct tracked_op put, rget, rget_none, put2;
        struct store_writer *w;

        init_put(&put, 1, "{}");
        put.job.state = KILN_JOB_DONE;
        put.op.result_size = 5000;
        put.op.write_result = fill_result;
        init_put(&put2, 2, "{}");
        memset(&rget, 0, sizeof(rget));
        rget.op.type = STORE_OP_RESULT_GET;
        memcpy(rget.op.id, put.job.id, 16);
        rget.op.done = tracked_done;
        rget_none = rget;
        memcpy(rget_none.op.id, put2.job.id, 16);

        assert_int_equal(store_writer_start(f->s, &w), 0);
        store_writer_submit(w, &put.op);
        store_writer_submit(w, &put2.op);
        store_writer_submit(w, &rget.op);
        store_writer_submit(w, &rget_none.op);
        store_writer_stop(w);

        assert_int_equal(rget.op.status, 0);
        assert_jobs_equal(&put.job, rget.op.job_out);
        assert_int_equal(rget.op.result_size, 5000);
        for (size_t i = 0; i < 5000; i++)
                assert_int_equal(rget.op.result_out[i], (uint8_t)(i ^ 0x5a));
        store_job_free(rget.op.job_out);
        free(rget.op.result_out);

        /* a job without a result: the job, no result */
        assert_int_equal(rget_none.op.status, 0);
        assert_jobs_equal(&put2.job, rget_none.op.job_out);
        assert_null(rget_none.op.result_out);
        assert_int_equal(rget_none.op.result_size, 0);
        store_job_free(rget_none.op.job_out);
}

static void writer_delete_then_get_is_enoent(void **state)
{
        struct fixture *f = *state;
        struct tracked_op put, del, get;
        struct store_writer *w;

        init_put(&put, 1, "{}");
        memset(&del, 0, sizeof(del));
        del.op.type = STORE_OP_DELETE;
        memcpy(del.op.id, put.job.id, 16);
        del.op.done = tracked_done;
        memset(&get, 0, sizeof(get));
        get.op.type = STORE_OP_JOB_GET;
        memcpy(get.op.id, put.job.id, 16);
        get.op.done = tracked_done;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        store_writer_submit(w, &put.op);
        store_writer_submit(w, &del.op);
        store_writer_submit(w, &get.op);
        store_writer_stop(w);
        assert_int_equal(put.op.status, 0);
        assert_int_equal(del.op.status, 0);
        assert_int_equal(get.op.status, -ENOENT);
        assert_null(get.op.job_out);
}

static void writer_calls_done_in_fifo_order(void **state)
{
        struct fixture *f = *state;
        struct tracked_op ops[300];
        struct store_writer *w;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        atomic_store(&done_order, 0);
        for (int i = 0; i < 300; i++) {
                if (i % 3 == 2) {
                        memset(&ops[i], 0, sizeof(ops[i]));
                        ops[i].op.type = i % 2 ? STORE_OP_BARRIER : STORE_OP_JOB_GET;
                        make_id(ops[i].op.id, 7, 7);
                        ops[i].op.done = tracked_done;
                } else {
                        init_put(&ops[i], (uint64_t)i, "{}");
                }
                store_writer_submit(w, &ops[i].op);
        }
        store_writer_stop(w); /* stop drains the queue */
        for (int i = 0; i < 300; i++) {
                assert_int_equal(atomic_load(&ops[i].calls), 1);
                assert_int_equal(ops[i].order, i);
        }
}

static void sync_mode_round_trip(struct fixture *f, enum store_sync_mode mode)
{
        struct tracked_op ops[50];
        struct store_writer *w;
        struct store_job *got;

        reopen(f, mode);
        assert_int_equal(store_writer_start(f->s, &w), 0);
        for (int i = 0; i < 50; i++) {
                init_put(&ops[i], (uint64_t)i, "{}");
                store_writer_submit(w, &ops[i].op);
        }
        store_writer_stop(w);
        reopen(f, STORE_SYNC_FULL);
        for (int i = 0; i < 50; i++) {
                assert_int_equal(ops[i].op.status, 0);
                assert_int_equal(get_one(f->s, ops[i].job.id, &got), 0);
                store_job_free(got);
        }
}

static void batch_sync_mode_opens_and_keeps_writes(void **state)
{
        sync_mode_round_trip(*state, STORE_SYNC_BATCH);
}

static void off_sync_mode_opens_and_keeps_writes(void **state)
{
        sync_mode_round_trip(*state, STORE_SYNC_OFF);
}

static void sync_flushes_without_error(void **state)
{
        struct fixture *f = *state;
        struct store_job j;

        reopen(f, STORE_SYNC_OFF);
        init_job(&j, 1, "acme", "lens.nfw", KILN_JOB_QUEUED);
        put_one(f->s, &j);
        assert_int_equal(store_sync(f->s), 0);
}

static const struct CMUnitTest tests[] = {
        cmocka_unit_test(state_names_round_trip),
        cmocka_unit_test(state_from_unknown_name_is_einval),
        cmocka_unit_test(job_dup_copies_strings),
        cmocka_unit_test(record_starts_with_version_byte),
        cmocka_unit_test(record_decode_rejects_every_truncation),
        cmocka_unit_test(record_decode_rejects_corrupt_fields),
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
        cmocka_unit_test_setup_teardown(list_filters_by_state_and_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(list_pages_with_limit_after_and_more, setup, teardown),
        cmocka_unit_test_setup_teardown(list_rejects_bad_query, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_removes_record_result_and_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(result_of_32_mib_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(result_in_many_pieces_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(results_put_in_any_order_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_result_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(stat_counts_jobs_pending_and_bytes, setup, teardown),
        cmocka_unit_test(map_full_fails_txn_and_store_stays_usable),
        cmocka_unit_test(open_creates_missing_directories_with_mode_0700),
        cmocka_unit_test(open_rejects_bad_arguments),
        cmocka_unit_test_setup_teardown(writer_group_commits_puts_from_four_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_concurrent_puts_complete_and_report_throughput, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_get_after_put_in_same_batch_sees_it, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_per_op_error_leaves_the_batch_alone, setup, teardown),
        cmocka_unit_test(writer_map_full_fails_only_the_op_that_does_not_fit),
        cmocka_unit_test_setup_teardown(writer_result_get_returns_job_and_result, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_delete_then_get_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_calls_done_in_fifo_order, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_sync_mode_opens_and_keeps_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(off_sync_mode_opens_and_keeps_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_flushes_without_error, setup, teardown),
};

int main(void)
{
        return cmocka_run_group_tests(tests, NULL, NULL);
}
