/* The job store over LMDB (see store.h), and the group-commit writer thread.
 *
 * Record format, version 1 (all integers little-endian):
 *   u8 version, u8 priority, u8 state,
 *   i64 submitted_ms, i64 finished_ms, i64 deadline_ms,
 *   u32 queue_ms, u32 run_ms, u32 batch,
 *   kind, tenant, backend:  u8 length + bytes (no NUL, shorter than the struct's array),
 *   params, idem_key, error_code, error_message:  u32 length + bytes, or u32 0xffffffff
 *   for NULL.
 * The id is the key and is not repeated in the value. A record that does not parse
 * exactly (short, trailing bytes, out-of-range values, embedded NULs) is -EIO. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lmdb.h>

#include "store.h"
#include "store_internal.h"

#define STORE_MAX_DBS 12
#define STORE_FILE_MODE 0600
#define STORE_DIR_MODE 0700
#define STORE_NULL_STRING UINT32_MAX
#define STORE_MAX_PRIORITY 4
#define STORE_LIST_MAX 1000
#define WRITER_BATCH_MAX 4096
#define WRITER_SYNC_INTERVAL_MS 100
/* Results are stored in pieces that fill exactly this many overflow pages. LMDB needs
 * a contiguous run of free pages for each value; with results of many sizes written
 * and purged (retention, eviction) the free space fragments, and 0.9.24 then grows
 * the file instead of searching further (measured: a 1 GiB map full with 57 % of
 * its pages free, with 64 MiB pieces). Same-sized small pieces reuse each other's runs. */
#define PIECE_PAGES 16
#define PAGE_HEADER_BYTES 16 /* LMDB's PAGEHDRSZ, before the data of an overflow page */

struct store {
        MDB_env *env;
        MDB_dbi jobs, results, pending;
        MDB_dbi cache, cache_lru, cache_ttl, idem, retain, alias, refs;
        enum store_sync_mode sync;
        size_t piece;                 /* bytes per result piece: exactly PIECE_PAGES overflow pages */

        /* Cache counters: updated when a write transaction commits, read anywhere. */
        _Atomic uint64_t c_hits, c_misses, c_bytes, c_entries, c_evicted, c_expired, c_purged, c_stored,
                c_jobs_purged;
        /* Bumped (writer thread) before any cache entry is deleted or replaced. */
        _Atomic uint64_t cache_gen;
        /* Writer thread only: the policy store_writer_set_policy last handed over. */
        struct store_policy policy;
        bool has_policy;
};

/* Changes to the cache counters made by one transaction, applied when it commits. */
struct cache_delta {
        int64_t bytes, entries;
        uint64_t hits, misses, evicted, expired, purged, stored, jobs_purged;
};

struct store_txn {
        struct store *s;
        MDB_txn *txn;
        /* First error that left the LMDB transaction unusable (e.g. map full): every
         * later operation fails with it, and commit aborts and returns it. */
        int err;
        bool write;
        struct cache_delta delta;
};

/* The one place where LMDB codes become -errno. */
static int errno_from_mdb(int rc)
{
        if (rc == MDB_SUCCESS)
                return 0;
        if (rc > 0)
                return -rc;
        switch (rc) {
        case MDB_NOTFOUND:
                return -ENOENT;
        case MDB_MAP_FULL:
        case MDB_TXN_FULL:
                return -ENOSPC;
        default: /* MDB_CORRUPTED, MDB_PANIC, MDB_VERSION_MISMATCH, MDB_INVALID, ... */
                return -EIO;
        }
}

/* Converts the result of an LMDB write call, remembering errors that poison the txn. */
static int txn_write_result(struct store_txn *t, int rc)
{
        int r = errno_from_mdb(rc);

        if (r < 0 && r != -ENOENT && t->err == 0)
                t->err = r;
        return r;
}

/* mdb_put for keys that mostly arrive in order (time keys, result pieces of new
 * jobs): tried as MDB_APPEND first, which fills pages instead of splitting them in
 * half, so a run of such puts dirties and writes about half as many pages. A key that
 * is not past the last one is refused untouched (MDB_KEYEXIST) and put normally. */
static int put_in_order(struct store_txn *t, MDB_dbi dbi, MDB_val *key, MDB_val *val, unsigned flags)
{
        int rc = mdb_put(t->txn, dbi, key, val, flags | MDB_APPEND);

        if (rc == MDB_KEYEXIST)
                rc = mdb_put(t->txn, dbi, key, val, flags);
        return txn_write_result(t, rc);
}

static MDB_val key_of(const uint8_t id[16])
{
        return (MDB_val){ .mv_size = 16, .mv_data = (void *)id };
}

/* ---- job states ---- */

static const char *const state_names[] = {
        [KILN_JOB_QUEUED] = "queued",
        [KILN_JOB_RUNNING] = "running",
        [KILN_JOB_DONE] = "done",
        [KILN_JOB_FAILED] = "failed",
        [KILN_JOB_CANCELLED] = "cancelled",
        [KILN_JOB_EXPIRED] = "expired",
};

#define STATE_COUNT (sizeof(state_names) / sizeof(state_names[0]))

/* Returns the protocol name of a job state, or NULL when `s` is not a state. */
const char *kiln_job_state_name(enum kiln_job_state s)
{
        if ((unsigned)s >= STATE_COUNT)
                return NULL;
        return state_names[s];
}

/* Parses a protocol state name. Returns >= 0 and sets *ret, or -EINVAL. */
int kiln_job_state_from_name(const char *name, enum kiln_job_state *ret)
{
        if (!name)
                return -EINVAL;
        for (size_t i = 0; i < STATE_COUNT; i++) {
                if (strcmp(name, state_names[i]) == 0) {
                        *ret = (enum kiln_job_state)i;
                        return 0;
                }
        }
        return -EINVAL;
}

static bool state_is_pending(uint8_t state)
{
        return state == KILN_JOB_QUEUED || state == KILN_JOB_RUNNING;
}

/* ---- job records in memory ---- */

static int dup_string(const char *src, char **ret)
{
        char *d = NULL;

        if (src) {
                d = strdup(src);
                if (!d)
                        return -ENOMEM;
        }
        *ret = d;
        return 0;
}

/* Frees a job and the strings it owns. Accepts NULL. */
void store_job_free(struct store_job *j)
{
        if (!j)
                return;
        free(j->params);
        free(j->idem_key);
        free(j->error_code);
        free(j->error_message);
        free(j);
}

/* Returns a deep copy of `j` (free with store_job_free), or NULL when out of memory. */
struct store_job *store_job_dup(const struct store_job *j)
{
        struct store_job *d = malloc(sizeof(*d));

        if (!d)
                return NULL;
        *d = *j;
        d->params = d->idem_key = d->error_code = d->error_message = NULL;
        if (dup_string(j->params, &d->params) < 0 || dup_string(j->idem_key, &d->idem_key) < 0 ||
            dup_string(j->error_code, &d->error_code) < 0 ||
            dup_string(j->error_message, &d->error_message) < 0) {
                store_job_free(d);
                return NULL;
        }
        return d;
}

/* ---- record codec ---- */

struct str_view {
        const char *p;   /* NULL for an absent (NULL) string */
        size_t n;
};

/* A parsed record whose strings point into the LMDB value. */
struct record_view {
        uint8_t priority, state;
        int64_t submitted_ms, finished_ms, deadline_ms;
        uint32_t queue_ms, run_ms, batch;
        struct str_view kind, tenant, backend;
        struct str_view params, idem_key, error_code, error_message;
};

struct reader {
        const uint8_t *p;
        size_t left;
};

static bool read_bytes(struct reader *r, size_t n, const uint8_t **ret)
{
        if (n > r->left)
                return false;
        *ret = r->p;
        r->p += n;
        r->left -= n;
        return true;
}

static bool read_u8(struct reader *r, uint8_t *ret)
{
        const uint8_t *p;

        if (!read_bytes(r, 1, &p))
                return false;
        *ret = p[0];
        return true;
}

static bool read_u32(struct reader *r, uint32_t *ret)
{
        const uint8_t *p;

        if (!read_bytes(r, 4, &p))
                return false;
        *ret = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        return true;
}

