/* Stored objects as kilnd uses them: versions, compiled snapshots, work off the
 * loop (see objects.h). */
#include "objects.h"

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kind.h"
#include "risk_score/model.h"
#include "store.h"
#include "storeq.h"
#include "util.h"
#include "vec_search/collection.h"

/* Workers for any work, prompt work first, and one for prompt work alone, which a
 * long check of an upload or a free waiting for a device never holds up. */
#define WORKERS 2
#define PROMPT_WORKERS 1
#define KEY_MAX (STORE_OBJECT_TENANT_MAX + 1 + STORE_OBJECT_CLASS_MAX + 1 + STORE_OBJECT_NAME_MAX)

static const struct kiln_object_class *const classes[] = { &risk_model_class, &vec_collection_class };

const struct kiln_object_class *objects_class_find(const char *name)
{
        for (size_t i = 0; name && i < sizeof(classes) / sizeof(classes[0]); i++)
                if (!strcmp(classes[i]->name, name))
                        return classes[i];
        return NULL;
}

/* ---- keys: "tenant NUL class NUL name", as the store's ---- */

/* Writes the key into buf (KEY_MAX bytes) and returns its length, or 0 when a part
 * is empty or longer than the store allows (no such object can exist). */
static size_t key_make(char *buf, const char *tenant, const char *cls, const char *name)
{
        size_t lt = strnlen(tenant, STORE_OBJECT_TENANT_MAX + 1), lc = strnlen(cls, STORE_OBJECT_CLASS_MAX + 1),
               ln = strnlen(name, STORE_OBJECT_NAME_MAX + 1);

        if (!lt || lt > STORE_OBJECT_TENANT_MAX || !lc || lc > STORE_OBJECT_CLASS_MAX || !ln ||
            ln > STORE_OBJECT_NAME_MAX)
                return 0;
        memcpy(buf, tenant, lt);
        buf[lt] = '\0';
        memcpy(buf + lt + 1, cls, lc);
        buf[lt + 1 + lc] = '\0';
        memcpy(buf + lt + 1 + lc + 1, name, ln);
        return lt + 1 + lc + 1 + ln;
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
        const uint8_t *b = p;
        uint64_t h = 0xcbf29ce484222325ull ^ seed;

        for (size_t i = 0; i < n; i++) {
                h ^= b[i];
                h *= 0x100000001b3ull;
        }
        return h ^ (h >> 29);
}

/* ---- a map from keys to versions and metas (loop thread) ---- */

/* One object's current version and its meta (meta_len 0: none, or one longer than
 * OBJECTS_META_MAX, which is not kept). */
struct ventry {
        struct ventry *next;
        uint64_t hash, version;
        size_t meta_len;
        uint8_t meta[OBJECTS_META_MAX];
        size_t klen;
        char key[];
};

struct vmap {
        struct ventry **b;
        size_t nb, n;
};

/* The link that holds key (or the end of its chain). The map must have buckets. */
static struct ventry **vmap_find(struct vmap *m, const char *key, size_t klen, uint64_t h)
{
        struct ventry **pp = &m->b[h & (m->nb - 1)];
        for (; *pp; pp = &(*pp)->next)
                if ((*pp)->hash == h && (*pp)->klen == klen && !memcmp((*pp)->key, key, klen))
                        break;
        return pp;
}

static const struct ventry *vmap_get(struct vmap *m, const char *key, size_t klen)
{
        if (!m->nb)
                return NULL;
        return *vmap_find(m, key, klen, hash_bytes(key, klen, 0));
}

static void ventry_set(struct ventry *e, uint64_t version, const void *meta, size_t meta_len)
{
        e->version = version;
        e->meta_len = meta && meta_len <= OBJECTS_META_MAX ? meta_len : 0;
        if (e->meta_len)
                memcpy(e->meta, meta, e->meta_len);
}

/* Doubles the buckets (64 at first). Returns >= 0 or -ENOMEM. */
static int vmap_grow(struct vmap *m)
{
        size_t nb = m->nb ? m->nb * 2 : 64;
        struct ventry **t = calloc(nb, sizeof(*t));

        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < m->nb; i++)
                for (struct ventry *x = m->b[i], *next; x; x = next) {
                        next = x->next;
                        x->next = t[x->hash & (nb - 1)];
                        t[x->hash & (nb - 1)] = x;
                }
        free(m->b);
        m->b = t;
        m->nb = nb;
        return 0;
}

