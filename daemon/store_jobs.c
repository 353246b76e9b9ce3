/* Jobs in the store: records in "jobs", the "pending" and "retain" indexes, listing,
 * and idempotency keys ("idem"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

#define STORE_LIST_MAX 1000

static bool state_is_pending(uint8_t state)
{
        return state == KILN_JOB_QUEUED || state == KILN_JOB_RUNNING;
}

static int retain_put(struct store_txn *t, int64_t finished_ms, const uint8_t id[16])
{
        uint8_t buf[24];
        MDB_val key = store_time_key(buf, finished_ms, id), empty = { .mv_size = 0, .mv_data = NULL };

        return store_put_in_order(t, t->s->retain, &key, &empty, 0);
}

/* Inserts or replaces a job record and keeps "pending" and "tenant_jobs" in step;
 * `fresh`: the id was never stored, so there is no pending entry to drop. Returns
 * >= 0, -EINVAL for an invalid job, -ENOSPC when the map is full (the transaction
 * must then be aborted), or -errno. */
static int job_put(struct store_txn *t, const struct store_job *job, bool fresh)
{
        MDB_val key = store_key16(job->id), val;
        MDB_val empty = { .mv_size = 0, .mv_data = NULL };
        size_t size;
        int r;

        if (t->err < 0)
                return t->err;
        r = store_record_size(job, &size);
        if (r < 0)
                return r;
        val = (MDB_val){ .mv_size = size, .mv_data = NULL };
        r = store_txn_result(t, mdb_put(t->txn, t->s->jobs, &key, &val, MDB_RESERVE));
        if (r < 0)
                return r;
        store_record_write(job, val.mv_data);
        /* A replaced record keeps its tenant: its index entry is there already,
         * found without writing (NOOVERWRITE). */
        uint8_t tk[TENANT_JOB_KEY_MAX];
        MDB_val tkey = store_tenant_job_key(tk, job->tenant, strlen(job->tenant), job->id);
        int rc = mdb_put(t->txn, t->s->tenant_jobs, &tkey, &empty, MDB_NOOVERWRITE);
        r = rc == MDB_KEYEXIST ? 0 : store_txn_result(t, rc);
        if (r < 0)
                return r;

        if (state_is_pending(job->state))
                return store_put_in_order(t, t->s->pending, &key, &empty, 0);
        r = fresh ? 0 : store_del_quiet(t, t->s->pending, &key);
        if (r < 0)
                return r;
        return retain_put(t, job->finished_ms, job->id);
}

int store_job_put(struct store_txn *t, const struct store_job *job)
{
        return job_put(t, job, false);
}

int store_job_put_new(struct store_txn *t, const struct store_job *job)
{
        return job_put(t, job, true);
}

/* Writes raw bytes as a job record; see store_internal.h. */
int store_record_put_raw(struct store_txn *t, const uint8_t id[16], const void *buf, size_t size)
{
        MDB_val key = store_key16(id), val = { .mv_size = size, .mv_data = (void *)buf };

        if (t->err < 0)
                return t->err;
        return store_txn_result(t, mdb_put(t->txn, t->s->jobs, &key, &val, 0));
}

/* Reads the record of `id` as a new job (caller frees). Returns >= 0, -ENOENT when
 * absent, -EIO for a corrupt record, or -errno. */
int store_job_get(struct store_txn *t, const uint8_t id[16], struct store_job **ret)
{
        MDB_val key = store_key16(id), val;
        int r;

        if (t->err < 0)
                return t->err;
        r = store_mdb_errno(mdb_get(t->txn, t->s->jobs, &key, &val));
        if (r < 0)
                return r;
        return store_record_decode(id, val.mv_data, val.mv_size, ret);
}

static int idem_forget(struct store_txn *t, const struct store_job *job);

/* Deletes the record, result (or its share of a cached one), input, pending entry and
 * idempotency key of `id`. Returns >= 0, -ENOENT when there is no record, or -errno. */
int store_job_delete(struct store_txn *t, const uint8_t id[16])
{
        MDB_val key = store_key16(id);
        struct store_job *job = NULL;
        int r;

        if (t->err < 0)
                return t->err;
        r = store_job_get(t, id, &job);
        if (r < 0 && r != -EIO)
                return r;
        r = store_txn_result(t, mdb_del(t->txn, t->s->jobs, &key, NULL));
        if (r >= 0)
                r = store_result_release(t, id);
        if (r >= 0)
                r = store_input_delete(t, id);
        if (r >= 0)
                r = store_del_quiet(t, t->s->pending, &key);
        if (r >= 0 && job) {
                uint8_t tk[TENANT_JOB_KEY_MAX];
                MDB_val tkey = store_tenant_job_key(tk, job->tenant, strlen(job->tenant), id);
                r = store_del_quiet(t, t->s->tenant_jobs, &tkey);
        }
        if (r >= 0 && job)
                r = idem_forget(t, job);
        store_job_free(job);
        return r < 0 ? r : 0;
}