static bool read_i64(struct reader *r, int64_t *ret)
{
        const uint8_t *p;
        uint64_t v = 0;

        if (!read_bytes(r, 8, &p))
                return false;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | p[i];
        *ret = (int64_t)v;
        return true;
}

static bool no_nul(const uint8_t *p, size_t n)
{
        return memchr(p, 0, n) == NULL;
}

/* A fixed string: u8 length, strictly less than the destination array. */
static bool read_short_string(struct reader *r, size_t cap, struct str_view *ret)
{
        const uint8_t *p;
        uint8_t n;

        if (!read_u8(r, &n) || n >= cap || !read_bytes(r, n, &p) || !no_nul(p, n))
                return false;
        *ret = (struct str_view){ .p = (const char *)p, .n = n };
        return true;
}

static bool read_long_string(struct reader *r, struct str_view *ret)
{
        const uint8_t *p;
        uint32_t n;

        if (!read_u32(r, &n))
                return false;
        if (n == STORE_NULL_STRING) {
                *ret = (struct str_view){ .p = NULL, .n = 0 };
                return true;
        }
        if (!read_bytes(r, n, &p) || !no_nul(p, n))
                return false;
        *ret = (struct str_view){ .p = (const char *)p, .n = n };
        return true;
}

static int record_parse(const uint8_t *buf, size_t size, struct record_view *v)
{
        struct reader r = { .p = buf, .left = size };
        uint8_t version;

        if (!buf)
                return -EIO;
        if (!read_u8(&r, &version) || version != STORE_RECORD_VERSION)
                return -EIO;
        if (!read_u8(&r, &v->priority) || !read_u8(&r, &v->state) ||
            !read_i64(&r, &v->submitted_ms) || !read_i64(&r, &v->finished_ms) ||
            !read_i64(&r, &v->deadline_ms) || !read_u32(&r, &v->queue_ms) ||
            !read_u32(&r, &v->run_ms) || !read_u32(&r, &v->batch))
                return -EIO;
        if (v->priority > STORE_MAX_PRIORITY || v->state >= STATE_COUNT)
                return -EIO;
        if (!read_short_string(&r, sizeof(((struct store_job *)0)->kind), &v->kind) ||
            !read_short_string(&r, sizeof(((struct store_job *)0)->tenant), &v->tenant) ||
            !read_short_string(&r, sizeof(((struct store_job *)0)->backend), &v->backend))
                return -EIO;
        if (!read_long_string(&r, &v->params) || !read_long_string(&r, &v->idem_key) ||
            !read_long_string(&r, &v->error_code) || !read_long_string(&r, &v->error_message))
                return -EIO;
        if (r.left != 0)
                return -EIO;
        return 0;
}

static bool view_equals(const struct str_view *v, const char *s)
{
        size_t n = strlen(s);

        return v->p && v->n == n && memcmp(v->p, s, n) == 0;
}

static int view_to_string(const struct str_view *v, char **ret)
{
        char *s = NULL;

        if (v->p) {
                s = malloc(v->n + 1);
                if (!s)
                        return -ENOMEM;
                memcpy(s, v->p, v->n);
                s[v->n] = '\0';
        }
        *ret = s;
        return 0;
}

static int view_to_job(const uint8_t id[16], const struct record_view *v, struct store_job **ret)
{
        struct store_job *j = calloc(1, sizeof(*j));

        if (!j)
                return -ENOMEM;
        memcpy(j->id, id, 16);
        memcpy(j->kind, v->kind.p, v->kind.n);
        memcpy(j->tenant, v->tenant.p, v->tenant.n);
        memcpy(j->backend, v->backend.p, v->backend.n);
        j->priority = v->priority;
        j->state = v->state;
        j->submitted_ms = v->submitted_ms;
        j->finished_ms = v->finished_ms;
        j->deadline_ms = v->deadline_ms;
        j->queue_ms = v->queue_ms;
        j->run_ms = v->run_ms;
        j->batch = v->batch;
        if (view_to_string(&v->params, &j->params) < 0 || view_to_string(&v->idem_key, &j->idem_key) < 0 ||
            view_to_string(&v->error_code, &j->error_code) < 0 ||
            view_to_string(&v->error_message, &j->error_message) < 0) {
                store_job_free(j);
                return -ENOMEM;
        }
        *ret = j;
        return 0;
}

/* Decodes a record stored under key `id` as a new job; see store_internal.h. */
int store_record_decode(const uint8_t id[16], const uint8_t *buf, size_t size, struct store_job **ret)
{
        struct record_view v;
        int r;

        r = record_parse(buf, size, &v);
        if (r < 0)
                return r;
        return view_to_job(id, &v, ret);
}

static int short_string_size(const char *s, size_t cap, size_t *size)
{
        size_t n = strnlen(s, cap);

        if (n >= cap)
                return -EINVAL;
        *size += 1 + n;
        return 0;
}

static int long_string_size(const char *s, size_t *size)
{
        size_t n;

        *size += 4;
        if (!s)
                return 0;
        n = strlen(s);
        if (n >= STORE_NULL_STRING)
                return -E2BIG;
        *size += n;
        return 0;
}

/* Validates `job` and computes the size of its record. */
static int record_size(const struct store_job *job, size_t *ret)
{
        size_t size = 3 + 3 * 8 + 3 * 4;
        int r;

        if (job->priority > STORE_MAX_PRIORITY || job->state >= STATE_COUNT)
                return -EINVAL;
        r = short_string_size(job->kind, sizeof(job->kind), &size);
        if (r < 0)
                return r;
        r = short_string_size(job->tenant, sizeof(job->tenant), &size);
        if (r < 0)
                return r;
        r = short_string_size(job->backend, sizeof(job->backend), &size);
        if (r < 0)
                return r;
        r = long_string_size(job->params, &size);
        if (r < 0)
                return r;
        r = long_string_size(job->idem_key, &size);
        if (r < 0)
                return r;
        r = long_string_size(job->error_code, &size);
        if (r < 0)
                return r;
        r = long_string_size(job->error_message, &size);
        if (r < 0)
                return r;
        *ret = size;
        return 0;
}

static uint8_t *write_u32(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                *p++ = (uint8_t)(v >> (8 * i));
        return p;
}

static uint8_t *write_i64(uint8_t *p, int64_t v)
{
        uint64_t u = (uint64_t)v;

        for (int i = 0; i < 8; i++)
                *p++ = (uint8_t)(u >> (8 * i));
        return p;
}

static uint8_t *write_short_string(uint8_t *p, const char *s)
{
        size_t n = strlen(s);

        *p++ = (uint8_t)n;
        memcpy(p, s, n);
        return p + n;
}

static uint8_t *write_long_string(uint8_t *p, const char *s)
{
        size_t n;

        if (!s)
                return write_u32(p, STORE_NULL_STRING);
        n = strlen(s);
        p = write_u32(p, (uint32_t)n);
        memcpy(p, s, n);
        return p + n;
}

/* Writes the record of an already validated job (record_size) into dst. */
static void record_write(const struct store_job *job, uint8_t *dst)
{
        uint8_t *p = dst;

        *p++ = STORE_RECORD_VERSION;
        *p++ = job->priority;
        *p++ = job->state;
        p = write_i64(p, job->submitted_ms);
        p = write_i64(p, job->finished_ms);
        p = write_i64(p, job->deadline_ms);
        p = write_u32(p, job->queue_ms);
        p = write_u32(p, job->run_ms);
        p = write_u32(p, job->batch);
        p = write_short_string(p, job->kind);
        p = write_short_string(p, job->tenant);
        p = write_short_string(p, job->backend);
        p = write_long_string(p, job->params);
        p = write_long_string(p, job->idem_key);
        p = write_long_string(p, job->error_code);
        write_long_string(p, job->error_message);
}

/* Encodes `job` as a record; see store_internal.h. */
int store_record_encode(const struct store_job *job, uint8_t **ret_buf, size_t *ret_size)
{
        uint8_t *buf;
        size_t size;
        int r;

        r = record_size(job, &size);
        if (r < 0)
                return r;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        record_write(job, buf);
        *ret_buf = buf;
        *ret_size = size;
        return 0;
}

/* ---- environment ---- */

