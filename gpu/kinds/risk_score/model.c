/* The "risk.model" object class: validation of XGBoost JSON models and their
 * compilation into a flat forest (model.h, forest_math.h).
 *
 * The JSON layout (the same in XGBoost 1.x, 2.x and 3.x for what is read here):
 *   learner.gradient_booster  {name: "gbtree", model: {trees: [...], tree_info: [...],
 *                              gbtree_model_param: {num_trees: "N"}}}
 *   learner.objective.name    "binary:logistic"
 *   learner.learner_model_param {num_feature: "F", num_class: "0", base_score: "5E-1"
 *                              (3.x: "[5E-1]"), num_target: "1"}
 *   trees[t]                  parallel arrays over nodes: left_children, right_children
 *                             (-1 at a leaf), split_indices, split_conditions (the leaf
 *                             value at a leaf), default_left; split_type and categories
 *                             for categorical splits (refused); tree_param.num_nodes.
 * Integers in *_param objects are strings. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "risk_score/forest.h"
#include "risk_score/model.h"
#include "risk_score/xjson.h"

#define BOOSTER "learner.gradient_booster"
#define TREES BOOSTER ".model.trees"
#define PARAM "learner.learner_model_param"

static int fail_nomem(struct kiln_error *err)
{
        if (err) {
                snprintf(err->field, sizeof(err->field), "model");
                snprintf(err->message, sizeof(err->message), "out of memory while compiling the model");
        }
        return -ENOMEM;
}

/* The member `key` of object o, or NULL (also when o is not an object). */
static const struct xj_value *member(const struct xj_value *o, const char *key)
{
        return xj_get(o, key);
}

/* A non-negative integer written as XGBoost writes its parameters (a string of
 * decimal digits) or as a JSON integer, at most max. Returns 0 or -EINVAL. */
static int param_uint(const struct xj_value *v, uint64_t max, uint64_t *ret)
{
        const char *s;
        size_t n;
        uint64_t x = 0;

        if (xj_is(v, XJ_INT)) {
                int64_t i = v->i;
                if (i < 0 || (uint64_t)i > max)
                        return -EINVAL;
                *ret = (uint64_t)i;
                return 0;
        }
        if (!xj_is(v, XJ_STRING))
                return -EINVAL;
        s = v->s;
        n = v->n;
        if (n == 0 || n > 19)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                x = x * 10 + (uint64_t)(s[i] - '0');
        }
        if (x > max)
                return -EINVAL;
        *ret = x;
        return 0;
}

/* An optional parameter: absent gives `def`. */
static int param_uint_opt(const struct xj_value *o, const char *key, uint64_t def, uint64_t max, uint64_t *ret)
{
        const struct xj_value *v = member(o, key);

        if (!v) {
                *ret = def;
                return 0;
        }
        return param_uint(v, max, ret);
}

/* Significant digits of the decimal number in s (leading zeros not counted,
 * trailing ones counted), up to its exponent. */
static unsigned significant_digits(const char *s)
{
        unsigned n = 0;
        bool started = false;

        for (; *s && *s != 'e' && *s != 'E'; s++) {
                if (*s < '0' || *s > '9')
                        continue;
                started = started || *s != '0';
                n += started;
        }
        return n;
}

/* base_score: "5E-1" (XGBoost 1.x, 2.x) or "[5E-1]" (3.x), one float32 in (0, 1),
 * parsed straight to float32 as XGBoost does. XGBoost 1.7 reads a text with
 * more than 9 significant digits, or with blanks, as its default 0.5 without a
 * word (it writes at most 9 itself): such a text is refused rather than scored
 * otherwise than XGBoost would. */
