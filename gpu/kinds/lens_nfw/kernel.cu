// lens.nfw on the GPU: one thread per pixel per task, nfw_math.h's formulas (the
// same as the CPU path), every requested map written in SPEC order, each map a part
// of the task's output region starting at a multiple of KILN_CUDA_PART_ALIGN.
#include "lens_nfw_cuda.h"
#include "nfw_math.h"

__global__ void lens_nfw_kernel(const kiln_cuda_desc *descs, uint64_t max_pixels, unsigned char *out)
{
        const kiln_cuda_desc &d = descs[blockIdx.y];
        const uint32_t n = d.params[LENS_NFW_W_N], maps = d.params[LENS_NFW_W_MAPS];
        uint64_t pix = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
        uint64_t npix = (uint64_t)n * n;
        if (pix >= npix || pix >= max_pixels)
                return;
        double delta = kiln_cuda_get_f64(d.params, LENS_NFW_W_DELTA);
        double theta_s = kiln_cuda_get_f64(d.params, LENS_NFW_W_THETA_S);
        double kappa_s = kiln_cuda_get_f64(d.params, LENS_NFW_W_KAPPA_S);
        int i = (int)(pix / n), j = (int)(pix % n);
        double half = 0.5 * n;
        double v[NFW_N_MAPS];
        nfw_pixel((j + 0.5 - half) * delta, (i + 0.5 - half) * delta, theta_s, kappa_s, v);
        uint64_t stride = kiln_cuda_align(npix * sizeof(float), KILN_CUDA_PART_ALIGN);
        unsigned char *o = out + d.out_offset;
#pragma unroll
        for (int m = 0; m < NFW_N_MAPS; m++) {
                if (maps & (1u << m)) {
                        ((float *)o)[pix] = (float)v[m];
                        o += stride;
                }
        }
}

extern "C" void lens_nfw_cuda_launch(const kiln_cuda_launch *l)
{
        dim3 block(256), grid((unsigned)((l->max_work + 255) / 256), l->n_tasks);
        lens_nfw_kernel<<<grid, block, 0, (cudaStream_t)l->stream>>>(l->desc, l->max_work, (unsigned char *)l->out);
}
