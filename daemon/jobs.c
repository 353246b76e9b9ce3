/* The job object, its state machine, the table of live jobs and their deadlines. */
#include "jobs.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "daemon.h"
#include "hotcache.h"
#include "limiter.h"
#include "log.h"
#include "metrics.h"
#include "params.h"
#include "proto.h"
#include "result_codec.h"
#include "scheduler.h"
#include "session.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

int64_t kiln_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_progress_mail(struct mail *m);

static struct job *job_alloc(struct kilnd *d, const struct kiln_kind *kind)
{
        struct job *j = calloc(1, sizeof(*j));
        if (!j)
                return NULL;
        atomic_init(&j->refs, 1);
        j->d = d;
        j->kind = kind;
        j->progress_mail.fn = on_progress_mail;
        return j;
}

struct job *job_new(struct kilnd *d, const struct kiln_kind *kind, void *params, json_t *canonical,
                    const char *tenant, enum kiln_priority priority, int64_t now_ms, int64_t timeout_ms,
                    const char *idem_key)
{
        struct job *j = job_alloc(d, kind);
        if (!j)
                goto fail;
        j->params = params;
        params = NULL;
        j->params_json = json_dumps(canonical, JSON_COMPACT | JSON_SORT_KEYS);
        if (!j->params_json)
                goto fail;
        cache_key_init(j);
        if (idem_key && !(j->idem_key = strdup(idem_key)))
                goto fail;
        kiln_uuid7_new(j->id);
        kiln_uuid_format(j->id, j->id_text);
        snprintf(j->tenant, sizeof(j->tenant), "%s", tenant);
        j->priority = priority;
        j->submitted_ms = now_ms;
        j->deadline_ms = timeout_ms > 0 ? now_ms + timeout_ms : 0;
        atomic_init(&j->state, KILN_JOB_QUEUED);
        json_decref(canonical);
        return j;
fail:
        free(params);
        json_decref(canonical);
        job_unref(j);
        return NULL;
}