#define BASE_SCORE_DIGITS 9
static int parse_base_score(const struct xj_value *v, float *ret_score, float *ret_margin, struct kiln_error *err)
{
        const char *field = PARAM ".base_score";
        char buf[64];
        const char *s;
        size_t n;
        char *end;
        float b;

        if (!xj_is(v, XJ_STRING))
                return kiln_error_set(err, field, "%s must be a string such as \"5E-1\" or \"[5E-1]\"", field);
        s = v->s;
        n = v->n;
        if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
                s++;
                n -= 2;
        }
        if (n == 0 || n >= sizeof(buf) || memchr(s, ',', n))
                return kiln_error_set(err, field, "%s must hold one number, such as \"5E-1\" or \"[5E-1]\"", field);
        memcpy(buf, s, n);
        buf[n] = '\0';
        if (strpbrk(buf, " \t\r\n\f\v"))
                return kiln_error_set(err, field, "%s \"%s\" must be a number without blanks", field, buf);
        if (significant_digits(buf) > BASE_SCORE_DIGITS)
                return kiln_error_set(err, field,
                                      "%s \"%s\" has more than %d significant digits, which XGBoost reads as its "
                                      "default 0.5; round it to %d (XGBoost writes at most %d)",
                                      field, buf, BASE_SCORE_DIGITS, BASE_SCORE_DIGITS, BASE_SCORE_DIGITS);
        errno = 0;
        b = strtof(buf, &end);
        if (end == buf || *end || !(b > 0.0f && b < 1.0f))
                return kiln_error_set(err, field, "%s \"%s\" must be a probability strictly between 0 and 1", field,
                                      buf);
        if (!isfinite(risk_base_margin(b)))
                return kiln_error_set(err, field, "%s \"%s\" is too close to 0 or 1 for a finite margin", field, buf);
        *ret_score = b;
        *ret_margin = risk_base_margin(b);
        return 0;
}

/* What the learner says, checked in this order: booster, objective, parameters. */
struct model_src {
        const struct xj_value *trees;
        size_t n_trees;
        uint32_t n_features;
        float base_score, base_margin;
};

static int check_learner(const struct xj_value *root, struct model_src *ret, struct kiln_error *err)
{
        const struct xj_value *learner = member(root, "learner");
        const struct xj_value *booster = member(learner, "gradient_booster");
        const struct xj_value *objective = member(learner, "objective");
        const struct xj_value *lmp = member(learner, "learner_model_param");
        const struct xj_value *model, *info, *name;
        uint64_t features, num_class, num_target, num_trees;
        const char *s;
        int r;

        if (!xj_is(root, XJ_OBJECT))
                return kiln_error_set(err, "model", "the model must be a JSON object (an XGBoost JSON model)");
        if (!xj_is(learner, XJ_OBJECT))
                return kiln_error_set(err, "learner",
                                      "the model has no \"learner\" object; is it an XGBoost JSON model?");
        if (!xj_is(booster, XJ_OBJECT))
                return kiln_error_set(err, BOOSTER, "%s must be an object", BOOSTER);
        name = member(booster, "name");
        if (!xj_is(name, XJ_STRING))
                return kiln_error_set(err, BOOSTER ".name", "%s.name must be a string", BOOSTER);
        s = name->s;
        if (name->n != strlen("gbtree") || strcmp(s, "gbtree") != 0) /* no NUL inside either */
                return kiln_error_set(err, BOOSTER ".name",
                                      "booster \"%.64s\" is not supported: only gbtree models are", s);
        name = member(objective, "name");
        if (!xj_is(name, XJ_STRING))
                return kiln_error_set(err, "learner.objective.name", "learner.objective.name must be a string");
        s = name->s;
        if (name->n != strlen("binary:logistic") || strcmp(s, "binary:logistic") != 0)
                return kiln_error_set(err, "learner.objective.name",
                                      "objective \"%.64s\" is not supported: only binary:logistic models are", s);

        if (!xj_is(lmp, XJ_OBJECT))
                return kiln_error_set(err, PARAM, "%s must be an object", PARAM);
        if (param_uint(member(lmp, "num_feature"), RISK_NODE_FEATURE_MASK, &features) < 0 || features == 0)
                return kiln_error_set(err, PARAM ".num_feature", "%s.num_feature must be an integer from 1 to %u",
                                      PARAM, RISK_NODE_FEATURE_MASK);
        if (param_uint_opt(lmp, "num_class", 0, UINT32_MAX, &num_class) < 0 || num_class > 1)
                return kiln_error_set(err, PARAM ".num_class",
                                      "%s.num_class must be 0 or 1: multi-class models are not supported", PARAM);
        if (param_uint_opt(lmp, "num_target", 1, UINT32_MAX, &num_target) < 0 || num_target > 1)
                return kiln_error_set(err, PARAM ".num_target",
                                      "%s.num_target must be 1: multi-target models are not supported", PARAM);
        r = parse_base_score(member(lmp, "base_score"), &ret->base_score, &ret->base_margin, err);
        if (r < 0)
                return r;

        model = member(booster, "model");
        ret->trees = member(model, "trees");
        info = member(model, "tree_info");
        if (!xj_is(ret->trees, XJ_ARRAY))
                return kiln_error_set(err, TREES, "%s must be an array", TREES);
        ret->n_trees = xj_size(ret->trees);
        if (ret->n_trees > UINT32_MAX)
                return kiln_error_set(err, TREES, "the model has more than %u trees", UINT32_MAX);
        if (!xj_is(info, XJ_ARRAY) || xj_size(info) != ret->n_trees)
                return kiln_error_set(err, BOOSTER ".model.tree_info",
                                      "%s.model.tree_info must be an array of %zu entries", BOOSTER, ret->n_trees);
        for (size_t i = 0; i < ret->n_trees; i++) {
                const struct xj_value *g = xj_at(info, i);
                if (!xj_is(g, XJ_INT) || g->i != 0)
                        return kiln_error_set(err, BOOSTER ".model.tree_info",
                                              "tree %zu belongs to an output group other than 0: only one "
                                              "output is supported",
                                              i);
        }
        if (param_uint_opt(member(model, "gbtree_model_param"), "num_trees", ret->n_trees, UINT32_MAX,
                           &num_trees) < 0 || num_trees != ret->n_trees)
                return kiln_error_set(err, BOOSTER ".model.gbtree_model_param.num_trees",
                                      "gbtree_model_param.num_trees does not match the %zu trees", ret->n_trees);
        ret->n_features = (uint32_t)features;
        return 0;
}

