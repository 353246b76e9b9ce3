/* vec.search's screening bounds, shared by the CPU search (cpu.c, select.c) and
 * the CUDA kernel (kernel.cu): host and device compute the same formulas.
 *
 * A screening value is a float32 product: q.x for cosine and ip, q.x - |x|^2/2 for
 * l2 (larger is better for every metric; |q - x|^2 = |q|^2 - 2 value). Its float32
 * rounding, in any order of summation and with or without FMA, is at most
 * gamma(dim + 2) (|q| max|x| (+ max|x|^2 for l2)), gamma(n) = n u / (1 - n u),
 * u = 2^-24. So when at least k rows reach a screening value F, a row below
 * F - vec_margin_of(...) can never be in the exact top k: each of those k rows
 * then ranks before it (the proof is in the CPU search's header, vec_search.h). */
#pragma once

#include <math.h>
#include <stdint.h>

#include "vec_search/collection.h"

/* Twice the rounding bound, plus float32 ulps of the score (rows whose exact
 * scores round to the same float32 are ordered by id, not by the exact value) and
 * float32's absolute rounding below its normal range. qnorm is |q| in float64,
 * max_norm the collection's largest row norm. */
KILN_HD static inline double vec_margin_of(enum kiln_metric metric, uint32_t dim, double qnorm, double max_norm)
{
        const double u = 0x1p-24;
        double nd = (double)dim + 2.0, gamma = nd * u / (1.0 - nd * u), err, scale;

        if (metric == KILN_METRIC_L2) {
                err = gamma * (qnorm * max_norm + max_norm * max_norm);
                scale = (qnorm + max_norm) * (qnorm + max_norm);
        } else {
                err = gamma * qnorm * max_norm;
                scale = qnorm * max_norm;
        }
        return 2.0 * err + 0x1p-20 * scale + (nd + 4.0) * 0x1p-146;
}

/* The largest float32 at or below floor - margin (the float64 difference may round
 * up when narrowed; a value that low must still pass); -infinity for a floor of
 * -infinity. */
KILN_HD static inline float vec_lim_of(float floor, double margin)
{
        double d;
        float f;

        if (isinf(floor))
                return -INFINITY;
        d = (double)floor - margin;
        f = (float)d;
        if ((double)f > d)
                f = nextafterf(f, -INFINITY);
        return f;
}

/* A float32 as an unsigned key in the same order (larger float, larger key);
 * -0 and +0 give the same key, as they are equal scores. */
KILN_HD static inline uint32_t vec_f32_key(float v)
{
        uint32_t b;

        if (v == 0.0f)
                v = 0.0f;
        memcpy(&b, &v, sizeof(b));
        return b & 0x80000000u ? ~b : b | 0x80000000u;
}

/* The float32 of a key made by vec_f32_key. */
KILN_HD static inline float vec_key_f32(uint32_t k)
{
        uint32_t b = k & 0x80000000u ? k & 0x7fffffffu : ~k;
        float v;

        memcpy(&v, &b, sizeof(v));
        return v;
}

/* A (score, row) pair as one 64-bit key whose ascending order is the ranking: best
 * first (larger scores for cosine and ip, smaller for l2), equal scores by row --
 * vec_ranks_before's order. Rows must be below 2^32. */
KILN_HD static inline uint64_t vec_rank_key(enum kiln_metric metric, float score, uint32_t row)
{
        uint32_t s = vec_f32_key(score);

        return (uint64_t)(metric == KILN_METRIC_L2 ? s : ~s) << 32 | row;
}

/* The score of a key made by vec_rank_key. */
KILN_HD static inline float vec_rank_key_score(enum kiln_metric metric, uint64_t key)
{
        uint32_t s = (uint32_t)(key >> 32);

        return vec_key_f32(metric == KILN_METRIC_L2 ? s : ~s);
}
