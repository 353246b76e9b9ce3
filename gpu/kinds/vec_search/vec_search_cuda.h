/* vec.search's CUDA half: the parameter words cuda_prep.c packs and kernel.cu
 * reads, the layout of a task's output region, and the launch function.
 *
 * A task's output region (host: complete(); device: the finish kernel):
 *   int32 flags[q]                   0: answered here; 1: the host answers it
 *   uint32 rows[q][kk]               at vec_cuda_rows_at(q)
 *   float scores[q][kk]              at vec_cuda_scores_at(q, kk)
 * with kk = min(k, count). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "../../cuda/cuda_kind.h"

enum vec_cuda_word {
        VEC_W_Q = 0,          /* queries of the task */
        VEC_W_K = 1,          /* k */
        VEC_W_DIM = 2,
        VEC_W_METRIC = 3,     /* enum kiln_metric */
        VEC_W_COUNT = 4,      /* u64: rows of the collection (4, 5) */
        VEC_W_KK = 6,         /* min(k, count) */
        VEC_W_HOST = 7,       /* 1: the device skips the task, complete() answers it */
        VEC_W_IN = 8,         /* u64: the queries' offset in the task's inputs (8, 9) */
        VEC_W_MAX_NORM = 10,  /* f64: the collection's largest row norm (10, 11) */
};

/* Candidates a query may keep on the device; more (near-ties) go to the host. */
#define VEC_CUDA_CAP 4096u

KILN_HD static inline uint64_t vec_cuda_rows_at(uint64_t q)
{
        return kiln_cuda_align(q * 4, KILN_CUDA_PART_ALIGN);
}

KILN_HD static inline uint64_t vec_cuda_scores_at(uint64_t q, uint64_t kk)
{
        return kiln_cuda_align(vec_cuda_rows_at(q) + q * kk * 4, KILN_CUDA_PART_ALIGN);
}

KILN_HD static inline uint64_t vec_cuda_out_bytes(uint64_t q, uint64_t kk)
{
        return vec_cuda_scores_at(q, kk) + q * kk * 4;
}

/* How a launch blocks its queries (kernel.cu) and the device memory it allocates
 * for that, from its tasks' descriptors: the launch and the core's hold on the
 * budget for it (kiln_cuda_kind.scratch_bytes) read the same figures. */
#define VEC_CUDA_V_BUDGET (1ull << 30)   /* bytes of screening values per block of queries */
#define VEC_CUDA_CHUNK_MAX 256u          /* queries per block of queries */
#define VEC_CUDA_VQ_BYTES 32u            /* a query's entry in the launch's table */
/* The stream-ordered allocator maps memory in pieces of 2 MiB; cuBLAS keeps a
 * workspace per handle (32 MiB on Hopper). */
#define VEC_CUDA_ALLOC_ROUND (2ull << 20)
#define VEC_CUDA_CUBLAS_WORKSPACE (32ull << 20)

struct vec_cuda_plan {
        uint64_t nq;            /* queries of the tasks the device answers */
        uint64_t n;             /* rows of the collection */
        uint32_t d, kmax, g_rows;
        int metric;
        double max_norm;
        uint64_t segs, chunk;   /* segments of g_rows rows; queries per block of queries */
        uint64_t v_cells, s_cells;
};

/* The segment size: the largest power of two up to 128 that leaves at least 64 k
 * segments (so the k-th segment maximum is close to the k-th value); 1 for a small
 * collection. */
static inline uint32_t vec_cuda_segment_rows(uint64_t n, uint32_t kmax)
{
        uint32_t g = 128;
        while (g > 1 && (n + g - 1) / g < 64ull * kmax)
                g /= 2;
        return g;
}

static inline struct vec_cuda_plan vec_cuda_plan_of(const struct kiln_cuda_desc *desc, unsigned n_tasks)
{
        struct vec_cuda_plan p;
        uint64_t chunk;

        memset(&p, 0, sizeof(p));
        p.kmax = 1;
        for (unsigned t = 0; t < n_tasks; t++) {
                const uint32_t *w = desc[t].params;
                if (w[VEC_W_HOST])
                        continue;
                /* Every task of a launch runs against the same collection. */
                p.nq += w[VEC_W_Q];
                p.d = w[VEC_W_DIM];
                p.metric = (int)w[VEC_W_METRIC];
                p.n = (uint64_t)w[VEC_W_COUNT] | (uint64_t)w[VEC_W_COUNT + 1] << 32;
                p.max_norm = kiln_cuda_get_f64(w, VEC_W_MAX_NORM);
                p.kmax = w[VEC_W_K] > p.kmax ? w[VEC_W_K] : p.kmax;
        }
        p.g_rows = vec_cuda_segment_rows(p.n, p.kmax);
        p.segs = p.n ? (p.n + p.g_rows - 1) / p.g_rows : 0;
        chunk = p.n ? VEC_CUDA_V_BUDGET / (p.n * sizeof(float)) : VEC_CUDA_CHUNK_MAX;
        chunk = chunk < 1 ? 1 : chunk > VEC_CUDA_CHUNK_MAX ? VEC_CUDA_CHUNK_MAX : chunk;
        p.chunk = chunk > p.nq ? p.nq : chunk;
        p.v_cells = p.chunk * p.n > 0 ? p.chunk * p.n : 1;
        p.s_cells = p.chunk * p.segs > 0 ? p.chunk * p.segs : 1;
        return p;
}

static inline uint64_t vec_cuda_rounded(uint64_t bytes)
{
        return (bytes + VEC_CUDA_ALLOC_ROUND - 1) / VEC_CUDA_ALLOC_ROUND * VEC_CUDA_ALLOC_ROUND;
}

/* The bytes the launch of plan p allocates, as the allocator rounds them, and
 * cuBLAS's workspace; 0 when the device answers none of its queries. */
static inline uint64_t vec_cuda_plan_bytes(const struct vec_cuda_plan *p)
{
        if (p->nq == 0)
                return 0;
        return vec_cuda_rounded(p->nq * VEC_CUDA_VQ_BYTES) + vec_cuda_rounded(p->nq * p->d * sizeof(float)) +
               vec_cuda_rounded(p->nq * sizeof(double)) + vec_cuda_rounded(p->v_cells * sizeof(float)) +
               vec_cuda_rounded(p->s_cells * sizeof(float)) + vec_cuda_rounded(p->chunk * sizeof(float)) +
               vec_cuda_rounded(p->chunk * sizeof(unsigned int)) +
               vec_cuda_rounded(p->chunk * VEC_CUDA_CAP * sizeof(uint32_t)) + VEC_CUDA_CUBLAS_WORKSPACE;
}

#ifdef __cplusplus
extern "C" {
#endif
void vec_search_cuda_launch(const struct kiln_cuda_launch *l);
/* Enqueues v[g * n + r] = q_g . x_r (g < qc, r < n; rows of d floats, device
 * memory) on `stream` (a cudaStream_t) by cuBLAS, when it is present and passed its
 * check on the current device (cuda_cublas.c); false: nothing was enqueued. */
bool vec_cublas_product(void *stream, const float *q, uint32_t qc, const float *x, uint64_t n, uint32_t d, float *v);
/* Destroys the cuBLAS handles made for `device`'s streams, which are about to go
 * (kiln_cuda_kind.device_release): a reset device's new streams get new ones. */
void vec_cublas_device_release(int device);
#ifdef __cplusplus
}
#endif
