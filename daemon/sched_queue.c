/* The scheduler's queues: one per (kind, priority), FIFO within each tenant and
 * round-robin between tenants (see scheduler_internal.h), and which of their items
 * the memory budget lets run. The scheduler's lock is held for every call. */
#include "scheduler_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "membudget.h"

/* The job the queue serves next, or NULL. */
static struct sched_item *queue_head(const struct queue *q)
{
        return q->cur ? q->cur->head : NULL;
}

/* The tenant's FIFO in q, created (and put in the ring right after the tenant
 * served next, so a newcomer waits at most one round) when missing. */
static struct tenant_queue *tenant_queue_of(struct queue *q, const char *tenant)
{
        struct tenant_queue *t = q->cur;
        if (t)
                do {
                        if (!strcmp(t->tenant, tenant))
                                return t;
                        t = t->next;
                } while (t != q->cur);
        t = calloc(1, sizeof(*t));
        if (!t) {
                /* Out of memory: wait in the spare FIFO, fairness aside, never lost. */
                t = &q->spare;
                t->spare = true;
                if (t->head || t == q->cur)
                        return t;
                for (struct tenant_queue *x = q->cur; x; x = x->next == q->cur ? NULL : x->next)
                        if (x == t)
                                return t;
        } else {
                snprintf(t->tenant, sizeof(t->tenant), "%s", tenant);
        }
        if (!q->cur) {
                t->next = t;
                q->cur = t;
        } else {
                t->next = q->cur->next;
                q->cur->next = t;
        }
        return t;
}

/* Takes an emptied tenant FIFO out of the ring. */
static void tenant_queue_drop(struct queue *q, struct tenant_queue *t)
{
        struct tenant_queue *prev = t;
        while (prev->next != t)
                prev = prev->next;
        if (prev == t) {
                q->cur = NULL;
        } else {
                prev->next = t->next;
                if (q->cur == t)
                        q->cur = t->next;
        }
        t->next = NULL;
        if (!t->spare)
                free(t);
}

void sched_queue_unlink(struct queue *q, struct sched_item *j)
{
        struct tenant_queue *t = j->q_tenant;
        if (j->q_prev)
                j->q_prev->q_next = j->q_next;
        else
                t->head = j->q_next;
        if (j->q_next)
                j->q_next->q_prev = j->q_prev;
        else
                t->tail = j->q_prev;
        j->q_prev = j->q_next = NULL;
        j->q_tenant = NULL;
        j->in_queue = false;
        q->depth--;
        if (!t->head)
                tenant_queue_drop(q, t);
}

void sched_queue_push(struct queue *q, struct sched_item *j, bool front)
{
        struct tenant_queue *t = tenant_queue_of(q, j->tenant);
        j->q_tenant = t;
        if (front) {
                j->q_prev = NULL;
                j->q_next = t->head;
                if (t->head)
                        t->head->q_prev = j;
                else
                        t->tail = j;
                t->head = j;
        } else {
                j->q_next = NULL;
                j->q_prev = t->tail;
                if (t->tail)
                        t->tail->q_next = j;
                else
                        t->head = j;
                t->tail = j;
        }
        q->depth++;
        j->in_queue = true;
}

/* t, just put in the ring after the tenant served next (tenant_queue_of), takes
 * the turn before it instead. */
static void ring_take_turn(struct queue *q, struct tenant_queue *t)
{
        struct tenant_queue *cur = q->cur, *prev = cur;
        cur->next = t->next;
        while (prev->next != cur)
                prev = prev->next;
        prev->next = t;
        t->next = cur;
        q->cur = t;
}

