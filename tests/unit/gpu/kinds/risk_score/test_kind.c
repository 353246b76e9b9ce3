/* risk.score: Altman's Z and Z'' with their zones, stored models scored as XGBoost
 * scores them (one job, many jobs batched, the blocked scorer against the plain
 * walk), and every refusal naming its field.
 *
 * The XGBoost models, rows and predictions come from gen_models.py (the fixture
 * unit/risk_model_data) in $KILN_RISK_MODELS. */
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kind_tests.h"
#include "params.h"
#include "risk_score/risk_score.h"

static const struct kiln_kind *K = &kiln_kind_risk_score;
extern const struct kiln_kind_tests kiln_kind_tests_risk_score;

static void *slurp(const char *name, const char *suffix, size_t *ret_len)
{
        const char *d = getenv("KILN_RISK_MODELS");
        char path[1024];

        if (!d || !*d)
                fail_msg("KILN_RISK_MODELS is not set: run through ctest (fixture unit/risk_model_data)");
        snprintf(path, sizeof(path), "%s/%s%s", d, name, suffix);
        FILE *f = fopen(path, "rb");
        if (!f)
                fail_msg("cannot open %s", path);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        long n = ftell(f);
        rewind(f);
        void *buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        *ret_len = (size_t)n;
        return buf;
}

static struct risk_forest *forest(const char *name)
{
        size_t len;
        void *json = slurp(name, ".json", &len);
        struct risk_forest *f = NULL;
        struct kiln_error err;

        assert_int_equal(risk_forest_compile(json, len, &f, &err), 0);
        free(json);
        return f;
}

static struct kiln_array rows_array(const float *data, uint64_t n, uint64_t cols)
{
        struct kiln_array a;
        const uint64_t shape[2] = { n, cols };
        struct kiln_error err;

        assert_int_equal(kiln_array_init(&a, "rows", KILN_DTYPE_F32, 2, shape, data, n * cols * sizeof(float), &err),
                         0);
        return a;
}

static struct risk_params params(const char *model, bool margin)
{
        struct risk_params p = { .margin = margin };
        snprintf(p.model, sizeof(p.model), "%s", model);
        return p;
}

/* Runs one task; returns its status. */
static int run(const struct risk_params *p, const struct kiln_array *a, const struct kiln_object *obj,
               struct kiln_result *r)
{
        struct kiln_task t = { .params = p, .inputs = a, .n_inputs = 1, .object = obj, .result = r };
        return risk_run_cpu(&t);
}

static void test_schema_is_valid_and_names_builtins(void **state)
{
        struct kiln_error err;
        json_t *schema = kiln_params_schema_json(K);
        json_t *model = json_array_get(schema, 0);

        assert_true(kiln_params_schema_check(K, &err) >= 0);
        assert_string_equal(json_string_value(json_object_get(model, "name")), "model");
        assert_string_equal(json_string_value(json_array_get(json_object_get(model, "builtin"), 1)), "altman-z2");
        json_decref(schema);
        assert_ptr_equal(kiln_kind_find("risk.score"), K);
}

