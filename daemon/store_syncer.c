/* store.sync=batch's flushes on a thread of their own, so the writer never waits for
 * the disk between its commits (see store_impl.h). Measured on a 2-core VM: a 105 MB
 * relief mesh, written as thirteen 8 MiB slices, had its commits stop for a
 * 46-58 ms fdatasync in the middle. mdb_env_sync takes no lock and only flushes the
 * file, so it may run while the writer commits: what it does not take, the next
 * flush does. A flush that fails is tried again here every SYNCER_RETRY_MS until
 * one succeeds, a new request takes its place or the syncer stops (the writer then
 * flushes once more itself). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "store_impl.h"

#define SYNCER_RETRY_MS 100

struct store_syncer {
        struct store *s;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;                   /* CLOCK_MONOTONIC */
        bool requested, busy, stopping;        /* under lock */
        bool retry;                            /* under lock: the last flush failed */
        struct timespec retry_at;              /* under lock, when retry */
        uint64_t flushes;                      /* under lock: completed, failed ones too */
        unsigned fail_next;                    /* under lock: test hook */
};

static void *syncer_main(void *arg)
{
        struct store_syncer *y = arg;

        pthread_setname_np(pthread_self(), "kiln-syncer");
        pthread_mutex_lock(&y->lock);
        for (;;) {
                while (!y->requested && !y->stopping) {
                        if (!y->retry) {
                                pthread_cond_wait(&y->cond, &y->lock);
                        } else if (pthread_cond_timedwait(&y->cond, &y->lock, &y->retry_at) == ETIMEDOUT) {
                                y->requested = true;
                                break;
                        }
                }
                if (!y->requested)
                        break;
                y->requested = false;
                y->retry = false;
                y->busy = true;
                bool fail = y->fail_next > 0;
                if (fail)
                        y->fail_next--;
                pthread_mutex_unlock(&y->lock);
                int r = fail ? -EIO : store_sync(y->s);
                pthread_mutex_lock(&y->lock);
                y->busy = false;
                y->flushes++;
                if (r < 0) {
                        y->retry = true;
                        clock_gettime(CLOCK_MONOTONIC, &y->retry_at);
                        y->retry_at.tv_nsec += SYNCER_RETRY_MS * 1000000L;
                        y->retry_at.tv_sec += y->retry_at.tv_nsec / 1000000000L;
                        y->retry_at.tv_nsec %= 1000000000L;
                }
                pthread_cond_broadcast(&y->cond);
        }
        pthread_mutex_unlock(&y->lock);
        return NULL;
}

int store_syncer_start(struct store *s, struct store_syncer **ret)
{
        struct store_syncer *y = calloc(1, sizeof(*y));
        int r;

        if (!y)
                return -ENOMEM;
        y->s = s;
        r = pthread_mutex_init(&y->lock, NULL);
        if (r != 0) {
                free(y);
                return -r;
        }
        r = store_cond_init(&y->cond);
        if (r != 0) {
                pthread_mutex_destroy(&y->lock);
                free(y);
                return -r;
        }
        r = store_thread_start(&y->thread, syncer_main, y);
        if (r != 0) {
                pthread_cond_destroy(&y->cond);
                pthread_mutex_destroy(&y->lock);
                free(y);
                return -r;
        }
        *ret = y;
        return 0;
}

bool store_syncer_request(struct store_syncer *y)
{
        bool taken;

        pthread_mutex_lock(&y->lock);
        taken = !y->requested && !y->busy;
        if (taken) {
                y->requested = true; /* takes the place of a retry */
                pthread_cond_signal(&y->cond);
        }
        pthread_mutex_unlock(&y->lock);
        return taken;
}

void store_syncer_idle(struct store_syncer *y)
{
        pthread_mutex_lock(&y->lock);
        while (y->requested || y->busy)
                pthread_cond_wait(&y->cond, &y->lock);
        pthread_mutex_unlock(&y->lock);
}

bool store_syncer_wait_flushes(struct store_syncer *y, uint64_t n, int64_t timeout_ms)
{
        struct timespec until;

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += timeout_ms % 1000 * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&y->lock);
        while (y->flushes < n && pthread_cond_timedwait(&y->cond, &y->lock, &until) == 0)
                ;
        bool reached = y->flushes >= n;
        pthread_mutex_unlock(&y->lock);
        return reached;
}

uint64_t store_syncer_flushes(struct store_syncer *y)
{
        pthread_mutex_lock(&y->lock);
        uint64_t n = y->flushes;
        pthread_mutex_unlock(&y->lock);
        return n;
}

void store_syncer_fail_next(struct store_syncer *y, unsigned n)
{
        pthread_mutex_lock(&y->lock);
        y->fail_next = n;
        pthread_mutex_unlock(&y->lock);
}

void store_syncer_stop(struct store_syncer *y)
{
        if (!y)
                return;
        pthread_mutex_lock(&y->lock);
        y->stopping = true;
        pthread_cond_signal(&y->cond);
        pthread_mutex_unlock(&y->lock);
        pthread_join(y->thread, NULL);
        pthread_cond_destroy(&y->cond);
        pthread_mutex_destroy(&y->lock);
        free(y);
}