/* Sets key to version and meta (copied); version 0 removes it. Returns >= 0 or
 * -ENOMEM. */
static int vmap_set(struct vmap *m, const char *key, size_t klen, uint64_t version, const void *meta,
                    size_t meta_len)
{
        uint64_t h = hash_bytes(key, klen, 0);
        struct ventry **pp = m->nb ? vmap_find(m, key, klen, h) : NULL, *e = pp ? *pp : NULL;

        if (e && version) {
                ventry_set(e, version, meta, meta_len);
                return 0;
        }
        if (e) {
                *pp = e->next;
                free(e);
                m->n--;
                return 0;
        }
        if (!version)
                return 0;
        if (m->n >= m->nb && vmap_grow(m) < 0)
                return -ENOMEM;
        e = malloc(sizeof(*e) + klen);
        if (!e)
                return -ENOMEM;
        e->hash = h;
        ventry_set(e, version, meta, meta_len);
        e->klen = klen;
        memcpy(e->key, key, klen);
        e->next = m->b[h & (m->nb - 1)];
        m->b[h & (m->nb - 1)] = e;
        m->n++;
        return 0;
}

static void vmap_clear(struct vmap *m)
{
        for (size_t i = 0; i < m->nb; i++)
                for (struct ventry *x = m->b[i], *next; x; x = next) {
                        next = x->next;
                        free(x);
                }
        free(m->b);
        memset(m, 0, sizeof(*m));
}

/* ---- the module ---- */

/* One snapshot in memory: loading (refs counts its waiters too), ready, or failed
 * (out of the table already, freed by its last waiter). While ready and
 * unreferenced it is also in the idle list, least recently used first. */
enum snap_state { SNAP_LOADING, SNAP_READY, SNAP_FAILED };

struct snap {
        struct object_ref ref;
        struct snap *hnext;
        struct snap *idle_prev, *idle_next;
        uint64_t hash;
        unsigned refs;
        enum snap_state state;
        int err;
        char msg[256];
        size_t bytes;
        bool gone;                /* its object was dropped: out of the table, freed at its last release */
        bool stale;               /* a newer version was put: freed at its last release, not kept idle */
        size_t klen;
        char key[];
};

#define SNAP_BUCKETS 256

struct objects {
        struct store *store;
        struct mailbox *mb;

        /* loop thread */
        struct vmap versions;        /* key -> current version and meta */

        /* snapshots, under lock */
        pthread_mutex_t lock;
        pthread_cond_t loaded;       /* a snapshot left SNAP_LOADING */
        struct snap *table[SNAP_BUCKETS];
        struct snap *idle_head, *idle_tail;
        uint64_t idle_n, idle_bytes, max_idle_bytes;
        unsigned max_idle;
        uint64_t n_entries, compiles, hits, evictions;

        /* told before a snapshot is released (the backends' device copies); read
         * under `lock`, with hook_calls counting the frees calling it now */
        void (*on_release)(void *ctx, const struct kiln_object *obj);
        void *release_ctx;
        unsigned hook_calls;
        pthread_cond_t hook_idle;    /* hook_calls fell to 0 */

        /* the workers */
        pthread_mutex_t wlock;
        pthread_cond_t wcond;
        struct {
                struct objects_work *head, *tail;
        } wq[2];                     /* 0: prompt work, 1: the rest */
        bool wstop;
        pthread_t threads[WORKERS + PROMPT_WORKERS];
        unsigned n_threads;
};

/* ---- versions ---- */

int objects_meta(struct objects *o, const char *tenant, const char *cls, const char *name, uint64_t *ret_version,
                 const uint8_t **ret_meta, size_t *ret_len)
{
        char key[KEY_MAX];
        size_t klen = key_make(key, tenant, cls, name);
        const struct ventry *e = klen ? vmap_get(&o->versions, key, klen) : NULL;

        if (!e)
                return -ENOENT;
        if (ret_version)
                *ret_version = e->version;
        if (ret_meta)
                *ret_meta = e->meta_len ? e->meta : NULL;
        if (ret_len)
                *ret_len = e->meta_len;
        return 0;
}

uint64_t objects_version(struct objects *o, const char *tenant, const char *cls, const char *name)
{
        uint64_t version = 0;

        return objects_meta(o, tenant, cls, name, &version, NULL, NULL) >= 0 ? version : 0;
}

