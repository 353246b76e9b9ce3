/* GET /metrics: Prometheus text exposition format (SPEC §3), and the counters and
 * histograms behind it. A leaf: it is told what happened and handed the figures
 * it shows, and includes no other part of the daemon. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "proto.h"

struct kiln_kind;

#define METRICS_MAX_KINDS 32

/* The result cache's figures for kiln_cache_*. */
struct metrics_cache {
        uint64_t hits, misses, bytes;
        uint64_t recent, merges;  /* the store's log of new entries (store_cache_recent.c) */
        uint64_t hot_bytes;       /* in-memory copies of recent hits (hotcache.h) */
};

/* Loaded objects (objects.h's snapshots) for kiln_objects_*. */
struct metrics_objects {
        uint64_t loads, hits, evictions;
        uint64_t entries, idle_bytes;
};

/* The memory budget's figures for kiln_memory_* (membudget.h). */
struct metrics_memory {
        bool known;              /* false: no budget, the families are left out */
        uint64_t max, inputs, results, output, waits;
};

/* The store's room for kiln_store_* (store_room, measured once a second). */
struct metrics_store {
        bool known;
        uint64_t room, fs_free, map_free;
        bool full;               /* new work refused for lack of room */
        bool writer;             /* commits and ops are known */
        uint64_t commits, ops;   /* the writer's transactions and the operations in them */
};

/* What a scrape shows besides this module's own counters, gathered by its caller
 * (stats.c) from the scheduler, the store and the sessions. */
struct metrics_view {
        uint32_t depth[METRICS_MAX_KINDS][_KILN_PRIO_MAX]; /* queued jobs by kind index, priority */
        json_t *backends;        /* sched_backends_json(), borrowed; NULL: none */
        struct metrics_cache cache;
        struct metrics_objects objects;
        struct metrics_memory memory;
        struct metrics_store store;
        size_t connections;
        uint64_t ws_messages_in, ws_messages_out;
        const uint64_t *rejected; /* _KERR_MAX counters by enum kiln_err */
        double uptime_s;
};

/* Renders every metric family into a new NUL-terminated string (malloc'd, caller
 * frees), or NULL on ENOMEM. Loop thread. */
char *metrics_render(const struct metrics_view *v);

/* Records a job that reached a final state (enum kiln_job_state) with its queue
 * and run time in seconds (queue_s < 0: it never ran). Loop thread. */
void metrics_job_finished(const struct kiln_kind *kind, int state, double queue_s, double run_s);
/* Jobs that reached `state` since start, over all kinds. Loop thread. */
uint64_t metrics_jobs_finished(int state);

/* Records one batch of n jobs run by `backend` ("cpu", "cuda:0"). Any thread. */
void metrics_batch_ran(const struct kiln_kind *kind, const char *backend, unsigned n);

/* Batches run and the jobs in them since start, over all kinds and backends (the
 * stats push derives batches/s and the mean batch size from them). Any thread. */
void metrics_batch_totals(uint64_t *ret_batches, uint64_t *ret_jobs);
