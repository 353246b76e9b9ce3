/* Forest blocks (forest.h): layout, the unrolled tops, and the blocked CPU scorer. */
#include "risk_score/forest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t align64(uint64_t n)
{
        return (n + 63) & ~(uint64_t)63;
}

/* Bytes of n_trees tops of k levels (splits and bottoms). */
static uint64_t tops_bytes(uint32_t n_trees, uint32_t k)
{
        return (uint64_t)n_trees * (((1u << k) - 1) * sizeof(struct risk_split) + (1u << k) * sizeof(uint32_t));
}

/* Levels unrolled in each tree's top: min(max_depth, RISK_TOP_MAX), fewer when the
 * tops would outweigh the nodes themselves. Every top is as wide as the deepest
 * tree's, so many trees far shallower than the deepest one (say 100,000 stumps and
 * one tree of depth 9: 11 MB of JSON) would otherwise compile to a block of
 * hundreds of MB. A model whose trees are about as deep as its deepest keeps every
 * level: its nodes alone weigh more than its tops. */
static uint32_t top_levels(uint32_t n_trees, uint32_t n_nodes, uint32_t max_depth)
{
        uint32_t k = max_depth < RISK_TOP_MAX ? max_depth : RISK_TOP_MAX;
        uint64_t room = 2 * (uint64_t)n_nodes * sizeof(struct risk_node) + ((uint64_t)1 << 20);

        while (k > 0 && tops_bytes(n_trees, k) > room)
                k--;
        return k;
}

int risk_forest_alloc(uint32_t n_trees, uint32_t n_features, uint32_t n_nodes, uint32_t max_depth,
                      float base_score, float base_margin, struct risk_forest **ret_forest, uint32_t **ret_roots,
                      struct risk_node **ret_nodes)
{
        uint32_t k = top_levels(n_trees, n_nodes, max_depth), width = 1u << k;
        uint64_t off_roots = align64(sizeof(struct risk_forest));
        uint64_t off_nodes = align64(off_roots + (uint64_t)n_trees * sizeof(uint32_t));
        uint64_t off_tops = align64(off_nodes + (uint64_t)n_nodes * sizeof(struct risk_node));
        uint64_t off_bottoms = align64(off_tops + (uint64_t)n_trees * (width - 1) * sizeof(struct risk_split));
        uint64_t bytes = off_bottoms + (uint64_t)n_trees * width * sizeof(uint32_t);
        void *block = NULL;

        if (bytes > SIZE_MAX / 2 || posix_memalign(&block, 64, (size_t)bytes) != 0)
                return -ENOMEM;
        /* Padding between the arrays is zero, so equal models give equal blocks. */
        memset(block, 0, (size_t)bytes);
        struct risk_forest *f = block;
        char *b = block;
        *f = (struct risk_forest){
                .n_trees = n_trees,
                .n_features = n_features,
                .n_nodes = n_nodes,
                .max_depth = max_depth,
                .base_score = base_score,
                .base_margin = base_margin,
                .top_depth = k,
                .roots = (const uint32_t *)(b + off_roots),
                .nodes = (const struct risk_node *)(b + off_nodes),
                .tops = (const struct risk_split *)(b + off_tops),
                .bottoms = (const uint32_t *)(b + off_bottoms),
                .off_roots = off_roots,
                .off_nodes = off_nodes,
                .off_tops = off_tops,
                .off_bottoms = off_bottoms,
                .bytes = bytes,
        };
        *ret_forest = f;
        *ret_roots = (uint32_t *)(b + off_roots);
        *ret_nodes = (struct risk_node *)(b + off_nodes);
        return 0;
}

/* One tree's top: position p of the complete binary tree of depth k holds the node
 * that the path to p reaches, or (below a leaf) that leaf again, whose stand-in
 * split leads to it either way. */
