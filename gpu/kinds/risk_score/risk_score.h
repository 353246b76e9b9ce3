/* risk.score (SPEC 1.3): probability of default from a stored XGBoost model, or
 * Altman's Z / Z'' with zones, for rows of financial ratios.
 *
 * params.model names a stored risk.model (the job's object: a struct risk_forest
 * snapshot) or one of the built-in models "altman-z" and "altman-z2", which need no
 * stored object (kiln_kind.builtin_objects). The rows arrive as the input "rows",
 * f32 [n][f] (from a binary part or params.rows as JSON, null = NaN = missing).
 *
 * Outputs, in part order: stored models `pd` f32[n] and, with params.margin, `margin`
 * f32[n]; Altman models `z` f32[n] and `zone` u8[n] (0 distress, 1 grey, 2 safe).
 * Values: `rows` (n) and `model_version` (the stored version; null for a built-in). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kind.h"
#include "risk_score/altman_math.h"
#include "risk_score/forest.h"
#include "risk_score/model.h"

#define RISK_MODEL_NAME_MAX 128
#define RISK_MAX_ROWS 1000000u

struct risk_params {
        char model[RISK_MODEL_NAME_MAX + 1];
        bool margin;
};

extern const struct kiln_kind kiln_kind_risk_score;

/* Which model the params name (kind->builtin_objects decides what is built in). */
enum risk_model_id risk_model_of(const struct risk_params *p);

/* The job's rows, or NULL when its inputs hold none (kiln_kind_check refuses that). */
const struct kiln_array *risk_rows(const struct kiln_array *in, size_t n_in);

/* The CPU implementation: one task, and many at once (the rows of every task that
 * scores against the same forest go through it together). */
int risk_run_cpu(struct kiln_task *t);
int risk_run_cpu_batch(struct kiln_task *const *t, size_t n);

/* The result of one task before its numbers are computed: the values and the zeroed
 * parts, in the order above; ret_out[0..1] point at the parts' data (the second NULL
 * when there is no margin part). Shared by the CPU path and the CUDA host half, so
 * both give the same result layout. Returns >= 0 or -ENOMEM. */
int risk_result_begin(const struct kiln_task *t, enum risk_model_id m, uint64_t n_rows, void *ret_out[2]);
