/* lens.raytrace's parameter words in the CUDA descriptor (cuda_prep.c packs them,
 * kernel.cu reads them) and its launch function. */
#pragma once

#include "../../cuda/cuda_kind.h"

enum lens_raytrace_word {
        LENS_RAY_W_N = 0,          /* grid side N */
        LENS_RAY_W_SS = 1,         /* supersampling factor per side */
        LENS_RAY_W_DELTA = 2,      /* f64: pixel size, arcsec */
        LENS_RAY_W_THETA_S = 4,    /* f64 */
        LENS_RAY_W_KAPPA_S = 6,    /* f64 */
        LENS_RAY_W_SRC_X = 8,      /* f64: source centre, arcsec */
        LENS_RAY_W_SRC_Y = 10,     /* f64 */
        LENS_RAY_W_SRC_SIGMA = 12, /* f64: source width, arcsec */
};

#ifdef __cplusplus
extern "C" {
#endif
void lens_raytrace_cuda_launch(const struct kiln_cuda_launch *l);
#ifdef __cplusplus
}
#endif
