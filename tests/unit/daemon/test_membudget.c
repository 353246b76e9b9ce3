/* The memory budget (daemon/membudget.c): takes within the limit, charges over it,
 * gives and the hook they call, and many threads taking at once. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "membudget.h"

static struct membudget *budget(uint64_t max)
{
        struct membudget *mb = NULL;
        assert_int_equal(membudget_new(max, &mb), 0);
        assert_non_null(mb);
        return mb;
}

static struct membudget_view view_of(struct membudget *mb)
{
        struct membudget_view v;
        membudget_view(mb, &v);
        return v;
}

static void test_take_and_give_count_by_use(void **state)
{
        struct membudget *mb = budget(1000);

        assert_true(membudget_try_take(mb, MEM_RESULTS, 600));
        assert_true(membudget_try_take(mb, MEM_INPUTS, 300));
        struct membudget_view v = view_of(mb);
        assert_int_equal(v.max, 1000);
        assert_int_equal(v.used, 900);
        assert_int_equal(v.by_use[MEM_RESULTS], 600);
        assert_int_equal(v.by_use[MEM_INPUTS], 300);
        assert_int_equal(v.by_use[MEM_OUTPUT], 0);
        membudget_give(mb, MEM_RESULTS, 600);
        v = view_of(mb);
        assert_int_equal(v.used, 300);
        assert_int_equal(v.by_use[MEM_RESULTS], 0);
        assert_int_equal(v.peak, 900);
        membudget_free(mb);
}

/* A buffer grown by doubling from 4 KiB, up to its limit, each growth taken first;
 * without room it is left as it was. */
static void test_a_buffer_grows_within_the_budget(void **state)
{
        struct membudget *mb = budget(1 << 20);
        uint8_t *buf = NULL;
        size_t cap = 0;

        assert_true(membudget_grow(mb, MEM_INPUTS, &buf, &cap, 100, SIZE_MAX));
        assert_int_equal(cap, 4096);
        assert_true(membudget_grow(mb, MEM_INPUTS, &buf, &cap, 5000, SIZE_MAX));
        assert_int_equal(cap, 8192);
        assert_true(membudget_grow(mb, MEM_INPUTS, &buf, &cap, 9000, 10001)); /* 16 KiB past the limit */
        assert_int_equal(cap, 10001);
        assert_int_equal(view_of(mb).by_use[MEM_INPUTS], 10001);
        buf[10000] = 1;
        /* Inputs may hold at most half the take limit (about 258 KB here). */
        assert_false(membudget_grow(mb, MEM_INPUTS, &buf, &cap, 400000, SIZE_MAX));
        assert_int_equal(cap, 10001);
        assert_int_equal(view_of(mb).by_use[MEM_INPUTS], 10001);
        /* Without a budget nothing is counted. */
        uint8_t *other = NULL;
        size_t other_cap = 0;
        assert_true(membudget_grow(NULL, MEM_INPUTS, &other, &other_cap, 400000, SIZE_MAX));
        assert_int_equal(other_cap, 524288);
        free(other);
        free(buf);
        membudget_give(mb, MEM_INPUTS, cap);
        membudget_free(mb);
}

static void test_a_take_over_the_limit_fails_and_takes_nothing(void **state)
{
        struct membudget *mb = budget(6400); /* 1/64 of it, 100, kept for output */

        assert_true(membudget_try_take(mb, MEM_RESULTS, 6300)); /* exactly max less the output's share fits */
        assert_false(membudget_try_take(mb, MEM_RESULTS, 1));
        assert_false(membudget_try_take(mb, MEM_INPUTS, 1));
        assert_true(membudget_try_take(mb, MEM_RESULTS, 0));    /* nothing always fits */
        assert_true(membudget_try_take(mb, MEM_OUTPUT, 100));   /* output has the rest */
        assert_false(membudget_try_take(mb, MEM_OUTPUT, 1));
        assert_int_equal(view_of(mb).used, 6400);
        membudget_give(mb, MEM_RESULTS, 6300);
        membudget_give(mb, MEM_OUTPUT, 100);
        assert_false(membudget_try_take(mb, MEM_INPUTS, 6301)); /* more than its share: never */
        /* Inputs, held while their jobs wait, have at most half of it. */
        assert_true(membudget_try_take(mb, MEM_INPUTS, 3000));
        assert_false(membudget_try_take(mb, MEM_INPUTS, 151));
        assert_true(membudget_try_take(mb, MEM_INPUTS, 150));
        assert_true(membudget_try_take(mb, MEM_RESULTS, 3150)); /* results have the rest */
        membudget_give(mb, MEM_INPUTS, 3150);
        membudget_give(mb, MEM_RESULTS, 3150);
        assert_int_equal(view_of(mb).used, 0);
        membudget_free(mb);
}

