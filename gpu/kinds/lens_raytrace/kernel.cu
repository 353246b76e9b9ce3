// lens.raytrace on the GPU: one thread per pixel per task, raytrace_math.h's ray
// shooting (the same formulas as the CPU path).
#include "../../cuda/cuda_kind.h"
#include "raytrace_math.h"

__global__ void lens_raytrace_kernel(const kiln_cuda_desc *descs, uint64_t max_pixels, float *out)
{
        const kiln_cuda_desc d = descs[blockIdx.y];
        uint64_t pix = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
        uint64_t npix = (uint64_t)d.n * d.n;
        if (pix >= npix || pix >= max_pixels)
                return;
        int i = (int)(pix / d.n), j = (int)(pix % d.n);
        double half = 0.5 * d.n;
        out[d.out_offset + pix] = (float)raytrace_pixel((j + 0.5 - half) * d.delta, (i + 0.5 - half) * d.delta, d.delta,
                                                        (int)d.flags, d.theta_s, d.kappa_s, d.src_x, d.src_y,
                                                        d.src_sigma);
}

extern "C" void lens_raytrace_cuda_launch(const kiln_cuda_desc *d_desc, unsigned n_tasks, uint64_t max_pixels,
                                          float *d_out, void *stream)
{
        dim3 block(256), grid((unsigned)((max_pixels + 255) / 256), n_tasks);
        lens_raytrace_kernel<<<grid, block, 0, (cudaStream_t)stream>>>(d_desc, max_pixels, d_out);
}
