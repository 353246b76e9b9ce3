/* lens.nfw's parameter words in the CUDA descriptor (cuda_prep.c packs them,
 * kernel.cu reads them) and its launch function. */
#pragma once

#include "../../cuda/cuda_kind.h"

enum lens_nfw_word {
        LENS_NFW_W_N = 0,        /* grid side N */
        LENS_NFW_W_MAPS = 1,     /* LENS_NFW_* bits: one output part per bit, in bit order */
        LENS_NFW_W_DELTA = 2,    /* f64: pixel size, arcsec */
        LENS_NFW_W_THETA_S = 4,  /* f64: scale radius, arcsec */
        LENS_NFW_W_KAPPA_S = 6,  /* f64: convergence scale */
};

#ifdef __cplusplus
extern "C" {
#endif
void lens_nfw_cuda_launch(const struct kiln_cuda_launch *l);
#ifdef __cplusplus
}
#endif
