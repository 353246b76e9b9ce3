/* Priority queues and the CPU worker pool. */
#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "daemon.h"
#include "jobs.h"
#include "kind.h"
#include "log.h"

#define MAX_KINDS 32

struct queue {
        struct job *head, *tail;
        uint32_t depth;
};

struct sched {
        pthread_mutex_t lock;
        pthread_cond_t wake;
        struct queue q[MAX_KINDS][_KILN_PRIO_MAX];
        unsigned n_kinds;
        uint64_t seq;
        bool paused, stopping;
        unsigned running;
        uint32_t queued;
        pthread_t *threads;
        unsigned n_threads;
};

static unsigned kind_index(const struct kiln_kind *k)
{
        for (unsigned i = 0; kiln_kinds[i]; i++)
                if (kiln_kinds[i] == k)
                        return i;
        return 0;
}

static void queue_unlink(struct queue *q, struct job *j)
{
        if (j->q_prev)
                j->q_prev->q_next = j->q_next;
        else
                q->head = j->q_next;
        if (j->q_next)
                j->q_next->q_prev = j->q_prev;
        else
                q->tail = j->q_prev;
        j->q_prev = j->q_next = NULL;
        j->in_queue = false;
        q->depth--;
}

/* The oldest job of the highest non-empty priority, across kinds. Lock held. */
static struct job *pick(struct sched *s)
{
        for (int p = 0; p < _KILN_PRIO_MAX; p++) {
                struct queue *best = NULL;
                for (unsigned k = 0; k < s->n_kinds; k++) {
                        struct queue *q = &s->q[k][p];
                        if (q->head && (!best || q->head->seq < best->head->seq))
                                best = q;
                }
                if (best) {
                        struct job *j = best->head;
                        queue_unlink(best, j);
                        s->queued--;
                        return j;
                }
        }
        return NULL;
}

struct progress_ctx {
        struct kiln_exec ex;
        struct job *job;
};

/* Publishes progress; at most one mail every 100 ms, and none in a job's first 100 ms. */
static void on_progress(struct kiln_exec *ex, double fraction)
{
        struct job *j = ((struct progress_ctx *)ex)->job;
        int pct = (int)(fraction * 100.0);
        if (pct < 0)
                pct = 0;
        if (pct > 99)
                pct = 99; /* 100 is reported by `done` */
        if (pct == atomic_load_explicit(&j->pct, memory_order_relaxed))
                return;
        atomic_store_explicit(&j->pct, pct, memory_order_relaxed);
        int64_t now = kiln_now_ms();
        if (now - j->progress_sent_ms < 100)
                return;
        if (atomic_exchange(&j->progress_posted, true))
                return; /* the previous one has not been delivered yet */
        j->progress_sent_ms = now;
        job_ref(j);
        mailbox_post(j->d->mailbox, &j->progress_mail);
}

static void run_job(struct sched *s, struct job *j)
{
        int64_t now = kiln_now_ms();

        if (j->deadline_ms && now >= j->deadline_ms) {
                job_finish(j, KILN_JOB_EXPIRED, KERR_TIMEOUT, "the job's deadline passed while it was queued");
                return;
        }
        atomic_store(&j->state, KILN_JOB_RUNNING);
        j->started_ms = now;
        j->progress_sent_ms = now;
        j->batch = 1;

        struct progress_ctx pc = {
                .ex = { .stop = &j->stop, .progress = on_progress },
                .job = j,
        };
        struct kiln_task task = { .params = j->params, .result = &j->result, .exec = &pc.ex };
        const struct kiln_backend *b = kiln_backend_cpu();
        int r = b->run_batch(b->ctx, j->kind, &task, 1);
        if (r >= 0)
                r = task.status;
        snprintf(j->backend, sizeof(j->backend), "%s", task.device[0] ? task.device : b->name);
        if (r >= 0) {
                job_finish(j, KILN_JOB_DONE, 0, NULL);
                return;
        }
        kiln_result_clear(&j->result);
        switch (atomic_load(&j->stop)) {
        case JOB_STOP_CANCEL:
                job_finish(j, KILN_JOB_CANCELLED, KERR_CANCELLED, "the job was cancelled while running");
                return;
        case JOB_STOP_EXPIRE:
                job_finish(j, KILN_JOB_EXPIRED, KERR_TIMEOUT, "the job's deadline passed while it was running");
                return;
        case JOB_STOP_SHUTDOWN:
                /* Not finished: its record stays "queued" and it runs again after restart. */
                atomic_store(&j->state, KILN_JOB_QUEUED);
                return;
        default:
                break;
        }
        char msg[256];
        snprintf(msg, sizeof(msg), "%s failed on the CPU: %s", j->kind->name, strerror(-r));
        job_finish(j, KILN_JOB_FAILED, r == -ENOMEM ? KERR_UNAVAILABLE : KERR_INTERNAL, msg);
}