int job_from_record(struct kilnd *d, const struct store_job *rec, struct job **ret)
{
        const struct kiln_kind *kind = kiln_kind_find(rec->kind);
        if (!kind)
                return -EINVAL;
        json_error_t jerr;
        json_t *in = json_loads(rec->params ? rec->params : "{}", 0, &jerr);
        if (!in)
                return -EINVAL;
        void *params = calloc(1, kind->params_size ? kind->params_size : 1);
        json_t *canonical = NULL;
        struct kiln_param_error perr;
        int r = params ? kiln_params_validate(kind, in, &canonical, params, &perr) : -ENOMEM;
        json_decref(in);
        if (r < 0) {
                free(params);
                return r;
        }
        struct job *j = job_alloc(d, kind);
        if (!j) {
                free(params);
                json_decref(canonical);
                return -ENOMEM;
        }
        j->params = params;
        j->params_json = json_dumps(canonical, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(canonical);
        if (!j->params_json || (rec->idem_key && !(j->idem_key = strdup(rec->idem_key)))) {
                job_unref(j);
                return -ENOMEM;
        }
        cache_key_init(j);
        j->cache_store = d->cfg->cache.enabled;
        memcpy(j->id, rec->id, 16);
        kiln_uuid_format(j->id, j->id_text);
        snprintf(j->tenant, sizeof(j->tenant), "%s", rec->tenant);
        j->priority = rec->priority < _KILN_PRIO_MAX ? rec->priority : KILN_PRIO_NORMAL;
        j->submitted_ms = rec->submitted_ms;
        j->deadline_ms = rec->deadline_ms;
        j->finished_ms = rec->finished_ms;
        j->batch = rec->batch;
        snprintf(j->backend, sizeof(j->backend), "%s", rec->backend);
        atomic_init(&j->state, rec->state);
        if (kiln_job_state_is_final(rec->state)) {
                j->started_ms = rec->finished_ms - rec->run_ms;
                atomic_init(&j->pct, 100);
        } else {
                /* A job that was running when the daemon stopped runs again. */
                atomic_init(&j->state, KILN_JOB_QUEUED);
        }
        if (rec->error_code) {
                for (int e = 0; e < _KERR_MAX; e++)
                        if (!strcmp(kiln_err_name(e), rec->error_code))
                                j->error_code = e;
                snprintf(j->error_message, sizeof(j->error_message), "%s",
                         rec->error_message ? rec->error_message : "");
        }
        *ret = j;
        return 0;
}

struct job *job_ref(struct job *j)
{
        atomic_fetch_add_explicit(&j->refs, 1, memory_order_relaxed);
        return j;
}

void job_unref(struct job *j)
{
        if (!j || atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
                return;
        if (j->blob)
                free(j->blob); /* parts point into it */
        else if (j->hot)
                hot_entry_unref(j->hot); /* the same */
        else
                kiln_result_clear(&j->result);
        free(j->params);
        free(j->params_json);
        free(j->idem_key);
        free(j->done_json);
        free(j->watchers);
        json_decref(j->submit_ref);
        while (j->acceptors) {
                struct job_acceptor *a = j->acceptors;
                j->acceptors = a->next;
                json_decref(a->ref);
                free(a);
        }
        result_blob_free(j->blob_out);
        free(j);
}

void job_to_record(const struct job *j, struct store_job *ret)
{
        int state = atomic_load(&j->state);

        memset(ret, 0, sizeof(*ret));
        memcpy(ret->id, j->id, 16);
        snprintf(ret->kind, sizeof(ret->kind), "%s", j->kind->name);
        snprintf(ret->tenant, sizeof(ret->tenant), "%s", j->tenant);
        ret->priority = (uint8_t)j->priority;
        ret->state = (uint8_t)(state == KILN_JOB_RUNNING ? KILN_JOB_QUEUED : state);
        ret->submitted_ms = j->submitted_ms;
        ret->deadline_ms = j->deadline_ms;
        ret->params = j->params_json;
        ret->idem_key = j->idem_key;
        if (kiln_job_state_is_final(state)) {
                ret->finished_ms = j->finished_ms;
                int64_t start = j->started_ms ? j->started_ms : j->finished_ms;
                ret->queue_ms = (uint32_t)(start - j->submitted_ms);
                ret->run_ms = (uint32_t)(j->finished_ms - start);
                ret->batch = j->batch;
                snprintf(ret->backend, sizeof(ret->backend), "%s", j->backend);
                if (state != KILN_JOB_DONE) {
                        ret->error_code = (char *)kiln_err_name(j->error_code);
                        ret->error_message = (char *)j->error_message;
                }
        }
}

/* ---- the result and the done message (result_codec.h) ---- */

int result_blob_read(struct job *j, uint8_t *blob, size_t size)
{
        int r = result_blob_parse(blob, size, &j->result);
        if (r >= 0)
                j->blob = blob;
        return r;
}

/* job_build_done with the scalars already formatted (result_scalars_text; NULL
 * for a job that is not done, or to format them here). */
static int build_done(struct job *j, const char *scalars)
{
        int state = atomic_load(&j->state);
        int64_t start = j->started_ms ? j->started_ms : j->finished_ms;
        struct done_info in = {
                .job = j->id_text,
                .state = kiln_job_state_name(state),
                .queue_ms = start - j->submitted_ms,
                .run_ms = j->finished_ms - start,
                .result = &j->result,
                .scalars = scalars,
                .backend = j->backend,
                .batch = j->batch,
                .error_code = kiln_err_name(j->error_code),
                .error_message = j->error_message,
        };
        char *text;
        int r = result_done_text(&in, &text);
        if (r < 0)
                return r;
        free(j->done_json);
        j->done_json = text;
        return 0;
}

int job_build_done(struct job *j)
{
        return build_done(j, NULL);
}

/* ---- finishing ---- */

static void write_result_cb(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        result_blob_write_range(container_of(op, struct job, op)->blob_out, dst, offset, len);
}

static void on_finished_mail(struct mail *m)
{
        struct job *j = container_of(m, struct job, mail);
        struct kilnd *d = j->d;

        kilnd_store_answered(d);
        result_blob_free(j->blob_out);
        j->blob_out = NULL;
        if (j->op.status < 0) {
                log_error("job %s: storing its final state failed: %s; it stays queued in the store",
                          j->id_text, strerror(-j->op.status));
                if (atomic_load(&j->state) == KILN_JOB_DONE) {
                        atomic_store(&j->state, KILN_JOB_FAILED);
                        kiln_result_clear(&j->result);
                }
                j->error_code = j->op.status == -ENOSPC ? KERR_TOO_LARGE : KERR_INTERNAL;
                snprintf(j->error_message, sizeof(j->error_message), "the result could not be stored: %s",
                         strerror(-j->op.status));
                job_build_done(j);
        }
        coalesce_remove(j);
        int state = atomic_load(&j->state);
        if (state >= 0 && state < 6)
                d->jobs_finished[state]++;
        metrics_job_finished(j);
        jobs_tenant_release(d, j, state);
        sessions_job_done(d, j);
        jobs_deadline_remove(d, j);
        jobs_table_remove(d, j);
        job_unref(j); /* the store operation's reference */
}

static void on_finished_stored(struct store_op *op)
{
        struct job *j = container_of(op, struct job, op);
        j->mail.fn = on_finished_mail;
        mailbox_post(j->d->mailbox, &j->mail);
}

void job_finish(struct job *j, enum kiln_job_state state, enum kiln_err code, const char *message)
{
        j->finished_ms = kiln_now_ms();
        atomic_store(&j->state, state);
        atomic_store(&j->pct, 100);
        if (state != KILN_JOB_DONE) {
                j->error_code = code;
                snprintf(j->error_message, sizeof(j->error_message), "%s", message ? message : "");
        }
        char *scalars = state == KILN_JOB_DONE ? result_scalars_text(&j->result) : NULL;
        if (build_done(j, scalars) < 0)
                log_error("job %s: out of memory building its done message", j->id_text);

        job_to_record(j, &j->record);
        memset(&j->op, 0, sizeof(j->op));
        j->op.type = STORE_OP_JOB_PUT;
        j->op.job = &j->record;
        if (state == KILN_JOB_DONE) {
                if (result_blob_new(&j->result, scalars, &j->blob_out) < 0) {
                        /* Out of memory for a few headers: the job fails rather than
                         * being stored without its result. */
                        kiln_result_clear(&j->result);
                        atomic_store(&j->state, KILN_JOB_FAILED);
                        j->error_code = KERR_INTERNAL;
                        snprintf(j->error_message, sizeof(j->error_message), "out of memory storing the result");
                        job_build_done(j);
                        job_to_record(j, &j->record);
                } else {
                        j->op.result_size = result_blob_size(j->blob_out);
                        j->op.write_result = write_result_cb;
                        if (j->cache_store)
                                j->op.cache_key = &j->cache_key;
                }
        }
        free(scalars);
        j->op.done = on_finished_stored;
        job_ref(j);
        kilnd_store_submit(j->d, &j->op);
}

/* ---- progress ---- */

static void on_progress_mail(struct mail *m)
{
        struct job *j = container_of(m, struct job, progress_mail);
        atomic_store(&j->progress_posted, false);
        if (atomic_load(&j->state) == KILN_JOB_RUNNING)
                sessions_job_progress(j->d, j);
        job_unref(j);
}

int job_watch(struct job *j, uint64_t session_id)
{
        for (size_t i = 0; i < j->n_watchers; i++)
                if (j->watchers[i] == session_id)
                        return 0;
        if (j->n_watchers == j->cap_watchers) {
                size_t cap = j->cap_watchers ? j->cap_watchers * 2 : 2;
                uint64_t *w = realloc(j->watchers, cap * sizeof(*w));
                if (!w)
                        return -ENOMEM;
                j->watchers = w;
                j->cap_watchers = cap;
        }
        j->watchers[j->n_watchers++] = session_id;
        return 0;
}

/* ---- the table ---- */

static size_t id_hash(const uint8_t id[16])
{
        uint64_t h;
        memcpy(&h, id + 8, 8); /* the random half of a UUIDv7 */
        return (size_t)(h ^ (h >> 29));
}

static void table_grow(struct kilnd *d)
{
        size_t n = d->table_buckets ? d->table_buckets * 2 : 1024;
        struct job **t = calloc(n, sizeof(*t));
        if (!t)
                return; /* keep the longer chains */
        for (size_t b = 0; b < d->table_buckets; b++) {
                struct job *j = d->table[b];
                while (j) {
                        struct job *next = j->table_next;
                        size_t h = id_hash(j->id) & (n - 1);
                        j->table_next = t[h];
                        t[h] = j;
                        j = next;
                }
        }
        free(d->table);
        d->table = t;
        d->table_buckets = n;
}

void jobs_table_add(struct kilnd *d, struct job *j)
{
        if (d->table_count >= d->table_buckets)
                table_grow(d);
        size_t h = id_hash(j->id) & (d->table_buckets - 1);
        j->table_next = d->table[h];
        d->table[h] = job_ref(j);
        d->table_count++;
        if (!kiln_job_state_is_final(atomic_load(&j->state))) {
                coalesce_add(j);
                jobs_tenant_hold(d, j); /* recovered jobs; submitted ones already are */
        }
}

int jobs_tenant_hold(struct kilnd *d, struct job *j)
{
        if (j->tenant_counted)
                return 0;
        if (!d->tenant_limits && !(d->tenant_limits = limits_map_new()))
                return -ENOMEM;
        struct limits_entry *e = limits_map_get(d->tenant_limits, j->tenant);
        if (!e)
                return -ENOMEM;
        e->active++;
        j->tenant_counted = true;
        return 0;
}

void jobs_tenant_release(struct kilnd *d, struct job *j, int final_state)
{
        struct limits_entry *e = d->tenant_limits ? limits_map_find(d->tenant_limits, j->tenant) : NULL;
        if (!e && final_state >= 0 && d->tenant_limits)
                e = limits_map_get(d->tenant_limits, j->tenant);
        if (!e)
                return;
        if (j->tenant_counted && e->active)
                e->active--;
        j->tenant_counted = false;
        if (final_state >= 0 && final_state < 6)
                e->finished[final_state]++;
}

uint32_t jobs_tenant_counts(struct kilnd *d, const char *tenant, uint64_t ret_finished[6])
{
        struct limits_entry *e = d->tenant_limits ? limits_map_find(d->tenant_limits, tenant) : NULL;
        for (int i = 0; i < 6; i++)
                ret_finished[i] = e ? e->finished[i] : 0;
        return e ? e->active : 0;
}

void jobs_table_remove(struct kilnd *d, struct job *j)
{
        coalesce_remove(j);
        if (!d->table_buckets)
                return;
        struct job **pp = &d->table[id_hash(j->id) & (d->table_buckets - 1)];
        for (; *pp; pp = &(*pp)->table_next)
                if (*pp == j) {
                        *pp = j->table_next;
                        j->table_next = NULL;
                        d->table_count--;
                        job_unref(j);
                        return;
                }
}

struct job *jobs_table_find(struct kilnd *d, const uint8_t id[16])
{
        if (!d->table_buckets)
                return NULL;
        for (struct job *j = d->table[id_hash(id) & (d->table_buckets - 1)]; j; j = j->table_next)
                if (!memcmp(j->id, id, 16))
                        return j;
        return NULL;
}

size_t jobs_table_count(struct kilnd *d)
{
        return d->table_count;
}

/* ---- the deadline heap ---- */

static void heap_set(struct kilnd *d, size_t i, struct job *j)
{
        d->deadlines[i] = j;
        j->heap_index = i + 1;
}

static void heap_up(struct kilnd *d, size_t i)
{
        struct job *j = d->deadlines[i];
        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (d->deadlines[parent]->deadline_ms <= j->deadline_ms)
                        break;
                heap_set(d, i, d->deadlines[parent]);
                i = parent;
        }
        heap_set(d, i, j);
}

static void heap_down(struct kilnd *d, size_t i)
{
        struct job *j = d->deadlines[i];
        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= d->n_deadlines)
                        break;
                if (c + 1 < d->n_deadlines && d->deadlines[c + 1]->deadline_ms < d->deadlines[c]->deadline_ms)
                        c++;
                if (d->deadlines[c]->deadline_ms >= j->deadline_ms)
                        break;
                heap_set(d, i, d->deadlines[c]);
                i = c;
        }
        heap_set(d, i, j);
}

