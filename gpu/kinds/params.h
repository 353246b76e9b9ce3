/* Generic validation of job parameters against a kind's schema (kind.h), and the
 * inputs a job may carry inline in its params as JSON.
 *
 * Uses jansson; the compute half of gpu/ does not include this header. */
#pragma once

#include <jansson.h>

#include "kind.h"


/* Validates `in` (must be a JSON object; NULL is treated as {}) against the kind's
 * schema, stores every parameter in the typed struct (kiln_param.offset/size) and
 * calls the kind's finish() hook. On success returns >= 0, writes a new canonical
 * object (every default filled, numbers normalised: integers as JSON integers,
 * other numbers as reals, string sets in schema order without duplicates, keys
 * sorted when dumped with JSON_SORT_KEYS) to *ret_canonical (caller owns the
 * reference) and the typed struct to ret_params (kind->params_size bytes).
 * Unknown keys, wrong types, out-of-range values and missing required keys are
 * rejected with -EINVAL and an error naming the field. The params fields of the
 * kind's inputs (kiln_input_spec.json_param) are accepted as they are and left out
 * of the canonical object: kiln_inputs_from_params lifts them into arrays. */
int kiln_params_validate(const struct kiln_kind *kind, const json_t *in, json_t **ret_canonical,
                         void *ret_params, struct kiln_error *err);

/* The schema as JSON for clients (welcome message / web UI):
 * [{"name":..,"type":"number"|"integer"|"bool"|"string"|"string_set"|"object",
 *   "required":bool,"min":..,"max":..,"min_exclusive":bool,"default":..,"choices":[..],
 *   "fields":[..],"doc":".."}, ...]; the kind's object param also carries "builtin":
 *   [..], the names of its built-in objects. Returns a new reference or NULL on ENOMEM. */
json_t *kiln_params_schema_json(const struct kiln_kind *kind);

/* The kind's inputs as JSON for clients: [{"name":..,"dtypes":["f32",..],"ndim":N,
 * "required":bool,"json_param":..|null,"doc":..}, ...] ([] for none). Returns a new
 * reference or NULL on ENOMEM. */
json_t *kiln_inputs_schema_json(const struct kiln_kind *kind);

/* Checks the kind's descriptor against the rules the validator relies on: storage
 * of each parameter (type and size), defaults that validate, input specs (names,
 * dtypes, ranks, json_param not also a parameter) and, for a kind with an object,
 * an object_param that is a required free string of the schema. Returns >= 0 or
 * -EINVAL naming what is wrong (a unit test runs it over every built-in kind). */
int kiln_params_schema_check(const struct kiln_kind *kind, struct kiln_error *err);

/* The canonical params' text: exactly what json_dumps(canonical, JSON_COMPACT |
 * JSON_SORT_KEYS) returns, made faster (params_text.c); malloc'd, NULL when out of
 * memory or `canonical` is not an object. The text is the params' part of the cache
 * key and of the stored record. */
char *kiln_params_text(const json_t *canonical);

/* The stored object named in canonical params (the kind's object_param), borrowed
 * from `canonical`; NULL when the kind takes no object or the name is one of its
 * built-in objects (kiln_kind.builtin_objects: nothing to look up or bind). */
const char *kiln_params_object_name(const struct kiln_kind *kind, const json_t *canonical);

/* Converts `v`, a JSON nested array, into the typed array that the same data sent as
 * a binary part would be (byte for byte: one cache key for both forms). The dtype is
 * kiln_input_json_dtype(spec); the shape is the nesting (rectangular, spec->ndim
 * deep when that is non-zero). Elements: f32 takes numbers (null is NaN); i32, u32
 * and u8 take integers (or integral reals) within their range. `field` names the
 * value in errors ("params.rows"; "params.rows[3][1]" for an element). Arrays over
 * `max_bytes` are refused with -E2BIG. Returns >= 0, the array in *ret (named
 * spec->name) and its malloc'd data in *ret_data (the caller frees it after the
 * array's last use), or -EINVAL / -E2BIG / -ENOMEM with err set. */
int kiln_input_from_json(const struct kiln_input_spec *spec, const json_t *v, const char *field, size_t max_bytes,
                         struct kiln_array *ret, void **ret_data, struct kiln_error *err);

/* Lifts every input of `kind` that `params` (the submitted params object) carries
 * inline (kiln_input_spec.json_param) with kiln_input_from_json, each limited to
 * max_bytes. Returns the number of arrays written to ret[] and their data to
 * ret_data[] (both KILN_MAX_INPUTS long; the caller frees each ret_data[i]), or
 * -errno with nothing to free. */
int kiln_inputs_from_params(const struct kiln_kind *kind, const json_t *params, size_t max_bytes,
                            struct kiln_array ret[KILN_MAX_INPUTS], void *ret_data[KILN_MAX_INPUTS],
                            struct kiln_error *err);
