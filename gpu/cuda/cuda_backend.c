/* The CUDA backend plugin (libkiln-cuda.so): devices, streams, memory, batches.
 *
 * Each device has LANES lanes; a lane is one stream with its own pinned host buffers
 * and device buffers. A batch takes one lane of the least busy device in service and
 * runs as one kernel launch per chunk (a chunk is as many tasks as fit the lane's
 * buffers and share one object): descriptors and inputs host->device, kernel,
 * outputs device->pinned host, then each task's bytes become its result. Batches
 * from several workers run on different lanes at once, so one batch's copies overlap
 * another's kernel. Memory held by a device's lanes and resident objects
 * (cuda_resident.c) stays within gpu.memory_fraction of its memory.
 *
 * A CUDA error, out-of-memory or lost device takes the device out of service and
 * hands the unfinished tasks back (-EIO); maintain() probes it again after a
 * back-off. cudaError_t never leaves gpu/cuda/: it is converted at cuda_err(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_internal.h"

#define CHUNK_BYTES (256u << 20)  /* output (and input) bytes one launch aims for */
#define MAX_TASKS_PER_LAUNCH 65535u /* gridDim.y */
#define PROBE_MAX_MS 60000

int cuda_err(cudaError_t e)
{
        switch (e) {
        case cudaSuccess: return 0;
        case cudaErrorMemoryAllocation: return -ENOMEM;
        case cudaErrorNoDevice:
        case cudaErrorInsufficientDriver:
        case cudaErrorInvalidDevice: return -ENODEV;
        default: return -EIO;
        }
}

/* Monotonic: back-offs are durations, and maintain() is given the same clock. */
static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const struct kiln_cuda_kind *cuda_find_kind(const struct kiln_kind *kind)
{
        for (size_t i = 0; kind && kind->name && kiln_cuda_kinds[i]; i++)
                if (strcmp(kiln_cuda_kinds[i]->name, kind->name) == 0)
                        return kiln_cuda_kinds[i];
        return NULL;
}

/* Frees a lane's stream and buffers (the device must be current). */
static void lane_release(struct device *d, struct lane *l)
{
        if (l->stream)
                cudaStreamDestroy(l->stream);
        cudaFree(l->d_out);
        cudaFreeHost(l->h_out);
        cudaFree(l->d_in);
        cudaFreeHost(l->h_in);
        cudaFree(l->d_desc);
        cudaFreeHost(l->h_desc);
        cuda_mem_give(d, l->out_cap + l->in_cap + l->desc_cap * sizeof(struct kiln_cuda_desc) + l->scratch_cap);
        pthread_mutex_lock(&d->mem);
        d->scratch -= l->scratch_cap;
        pthread_mutex_unlock(&d->mem);
        memset(l, 0, sizeof(*l));
}

/* Grows one pair of buffers (device and pinned host) to `want` bytes within the
 * device's budget. Returns >= 0, -E2BIG when over budget (the pair is kept as it
 * was), or a CUDA error (the pair is freed, *cap 0). */
static int grow_pair(struct device *d, void **dev, void **host, size_t *cap, size_t want)
{
        int r;

        if (want <= *cap)
                return 0;
        if ((r = cuda_mem_take(d, want - *cap)) < 0)
                return r;
        cudaFree(*dev);
        cudaFreeHost(*host);
        *dev = *host = NULL;
        if ((r = cuda_err(cudaMalloc(dev, want))) < 0 || (r = cuda_err(cudaMallocHost(host, want))) < 0) {
                cudaFree(*dev);
                *dev = NULL;
                (void)cudaGetLastError(); /* returned: not the next launch's */
                cuda_mem_give(d, want);
                *cap = 0;
                return r;
        }
        *cap = want;
        return 0;
}

/* Holds `want` bytes of d's budget for the scratch a kind allocates during a launch
 * on lane l (kiln_cuda_kind.scratch_bytes). A lane keeps the most it has held,
 * as it keeps its buffers, and the device's stream-ordered pool keeps as much
 * mapped between launches (its release threshold): scratch reused at every launch
 * is not unmapped and mapped again, and what the pool keeps is in the budget.
 * Returns >= 0 or -E2BIG. Device current. */
