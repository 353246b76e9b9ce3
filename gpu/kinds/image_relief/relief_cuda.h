/* image.relief's CUDA half: the parameter words of its descriptor (cuda_prep.c
 * packs them, kernel.cu reads them) and its launch function.
 *
 * The image is decoded on the host (prepare: libspng/libjpeg-turbo), its rows kept
 * as a temporary result part; the kernels do the per-pixel stages: brightness,
 * EXIF orientation and the area-averaged shrink into the heightfield, then, at
 * tolerance 0, the whole full-grid mesh (STL records, or GLB positions and
 * indices) from relief_math.h, the functions the CPU writer uses. Above tolerance
 * 0 the heightfield comes back and the host simplifies it (complete). */
#pragma once

#include "../../cuda/cuda_kind.h"

/* The host part that holds the decoded rows until the task completes. */
#define RELIEF_PIXELS_PART "_pixels"

enum relief_word {
        RELIEF_W_SRC_W = 0,      /* stored image width */
        RELIEF_W_SRC_H = 1,
        RELIEF_W_ORIENT = 2,     /* EXIF 1..8 */
        RELIEF_W_CHANNELS = 3,   /* 1, 3, 4 */
        RELIEF_W_DEPTH = 4,      /* 8, 16 */
        RELIEF_W_ORI_W = 5,      /* displayed size */
        RELIEF_W_ORI_H = 6,
        RELIEF_W_RES_W = 7,      /* after the shrink */
        RELIEF_W_RES_H = 8,
        RELIEF_W_GRID_W = 9,     /* grid points */
        RELIEF_W_GRID_H = 10,
        RELIEF_W_MODE = 11,      /* enum relief_mode */
        RELIEF_W_INVERT = 12,
        RELIEF_W_PITCH_X = 14,   /* f64, mm: between neighbouring columns */
        RELIEF_W_BASE = 16,      /* f64, mm */
        RELIEF_W_MAX_H = 18,     /* f64, mm */
        RELIEF_W_PIXELS = 20,    /* u64: host address of the decoded rows (launch copies them) */
        RELIEF_W_PIXEL_BYTES = 22, /* u64 */
        RELIEF_W_PITCH_Y = 24,   /* f64, mm: between neighbouring rows */
};

/* What a task's output region holds. */
enum relief_mode {
        RELIEF_OUT_HEIGHTS = 0,  /* grid_w * grid_h f64 heights (tolerance above 0) */
        RELIEF_OUT_STL = 1,      /* the whole binary STL */
        RELIEF_OUT_GLB_BIN = 2,  /* the GLB's binary chunk: positions (12 per vertex), then indices */
};

#ifdef __cplusplus
extern "C" {
#endif
void relief_cuda_launch(const struct kiln_cuda_launch *l);
#ifdef __cplusplus
}
#endif