/* Creates `path` and its missing parents with `mode` (like mkdir -p). */
static int mkdir_p(const char *path, mode_t mode)
{
        char *copy = strdup(path);
        struct stat st;
        int r = 0;

        if (!copy)
                return -ENOMEM;
        for (char *p = copy + 1; ; p++) {
                if (*p != '/' && *p != '\0')
                        continue;
                char c = *p;
                *p = '\0';
                if (mkdir(copy, mode) < 0 && errno != EEXIST) {
                        /* An existing parent may refuse mkdir (EACCES, EROFS): fine. */
                        r = -errno;
                        if (stat(copy, &st) < 0 || !S_ISDIR(st.st_mode))
                                break;
                        r = 0;
                }
                *p = c;
                if (c == '\0')
                        break;
        }
        free(copy);
        if (r < 0)
                return r;
        if (stat(path, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        return 0;
}

static int open_scan(struct store *s, MDB_txn *txn);

static int open_databases(struct store *s)
{
        MDB_txn *txn;
        int rc;

        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc != 0)
                return errno_from_mdb(rc);
        const struct {
                const char *name;
                MDB_dbi *dbi;
        } dbs[] = {
                { "jobs", &s->jobs },         { "results", &s->results },     { "pending", &s->pending },
                { "cache", &s->cache },       { "cache_lru", &s->cache_lru }, { "cache_ttl", &s->cache_ttl },
                { "idem", &s->idem },         { "retain", &s->retain },       { "alias", &s->alias },
                { "refs", &s->refs },
        };
        rc = 0;
        for (size_t i = 0; rc == 0 && i < sizeof(dbs) / sizeof(dbs[0]); i++)
                rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi);
        if (rc == 0)
                rc = open_scan(s, txn);
        if (rc != 0) {
                mdb_txn_abort(txn);
                return errno_from_mdb(rc);
        }
        return errno_from_mdb(mdb_txn_commit(txn));
}

/* Opens (creating if needed) the store in directory `path`; see store.h. MDB_NOTLS
 * lets read transactions move between threads; BATCH and OFF commit without fsync
 * (MDB_NOSYNC, never with MDB_WRITEMAP, which can corrupt on a crash). */
int store_open(const char *path, uint64_t map_size, enum store_sync_mode sync, struct store **ret)
{
        unsigned flags = MDB_NOTLS;
        struct store *s;
        int dead, r;

        if (!path || !*path || map_size == 0 || map_size > SIZE_MAX)
                return -EINVAL;
        if (sync != STORE_SYNC_FULL && sync != STORE_SYNC_BATCH && sync != STORE_SYNC_OFF)
                return -EINVAL;
        if (sync != STORE_SYNC_FULL)
                flags |= MDB_NOSYNC;

        r = mkdir_p(path, STORE_DIR_MODE);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->sync = sync;
        r = errno_from_mdb(mdb_env_create(&s->env));
        if (r < 0) {
                free(s);
                return r;
        }
        r = errno_from_mdb(mdb_env_set_mapsize(s->env, (size_t)map_size));
        if (r >= 0)
                r = errno_from_mdb(mdb_env_set_maxdbs(s->env, STORE_MAX_DBS));
        if (r >= 0)
                r = errno_from_mdb(mdb_env_open(s->env, path, flags, STORE_FILE_MODE));
        if (r >= 0)
                r = errno_from_mdb(mdb_reader_check(s->env, &dead));
        if (r >= 0)
                r = open_databases(s);
        if (r >= 0) {
                MDB_stat st;
                r = errno_from_mdb(mdb_env_stat(s->env, &st));
                if (r >= 0)
                        s->piece = (size_t)st.ms_psize * PIECE_PAGES - PAGE_HEADER_BYTES;
        }
        if (r < 0) {
                mdb_env_close(s->env);
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

/* Closes the environment; see store.h. */
void store_close(struct store *s)
{
        if (!s)
                return;
        mdb_env_close(s->env);
        free(s);
}

/* Flushes committed data to disk; see store.h. */
int store_sync(struct store *s)
{
        return errno_from_mdb(mdb_env_sync(s->env, 1));
}

/* ---- transactions ---- */

/* Begins a read or write transaction. One thread must not hold two write
 * transactions of the same store (LMDB deadlocks). Returns >= 0 or -errno. */
int store_txn_begin(struct store *s, bool write, struct store_txn **ret)
{
        struct store_txn *t = calloc(1, sizeof(*t));
        int r;

        if (!t)
                return -ENOMEM;
        t->s = s;
        t->write = write;
        r = errno_from_mdb(mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn));
        if (r < 0) {
                free(t);
                return r;
        }
        *ret = t;
        return 0;
}

static void delta_apply(struct store *s, const struct cache_delta *d)
{
        atomic_fetch_add(&s->c_bytes, (uint64_t)d->bytes);
        atomic_fetch_add(&s->c_entries, (uint64_t)d->entries);
        atomic_fetch_add(&s->c_hits, d->hits);
        atomic_fetch_add(&s->c_misses, d->misses);
        atomic_fetch_add(&s->c_evicted, d->evicted);
        atomic_fetch_add(&s->c_expired, d->expired);
        atomic_fetch_add(&s->c_purged, d->purged);
        atomic_fetch_add(&s->c_stored, d->stored);
        atomic_fetch_add(&s->c_jobs_purged, d->jobs_purged);
}

/* Commits and frees `t`; a transaction made unusable by an earlier error (map full)
 * is aborted and that error returned. Returns >= 0 or -errno. */
int store_txn_commit(struct store_txn *t)
{
        int r;

        if (t->err < 0) {
                r = t->err;
                mdb_txn_abort(t->txn);
        } else {
                r = errno_from_mdb(mdb_txn_commit(t->txn));
                if (r >= 0 && t->write)
                        delta_apply(t->s, &t->delta);
        }
        free(t);
        return r;
}

/* Aborts and frees `t`. Accepts NULL. */
void store_txn_abort(struct store_txn *t)
{
        if (!t)
                return;
        mdb_txn_abort(t->txn);
        free(t);
}

/* ---- jobs and results ---- */

static int result_delete(struct store_txn *t, const uint8_t id[16]);
static int retain_put(struct store_txn *t, int64_t finished_ms, const uint8_t id[16]);
static int result_release(struct store_txn *t, const uint8_t id[16]);
static int idem_forget(struct store_txn *t, const struct store_job *job);

/* Inserts or replaces a job record and keeps "pending" in step; see store.h.
 * Returns >= 0, -EINVAL for an invalid job, -ENOSPC when the map is full (the
 * transaction must then be aborted), or -errno. */
int store_job_put(struct store_txn *t, const struct store_job *job)
{
        MDB_val key = key_of(job->id), val;
        MDB_val empty = { .mv_size = 0, .mv_data = NULL };
        size_t size;
        int r;

        if (t->err < 0)
                return t->err;
        r = record_size(job, &size);
        if (r < 0)
                return r;
        val = (MDB_val){ .mv_size = size, .mv_data = NULL };
        r = txn_write_result(t, mdb_put(t->txn, t->s->jobs, &key, &val, MDB_RESERVE));
        if (r < 0)
                return r;
        record_write(job, val.mv_data);

        if (state_is_pending(job->state))
                return put_in_order(t, t->s->pending, &key, &empty, 0);
        r = txn_write_result(t, mdb_del(t->txn, t->s->pending, &key, NULL));
        if (r < 0 && r != -ENOENT)
                return r;
        return retain_put(t, job->finished_ms, job->id);
}

/* Writes raw bytes as a job record; see store_internal.h. */
int store_record_put_raw(struct store_txn *t, const uint8_t id[16], const void *buf, size_t size)
{
        MDB_val key = key_of(id), val = { .mv_size = size, .mv_data = (void *)buf };

        if (t->err < 0)
                return t->err;
        return txn_write_result(t, mdb_put(t->txn, t->s->jobs, &key, &val, 0));
}

/* Reads the record of `id` as a new job (caller frees). Returns >= 0, -ENOENT when
 * absent, -EIO for a corrupt record, or -errno. */
int store_job_get(struct store_txn *t, const uint8_t id[16], struct store_job **ret)
{
        MDB_val key = key_of(id), val;
        int r;

        if (t->err < 0)
                return t->err;
        r = errno_from_mdb(mdb_get(t->txn, t->s->jobs, &key, &val));
        if (r < 0)
                return r;
        return store_record_decode(id, val.mv_data, val.mv_size, ret);
}

/* Deletes the record, result (or its share of a cached one), pending entry and
 * idempotency key of `id`. Returns >= 0, -ENOENT when there is no record, or -errno. */
int store_job_delete(struct store_txn *t, const uint8_t id[16])
{
        MDB_val key = key_of(id);
        struct store_job *job = NULL;
        int r;

        if (t->err < 0)
                return t->err;
        r = store_job_get(t, id, &job);
        if (r < 0 && r != -EIO)
                return r;
        r = txn_write_result(t, mdb_del(t->txn, t->s->jobs, &key, NULL));
        if (r >= 0)
                r = result_release(t, id);
        if (r >= 0) {
                r = txn_write_result(t, mdb_del(t->txn, t->s->pending, &key, NULL));
                if (r == -ENOENT)
                        r = 0;
        }
        if (r >= 0 && job)
                r = idem_forget(t, job);
        store_job_free(job);
        return r < 0 ? r : 0;
}

/* ---- results, in pieces ---- */

static size_t result_chunk; /* 0: the store's own piece size */

void store_set_result_chunk(size_t bytes)
{
        result_chunk = bytes;
}

struct chunk_key {
        uint8_t b[20]; /* job id, then the piece number big-endian */
};

static MDB_val chunk_key(struct chunk_key *k, const uint8_t id[16], uint32_t n)
{
        memcpy(k->b, id, 16);
        k->b[16] = (uint8_t)(n >> 24);
        k->b[17] = (uint8_t)(n >> 16);
        k->b[18] = (uint8_t)(n >> 8);
        k->b[19] = (uint8_t)n;
        return (MDB_val){ .mv_size = sizeof(k->b), .mv_data = k->b };
}

static bool chunk_of(const MDB_val *key, const uint8_t id[16])
{
        return key->mv_size == 20 && !memcmp(key->mv_data, id, 16);
}

/* Deletes every piece of the result of `id`. Returns the number deleted or -errno. */
static int result_delete(struct store_txn *t, const uint8_t id[16])
{
        struct chunk_key k;
        MDB_val key = chunk_key(&k, id, 0), val;
        MDB_cursor *c;
        int rc, n = 0;

        rc = mdb_cursor_open(t->txn, t->s->results, &c);
        if (rc)
                return txn_write_result(t, rc);
        for (;;) {
                key = chunk_key(&k, id, 0);
                rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
                if (rc || !chunk_of(&key, id))
                        break;
                rc = mdb_cursor_del(c, 0);
                if (rc)
                        break;
                n++;
        }
        mdb_cursor_close(c);
        if (rc && rc != MDB_NOTFOUND)
                return txn_write_result(t, rc);
        return n;
}

int store_result_put(struct store_txn *t, const uint8_t id[16], size_t size, store_result_writer write,
                     void *opaque)
{
        int r;

        if (t->err < 0)
                return t->err;
        r = result_delete(t, id);
        if (r < 0)
                return r;
        uint32_t n = 0;
        size_t off = 0;
        do {
                size_t chunk = result_chunk ? result_chunk : t->s->piece;
                size_t len = size - off < chunk ? size - off : chunk;
                struct chunk_key k;
                MDB_val key = chunk_key(&k, id, n), val = { .mv_size = len, .mv_data = NULL };
                r = put_in_order(t, t->s->results, &key, &val, MDB_RESERVE);
                if (r < 0)
                        return r;
                if (len)
                        write(opaque, val.mv_data, off, len);
                off += len;
                n++;
        } while (off < size);
        return 0;
}

static int alias_resolve(struct store_txn *t, const uint8_t id[16], const uint8_t **ret);

/* Copies the result of `id` out (malloc'd, caller frees; an empty result gives a
 * non-NULL pointer and size 0). Returns >= 0, -ENOENT when absent, or -errno. */
int store_result_get(struct store_txn *t, const uint8_t id[16], uint8_t **ret_data, size_t *ret_size)
{
        struct chunk_key k;
        MDB_val key, val;
        MDB_cursor *c;
        size_t total = 0, off = 0;
        uint8_t *copy = NULL;
        int rc, r = 0;

        if (t->err < 0)
                return t->err;
        r = alias_resolve(t, id, &id);
        if (r < 0)
                return r;
        rc = mdb_cursor_open(t->txn, t->s->results, &c);
        if (rc)
                return errno_from_mdb(rc);
        /* Two passes: sizes first (no data is touched), then one copy. */
        for (int pass = 0; pass < 2 && r == 0; pass++) {
                uint32_t expect = 0;
                key = chunk_key(&k, id, 0);
                for (rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE); !rc && chunk_of(&key, id);
                     rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                        const uint8_t *kb = key.mv_data;
                        uint32_t no = (uint32_t)kb[16] << 24 | (uint32_t)kb[17] << 16 | (uint32_t)kb[18] << 8 | kb[19];
                        if (no != expect++) {
                                r = -EIO; /* a missing piece */
                                break;
                        }
                        if (pass == 0) {
                                total += val.mv_size;
                        } else {
                                if (off + val.mv_size > total) {
                                        r = -EIO;
                                        break;
                                }
                                memcpy(copy + off, val.mv_data, val.mv_size);
                                off += val.mv_size;
                        }
                }
                if (r == 0 && rc && rc != MDB_NOTFOUND)
                        r = errno_from_mdb(rc);
                if (r == 0 && pass == 0) {
                        if (expect == 0)
                                r = -ENOENT;
                        else if (!(copy = malloc(total ? total : 1)))
                                r = -ENOMEM;
                }
        }
        mdb_cursor_close(c);
        if (r < 0) {
                free(copy);
                return r;
        }
        *ret_data = copy;
        *ret_size = total;
        return 0;
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
        r = errno_from_mdb(mdb_cursor_open(t->txn, t->s->pending, &c));
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
                r = errno_from_mdb(rc);
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
        if (q->state >= 0 && v->state != q->state)
                return false;
        if (q->kind && !view_equals(&v->kind, q->kind))
                return false;
        return true;
}