static int lane_hold_scratch(struct device *d, struct lane *l, uint64_t want)
{
        cudaMemPool_t pool;
        uint64_t keep = 0;
        int r;

        if (want <= l->scratch_cap)
                return 0;
        if ((r = cuda_mem_take(d, want - l->scratch_cap)) < 0)
                return r;
        /* The threshold set under the lock: two lanes setting it out of order would
         * leave it below what they hold. */
        pthread_mutex_lock(&d->mem);
        d->scratch += want - l->scratch_cap;
        keep = d->scratch;
        l->scratch_cap = want;
        if (cudaDeviceGetDefaultMemPool(&pool, d->ordinal) != cudaSuccess ||
            cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess)
                (void)cudaGetLastError(); /* only slower: the pool maps at every launch */
        pthread_mutex_unlock(&d->mem);
        return 0;
}

/* Grows a lane's buffers to hold out_bytes, in_bytes and n_desc descriptors. */
static int lane_reserve(struct device *d, struct lane *l, size_t out_bytes, size_t in_bytes, size_t n_desc)
{
        int r;

        if (!l->stream && (r = cuda_err(cudaStreamCreateWithFlags(&l->stream, cudaStreamNonBlocking))) < 0)
                return r;
        if ((r = grow_pair(d, (void **)&l->d_out, (void **)&l->h_out, &l->out_cap, out_bytes)) < 0)
                return r;
        if ((r = grow_pair(d, (void **)&l->d_in, (void **)&l->h_in, &l->in_cap, in_bytes)) < 0)
                return r;
        if (n_desc > l->desc_cap) {
                size_t cap = n_desc < 1024 ? 1024 : n_desc, bytes = l->desc_cap * sizeof(struct kiln_cuda_desc);
                if ((r = grow_pair(d, (void **)&l->d_desc, (void **)&l->h_desc, &bytes,
                                   cap * sizeof(struct kiln_cuda_desc))) < 0) {
                        l->desc_cap = bytes / sizeof(struct kiln_cuda_desc); /* kept, or 0 */
                        return r;
                }
                l->desc_cap = cap;
        }
        return 0;
}

/* The injected fault for this batch on device d, as a -errno, or 0. Lock held. */
static int injected_fault(struct cuda_backend *b, struct device *d)
{
        if (d->ordinal < 0)
                return -EIO; /* the simulated device fails every batch */
        if (!b->fault.enabled || b->fault.sim)
                return 0;
        if (d->batches <= b->fault.fail_after || d->injected >= b->fault.fail_count)
                return 0;
        d->injected++;
        return b->fault.error == CUDA_FAULT_OOM ? -ENOMEM : -EIO;
}

static void finish_task(struct kiln_task *t, const struct device *d, int status)
{
        snprintf(t->device, sizeof(t->device), "%s", d->name);
        t->status = status;
        t->finished = true;
        if (t->on_done)
                t->on_done(t);
}

/* Waits for the lane's stream, polling so that a stop flag is seen while the device
 * is busy (a stopped task's output is dropped after the copy lands). */
static int wait_stream(struct lane *l)
{
        for (;;) {
                cudaError_t e = cudaStreamQuery(l->stream);
                if (e != cudaErrorNotReady)
                        return cuda_err(e);
                struct timespec ts = { 0, 100000 };
                nanosleep(&ts, NULL);
        }
}

/* The bytes of a task's parts laid out one after another, each at
 * KILN_CUDA_PART_ALIGN. */
static uint64_t parts_layout(const struct kiln_result *r)
{
        uint64_t at = 0;
        for (int p = 0; p < r->n_parts; p++)
                at = kiln_cuda_align(at, KILN_CUDA_PART_ALIGN) + r->parts[p].bytes;
        return at;
}

/* Where each of the task's inputs goes, in the kind's spec order, relative to the
 * task's in_offset; returns the bytes they take. */
