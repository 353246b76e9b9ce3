/* The "vec.collection" object class: stored embedding collections (SPEC 1.4, 2.4).
 *
 * A collection has a metric and a dim fixed at creation (its meta, object.h) and items
 * id -> dim float32 values, stored in id byte order. A put is checked here before the
 * store writes it: ids of 1..256 bytes without NUL, distinct; finite values; for cosine, rows are
 * normalised to unit length in place (so what is stored is what search reads); for ip
 * and l2, a row's norm is at most 2^62 so that no score overflows float32.
 *
 * A snapshot (struct vec_collection) is one contiguous float32 matrix [count][dim]
 * with the ids in byte order beside it. Because ids are sorted, "equal scores are
 * ordered by id" is "equal scores are ordered by row index". vec_search_ref below is
 * the plain exact search that the fast paths are tested against.
 *
 * A score is defined exactly: the dot product (or squared distance) of the float32
 * values accumulated in float64, in column order, then rounded once to float32
 * (vec_score). Every backend computes the scores it returns that way, so equal
 * inputs give bit-equal scores and the same ids everywhere; the fast paths only use
 * float32 matrix products to find the few candidates worth scoring exactly. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "object.h"

#include "hostdev.h"

/* ip and l2 rows and queries: Euclidean norm at most 2^62, so |q.x| <= 2^124 and
 * |q - x|^2 <= 2^126 stay finite in float32. */
#define VEC_NORM_MAX 4611686018427387904.0

/* An immutable collection (the snapshot of one stored version). */
struct vec_collection {
        enum kiln_metric metric;
        uint32_t dim;
        uint64_t count;
        const float *rows;            /* [count][dim], row i belongs to id i */
        const uint64_t *id_offsets;   /* [count + 1]: id i is id_bytes[id_offsets[i] .. id_offsets[i + 1]) */
        const uint8_t *id_bytes;      /* ids in byte order, strictly increasing */
        /* [count]: each row's squared norm (float64 sum, rounded to float32); the
         * fast searches rank l2 by q.x - |x|^2/2 and bound their rounding with it.
         * It follows the rows in the same block: rows + count * dim. */
        const float *sqnorms;
        double max_norm;              /* the largest row norm (0 when empty) */
        size_t id_text_max;           /* the longest id as a search writes it (a JSON string) */
        size_t bytes;                 /* memory held by the snapshot */
};

/* The class (name "vec.collection"). validate takes a put (meta, current_meta, ids,
 * rows; object.h) and normalises its rows for cosine; compile takes the stored meta
 * and items; snapshots are struct vec_collection. Error fields: "metric", "vectors"
 * (dim, size), "vectors[i]" (a row), "ids", "ids[i]", "meta", "items". */
extern const struct kiln_object_class vec_collection_class;

/* Builds a snapshot from a source as kiln_object_class.compile describes (freed with
 * vec_collection_free). Returns >= 0, -EINVAL with err filled (meta unreadable, an
 * item of the wrong size, an id out of 1..256 bytes, a repeated id), -ENOMEM, or the
 * source's error. */
int vec_collection_compile(const struct kiln_object_source *src, struct vec_collection **ret_collection,
                           struct kiln_error *err);

/* Frees a snapshot. Accepts NULL. */
void vec_collection_free(struct vec_collection *c);

/* Checks one row (a put's vector or a query) for the metric without changing it:
 * returns 0, -EINVAL when it holds NaN or infinity, -EDOM when it is all zeros under
 * cosine (no direction), -ERANGE when its norm is above VEC_NORM_MAX under ip or l2. */
int vec_row_check(enum kiln_metric metric, const float *row, uint32_t dim);

/* vec_row_check, then for cosine scales the row to unit length (each value divided
 * by the float64 norm, rounded once). On error the row is unchanged. */
int vec_row_prepare(enum kiln_metric metric, float *row, uint32_t dim);

/* A sentence fragment for vec_row_check's codes ("holds NaN or infinity", ...). */
const char *vec_row_problem(int code);

/* Id byte order (as LMDB's default): memcmp over the common length, then shorter first. */
static inline int vec_id_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
        int c = memcmp(a, b, alen < blen ? alen : blen);

        if (c)
                return c;
        return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Id i of the snapshot (not NUL-terminated) and its length. */
