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

void storeq_submit(struct storeq *q, struct store_op *op)
{
        atomic_fetch_add(&q->in_flight, 1);
        store_writer_submit(q->writer, op);
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