static void *worker_main(void *arg)
{
        struct sched *s = arg;

        pthread_mutex_lock(&s->lock);
        for (;;) {
                struct job *j = NULL;
                while (!s->stopping && (s->paused || !(j = pick(s))))
                        pthread_cond_wait(&s->wake, &s->lock);
                if (s->stopping)
                        break;
                s->running++;
                pthread_mutex_unlock(&s->lock);

                run_job(s, j);
                job_unref(j); /* the queue's reference */

                pthread_mutex_lock(&s->lock);
                s->running--;
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

int sched_new(unsigned threads, struct sched **ret)
{
        struct sched *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        if (threads == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                threads = n > 0 ? (unsigned)n : 1;
        }
        while (kiln_kinds[s->n_kinds] && s->n_kinds < MAX_KINDS)
                s->n_kinds++;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->wake, NULL);
        s->threads = calloc(threads, sizeof(pthread_t));
        if (!s->threads) {
                free(s);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < threads; i++) {
                int r = pthread_create(&s->threads[i], NULL, worker_main, s);
                if (r) {
                        s->n_threads = i;
                        sched_free(s);
                        return -r;
                }
                s->n_threads = i + 1;
        }
        *ret = s;
        return 0;
}

void sched_free(struct sched *s)
{
        if (!s)
                return;
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
        for (unsigned i = 0; i < s->n_threads; i++)
                pthread_join(s->threads[i], NULL);
        for (unsigned k = 0; k < s->n_kinds; k++)
                for (int p = 0; p < _KILN_PRIO_MAX; p++)
                        while (s->q[k][p].head) {
                                struct job *j = s->q[k][p].head;
                                queue_unlink(&s->q[k][p], j);
                                job_unref(j);
                        }
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->lock);
        free(s->threads);
        free(s);
}

void sched_push(struct sched *s, struct job *j)
{
        struct queue *q = &s->q[kind_index(j->kind)][j->priority];

        job_ref(j);
        pthread_mutex_lock(&s->lock);
        j->seq = ++s->seq;
        j->q_next = NULL;
        j->q_prev = q->tail;
        if (q->tail)
                q->tail->q_next = j;
        else
                q->head = j;
        q->tail = j;
        q->depth++;
        s->queued++;
        j->in_queue = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
}

bool sched_remove(struct sched *s, struct job *j)
{
        bool removed = false;

        pthread_mutex_lock(&s->lock);
        if (j->in_queue) {
                queue_unlink(&s->q[kind_index(j->kind)][j->priority], j);
                s->queued--;
                removed = true;
        }
        pthread_mutex_unlock(&s->lock);
        if (removed)
                job_unref(j);
        return removed;
}

void sched_pause(struct sched *s)
{
        pthread_mutex_lock(&s->lock);
        s->paused = true;
        pthread_mutex_unlock(&s->lock);
}

unsigned sched_running(struct sched *s)
{
        pthread_mutex_lock(&s->lock);
        unsigned n = s->running;
        pthread_mutex_unlock(&s->lock);
        return n;
}

uint32_t sched_queued(struct sched *s)
{
        pthread_mutex_lock(&s->lock);
        uint32_t n = s->queued;
        pthread_mutex_unlock(&s->lock);
        return n;
}

json_t *sched_backends_json(struct sched *s)
{
        return json_pack("[{s:s, s:i}]", "name", "cpu", "threads", (int)s->n_threads);
}

bool sched_ready(struct sched *s)
{
        return s && s->n_threads > 0;
}

unsigned sched_threads(struct sched *s)
{
        return s->n_threads;
}

uint32_t sched_depth(struct sched *s, unsigned kind, enum kiln_priority prio)
{
        if (kind >= s->n_kinds || prio >= _KILN_PRIO_MAX)
                return 0;
        pthread_mutex_lock(&s->lock);
        uint32_t n = s->q[kind][prio].depth;
        pthread_mutex_unlock(&s->lock);
        return n;
}
