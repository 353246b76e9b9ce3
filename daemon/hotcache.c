/* Hot results: see hotcache.h. Loop thread only, except hot_entry_unref. */
#include "hotcache.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define BUCKETS 16384 /* a power of two */

/* What every `done` of a job answered from the cache starts with (job_build_done). */
static const char done_head[] = "{\"op\":\"done\",\"job\":\"";
#define ID_LEN 36

static struct hot_entry **buckets;
static struct hot_entry *lru_head, *lru_tail; /* most recently used first */
static size_t n_entries, n_bytes;
static int64_t earliest_created_ms = INT64_MAX; /* of the copies (at most: a sweep makes it exact) */
static uint64_t swept_generation;               /* the store's cache generation at the last sweep */

static size_t bucket_of(const uint8_t hash[32])
{
        uint64_t h;

        memcpy(&h, hash, 8);
        return (size_t)h & (BUCKETS - 1);
}

static size_t entry_bytes(const struct hot_entry *e)
{
        return sizeof(*e) + e->blob_size + e->done_tail_len;
}

struct hot_entry *hot_entry_ref(struct hot_entry *e)
{
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        return e;
}

void hot_entry_unref(struct hot_entry *e)
{
        if (!e || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
                return;
        kiln_result_clear(&e->result); /* its values' texts; the parts point into the blob */
        free(e->blob);
        free(e->done_tail);
        free(e);
}

static void lru_unlink(struct hot_entry *e)
{
        if (e->lru_prev)
                e->lru_prev->lru_next = e->lru_next;
        else
                lru_head = e->lru_next;
        if (e->lru_next)
                e->lru_next->lru_prev = e->lru_prev;
        else
                lru_tail = e->lru_prev;
        e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct hot_entry *e)
{
        e->lru_prev = NULL;
        e->lru_next = lru_head;
        if (lru_head)
                lru_head->lru_prev = e;
        lru_head = e;
        if (!lru_tail)
                lru_tail = e;
}

/* Unlinks e from the table and the LRU list and drops the table's reference. */
static void entry_drop(struct hot_entry *e)
{
        for (struct hot_entry **pp = &buckets[bucket_of(e->hash)]; *pp; pp = &(*pp)->chain_next)
                if (*pp == e) {
                        *pp = e->chain_next;
                        break;
                }
        lru_unlink(e);
        n_entries--;
        n_bytes -= entry_bytes(e);
        hot_entry_unref(e);
}

static bool key_matches(const struct hot_entry *e, const struct store_cache_key *k)
{
        return !memcmp(e->hash, k->hash, sizeof(e->hash)) && e->version == k->version && !strcmp(e->kind, k->kind);
}

static bool entry_valid(struct store *store, uint32_t ttl_s, const struct hot_entry *e, int64_t now_ms)
{
        if (e->generation != store_cache_generation(store))
                return false;
        return !ttl_s || e->created_ms + (int64_t)ttl_s * 1000 > now_ms;
}

static struct hot_entry *entry_lookup(const struct store_cache_key *key)
{
        if (!buckets)
                return NULL;
        for (struct hot_entry *e = buckets[bucket_of(key->hash)]; e; e = e->chain_next)
                if (key_matches(e, key))
                        return e;
        return NULL;
}

struct hot_entry *hotcache_find(struct store *store, uint32_t ttl_s, const struct store_cache_key *key,
                                int64_t now_ms)
{
        struct hot_entry *e = entry_lookup(key);

        if (!e)
                return NULL;
        if (!entry_valid(store, ttl_s, e, now_ms)) {
                entry_drop(e);
                return NULL;
        }
        if (e != lru_head) {
                lru_unlink(e);
                lru_push_front(e);
        }
        return e;
}

struct hot_entry *hotcache_put(struct store *store, const struct hot_source *src, uint8_t **blob)
{
        const struct store_cache_key *key = src->key;
        size_t head = sizeof(done_head) - 1;

        if (!*blob || !src->done_json || src->blob_size > HOTCACHE_MAX_BYTES / 4 ||
            src->hit->generation != store_cache_generation(store))
                return NULL;
        /* The `done` of a cache hit differs between jobs only in the id. */
        size_t dl = strlen(src->done_json);
        if (dl < head + ID_LEN || memcmp(src->done_json, done_head, head) ||
            memcmp(src->done_json + head, src->id_text, ID_LEN))
                return NULL;
        if (!buckets && !(buckets = calloc(BUCKETS, sizeof(*buckets))))
                return NULL;
        struct hot_entry *old = entry_lookup(key); /* an older copy of the same key goes */
        if (old)
                entry_drop(old);

        struct hot_entry *e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        atomic_init(&e->refs, 1);
        memcpy(e->hash, key->hash, sizeof(e->hash));
        e->kind = key->kind;
        e->version = key->version;
        e->done_tail_len = dl - head - ID_LEN;
        e->done_tail = malloc(e->done_tail_len + 1);
        if (!e->done_tail) {
                hot_entry_unref(e);
                return NULL;
        }
        memcpy(e->done_tail, src->done_json + head + ID_LEN, e->done_tail_len + 1);
        memcpy(e->blob_id, src->hit->blob, 16);
        snprintf(e->backend, sizeof(e->backend), "%s", src->backend);
        e->created_ms = src->hit->created_ms;
        e->generation = src->hit->generation;
        /* The entry takes the blob over; the job's parts keep pointing into it. */
        e->blob = *blob;
        e->blob_size = src->blob_size;
        e->result = *src->result;
        *blob = NULL;

        size_t b = bucket_of(e->hash);
        e->chain_next = buckets[b];
        buckets[b] = e;
        lru_push_front(e);
        n_entries++;
        n_bytes += entry_bytes(e);
        if (e->created_ms < earliest_created_ms)
                earliest_created_ms = e->created_ms;
        while (n_bytes > HOTCACHE_MAX_BYTES && lru_tail && lru_tail != e)
                entry_drop(lru_tail);
        return hot_entry_ref(e);
}

size_t hotcache_bytes(void)
{
        return n_bytes;
}

void hotcache_sweep(struct store *store, uint32_t ttl_s, int64_t now_ms)
{
        uint64_t generation = store_cache_generation(store);
        bool expiry_due = ttl_s && earliest_created_ms != INT64_MAX &&
                          earliest_created_ms + (int64_t)ttl_s * 1000 <= now_ms;
        if (!lru_head || (generation == swept_generation && !expiry_due))
                return;
        swept_generation = generation;
        earliest_created_ms = INT64_MAX;
        for (struct hot_entry *e = lru_head, *next; e; e = next) {
                next = e->lru_next;
                if (!entry_valid(store, ttl_s, e, now_ms))
                        entry_drop(e);
                else if (e->created_ms < earliest_created_ms)
                        earliest_created_ms = e->created_ms;
        }
}

char *hotcache_done(const struct hot_entry *e, const char *id_text)
{
        size_t head = sizeof(done_head) - 1;
        char *done = strlen(id_text) == ID_LEN ? malloc(head + ID_LEN + e->done_tail_len + 1) : NULL;

        if (!done)
                return NULL;
        memcpy(done, done_head, head);
        memcpy(done + head, id_text, ID_LEN);
        memcpy(done + head + ID_LEN, e->done_tail, e->done_tail_len + 1);
        return done;
}

void hotcache_clear(void)
{
        while (lru_head)
                entry_drop(lru_head);
        free(buckets);
        buckets = NULL;
        earliest_created_ms = INT64_MAX;
}
