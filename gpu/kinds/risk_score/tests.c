/* risk.score's parity and benchmark cases (see kind_tests.h).
 *
 * The forests are made here, without a model file: random trees laid out as
 * model.c lays them out (forest.h), with thresholds on a coarse grid so that rows
 * hit them exactly, and default directions both ways. The rows hold what the scorer
 * must get right: values on a threshold and one float32 either side, NaN, +-0,
 * +-inf and huge values. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kind_tests.h"
#include "risk_score/risk_score.h"

static uint64_t next(uint64_t *s)
{
        uint64_t x = *s;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * 0x2545F4914F6CDD1Dull;
}

static double uniform(uint64_t *s)
{
        return (double)(next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* A threshold grid value: k / 4 for k in -8..8. */
static float grid(uint64_t *s)
{
        return (float)((int)(next(s) % 17) - 8) * 0.25f;
}

/* One random tree written breadth first at nodes[base..); returns its node count and
 * raises *depth. A node at depth d splits while d < min_depth, never at max_depth,
 * and in between with probability p. */
static uint32_t make_tree(uint64_t *s, struct risk_node *nodes, uint32_t base, uint32_t n_features,
                          uint32_t min_depth, uint32_t max_depth, double p, uint32_t *depth)
{
        uint32_t tail = 1, head = 0, level_end = 1, d = 0;

        for (; head < tail; head++) {
                if (head == level_end) {
                        d++;
                        level_end = tail;
                }
                bool split = d < min_depth || (d < max_depth && uniform(s) < p);
                struct risk_node *n = &nodes[base + head];
                if (!split) {
                        *n = (struct risk_node){ .value = (float)(uniform(s) - 0.5), .left = 0, .feature = 0 };
                        continue;
                }
                *n = (struct risk_node){ .value = grid(s), .left = base + tail,
                                         .feature = (uint32_t)(next(s) % n_features) |
                                                    (next(s) & 1 ? RISK_NODE_DEFAULT_LEFT : 0) };
                tail += 2;
                if (d + 1 > *depth)
                        *depth = d + 1;
        }
        return tail;
}

/* A forest of n_trees random trees; trees have at most 2^(max_depth+1) - 1 nodes. */
static struct risk_forest *make_forest(uint64_t seed, uint32_t n_trees, uint32_t n_features, uint32_t min_depth,
                                       uint32_t max_depth, double p, float base_score)
{
        uint64_t s = seed, cap = (uint64_t)n_trees * ((2u << max_depth) - 1);
        struct risk_node *tmp = malloc(cap * sizeof(*tmp));
        uint32_t *starts = malloc(n_trees * sizeof(*starts)), total = 0, depth = 0;
        struct risk_forest *f = NULL;
        uint32_t *roots;
        struct risk_node *nodes;

        if (!tmp || !starts)
                goto out;
        for (uint32_t t = 0; t < n_trees; t++) {
                starts[t] = total;
                total += make_tree(&s, tmp, total, n_features, min_depth, max_depth, p, &depth);
        }
        if (risk_forest_alloc(n_trees, n_features, total, depth, base_score, risk_base_margin(base_score), &f,
                              &roots, &nodes) < 0)
                goto out;
        memcpy(roots, starts, n_trees * sizeof(*roots));
        memcpy(nodes, tmp, total * sizeof(*nodes));
        risk_forest_finish(f);
out:
        free(tmp);
        free(starts);
        return f;
}

/* n rows of `cols` values: mostly grid values (on thresholds) and the float32 next
 * to them, with a sprinkling of the special values. */
static void make_rows(uint64_t *s, float *x, size_t n, uint32_t cols, bool specials)
{
        static const float special[] = { NAN, 0.0f, -0.0f, INFINITY, -INFINITY, 3.4e38f, -3.4e38f, 1e-45f };

        for (size_t i = 0; i < n * cols; i++) {
                uint64_t k = next(s) % 16;
                float g = grid(s);
                if (specials && k == 0)
                        x[i] = special[next(s) % (sizeof(special) / sizeof(special[0]))];
                else if (k < 4)
                        x[i] = nextafterf(g, k & 1 ? -INFINITY : INFINITY);
                else if (k < 8)
                        x[i] = (float)(uniform(s) * 4 - 2);
                else
                        x[i] = g;
        }
}

/* What a set of cases points into. */
struct store {
        struct risk_forest *forests[4];
        struct kiln_object objects[4];
        struct risk_params *params;
        struct kiln_array *arrays;
        float *rows;
};

static void release(struct kiln_cases *cs)
{
        struct store *st = cs->storage;

        for (int i = 0; i < 4; i++)
                risk_forest_free(st->forests[i]);
        free(st->params);
        free(st->arrays);
        free(st->rows);
        free(st);
}

static struct kiln_cases *cases_new(size_t n, size_t n_rows_total)
{
        struct kiln_cases *cs = kiln_cases_new(n, sizeof(struct store));
        if (!cs)
                return NULL;
        struct store *st = cs->storage;
        cs->release = release;
        st->params = calloc(n, sizeof(*st->params));
        st->arrays = calloc(n, sizeof(*st->arrays));
        st->rows = malloc((n_rows_total ? n_rows_total : 1) * sizeof(float));
        if (!st->params || !st->arrays || !st->rows) {
                kiln_cases_free(cs);
                return NULL;
        }
        return cs;
}

