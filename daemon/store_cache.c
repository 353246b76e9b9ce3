/* The result cache ("cache", "cache_lru", "cache_ttl"), its counters, and the
 * background work the writer does about once a second: retention of finished jobs,
 * cache expiry and eviction.
 *
 * Entry format, version 3 (integers little-endian):
 *   u8 version, i64 created_ms, i64 last_used_ms, u64 size, u32 kind version,
 *   16 bytes blob id, backend and kind: u8 length + bytes, the second half of the
 *   key's digest (16 bytes; the first half is the entry's key), then the tenant
 *   whose entry it is (u8 length + bytes), for cache.purge.
 * Version 2 was version 3 without the tenant. Version 1 had the model and the
 * params (u32 length + bytes each) where version 2 has the digest's half. Entries
 * of both are still read, matched, and replaced as any other. Since version 2 an
 * entry is a few dozen bytes however long the params are, so a job's commit dirties
 * fewer and emptier pages of the hash-ordered table (measured: 5 % more single-row
 * risk.score jobs a second, 2 cores).
 *
 * A new entry goes first to the recent log (store_cache_recent.c) and later, merged,
 * into "cache"; for a while it may be in both, as equal copies. So every lookup tries
 * the log, then "cache", and every change is written to each copy there is. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

#define CACHE_ENTRY_VERSION 3
#define CACHE_LAST_USED_OFFSET 9
/* The longest format 3 entry: the fixed fields, backend (u8 length + under 16
 * bytes), kind (u8 length + under 32 bytes), the digest's half, tenant (u8 length
 * + under 64 bytes). */
#define CACHE_ENTRY_MAX (1 + 8 + 8 + 8 + 4 + 16 + 16 + 32 + 16 + 64)

struct cache_view {
        uint8_t format;                 /* 1, 2 or 3 */
        int64_t created_ms, last_used_ms;
        uint64_t size;
        uint32_t version;
        uint8_t blob[16];
        struct str_view backend, kind;
        const uint8_t *check;           /* format 2 and 3: the digest's second half */
        struct str_view tenant;         /* format 3 */
        struct str_view model, params;  /* format 1 */
};

static int cache_parse(const MDB_val *val, struct cache_view *v)
{
        struct reader r = { .p = val->mv_data, .left = val->mv_size };
        const uint8_t *blob;
        int64_t size;

        memset(v, 0, sizeof(*v));
        if (!read_u8(&r, &v->format) || v->format < 1 || v->format > CACHE_ENTRY_VERSION ||
            !read_i64(&r, &v->created_ms) || !read_i64(&r, &v->last_used_ms) || !read_i64(&r, &size) ||
            !read_u32(&r, &v->version) || !read_bytes(&r, 16, &blob) || !read_short_string(&r, 16, &v->backend) ||
            !read_short_string(&r, 32, &v->kind))
                return -EIO;
        if (v->format == 1 ? !read_long_string(&r, &v->model) || !read_long_string(&r, &v->params) ||
                                     !v->model.p || !v->params.p
                           : !read_bytes(&r, 16, &v->check) ||
                                     (v->format == 3 && !read_short_string(&r, 64, &v->tenant)))
                return -EIO;
        if (r.left != 0)
                return -EIO;
        v->size = (uint64_t)size;
        memcpy(v->blob, blob, 16);
        return 0;
}

/* The value of `hash`'s entry: from the recent log (*ret_seq its number), else from
 * "cache" (*ret_seq 0). Valid until the next write. */
static int cache_find(struct store_txn *t, const uint8_t hash[16], MDB_val *ret_val, uint64_t *ret_seq)
{
        MDB_val key = store_key16(hash);
        int r = cache_recent_get(t, hash, ret_seq, ret_val);

        if (r != -ENOENT)
                return r;
        *ret_seq = 0;
        return store_mdb_errno(mdb_get(t->txn, t->s->cache, &key, ret_val));
}

/* The entry of `hash` (strings and check dropped: they live only until the next
 * write). */
