// risk.score on the GPU: one launch for every task of a chunk (one object per
// launch), one thread per row. A stored model's forest is the resident image of its
// block (forest_math.h: risk_view_of_image); each thread walks every tree in order
// with the same unrolled tops and float adds as the CPU, so the margins agree to the
// bit. Rows of up to RISK_CUDA_STAGE_COLS values are staged in shared memory by the
// block with coalesced loads, then read from there by each split.
#include "risk_score/altman_math.h"
#include "risk_score/forest_math.h"
#include "risk_score/risk_cuda.h"

__global__ void __launch_bounds__(RISK_CUDA_THREADS)
        risk_kernel(const kiln_cuda_desc *__restrict__ descs, const unsigned char *__restrict__ in,
                    unsigned char *__restrict__ out, const void *__restrict__ image)
{
        __shared__ float stage[RISK_CUDA_THREADS * (RISK_CUDA_STAGE_COLS + 1)];
        const kiln_cuda_desc &d = descs[blockIdx.y];
        const uint32_t model = d.params[RISK_W_MODEL], n = d.params[RISK_W_ROWS], cols = d.params[RISK_W_COLS];
        const uint64_t in_at = d.in_offset + ((uint64_t)d.params[RISK_W_IN] | (uint64_t)d.params[RISK_W_IN + 1] << 32);
        const float *rows = (const float *)(in + in_at);
        unsigned char *o = out + d.out_offset;
        float *first = (float *)o;
        unsigned char *second = o + kiln_cuda_align((uint64_t)n * sizeof(float), KILN_CUDA_PART_ALIGN);
        const bool staged = cols <= RISK_CUDA_STAGE_COLS;
        const uint32_t stride = cols | 1u; /* odd: the threads' rows fall in distinct banks */
        struct risk_view v;

        if (model == RISK_MODEL_STORED)
                v = risk_view_of_image(image);
        // Blocks stride over the task's rows; every thread of a block takes part in
        // each staging round, rows or not.
        for (uint32_t base = blockIdx.x * RISK_CUDA_THREADS; base < n; base += gridDim.x * RISK_CUDA_THREADS) {
                uint32_t row = base + threadIdx.x, here = n - base < RISK_CUDA_THREADS ? n - base : RISK_CUDA_THREADS;
                const float *x = rows + (uint64_t)row * cols;
                if (staged) {
                        __syncthreads();
                        const float *src = rows + (uint64_t)base * cols;
                        for (uint32_t i = threadIdx.x; i < here * cols; i += RISK_CUDA_THREADS)
                                stage[(i / cols) * stride + i % cols] = src[i];
                        __syncthreads();
                        x = stage + threadIdx.x * stride;
                }
                if (row >= n)
                        continue;
                if (model == RISK_MODEL_STORED) {
                        float margin = risk_view_margin(&v, x);
                        first[row] = risk_sigmoid(margin);
                        if (d.params[RISK_W_MARGIN])
                                ((float *)second)[row] = margin;
                } else {
                        float z = risk_altman_z((enum risk_model_id)model, x);
                        first[row] = z;
                        second[row] = risk_altman_zone((enum risk_model_id)model, z);
                }
        }
}

extern "C" void risk_score_cuda_launch(const kiln_cuda_launch *l)
{
        // Enough blocks to fill the device for the longest task; the rest stride.
        uint64_t blocks = (l->max_work + RISK_CUDA_THREADS - 1) / RISK_CUDA_THREADS;
        dim3 block(RISK_CUDA_THREADS), grid((unsigned)(blocks < 2048 ? blocks : 2048), l->n_tasks);
        risk_kernel<<<grid, block, 0, (cudaStream_t)l->stream>>>(l->desc, (const unsigned char *)l->in,
                                                                (unsigned char *)l->out, l->object);
}
