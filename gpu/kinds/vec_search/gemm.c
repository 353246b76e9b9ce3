/* vec.search's float32 matrix products: C = Q X^T (vec_search.h).
 *
 * Two ways: BLIS's sgemm when the build found it (kind.cmake; Debian's
 * libblis-serial-dev), which is the fastest for many queries at once, and an own
 * register-blocked kernel (4 queries x 4 rows, 16 columns a step), compiled for
 * AVX-512, AVX2+FMA and plain x86-64 and picked by the CPU's features, which
 * is faster for a few queries (a product of 1..16 queries is memory-bound, and
 * sgemm's packing costs more than it saves there) and is what runs where no
 * BLAS exists (the GPU machine's build of gpu/ alone).
 *
 * The products only screen candidates: the search bounds their rounding for any
 * order of summation (vec_margin), so FMA contraction is allowed in this file. */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "vec_search.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VEC_X86 1
#endif

#ifdef KILN_VEC_BLAS
#include <cblas.h> /* BLIS, single-threaded: the search runs its own threads */

/* Products below this many queries use the own kernel. */
#define BLAS_MIN_QUERIES 64
#endif

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

#define INLINE static inline __attribute__((always_inline))

INLINE v16 load16(const float *p)
{
        v16 v;

        memcpy(&v, p, sizeof(v));
        return v;
}

/* The sum of the 16 lanes, halving the vector (a few shuffles, not 15 extracts). */
INLINE float hsum(v16 v)
{
        v8 h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
               __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
        v4 f = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);

        return (f[0] + f[2]) + (f[1] + f[3]);
}

/* One block of mi <= 4 queries by mj <= 4 rows, as 16 vector accumulators written
 * out (the compiler keeps them in registers only so). An edge block repeats its
 * last query or row in the unused places and stores only the valid ones. */
INLINE void block(size_t mi, size_t mj, size_t d, const float *q, const float *x, float *c, size_t ldc)
{
        const float *q0 = q, *q1 = q + (mi > 1) * d, *q2 = q + (mi > 2 ? 2 : mi - 1) * d,
                    *q3 = q + (mi > 3 ? 3 : mi - 1) * d;
        const float *x0 = x, *x1 = x + (mj > 1) * d, *x2 = x + (mj > 2 ? 2 : mj - 1) * d,
                    *x3 = x + (mj > 3 ? 3 : mj - 1) * d;
        v16 a00 = { 0 }, a01 = { 0 }, a02 = { 0 }, a03 = { 0 }, a10 = { 0 }, a11 = { 0 }, a12 = { 0 },
            a13 = { 0 }, a20 = { 0 }, a21 = { 0 }, a22 = { 0 }, a23 = { 0 }, a30 = { 0 }, a31 = { 0 },
            a32 = { 0 }, a33 = { 0 };
        size_t t = 0;

        for (; t + 16 <= d; t += 16) {
                v16 y0 = load16(x0 + t), y1 = load16(x1 + t), y2 = load16(x2 + t), y3 = load16(x3 + t), p;
                p = load16(q0 + t);
                a00 += p * y0, a01 += p * y1, a02 += p * y2, a03 += p * y3;
                p = load16(q1 + t);
                a10 += p * y0, a11 += p * y1, a12 += p * y2, a13 += p * y3;
                p = load16(q2 + t);
                a20 += p * y0, a21 += p * y1, a22 += p * y2, a23 += p * y3;
                p = load16(q3 + t);
                a30 += p * y0, a31 += p * y1, a32 += p * y2, a33 += p * y3;
        }
        float s[4][4] = {
                { hsum(a00), hsum(a01), hsum(a02), hsum(a03) },
                { hsum(a10), hsum(a11), hsum(a12), hsum(a13) },
                { hsum(a20), hsum(a21), hsum(a22), hsum(a23) },
                { hsum(a30), hsum(a31), hsum(a32), hsum(a33) },
        };
        const float *qs[4] = { q0, q1, q2, q3 }, *xs[4] = { x0, x1, x2, x3 };
        for (size_t i = 0; i < mi; i++)
                for (size_t j = 0; j < mj; j++) {
                        float v = s[i][j];
                        for (size_t u = t; u < d; u++)
                                v += qs[i][u] * xs[j][u];
                        c[i * ldc + j] = v;
                }
}

/* Rows outside, queries inside: four rows stay in L1 while the queries (a few
 * KiB each) stream from L1 or L2. Compiled once per instruction set below. */
INLINE void own_gemm(size_t m, size_t r, size_t d, const float *q, const float *x, float *c, size_t ldc)
{
        for (size_t j0 = 0; j0 < r; j0 += 4) {
                size_t mj = r - j0 < 4 ? r - j0 : 4;
                for (size_t i0 = 0; i0 < m; i0 += 4) {
                        size_t mi = m - i0 < 4 ? m - i0 : 4;
                        block(mi, mj, d, q + i0 * d, x + j0 * d, c + i0 * ldc + j0, ldc);
                }
        }
}

#ifdef VEC_X86
__attribute__((target("avx512f,avx512vl,avx2,fma"))) static void own_gemm_avx512(size_t m, size_t r, size_t d,
                                                                                 const float *q, const float *x,
                                                                                 float *c, size_t ldc)
{
        own_gemm(m, r, d, q, x, c, ldc);
}