/* Calls cb for each pending job, oldest first; see store.h. A pending entry without a
 * readable record is -EIO. Returns >= 0, cb's negative value, or -errno. */
int store_pending_foreach(struct store_txn *t, int (*cb)(const struct store_job *job, void *userdata),
                          void *userdata)
{
        MDB_cursor *c;
        MDB_val key, val;
        int rc, r = 0;

        if (t->err < 0)
                return t->err;
        r = store_mdb_errno(mdb_cursor_open(t->txn, t->s->pending, &c));
        if (r < 0)
                return r;
        for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                struct store_job *job;
                uint8_t id[16];

                if (key.mv_size != 16) {
                        r = -EIO;
                        break;
                }
                memcpy(id, key.mv_data, 16);
                r = store_job_get(t, id, &job);
                if (r < 0) {
                        if (r == -ENOENT)
                                r = -EIO;
                        break;
                }
                r = cb(job, userdata);
                store_job_free(job);
                if (r < 0)
                        break;
        }
        if (r >= 0 && rc != MDB_NOTFOUND)
                r = store_mdb_errno(rc);
        mdb_cursor_close(c);
        return r < 0 ? r : 0;
}

static void free_jobs(struct store_job **jobs, size_t n)
{
        if (!jobs)
                return;
        for (size_t i = 0; i < n; i++)
                store_job_free(jobs[i]);
        free(jobs);
}

static bool view_matches(const struct record_view *v, const struct store_list_query *q)
{
        if (!view_equals(&v->tenant, q->tenant))
                return false;
        if (q->state >= 0 && v->state != q->state && !state_is_pending(v->state))
                return false;
        if (q->kind && !view_equals(&v->kind, q->kind))
                return false;
        return true;
}

/* Lists a tenant's jobs newest first; see store.h. Returns >= 0, -EINVAL for a bad
 * query (no tenant, limit outside 1..1000, unknown state), -EIO for a corrupt record,
 * or -errno. Cost: the tenant's own jobs older than `after` (its index in
 * "tenant_jobs"), at most STORE_LIST_SCAN_MAX of them, until limit + 1 match: no
 * other tenant's jobs are read, and the writer is held for a bounded time. */
int store_job_list(struct store_txn *t, const struct store_list_query *q, struct store_job ***ret_jobs,
                   size_t *ret_n, bool *ret_more, uint8_t ret_next[16])
{
        struct store_job **jobs;
        MDB_cursor *c;
        MDB_val key, val;
        bool more = false, bounded = false;
        size_t n = 0, scanned = 0, tl;
        uint8_t start[TENANT_JOB_KEY_MAX];
        int rc, r = 0;

        if (t->err < 0)
                return t->err;
        if (!q->tenant || q->limit < 1 || q->limit > STORE_LIST_MAX || q->state < -1 ||
            q->state >= STORE_STATE_COUNT || (tl = strlen(q->tenant)) > 63)
                return -EINVAL;
        jobs = calloc(q->limit, sizeof(*jobs));
        if (!jobs)
                return -ENOMEM;
        r = store_mdb_errno(mdb_cursor_open(t->txn, t->s->tenant_jobs, &c));
        if (r < 0) {
                free(jobs);
                return r;
        }
        static const uint8_t newest[16] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        /* The tenant's first key at or past `after` (or past its newest), then back. */
        key = store_tenant_job_key(start, q->tenant, tl, q->has_after ? q->after : newest);
        rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
        if (rc == 0)
                rc = mdb_cursor_get(c, &key, &val, MDB_PREV);
        else if (rc == MDB_NOTFOUND)
                rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
        for (; rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_PREV)) {
                const uint8_t *k = key.mv_data;
                if (key.mv_size != tl + 17 || memcmp(k, start, tl + 1))
                        break; /* past the tenant's jobs */
                const uint8_t *id = k + tl + 1;
                if (scanned == STORE_LIST_SCAN_MAX) {
                        /* Enough for one call: the caller goes on from the last one read. */
                        more = bounded = true;
                        break;
                }
                scanned++;
                MDB_val rk = store_key16(id), rv;
                struct record_view v;
                int g = mdb_get(t->txn, t->s->jobs, &rk, &rv);
                if (g == MDB_NOTFOUND)
                        continue; /* its record went without its entry (a corrupt one purged) */
                r = g ? store_mdb_errno(g) : store_record_parse(rv.mv_data, rv.mv_size, &v);
                if (r < 0)
                        break;
                memcpy(ret_next, id, 16); /* read: a stop after it goes on past it */
                if (!view_matches(&v, q))
                        continue;
                if (n == q->limit) {
                        more = true;
                        break;
                }
                r = store_record_view_to_job(id, &v, &jobs[n]);
                if (r < 0)
                        break;
                n++;
        }
        if (r >= 0 && rc != 0 && rc != MDB_NOTFOUND)
                r = store_mdb_errno(rc);
        mdb_cursor_close(c);
        if (r < 0) {
                free_jobs(jobs, n);
                return r;
        }
        if (more && !bounded) /* the one past the limit is not listed yet */
                memcpy(ret_next, jobs[n - 1]->id, 16);
        *ret_jobs = jobs;
        *ret_n = n;
        *ret_more = more;
        return 0;
}

