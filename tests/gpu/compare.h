/* Comparing a backend's result with the CPU's (the parity test's one judgement). */
#pragma once

#include <stddef.h>

#include "kind.h"

struct cmp_stats {
        size_t values;       /* values compared */
        size_t bad;          /* values (or structural differences) that failed */
        double worst;        /* the largest |got - want| / (atol + rtol |want|) */
        double max_abs;      /* the largest |got - want| of a numeric value */
        char first[200];     /* the first failure, in words ("" when none) */
};

/* Compares `got` with `want`: the same parts (name, dtype, shape, order) and the
 * same named values (name, type, order). Numbers (f32 part elements, number
 * values, the numbers inside JSON values) pass within |got - want| <= atol +
 * rtol |want|, NaN only against NaN, an infinity only against itself; integers,
 * booleans, strings, bytes and the rest of JSON text must be equal. Adds to *st. */
void cmp_results(const struct kiln_result *got, const struct kiln_result *want, double rtol, double atol,
                 struct cmp_stats *st);