static void idle_unlink(struct objects *o, struct snap *s);
static void snaps_free_later(struct objects *o, struct snap *victims);

void objects_changed(struct objects *o, const char *tenant, const char *cls, const char *name, uint64_t version,
                     const void *meta, size_t meta_len)
{
        char key[KEY_MAX];
        size_t klen = key_make(key, tenant, cls, name);

        if (!klen)
                return;
        /* Out of memory here would leave a stale version: the next job would bind to
         * it and fail with not_found or run on the old data. Nothing better can be
         * done than dropping the entry, which at worst answers "no such object". */
        if (vmap_set(&o->versions, key, klen, version, meta, meta_len) < 0)
                vmap_set(&o->versions, key, klen, 0, NULL, 0);

        /* Dropped (version 0): no job may run on its snapshots any more (a job
         * bound to it fails not_found, also when the name is put anew), so each
         * leaves the table (gone). Replaced: snapshots of older versions are what no
         * new job asks for, and a job bound to one that is not in memory runs
         * against the stored version (jobs.c, sink_prepare); one in use or still
         * loading stays in the table for its jobs (stale). Either way an idle one
         * goes now and one in use at its last release, so memory holds one copy of
         * an object once its jobs are done, not one per version put. */
        bool dropped = version == 0;
        struct snap *victims = NULL;
        pthread_mutex_lock(&o->lock);
        for (size_t b = 0; b < SNAP_BUCKETS; b++)
                for (struct snap **pp = &o->table[b]; *pp;) {
                        struct snap *s = *pp;
                        bool mine = s->klen == klen && !memcmp(s->key, key, klen) &&
                                    (dropped || s->ref.version < version);
                        bool idle = s->state == SNAP_READY && s->refs == 0;
                        if (mine && !dropped)
                                s->stale = true;
                        if (!mine || (!dropped && !idle)) {
                                pp = &s->hnext;
                                continue;
                        }
                        *pp = s->hnext;
                        o->n_entries--;
                        s->gone = dropped;
                        if (!idle)
                                continue;
                        idle_unlink(o, s);
                        if (!dropped)
                                o->evictions++;
                        s->hnext = victims;
                        victims = s;
                }
        pthread_mutex_unlock(&o->lock);
        snaps_free_later(o, victims);
}

/* ---- snapshots ---- */

/* A sentence for objects_acquire's caller (256 bytes, cut when longer). */
__attribute__((format(printf, 2, 3)))
static void say(char *msg, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, 256, fmt, ap);
        va_end(ap);
}

/* A snapshot whose object was dropped (snap.gone): -ENOENT, and why. */
static int gone(char *msg, const struct kiln_object_class *cls, const char *name)
{
        say(msg, "%s \"%.128s\" was deleted", cls->name, name);
        return -ENOENT;
}

static uint64_t snap_hash(const char *key, size_t klen, uint64_t version)
{
        return hash_bytes(key, klen, version * 0x9e3779b97f4a7c15ull);
}

static struct snap **snap_find(struct objects *o, const char *key, size_t klen, uint64_t version, uint64_t h)
{
        struct snap **pp = &o->table[h % SNAP_BUCKETS];
        for (; *pp; pp = &(*pp)->hnext)
                if ((*pp)->hash == h && (*pp)->ref.version == version && (*pp)->klen == klen &&
                    !memcmp((*pp)->key, key, klen))
                        break;
        return pp;
}

static void snap_unlink(struct objects *o, struct snap *s)
{
        for (struct snap **pp = &o->table[s->hash % SNAP_BUCKETS]; *pp; pp = &(*pp)->hnext)
                if (*pp == s) {
                        *pp = s->hnext;
                        o->n_entries--;
                        return;
                }
}

static void idle_unlink(struct objects *o, struct snap *s)
{
        if (s->idle_prev)
                s->idle_prev->idle_next = s->idle_next;
        else
                o->idle_head = s->idle_next;
        if (s->idle_next)
                s->idle_next->idle_prev = s->idle_prev;
        else
                o->idle_tail = s->idle_prev;
        s->idle_prev = s->idle_next = NULL;
        o->idle_n--;
        o->idle_bytes -= s->bytes;
}