/* Worked examples: Z = 1.2*0.1 + 1.4*0.2 + 3.3*0.3 + 0.6*0.4 + 1.0*0.5 = 2.13 (grey). */
static void test_altman_z_and_zones(void **state)
{
        const float x[] = { 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, /* grey */
                            -0.5f, -0.2f, -0.1f, 0.1f, 0.3f, /* distress */
                            0.3f, 0.5f, 0.4f, 2.0f, 1.5f,   /* safe */
                            0, 0, 0, 0, 1.81f,              /* exactly the lower boundary: grey */
                            0, 0, 0, 0, 2.99f,              /* exactly the upper boundary: grey */
                            0, 0, 0, 0, nextafterf(1.81f, 0), 0, 0, 0, 0, nextafterf(2.99f, 4) };
        struct kiln_array a = rows_array(x, 7, 5);
        struct risk_params p = params("altman-z", false);
        struct kiln_result r = { 0 };
        static const uint8_t zones[] = { 1, 0, 2, 1, 1, 0, 2 };

        assert_int_equal(risk_model_of(&p), RISK_MODEL_ALTMAN_Z);
        assert_int_equal(kiln_kind_check(K, &p, &a, 1, NULL, NULL), 0);
        assert_int_equal(run(&p, &a, NULL, &r), 0);
        const struct kiln_part *z = kiln_result_find_part(&r, "z"), *zone = kiln_result_find_part(&r, "zone");
        assert_non_null(z);
        assert_non_null(zone);
        assert_int_equal(z->dtype, KILN_DTYPE_F32);
        assert_int_equal(zone->dtype, KILN_DTYPE_U8);
        assert_int_equal(z->shape[0], 7);
        for (int i = 0; i < 7; i++) {
                const float *row = x + 5 * i;
                double want = 1.2 * row[0] + 1.4 * row[1] + 3.3 * row[2] + 0.6 * row[3] + 1.0 * row[4];
                assert_true(((float *)z->data)[i] == (float)want);
                assert_int_equal(((uint8_t *)zone->data)[i], zones[i]);
        }
        assert_true(fabsf(((float *)z->data)[0] - 2.13f) < 1e-6f);
        assert_int_equal(kiln_result_find(&r, "rows")->i, 7);
        assert_int_equal(kiln_result_find(&r, "model_version")->type, KILN_V_NULL);
        assert_int_equal(r.n_parts, 2);
        kiln_result_clear(&r);
}

static void test_altman_z2_and_zones(void **state)
{
        /* 6.56*0.1 + 3.26*0.1 + 6.72*0.1 + 1.05*0.5 = 2.179 (grey). */
        const float x[] = { 0.1f, 0.1f, 0.1f, 0.5f, -0.2f, 0.0f, 0.05f, 0.3f, 0.3f, 0.4f, 0.2f, 1.0f,
                            0, 0, 0, 1.1f / 1.05f,  /* on the lower boundary or next to it */
                            0, 0, 0, 0 };
        struct kiln_array a = rows_array(x, 5, 4);
        struct risk_params p = params("altman-z2", false);
        struct kiln_result r = { 0 };

        assert_int_equal(run(&p, &a, NULL, &r), 0);
        const float *z = kiln_result_find_part(&r, "z")->data;
        const uint8_t *zone = kiln_result_find_part(&r, "zone")->data;
        assert_true(fabsf(z[0] - 2.179f) < 1e-6f);
        assert_int_equal(zone[0], RISK_ZONE_GREY);
        assert_int_equal(zone[1], RISK_ZONE_DISTRESS);
        assert_int_equal(zone[2], RISK_ZONE_SAFE);
        assert_int_equal(zone[3], z[3] < 1.1f ? RISK_ZONE_DISTRESS : RISK_ZONE_GREY);
        assert_true(z[4] == 0.0f && zone[4] == RISK_ZONE_DISTRESS);
        /* The zone is read off the float32 z: the boundaries themselves are grey. */
        assert_int_equal(risk_altman_zone(RISK_MODEL_ALTMAN_Z2, 1.1f), RISK_ZONE_GREY);
        assert_int_equal(risk_altman_zone(RISK_MODEL_ALTMAN_Z2, 2.6f), RISK_ZONE_GREY);
        assert_int_equal(risk_altman_zone(RISK_MODEL_ALTMAN_Z2, nextafterf(1.1f, 0)), RISK_ZONE_DISTRESS);
        assert_int_equal(risk_altman_zone(RISK_MODEL_ALTMAN_Z2, nextafterf(2.6f, 3)), RISK_ZONE_SAFE);
        kiln_result_clear(&r);
}

/* Checks `p` with rows `a` (and obj) and expects a refusal naming `field`. */
static void refused(const struct risk_params *p, const struct kiln_array *a, size_t n_in,
                    const struct kiln_object *obj, const char *field, const char *words)
{
        struct kiln_error err = { "", "" };

        assert_int_equal(kiln_kind_check(K, p, a, n_in, obj, &err), -EINVAL);
        if (strcmp(err.field, field) != 0)
                fail_msg("field %s (%s), expected %s", err.field, err.message, field);
        if (words && !strstr(err.message, words))
                fail_msg("message \"%s\" does not say \"%s\"", err.message, words);
}

