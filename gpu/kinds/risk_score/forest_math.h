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
 * the margin is the same on both (adds and compares only).
 *
 * Two walks give the same leaf: the plain one (risk_tree_leaf, node by node from the
 * root) and the unrolled one (risk_view_leaf), which first takes the tree's top
 * top_depth levels as a complete binary tree (a fixed number of steps without a
 * data-dependent branch, as XGBoost's array layout and FIL do), then goes on node by
 * node from where that ends. */
#pragma once

#include <math.h>
#include <stdint.h>

#include "hostdev.h"

#define RISK_NODE_FEATURE_MASK 0x7fffffffu
#define RISK_NODE_DEFAULT_LEFT 0x80000000u
/* Levels of each tree unrolled into its top (at most; fewer for shallower forests). */
#define RISK_TOP_MAX 8u

/* One node, 12 bytes. Each tree is laid out breadth first from its root, and the two
 * children of a split are adjacent (right = left + 1), so the walk of a row touches
 * nodes in increasing order and the top levels of a tree share cache lines. */
struct risk_node {
        float value;       /* a split: its condition (go left iff x < value); a leaf: its value */
        uint32_t left;     /* index in risk_forest.nodes of the left child; 0 at a leaf
                            * (no node's child is node 0, the first tree's root) */
        uint32_t feature;  /* bits 0..30: the row column a split reads; bit 31: missing goes left */
};

/* One position of a tree's unrolled top, 8 bytes. A position below a leaf (a tree
 * shallower than the top) holds any split: both its children lead to that leaf. */
struct risk_split {
        float value;       /* go left iff x < value */
        uint32_t feature;  /* bits 0..30: the column; bit 31: missing goes right */
};
#define RISK_SPLIT_MISSING_RIGHT 0x80000000u

/* An immutable forest (the snapshot of a stored risk.model): this header followed,
 * in the same allocation of `bytes` bytes, by its arrays at the offsets below, so
 * that the whole block copied to a device is its image (risk_view_of_image). */
struct risk_forest {
        uint32_t n_trees;
        uint32_t n_features;       /* columns of a row; every split's feature is below it */
        uint32_t n_nodes;          /* nodes of all trees (unreachable pruned nodes dropped) */
        uint32_t max_depth;        /* edges on the longest root-to-leaf path (0: stumps only) */
        float base_score;          /* probability space, as in the model file */
        float base_margin;         /* logit(base_score), float32 as XGBoost computes it */
        uint32_t top_depth;        /* K <= min(max_depth, RISK_TOP_MAX): levels in each top
                                    * (fewer when the tops would outweigh the nodes, forest.c) */
        uint32_t reserved;
        const uint32_t *roots;     /* [n_trees]: index of each tree's root in nodes */
        const struct risk_node *nodes; /* [n_nodes] */
        const struct risk_split *tops; /* [n_trees][2^K - 1], breadth first */
        const uint32_t *bottoms;   /* [n_trees][2^K]: the node each path through a top reaches */
        /* Byte offsets of roots, nodes, tops and bottoms from the header's address. */
        uint64_t off_roots, off_nodes, off_tops, off_bottoms;
        uint64_t bytes;            /* the whole block */
};

/* What scoring reads, as pointers valid where it runs (host or device). */
struct risk_view {
        const struct risk_node *nodes;
        const struct risk_split *tops;
        const uint32_t *bottoms;
        uint32_t n_trees, n_features, top_depth;
        float base_margin;
};

KILN_HD static inline struct risk_view risk_view_of(const struct risk_forest *f)
{
        struct risk_view v = { f->nodes, f->tops, f->bottoms, f->n_trees, f->n_features, f->top_depth,
                               f->base_margin };
        return v;
}

/* The view of a forest's block copied elsewhere (a device): the header's pointers
 * are the host's, its offsets hold anywhere. */
KILN_HD static inline struct risk_view risk_view_of_image(const void *image)
{
        const struct risk_forest *h = (const struct risk_forest *)image;
        const char *b = (const char *)image;
        struct risk_view v = { (const struct risk_node *)(b + h->off_nodes),
                               (const struct risk_split *)(b + h->off_tops),
                               (const uint32_t *)(b + h->off_bottoms),
                               h->n_trees, h->n_features, h->top_depth, h->base_margin };
        return v;
}

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

/* 1 when x goes right at s: not below the condition (NaN is not), and, when
 * missing, the split sends missing values right. No branch. */
KILN_HD static inline uint32_t risk_split_right(struct risk_split s, float x)
{
        return (uint32_t)!(x < s.value) & ((uint32_t)(x == x) | (s.feature >> 31));
}

/* One step down a top: position p to its child for `row`. */
KILN_HD static inline uint32_t risk_top_step(const struct risk_split *top, uint32_t p, const float *row)
{
        struct risk_split s = top[p];
        return 2u * p + 1u + risk_split_right(s, row[s.feature & RISK_NODE_FEATURE_MASK]);
}

/* The leaf that `row` reaches in tree t: its top, then node by node. */
KILN_HD static inline uint32_t risk_view_leaf(const struct risk_view *v, uint32_t t, const float *row)
{
        uint32_t width = 1u << v->top_depth, p = 0;
        const struct risk_split *top = v->tops + (uint64_t)t * (width - 1u);

        for (uint32_t k = 0; k < v->top_depth; k++)
                p = risk_top_step(top, p, row);
        return risk_tree_leaf(v->nodes, v->bottoms[(uint64_t)t * width + (p - (width - 1u))], row);
}

/* The margin of one row of n_features values (NaN = missing), trees in order. */
KILN_HD static inline float risk_view_margin(const struct risk_view *v, const float *row)
{
        float margin = v->base_margin;

        for (uint32_t t = 0; t < v->n_trees; t++)
                margin += v->nodes[risk_view_leaf(v, t, row)].value;
        return margin;
}

/* The margin of one row by the plain walk (the reference the unrolled walk and the
 * blocked scorer are checked against). */
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
