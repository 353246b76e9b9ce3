/* The CUDA backend plugin (libkiln-cuda.so): devices, streams, memory, batches.
 *
 * Each device has LANES lanes; a lane is one stream with its own pinned host buffer
 * and device buffers. A batch takes one lane of the least busy device in service and
 * runs as one kernel launch per chunk (a chunk is as many tasks as fit the lane's
 * buffer): descriptors host->device, kernel, results device->pinned host, then the
 * parts are filled from the pinned buffer. Batches from several workers run on
 * different lanes at once, so one batch's copies overlap another's kernel. Memory
 * held by a device's lanes stays within gpu.memory_fraction of its memory.
 *
 * A CUDA error, out-of-memory or lost device takes the device out of service and
 * hands the unfinished tasks back (-EIO); maintain() probes it again after a
 * back-off. cudaError_t never leaves this file: it is converted at cuda_err(). */
#include <cuda_runtime_api.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cuda_kind.h"
#include "fault.h"

#define MAX_DEVICES 16
#define LANES 2
#define CHUNK_BYTES (256u << 20)  /* output bytes one launch aims for */
#define MAX_TASKS_PER_LAUNCH 65535u /* gridDim.y */
#define PROBE_MAX_MS 60000

struct lane {
        bool busy;
        cudaStream_t stream;
        float *d_out;
        float *h_out;               /* pinned */
        size_t out_cap;             /* bytes of each of d_out and h_out */
        struct kiln_cuda_desc *d_desc, *h_desc; /* h_desc pinned */
        size_t desc_cap;            /* descriptors */
};

struct device {
        char name[16];
        char model[64];
        int ordinal;                /* CUDA device ordinal, -1 for the simulated one */
        bool in_service;
        uint32_t failures, probes, batches, injected;
        int64_t next_probe_ms;
        uint32_t backoff_ms;
        uint64_t mem_total, budget, used;
        double mem_bw;              /* bytes/s */
        unsigned busy;
        struct lane lanes[LANES];
};

struct cuda_backend {
        struct kiln_backend vt;
        pthread_mutex_t lock;
        pthread_cond_t lane_free;
        struct device dev[MAX_DEVICES];
        unsigned n_dev;
        struct cuda_fault fault;
};

/* The one border between cudaError_t and -errno. */
static int cuda_err(cudaError_t e)
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

static const struct kiln_cuda_kind *find_kind(const struct kiln_kind *kind)
{
        for (size_t i = 0; kind && kiln_cuda_kinds[i]; i++)
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
        cudaFree(l->d_desc);
        cudaFreeHost(l->h_desc);
        d->used -= l->out_cap + l->desc_cap * sizeof(struct kiln_cuda_desc);
        memset(l, 0, sizeof(*l));
}

/* Grows a lane's buffers to hold out_bytes and n_desc descriptors, within the
 * device's budget. Returns >= 0, -E2BIG when over budget, or a CUDA error. */