static uint64_t inputs_layout(const struct kiln_kind *kind, const struct kiln_task *t,
                              uint64_t offsets[KILN_MAX_INPUTS])
{
        uint64_t at = 0;
        for (size_t s = 0; s < KILN_MAX_INPUTS; s++)
                offsets[s] = UINT64_MAX;
        for (size_t s = 0; kind->inputs && kind->inputs[s].name && s < KILN_MAX_INPUTS; s++) {
                const struct kiln_array *a = kiln_inputs_find(t->inputs, t->n_inputs, kind->inputs[s].name);
                if (!a)
                        continue;
                at = kiln_cuda_align(at, KILN_CUDA_PART_ALIGN);
                offsets[s] = at;
                at += a->bytes;
        }
        return at;
}

/* Copies the task's inputs into the lane's pinned input buffer at desc->in_offset. */
static void stage_inputs(const struct kiln_kind *kind, const struct kiln_task *t, const struct kiln_cuda_desc *desc,
                         unsigned char *h_in)
{
        uint64_t offsets[KILN_MAX_INPUTS];
        inputs_layout(kind, t, offsets);
        for (size_t s = 0; kind->inputs && kind->inputs[s].name && s < KILN_MAX_INPUTS; s++) {
                const struct kiln_array *a = kiln_inputs_find(t->inputs, t->n_inputs, kind->inputs[s].name);
                if (a && a->bytes)
                        memcpy(h_in + desc->in_offset + offsets[s], a->data, a->bytes);
        }
}

/* Hands each task of the launch its output bytes. */
static void complete_chunk(const struct kiln_cuda_kind *ck, struct device *d, struct lane *l, struct kiln_task *tasks,
                           const size_t *idx, size_t n)
{
        for (size_t c = 0; c < n; c++) {
                struct kiln_task *t = &tasks[idx[c]];
                const struct kiln_cuda_desc *desc = &l->h_desc[c];
                const unsigned char *src = l->h_out + desc->out_offset;
                int status = 0;
                if (kiln_exec_stopped(t->exec)) {
                        finish_task(t, d, -ECANCELED);
                        continue;
                }
                if (ck->complete) {
                        status = ck->complete(t, src, desc->out_bytes);
                } else {
                        uint64_t at = 0;
                        for (int p = 0; p < t->result->n_parts; p++) {
                                struct kiln_part *part = &t->result->parts[p];
                                at = kiln_cuda_align(at, KILN_CUDA_PART_ALIGN);
                                memcpy(part->data, src + at, part->bytes);
                                at += part->bytes;
                        }
                }
                if (status >= 0)
                        kiln_exec_progress(t->exec, 1.0);
                finish_task(t, d, status);
        }
}

/* Runs tasks idx[0..n) (prepared, descriptors in l->h_desc[0..n)) as one launch
 * against `obj` (NULL for none). Returns >= 0 or a device error. */
static int launch_chunk(const struct kiln_kind *kind, const struct kiln_cuda_kind *ck, struct device *d,
                        struct lane *l, struct kiln_task *tasks, const size_t *idx, size_t n, uint64_t out_bytes,
                        uint64_t in_bytes, uint64_t max_work, const struct kiln_object *obj)
{
        struct resident *res = NULL;
        int r = obj ? cuda_resident_get(d, ck, obj, &res) : 0;

        if (r == -ENOTSUP || r == -ENOSPC)
                return -E2BIG; /* not this device's to run: the batch goes elsewhere */
        if (r >= 0 && ck->scratch_bytes)
                r = lane_hold_scratch(d, l, ck->scratch_bytes(l->h_desc, (unsigned)n, res ? res->bytes : 0));
        if (r < 0) {
                cuda_resident_put(d, res);
                return r;
        }
        for (size_t c = 0; c < n; c++)
                stage_inputs(kind, &tasks[idx[c]], &l->h_desc[c], l->h_in);
        struct kiln_cuda_launch launch = {
                .desc = l->d_desc,
                .n_tasks = (unsigned)n,
                .in = in_bytes ? l->d_in : NULL,
                .out = l->d_out,
                .object = res ? res->d_data : NULL,
                .object_bytes = res ? res->bytes : 0,
                .max_work = max_work,
                .stream = l->stream,
        };
        if ((r = cuda_err(cudaMemcpyAsync(l->d_desc, l->h_desc, n * sizeof(*l->h_desc), cudaMemcpyHostToDevice,
                                          l->stream))) >= 0 &&
            (!in_bytes ||
             (r = cuda_err(cudaMemcpyAsync(l->d_in, l->h_in, in_bytes, cudaMemcpyHostToDevice, l->stream))) >= 0)) {
                if (max_work)
                        ck->launch(&launch); /* a grid of 0 blocks is an error */
                if ((r = cuda_err(cudaGetLastError())) >= 0 &&
                    (r = cuda_err(cudaMemcpyAsync(l->h_out, l->d_out, out_bytes, cudaMemcpyDeviceToHost,
                                                  l->stream))) >= 0)
                        r = wait_stream(l);
        }
        cuda_resident_put(d, res);
        if (r >= 0)
                complete_chunk(ck, d, l, tasks, idx, n);
        return r;
}

