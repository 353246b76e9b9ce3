/* The job object and its state machine, the table of live jobs, their deadlines and
 * the per-tenant counts. The submit path is in jobs_submit.c, how a job ends (its
 * result, final record, delivery and the store's room) in jobs_finish.c. */
#include "jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "config.h"
#include "hotcache.h"
#include "jobs_internal.h"
#include "limiter.h"
#include "log.h"
#include "membudget.h"
#include "metrics.h"
#include "objects.h"
#include "params.h"
#include "result_codec.h"
#include "storeq.h"
#include "util.h"

static void on_progress_mail(struct mail *m);
static const struct sched_sink sink_template;

int jobs_new(const struct jobs_deps *deps, struct jobs **ret)
{
        struct jobs *js = calloc(1, sizeof(*js));
        if (!js)
                return -ENOMEM;
        js->cfg = deps->cfg;
        js->store = deps->store;
        js->objects = deps->objects;
        js->storeq = deps->storeq;
        js->mailbox = deps->mailbox;
        js->mem = deps->mem;
        js->ev = deps->events;
        js->sink = sink_template;
        js->sink.ctx = js;
        atomic_init(&js->max_result_bytes, deps->cfg ? deps->cfg->limits.max_result_bytes : UINT64_MAX);
        jobs_loads_start(js);
        *ret = js;
        return 0;
}

const struct sched_sink *jobs_sched_sink(struct jobs *js)
{
        return &js->sink;
}

void job_op_to_loop(struct store_op *op, void (*fn)(struct mail *m))
{
        struct job *j = container_of(op, struct job, op);
        j->mail.fn = fn;
        mailbox_post(j->js->mailbox, &j->mail);
}

void jobs_set_sched(struct jobs *js, struct sched *s)
{
        js->sched = s;
}

void jobs_set_config(struct jobs *js, const struct kiln_config *cfg)
{
        js->cfg = cfg;
        atomic_store(&js->max_result_bytes, cfg->limits.max_result_bytes);
}


void jobs_free(struct jobs *js)
{
        if (!js)
                return;
        jobs_loads_stop(js);
        jobs_early_clear(js);
        while (js->n_deadlines)
                jobs_deadline_remove(js, js->deadlines[0]);
        for (size_t b = 0; b < js->table_buckets; b++)
                while (js->table[b])
                        jobs_table_remove(js, js->table[b]);
        while (js->store_retry) {
                struct job *j = js->store_retry;
                js->store_retry = j->retry_next;
                job_blob_out_free(j);
                job_unref(j); /* its op's reference (the table's went above) */
        }
        while (js->loads_waiting) { /* never answered: their submitters are gone */
                struct job *j = js->loads_waiting;
                js->loads_waiting = j->load_next;
                job_unref(j);
        }
        for (size_t b = 0; js->coalesce && b < COALESCE_BUCKETS; b++)
                while (js->coalesce[b])
                        jobs_coalesce_remove(js, js->coalesce[b]);
        free(js->table);
        free(js->deadlines);
        free(js->coalesce);
        limits_map_free(js->tenants);
        free(js);
}

/* ---- the job object ---- */

struct job *job_alloc(struct jobs *js, const struct kiln_kind *kind)
{
        struct job *j = calloc(1, sizeof(*j));
        if (!j)
                return NULL;
        atomic_init(&j->refs, 1);
        j->js = js;
        j->kind = kind;
        j->progress_mail.fn = on_progress_mail;
        pthread_mutex_init(&j->progress_lock, NULL);
        j->item.kind = kind;
        j->accepted_max_result = atomic_load(&js->max_result_bytes);
        j->accepted_mem_max = UINT64_MAX;
        if (js->mem) {
                struct membudget_view mv;
                membudget_view(js->mem, &mv);
                j->accepted_mem_max = mv.take_max;
        }
        return j;
}

/* The item the scheduler sees, from the job's immutable fields. */
void job_item_init(struct job *j)
{
        j->item.kind = j->kind;
        j->item.params = j->params;
        j->item.inputs = j->in.n ? j->in.arrays : NULL;
        j->item.n_inputs = j->in.n;
        j->item.tenant = j->tenant;
        j->item.priority = j->priority;
        j->item.deadline_ms = j->deadline_ms;
        /* What running it will hold: the scheduler starts it only when that fits in
         * memory.max_bytes (it is given back when the result leaves memory). */
        j->item.mem_bytes = kiln_kind_result_bytes(j->kind, j->params, j->in.arrays, j->in.n, NULL);
}

