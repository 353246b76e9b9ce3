/* What the store's own files share (daemon/store*.c): the environment, transactions,
 * the byte codec, pieces, and the functions one part of the store calls in another.
 * The only header that includes lmdb.h; nothing outside the store includes it. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lmdb.h>

#include "store.h"
#include "store_internal.h"

#define STORE_NULL_STRING UINT32_MAX
#define STORE_MAX_PRIORITY 4
#define STORE_STATE_COUNT 6
/* LMDB's default maximum key size (MDB_MAXKEYSIZE). */
#define STORE_MAX_KEY 511

struct store {
        MDB_env *env;
        int lock_fd;                  /* STORE_LOCK_FILE, flock()ed for the life of the store */
        size_t orphan_pieces;         /* input pieces without a job record, dropped at open */
        int orphan_error;             /* why they could not be dropped, or 0 */
        bool leftovers;               /* some may be left now: the lock file keeps the pid at close */
        MDB_dbi jobs, results, pending;
        MDB_dbi tenant_jobs; /* TENANT NUL id -> empty: each tenant's jobs in id (time) order, for list */
        MDB_dbi cache, cache_recent, cache_lru, cache_ttl, idem, retain, alias, refs;
        MDB_dbi inputs;
        MDB_dbi objects, object_blob, object_items, object_usage, object_gone;
        enum store_sync_mode sync;
        size_t piece;                 /* bytes per piece: exactly PIECE_PAGES overflow pages */

        /* Cache counters: updated when a write transaction commits, read anywhere. */
        _Atomic uint64_t c_hits, c_misses, c_bytes, c_entries, c_evicted, c_expired, c_purged, c_stored,
                c_jobs_purged;
        /* Bumped (writer thread) before any cache entry is deleted or replaced. */
        _Atomic uint64_t cache_gen;
        /* The cache's recent entries and their index (store_cache_recent.c). */
        struct cache_recent *recent;
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
        /* store_cache_recent.c: the index changes to put back if this aborts, and the
         * merge's progress to record if it commits. */
        struct recent_undo *undo;
        size_t n_undo, cap_undo;
        size_t merge_pos;
        bool merge_finished;
};

/* ---- store.c: LMDB codes, common puts ---- */

/* The one place where LMDB codes become -errno (MDB_NOTFOUND -> -ENOENT, map or
 * transaction full -> -ENOSPC, other LMDB codes -> -EIO). */
int store_mdb_errno(int rc);
/* Converts the result of an LMDB write call, remembering errors that poison the txn. */
int store_txn_result(struct store_txn *t, int rc);
/* mdb_put tried as MDB_APPEND first (keys that mostly arrive in order), then normally. */
int store_put_in_order(struct store_txn *t, MDB_dbi dbi, MDB_val *key, MDB_val *val, unsigned flags);
/* mdb_del of one key; an absent key is not an error. */
int store_del_quiet(struct store_txn *t, MDB_dbi dbi, MDB_val *key);

static inline MDB_val store_key16(const uint8_t id[16])
{
        return (MDB_val){ .mv_size = 16, .mv_data = (void *)id };
}

/* ---- the byte codec (integers little-endian in values, big-endian in keys) ---- */

struct str_view {
        const char *p;   /* NULL for an absent (NULL) string */
        size_t n;
};

struct reader {
        const uint8_t *p;
        size_t left;
};

static inline bool read_bytes(struct reader *r, size_t n, const uint8_t **ret)
{
        if (n > r->left)
                return false;
        *ret = r->p;
        r->p += n;
        r->left -= n;
        return true;
}

static inline bool read_u8(struct reader *r, uint8_t *ret)
{
        const uint8_t *p;

        if (!read_bytes(r, 1, &p))
                return false;
        *ret = p[0];
        return true;
}

static inline bool read_u32(struct reader *r, uint32_t *ret)
{
        const uint8_t *p;

        if (!read_bytes(r, 4, &p))
                return false;
        *ret = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        return true;
}

static inline bool read_i64(struct reader *r, int64_t *ret)
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

static inline bool read_u64(struct reader *r, uint64_t *ret)
{
        int64_t v;

        if (!read_i64(r, &v))
                return false;
        *ret = (uint64_t)v;
        return true;
}