/* Lists a tenant's jobs newest first; see store.h. Returns >= 0, -EINVAL for a bad
 * query (no tenant, limit outside 1..1000, unknown state), -EIO for a corrupt record,
 * or -errno. Cost: one pass over the jobs older than `after` until limit + 1 match. */
int store_job_list(struct store_txn *t, const struct store_list_query *q, struct store_job ***ret_jobs,
                   size_t *ret_n, bool *ret_more)
{
        struct store_job **jobs;
        MDB_cursor *c;
        MDB_val key, val;
        bool more = false;
        size_t n = 0;
        int rc, r = 0;

        if (t->err < 0)
                return t->err;
        if (!q->tenant || q->limit < 1 || q->limit > STORE_LIST_MAX || q->state < -1 ||
            q->state >= (int)STATE_COUNT)
                return -EINVAL;
        jobs = calloc(q->limit, sizeof(*jobs));
        if (!jobs)
                return -ENOMEM;
        r = errno_from_mdb(mdb_cursor_open(t->txn, t->s->jobs, &c));
        if (r < 0) {
                free(jobs);
                return r;
        }

        if (q->has_after) {
                key = key_of(q->after);
                rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
                if (rc == 0)
                        rc = mdb_cursor_get(c, &key, &val, MDB_PREV);
                else if (rc == MDB_NOTFOUND)
                        rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
        } else {
                rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
        }
        for (; rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_PREV)) {
                struct record_view v;

                if (key.mv_size != 16) {
                        r = -EIO;
                        break;
                }
                r = record_parse(val.mv_data, val.mv_size, &v);
                if (r < 0)
                        break;
                if (!view_matches(&v, q))
                        continue;
                if (n == q->limit) {
                        more = true;
                        break;
                }
                r = view_to_job(key.mv_data, &v, &jobs[n]);
                if (r < 0)
                        break;
                n++;
        }
        if (r >= 0 && rc != 0 && rc != MDB_NOTFOUND)
                r = errno_from_mdb(rc);
        mdb_cursor_close(c);
        if (r < 0) {
                free_jobs(jobs, n);
                return r;
        }
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
        r = errno_from_mdb(mdb_stat(t->txn, t->s->jobs, &jobs));
        if (r >= 0)
                r = errno_from_mdb(mdb_stat(t->txn, t->s->pending, &pending));
        if (r >= 0)
                r = errno_from_mdb(mdb_env_stat(t->s->env, &env));
        if (r >= 0)
                r = errno_from_mdb(mdb_env_info(t->s->env, &info));
        if (r < 0)
                return r;
        *ret_jobs = jobs.ms_entries;
        *ret_pending = pending.ms_entries;
        *ret_bytes = ((uint64_t)info.me_last_pgno + 1) * env.ms_psize;
        return 0;
}

