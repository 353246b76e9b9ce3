// lens.nfw on the GPU: one thread per pixel per task, nfw_math.h's formulas (the
// same as the CPU path), every requested map written in SPEC order.
#include "../../cuda/cuda_kind.h"
#include "nfw_math.h"

__global__ void lens_nfw_kernel(const kiln_cuda_desc *descs, uint64_t max_pixels, float *out)
{
        const kiln_cuda_desc d = descs[blockIdx.y];
        uint64_t pix = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
        uint64_t npix = (uint64_t)d.n * d.n;
        if (pix >= npix || pix >= max_pixels)
                return;
        int i = (int)(pix / d.n), j = (int)(pix % d.n);
        double half = 0.5 * d.n;
        double v[NFW_N_MAPS];
        nfw_pixel((j + 0.5 - half) * d.delta, (i + 0.5 - half) * d.delta, d.theta_s, d.kappa_s, v);
        float *o = out + d.out_offset;
#pragma unroll
        for (int m = 0; m < NFW_N_MAPS; m++) {
                if (d.flags & (1u << m)) {
                        o[pix] = (float)v[m];
                        o += npix;
                }
        }
}

extern "C" void lens_nfw_cuda_launch(const kiln_cuda_desc *d_desc, unsigned n_tasks, uint64_t max_pixels,
                                     float *d_out, void *stream)
{
        dim3 block(256), grid((unsigned)((max_pixels + 255) / 256), n_tasks);
        lens_nfw_kernel<<<grid, block, 0, (cudaStream_t)stream>>>(d_desc, max_pixels, d_out);
}