uint64_t job_store_estimate(const struct job *j)
{
        return j->item.mem_bytes + j->in.size;
}

void job_hold_result(struct job *j, uint64_t bytes)
{
        uint64_t *held = &j->item.mem_held;
        if (j->js->mem && bytes > *held)
                membudget_charge(j->js->mem, MEM_RESULTS, bytes - *held);
        else if (j->js->mem && bytes < *held)
                membudget_give(j->js->mem, MEM_RESULTS, *held - bytes);
        *held = bytes;
}

void job_mem_give(struct jobs *js, enum mem_use use, uint64_t *held)
{
        if (js->mem && *held)
                membudget_give(js->mem, use, *held);
        *held = 0;
}

/* The cache key's params text: the canonical params, then the digest of the inputs
 * (so the same rows sent as JSON or as a binary part share one key, and other rows
 * never do), and the key's digest. Returns >= 0 or -ENOMEM. */
int job_init_cache_key(struct job *j)
{
        struct store_cache_key *k = &j->cache_key;

        if (j->key_params != j->params_json)
                free(j->key_params);
        j->key_params = j->params_json;
        if (j->in.n && asprintf(&j->key_params, "%s\ninputs sha256:%s", j->params_json, j->in.digest) < 0) {
                j->key_params = NULL;
                return -ENOMEM;
        }
        /* Every key names the tenant: tenants never see each other's results, not
         * even that one was computed (a hit on rows only another tenant knows
         * would tell it). And a stored object is its tenant's, each tenant
         * numbering its own versions from 1. Tenant names hold no spaces
         * (auth.c). A new version is a new key. */
        free(j->key_model);
        j->key_model = NULL;
        if ((j->object_text ? asprintf(&j->key_model, "%s %s", j->tenant, j->object_text)
                            : asprintf(&j->key_model, "%s", j->tenant)) < 0) {
                j->key_model = NULL;
                return -ENOMEM;
        }
        k->kind = j->kind->name;
        k->version = j->kind->version;
        k->model = j->key_model ? j->key_model : "";
        k->params = j->key_params;
        k->tenant = j->tenant;
        return cache_key_compute(k->kind, k->version, k->model, k->params, k->hash);
}

int job_bind_object(struct job *j, const char *name, uint64_t version)
{
        free(j->object_name);
        free(j->object_text);
        j->object_version = version;
        j->object_name = strdup(name);
        if (!j->object_name || asprintf(&j->object_text, "%s/%s@%llu", j->kind->object->name, name,
                                        (unsigned long long)version) < 0) {
                j->object_text = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* Reads "CLASS/NAME@VERSION" back (split at the last '@': names may hold one). */
static int parse_object_text(struct job *j, const char *text)
{
        const char *slash = strchr(text, '/'), *at = strrchr(text, '@');
        char *end;
        if (!j->kind->object || !slash || !at || at < slash ||
            strncmp(text, j->kind->object->name, (size_t)(slash - text)) || strlen(j->kind->object->name) !=
                                                                                 (size_t)(slash - text))
                return -EINVAL;
        unsigned long long v = strtoull(at + 1, &end, 10);
        if (*end || !v)
                return -EINVAL;
        char *name = strndup(slash + 1, (size_t)(at - slash - 1));
        if (!name)
                return -ENOMEM;
        int r = job_bind_object(j, name, v);
        free(name);
        return r;
}

/* Rebuilds a job from its store record (recovery at start, or a finished job loaded
 * for `result`/`watch`). Re-validates the stored canonical params (a kind that no
 * longer accepts them gives -EINVAL). */
int job_from_record(struct jobs *js, const struct store_job *rec, uint8_t **input, size_t input_size,
                    struct job **ret)
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
        struct kiln_error perr;
        int r = params ? kiln_params_validate(kind, in, &canonical, params, &perr) : -ENOMEM;
        json_decref(in);
        if (r < 0) {
                free(params);
                return r;
        }
        struct job *j = job_alloc(js, kind);
        if (!j) {
                free(params);
                json_decref(canonical);
                return -ENOMEM;
        }
        j->params = params;
        j->params_json = kiln_params_text(canonical);
        json_decref(canonical);
        if (!j->params_json || (rec->idem_key && !(j->idem_key = strdup(rec->idem_key)))) {
                job_unref(j);
                return -ENOMEM;
        }
        if (rec->object && parse_object_text(j, rec->object) < 0) {
                job_unref(j);
                return -EINVAL;
        }
        if (input && *input) {
                r = job_inputs_parse(*input, input_size, &j->in);
                if (r < 0) {
                        job_unref(j);
                        return r;
                }
                *input = NULL; /* the job owns the blob now */
        }
        kiln_str_copy(j->tenant, sizeof(j->tenant), rec->tenant); /* part of the cache key */
        if (job_init_cache_key(j) < 0) {
                job_unref(j);
                return -ENOMEM;
        }
        j->cache_store = js->cfg->cache.enabled;
        memcpy(j->id, rec->id, 16);
        kiln_uuid_format(j->id, j->id_text);
        j->priority = rec->priority < _KILN_PRIO_MAX ? rec->priority : KILN_PRIO_NORMAL;
        j->submitted_ms = rec->submitted_ms;
        j->deadline_ms = rec->deadline_ms;
        j->finished_ms = rec->finished_ms;
        j->batch = rec->batch;
        atomic_init(&j->item.attempts, rec->attempts);
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
                kiln_str_copy(j->error_field, sizeof(j->error_field), rec->error_field ? rec->error_field : "");
        }
        job_item_init(j);
        *ret = j;
        return 0;
}

