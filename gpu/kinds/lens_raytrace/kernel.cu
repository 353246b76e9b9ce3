// lens.raytrace on the GPU: one thread per pixel per task, raytrace_math.h's ray
// shooting (the same formulas as the CPU path); the task's one part, `image`, at
// the start of its output region.
#include "lens_raytrace_cuda.h"
#include "raytrace_math.h"

__global__ void lens_raytrace_kernel(const kiln_cuda_desc *descs, uint64_t max_pixels, unsigned char *out)
{
        const kiln_cuda_desc &d = descs[blockIdx.y];
        const uint32_t n = d.params[LENS_RAY_W_N];
        uint64_t pix = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
        uint64_t npix = (uint64_t)n * n;
        if (pix >= npix || pix >= max_pixels)
                return;
        const uint32_t *w = d.params;
        double delta = kiln_cuda_get_f64(w, LENS_RAY_W_DELTA);
        int i = (int)(pix / n), j = (int)(pix % n);
        double half = 0.5 * n;
        float *img = (float *)(out + d.out_offset);
        img[pix] = (float)raytrace_pixel((j + 0.5 - half) * delta, (i + 0.5 - half) * delta, delta,
                                         (int)w[LENS_RAY_W_SS], kiln_cuda_get_f64(w, LENS_RAY_W_THETA_S),
                                         kiln_cuda_get_f64(w, LENS_RAY_W_KAPPA_S),
                                         kiln_cuda_get_f64(w, LENS_RAY_W_SRC_X),
                                         kiln_cuda_get_f64(w, LENS_RAY_W_SRC_Y),
                                         kiln_cuda_get_f64(w, LENS_RAY_W_SRC_SIGMA));
}

extern "C" void lens_raytrace_cuda_launch(const kiln_cuda_launch *l)
{
        dim3 block(256), grid((unsigned)((l->max_work + 255) / 256), l->n_tasks);
        lens_raytrace_kernel<<<grid, block, 0, (cudaStream_t)l->stream>>>(l->desc, l->max_work,
                                                                          (unsigned char *)l->out);
}
