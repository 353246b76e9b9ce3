/* Stored objects as kilnd uses them (SPEC §2.4): models and vector collections.
 *
 * The store keeps objects as bytes and versions (store.h); the classes (object.h)
 * validate and compile them. This module is what sits between them and the daemon:
 *
 *  - Versions. The version of every object current now, and the small meta its
 *    class keeps with it (a collection's metric and dim, a model's features), known
 *    on the loop thread without touching the store: read once at start (objects_new
 *    walks every stored object, store_object_foreach), then kept in step by the
 *    object ops, which call objects_changed after each committed change. A job binds
 *    to the version current when it is submitted, and is checked against that
 *    version's meta there (objects_meta, kiln_kind_check_meta).
 *
 *  - Snapshots. A compiled object version (a forest, a collection matrix), loaded
 *    and compiled by the first worker that needs it, in its own read transaction, and
 *    shared by every job of that version (objects_acquire / objects_release). A
 *    snapshot stays in memory while referenced; unreferenced ones are kept in
 *    least-recently-used order within a bound (objects_set_cache_limits) so the next
 *    job of a popular version finds it compiled. An older version stays usable for
 *    as long as it is in memory, so a job bound to version 3 still runs after version
 *    4 is put, unless its snapshot was evicted meanwhile, or never loaded (-ENOENT
 *    then: the job runs against the stored version instead, jobs.c sink_prepare).
 *
 *  - Work off the loop. A small pool of worker threads runs what the loop thread
 *    must not (parsing an uploaded model's JSON, checking and normalising a
 *    collection's rows, decoding a big message, reading objects for a list), then
 *    posts the caller's mail back to the loop (objects_work_submit). Prompt work
 *    has a worker of its own besides.
 *
 * Threads: objects_new, objects_stop and objects_free on the main thread (before
 * and after the loop); objects_version, objects_meta, objects_changed and the mails on
 * the loop thread; objects_acquire on any thread but the loop (it may wait for a
 * compile); objects_release and objects_work_submit anywhere. Snapshots that
 * objects_release, objects_changed or objects_set_cache_limits let go are freed on
 * a worker: the backends' release of a device copy may wait for the device. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"
#include "object.h"

struct store;
struct storeq;
struct objects;
struct kiln_object;

/* Classes by their store name: "risk.model" (risk_model_class), "vec.collection"
 * (vec_collection_class). NULL for any other name. */
const struct kiln_object_class *objects_class_find(const char *name);

/* At start (main thread, before the loop): reads the current version of every
 * stored object (one read transaction, store_object_foreach), and starts the
 * worker threads. `mb` is where finished work is posted; both are borrowed and
 * must outlive the result. Returns >= 0, or -errno (the store's, -ENOMEM, or
 * pthread's). */
int objects_new(struct store *store, struct mailbox *mb, struct objects **ret);

/* Runs every queued work item (each posts its mail) and joins the workers; work
 * submitted afterwards is not run. Main thread, after the loop has stopped, before
 * the last mailbox_drain. Idempotent. */
void objects_stop(struct objects *o);

/* Stops (objects_stop) and frees everything. Every snapshot must have been released.
 * Accepts NULL. */
void objects_free(struct objects *o);

/* ---- versions (loop thread) ---- */

/* The longest meta kept per object (the classes' are 8 and 16 bytes); a longer one
 * is treated as none. */
#define OBJECTS_META_MAX 64u

/* The version of (tenant, class name, name) current now; 0 = none. */
uint64_t objects_version(struct objects *o, const char *tenant, const char *cls, const char *name);

/* The version of (tenant, class name, name) current now and the meta stored with it
 * (store_object_info.meta, opaque here: the class's format). *ret_meta is NULL with
 * *ret_len 0 when the object has no meta or one over OBJECTS_META_MAX; otherwise it
 * points into the table and lives until the next objects_changed (copy it to keep
 * it). Any ret_* may be NULL. Returns >= 0, or -ENOENT when there is no such object
 * (nothing written). */
int objects_meta(struct objects *o, const char *tenant, const char *cls, const char *name, uint64_t *ret_version,
                 const uint8_t **ret_meta, size_t *ret_len);

