/* The stats message and the figures of /metrics (see stats.h). */
#include "stats.h"

#include "auth.h"
#include "config.h"
#include "daemon.h"
#include "hotcache.h"
#include "jobs.h"
#include "kind.h"
#include "membudget.h"
#include "metrics.h"
#include "objects.h"
#include "scheduler.h"
#include "store.h"
#include "util.h"

void stats_tick(struct kilnd *d)
{
        uint64_t n_batches, batched_jobs;
        int64_t now = kiln_mono_ms();

        metrics_batch_totals(&n_batches, &batched_jobs);
        if (d->tick_mono && now > d->tick_mono)
                d->batches_per_s = (double)(n_batches - d->tick_batches) * 1000.0 / (double)(now - d->tick_mono);
        d->tick_batches = n_batches;
        d->tick_mono = now;
}

void stats_rejected(struct kilnd *d, enum kiln_err code)
{
        if ((unsigned)code < sizeof(d->rejected) / sizeof(d->rejected[0]))
                d->rejected[code]++;
}

static json_t *tenant_stats_json(struct kilnd *d, const struct auth_identity *who)
{
        uint64_t fin[6];
        uint32_t active = jobs_tenant_counts(d->jobs, who->tenant, fin);
        json_t *finished = json_object();
        for (int s = KILN_JOB_DONE; s <= KILN_JOB_EXPIRED; s++)
                json_object_set_new(finished, kiln_job_state_name(s), json_integer((json_int_t)fin[s]));
        /* "queued" counts the tenant's unfinished jobs (queued or running): the loop
         * does not see the queued -> running step per job, and a scan is not cheap. */
        return json_pack("{s:s, s:s, s:s, s:i, s:o, s:f, s:o}", "op", "stats", "scope", "tenant", "tenant",
                         who->tenant, "queued", (int)active, "finished", finished, "uptime_s",
                         (double)(kiln_mono_ms() - d->started_mono) / 1000.0, "backends", sched_backends_json(d->sched));
}

/* The memory budget: its limit, what each use holds, the most ever held, and how
 * many jobs waited queued for room. */
static json_t *memory_json(struct kilnd *d)
{
        struct membudget_view v;
        membudget_view(d->mem, &v);
        return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "max_bytes", (json_int_t)v.max, "used_bytes",
                         (json_int_t)v.used, "inputs_bytes", (json_int_t)v.by_use[MEM_INPUTS], "results_bytes",
                         (json_int_t)v.by_use[MEM_RESULTS], "output_bytes", (json_int_t)v.by_use[MEM_OUTPUT],
                         "peak_bytes", (json_int_t)v.peak, "waits", (json_int_t)v.waits);
}

