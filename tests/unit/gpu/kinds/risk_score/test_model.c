/* risk.model: XGBoost JSON models compile into forests that score exactly as
 * XGBoost does, and everything the scorer cannot reproduce is refused naming the field.
 *
 * The models, rows and XGBoost's own predictions are written at test time by
 * gen_models.py (the CTest fixture unit/risk_model_data) into $KILN_RISK_MODELS. */
#include <errno.h>
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

#include "zeros_json.h"
#include "risk_score/model.h"

static const char *data_dir(void)
{
        const char *d = getenv("KILN_RISK_MODELS");

        if (!d || !*d)
                fail_msg("KILN_RISK_MODELS is not set: run through ctest (fixture unit/risk_model_data)");
        return d;
}

/* Reads DIR/NAME+SUFFIX whole (malloc'd); fails the test when it is missing. */
static void *slurp(const char *name, const char *suffix, size_t *ret_len)
{
        char path[1024];
        FILE *f;
        long n;
        void *buf;

        snprintf(path, sizeof(path), "%s/%s%s", data_dir(), name, suffix);
        f = fopen(path, "rb");
        if (!f)
                fail_msg("cannot open %s", path);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        assert_true(n >= 0);
        rewind(f);
        buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        *ret_len = (size_t)n;
        return buf;
}

static struct risk_forest *compile_file(const char *name, const char *suffix)
{
        struct kiln_error err = { 0 };
        struct risk_forest *f = NULL;
        size_t len;
        void *json = slurp(name, suffix, &len);
        int rc = risk_forest_compile(json, len, &f, &err);

        if (rc < 0)
                fail_msg("%s%s refused: %s: %s", name, suffix, err.field, err.message);
        free(json);
        return f;
}

struct model_case {
        char name[64];
        unsigned trees, features, rows;
};

/* The models listed in models.txt; at least the 15 the generator writes. */
static size_t read_manifest(struct model_case *cases, size_t max)
{
        size_t len, n = 0;
        char *text = slurp("models", ".txt", &len), *save = NULL;

        text[len] = '\0';
        for (char *line = strtok_r(text, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save)) {
                assert_int_equal(sscanf(line, "%63s %u %u %u", cases[n].name, &cases[n].trees, &cases[n].features,
                                        &cases[n].rows),
                                 4);
                n++;
        }
        free(text);
        assert_true(n >= 15);
        return n;
}

static void test_margins_and_probabilities_match_xgboost(void **state)
{
        struct model_case cases[64];
        size_t n_cases = read_manifest(cases, 64), checked = 0;

        for (size_t c = 0; c < n_cases; c++) {
                struct risk_forest *f = compile_file(cases[c].name, ".json");
                size_t rows_len, margin_len, pd_len;
                float *rows = slurp(cases[c].name, ".rows.f32", &rows_len);
                float *margin = slurp(cases[c].name, ".margin.f32", &margin_len);
                float *pd = slurp(cases[c].name, ".pd.f32", &pd_len);
                unsigned exact_pd = 0;

                assert_int_equal(f->n_trees, cases[c].trees);
                assert_int_equal(f->n_features, cases[c].features);
                assert_int_equal(rows_len, (size_t)cases[c].rows * cases[c].features * sizeof(float));
                assert_int_equal(margin_len, (size_t)cases[c].rows * sizeof(float));
                assert_int_equal(pd_len, margin_len);
                for (unsigned i = 0; i < cases[c].rows; i++) {
                        float m = risk_forest_margin(f, rows + (size_t)i * f->n_features);
                        float p = risk_sigmoid(m);
                        if (m != margin[i])
                                fail_msg("%s row %u: margin %.9g, XGBoost %.9g", cases[c].name, i, m, margin[i]);
                        if (!(fabsf(p - pd[i]) <= 1e-6f))
                                fail_msg("%s row %u: pd %.9g, XGBoost %.9g", cases[c].name, i, p, pd[i]);
                        exact_pd += p == pd[i];
                        checked++;
                }
                /* Same libm, same operations: the probabilities agree to the bit as well. */
                assert_int_equal(exact_pd, cases[c].rows);
                free(rows);
                free(margin);
                free(pd);
                risk_forest_free(f);
        }
        assert_true(checked > 10000);
}