struct done_text *done_text_ref(struct done_text *d)
{
        if (d)
                atomic_fetch_add(&d->refs, 1);
        return d;
}

void done_text_unref(struct done_text *d)
{
        if (d && atomic_fetch_sub(&d->refs, 1) == 1) {
                if (d->mem)
                        membudget_give(d->mem, MEM_RESULTS, d->len + 1);
                free(d->text);
                free(d);
        }
}

int done_text_set(struct done_text **slot, char *text, struct membudget *mem)
{
        return done_text_set_held(slot, text, mem, NULL);
}

int done_text_set_held(struct done_text **slot, char *text, struct membudget *mem, uint64_t *held)
{
        struct done_text *d = text ? malloc(sizeof(*d)) : NULL;

        if (!d) {
                free(text);
                return -ENOMEM;
        }
        atomic_init(&d->refs, 1);
        d->text = text;
        d->len = strlen(text);
        d->mem = mem;
        if (mem) {
                uint64_t n = d->len + 1, from = held ? (*held < n ? *held : n) : 0;
                if (held)
                        *held -= from; /* counted already: it moves to the done */
                if (n > from)
                        membudget_charge(mem, MEM_RESULTS, n - from);
        }
        done_text_unref(*slot);
        *slot = d;
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
        job_mem_give(j->js, MEM_RESULTS, &j->item.mem_held);
        job_mem_give(j->js, MEM_INPUTS, &j->mem_inputs);
        job_mem_give(j->js, MEM_RESULTS, &j->mem_copy);
        store_job_free(j->op.job_out); /* a submission that waited for room and was never answered */
        free(j->op.result_out);
        if (j->hot) {
                hot_entry_unref(j->hot); /* the entry owns the result j shows */
        } else {
                kiln_result_clear(&j->result); /* parts from a blob are borrowed: left alone */
                free(j->blob);
        }
        if (j->key_params != j->params_json)
                free(j->key_params);
        job_inputs_clear(&j->in);
        if (j->object_ref)
                objects_release(j->js->objects, j->object_ref);
        free(j->object_name);
        free(j->object_text);
        free(j->key_model);
        free(j->params);
        free(j->params_json);
        free(j->idem_key);
        free(j->no_room);
        done_text_unref(j->done);
        for (size_t i = 0; i < j->n_watchers; i++)
                json_decref(j->watchers[i].ref);
        free(j->watchers);
        json_decref(j->submit_ref);
        while (j->acceptors) {
                struct job_acceptor *a = j->acceptors;
                j->acceptors = a->next;
                json_decref(a->ref);
                free(a);
        }
        job_blob_out_free(j);
        jobs_progress_values_free(j->progress_values, j->n_progress_values);
        pthread_mutex_destroy(&j->progress_lock);
        free(j);
}

static bool is_text(const struct kiln_value *v)
{
        return v->type == KILN_V_STR || v->type == KILN_V_JSON;
}

/* v (a copy of another value) with its own copy of the text; a text that cannot
 * be copied makes it a null. */