json_t *stats_json(struct kilnd *d, const struct auth_identity *who)
{
        if (who->role != AUTH_ROLE_ADMIN)
                return tenant_stats_json(d, who);
        json_t *queues = json_object();
        for (unsigned k = 0; kiln_kinds[k]; k++) {
                json_t *q = json_object();
                for (int p = 0; p < _KILN_PRIO_MAX; p++)
                        json_object_set_new(q, kiln_priority_name(p), json_integer(sched_depth(d->sched, k, p)));
                json_object_set_new(queues, kiln_kinds[k]->name, q);
        }
        json_t *finished = json_object();
        for (int s = KILN_JOB_DONE; s <= KILN_JOB_EXPIRED; s++)
                json_object_set_new(finished, kiln_job_state_name(s), json_integer((json_int_t)metrics_jobs_finished(s)));
        json_t *rejected = json_object();
        for (int e = 0; e < _KERR_MAX; e++)
                if (d->rejected[e])
                        json_object_set_new(rejected, kiln_err_name(e), json_integer((json_int_t)d->rejected[e]));
        struct store_cache_stats cs = { 0 };
        if (d->store)
                store_cache_stats(d->store, &cs);
        uint64_t lookups = cs.hits + cs.misses;
        json_t *cache = json_pack("{s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "hits",
                                  (json_int_t)cs.hits, "misses", (json_int_t)cs.misses, "hit_rate",
                                  lookups ? (double)cs.hits / (double)lookups : 0.0, "bytes", (json_int_t)cs.bytes,
                                  "max_bytes", (json_int_t)d->cfg->cache.max_bytes, "entries",
                                  (json_int_t)cs.entries, "stored", (json_int_t)cs.stored, "evicted",
                                  (json_int_t)cs.evicted, "expired", (json_int_t)cs.expired, "purged",
                                  (json_int_t)cs.purged, "coalesced", (json_int_t)jobs_coalesced(d->jobs), "jobs_purged",
                                  (json_int_t)cs.jobs_purged, "hot_bytes", (json_int_t)hotcache_bytes());
        uint64_t n_batches, batched_jobs;
        metrics_batch_totals(&n_batches, &batched_jobs);
        json_t *batches = json_pack("{s:I, s:I, s:f, s:f}", "count", (json_int_t)n_batches, "jobs",
                                    (json_int_t)batched_jobs, "mean_size",
                                    n_batches ? (double)batched_jobs / (double)n_batches : 0.0, "per_s",
                                    d->batches_per_s);
        json_t *o = json_pack("{s:s, s:s, s:o, s:i, s:i, s:i, s:o, s:o, s:I, s:I, s:I, s:f, s:o, s:o, s:o}", "op", "stats", "scope",
                         "global", "queues", queues, "queued", (int)(jobs_committing(d->jobs) + sched_queued(d->sched)), "running", (int)sched_running(d->sched),
                         "connections", (int)d->n_sessions, "finished", finished, "rejected", rejected,
                         "messages_in", (json_int_t)d->ws_messages_in, "messages_out",
                         (json_int_t)d->ws_messages_out, "live_jobs", (json_int_t)jobs_live(d->jobs), "uptime_s",
                         (double)(kiln_mono_ms() - d->started_mono) / 1000.0, "backends", sched_backends_json(d->sched),
                         "cache", cache, "batches", batches);
        if (o && d->mem)
                json_object_set_new(o, "memory", memory_json(d));
        if (o && d->room_known) {
                char why[256];
                json_object_set_new(o, "store",
                                    json_pack("{s:I, s:I, s:I, s:b}", "room_bytes", (json_int_t)jobs_store_room_left(d->jobs),
                                              "fs_free_bytes", (json_int_t)d->room.fs_free, "map_free_bytes",
                                              (json_int_t)d->room.map_free, "full", jobs_store_full(d->jobs, why)));
        }
        return o;
}

char *stats_metrics_text(struct kilnd *d)
{
        struct metrics_view v = { .rejected = d->rejected };
        struct store_cache_stats cs = { 0 };

        for (unsigned k = 0; kiln_kinds[k] && k < METRICS_MAX_KINDS; k++)
                for (int p = 0; p < _KILN_PRIO_MAX; p++)
                        v.depth[k][p] = d->sched ? sched_depth(d->sched, k, p) : 0;
        v.backends = d->sched ? sched_backends_json(d->sched) : NULL;
        if (d->store)
                store_cache_stats(d->store, &cs);
        v.cache = (struct metrics_cache){ .hits = cs.hits, .misses = cs.misses, .bytes = cs.bytes,
                                          .recent = cs.recent, .merges = cs.merges, .hot_bytes = hotcache_bytes() };
        if (d->objects) {
                struct objects_cache_stats os;
                objects_cache_stats(d->objects, &os);
                v.objects = (struct metrics_objects){ .loads = os.compiles, .hits = os.hits,
                                                      .evictions = os.evictions, .entries = os.entries,
                                                      .idle_bytes = os.idle_bytes };
        }
        if (d->mem) {
                struct membudget_view mv;
                membudget_view(d->mem, &mv);
                v.memory = (struct metrics_memory){ .known = true, .max = mv.max, .inputs = mv.by_use[MEM_INPUTS],
                                                    .results = mv.by_use[MEM_RESULTS],
                                                    .output = mv.by_use[MEM_OUTPUT], .waits = mv.waits };
        }
        if (d->room_known) {
                char why[256];
                v.store = (struct metrics_store){ .known = true, .room = jobs_store_room_left(d->jobs), .fs_free = d->room.fs_free,
                                                  .map_free = d->room.map_free, .full = jobs_store_full(d->jobs, why) };
        }
        if (d->writer) {
                v.store.writer = true;
                store_writer_stats(d->writer, &v.store.commits, &v.store.ops);
        }
        v.connections = d->n_sessions;
        v.ws_messages_in = d->ws_messages_in;
        v.ws_messages_out = d->ws_messages_out;
        v.uptime_s = (double)(kiln_mono_ms() - d->started_mono) / 1000.0;
        char *text = metrics_render(&v);
        json_decref(v.backends);
        return text;
}
