/* Prometheus text format for GET /metrics. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "jobs.h"
#include "kind.h"
#include "proto.h"
#include "scheduler.h"
#include "store.h"

struct buf {
        char *p;
        size_t len, cap;
        bool oom;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
        for (;;) {
                va_list ap;
                va_start(ap, fmt);
                int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        b->oom = true;
                        return;
                }
                if (b->p && b->len + (size_t)n < b->cap) {
                        b->len += (size_t)n;
                        return;
                }
                size_t cap = b->cap ? b->cap * 2 : 8192;
                while (cap < b->len + (size_t)n + 1)
                        cap *= 2;
                char *np = realloc(b->p, cap);
                if (!np) {
                        b->oom = true;
                        return;
                }
                b->p = np;
                b->cap = cap;
        }
}

char *metrics_render(struct kilnd *d)
{
        struct buf b = { 0 };

        put(&b, "# HELP kiln_jobs_total Jobs that reached a final state, by state.\n# TYPE kiln_jobs_total counter\n");
        for (int s = KILN_JOB_DONE; s <= KILN_JOB_EXPIRED; s++)
                put(&b, "kiln_jobs_total{state=\"%s\"} %llu\n", kiln_job_state_name(s),
                    (unsigned long long)d->jobs_finished[s]);
        put(&b, "# HELP kiln_queue_depth Jobs waiting to run.\n# TYPE kiln_queue_depth gauge\n");
        for (unsigned k = 0; kiln_kinds[k]; k++)
                for (int p = 0; p < _KILN_PRIO_MAX; p++)
                        put(&b, "kiln_queue_depth{kind=\"%s\",priority=\"%s\"} %u\n", kiln_kinds[k]->name,
                            kiln_priority_name(p), d->sched ? sched_depth(d->sched, k, p) : 0);
        put(&b, "# HELP kiln_connections Open WebSocket connections.\n# TYPE kiln_connections gauge\n"
                "kiln_connections %zu\n",
            d->n_sessions);
        put(&b, "# HELP kiln_ws_messages_total WebSocket messages by direction.\n"
                "# TYPE kiln_ws_messages_total counter\n"
                "kiln_ws_messages_total{direction=\"in\"} %llu\nkiln_ws_messages_total{direction=\"out\"} %llu\n",
            (unsigned long long)d->ws_messages_in, (unsigned long long)d->ws_messages_out);
        put(&b, "# HELP kiln_rejected_total Requests answered with an error, by code.\n"
                "# TYPE kiln_rejected_total counter\n");
        for (int e = 0; e < _KERR_MAX; e++)
                put(&b, "kiln_rejected_total{code=\"%s\"} %llu\n", kiln_err_name(e),
                    (unsigned long long)d->rejected[e]);
        if (b.oom) {
                free(b.p);
                return NULL;
        }
        return b.p;
}