/* A fixed string: u8 length, strictly less than the destination array, no NUL. */
static inline bool read_short_string(struct reader *r, size_t cap, struct str_view *ret)
{
        const uint8_t *p;
        uint8_t n;

        if (!read_u8(r, &n) || n >= cap || !read_bytes(r, n, &p) || memchr(p, 0, n))
                return false;
        *ret = (struct str_view){ .p = (const char *)p, .n = n };
        return true;
}

/* u32 length + bytes without NUL, or u32 0xffffffff for NULL. */
static inline bool read_long_string(struct reader *r, struct str_view *ret)
{
        const uint8_t *p;
        uint32_t n;

        if (!read_u32(r, &n))
                return false;
        if (n == STORE_NULL_STRING) {
                *ret = (struct str_view){ .p = NULL, .n = 0 };
                return true;
        }
        if (!read_bytes(r, n, &p) || memchr(p, 0, n))
                return false;
        *ret = (struct str_view){ .p = (const char *)p, .n = n };
        return true;
}

static inline uint8_t *write_u32(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                *p++ = (uint8_t)(v >> (8 * i));
        return p;
}

static inline uint8_t *write_i64(uint8_t *p, int64_t v)
{
        uint64_t u = (uint64_t)v;

        for (int i = 0; i < 8; i++)
                *p++ = (uint8_t)(u >> (8 * i));
        return p;
}

static inline uint8_t *write_short_string(uint8_t *p, const char *s)
{
        size_t n = strlen(s);

        *p++ = (uint8_t)n;
        memcpy(p, s, n);
        return p + n;
}

static inline uint8_t *write_long_string(uint8_t *p, const char *s)
{
        size_t n;

        if (!s)
                return write_u32(p, STORE_NULL_STRING);
        n = strlen(s);
        p = write_u32(p, (uint32_t)n);
        memcpy(p, s, n);
        return p + n;
}

