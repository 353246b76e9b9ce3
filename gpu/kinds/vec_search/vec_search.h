/* vec.search: exact top-k over a stored collection (SPEC 1.4).
 *
 * The job: params `collection` and `k`, and the queries: either the input
 * `queries` f32[q][dim] or the param `query_id`, a stored item whose row (as stored:
 * unit length under cosine, which is what the put's vector becomes as a query) is
 * the one query. The result: `ids` (q arrays of min(k, count) id strings), part
 * `scores` f32[q][min(k, count)], best first, equal scores by id, and the values
 * `count` and `collection_version`.
 *
 * How the CPU answers exactly and fast (cpu.c): float32 matrix products (BLIS,
 * or gemm.c's own kernel) give every row an approximate score; a per-query
 * candidate list keeps only rows within a proven rounding bound of the k-th best
 * approximate score seen so far (no full row of scores is ever kept), and the few
 * candidates left are scored exactly (vec_score) and sorted. The bound (vec_margin)
 * covers any order of float32 summation, so the answer is the exact one whatever
 * the product's blocking; when ties leave too many candidates, a query falls back
 * to scoring every row exactly. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kind.h"
#include "vec_search/collection.h"

#define VEC_K_MAX 1000
#define VEC_Q_MAX 10000u
/* The longest collection name (the store's object name limit). */
#define VEC_COLLECTION_NAME_MAX 128

/* The typed parameters (kind.c's schema fills them). */
struct vec_search_params {
        char collection[VEC_COLLECTION_NAME_MAX + 1];
        int32_t k;
        /* A stored id whose row is the query; "" when the job sends queries. */
        char query_id[KILN_VEC_ID_MAX + 1];
};

extern const struct kiln_kind kiln_kind_vec_search;

/* How many queries a task asks (its input's rows, or 1 for a query_id); 0 when it
 * gives neither. */
uint64_t vec_task_query_count(const struct kiln_task *t);

/* The checked and prepared queries of a task, malloc'd (the caller frees *ret_q),
 * and its collection: copies of inputs.queries, vec_row_prepare'd, or the stored
 * row that params.query_id names, gathered from the snapshot as it is. Returns >= 0,
 * -EINVAL with err naming the field (no collection, both or neither of queries
 * and query_id, a bad shape or dim, a row with NaN or infinity, an id not in this
 * version of the collection), or -ENOMEM. */
int vec_task_queries(const struct kiln_task *t, const struct vec_collection **ret_c, float **ret_q, size_t *ret_m,
                     struct kiln_error *err);

/* The most answers (queries times the group's k, 12 bytes each) one search of
 * several jobs keeps: 64 MiB. A single job keeps what it asks for. */
#define VEC_GROUP_ANSWERS_MAX ((64u << 20) / 12)

/* How a batch's tasks (their query counts m[i]) go into searches: one per
 * collection version, its jobs in batch order, every query keeping the group's
 * largest k; a job that would take a group past VEC_GROUP_ANSWERS_MAX answers
 * waits for a later group. group[i] is task i's group (SIZE_MAX for a task marked
 * skip[i], one that failed its checks); returns the number of groups. */
size_t vec_plan_groups(struct kiln_task *const *tasks, size_t n, const size_t *m, const bool *skip, size_t *group);

/* Fills a task's result from a search of m queries: `ids` (m arrays of
 * min(k, count) ids), the part `scores` f32[m][min(k, count)], `count` and
 * `collection_version`. index and score hold each query's answer at
 * i * stride (stride >= min(k, count)). Returns >= 0 or -ENOMEM. */
int vec_result_build(struct kiln_result *res, const struct vec_collection *c, uint64_t version, size_t m,
                     uint32_t k, const uint64_t *index, const float *score, uint32_t stride);

/* ---- the search ---- */

/* How vec_search_cpu runs; zero is the default everywhere. */
struct vec_search_opts {
        unsigned threads;          /* 0: one per CPU this process may use */
        bool portable;             /* never BLIS: gemm.c's own kernel only (tests) */
        uint32_t tile_rows;        /* rows per product; 0: chosen from dim (tests: small) */
        uint32_t cand_cap;         /* first candidate-list size per query; 0: from k (tests: small) */
        /* Optional: asked between tiles; true abandons the search (-ECANCELED). */
        bool (*stopped)(void *ctx);
        /* Optional: the fraction of rows done, from one thread. */
        void (*progress)(void *ctx, double fraction);
        void *ctx;
};

/* The exact top-k of m queries (prepared: [m][c->dim], cosine rows unit length as
 * vec_row_prepare makes them) against c. Writes min(k, c->count) row indices and
 * scores per query, best first, equal scores by row index, to ret_index and
 * ret_score ([m][min(k, count)] each) -- exactly what vec_search_ref gives for each
 * query. Returns >= 0, -ECANCELED, -ENOMEM, or -EINVAL for k == 0. */
int vec_search_cpu(const struct vec_collection *c, const float *queries, size_t m, uint32_t k,
                   const struct vec_search_opts *opts, uint64_t *ret_index, float *ret_score);

/* The screening values the products give for one collection: larger is better for
 * every metric (cosine and ip: q.x; l2: q.x - |x|^2/2, so that |q - x|^2 =
 * |q|^2 - 2 value). */

/* The most two rows' screening values for query q may be apart, after float32
 * rounding, while their exact scores rank them the other way (or tie as float32):
 * twice the rounding bound of a float32 dot product of length dim in any order
 * (gamma(dim + 2) |q| max|x|, plus |x|^2 for l2) and a few float32 ulps of the
 * score. qnorm is |q| in float64. (vec_math.h's vec_margin_of, for callers
 * without that header.)
 *
 * Why a margin suffices: let F be a screening value that k rows reach (each at
 * least F, so each at least F - e exactly, e the rounding bound). A row j of the
 * exact top k that is not among them has one of them ranking after it, whose exact
 * value is at most j's plus the score's float32 slack: so j's exact value is at
 * least F - e - slack and its screening value at least F - 2e - slack. */
double vec_margin(enum kiln_metric metric, uint32_t dim, double qnorm, double max_norm);

/* ---- matrix products (gemm.c) ---- */

/* C[i][j] = sum_t Q[i][t] X[j][t] for i < m, j < r, t < d (row-major, ldc >= r):
 * float32, any order of summation. Uses BLIS when it was linked and m is large
 * enough to gain from it, else its own blocked kernel; `portable` forces the latter.
 * Safe from many threads at once. */
void vec_gemm_nt(size_t m, size_t r, size_t d, const float *q, const float *x, float *c, size_t ldc, bool portable);

/* Finds the columns j < r of one row of products whose screening value (c[j], or
 * c[j] - sqn[j] / 2 for l2: pass the rows' squared norms) is >= lim: writes their
 * columns and values to ret_col and ret_val (r entries of room each) and returns
 * how many. */
size_t vec_scan(const float *c, const float *sqn, size_t r, float lim, uint32_t *ret_col, float *ret_val);

/* Whether BLIS was linked ("blis" or "own kernel", for benchmarks' labels). */
const char *vec_gemm_name(void);
