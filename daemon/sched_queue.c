/* The scheduler's queues: one per (kind, priority), FIFO within each tenant and
 * round-robin between tenants (see scheduler_internal.h). The scheduler's lock is
 * held for every call. */
#include "scheduler_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Takes the next job in round-robin order: the head of the current tenant, whose
 * turn then passes to the next tenant. Lock held; q not empty. */
struct sched_item *sched_queue_take(struct queue *q)
{
        struct tenant_queue *t = q->cur;
        struct sched_item *j = t->head;
        struct tenant_queue *after = t->next;
        bool last = t->head == t->tail;
        sched_queue_unlink(q, j);
        if (!last && q->cur == t)
                q->cur = after;
        return j;
}

/* Puts a gathered job back at the head of its queue (shutdown). Lock held. */
void sched_queue_push_front(struct sched *s, struct sched_item *j)
{
        sched_queue_push(&s->q[kind_index(j->kind)][j->priority], j, true);
        s->queued++;
}

/* The oldest job of the highest non-empty priority, across kinds, skipping queues
 * another worker is gathering from. Lock held. */
struct sched_item *sched_pick(struct sched *s, unsigned *ret_kind, int *ret_prio)
{
        for (int p = 0; p < _KILN_PRIO_MAX; p++) {
                struct queue *best = NULL;
                unsigned best_k = 0;
                for (unsigned k = 0; k < s->n_kinds; k++) {
                        struct queue *q = &s->q[k][p];
                        if (queue_head(q) && !s->gathering[k][p] &&
                            (!best || queue_head(q)->seq < queue_head(best)->seq)) {
                                best = q;
                                best_k = k;
                        }
                }
                if (best) {
                        struct sched_item *j = sched_queue_take(best);
                        s->queued--;
                        *ret_kind = best_k;
                        *ret_prio = p;
                        return j;
                }
        }
        return NULL;
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

/* Moves queued jobs of (k, p) into jobs[] up to max. Lock held. */
size_t sched_gather(struct sched *s, unsigned k, int p, struct sched_item **jobs, size_t n, size_t max)
{
        struct queue *q = &s->q[k][p];
        while (n < max && q->depth) {
                struct sched_item *j = sched_queue_take(q);
                s->queued--;
                s->running++;
                jobs[n++] = j;
        }
        return n;
}

