// vec.search on the GPU: the same exact answer as the CPU search (cpu.c), found
// the same way -- float32 products screen the rows, a proven rounding margin keeps
// every row that may rank in the top k, and the few kept are scored exactly
// (vec_score: float64 sums, the device's non-fused intrinsics) and sorted by
// (score, row).
//
// One launch runs a chunk of tasks against one collection (resident: rows, then
// their squared norms). The launch reads the tasks' descriptors back, lays every
// query of the chunk out in one table and, a block of queries at a time:
//   gemm_screen   tiled products (128 x 128 per block, 8 x 8 per thread; 64 or 16
//                 queries per block for a small block of queries): the
//                 screening value of every (query, row) into a scratch matrix V;
//                 or cuBLAS's SGEMM where the machine has it and it passed its
//                 check (cuda_cublas.c), then sub_half_sqn for l2;
//   seg_max       each query's largest value per segment of G rows;
//   kth_select    per query the k-th largest segment maximum F (a radix select):
//                 k distinct rows reach it, so lim = F - margin bounds the top k;
//   emit          the rows at or above lim, appended to the query's candidates;
//   finish        the candidates' exact scores, a bitonic sort of (score, row)
//                 keys, and the first min(k, count) rows and scores.
// A query with more candidates than VEC_CUDA_CAP (near-ties) is flagged, and the
// host answers it (cuda_prep.c). A failure makes the runtime's last error non-zero,
// which the plugin core checks after the launch.
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vec_search/vec_math.h"
#include "vec_search/vec_search_cuda.h"

#define BN 128                  // rows per block tile
#define BK 8
#define TN 8                    // rows per thread
#define GEMM_THREADS 256
#define SEL_THREADS 256

// One query of the launch.
struct vq {
        uint64_t in;            // byte offset of its values in the input buffer
        uint64_t out;           // byte offset of its task's output region
        uint32_t q, i;          // the task's query count, this query's index in it
        uint32_t k, kk;
};
static_assert(sizeof(vq) == VEC_CUDA_VQ_BYTES, "the scratch plan counts a query's table entry");

__global__ void prep_queries(const unsigned char *in, const vq *qs, uint32_t nq, uint32_t d, int metric,
                             double max_norm, float *qp, double *margin)
{
        uint32_t g = blockIdx.x * blockDim.x + threadIdx.x;
        if (g >= nq)
                return;
        const float *x = (const float *)(in + qs[g].in);
        float *o = qp + (uint64_t)g * d;
        double ss = 0.0;
        for (uint32_t j = 0; j < d; j++)
                ss = __dadd_rn(ss, __dmul_rn((double)x[j], (double)x[j]));
        // As vec_row_prepare: each value divided by the float64 norm, rounded once.
        double norm = __dsqrt_rn(ss);
        for (uint32_t j = 0; j < d; j++)
                o[j] = metric == KILN_METRIC_COSINE ? __double2float_rn(__ddiv_rn((double)x[j], norm)) : x[j];
        double qs2 = 0.0;
        for (uint32_t j = 0; j < d; j++)
                qs2 = __dadd_rn(qs2, __dmul_rn((double)o[j], (double)o[j]));
        margin[g] = vec_margin_of((enum kiln_metric)metric, d, __dsqrt_rn(qs2), max_norm);
}

// Columns kc..kc+3 of one row (row == NULL: zeros; columns past d: zeros) into
// column lr of a transposed shared tile t[BK][width], rows lc..lc+3.
__device__ __forceinline__ void load4(float *t, uint32_t width, uint32_t lr, uint32_t lc, const float *row,
                                      uint32_t kc, uint32_t d)
{
        float4 f = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (row && kc + 3 < d && d % 4 == 0) {
                f = *(const float4 *)(row + kc);
        } else if (row) {
                f.x = kc < d ? row[kc] : 0.0f;
                f.y = kc + 1 < d ? row[kc + 1] : 0.0f;
                f.z = kc + 2 < d ? row[kc + 2] : 0.0f;
                f.w = kc + 3 < d ? row[kc + 3] : 0.0f;
        }
        t[(lc + 0) * width + lr] = f.x;
        t[(lc + 1) * width + lr] = f.y;
        t[(lc + 2) * width + lr] = f.z;
        t[(lc + 3) * width + lr] = f.w;
}

