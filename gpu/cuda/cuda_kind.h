/* The CUDA half of a job kind, as the plugin core (gpu/cuda/) sees it.
 *
 * Plain C with no CUDA and no <stdatomic.h> types, so both the kinds' host-side
 * preparation (C, gpu/kinds/<kind>/cuda_prep.c) and their kernels (nvcc,
 * gpu/kinds/<kind>/kernel.cu) include it. A batch of tasks is one kernel launch: the
 * core copies an array of descriptors to the device, the kernel writes every task's
 * output floats at its out_offset, and the core copies the floats back and splits
 * them over the task's result parts, in part order. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* One task of a batch, as its kernel sees it (128 bytes, POD). */
struct kiln_cuda_desc {
        uint64_t out_offset;  /* first float of this task's output in the batch buffer */
        uint32_t n;           /* grid side N: the task computes N x N pixels */
        uint32_t flags;       /* kind-specific: lens.nfw map bits, lens.raytrace supersample */
        double delta;         /* pixel size, arcsec */
        double theta_s;       /* NFW scale radius, arcsec */
        double kappa_s;       /* NFW convergence scale */
        double src_x, src_y;  /* lens.raytrace: source centre, arcsec */
        double src_sigma;     /* lens.raytrace: source width, arcsec */
        double reserved[7];
};

struct kiln_result;

/* The CUDA implementation of one kind. */
struct kiln_cuda_kind {
        const char *name;     /* the kind's name, e.g. "lens.nfw" */
        /* Host side, before the launch: adds the result scalars and the f32 parts (still
         * zero) to `ret`, fills *ret_desc except out_offset, and returns the number of
         * floats the kernel writes (the parts' bytes / 4), or -errno (-EINVAL for params
         * the math cannot use, -ENOMEM). */
        int64_t (*prepare)(const void *params, struct kiln_result *ret, struct kiln_cuda_desc *ret_desc);
        /* Enqueues the kernel for n_tasks descriptors (device memory) on `stream` (a
         * cudaStream_t), each task writing at most max_pixels pixels into d_out. Errors
         * surface through the runtime's last error, checked by the core. */
        void (*launch)(const struct kiln_cuda_desc *d_desc, unsigned n_tasks, uint64_t max_pixels, float *d_out,
                       void *stream);
};

/* The kinds the plugin implements, NULL-terminated (gpu/cuda/cuda_kinds.c). */
extern const struct kiln_cuda_kind *const kiln_cuda_kinds[];

/* The kernels' launch functions and the kinds' host preparations. */
#ifdef __cplusplus
extern "C" {
#endif
void lens_nfw_cuda_launch(const struct kiln_cuda_desc *d_desc, unsigned n_tasks, uint64_t max_pixels, float *d_out,
                          void *stream);
void lens_raytrace_cuda_launch(const struct kiln_cuda_desc *d_desc, unsigned n_tasks, uint64_t max_pixels,
                               float *d_out, void *stream);
#ifdef __cplusplus
}
#endif
int64_t lens_nfw_cuda_prepare(const void *params, struct kiln_result *ret, struct kiln_cuda_desc *ret_desc);
int64_t lens_raytrace_cuda_prepare(const void *params, struct kiln_result *ret, struct kiln_cuda_desc *ret_desc);