/* Records a committed change: `version` is the object's version after it, with the
 * meta stored with it (the header the store answered with; copied), or 0 (meta
 * ignored) when it was deleted or dropped. Older versions' unreferenced snapshots
 * are evicted first from then on. */
void objects_changed(struct objects *o, const char *tenant, const char *cls, const char *name, uint64_t version,
                     const void *meta, size_t meta_len);

/* ---- snapshots (any thread but the loop) ---- */

/* What an acquirer holds: the class, the version and its immutable compiled snapshot
 * (the class's type: struct risk_forest, struct vec_collection). */
struct object_ref {
        const struct kiln_object_class *cls;
        uint64_t version;
        const void *snapshot;
};

/* The compiled snapshot of exactly `version` of (tenant, cls, name): found in memory,
 * or loaded from the store and compiled here (other threads asking for the same
 * version meanwhile wait for it rather than compile it twice). *ret is valid until
 * objects_release. Returns >= 0, or -errno with a sentence in msg: -ENOENT when that
 * version is not in memory and is no longer (or not) the stored one, -EINVAL when what
 * the store holds cannot be compiled, -ENOMEM, or the store's error. */
int objects_acquire(struct objects *o, const char *tenant, const struct kiln_object_class *cls, const char *name,
                    uint64_t version, const struct object_ref **ret, char msg[256]);

/* The version of (tenant, cls, name) the store holds now, read from the store (any
 * thread, unlike objects_version), the version that object began at (a drop and
 * a new put of the name make another object, whose versions are all above the
 * old one's: store_object_began) and when its name was first put (wall clock).
 * Returns >= 0, -ENOENT when none is stored, or the store's error. */
int objects_stored_version(struct objects *o, const char *tenant, const struct kiln_object_class *cls,
                           const char *name, uint64_t *ret, uint64_t *ret_began, int64_t *ret_created_ms);

/* Gives back a reference from objects_acquire. Accepts NULL. */
void objects_release(struct objects *o, const struct object_ref *ref);

/* `fn` is called (from whichever thread evicts) before a compiled snapshot is
 * released, so that the backends drop their device copies of it
 * (kiln_backend.object_release). Set at start, and to NULL before the backends
 * go: it returns once no call of the hook it replaces is in progress. */
void objects_set_release_hook(struct objects *o, void (*fn)(void *ctx, const struct kiln_object *obj), void *ctx);

/* How many unreferenced snapshots, and bytes of them (the class's snapshot_bytes),
 * are kept for later acquirers; beyond either, the least recently used go. Defaults:
 * OBJECTS_IDLE_MAX_ENTRIES and OBJECTS_IDLE_MAX_BYTES; kilnd sets the bytes from
 * memory.objects_cache_bytes at start and at each reload. Any thread. */
#define OBJECTS_IDLE_MAX_ENTRIES 64u
#define OBJECTS_IDLE_MAX_BYTES (1ull << 30)
void objects_set_cache_limits(struct objects *o, uint64_t max_bytes, unsigned max_entries);

struct objects_cache_stats {
        uint64_t compiles;        /* snapshots compiled since start */
        uint64_t hits;            /* acquires answered from memory */
        uint64_t evictions;       /* snapshots freed to stay in the bound, or as a newer version was put */
        uint64_t entries;         /* snapshots in memory now (referenced or not) */
        uint64_t idle_entries, idle_bytes; /* of them, unreferenced */
};

/* A consistent copy of the counters. Any thread. */
void objects_cache_stats(struct objects *o, struct objects_cache_stats *ret);

/* ---- work off the loop ---- */

/* One piece of work, embedded in the caller's own struct: a worker thread calls
 * run(w), then posts w->mail (whose fn the caller set) to the mailbox. The caller
 * must not touch w until its mail runs. `prompt`: work a client waits on that
 * takes no longer than reading its message (decoding it, a read of the store):
 * taken before the rest, and by a worker kept for it, so it never queues behind
 * an upload's check or a free that waits for a device. */
struct objects_work {
        void (*run)(struct objects_work *w);
        bool prompt;
        struct mail mail;
        struct objects_work *next; /* private */
};

/* Queues w (FIFO over the workers). Any thread. */
void objects_work_submit(struct objects *o, struct objects_work *w);
