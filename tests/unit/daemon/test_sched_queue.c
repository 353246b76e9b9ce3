/* The scheduler's queues (daemon/sched_queue.c): an item taken out of its queue and
 * put back by its sequence number (sched_requeue: a quick job stored queued) keeps
 * its place in its tenant's FIFO and its tenant's turn in the round-robin ring. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler_internal.h"

static struct queue q;
static uint64_t seq;

static void push(struct sched_item *it, const char *tenant)
{
        memset(it, 0, sizeof(*it));
        it->tenant = tenant;
        it->seq = ++seq;
        sched_queue_push(&q, it, false);
}

/* Takes every item in serving order into got (tenant letter and seq). */
static void take_all(char *got, size_t size)
{
        size_t n = 0;
        got[0] = '\0';
        while (q.depth) {
                struct sched_item *it = sched_queue_take(&q);
                n += (size_t)snprintf(got + n, size - n, "%s%s%llu", n ? " " : "", it->tenant,
                                      (unsigned long long)it->seq);
        }
}

static int reset(void **state)
{
        memset(&q, 0, sizeof(q));
        seq = 0;
        return 0;
}

static void test_an_item_put_back_keeps_its_place_in_its_tenants_fifo(void **state)
{
        struct sched_item it[4];
        char got[64];

        for (int i = 0; i < 4; i++)
                push(&it[i], "A");
        sched_queue_unlink(&q, &it[2]);
        sched_queue_unlink(&q, &it[1]);
        sched_queue_insert_by_seq(&q, &it[2]);
        sched_queue_insert_by_seq(&q, &it[1]);
        assert_int_equal(q.depth, 4);
        take_all(got, sizeof(got));
        assert_string_equal(got, "A1 A2 A3 A4");
}

static void test_an_item_put_back_keeps_its_tenants_turn(void **state)
{
        struct sched_item it[3];
        char got[64];

        /* Its tenant's only item: the tenant left the ring when it was taken out.
         * Served as if it had never been (a newcomer joins the ring right after the
         * tenant served next: A C B). */
        char untouched[64];
        push(&it[0], "A");
        push(&it[1], "B");
        push(&it[2], "C");
        take_all(untouched, sizeof(untouched));
        assert_string_equal(untouched, "A1 C3 B2");
        reset(NULL);
        push(&it[0], "A");
        push(&it[1], "B");
        push(&it[2], "C");
        sched_queue_unlink(&q, &it[0]);
        sched_queue_insert_by_seq(&q, &it[0]);
        take_all(got, sizeof(got));
        assert_string_equal(got, untouched);

        reset(NULL);
        push(&it[0], "A");
        push(&it[1], "B");
        sched_queue_unlink(&q, &it[0]);
        sched_queue_insert_by_seq(&q, &it[0]);
        take_all(got, sizeof(got));
        assert_string_equal(got, "A1 B2");

        /* Younger than what is served next: it waits its turn as a newcomer. */
        reset(NULL);
        push(&it[0], "B");
        push(&it[1], "A");
        sched_queue_unlink(&q, &it[1]);
        sched_queue_insert_by_seq(&q, &it[1]);
        take_all(got, sizeof(got));
        assert_string_equal(got, "B1 A2");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_an_item_put_back_keeps_its_place_in_its_tenants_fifo, reset),
                cmocka_unit_test_setup(test_an_item_put_back_keeps_its_tenants_turn, reset),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