static int cache_get(struct store_txn *t, const uint8_t hash[16], struct cache_view *ret)
{
        MDB_val val;
        uint64_t seq;
        int r = cache_find(t, hash, &val, &seq);

        if (r < 0)
                return r;
        r = cache_parse(&val, ret);
        if (r < 0)
                return r;
        ret->backend = ret->kind = ret->model = ret->params = (struct str_view){ 0 };
        ret->check = NULL;
        return 0;
}

/* Deletes the entry of `hash` (each copy) with its index keys, and releases its
 * blob. -ENOENT when there is none. */
static int cache_delete(struct store_txn *t, const uint8_t hash[16])
{
        MDB_val key = store_key16(hash), ik, val;
        struct cache_view v;
        uint8_t buf[24];
        uint64_t seq;
        int r, readable;

        r = cache_find(t, hash, &val, &seq);
        if (r < 0)
                return r;
        atomic_fetch_add(&t->s->cache_gen, 1); /* copies of this entry are stale now */
        readable = cache_parse(&val, &v); /* copies what is used below: val goes with the writes */
        if (seq)
                r = cache_recent_del(t, hash, seq);
        if (r >= 0)
                r = store_del_quiet(t, t->s->cache, &key);
        if (readable < 0)
                return r; /* unreadable: no index keys known */
        if (r >= 0) {
                ik = store_time_key(buf, v.last_used_ms, hash);
                r = store_del_quiet(t, t->s->cache_lru, &ik);
        }
        if (r >= 0) {
                ik = store_time_key(buf, v.created_ms, hash);
                r = store_del_quiet(t, t->s->cache_ttl, &ik);
        }
        if (r >= 0)
                r = store_blob_release(t, v.blob);
        if (r < 0)
                return r;
        t->delta.bytes -= (int64_t)v.size;
        t->delta.entries--;
        return 0;
}

static bool cache_matches(const struct cache_view *v, const struct store_cache_key *k)
{
        if (v->version != k->version || !view_equals(&v->kind, k->kind))
                return false;
        if (v->format == 1)
                return k->params && view_equals(&v->model, k->model ? k->model : "") &&
                       view_equals(&v->params, k->params);
        return !memcmp(v->check, k->hash + 16, 16);
}

/* Writes a changed value of `hash`'s entry over each copy: the recent one (number
 * seq, 0: none) and the one in "cache" (there when seq is 0, else when merged). */
static int cache_rewrite(struct store_txn *t, const uint8_t hash[16], uint64_t seq, MDB_val *val)
{
        MDB_val k = store_key16(hash), old;
        int r = 0;

        if (seq) {
                r = cache_recent_rewrite(t, seq, hash, val->mv_data, val->mv_size);
                if (r >= 0)
                        r = store_mdb_errno(mdb_get(t->txn, t->s->cache, &k, &old));
                if (r == -ENOENT)
                        return 0;
        }
        if (r >= 0)
                r = store_txn_result(t, mdb_put(t->txn, t->s->cache, &k, val, 0));
        return r;
}

/* Looks up a cached result and bumps its last use; see store.h. */
int store_cache_lookup(struct store_txn *t, const struct store_cache_key *key, int64_t now_ms, uint32_t ttl_s,
                       struct store_cache_hit *ret)
{
        MDB_val val, ik, empty = { .mv_size = 0, .mv_data = NULL };
        struct cache_view v;
        uint8_t buf[24], *copy;
        uint64_t seq;
        int r;