static void test_altman_refusals(void **state)
{
        float x[12] = { 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f };
        struct kiln_array five = rows_array(x, 1, 5), four = rows_array(x, 1, 4), six = rows_array(x, 2, 6);
        struct risk_params z = params("altman-z", false), z2 = params("altman-z2", false);
        struct risk_params zm = params("altman-z", true);

        refused(&z, &four, 1, NULL, "params.rows", "exactly 5");
        refused(&z2, &five, 1, NULL, "params.rows", "exactly 4");
        refused(&z2, &six, 1, NULL, "params.rows", "exactly 4");
        refused(&zm, &five, 1, NULL, "params.margin", "stored models");
        refused(&z, NULL, 0, NULL, "inputs.rows", "required");
        x[3] = NAN;
        refused(&z, &five, 1, NULL, "params.rows", "params.rows[0][3] is missing");
        x[3] = -INFINITY;
        refused(&z2, &four, 1, NULL, "params.rows", "params.rows[0][3] is infinite");
        x[3] = 0;
        struct kiln_array none = rows_array(x, 0, 5);
        refused(&z, &none, 1, NULL, "params.rows", "0 rows");
        /* A built-in model runs against no stored object. */
        struct risk_forest *f = forest("exact_d3_t10");
        struct kiln_object obj = { .cls = &risk_model_class, .version = 3, .snapshot = f };
        refused(&z, &five, 1, &obj, "params.model", "built-in");
        risk_forest_free(f);
}

static void test_too_many_rows_are_refused(void **state)
{
        size_t n = RISK_MAX_ROWS + 1;
        float *x = calloc(n * 4, sizeof(float));
        struct risk_params z2 = params("altman-z2", false);

        assert_non_null(x);
        struct kiln_array a = rows_array(x, n, 4);
        refused(&z2, &a, 1, NULL, "params.rows", "1 to 1000000");
        a = rows_array(x, n - 1, 4);
        assert_int_equal(kiln_kind_check(K, &z2, &a, 1, NULL, NULL), 0);
        free(x);
}

static void test_stored_model_refusals(void **state)
{
        struct risk_forest *f = forest("exact_d3_t10");
        struct kiln_object obj = { .cls = &risk_model_class, .version = 4, .snapshot = f };
        float x[16] = { 0 };
        struct kiln_array seven = rows_array(x, 2, 7), eight = rows_array(x, 2, 8), nine = rows_array(x, 1, 9);
        struct risk_params p = params("mine", false);
        struct kiln_result r = { 0 };

        assert_int_equal(risk_model_of(&p), RISK_MODEL_STORED);
        refused(&p, &seven, 1, &obj, "params.rows", "takes exactly 8");
        refused(&p, &nine, 1, &obj, "params.rows", "version 4");
        refused(&p, &eight, 1, NULL, "params.model", NULL);
        assert_int_equal(kiln_kind_check(K, &p, &eight, 1, &obj, NULL), 0);
        /* The implementation refuses a wrong shape too, if it is called unchecked. */
        assert_int_equal(run(&p, &seven, &obj, &r), -EINVAL);
        kiln_result_clear(&r);
        risk_forest_free(f);
}

/* At submission a stored model's rows are checked against the features its meta
 * records, with the very error the check with the compiled model gives. */