/* XGBoost 3.x writes base_score as "[5E-1]": the same model, the same forest. */
static void test_base_score_in_brackets_gives_the_same_forest(void **state)
{
        struct model_case cases[64];
        size_t n_cases = read_manifest(cases, 64);

        for (size_t c = 0; c < n_cases; c++) {
                struct risk_forest *a = compile_file(cases[c].name, ".json");
                struct risk_forest *b = compile_file(cases[c].name, ".v3.json");

                assert_true(a->base_score == b->base_score);
                assert_true(a->base_margin == b->base_margin);
                assert_int_equal(a->n_trees, b->n_trees);
                assert_int_equal(a->n_nodes, b->n_nodes);
                assert_memory_equal(a->roots, b->roots, a->n_trees * sizeof(uint32_t));
                assert_memory_equal(a->nodes, b->nodes, a->n_nodes * sizeof(struct risk_node));
                risk_forest_free(a);
                risk_forest_free(b);
        }
}

/* The base margin is XGBoost's float32 logit; 0.3 is not a round number in float32. */
static void test_base_margin_is_the_float32_logit(void **state)
{
        struct risk_forest *f = compile_file("base_score_0.3", ".json");

        assert_true(f->base_score == 0.3f);
        assert_true(f->base_margin == -logf(1.0f / 0.3f - 1.0f));
        assert_true(fabs(f->base_margin - log(0.3 / 0.7)) < 1e-6);
        risk_forest_free(f);
        f = compile_file("exact_d1_t1", ".json");
        assert_true(f->base_margin == 0.0f);
        risk_forest_free(f);
        /* Nine significant digits (its scores are checked against XGBoost's with
         * every case's). */
        f = compile_file("base_score_nine_digits", ".src.json");
        assert_true(f->base_score == 0.0300000011f);
        risk_forest_free(f);
}

/* A forest of many trees far shallower than its deepest unrolls fewer levels, so
 * its block stays near its nodes' size; one deep tree alone unrolls all it can.
 * (Both score as XGBoost does: test_margins_and_probabilities_match_xgboost.) */
static void test_tops_never_outweigh_the_nodes(void **state)
{
        struct risk_forest *deep = NULL, *many = NULL;
        struct kiln_error err;
        size_t len;
        void *json = slurp("deep_d9_t1", ".json", &len);

        assert_int_equal(risk_forest_compile(json, len, &deep, &err), 0);
        free(json);
        assert_true(deep->max_depth >= 8);
        assert_int_equal(deep->top_depth, 8);
        json = slurp("many_shallow", ".json", &len);
        assert_int_equal(risk_forest_compile(json, len, &many, &err), 0);
        free(json);
        assert_int_equal(many->n_trees, 20001);
        assert_int_equal(many->max_depth, deep->max_depth);
        assert_true(many->top_depth < 4);
        /* 20,001 tops of 8 levels would take 61 MB. */
        assert_true(many->bytes < ((uint64_t)4 << 20));
        risk_forest_free(deep);
        risk_forest_free(many);
}

/* Breadth first, children adjacent and after their parent, every node reached once;
 * a pruned model's deleted nodes are dropped. */
static void test_trees_are_laid_out_breadth_first(void **state)
{
        static const char *const names[] = { "exact_d6_t50", "lossguide_t20", "pruned_d6_t10" };

        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
                struct risk_forest *f = compile_file(names[k], ".json");
                size_t len;
                char *text = slurp(names[k], ".json", &len);
                json_t *root = json_loadb(text, len, 0, NULL);
                json_t *trees = json_object_get(
                        json_object_get(json_object_get(json_object_get(root, "learner"), "gradient_booster"), "model"),
                        "trees");
                uint64_t live = 0, deleted = 0;

                assert_non_null(trees);
                for (size_t t = 0; t < json_array_size(trees); t++) {
                        json_t *tp = json_object_get(json_array_get(trees, t), "tree_param");
                        live += strtoull(json_string_value(json_object_get(tp, "num_nodes")), NULL, 10);
                        deleted += strtoull(json_string_value(json_object_get(tp, "num_deleted")), NULL, 10);
                }
                assert_int_equal(f->n_nodes, live - deleted);
                if (strcmp(names[k], "pruned_d6_t10") == 0)
                        assert_true(deleted > 0);
                for (uint32_t t = 0; t < f->n_trees; t++) {
                        uint32_t start = f->roots[t], end = t + 1 < f->n_trees ? f->roots[t + 1] : f->n_nodes;
                        uint32_t next = start + 1; /* where the next pair of children must start */
                        for (uint32_t i = start; i < end; i++) {
                                const struct risk_node *nd = &f->nodes[i];
                                if (!nd->left)
                                        continue;
                                assert_int_equal(nd->left, next);
                                assert_true(nd->left + 1 < end);
                                assert_true((nd->feature & RISK_NODE_FEATURE_MASK) < f->n_features);
                                next += 2;
                        }
                        assert_int_equal(next, end);
                }
                json_decref(root);
                free(text);
                risk_forest_free(f);
        }
}

