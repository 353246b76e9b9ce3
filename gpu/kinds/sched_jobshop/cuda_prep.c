/* sched.jobshop's host half of the CUDA path (see gpu/cuda/cuda_kind.h and
 * jobshop_cuda.h). Linked into the plugin only.
 *
 * prepare reads the instance on the host (as the submission did: a bad one never
 * gets here), computes its lower bound and packs the dimensions, the walks, the
 * time limit, the seed and the stop value into the descriptor; its `work` is the
 * task's walks, so the launch's grid is as wide as its widest task. complete turns
 * the header and the start times the kernels left into the result values the CPU
 * path gives (js_result_add). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobshop.h"
#include "jobshop_cuda.h"

static void put_u64(uint32_t *w, unsigned slot, uint64_t v)
{
        w[slot] = (uint32_t)v;
        w[slot + 1] = (uint32_t)(v >> 32);
}

/* The walks of a job on the GPU: the asked number, else JS_GPU_WALKS as far as
 * JS_GPU_MAX_BYTES of output memory allows (at least one). */
static uint32_t gpu_walks(const struct jobshop_params *p, const struct js_instance *in)
{
        if (p->walks > 0)
                return (uint32_t)p->walks;
        struct js_gpu_layout one = js_gpu_layout_for(in->n_jobs, in->n_mach, in->n_ops, 1);
        uint64_t fit = one.walk_bytes ? JS_GPU_MAX_BYTES / one.walk_bytes : 1;
        return fit < 1 ? 1 : fit > JS_GPU_WALKS ? JS_GPU_WALKS : (uint32_t)fit;
}

static int prepare(const struct kiln_task *t, const uint64_t *in_offsets, struct kiln_cuda_desc *ret_desc,
                   uint64_t *ret_work)
{
        const struct jobshop_params *p = t->params;
        const struct kiln_array *a = js_instance_input(t->inputs, t->n_inputs);
        struct js_instance *in = NULL;
        struct kiln_error err;

        if (!a || in_offsets[0] != 0)
                return -EINVAL;
        int r = js_instance_parse(a->data, a->bytes, &in, &err);
        if (r < 0)
                return r;
        int64_t lb = js_lower_bound(in);
        if (lb < 0) {
                js_instance_free(in);
                return -ENOMEM;
        }
        uint32_t walks = gpu_walks(p, in);
        struct js_gpu_layout l = js_gpu_layout_for(in->n_jobs, in->n_mach, in->n_ops, walks);
        uint32_t *w = ret_desc->params;
        w[JS_W_NJOBS] = (uint32_t)in->n_jobs;
        w[JS_W_NMACH] = (uint32_t)in->n_mach;
        w[JS_W_NOPS] = (uint32_t)in->n_ops;
        w[JS_W_TEXT_BYTES] = (uint32_t)a->bytes;
        w[JS_W_WALKS] = walks;
        w[JS_W_LIMIT_MS] = (uint32_t)p->time_limit_ms;
        put_u64(w, JS_W_SEED, (uint64_t)p->seed);
        put_u64(w, JS_W_STOP_AT, (uint64_t)(p->target > lb ? p->target : lb));
        put_u64(w, JS_W_LB, (uint64_t)lb);
        ret_desc->out_bytes = l.total;
        *ret_work = walks;
        js_instance_free(in);
        return 0;
}

static int complete(struct kiln_task *t, const void *out, uint64_t bytes)
{
        const struct kiln_array *a = js_instance_input(t->inputs, t->n_inputs);
        const struct js_gpu_head *h = out;
        struct js_instance *in = NULL;
        struct kiln_error err;

        if (!a || bytes < sizeof(*h))
                return -EIO;
        if (h->status != JS_OK || h->best_walk < 0)
                return -EIO; /* the host read this instance: the device must have too */
        int r = js_instance_parse(a->data, a->bytes, &in, &err);
        if (r < 0)
                return r;
        struct js_gpu_layout l = js_gpu_layout_for(in->n_jobs, in->n_mach, in->n_ops, 1);
        int64_t lb = js_lower_bound(in);
        int64_t *starts = malloc(((size_t)in->n_ops ? (size_t)in->n_ops : 1) * sizeof(*starts));
        if (!starts || lb < 0) {
                free(starts);
                js_instance_free(in);
                return -ENOMEM;
        }
        /* The start times sit at the same place whatever the walks. */
        memcpy(starts, (const unsigned char *)out + l.starts, (size_t)in->n_ops * sizeof(*starts));
        struct js_outcome o = { h->iterations, h->ms_to_best, h->walks_run, h->moves };
        r = js_result_add(t->result, in, starts, lb, &o);
        free(starts);
        js_instance_free(in);
        return r;
}

const struct kiln_cuda_kind kiln_cuda_kind_sched_jobshop = {
        .name = "sched.jobshop",
        .prepare = prepare,
        .launch = js_cuda_launch,
        .complete = complete,
};