static void test_rows_are_checked_against_the_meta_at_submission(void **state)
{
        struct risk_forest *f = forest("exact_d3_t10");
        struct kiln_object obj = { .cls = &risk_model_class, .version = 4, .snapshot = f };
        float x[16] = { 0 };
        struct kiln_array seven = rows_array(x, 2, 7), eight = rows_array(x, 2, 8), nine = rows_array(x, 1, 9);
        struct kiln_array none = rows_array(x, 0, 8);
        struct risk_params p = params("mine", false), z2 = params("altman-z2", false);
        uint8_t meta[RISK_MODEL_META_BYTES];
        struct kiln_error at_run, at_submit;
        uint64_t trees;
        uint32_t features;

        risk_model_meta_encode(f->n_trees, f->n_features, meta);
        assert_int_equal(risk_model_meta_decode(meta, sizeof(meta), &trees, &features), 0);
        assert_int_equal(features, 8);
        assert_int_equal(trees, f->n_trees);
        const struct kiln_array *bad[] = { &seven, &nine, &none };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                memset(&at_run, 0, sizeof(at_run));
                memset(&at_submit, 0, sizeof(at_submit));
                assert_int_equal(kiln_kind_check(K, &p, bad[i], 1, &obj, &at_run), -EINVAL);
                assert_int_equal(kiln_kind_check_meta(K, &p, bad[i], 1, 4, meta, sizeof(meta), &at_submit), -EINVAL);
                assert_string_equal(at_submit.field, at_run.field);
                assert_string_equal(at_submit.message, at_run.message);
        }
        assert_string_equal(at_submit.field, "params.rows");
        assert_int_equal(kiln_kind_check_meta(K, &p, &eight, 1, 4, meta, sizeof(meta), NULL), 0);
        /* The rows are required, as an input of the kind. */
        memset(&at_submit, 0, sizeof(at_submit));
        assert_int_equal(kiln_kind_check_meta(K, &p, NULL, 0, 4, meta, sizeof(meta), &at_submit), -EINVAL);
        assert_string_equal(at_submit.field, "inputs.rows");
        /* Without a meta it can read, the width waits for the model; the count not. */
        assert_int_equal(kiln_kind_check_meta(K, &p, &seven, 1, 4, NULL, 0, NULL), 0);
        assert_int_equal(kiln_kind_check_meta(K, &p, &seven, 1, 4, meta, sizeof(meta) - 1, NULL), 0);
        meta[0] = 2;
        assert_int_equal(kiln_kind_check_meta(K, &p, &seven, 1, 4, meta, sizeof(meta), NULL), 0);
        assert_int_equal(kiln_kind_check_meta(K, &p, &none, 1, 4, NULL, 0, NULL), -EINVAL);
        /* A built-in model is checked in full, as with no object. */
        memset(&at_submit, 0, sizeof(at_submit));
        assert_int_equal(kiln_kind_check_meta(K, &z2, &seven, 1, 0, NULL, 0, &at_submit), -EINVAL);
        assert_string_equal(at_submit.field, "params.rows");
        assert_non_null(strstr(at_submit.message, "exactly 4"));
        risk_forest_free(f);
}

/* Every model of the fixture, one job each: pd and margin are XGBoost's to the bit,
 * and the blocked scorer's margins are the plain walk's. */
static void test_stored_models_score_as_xgboost(void **state)
{
        size_t len;
        char *manifest = slurp("models", ".txt", &len), *save = NULL;
        size_t models = 0, rows_checked = 0;

        manifest[len] = '\0';
        for (char *line = strtok_r(manifest, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char name[64];
                unsigned trees, features, n;
                assert_int_equal(sscanf(line, "%63s %u %u %u", name, &trees, &features, &n), 4);
                struct risk_forest *f = forest(name);
                size_t l1, l2, l3;
                float *x = slurp(name, ".rows.f32", &l1), *margin = slurp(name, ".margin.f32", &l2);
                float *pd = slurp(name, ".pd.f32", &l3);
                struct kiln_array a = rows_array(x, n, features);
                struct kiln_object obj = { .cls = &risk_model_class, .version = 9, .snapshot = f };
                struct risk_params p = params("m", true);
                struct kiln_result r = { 0 };

                assert_int_equal(kiln_kind_check(K, &p, &a, 1, &obj, NULL), 0);
                assert_int_equal(run(&p, &a, &obj, &r), 0);
                const float *got_pd = kiln_result_find_part(&r, "pd")->data;
                const float *got_m = kiln_result_find_part(&r, "margin")->data;
                for (unsigned i = 0; i < n; i++) {
                        if (got_m[i] != margin[i] || got_pd[i] != pd[i])
                                fail_msg("%s row %u: margin %.9g pd %.9g, XGBoost %.9g %.9g", name, i, got_m[i],
                                         got_pd[i], margin[i], pd[i]);
                        struct risk_view v = risk_view_of(f);
                        assert_true(risk_view_margin(&v, x + (size_t)i * features) ==
                                    risk_forest_margin(f, x + (size_t)i * features));
                }
                assert_int_equal(kiln_result_find(&r, "model_version")->i, 9);
                assert_int_equal(kiln_result_find(&r, "rows")->i, n);
                assert_int_equal(r.n_parts, 2);
                assert_string_equal(r.parts[0].name, "pd");
                kiln_result_clear(&r);
                p.margin = false;
                assert_int_equal(run(&p, &a, &obj, &r), 0);
                assert_int_equal(r.n_parts, 1);
                assert_memory_equal(r.parts[0].data, pd, n * sizeof(float));
                kiln_result_clear(&r);
                rows_checked += n;
                models++;
                free(x);
                free(margin);
                free(pd);
                risk_forest_free(f);
        }
        free(manifest);
        assert_true(models >= 15);
        assert_true(rows_checked > 10000);
}

/* Full blocks go through the AVX-512 scorer where the CPU has it, partial blocks
 * through the scalar one: both give the plain walk's margins, deep trees included. */
static void test_scalar_and_wide_blocks_agree(void **state)
{
        static const char *const names[] = { "exact_d6_t50", "lossguide_t20", "pruned_d6_t10", "hist_d6_t50",
                                             "exact_d1_t1", "stump_extreme" };

        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
                struct risk_forest *f = forest(names[k]);
                size_t len;
                float *x = slurp(names[k], ".rows.f32", &len);
                size_t n = len / (f->n_features * sizeof(float));
                float *wide = malloc(n * sizeof(float)), one;

                assert_true(n >= 2 * RISK_BLOCK_ROWS);
                risk_forest_margins(f, x, n, wide);
                for (size_t i = 0; i < n; i++) {
                        risk_forest_margins(f, x + i * f->n_features, 1, &one);
                        if (one != wide[i] || one != risk_forest_margin(f, x + i * f->n_features))
                                fail_msg("%s row %zu: block %.9g, alone %.9g, plain %.9g", names[k], i, wide[i], one,
                                         risk_forest_margin(f, x + i * f->n_features));
                }
                free(wide);
                free(x);
                risk_forest_free(f);
        }
}

