/* The `sched.jobshop` job kind: a near-optimal job-shop schedule by tabu search
 * (SPEC 1.5). Shared by the descriptor (kind.c), the instance reader (instance.c),
 * the lower bound (bound.c), the CPU search (cpu.c, search.c) and the CUDA
 * preparation (cuda_prep.c); no jansson. */
#pragma once

#include <stdint.h>

#include "kind.h"
#include "parse.h"

/* The typed, validated parameters of one job. The instance itself is the input
 * `instance` (bytes: OR-Library text or the JSON object of SPEC 1.5). */
struct jobshop_params {
        int32_t time_limit_ms;   /* 1..600000 */
        int64_t seed;
        int64_t target;          /* stop once the makespan is at most this; 0: none */
        int32_t walks;           /* independent walks; 0: as many as the machine allows */
};

/* The largest number of walks one job runs. */
#define JS_MAX_WALKS 64
/* The largest instance text read (bytes); far more than 10,000 operations need. */
#define JS_MAX_TEXT_BYTES (8u << 20)

/* A parsed instance, one allocation (js_instance_free). Job j's operations are
 * ids job_start[j] .. job_start[j+1]-1 in processing order. */
struct js_instance {
        int32_t n_jobs, n_mach, n_ops;
        int32_t *job_start;      /* n_jobs + 1 */
        int32_t *mach;           /* n_ops */
        int32_t *dur;            /* n_ops */
};

/* The kind descriptor (kind.c). */
extern const struct kiln_kind kiln_kind_sched_jobshop;

/* Reads and checks an instance from `bytes` (see parse.h). Returns >= 0 and the
 * instance in *ret (the caller frees it), -EINVAL with err naming the field
 * ("params.instance.jobs[2][1]", "params.instance") and saying what is wrong, or
 * -ENOMEM. */
int js_instance_parse(const void *bytes, size_t len, struct js_instance **ret, struct kiln_error *err);
/* Only checks; writes the dimensions to *ret_dims on success. */
int js_instance_check(const void *bytes, size_t len, struct js_dims *ret_dims, struct kiln_error *err);
/* Accepts NULL. */
void js_instance_free(struct js_instance *in);
/* The `instance` input of a task, or NULL. */
const struct kiln_array *js_instance_input(const struct kiln_array *in, size_t n_in);

/* The lower bound of the makespan (bound.c): the longest job, and for each machine
 * the preemptive one-machine bound (Jackson's schedule) with heads and tails from
 * the job orders. Returns the bound (>= 0) or -ENOMEM. */
int64_t js_lower_bound(const struct js_instance *in);

/* How a search went, for its result. */
struct js_outcome {
        int64_t iterations;      /* moves made, all walks */
        int64_t ms_to_best;      /* from the start to the first schedule as good as the result */
        int32_t walks;
        int64_t moves;           /* candidate moves judged, all walks */
};

/* Adds the result values of SPEC 1.5 for the schedule start[] (n_ops, the
 * semi-active schedule of the best machine orders): makespan (its latest end),
 * lower_bound, gap, optimal, the outcome's figures, and starts (per job, as JSON).
 * Shared by the CPU and the CUDA paths. Returns >= 0 or -errno. */
int js_result_add(struct kiln_result *res, const struct js_instance *in, const int64_t *start, int64_t lb,
                  const struct js_outcome *o);

/* The CPU implementation (cpu.c), as described by kiln_kind.run_cpu. */
int js_run_cpu(struct kiln_task *t);
/* A batch (kiln_kind.run_cpu_batch): its jobs at once, one thread each, sharing
 * the cores; each task's status is set. Returns >= 0 or -ENOMEM. */
int js_run_cpu_batch(struct kiln_task *const *t, size_t n);
