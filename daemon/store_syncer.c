/* store.sync=batch's flushes on a thread of their own, so the writer never waits for
 * the disk between its commits (see store_impl.h). Measured on a 2-core VM: a 105 MB
 * relief mesh, written as thirteen 8 MiB slices, had its commits stop for a
 * 46-58 ms fdatasync in the middle. mdb_env_sync takes no lock and only flushes the
 * file, so it may run while the writer commits: what it does not take, the next
 * flush does. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "store_impl.h"

struct store_syncer {
        struct store *s;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool requested, busy, stopping, failed; /* under lock */
        uint64_t flushes;                      /* under lock: completed, failed ones too */
};

static void *syncer_main(void *arg)
{
        struct store_syncer *y = arg;

        pthread_mutex_lock(&y->lock);
        for (;;) {
                while (!y->requested && !y->stopping)
                        pthread_cond_wait(&y->cond, &y->lock);
                if (!y->requested)
                        break;
                y->requested = false;
                y->busy = true;
                pthread_mutex_unlock(&y->lock);
                int r = store_sync(y->s);
                pthread_mutex_lock(&y->lock);
                y->busy = false;
                if (r < 0)
                        y->failed = true;
                y->flushes++;
                pthread_cond_broadcast(&y->cond);
        }
        pthread_mutex_unlock(&y->lock);
        return NULL;
}

int store_syncer_start(struct store *s, struct store_syncer **ret)
{
        struct store_syncer *y = calloc(1, sizeof(*y));
        sigset_t all, old;
        int r;

        if (!y)
                return -ENOMEM;
        y->s = s;
        r = pthread_mutex_init(&y->lock, NULL);
        if (r == 0) {
                r = pthread_cond_init(&y->cond, NULL);
                if (r != 0)
                        pthread_mutex_destroy(&y->lock);
        }
        if (r != 0) {
                free(y);
                return -r;
        }
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = pthread_create(&y->thread, NULL, syncer_main, y);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
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
                y->requested = true;
                pthread_cond_signal(&y->cond);
        }
        pthread_mutex_unlock(&y->lock);
        return taken;
}

bool store_syncer_failed(struct store_syncer *y)
{
        pthread_mutex_lock(&y->lock);
        bool failed = y->failed;
        y->failed = false;
        pthread_mutex_unlock(&y->lock);
        return failed;
}

void store_syncer_idle(struct store_syncer *y)
{
        pthread_mutex_lock(&y->lock);
        while (y->requested || y->busy)
                pthread_cond_wait(&y->cond, &y->lock);
        pthread_mutex_unlock(&y->lock);
}

uint64_t store_syncer_flushes(struct store_syncer *y)
{
        pthread_mutex_lock(&y->lock);
        uint64_t n = y->flushes;
        pthread_mutex_unlock(&y->lock);
        return n;
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
