/* The scheduler: per-kind queues with five strict priorities (round-robin between
 * tenants, FIFO within one), the dynamic batcher ([batch.KIND] max_batch,
 * max_delay_us) and the worker pool that runs batches on the backends (the CUDA
 * plugin's devices, then the CPU).
 *
 * The scheduler knows tasks, not jobs: its owner embeds a `struct sched_item` in
 * whatever it schedules and hands the scheduler a `struct sched_sink` of callbacks
 * at creation (libuv's thread pool takes a `done` callback the same way). The
 * scheduler reports what happened to an item (started, progress, finished); it
 * never changes anyone's state itself, and it includes nothing of its owner.
 *
 * Memory (membudget.h): an item names what running it will hold (mem_bytes, its
 * estimated result). A worker starts it only once that much is taken from the
 * budget (MEM_RESULTS); until then it stays queued, its deadline still running.
 * Within one priority, an item that does not fit does not hold back the items of
 * other kinds or other tenants that do (one tenant's own items keep their order);
 * items of lower priorities wait while one that could fit once memory comes back
 * is queued above them, as they would behind any higher-priority item. An item
 * bigger than the whole budget holds back nobody: it stays queued until it is
 * expired or cancelled (the owner refuses such items at submit). Workers sleep
 * while nothing fits and wake when memory is given back. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "kind.h"
#include "proto.h"

struct sched;
struct membudget;
struct kiln_config;
struct kiln_array;
struct kiln_object;
struct tenant_queue;

/* Why the owner asked a running item to stop (sched_item.stop). */
enum sched_stop {
        SCHED_STOP_NONE,
        SCHED_STOP_CANCEL,   /* a client cancelled it */
        SCHED_STOP_EXPIRE,   /* its deadline passed */
        SCHED_STOP_SHUTDOWN, /* the daemon is stopping: it stays queued in the store */
};

/* How an item ended (sched_sink.finished). */
enum sched_end {
        SCHED_END_DONE,      /* result filled */
        SCHED_END_FAILED,    /* `code` and `message` say why */
        SCHED_END_CANCELLED, /* stopped with SCHED_STOP_CANCEL */
        SCHED_END_EXPIRED,   /* its deadline passed (queued, or while its batch ran) */
        SCHED_END_REQUEUED,  /* stopped with SCHED_STOP_SHUTDOWN before it ran: not finished */
};

/* One schedulable unit, embedded in the owner's object (container_of). */
struct sched_item {
        /* Set by the owner before sched_push; read-only while queued or running. */
        const struct kiln_kind *kind;
        const void *params;            /* the kind's typed parameters */
        const char *tenant;            /* round-robin key */
        enum kiln_priority priority;
        int64_t deadline_ms;           /* wall clock (kiln_wall_ms), 0 = none */
        const struct kiln_array *inputs; /* the job's input arrays, borrowed */
        size_t n_inputs;
        const struct kiln_object *object; /* the stored object it reads (set by the
                                           * sink's prepare on the worker), or NULL */
        /* Bytes running it will hold, its estimated result: taken from the budget
         * (MEM_RESULTS) before it starts. 0: it holds nothing and never waits. The
         * owner's prepare may raise it, on the worker (SCHED_PREPARE_WAIT). */
        uint64_t mem_bytes;

        /* Set by the scheduler when it takes the item out of its queue to run it:
         * what it took from the budget for it (mem_bytes, or 0). From then the bytes
         * are the owner's: after `finished` (whatever the end: done, failed, expired,
         * cancelled, requeued) the owner gives them back with
         * membudget_give(mem, MEM_RESULTS, it->mem_held) once it has freed the
         * result, or at once when there is none, and sets mem_held to 0 before it
         * pushes the item again. The scheduler never gives back the memory of an
         * item it has reported; an item taken back with sched_remove, or one still
         * queued at sched_free, holds none (mem_held 0). */
        uint64_t mem_held;

        /* Written by the owner from any thread (cancel, expire, shutdown). */
        atomic_int stop;               /* enum sched_stop */
        /* Device runs started for it (each retry after a device failure is one
         * more); read by the owner after `finished`. */
        atomic_uint attempts;

        /* Private to the scheduler (under its lock, or its worker). */
        struct sched_item *q_prev, *q_next;
        struct tenant_queue *q_tenant;
        bool in_queue;
        bool mem_waited;               /* counted once in the budget's waits */
        uint64_t seq;
        atomic_int pct;
        int64_t progress_sent_ms;
};

/* sched_sink.prepare: put the item back until more memory fits. */
#define SCHED_PREPARE_WAIT 1

/* What the scheduler tells its owner. Every callback may run on a worker or
 * reaper thread and must not block; `ctx` is the sink's. */
