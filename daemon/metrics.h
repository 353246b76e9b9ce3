/* GET /metrics: Prometheus text exposition format (SPEC §3). */
#pragma once

#include <stdint.h>

struct kilnd;
struct job;
struct kiln_kind;

/* Renders every metric family into a new NUL-terminated string (malloc'd, caller
 * frees), or NULL on ENOMEM. Reads counters kept in memory: no store scan.
 * Loop thread. */
char *metrics_render(struct kilnd *d);

/* Records a job that reached a final state (outcome, queue and run time). Loop
 * thread. */
void metrics_job_finished(const struct job *j);

/* Records one batch of n jobs run by `backend` ("cpu", "cuda:0"). Any thread. */
void metrics_batch_ran(const struct kiln_kind *kind, const char *backend, unsigned n);

/* Batches run and the jobs in them since start, over all kinds and backends (the
 * stats push derives batches/s and the mean batch size from them). Any thread. */
void metrics_batch_totals(uint64_t *ret_batches, uint64_t *ret_jobs);

/* The result cache's figures for kiln_cache_*. */
struct metrics_cache {
        uint64_t hits, misses, bytes;
};
void metrics_cache_figures(struct kilnd *d, struct metrics_cache *ret);
