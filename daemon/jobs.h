/* Jobs: the job object and its lifecycle, owned by this module alone.
 *
 *   jobs_submit -> [store: record committed] -> queued -> running -> [store: final
 *   record + result committed] -> done | failed | cancelled | expired
 *
 * A quick job (kiln_kind.quick) that the cache does not hold skips the first commit:
 *
 *   jobs_submit -> queued -> running -> [store: final record + result committed,
 *   `accepted`] -> done | ...
 *
 * Nothing is acknowledged before its record is durable either way; a crash before
 * the commit loses a job nobody was told of.
 *
 * Every state change of a job is made here. The collaborators are handed over at
 * creation (libuv's pattern): the store writer (through storeq), the scheduler
 * (which reports back through the sink jobs_sched_sink() gives it), the mailbox
 * (how worker and writer threads reach the loop thread), and `struct job_events`,
 * through which whoever serves clients (session.c) hears what happened. Nothing
 * here calls up into sessions, the server or main.
 *
 * A `struct job` is shared between the loop thread, the scheduler's workers and the
 * store writer, so it is reference-counted; fields are grouped by which thread may
 * write them. Everything that reaches the network goes through the events on the
 * loop thread. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "job_inputs.h"
#include "kind.h"
#include "mailbox.h"
#include "proto.h"
#include "scheduler.h"
#include "store.h"

struct jobs;
struct storeq;
struct objects;
struct object_ref;
struct hot_entry;
struct result_blob;
struct kiln_config;
struct membudget;

/* A submission attached to a job still being stored (coalescing): it gets its
 * `accepted` (and, with watch, the job's events) once the job is. Loop thread. */
struct job_acceptor {
        struct job_acceptor *next;
        uint64_t session;
        json_t *ref;
        bool watch;
};

/* A job's `done` message without "ref", shared by the messages queued to send it
 * (session_out.c): a done of any size goes out without a copy, and one rebuilt
 * (job_build_done: its result was not kept after all) leaves those in flight
 * their own. */
struct done_text {
        atomic_uint refs;
        size_t len;
        char *text;               /* NUL-terminated, len bytes */
        struct membudget *mem;    /* where its bytes are counted (MEM_RESULTS), or NULL */
};

/* Takes a reference / drops one (freeing the last). Accept NULL. */
struct done_text *done_text_ref(struct done_text *d);
void done_text_unref(struct done_text *d);
/* Makes *slot the done message `text` (malloc'd, taken over; freed on failure),
 * dropping the one it held; its bytes are counted in `mem` (MEM_RESULTS) until the
 * last reference goes (NULL: not counted). Returns >= 0 or -ENOMEM. */
int done_text_set(struct done_text **slot, char *text, struct membudget *mem);
/* done_text_set, its bytes taken first from *held, room already counted in mem
 * (MEM_RESULTS) and kept for it: only what *held has less is charged. */
int done_text_set_held(struct done_text **slot, char *text, struct membudget *mem, uint64_t *held);

struct job {
        atomic_int refs;
        struct jobs *js;

        /* Immutable after creation. */
        uint8_t id[16];
        char id_text[37];
        const struct kiln_kind *kind;
        void *params;             /* typed, kind->params_size bytes */
        char *params_json;        /* canonical, compact, sorted keys */
        char tenant[64];
        enum kiln_priority priority;
        int64_t submitted_ms;     /* wall clock */
        int64_t submitted_us;     /* monotonic (kiln_mono_us), for durations; 0 for a recovered job */
        int64_t deadline_ms;      /* absolute wall clock, 0 = none */
        char *idem_key;
        char *no_room;            /* why the store had no room for it (asked only by key and cache), or NULL */
        struct job_inputs in;     /* its input arrays, in one blob (job_inputs.h) */
        char *key_params;         /* the cache key's params: params_json and the inputs' digest */
        char *object_name;        /* the stored object it runs against (kind->object), or NULL */
        uint64_t object_version;  /* the version current at its submit: bound for good */
        char *object_text;        /* "CLASS/NAME@VERSION": its record's, or NULL */
        char *key_model;          /* the cache key's object: "TENANT CLASS/NAME@VERSION", or NULL */
        const struct object_ref *object_ref; /* acquired by the worker that runs it (objects.h) */
        struct kiln_object object;           /* what its task sees of it */
        struct store_cache_key cache_key; /* its result's identity, borrows the strings */
        bool cache_store;         /* cache the result when done (set before it is queued) */
        /* Run before anything of it was stored (a quick kind's job, jobs_submit.c): its
         * one store operation is its final record, and `accepted` follows its commit.
         * Set before it is queued; cleared on the loop thread once a queued record of
         * it is stored instead (kilnd stopped before it ran). */
        bool early;
        bool early_missed;        /* an early one that was looked up in the cache first */