static void test_charge_goes_over_the_limit_and_blocks_takes(void **state)
{
        struct membudget *mb = budget(1000);

        membudget_charge(mb, MEM_OUTPUT, 1500);
        struct membudget_view v = view_of(mb);
        assert_int_equal(v.used, 1500);
        assert_int_equal(v.by_use[MEM_OUTPUT], 1500);
        assert_int_equal(v.peak, 1500);
        assert_false(membudget_try_take(mb, MEM_RESULTS, 1));
        membudget_give(mb, MEM_OUTPUT, 1000);
        assert_true(membudget_try_take(mb, MEM_RESULTS, 485)); /* 1000 less 1000 / 64 */
        assert_false(membudget_try_take(mb, MEM_RESULTS, 1));
        membudget_free(mb);
}

static void test_giving_back_more_than_a_use_holds_is_capped(void **state)
{
        struct membudget *mb = budget(1000);

        assert_true(membudget_try_take(mb, MEM_INPUTS, 100));
        assert_true(membudget_try_take(mb, MEM_RESULTS, 200));
        membudget_give(mb, MEM_INPUTS, 150);
        struct membudget_view v = view_of(mb);
        assert_int_equal(v.by_use[MEM_INPUTS], 0);
        assert_int_equal(v.by_use[MEM_RESULTS], 200); /* another use's bytes stay */
        assert_int_equal(v.used, 200);
        membudget_free(mb);
}

static void test_a_lower_limit_keeps_what_is_held_and_refuses_more(void **state)
{
        struct membudget *mb = budget(1000);

        assert_true(membudget_try_take(mb, MEM_RESULTS, 800));
        membudget_set_max(mb, 500);
        assert_int_equal(view_of(mb).used, 800);
        assert_false(membudget_try_take(mb, MEM_RESULTS, 1));
        membudget_give(mb, MEM_RESULTS, 400);
        assert_true(membudget_try_take(mb, MEM_RESULTS, 93)); /* 500 less 500 / 64, less 400 */
        assert_false(membudget_try_take(mb, MEM_RESULTS, 1));
        assert_int_equal(view_of(mb).max, 500);
        membudget_free(mb);
}

static void test_waits_are_counted(void **state)
{
        struct membudget *mb = budget(10);

        membudget_count_wait(mb);
        membudget_count_wait(mb);
        assert_int_equal(view_of(mb).waits, 2);
        membudget_free(mb);
}

/* Pressed while an input or a result was refused room, or a taker said it waits,
 * until memory is given back; an output buffer refused is not. */
static void test_pressed_from_a_refusal_or_a_wait_until_a_give(void **state)
{
        struct membudget *mb = budget(1000);

        assert_false(membudget_pressed(mb));
        assert_true(membudget_try_take(mb, MEM_RESULTS, 900));
        assert_false(membudget_try_take(mb, MEM_OUTPUT, 200));
        assert_false(membudget_pressed(mb));
        assert_false(membudget_try_take(mb, MEM_RESULTS, 200));
        assert_true(membudget_pressed(mb));
        membudget_give(mb, MEM_RESULTS, 100);
        assert_false(membudget_pressed(mb));
        membudget_wanted(mb);
        assert_true(membudget_pressed(mb));
        membudget_give(mb, MEM_RESULTS, 800);
        assert_false(membudget_pressed(mb));
        membudget_free(mb);
}

/* ---- the hook ---- */

struct hook_seen {
        struct membudget *mb;
        int calls;
        uint64_t used_seen; /* read in the hook: the budget's lock is not held there */
};

static void hook(void *ctx)
{
        struct hook_seen *h = ctx;
        struct membudget_view v;
        h->calls++;
        /* Would deadlock if the budget still held its lock here. */
        membudget_view(h->mb, &v);
        h->used_seen = v.used;
}