/* ---- shared result blobs: aliases and reference counts ---- */

static void put_be64(uint8_t *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

/* An index key: a time in ms, big-endian (so byte order is time order), then an id. */
static MDB_val time_key(uint8_t buf[24], int64_t ms, const uint8_t id[16])
{
        put_be64(buf, (uint64_t)(ms < 0 ? 0 : ms));
        memcpy(buf + 8, id, 16);
        return (MDB_val){ .mv_size = 24, .mv_data = buf };
}

/* Sets *ret to the blob holding the result of `id` (itself unless it has an alias);
 * the pointer lives until the next write. */
static int alias_resolve(struct store_txn *t, const uint8_t id[16], const uint8_t **ret)
{
        MDB_val key = key_of(id), val;
        int r = errno_from_mdb(mdb_get(t->txn, t->s->alias, &key, &val));

        if (r == -ENOENT) {
                *ret = id;
                return 0;
        }
        if (r < 0)
                return r;
        if (val.mv_size != 16)
                return -EIO;
        *ret = val.mv_data;
        return 0;
}

/* Holders of `blob`: jobs answering with it and cache entries (absent = 1). */
static int refs_get(struct store_txn *t, const uint8_t blob[16], uint32_t *ret)
{
        MDB_val key = key_of(blob), val;
        int r = errno_from_mdb(mdb_get(t->txn, t->s->refs, &key, &val));

        if (r == -ENOENT) {
                *ret = 1;
                return 0;
        }
        if (r < 0)
                return r;
        if (val.mv_size != 4)
                return -EIO;
        memcpy(ret, val.mv_data, 4);
        return 0;
}

static int refs_set(struct store_txn *t, const uint8_t blob[16], uint32_t n)
{
        MDB_val key = key_of(blob), val = { .mv_size = 4, .mv_data = &n };
        int r;

        if (n > 1)
                return txn_write_result(t, mdb_put(t->txn, t->s->refs, &key, &val, 0));
        r = txn_write_result(t, mdb_del(t->txn, t->s->refs, &key, NULL));
        return r == -ENOENT ? 0 : r;
}

static int blob_ref(struct store_txn *t, const uint8_t blob[16])
{
        uint32_t n;
        int r = refs_get(t, blob, &n);

        return r < 0 ? r : refs_set(t, blob, n + 1);
}

/* Drops one holder of `blob`; the last one deletes its pieces. */
static int blob_release(struct store_txn *t, const uint8_t blob[16])
{
        uint32_t n;
        int r = refs_get(t, blob, &n);

        if (r < 0)
                return r;
        if (n <= 1) {
                r = result_delete(t, blob);
                return r < 0 ? r : 0;
        }
        return refs_set(t, blob, n - 1);
}

/* Job `id` no longer answers with its result: drops its alias, or its own pieces. */
static int result_release(struct store_txn *t, const uint8_t id[16])
{
        MDB_val key = key_of(id), val;
        uint8_t blob[16];
        int r = errno_from_mdb(mdb_get(t->txn, t->s->alias, &key, &val));

        if (r == -ENOENT)
                return blob_release(t, id);
        if (r < 0)
                return r;
        if (val.mv_size != 16)
                return -EIO;
        memcpy(blob, val.mv_data, 16);
        r = txn_write_result(t, mdb_del(t->txn, t->s->alias, &key, NULL));
        return r < 0 ? r : blob_release(t, blob);
}

/* Makes job `id` answer with the pieces of `blob`; see store.h. */
int store_result_alias(struct store_txn *t, const uint8_t id[16], const uint8_t blob[16])
{
        MDB_val key = key_of(id), val = { .mv_size = 16, .mv_data = (void *)blob };
        int r;

        if (t->err < 0)
                return t->err;
        r = txn_write_result(t, mdb_put(t->txn, t->s->alias, &key, &val, 0));
        return r < 0 ? r : blob_ref(t, blob);
}

static int retain_put(struct store_txn *t, int64_t finished_ms, const uint8_t id[16])
{
        uint8_t buf[24];
        MDB_val key = time_key(buf, finished_ms, id), empty = { .mv_size = 0, .mv_data = NULL };

        return put_in_order(t, t->s->retain, &key, &empty, 0);
}

/* ---- idempotency keys ---- */

static int idem_key(const char *tenant, const char *key, uint8_t **ret, size_t *ret_size)
{
        size_t a = strlen(tenant), b = strlen(key);
        uint8_t *buf;

        if (a + 1 + b > 511) /* LMDB's default maximum key size */
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
        r = errno_from_mdb(mdb_get(t->txn, t->s->idem, &k, &val));
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
        r = txn_write_result(t, mdb_put(t->txn, t->s->idem, &k, &val, 0));
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
        r = txn_write_result(t, mdb_del(t->txn, t->s->idem, &k, NULL));
        free(buf);
        return r == -ENOENT ? 0 : r;
}

/* ---- the result cache ----
 *
 * Entry format, version 1 (integers little-endian):
 *   u8 version, i64 created_ms, i64 last_used_ms, u64 size, u32 kind version,
 *   16 bytes blob id, backend and kind: u8 length + bytes, model and params: u32
 *   length + bytes. */

#define CACHE_ENTRY_VERSION 1
#define CACHE_LAST_USED_OFFSET 9

struct cache_view {
        int64_t created_ms, last_used_ms;
        uint64_t size;
        uint32_t version;
        uint8_t blob[16];
        struct str_view backend, kind, model, params;
};

static int cache_parse(const MDB_val *val, struct cache_view *v)
{
        struct reader r = { .p = val->mv_data, .left = val->mv_size };
        const uint8_t *blob;
        uint8_t version;
        int64_t size;

        if (!read_u8(&r, &version) || version != CACHE_ENTRY_VERSION || !read_i64(&r, &v->created_ms) ||
            !read_i64(&r, &v->last_used_ms) || !read_i64(&r, &size) || !read_u32(&r, &v->version) ||
            !read_bytes(&r, 16, &blob) || !read_short_string(&r, 16, &v->backend) ||
            !read_short_string(&r, 32, &v->kind) || !read_long_string(&r, &v->model) ||
            !read_long_string(&r, &v->params) || !v->model.p || !v->params.p || r.left != 0)
                return -EIO;
        v->size = (uint64_t)size;
        memcpy(v->blob, blob, 16);
        return 0;
}

/* The entry of `hash` (strings dropped: they live only until the next write). */
static int cache_get(struct store_txn *t, const uint8_t hash[16], struct cache_view *ret)
{
        MDB_val key = key_of(hash), val;
        int r = errno_from_mdb(mdb_get(t->txn, t->s->cache, &key, &val));

        if (r < 0)
                return r;
        r = cache_parse(&val, ret);
        if (r < 0)
                return r;
        ret->backend = ret->kind = ret->model = ret->params = (struct str_view){ 0 };
        return 0;
}

static int del_quiet(struct store_txn *t, MDB_dbi dbi, MDB_val *key)
{
        int r = txn_write_result(t, mdb_del(t->txn, dbi, key, NULL));

        return r == -ENOENT ? 0 : r;
}

/* Deletes the entry of `hash` with its index keys, and releases its blob. */
static int cache_delete(struct store_txn *t, const uint8_t hash[16])
{
        MDB_val key = key_of(hash), ik;
        struct cache_view v;
        uint8_t buf[24];
        int r;

        r = cache_get(t, hash, &v);
        if (r != -ENOENT)
                atomic_fetch_add(&t->s->cache_gen, 1); /* copies of this entry are stale now */
        if (r == -EIO)
                return del_quiet(t, t->s->cache, &key); /* unreadable: no index keys known */
        if (r < 0)
                return r;
        r = txn_write_result(t, mdb_del(t->txn, t->s->cache, &key, NULL));
        if (r >= 0) {
                ik = time_key(buf, v.last_used_ms, hash);
                r = del_quiet(t, t->s->cache_lru, &ik);
        }
        if (r >= 0) {
                ik = time_key(buf, v.created_ms, hash);
                r = del_quiet(t, t->s->cache_ttl, &ik);
        }
        if (r >= 0)
                r = blob_release(t, v.blob);
        if (r < 0)
                return r;
        t->delta.bytes -= (int64_t)v.size;
        t->delta.entries--;
        return 0;
}

static bool cache_matches(const struct cache_view *v, const struct store_cache_key *k)
{
        return v->version == k->version && view_equals(&v->kind, k->kind) &&
               view_equals(&v->model, k->model ? k->model : "") && view_equals(&v->params, k->params);
}

static bool blob_exists(struct store_txn *t, const uint8_t blob[16])
{
        struct chunk_key k;
        MDB_val key = chunk_key(&k, blob, 0), val;

        return mdb_get(t->txn, t->s->results, &key, &val) == 0;
}

/* Looks up a cached result and bumps its last use; see store.h. */
int store_cache_lookup(struct store_txn *t, const struct store_cache_key *key, int64_t now_ms, uint32_t ttl_s,
                       struct store_cache_hit *ret)
{
        MDB_val k = key_of(key->hash), val, ik, empty = { .mv_size = 0, .mv_data = NULL };
        struct cache_view v;
        uint8_t buf[24], *copy;
        int r;

        if (t->err < 0)
                return t->err;
        r = errno_from_mdb(mdb_get(t->txn, t->s->cache, &k, &val));
        if (r < 0)
                return r;
        if (cache_parse(&val, &v) < 0 || !cache_matches(&v, key))
                return -ENOENT; /* corrupt or another key with the same hash: a miss */
        if (ttl_s && v.created_ms + (int64_t)ttl_s * 1000 <= now_ms)
                return -ENOENT; /* expired: maintenance deletes it */
        if (!blob_exists(t, v.blob)) {
                r = cache_delete(t, key->hash);
                return r < 0 ? r : -ENOENT;
        }
        memset(ret, 0, sizeof(*ret));
        memcpy(ret->blob, v.blob, 16);
        ret->size = v.size;
        memcpy(ret->backend, v.backend.p, v.backend.n);
        ret->created_ms = v.created_ms;
        ret->generation = atomic_load(&t->s->cache_gen);
        if (v.last_used_ms >= now_ms || !t->write)
                return 0;
        /* Bump the last use: move the LRU key, rewrite the entry's time. */
        copy = malloc(val.mv_size);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, val.mv_data, val.mv_size);
        write_i64(copy + CACHE_LAST_USED_OFFSET, now_ms);
        val.mv_data = copy;
        ik = time_key(buf, v.last_used_ms, key->hash);
        r = del_quiet(t, t->s->cache_lru, &ik);
        if (r >= 0) {
                ik = time_key(buf, now_ms, key->hash);
                r = txn_write_result(t, mdb_put(t->txn, t->s->cache_lru, &ik, &empty, 0));
        }
        if (r >= 0)
                r = txn_write_result(t, mdb_put(t->txn, t->s->cache, &k, &val, 0));
        free(copy);
        return r < 0 ? r : 0;
}

