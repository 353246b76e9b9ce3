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

#ifdef __cplusplus
extern "C" {
#endif
void vec_search_cuda_launch(const struct kiln_cuda_launch *l);
/* Enqueues v[g * n + r] = q_g . x_r (g < qc, r < n; rows of d floats, device
 * memory) on `stream` (a cudaStream_t) by cuBLAS, when it is present and passed its
 * check on the current device (cuda_cublas.c); false: nothing was enqueued. */
bool vec_cublas_product(void *stream, const float *q, uint32_t qc, const float *x, uint64_t n, uint32_t d, float *v);
#ifdef __cplusplus
}
#endif
