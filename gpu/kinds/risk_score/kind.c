/* risk.score: parameter schema, the rows input, the checks of rows against the model
 * and the kind descriptor (SPEC 1.3). */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "risk_score/risk_score.h"

static const struct kiln_param risk_schema[] = {
        { .name = "model", .type = KILN_PARAM_STRING, .required = true,
          .doc = "\"altman-z\" (1968), \"altman-z2\" (Z''), or the name of a stored XGBoost model",
          KILN_PARAM_AT(struct risk_params, model) },
        { .name = "margin", .type = KILN_PARAM_BOOL, .def = "false",
          .doc = "also return the raw margin (stored models only)", KILN_PARAM_AT(struct risk_params, margin) },
        { .name = NULL },
};

static const struct kiln_input_spec risk_inputs[] = {
        { .name = "rows", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_F32), .ndim = 2, .required = true,
          .json_param = "rows",
          .doc = "the feature rows, f32 [n][features] (1..1,000,000 rows; NaN or JSON null = missing)" },
        { .name = NULL },
};

/* The names that need no stored model, in enum risk_model_id order from 1. */
static const char *const risk_builtins[] = { "altman-z", "altman-z2", NULL };

enum risk_model_id risk_model_of(const struct risk_params *p)
{
        const char *b = kiln_kind_builtin_object(&kiln_kind_risk_score, p);

        if (b == risk_builtins[0])
                return RISK_MODEL_ALTMAN_Z;
        if (b == risk_builtins[1])
                return RISK_MODEL_ALTMAN_Z2;
        return RISK_MODEL_STORED;
}

const struct kiln_array *risk_rows(const struct kiln_array *in, size_t n_in)
{
        const struct kiln_array *a = kiln_inputs_find(in, n_in, "rows");

        return a && a->dtype == KILN_DTYPE_F32 && a->ndim == 2 ? a : NULL;
}

/* Altman's models take no missing or infinite value: the first one is named. */
static int check_finite(const struct kiln_array *a, const char *model, struct kiln_error *err)
{
        const float *x = a->data;
        uint64_t cols = a->shape[1], n = a->shape[0] * cols;

        for (uint64_t i = 0; i < n; i++)
                if (!isfinite(x[i]))
                        return kiln_error_set(err, "params.rows",
                                              "params.rows[%llu][%llu] is %s: %s takes no missing or infinite "
                                              "values",
                                              (unsigned long long)(i / cols), (unsigned long long)(i % cols),
                                              isnan(x[i]) ? "missing (NaN or null)" : "infinite", model);
        return 0;
}

/* The rows' presence and count, whatever the model. */
static int check_rows(const struct kiln_array *a, struct kiln_error *err)
{
        if (!a)
                return kiln_error_set(err, "params.rows", "params.rows is required: f32 rows [n][features]");
        if (a->shape[0] < 1 || a->shape[0] > RISK_MAX_ROWS)
                return kiln_error_set(err, "params.rows", "params.rows has %llu rows; a job scores 1 to %u",
                                      (unsigned long long)a->shape[0], RISK_MAX_ROWS);
        return 0;
}

/* The rows' width against a stored model's features (0: not known, not checked). */
static int check_features(const struct kiln_array *a, const char *model, uint64_t version, uint32_t features,
                          struct kiln_error *err)
{
        if (features && a->shape[1] != features)
                return kiln_error_set(err, "params.rows",
                                      "params.rows has %llu features per row; model \"%s\" (version %llu) takes "
                                      "exactly %u",
                                      (unsigned long long)a->shape[1], model, (unsigned long long)version,
                                      features);
        return 0;
}

/* Called at submission for a built-in model (no object) and before the job runs
 * for a stored one (obj is its compiled version). */
static int check(const void *params, const struct kiln_array *in, size_t n_in, const struct kiln_object *obj,
                 struct kiln_error *err)
{
        const struct risk_params *p = params;
        const struct kiln_array *a = risk_rows(in, n_in);
        enum risk_model_id m = risk_model_of(p);
        int r = check_rows(a, err);

        if (r < 0)
                return r;
        if (m != RISK_MODEL_STORED) {
                uint32_t cols = risk_altman_columns(m);
                if (p->margin)
                        return kiln_error_set(err, "params.margin",
                                              "params.margin is for stored models: %s has no margin", p->model);
                if (a->shape[1] != cols)
                        return kiln_error_set(err, "params.rows",
                                              "params.rows has %llu columns per row; %s takes exactly %u "
                                              "(X1..X%u)",
                                              (unsigned long long)a->shape[1], p->model, cols, cols);
                return check_finite(a, p->model, err);
        }
        const struct risk_forest *f = obj ? obj->snapshot : NULL;
        if (!f)
                return kiln_error_set(err, "params.model", "params.model \"%s\" names no compiled model", p->model);
        return check_features(a, p->model, obj->version, f->n_features, err);
}

/* At submission, for a stored model (kiln_kind_check_meta sends the built-in ones
 * to `check`): the rows against the features its meta records
 * (risk_model_meta_encode), before the model is loaded. Without a meta it can
 * read, the width is left to `check`, when the job runs. */
static int check_meta(const void *params, const struct kiln_array *in, size_t n_in, uint64_t version,
                      const void *meta, size_t meta_len, struct kiln_error *err)
{
        const struct risk_params *p = params;
        const struct kiln_array *a = risk_rows(in, n_in);
        uint64_t trees;
        uint32_t features;
        int r = check_rows(a, err);

        if (r < 0)
                return r;
        if (risk_model_meta_decode(meta, meta_len, &trees, &features) < 0)
                return 0;
        return check_features(a, p->model, version, features, err);
}

/* Two f32 parts (pd and margin), or one f32 and one u8 (z and zone), each aligned
 * as the CUDA half lays them out. */
static uint64_t result_size(const void *params, const struct kiln_array *in, size_t n_in,
                            const struct kiln_object *obj)
{
        const struct kiln_array *a = risk_rows(in, n_in);
        uint64_t n = a ? a->shape[0] : 0;

        return 2 * (n * sizeof(float) + 16);
}

/* A job of a few rows is quick whatever the model: 64 rows through the largest
 * forest the benchmarks train (500 trees of depth 8) take about 0.2 ms on one core
 * (370,000 rows/s in tests/bench/risk_score.py), 64 through 200 trees of depth 6
 * about 40 µs. */
#define RISK_QUICK_ROWS 64

static bool quick(const void *params, const struct kiln_array *in, size_t n_in)
{
        const struct kiln_array *a = risk_rows(in, n_in);
        return a && a->shape[0] <= RISK_QUICK_ROWS;
}

const struct kiln_kind kiln_kind_risk_score = {
        .name = "risk.score",
        .version = 1,
        .doc = "probability of default from a stored XGBoost model, or Altman's Z / Z'' with zones",
        .params = risk_schema,
        .params_size = sizeof(struct risk_params),
        .inputs = risk_inputs,
        .object = &risk_model_class,
        .object_param = "model",
        .builtin_objects = risk_builtins,
        /* The margins and z agree to the bit (the same float adds in the same order,
         * products unfused); pd goes through each device's expf, which may differ
         * from glibc's in the last unit. */
        .rtol = 0,
        .atol = 1e-6,
        .check = check,
        .check_meta = check_meta,
        .result_size = result_size,
        .run_cpu = risk_run_cpu,
        .run_cpu_batch = risk_run_cpu_batch,
        .quick = quick,
};
