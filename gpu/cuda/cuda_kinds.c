/* The kinds the CUDA plugin implements. Adding a kind's CUDA half means one entry
 * here and its kernel.cu + cuda_prep.c in gpu/cuda/CMakeLists.txt. */
#include <stddef.h>

#include "cuda_kind.h"

static const struct kiln_cuda_kind lens_nfw = {
        .name = "lens.nfw",
        .prepare = lens_nfw_cuda_prepare,
        .launch = lens_nfw_cuda_launch,
};

static const struct kiln_cuda_kind lens_raytrace = {
        .name = "lens.raytrace",
        .prepare = lens_raytrace_cuda_prepare,
        .launch = lens_raytrace_cuda_launch,
};

const struct kiln_cuda_kind *const kiln_cuda_kinds[] = {
        &lens_nfw,
        &lens_raytrace,
        NULL,
};