/* One tree's parallel arrays (borrowed from the parsed document). */
struct tree_src {
        const struct xj_value *left, *right, *index, *cond, *dleft;
        size_t n;
};

static int tree_fail(struct kiln_error *err, size_t t, const char *name, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* kiln_error_set() with the field "learner.gradient_booster.model.trees[t].name". */
static int tree_fail(struct kiln_error *err, size_t t, const char *name, const char *fmt, ...)
{
        va_list ap;

        if (err) {
                snprintf(err->field, sizeof(err->field), TREES "[%zu]%s%s", t, *name ? "." : "", name);
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

/* True when the optional array `key` of the tree holds a non-zero entry (split_type)
 * or any entry (categories). */
static bool has_categorical(const struct xj_value *tree, const char *key, bool any)
{
        const struct xj_value *a = member(tree, key);

        for (size_t i = 0; xj_is(a, XJ_ARRAY) && i < xj_size(a); i++) {
                const struct xj_value *v = xj_at(a, i);
                if (any || !xj_is(v, XJ_INT) || v->i != 0)
                        return true;
        }
        return false;
}

static int tree_arrays(const struct xj_value *tree, size_t t, struct tree_src *ret, struct kiln_error *err)
{
        static const char *const names[] = { "left_children", "right_children", "split_indices",
                                             "split_conditions", "default_left" };
        const struct xj_value *arrays[5];
        const struct xj_value *tp = member(tree, "tree_param");
        uint64_t num_nodes, leaf_vector;

        if (!xj_is(tree, XJ_OBJECT))
                return tree_fail(err, t, "", "tree %zu must be an object", t);
        if (has_categorical(tree, "split_type", false))
                return tree_fail(err, t, "split_type", "tree %zu has categorical splits, which are not supported", t);
        if (has_categorical(tree, "categories", true) || has_categorical(tree, "categories_nodes", true))
                return tree_fail(err, t, "categories", "tree %zu has categorical splits, which are not supported", t);
        for (int i = 0; i < 5; i++) {
                arrays[i] = member(tree, names[i]);
                if (!xj_is(arrays[i], XJ_ARRAY))
                        return tree_fail(err, t, names[i], "tree %zu has no %s array", t, names[i]);
        }
        ret->n = xj_size(arrays[0]);
        if (ret->n == 0 || ret->n > RISK_NODE_FEATURE_MASK)
                return tree_fail(err, t, names[0], "tree %zu must have 1 to %u nodes", t, RISK_NODE_FEATURE_MASK);
        for (int i = 1; i < 5; i++)
                if (xj_size(arrays[i]) != ret->n)
                        return tree_fail(err, t, names[i], "tree %zu has %zu %s but %zu left_children", t,
                                         xj_size(arrays[i]), names[i], ret->n);
        if (param_uint_opt(tp, "num_nodes", ret->n, UINT32_MAX, &num_nodes) < 0 || num_nodes != ret->n)
                return tree_fail(err, t, "tree_param.num_nodes", "tree %zu: num_nodes does not match its %zu nodes",
                                 t, ret->n);
        if (param_uint_opt(tp, "size_leaf_vector", 0, UINT32_MAX, &leaf_vector) < 0 || leaf_vector > 1)
                return tree_fail(err, t, "tree_param.size_leaf_vector",
                                 "tree %zu has vector leaves, which are not supported", t);
        ret->left = arrays[0];
        ret->right = arrays[1];
        ret->index = arrays[2];
        ret->cond = arrays[3];
        ret->dleft = arrays[4];
        return 0;
}

static bool int_at(const struct xj_value *a, size_t i, int64_t *ret)
{
        const struct xj_value *v = xj_at(a, i);

        if (xj_is(v, XJ_INT)) {
                *ret = v->i;
                return true;
        }
        if (xj_is(v, XJ_BOOL)) {
                *ret = v->b;
                return true;
        }
        return false;
}

/* Checks one child reference of node o: a node of the tree other than the root, not
 * reached before. */
static int check_child(const struct tree_src *s, size_t t, const char *name, uint32_t o, int64_t c,
                       uint8_t *seen, struct kiln_error *err)
{
        if (c < 1 || (uint64_t)c >= s->n)
                return tree_fail(err, t, name, "tree %zu: node %u's child %lld is not a node of the tree (1..%zu)", t,
                                 o, (long long)c, s->n - 1);
        if (seen[c])
                return tree_fail(err, t, name, "tree %zu: node %lld is reached twice (a cycle or a shared node)", t,
                                 (long long)c);
        seen[c] = 1;
        return 0;
}

/* Walks tree t breadth first from its root (node 0), checking every node reached;
 * nodes never reached (pruned) are ignored. With `out`, writes the nodes at out[0..)
 * with child indices offset by `base`. `queue` and `seen` are scratch of s->n entries.
 * Returns the number of nodes reached, or -EINVAL. */
static long long tree_walk(const struct tree_src *s, size_t t, uint32_t n_features, uint32_t *queue, uint8_t *seen,
                           struct risk_node *out, uint32_t base, uint32_t *ret_depth, struct kiln_error *err)
{
        uint32_t head = 0, tail = 1, level_end = 1, depth = 0;

        memset(seen, 0, s->n);
        queue[0] = 0;
        seen[0] = 1;
        for (; head < tail; head++) {
                uint32_t o = queue[head];
                int64_t l, r, f, dl;
                const struct xj_value *cv = xj_at(s->cond, o);
                float v;
                int rc;

                if (head == level_end) {
                        depth++;
                        level_end = tail;
                }
                if (!int_at(s->left, o, &l))
                        return tree_fail(err, t, "left_children", "tree %zu: entry %u is not an integer", t, o);
                if (!int_at(s->right, o, &r))
                        return tree_fail(err, t, "right_children", "tree %zu: entry %u is not an integer", t, o);
                if (!xj_is_number(cv))
                        return tree_fail(err, t, "split_conditions", "tree %zu: entry %u is not a number", t, o);
                v = xj_float(cv); /* straight to float32, as XGBoost reads it */
                if (!isfinite(v))
                        return tree_fail(err, t, "split_conditions", "tree %zu: entry %u is not a finite float32", t,
                                         o);
                if (l == -1 && r == -1) {
                        if (out)
                                out[head] = (struct risk_node){ .value = v, .left = 0, .feature = 0 };
                        continue;
                }
                if (l == -1 || r == -1)
                        return tree_fail(err, t, l == -1 ? "left_children" : "right_children",
                                         "tree %zu: node %u has one child; a leaf has -1 for both", t, o);
                rc = check_child(s, t, "left_children", o, l, seen, err);
                if (rc >= 0)
                        rc = check_child(s, t, "right_children", o, r, seen, err);
                if (rc < 0)
                        return rc;
                if (!int_at(s->index, o, &f) || f < 0 || f >= n_features)
                        return tree_fail(err, t, "split_indices",
                                         "tree %zu: node %u splits on a feature outside 0..%u (num_feature %u)", t, o,
                                         n_features - 1, n_features);
                if (!int_at(s->dleft, o, &dl) || (dl != 0 && dl != 1))
                        return tree_fail(err, t, "default_left", "tree %zu: entry %u must be 0 or 1", t, o);
                if (out)
                        out[head] = (struct risk_node){ .value = v, .left = base + tail,
                                                        .feature = (uint32_t)f | (dl ? RISK_NODE_DEFAULT_LEFT : 0) };
                queue[tail++] = (uint32_t)l;
                queue[tail++] = (uint32_t)r;
        }
        if (ret_depth)
                *ret_depth = depth;
        return tail;
}

/* Pass 1 checks every tree and counts its reachable nodes; pass 2 lays them out. */
static int build(const struct model_src *m, struct risk_forest **ret, struct kiln_error *err)
{
        struct tree_src *trees = calloc(m->n_trees ? m->n_trees : 1, sizeof(*trees));
        uint32_t *queue = NULL, *counts = calloc(m->n_trees ? m->n_trees : 1, sizeof(*counts));
        uint8_t *seen = NULL;
        size_t scratch = 0;
        uint64_t total = 0;
        uint32_t depth, max_depth = 0;
        struct risk_forest *f = NULL;
        int rc = 0;

        if (!trees || !counts) {
                rc = fail_nomem(err);
                goto out;
        }
        for (size_t t = 0; t < m->n_trees; t++) {
                long long n;

                rc = tree_arrays(xj_at(m->trees, t), t, &trees[t], err);
                if (rc < 0)
                        goto out;
                if (trees[t].n > scratch) {
                        free(queue);
                        free(seen);
                        scratch = trees[t].n;
                        queue = malloc(scratch * sizeof(*queue));
                        seen = malloc(scratch);
                        if (!queue || !seen) {
                                rc = fail_nomem(err);
                                goto out;
                        }
                }
                n = tree_walk(&trees[t], t, m->n_features, queue, seen, NULL, 0, &depth, err);
                if (n < 0) {
                        rc = (int)n;
                        goto out;
                }
                counts[t] = (uint32_t)n;
                total += (uint64_t)n;
                if (total >= UINT32_MAX) {
                        rc = kiln_error_set(err, TREES, "the model has more than %u nodes", UINT32_MAX - 1);
                        goto out;
                }
                if (depth > max_depth)
                        max_depth = depth;
        }

        {
                uint32_t *roots;
                struct risk_node *nodes;
                uint32_t base = 0;

                if (risk_forest_alloc((uint32_t)m->n_trees, m->n_features, (uint32_t)total, max_depth, m->base_score,
                                      m->base_margin, &f, &roots, &nodes) < 0) {
                        rc = fail_nomem(err);
                        goto out;
                }
                for (size_t t = 0; t < m->n_trees; t++) {
                        roots[t] = base;
                        tree_walk(&trees[t], t, m->n_features, queue, seen, nodes + base, base, NULL, NULL);
                        base += counts[t];
                }
                risk_forest_finish(f);
        }
        *ret = f;
out:
        free(trees);
        free(counts);
        free(queue);
        free(seen);
        return rc;
}

#define PARSE_FACTOR 8
#define PARSE_SLACK ((size_t)4 << 20)
#define FOREST_FACTOR 3
#define FOREST_SLACK ((size_t)1 << 20)

static size_t mul_add(size_t len, size_t factor, size_t slack)
{
        return len > (SIZE_MAX - slack) / factor ? SIZE_MAX : len * factor + slack;
}

size_t risk_model_parse_bytes(size_t len)
{
        return mul_add(len, PARSE_FACTOR, PARSE_SLACK);
}

/* The forest: per node at most ~48 bytes (with the unrolled tops, which never
 * outweigh the nodes twice over, plus 1 MiB), and a node takes at least 16 bytes of
 * JSON (one value in each of its eight arrays). */
size_t risk_model_work_bytes(size_t len)
{
        size_t parse = risk_model_parse_bytes(len), forest = mul_add(len, FOREST_FACTOR, FOREST_SLACK);

        return parse > SIZE_MAX - forest ? SIZE_MAX : parse + forest;
}

int risk_forest_compile(const void *json, size_t len, struct risk_forest **ret_forest, struct kiln_error *err)
{
        struct model_src m = { 0 };
        struct xj_error je;
        struct xj_doc *doc;
        int rc;

        if (!json || len == 0)
                return kiln_error_set(err, "model", "the model is empty");
        rc = xj_parse_capped(json, len, risk_model_parse_bytes(len), &doc, &je);
        if (rc == -ENOMEM)
                return fail_nomem(err);
        if (rc == -E2BIG)
                return kiln_error_set(err, "model",
                                      "reading this model would take more than %zu bytes of memory (%d times its "
                                      "size and 4 MiB): it is mostly tiny values, not a model XGBoost writes",
                                      risk_model_parse_bytes(len), PARSE_FACTOR);
        if (rc < 0)
                return kiln_error_set(err, "model", "the model is not valid JSON: %s (line %d, column %d)", je.text,
                                      je.line, je.column);
        rc = check_learner(xj_root(doc), &m, err);
        if (rc >= 0)
                rc = build(&m, ret_forest, err);
        xj_free(doc);
        return rc;
}

void risk_forest_free(struct risk_forest *f)
{
        free(f);
}

static int model_compile(const struct kiln_object_source *src, void **ret_snapshot, struct kiln_error *err)
{
        struct risk_forest *f;
        int rc = risk_forest_compile(src->blob, src->blob_bytes, &f, err);

        if (rc >= 0)
                *ret_snapshot = f;
        return rc;
}

static void model_release(void *snapshot)
{
        risk_forest_free(snapshot);
}

static size_t model_bytes(const void *snapshot)
{
        return ((const struct risk_forest *)snapshot)->bytes;
}

static void model_describe(const void *snapshot, struct kiln_object_info *ret_info)
{
        const struct risk_forest *f = snapshot;

        *ret_info = (struct kiln_object_info){ .trees = f->n_trees, .features = f->n_features };
}

/* A model upload is checked by compiling it: the scorer accepts exactly what
 * compiles. */
static int model_validate(struct kiln_object_put *put, struct kiln_object_info *ret_info,
                          struct kiln_error *err)
{
        struct risk_forest *f;
        int rc = risk_forest_compile(put->blob, put->blob_bytes, &f, err);

        if (rc < 0)
                return rc;
        model_describe(f, ret_info);
        risk_forest_free(f);
        return 0;
}

void risk_model_meta_encode(uint64_t trees, uint32_t features, uint8_t ret_meta[RISK_MODEL_META_BYTES])
{
        memset(ret_meta, 0, RISK_MODEL_META_BYTES);
        ret_meta[0] = 1;
        for (int i = 0; i < 4; i++)
                ret_meta[4 + i] = (uint8_t)(features >> (8 * i));
        for (int i = 0; i < 8; i++)
                ret_meta[8 + i] = (uint8_t)(trees >> (8 * i));
}

int risk_model_meta_decode(const void *meta, size_t len, uint64_t *ret_trees, uint32_t *ret_features)
{
        const uint8_t *b = meta;
        uint64_t trees = 0;
        uint32_t features = 0;

        if (!b || len != RISK_MODEL_META_BYTES || b[0] != 1 || b[1] || b[2] || b[3])
                return -EINVAL;
        for (int i = 0; i < 4; i++)
                features |= (uint32_t)b[4 + i] << (8 * i);
        for (int i = 0; i < 8; i++)
                trees |= (uint64_t)b[8 + i] << (8 * i);
        *ret_trees = trees;
        *ret_features = features;
        return 0;
}

const struct kiln_object_class risk_model_class = {
        .name = "risk.model",
        .validate = model_validate,
        .compile = model_compile,
        .release = model_release,
        .snapshot_bytes = model_bytes,
        .describe = model_describe,
};