void sched_queue_insert_by_seq(struct queue *q, struct sched_item *j)
{
        struct tenant_queue *t = tenant_queue_of(q, j->tenant);
        struct sched_item *after = t->tail;
        /* Its tenant's FIFO emptied and left the ring when j was taken out: back,
         * it has the turn it had when j is older than what is served next. */
        if (!t->head && !t->spare && q->cur != t && q->cur->next == t && q->cur->head && j->seq < q->cur->head->seq)
                ring_take_turn(q, t);
        while (after && after->seq > j->seq)
                after = after->q_prev;
        /* After `after`, or first (t resolved once: a second lookup could miss the
         * spare FIFO tenant_queue_of fell back on). */
        struct sched_item *next = after ? after->q_next : t->head;
        j->q_tenant = t;
        j->q_prev = after;
        j->q_next = next;
        if (next)
                next->q_prev = j;
        else
                t->tail = j;
        if (after)
                after->q_next = j;
        else
                t->head = j;
        q->depth++;
        j->in_queue = true;
}

/* Takes tenant t's oldest job. When t is the tenant served next, the turn passes
 * to the one after it; a tenant served out of turn (the one whose turn it was
 * waits for memory) leaves the turn where it was. Lock held. */
static struct sched_item *take_from(struct queue *q, struct tenant_queue *t)
{
        struct sched_item *j = t->head;
        struct tenant_queue *after = t->next;
        bool last = t->head == t->tail;
        sched_queue_unlink(q, j);
        if (!last && q->cur == t)
                q->cur = after;
        return j;
}

/* Takes the next job in round-robin order: the head of the current tenant, whose
 * turn then passes to the next tenant. Lock held; q not empty. */
struct sched_item *sched_queue_take(struct queue *q)
{
        return take_from(q, q->cur);
}

/* ---- memory ---- */

/* With nothing running and no result held, nothing will give memory back but the
 * queued jobs themselves: their inputs (held from submit) must not keep every one
 * of them from starting, so they are not counted then (room_left), and the job
 * that starts has its memory charged (take_memory). */
static bool only_inputs_in_the_way(const struct sched *s, const struct membudget_view *v)
{
        return !s->running && !v->by_use[MEM_RESULTS];
}

/* Bytes the budget has left, and its limit (*ret_max); UINT64_MAX for both without
 * a budget. A snapshot: the take that follows may still fail. */
static uint64_t room_left(struct sched *s, uint64_t *ret_max)
{
        struct membudget_view v;
        if (!s->mem) {
                *ret_max = UINT64_MAX;
                return UINT64_MAX;
        }
        membudget_view(s->mem, &v);
        *ret_max = v.take_max;
        uint64_t used = only_inputs_in_the_way(s, &v) ? v.used - v.by_use[MEM_INPUTS] : v.used;
        return used >= v.take_max ? 0 : v.take_max - used;
}

/* Counts a job that has to wait for memory, once per push. */
static void note_wait(struct sched *s, struct sched_item *j)
{
        if (!j->mem_waited && s->mem) {
                j->mem_waited = true;
                membudget_count_wait(s->mem);
        }
}

/* Takes j's memory from the budget (what a worker holds for it while it runs and
 * its owner afterwards: scheduler.h). Returns false when it does not fit. */
static bool take_memory(struct sched *s, struct sched_item *j)
{
        if (!s->mem || !j->mem_bytes) {
                j->mem_held = 0;
                return true;
        }
        if (!membudget_try_take(s->mem, MEM_RESULTS, j->mem_bytes)) {
                struct membudget_view v;
                membudget_view(s->mem, &v);
                if (!only_inputs_in_the_way(s, &v))
                        return false;
                membudget_charge(s->mem, MEM_RESULTS, j->mem_bytes);
        }
        j->mem_held = j->mem_bytes;
        return true;
}

/* Puts a gathered job back at the head of its queue (shutdown), with the memory
 * taken for it given back. Lock held: the budget's hook then finds the lock taken
 * by this thread (scheduler.c, on_memory_given). */
void sched_queue_push_front(struct sched *s, struct sched_item *j)
{
        uint64_t held = j->mem_held;
        j->mem_held = 0;
        if (held)
                membudget_give(s->mem, MEM_RESULTS, held);
        sched_queue_push(&s->q[kind_index(j->kind)][j->priority], j, true);
        s->queued++;
}

