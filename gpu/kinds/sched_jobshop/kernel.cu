// sched.jobshop on the GPU: many tabu walks per job, many jobs per batch.
//
// Three kernels on the launch's stream:
//  1. js_setup_kernel, one thread per task: reads the instance bytes (parse.h, the
//     host's reader) into the task's output region and resets its header;
//  2. js_walk_kernel, grid (walks, tasks), one block per walk: search.h's walk,
//     thread 0 running the sequential phases (the neighbourhood, the choice, the
//     move and the heads and tails) and every thread of the block judging the
//     candidate moves; the walks of a task stop at its time limit, counted from
//     the first of them to start, or as soon as one reaches the bound or target;
//  3. js_final_kernel, one thread per task: the best walk (ties: the earliest to
//     its best, then the lowest index) and the start times of its schedule.
#include "jobshop_cuda.h"

__device__ static inline uint64_t js_now_ns(void)
{
        uint64_t t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        return t;
}

struct js_task_view {
        unsigned char *base;
        struct js_gpu_head *head;
        struct js_gpu_layout lay;
        struct js_inst inst;
        int32_t n_jobs, n_mach, n_ops;
        uint32_t walks;
};

__device__ static void js_task_view_of(const kiln_cuda_desc &d, unsigned char *out, struct js_task_view *v)
{
        const uint32_t *w = d.params;
        v->n_jobs = (int32_t)w[JS_W_NJOBS];
        v->n_mach = (int32_t)w[JS_W_NMACH];
        v->n_ops = (int32_t)w[JS_W_NOPS];
        v->walks = w[JS_W_WALKS];
        v->base = out + d.out_offset;
        v->head = (struct js_gpu_head *)v->base;
        v->lay = js_gpu_layout_for(v->n_jobs, v->n_mach, v->n_ops, v->walks);
        int32_t *job_start, *mach, *dur, *derived;
        js_gpu_instance(v->base, &v->lay, v->n_jobs, v->n_mach, v->n_ops, &job_start, &mach, &dur, &derived);
        v->inst.n_jobs = v->n_jobs;
        v->inst.n_mach = v->n_mach;
        v->inst.n_ops = v->n_ops;
        v->inst.job_start = job_start;
        v->inst.mach = mach;
        v->inst.dur = dur;
        v->inst.job = derived;
        v->inst.jprev = derived + v->n_ops;
        v->inst.jnext = derived + 2 * (size_t)v->n_ops;
        v->inst.mach_start = derived + 3 * (size_t)v->n_ops;
}

__global__ void js_setup_kernel(const kiln_cuda_desc *descs, unsigned n_tasks, const unsigned char *in,
                                unsigned char *out)
{
        unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
        if (t >= n_tasks)
                return;
        const kiln_cuda_desc &d = descs[t];
        struct js_task_view v;
        js_task_view_of(d, out, &v);
        struct js_gpu_head *h = v.head;
        h->t0 = 0;
        h->stop = 0;
        h->best_walk = -1;
        h->walks_run = 0;
        h->best_mk = INT64_MAX;
        h->ms_to_best = 0;
        h->iterations = 0;
        h->moves = 0;
        struct js_gpu_walk *rec = (struct js_gpu_walk *)(v.base + v.lay.walk_rec);
        for (uint32_t i = 0; i < v.walks; i++) {
                rec[i].ran = 0;
                rec[i].iterations = rec[i].moves = 0;
                rec[i].best_mk = INT64_MAX;
        }
        int32_t *job_start, *mach, *dur, *derived;
        js_gpu_instance(v.base, &v.lay, v.n_jobs, v.n_mach, v.n_ops, &job_start, &mach, &dur, &derived);
        struct js_fill f;
        f.job_start = job_start;
        f.mach = mach;
        f.dur = dur;
        struct js_dims dims;
        struct js_parse_err e;
        const char *text = (const char *)(in + d.in_offset);
        int r = js_parse(text, d.params[JS_W_TEXT_BYTES], &dims, &f, NULL, &e);
        if (r == JS_OK && (dims.n_ops != v.n_ops || dims.n_jobs != v.n_jobs))
                r = JS_E_SHAPE;
        h->status = r;
        if (r == JS_OK) {
                struct js_inst ignored;
                js_inst_derive(&ignored, v.n_jobs, v.n_mach, v.n_ops, job_start, mach, dur, derived);
        }
}

