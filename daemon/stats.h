/* The `stats` op and its once-a-second push (SPEC §2.3). Loop thread only. */
#pragma once

#include <jansson.h>

#include "proto.h"

struct kilnd;

/* Counts a rejected request by error code. */
void stats_rejected(struct kilnd *d, enum kiln_err code);
/* The `stats` reply for a tenant: queue depths per kind and priority, running jobs,
 * finished jobs by state, connections, uptime. New reference. */
json_t *stats_json(struct kilnd *d, const char *tenant);
/* Pushes stats to subscribed sessions (session.c). */
void sessions_push_stats(struct kilnd *d);
