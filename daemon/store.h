/* The job store: jobs and their results in LMDB.
 *
 * store.c is the only file that includes lmdb.h; LMDB codes are converted to -errno
 * there (MDB_NOTFOUND -> -ENOENT, MDB_MAP_FULL -> -ENOSPC, MDB_CORRUPTED and other
 * LMDB-specific codes -> -EIO).
 *
 * Two layers:
 *  - a synchronous layer (store_txn_*, store_job_*, store_result_*) used by the writer
 *    thread and by unit tests;
 *  - the writer (store_writer_*): one thread that takes queued operations, applies all
 *    that are waiting in ONE write transaction (group commit: many submissions, one
 *    fsync), commits, then calls each operation's `done` callback on the writer thread.
 *    The event loop never touches LMDB: it submits operations and gets callbacks.
 *
 * Layout: database "jobs" (key: 16-byte job id, value: a versioned binary record),
 * "results" (key: job id, value: result blob), "pending" (key: job id, empty value;
 * present exactly while the job is queued or running, scanned at start to recover).
 *
 * The result cache and job retention (SPEC §2.2, §4 [cache] [jobs]):
 *  - "cache": 16-byte key hash -> entry (kind, kind version, model version, canonical
 *    params, size, backend, created, last used, blob id). A lookup compares the stored
 *    kind, versions and params text with the request, so a hash collision is a miss,
 *    never a wrong result.
 *  - "cache_lru" (last used ms BE + hash) and "cache_ttl" (created ms BE + hash):
 *    the orders in which entries are evicted (over cache.max_bytes) and expired.
 *  - Result blobs are shared, not copied: a cache entry references the pieces of the
 *    job that produced them, and a job answered from the cache has an "alias" entry
 *    (job id -> blob id). "refs" counts holders of a blob (absent = 1, its own job);
 *    the pieces are deleted when the last holder (job or entry) goes.
 *  - "idem": tenant NUL key -> job id (idempotency keys, per tenant).
 *  - "retain": finished ms BE + job id, for purging finished jobs after jobs.retain_s. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kiln_job_state {
        KILN_JOB_QUEUED,
        KILN_JOB_RUNNING,
        KILN_JOB_DONE,
        KILN_JOB_FAILED,
        KILN_JOB_CANCELLED,
        KILN_JOB_EXPIRED,
};

/* "queued", "running", ...; NULL for an invalid value. */
const char *kiln_job_state_name(enum kiln_job_state s);
/* Returns >= 0 and sets *ret, or -EINVAL. */
int kiln_job_state_from_name(const char *name, enum kiln_job_state *ret);
static inline bool kiln_job_state_is_final(enum kiln_job_state s)
{
        return s >= KILN_JOB_DONE;
}

/* One job as stored. Strings are owned by the record (store_job_free frees them). */
struct store_job {
        uint8_t id[16];            /* UUIDv7, big-endian: byte order == time order */
        char kind[32];
        char tenant[64];
        uint8_t priority;          /* 0 critical .. 4 batch */
        uint8_t state;             /* enum kiln_job_state */
        int64_t submitted_ms;      /* Unix epoch milliseconds */
        int64_t finished_ms;       /* 0 while not final */
        int64_t deadline_ms;       /* absolute; 0 = none */
        uint32_t queue_ms, run_ms; /* measured, set when final */
        uint32_t batch;            /* batch size it ran in, 0 if it never ran */
        char backend[16];          /* "cpu", "cuda:0", "" */
        char *params;              /* canonical params JSON text, NUL-terminated */
        char *idem_key;            /* idempotency key or NULL */
        char *error_code;          /* protocol error code when failed/cancelled/expired, else NULL */
        char *error_message;       /* human sentence or NULL */
};

/* Deep copy / free. store_job_free accepts NULL. dup returns NULL on ENOMEM. */
struct store_job *store_job_dup(const struct store_job *j);
void store_job_free(struct store_job *j);

enum store_sync_mode {
        STORE_SYNC_FULL,  /* fsync at every commit */
        STORE_SYNC_BATCH, /* no fsync at commit; store_sync() at most every 100 ms by the writer */
        STORE_SYNC_OFF,   /* never fsync (crash of the process loses nothing, power loss may) */
};