static void own_text(struct kiln_value *v)
{
        if (is_text(v) && !(v->text = v->text ? strdup(v->text) : NULL))
                v->type = KILN_V_NULL;
}

int jobs_progress_values(struct job *j, struct kiln_value *ret, int max)
{
        pthread_mutex_lock(&j->progress_lock);
        int n = j->n_progress_values < max ? j->n_progress_values : max;
        for (int i = 0; i < n; i++) {
                ret[i] = j->progress_values[i];
                own_text(&ret[i]);
        }
        pthread_mutex_unlock(&j->progress_lock);
        return n;
}

void jobs_progress_values_free(struct kiln_value *v, int n)
{
        for (int i = 0; i < n; i++)
                if (is_text(&v[i])) {
                        free(v[i].text);
                        v[i].type = KILN_V_NULL;
                }
}

unsigned job_attempts(const struct job *j)
{
        return atomic_load(&j->item.attempts);
}

/* Queue and run time in microseconds: monotonic when the job was submitted in
 * this process, else from the stored wall-clock times (ms). */
void job_durations(const struct job *j, int64_t *ret_queue_us, int64_t *ret_run_us)
{
        if (j->submitted_us && j->finished_us) {
                int64_t start = j->started_us ? j->started_us : j->finished_us;
                *ret_queue_us = start - j->submitted_us;
                *ret_run_us = j->finished_us - start;
        } else {
                int64_t start = j->started_ms ? j->started_ms : j->finished_ms;
                *ret_queue_us = (start - j->submitted_ms) * 1000;
                *ret_run_us = (j->finished_ms - start) * 1000;
        }
        if (*ret_queue_us < 0)
                *ret_queue_us = 0;
        if (*ret_run_us < 0)
                *ret_run_us = 0;
}

void job_to_record(const struct job *j, struct store_job *ret)
{
        int state = atomic_load(&j->state);

        memset(ret, 0, sizeof(*ret));
        memcpy(ret->id, j->id, 16);
        kiln_str_copy(ret->kind, sizeof(ret->kind), j->kind->name);
        kiln_str_copy(ret->tenant, sizeof(ret->tenant), j->tenant);
        ret->priority = (uint8_t)j->priority;
        ret->state = (uint8_t)(state == KILN_JOB_RUNNING ? KILN_JOB_QUEUED : state);
        ret->submitted_ms = j->submitted_ms;
        ret->deadline_ms = j->deadline_ms;
        ret->params = j->params_json;
        ret->idem_key = j->idem_key;
        ret->attempts = job_attempts(j);
        ret->input_size = j->in.size;
        ret->object = j->object_text;
        if (kiln_job_state_is_final(state)) {
                int64_t queue_us, run_us;
                job_durations(j, &queue_us, &run_us);
                ret->finished_ms = j->finished_ms;
                ret->queue_ms = (uint32_t)(queue_us / 1000);
                ret->run_ms = (uint32_t)(run_us / 1000);
                ret->batch = j->batch;
                kiln_str_copy(ret->backend, sizeof(ret->backend), j->backend);
                if (state != KILN_JOB_DONE) {
                        ret->error_code = (char *)kiln_err_name(j->error_code);
                        ret->error_message = (char *)j->error_message;
                        ret->error_field = j->error_field[0] ? (char *)j->error_field : NULL;
                }
        }
}

/* ---- what the scheduler reports (any worker thread) ---- */

static void sink_hold(void *ctx, struct sched_item *it)
{
        job_ref(container_of(it, struct job, item));
}

static void sink_release(void *ctx, struct sched_item *it)
{
        job_unref(container_of(it, struct job, item));
}

/* With its object loaded, the kind bounds the result more closely than at submit
 * (a search's ids, by the collection's longest id). A result past the limits is
 * refused as it would have been at submit; more than was taken when the job was
 * gathered is taken now, or, when memory.max_bytes has no room for it, the job
 * asks for that much and goes back to its queue to wait for it
 * (SCHED_PREPARE_WAIT). Worker thread. */