// The products of a tile of 16 TM queries by BN rows, TM x 8 per thread (16 x 16
// threads), BK columns at a time through shared memory. TM 8 for many queries; 4
// and 1 when a block of queries is smaller, so that a single query costs a pass
// over the rows rather than a 128-query tile's arithmetic.
template <int TM>
__global__ void __launch_bounds__(GEMM_THREADS, 2)
gemm_screen(const float *__restrict__ q, uint32_t qc, const float *__restrict__ x, const float *__restrict__ sqn,
            uint64_t n, uint32_t d, float *__restrict__ v)
{
        constexpr int TILE_Q = 16 * TM;
        __shared__ __align__(16) float as[BK][TILE_Q];
        __shared__ __align__(16) float bs[BK][BN];
        const uint32_t tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
        const uint64_t row0 = (uint64_t)blockIdx.x * BN;
        const uint32_t q0 = blockIdx.y * TILE_Q;
        float acc[TM][TN];

#pragma unroll
        for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++)
                        acc[i][j] = 0.0f;
        for (uint32_t k0 = 0; k0 < d; k0 += BK) {
                // Four consecutive columns of one row a thread (one 16-byte load when
                // the rows allow it), two threads a row: 32-byte pieces.
                const uint32_t lr = tid / 2, lc = (tid % 2) * 4, kc = k0 + lc;
                if (lr < TILE_Q)
                        load4(&as[0][0], TILE_Q, lr, lc, q0 + lr < qc ? q + (uint64_t)(q0 + lr) * d : NULL, kc, d);
                load4(&bs[0][0], BN, lr, lc, row0 + lr < n ? x + (row0 + lr) * d : NULL, kc, d);
                __syncthreads();
#pragma unroll
                for (uint32_t kk = 0; kk < BK; kk++) {
                        float a[TM], b[TN];
                        if (TM >= 4) {
#pragma unroll
                                for (int i = 0; i < TM; i += 4) {
                                        float4 t = *(const float4 *)&as[kk][ty * TM + i];
                                        a[i] = t.x, a[i + 1] = t.y, a[i + 2] = t.z, a[i + 3] = t.w;
                                }
                        } else {
#pragma unroll
                                for (int i = 0; i < TM; i++)
                                        a[i] = as[kk][ty * TM + i];
                        }
                        float4 b0 = *(const float4 *)&bs[kk][tx * TN], b1 = *(const float4 *)&bs[kk][tx * TN + 4];
                        b[0] = b0.x, b[1] = b0.y, b[2] = b0.z, b[3] = b0.w;
                        b[4] = b1.x, b[5] = b1.y, b[6] = b1.z, b[7] = b1.w;
#pragma unroll
                        for (int i = 0; i < TM; i++)
#pragma unroll
                                for (int j = 0; j < TN; j++)
                                        acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
                }
                __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < TM; i++) {
                uint32_t g = q0 + ty * TM + i;
                if (g >= qc)
                        continue;
#pragma unroll
                for (int j = 0; j < TN; j++) {
                        uint64_t r = row0 + tx * TN + j;
                        if (r < n)
                                v[(uint64_t)g * n + r] = sqn ? acc[i][j] - 0.5f * sqn[r] : acc[i][j];
                }
        }
}

// l2's screening value from a product cuBLAS wrote: q.x - |x|^2/2, rounded as the
// tiled kernel's epilogue rounds it; one row of blocks per query (blockIdx.y).
__global__ void sub_half_sqn(float *v, const float *__restrict__ sqn, uint64_t n)
{
        float *row = v + (uint64_t)blockIdx.y * n;
        for (uint64_t r = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; r < n; r += (uint64_t)gridDim.x * blockDim.x)
                row[r] = row[r] - 0.5f * sqn[r];
}