static void idle_push_back(struct objects *o, struct snap *s)
{
        s->idle_next = NULL;
        s->idle_prev = o->idle_tail;
        if (o->idle_tail)
                o->idle_tail->idle_next = s;
        else
                o->idle_head = s;
        o->idle_tail = s;
        o->idle_n++;
        o->idle_bytes += s->bytes;
}

/* Takes the least recently used idle snapshots out while the idle ones exceed the
 * bound, chaining them on *victims (through hnext) for release outside the lock. */
static void evict_locked(struct objects *o, struct snap **victims)
{
        while (o->idle_head && (o->idle_n > o->max_idle || o->idle_bytes > o->max_idle_bytes)) {
                struct snap *s = o->idle_head;
                idle_unlink(o, s);
                snap_unlink(o, s);
                o->evictions++;
                s->hnext = *victims;
                *victims = s;
        }
}

/* Frees a chain of snapshots (through hnext), telling the release hook of each
 * first. Not under o->lock. */
static void snaps_free(struct objects *o, struct snap *s)
{
        void (*hook)(void *ctx, const struct kiln_object *obj);
        void *ctx;

        if (!s)
                return;
        /* The hook and its context as one pair, and counted while in use, so that
         * objects_set_release_hook can wait for the calls it replaces. */
        pthread_mutex_lock(&o->lock);
        hook = o->on_release;
        ctx = o->release_ctx;
        if (hook)
                o->hook_calls++;
        pthread_mutex_unlock(&o->lock);
        while (s) {
                struct snap *next = s->hnext;
                if (s->ref.snapshot && hook) {
                        struct kiln_object obj = { .cls = s->ref.cls, .version = s->ref.version,
                                                   .snapshot = s->ref.snapshot };
                        hook(ctx, &obj);
                }
                if (s->ref.snapshot)
                        s->ref.cls->release((void *)s->ref.snapshot);
                free(s);
                s = next;
        }
        if (hook) {
                pthread_mutex_lock(&o->lock);
                if (--o->hook_calls == 0)
                        pthread_cond_broadcast(&o->hook_idle);
                pthread_mutex_unlock(&o->lock);
        }
}

/* Feeds a compile the object's items from the read transaction the load holds. */
struct items_ctx {
        struct store_txn *t;
        const struct store_object_ref *ref;
};

static int items_foreach(void *ctx, kiln_object_item_cb cb, void *userdata)
{
        struct items_ctx *c = ctx;
        return store_object_items_foreach(c->t, c->ref, cb, userdata);
}

/* Loads version `version` of the object from the store and compiles it, all in one
 * read transaction (the header checked and the data read are of one version). */
static int load(struct objects *o, const char *tenant, const struct kiln_object_class *cls, const char *name,
                uint64_t version, void **ret_snapshot, char msg[256])
{
        struct store_object_ref ref = { .tenant = tenant, .cls = cls->name, .name = name };
        struct store_object_info info = { 0 };
        struct kiln_error err = { 0 };
        struct store_txn *t = NULL;
        struct items_ctx ictx;
        struct kiln_object_source src;
        uint8_t *blob = NULL;
        size_t blob_size = 0;
        int r;

        r = store_txn_begin(o->store, false, &t);
        if (r < 0) {
                say(msg, "cannot read the object store: %s", strerror(-r));
                return r;
        }
        r = store_object_get(t, &ref, &info);
        if (r == -ENOENT) {
                say(msg, "%s \"%s\" is no longer stored (version %llu was asked for)", cls->name, name,
                         (unsigned long long)version);
                goto out;
        }
        if (r < 0) {
                say(msg, "cannot read %s \"%s\" from the store: %s", cls->name, name, strerror(-r));
                goto out;
        }
        if (info.version != version) {
                r = -ENOENT;
                say(msg, "%s \"%s\" is at version %llu now; version %llu is no longer stored", cls->name,
                         name, (unsigned long long)info.version, (unsigned long long)version);
                goto out;
        }
        r = store_object_blob_get(t, &ref, &blob, &blob_size);
        if (r < 0) {
                say(msg, "cannot read %s \"%s\" from the store: %s", cls->name, name, strerror(-r));
                goto out;
        }
        ictx = (struct items_ctx){ .t = t, .ref = &ref };
        src = (struct kiln_object_source){
                .blob = blob,
                .blob_bytes = blob_size,
                .meta = info.meta,
                .meta_len = info.meta_len,
                .count = info.count,
                .foreach_items = items_foreach,
                .ctx = &ictx,
        };
        r = cls->compile(&src, ret_snapshot, &err);
        if (r == -EINVAL)
                say(msg, "%s \"%s\" version %llu cannot be used: %s", cls->name, name,
                         (unsigned long long)version, err.message[0] ? err.message : "the class refused it");
        else if (r < 0)
                say(msg, "cannot compile %s \"%s\" version %llu: %s", cls->name, name,
                         (unsigned long long)version, strerror(-r));
out:
        store_txn_abort(t);
        free(blob);
        store_object_info_clear(&info);
        return r;
}