static int hold_bound_result(struct jobs *js, struct job *j, enum kiln_err *ret_code, char *msg, char *field)
{
        uint64_t result = kiln_kind_result_bytes(j->kind, j->params, j->in.arrays, j->in.n, &j->object);
        /* Its values' text again: its done message holds them once more. */
        uint64_t need = result + kiln_kind_values_text_bytes(j->kind, j->params, j->in.arrays, j->in.n, &j->object);
        /* limits.max_result_bytes is checked as at its submit: the limit then, or a
         * higher one since. */
        uint64_t limit = atomic_load(&js->max_result_bytes), mem_max = UINT64_MAX;
        if (limit < j->accepted_max_result)
                limit = j->accepted_max_result;
        const char *object = j->kind->object_param ? j->kind->object_param : "object";
        struct membudget_view mv;

        if (js->mem) {
                membudget_view(js->mem, &mv);
                mem_max = mv.take_max;
        }
        /* Past memory.max_bytes now, but not past what it was accepted under (a
         * reload lowered it since): it waits for room below, as a job whose size
         * was known at its submit does, rather than fail. */
        if (result > limit || (need + j->in.size > mem_max && need + j->in.size > j->accepted_mem_max)) {
                *ret_code = KERR_TOO_LARGE;
                snprintf(field, 128, "params");
                if (result > limit)
                        snprintf(msg, 256, "with %s %s, these params ask for a result of %llu bytes, over the limit "
                                 "of %llu (limits.max_result_bytes)", object, j->object_name,
                                 (unsigned long long)result, (unsigned long long)limit);
                else
                        snprintf(msg, 256, "with %s %s, these params ask for a result and its done message of %llu "
                                 "bytes (and %zu bytes of inputs), more than kilnd may hold in memory at all "
                                 "(memory.max_bytes %llu)",
                                 object, j->object_name, (unsigned long long)need, j->in.size,
                                 (unsigned long long)mem_max);
                return -EFBIG;
        }
        if (need > j->item.mem_held && js->mem) {
                if (!membudget_try_take(js->mem, MEM_RESULTS, need - j->item.mem_held)) {
                        /* The scheduler takes it all next time: `need` is the same
                         * then (the params, inputs and object are). */
                        j->item.mem_bytes = need;
                        return SCHED_PREPARE_WAIT;
                }
                j->item.mem_held = need;
        }
        return 0;
}

/* On the worker, before the job runs: the stored object version it is bound to,
 * loaded and compiled (or shared) off the loop thread, then the kind's checks of
 * the inputs against it (a row's feature count against the model's). */
static int sink_prepare(void *ctx, struct sched_item *it, enum kiln_err *ret_code, char *msg, char *field)
{
        struct job *j = container_of(it, struct job, item);
        struct jobs *js = ctx;

        if (!j->kind->object || !j->object_name)
                return 0;
        if (!j->object_ref) {
                int r = objects_acquire(js->objects, j->tenant, j->kind->object, j->object_name, j->object_version,
                                        &j->object_ref, msg);
                uint64_t stored, began;
                int64_t created_ms;
                /* Its version was replaced before it ran and is not in memory (it was
                 * never loaded, or was evicted): it runs against the stored one, as a
                 * job submitted now would, rather than fail a search the client could
                 * not have kept from failing (a collection updated as it is searched).
                 * Its result names the version it ran against, and is not cached: its
                 * key names the version it was bound to. An object dropped and put
                 * anew after the job was submitted is another one (its metric may
                 * differ), told by its versions, which begin past the job's: the
                 * job fails not_found, as it would had the drop been the last
                 * change. An object that began at 1 was never dropped, or was put
                 * anew by a kilnd that did not keep the drop's mark: then its name
                 * must also have been put before the job was submitted. A put that
                 * commits between reading the stored version and loading it replaces
                 * that one too: the newer is tried, a bounded number of times (each
                 * try follows a commit, so only a writer that never stops exhausts
                 * them). */
                uint64_t tried = j->object_version;
                for (int attempt = 0; r == -ENOENT && attempt < 16 &&
                                      objects_stored_version(js->objects, j->tenant, j->kind->object, j->object_name,
                                                             &stored, &began, &created_ms) >= 0 &&
                                      stored > tried && began <= j->object_version &&
                                      (began > 1 || created_ms <= j->submitted_ms);
                     attempt++) {
                        r = objects_acquire(js->objects, j->tenant, j->kind->object, j->object_name, stored,
                                            &j->object_ref, msg);
                        if (r >= 0)
                                j->cache_store = false;
                        tried = stored;
                }
                if (r < 0) {
                        *ret_code = r == -ENOENT ? KERR_NOT_FOUND : r == -ENOMEM ? KERR_UNAVAILABLE : KERR_INTERNAL;
                        if (r == -ENOENT) /* as a submit naming no object of the tenant's */
                                snprintf(field, 128, "params.%s", j->kind->object_param ? j->kind->object_param
                                                                                        : "object");
                        return r;
                }
                j->object = (struct kiln_object){ .cls = j->object_ref->cls, .version = j->object_ref->version,
                                                  .snapshot = j->object_ref->snapshot };
                it->object = &j->object;
        }
        struct kiln_error err;
        int r = kiln_kind_check(j->kind, j->params, j->in.arrays, j->in.n, &j->object, &err);
        if (r < 0) {
                *ret_code = r == -EFBIG ? KERR_TOO_LARGE : KERR_BAD_PARAMS;
                snprintf(msg, 256, "%s", err.message);
                snprintf(field, 128, "%s", err.field);
                return r;
        }
        return hold_bound_result(js, j, ret_code, msg, field);
}

