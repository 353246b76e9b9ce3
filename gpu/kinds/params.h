/* Generic validation of job parameters against a kind's schema (kind.h).
 *
 * Uses jansson; the compute half of gpu/ does not include this header. */
#pragma once

#include <jansson.h>

#include "kind.h"

struct kiln_param_error {
        char field[128];   /* e.g. "params.mass", "params.source.x_arcsec" */
        char message[256]; /* a human sentence naming the field and the rule */
};

/* Validates `in` (must be a JSON object; NULL is treated as {}) against the kind's
 * schema and its finish() hook. On success returns >= 0, writes a new canonical
 * object (every default filled, numbers normalised: integers as JSON integers,
 * other numbers as reals, string sets in schema order without duplicates, keys
 * sorted when dumped with JSON_SORT_KEYS) to *ret_canonical (caller owns the
 * reference) and the typed struct to ret_params (kind->params_size bytes).
 * Unknown keys, wrong types, out-of-range values and missing required keys are
 * rejected with -EINVAL and an error naming the field. */
int kiln_params_validate(const struct kiln_kind *kind, const json_t *in, json_t **ret_canonical,
                         void *ret_params, struct kiln_param_error *err);

/* The schema as JSON for clients (welcome message / web UI):
 * [{"name":..,"type":"number"|"integer"|"bool"|"string"|"string_set"|"object",
 *   "required":bool,"min":..,"max":..,"min_exclusive":bool,"default":..,"choices":[..],
 *   "fields":[..],"doc":".."}, ...]. Returns a new reference or NULL on ENOMEM. */
json_t *kiln_params_schema_json(const struct kiln_kind *kind);
