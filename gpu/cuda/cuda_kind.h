/* The CUDA half of a job kind, as the plugin core (gpu/cuda/) sees it.
 *
 * Plain C with no CUDA types, so both a kind's host-side preparation (C,
 * gpu/kinds/<kind>/cuda_prep.c) and its kernel (nvcc, gpu/kinds/<kind>/kernel.cu)
 * include it. The plugin's ABI knows nothing of any kind: a task is one generic
 * descriptor whose 24 parameter words the kind's prepare packs and its kernel
 * unpacks (ggml's op_params).
 *
 * A batch of tasks runs as one kernel launch per chunk: the core lays every task's
 * inputs out in one batch input buffer (in_offset), copies it and the descriptors
 * to the device, launches the kind's kernel, which writes every task's output at
 * its out_offset of one batch output buffer, copies that back and hands each task's
 * bytes to the kind (complete) or, by default, splits them over the task's result
 * parts in part order. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hostdev.h"

#define KILN_CUDA_PARAMS 32
/* Every task's input and output region starts at a multiple of this many bytes of
 * its batch buffer. */
#define KILN_CUDA_TASK_ALIGN 256u
/* Within a task's region, each input (in the kind's spec order) and each output part
 * (in part order) starts at a multiple of this many bytes. */
#define KILN_CUDA_PART_ALIGN 16u

/* One task of a batch, as its kernel sees it (160 bytes, POD). */
struct kiln_cuda_desc {
        uint64_t in_offset;   /* bytes: this task's inputs in the batch input buffer */
        uint64_t in_bytes;    /* 0 for a kind without inputs */
        uint64_t out_offset;  /* bytes: this task's output in the batch output buffer */
        uint64_t out_bytes;
        uint32_t params[KILN_CUDA_PARAMS]; /* the kind's: packed by prepare, read by the kernel */
};

KILN_HD static inline uint64_t kiln_cuda_align(uint64_t x, uint64_t a)
{
        return (x + a - 1) / a * a;
}

/* Packing of parameter words: a double takes two words (low word first). */
KILN_HD static inline void kiln_cuda_put_f64(uint32_t *p, unsigned slot, double v)
{
        uint64_t bits;
        memcpy(&bits, &v, sizeof(bits));
        p[slot] = (uint32_t)bits;
        p[slot + 1] = (uint32_t)(bits >> 32);
}

KILN_HD static inline double kiln_cuda_get_f64(const uint32_t *p, unsigned slot)
{
        uint64_t bits = (uint64_t)p[slot] | (uint64_t)p[slot + 1] << 32;
        double v;
        memcpy(&v, &bits, sizeof(v));
        return v;
}

KILN_HD static inline void kiln_cuda_put_f32(uint32_t *p, unsigned slot, float v)
{
        memcpy(&p[slot], &v, sizeof(v));
}

KILN_HD static inline float kiln_cuda_get_f32(const uint32_t *p, unsigned slot)
{
        float v;
        memcpy(&v, &p[slot], sizeof(v));
        return v;
}

/* What one launch gets (device pointers, except `stream`). */
struct kiln_cuda_launch {
        const struct kiln_cuda_desc *desc; /* n_tasks descriptors */
        unsigned n_tasks;                  /* at most 65535 (gridDim.y) */
        const void *in;                    /* the batch input buffer; NULL when no task has inputs */
        void *out;                         /* the batch output buffer */
        const void *object;                /* the object image every task of this launch runs
                                            * against (object_image), or NULL */
        uint64_t object_bytes;
        uint64_t max_work;                 /* the largest work count of this launch's tasks */
        void *stream;                      /* a cudaStream_t */
};

struct kiln_task;
struct kiln_object;

/* The CUDA implementation of one kind. It names its kind and object class rather
 * than pointing at their descriptors, so that the plugin links none of the kind's
 * other code (an object class's parser may need a JSON library). */
struct kiln_cuda_kind {
        const char *name;                  /* the kind's name, e.g. "lens.nfw" */
        const char *object_class;          /* the kind's object class name ("risk.model"), or NULL */
        /* Host side, before the launch: adds the result values known before the kernel
         * runs and the parts (still zero) to t->result, and fills ret_desc->params and
         * *ret_work (the number of work items, e.g. pixels; the kernel gets the
         * largest of its launch). `in_offsets[s]` is where input s of the kind's spec
         * list starts, relative to in_offset (UINT64_MAX when absent). With
         * `complete` NULL the core sets out_bytes from the parts (each at
         * KILN_CUDA_PART_ALIGN); otherwise prepare sets ret_desc->out_bytes. Returns
         * >= 0, or -errno (-EINVAL for params the math cannot use, -ENOMEM). */
        int (*prepare)(const struct kiln_task *t, const uint64_t *in_offsets, struct kiln_cuda_desc *ret_desc,
                       uint64_t *ret_work);
        /* Enqueues the kernel on l->stream. Errors surface through the runtime's last
         * error, checked by the core. */
        void (*launch)(const struct kiln_cuda_launch *l);
        /* Optional: turns this task's output bytes (host memory) into its result, e.g.
         * indices into the strings of an `ids` value. Returns >= 0 or -errno. */
        int (*complete)(struct kiln_task *t, const void *out, uint64_t bytes);
        /* Optional: the most device memory one launch of these tasks allocates itself
         * (scratch, with the allocator's rounding), from their descriptors (host
         * memory) and the size of the object image. The core holds that much of the
         * device's gpu.memory_fraction before the launch, evicting unused objects as
         * it must, and sends the batch elsewhere when it cannot. */
        uint64_t (*scratch_bytes)(const struct kiln_cuda_desc *desc, unsigned n_tasks, uint64_t object_bytes);
        /* Optional, for a kind with an object class: the flat image of an object's
         * snapshot that its kernel reads (borrowed from the snapshot), kept resident
         * on each device (kiln_backend.object_upload). Returns >= 0 or -errno. */
        int (*object_image)(const struct kiln_object *obj, const void **ret_data, uint64_t *ret_bytes);
        /* Optional: the core is about to destroy device `device`'s streams (to reset
         * it after a failure, or at the end), with that device current: drops what
         * the kind keeps per device or per stream (a library's handles). */
        void (*device_release)(int device);
};

/* The kinds the plugin implements, NULL-terminated, in gpu/kinds/KINDS order
 * (generated from the kinds marked `cuda`: each folder defines
 * `const struct kiln_cuda_kind kiln_cuda_kind_<folder>`). */
extern const struct kiln_cuda_kind *const kiln_cuda_kinds[];