__attribute__((target("avx2,fma"))) static void own_gemm_avx2(size_t m, size_t r, size_t d, const float *q,
                                                              const float *x, float *c, size_t ldc)
{
        own_gemm(m, r, d, q, x, c, ldc);
}

#endif

static void own_gemm_base(size_t m, size_t r, size_t d, const float *q, const float *x, float *c, size_t ldc)
{
        own_gemm(m, r, d, q, x, c, ldc);
}

typedef void own_gemm_fn(size_t m, size_t r, size_t d, const float *q, const float *x, float *c, size_t ldc);

/* The best version for this CPU (chosen by features: a resolver that went by CPU
 * model names would miss newer models). */
static own_gemm_fn *own_gemm_pick(void)
{
#ifdef VEC_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
                return own_gemm_avx512;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
                return own_gemm_avx2;
#endif
        return own_gemm_base;
}

void vec_gemm_nt(size_t m, size_t r, size_t d, const float *q, const float *x, float *c, size_t ldc, bool portable)
{
        if (m == 0 || r == 0)
                return;
#ifdef KILN_VEC_BLAS
        if (!portable && m >= BLAS_MIN_QUERIES && m <= (size_t)INT32_MAX && r <= (size_t)INT32_MAX &&
            d <= (size_t)INT32_MAX && ldc <= (size_t)INT32_MAX) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)r, (int)d, 1.0f, q, (int)d, x,
                            (int)d, 0.0f, c, (int)ldc);
                return;
        }
#endif
        own_gemm_pick()(m, r, d, q, x, c, ldc);
}

/* ---- scanning a row of products for candidates ---- */

/* The screening value of column j: the product, less half the row's squared norm
 * for l2 (sqn non-NULL). */
INLINE float screen(const float *c, const float *sqn, size_t j)
{
        return sqn ? c[j] - 0.5f * sqn[j] : c[j];
}

#ifdef VEC_X86
__attribute__((target("avx512f"))) static size_t scan_avx512(const float *c, const float *sqn, size_t r, float lim,
                                                            uint32_t *ret_col, float *ret_val)
{
        const __m512 l = _mm512_set1_ps(lim), half = _mm512_set1_ps(0.5f);
        const __m512i step = _mm512_set1_epi32(16);
        __m512i col = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        size_t n = 0, j = 0;

        for (; j + 16 <= r; j += 16, col = _mm512_add_epi32(col, step)) {
                __m512 v = _mm512_loadu_ps(c + j);
                if (sqn)
                        v = _mm512_sub_ps(v, _mm512_mul_ps(half, _mm512_loadu_ps(sqn + j)));
                __mmask16 hit = _mm512_cmp_ps_mask(v, l, _CMP_GE_OQ);
                if (hit) {
                        _mm512_mask_compressstoreu_ps(ret_val + n, hit, v);
                        _mm512_mask_compressstoreu_epi32(ret_col + n, hit, col);
                        n += (size_t)__builtin_popcount(hit);
                }
        }
        for (; j < r; j++) {
                float v = screen(c, sqn, j);
                if (v >= lim) {
                        ret_col[n] = (uint32_t)j;
                        ret_val[n++] = v;
                }
        }
        return n;
}

__attribute__((target("avx2"))) static size_t scan_avx2(const float *c, const float *sqn, size_t r, float lim,
                                                       uint32_t *ret_col, float *ret_val)
{
        const __m256 l = _mm256_set1_ps(lim), half = _mm256_set1_ps(0.5f);
        size_t n = 0, j = 0;

        for (; j + 8 <= r; j += 8) {
                __m256 v = _mm256_loadu_ps(c + j);
                if (sqn)
                        v = _mm256_sub_ps(v, _mm256_mul_ps(half, _mm256_loadu_ps(sqn + j)));
                unsigned hit = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, l, _CMP_GE_OQ));
                if (!hit)
                        continue;
                float lane[8];
                _mm256_storeu_ps(lane, v);
                for (; hit; hit &= hit - 1) {
                        unsigned b = (unsigned)__builtin_ctz(hit);
                        ret_col[n] = (uint32_t)(j + b);
                        ret_val[n++] = lane[b];
                }
        }
        for (; j < r; j++) {
                float v = screen(c, sqn, j);
                if (v >= lim) {
                        ret_col[n] = (uint32_t)j;
                        ret_val[n++] = v;
                }
        }
        return n;
}

#endif

static size_t scan_base(const float *c, const float *sqn, size_t r, float lim, uint32_t *ret_col, float *ret_val)
{
        size_t n = 0;

        for (size_t j = 0; j < r; j++) {
                float v = screen(c, sqn, j);
                if (v >= lim) {
                        ret_col[n] = (uint32_t)j;
                        ret_val[n++] = v;
                }
        }
        return n;
}

size_t vec_scan(const float *c, const float *sqn, size_t r, float lim, uint32_t *ret_col, float *ret_val)
{
#ifdef VEC_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f"))
                return scan_avx512(c, sqn, r, lim, ret_col, ret_val);
        if (__builtin_cpu_supports("avx2"))
                return scan_avx2(c, sqn, r, lim, ret_col, ret_val);
#endif
        return scan_base(c, sqn, r, lim, ret_col, ret_val);
}

const char *vec_gemm_name(void)
{
#ifdef KILN_VEC_BLAS
        return "blis";
#else
        return "own kernel";
#endif
}
