/* The cache's recent entries. A new entry is appended to "cache_recent" (key: u64 BE
 * sequence number; value: the 16-byte key hash, then the entry as "cache" holds it)
 * and found through an index in memory, hash -> number, rebuilt from that table at
 * open. Once CACHE_RECENT_MERGE_AT entries are there, the writer merges them into the
 * hash-ordered "cache" in hash order, a slice per transaction, then deletes them from
 * the front of "cache_recent".
 *
 * Why: "cache" is ordered by hash, so each new entry of a commit lands on another page
 * of a big table, and LMDB writes every page a commit touches. 64 single-row jobs
 * wrote about 107 pages for their entries (of 119 in all) and capped the single-row
 * risk.score load at ~45,000 jobs/s on 2 cores; appended, they fill a page or two.
 * Merged in hash order, many share each page of "cache" they land on.
 *
 * Between a merge and the deletion that ends it an entry is in both tables: equal
 * copies, as store_cache.c writes any change to both. A crash in between leaves that
 * too, and the next merge overwrites the copies.
 *
 * The index is changed at once by the writer's transaction (lock held) and put back
 * when it aborts. A reader on another thread may meanwhile miss an entry that is
 * being replaced or deleted: a miss, never a wrong result (the log's record carries
 * the hash and store_cache.c checks the entry). Memory: 24 bytes a slot, at most
 * RECENT_MAX_SLOTS (24 MiB); when it is full, new entries go to "cache" directly. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

#define CACHE_RECENT_MERGE_AT ((size_t)1 << 18)
#define RECENT_MIN_SLOTS ((size_t)1 << 12)
#define RECENT_MAX_SLOTS ((size_t)1 << 20)
/* Entries merged per transaction (at most this many pages of "cache" to write), and
 * an eighth of merge_at when that is less: small merges (tests) take several too. */
#define MERGE_STEP 1024
/* Room a merge asks of the store before it starts: per entry, and for its slices. */
#define MERGE_ROOM_PER_ENTRY 400
#define MERGE_ROOM_SLACK ((uint64_t)8 << 20)
/* Merged entries deleted from the front of the log per transaction. */
#define TRUNCATE_STEP 8192

static size_t merge_at_override, slots_override;

void store_set_cache_recent_slots(size_t n)
{
        slots_override = n;
}

void store_set_cache_merge_at(size_t n)
{
        merge_at_override = n;
}

/* An entry of the index, and of a merge's list. */
struct recent_slot {
        uint8_t hash[16];
        uint64_t seq; /* 0: empty */
};

struct cache_recent {
        pthread_mutex_t lock;        /* the index: read on any thread, changed by the writer */
        struct recent_slot *slots;
        size_t cap, count;           /* cap: a power of two, count <= cap / 2 */
        size_t max_slots;
        /* Entries that start a merge: CACHE_RECENT_MERGE_AT, or KILN_TEST_CACHE_MERGE_AT
         * (integration tests: merges under way when they kill kilnd), read at open. */
        size_t merge_at;

        /* Changed by write transactions only (the writer's thread). */
        uint64_t next_seq;
        atomic_bool merging;         /* read on any thread (store_cache_merge_due) */
        _Atomic uint64_t merges;     /* finished, since open */
        uint64_t upto;               /* the last number in the merge */
        /* The merge's entries in hash order while they are copied; NULL once they
         * all are, when the merge truncates the log. */
        struct recent_slot *sorted;
        size_t n_sorted, pos;        /* pos: those copied into "cache" so far */
};

/* store_set_cache_merge_at's, else the store's own. */
static size_t merge_at(const struct cache_recent *r)
{
        return merge_at_override ? merge_at_override : r->merge_at;
}

/* One change to the index, put back if the transaction aborts. */
struct recent_undo {
        uint8_t hash[16];
        uint64_t old_seq; /* 0: there was none */
};