        if (t->err < 0)
                return t->err;
        r = cache_find(t, key->hash, &val, &seq);
        if (r < 0)
                return r;
        if (cache_parse(&val, &v) < 0 || !cache_matches(&v, key))
                return -ENOENT; /* corrupt or another key with the same hash: a miss */
        if (ttl_s && v.created_ms + (int64_t)ttl_s * 1000 <= now_ms)
                return -ENOENT; /* expired: maintenance deletes it */
        if (!store_blob_exists(t, v.blob)) {
                if (!t->write)
                        return -ENOENT;
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
        ik = store_time_key(buf, v.last_used_ms, key->hash);
        r = store_del_quiet(t, t->s->cache_lru, &ik);
        if (r >= 0) {
                ik = store_time_key(buf, now_ms, key->hash);
                r = store_txn_result(t, mdb_put(t->txn, t->s->cache_lru, &ik, &empty, 0));
        }
        if (r >= 0)
                r = cache_rewrite(t, key->hash, seq, &val);
        free(copy);
        return r < 0 ? r : 0;
}

/* Whether the cache holds `key` now; see store.h. */
bool store_cache_holds(struct store *s, const struct store_cache_key *key, uint32_t ttl_s)
{
        struct store_txn *t;
        struct store_cache_hit hit;

        if (store_txn_begin(s, false, &t) < 0)
                return true; /* not known: the caller takes the way that looks */
        int r = store_cache_lookup(t, key, store_wall_ms(), ttl_s, &hit);
        store_txn_abort(t);
        return r != -ENOENT;
}

/* Copies the first key of `dbi` (24-byte index keys only). */
static int first_index_key(struct store_txn *t, MDB_dbi dbi, uint8_t ret[24])
{
        MDB_cursor *c;
        MDB_val key, val;
        int r = store_mdb_errno(mdb_cursor_open(t->txn, dbi, &c));

        if (r < 0)
                return r;
        r = store_mdb_errno(mdb_cursor_get(c, &key, &val, MDB_FIRST));
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
        return store_del_quiet(t, dbi, &key);
}

/* Caches the stored result of job `blob` under `key`; see store.h. */
int store_cache_put(struct store_txn *t, const struct store_cache_key *key, const uint8_t blob[16], uint64_t size,
                    const char *backend, int64_t now_ms, uint64_t max_bytes)
{
        const char *tenant = key->tenant ? key->tenant : "";
        size_t bl = strnlen(backend ? backend : "", 16), kl = strnlen(key->kind, 32), tl = strnlen(tenant, 64), n;
        MDB_val k = store_key16(key->hash), val, ik, empty = { .mv_size = 0, .mv_data = NULL };
        uint8_t buf[24], e[CACHE_ENTRY_MAX], *p;
        int r;

        if (t->err < 0)
                return t->err;
        if (bl >= 16 || kl >= 32 || tl >= 64)
                return -EINVAL;
        if (size > max_bytes)
                return 0;
        n = 1 + 8 + 8 + 8 + 4 + 16 + 1 + bl + 1 + kl + 16 + 1 + tl;
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
        memcpy(p, key->hash + 16, 16);
        p += 16;
        p = write_short_string(p, tenant);
        /* An entry already there is deleted with its index keys first. The new one is
         * appended to the recent log, or put in "cache" when the log's index is full. */
        r = cache_delete(t, key->hash);
        if (r < 0 && r != -ENOENT)
                return r;
        r = cache_recent_add(t, key->hash, e, n);
        if (r == -EAGAIN) {
                val = (MDB_val){ .mv_size = n, .mv_data = e };
                r = store_txn_result(t, mdb_put(t->txn, t->s->cache, &k, &val, 0));
        }
        if (r >= 0) {
                ik = store_time_key(buf, now_ms, key->hash);
                r = store_put_in_order(t, t->s->cache_lru, &ik, &empty, 0);
        }
        if (r >= 0)
                r = store_put_in_order(t, t->s->cache_ttl, &ik, &empty, 0);
        if (r >= 0)
                r = store_blob_ref(t, blob);
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

/* Adds the hash of each entry of `kind` (NULL: all) in `dbi` to the list; in
 * "cache_recent" (`recent`) the value starts with the hash. */
/* Whether an entry is `tenant`'s, or one whose tenant is not known (format 2; and
 * format 1 where its model, "TENANT OBJECT" then, names none). */
static bool entry_of_tenant(const struct cache_view *v, const char *tenant)
{
        size_t n = strlen(tenant);
        if (v->format == 3)
                return view_equals(&v->tenant, tenant);
        if (v->format == 2 || v->model.n == 0)
                return true;
        return v->model.n > n && !memcmp(v->model.p, tenant, n) && v->model.p[n] == ' ';
}

static int purge_collect(struct store_txn *t, MDB_dbi dbi, bool recent, const char *kind, const char *tenant,
                         uint8_t (**hashes)[16], size_t *n, size_t *cap)
{
        MDB_cursor *c;
        MDB_val key, val;
        int rc, r = 0;

        r = store_mdb_errno(mdb_cursor_open(t->txn, dbi, &c));
        if (r < 0)
                return r;
        for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                const uint8_t *hash = key.mv_data;
                struct cache_view v;

                if (recent ? !cache_recent_record(&val, &hash, &val) : key.mv_size != 16)
                        continue;
                if ((kind || tenant) &&
                    (cache_parse(&val, &v) < 0 || (kind && !view_equals(&v.kind, kind)) ||
                     (tenant && !entry_of_tenant(&v, tenant))))
                        continue;
                if (*n == *cap) {
                        size_t nc = *cap ? *cap * 2 : 64;
                        void *nh = realloc(*hashes, nc * 16);
                        if (!nh) {
                                r = -ENOMEM;
                                break;
                        }
                        *hashes = nh;
                        *cap = nc;
                }
                memcpy((*hashes)[(*n)++], hash, 16);
        }
        mdb_cursor_close(c);
        if (r >= 0 && rc != 0 && rc != MDB_NOTFOUND)
                r = store_mdb_errno(rc);
        return r;
}

/* Purges the entries of one kind, or all; see store.h. */
int store_cache_purge(struct store_txn *t, const char *kind, const char *tenant, uint64_t *ret_n)
{
        uint8_t (*hashes)[16] = NULL;
        size_t n = 0, cap = 0;
        uint64_t gone = 0;
        int r;

        if (t->err < 0)
                return t->err;
        r = purge_collect(t, t->s->cache_recent, true, kind, tenant, &hashes, &n, &cap);
        if (r >= 0)
                r = purge_collect(t, t->s->cache, false, kind, tenant, &hashes, &n, &cap);
        /* An entry in both tables is listed twice: the second delete finds none. */
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = cache_delete(t, hashes[i]);
                if (r >= 0)
                        gone++;
                else if (r == -ENOENT)
                        r = 0;
        }
        free(hashes);
        if (r < 0)
                return r;
        t->delta.purged += gone;
        *ret_n = gone;
        return 0;
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
                r = store_del_quiet(t, s->retain, &key);
                if (r >= 0)
                        r = store_job_get(t, ik + 8, &job);
                if (r >= 0 && kiln_job_state_is_final(job->state)) {
                        r = store_job_delete(t, ik + 8); /* with its result and input */
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
        cache_recent_figures(s, &ret->recent, &ret->merges);
}

/* Adds up the entries of "cache", or of "cache_recent" (`recent`: those not also in
 * "cache"). Returns an LMDB code. */
static int scan_table(struct store *s, MDB_txn *txn, bool recent, uint64_t *bytes, uint64_t *entries)
{
        MDB_cursor *c;
        MDB_val key, val, main;
        struct cache_view v;
        int rc = mdb_cursor_open(txn, recent ? s->cache_recent : s->cache, &c);

        if (rc)
                return rc;
        for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                if (recent) {
                        const uint8_t *hash;
                        MDB_val hk;

                        if (!cache_recent_record(&val, &hash, &val))
                                continue;
                        hk = store_key16(hash);
                        if (mdb_get(txn, s->cache, &hk, &main) == 0)
                                continue;
                }
                if (cache_parse(&val, &v) == 0) {
                        *bytes += v.size;
                        (*entries)++;
                }
        }
        mdb_cursor_close(c);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Totals the cache entries at open, an entry in both tables once; see
 * store_impl.h. */
int store_cache_scan(struct store *s, MDB_txn *txn)
{
        uint64_t bytes = 0, entries = 0;
        int rc = cache_recent_load(s, txn);

        if (rc == 0)
                rc = scan_table(s, txn, false, &bytes, &entries);
        if (rc == 0)
                rc = scan_table(s, txn, true, &bytes, &entries);
        if (rc)
                return rc;
        atomic_store(&s->c_bytes, bytes);
        atomic_store(&s->c_entries, entries);
        return 0;
}