static void fill_top(const struct risk_node *nodes, uint32_t root, uint32_t k, struct risk_split *top,
                     uint32_t *bottom)
{
        uint32_t at[2u << RISK_TOP_MAX];
        uint32_t inner = (1u << k) - 1;

        at[0] = root;
        for (uint32_t p = 0; p < inner; p++) {
                struct risk_node n = nodes[at[p]];
                if (n.left) {
                        top[p] = (struct risk_split){
                                .value = n.value,
                                .feature = (n.feature & RISK_NODE_FEATURE_MASK) |
                                           ((n.feature & RISK_NODE_DEFAULT_LEFT) ? 0 : RISK_SPLIT_MISSING_RIGHT),
                        };
                        at[2 * p + 1] = n.left;
                        at[2 * p + 2] = n.left + 1;
                } else {
                        top[p] = (struct risk_split){ .value = 0.0f, .feature = 0 };
                        at[2 * p + 1] = at[2 * p + 2] = at[p];
                }
        }
        for (uint32_t b = 0; b <= inner; b++)
                bottom[b] = at[inner + b];
}

void risk_forest_finish(struct risk_forest *f)
{
        uint32_t width = 1u << f->top_depth;
        struct risk_split *tops = (struct risk_split *)f->tops;
        uint32_t *bottoms = (uint32_t *)f->bottoms;

        for (uint32_t t = 0; t < f->n_trees; t++)
                fill_top(f->nodes, f->roots[t], f->top_depth, tops + (uint64_t)t * (width - 1),
                         bottoms + (uint64_t)t * width);
}

/* One block of m <= RISK_BLOCK_ROWS rows. Trees outside, rows inside: each row's
 * leaves are still added in tree order, so the sums are risk_forest_margin's. The
 * top levels go level by level over the block, so the rows' loads are independent
 * and overlap instead of waiting on each other. */
static void score_block(const struct risk_view *v, const float *rows, uint32_t m, float *out)
{
        const uint32_t k = v->top_depth, width = 1u << k, nf = v->n_features;
        const struct risk_node *nodes = v->nodes;
        float acc[RISK_BLOCK_ROWS];
        uint32_t pos[RISK_BLOCK_ROWS];

        for (uint32_t r = 0; r < m; r++)
                acc[r] = v->base_margin;
        for (uint32_t t = 0; t < v->n_trees; t++) {
                const struct risk_split *top = v->tops + (uint64_t)t * (width - 1);
                const uint32_t *bottom = v->bottoms + (uint64_t)t * width;

                if (k) {
                        struct risk_split s = top[0];
                        uint32_t col = s.feature & RISK_NODE_FEATURE_MASK;
                        for (uint32_t r = 0; r < m; r++)
                                pos[r] = 1u + risk_split_right(s, rows[(size_t)r * nf + col]);
                } else {
                        for (uint32_t r = 0; r < m; r++)
                                pos[r] = 0;
                }
                for (uint32_t level = 1; level < k; level++)
                        for (uint32_t r = 0; r < m; r++)
                                pos[r] = risk_top_step(top, pos[r], rows + (size_t)r * nf);
                for (uint32_t r = 0; r < m; r++)
                        acc[r] += nodes[risk_tree_leaf(nodes, bottom[pos[r] - (width - 1)], rows + (size_t)r * nf)]
                                          .value;
        }
        memcpy(out, acc, m * sizeof(*out));
}

void risk_forest_margins(const struct risk_forest *f, const float *rows, size_t n, float *ret_margin)
{
        struct risk_view v = risk_view_of(f);
        bool wide = n >= RISK_BLOCK_ROWS && risk_avx512_usable(f);

        for (size_t r0 = 0; r0 < n; r0 += RISK_BLOCK_ROWS) {
                uint32_t m = n - r0 < RISK_BLOCK_ROWS ? (uint32_t)(n - r0) : RISK_BLOCK_ROWS;
                if (wide && m == RISK_BLOCK_ROWS)
                        risk_score_block_avx512(&v, rows + r0 * f->n_features, ret_margin + r0);
                else
                        score_block(&v, rows + r0 * f->n_features, m, ret_margin + r0);
        }
}