void jobs_deadline_add(struct kilnd *d, struct job *j)
{
        if (!j->deadline_ms || j->heap_index)
                return;
        if (d->n_deadlines == d->cap_deadlines) {
                size_t cap = d->cap_deadlines ? d->cap_deadlines * 2 : 1024;
                struct job **h = realloc(d->deadlines, cap * sizeof(*h));
                if (!h) {
                        log_error("out of memory arming the deadline of job %s", j->id_text);
                        return;
                }
                d->deadlines = h;
                d->cap_deadlines = cap;
        }
        d->n_deadlines++;
        heap_set(d, d->n_deadlines - 1, job_ref(j));
        heap_up(d, d->n_deadlines - 1);
}

void jobs_deadline_remove(struct kilnd *d, struct job *j)
{
        if (!j->heap_index)
                return;
        size_t i = j->heap_index - 1;
        j->heap_index = 0;
        d->n_deadlines--;
        if (i != d->n_deadlines) {
                heap_set(d, i, d->deadlines[d->n_deadlines]);
                heap_up(d, i);
                heap_down(d, d->deadlines[i]->heap_index - 1);
        }
        job_unref(j);
}

int64_t jobs_deadline_run(struct kilnd *d, int64_t now_ms)
{
        while (d->n_deadlines && d->deadlines[0]->deadline_ms <= now_ms) {
                struct job *j = job_ref(d->deadlines[0]);
                jobs_deadline_remove(d, j);
                int state = atomic_load(&j->state);
                if (!kiln_job_state_is_final(state)) {
                        if (sched_remove(d->sched, j))
                                job_finish(j, KILN_JOB_EXPIRED, KERR_TIMEOUT,
                                           "the job's deadline passed while it was queued");
                        else
                                atomic_store(&j->stop, JOB_STOP_EXPIRE);
                }
                job_unref(j);
        }
        return d->n_deadlines ? d->deadlines[0]->deadline_ms : 0;
}