/* The generic class interface gives the same forest and describes it. */
static void test_class_validates_compiles_and_describes(void **state)
{
        struct kiln_error err = { 0 };
        struct kiln_object_info info = { 0 };
        size_t len;
        void *json = slurp("exact_d3_t10", ".json", &len);
        struct kiln_object_put put = { .blob = json, .blob_bytes = len };
        struct kiln_object_source src = { .blob = json, .blob_bytes = len };
        void *snapshot = NULL;
        const struct risk_forest *f;

        assert_string_equal(risk_model_class.name, "risk.model");
        assert_int_equal(risk_model_class.validate(&put, &info, &err), 0);
        assert_int_equal(info.trees, 10);
        assert_int_equal(info.features, 8);
        assert_int_equal(info.count, 0);
        assert_int_equal(risk_model_class.compile(&src, &snapshot, &err), 0);
        f = snapshot;
        assert_int_equal(f->n_trees, 10);
        assert_true(risk_model_class.snapshot_bytes(snapshot) >= sizeof(*f) + f->n_nodes * sizeof(struct risk_node));
        memset(&info, 0xff, sizeof(info));
        risk_model_class.describe(snapshot, &info);
        assert_int_equal(info.trees, 10);
        assert_int_equal(info.features, 8);
        assert_int_equal(info.dim, 0);
        risk_model_class.release(snapshot);
        risk_model_class.release(NULL);
        free(json);
}

#define T0 "learner.gradient_booster.model.trees[0]."
#define BS "learner.learner_model_param.base_score"

static const struct {
        const char *name;
        const char *field;
} refusals[] = {
        { "gblinear", "learner.gradient_booster.name" },
        { "dart", "learner.gradient_booster.name" },
        { "reg_logistic", "learner.objective.name" },
        { "softprob", "learner.objective.name" },
        { "nul_booster", "learner.gradient_booster.name" },
        { "nul_objective", "learner.objective.name" },
        { "categorical", T0 "split_type" },
        { "ubjson", "model" },
        { "not_json", "model" },
        { "no_learner", "learner" },
        { "base_score_one", BS },
        { "base_score_zero", BS },
        { "base_score_text", BS },
        { "base_score_two", BS },
        { "base_score_empty", BS },
        { "base_score_number", BS },
        { "base_score_ten_digits", BS },
        { "base_score_blank", BS },
        { "num_class", "learner.learner_model_param.num_class" },
        { "num_feature", "learner.learner_model_param.num_feature" },
        { "num_target", "learner.learner_model_param.num_target" },
        { "tree_info", "learner.gradient_booster.model.tree_info" },
        { "num_trees", "learner.gradient_booster.model.gbtree_model_param.num_trees" },
        { "split_type", "learner.gradient_booster.model.trees[2].split_type" },
        { "categories", T0 "categories" },
        { "short_array", "learner.gradient_booster.model.trees[1].right_children" },
        { "num_nodes", "learner.gradient_booster.model.trees[1].tree_param.num_nodes" },
        { "child_range", T0 "left_children" },
        { "child_root", T0 "right_children" },
        { "cycle", T0 "left_children" },
        { "one_child", T0 "right_children" },
        { "split_feature", T0 "split_indices" },
        { "split_string", T0 "split_conditions" },
        { "split_huge", T0 "split_conditions" },
        { "split_nan", T0 "split_conditions" },
        { "default_left", T0 "default_left" },
        { "leaf_vector", T0 "tree_param.size_leaf_vector" },
};

static void test_unsupported_models_are_refused_naming_the_field(void **state)
{
        for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
                char name[64];
                size_t len;
                void *json;
                struct kiln_error err = { 0 };
                struct kiln_object_info info = { .trees = 77 };
                struct risk_forest *f = NULL;
                struct kiln_object_put put;

                snprintf(name, sizeof(name), "refuse_%s", refusals[i].name);
                json = slurp(name, ".json", &len);
                assert_int_equal(risk_forest_compile(json, len, &f, &err), -EINVAL);
                assert_null(f);
                if (strcmp(err.field, refusals[i].field) != 0)
                        fail_msg("%s: field %s (%s), expected %s", name, err.field, err.message, refusals[i].field);
                assert_true(strlen(err.message) > 10);
                put = (struct kiln_object_put){ .blob = json, .blob_bytes = len };
                memset(&err, 0, sizeof(err));
                assert_int_equal(risk_model_class.validate(&put, &info, &err), -EINVAL);
                assert_string_equal(err.field, refusals[i].field);
                assert_int_equal(info.trees, 77); /* untouched on failure */
                free(json);
        }
}

