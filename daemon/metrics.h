/* GET /metrics: Prometheus text exposition format (SPEC §3). Loop thread only. */
#pragma once

struct kilnd;

/* Renders every metric family into a new NUL-terminated string (malloc'd, caller
 * frees), or NULL on ENOMEM. Reads counters kept in memory: no store scan. */
char *metrics_render(struct kilnd *d);