static int first_index_key(struct store_txn *t, MDB_dbi dbi, uint8_t ret[24]);
static int cache_index_drop(struct store_txn *t, MDB_dbi dbi, const uint8_t ik[24], bool lru);

/* Caches the stored result of job `blob` under `key`; see store.h. */
int store_cache_put(struct store_txn *t, const struct store_cache_key *key, const uint8_t blob[16], uint64_t size,
                    const char *backend, int64_t now_ms, uint64_t max_bytes)
{
        const char *model = key->model ? key->model : "";
        size_t bl = strnlen(backend ? backend : "", 16), kl = strnlen(key->kind, 32);
        size_t ml = strlen(model), pl = strlen(key->params), n;
        MDB_val k = key_of(key->hash), val, ik, empty = { .mv_size = 0, .mv_data = NULL };
        uint8_t buf[24], *e, *p;
        int r;

        if (t->err < 0)
                return t->err;
        if (bl >= 16 || kl >= 32 || ml >= STORE_NULL_STRING || pl >= STORE_NULL_STRING)
                return -EINVAL;
        if (size > max_bytes)
                return 0;
        r = cache_delete(t, key->hash);
        if (r < 0 && r != -ENOENT)
                return r;
        n = 1 + 8 + 8 + 8 + 4 + 16 + 1 + bl + 1 + kl + 4 + ml + 4 + pl;
        e = malloc(n);
        if (!e)
                return -ENOMEM;
        p = e;
        *p++ = CACHE_ENTRY_VERSION;
        p = write_i64(p, now_ms);
        p = write_i64(p, now_ms);
        p = write_i64(p, (int64_t)size);
        p = write_u32(p, key->version);
        memcpy(p, blob, 16);
        p += 16;
        p = write_short_string(p, backend ? backend : "");
        p = write_short_string(p, key->kind);
        p = write_long_string(p, model);
        write_long_string(p, key->params);
        val = (MDB_val){ .mv_size = n, .mv_data = e };
        r = txn_write_result(t, mdb_put(t->txn, t->s->cache, &k, &val, 0));
        free(e);
        if (r >= 0) {
                ik = time_key(buf, now_ms, key->hash);
                r = put_in_order(t, t->s->cache_lru, &ik, &empty, 0);
        }
        if (r >= 0)
                r = put_in_order(t, t->s->cache_ttl, &ik, &empty, 0);
        if (r >= 0)
                r = blob_ref(t, blob);
        if (r < 0)
                return r;
        t->delta.bytes += (int64_t)size;
        t->delta.entries++;
        t->delta.stored++;
        /* Evict at once rather than at the next maintenance round, so the cache never
         * holds more than max_bytes. The new entry is the most recently used: it goes
         * last, and never (it fits alone). */
        while (atomic_load(&t->s->c_bytes) + (uint64_t)t->delta.bytes > max_bytes) {
                r = first_index_key(t, t->s->cache_lru, buf);
                if (r < 0)
                        return r == -ENOENT ? 0 : r;
                r = cache_index_drop(t, t->s->cache_lru, buf, true);
                if (r < 0)
                        return r;
                t->delta.evicted++;
        }
        return 0;
}

/* Purges the entries of one kind, or all; see store.h. */
int store_cache_purge(struct store_txn *t, const char *kind, uint64_t *ret_n)
{
        uint8_t (*hashes)[16] = NULL;
        size_t n = 0, cap = 0;
        MDB_cursor *c;
        MDB_val key, val;
        int rc, r = 0;

        if (t->err < 0)
                return t->err;
        r = errno_from_mdb(mdb_cursor_open(t->txn, t->s->cache, &c));
        if (r < 0)
                return r;
        for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                struct cache_view v;

                if (key.mv_size != 16)
                        continue;
                if (kind && (cache_parse(&val, &v) < 0 || !view_equals(&v.kind, kind)))
                        continue;
                if (n == cap) {
                        size_t nc = cap ? cap * 2 : 64;
                        void *nh = realloc(hashes, nc * 16);
                        if (!nh) {
                                r = -ENOMEM;
                                break;
                        }
                        hashes = nh;
                        cap = nc;
                }
                memcpy(hashes[n++], key.mv_data, 16);
        }
        mdb_cursor_close(c);
        if (r >= 0 && rc != 0 && rc != MDB_NOTFOUND)
                r = errno_from_mdb(rc);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = cache_delete(t, hashes[i]);
        free(hashes);
        if (r < 0)
                return r;
        t->delta.purged += n;
        *ret_n = n;
        return 0;
}

/* Copies the first key of `dbi` (24-byte index keys only). */
static int first_index_key(struct store_txn *t, MDB_dbi dbi, uint8_t ret[24])
{
        MDB_cursor *c;
        MDB_val key, val;
        int r = errno_from_mdb(mdb_cursor_open(t->txn, dbi, &c));

        if (r < 0)
                return r;
        r = errno_from_mdb(mdb_cursor_get(c, &key, &val, MDB_FIRST));
        if (r >= 0 && key.mv_size != 24)
                r = -EIO;
        if (r >= 0)
                memcpy(ret, key.mv_data, 24);
        mdb_cursor_close(c);
        return r;
}