static void test_the_refusal_names_what_is_unsupported(void **state)
{
        struct kiln_error err = { 0 };
        struct risk_forest *f = NULL;
        size_t len;
        void *json = slurp("refuse_dart", ".json", &len);

        assert_int_equal(risk_forest_compile(json, len, &f, &err), -EINVAL);
        assert_non_null(strstr(err.message, "\"dart\""));
        free(json);
        json = slurp("refuse_softprob", ".json", &len);
        assert_int_equal(risk_forest_compile(json, len, &f, &err), -EINVAL);
        assert_non_null(strstr(err.message, "multi:softprob"));
        free(json);
}

/* NaN and Infinity tokens (XGBoost writes them for non-finite floats) in statistics the
 * scorer does not read, or inside strings, leave the model as it was. */
static void test_nonfinite_statistics_are_ignored(void **state)
{
        struct risk_forest *a = compile_file("exact_d3_t10", ".json");
        struct risk_forest *b = compile_file("accept_stats_nan", ".json");
        size_t len;
        char *text = slurp("accept_stats_nan", ".json", &len);

        text[len] = '\0';
        assert_non_null(strstr(text, "\"loss_changes\": [NaN"));
        assert_non_null(strstr(text, "Infinity"));
        assert_int_equal(a->n_nodes, b->n_nodes);
        assert_true(a->base_margin == b->base_margin);
        assert_memory_equal(a->nodes, b->nodes, a->n_nodes * sizeof(struct risk_node));
        free(text);
        risk_forest_free(a);
        risk_forest_free(b);
}

static void test_empty_upload_is_refused(void **state)
{
        struct kiln_error err = { 0 };
        struct risk_forest *f = NULL;

        assert_int_equal(risk_forest_compile(NULL, 0, &f, &err), -EINVAL);
        assert_string_equal(err.field, "model");
        assert_int_equal(risk_forest_compile("[]", 2, &f, &err), -EINVAL);
        assert_string_equal(err.field, "model");
        assert_int_equal(risk_forest_compile("{}", 2, &f, NULL), -EINVAL);
        assert_null(f);
}

/* A file of a million one-digit values would take some 50 MB to parse from 2 MB:
 * more than risk_model_parse_bytes allows, so it is refused naming the model, before
 * it takes that much. */
static void test_a_model_that_takes_too_much_memory_to_read_is_refused(void **state)
{
        size_t n = 1000000, len;
        char *text = zeros_json(n, &len);
        struct kiln_error err = { 0 };
        struct risk_forest *f = NULL;

        (void)state;
        assert_non_null(text);
        assert_int_equal(risk_forest_compile(text, len, &f, &err), -EINVAL);
        assert_null(f);
        assert_string_equal(err.field, "model");
        assert_non_null(strstr(err.message, "would take more than"));
        assert_true(risk_model_parse_bytes(len) == 8 * len + ((size_t)4 << 20));
        assert_true(risk_model_work_bytes(len) == 11 * len + ((size_t)5 << 20));
        assert_true(risk_model_work_bytes(SIZE_MAX / 2) == SIZE_MAX);
        free(text);
}

/* The meta the store keeps for a model (listing and the submit-time feature check). */
static void test_model_meta_roundtrips(void **state)
{
        uint8_t meta[RISK_MODEL_META_BYTES];
        uint64_t trees;
        uint32_t features;

        risk_model_meta_encode(0x0102030405ull, 4096, meta);
        assert_int_equal(risk_model_meta_decode(meta, sizeof(meta), &trees, &features), 0);
        assert_int_equal(trees, 0x0102030405ull);
        assert_int_equal(features, 4096);
        assert_int_equal(risk_model_meta_decode(meta, sizeof(meta) - 1, &trees, &features), -EINVAL);
        meta[0] = 2;
        assert_int_equal(risk_model_meta_decode(meta, sizeof(meta), &trees, &features), -EINVAL);
        assert_int_equal(risk_model_meta_decode(NULL, 0, &trees, &features), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_margins_and_probabilities_match_xgboost),
                cmocka_unit_test(test_base_score_in_brackets_gives_the_same_forest),
                cmocka_unit_test(test_base_margin_is_the_float32_logit),
                cmocka_unit_test(test_tops_never_outweigh_the_nodes),
                cmocka_unit_test(test_trees_are_laid_out_breadth_first),
                cmocka_unit_test(test_class_validates_compiles_and_describes),
                cmocka_unit_test(test_unsupported_models_are_refused_naming_the_field),
                cmocka_unit_test(test_the_refusal_names_what_is_unsupported),
                cmocka_unit_test(test_nonfinite_statistics_are_ignored),
                cmocka_unit_test(test_empty_upload_is_refused),
                cmocka_unit_test(test_a_model_that_takes_too_much_memory_to_read_is_refused),
                cmocka_unit_test(test_model_meta_roundtrips),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
