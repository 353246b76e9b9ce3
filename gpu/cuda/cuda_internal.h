/* The CUDA plugin's devices, lanes and resident objects, shared by its two files:
 * cuda_backend.c (batches, probing, the plugin entry) and cuda_resident.c (objects
 * kept on the devices). Not part of any interface; includes the CUDA runtime. */
#pragma once

#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "cuda_kind.h"
#include "fault.h"

#define MAX_DEVICES 16
#define LANES 2
#define MAX_RESIDENT 16

/* One stream with its own pinned host buffers and device buffers. */
struct lane {
        bool busy;
        cudaStream_t stream;
        unsigned char *d_out, *h_out;  /* h_out pinned */
        size_t out_cap;                /* bytes of each */
        unsigned char *d_in, *h_in;    /* h_in pinned */
        size_t in_cap;
        struct kiln_cuda_desc *d_desc, *h_desc; /* h_desc pinned */
        size_t desc_cap;               /* descriptors */
        uint64_t scratch_cap;          /* budget held for the kinds' scratch (lane_hold_scratch) */
};

/* One object image kept on a device. */
struct resident {
        const struct kiln_object_class *cls; /* NULL: a free slot */
        const void *snapshot;
        uint64_t version;
        void *d_data;
        uint64_t bytes;
        unsigned users;                /* launches using it now */
        bool doomed;                   /* released while in use: freed by the last user */
        uint64_t last_use;             /* for eviction, least recently used first */
};

struct device {
        char name[16];
        char model[64];
        int ordinal;                /* CUDA device ordinal, -1 for the simulated one */
        bool in_service;
        uint32_t failures, probes, batches, injected;
        int64_t next_probe_ms;
        uint32_t backoff_ms;
        uint64_t mem_total, budget;
        double mem_bw;              /* bytes/s */
        unsigned busy;
        struct lane lanes[LANES];
        /* Memory held (lanes and residents) and the residents, under `mem`. */
        pthread_mutex_t mem;
        uint64_t used;
        uint64_t scratch;           /* of `used`: the lanes' scratch_cap together */
        struct resident res[MAX_RESIDENT];
        uint64_t tick;
};

struct cuda_backend {
        struct kiln_backend vt;
        pthread_mutex_t lock;       /* service state, busy counts, lane choice */
        pthread_cond_t lane_free;
        struct device dev[MAX_DEVICES];
        unsigned n_dev;
        struct cuda_fault fault;
};

/* The one border between cudaError_t and -errno. */
int cuda_err(cudaError_t e);

/* The CUDA kind that implements `kind`, or NULL. */
const struct kiln_cuda_kind *cuda_find_kind(const struct kiln_kind *kind);

/* Takes `bytes` of device d's budget, evicting unused residents as it must
 * (device current), or -E2BIG with nothing evicted when even that would not make
 * room / gives them back. */
int cuda_mem_take(struct device *d, uint64_t bytes);
void cuda_mem_give(struct device *d, uint64_t bytes);

/* The image of `obj` on device d (current on this thread), uploaded when absent,
 * counted as used until cuda_resident_put. Returns >= 0 and the entry, -ENOTSUP when
 * ck has no object image, -E2BIG, or a CUDA error. */
int cuda_resident_get(struct device *d, const struct kiln_cuda_kind *ck, const struct kiln_object *obj,
                      struct resident **ret);
void cuda_resident_put(struct device *d, struct resident *r);
/* Forgets every resident of d without freeing (after cudaDeviceReset) or frees
 * them (free_memory, device current; at destroy). */
void cuda_resident_drop_all(struct device *d, bool free_memory);

/* The vtable hooks (cuda_resident.c). */
int cuda_object_upload(void *ctx, const struct kiln_object *obj);
void cuda_object_release(void *ctx, const struct kiln_object *obj);