struct store;
struct store_txn;

/* Opens (creating if needed) the environment in directory `path` (created with mode
 * 0700 if missing) with a map of `map_size` bytes, and runs mdb_reader_check().
 * Returns >= 0 or -errno. */
int store_open(const char *path, uint64_t map_size, enum store_sync_mode sync, struct store **ret);
/* Closes the environment. Accepts NULL. The writer must be stopped first. */
void store_close(struct store *s);
/* Forces data to disk (mdb_env_sync(force=1)). Returns >= 0 or -errno. */
int store_sync(struct store *s);

int store_txn_begin(struct store *s, bool write, struct store_txn **ret);
/* Commits (and frees) the transaction. On error the transaction is aborted. */
int store_txn_commit(struct store_txn *t);
/* Aborts (and frees) the transaction. Accepts NULL. */
void store_txn_abort(struct store_txn *t);

/* Inserts or replaces the record; keeps "pending" in step with job->state. */
int store_job_put(struct store_txn *t, const struct store_job *job);
/* Reads a record as a new copy (caller frees). -ENOENT when absent. */
int store_job_get(struct store_txn *t, const uint8_t id[16], struct store_job **ret);
/* Deletes the record, its pending entry and idempotency key, and its result (or its
 * share of a result also held by cache entries or other jobs). -ENOENT when absent. */
int store_job_delete(struct store_txn *t, const uint8_t id[16]);

/* Writes a result piece: bytes [offset, offset + len) of the result, into dst. */
typedef void (*store_result_writer)(void *opaque, uint8_t *dst, size_t offset, size_t len);

/* Stores the job's result of `size` bytes (replacing any previous one) by calling
 * `write` for each consecutive piece, straight into the map (MDB_RESERVE). Results
 * are kept as pieces of 16 pages (64 KiB less a page header) under (id, piece
 * number): one put of a value of more than ~256 MiB makes LMDB 0.9.24 spill its dirty
 * list and leak the 1 MiB spill list of the transaction, and same-sized small pieces
 * keep the free space reusable when results come and go (retention, cache eviction).
 * Returns >= 0, -ENOSPC when the map is full (the transaction must then be aborted),
 * or -errno. */
int store_result_put(struct store_txn *t, const uint8_t id[16], size_t size, store_result_writer write,
                     void *opaque);
/* Copies the result out (malloc'd, caller frees). -ENOENT when absent. */
int store_result_get(struct store_txn *t, const uint8_t id[16], uint8_t **ret_data, size_t *ret_size);

/* Calls cb for every job in "pending", oldest first. cb returns < 0 to stop (that
 * value is returned). The record passed to cb lives only during the call. */
int store_pending_foreach(struct store_txn *t, int (*cb)(const struct store_job *job, void *userdata),
                          void *userdata);

struct store_list_query {
        const char *tenant;        /* required: only this tenant's jobs */
        int state;                 /* enum kiln_job_state, or -1 for any */
        const char *kind;          /* NULL for any */
        bool has_after;            /* start strictly before (older than) this id */
        uint8_t after[16];
        uint32_t limit;            /* 1..1000 */
};

/* Lists matching jobs newest first. Writes up to q->limit new records into ret_jobs
 * (caller frees each with store_job_free, and the array with free), their count into
 * *ret_n, and whether more match after the last into *ret_more. */
int store_job_list(struct store_txn *t, const struct store_list_query *q, struct store_job ***ret_jobs,
                   size_t *ret_n, bool *ret_more);

/* ---- the result cache ---- */

/* What identifies a cached result. `hash` indexes the entry (any 128-bit hash of the
 * other fields; kilnd uses cache_key_compute); the other fields are stored and
 * compared on every hit. Strings are borrowed. */
struct store_cache_key {
        uint8_t hash[16];
        const char *kind;
        uint32_t version;       /* the kind's implementation version */
        const char *model;      /* model or collection version, "" when the kind has none */
        const char *params;     /* canonical params JSON */
};

