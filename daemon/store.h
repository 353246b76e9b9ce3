/* The job store: jobs, their inputs and results, the result cache, and stored objects,
 * in LMDB.
 *
 * The store's files (daemon/store.c and daemon/store_*.c, sharing store_impl.h) are
 * the only ones that include lmdb.h; LMDB codes are converted to -errno there
 * (MDB_NOTFOUND -> -ENOENT, MDB_MAP_FULL -> -ENOSPC, MDB_CORRUPTED and other
 * LMDB-specific codes -> -EIO). The store knows bytes and versions: kinds and classes
 * are names to it, never meanings.
 *
 * Two layers:
 *  - a synchronous layer (store_txn_*, store_job_*, store_result_*, store_input_*,
 *    store_object_*) used by the writer thread, by unit tests, and for reads by any
 *    thread: a read transaction (store_txn_begin(s, false, ...)) may be opened on any
 *    thread at any time, and never waits for the writer;
 *  - the writer (store_writer_*): one thread that takes queued operations, applies all
 *    that are waiting in ONE write transaction (group commit: many submissions, one
 *    fsync), commits, then calls each operation's `done` callback on the writer thread.
 *    The event loop never touches LMDB: it submits operations and gets callbacks.
 *
 * Layout (keys | values):
 *  - "jobs":     16-byte job id | a versioned binary record (store_records.c);
 *  - "pending":  job id | empty; present exactly while the job is queued or running,
 *                scanned at start to recover;
 *  - "results":  job id + u32 BE piece | a piece of the job's result blob;
 *  - "inputs":   job id + u32 BE piece | a piece of the job's stored input (its input
 *                arrays, written with its submit; same pieces as results);
 *  - "idem":     tenant NUL key | job id (idempotency keys, per tenant);
 *  - "retain":   finished ms BE + job id | empty, for purging finished jobs (with their
 *                results and inputs) after jobs.retain_s.
 *
 * The result cache (SPEC §2.2, §4 [cache] [jobs]):
 *  - "cache": 16-byte key hash -> entry (kind, kind version, model version, canonical
 *    params, size, backend, created, last used, blob id). A lookup compares the stored
 *    kind, versions and params text with the request, so a hash collision is a miss,
 *    never a wrong result.
 *  - "cache_recent": u64 BE sequence number -> hash + entry: new entries, appended in
 *    the order they come and found through an index in memory; merged into "cache"
 *    in hash order once there are 262,144 (store_cache_recent.c says why).
 *  - "cache_lru" (last used ms BE + hash) and "cache_ttl" (created ms BE + hash):
 *    the orders in which entries are evicted (over cache.max_bytes) and expired.
 *  - Result blobs are shared, not copied: a cache entry references the pieces of the
 *    job that produced them, and a job answered from the cache has an "alias" entry
 *    (job id -> blob id). "refs" counts holders of a blob (absent = 1, its own job);
 *    the pieces are deleted when the last holder (job or entry) goes.
 *
 * Stored objects (SPEC §2.4: models, vector collections), per tenant, durable like
 * jobs, versioned. Names: tenant 1..63 bytes, class 1..31, name 1..128 (C strings);
 * item ids 1..256 arbitrary bytes.
 *  - "objects":      tenant NUL class NUL name | header: u8 format (1), u64 version,
 *                    i64 created_ms, i64 updated_ms, u64 bytes, u64 count, u32 meta_len,
 *                    meta (opaque to the store: the class keeps e.g. metric and dim there);
 *  - "object_blob":  tenant NUL class NUL name NUL + u32 BE piece | a piece of the
 *                    object's one opaque blob (a model's uploaded JSON; pieces as results);
 *  - "object_items": tenant NUL class NUL name NUL item id | the item's bytes (a
 *                    collection's vector rows), iterated in id byte order;
 *  - "object_usage": tenant | u64 objects, u64 bytes: the tenant's totals, kept in step
 *                    with every change, for the limits (struct store_object_limits);
 *  - "object_gone":  tenant NUL class NUL name | u64 last version of the name before its
 *                    latest drop, so a new object of that name goes on from it: a
 *                    version is never reused, and what was cached under an old version
 *                    is never served again. Kept when the name is put anew, so the
 *                    object stored now is known to begin one past it
 *                    (store_object_began; one small entry per dropped name, for good).
 *  An object's `bytes` is its blob's size plus, for each item, its id's and its value's
 *  sizes. Every change (put, items put, items delete) bumps the version by one. */
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
        /* Since record version 2 (a version 1 record reads as 0, NULL, 0): */
        uint32_t attempts;         /* times the job was started on a backend (jobs.max_retries) */
        char *object;              /* the stored object it is bound to, "CLASS/NAME@VERSION"
                                    * (e.g. "risk.model/acme@3"), or NULL */
        uint64_t input_size;       /* bytes of its stored input ("inputs"), 0 when none */
        /* Since record version 3 (NULL in older records): */
        char *error_field;         /* the input that failed it ("params.collection"), or NULL */
};