static void test_the_hook_runs_after_a_give_and_a_raised_limit_only(void **state)
{
        struct membudget *mb = budget(100);
        struct hook_seen h = { .mb = mb };

        membudget_on_give(mb, MEMBUDGET_HOOK_WORKERS, hook, &h);
        assert_true(membudget_try_take(mb, MEM_RESULTS, 99));
        assert_true(membudget_try_take(mb, MEM_OUTPUT, 1));
        assert_int_equal(h.calls, 0);              /* takes never call it */
        membudget_charge(mb, MEM_OUTPUT, 10);
        assert_int_equal(h.calls, 0);              /* nor do charges */
        membudget_give(mb, MEM_RESULTS, 0);
        assert_int_equal(h.calls, 0);              /* nothing given back */
        membudget_give(mb, MEM_RESULTS, 50);
        assert_int_equal(h.calls, 1);
        assert_int_equal(h.used_seen, 60);         /* 99 + 1 + 10 - 50: read after they came back */
        membudget_set_max(mb, 50);
        assert_int_equal(h.calls, 1);              /* a lower limit makes no room */
        membudget_set_max(mb, 200);
        assert_int_equal(h.calls, 2);
        membudget_on_give(mb, MEMBUDGET_HOOK_WORKERS, NULL, NULL);
        membudget_give(mb, MEM_RESULTS, 50);
        assert_int_equal(h.calls, 2);              /* removed */
        membudget_free(mb);
}

/* Each slot's hook is called at a give; emptying one leaves the other. */
static void test_both_hooks_run_and_each_is_removed_alone(void **state)
{
        struct membudget *mb = budget(100);
        struct hook_seen workers = { .mb = mb }, loads = { .mb = mb };

        membudget_on_give(mb, MEMBUDGET_HOOK_WORKERS, hook, &workers);
        membudget_on_give(mb, MEMBUDGET_HOOK_LOADS, hook, &loads);
        assert_true(membudget_try_take(mb, MEM_RESULTS, 90));
        membudget_give(mb, MEM_RESULTS, 30);
        assert_int_equal(workers.calls, 1);
        assert_int_equal(loads.calls, 1);
        assert_int_equal(loads.used_seen, 60);
        membudget_on_give(mb, MEMBUDGET_HOOK_WORKERS, NULL, NULL);
        membudget_give(mb, MEM_RESULTS, 30);
        assert_int_equal(workers.calls, 1);
        assert_int_equal(loads.calls, 2);
        membudget_on_give(mb, MEMBUDGET_HOOK_LOADS, NULL, NULL);
        membudget_give(mb, MEM_RESULTS, 30);
        assert_int_equal(loads.calls, 2);
        membudget_free(mb);
}

/* Removing the hook waits for a call in progress to return. */
struct slow_hook {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool entered, release, returned;
        bool removing, returned_when_removed;
};

static void slow(void *ctx)
{
        struct slow_hook *sh = ctx;
        pthread_mutex_lock(&sh->lock);
        sh->entered = true;
        pthread_cond_broadcast(&sh->cond);
        while (!sh->release)
                pthread_cond_wait(&sh->cond, &sh->lock);
        sh->returned = true;
        pthread_mutex_unlock(&sh->lock);
}

struct giver {
        struct membudget *mb;
        struct slow_hook *sh;
};

static void *give_thread(void *arg)
{
        struct giver *g = arg;
        membudget_give(g->mb, MEM_RESULTS, 1);
        return NULL;
}

static void *remove_thread(void *arg)
{
        struct giver *g = arg;
        pthread_mutex_lock(&g->sh->lock);
        g->sh->removing = true;
        pthread_cond_broadcast(&g->sh->cond);
        pthread_mutex_unlock(&g->sh->lock);
        membudget_on_give(g->mb, MEMBUDGET_HOOK_WORKERS, NULL, NULL);
        pthread_mutex_lock(&g->sh->lock);
        g->sh->returned_when_removed = g->sh->returned;
        pthread_mutex_unlock(&g->sh->lock);
        return NULL;
}

static void test_removing_the_hook_waits_for_a_call_in_progress(void **state)
{
        struct membudget *mb = budget(100);
        struct slow_hook sh = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
        struct giver g = { mb, &sh };
        pthread_t giver, remover;

        membudget_on_give(mb, MEMBUDGET_HOOK_WORKERS, slow, &sh);
        assert_true(membudget_try_take(mb, MEM_RESULTS, 1));
        assert_int_equal(pthread_create(&giver, NULL, give_thread, &g), 0);
        pthread_mutex_lock(&sh.lock);
        while (!sh.entered)
                pthread_cond_wait(&sh.cond, &sh.lock);
        pthread_mutex_unlock(&sh.lock);
        assert_int_equal(pthread_create(&remover, NULL, remove_thread, &g), 0);
        /* The hook returns only once the remover is on its way in: one that did not
         * wait would, most of the time, see it still running. */
        pthread_mutex_lock(&sh.lock);
        while (!sh.removing)
                pthread_cond_wait(&sh.cond, &sh.lock);
        sh.release = true;
        pthread_cond_broadcast(&sh.cond);
        pthread_mutex_unlock(&sh.lock);
        pthread_join(giver, NULL);
        pthread_join(remover, NULL);
        assert_true(sh.returned_when_removed);
        membudget_free(mb);
}