        /* Written by jobs.c only (from the thread that moves the state); read anywhere. */
        _Atomic int state;        /* enum kiln_job_state */
        atomic_int pct;           /* 0..100 */

        /* Written before it is finished by the thread that finishes it. */
        int64_t started_ms, started_us;   /* wall clock ms; monotonic us */
        int64_t finished_ms, finished_us;
        uint32_t batch;
        char backend[16];
        struct kiln_result result;
        enum kiln_err error_code;
        char error_message[256];
        char error_field[128];    /* the input that failed it at run time, "" for none */
        struct done_text *done;   /* the `done` message without "ref" (job_build_done) */
        uint8_t *blob;            /* a result loaded from the store: parts point into it */
        size_t blob_size;
        struct hot_entry *hot;    /* or a hot copy of a cached one (hotcache.h): the same */
        struct result_blob *blob_out; /* the result being stored */
        uint64_t blob_out_held;       /* its own bytes (result_blob_owned_bytes) in memory.max_bytes */
        struct done_text *blob_done;  /* the done whose values' text it borrows, or NULL */
        /* A big result, once stored, is dropped from memory and sent from the store
         * piece by piece: its parts keep their names and shapes but no data; part i
         * begins at part_off[i] in the stored blob `stored_blob`. */
        bool result_in_store;
        uint8_t stored_blob[16];
        uint64_t part_off[KILN_MAX_PARTS];
        bool result_not_kept;     /* done, but the store had no room for its result */
        bool delivered;           /* its watchers have had its `done` */
        uint64_t mem_inputs;      /* bytes of its inputs held in the memory budget */
        uint64_t mem_copy;        /* held for a cached result the store writer copied out
                                   * (reserve_copy): what its result holds once it answers
                                   * with it (answer_cached_now), else given back with the job */

        /* The scheduler's view of it (scheduler.h). */
        struct sched_item item;
        atomic_bool progress_posted;
        struct mail progress_mail;
        /* The kind's latest progress values (SPEC §2.2), written by the worker and
         * read by the loop (jobs_progress_values), both under progress_lock. Their
         * texts (STR, JSON: sched.jobshop's schedule) are the job's own malloc'd
         * copies, freed when replaced and when the job is freed. */
        pthread_mutex_t progress_lock;
        struct kiln_value progress_values[KILN_MAX_PROGRESS_VALUES];
        int n_progress_values;

        /* Loop thread only. */
        struct job_watcher *watchers; /* who hears its progress and `done` */
        size_t n_watchers, cap_watchers;
        struct job *table_next;   /* job table chain */
        size_t heap_index;        /* deadline heap position + 1, 0 = not in heap */
        uint64_t submitter;       /* session that submitted it (for `accepted`) */
        json_t *submit_ref;       /* its "ref", echoed in `accepted` */
        bool watch_submitter;
        struct job_acceptor *acceptors; /* coalesced submitters waiting for `accepted` */
        bool committed;           /* its `accepted` was sent: attach directly */
        bool tenant_counted;      /* counted in its tenant's unfinished jobs (limits) */
        bool submitter_counted;   /* counted in its submitter's in-flight jobs (events.ended pending) */
        bool in_coalesce;         /* in the coalescing map */
        struct job *coalesce_next;
        struct job *retry_next;   /* jobs.store_retry */
        struct job *load_next;    /* jobs.loads_waiting */
        bool load_waiting;        /* on that list: its store outputs stay until it is answered */
        struct job *early_prev, *early_next; /* jobs.early_head: a quick job waiting for a worker */
        bool early_listed;        /* on that list (which holds a reference) */
        int64_t early_due_mono;   /* stored queued if still in its queue by then */
        uint64_t unstored;        /* what it counts in jobs.unstored until its final record is stored */
        /* limits.max_result_bytes and what memory.max_bytes let one job take when it
         * was accepted (or recovered): a job whose result size is known only once its
         * object is loaded is held to these, not to lower ones a reload set since. */
        uint64_t accepted_max_result, accepted_mem_max;

        /* One store operation and one mail at a time: commit, then finish. */
        struct store_job record;  /* borrows the job's strings, for the op in flight */
        struct store_op op;
        struct mail mail;
};

/* A session watching a job, and the "ref" its `done` echoes: that of the message
 * that made it a watcher (submit, watch, result), or NULL. */