int objects_stored_version(struct objects *o, const char *tenant, const struct kiln_object_class *cls,
                           const char *name, uint64_t *ret, uint64_t *ret_began, int64_t *ret_created_ms)
{
        struct store_object_ref ref = { .tenant = tenant, .cls = cls->name, .name = name };
        struct store_object_info info = { 0 };
        struct store_txn *t;
        int r = store_txn_begin(o->store, false, &t);

        if (r < 0)
                return r;
        r = store_object_get(t, &ref, &info);
        if (r >= 0)
                r = store_object_began(t, &ref, ret_began);
        store_txn_abort(t);
        if (r >= 0) {
                *ret = info.version;
                *ret_created_ms = info.created_ms;
        }
        store_object_info_clear(&info);
        return r;
}

int objects_acquire(struct objects *o, const char *tenant, const struct kiln_object_class *cls, const char *name,
                    uint64_t version, const struct object_ref **ret, char msg[256])
{
        char key[KEY_MAX];
        size_t klen = cls && version ? key_make(key, tenant, cls->name, name) : 0;
        struct snap *s, *victims = NULL;
        int r;

        if (!klen) {
                say(msg, "no %s \"%.128s\" version %llu can exist", cls ? cls->name : "object",
                         name ? name : "", (unsigned long long)version);
                return -ENOENT;
        }
        uint64_t h = snap_hash(key, klen, version);

        pthread_mutex_lock(&o->lock);
        s = *snap_find(o, key, klen, version, h);
        if (s) {
                if (s->state == SNAP_READY && s->refs == 0)
                        idle_unlink(o, s);
                s->refs++;
                while (s->state == SNAP_LOADING)
                        pthread_cond_wait(&o->loaded, &o->lock);
                if (s->state == SNAP_READY && !s->gone) {
                        o->hits++;
                        pthread_mutex_unlock(&o->lock);
                        *ret = &s->ref;
                        return 0;
                }
                if (s->gone) {
                        r = gone(msg, cls, name);
                } else {
                        r = s->err;
                        say(msg, "%s", s->msg);
                }
                if (--s->refs == 0) {
                        s->hnext = NULL;
                        victims = s;
                }
                pthread_mutex_unlock(&o->lock);
                snaps_free(o, victims);
                return r;
        }
        s = calloc(1, sizeof(*s) + klen);
        if (!s) {
                pthread_mutex_unlock(&o->lock);
                say(msg, "out of memory");
                return -ENOMEM;
        }
        s->ref.cls = cls;
        s->ref.version = version;
        s->hash = h;
        s->refs = 1;
        s->state = SNAP_LOADING;
        s->klen = klen;
        memcpy(s->key, key, klen);
        s->hnext = o->table[h % SNAP_BUCKETS];
        o->table[h % SNAP_BUCKETS] = s;
        o->n_entries++;
        pthread_mutex_unlock(&o->lock);

        void *snapshot = NULL;
        r = load(o, tenant, cls, name, version, &snapshot, msg);

        pthread_mutex_lock(&o->lock);
        if (r >= 0) {
                s->ref.snapshot = snapshot;
                s->bytes = cls->snapshot_bytes(snapshot);
                s->state = SNAP_READY;
                o->compiles++;
                if (!s->gone)
                        evict_locked(o, &victims); /* it is referenced: others may go */
        } else {
                s->state = SNAP_FAILED;
                s->err = r;
                snprintf(s->msg, sizeof(s->msg), "%s", msg);
                if (!s->gone)
                        snap_unlink(o, s); /* the next acquirer tries afresh */
        }
        pthread_cond_broadcast(&o->loaded);
        if (s->gone) /* dropped while it was read: whatever the read gave */
                r = gone(msg, cls, name);
        if (r < 0 && --s->refs == 0) {
                s->hnext = victims;
                victims = s;
        }
        pthread_mutex_unlock(&o->lock);
        snaps_free(o, victims);
        if (r < 0)
                return r;
        *ret = &s->ref;
        return 0;
}