static size_t slot_of(const struct cache_recent *r, const uint8_t hash[16])
{
        uint64_t a, b;

        memcpy(&a, hash, 8);
        memcpy(&b, hash + 8, 8);
        a = (a ^ b * 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
        return (size_t)(a ^ a >> 31) & (r->cap - 1);
}

/* The slot of `hash`, or SIZE_MAX. Lock held. */
static size_t index_find(const struct cache_recent *r, const uint8_t hash[16])
{
        if (!r->slots)
                return SIZE_MAX;
        for (size_t i = slot_of(r, hash);; i = (i + 1) & (r->cap - 1)) {
                if (r->slots[i].seq == 0)
                        return SIZE_MAX;
                if (!memcmp(r->slots[i].hash, hash, 16))
                        return i;
        }
}

static void index_insert_new(struct cache_recent *r, const uint8_t hash[16], uint64_t seq)
{
        size_t i = slot_of(r, hash);

        while (r->slots[i].seq != 0)
                i = (i + 1) & (r->cap - 1);
        memcpy(r->slots[i].hash, hash, 16);
        r->slots[i].seq = seq;
        r->count++;
}

/* Room for one more entry: grows the table. False when it is at its largest, or on
 * ENOMEM. Writer only, lock not held: the bigger table is filled outside the lock
 * (only the writer changes the index, so reading it unlocked is safe), and swapped
 * in under it, so lookups on other threads never wait for the rehash. */
static bool index_room(struct cache_recent *r)
{
        struct cache_recent grown = { 0 };
        struct recent_slot *old = r->slots;

        if (old && (r->count + 1) * 2 <= r->cap)
                return true;
        grown.cap = old ? r->cap * 2 : RECENT_MIN_SLOTS < r->max_slots ? RECENT_MIN_SLOTS : r->max_slots;
        if (grown.cap > r->max_slots)
                return false;
        grown.slots = calloc(grown.cap, sizeof(*grown.slots));
        if (!grown.slots)
                return false;
        for (size_t i = 0; old && i < r->cap; i++)
                if (old[i].seq)
                        index_insert_new(&grown, old[i].hash, old[i].seq);
        pthread_mutex_lock(&r->lock);
        r->slots = grown.slots;
        r->cap = grown.cap;
        pthread_mutex_unlock(&r->lock);
        free(old);
        return true;
}

/* Empties slot i, moving back the entries after it that would no longer be found
 * (linear probing's deletion). Lock held. */
static void index_remove_at(struct cache_recent *r, size_t i)
{
        size_t mask = r->cap - 1;

        for (size_t j = (i + 1) & mask; r->slots[j].seq; j = (j + 1) & mask) {
                size_t home = slot_of(r, r->slots[j].hash);
                /* j's entry may move to i when i lies in its probe run, home..j. */
                if (((j - home) & mask) >= ((j - i) & mask)) {
                        r->slots[i] = r->slots[j];
                        i = j;
                }
        }
        r->slots[i].seq = 0;
        r->count--;
}

/* Maps hash to seq (0: removes it). Lock held; room made beforehand. */
static void index_set(struct cache_recent *r, const uint8_t hash[16], uint64_t seq)
{
        size_t i = index_find(r, hash);

        if (i != SIZE_MAX) {
                if (seq)
                        r->slots[i].seq = seq;
                else
                        index_remove_at(r, i);
        } else if (seq) {
                index_insert_new(r, hash, seq);
        }
}

static uint64_t index_get(struct cache_recent *r, const uint8_t hash[16])
{
        size_t i;
        uint64_t seq;

        pthread_mutex_lock(&r->lock);
        i = index_find(r, hash);
        seq = i == SIZE_MAX ? 0 : r->slots[i].seq;
        pthread_mutex_unlock(&r->lock);
        return seq;
}

static int undo_reserve(struct store_txn *t)
{
        if (t->n_undo < t->cap_undo)
                return 0;
        size_t cap = t->cap_undo ? t->cap_undo * 2 : 64;
        struct recent_undo *u = realloc(t->undo, cap * sizeof(*u));
        if (!u)
                return -ENOMEM;
        t->undo = u;
        t->cap_undo = cap;
        return 0;
}

/* Changes hash's mapping to seq (0: none) and remembers the old one. The caller has
 * reserved an undo record and, for a new hash, room. Lock held. */
static void index_change(struct store_txn *t, const uint8_t hash[16], uint64_t seq)
{
        struct cache_recent *r = t->s->recent;
        size_t i = index_find(r, hash);
        struct recent_undo *u = &t->undo[t->n_undo++];

        memcpy(u->hash, hash, 16);
        u->old_seq = i == SIZE_MAX ? 0 : r->slots[i].seq;
        index_set(r, hash, seq);
}

static MDB_val seq_key(uint8_t buf[8], uint64_t seq)
{
        put_be64(buf, seq);
        return (MDB_val){ .mv_size = 8, .mv_data = buf };
}

/* ---- entries ---- */

int cache_recent_get(struct store_txn *t, const uint8_t hash[16], uint64_t *ret_seq, MDB_val *ret_val)
{
        uint64_t seq = index_get(t->s->recent, hash);
        uint8_t kb[8];
        MDB_val key = seq_key(kb, seq), val;
        int r;

        if (seq == 0)
                return -ENOENT;
        const uint8_t *h;
        r = store_mdb_errno(mdb_get(t->txn, t->s->cache_recent, &key, &val));
        if (r < 0)
                return r;
        /* Another snapshot's entry under that number, or an unreadable one: none. */
        if (!cache_recent_record(&val, &h, ret_val) || memcmp(h, hash, 16))
                return -ENOENT;
        *ret_seq = seq;
        return 0;
}

static int record_put(struct store_txn *t, uint64_t seq, const uint8_t hash[16], const uint8_t *entry, size_t n,
                      unsigned flags)
{
        uint8_t kb[8];
        MDB_val key = seq_key(kb, seq), val = { .mv_size = 16 + n, .mv_data = NULL };
        int r = store_txn_result(t, mdb_put(t->txn, t->s->cache_recent, &key, &val, flags | MDB_RESERVE));

        if (r < 0)
                return r;
        memcpy(val.mv_data, hash, 16);
        memcpy((uint8_t *)val.mv_data + 16, entry, n);
        return 0;
}

int cache_recent_add(struct store_txn *t, const uint8_t hash[16], const uint8_t *entry, size_t n)
{
        struct cache_recent *r = t->s->recent;
        bool room;
        uint64_t seq;
        int e;

        e = undo_reserve(t);
        if (e < 0)
                return e;
        room = index_room(r);
        if (!room)
                return -EAGAIN;
        seq = r->next_seq++;
        e = record_put(t, seq, hash, entry, n, MDB_APPEND);
        if (e < 0)
                return e;
        pthread_mutex_lock(&r->lock);
        index_change(t, hash, seq);
        pthread_mutex_unlock(&r->lock);
        return 0;
}

int cache_recent_rewrite(struct store_txn *t, uint64_t seq, const uint8_t hash[16], const uint8_t *entry, size_t n)
{
        return record_put(t, seq, hash, entry, n, 0);
}

int cache_recent_del(struct store_txn *t, const uint8_t hash[16], uint64_t seq)
{
        struct cache_recent *r = t->s->recent;
        uint8_t kb[8];
        MDB_val key = seq_key(kb, seq);
        int e = undo_reserve(t);

        if (e >= 0)
                e = store_del_quiet(t, t->s->cache_recent, &key);
        if (e < 0)
                return e;
        pthread_mutex_lock(&r->lock);
        if (index_find(r, hash) != SIZE_MAX)
                index_change(t, hash, 0);
        pthread_mutex_unlock(&r->lock);
        return 0;
}

/* ---- the end of a transaction ---- */

void cache_recent_committed(struct store_txn *t)
{
        struct cache_recent *r = t->s->recent;

        if (t->merge_pos > r->pos) {
                r->pos = t->merge_pos;
                if (r->pos == r->n_sorted) {
                        free(r->sorted);
                        r->sorted = NULL;
                }
        }
        if (t->merge_finished) {
                r->merging = false;
                atomic_fetch_add(&r->merges, 1);
        }
        free(t->undo);
        t->undo = NULL;
        t->n_undo = 0;
}

void cache_recent_aborted(struct store_txn *t)
{
        struct cache_recent *r = t->s->recent;

        if (t->n_undo) {
                pthread_mutex_lock(&r->lock);
                /* In reverse, each back to what it was; a slot freed by a change is still
                 * free, so putting an entry back always finds room. */
                while (t->n_undo > 0) {
                        struct recent_undo *u = &t->undo[--t->n_undo];
                        index_set(r, u->hash, u->old_seq);
                }
                pthread_mutex_unlock(&r->lock);
        }
        free(t->undo);
        t->undo = NULL;
}

void cache_recent_figures(struct store *s, uint64_t *ret_entries, uint64_t *ret_merges)
{
        struct cache_recent *r = s->recent;

        pthread_mutex_lock(&r->lock);
        *ret_entries = r->count;
        pthread_mutex_unlock(&r->lock);
        *ret_merges = atomic_load(&r->merges);
}

/* ---- merging ---- */

bool store_cache_merge_due(struct store *s)
{
        struct cache_recent *r = s->recent;
        size_t n;

        if (r->merging)
                return true;
        pthread_mutex_lock(&r->lock);
        n = r->count;
        pthread_mutex_unlock(&r->lock);
        return n >= merge_at(r);
}

static int hash_cmp(const void *a, const void *b)
{
        return memcmp(a, b, 16);
}

/* What a merge of n entries may need of the store's room: their copies in "cache"
 * (an entry of at most ~200 bytes with its key and node header, format 3 with the
 * longest backend, kind and tenant, in leaves left half full), kept until the
 * truncation frees the log's pages, and the pages one slice rewrites. */
static uint64_t merge_room(size_t n)
{
        return (uint64_t)n * MERGE_ROOM_PER_ENTRY + MERGE_ROOM_SLACK;
}

/* Takes every entry of the index, in hash order, as the merge's list. Writer only:
 * the index is read without the lock (only the writer changes it). */
static int merge_start(struct store *s, struct cache_recent *r)
{
        struct store_room room;
        size_t n = 0;
        int e;

        /* A merge too big for the room left would take the last of it from the jobs
         * that arrive meanwhile: it waits (the writer tries again later), and the
         * log goes on taking entries until its index is full. */
        e = store_room(s, &room);
        if (e < 0)
                return e;
        if (room.room < merge_room(r->count))
                return -ENOSPC;
        r->sorted = malloc((r->count ? r->count : 1) * sizeof(*r->sorted));
        if (!r->sorted)
                return -ENOMEM;
        for (size_t i = 0; i < r->cap; i++)
                if (r->slots[i].seq)
                        r->sorted[n++] = r->slots[i];
        qsort(r->sorted, n, sizeof(*r->sorted), hash_cmp);
        r->n_sorted = n;
        r->pos = 0;
        r->upto = r->next_seq - 1;
        r->merging = true;
        if (n == 0) { /* nothing to copy (not due then, but never stuck): truncate */
                free(r->sorted);
                r->sorted = NULL;
        }
        return 0;
}

/* Copies the next slice of the merge into "cache". */
static int merge_slice(struct store_txn *t)
{
        struct cache_recent *r = t->s->recent;
        size_t step = merge_at(r) >= 8 && merge_at(r) / 8 < MERGE_STEP ? merge_at(r) / 8 : MERGE_STEP;
        size_t end = r->pos + step < r->n_sorted ? r->pos + step : r->n_sorted;
        int e = 0;

        for (size_t i = r->pos; e >= 0 && i < end; i++) {
                const struct recent_slot *m = &r->sorted[i];
                uint8_t kb[8];
                MDB_val key = seq_key(kb, m->seq), val, hk;

                e = store_mdb_errno(mdb_get(t->txn, t->s->cache_recent, &key, &val));
                if (e == -ENOENT) {
                        e = 0; /* deleted or replaced since */
                        continue;
                }
                const uint8_t *h;
                MDB_val entry;
                if (e < 0 || !cache_recent_record(&val, &h, &entry) || memcmp(h, m->hash, 16))
                        continue;
                hk = store_key16(m->hash);
                e = store_txn_result(t, mdb_put(t->txn, t->s->cache, &hk, &entry, 0));
        }
        if (e >= 0)
                t->merge_pos = end;
        return e;
}

/* Deletes merged entries from the front of the log. */
static int merge_truncate(struct store_txn *t)
{
        struct cache_recent *r = t->s->recent;
        MDB_cursor *c;
        MDB_val key, val;
        bool done = false;
        int rc = 0, e;

        e = store_mdb_errno(mdb_cursor_open(t->txn, t->s->cache_recent, &c));
        if (e < 0)
                return e;
        for (size_t n = 0; n < TRUNCATE_STEP; n++) {
                uint8_t hash[16];
                uint64_t seq = 0;
                bool hashed = false;

                rc = mdb_cursor_get(c, &key, &val, MDB_FIRST);
                if (rc != 0)
                        break;
                if (key.mv_size == 8) {
                        seq = get_be64(key.mv_data);
                        if (seq > r->upto) {
                                done = true;
                                break;
                        }
                }
                if (val.mv_size >= 16) {
                        memcpy(hash, val.mv_data, 16);
                        hashed = true;
                }
                e = undo_reserve(t);
                if (e >= 0)
                        e = store_txn_result(t, mdb_cursor_del(c, 0));
                if (e < 0)
                        break;
                if (hashed) {
                        pthread_mutex_lock(&r->lock);
                        size_t i = index_find(r, hash);
                        if (i != SIZE_MAX && r->slots[i].seq == seq)
                                index_change(t, hash, 0);
                        pthread_mutex_unlock(&r->lock);
                }
        }
        mdb_cursor_close(c);
        if (e < 0)
                return e;
        if (rc == MDB_NOTFOUND)
                done = true;
        else if (rc != 0)
                return store_mdb_errno(rc);
        t->merge_finished = done;
        return 0;
}

int store_cache_merge_step(struct store_txn *t)
{
        struct cache_recent *r = t->s->recent;
        int e;

        if (t->err < 0)
                return t->err;
        if (!r->merging) {
                if (!store_cache_merge_due(t->s))
                        return 0;
                e = merge_start(t->s, r);
                if (e < 0)
                        return e;
        }
        e = r->sorted ? merge_slice(t) : merge_truncate(t);
        return e < 0 ? e : 1;
}

/* ---- open and close ---- */

int cache_recent_new(struct store *s)
{
        struct cache_recent *r = calloc(1, sizeof(*r));

        if (!r)
                return -ENOMEM;
        if (pthread_mutex_init(&r->lock, NULL) != 0) {
                free(r);
                return -ENOMEM;
        }
        r->next_seq = 1;
        r->merge_at = CACHE_RECENT_MERGE_AT;
        const char *e = getenv("KILN_TEST_CACHE_MERGE_AT");
        char *end;
        unsigned long long v = e && *e ? strtoull(e, &end, 10) : 0;
        if (v > 0 && v < SIZE_MAX && !*end)
                r->merge_at = (size_t)v;
        r->max_slots = RECENT_MAX_SLOTS;
        if (slots_override >= 4 && (slots_override & (slots_override - 1)) == 0)
                r->max_slots = slots_override;
        s->recent = r;
        return 0;
}

void cache_recent_free(struct store *s)
{
        struct cache_recent *r = s->recent;

        if (!r)
                return;
        pthread_mutex_destroy(&r->lock);
        free(r->slots);
        free(r->sorted);
        free(r);
        s->recent = NULL;
}

/* Indexes the log at open. An entry the index has no room for (a log written with a
 * larger table) is moved into "cache" in this transaction. Returns an LMDB code. */
int cache_recent_load(struct store *s, MDB_txn *txn)
{
        struct cache_recent *r = s->recent;
        MDB_cursor *c;
        MDB_val key, val;
        int rc;

        rc = mdb_cursor_open(txn, s->cache_recent, &c);
        if (rc)
                return rc;
        for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                uint64_t seq;
                const uint8_t *hash;
                MDB_val entry;

                if (key.mv_size != 8 || !cache_recent_record(&val, &hash, &entry)) {
                        /* Not a record this file writes: dropped, so appends never meet it. */
                        rc = mdb_cursor_del(c, 0);
                        if (rc)
                                break;
                        continue;
                }
                seq = get_be64(key.mv_data);
                if (seq >= r->next_seq)
                        r->next_seq = seq + 1;
                if (index_room(r)) {
                        index_set(r, hash, seq);
                        continue;
                }
                MDB_val hk = store_key16(hash);
                rc = mdb_put(txn, s->cache, &hk, &entry, 0);
                if (rc == 0)
                        rc = mdb_cursor_del(c, 0);
                if (rc)
                        break;
        }
        mdb_cursor_close(c);
        return rc == MDB_NOTFOUND ? 0 : rc;
}