static bool same_object(const struct kiln_object *a, const struct kiln_object *b)
{
        if (!a || !b)
                return a == b;
        return a->cls == b->cls && a->snapshot == b->snapshot && a->version == b->version;
}

/* A task's place in run_on_lane's order: by object, then by batch order. */
struct task_key {
        uintptr_t cls, snapshot;
        uint64_t version;
        size_t i;
};

static int task_key_cmp(const void *pa, const void *pb)
{
        const struct task_key *a = pa, *b = pb;

        if (a->cls != b->cls)
                return a->cls < b->cls ? -1 : 1;
        if (a->snapshot != b->snapshot)
                return a->snapshot < b->snapshot ? -1 : 1;
        if (a->version != b->version)
                return a->version < b->version ? -1 : 1;
        return a->i < b->i ? -1 : a->i > b->i;
}

/* order[0..n): the tasks' indexes with those of one object (same_object) together,
 * each object's in batch order: a launch runs against one object, so interleaved
 * objects (A, B, A, B) would otherwise make a launch a task. -ENOMEM, or 0. */
static int order_by_object(const struct kiln_task *tasks, size_t n, size_t *order)
{
        struct task_key *k = malloc((n ? n : 1) * sizeof(*k));

        if (!k)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const struct kiln_object *o = tasks[i].object;
                k[i] = (struct task_key){ .cls = o ? (uintptr_t)o->cls : 0,
                                          .snapshot = o ? (uintptr_t)o->snapshot : 0,
                                          .version = o ? o->version : 0,
                                          .i = i };
        }
        qsort(k, n, sizeof(*k), task_key_cmp);
        for (size_t i = 0; i < n; i++)
                order[i] = k[i].i;
        free(k);
        return 0;
}

/* Runs every unfinished task on device d, lane l, chunk by chunk. */
static int run_on_lane(const struct kiln_kind *kind, const struct kiln_cuda_kind *ck, struct device *d,
                       struct lane *l, struct kiln_task *tasks, size_t n)
{
        size_t *idx = malloc((n ? n : 1) * 2 * sizeof(*idx)), *order = idx ? idx + (n ? n : 1) : NULL;
        int r = idx ? order_by_object(tasks, n, order) : -ENOMEM;

