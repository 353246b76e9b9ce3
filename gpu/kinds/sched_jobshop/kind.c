/* sched.jobshop: parameter schema, the instance input, checks and the kind
 * descriptor (SPEC 1.5). */
#include <errno.h>
#include <stddef.h>

#include "jobshop.h"

static const struct kiln_param jobshop_schema[] = {
        { .name = "time_limit_ms", .type = KILN_PARAM_INTEGER, .min = 1, .max = 600000, .def = "2000",
          .doc = "how long the search may run, milliseconds",
          KILN_PARAM_AT(struct jobshop_params, time_limit_ms) },
        { .name = "seed", .type = KILN_PARAM_INTEGER, .min = 0, .max = 1e15,
          .def = "0", .doc = "seed of the search's random choices",
          KILN_PARAM_AT(struct jobshop_params, seed) },
        { .name = "target", .type = KILN_PARAM_INTEGER, .min = 0, .max = 1e12,
          .doc = "stop as soon as the makespan is at most this (optional)",
          KILN_PARAM_AT(struct jobshop_params, target) },
        { .name = "walks", .type = KILN_PARAM_INTEGER, .min = 0, .max = JS_MAX_WALKS, .def = "0",
          .doc = "independent search walks, the best one wins (0: as many as the device has room for)",
          KILN_PARAM_AT(struct jobshop_params, walks) },
        { .name = NULL },
};

static const struct kiln_input_spec jobshop_inputs[] = {
        { .name = "instance", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_BYTES) | KILN_DTYPE_BIT(KILN_DTYPE_U8),
          .ndim = 1, .required = true, .json_param = "instance",
          .doc = "the instance: OR-Library text (\"n m\", then per job m pairs \"machine duration\") or the "
                 "JSON object {\"jobs\": [[[machine, duration], ...], ...]}" },
        { .name = NULL },
};

/* The instance is read and checked at submission, so that a bad one is refused
 * with the field named, never failed later. */
static int check(const void *params, const struct kiln_array *in, size_t n_in, const struct kiln_object *obj,
                 struct kiln_error *err)
{
        const struct kiln_array *a = js_instance_input(in, n_in);
        struct js_dims d;

        if (!a)
                return kiln_error_set(err, "params.instance", "params.instance is required");
        return js_instance_check(a->data, a->bytes, &d, err);
}

/* No parts: the result is values only (starts as JSON). */
static uint64_t result_size(const void *params, const struct kiln_array *in, size_t n_in,
                            const struct kiln_object *obj)
{
        return 0;
}

const struct kiln_kind kiln_kind_sched_jobshop = {
        .name = "sched.jobshop",
        .version = 1,
        .doc = "a near-optimal job-shop schedule (tabu search with a lower bound)",
        .params = jobshop_schema,
        .params_size = sizeof(struct jobshop_params),
        .inputs = jobshop_inputs,
        .check = check,
        .result_size = result_size,
        .run_cpu = js_run_cpu,
        .run_cpu_batch = js_run_cpu_batch,
};
