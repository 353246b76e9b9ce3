/* Jobs: the shared job object and its state machine.
 *
 *   submit -> [store: record committed] -> queued -> running -> [store: final record
 *   + result committed] -> done | failed | cancelled | expired -> watchers notified
 *
 * A `struct job` is shared between the loop thread, the scheduler's workers and the
 * store writer, so it is reference-counted; fields are grouped by which thread may
 * write them. Everything that reaches the network happens on the loop thread through
 * the mailbox; workers and the writer never touch sessions. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "kind.h"
#include "mailbox.h"
#include "proto.h"
#include "store.h"

struct kilnd;
struct hot_entry;
struct result_blob;

/* A submission attached to a job still being stored (coalescing, cache.h): it gets
 * its `accepted` (and, with watch, the job's events) once the job is. Loop thread. */
struct job_acceptor {
        struct job_acceptor *next;
        uint64_t session;
        json_t *ref;
        bool watch;
};

/* Why a running job was asked to stop (job->stop). */
enum job_stop {
        JOB_STOP_NONE,
        JOB_STOP_CANCEL,   /* a client cancelled it: ends `cancelled` */
        JOB_STOP_EXPIRE,   /* its deadline passed: ends `expired` */
        JOB_STOP_SHUTDOWN, /* the daemon is stopping: stays queued in the store */
};

struct job {
        atomic_int refs;
        struct kilnd *d;

        /* Immutable after job_new / job_from_record. */
        uint8_t id[16];
        char id_text[37];
        const struct kiln_kind *kind;
        void *params;             /* typed, kind->params_size bytes */
        char *params_json;        /* canonical, compact, sorted keys */
        char tenant[64];
        enum kiln_priority priority;
        int64_t submitted_ms;
        int64_t deadline_ms;      /* absolute, 0 = none */
        char *idem_key;
        struct store_cache_key cache_key; /* its result's identity (cache.h), borrows the strings */
        bool cache_store;         /* cache the result when done (set before it is queued) */

        /* Written by whoever moves the state; read anywhere. */
        _Atomic int state;        /* enum kiln_job_state */
        atomic_int pct;           /* 0..100 */
        atomic_int stop;          /* enum job_stop */

        /* Written by the worker that runs it, before it is finished. */
        int64_t started_ms;
        int64_t finished_ms;
        uint32_t batch;
        char backend[16];
        struct kiln_result result;
        enum kiln_err error_code;
        char error_message[256];
        char *done_json;          /* the `done` message without "ref", built once */
        uint8_t *blob;            /* a result loaded from the store: parts point into it */
        struct hot_entry *hot;    /* or a hot copy of a cached one (hotcache.h): the same */
        struct result_blob *blob_out; /* the result being stored */

        /* Progress reporting (worker side). */
        int64_t progress_sent_ms;
        atomic_bool progress_posted;
        struct mail progress_mail;

        /* Loop thread only. */
        uint64_t *watchers;       /* session ids */
        size_t n_watchers, cap_watchers;
        struct job *table_next;   /* job table chain */
        size_t heap_index;        /* deadline heap position + 1, 0 = not in heap */
        uint64_t submitter;       /* session that submitted it (for `accepted`) */
        json_t *submit_ref;       /* its "ref", echoed in `accepted` */
        bool watch_submitter;
        struct job_acceptor *acceptors; /* coalesced submitters waiting for `accepted` */
        bool committed;           /* its `accepted` was sent: attach directly */
        bool tenant_counted;      /* counted in its tenant's unfinished jobs (limits) */
        bool inflight_counted;    /* counted in its submitter session's in-flight jobs */
        bool in_coalesce;         /* in the coalescing map (cache.c) */
        struct job *coalesce_next;

        /* Scheduler only (under its lock). */
        struct job *q_prev, *q_next;
        struct tenant_queue *q_tenant; /* the per-tenant FIFO it waits in */
        bool in_queue;
        uint64_t seq;