static void sink_started(void *ctx, struct sched_item *it, int64_t now_ms)
{
        struct job *j = container_of(it, struct job, item);
        j->started_ms = now_ms;
        j->started_us = kiln_mono_us();
        atomic_store(&j->state, KILN_JOB_RUNNING);
}

/* At most one progress mail in flight per job; it carries the latest values. The
 * values are lent for the call: the job keeps copies of their texts, made (and a
 * JSON text checked, so that `progress` can embed it as it is) before the lock is
 * taken; the texts they replace are freed after it is let go. */
static void sink_progress(void *ctx, struct sched_item *it, int pct, const struct kiln_value *values, int n)
{
        struct job *j = container_of(it, struct job, item);
        struct kiln_value mine[KILN_MAX_PROGRESS_VALUES], old[KILN_MAX_PROGRESS_VALUES];
        atomic_store(&j->pct, pct);
        if (n > KILN_MAX_PROGRESS_VALUES)
                n = KILN_MAX_PROGRESS_VALUES;
        for (int i = 0; i < n; i++) {
                mine[i] = values[i];
                json_t *x = mine[i].type == KILN_V_JSON && mine[i].text
                                    ? json_loads(mine[i].text, JSON_DECODE_ANY, NULL)
                                    : NULL;
                if (mine[i].type == KILN_V_JSON && !x)
                        mine[i].type = KILN_V_NULL; /* a kind's bug: null, as in a result */
                json_decref(x);
                own_text(&mine[i]);
        }
        pthread_mutex_lock(&j->progress_lock);
        int n_old = j->n_progress_values;
        memcpy(old, j->progress_values, (size_t)n_old * sizeof(*old));
        memcpy(j->progress_values, mine, (size_t)n * sizeof(*mine));
        j->n_progress_values = n;
        pthread_mutex_unlock(&j->progress_lock);
        jobs_progress_values_free(old, n_old);
        if (atomic_exchange(&j->progress_posted, true))
                return; /* the previous one has not been delivered yet */
        job_ref(j);
        mailbox_post(j->js->mailbox, &j->progress_mail);
}

static void sink_finished(void *ctx, struct sched_item *it, enum sched_end end, enum kiln_err code,
                          const char *message, const char *field, struct kiln_result *result, const char *device,
                          uint32_t batch)
{
        struct job *j = container_of(it, struct job, item);

        j->batch = batch;
        kiln_str_copy(j->backend, sizeof(j->backend), device);
        switch (end) {
        case SCHED_END_DONE: {
                j->result = *result;
                memset(result, 0, sizeof(*result));
                /* What it holds, its values' texts included: more than its kind's
                 * estimate is held all the same; what it holds less goes back in
                 * job_finish, once its done message holds its own. */
                uint64_t held = kiln_result_held_bytes(&j->result);
                if (held > it->mem_held)
                        job_hold_result(j, held);
                job_finish(j, KILN_JOB_DONE, 0, NULL);
                break;
        }
        case SCHED_END_FAILED:
                kiln_str_copy(j->error_field, sizeof(j->error_field), field ? field : "");
                job_finish(j, KILN_JOB_FAILED, code, message);
                break;
        case SCHED_END_CANCELLED:
                job_finish(j, KILN_JOB_CANCELLED, code, message);
                break;
        case SCHED_END_EXPIRED:
                job_finish(j, KILN_JOB_EXPIRED, code, message);
                break;
        case SCHED_END_REQUEUED:
                /* Not finished: its record stays "queued" and it runs again after restart.
                 * A quick job has none yet: it is stored queued now. */
                atomic_store(&j->state, KILN_JOB_QUEUED);
                if (j->early)
                        jobs_early_store_queued(j);
                break;
        }
}