/* The tenant of q, from the one served next in ring order, whose oldest job fits in
 * `room`; NULL when none does. A tenant whose oldest job does not fit is passed
 * over (its later jobs wait behind it: FIFO within a tenant); *ret_blocked is set
 * when such a job could fit once memory is given back (it needs no more than max). */
static struct tenant_queue *fitting_tenant(struct sched *s, struct queue *q, uint64_t room, uint64_t max,
                                           bool *ret_blocked)
{
        struct tenant_queue *t = q->cur;
        if (!t)
                return NULL;
        do {
                struct sched_item *j = t->head;
                if (j->mem_bytes <= room)
                        return t;
                note_wait(s, j);
                if (j->mem_bytes <= max)
                        *ret_blocked = true;
                t = t->next;
        } while (t != q->cur);
        return NULL;
}

/* The oldest job, across kinds, of the highest priority that has one that fits,
 * skipping queues another worker is gathering from; its memory is taken. A level
 * whose jobs all wait for memory that will come back holds back the levels below
 * (strict priority); one whose jobs could never fit does not. Lock held.
 *
 * When a job is left waiting for memory, s->mem_wanted asks the budget's hook to
 * wake the workers at the next give; only then, so that the many gives of output
 * buffers wake nobody when no job waits. The flag is set before the budget is read
 * again: a give either lands before that read (the room grew: look again) or
 * finds the flag set (and its broadcast, under the lock this worker holds until it
 * waits, reaches it). */
struct sched_item *sched_pick(struct sched *s, unsigned *ret_kind, int *ret_prio)
{
        for (;;) {
                uint64_t max, room = room_left(s, &max);
                bool raced = false, waiting = false;
                for (int p = 0; p < _KILN_PRIO_MAX && !raced && !waiting; p++) {
                        struct queue *best = NULL;
                        struct tenant_queue *best_t = NULL;
                        unsigned best_k = 0;
                        bool blocked = false;
                        for (unsigned k = 0; k < s->n_kinds; k++) {
                                struct queue *q = &s->q[k][p];
                                if (!queue_head(q) || s->gathering[k][p])
                                        continue;
                                struct tenant_queue *t = fitting_tenant(s, q, room, max, &blocked);
                                if (t && (!best_t || t->head->seq < best_t->head->seq)) {
                                        best = q;
                                        best_t = t;
                                        best_k = k;
                                }
                        }
                        if (best_t) {
                                if (!take_memory(s, best_t->head)) {
                                        /* Taken by another thread since the snapshot: look again. */
                                        raced = true;
                                        break;
                                }
                                struct sched_item *j = take_from(best, best_t);
                                s->queued--;
                                *ret_kind = best_k;
                                *ret_prio = p;
                                return j;
                        }
                        waiting = blocked;
                }
                if (raced)
                        continue;
                if (!waiting)
                        return NULL;
                atomic_store(&s->mem_wanted, true);
                if (s->mem)
                        membudget_wanted(s->mem);
                uint64_t again = room_left(s, &max);
                if (again <= room)
                        return NULL;
                /* Memory came back meanwhile: look again. */
        }
}

/* Whether any queue of a priority higher than `prio` holds a job. Lock held. */
bool sched_higher_waiting(struct sched *s, int prio)
{
        for (int p = 0; p < prio; p++)
                for (unsigned k = 0; k < s->n_kinds; k++)
                        if (s->q[k][p].depth)
                                return true;
        return false;
}

/* Moves queued jobs of (k, p) into jobs[] up to max, in round-robin order, each
 * with its memory taken; the first that does not fit ends the batch. Lock held. */
size_t sched_gather(struct sched *s, unsigned k, int p, struct sched_item **jobs, size_t n, size_t max)
{
        struct queue *q = &s->q[k][p];
        while (n < max && q->depth) {
                if (!take_memory(s, queue_head(q))) {
                        note_wait(s, queue_head(q));
                        break;
                }
                struct sched_item *j = sched_queue_take(q);
                s->queued--;
                s->running++;
                jobs[n++] = j;
        }
        return n;
}