/* Deep copy / free. store_job_free accepts NULL. dup returns NULL on ENOMEM. */
struct store_job *store_job_dup(const struct store_job *j);
void store_job_free(struct store_job *j);

enum store_sync_mode {
        STORE_SYNC_FULL,  /* fsync at every commit */
        STORE_SYNC_BATCH, /* no fsync at commit; store_sync() every 100 ms on a thread of its own */
        STORE_SYNC_OFF,   /* never fsync (crash of the process loses nothing, power loss may) */
};

struct store;
struct store_txn;

/* The file in a store's directory that one process at a time holds (flock), with
 * its pid: LMDB lets several processes share an environment, and two kilnds on one
 * store would each recover and run the other's jobs. */
#define STORE_LOCK_FILE "kilnd.lock"

/* Opens (creating if needed) the environment in directory `path` (created with mode
 * 0700 if missing) with a map of `map_size` bytes, and runs mdb_reader_check().
 * Returns >= 0, -EBUSY when another process has the store open (store_holder says
 * which), or -errno. */
int store_open(const char *path, uint64_t map_size, enum store_sync_mode sync, struct store **ret);
/* The pid written in the lock file of the store in `path`, or 0 when unknown. */
long store_holder(const char *path);
/* The pieces of inputs without a job record (left by a kill -9 while a big input
 * was being written) that store_open deleted. */
size_t store_orphan_pieces(const struct store *s);
/* 0, or why store_open could not delete them (they stay for the next start). */
int store_orphan_error(const struct store *s);
/* Closes the environment. Accepts NULL. The writer must be stopped first. */
void store_close(struct store *s);
/* Forces data to disk (mdb_env_sync(force=1)). Returns >= 0 or -errno. */
int store_sync(struct store *s);

/* How much the store can still take, so that new work can be refused before a full
 * map or a full disk makes a write fail. */
struct store_room {
        uint64_t map_free;  /* bytes LMDB can still place in the map: its freelist's pages
                             * + (map size - used end of the map) */
        uint64_t fs_free;   /* bytes free to unprivileged users on the store's file system
                             * (statvfs f_bavail * f_frsize) */
        uint64_t room;      /* what can still be written: the freelist's pages, any file
                             * beyond the used end, + min(map size - file end, fs_free) */
        uint64_t map_size;  /* the map's size */
        uint64_t used;      /* bytes of the map in use (its used end) */
};
/* Fills *ret (thread-safe, any thread; a short read transaction, a walk of LMDB's
 * freelist, fstat and fstatvfs: cheap enough to call every second). Freelist pages
 * still held by an old read transaction count as free. A value of many pages needs
 * them contiguous (a result's piece: 16), so a fragmented freelist may take less
 * than `room` says. Returns >= 0 or -errno. */
int store_room(struct store *s, struct store_room *ret);

int store_txn_begin(struct store *s, bool write, struct store_txn **ret);
/* Commits (and frees) the transaction. On error the transaction is aborted. */
int store_txn_commit(struct store_txn *t);
/* Aborts (and frees) the transaction. Accepts NULL. */
void store_txn_abort(struct store_txn *t);