struct job_watcher {
        uint64_t session;
        json_t *ref;
};

/* What the job lifecycle tells whoever serves clients. Loop thread; `session` is
 * an id the caller gave jobs_submit or jobs_watch. */
struct job_events {
        void *ctx;
        /* `accepted` for one submission of j (cached: answered from the cache). */
        void (*accepted)(void *ctx, uint64_t session, struct job *j, json_t *ref, bool cached);
        /* A submission failed after jobs_submit returned (the store refused it). */
        void (*rejected)(void *ctx, uint64_t session, json_t *ref, enum kiln_err code, const char *field,
                         const char *message);
        void (*progress)(void *ctx, uint64_t session, struct job *j);
        /* j has finished (j->done_json and its result are final): its `done` and parts
         * (`ref` echoed when not NULL). The callee takes its own references. */
        void (*done)(void *ctx, uint64_t session, struct job *j, json_t *ref);
        /* A job `session` submitted no longer counts against its in-flight limit. */
        void (*ended)(void *ctx, uint64_t session);
};

/* What the lifecycle needs. Borrowed: each must outlive the jobs. */
struct jobs_deps {
        const struct kiln_config *cfg; /* replaced with jobs_set_config */
        struct store *store;           /* cache generation, for hot copies */
        struct objects *objects;       /* stored objects' versions and snapshots */
        struct storeq *storeq;
        struct mailbox *mailbox;
        struct membudget *mem;         /* memory.max_bytes (membudget.h); NULL: unbounded */
        struct job_events events;
};

/* Returns >= 0 or -ENOMEM. */
int jobs_new(const struct jobs_deps *deps, struct jobs **ret);
/* Drops every live job (the scheduler must be freed first). Accepts NULL. */
void jobs_free(struct jobs *js);
/* The sink to create the scheduler with, then the scheduler (NULL while shutting
 * down: committed jobs then stay queued in the store). */
const struct sched_sink *jobs_sched_sink(struct jobs *js);
void jobs_set_sched(struct jobs *js, struct sched *s);
/* A reloaded configuration (SIGHUP). */
void jobs_set_config(struct jobs *js, const struct kiln_config *cfg);

/* ---- submitting (loop thread) ---- */

struct job_submit {
        const char *kind;
        json_t *params;              /* borrowed */
        const char *tenant;
        enum kiln_priority priority;
        int64_t timeout_ms;          /* <= 0: jobs.default_timeout_ms */
        const char *key;             /* idempotency key or NULL */
        bool cache, watch;
        uint64_t session;            /* who submits (the events' session) */
        json_t *ref;                 /* borrowed; echoed in `accepted` */
        struct part **parts;         /* binary parts sent with it, taken over (freed by jobs_submit) */
        size_t n_parts;
};

/* The only way a job is born. Validates the submission (kind, limits, params) and
 * either answers it at once (a hot cache copy, an identical live job) or stores
 * it; `accepted`, or `rejected` when the store fails, follows through the events.
 * Returns >= 0 when the events will answer it (1 when the submission counts against
 * the submitter's in-flight limit until events.ended), or < 0 with *ret_err filled
 * (nothing sent). */
int jobs_submit(struct jobs *js, const struct job_submit *rq, struct proto_error *ret_err);

/* Jobs recovered from the store at start: queued again. Returns >= 0 and the number
 * queued and refused in *ret_queued and *ret_bad, or -errno from the store. */
int jobs_recover(struct jobs *js, struct store *store, unsigned *ret_queued, unsigned *ret_bad);

/* ---- jobs that exist (loop thread) ---- */

/* Borrowed pointer to a live job, or NULL. */
struct job *jobs_find(struct jobs *js, const uint8_t id[16]);
/* Adds a watcher of a live job: its progress and `done` go to `session`, the
 * `done` echoing `ref` (may be NULL; a session already watching keeps the ref it
 * came with). Returns >= 0 or -ENOMEM. */
int jobs_watch(struct jobs *js, struct job *j, uint64_t session, json_t *ref);
/* Cancels a live job: a queued one ends `cancelled` at once, a running one is asked
 * to stop. */
void jobs_cancel(struct jobs *js, struct job *j);
/* Rebuilds a finished job from its record and, with_result, its stored result
 * (taken over from *result, which is set to NULL when the job owns it), for
 * `result` and `watch` of a job no longer live. A result read from the store takes
 * what it will hold from memory.max_bytes first: -EAGAIN when that does not fit
 * now, -EFBIG when it never could. Returns >= 0 and one reference in *ret, or
 * -errno. */
