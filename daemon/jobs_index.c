/* The indexes of live jobs (loop thread): the table by id, the per-tenant counts,
 * the coalescing map by (tenant, cache key) and the deadline heap. */
#include "jobs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_internal.h"
#include "limiter.h"
#include "log.h"

/* ---- the table ---- */

static size_t id_hash(const uint8_t id[16])
{
        uint64_t h;
        memcpy(&h, id + 8, 8); /* the random half of a UUIDv7 */
        return (size_t)(h ^ (h >> 29));
}

static void table_grow(struct jobs *js)
{
        size_t n = js->table_buckets ? js->table_buckets * 2 : 1024;
        struct job **t = calloc(n, sizeof(*t));
        if (!t)
                return; /* keep the longer chains */
        for (size_t b = 0; b < js->table_buckets; b++) {
                struct job *j = js->table[b];
                while (j) {
                        struct job *next = j->table_next;
                        size_t h = id_hash(j->id) & (n - 1);
                        j->table_next = t[h];
                        t[h] = j;
                        j = next;
                }
        }
        free(js->table);
        js->table = t;
        js->table_buckets = n;
}

void jobs_table_add(struct jobs *js, struct job *j)
{
        if (js->table_count >= js->table_buckets)
                table_grow(js);
        size_t h = id_hash(j->id) & (js->table_buckets - 1);
        j->table_next = js->table[h];
        js->table[h] = job_ref(j);
        js->table_count++;
}

void jobs_table_remove(struct jobs *js, struct job *j)
{
        jobs_coalesce_remove(js, j);
        jobs_early_unlist(js, j);
        if (!js->table_buckets)
                return;
        struct job **pp = &js->table[id_hash(j->id) & (js->table_buckets - 1)];
        for (; *pp; pp = &(*pp)->table_next)
                if (*pp == j) {
                        *pp = j->table_next;
                        j->table_next = NULL;
                        js->table_count--;
                        if (j->early)
                                js->n_early--;
                        job_unref(j);
                        return;
                }
}

struct job *jobs_find(struct jobs *js, const uint8_t id[16])
{
        if (!js->table_buckets)
                return NULL;
        for (struct job *j = js->table[id_hash(id) & (js->table_buckets - 1)]; j; j = j->table_next)
                if (!memcmp(j->id, id, 16))
                        return j;
        return NULL;
}

size_t jobs_live(const struct jobs *js)
{
        return js->table_count;
}

uint32_t jobs_committing(const struct jobs *js)
{
        return js->committing;
}

uint64_t jobs_coalesced(const struct jobs *js)
{
        return js->coalesced;
}

/* ---- per-tenant counts ---- */

int jobs_tenant_hold(struct jobs *js, struct job *j)
{
        if (j->tenant_counted)
                return 0;
        if (!js->tenants && !(js->tenants = limits_map_new()))
                return -ENOMEM;
        struct limits_entry *e = limits_map_get(js->tenants, j->tenant);
        if (!e)
                return -ENOMEM;
        e->active++;
        j->tenant_counted = true;
        return 0;
}

void jobs_tenant_release(struct jobs *js, struct job *j, int final_state)
{
        struct limits_entry *e = js->tenants ? limits_map_find(js->tenants, j->tenant) : NULL;
        if (!e && final_state >= 0 && js->tenants)
                e = limits_map_get(js->tenants, j->tenant);
        if (!e)
                return;
        if (j->tenant_counted && e->active)
                e->active--;
        j->tenant_counted = false;
        if (final_state >= 0 && final_state < 6)
                e->finished[final_state]++;
}

void jobs_submitter_release(struct jobs *js, struct job *j)
{
        if (!j->submitter_counted)
                return;
        j->submitter_counted = false;
        js->ev.ended(js->ev.ctx, j->submitter);
}

uint32_t jobs_tenant_counts(struct jobs *js, const char *tenant, uint64_t ret_finished[6])
{
        struct limits_entry *e = js->tenants ? limits_map_find(js->tenants, tenant) : NULL;
        for (int i = 0; i < 6; i++)
                ret_finished[i] = e ? e->finished[i] : 0;
        return e ? e->active : 0;
}

/* ---- coalescing: (tenant, key) -> live job ---- */

static size_t coalesce_bucket(const uint8_t hash[32])
{
        uint64_t h;

        memcpy(&h, hash, 8);
        return (size_t)h & (COALESCE_BUCKETS - 1);
}

struct job *jobs_coalesce_find(struct jobs *js, const char *tenant, const uint8_t hash[32])
{
        if (!js->coalesce)
                return NULL;
        for (struct job *j = js->coalesce[coalesce_bucket(hash)]; j; j = j->coalesce_next) {
                if (memcmp(j->cache_key.hash, hash, sizeof(j->cache_key.hash)) || strcmp(j->tenant, tenant))
                        continue;
                /* One that failed or was stopped, its final record not yet stored (it
                 * leaves the map then), is no job to share: the submission runs anew. */
                int state = atomic_load(&j->state);
                if (atomic_load(&j->item.stop) || (kiln_job_state_is_final(state) && state != KILN_JOB_DONE))
                        return NULL;
                return j;
        }
        return NULL;
}