/* Inserts or replaces the record; keeps "pending" in step with job->state. */
int store_job_put(struct store_txn *t, const struct store_job *job);
/* The same for a job whose id was never stored (a job that ran before anything of it
 * was written): nothing to replace, so one lookup fewer. */
int store_job_put_new(struct store_txn *t, const struct store_job *job);
/* Reads a record as a new copy (caller frees). -ENOENT when absent. */
int store_job_get(struct store_txn *t, const uint8_t id[16], struct store_job **ret);
/* Deletes the record, its pending entry and idempotency key, its stored input, and its
 * result (or its share of a result also held by cache entries or other jobs). -ENOENT
 * when absent. */
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

/* Ranged reads, to stream a result out piece by piece without copying it whole. A
 * reader takes a short read transaction for each call (store_txn_begin(s, false, ..)
 * then store_txn_abort): between calls the blob may be purged, which the next call
 * reports as -ENOENT. That is cheap enough for the event loop without keeping a reset
 * transaction around (measured: begin + abort 0.14 us, plus a 16 KiB read 0.86 us). */

/* Writes into ret_blob the blob that holds job `id`'s result (the job itself, or the
 * blob its alias names when it was answered from the cache) and into *ret_size its
 * total size in bytes. Returns >= 0, -ENOENT when the job has no result, -EIO when its
 * pieces are inconsistent, or -errno. */
int store_result_locate(struct store_txn *t, const uint8_t id[16], uint8_t ret_blob[16], uint64_t *ret_size);
/* Copies bytes [offset, offset + len) of result blob `blob` (from store_result_locate,
 * or a cache hit's store_cache_hit.blob) into dst, straight from the pieces in the map.
 * len 0 only checks offset <= size. Returns >= 0, -ENOENT when the blob or a piece
 * the range needs is not there (purged meanwhile), -EINVAL when the range goes past
 * the end of the blob, -EIO or -errno; on error dst holds unspecified bytes. */
int store_result_read(struct store_txn *t, const uint8_t blob[16], uint64_t offset, void *dst, size_t len);

/* ---- stored inputs ----
 *
 * A job's input arrays (binary parts), kept so that a job recovered after a restart
 * runs on the same input. Stored in pieces like results, in "inputs"; deleted with the
 * job (store_job_delete, retention). */

/* Stores the input of job `id`, `size` bytes (replacing any previous one; 0 bytes is
 * an empty input, not none), by calling `write` for each consecutive piece. Returns
 * >= 0, -ENOSPC when the map is full (the transaction must then be aborted), or -errno. */
int store_input_put(struct store_txn *t, const uint8_t id[16], size_t size, store_result_writer write,
                    void *opaque);
/* Copies the input of `id` out (malloc'd, caller frees; an empty input gives a
 * non-NULL pointer and size 0). Returns >= 0, -ENOENT when none is stored, or -errno. */
int store_input_get(struct store_txn *t, const uint8_t id[16], uint8_t **ret_data, size_t *ret_size);
/* Deletes the input of `id` (a finished job that will never run again need not keep
 * it; its record's input_size is the caller's to update). Returns >= 0 (also when
 * there was none) or -errno. */
int store_input_delete(struct store_txn *t, const uint8_t id[16]);

/* Calls cb for every job in "pending", oldest first. cb returns < 0 to stop (that
 * value is returned). The record passed to cb lives only during the call. */
int store_pending_foreach(struct store_txn *t, int (*cb)(const struct store_job *job, void *userdata),
                          void *userdata);

struct store_list_query {
        const char *tenant;        /* required: only this tenant's jobs */
        int state;                 /* enum kiln_job_state, or -1 for any; an unfinished
                                    * record (its job's state lives in memory: a running
                                    * one is stored queued) matches any */
        const char *kind;          /* NULL for any */
        bool has_after;            /* start strictly before (older than) this id */
        uint8_t after[16];
        uint32_t limit;            /* 1..1000 */
};

/* The most of a tenant's jobs one store_job_list call reads: about half a
 * millisecond of the writer's time. */
#define STORE_LIST_SCAN_MAX 4096