        if (r >= 0)
                r = cuda_err(cudaSetDevice(d->ordinal));
        for (size_t p = 0; r >= 0 && p < n;) {
                size_t m = 0;
                uint64_t out = 0, in = 0, max_work = 0;
                const struct kiln_object *obj = NULL;
                size_t want = n - p < MAX_TASKS_PER_LAUNCH ? n - p : MAX_TASKS_PER_LAUNCH;
                if ((r = lane_reserve(d, l, l->out_cap, l->in_cap, want)) < 0)
                        break;
                while (p < n && m < want) {
                        struct kiln_task *t = &tasks[order[p]];
                        if (t->finished) {
                                p++;
                                continue;
                        }
                        if (kiln_exec_stopped(t->exec)) {
                                finish_task(t, d, -ECANCELED);
                                p++;
                                continue;
                        }
                        if (m > 0 && !same_object(t->object, obj))
                                break; /* one object per launch */
                        uint64_t in_offsets[KILN_MAX_INPUTS], work = 0;
                        uint64_t in_size = inputs_layout(kind, t, in_offsets);
                        struct kiln_cuda_desc desc = { 0 };
                        atomic_store(&t->started, true);
                        kiln_result_clear(t->result);
                        int pr = ck->prepare(t, in_offsets, &desc, &work);
                        if (pr < 0) {
                                kiln_result_clear(t->result);
                                finish_task(t, d, pr);
                                p++;
                                continue;
                        }
                        if (!ck->complete)
                                desc.out_bytes = parts_layout(t->result);
                        uint64_t out_at = kiln_cuda_align(out, KILN_CUDA_TASK_ALIGN);
                        uint64_t in_at = kiln_cuda_align(in, KILN_CUDA_TASK_ALIGN);
                        if (m > 0 && (out_at + desc.out_bytes > CHUNK_BYTES || in_at + in_size > CHUNK_BYTES)) {
                                kiln_result_clear(t->result);
                                break; /* next chunk */
                        }
                        desc.out_offset = out_at;
                        desc.in_offset = in_at;
                        desc.in_bytes = in_size;
                        out = out_at + desc.out_bytes;
                        in = in_size ? in_at + in_size : in;
                        obj = t->object;
                        l->h_desc[m] = desc;
                        idx[m++] = order[p++];
                        if (work > max_work)
                                max_work = work;
                }
                if (m == 0)
                        break;
                if ((r = lane_reserve(d, l, out ? out : 1, in, m)) >= 0)
                        r = launch_chunk(kind, ck, d, l, tasks, idx, m, out, in, max_work, obj);
                /* The chunk's unfinished tasks go elsewhere: with empty results. */
                for (size_t c = 0; r < 0 && c < m; c++)
                        if (!tasks[idx[c]].finished)
                                kiln_result_clear(tasks[idx[c]].result);
        }
        free(idx);
        return r < 0 ? r : 0;
}

/* Takes the device out of service after a failure. Lock held. */
static void take_out_of_service(struct cuda_backend *b, struct device *d)
{
        d->in_service = false;
        d->failures++;
        d->backoff_ms = b->fault.enabled ? b->fault.probe_ms : 5000;
        d->next_probe_ms = now_ms() + d->backoff_ms;
        pthread_cond_broadcast(&b->lane_free);
}

static int cuda_run_batch(void *ctx, const struct kiln_kind *kind, struct kiln_task *tasks, size_t n)
{
        struct cuda_backend *b = ctx;
        const struct kiln_cuda_kind *ck = cuda_find_kind(kind);
        struct device *d = NULL;
        struct lane *l = NULL;

        if (!ck)
                return -ENODEV;
        pthread_mutex_lock(&b->lock);
        for (;;) {
                bool any = false;
                for (unsigned i = 0; i < b->n_dev; i++) {
                        struct device *c = &b->dev[i];
                        if (!c->in_service)
                                continue;
                        any = true;
                        if (c->busy < LANES && (!d || c->busy < d->busy))
                                d = c;
                }
                if (d || !any)
                        break;
                pthread_cond_wait(&b->lane_free, &b->lock);
        }
        if (!d) {
                pthread_mutex_unlock(&b->lock);
                return -ENODEV;
        }
        for (unsigned k = 0; k < LANES; k++)
                if (!d->lanes[k].busy) {
                        l = &d->lanes[k];
                        break;
                }
        l->busy = true;
        d->busy++;
        d->batches++;
        int r = injected_fault(b, d);
        pthread_mutex_unlock(&b->lock);

        if (r >= 0)
                r = run_on_lane(kind, ck, d, l, tasks, n);

        pthread_mutex_lock(&b->lock);
        l->busy = false;
        d->busy--;
        if (r < 0 && r != -E2BIG)
                take_out_of_service(b, d);
        pthread_cond_broadcast(&b->lane_free);
        pthread_mutex_unlock(&b->lock);
        if (r == -E2BIG)
                return r;
        return r < 0 ? -EIO : 0;
}