static int lane_reserve(struct device *d, struct lane *l, size_t out_bytes, size_t n_desc)
{
        int r;

        if (!l->stream && (r = cuda_err(cudaStreamCreateWithFlags(&l->stream, cudaStreamNonBlocking))) < 0)
                return r;
        if (out_bytes > l->out_cap) {
                if (d->used - l->out_cap + out_bytes > d->budget)
                        return -E2BIG;
                cudaFree(l->d_out);
                cudaFreeHost(l->h_out);
                l->d_out = l->h_out = NULL;
                d->used -= l->out_cap;
                l->out_cap = 0;
                if ((r = cuda_err(cudaMalloc((void **)&l->d_out, out_bytes))) < 0 ||
                    (r = cuda_err(cudaMallocHost((void **)&l->h_out, out_bytes))) < 0)
                        return r;
                l->out_cap = out_bytes;
                d->used += out_bytes;
        }
        if (n_desc > l->desc_cap) {
                size_t cap = n_desc < 1024 ? 1024 : n_desc;
                cudaFree(l->d_desc);
                cudaFreeHost(l->h_desc);
                l->d_desc = l->h_desc = NULL;
                d->used -= l->desc_cap * sizeof(struct kiln_cuda_desc);
                l->desc_cap = 0;
                if ((r = cuda_err(cudaMalloc((void **)&l->d_desc, cap * sizeof(struct kiln_cuda_desc)))) < 0 ||
                    (r = cuda_err(cudaMallocHost((void **)&l->h_desc, cap * sizeof(struct kiln_cuda_desc)))) < 0)
                        return r;
                l->desc_cap = cap;
                d->used += cap * sizeof(struct kiln_cuda_desc);
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

/* Runs tasks[first, last) (all prepared, with descs in l->h_desc[0..]) as one launch.
 * Returns >= 0 or a device error. */
static int launch_chunk(const struct kiln_cuda_kind *ck, struct device *d, struct lane *l, struct kiln_task *tasks,
                        const size_t *idx, size_t n, uint64_t floats, uint64_t max_pixels)
{
        int r;

        if ((r = cuda_err(cudaMemcpyAsync(l->d_desc, l->h_desc, n * sizeof(*l->h_desc), cudaMemcpyHostToDevice,
                                          l->stream))) < 0)
                return r;
        ck->launch(l->d_desc, (unsigned)n, max_pixels, l->d_out, l->stream);
        if ((r = cuda_err(cudaGetLastError())) < 0)
                return r;
        if ((r = cuda_err(cudaMemcpyAsync(l->h_out, l->d_out, floats * sizeof(float), cudaMemcpyDeviceToHost,
                                          l->stream))) < 0)
                return r;
        if ((r = wait_stream(l)) < 0)
                return r;
        for (size_t c = 0; c < n; c++) {
                struct kiln_task *t = &tasks[idx[c]];
                if (kiln_exec_stopped(t->exec)) {
                        finish_task(t, d, -ECANCELED);
                        continue;
                }
                const float *src = l->h_out + l->h_desc[c].out_offset;
                for (int p = 0; p < t->result->n_parts; p++) {
                        struct kiln_part *part = &t->result->parts[p];
                        memcpy(part->data, src, part->bytes);
                        src += part->bytes / sizeof(float);
                }
                kiln_exec_progress(t->exec, 1.0);
                finish_task(t, d, 0);
        }
        return 0;
}

/* Runs every unfinished task on device d, lane l, chunk by chunk. */
static int run_on_lane(struct cuda_backend *b, const struct kiln_cuda_kind *ck, struct device *d, struct lane *l,
                       struct kiln_task *tasks, size_t n)
{
        size_t *idx = malloc((n ? n : 1) * sizeof(*idx));
        int r = idx ? cuda_err(cudaSetDevice(d->ordinal)) : -ENOMEM;

        for (size_t i = 0; r >= 0 && i < n;) {
                size_t m = 0;
                uint64_t floats = 0, max_pixels = 0;
                size_t want = n - i < MAX_TASKS_PER_LAUNCH ? n - i : MAX_TASKS_PER_LAUNCH;
                if ((r = lane_reserve(d, l, l->out_cap, want)) < 0)
                        break;
                while (i < n && m < want) {
                        struct kiln_task *t = &tasks[i];
                        if (t->finished) {
                                i++;
                                continue;
                        }
                        if (kiln_exec_stopped(t->exec)) {
                                finish_task(t, d, -ECANCELED);
                                i++;
                                continue;
                        }
                        struct kiln_cuda_desc desc;
                        atomic_store(&t->started, true);
                        kiln_result_clear(t->result);
                        int64_t nf = ck->prepare(t->params, t->result, &desc);
                        if (nf < 0) {
                                kiln_result_clear(t->result);
                                finish_task(t, d, (int)nf);
                                i++;
                                continue;
                        }
                        if (m > 0 && (floats + (uint64_t)nf) * sizeof(float) > CHUNK_BYTES) {
                                kiln_result_clear(t->result);
                                break; /* next chunk */
                        }
                        desc.out_offset = floats;
                        l->h_desc[m] = desc;
                        idx[m++] = i++;
                        floats += (uint64_t)nf;
                        if ((uint64_t)desc.n * desc.n > max_pixels)
                                max_pixels = (uint64_t)desc.n * desc.n;
                }
                if (r < 0 || m == 0)
                        break;
                if ((r = lane_reserve(d, l, floats * sizeof(float), m)) < 0)
                        break;
                r = launch_chunk(ck, d, l, tasks, idx, m, floats, max_pixels);
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
        const struct kiln_cuda_kind *ck = find_kind(kind);
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
                r = run_on_lane(b, ck, d, l, tasks, n);

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
        for (unsigned k = 0; k < LANES; k++)
                lane_release(d, &d->lanes[k]);
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
        return find_kind(kind) != NULL;
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
        ret->memory_used = d->used;
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
                for (unsigned k = 0; k < LANES; k++)
                        lane_release(d, &d->lanes[k]);
        }
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
        pthread_mutex_init(&b->lock, NULL);
        pthread_cond_init(&b->lane_free, NULL);
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
        };
        *ret = &b->vt;
        return 0;
}
