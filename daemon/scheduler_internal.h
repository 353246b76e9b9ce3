/* What scheduler.c (workers, batches, the reaper) and sched_queue.c (the
 * priority queues) share. Nothing outside the scheduler includes this. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "kind.h"
#include "scheduler.h"

#define MAX_KINDS 32
#define MAINTAIN_MS 1000

/* The jobs of one tenant in one queue, oldest first. */
struct tenant_queue {
        struct tenant_queue *next; /* ring of the tenants with jobs waiting */
        struct sched_item *head, *tail;
        bool spare;                /* the queue's own node, used when malloc fails */
        char tenant[64];
};

/* One (kind, priority) queue: FIFO within each tenant, round-robin between tenants,
 * so one tenant's thousand queued jobs delay another tenant's job by at most one
 * job (or one batch) per tenant ahead of it in the ring. */
struct queue {
        struct tenant_queue *cur;  /* the tenant served next */
        struct tenant_queue spare;
        uint32_t depth;
};

struct progress_ctx {
        struct kiln_exec ex;
        struct sched *s;
        struct sched_item *it;
        struct kiln_value values[KILN_MAX_PROGRESS_VALUES]; /* the kind's latest */
        int n_values;
};

/* One batch in flight. Jobs hold the queue's reference until the batch is freed. */
struct batch {
        struct sched *s;
        const struct kiln_kind *kind;
        size_t n;
        struct sched_item **items;
        struct kiln_task *tasks;
        struct kiln_result *results;
        struct progress_ctx *pcs;
        atomic_bool *claimed;
        struct batch *next, *prev; /* active list (under the lock) */
};

struct sched {
        pthread_mutex_t lock;
        pthread_cond_t wake;      /* workers: a job arrived, or stop */
        pthread_cond_t reap_wake; /* reaper: a batch started, or stop */
        struct queue q[MAX_KINDS][_KILN_PRIO_MAX];
        bool gathering[MAX_KINDS][_KILN_PRIO_MAX];
        uint32_t gather_room[MAX_KINDS][_KILN_PRIO_MAX]; /* what the gathering batch still takes */
        uint32_t max_batch[MAX_KINDS], max_delay_us[MAX_KINDS];
        unsigned n_kinds;
        uint64_t seq;
        bool paused, stopping, maintaining;
        int64_t next_maintain_ms;
        unsigned running;
        uint32_t queued;
        struct batch *active;
        pthread_t *threads;
        unsigned n_threads;
        pthread_t reaper;
        bool reaper_started;
        struct kiln_backends *backends;
        enum kiln_backend_mode mode;
        _Atomic uint32_t max_retries; /* jobs.max_retries (read by workers without the lock) */
        struct sched_sink sink;
        struct membudget *mem;    /* NULL: unbounded */
        /* A worker left an item queued for memory that may come back: the next give
         * of memory wakes the workers (set before the worker looks at the budget
         * again, cleared by the budget's hook; see sched_pick). */
        atomic_bool mem_wanted;
};

static inline unsigned kind_index(const struct kiln_kind *k)
{
        for (unsigned i = 0; kiln_kinds[i]; i++)
                if (kiln_kinds[i] == k)
                        return i;
        return 0;
}

/* ---- sched_queue.c: the queues (lock held for all of these) ---- */

/* Takes an item out of queue q. */
void sched_queue_unlink(struct queue *q, struct sched_item *j);
/* Appends an item to its tenant's FIFO in q (at its head with front). */
void sched_queue_push(struct queue *q, struct sched_item *j, bool front);
/* Puts j back in its tenant's queue where its seq places it (walking from the
 * tail: it is one of the newest). Lock held. */
void sched_queue_insert_by_seq(struct queue *q, struct sched_item *j);
/* The next item in round-robin order between tenants; q not empty. */
struct sched_item *sched_queue_take(struct queue *q);
/* Puts a gathered item back at the head of its queue (shutdown), giving back the
 * memory taken for it. */
void sched_queue_push_front(struct sched *s, struct sched_item *j);
/* The oldest item of the highest priority that can run, across kinds, skipping
 * queues another worker is gathering from, with its memory taken (scheduler.h says
 * which items memory holds back); NULL when there is none. */
struct sched_item *sched_pick(struct sched *s, unsigned *ret_kind, int *ret_prio);
/* Whether a queue of a priority higher than `prio` holds an item. */
bool sched_higher_waiting(struct sched *s, int prio);
/* Moves queued items of (k, p) into jobs[n..max), in round-robin order, each with
 * its memory taken, stopping at the first that does not fit; returns the new count. */
size_t sched_gather(struct sched *s, unsigned k, int p, struct sched_item **jobs, size_t n, size_t max);
