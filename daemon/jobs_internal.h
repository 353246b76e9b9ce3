/* What jobs.c and jobs_submit.c share: the state of the lifecycle. Nothing outside
 * the jobs module includes this. */
#pragma once

#include "jobs.h"
#include "membudget.h"

struct limits_map;

struct jobs {
        const struct kiln_config *cfg;
        struct store *store;
        struct objects *objects;
        struct storeq *storeq;
        struct mailbox *mailbox;
        struct membudget *mem;
        struct sched *sched;
        struct job_events ev;
        struct sched_sink sink;
        /* limits.max_result_bytes, for the workers (cfg is the loop thread's). */
        _Atomic uint64_t max_result_bytes;

        /* Loop thread. */
        struct job **table;           /* hash buckets of live jobs */
        size_t table_buckets, table_count;
        struct job **deadlines;       /* min-heap on deadline_ms */
        size_t n_deadlines, cap_deadlines;
        struct job **coalesce;        /* (tenant, cache key) -> live job, COALESCE_BUCKETS */
        uint64_t coalesced;
        uint32_t committing;          /* submitted, record not yet committed */
        uint32_t hot_recording;       /* answered from a hot copy, record not yet stored */
        struct limits_map *tenants;   /* unfinished and finished jobs by tenant */

        /* Room in the store (jobs_store_room). */
        bool room_known;
        uint64_t room;                /* as last measured */
        uint64_t unstored;            /* estimated bytes of accepted jobs not yet finished in the store */
        struct job *store_retry;      /* finished jobs whose final record found no room: tried again */
        struct job *loads_waiting, *loads_tail; /* cache hits waiting for memory (jobs_submit.c) */
        /* While cache hits wait, memory given back (the budget's hook, any thread)
         * posts loads_mail, once until it has run. */
        atomic_bool loads_wanted, loads_posted;
        struct mail loads_mail;
        /* Quick jobs run before they are stored (jobs.h), oldest first, each until its
         * early_due_ms: one still queued then is stored queued and accepted, as any
         * job is, instead of keeping its submitter waiting (jobs_submit.c). */
        struct job *early_head, *early_tail;
        uint32_t n_early;             /* jobs in the table with early set: none stored yet */
        struct mail early_mail;       /* wakes the loop to arm the timer for the first */
        bool early_posted;
};

#define COALESCE_BUCKETS 16384 /* a power of two */

/* The job no longer counts in js->unstored (its final record is in, or it needs no
 * room of its own). */
void job_unstored_release(struct jobs *js, struct job *j);
/* A job rebuilt from its stored record (and its stored input, taken over from
 * *input when not NULL). Returns >= 0 and one reference in *ret, or -errno. */
int job_from_record(struct jobs *js, const struct store_job *rec, uint8_t **input, size_t input_size,
                    struct job **ret);
/* Gives back what *held counts of `use` in the memory budget, and zeroes it. */
void job_mem_give(struct jobs *js, enum mem_use use, uint64_t *held);
/* Frees the blob of j's result being stored, giving back what it held. */
void job_blob_out_free(struct job *j);
/* Makes what j's result counts in the memory budget (MEM_RESULTS) `bytes`: what it
 * holds more is charged (it is allocated already), what it holds less given back. */
void job_hold_result(struct job *j, uint64_t bytes);
/* From a job's store operation's done callback (writer thread): runs fn with the
 * job's mail on the loop thread. */
void job_op_to_loop(struct store_op *op, void (*fn)(struct mail *m));
/* Ends a job that did not run because it was asked to stop: cancelled for
 * SCHED_STOP_CANCEL, expired for SCHED_STOP_EXPIRE. False, nothing done, for any
 * other stop. */
bool job_end_stopped(struct job *j, int stop);
/* Microseconds the job was queued and ran (monotonic when it has the stamps). */
void job_durations(const struct job *j, int64_t *ret_queue_us, int64_t *ret_run_us);
/* Estimated bytes a job will write to the store: its result's and its input's. */
uint64_t job_store_estimate(const struct job *j);
/* The budget's hook for the cache hits waiting for memory: set at jobs_new, emptied
 * first thing at jobs_free. */
void jobs_loads_start(struct jobs *js);
void jobs_loads_stop(struct jobs *js);

/* jobs.c, for jobs_submit.c and jobs_index.c. */
struct job *job_alloc(struct jobs *js, const struct kiln_kind *kind);
/* The scheduler's item from the job's fields (params, inputs, tenant, ...). */
void job_item_init(struct job *j);
/* The cache key from kind, params, inputs and the object version it is bound to.
 * Returns >= 0 or -ENOMEM. */
int job_init_cache_key(struct job *j);
/* Binds j to `version` of its kind's object `name` (object_name, object_version,
 * object_text). Returns >= 0 or -ENOMEM. */
int job_bind_object(struct job *j, const char *name, uint64_t version);
void job_to_record(const struct job *j, struct store_job *ret);
int job_build_done(struct job *j);
/* Results at least this big leave memory once stored: their watchers are sent them
 * from the store, piece by piece; cache hits of them are not copied out. Smaller
 * ones stay with the job (cheaper to send, and bounded per connection by
 * memory.max_output_buffer_bytes). */
