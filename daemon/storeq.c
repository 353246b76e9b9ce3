/* The loop thread's queue of store operations (see storeq.h). */
#include "storeq.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "store.h"

struct storeq {
        struct store_writer *writer;
        atomic_uint in_flight;
        struct store_op *held, *held_tail; /* loop thread */
};

int storeq_new(struct store_writer *w, struct storeq **ret)
{
        struct storeq *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->writer = w;
        atomic_init(&q->in_flight, 0);
        *ret = q;
        return 0;
}

void storeq_free(struct storeq *q)
{
        free(q);
}

/* What this thread submitted between storeq_plug and storeq_unplug. */
static _Thread_local struct {
        struct storeq *q;
        struct store_op *head, *tail;
} plug;

void storeq_submit(struct storeq *q, struct store_op *op)
{
        atomic_fetch_add(&q->in_flight, 1);
        if (plug.q != q) {
                store_writer_submit(q->writer, op);
                return;
        }
        op->next = NULL;
        if (plug.tail)
                plug.tail->next = op;
        else
                plug.head = op;
        plug.tail = op;
}

void storeq_plug(struct storeq *q)
{
        storeq_unplug(plug.q);
        plug.q = q;
}

void storeq_unplug(struct storeq *q)
{
        if (!q || plug.q != q)
                return;
        if (plug.head)
                store_writer_submit_chain(q->writer, plug.head, plug.tail);
        plug.q = NULL;
        plug.head = plug.tail = NULL;
}

void storeq_submit_loop(struct storeq *q, struct store_op *op)
{
        atomic_fetch_add(&q->in_flight, 1);
        op->next = NULL;
        if (q->held_tail)
                q->held_tail->next = op;
        else
                q->held = op;
        q->held_tail = op;
}

void storeq_flush(struct storeq *q)
{
        if (!q->held)
                return;
        store_writer_submit_chain(q->writer, q->held, q->held_tail);
        q->held = q->held_tail = NULL;
}

void storeq_answered(struct storeq *q)
{
        atomic_fetch_sub(&q->in_flight, 1);
}

unsigned storeq_in_flight(const struct storeq *q)
{
        return atomic_load(&q->in_flight);
}
