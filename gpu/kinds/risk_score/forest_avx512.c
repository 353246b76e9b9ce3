/* The blocked scorer with AVX-512: 16 rows per vector, four vectors (a block of 64
 * rows) walking each tree together, so that the gathers of independent rows overlap.
 *
 * Each lane does what risk_view_leaf does for its row, with the same float32
 * compare (ordered less-than: NaN is never below), the same missing-value rule and
 * the same float32 add of the leaf in tree order, so the margins are the scalar
 * scorer's to the bit. Built for any x86-64 compiler that knows the intrinsics; run
 * only where the CPU has AVX-512F (forest.c asks). */
#include "risk_score/forest.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define LANES 16
#define GROUPS ((int)(RISK_BLOCK_ROWS / LANES))

bool risk_avx512_usable(const struct risk_forest *f)
{
        return __builtin_cpu_supports("avx512f") && f->n_features <= (1u << 24) && f->n_nodes < (1u << 29) &&
               (uint64_t)f->n_trees << f->top_depth < (1u << 30);
}

__attribute__((target("avx512f"))) static inline __mmask16 go_right(__m512 x, __m512 value, __m512i feature)
{
        __mmask16 lt = _mm512_cmp_ps_mask(x, value, _CMP_LT_OQ);
        __mmask16 present = _mm512_cmp_ps_mask(x, x, _CMP_ORD_Q);
        __mmask16 missing_right = _mm512_test_epi32_mask(feature, _mm512_set1_epi32((int)RISK_SPLIT_MISSING_RIGHT));
        return (__mmask16)(~lt & (present | missing_right));
}

/* Below the unrolled top (trees deeper than top_depth): node by node, lanes that
 * reached a leaf masked off. idx3 holds node indices times 3 (12-byte nodes as
 * int32 words) and `left` their left children (0 at a leaf); returns the indices
 * (times 3) of the leaves. */
__attribute__((target("avx512f"))) static __m512i walk_rest(const struct risk_view *v, const float *rows,
                                                              __m512i rowoff, __m512i idx3, __m512i left)
{
        const int *words = (const int *)v->nodes;
        const __m512i mask = _mm512_set1_epi32((int)RISK_NODE_FEATURE_MASK), three = _mm512_set1_epi32(3);
        __mmask16 active = _mm512_test_epi32_mask(left, left);

        while (active) {
                __m512 value = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), active, idx3, words, 4);
                __m512i feature = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), active,
                                                              _mm512_add_epi32(idx3, _mm512_set1_epi32(2)), words, 4);
                __m512i col = _mm512_add_epi32(rowoff, _mm512_and_si512(feature, mask));
                __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), active, col, rows, 4);
                /* Nodes say "missing goes left"; the rule is the top's with the bit flipped. */
                __m512i flipped = _mm512_xor_si512(feature, _mm512_set1_epi32((int)RISK_NODE_DEFAULT_LEFT));
                __mmask16 right = go_right(x, value, flipped) & active;
                __m512i next = _mm512_mask_add_epi32(left, right, left, _mm512_set1_epi32(1));
                idx3 = _mm512_mask_mullo_epi32(idx3, active, next, three);
                left = _mm512_mask_i32gather_epi32(left, active, _mm512_add_epi32(idx3, _mm512_set1_epi32(1)), words,
                                                   4);
                active = _mm512_mask_test_epi32_mask(active, left, left);
        }
        return idx3;
}

__attribute__((target("avx512f"))) void risk_score_block_avx512(const struct risk_view *v, const float *rows,
                                                                 float *out)
{
        const uint32_t k = v->top_depth, width = 1u << k, nf = v->n_features;
        const __m512i one = _mm512_set1_epi32(1), mask = _mm512_set1_epi32((int)RISK_NODE_FEATURE_MASK);
        const __m512i three = _mm512_set1_epi32(3), inner = _mm512_set1_epi32((int)(width - 1));
        __m512i rowoff[GROUPS];
        __m512 acc[GROUPS];

        for (int g = 0; g < GROUPS; g++) {
                rowoff[g] = _mm512_mullo_epi32(
                        _mm512_add_epi32(_mm512_set1_epi32(g * LANES),
                                         _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)),
                        _mm512_set1_epi32((int)nf));
                acc[g] = _mm512_set1_ps(v->base_margin);
        }
        for (uint32_t t = 0; t < v->n_trees; t++) {
                const struct risk_split *top = v->tops + (uint64_t)t * (width - 1);
                const int *bottom = (const int *)v->bottoms + (uint64_t)t * width;
                __m512i pos[GROUPS];

                if (k) {
                        /* Level 0 is the same split for every row. */
                        __m512 value = _mm512_set1_ps(top[0].value);
                        __m512i feature = _mm512_set1_epi32((int)top[0].feature);
                        __m512i col = _mm512_and_si512(feature, mask);
                        for (int g = 0; g < GROUPS; g++) {
                                __m512 x = _mm512_i32gather_ps(_mm512_add_epi32(rowoff[g], col), rows, 4);
                                pos[g] = _mm512_mask_add_epi32(one, go_right(x, value, feature), one, one);
                        }
                } else {
                        for (int g = 0; g < GROUPS; g++)
                                pos[g] = _mm512_setzero_si512();
                }
                for (uint32_t level = 1; level < k; level++) {
                        for (int g = 0; g < GROUPS; g++) {
                                __m512 value = _mm512_i32gather_ps(pos[g], &top->value, 8);
                                __m512i feature = _mm512_i32gather_epi32(pos[g], &top->feature, 8);
                                __m512i col = _mm512_add_epi32(rowoff[g], _mm512_and_si512(feature, mask));
                                __m512 x = _mm512_i32gather_ps(col, rows, 4);
                                __m512i next = _mm512_add_epi32(_mm512_slli_epi32(pos[g], 1), one);
                                pos[g] = _mm512_mask_add_epi32(next, go_right(x, value, feature), next, one);
                        }
                }
                for (int g = 0; g < GROUPS; g++) {
                        __m512i idx = _mm512_i32gather_epi32(_mm512_sub_epi32(pos[g], inner), bottom, 4);
                        __m512i idx3 = _mm512_mullo_epi32(idx, three);
                        __m512i left = _mm512_i32gather_epi32(_mm512_add_epi32(idx3, one), (const int *)v->nodes, 4);
                        if (_mm512_test_epi32_mask(left, left))
                                idx3 = walk_rest(v, rows, rowoff[g], idx3, left);
                        acc[g] = _mm512_add_ps(acc[g], _mm512_i32gather_ps(idx3, (const float *)v->nodes, 4));
                }
        }
        for (int g = 0; g < GROUPS; g++)
                _mm512_storeu_ps(out + g * LANES, acc[g]);
}

#else

bool risk_avx512_usable(const struct risk_forest *f)
{
        return false;
}

void risk_score_block_avx512(const struct risk_view *v, const float *rows, float *out)
{
}

#endif