/* A batch mixing one-row jobs of two models, a long job, Altman jobs and a bad one:
 * each result is what the job gives alone. */
static void test_batch_equals_jobs_one_by_one(void **state)
{
        struct risk_forest *fa = forest("exact_d6_t50"), *fb = forest("hist_d6_t50");
        struct kiln_object oa = { .cls = &risk_model_class, .version = 1, .snapshot = fa };
        struct kiln_object ob = { .cls = &risk_model_class, .version = 2, .snapshot = fb };
        size_t len;
        float *x = slurp("exact_d6_t50", ".rows.f32", &len);
        size_t n_rows = len / (8 * sizeof(float));
        enum { N = 300 };
        struct kiln_array arrays[N];
        struct risk_params ps[N];
        struct kiln_task tasks[N], *tp[N];
        struct kiln_result got[N], want[N];
        const float altman[5] = { 0.1f, 0.2f, 0.3f, 0.4f, 0.5f };

        /* The long job (5000 rows, more than a batch merges) tiles the file's rows. */
        float *big = malloc(5000 * 8 * sizeof(float));
        assert_true(n_rows >= 600);
        assert_non_null(big);
        for (size_t i = 0; i < 5000; i++)
                memcpy(big + i * 8, x + (i % n_rows) * 8, 8 * sizeof(float));
        memset(tasks, 0, sizeof(tasks));
        memset(got, 0, sizeof(got));
        memset(want, 0, sizeof(want));
        for (int i = 0; i < N; i++) {
                const struct kiln_object *o = i % 3 == 2 ? &ob : &oa;
                uint64_t rows = i == 7 ? 5000 : i == 8 ? 40 : 1;
                ps[i] = params("m", i % 2 == 0);
                arrays[i] = rows_array(rows > 1000 ? big : x + (size_t)(i % 600) * 8, rows, 8);
                if (i % 50 == 10) {
                        ps[i] = params(i % 100 == 10 ? "altman-z" : "altman-z2", false);
                        arrays[i] = rows_array(altman, 1, i % 100 == 10 ? 5 : 4);
                        o = NULL;
                }
                if (i == 99)
                        arrays[i] = rows_array(x, 1, 7); /* wrong shape: fails alone */
                tasks[i] = (struct kiln_task){ .params = &ps[i], .inputs = &arrays[i], .n_inputs = 1, .object = o,
                                               .result = &got[i] };
                tp[i] = &tasks[i];
        }
        assert_int_equal(risk_run_cpu_batch(tp, N), 0);
        for (int i = 0; i < N; i++) {
                struct kiln_task one = tasks[i];
                one.result = &want[i];
                int r = risk_run_cpu(&one);
                assert_int_equal(tasks[i].status, r);
                if (i == 99) {
                        assert_int_equal(r, -EINVAL);
                        continue;
                }
                assert_int_equal(r, 0);
                assert_int_equal(got[i].n_parts, want[i].n_parts);
                for (int k = 0; k < want[i].n_parts; k++) {
                        assert_string_equal(got[i].parts[k].name, want[i].parts[k].name);
                        assert_int_equal(got[i].parts[k].bytes, want[i].parts[k].bytes);
                        assert_memory_equal(got[i].parts[k].data, want[i].parts[k].data, want[i].parts[k].bytes);
                }
                assert_int_equal(got[i].n_scalars, want[i].n_scalars);
                kiln_result_clear(&got[i]);
                kiln_result_clear(&want[i]);
        }
        free(x);
        free(big);
        risk_forest_free(fa);
        risk_forest_free(fb);
}