/* A batch's final records go to the writer together (storeq.h). */
static void sink_batch_begin(void *ctx)
{
        struct jobs *js = ctx;

        storeq_plug(js->storeq);
}

static void sink_batch_end(void *ctx)
{
        struct jobs *js = ctx;

        storeq_unplug(js->storeq);
}

static const struct sched_sink sink_template = {
        .hold = sink_hold,
        .release = sink_release,
        .prepare = sink_prepare,
        .started = sink_started,
        .progress = sink_progress,
        .finished = sink_finished,
        .batch_begin = sink_batch_begin,
        .batch_end = sink_batch_end,
};

/* ---- progress (loop thread) ---- */

static void on_progress_mail(struct mail *m)
{
        struct job *j = container_of(m, struct job, progress_mail);
        struct jobs *js = j->js;
        atomic_store(&j->progress_posted, false);
        if (atomic_load(&j->state) == KILN_JOB_RUNNING)
                for (size_t i = 0; i < j->n_watchers; i++)
                        js->ev.progress(js->ev.ctx, j->watchers[i].session, j);
        job_unref(j);
}

int jobs_watch(struct jobs *js, struct job *j, uint64_t session, json_t *ref)
{
        for (size_t i = 0; i < j->n_watchers; i++)
                if (j->watchers[i].session == session)
                        return 0;
        if (j->n_watchers == j->cap_watchers) {
                size_t cap = j->cap_watchers ? j->cap_watchers * 2 : 2;
                struct job_watcher *w = realloc(j->watchers, cap * sizeof(*w));
                if (!w)
                        return -ENOMEM;
                j->watchers = w;
                j->cap_watchers = cap;
        }
        j->watchers[j->n_watchers++] = (struct job_watcher){ .session = session, .ref = ref ? json_incref(ref) : NULL };
        return 0;
}

void jobs_cancel(struct jobs *js, struct job *j)
{
        if (kiln_job_state_is_final(atomic_load(&j->state)))
                return;
        /* Being stopped, it takes no identical submission from now (it would end
         * cancelled for a submitter that never asked). */
        jobs_coalesce_remove(js, j);
        /* The stop first: a worker that puts the item back in a paused queue
         * (scheduler.c) looks at it under the lock sched_remove takes, so either
         * sched_remove finds the item queued or the worker sees the stop. */
        atomic_store(&j->item.stop, SCHED_STOP_CANCEL);
        if (js->sched && sched_remove(js->sched, &j->item))
                job_end_stopped(j, SCHED_STOP_CANCEL);
}

bool job_end_stopped(struct job *j, int stop)
{
        if (stop == SCHED_STOP_CANCEL)
                job_finish(j, KILN_JOB_CANCELLED, KERR_CANCELLED, "the job was cancelled");
        else if (stop == SCHED_STOP_EXPIRE)
                job_finish(j, KILN_JOB_EXPIRED, KERR_TIMEOUT, "the job's deadline passed while it was queued");
        else
                return false;
        return true;
}

void jobs_stop_all(struct jobs *js)
{
        /* A cancel or a passed deadline asked before stays: that job ends
         * cancelled (expired) rather than queued again for after the restart. */
        for (size_t b = 0; b < js->table_buckets; b++)
                for (struct job *j = js->table[b]; j; j = j->table_next) {
                        int none = SCHED_STOP_NONE;
                        atomic_compare_exchange_strong(&j->item.stop, &none, SCHED_STOP_SHUTDOWN);
                }
}

uint32_t jobs_early_count(const struct jobs *js)
{
        return js->n_early;
}

void jobs_store_early(struct jobs *js)
{
        if (!js->n_early)
                return;
        for (size_t b = 0; b < js->table_buckets; b++)
                for (struct job *j = js->table[b]; j; j = j->table_next)
                        if (j->early && js->sched && sched_remove(js->sched, &j->item))
                                jobs_early_store_queued(j);
}

/* ---- accepting ---- */

void jobs_accept_one(struct jobs *js, struct job *j, uint64_t session, json_t *ref, bool watch, bool cached)
{
        /* A job in the table gets its `done` from on_finished_mail (even when it has
         * just finished: its result is being stored); one outside it (a cache hit, a
         * finished job loaded from the store) is complete and answers at once. */
        bool live = jobs_find(js, j->id) == j && !j->delivered; /* delivered: complete, waiting for room */
        if (watch && live && jobs_watch(js, j, session, ref) < 0)
                log_error("job %s: out of memory adding a watcher", j->id_text);
        js->ev.accepted(js->ev.ctx, session, j, ref, cached);
        if (watch && !live)
                js->ev.done(js->ev.ctx, session, j, ref);
}