/* ---- many threads ---- */

#define THREADS 8
#define ROUNDS 20000
#define FIRST_TAKE 200

struct racer {
        struct membudget *mb;
        unsigned seed;
        atomic_int *over;   /* times a thread saw used > max */
        atomic_long *taken;
        pthread_barrier_t *all;
        atomic_int *first_taken;
};

static void *race(void *arg)
{
        struct racer *r = arg;
        /* First every thread takes FIRST_TAKE at once, none giving back until all
         * have tried: the threads overlap however they are scheduled, and only as
         * many as fit can take it. */
        pthread_barrier_wait(r->all);
        bool took = membudget_try_take(r->mb, MEM_RESULTS, FIRST_TAKE);
        if (took)
                atomic_fetch_add(r->first_taken, 1);
        pthread_barrier_wait(r->all);
        if (took)
                membudget_give(r->mb, MEM_RESULTS, FIRST_TAKE);
        for (int i = 0; i < ROUNDS; i++) {
                uint64_t n = 1 + rand_r(&r->seed) % 400;
                enum mem_use use = (enum mem_use)(rand_r(&r->seed) % MEM_USES);
                if (!membudget_try_take(r->mb, use, n))
                        continue;
                atomic_fetch_add(r->taken, 1);
                struct membudget_view v;
                membudget_view(r->mb, &v);
                if (v.used > v.max)
                        atomic_fetch_add(r->over, 1);
                membudget_give(r->mb, use, n);
        }
        return NULL;
}

static void test_concurrent_takes_never_exceed_the_limit(void **state)
{
        struct membudget *mb = budget(1000);
        atomic_int over = 0;
        atomic_long taken = 0;
        atomic_int first_taken = 0;
        pthread_barrier_t all;
        struct racer r[THREADS];
        pthread_t t[THREADS];

        assert_int_equal(pthread_barrier_init(&all, NULL, THREADS), 0);
        for (int i = 0; i < THREADS; i++) {
                r[i] = (struct racer){ .mb = mb, .seed = 17u * (unsigned)i + 1, .over = &over, .taken = &taken,
                                       .all = &all, .first_taken = &first_taken };
                assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
        }
        for (int i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        pthread_barrier_destroy(&all);
        struct membudget_view v = view_of(mb);
        assert_int_equal(atomic_load(&first_taken), (1000 - 1000 / 64) / FIRST_TAKE); /* 4 of the 8 */
        assert_int_equal(atomic_load(&over), 0);
        assert_true(v.peak <= 1000);
        assert_true(v.peak > 400);  /* takes did overlap */
        assert_true(atomic_load(&taken) > ROUNDS); /* and many succeeded */
        assert_int_equal(v.used, 0);
        for (int u = 0; u < MEM_USES; u++)
                assert_int_equal(v.by_use[u], 0);
        membudget_free(mb);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_take_and_give_count_by_use),
                cmocka_unit_test(test_a_buffer_grows_within_the_budget),
                cmocka_unit_test(test_a_take_over_the_limit_fails_and_takes_nothing),
                cmocka_unit_test(test_charge_goes_over_the_limit_and_blocks_takes),
                cmocka_unit_test(test_giving_back_more_than_a_use_holds_is_capped),
                cmocka_unit_test(test_a_lower_limit_keeps_what_is_held_and_refuses_more),
                cmocka_unit_test(test_waits_are_counted),
                cmocka_unit_test(test_pressed_from_a_refusal_or_a_wait_until_a_give),
                cmocka_unit_test(test_the_hook_runs_after_a_give_and_a_raised_limit_only),
                cmocka_unit_test(test_both_hooks_run_and_each_is_removed_alone),
                cmocka_unit_test(test_removing_the_hook_waits_for_a_call_in_progress),
                cmocka_unit_test(test_concurrent_takes_never_exceed_the_limit),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
