/* The memory budget (membudget.h).
 *
 * One small mutex guards the figures: takes and gives happen per job and per output
 * message, never per byte, so the lock is held for a few instructions. The hooks
 * are called outside it, and the calls in progress are counted so that removing a
 * hook (the scheduler does at sched_free) can wait for them to return. */
#include "membudget.h"

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct membudget {
        pthread_mutex_t lock;
        pthread_cond_t hook_idle;  /* hook_calls fell to 0 */
        uint64_t max, used, by_use[MEM_USES], peak, waits;
        bool refused;           /* an input or result was refused room since the last give */
        struct {
                void (*fn)(void *ctx);
                void *ctx;
        } hooks[MEMBUDGET_HOOKS];
        unsigned hook_calls;       /* calls of hooks in progress */
};

int membudget_new(uint64_t max_bytes, struct membudget **ret)
{
        struct membudget *mb = calloc(1, sizeof(*mb));
        if (!mb)
                return -ENOMEM;
        pthread_mutex_init(&mb->lock, NULL);
        pthread_cond_init(&mb->hook_idle, NULL);
        mb->max = max_bytes ? max_bytes : 1;
        *ret = mb;
        return 0;
}

void membudget_free(struct membudget *mb)
{
        if (!mb)
                return;
        pthread_cond_destroy(&mb->hook_idle);
        pthread_mutex_destroy(&mb->lock);
        free(mb);
}

/* Calls the hooks that are set, with the lock not held. */
static void call_hook(struct membudget *mb)
{
        pthread_mutex_lock(&mb->lock);
        __typeof__(mb->hooks) hooks;
        memcpy(hooks, mb->hooks, sizeof(hooks));
        bool any = false;
        for (int i = 0; i < MEMBUDGET_HOOKS; i++)
                any |= hooks[i].fn != NULL;
        if (any)
                mb->hook_calls++;
        pthread_mutex_unlock(&mb->lock);
        if (!any)
                return;
        for (int i = 0; i < MEMBUDGET_HOOKS; i++)
                if (hooks[i].fn)
                        hooks[i].fn(hooks[i].ctx);
        pthread_mutex_lock(&mb->lock);
        if (--mb->hook_calls == 0)
                pthread_cond_broadcast(&mb->hook_idle);
        pthread_mutex_unlock(&mb->lock);
}

void membudget_set_max(struct membudget *mb, uint64_t max_bytes)
{
        pthread_mutex_lock(&mb->lock);
        uint64_t old = mb->max;
        mb->max = max_bytes ? max_bytes : 1;
        bool grew = mb->max > old;
        pthread_mutex_unlock(&mb->lock);
        if (grew)
                call_hook(mb);
}

/* Adds n to `use` and the total. Lock held. */
static void add(struct membudget *mb, enum mem_use use, uint64_t n)
{
        mb->used += n;
        mb->by_use[use] += n;
        if (mb->used > mb->peak)
                mb->peak = mb->used;
}

/* Inputs and results leave 1/64 of the budget to output buffers. */
static uint64_t take_max(uint64_t max)
{
        return max - max / 64;
}

bool membudget_try_take(struct membudget *mb, enum mem_use use, uint64_t n)
{
        if (n == 0)
                return true;
        pthread_mutex_lock(&mb->lock);
        /* Output buffers have the whole: they are charged as replies are queued
         * and cannot wait. */
        uint64_t max = use == MEM_OUTPUT ? mb->max : take_max(mb->max);
        bool fits = mb->used <= max && n <= max - mb->used;
        /* Inputs are held from submit while their jobs wait: at most half, so that
         * results always have room to run them. */
        if (use == MEM_INPUTS && mb->by_use[MEM_INPUTS] + n > max / 2)
                fits = false;
        if (fits)
                add(mb, use, n);
        else if (use != MEM_OUTPUT)
                mb->refused = true;
        pthread_mutex_unlock(&mb->lock);
        return fits;
}

void membudget_wanted(struct membudget *mb)
{
        pthread_mutex_lock(&mb->lock);
        mb->refused = true;
        pthread_mutex_unlock(&mb->lock);
}

bool membudget_pressed(struct membudget *mb)
{
        pthread_mutex_lock(&mb->lock);
        bool pressed = mb->refused;
        pthread_mutex_unlock(&mb->lock);
        return pressed;
}

bool membudget_grow(struct membudget *mb, enum mem_use use, uint8_t **buf, size_t *cap, size_t need, size_t limit)
{
        size_t n = *cap ? *cap : 4096;

        while (n < need)
                n *= 2;
        if (n > limit)
                n = limit;
        if (mb && !membudget_try_take(mb, use, n - *cap))
                return false;
        uint8_t *b = realloc(*buf, n);
        if (!b) {
                if (mb)
                        membudget_give(mb, use, n - *cap);
                return false;
        }
        *buf = b;
        *cap = n;
        return true;
}

void membudget_charge(struct membudget *mb, enum mem_use use, uint64_t n)
{
        if (n == 0)
                return;
        pthread_mutex_lock(&mb->lock);
        add(mb, use, n);
        pthread_mutex_unlock(&mb->lock);
}

void membudget_give(struct membudget *mb, enum mem_use use, uint64_t n)
{
        if (n == 0)
                return;
        pthread_mutex_lock(&mb->lock);
        /* Giving back more than was taken is a caller's bug; the figures stay true to
         * what is held rather than wrapping around. */
        if (n > mb->by_use[use])
                n = mb->by_use[use];
        mb->by_use[use] -= n;
        mb->used -= n;
        if (n)
                mb->refused = false; /* whoever waits tries again (the hooks) */
        pthread_mutex_unlock(&mb->lock);
        if (n)
                call_hook(mb);
}

void membudget_count_wait(struct membudget *mb)
{
        pthread_mutex_lock(&mb->lock);
        mb->waits++;
        pthread_mutex_unlock(&mb->lock);
}

void membudget_on_give(struct membudget *mb, enum membudget_hook slot, void (*fn)(void *ctx), void *ctx)
{
        pthread_mutex_lock(&mb->lock);
        while (mb->hook_calls)
                pthread_cond_wait(&mb->hook_idle, &mb->lock);
        mb->hooks[slot].fn = fn;
        mb->hooks[slot].ctx = ctx;
        pthread_mutex_unlock(&mb->lock);
}

void membudget_view(const struct membudget *mb, struct membudget_view *ret)
{
        struct membudget *m = (struct membudget *)mb; /* the lock, not the figures, changes */
        pthread_mutex_lock(&m->lock);
        *ret = (struct membudget_view){ .max = m->max, .used = m->used, .take_max = take_max(m->max),
                                        .peak = m->peak, .waits = m->waits };
        for (int u = 0; u < MEM_USES; u++)
                ret->by_use[u] = m->by_use[u];
        pthread_mutex_unlock(&m->lock);
}
