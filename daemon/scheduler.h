/* The scheduler: per-kind queues with five strict priorities (FIFO within one), the
 * dynamic batcher ([batch.KIND] max_batch, max_delay_us) and the worker pool that
 * runs batches on the backends (the CUDA plugin's devices, then the CPU).
 *
 * Jobs enter with sched_push() once their record is committed, and leave either to a
 * worker or by sched_remove() (cancel, deadline). Workers gather a batch, run it on
 * the first backend that can (retrying elsewhere when a device fails) and end each
 * job with job_finish(); each job's `done` names its backend device and batch size. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "proto.h"

struct job;
struct sched;
struct kiln_config;

/* Opens the backends for cfg->gpu (loading the CUDA plugin unless gpu.backend = cpu)
 * and starts cfg->cpu.threads workers (0 = number of online CPUs), with the batch
 * settings of every kind. `cfg` is read only during the call. Returns >= 0 or -errno. */
int sched_new(const struct kiln_config *cfg, struct sched **ret);
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

/* The active backends and their devices, for /readyz, /healthz, stats and metrics:
 * [{"name":"cuda","plugin":PATH,"devices":[{"name":"cuda:0","model":..,"state":
 * "in_service"|"out_of_service","failures":N,"probes":N,"memory_total_bytes":N,
 * "memory_used_bytes":N,"utilization":X}]}, {"name":"cpu","threads":N,"devices":[..]}].
 * New reference. */
json_t *sched_backends_json(struct sched *s);
/* True when at least one device of a backend is in service. */
bool sched_ready(struct sched *s);

/* Jobs waiting in all queues. */
uint32_t sched_queued(struct sched *s);
/* Jobs being run right now. */
unsigned sched_running(struct sched *s);
unsigned sched_threads(struct sched *s);
/* Queued jobs of kind index `kind` (into kiln_kinds[]) and priority. */
uint32_t sched_depth(struct sched *s, unsigned kind, enum kiln_priority prio);