/* Counts jobs and pending jobs, and the bytes of the map in use as of the last commit.
 * Returns >= 0 or -errno. */
int store_stat(struct store_txn *t, uint64_t *ret_jobs, uint64_t *ret_pending, uint64_t *ret_bytes)
{
        MDB_stat jobs, pending, env;
        MDB_envinfo info;
        int r;

        if (t->err < 0)
                return t->err;
        r = store_mdb_errno(mdb_stat(t->txn, t->s->jobs, &jobs));
        if (r >= 0)
                r = store_mdb_errno(mdb_stat(t->txn, t->s->pending, &pending));
        if (r >= 0)
                r = store_mdb_errno(mdb_env_stat(t->s->env, &env));
        if (r >= 0)
                r = store_mdb_errno(mdb_env_info(t->s->env, &info));
        if (r < 0)
                return r;
        *ret_jobs = jobs.ms_entries;
        *ret_pending = pending.ms_entries;
        *ret_bytes = ((uint64_t)info.me_last_pgno + 1) * env.ms_psize;
        return 0;
}

/* ---- idempotency keys ---- */

static int idem_key(const char *tenant, const char *key, uint8_t **ret, size_t *ret_size)
{
        size_t a = strlen(tenant), b = strlen(key);
        uint8_t *buf;

        if (a + 1 + b > STORE_MAX_KEY)
                return -E2BIG;
        buf = malloc(a + 1 + b);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, tenant, a);
        buf[a] = 0;
        memcpy(buf + a + 1, key, b);
        *ret = buf;
        *ret_size = a + 1 + b;
        return 0;
}

/* Finds the job that `tenant` submitted with `key`; see store.h. */
int store_idem_get(struct store_txn *t, const char *tenant, const char *key, uint8_t ret_id[16])
{
        MDB_val k, val;
        uint8_t *buf;
        size_t n;
        int r;

        if (t->err < 0)
                return t->err;
        r = idem_key(tenant, key, &buf, &n);
        if (r < 0)
                return r;
        k = (MDB_val){ .mv_size = n, .mv_data = buf };
        r = store_mdb_errno(mdb_get(t->txn, t->s->idem, &k, &val));
        free(buf);
        if (r < 0)
                return r;
        if (val.mv_size != 16)
                return -EIO;
        memcpy(ret_id, val.mv_data, 16);
        return 0;
}

/* Records that `tenant` submitted job `id` with `key`; see store.h. */
int store_idem_put(struct store_txn *t, const char *tenant, const char *key, const uint8_t id[16])
{
        MDB_val k, val = { .mv_size = 16, .mv_data = (void *)id };
        uint8_t *buf;
        size_t n;
        int r;

        if (t->err < 0)
                return t->err;
        r = idem_key(tenant, key, &buf, &n);
        if (r < 0)
                return r;
        k = (MDB_val){ .mv_size = n, .mv_data = buf };
        r = store_txn_result(t, mdb_put(t->txn, t->s->idem, &k, &val, 0));
        free(buf);
        return r;
}

/* Deletes the job's idempotency key when it still names the job. */
static int idem_forget(struct store_txn *t, const struct store_job *job)
{
        MDB_val k;
        uint8_t id[16], *buf;
        size_t n;
        int r;

        if (!job->idem_key)
                return 0;
        r = store_idem_get(t, job->tenant, job->idem_key, id);
        if (r == -ENOENT || (r >= 0 && memcmp(id, job->id, 16)))
                return 0;
        if (r < 0)
                return r;
        r = idem_key(job->tenant, job->idem_key, &buf, &n);
        if (r < 0)
                return r;
        k = (MDB_val){ .mv_size = n, .mv_data = buf };
        r = store_del_quiet(t, t->s->idem, &k);
        free(buf);
        return r;
}