static void stop_at_first_progress(struct kiln_exec *ex, double fraction)
{
        (void)fraction;
        atomic_store((atomic_int *)ex->opaque, 1);
}

/* A model of one tree 20,000 splits deep: a row can visit 20,000 nodes, so the stop
 * flag is read every 209 rows (2^22 nodes), not every 16,384. A job of 1,000 rows
 * stopped at its first progress report ends -ECANCELED, alone or in a batch. */
static void test_deep_models_read_the_stop_flag_every_few_rows(void **state)
{
        struct risk_forest *f = forest("deep_chain");
        struct kiln_object o = { .cls = &risk_model_class, .version = 1, .snapshot = f };
        struct risk_params p = params("m", false);
        float *x = calloc(1000 * 8, sizeof(float));
        atomic_int stop = 0;
        struct kiln_exec ex = { .stop = &stop, .progress = stop_at_first_progress, .opaque = &stop };
        struct kiln_result r = { 0 };

        assert_non_null(x);
        assert_true(f->max_depth == 20000);
        for (int i = 0; i < 1000; i++)
                x[i * 8] = 2.0f; /* past every threshold: the whole chain */
        struct kiln_array a = rows_array(x, 1000, 8);
        struct kiln_task t = { .params = &p, .inputs = &a, .n_inputs = 1, .object = &o, .result = &r, .exec = &ex };
        assert_int_equal(risk_run_cpu(&t), -ECANCELED);
        kiln_result_clear(&r);

        /* In a batch, a job of more rows than a check's chunk runs alone. */
        struct kiln_task *tp[1] = { &t };
        stop = 0;
        t.status = 0;
        assert_int_equal(risk_run_cpu_batch(tp, 1), 0);
        assert_int_equal(t.status, -ECANCELED);
        kiln_result_clear(&r);

        /* Not stopped, it scores as XGBoost does (the fixture's own check). */
        t.exec = NULL;
        assert_int_equal(risk_run_cpu(&t), 0);
        kiln_result_clear(&r);
        free(x);
        risk_forest_free(f);
}

/* params.rows as JSON (null = missing) is the binary part byte for byte; a built-in
 * model names no stored object. */