        /* One store operation and one mail at a time: commit, then finish. */
        struct store_job record;  /* borrows the job's strings, for the op in flight */
        struct store_op op;
        struct mail mail;
};

/* A new job in state queued, with a fresh UUIDv7 and the given validated params
 * (both are taken over: params freed with free(), canonical with json_decref()).
 * Returns NULL on ENOMEM. One reference, owned by the caller. */
struct job *job_new(struct kilnd *d, const struct kiln_kind *kind, void *params, json_t *canonical,
                    const char *tenant, enum kiln_priority priority, int64_t now_ms, int64_t timeout_ms,
                    const char *idem_key);

/* Rebuilds a job from its store record (recovery at start, or a finished job loaded
 * for `result`/`watch`). Re-validates the stored canonical params (a kind that no
 * longer accepts them gives -EINVAL). Returns >= 0 and one reference in *ret. */
int job_from_record(struct kilnd *d, const struct store_job *rec, struct job **ret);

struct job *job_ref(struct job *j);
/* Drops a reference; frees the job at zero. Accepts NULL. */
void job_unref(struct job *j);

/* Fills a store record that borrows the job's strings (do not store_job_free it). */
void job_to_record(const struct job *j, struct store_job *ret);

/* Moves a job to a final state, from any thread: records the error (for failed,
 * cancelled and expired), builds the `done` message, and queues the final record and
 * result to the store; once committed, the loop thread notifies the watchers and
 * drops the job from the table. Called exactly once per job. */
void job_finish(struct job *j, enum kiln_job_state state, enum kiln_err code, const char *message);

/* Parses a blob taken over from the store (j->blob owns it afterwards): parts point
 * into it, scalars are read back. Returns >= 0 or -EIO for a malformed blob. */
int result_blob_read(struct job *j, uint8_t *blob, size_t size);

/* Builds j->done_json from the job's final state and result. Returns >= 0 or -ENOMEM. */
int job_build_done(struct job *j);

/* ---- the table of live jobs (loop thread) ---- */

/* Adds a job (taking a reference) so status/watch/cancel find it in memory. */
void jobs_table_add(struct kilnd *d, struct job *j);
/* Removes it and drops the table's reference. */
void jobs_table_remove(struct kilnd *d, struct job *j);
/* Borrowed pointer or NULL. */
struct job *jobs_table_find(struct kilnd *d, const uint8_t id[16]);
size_t jobs_table_count(struct kilnd *d);

/* ---- per-tenant job counts (loop thread; limits.max_queued_per_tenant, stats) ---- */

/* Counts j among its tenant's unfinished jobs (once: a second call does nothing).
 * Returns >= 0 or -ENOMEM (the job is then simply not counted). */
int jobs_tenant_hold(struct kilnd *d, struct job *j);
/* Undoes jobs_tenant_hold (no-op when j is not counted); a final_state >= 0 also
 * counts the job among its tenant's finished jobs of that state. */
void jobs_tenant_release(struct kilnd *d, struct job *j, int final_state);
/* The tenant's unfinished jobs and finished jobs by state (zeros for a tenant with
 * none). ret_finished has 6 entries (enum kiln_job_state). */
uint32_t jobs_tenant_counts(struct kilnd *d, const char *tenant, uint64_t ret_finished[6]);

/* ---- deadlines (loop thread) ---- */

/* Arms the job's deadline (no-op when it has none). */
void jobs_deadline_add(struct kilnd *d, struct job *j);
void jobs_deadline_remove(struct kilnd *d, struct job *j);
/* Expires every job whose deadline is <= now_ms; returns the next deadline
 * (0 = none). */
int64_t jobs_deadline_run(struct kilnd *d, int64_t now_ms);

/* Adds a watcher session id (no duplicates). Returns >= 0 or -ENOMEM. */
int job_watch(struct job *j, uint64_t session_id);

int64_t kiln_now_ms(void);