/* Deletes an index key, and the cache entry it names when the entry's time matches
 * (a stale key of a replaced or bumped entry is just dropped). */
static int cache_index_drop(struct store_txn *t, MDB_dbi dbi, const uint8_t ik[24], bool lru)
{
        MDB_val key = { .mv_size = 24, .mv_data = (void *)ik };
        struct cache_view v;
        int64_t ms = (int64_t)get_be64(ik);
        int r = cache_get(t, ik + 8, &v);

        if (r >= 0 && (lru ? v.last_used_ms : v.created_ms) == ms)
                return cache_delete(t, ik + 8);
        if (r < 0 && r != -ENOENT && r != -EIO)
                return r;
        return del_quiet(t, dbi, &key);
}

/* Background work: retention, TTL, LRU; see store.h. */
int store_maintain(struct store_txn *t, const struct store_policy *p, int64_t now_ms, unsigned budget)
{
        struct store *s = t->s;
        unsigned n = 0;
        uint8_t ik[24];
        int r = 0;

        if (t->err < 0)
                return t->err;
        while (p->retain_s && n < budget) {
                r = first_index_key(t, s->retain, ik);
                if (r < 0 || (int64_t)get_be64(ik) + (int64_t)p->retain_s * 1000 > now_ms)
                        break;
                MDB_val key = { .mv_size = 24, .mv_data = ik };
                struct store_job *job = NULL;
                r = del_quiet(t, s->retain, &key);
                if (r >= 0)
                        r = store_job_get(t, ik + 8, &job);
                if (r >= 0 && kiln_job_state_is_final(job->state)) {
                        r = store_job_delete(t, ik + 8);
                        if (r >= 0)
                                t->delta.jobs_purged++;
                } else if (r == -ENOENT || r == -EIO || r >= 0) {
                        r = 0; /* already gone, or pending again: nothing to purge */
                }
                store_job_free(job);
                if (r < 0)
                        return r;
                n++;
        }
        if (r < 0 && r != -ENOENT)
                return r;
        while (p->cache_ttl_s && n < budget) {
                r = first_index_key(t, s->cache_ttl, ik);
                if (r < 0 || (int64_t)get_be64(ik) + (int64_t)p->cache_ttl_s * 1000 > now_ms)
                        break;
                r = cache_index_drop(t, s->cache_ttl, ik, false);
                if (r < 0)
                        return r;
                t->delta.expired++;
                n++;
        }
        if (r < 0 && r != -ENOENT)
                return r;
        while (n < budget && atomic_load(&s->c_bytes) + (uint64_t)t->delta.bytes > p->cache_max_bytes) {
                r = first_index_key(t, s->cache_lru, ik);
                if (r < 0)
                        break;
                r = cache_index_drop(t, s->cache_lru, ik, true);
                if (r < 0)
                        return r;
                t->delta.evicted++;
                n++;
        }
        if (r < 0 && r != -ENOENT)
                return r;
        return (int)n;
}

uint64_t store_cache_generation(struct store *s)
{
        return atomic_load(&s->cache_gen);
}

/* A snapshot of the cache counters; see store.h. */
void store_cache_stats(struct store *s, struct store_cache_stats *ret)
{
        ret->hits = atomic_load(&s->c_hits);
        ret->misses = atomic_load(&s->c_misses);
        ret->bytes = atomic_load(&s->c_bytes);
        ret->entries = atomic_load(&s->c_entries);
        ret->evicted = atomic_load(&s->c_evicted);
        ret->expired = atomic_load(&s->c_expired);
        ret->purged = atomic_load(&s->c_purged);
        ret->stored = atomic_load(&s->c_stored);
        ret->jobs_purged = atomic_load(&s->c_jobs_purged);
}

/* At open: totals the cache, and indexes finished jobs of a store written before
 * the "retain" database existed. Returns an LMDB code. */
static int open_scan(struct store *s, MDB_txn *txn)
{
        MDB_stat retain, pending, jobs;
        MDB_cursor *c;
        MDB_val key, val;
        uint64_t bytes = 0, entries = 0;
        int rc;

        rc = mdb_cursor_open(txn, s->cache, &c);
        if (rc)
                return rc;
        for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                struct cache_view v;
                if (cache_parse(&val, &v) == 0) {
                        bytes += v.size;
                        entries++;
                }
        }
        mdb_cursor_close(c);
        if (rc != MDB_NOTFOUND)
                return rc;
        atomic_store(&s->c_bytes, bytes);
        atomic_store(&s->c_entries, entries);

        rc = mdb_stat(txn, s->retain, &retain);
        if (!rc)
                rc = mdb_stat(txn, s->pending, &pending);
        if (!rc)
                rc = mdb_stat(txn, s->jobs, &jobs);
        if (rc || retain.ms_entries || jobs.ms_entries <= pending.ms_entries)
                return rc;
        rc = mdb_cursor_open(txn, s->jobs, &c);
        if (rc)
                return rc;
        for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                struct record_view v;
                uint8_t buf[24];
                MDB_val ik, empty = { .mv_size = 0, .mv_data = NULL };

                if (key.mv_size != 16 || record_parse(val.mv_data, val.mv_size, &v) < 0 ||
                    !kiln_job_state_is_final(v.state))
                        continue;
                ik = time_key(buf, v.finished_ms, key.mv_data);
                rc = mdb_put(txn, s->retain, &ik, &empty, 0);
                if (rc)
                        break;
        }
        mdb_cursor_close(c);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- the writer ---- */

struct store_writer {
        struct store *s;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct store_op *head, *tail; /* FIFO, under lock */
        bool stopping;                /* under lock */

        /* Writer thread only: something committed without fsync since last_sync_ms. */
        bool dirty;
        int64_t last_sync_ms;

        struct store_policy policy;   /* under lock: the latest store_writer_set_policy */
        bool has_policy;              /* under lock */
        int64_t next_maint_ms;        /* writer thread only */

        _Atomic uint64_t commits, ops;
};

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wall-clock ms: cache and retention times are stored and survive restarts. */
static int64_t wall_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define MAINT_INTERVAL_MS 1000
#define MAINT_BUDGET 256

static void op_clear_outputs(struct store_op *op)
{
        op->job_out = NULL;
        op->result_out = NULL;
        op->list_out = NULL;
        op->list_n = 0;
        op->list_more = false;
        op->outcome = STORE_SUBMIT_STORED;
        op->purge_n = 0;
        if (op->type == STORE_OP_RESULT_GET || op->type == STORE_OP_SUBMIT)
                op->result_size = 0;
}

static void op_free_outputs(struct store_op *op)
{
        store_job_free(op->job_out);
        free(op->result_out);
        free_jobs(op->list_out, op->list_n);
        op_clear_outputs(op);
}

static void op_write_piece(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        struct store_op *op = opaque;
        op->write_result(op, dst, offset, len);
}

static int op_apply_put(struct store_txn *t, struct store_op *op)
{
        int r;

        if (!op->job || (op->result_size > 0 && !op->write_result))
                return -EINVAL;
        r = store_job_put(t, op->job);
        if (r < 0 || op->result_size == 0)
                return r;
        r = store_result_put(t, op->job->id, op->result_size, op_write_piece, op);
        if (r < 0 || !op->cache_key || op->job->state != KILN_JOB_DONE)
                return r;
        return store_cache_put(t, op->cache_key, op->job->id, op->result_size, op->job->backend, wall_ms(),
                               t->s->has_policy ? t->s->policy.cache_max_bytes : UINT64_MAX);
}