void objects_release(struct objects *o, const struct object_ref *ref)
{
        struct snap *victims = NULL;

        if (!ref)
                return;
        struct snap *s = container_of(ref, struct snap, ref);
        pthread_mutex_lock(&o->lock);
        if (--s->refs == 0) {
                if (s->gone) {
                        s->hnext = NULL;
                        victims = s;
                } else if (s->stale) {
                        snap_unlink(o, s);
                        o->evictions++;
                        s->hnext = NULL;
                        victims = s;
                } else {
                        idle_push_back(o, s);
                        evict_locked(o, &victims);
                }
        }
        pthread_mutex_unlock(&o->lock);
        snaps_free_later(o, victims); /* a job's last reference goes on the loop thread */
}

void objects_set_cache_limits(struct objects *o, uint64_t max_bytes, unsigned max_entries)
{
        struct snap *victims = NULL;

        pthread_mutex_lock(&o->lock);
        o->max_idle_bytes = max_bytes;
        o->max_idle = max_entries;
        evict_locked(o, &victims);
        pthread_mutex_unlock(&o->lock);
        snaps_free_later(o, victims);
}

void objects_cache_stats(struct objects *o, struct objects_cache_stats *ret)
{
        pthread_mutex_lock(&o->lock);
        *ret = (struct objects_cache_stats){ .compiles = o->compiles,
                                             .hits = o->hits,
                                             .evictions = o->evictions,
                                             .entries = o->n_entries,
                                             .idle_entries = o->idle_n,
                                             .idle_bytes = o->idle_bytes };
        pthread_mutex_unlock(&o->lock);
}

/* ---- work off the loop ---- */

/* The next work a worker takes: prompt work first; only prompt work for a prompt
 * worker. NULL when there is none. o->wlock held. */
static struct objects_work *work_take(struct objects *o, bool prompt_only)
{
        for (int q = 0; q < (prompt_only ? 1 : 2); q++) {
                struct objects_work *w = o->wq[q].head;
                if (w) {
                        o->wq[q].head = w->next;
                        if (!o->wq[q].head)
                                o->wq[q].tail = NULL;
                        return w;
                }
        }
        return NULL;
}

static void worker_loop(struct objects *o, bool prompt_only)
{
        pthread_mutex_lock(&o->wlock);
        for (;;) {
                struct objects_work *w = work_take(o, prompt_only);
                if (!w) {
                        if (o->wstop)
                                break;
                        pthread_cond_wait(&o->wcond, &o->wlock);
                        continue;
                }
                pthread_mutex_unlock(&o->wlock);
                w->next = NULL;
                w->run(w);
                mailbox_post(o->mb, &w->mail);
                pthread_mutex_lock(&o->wlock);
        }
        pthread_mutex_unlock(&o->wlock);
}

static void *worker_main(void *arg)
{
        pthread_setname_np(pthread_self(), "kiln-objects");
        worker_loop(arg, false);
        return NULL;
}

static void *prompt_worker_main(void *arg)
{
        pthread_setname_np(pthread_self(), "kiln-prompt");
        worker_loop(arg, true);
        return NULL;
}

/* Snapshots freed on a worker: the release hook may wait for a device (the CUDA
 * plugin frees the device copy behind an upload or a kernel in flight), and
 * objects_changed and objects_set_cache_limits run on the loop thread. */
struct free_work {
        struct objects_work work;
        struct objects *o;
        struct snap *victims;
};

static void free_run(struct objects_work *w)
{
        struct free_work *f = container_of(w, struct free_work, work);

        snaps_free(f->o, f->victims);
        f->victims = NULL;
}

static void free_done(struct mail *m)
{
        free(container_of(m, struct free_work, work.mail));
}

static void snaps_free_later(struct objects *o, struct snap *victims)
{
        struct free_work *f = victims && o->n_threads ? malloc(sizeof(*f)) : NULL;

        if (!f) { /* nothing to free, no workers (stopped), or no memory: here */
                snaps_free(o, victims);
                return;
        }
        *f = (struct free_work){ .o = o, .victims = victims };
        f->work.run = free_run;
        f->work.mail.fn = free_done;
        objects_work_submit(o, &f->work);
}