/* Lists matching jobs newest first. Writes up to q->limit new records into ret_jobs
 * (caller frees each with store_job_free, and the array with free), their count into
 * *ret_n, and whether more may match after them into *ret_more; then ret_next is
 * the id to list on `after`. A call reads at most a bounded number of the tenant's
 * jobs: fewer than q->limit (even none) may come back with *ret_more set. */
int store_job_list(struct store_txn *t, const struct store_list_query *q, struct store_job ***ret_jobs,
                   size_t *ret_n, bool *ret_more, uint8_t ret_next[16]);

/* ---- the result cache ---- */

/* What identifies a cached result. `hash` is a 256-bit digest of the whole identity
 * (kind, version, model, params; kilnd uses cache_key_compute): its first 16 bytes
 * index the entry, and an entry matches when all 32, the kind and the version do.
 * `model` and `params` are compared only with entries written before that (format
 * version 1, which stored them instead of the digest's second half). Strings are
 * borrowed. */
struct store_cache_key {
        uint8_t hash[32];
        const char *kind;
        uint32_t version;       /* the kind's implementation version */
        const char *model;      /* model or collection version, "" when the kind has none */
        const char *params;     /* canonical params JSON */
        const char *tenant;     /* whose entry it is (kept for cache.purge), NULL for none */
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
        uint64_t recent;            /* entries in "cache_recent" now (some also in "cache") */
        uint64_t merges;            /* merges of them into "cache" finished since open */
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
 * bumps the entry's last-used time to now_ms (a write; not in a read transaction).
 * Returns >= 0 or -errno. */
int store_cache_lookup(struct store_txn *t, const struct store_cache_key *key, int64_t now_ms, uint32_t ttl_s,
                       struct store_cache_hit *ret);
/* Whether the cache holds a live entry for `key` (store_cache_lookup at the wall
 * clock's now in a read transaction of its own: any thread, bumps and counts
 * nothing). True also when that cannot be told (no reader slot). */
bool store_cache_holds(struct store *s, const struct store_cache_key *key, uint32_t ttl_s);
/* Records that the result of job `blob` (already stored, `size` bytes, computed on
 * `backend`) answers `key`, replacing any entry with the same hash. A result larger
 * than max_bytes is not cached (returns 0). Returns >= 0 or -errno. */
int store_cache_put(struct store_txn *t, const struct store_cache_key *key, const uint8_t blob[16], uint64_t size,
                    const char *backend, int64_t now_ms, uint64_t max_bytes);
/* Deletes the entries of `kind` (NULL: all) of `tenant` (NULL: every tenant's;
 * else its own, and those whose tenant is not known: entries written before they
 * kept one) and writes how many into *ret_n. Returns >= 0 or -errno. */
int store_cache_purge(struct store_txn *t, const char *kind, const char *tenant, uint64_t *ret_n);
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

/* ---- stored objects (SPEC §2.4) ----
 *
 * An object is named by (tenant, class, name) and holds a header (version, times,
 * bytes, count, opaque meta), one opaque blob and a set of items (id -> bytes). The
 * writer applies changes; reads may run in a read transaction on any thread. Values
 * read are copied out before the transaction ends, except where a callback is given
 * borrowed bytes (valid during the call only). */

#define STORE_OBJECT_TENANT_MAX 63
#define STORE_OBJECT_CLASS_MAX 31
#define STORE_OBJECT_NAME_MAX 128
#define STORE_OBJECT_ITEM_ID_MAX 256
#define STORE_OBJECT_META_MAX 65536           /* bytes of meta */
#define STORE_OBJECT_ITEM_MAX (16u << 20)     /* bytes of one item's value */

/* Which object. Strings are borrowed: non-empty C strings of at most
 * STORE_OBJECT_TENANT_MAX, STORE_OBJECT_CLASS_MAX and STORE_OBJECT_NAME_MAX bytes
 * (anything else is -EINVAL). `cls` is the object's class ("risk.model", ...). */
struct store_object_ref {
        const char *tenant;
        const char *cls;
        const char *name;
};

/* Limits checked inside the write transaction that makes the change, so two
 * concurrent changes cannot both pass. 0 = no limit; a NULL pointer = none at all.
 * Shrinking an object never fails on max_tenant_bytes. A change refused by a limit
 * writes nothing and returns:
 *   -EFBIG      the object would hold more than max_object_bytes;
 *   -EDQUOT     the change would create an object while the tenant already holds
 *               max_objects_per_tenant;
 *   -EOVERFLOW  the tenant's objects would hold more than max_tenant_bytes in all.
 * (Not -ENOSPC, which always means the map itself is full.) */
struct store_object_limits {
        uint64_t max_object_bytes;
        uint64_t max_objects_per_tenant;
        uint64_t max_tenant_bytes;
};

/* An object's header. `meta` is a malloc'd copy (NULL when meta_len is 0), freed by
 * store_object_info_clear. */
struct store_object_info {
        char name[STORE_OBJECT_NAME_MAX + 1];
        uint64_t version;          /* 1 for a new name, +1 at every change, never reused */
        int64_t created_ms;        /* wall clock, when the name was first put (kept by a put) */
        int64_t updated_ms;        /* wall clock, the last change */
        uint64_t bytes;            /* blob size + the sizes of all item ids and values */
        uint64_t count;            /* items */
        uint8_t *meta;
        size_t meta_len;
};

/* Frees info->meta and sets it to NULL. Accepts NULL. */
void store_object_info_clear(struct store_object_info *info);
/* Clears and frees an array of n infos (store_object_list). Accepts NULL. */
void store_object_infos_free(struct store_object_info *infos, size_t n);

/* One item of a batch: id of 1..STORE_OBJECT_ITEM_ID_MAX bytes (any bytes), value of
 * 0..STORE_OBJECT_ITEM_MAX bytes (unused by deletes). Borrowed. */
struct store_object_item {
        const uint8_t *id;
        size_t id_len;
        const uint8_t *data;
        size_t size;
};

/* A tenant's totals over all its objects of every class. */
struct store_tenant_usage {
        uint64_t objects;
        uint64_t bytes;
};

/* Puts an object: its meta and a blob of `blob_size` bytes written by `write` (called
 * once per piece, in order; not called for 0 bytes), replacing whatever the object
 * held (meta, blob and items). The version becomes the old one + 1 (a new name: 1, or
 * one past the last version of a dropped object of that name); created_ms is kept
 * from an existing object, updated_ms becomes now_ms. Fills *ret (may be NULL; clear
 * it with store_object_info_clear). Returns >= 0, -EINVAL (names, meta or write
 * missing), -E2BIG (meta_len over STORE_OBJECT_META_MAX), a limit's code (nothing
 * written), -ENOSPC (map full: abort the transaction) or -errno. */
int store_object_put(struct store_txn *t, const struct store_object_ref *o, const void *meta, size_t meta_len,
                     size_t blob_size, store_result_writer write, void *opaque,
                     const struct store_object_limits *lim, int64_t now_ms, struct store_object_info *ret);

/* Adds or replaces n items (a later item with the same id as an earlier one in the
 * batch wins). An absent object is created with `meta` (an empty blob); an existing
 * one must have exactly these meta bytes, else -EEXIST and nothing is written
 * (meta NULL: no check, and a new object gets no meta). Bumps the version once and
 * updates count and bytes. Returns >= 0, -EINVAL (names, an id of 0 or more than
 * STORE_OBJECT_ITEM_ID_MAX bytes; items may be NULL when n is 0), -E2BIG (a value over
 * STORE_OBJECT_ITEM_MAX, meta over STORE_OBJECT_META_MAX), -EEXIST, a limit's code,
 * -ENOSPC or -errno; on any of these nothing is written. *ret as store_object_put. */
int store_object_items_put(struct store_txn *t, const struct store_object_ref *o, const void *meta,
                           size_t meta_len, const struct store_object_item *items, size_t n,
                           const struct store_object_limits *lim, int64_t now_ms, struct store_object_info *ret);

/* Deletes the items with the given ids (ids not there are ignored; data and size are
 * unused). Bumps the version once and updates count and bytes, when any was there
 * (else nothing changes, the version neither). Returns >= 0, -ENOENT
 * when the object does not exist, -EINVAL, -ENOSPC or -errno. *ret as store_object_put. */
int store_object_items_delete(struct store_txn *t, const struct store_object_ref *o,
                              const struct store_object_item *ids, size_t n, int64_t now_ms,
                              struct store_object_info *ret);

/* Deletes the object: header, blob and items; the tenant's usage goes down. Its
 * version is remembered ("object_gone"). Returns >= 0, -ENOENT when absent, or -errno. */
int store_object_drop(struct store_txn *t, const struct store_object_ref *o);

/* Reads the header and meta. Returns >= 0, -ENOENT when absent, -EIO, -EINVAL or
 * -errno. */
int store_object_get(struct store_txn *t, const struct store_object_ref *o, struct store_object_info *ret);
/* The version the object of that name stored now began at: 1 for a name never
 * dropped, else one past its last version before the latest drop. A version below
 * it belongs to another object that had the name. Returns >= 0, -EINVAL or
 * -errno (the object need not exist). */
int store_object_began(struct store_txn *t, const struct store_object_ref *o, uint64_t *ret);

/* Copies the object's blob out (malloc'd, caller frees; an empty blob gives a
 * non-NULL pointer and size 0). Returns >= 0, -ENOENT when the object is absent, or
 * -errno. */
int store_object_blob_get(struct store_txn *t, const struct store_object_ref *o, uint8_t **ret_data,
                          size_t *ret_size);

/* Calls cb for every item of the object in id byte order, with bytes borrowed from the
 * map (valid during the call only). cb returns < 0 to stop (that value is returned).
 * Returns >= 0, -ENOENT when the object is absent, -EIO, or -errno. To load a whole
 * collection, a worker runs this in its own read transaction: no writer op needed. */
int store_object_items_foreach(struct store_txn *t, const struct store_object_ref *o,
                               int (*cb)(const uint8_t *id, size_t id_len, const uint8_t *data, size_t size,
                                         void *userdata),
                               void *userdata);

/* Calls cb for every object of every tenant and class, in key order, with its
 * (tenant, class, name), current version and meta (NULL when meta_len is 0; all
 * valid during the call only); a cb returning < 0 stops the walk with that value.
 * For loading the versions and metas at start. Returns >= 0 or -errno. */
int store_object_foreach(struct store_txn *t,
                         int (*cb)(const struct store_object_ref *o, uint64_t version, const uint8_t *meta,
                                   size_t meta_len, void *userdata),
                         void *userdata);

/* Lists the tenant's objects of class `cls` in name byte order: a new array of *ret_n
 * infos (free with store_object_infos_free; NULL when none). Returns >= 0 or -errno. */
int store_object_list(struct store_txn *t, const char *tenant, const char *cls, struct store_object_info **ret,
                      size_t *ret_n);

/* The tenant's totals (zeros for a tenant without objects). Returns >= 0 or -errno. */
int store_object_usage(struct store_txn *t, const char *tenant, struct store_tenant_usage *ret);

/* ---- the writer thread ---- */

enum store_op_type {
        STORE_OP_JOB_PUT,      /* job (+ optional result, written with `write_result`, and
                                * optional input, written with `write_input`) */
        STORE_OP_JOB_GET,      /* fills op->job_out (read) */
        STORE_OP_RESULT_GET,   /* fills op->job_out and op->result_out/result_size (read) */
        STORE_OP_DELETE,
        STORE_OP_BARRIER,      /* nothing; done after everything queued before it */
        STORE_OP_SUBMIT,       /* a new job: idempotency, cache lookup, then put (+ input) (below) */
        STORE_OP_CACHE_PURGE,  /* store_cache_purge(purge_kind), count in purge_n */
        STORE_OP_CACHE_ANSWER, /* a job already answered from a copy of a cache hit (below) */
        STORE_OP_INPUT_GET,    /* fills op->job_out and op->result_out/result_size with the
                                * input of op->id (read; a job without a stored input gives
                                * status 0, result_out NULL, result_size 0) */
        /* Stored objects: op->object names it; each fills op->object_info (the header
         * after the change) unless said otherwise. */
        STORE_OP_OBJECT_PUT,          /* store_object_put: meta, blob_size + write_blob, limits */
        STORE_OP_OBJECT_ITEMS_PUT,    /* store_object_items_put: meta, items/n_items, limits */
        STORE_OP_OBJECT_ITEMS_DELETE, /* store_object_items_delete: items/n_items (ids) */
        STORE_OP_OBJECT_DROP,         /* store_object_drop; no output */
        STORE_OP_OBJECT_GET,          /* store_object_get (read); with `with_blob` also the blob
                                       * in result_out/result_size */
        STORE_OP_OBJECT_LIST,         /* store_object_list of object.tenant/object.cls (read):
                                       * object_list/object_n */
        /* There is no op to read an object's items: a worker reads them with
         * store_object_items_foreach in its own read transaction, which never waits for
         * the writer and copies nothing it does not need. */
};

/* What STORE_OP_SUBMIT did with op->job (a queued record with tenant and idem_key):
 *  IDEM:   the tenant used job->idem_key before: nothing written; job_out is the
 *          original job, and result_out its result when it is done;
 *  CACHED: op->cache_key was in the cache: job written as done (submitted_ms ==
 *          finished_ms, backend of the original computation) answering with the
 *          cached result; job_out is that record, result_out the result;
 *  STORED: job written as queued (and its idempotency key recorded, and its input
 *          of op->input_size bytes, in the same transaction). */
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

/* Big writes: small operations never wait behind the writing of a big result or input.
 * A JOB_PUT whose result or input, or a SUBMIT whose input, is bigger than the
 * writer's slice (8 MiB) is written across several transactions, one slice of pieces
 * each, while the other queued operations go on committing between them (each slice
 * commit is fsynced with store.sync=full). Only the last transaction applies the
 * operation itself (the record, e.g. as done, with the last slice, the cache entry,
 * a SUBMIT's idempotency key and cache lookup), so a record never says done without
 * all its pieces; a crash in between leaves pieces without a record that says so,
 * which the job's next put replaces (the first slice deletes every piece under the
 * job's id). If a slice or the last transaction fails (-ENOSPC), the operation fails
 * with that status and what its slices wrote is deleted in a following transaction
 * (best effort); the first slice has already deleted the job's previous result or
 * input. Its done is called once, after its last transaction.
 *
 * Order: done callbacks come in FIFO order among the other operations, but a big
 * operation completes after operations queued behind it, which see the store as it
 * was before it: callers must not assume done order across a big operation. Only
 * operations that name the same job (op->job->id or op->id) and BARRIERs wait for
 * it, and keep their place behind it; everything else (LIST, CACHE_PURGE, objects,
 * a SUBMIT with the same idempotency key: the first to commit wins) does not. */

/* One queued operation. The caller allocates it (usually embedded in its own struct),
 * fills the input fields and `done`, and must not touch it until `done` is called. */
struct store_op {
        enum store_op_type type;
        struct store_op *next;   /* private to the writer */
        /* private to the writer: bytes of the input and of the result that earlier
         * slices of a big operation have written; whether a result_optional result is
         * being left out */
        size_t written_input, written_result;
        bool without_result;