/* Tells the kinds that `d`'s streams are about to go (cuda_kind.h, device_release). */
static void kinds_release_device(const struct device *d)
{
        for (const struct kiln_cuda_kind *const *k = kiln_cuda_kinds; *k; k++)
                if ((*k)->device_release)
                        (*k)->device_release(d->ordinal);
}

/* Probes a device: resets it (a lost device's context is unusable) and checks that a
 * small allocation, memset and synchronisation work. Lock not held; busy == 0. */
static int probe(struct cuda_backend *b, struct device *d)
{
        if (d->ordinal < 0)
                return b->fault.probe_fail ? -EIO : 0;
        if (b->fault.probe_fail && d->injected)
                return -EIO;
        int r = cuda_err(cudaSetDevice(d->ordinal));
        if (r < 0)
                return r;
        kinds_release_device(d);
        for (unsigned k = 0; k < LANES; k++)
                lane_release(d, &d->lanes[k]);
        cuda_resident_drop_all(d, true);
        cudaDeviceReset();
        void *p = NULL;
        if ((r = cuda_err(cudaMalloc(&p, 1 << 20))) < 0)
                return r;
        r = cuda_err(cudaMemset(p, 0, 1 << 20));
        if (r >= 0)
                r = cuda_err(cudaDeviceSynchronize());
        cudaFree(p);
        return r;
}

static void cuda_maintain(void *ctx, int64_t now)
{
        struct cuda_backend *b = ctx;

        for (unsigned i = 0; i < b->n_dev; i++) {
                struct device *d = &b->dev[i];
                pthread_mutex_lock(&b->lock);
                bool due = !d->in_service && d->busy == 0 && now >= d->next_probe_ms;
                if (due)
                        d->busy = LANES; /* nobody picks it while probing */
                pthread_mutex_unlock(&b->lock);
                if (!due)
                        continue;
                int r = probe(b, d);
                pthread_mutex_lock(&b->lock);
                d->busy = 0;
                d->probes++;
                if (r >= 0) {
                        d->in_service = true;
                } else {
                        d->backoff_ms = d->backoff_ms * 2 > PROBE_MAX_MS ? PROBE_MAX_MS : d->backoff_ms * 2;
                        d->next_probe_ms = now_ms() + d->backoff_ms;
                }
                pthread_cond_broadcast(&b->lane_free);
                pthread_mutex_unlock(&b->lock);
        }
}

static bool cuda_supports(void *ctx, const struct kiln_kind *kind)
{
        return cuda_find_kind(kind) != NULL;
}

static unsigned cuda_n_devices(void *ctx)
{
        return ((struct cuda_backend *)ctx)->n_dev;
}

static int cuda_device_info(void *ctx, unsigned index, struct kiln_device_info *ret)
{
        struct cuda_backend *b = ctx;

        if (index >= b->n_dev)
                return -EINVAL;
        pthread_mutex_lock(&b->lock);
        const struct device *d = &b->dev[index];
        memset(ret, 0, sizeof(*ret));
        snprintf(ret->name, sizeof(ret->name), "%s", d->name);
        snprintf(ret->model, sizeof(ret->model), "%s", d->model);
        ret->in_service = d->in_service;
        ret->failures = d->failures;
        ret->probes = d->probes;
        ret->memory_total = d->mem_total;
        pthread_mutex_lock((pthread_mutex_t *)&d->mem);
        ret->memory_used = d->used;
        pthread_mutex_unlock((pthread_mutex_t *)&d->mem);
        ret->busy = d->in_service ? d->busy : 0;
        ret->memory_bandwidth = d->mem_bw;
        pthread_mutex_unlock(&b->lock);
        return 0;
}

static void cuda_destroy(void *ctx)
{
        struct cuda_backend *b = ctx;

        for (unsigned i = 0; i < b->n_dev; i++) {
                struct device *d = &b->dev[i];
                if (d->ordinal < 0 || cudaSetDevice(d->ordinal) != cudaSuccess)
                        continue;
                kinds_release_device(d);
                for (unsigned k = 0; k < LANES; k++)
                        lane_release(d, &d->lanes[k]);
                cuda_resident_drop_all(d, true);
        }
        for (unsigned i = 0; i < MAX_DEVICES; i++)
                pthread_mutex_destroy(&b->dev[i].mem);
        pthread_cond_destroy(&b->lane_free);
        pthread_mutex_destroy(&b->lock);
        free(b);
}