static void put(struct kiln_cases *cs, size_t i, const char *model, bool margin, const struct kiln_object *obj,
                const float *rows, uint64_t n, uint32_t cols, const char *label)
{
        struct store *st = cs->storage;
        const uint64_t shape[2] = { n, cols };
        struct kiln_case *c = &cs->cases[i];

        snprintf(st->params[i].model, sizeof(st->params[i].model), "%s", model);
        st->params[i].margin = margin;
        kiln_array_init(&st->arrays[i], "rows", KILN_DTYPE_F32, 2, shape, rows, n * cols * sizeof(float), NULL);
        snprintf(c->label, sizeof(c->label), "%s", label);
        c->params = &st->params[i];
        c->inputs = &st->arrays[i];
        c->n_inputs = 1;
        c->object = obj;
        c->work = n;
}

static int parity(struct kiln_cases **ret)
{
        enum { SINGLES = 40, N = 7 + SINGLES };
        const uint32_t nf = 12;
        size_t total = 3000 * 5 + 3000 * 4 + 2 * 4096 * nf + 2000 * 30 + 1000 * 3 + 8 * 5;
        struct kiln_cases *cs = cases_new(N, total + SINGLES * nf);
        if (!cs)
                return -ENOMEM;
        struct store *st = cs->storage;
        uint64_t s = 0x5eed;
        float *x = st->rows;
        /* Complete depth 6; deep uneven trees (past the unrolled top); stumps only;
         * 30 features of depth 8 complete. */
        st->forests[0] = make_forest(1, 50, nf, 6, 6, 0, 0.5f);
        st->forests[1] = make_forest(2, 40, nf, 2, 13, 0.7, 0.3f);
        st->forests[2] = make_forest(3, 5, 3, 0, 0, 0, 0.8f);
        st->forests[3] = make_forest(4, 30, 30, 8, 8, 0, 0.5f);
        for (int i = 0; i < 4; i++) {
                if (!st->forests[i]) {
                        kiln_cases_free(cs);
                        return -ENOMEM;
                }
                st->objects[i] = (struct kiln_object){ .cls = &risk_model_class, .version = (uint64_t)i + 1,
                                                       .snapshot = st->forests[i] };
        }
        /* Altman rows around the zone boundaries, and the boundaries themselves. */
        make_rows(&s, x, 3000, 5, false);
        const float edges[] = { 0, 0, 0, 0, 1.81f, 0, 0, 0, 0, 2.99f };
        memcpy(x, edges, sizeof(edges));
        put(cs, 0, "altman-z", false, NULL, x, 3000, 5, "altman-z, 3000 rows");
        x += 3000 * 5;
        make_rows(&s, x, 3000, 4, false);
        put(cs, 1, "altman-z2", false, NULL, x, 3000, 4, "altman-z2, 3000 rows");
        x += 3000 * 4;
        make_rows(&s, x, 4096, nf, true);
        put(cs, 2, "m-depth6", true, &st->objects[0], x, 4096, nf, "50 trees depth 6, margin");
        x += 4096 * nf;
        make_rows(&s, x, 4096, nf, true);
        put(cs, 3, "m-deep", true, &st->objects[1], x, 4096, nf, "40 uneven trees to depth 13, margin");
        x += 4096 * nf;
        make_rows(&s, x, 2000, 30, true);
        put(cs, 4, "m-depth8", false, &st->objects[3], x, 2000, 30, "30 trees depth 8, 30 features");
        x += 2000 * 30;
        make_rows(&s, x, 1000, 3, true);
        put(cs, 5, "m-stumps", true, &st->objects[2], x, 1000, 3, "stumps only");
        x += 1000 * 3;
        make_rows(&s, x, 8, 5, false);
        put(cs, 6, "altman-z", false, NULL, x, 8, 5, "altman-z, 8 rows");
        x += 8 * 5;
        /* One-row jobs of one model: many tasks in one launch. */
        for (int i = 0; i < SINGLES; i++) {
                make_rows(&s, x, 1, nf, true);
                put(cs, 7 + (size_t)i, "m-depth6", i % 2 == 0, &st->objects[0], x, 1, nf, "one row, depth 6");
                x += nf;
        }
        *ret = cs;
        return 0;
}

/* 4^size rows (1 .. 262,144), then the most a job takes (1,000,000), per job
 * against 200 trees of depth 6 and 12 features; the jobs read overlapping windows
 * of one pool of rows. */
static int bench(unsigned size, size_t n, struct kiln_cases **ret)
{
        const uint32_t nf = 12;
        if (size > 10)
                return -ERANGE;
        uint64_t rows = size < 10 ? 1ull << (2 * size) : RISK_MAX_ROWS, pool = rows + n;
        struct kiln_cases *cs = cases_new(n, pool * nf);
        if (!cs)
                return -ENOMEM;
        struct store *st = cs->storage;
        uint64_t s = 0xbe7c4 + size;
        st->forests[0] = make_forest(7, 200, nf, 6, 6, 0, 0.5f);
        if (!st->forests[0]) {
                kiln_cases_free(cs);
                return -ENOMEM;
        }
        st->objects[0] = (struct kiln_object){ .cls = &risk_model_class, .version = 1, .snapshot = st->forests[0] };
        make_rows(&s, st->rows, pool, nf, true);
        for (size_t i = 0; i < n; i++) {
                char label[64];
                snprintf(label, sizeof(label), "%llu rows, 200 trees depth 6", (unsigned long long)rows);
                put(cs, i, "bench", false, &st->objects[0], st->rows + i * nf, rows, nf, label);
        }
        *ret = cs;
        return 0;
}

const struct kiln_kind_tests kiln_kind_tests_risk_score = {
        .kind = &kiln_kind_risk_score,
        .parity = parity,
        .bench = bench,
        .work_unit = "rows",
};
