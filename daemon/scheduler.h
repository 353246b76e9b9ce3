/* The scheduler: per-kind queues with five strict priorities (FIFO within one) and
 * the CPU worker pool that runs them.
 *
 * Jobs enter with sched_push() once their record is committed, and leave either to a
 * worker or by sched_remove() (cancel, deadline). Workers run a job through its
 * kind's CPU implementation and end it with job_finish(). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "proto.h"

struct job;
struct sched;

/* Starts `threads` workers (0 = number of online CPUs). Returns >= 0 or -errno. */
int sched_new(unsigned threads, struct sched **ret);
/* Stops the workers (a running job is asked to stop with JOB_STOP_SHUTDOWN and stays
 * queued in the store), drops queued jobs' references, frees. Accepts NULL. */
void sched_free(struct sched *s);

/* Queues a job (takes a reference). */
void sched_push(struct sched *s, struct job *j);
/* Takes a job out of its queue if it is still there (drops the queue's reference).
 * Returns true when it was queued; false when a worker already has it. */
bool sched_remove(struct sched *s, struct job *j);
/* After this, workers take no new job (drain on SIGTERM). */
void sched_pause(struct sched *s);

/* The active backends and their devices, for /readyz, /healthz and stats:
 * [{"name":"cpu","threads":N}, ...]. New reference. */
json_t *sched_backends_json(struct sched *s);
/* True when at least one backend can run jobs. */
bool sched_ready(struct sched *s);

/* Jobs waiting in all queues. */
uint32_t sched_queued(struct sched *s);
/* Jobs being run right now. */
unsigned sched_running(struct sched *s);
unsigned sched_threads(struct sched *s);
/* Queued jobs of kind index `kind` (into kiln_kinds[]) and priority. */
uint32_t sched_depth(struct sched *s, unsigned kind, enum kiln_priority prio);