struct sched_sink {
        void *ctx;
        /* The scheduler holds an item while it is queued or running. */
        void (*hold)(void *ctx, struct sched_item *it);
        void (*release)(void *ctx, struct sched_item *it);
        /* Before the item's batch begins, on the worker: whatever it needs that the
         * loop thread may not do (loading the stored object it runs against into
         * it->object). Returns 0 to run it; SCHED_PREPARE_WAIT when running it
         * holds more memory than was taken for it and the budget has no more now:
         * the owner has raised it->mem_bytes (and taken nothing), and the item goes
         * back to the head of its queue, holding none, until that fits; or < 0 with
         * *ret_code and msg (256 bytes) saying why it cannot run, and field (128
         * bytes) the input at fault ("" for none): it then ends SCHED_END_FAILED.
         * Called again for an item put back. May be NULL. */
        int (*prepare)(void *ctx, struct sched_item *it, enum kiln_err *ret_code, char *msg, char *field);
        /* The item's batch begins on a backend (now_ms: wall clock). */
        void (*started)(void *ctx, struct sched_item *it, int64_t now_ms);
        /* Its progress changed to pct (0..99), with the kind's own values (n of them,
         * kind.h: kiln_exec_report; borrowed for the call); at most one call per
         * 100 ms per item, none in its first 100 ms. */
        void (*progress)(void *ctx, struct sched_item *it, int pct, const struct kiln_value *values, int n);
        /* It ended. With SCHED_END_DONE the owner takes the result over (the struct
         * is then reset). `field` names the input at fault when the job's own input
         * failed it (a kind's check at run time), else NULL. `device` says where it
         * ran ("cpu", "cuda:0", "none"), `batch` how many items ran with it. Called
         * exactly once per pushed item that runs or expires; never for one taken
         * back with sched_remove. */
        void (*finished)(void *ctx, struct sched_item *it, enum sched_end end, enum kiln_err code,
                         const char *message, const char *field, struct kiln_result *result, const char *device,
                         uint32_t batch);
        /* Around the run of a batch of a kind whose tasks end together (one with
         * run_cpu_batch: the CPU reports them when the call returns, CUDA when their
         * launch does, so a batch of several launches waits for its last), on the
         * worker, so that what `finished` starts for them can be handed on at once:
         * kilnd plugs its store queue (storeq_plug), and a batch is one commit. Both
         * or neither may be NULL. */
        void (*batch_begin)(void *ctx);
        void (*batch_end)(void *ctx);
};

/* Opens the backends for cfg->gpu (loading the CUDA plugin unless gpu.backend = cpu)
 * and starts cfg->cpu.threads workers (0 = number of online CPUs), with the batch
 * settings of every kind and jobs.max_retries. `cfg` is read only during the call;
 * `sink` is copied. `mem` is the memory budget items take from before they run
 * (NULL: none, every item runs when a worker is free); it must outlive the
 * scheduler, which sets its release hook (membudget_on_give) until sched_free.
 * Returns >= 0 or -errno. */
int sched_new(const struct kiln_config *cfg, const struct sched_sink *sink, struct membudget *mem,
              struct sched **ret);
/* Stops the workers (a running item is asked to stop with SCHED_STOP_SHUTDOWN and
 * ends SCHED_END_REQUEUED unless it finishes first), releases queued items, frees;
 * unsets the budget's hook first. Accepts NULL. */
void sched_free(struct sched *s);

/* SIGHUP: the [batch.KIND] settings and jobs.max_retries of cfg (read during the
 * call) apply to the batches gathered from now on. */
void sched_set_config(struct sched *s, const struct kiln_config *cfg);

/* Queues an item (holds it). */
void sched_push(struct sched *s, struct sched_item *it);
/* Queues again an item sched_remove took out, in the place it had (FIFO within
 * its priority holds). */
void sched_requeue(struct sched *s, struct sched_item *it);
/* Takes an item out of its queue if it is still there (releases it). Returns true
 * when it was queued; false when a worker already has it. */
bool sched_remove(struct sched *s, struct sched_item *it);
/* After this, workers take no new item (drain on SIGTERM), and tasks of running
 * batches not yet begun are asked to stop with SCHED_STOP_SHUTDOWN. */
void sched_pause(struct sched *s);

/* The active backends and their devices, for /readyz, /healthz, stats and metrics:
 * [{"name":"cuda","plugin":PATH,"devices":[{"name":"cuda:0","model":..,"state":
 * "in_service"|"out_of_service","failures":N,"probes":N,"memory_total_bytes":N,
 * "memory_used_bytes":N,"utilization":X}]}, {"name":"cpu","threads":N,"devices":[..]}].
 * New reference. */
json_t *sched_backends_json(struct sched *s);
/* True when at least one device of a backend is in service. */
bool sched_ready(struct sched *s);
/* A compiled object is about to be released: every backend drops its device copies
 * (kiln_backend.object_release). Any thread. */
void sched_object_released(struct sched *s, const struct kiln_object *obj);

/* Items waiting in all queues. */
uint32_t sched_queued(struct sched *s);
/* Items being run right now. */
unsigned sched_running(struct sched *s);
unsigned sched_threads(struct sched *s);
/* Queued items of kind index `kind` (into kiln_kinds[]) and priority. */
uint32_t sched_depth(struct sched *s, unsigned kind, enum kiln_priority prio);
