/* Counters and the stats message. */
#include "stats.h"

#include "daemon.h"
#include "jobs.h"
#include "kind.h"
#include "scheduler.h"
#include "store.h"

void stats_rejected(struct kilnd *d, enum kiln_err code)
{
        if ((unsigned)code < sizeof(d->rejected) / sizeof(d->rejected[0]))
                d->rejected[code]++;
}

json_t *stats_json(struct kilnd *d, const char *tenant)
{
        json_t *queues = json_object();
        for (unsigned k = 0; kiln_kinds[k]; k++) {
                json_t *q = json_object();
                for (int p = 0; p < _KILN_PRIO_MAX; p++)
                        json_object_set_new(q, kiln_priority_name(p), json_integer(sched_depth(d->sched, k, p)));
                json_object_set_new(queues, kiln_kinds[k]->name, q);
        }
        json_t *finished = json_object();
        for (int s = KILN_JOB_DONE; s <= KILN_JOB_EXPIRED; s++)
                json_object_set_new(finished, kiln_job_state_name(s), json_integer((json_int_t)d->jobs_finished[s]));
        json_t *rejected = json_object();
        for (int e = 0; e < _KERR_MAX; e++)
                if (d->rejected[e])
                        json_object_set_new(rejected, kiln_err_name(e), json_integer((json_int_t)d->rejected[e]));
        return json_pack("{s:s, s:o, s:i, s:i, s:i, s:o, s:o, s:I, s:I, s:I, s:f, s:o}", "op", "stats",
                         "queues", queues, "queued", (int)(d->committing + sched_queued(d->sched)), "running", (int)sched_running(d->sched),
                         "connections", (int)d->n_sessions, "finished", finished, "rejected", rejected,
                         "messages_in", (json_int_t)d->ws_messages_in, "messages_out",
                         (json_int_t)d->ws_messages_out, "live_jobs", (json_int_t)jobs_table_count(d), "uptime_s",
                         (double)(kiln_now_ms() - d->started_ms) / 1000.0, "backends", sched_backends_json(d->sched));
}