#define JOBS_COPY_MAX_BYTES (1u << 20)
/* What reading back a stored result of `size` bytes (at most JOBS_COPY_MAX_BYTES)
 * holds in memory until it is sent: its copy, its done and the frames of its parts. */
#define JOBS_LOAD_BYTES(size) (3 * (uint64_t)(size) + 8192)
/* The largest result (its kind's estimate) a job run before it is stored may have:
 * its one commit writes it whole (jobs.h). */
#define JOBS_EARLY_MAX_BYTES (64u << 10)

/* Gives a done job the result stored in `blob` (`size` bytes): a small one is read
 * whole into memory, a big one's headers only (its parts are then sent from the
 * store, j->result_in_store). Loop thread. Returns >= 0 or -errno. */
int job_result_from_store(struct jobs *js, struct job *j, const uint8_t blob[16], uint64_t size);
/* Before a stored result (`blob`, `size` bytes) is read back for j: what that will
 * hold (a small result's copy, the values' text, and the done repeating them) is
 * taken from memory.max_bytes first, into j's hold. Returns >= 0, -EAGAIN when it
 * does not fit now, -EFBIG when it never could (memory.max_bytes was lowered
 * since), or a store error. */
int job_reserve_load(struct jobs *js, struct job *j, const uint8_t blob[16], uint64_t size);
/* Parses a blob taken over from the store (j->blob owns it afterwards). */
int job_take_blob(struct job *j, uint8_t *blob, size_t size);
/* The done of a job whose result was read back from the store (after
 * job_take_blob or job_result_from_store), built out of what the job holds for
 * it, if anything (jobs_load_finished reserves it first); then the job holds what
 * its result holds. Returns >= 0 or -ENOMEM. */
int job_loaded_done(struct job *j);
/* Moves a job to a final state, from any thread: records the error (for failed,
 * cancelled and expired), builds the `done` message, and queues the final record and
 * result to the store; once committed, the loop thread notifies the watchers and
 * drops the job from the table. Called exactly once per job. */
void job_finish(struct job *j, enum kiln_job_state state, enum kiln_err code, const char *message);
/* Makes j live: the table, its tenant's count, coalescing, its deadline, the queue. */
void jobs_start(struct jobs *js, struct job *j);
/* `accepted` for one submitter of j, then its `done` when j is already finished. */
void jobs_accept_one(struct jobs *js, struct job *j, uint64_t session, json_t *ref, bool watch, bool cached);
/* Every waiting submitter of a job just stored (or found in the cache). */
void jobs_accepted(struct jobs *js, struct job *j, bool cached);
/* Every waiting submitter of j (the one that submitted it and those attached to
 * it) hears that its submission failed with `code`; the job stops counting against
 * its tenant and submitter. Loop thread. */
void job_rejected(struct jobs *js, struct job *j, enum kiln_err code, const char *message);
/* The store refused j's first record (j->op.status < 0): nothing of it was
 * acknowledged. Its submitters hear why (job_rejected) and it leaves the coalescing
 * map; a quick job (live since its submission) also leaves the deadline heap and
 * the table. Loop thread. */
void job_not_stored(struct jobs *js, struct job *j);
/* Stores a quick job (jobs.h) that has not run, as an ordinary queued job with its
 * input: its submitters are then told it is accepted, and it goes back to its
 * queue, in its place (draining, it runs after the restart). Any thread; j is in
 * no scheduler queue and has no store operation in flight. */
void jobs_early_store_queued(struct job *j);
/* How long a quick job may wait for a worker before it is stored queued, and its
 * submitter told it is accepted. */
#define JOBS_EARLY_WAIT_MS 50
/* Stores each quick job whose wait for a worker has passed by now_ms (wall clock)
 * and that is still queued, then puts it back in its queue. Loop thread. */
void jobs_early_due(struct jobs *js, int64_t now_ms);
/* When the first quick job still waiting is due (wall clock ms), 0 = none. */
int64_t jobs_early_next(const struct jobs *js);
/* Drops every waiting quick job from the list (the job table still holds them). */
void jobs_early_clear(struct jobs *js);
/* Takes j off that list, if it is on it (it leaves the job table). */
void jobs_early_unlist(struct jobs *js, struct job *j);
/* Makes room in the deadline heap for every job being committed plus one, so a
 * job accepted later always gets its deadline armed. Returns >= 0 or -ENOMEM. */
int jobs_deadline_reserve(struct jobs *js);
/* jobs_index.c: the table (taking a reference), the deadline heap (the same). */
void jobs_table_add(struct jobs *js, struct job *j);
void jobs_table_remove(struct jobs *js, struct job *j);
void jobs_deadline_add(struct jobs *js, struct job *j);
void jobs_deadline_remove(struct jobs *js, struct job *j);
int jobs_tenant_hold(struct jobs *js, struct job *j);
void jobs_tenant_release(struct jobs *js, struct job *j, int final_state);
/* The submitter's in-flight count ends (events.ended), once. */
void jobs_submitter_release(struct jobs *js, struct job *j);
struct job *jobs_coalesce_find(struct jobs *js, const char *tenant, const uint8_t hash[32]);
void jobs_coalesce_add(struct jobs *js, struct job *j);
void jobs_coalesce_remove(struct jobs *js, struct job *j);