__global__ void __launch_bounds__(JS_GPU_THREADS) js_walk_kernel(const kiln_cuda_desc *descs, unsigned char *out)
{
        const kiln_cuda_desc &d = descs[blockIdx.y];
        __shared__ struct js_task_view v;
        __shared__ struct js_walk w;
        __shared__ int stop;
        __shared__ uint64_t t0, deadline;

        if (blockIdx.x >= d.params[JS_W_WALKS])
                return;
        if (threadIdx.x == 0) {
                js_task_view_of(d, out, &v);
                stop = v.head->status != JS_OK;
                if (!stop) {
                        js_walk_bind(&w, v.base + v.lay.walk_mem + v.lay.walk_bytes * blockIdx.x, &v.inst);
                        uint64_t now = js_now_ns();
                        unsigned long long was = atomicCAS((unsigned long long *)&v.head->t0, 0ull,
                                                           (unsigned long long)now);
                        t0 = was ? (uint64_t)was : now;
                        deadline = t0 + (uint64_t)d.params[JS_W_LIMIT_MS] * 1000000ull;
                        struct js_config cfg = js_config_for(&v.inst);
                        uint64_t seed = (uint64_t)d.params[JS_W_SEED] | (uint64_t)d.params[JS_W_SEED + 1] << 32;
                        int64_t stop_at = (int64_t)((uint64_t)d.params[JS_W_STOP_AT] |
                                                    (uint64_t)d.params[JS_W_STOP_AT + 1] << 32);
                        js_walk_start(&w, &cfg, js_walk_seed(seed, blockIdx.x), stop_at);
                        struct js_gpu_walk *rec = (struct js_gpu_walk *)(v.base + v.lay.walk_rec) + blockIdx.x;
                        rec->best_ns = (int64_t)(js_now_ns() - t0);
                        rec->ran = 1;
                        if (w.done)
                                atomicExch(&v.head->stop, 1);
                }
        }
        __syncthreads();
        if (stop)
                return;
        struct js_gpu_walk *rec = (struct js_gpu_walk *)(v.base + v.lay.walk_rec) + blockIdx.x;
        for (;;) {
                if (threadIdx.x == 0) {
                        volatile int32_t *flag = &v.head->stop;
                        stop = w.done || *flag || js_now_ns() >= deadline;
                        if (!stop)
                                js_prepare(&w);
                }
                __syncthreads();
                if (stop)
                        break;
                js_judge_range(&w, (int32_t)threadIdx.x, (int32_t)blockDim.x);
                __syncthreads();
                if (threadIdx.x == 0) {
                        if (js_finish(&w, w.n_cand ? js_pick(&w) : -1))
                                rec->best_ns = (int64_t)(js_now_ns() - t0);
                        if (w.done)
                                atomicExch(&v.head->stop, 1);
                }
                __syncthreads();
        }
        if (threadIdx.x == 0) {
                rec->best_mk = w.best_mk;
                rec->iterations = w.iter;
                rec->moves = w.moves;
        }
}

__global__ void js_final_kernel(const kiln_cuda_desc *descs, unsigned n_tasks, unsigned char *out)
{
        unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
        if (t >= n_tasks)
                return;
        struct js_task_view v;
        js_task_view_of(descs[t], out, &v);
        struct js_gpu_head *h = v.head;
        if (h->status != JS_OK)
                return;
        const struct js_gpu_walk *rec = (const struct js_gpu_walk *)(v.base + v.lay.walk_rec);
        int best = -1;
        for (uint32_t i = 0; i < v.walks; i++) {
                if (!rec[i].ran)
                        continue;
                h->walks_run++;
                h->iterations += rec[i].iterations;
                h->moves += rec[i].moves;
                if (best < 0 || rec[i].best_mk < rec[best].best_mk ||
                    (rec[i].best_mk == rec[best].best_mk && rec[i].best_ns < rec[best].best_ns))
                        best = (int)i;
        }
        h->best_walk = best;
        if (best < 0)
                return;
        struct js_walk w;
        js_walk_bind(&w, v.base + v.lay.walk_mem + v.lay.walk_bytes * (uint64_t)best, &v.inst);
        js_load(&w, w.best_seq); /* heads = the start times */
        int64_t *starts = (int64_t *)(v.base + v.lay.starts);
        for (int32_t o = 0; o < v.n_ops; o++)
                starts[o] = w.head[o];
        h->best_mk = rec[best].best_mk;
        h->ms_to_best = rec[best].best_ns / 1000000;
}

extern "C" void js_cuda_launch(const kiln_cuda_launch *l)
{
        cudaStream_t s = (cudaStream_t)l->stream;
        unsigned n = l->n_tasks, per = 64, blocks = (n + per - 1) / per;
        js_setup_kernel<<<blocks, per, 0, s>>>(l->desc, n, (const unsigned char *)l->in, (unsigned char *)l->out);
        // max_work is the most walks any task of the launch runs.
        dim3 grid((unsigned)l->max_work, n);
        js_walk_kernel<<<grid, JS_GPU_THREADS, 0, s>>>(l->desc, (unsigned char *)l->out);
        js_final_kernel<<<blocks, per, 0, s>>>(l->desc, n, (unsigned char *)l->out);
}