// One warp per segment of g_rows rows: its largest value.
__global__ void seg_max(const float *v, uint64_t n, uint32_t g_rows, uint64_t segs, float *segmax)
{
        const uint32_t lane = threadIdx.x % 32;
        const uint64_t s = (uint64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
        const uint32_t g = blockIdx.y;
        if (s >= segs)
                return;
        const uint64_t r0 = s * g_rows, r1 = r0 + g_rows < n ? r0 + g_rows : n;
        float m = -INFINITY;
        for (uint64_t r = r0 + lane; r < r1; r += 32)
                m = fmaxf(m, v[(uint64_t)g * n + r]);
        for (int off = 16; off > 0; off /= 2)
                m = fmaxf(m, __shfl_down_sync(0xffffffffu, m, off));
        if (lane == 0)
                segmax[(uint64_t)g * segs + s] = m;
}

// Per query (one block each): the k-th largest of its segment maxima, by a radix
// select over their order-preserving keys, and the limit below it.
__global__ void kth_select(const float *segmax, uint64_t segs, const vq *qs, const double *margin, float *lim)
{
        __shared__ unsigned int hist[256];
        __shared__ uint32_t prefix, mask, remaining;
        const uint32_t g = blockIdx.x;
        const uint32_t k = qs[g].k;
        const float *sm = segmax + (uint64_t)g * segs;

        if (segs < k) {
                // Fewer segments than k: no k witnesses; every row is a candidate.
                if (threadIdx.x == 0)
                        lim[g] = -INFINITY;
                return;
        }
        if (threadIdx.x == 0) {
                prefix = 0;
                mask = 0;
                remaining = k;
        }
        for (int shift = 24; shift >= 0; shift -= 8) {
                for (uint32_t b = threadIdx.x; b < 256; b += blockDim.x)
                        hist[b] = 0;
                __syncthreads();
                for (uint64_t s = threadIdx.x; s < segs; s += blockDim.x) {
                        uint32_t key = vec_f32_key(sm[s]);
                        if ((key & mask) == prefix)
                                atomicAdd(&hist[(key >> shift) & 255u], 1u);
                }
                __syncthreads();
                if (threadIdx.x == 0) {
                        uint32_t b = 255;
                        for (;; b--) {
                                if (hist[b] >= remaining || b == 0)
                                        break;
                                remaining -= hist[b];
                        }
                        prefix |= b << shift;
                        mask |= 255u << shift;
                }
                __syncthreads();
        }
        if (threadIdx.x == 0)
                lim[g] = vec_lim_of(vec_key_f32(prefix), margin[g]);
}

// Every row at or above its query's limit, appended to the query's candidates.
__global__ void emit(const float *v, uint64_t n, const float *lim, unsigned int *count, uint32_t *cand)
{
        const uint32_t g = blockIdx.y;
        const float l = lim[g];
        for (uint64_t r = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; r < n; r += (uint64_t)gridDim.x * blockDim.x)
                if (v[(uint64_t)g * n + r] >= l) {
                        unsigned int at = atomicAdd(&count[g], 1u);
                        if (at < VEC_CUDA_CAP)
                                cand[(uint64_t)g * VEC_CUDA_CAP + at] = (uint32_t)r;
                }
}

// Per query (one block each): exact scores of the candidates, sorted by (score,
// row), the first kk written to the task's region, and the query's flag.
__global__ void finish(const float *qp, const float *x, uint32_t d, int metric, const vq *qs,
                       const unsigned int *count, const uint32_t *cand, unsigned char *out)
{
        __shared__ unsigned long long keys[VEC_CUDA_CAP];
        const uint32_t g = blockIdx.x;
        const vq e = qs[g];
        unsigned char *region = out + e.out;
        const unsigned int cnt = count[g];
        const float *qv = qp + (uint64_t)g * d;

        if (cnt > VEC_CUDA_CAP || cnt < e.kk) {
                // More near-ties than kept (or, never expected, fewer than kk): the host answers.
                if (threadIdx.x == 0)
                        ((int32_t *)region)[e.i] = 1;
                return;
        }
        uint32_t p = 1;
        while (p < cnt)
                p *= 2;
        for (uint32_t i = threadIdx.x; i < p; i += blockDim.x) {
                if (i < cnt) {
                        uint32_t row = cand[(uint64_t)g * VEC_CUDA_CAP + i];
                        float s = vec_score((enum kiln_metric)metric, qv, x + (uint64_t)row * d, d);
                        keys[i] = vec_rank_key((enum kiln_metric)metric, s, row);
                } else {
                        keys[i] = ~0ull;
                }
        }
        __syncthreads();
        for (uint32_t k = 2; k <= p; k *= 2)
                for (uint32_t j = k / 2; j > 0; j /= 2) {
                        for (uint32_t i = threadIdx.x; i < p; i += blockDim.x) {
                                uint32_t o = i ^ j;
                                if (o > i) {
                                        bool up = (i & k) == 0;
                                        unsigned long long a = keys[i], b = keys[o];
                                        if ((a > b) == up) {
                                                keys[i] = b;
                                                keys[o] = a;
                                        }
                                }
                        }
                        __syncthreads();
                }
        uint32_t *rows = (uint32_t *)(region + vec_cuda_rows_at(e.q)) + (uint64_t)e.i * e.kk;
        float *scores = (float *)(region + vec_cuda_scores_at(e.q, e.kk)) + (uint64_t)e.i * e.kk;
        for (uint32_t i = threadIdx.x; i < e.kk; i += blockDim.x) {
                rows[i] = (uint32_t)keys[i];
                scores[i] = vec_rank_key_score((enum kiln_metric)metric, keys[i]);
        }
        if (threadIdx.x == 0)
                ((int32_t *)region)[e.i] = 0;
}

__global__ void no_blocks() {}

// Makes the runtime's last error non-zero (a launch of no blocks is an invalid
// configuration) so the core takes the batch elsewhere: used for failures that are
// not CUDA's own (host memory).
static void fail_launch(cudaStream_t st)
{
        no_blocks<<<0, 1, 0, st>>>();
}

extern "C" void vec_search_cuda_launch(const kiln_cuda_launch *l)
{
        cudaStream_t st = (cudaStream_t)l->stream;
        const unsigned nt = l->n_tasks;
        kiln_cuda_desc *desc = (kiln_cuda_desc *)malloc(nt * sizeof(*desc));
        vq *table = NULL;

        if (!desc) {
                fail_launch(st);
                return;
        }
        if (cudaMemcpyAsync(desc, l->desc, nt * sizeof(*desc), cudaMemcpyDeviceToHost, st) != cudaSuccess ||
            cudaStreamSynchronize(st) != cudaSuccess) {
                free(desc);
                return;
        }
        const struct vec_cuda_plan p = vec_cuda_plan_of(desc, nt);
        const uint64_t nq = p.nq, n = p.n, chunk = p.chunk;
        const uint32_t d = p.d;
        table = (vq *)malloc((nq ? nq : 1) * sizeof(*table));
        if (!table) {
                free(desc);
                fail_launch(st);
                return;
        }
        uint64_t g = 0;
        for (unsigned t = 0; t < nt; t++) {
                const uint32_t *w = desc[t].params;
                if (w[VEC_W_HOST])
                        continue;
                uint64_t in = desc[t].in_offset + ((uint64_t)w[VEC_W_IN] | (uint64_t)w[VEC_W_IN + 1] << 32);
                for (uint32_t i = 0; i < w[VEC_W_Q]; i++, g++) {
                        table[g].in = in + (uint64_t)i * d * sizeof(float);
                        table[g].out = desc[t].out_offset;
                        table[g].q = w[VEC_W_Q];
                        table[g].i = i;
                        table[g].k = w[VEC_W_K];
                        table[g].kk = w[VEC_W_KK];
                }
        }
        free(desc);
        if (nq == 0) {
                free(table);
                return;
        }
        // The scratch comes from the device's stream-ordered pool; the core holds
        // vec_cuda_plan_bytes of the budget for it (kiln_cuda_kind.scratch_bytes)
        // and has the pool keep that much mapped between launches.
        const uint32_t g_rows = p.g_rows;
        const uint64_t segs = p.segs;
        const int metric = p.metric;
        const float *x = (const float *)l->object;
        const float *sqn = metric == KILN_METRIC_L2 ? x + n * d : NULL;
        vq *d_table = NULL;
        float *qp = NULL, *v = NULL, *segmax = NULL, *lim = NULL;
        double *margin = NULL;
        unsigned int *count = NULL;
        uint32_t *cand = NULL;
        bool ok = cudaMallocAsync((void **)&d_table, nq * sizeof(vq), st) == cudaSuccess &&
                  cudaMallocAsync((void **)&qp, nq * d * sizeof(float), st) == cudaSuccess &&
                  cudaMallocAsync((void **)&margin, nq * sizeof(double), st) == cudaSuccess &&
                  cudaMallocAsync((void **)&v, p.v_cells * sizeof(float), st) == cudaSuccess &&
                  cudaMallocAsync((void **)&segmax, p.s_cells * sizeof(float), st) == cudaSuccess &&
                  cudaMallocAsync((void **)&lim, chunk * sizeof(float), st) == cudaSuccess &&
                  cudaMallocAsync((void **)&count, chunk * sizeof(unsigned int), st) == cudaSuccess &&
                  cudaMallocAsync((void **)&cand, chunk * VEC_CUDA_CAP * sizeof(uint32_t), st) == cudaSuccess &&
                  cudaMemcpyAsync(d_table, table, nq * sizeof(vq), cudaMemcpyHostToDevice, st) == cudaSuccess;
        if (ok)
                prep_queries<<<(unsigned)((nq + 127) / 128), 128, 0, st>>>((const unsigned char *)l->in, d_table,
                                                                          (uint32_t)nq, d, metric, p.max_norm, qp,
                                                                          margin);
        for (uint64_t c0 = 0; ok && c0 < nq; c0 += chunk) {
                const uint32_t qc = (uint32_t)(nq - c0 < chunk ? nq - c0 : chunk);
                const float *qpc = qp + c0 * d;
                ok = cudaMemsetAsync(count, 0, qc * sizeof(unsigned int), st) == cudaSuccess;
                if (ok && n > 0) {
                        if (vec_cublas_product(l->stream, qpc, qc, x, n, d, v)) {
                                if (sqn) {
                                        uint64_t blocks = (n + 255) / 256;
                                        dim3 gq((unsigned)(blocks < 1024 ? blocks : 1024), qc);
                                        sub_half_sqn<<<gq, 256, 0, st>>>(v, sqn, n);
                                }
                        } else if (qc <= 16) {
                                dim3 gg((unsigned)((n + BN - 1) / BN), 1);
                                gemm_screen<1><<<gg, GEMM_THREADS, 0, st>>>(qpc, qc, x, sqn, n, d, v);
                        } else if (qc <= 64) {
                                dim3 gg((unsigned)((n + BN - 1) / BN), 1);
                                gemm_screen<4><<<gg, GEMM_THREADS, 0, st>>>(qpc, qc, x, sqn, n, d, v);
                        } else {
                                dim3 gg((unsigned)((n + BN - 1) / BN), (qc + 127) / 128);
                                gemm_screen<8><<<gg, GEMM_THREADS, 0, st>>>(qpc, qc, x, sqn, n, d, v);
                        }
                        dim3 gs((unsigned)((segs + 7) / 8), qc);
                        seg_max<<<gs, 256, 0, st>>>(v, n, g_rows, segs, segmax);
                        kth_select<<<qc, SEL_THREADS, 0, st>>>(segmax, segs, d_table + c0, margin + c0, lim);
                        uint64_t blocks = (n + 255) / 256;
                        dim3 ge((unsigned)(blocks < 1024 ? blocks : 1024), qc);
                        emit<<<ge, 256, 0, st>>>(v, n, lim, count, cand);
                }
                if (ok)
                        finish<<<qc, SEL_THREADS, 0, st>>>(qpc, x, d, metric, d_table + c0, count, cand,
                                                           (unsigned char *)l->out);
                // Peek, not get: the core reads the error after the launch.
                ok = ok && cudaPeekAtLastError() == cudaSuccess;
        }
        void *scratch[] = { cand, count, lim, segmax, v, margin, qp, d_table };
        for (size_t i = 0; i < sizeof(scratch) / sizeof(scratch[0]); i++)
                if (scratch[i])
                        cudaFreeAsync(scratch[i], st);
        // The table's copy must be done before its host memory goes.
        cudaStreamSynchronize(st);
        free(table);
        if (!ok && cudaPeekAtLastError() == cudaSuccess)
                fail_launch(st);
}
