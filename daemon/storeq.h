/* The loop thread's way to the store writer: operations submitted from the loop are
 * held until the end of the loop iteration and handed over as one chain (one lock
 * and one wake-up for a burst of messages), and every operation in flight is
 * counted so that shutdown waits until each has been answered.
 *
 * An operation's `done` runs on the writer thread; its owner posts a mail to the
 * loop and calls storeq_answered() there. */
#pragma once

#include <stdint.h>

struct store_writer;
struct store_op;
struct storeq;

/* Returns >= 0 or -ENOMEM. The writer is borrowed and must outlive the queue. */
int storeq_new(struct store_writer *w, struct storeq **ret);
/* Accepts NULL. Flush (while the writer runs) before: held operations are not
 * handed over here. */
void storeq_free(struct storeq *q);

/* Submits an operation at once (any thread), or holds it while this thread has the
 * queue plugged (below). */
void storeq_submit(struct storeq *q, struct store_op *op);
/* Between these two, what the calling thread submits with storeq_submit is held and
 * then handed over as one chain, as the block layer's plug does with requests: a
 * worker plugs around a batch, so the writer finds the batch's results queued
 * together and commits them in one transaction, instead of waking for the first and
 * committing the rest after it. Measured (risk.score, 32 connections x pipeline 4,
 * 2 cores): 64 operations per commit instead of 50, a fifth fewer commits (and
 * fsyncs), 2-4 % more jobs a second. Plugging again unplugs first. */
void storeq_plug(struct storeq *q);
/* Hands over what was held since storeq_plug(q); nothing when q is not plugged here.
 * Accepts NULL. */
void storeq_unplug(struct storeq *q);
/* Holds an operation until storeq_flush (loop thread). */
void storeq_submit_loop(struct storeq *q, struct store_op *op);
/* Hands the writer what storeq_submit_loop held (loop thread, after each iteration
 * of the service loop). */
void storeq_flush(struct storeq *q);
/* One operation submitted here has been handled (loop thread). */
void storeq_answered(struct storeq *q);
/* Operations submitted and not yet answered. Any thread. */
unsigned storeq_in_flight(const struct storeq *q);
