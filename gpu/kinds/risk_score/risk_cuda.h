/* risk.score's parameter words in the CUDA descriptor (cuda_prep.c packs them,
 * kernel.cu reads them) and its launch function. */
#pragma once

#include "../../cuda/cuda_kind.h"

enum risk_word {
        RISK_W_MODEL = 0,   /* enum risk_model_id */
        RISK_W_ROWS = 1,    /* n, rows of the task (1..RISK_MAX_ROWS) */
        RISK_W_COLS = 2,    /* values per row */
        RISK_W_MARGIN = 3,  /* 1: a stored model's second part is the margin */
        RISK_W_IN = 4,      /* u64 (two words): the rows' offset from the task's in_offset */
};

/* Threads of a block: one row each; a block stages its rows in shared memory when a
 * row has at most RISK_CUDA_STAGE_COLS values. */
#define RISK_CUDA_THREADS 128u
#define RISK_CUDA_STAGE_COLS 32u

#ifdef __cplusplus
extern "C" {
#endif
void risk_score_cuda_launch(const struct kiln_cuda_launch *l);
#ifdef __cplusplus
}
#endif