/* SUBMIT: the tenant's idempotency key first, then the cache, then a new queued job. */
static int op_apply_submit(struct store_txn *t, struct store_op *op)
{
        struct store_job *job = op->job;
        uint8_t orig[16];
        int r;

        if (!job)
                return -EINVAL;
        if (job->idem_key) {
                r = store_idem_get(t, job->tenant, job->idem_key, orig);
                if (r >= 0) {
                        r = store_job_get(t, orig, &op->job_out);
                        if (r >= 0) {
                                op->outcome = STORE_SUBMIT_IDEM;
                                if (op->job_out->state != KILN_JOB_DONE)
                                        return 0;
                                r = store_result_get(t, orig, &op->result_out, &op->result_size);
                                return r == -ENOENT ? 0 : r;
                        }
                }
                if (r < 0 && r != -ENOENT)
                        return r;
                /* Unused, or naming a purged job: the key is free. */
        }
        if (op->cache_key) {
                struct store_cache_hit hit;
                int64_t now = wall_ms();
                r = store_cache_lookup(t, op->cache_key, now, t->s->has_policy ? t->s->policy.cache_ttl_s : 0, &hit);
                if (r >= 0) {
                        struct store_job rec = *job;
                        rec.state = KILN_JOB_DONE;
                        rec.finished_ms = rec.submitted_ms;
                        rec.queue_ms = rec.run_ms = rec.batch = 0;
                        memcpy(rec.backend, hit.backend, sizeof(rec.backend));
                        rec.error_code = rec.error_message = NULL;
                        r = store_job_put(t, &rec);
                        if (r >= 0)
                                r = store_result_alias(t, job->id, hit.blob);
                        if (r >= 0 && job->idem_key)
                                r = store_idem_put(t, job->tenant, job->idem_key, job->id);
                        if (r >= 0)
                                r = store_result_get(t, job->id, &op->result_out, &op->result_size);
                        if (r >= 0 && !(op->job_out = store_job_dup(&rec)))
                                r = -ENOMEM;
                        if (r < 0)
                                return r;
                        op->outcome = STORE_SUBMIT_CACHED;
                        op->hit = hit;
                        t->delta.hits++;
                        return 0;
                }
                if (r != -ENOENT)
                        return r;
                t->delta.misses++;
        }
        r = store_job_put(t, job);
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
        r = store_cache_lookup(t, op->cache_key, wall_ms(), t->s->has_policy ? t->s->policy.cache_ttl_s : 0, &hit);
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
        return store_result_put(t, op->job->id, op->result_size, op_write_piece, op);
}

/* RESULT_GET: the job, and its result when there is one (a job without a result gives
 * status 0, result_out NULL and result_size 0). */
static int op_apply_result_get(struct store_txn *t, struct store_op *op)
{
        struct store_job *job;
        uint8_t *data = NULL;
        size_t size = 0;
        int r;

        r = store_job_get(t, op->id, &job);
        if (r < 0)
                return r;
        r = store_result_get(t, op->id, &data, &size);
        if (r < 0 && r != -ENOENT) {
                store_job_free(job);
                return r;
        }
        op->job_out = job;
        op->result_out = data;
        op->result_size = size;
        return 0;
}

static int op_apply(struct store_txn *t, struct store_op *op)
{
        switch (op->type) {
        case STORE_OP_JOB_PUT:
                return op_apply_put(t, op);
        case STORE_OP_JOB_GET:
                return store_job_get(t, op->id, &op->job_out);
        case STORE_OP_RESULT_GET:
                return op_apply_result_get(t, op);
        case STORE_OP_LIST:
                return store_job_list(t, &op->list, &op->list_out, &op->list_n, &op->list_more);
        case STORE_OP_DELETE:
                return store_job_delete(t, op->id);
        case STORE_OP_BARRIER:
                return 0;
        case STORE_OP_SUBMIT:
                return op_apply_submit(t, op);
        case STORE_OP_CACHE_PURGE:
                return store_cache_purge(t, op->purge_kind, &op->purge_n);
        case STORE_OP_CACHE_ANSWER:
                return op_apply_cache_answer(t, op);
        }
        return -EINVAL;
}

/* Commits t; `unsynced`: without the fsync that store.sync=full gives every commit
 * (the caller marks the writer dirty, so the next synced commit or batch sync
 * flushes it). */
static int writer_commit(struct store_writer *w, struct store_txn *t, bool unsynced)
{
        if (unsynced)
                mdb_env_set_flags(w->s->env, MDB_NOSYNC, 1);
        int r = store_txn_commit(t);
        if (unsynced)
                mdb_env_set_flags(w->s->env, MDB_NOSYNC, 0);
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
                op_clear_outputs(op);
                op->status = op_apply(t, op);
                if (t->err < 0)
                        break;
        }
        /* Records of jobs already answered from the cache (CACHE_ANSWER) wait for no
         * one: a transaction of nothing else is committed without fsync, and the
         * next synced commit or the batch sync flushes it (as maintenance does). */
        bool lazy = w->s->sync == STORE_SYNC_FULL;
        for (op = first, i = 0; lazy && i < n; op = op->next, i++)
                lazy = op->type == STORE_OP_CACHE_ANSWER;
        r = writer_commit(w, t, lazy);
        if (r < 0) {
                for (op = first, i = 0; i < n; op = op->next, i++)
                        op_free_outputs(op);
                return r;
        }
        atomic_fetch_add(&w->commits, 1);
        atomic_fetch_add(&w->ops, n);
        if (w->s->sync == STORE_SYNC_BATCH || lazy)
                w->dirty = true;
        return 0;
}

/* Runs one batch: all ops in one transaction; when that fails for lack of space, each
 * op in its own transaction, so only the ops that do not fit fail. Then calls the done
 * callbacks in FIFO order. */
static void writer_run_batch(struct store_writer *w, struct store_op *batch, size_t n)
{
        struct store_op *op, *next;
        int r;

        r = writer_apply_txn(w, batch, n);
        if (r == -ENOSPC && n > 1) {
                for (op = batch; op; op = op->next) {
                        r = writer_apply_txn(w, op, 1);
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
        /* A failed sync is retried at the next interval; the data stays committed. */
        if (store_sync(w->s) >= 0)
                w->dirty = false;
        w->last_sync_ms = now;
}

/* Waits (lock held) until there is work, a stop, a batch sync or maintenance is due. */
static void writer_wait(struct store_writer *w)
{
        while (!w->head && !w->stopping) {
                int64_t deadline = INT64_MAX;
                struct timespec ts;

                if (w->dirty)
                        deadline = w->last_sync_ms + WRITER_SYNC_INTERVAL_MS;
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

/* One round of store_maintain in its own transaction, committed without fsync: what
 * it deletes is rebuilt or re-deleted after a crash, so it need not wait for the disk
 * (the next synced commit or batch sync flushes it). */
static void writer_maintain(struct store_writer *w)
{
        struct store_txn *t;
        int n = 0, r;

        w->next_maint_ms = now_ms() + MAINT_INTERVAL_MS;
        if (store_txn_begin(w->s, true, &t) < 0)
                return;
        n = store_maintain(t, &w->s->policy, wall_ms(), MAINT_BUDGET);
        if (n <= 0) {
                store_txn_abort(t);
                return;
        }
        r = writer_commit(w, t, w->s->sync == STORE_SYNC_FULL);
        if (r >= 0) {
                w->dirty = true;
                if (n >= MAINT_BUDGET)
                        w->next_maint_ms = now_ms(); /* more is due: again after queued ops */
        }
}

static void *writer_main(void *arg)
{
        struct store_writer *w = arg;

        w->last_sync_ms = now_ms();
        for (;;) {
                struct store_op *batch, *last = NULL;
                size_t n = 0;
                bool stop;

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

                if (batch)
                        writer_run_batch(w, batch, n);
                if (w->s->has_policy && !stop && now_ms() >= w->next_maint_ms)
                        writer_maintain(w);
                writer_maybe_sync(w, stop);
                if (stop && !batch)
                        break;
        }
        return NULL;
}

/* Starts the writer thread (with all signals blocked) over an open store. Returns >= 0
 * or -errno. */
int store_writer_start(struct store *s, struct store_writer **ret)
{
        struct store_writer *w = calloc(1, sizeof(*w));
        pthread_condattr_t attr;
        sigset_t all, old;
        int r;

        if (!w)
                return -ENOMEM;
        w->s = s;
        r = pthread_mutex_init(&w->lock, NULL);
        if (r != 0) {
                free(w);
                return -r;
        }
        r = pthread_condattr_init(&attr);
        if (r == 0) {
                r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
                if (r == 0)
                        r = pthread_cond_init(&w->cond, &attr);
                pthread_condattr_destroy(&attr);
        }
        if (r != 0) {
                pthread_mutex_destroy(&w->lock);
                free(w);
                return -r;
        }
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = pthread_create(&w->thread, NULL, writer_main, w);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0) {
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
