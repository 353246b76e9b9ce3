/* Building a forest's block (forest_math.h) and scoring many rows on the CPU.
 *
 * model.c parses and checks a model, then lays its trees out here: risk_forest_alloc
 * gives the block with room for every array, the caller writes roots and nodes, and
 * risk_forest_finish derives the unrolled tops. Anything that makes trees without a
 * JSON file (the GPU test cases) builds forests the same way. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "risk_score/forest_math.h"

/* A new forest block for n_trees trees of n_nodes nodes whose longest root-to-leaf
 * path has max_depth edges, its header filled. The caller writes the roots
 * (*ret_roots, n_trees) and nodes (*ret_nodes, n_nodes, breadth first per tree as
 * forest_math.h describes), then calls risk_forest_finish. Returns >= 0, or -ENOMEM
 * (also when the sizes overflow). Free the forest with risk_forest_free. */
int risk_forest_alloc(uint32_t n_trees, uint32_t n_features, uint32_t n_nodes, uint32_t max_depth,
                      float base_score, float base_margin, struct risk_forest **ret_forest, uint32_t **ret_roots,
                      struct risk_node **ret_nodes);

/* Writes the unrolled tops and bottoms of every tree from its roots and nodes. */
void risk_forest_finish(struct risk_forest *f);

/* Rows scored together by risk_forest_margins: each tree's top and nodes are read
 * once per block and stay in the L1 cache while the block's rows walk it, and the
 * rows' independent walks overlap their loads. */
#define RISK_BLOCK_ROWS 64u

/* The margins of n rows (row-major, f->n_features floats each, NaN = missing) into
 * ret_margin[0..n): the same bits as risk_forest_margin row by row. */
void risk_forest_margins(const struct risk_forest *f, const float *rows, size_t n, float *ret_margin);

/* The same for exactly RISK_BLOCK_ROWS rows with AVX-512 (forest_avx512.c), where
 * risk_avx512_usable says the CPU has it and the forest's indices fit its gathers. */
bool risk_avx512_usable(const struct risk_forest *f);
void risk_score_block_avx512(const struct risk_view *v, const float *rows, float *out);