        /* inputs */
        struct store_job *job;   /* JOB_PUT: the record to write (not freed by the writer) */
        size_t result_size;      /* JOB_PUT: bytes of result to write, 0 for none */
        /* JOB_PUT of a done job with a result: when the result does not fit (-ENOSPC),
         * store the record without it, and without a cache entry, instead of failing:
         * status >= 0 and result_stored false. The record then says done while the
         * store holds no result for it (store_result_locate and store_result_get give
         * -ENOENT, RESULT_GET gives no result): the caller delivers the result from
         * memory and says it was not kept. */
        bool result_optional;
        /* JOB_PUT with result_size > 0: writes bytes [offset, offset + len) of the
         * result into dst. Called once per piece, in order; may be called again for
         * the same range when a batch is retried, and must write the same bytes. */
        void (*write_result)(struct store_op *op, uint8_t *dst, size_t offset, size_t len);
        uint8_t id[16];          /* GET/RESULT_GET/DELETE/INPUT_GET */
        /* SUBMIT: the key to look up (NULL: no lookup). JOB_PUT of a done job with a
         * result: the key to cache it under (NULL: not cached). Borrowed until done. */
        const struct store_cache_key *cache_key;
        /* SUBMIT of a job that has already run (its record is written once, finished):
         * op->job is its final record, written with its result (result_size,
         * write_result) and cached under cache_key when done, as JOB_PUT writes them,
         * in one transaction (its result must be no bigger than a slice). It has no
         * idempotency key and no input, and is not looked up in the cache (the caller
         * looked before running it); the outcome is STORED. */
        bool ran;
        bool missed;             /* SUBMIT with ran: the caller's lookup missed (counted) */
        /* SUBMIT while the store has no room for the job: answered only by its
         * idempotency key or from the cache (a small record), else -ENOSPC and
         * nothing written. */
        bool lookup_only;
        const char *purge_kind;  /* CACHE_PURGE: NULL for all */
        const char *purge_tenant; /* CACHE_PURGE: NULL for every tenant's */
        /* SUBMIT answered from the cache or by its idempotency key: a result of more
         * than copy_max bytes is not copied out (result_out NULL, result_size its
         * size): the caller reads it where it is (hit.blob, or the original job's id
         * through store_result_locate). 0: always copied. copy_reserve, when set, is
         * asked on the writer thread before a result is copied out (the room it will
         * take in memory); false leaves it where it is, as a bigger one. */
        uint64_t copy_max;
        bool (*copy_reserve)(struct store_op *op, uint64_t size);
        uint8_t blob[16];        /* CACHE_ANSWER: the result the answer used */
        /* SUBMIT and JOB_PUT: bytes of input to store with the record, 0 for none. SUBMIT
         * stores it only when the outcome is STORED (a job answered from the cache or by
         * its idempotency key stores none); the record is written with input_size set to
         * it. write_input writes bytes [offset, offset + len) of the input into dst, like
         * write_result (once per piece, in order; again for the same range when a batch
         * is retried). INPUT_GET: `id`. */
        size_t input_size;
        void (*write_input)(struct store_op *op, uint8_t *dst, size_t offset, size_t len);
        /* OBJECT_*: which object (strings borrowed until done; LIST uses tenant and cls). */
        struct store_object_ref object;
        const void *meta;        /* OBJECT_PUT, OBJECT_ITEMS_PUT (see those functions) */
        size_t meta_len;
        size_t blob_size;        /* OBJECT_PUT: bytes of blob, written by write_blob */
        void (*write_blob)(struct store_op *op, uint8_t *dst, size_t offset, size_t len);
        const struct store_object_item *items; /* OBJECT_ITEMS_PUT/DELETE, borrowed until done */
        size_t n_items;
        struct store_object_limits limits; /* OBJECT_PUT, OBJECT_ITEMS_PUT; zeros: none */
        bool must_exist;         /* OBJECT_ITEMS_PUT: -ENOENT, nothing written, if it is absent */
        bool with_blob;          /* OBJECT_GET */

        /* outputs, owned by the caller once done is called */
        int status;              /* >= 0 or -errno */
        struct store_job *job_out;
        uint8_t *result_out;
        enum store_submit_outcome outcome; /* SUBMIT */
        struct store_cache_hit hit; /* SUBMIT with outcome CACHED: the entry found */
        uint64_t purge_n;        /* CACHE_PURGE */
        bool result_stored;      /* JOB_PUT that succeeded: true unless result_optional left
                                  * its result out (also true when result_size is 0) */
        struct store_object_info object_info; /* OBJECT_PUT/ITEMS_PUT/ITEMS_DELETE/GET: clear
                                               * with store_object_info_clear */
        struct store_object_info *object_list; /* OBJECT_LIST: free with store_object_infos_free */
        size_t object_n;

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
