/* Prometheus text format for GET /metrics.
 *
 * Counters and histograms live here: job outcomes and times are recorded on the loop
 * thread when a job finishes, batch sizes by the worker that ran the batch (under a
 * lock). A scrape formats them with the figures its caller gathered (queue depths,
 * devices, cache, connections: struct metrics_view), so this module reads no other
 * module's state and never touches the store. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kind.h"
#include "proto.h"
#include "store.h"

#define MAX_KINDS METRICS_MAX_KINDS
#define MAX_BACKENDS 8
#define N_STATES 6

static const double time_le[] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300 };
static const double batch_le[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };
#define N_TIME (sizeof(time_le) / sizeof(time_le[0]))
#define N_BATCH (sizeof(batch_le) / sizeof(batch_le[0]))

struct histogram {
        uint64_t bucket[16]; /* per bucket; made cumulative when rendered */
        uint64_t count;
        double sum;
};

struct batch_metrics {
        char backend[16];
        struct histogram size;
};

/* Loop thread only. */
static struct {
        uint64_t jobs[N_STATES];
        struct histogram queue_s, run_s;
} kinds[MAX_KINDS];

/* Any thread, under batch_lock. */
static pthread_mutex_t batch_lock = PTHREAD_MUTEX_INITIALIZER;
static struct batch_metrics batches[MAX_KINDS][MAX_BACKENDS];

static struct batch_metrics *batches_of(int k, int b)
{
        return batches[k][b].backend[0] ? &batches[k][b] : NULL;
}

static void observe(struct histogram *h, const double *le, size_t n, double v)
{
        for (size_t i = 0; i < n; i++)
                if (v <= le[i]) {
                        h->bucket[i]++;
                        break;
                }
        h->count++;
        h->sum += v;
}

static int kind_index(const struct kiln_kind *k)
{
        for (int i = 0; kiln_kinds[i] && i < MAX_KINDS; i++)
                if (kiln_kinds[i] == k)
                        return i;
        return -1;
}

void metrics_job_finished(const struct kiln_kind *kind, int state, double queue_s, double run_s)
{
        int k = kind_index(kind);
        if (k < 0 || state < 0 || state >= N_STATES)
                return;
        kinds[k].jobs[state]++;
        if (queue_s < 0)
                return; /* it never ran: no queue or run time */
        observe(&kinds[k].queue_s, time_le, N_TIME, queue_s);
        observe(&kinds[k].run_s, time_le, N_TIME, run_s);
}

uint64_t metrics_jobs_finished(int state)
{
        uint64_t n = 0;
        for (int k = 0; state >= 0 && state < N_STATES && k < MAX_KINDS; k++)
                n += kinds[k].jobs[state];
        return n;
}

void metrics_batch_ran(const struct kiln_kind *kind, const char *backend, unsigned n)
{
        int k = kind_index(kind);
        if (k < 0 || !n)
                return;
        char family[16];
        snprintf(family, sizeof(family), "%s", backend && backend[0] ? backend : "cpu");
        family[strcspn(family, ":")] = 0; /* "cuda:0" counts under "cuda" */
        pthread_mutex_lock(&batch_lock);
        for (int b = 0; b < MAX_BACKENDS; b++) {
                struct batch_metrics *m = &batches[k][b];
                if (!m->backend[0])
                        snprintf(m->backend, sizeof(m->backend), "%s", family);
                if (!strcmp(m->backend, family)) {
                        observe(&m->size, batch_le, N_BATCH, (double)n);
                        break;
                }
        }
        pthread_mutex_unlock(&batch_lock);
}

/* ---- rendering ---- */