void jobs_coalesce_add(struct jobs *js, struct job *j)
{
        if (j->in_coalesce || jobs_coalesce_find(js, j->tenant, j->cache_key.hash))
                return;
        if (!js->coalesce && !(js->coalesce = calloc(COALESCE_BUCKETS, sizeof(*js->coalesce))))
                return; /* out of memory: identical jobs run twice, nothing worse */
        size_t b = coalesce_bucket(j->cache_key.hash);
        j->coalesce_next = js->coalesce[b];
        js->coalesce[b] = job_ref(j);
        j->in_coalesce = true;
}

void jobs_coalesce_remove(struct jobs *js, struct job *j)
{
        if (!j->in_coalesce)
                return;
        for (struct job **pp = &js->coalesce[coalesce_bucket(j->cache_key.hash)]; *pp; pp = &(*pp)->coalesce_next)
                if (*pp == j) {
                        *pp = j->coalesce_next;
                        j->coalesce_next = NULL;
                        j->in_coalesce = false;
                        job_unref(j);
                        return;
                }
}

/* ---- the deadline heap ---- */

static void heap_set(struct jobs *js, size_t i, struct job *j)
{
        js->deadlines[i] = j;
        j->heap_index = i + 1;
}

static void heap_up(struct jobs *js, size_t i)
{
        struct job *j = js->deadlines[i];
        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (js->deadlines[parent]->deadline_ms <= j->deadline_ms)
                        break;
                heap_set(js, i, js->deadlines[parent]);
                i = parent;
        }
        heap_set(js, i, j);
}

static void heap_down(struct jobs *js, size_t i)
{
        struct job *j = js->deadlines[i];
        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= js->n_deadlines)
                        break;
                if (c + 1 < js->n_deadlines && js->deadlines[c + 1]->deadline_ms < js->deadlines[c]->deadline_ms)
                        c++;
                if (js->deadlines[c]->deadline_ms >= j->deadline_ms)
                        break;
                heap_set(js, i, js->deadlines[c]);
                i = c;
        }
        heap_set(js, i, j);
}

/* Arms the job's deadline (no-op when it has none). The heap's room is reserved
 * when a job is submitted (jobs_deadline_reserve), so this cannot fail for it; a
 * recovered job whose room cannot be had still expires, by its scheduler item's
 * deadline, when a worker takes it or while its batch runs. */
void jobs_deadline_add(struct jobs *js, struct job *j)
{
        if (!j->deadline_ms || j->heap_index)
                return;
        if (js->n_deadlines == js->cap_deadlines) {
                size_t cap = js->cap_deadlines ? js->cap_deadlines * 2 : 1024;
                struct job **h = realloc(js->deadlines, cap * sizeof(*h));
                if (!h) {
                        log_error("out of memory arming the deadline of job %s: it expires when a worker takes it",
                                  j->id_text);
                        return;
                }
                js->deadlines = h;
                js->cap_deadlines = cap;
        }
        js->n_deadlines++;
        heap_set(js, js->n_deadlines - 1, job_ref(j));
        heap_up(js, js->n_deadlines - 1);
}

int jobs_deadline_reserve(struct jobs *js)
{
        size_t want = js->n_deadlines + js->committing + 1;
        if (want <= js->cap_deadlines)
                return 0;
        size_t cap = js->cap_deadlines ? js->cap_deadlines : 1024;
        while (cap < want)
                cap *= 2;
        struct job **h = realloc(js->deadlines, cap * sizeof(*h));
        if (!h)
                return -ENOMEM;
        js->deadlines = h;
        js->cap_deadlines = cap;
        return 0;
}

void jobs_deadline_remove(struct jobs *js, struct job *j)
{
        if (!j->heap_index)
                return;
        size_t i = j->heap_index - 1;
        j->heap_index = 0;
        js->n_deadlines--;
        if (i != js->n_deadlines) {
                heap_set(js, i, js->deadlines[js->n_deadlines]);
                heap_up(js, i);
                heap_down(js, js->deadlines[i]->heap_index - 1);
        }
        job_unref(j);
}

void jobs_deadline_run(struct jobs *js, int64_t now_ms)
{
        jobs_early_due(js, now_ms);
        while (js->n_deadlines && js->deadlines[0]->deadline_ms <= now_ms) {
                struct job *j = job_ref(js->deadlines[0]);
                jobs_deadline_remove(js, j);
                if (!kiln_job_state_is_final(atomic_load(&j->state))) {
                        atomic_store(&j->item.stop, SCHED_STOP_EXPIRE); /* first: as jobs_cancel */
                        if (js->sched && sched_remove(js->sched, &j->item))
                                job_end_stopped(j, SCHED_STOP_EXPIRE);
                        jobs_coalesce_remove(js, j); /* as jobs_cancel */
                }
                job_unref(j);
        }
}

int64_t jobs_next_deadline(const struct jobs *js)
{
        int64_t next = js->n_deadlines ? js->deadlines[0]->deadline_ms : 0;
        int64_t early = jobs_early_next(js);
        return early && (!next || early < next) ? early : next;
}