void objects_work_submit(struct objects *o, struct objects_work *w)
{
        int q = w->prompt ? 0 : 1;

        w->next = NULL;
        pthread_mutex_lock(&o->wlock);
        if (o->wq[q].tail)
                o->wq[q].tail->next = w;
        else
                o->wq[q].head = w;
        o->wq[q].tail = w;
        /* All: one signal could wake a prompt worker for work it does not take. */
        pthread_cond_broadcast(&o->wcond);
        pthread_mutex_unlock(&o->wlock);
}

void objects_stop(struct objects *o)
{
        if (!o)
                return;
        pthread_mutex_lock(&o->wlock);
        o->wstop = true;
        pthread_cond_broadcast(&o->wcond);
        pthread_mutex_unlock(&o->wlock);
        for (unsigned i = 0; i < o->n_threads; i++)
                pthread_join(o->threads[i], NULL);
        o->n_threads = 0;
}

_Static_assert(RISK_MODEL_META_BYTES <= OBJECTS_META_MAX && KILN_VEC_META_BYTES <= OBJECTS_META_MAX,
               "every class's meta is kept");

/* ---- start and stop ---- */

/* One stored object's current version and meta into the table (objects of classes
 * this daemon does not know are left out). */
static int note_version(const struct store_object_ref *ref, uint64_t version, const uint8_t *meta, size_t meta_len,
                        void *userdata)
{
        struct objects *o = userdata;
        char key[KEY_MAX];
        size_t klen;

        if (!objects_class_find(ref->cls))
                return 0;
        klen = key_make(key, ref->tenant, ref->cls, ref->name);
        return klen ? vmap_set(&o->versions, key, klen, version, meta, meta_len) : 0;
}

/* Every stored object's current version and meta, in one read transaction. */
static int load_versions(struct objects *o)
{
        struct store_txn *t;
        int r = store_txn_begin(o->store, false, &t);

        if (r < 0)
                return r;
        r = store_object_foreach(t, note_version, o);
        store_txn_abort(t);
        return r;
}

int objects_new(struct store *store, struct mailbox *mb, struct objects **ret)
{
        struct objects *o = calloc(1, sizeof(*o));
        int r;

        if (!o)
                return -ENOMEM;
        o->store = store;
        o->mb = mb;
        o->max_idle = OBJECTS_IDLE_MAX_ENTRIES;
        o->max_idle_bytes = OBJECTS_IDLE_MAX_BYTES;
        pthread_mutex_init(&o->lock, NULL);
        pthread_cond_init(&o->loaded, NULL);
        pthread_cond_init(&o->hook_idle, NULL);
        pthread_mutex_init(&o->wlock, NULL);
        pthread_cond_init(&o->wcond, NULL);
        r = load_versions(o);
        if (r < 0)
                goto fail;
        for (; o->n_threads < WORKERS + PROMPT_WORKERS; o->n_threads++) {
                r = -pthread_create(&o->threads[o->n_threads], NULL,
                                    o->n_threads < WORKERS ? worker_main : prompt_worker_main, o);
                if (r < 0)
                        goto fail;
        }
        *ret = o;
        return 0;
fail:
        objects_free(o);
        return r;
}

void objects_free(struct objects *o)
{
        if (!o)
                return;
        objects_stop(o);
        for (size_t b = 0; b < SNAP_BUCKETS; b++) {
                struct snap *s = o->table[b];
                while (s) {
                        struct snap *next = s->hnext;
                        s->hnext = NULL;
                        snaps_free(o, s);
                        s = next;
                }
        }
        vmap_clear(&o->versions);
        pthread_mutex_destroy(&o->lock);
        pthread_cond_destroy(&o->loaded);
        pthread_cond_destroy(&o->hook_idle);
        pthread_mutex_destroy(&o->wlock);
        pthread_cond_destroy(&o->wcond);
        free(o);
}

void objects_set_release_hook(struct objects *o, void (*fn)(void *ctx, const struct kiln_object *obj), void *ctx)
{
        pthread_mutex_lock(&o->lock);
        o->on_release = fn;
        o->release_ctx = ctx;
        /* A free calling the old hook on another thread is done before its
         * context may go (teardown frees the scheduler next). */
        while (o->hook_calls)
                pthread_cond_wait(&o->hook_idle, &o->lock);
        pthread_mutex_unlock(&o->lock);
}