static void test_json_rows_and_builtin_names(void **state)
{
        json_t *in = json_loads("{\"model\":\"altman-z2\",\"rows\":[[0.5,-0.25,1e30,null]]}", 0, NULL);
        json_t *canonical = NULL;
        struct risk_params p;
        struct kiln_error err;
        struct kiln_array arrays[KILN_MAX_INPUTS];
        void *data[KILN_MAX_INPUTS];
        const float want[4] = { 0.5f, -0.25f, 1e30f, NAN };

        assert_int_equal(kiln_params_validate(K, in, &canonical, &p, &err), 0);
        assert_null(json_object_get(canonical, "rows"));
        assert_false(json_object_get(canonical, "margin") == NULL);
        assert_null(kiln_params_object_name(K, canonical));
        assert_int_equal(kiln_inputs_from_params(K, in, 1 << 20, arrays, data, &err), 1);
        assert_int_equal(arrays[0].shape[0], 1);
        assert_int_equal(arrays[0].shape[1], 4);
        assert_memory_equal(arrays[0].data, want, sizeof(want)); /* the same NaN bits as NAN */
        refused(&p, arrays, 1, NULL, "params.rows", "missing");
        free(data[0]);
        json_decref(canonical);
        json_decref(in);

        in = json_loads("{\"model\":\"my-model\"}", 0, NULL);
        assert_int_equal(kiln_params_validate(K, in, &canonical, &p, &err), 0);
        assert_string_equal(kiln_params_object_name(K, canonical), "my-model");
        json_decref(canonical);
        json_decref(in);
        in = json_loads("{\"model\":\"altman-z\",\"depth\":3}", 0, NULL);
        assert_int_equal(kiln_params_validate(K, in, &canonical, &p, &err), -EINVAL);
        assert_string_equal(err.field, "params.depth");
        json_decref(in);
        in = json_loads("{\"rows\":[[1]]}", 0, NULL);
        assert_int_equal(kiln_params_validate(K, in, &canonical, &p, &err), -EINVAL);
        assert_string_equal(err.field, "params.model");
        json_decref(in);
}

/* The GPU parity and benchmark cases are valid jobs, and the kernel's way of
 * scoring a row (risk_view_margin, one row at a time) gives the CPU's margins. */
static void test_gpu_cases_are_valid_jobs(void **state)
{
        const struct kiln_kind_tests *kt = &kiln_kind_tests_risk_score;
        struct kiln_cases *cs = NULL;

        assert_ptr_equal(kt->kind, K);
        assert_int_equal(kt->parity(&cs), 0);
        assert_true(cs->n > 40);
        for (size_t i = 0; i < cs->n; i++) {
                const struct kiln_case *c = &cs->cases[i];
                struct kiln_error err = { "", "" };
                struct kiln_result r = { 0 };
                struct kiln_task t = { .params = c->params, .inputs = c->inputs, .n_inputs = c->n_inputs,
                                       .object = c->object, .result = &r };
                if (kiln_kind_check(K, c->params, c->inputs, c->n_inputs, c->object, &err) < 0)
                        fail_msg("case %zu (%s): %s %s", i, c->label, err.field, err.message);
                assert_int_equal(risk_run_cpu(&t), 0);
                const struct kiln_part *m = kiln_result_find_part(&r, "margin");
                if (m) {
                        struct risk_view v = risk_view_of(c->object->snapshot);
                        const float *x = c->inputs[0].data;
                        for (uint64_t k = 0; k < m->shape[0]; k++)
                                assert_true(((float *)m->data)[k] == risk_view_margin(&v, x + k * c->inputs[0].shape[1]));
                }
                kiln_result_clear(&r);
        }
        kiln_cases_free(cs);
        assert_int_equal(kt->bench(2, 3, &cs), 0);
        assert_int_equal(cs->n, 3);
        assert_int_equal(cs->cases[2].work, 16);
        for (size_t i = 0; i < cs->n; i++)
                assert_int_equal(kiln_kind_check(K, cs->cases[i].params, cs->cases[i].inputs, 1, cs->cases[i].object,
                                                 NULL),
                                 0);
        kiln_cases_free(cs);
        assert_int_equal(kt->bench(11, 1, &cs), -ERANGE);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_schema_is_valid_and_names_builtins),
                cmocka_unit_test(test_altman_z_and_zones),
                cmocka_unit_test(test_altman_z2_and_zones),
                cmocka_unit_test(test_altman_refusals),
                cmocka_unit_test(test_too_many_rows_are_refused),
                cmocka_unit_test(test_stored_model_refusals),
                cmocka_unit_test(test_rows_are_checked_against_the_meta_at_submission),
                cmocka_unit_test(test_stored_models_score_as_xgboost),
                cmocka_unit_test(test_scalar_and_wide_blocks_agree),
                cmocka_unit_test(test_batch_equals_jobs_one_by_one),
                cmocka_unit_test(test_deep_models_read_the_stop_flag_every_few_rows),
                cmocka_unit_test(test_json_rows_and_builtin_names),
                cmocka_unit_test(test_gpu_cases_are_valid_jobs),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