static inline const uint8_t *vec_collection_id(const struct vec_collection *c, uint64_t i, size_t *ret_len)
{
        *ret_len = (size_t)(c->id_offsets[i + 1] - c->id_offsets[i]);
        return c->id_bytes + c->id_offsets[i];
}

/* The row of the item whose id is id[0..len) (a binary search: ids are sorted).
 * Returns 0 with *ret_row set, or -ENOENT when the snapshot has no such id. */
int vec_collection_find(const struct vec_collection *c, const void *id, size_t len, uint64_t *ret_row);

/* float64 operations that no compiler fuses into an FMA: the device's intrinsics
 * are never contracted, and host code is built with -ffp-contract=off (kind.cmake).
 * A product of two float32 values is exact in float64 anyway; a difference of two
 * (l2) usually is, and then so is its square. */
#if defined(__CUDA_ARCH__)
#define VEC_DADD(a, b) __dadd_rn((a), (b))
#define VEC_DSUB(a, b) __dsub_rn((a), (b))
#define VEC_DMUL(a, b) __dmul_rn((a), (b))
#else
#define VEC_DADD(a, b) ((a) + (b))
#define VEC_DSUB(a, b) ((a) - (b))
#define VEC_DMUL(a, b) ((a) * (b))
#endif

/* The score of row x for query q: the dot product (cosine on unit rows, ip) or the
 * squared Euclidean distance (l2), accumulated in float64 in column order and
 * rounded once to float32. This is the definition of a score: every backend
 * computes the scores it reports with this function (or this exact sequence of
 * float64 operations), so they agree to the bit. */
KILN_HD static inline float vec_score(enum kiln_metric metric, const float *q, const float *x, uint32_t dim)
{
        double s = 0.0;

        if (metric == KILN_METRIC_L2) {
                for (uint32_t j = 0; j < dim; j++) {
                        double d = VEC_DSUB((double)q[j], (double)x[j]);
                        s = VEC_DADD(s, VEC_DMUL(d, d));
                }
        } else {
                for (uint32_t j = 0; j < dim; j++)
                        s = VEC_DADD(s, VEC_DMUL((double)q[j], (double)x[j]));
        }
        /* -0 and +0 are one score, reported as +0 (a device's rank keys cannot tell
         * them apart). */
        float f = (float)s;
        return f == 0.0f ? 0.0f : f;
}

/* True when (score a, row ia) ranks before (score b, row ib): larger first for cosine
 * and ip, smaller first for l2, then by row index (= id byte order). */
KILN_HD static inline bool vec_ranks_before(enum kiln_metric metric, float a, uint64_t ia, float b, uint64_t ib)
{
        if (a != b)
                return metric == KILN_METRIC_L2 ? a < b : a > b;
        return ia < ib;
}

/* Exact top-k of one query (dim floats, already prepared with vec_row_prepare) by
 * brute force: writes min(k, count) row indices and scores into ret_index and
 * ret_score (k entries each), best first, and returns how many. The reference the
 * fast searches are tested against; O(count * (dim + k)) at worst. */
static inline uint64_t vec_search_ref(const struct vec_collection *c, const float *query, uint32_t k,
                                      uint64_t *ret_index, float *ret_score)
{
        uint64_t n = 0;

        for (uint64_t i = 0; i < c->count && k > 0; i++) {
                float s = vec_score(c->metric, query, c->rows + i * c->dim, c->dim);
                uint64_t lo = 0, hi = n;

                if (n == k && !vec_ranks_before(c->metric, s, i, ret_score[n - 1], ret_index[n - 1]))
                        continue;
                while (lo < hi) { /* first position that (s, i) ranks before */
                        uint64_t mid = lo + (hi - lo) / 2;
                        if (vec_ranks_before(c->metric, s, i, ret_score[mid], ret_index[mid]))
                                hi = mid;
                        else
                                lo = mid + 1;
                }
                if (n < k)
                        n++;
                memmove(ret_index + lo + 1, ret_index + lo, (n - 1 - lo) * sizeof(*ret_index));
                memmove(ret_score + lo + 1, ret_score + lo, (n - 1 - lo) * sizeof(*ret_score));
                ret_index[lo] = i;
                ret_score[lo] = s;
        }
        return n;
}