struct buf {
        char *p;
        size_t len, cap;
        bool oom;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
        if (b->oom)
                return;
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
                size_t cap = b->cap ? b->cap * 2 : 16384;
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

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
        put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one unlabelled sample. */
static void single(struct buf *b, const char *name, const char *type, const char *help, uint64_t value)
{
        family(b, name, type, help);
        put(b, "%s %llu\n", name, (unsigned long long)value);
}

static void histogram(struct buf *b, const char *name, const char *labels, const struct histogram *h,
                      const double *le, size_t n)
{
        uint64_t cum = 0;
        for (size_t i = 0; i < n; i++) {
                cum += h->bucket[i];
                put(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, le[i], (unsigned long long)cum);
        }
        put(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)h->count);
        put(b, "%s_sum{%s} %.17g\n", name, labels, h->sum);
        put(b, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
}

/* Per-device figures from the scheduler's backend list:
 * [{"name":..,"utilization":0..1,"memory_used_bytes":..,"devices":[{...}]}, ...]. */
static void devices(struct buf *b, json_t *list, bool memory)
{
        json_t *be, *dev;
        size_t i, k;
        json_array_foreach(list, i, be) {
                json_t *devs = json_object_get(be, "devices");
                if (!json_is_array(devs) || !json_array_size(devs)) {
                        devs = json_array();
                        json_array_append(devs, be);
                } else {
                        json_incref(devs);
                }
                json_array_foreach(devs, k, dev) {
                        const char *name = json_string_value(json_object_get(dev, "name"));
                        json_t *v = json_object_get(dev, memory ? "memory_used_bytes" : "utilization");
                        if (name && json_is_number(v))
                                put(b, "%s{device=\"%s\"} %.17g\n",
                                    memory ? "kiln_device_memory_used_bytes" : "kiln_device_utilization_ratio",
                                    name, json_number_value(v));
                }
                json_decref(devs);
        }
}

char *metrics_render(const struct metrics_view *v)
{
        struct buf b = { 0 };
        char labels[128];

        family(&b, "kiln_jobs_total", "counter", "Jobs that reached a final state, by kind and state.");
        for (int k = 0; kiln_kinds[k] && k < MAX_KINDS; k++)
                for (int s = KILN_JOB_DONE; s < N_STATES; s++)
                        put(&b, "kiln_jobs_total{kind=\"%s\",state=\"%s\"} %llu\n", kiln_kinds[k]->name,
                            kiln_job_state_name(s), (unsigned long long)kinds[k].jobs[s]);

        family(&b, "kiln_queue_depth", "gauge", "Jobs waiting to run, by kind and priority.");
        for (int k = 0; kiln_kinds[k] && k < MAX_KINDS; k++)
                for (int p = 0; p < _KILN_PRIO_MAX; p++)
                        put(&b, "kiln_queue_depth{kind=\"%s\",priority=\"%s\"} %u\n", kiln_kinds[k]->name,
                            kiln_priority_name(p), v->depth[k][p]);

        family(&b, "kiln_job_queue_seconds", "histogram", "Time from submission to start, by kind.");
        for (int k = 0; kiln_kinds[k] && k < MAX_KINDS; k++) {
                snprintf(labels, sizeof(labels), "kind=\"%s\"", kiln_kinds[k]->name);
                histogram(&b, "kiln_job_queue_seconds", labels, &kinds[k].queue_s, time_le, N_TIME);
        }
        family(&b, "kiln_job_run_seconds", "histogram", "Time from start to finish, by kind.");
        for (int k = 0; kiln_kinds[k] && k < MAX_KINDS; k++) {
                snprintf(labels, sizeof(labels), "kind=\"%s\"", kiln_kinds[k]->name);
                histogram(&b, "kiln_job_run_seconds", labels, &kinds[k].run_s, time_le, N_TIME);
        }

        family(&b, "kiln_batch_size", "histogram", "Jobs launched together, by kind and backend.");
        pthread_mutex_lock(&batch_lock);
        for (int k = 0; kiln_kinds[k] && k < MAX_KINDS; k++)
                for (int be = 0; be < MAX_BACKENDS && batches[k][be].backend[0]; be++) {
                        snprintf(labels, sizeof(labels), "kind=\"%s\",backend=\"%s\"", kiln_kinds[k]->name,
                                 batches[k][be].backend);
                        histogram(&b, "kiln_batch_size", labels, &batches[k][be].size, batch_le, N_BATCH);
                }
        pthread_mutex_unlock(&batch_lock);

        const struct metrics_cache c = v->cache;
        single(&b, "kiln_cache_hits_total", "counter", "Submissions answered from the result cache.", c.hits);
        single(&b, "kiln_cache_misses_total", "counter", "Submissions the result cache could not answer.", c.misses);
        single(&b, "kiln_cache_bytes", "gauge", "Bytes held by the result cache.", c.bytes);
        single(&b, "kiln_cache_hot_bytes", "gauge",
               "Bytes of in-memory copies of recent cache hits (at most 64 MiB; invalid ones go within a second).",
               c.hot_bytes);
        single(&b, "kiln_cache_recent_entries", "gauge",
               "New cache entries in the store's log, waiting to be merged into its hash-ordered table.", c.recent);
        single(&b, "kiln_cache_merges_total", "counter",
               "Merges of the cache's new entries into its hash-ordered table, since start.", c.merges);

        const struct metrics_objects o = v->objects;
        single(&b, "kiln_objects_loads_total", "counter",
               "Models and collection versions read from the store and compiled for jobs.", o.loads);
        single(&b, "kiln_objects_hits_total", "counter", "Jobs that found their model or collection loaded.", o.hits);
        single(&b, "kiln_objects_evictions_total", "counter",
               "Loaded objects freed once no job used them: past memory.objects_cache_bytes, or replaced by a newer version.", o.evictions);
        single(&b, "kiln_objects_loaded", "gauge", "Models and collection versions loaded now.", o.entries);
        single(&b, "kiln_objects_idle_bytes", "gauge", "Bytes of loaded objects no job uses now.", o.idle_bytes);

        if (v->memory.known) {
                const struct metrics_memory *mm = &v->memory;
                single(&b, "kiln_memory_budget_bytes", "gauge",
                       "Bytes kilnd may hold for job inputs, results and output buffers (memory.max_bytes).", mm->max);
                family(&b, "kiln_memory_used_bytes", "gauge", "Bytes of the memory budget held, by use.");
                put(&b, "kiln_memory_used_bytes{use=\"inputs\"} %llu\nkiln_memory_used_bytes{use=\"results\"} %llu\n"
                        "kiln_memory_used_bytes{use=\"output\"} %llu\n",
                    (unsigned long long)mm->inputs, (unsigned long long)mm->results, (unsigned long long)mm->output);
                single(&b, "kiln_memory_waits_total", "counter",
                       "Jobs that waited queued for room in the memory budget.", mm->waits);
        }

        if (v->store.known) {
                single(&b, "kiln_store_room_bytes", "gauge",
                       "Bytes the job store can still take: LMDB's free pages and what the map and the file "
                       "system allow.",
                       v->store.room);
                single(&b, "kiln_store_fs_free_bytes", "gauge",
                       "Bytes free on the job store's file system.", v->store.fs_free);
                single(&b, "kiln_store_map_free_bytes", "gauge",
                       "Bytes LMDB can still place in the store's map.", v->store.map_free);
                single(&b, "kiln_store_full", "gauge", "1 while new work is refused for lack of room in the job store.",
                       v->store.full ? 1 : 0);
        }
        if (v->store.writer) {
                single(&b, "kiln_store_commits_total", "counter",
                       "Write transactions the store's writer committed (each one fsync under store.sync=full).",
                       v->store.commits);
                single(&b, "kiln_store_operations_total", "counter",
                       "Operations (job records, results, object changes) in those transactions.", v->store.ops);
        }

        family(&b, "kiln_device_utilization_ratio", "gauge", "Share of each device's capacity in use.");
        devices(&b, v->backends, false);
        family(&b, "kiln_device_memory_used_bytes", "gauge", "Memory in use on each device.");
        devices(&b, v->backends, true);

        single(&b, "kiln_connections", "gauge", "Open WebSocket connections.", v->connections);
        family(&b, "kiln_ws_messages_total", "counter", "WebSocket messages, by direction.");
        put(&b, "kiln_ws_messages_total{direction=\"in\"} %llu\nkiln_ws_messages_total{direction=\"out\"} %llu\n",
            (unsigned long long)v->ws_messages_in, (unsigned long long)v->ws_messages_out);
        family(&b, "kiln_rejected_total", "counter", "Requests answered with an error, by code.");
        for (int e = 0; e < _KERR_MAX; e++)
                put(&b, "kiln_rejected_total{code=\"%s\"} %llu\n", kiln_err_name(e),
                    (unsigned long long)v->rejected[e]);
        family(&b, "kiln_uptime_seconds", "gauge", "Seconds since kilnd started.");
        put(&b, "kiln_uptime_seconds %.3f\n", v->uptime_s);

        if (b.oom) {
                free(b.p);
                return NULL;
        }
        return b.p;
}

void metrics_batch_totals(uint64_t *ret_batches, uint64_t *ret_jobs)
{
        uint64_t n = 0;
        double jobs = 0;
        pthread_mutex_lock(&batch_lock);
        for (int k = 0; k < MAX_KINDS; k++)
                for (int b = 0; b < MAX_BACKENDS && batches_of(k, b); b++) {
                        n += batches_of(k, b)->size.count;
                        jobs += batches_of(k, b)->size.sum;
                }
        pthread_mutex_unlock(&batch_lock);
        *ret_batches = n;
        *ret_jobs = (uint64_t)jobs;
}
