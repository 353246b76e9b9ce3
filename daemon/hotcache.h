/* Hot results: copies of recent cache hits, kept in memory on the loop thread.
 *
 * A cache hit found by the store (jobs_submit.c: a submission that the writer answered
 * with STORE_SUBMIT_CACHED) leaves its result here. The next identical submission
 * is answered at once from the copy: `accepted`, `done` and the parts go out on the
 * loop thread, and the job's record (done, answering with that result) follows to
 * the store as STORE_OP_CACHE_ANSWER without being waited for — a cache hit needs no
 * durable record before `accepted` (SPEC §2.2), only a computed result does. So a
 * kill -9 in the milliseconds before that record is committed loses the job's id
 * (status answers not_found after the restart); its result stays in the cache, and
 * submitting it again is answered from there.
 *
 * A copy is used only while it is still what the store holds:
 *   - the store's cache generation (store_cache_generation) is the one the hit was
 *     found at: any purge, expiry, eviction or replacement of any entry drops every
 *     copy (coarse, but never stale);
 *   - the entry is younger than cache.ttl_s (its creation time is the store's);
 *   - the key matches field by field (kind, version, model, params), as in the store.
 * Copies are bounded by HOTCACHE_MAX_BYTES and dropped least recently used first,
 * and invalid ones at the next tick (hotcache_sweep); a result larger than a
 * quarter of that is never copied.
 *
 * Entries are reference-counted: a job answered from one holds it (its parts point
 * into the entry's blob) until the job's last frame is sent and its record stored. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kind.h"
#include "store.h"

#define HOTCACHE_MAX_BYTES (64u << 20)


struct hot_entry {
        atomic_int refs;
        struct hot_entry *chain_next;         /* hash chain */
        struct hot_entry *lru_prev, *lru_next;

        uint8_t hash[32];                     /* the key's digest: with kind and version, its identity */
        const char *kind;                     /* static: the kind's name */
        uint32_t version;
        uint8_t blob_id[16];                  /* the stored result the entry names */
        char backend[16];
        int64_t created_ms;                   /* the store entry's, wall clock */
        uint64_t generation;

        uint8_t *blob;                        /* the result blob (jobs.h), owned */
        size_t blob_size;
        struct kiln_result result;            /* parts point into blob */
        char *done_tail;                      /* the `done` message after the job id */
        size_t done_tail_len;
};

/* The valid copy for `key` at wall-clock now_ms (cache.ttl_s = ttl_s), moved to
 * the front; NULL when there is none (a stale one is dropped). Borrowed: take a
 * reference to keep it. */
struct hot_entry *hotcache_find(struct store *store, uint32_t ttl_s, const struct store_cache_key *key,
                                int64_t now_ms);

/* A job just answered by a store cache hit: its key, result (parts pointing into
 * the blob), `done` message (built for job id_text), backend, blob size and what
 * the store found. Strings are borrowed for the call. */
struct hot_source {
        const struct store_cache_key *key;
        const char *id_text;
        const char *done_json;
        const char *backend;
        const struct kiln_result *result;
        size_t blob_size;
        const struct store_cache_hit *hit;
};

/* Keeps a copy of such a job's result. On success takes the blob over (*blob is set
 * to NULL) and returns a new reference to the entry, which the job then holds in
 * its place; NULL (nothing taken) when the result is too large, the hit is stale
 * or memory is short. */
struct hot_entry *hotcache_put(struct store *store, const struct hot_source *src, uint8_t **blob);

/* The `done` message of a new job `id_text` answered from e (malloc'd), or NULL on
 * ENOMEM. */
char *hotcache_done(const struct hot_entry *e, const char *id_text);

struct hot_entry *hot_entry_ref(struct hot_entry *e);
/* Drops a reference from any thread; frees the entry at zero. Accepts NULL. */
void hot_entry_unref(struct hot_entry *e);

/* Drops the copies that are no longer valid (a purge, expiry, eviction or
 * replacement in the store since; older than ttl_s), so that their memory goes
 * without waiting for a lookup of the same key or for newer copies to push them
 * out. Walks the copies only when something may have changed: the store's cache
 * generation, or the earliest expiry passed. Loop thread, from the
 * once-a-second tick. */
void hotcache_sweep(struct store *store, uint32_t ttl_s, int64_t now_ms);

/* Bytes the copies hold in memory (loop thread): stats and /metrics. */
size_t hotcache_bytes(void);

/* Drops every copy (shutdown). */
void hotcache_clear(void);