int jobs_load_finished(struct jobs *js, const struct store_job *rec, uint8_t **result, size_t size,
                       bool with_result, struct job **ret);
/* Copies the kind's latest progress values of a running job into ret[0..max);
 * returns how many. A text value (KILN_V_STR, or KILN_V_JSON: one JSON value that
 * parses, to be embedded as it is) comes as a malloc'd copy that the caller owns:
 * release them with jobs_progress_values_free. A text that cannot be copied comes
 * as a null. Any thread. */
int jobs_progress_values(struct job *j, struct kiln_value *ret, int max);
/* Frees the texts of v[0..n) that jobs_progress_values copied. */
void jobs_progress_values_free(struct kiln_value *v, int n);
/* Device runs started for a job (live: so far; else as stored). */
unsigned job_attempts(const struct job *j);

struct job *job_ref(struct job *j);
/* Drops a reference; frees the job at zero. Accepts NULL. */
void job_unref(struct job *j);

/* ---- deadlines (loop thread) ---- */

/* Expires every job whose deadline is <= now_ms (wall clock), and stores the quick
 * jobs that have waited for a worker too long (jobs_submit.c). */
void jobs_deadline_run(struct jobs *js, int64_t now_ms);
/* The next deadline or quick job's wait to end (wall clock ms), 0 = none: the
 * server arms its timer for it. */
int64_t jobs_next_deadline(const struct jobs *js);

/* ---- shutdown ---- */

/* Asks every running job to stop without finishing (it stays queued in the store). */
void jobs_stop_all(struct jobs *js);
/* Draining: the quick jobs still queued (run before anything of them was stored,
 * see above) are taken out of the scheduler and stored as queued jobs, so their
 * submitters are told they are accepted and they run after the restart. One in a
 * batch being gathered is not in a queue: the drain calls this again until
 * jobs_early_count is 0. Loop thread. */
void jobs_store_early(struct jobs *js);
/* Quick jobs with no record stored yet (queued, gathered, running, or their final
 * or queued record on its way): a drain ends only when there are none. */
uint32_t jobs_early_count(const struct jobs *js);

/* ---- room in the store (loop thread) ---- */

/* What the store can still take (store_room().room, measured about once a second):
 * a submission whose input and estimated result, with those of every job accepted
 * and not yet stored, would leave less than JOBS_STORE_LOW_BYTES is refused with
 * `unavailable` before it is accepted; jobs whose final record found no room are
 * tried again. */
#define JOBS_STORE_LOW_BYTES (32ull << 20)
void jobs_store_room(struct jobs *js, uint64_t room);
/* The room the store has as the lifecycle reckons it: the last measurement less what
 * was written since. */
uint64_t jobs_store_room_left(const struct jobs *js);
/* Whether new work is refused for lack of room, and why (a sentence naming the store)
 * in reason (256 bytes) when it is. */
bool jobs_store_full(const struct jobs *js, char *reason);
/* Whether a change that will write `bytes` to the store (a job's input and result:
 * job_store_estimate; an object put) is refused for lack of room, the room promised
 * to accepted jobs and the JOBS_STORE_LOW_BYTES kept free counted, and why (reason:
 * 256 bytes, naming the store and `what`, e.g. "this job's input and result"). */
bool jobs_store_refuses(const struct jobs *js, uint64_t bytes, const char *what, char *reason);
/* `bytes` were just written to the store: the room last measured is that much less. */
void jobs_room_used(struct jobs *js, uint64_t bytes);
/* Room promised to a change that was let through (jobs_store_refuses) and is not
 * written yet, an object put: counted with what accepted jobs were promised, so
 * that puts in flight together cannot all take the same room; given back when it
 * is written or refused. */
void jobs_store_promise(struct jobs *js, uint64_t bytes);
void jobs_store_unpromise(struct jobs *js, uint64_t bytes);

/* ---- figures (loop thread) ---- */

/* Live jobs in memory. */
size_t jobs_live(const struct jobs *js);
/* Jobs submitted whose record is not committed yet. */
uint32_t jobs_committing(const struct jobs *js);
/* Submissions attached to an identical live job (coalescing) since start. */
uint64_t jobs_coalesced(const struct jobs *js);
/* The tenant's unfinished jobs and finished jobs by state (zeros for a tenant with
 * none). ret_finished has 6 entries (enum kiln_job_state). */
uint32_t jobs_tenant_counts(struct jobs *js, const char *tenant, uint64_t ret_finished[6]);