static inline bool view_equals(const struct str_view *v, const char *s)
{
        size_t n = strlen(s);

        return v->p && v->n == n && memcmp(v->p, s, n) == 0;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t get_be64(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

/* An index key: a time in ms, big-endian (so byte order is time order), then an id. */
static inline MDB_val store_time_key(uint8_t buf[24], int64_t ms, const uint8_t id[16])
{
        put_be64(buf, (uint64_t)(ms < 0 ? 0 : ms));
        memcpy(buf + 8, id, 16);
        return (MDB_val){ .mv_size = 24, .mv_data = buf };
}

/* ---- store_records.c: the job record codec ---- */

/* A parsed record whose strings point into the LMDB value. */
/* The key of a job in "tenant_jobs": its tenant (under 64 bytes), a NUL, its id. */
#define TENANT_JOB_KEY_MAX (64 + 1 + 16)
static inline MDB_val store_tenant_job_key(uint8_t buf[TENANT_JOB_KEY_MAX], const char *tenant, size_t len,
                                           const uint8_t id[16])
{
        if (len > 63)
                len = 63;
        memcpy(buf, tenant, len);
        buf[len] = 0;
        memcpy(buf + len + 1, id, 16);
        return (MDB_val){ .mv_size = len + 17, .mv_data = buf };
}

struct record_view {
        uint8_t priority, state;
        int64_t submitted_ms, finished_ms, deadline_ms;
        uint32_t queue_ms, run_ms, batch;
        struct str_view kind, tenant, backend;
        struct str_view params, idem_key, error_code, error_message;
        /* version 2; defaults (0, 0, NULL) in a version 1 record */
        uint32_t attempts;
        uint64_t input_size;
        struct str_view object;
        /* version 3; NULL before */
        struct str_view error_field;
};

/* Parses a record of any supported version. Returns >= 0 or -EIO. */
int store_record_parse(const uint8_t *buf, size_t size, struct record_view *ret);
/* A new job (caller frees) from a parsed record. Returns >= 0 or -ENOMEM. */
int store_record_view_to_job(const uint8_t id[16], const struct record_view *v, struct store_job **ret);
/* Validates `job` and computes the size of its record. Returns >= 0, -EINVAL or -E2BIG. */
int store_record_size(const struct store_job *job, size_t *ret);
/* Writes the record of a job validated by store_record_size into dst. */
void store_record_write(const struct store_job *job, uint8_t *dst);

/* ---- store_results.c: pieces, shared result blobs ---- */

/* The longest key prefix pieces are stored under (the piece number follows). */
#define STORE_PIECE_PREFIX_MAX (STORE_MAX_KEY - 4)

/* Pieces of one value of any size in `dbi`, under keys prefix + u32 BE piece number
 * (see store_result_put for why). No prefix may be a prefix of another one in the
 * same database unless followed by a byte the other never has there. */
int store_pieces_put(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen, size_t size,
                     store_result_writer write, void *opaque);
/* Writes bytes [from, to) of a value of `size` bytes, so that a big value can be
 * written across several transactions: from 0 first deletes every piece under the
 * prefix (an earlier value, or what a partly written earlier attempt left, however
 * many pieces it had); a later range adds pieces after those already written. `from`
 * must be a multiple of store_piece_size, and so must `to` unless it is `size`
 * (-EINVAL otherwise); the piece size must not change between the ranges of one
 * value. from == to > 0 writes nothing. store_pieces_put is the range [0, size). */
int store_pieces_put_range(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen, size_t size,
                           size_t from, size_t to, store_result_writer write, void *opaque);
/* store_pieces_put under a prefix nothing was ever stored under: no deletion first. */
int store_pieces_put_new(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen, size_t size,
                         store_result_writer write, void *opaque);
/* The size of the pieces values are written in now (store_set_result_chunk or 16
 * pages less a page header). */
size_t store_piece_size(const struct store *s);
/* Copies the value out (malloc'd; empty: non-NULL, size 0). -ENOENT when absent,
 * -EIO when a piece is missing. */
int store_pieces_get(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen, uint8_t **ret_data,
                     size_t *ret_size);
/* Deletes every piece. Returns how many, or -errno. */
int store_pieces_delete(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen);
bool store_pieces_exist(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen);

/* Job `id` no longer answers with its result: drops its alias, or its own pieces. */
int store_result_release(struct store_txn *t, const uint8_t id[16]);
/* One more holder of the result pieces of `blob`. */
int store_blob_ref(struct store_txn *t, const uint8_t blob[16]);
/* Drops one holder of `blob`; the last one deletes its pieces. */
int store_blob_release(struct store_txn *t, const uint8_t blob[16]);
bool store_blob_exists(struct store_txn *t, const uint8_t blob[16]);

/* ---- store_cache.c ---- */

/* At open: indexes the recent entries and totals the cache entries into the
 * counters. Returns an LMDB code. */
int store_cache_scan(struct store *s, MDB_txn *txn);

/* ---- store_cache_recent.c: new cache entries, in the order they came ---- */

int cache_recent_new(struct store *s);
void cache_recent_free(struct store *s);
/* A record of "cache_recent" (key: its number, u64 BE): the entry's hash (16 bytes),
 * then the entry as "cache" holds it. false: not such a record. */
static inline bool cache_recent_record(const MDB_val *rec, const uint8_t **ret_hash, MDB_val *ret_entry)
{
        if (rec->mv_size < 16)
                return false;
        *ret_hash = rec->mv_data;
        *ret_entry = (MDB_val){ .mv_size = rec->mv_size - 16, .mv_data = (uint8_t *)rec->mv_data + 16 };
        return true;
}
/* At open: indexes "cache_recent". Returns an LMDB code. */
int cache_recent_load(struct store *s, MDB_txn *txn);
/* The recent entry of `hash`: its number and its value (the entry, as "cache" would
 * hold it; valid until the next write). -ENOENT when there is none. */
int cache_recent_get(struct store_txn *t, const uint8_t hash[16], uint64_t *ret_seq, MDB_val *ret_val);
/* Appends a new entry for `hash`, which has none. -EAGAIN when the index is full: the
 * caller puts it in "cache". */
int cache_recent_add(struct store_txn *t, const uint8_t hash[16], const uint8_t *entry, size_t n);
/* Writes a changed value over recent entry `seq` of `hash`. */
int cache_recent_rewrite(struct store_txn *t, uint64_t seq, const uint8_t hash[16], const uint8_t *entry, size_t n);
/* Deletes recent entry `seq` of `hash`. */
int cache_recent_del(struct store_txn *t, const uint8_t hash[16], uint64_t seq);
/* A write transaction ends: keeps its index changes and merge progress, or puts the
 * index back. */
void cache_recent_committed(struct store_txn *t);
void cache_recent_aborted(struct store_txn *t);
/* Entries in the log now, and merges finished since open. */
void cache_recent_figures(struct store *s, uint64_t *ret_entries, uint64_t *ret_merges);

/* ---- store_objects.c, store_items.c ---- */

/* An object's header as read: meta is a malloc'd copy (NULL when meta_len is 0; free
 * it), since a value read in a write transaction may move at the next write. */
struct object_header {
        uint64_t version;
        int64_t created_ms, updated_ms;
        uint64_t bytes, count;
        uint8_t *meta;
        uint32_t meta_len;
};

/* The object's key "tenant NUL class NUL name" (and, with `sep`, one more NUL: the
 * prefix of its blob pieces and items) into buf of STORE_MAX_KEY bytes. Validates the
 * names. Returns the length, or -EINVAL. */
int store_object_key(const struct store_object_ref *o, bool sep, uint8_t *buf);
/* Reads the header of the object with key k (-ENOENT when absent, -EIO when corrupt,
 * -ENOMEM). */
int store_object_header_get(struct store_txn *t, const uint8_t *k, size_t klen, struct object_header *ret);
/* Writes a header. */
int store_object_header_put(struct store_txn *t, const uint8_t *k, size_t klen, const struct object_header *h);
/* The version a new object of key k starts at: one past the last version of a
 * dropped object of that name, else 1. */
int store_object_first_version(struct store_txn *t, const uint8_t *k, size_t klen, uint64_t *ret);
/* Adds to the tenant's totals (the sum never goes below zero). */
int store_usage_add(struct store_txn *t, const char *tenant, int64_t objects, int64_t bytes);
/* Checks a change against the limits: an object that will hold `new_bytes`, in place
 * of one holding `old_bytes` (`created`: none was there). Returns 0, -EFBIG, -EDQUOT
 * or -EOVERFLOW. */
int store_object_check_limits(struct store_txn *t, const char *tenant, const struct store_object_limits *lim,
                              bool created, uint64_t old_bytes, uint64_t new_bytes);
/* Writes the header h of object o (key k) after a change, and keeps the tenant's
 * totals in step: `created` (one more object, its last dropped version forgotten),
 * bytes from old_bytes to h->bytes. Returns >= 0 or -errno. */
int store_object_changed(struct store_txn *t, const struct store_object_ref *o, const uint8_t *k, size_t klen,
                         bool created, uint64_t old_bytes, const struct object_header *h);
/* Fills `ret` from a header (meta copied). Returns >= 0 or -ENOMEM. A change fills
 * it before its first write, so that running out of memory never fails a change
 * that wrote something, and sets the figures after with store_object_info_refresh. */
int store_object_info_fill(const char *name, const struct object_header *h, struct store_object_info *ret);
/* Sets version, times, bytes and count of an info from a header (meta unchanged). */
void store_object_info_refresh(struct store_object_info *info, const struct object_header *h);
/* Deletes every item of the object whose item prefix is p. Returns >= 0 or -errno. */
int store_object_items_clear(struct store_txn *t, const uint8_t *p, size_t plen);

/* ---- store_writer.c: the store's threads ---- */

/* A condition variable whose timed waits run on CLOCK_MONOTONIC. Returns 0 or a
 * positive errno. */
int store_cond_init(pthread_cond_t *c);
/* Starts a thread with every signal blocked (signals are the main thread's).
 * Returns 0 or a positive errno. */
int store_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* ---- store_ops.c: applying writer operations ---- */

/* Wall-clock ms: cache, retention and object times are stored and survive restarts. */
int64_t store_wall_ms(void);
int store_op_apply(struct store_txn *t, struct store_op *op);
void store_op_clear_outputs(struct store_op *op);
void store_op_free_outputs(struct store_op *op);
/* A big op (see "Big writes" in store.h) is written in slices: op->written_input and
 * op->written_result say how much of its input and result earlier transactions
 * wrote, and store_op_apply writes only the rest. */
size_t store_op_slices_left(const struct store_op *op);
void store_op_slices_check(struct store_txn *t, struct store_op *op);
int store_op_write_slice(struct store_txn *t, struct store_op *op, size_t step, size_t *ret_input,
                         size_t *ret_result);
int store_op_slices_drop(struct store_txn *t, struct store_op *op);
/* Whether a failed op (-ENOSPC) may be applied again without its result
 * (result_optional); the writer then sets op->without_result. */
bool store_op_result_can_go(const struct store_op *op);