/* Whether ordinal `i` is named by gpu.devices ("all" or "0,2"). */
static bool device_selected(const char *devices, int i)
{
        if (!devices || !*devices || strcmp(devices, "all") == 0)
                return true;
        for (const char *p = devices; *p;) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p)
                        return false;
                if (v == i)
                        return true;
                p = *end == ',' ? end + 1 : end;
        }
        return false;
}

static int add_real_devices(struct cuda_backend *b, const struct kiln_backend_host *host)
{
        int count = 0;
        int r = cuda_err(cudaGetDeviceCount(&count));
        if (r < 0)
                return r;
        for (int i = 0; i < count && b->n_dev < MAX_DEVICES; i++) {
                struct cudaDeviceProp prop;
                size_t free_b = 0, total_b = 0;
                if (!device_selected(host->devices, i))
                        continue;
                if (cudaGetDeviceProperties(&prop, i) != cudaSuccess || cudaSetDevice(i) != cudaSuccess ||
                    cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
                        continue; /* an unusable device is left out, not fatal */
                struct device *d = &b->dev[b->n_dev++];
                snprintf(d->name, sizeof(d->name), "cuda:%d", i);
                snprintf(d->model, sizeof(d->model), "%.63s", prop.name);
                d->ordinal = i;
                d->in_service = true;
                d->mem_total = total_b;
                d->budget = (uint64_t)(host->memory_fraction * (double)total_b);
                int khz = 0, bits = 0;
                if (cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, i) == cudaSuccess &&
                    cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, i) == cudaSuccess)
                        d->mem_bw = 2.0 * khz * 1e3 * (bits / 8.0); /* double data rate */
        }
        return 0;
}

/* The plugin's entry point (backend.h). */
__attribute__((visibility("default"))) int kiln_backend_plugin_init(const struct kiln_backend_host *host,
                                                                    struct kiln_backend **ret)
{
        if (!host || host->api_version != KILN_BACKEND_API_VERSION)
                return -EPROTO;
        struct cuda_backend *b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        int r = cuda_fault_parse(getenv("KILN_CUDA_FAULT"), &b->fault);
        if (r < 0) {
                free(b);
                return r;
        }
        /* The core relies on the generated list being what the kinds declare. */
        for (size_t i = 0; kiln_cuda_kinds[i]; i++)
                if (!kiln_cuda_kinds[i]->name || !kiln_cuda_kinds[i]->prepare || !kiln_cuda_kinds[i]->launch) {
                        free(b);
                        return -EPROTO;
                }
        pthread_mutex_init(&b->lock, NULL);
        pthread_cond_init(&b->lane_free, NULL);
        for (unsigned i = 0; i < MAX_DEVICES; i++)
                pthread_mutex_init(&b->dev[i].mem, NULL);
        add_real_devices(b, host); /* no driver or no GPU: no real device */
        if (b->fault.sim && b->n_dev < MAX_DEVICES) {
                struct device *d = &b->dev[b->n_dev++];
                snprintf(d->name, sizeof(d->name), "cuda:sim0");
                snprintf(d->model, sizeof(d->model), "simulated (KILN_CUDA_FAULT)");
                d->ordinal = -1;
                d->in_service = true;
        }
        if (b->n_dev == 0) {
                cuda_destroy(b);
                return -ENODEV;
        }
        b->vt = (struct kiln_backend){
                .api_version = KILN_BACKEND_API_VERSION,
                .name = "cuda",
                .ctx = b,
                .supports = cuda_supports,
                .n_devices = cuda_n_devices,
                .device_info = cuda_device_info,
                .run_batch = cuda_run_batch,
                .maintain = cuda_maintain,
                .destroy = cuda_destroy,
                .object_upload = cuda_object_upload,
                .object_release = cuda_object_release,
        };
        *ret = &b->vt;
        return 0;
}
