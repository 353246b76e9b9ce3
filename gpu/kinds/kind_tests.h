/* Test cases of the kinds that run on a GPU: what the parity test
 * (tests/gpu/test_backend_ops.c) runs on every backend device and compares with the
 * kind's run_cpu, and what the kernel benchmark (tests/gpu/bench_kernels.c) times.
 * Each kind marked `cuda` in gpu/kinds/KINDS defines
 *   const struct kiln_kind_tests kiln_kind_tests_<folder>;
 * in its tests.c. Compute half: typed params, inputs and objects built without JSON. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "kind.h"

/* One job: what a kiln_task gets. */
struct kiln_case {
        char label[64];                  /* e.g. "grid 33, all maps" */
        const void *params;              /* the kind's typed parameters */
        const struct kiln_array *inputs;
        size_t n_inputs;
        const struct kiln_object *object;/* NULL when the kind takes none */
        uint64_t work;                   /* work items (pixels, rows...) for the benchmark's rate */
};

/* A set of cases and what they point into. */
struct kiln_cases {
        size_t n;
        struct kiln_case *cases;         /* n of them */
        void *storage;                   /* the kind's: params, input data, objects */
        /* Optional, for the benchmark's achieved rates (0: not given): the
         * floating-point operations the whole set's jobs take, and the bytes a batch
         * of them must read at the least (vec.search: the collection once, whatever
         * the batch, and the queries). */
        double flop, read_bytes;
        /* Frees `storage` and anything else the kind made (compiled objects);
         * NULL: free(storage). */
        void (*release)(struct kiln_cases *cs);
};

/* n zeroed cases and `storage_bytes` of zeroed storage. Returns NULL on ENOMEM. */
struct kiln_cases *kiln_cases_new(size_t n, size_t storage_bytes);
/* Frees the set and its storage. Accepts NULL. */
void kiln_cases_free(struct kiln_cases *cs);

struct kiln_kind_tests {
        const struct kiln_kind *kind;
        /* The parity cases: a few small jobs that together reach every branch of the
         * kernels (odd sizes, edge values, every output). Returns >= 0 and a set in
         * *ret, or -ENOMEM. */
        int (*parity)(struct kiln_cases **ret);
        /* n benchmark jobs of size step `size` (0, 1, 2, ...; each step about four
         * times the work of the last), alike but not identical (a cache must not
         * help). Returns >= 0 and a set in *ret, -ERANGE past the largest step, or
         * -ENOMEM. */
        int (*bench)(unsigned size, size_t n, struct kiln_cases **ret);
        const char *work_unit;           /* "pixels", "rows" */
};

/* The kinds marked `cuda` in KINDS order, NULL-terminated (generated). */
extern const struct kiln_kind_tests *const kiln_kind_tests[];
