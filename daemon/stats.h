/* What kilnd shows about itself: the `stats` op and its push (SPEC §2.3) and the
 * figures of GET /metrics. The one module that reads every other one's figures;
 * nothing below includes it. Loop thread only. */
#pragma once

#include <jansson.h>

#include "proto.h"

struct kilnd;
struct auth_identity;

/* Once a second: the rates `stats` gives (batches a second). */
void stats_tick(struct kilnd *d);
/* Counts a rejected request by error code. */
void stats_rejected(struct kilnd *d, enum kiln_err code);
/* The `stats` reply for a connection. An admin gets the global figures: queue depths
 * per kind and priority, running jobs, finished jobs by state, connections, cache,
 * batches (totals, mean size, per second), the memory budget (`memory`), the store's room (`store`), uptime. Any other role gets only its own tenant's figures (its unfinished
 * jobs as "queued", finished jobs by state) plus uptime and the backends, and nothing
 * that would reveal another tenant's activity. O(1) in the number of jobs. New
 * reference. */
json_t *stats_json(struct kilnd *d, const struct auth_identity *who);
/* GET /metrics: the metrics text (metrics.h) with the figures gathered here from
 * the scheduler, the store, the jobs and the sessions. malloc'd; NULL on ENOMEM. */
char *stats_metrics_text(struct kilnd *d);