void jobs_accepted(struct jobs *js, struct job *j, bool cached)
{
        j->committed = true;
        jobs_accept_one(js, j, j->submitter, j->submit_ref, j->watch_submitter, cached);
        while (j->acceptors) {
                struct job_acceptor *a = j->acceptors;
                j->acceptors = a->next;
                jobs_accept_one(js, j, a->session, a->ref, a->watch, cached);
                json_decref(a->ref);
                free(a);
        }
}

void jobs_start(struct jobs *js, struct job *j)
{
        jobs_table_add(js, j);
        jobs_tenant_hold(js, j); /* recovered jobs; submitted ones already are */
        jobs_coalesce_add(js, j);
        jobs_deadline_add(js, j);
        if (!j->unstored) { /* recovered: its result is promised room from now */
                j->unstored = j->item.mem_bytes;
                js->unstored += j->unstored;
        }
        if (js->sched) /* NULL only while shutting down: the job stays queued in the store */
                sched_push(js->sched, &j->item);
}

/* The pending records and their stored inputs, copied (what the callback is given
 * lives only during it). */
struct pending {
        struct store_txn *txn;
        struct store_job **recs;
        uint8_t **inputs;
        size_t *input_sizes;
        size_t n, cap;
};

static int collect_pending(const struct store_job *rec, void *userdata)
{
        struct pending *p = userdata;
        if (p->n == p->cap) {
                size_t c = p->cap ? p->cap * 2 : 64;
                struct store_job **x = realloc(p->recs, c * sizeof(*x));
                if (x)
                        p->recs = x;
                uint8_t **in = realloc(p->inputs, c * sizeof(*in));
                if (in)
                        p->inputs = in;
                size_t *sz = realloc(p->input_sizes, c * sizeof(*sz));
                if (sz)
                        p->input_sizes = sz;
                if (!x || !in || !sz)
                        return -ENOMEM;
                p->cap = c;
        }
        p->inputs[p->n] = NULL;
        p->input_sizes[p->n] = 0;
        if (!(p->recs[p->n] = store_job_dup(rec)))
                return -ENOMEM;
        p->n++;
        if (rec->input_size) {
                int r = store_input_get(p->txn, rec->id, &p->inputs[p->n - 1], &p->input_sizes[p->n - 1]);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        return 0;
}

int jobs_recover(struct jobs *js, struct store *store, unsigned *ret_queued, unsigned *ret_bad)
{
        struct pending p = { 0 };
        unsigned queued = 0, bad = 0;

        int r = store_txn_begin(store, false, &p.txn);
        if (r < 0)
                return r;
        r = store_pending_foreach(p.txn, collect_pending, &p);
        store_txn_abort(p.txn);
        for (size_t i = 0; i < p.n; i++) {
                struct job *j = NULL;
                int k = r;
                if (k >= 0 && p.recs[i]->input_size && !p.inputs[i])
                        k = -ENOENT; /* its inputs are not in the store */
                if (k >= 0)
                        k = job_from_record(js, p.recs[i], &p.inputs[i], p.input_sizes[i], &j);
                if (k >= 0) {
                        /* Its `accepted` went out before the restart: a submission
                         * identical to it attaches and is answered at once. */
                        j->committed = true;
                        jobs_start(js, j);
                        job_unref(j);
                        queued++;
                } else if (r >= 0) {
                        char id[37];
                        kiln_uuid_format(p.recs[i]->id, id);
                        log_error("job %s (%s): %s, it is left unrun", id, p.recs[i]->kind,
                                  k == -ENOENT   ? "its stored inputs are missing"
                                  : k == -EIO    ? "its stored inputs are unreadable"
                                  : k == -ENOMEM ? "out of memory rebuilding it"
                                                 : "its stored parameters are no longer valid");
                        bad++;
                }
                free(p.inputs[i]);
                store_job_free(p.recs[i]);
        }
        free(p.recs);
        free(p.inputs);
        free(p.input_sizes);
        if (r < 0)
                return r;
        *ret_queued = queued;
        *ret_bad = bad;
        return 0;
}

