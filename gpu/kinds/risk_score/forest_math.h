/* A compiled gradient-boosted forest and the scoring of one row, shared by the C
 * implementation and the CUDA kernel (everything static inline, float32 only, nothing
 * beyond <math.h> and <stdint.h>).
 *
 * The scoring reproduces XGBoost's CPU predictor (1.7, and 2.x/3.x, which keep the
 * order) bit for bit on the margin:
 *   - at a split, a present value x goes left iff x < split_condition, compared in
 *     float32 (NaN is "missing" and follows default_left; +-inf compare as numbers,
 *     -0 equals +0);
 *   - the margin starts at base_margin = -logf(1/base_score - 1) (float32, as
 *     XGBoost's ProbToMargin) and adds each tree's leaf in tree order, in float32;
 *   - p = 1 / (expf(min(-margin, 88.7)) + 1 + 1e-16), float32 (XGBoost's Sigmoid).
 * expf on a GPU may differ from glibc's in the last unit, so p agrees to ~1e-7 there;
 * the margin is the same on both (adds and compares only). */
#pragma once

#include <math.h>
#include <stdint.h>

#ifndef KILN_HD
#ifdef __CUDACC__
#define KILN_HD __host__ __device__
#else
#define KILN_HD
#endif
#endif

#define RISK_NODE_FEATURE_MASK 0x7fffffffu
#define RISK_NODE_DEFAULT_LEFT 0x80000000u

/* One node, 12 bytes. Each tree is laid out breadth first from its root, and the two
 * children of a split are adjacent (right = left + 1), so the walk of a row touches
 * nodes in increasing order and the top levels of a tree share cache lines. */
struct risk_node {
        float value;       /* a split: its condition (go left iff x < value); a leaf: its value */
        uint32_t left;     /* index in risk_forest.nodes of the left child; 0 at a leaf
                            * (no node's child is node 0, the first tree's root) */
        uint32_t feature;  /* bits 0..30: the row column a split reads; bit 31: missing goes left */
};

/* An immutable forest (the snapshot of a stored risk.model). */
struct risk_forest {
        uint32_t n_trees;
        uint32_t n_features;       /* columns of a row; every split's feature is below it */
        uint32_t n_nodes;          /* nodes of all trees (unreachable pruned nodes dropped) */
        uint32_t max_depth;        /* edges on the longest root-to-leaf path (0: stumps only) */
        float base_score;          /* probability space, as in the model file */
        float base_margin;         /* logit(base_score), float32 as XGBoost computes it */
        const uint32_t *roots;     /* [n_trees]: index of each tree's root in nodes */
        const struct risk_node *nodes; /* [n_nodes] */
        size_t bytes;              /* memory held by the snapshot */
};

/* XGBoost's ProbToMargin for binary:logistic, base_score in (0, 1). */
KILN_HD static inline float risk_base_margin(float base_score)
{
        return -logf(1.0f / base_score - 1.0f);
}

/* The index of the leaf that `row` reaches from node `i` (a tree's root). */
KILN_HD static inline uint32_t risk_tree_leaf(const struct risk_node *nodes, uint32_t i, const float *row)
{
        for (;;) {
                struct risk_node n = nodes[i];
                float x;

                if (!n.left)
                        return i;
                x = row[n.feature & RISK_NODE_FEATURE_MASK];
                if (x != x)
                        i = n.left + ((n.feature & RISK_NODE_DEFAULT_LEFT) ? 0u : 1u);
                else
                        i = n.left + (x < n.value ? 0u : 1u);
        }
}

/* The margin of one row of f->n_features values (NaN = missing). */
KILN_HD static inline float risk_forest_margin(const struct risk_forest *f, const float *row)
{
        float margin = f->base_margin;

        for (uint32_t t = 0; t < f->n_trees; t++)
                margin += f->nodes[risk_tree_leaf(f->nodes, f->roots[t], row)].value;
        return margin;
}

/* XGBoost's Sigmoid: the clamp keeps expf finite, the 1e-16 is XGBoost's guard
 * against a zero denominator (it vanishes in float32, but is kept for the order). */
KILN_HD static inline float risk_sigmoid(float margin)
{
        float t = -margin;

        if (88.7f < t)
                t = 88.7f;
        return 1.0f / (expf(t) + 1.0f + 1e-16f);
}