/* Limits the writer enforces in the background (store_writer_set_policy). */
struct store_policy {
        uint64_t cache_max_bytes;   /* evict least recently used entries beyond it */
        uint32_t cache_ttl_s;       /* expire entries this long after they were created */
        uint32_t retain_s;          /* purge finished jobs this long after they finished */
};

/* Counters since the store was opened (bytes and entries: current totals). */
struct store_cache_stats {
        uint64_t hits, misses, bytes, entries;
        uint64_t evicted, expired, purged, stored;
        uint64_t jobs_purged;       /* finished jobs removed by retention */
};

/* One cache hit, as found by store_cache_lookup. */
struct store_cache_hit {
        uint8_t blob[16];           /* whose result pieces hold it */
        uint64_t size;
        char backend[16];
        int64_t created_ms;         /* wall clock: the entry expires cache_ttl_s after it */
        uint64_t generation;        /* store_cache_generation() when it was found */
};

/* Looks up `key`: -ENOENT when absent, when the stored identity differs from the
 * key's (hash collision) or when the entry is older than ttl_s at now_ms. A hit
 * bumps the entry's last-used time to now_ms (a write). Returns >= 0 or -errno. */
int store_cache_lookup(struct store_txn *t, const struct store_cache_key *key, int64_t now_ms, uint32_t ttl_s,
                       struct store_cache_hit *ret);
/* Records that the result of job `blob` (already stored, `size` bytes, computed on
 * `backend`) answers `key`, replacing any entry with the same hash. A result larger
 * than max_bytes is not cached (returns 0). Returns >= 0 or -errno. */
int store_cache_put(struct store_txn *t, const struct store_cache_key *key, const uint8_t blob[16], uint64_t size,
                    const char *backend, int64_t now_ms, uint64_t max_bytes);
/* Deletes the entries of `kind` (NULL: all) and writes how many into *ret_n.
 * Returns >= 0 or -errno. */
int store_cache_purge(struct store_txn *t, const char *kind, uint64_t *ret_n);
/* Makes job `id` (its record already stored) answer with the result of `blob`.
 * Returns >= 0 or -errno. */
int store_result_alias(struct store_txn *t, const uint8_t id[16], const uint8_t blob[16]);
/* A number that changes whenever a cache entry is deleted or replaced (purge, TTL,
 * eviction, a dangling entry): a copy of a hit taken at generation G is still what
 * the store holds while the generation is G. Thread-safe, no transaction. */
uint64_t store_cache_generation(struct store *s);
/* A consistent snapshot of the cache counters; thread-safe, no transaction. */
void store_cache_stats(struct store *s, struct store_cache_stats *ret);

/* Idempotency keys: -ENOENT when `tenant` never used `key`. */
int store_idem_get(struct store_txn *t, const char *tenant, const char *key, uint8_t ret_id[16]);
int store_idem_put(struct store_txn *t, const char *tenant, const char *key, const uint8_t id[16]);

/* One round of background work at now_ms: purges finished jobs older than
 * retain_s, expires cache entries older than cache_ttl_s and evicts least recently
 * used entries while the cache holds more than cache_max_bytes, deleting at most
 * `budget` things. Returns how many were deleted (== budget: more may be due), or
 * -errno. */
int store_maintain(struct store_txn *t, const struct store_policy *p, int64_t now_ms, unsigned budget);

/* Number of jobs and pending jobs, and bytes used by the map (for stats/limits). */
int store_stat(struct store_txn *t, uint64_t *ret_jobs, uint64_t *ret_pending, uint64_t *ret_bytes);

/* ---- the writer thread ---- */

enum store_op_type {
        STORE_OP_JOB_PUT,      /* job (+ optional result, written with `write_result`) */
        STORE_OP_JOB_GET,      /* fills op->job_out (read) */
        STORE_OP_RESULT_GET,   /* fills op->job_out and op->result_out/result_size (read) */
        STORE_OP_LIST,         /* fills op->list_out/list_n/list_more (read) */
        STORE_OP_DELETE,
        STORE_OP_BARRIER,      /* nothing; done after everything queued before it */
        STORE_OP_SUBMIT,       /* a new job: idempotency, cache lookup, then put (below) */
        STORE_OP_CACHE_PURGE,  /* store_cache_purge(purge_kind), count in purge_n */
        STORE_OP_CACHE_ANSWER, /* a job already answered from a copy of a cache hit (below) */
};

