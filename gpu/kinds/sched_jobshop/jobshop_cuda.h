/* sched.jobshop's CUDA half: the descriptor's parameter words and the layout of
 * a task's output region, shared by the host preparation (cuda_prep.c) and the
 * kernels (kernel.cu).
 *
 * One task runs as `walks` thread blocks, each one walk of search.h from its own
 * seed (walk i: seed ^ i * golden ratio, as on the CPU, so walk 0 is the CPU's walk
 * 0). The task's output region holds, in order: a header, the start times of the
 * best schedule, one record per walk, the instance as the kernels read it, and each
 * walk's memory (the region is device memory the core copies back whole; the walks'
 * memory is the bulk of it). */
#pragma once

#include <stdint.h>

#include "../../cuda/cuda_kind.h"
#include "search.h"

/* Parameter words (struct kiln_cuda_desc.params). */
enum {
        JS_W_NJOBS,
        JS_W_NMACH,
        JS_W_NOPS,
        JS_W_TEXT_BYTES,  /* the instance's bytes in the task's input region */
        JS_W_WALKS,
        JS_W_LIMIT_MS,
        JS_W_SEED,        /* 2 words */
        JS_W_STOP_AT = JS_W_SEED + 2, /* 2 words: the bound or the target */
        JS_W_LB = JS_W_STOP_AT + 2,   /* 2 words */
        JS_W_END = JS_W_LB + 2,
};

/* Walks of a job whose `walks` is 0, and the most output memory they may take. */
#define JS_GPU_WALKS 64
#define JS_GPU_MAX_BYTES (256ull << 20)
#define JS_GPU_THREADS 64

/* The task's header (at the start of its output region). */
struct js_gpu_head {
        uint64_t t0;             /* globaltimer when the first walk started (0: none yet) */
        int32_t stop;            /* a walk reached the bound or the target */
        int32_t status;          /* 0, or the enum js_perr of an instance that did not read */
        int32_t best_walk;
        int32_t walks_run;
        int64_t best_mk;
        int64_t ms_to_best;
        int64_t iterations;
        int64_t moves;
};

/* One walk's record. */
struct js_gpu_walk {
        int64_t best_mk;
        int64_t best_ns;         /* from t0 to its best */
        int64_t iterations;
        int64_t moves;
        int32_t ran;
        int32_t pad;
};

struct js_gpu_layout {
        uint64_t starts;         /* int64[n_ops] */
        uint64_t walk_rec;       /* struct js_gpu_walk[walks] */
        uint64_t inst;           /* int32: job_start[n_jobs+1], mach[n_ops], dur[n_ops], derived */
        uint64_t walk_mem;       /* walks x walk_bytes */
        uint64_t walk_bytes;
        uint64_t total;
};

KILN_HD static inline uint64_t js_gpu_align(uint64_t x)
{
        return (x + 255u) & ~(uint64_t)255u;
}

/* The layout for these dimensions and walks. */
KILN_HD static inline struct js_gpu_layout js_gpu_layout_for(int32_t n_jobs, int32_t n_mach, int32_t n_ops,
                                                             uint32_t walks)
{
        struct js_gpu_layout l;
        struct js_inst dims;
        dims.n_jobs = n_jobs;
        dims.n_mach = n_mach;
        dims.n_ops = n_ops;
        l.starts = js_gpu_align(sizeof(struct js_gpu_head));
        l.walk_rec = js_gpu_align(l.starts + 8u * (uint64_t)n_ops);
        l.inst = js_gpu_align(l.walk_rec + sizeof(struct js_gpu_walk) * walks);
        uint64_t ints = (uint64_t)n_jobs + 1 + 2u * (uint64_t)n_ops + js_derived_ints(n_mach, n_ops);
        l.walk_mem = js_gpu_align(l.inst + 4u * ints);
        l.walk_bytes = js_gpu_align(js_walk_bind(NULL, NULL, &dims));
        l.total = l.walk_mem + l.walk_bytes * walks;
        return l;
}

/* The instance arrays in the output region at `inst`. */
KILN_HD static inline void js_gpu_instance(unsigned char *base, const struct js_gpu_layout *l, int32_t n_jobs,
                                           int32_t n_mach, int32_t n_ops, int32_t **job_start, int32_t **mach,
                                           int32_t **dur, int32_t **derived)
{
        int32_t *p = (int32_t *)(base + l->inst);
        *job_start = p;
        *mach = p + n_jobs + 1;
        *dur = *mach + n_ops;
        *derived = *dur + n_ops;
        (void)n_mach;
}

#ifdef __cplusplus
extern "C" {
#endif
/* Enqueues the three kernels of a batch (kernel.cu). */
void js_cuda_launch(const struct kiln_cuda_launch *l);
#ifdef __cplusplus
}
#endif