/* What STORE_OP_SUBMIT did with op->job (a queued record with tenant and idem_key):
 *  IDEM:   the tenant used job->idem_key before: nothing written; job_out is the
 *          original job, and result_out its result when it is done;
 *  CACHED: op->cache_key was in the cache: job written as done (submitted_ms ==
 *          finished_ms, backend of the original computation) answering with the
 *          cached result; job_out is that record, result_out the result;
 *  STORED: job written as queued (and its idempotency key recorded). */
enum store_submit_outcome {
        STORE_SUBMIT_STORED,
        STORE_SUBMIT_IDEM,
        STORE_SUBMIT_CACHED,
};

/* CACHE_ANSWER: op->job is a done record answered with a copy of the cache entry
 * op->cache_key that named result op->blob. The writer writes the record and, while
 * the entry still names that result, aliases the job to it (bumping its last use
 * and counting a hit); when the entry has gone meanwhile, it writes the result of
 * result_size bytes itself through write_result. The answer was sent before the
 * commit: a cache hit needs no durable record first (SPEC §2.2). */

/* One queued operation. The caller allocates it (usually embedded in its own struct),
 * fills the input fields and `done`, and must not touch it until `done` is called. */
struct store_op {
        enum store_op_type type;
        struct store_op *next;   /* private to the writer */

        /* inputs */
        struct store_job *job;   /* JOB_PUT: the record to write (not freed by the writer) */
        size_t result_size;      /* JOB_PUT: bytes of result to write, 0 for none */
        /* JOB_PUT with result_size > 0: writes bytes [offset, offset + len) of the
         * result into dst. Called once per piece, in order; may be called again for
         * the same range when a batch is retried, and must write the same bytes. */
        void (*write_result)(struct store_op *op, uint8_t *dst, size_t offset, size_t len);
        uint8_t id[16];          /* GET/RESULT_GET/DELETE */
        struct store_list_query list; /* LIST (its strings must live until done) */
        /* SUBMIT: the key to look up (NULL: no lookup). JOB_PUT of a done job with a
         * result: the key to cache it under (NULL: not cached). Borrowed until done. */
        const struct store_cache_key *cache_key;
        const char *purge_kind;  /* CACHE_PURGE: NULL for all */
        uint8_t blob[16];        /* CACHE_ANSWER: the result the answer used */

        /* outputs, owned by the caller once done is called */
        int status;              /* >= 0 or -errno */
        struct store_job *job_out;
        uint8_t *result_out;
        struct store_job **list_out;
        size_t list_n;
        bool list_more;
        enum store_submit_outcome outcome; /* SUBMIT */
        struct store_cache_hit hit; /* SUBMIT with outcome CACHED: the entry found */
        uint64_t purge_n;        /* CACHE_PURGE */

        /* Called on the writer thread after the transaction holding this op has been
         * committed (or failed: op->status < 0). Must be quick and must not call back
         * into the writer synchronously. */
        void (*done)(struct store_op *op);
        void *userdata;
};

struct store_writer;

/* Starts the writer thread over an open store. Returns >= 0 or -errno. */
int store_writer_start(struct store *s, struct store_writer **ret);
/* Queues an operation (thread-safe, never blocks on disk). */
void store_writer_submit(struct store_writer *w, struct store_op *op);
/* Queues a chain of operations linked through op->next, first to last, at once:
 * one lock and one wake-up for all of them. */
void store_writer_submit_chain(struct store_writer *w, struct store_op *first, struct store_op *last);
/* Finishes every queued operation, stops and joins the thread, frees w. Accepts NULL. */
void store_writer_stop(struct store_writer *w);
/* Sets the limits the writer enforces about once a second (store_maintain); until
 * the first call it enforces none. Thread-safe. */
void store_writer_set_policy(struct store_writer *w, const struct store_policy *p);
/* Commit statistics since start: transactions committed and operations in them. */
void store_writer_stats(struct store_writer *w, uint64_t *ret_commits, uint64_t *ret_ops);
