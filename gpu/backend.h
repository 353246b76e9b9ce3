/* The one backend interface (STYLE.md habit 5).
 *
 * A backend runs batches of jobs of one kind on one of its devices. The CPU backend
 * is built in and always last in the list (gpu/registry.c); the CUDA backend is a
 * run-time plugin (libkiln-cuda.so) that exports kiln_backend_plugin_init() and comes
 * before the CPU when it finds a usable device. Backends return errors; they do not
 * log. Nothing in this header depends on JSON or CUDA. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kind.h"

/* Bumped whenever a struct below changes; a plugin built for another version is
 * refused by the loader. */
#define KILN_BACKEND_API_VERSION 3u

/* A job of a batch is a `struct kiln_task` (kind.h): params, inputs, object, result,
 * stop flag, status. */

/* Why a backend refused or lost a whole batch (run_batch's return value):
 *   -ENODEV  no device of this backend is in service (try the next backend)
 *   -E2BIG   the batch does not fit this backend's memory (try the next backend)
 *   -EIO     the device failed (CUDA error, lost device, out of memory): it has been
 *            taken out of service; retry the unfinished tasks elsewhere.
 * Tasks already finished (on_done called) stay finished. */

/* What /readyz and stats show about one device. */
struct kiln_device_info {
        char name[16];             /* "cpu", "cuda:0", "cuda:sim0" */
        char model[64];            /* "NVIDIA H100 80GB HBM3", "simulated", "" */
        bool in_service;           /* false while out of service after a failure */
        uint32_t failures;         /* device failures since start */
        uint32_t probes;           /* re-probes since start (successful or not) */
        uint64_t memory_total;     /* bytes; 0 when unknown */
        uint64_t memory_used;      /* bytes held by this backend */
        uint32_t busy;             /* batches running on it now */
        double memory_bandwidth;   /* peak device memory bandwidth, bytes/s; 0 = unknown */
};

struct kiln_backend {
        uint32_t api_version;      /* KILN_BACKEND_API_VERSION */
        const char *name;          /* "cpu", "cuda" */
        void *ctx;

        /* Whether this backend implements `kind` at all (independent of devices). */
        bool (*supports)(void *ctx, const struct kiln_kind *kind);
        /* Number of devices, in service or not. */
        unsigned (*n_devices)(void *ctx);
        /* Describes device `index` (< n_devices). Returns >= 0 or -EINVAL. */
        int (*device_info)(void *ctx, unsigned index, struct kiln_device_info *ret);
        /* Runs n tasks of one kind on one in-service device chosen by the backend; sets
         * each finished task's status and device and calls its on_done. Returns >= 0
         * when every task finished (individual tasks may have failed), or one of the
         * codes above when the batch (its unfinished part) must go elsewhere. Safe to
         * call from several threads at once. */
        int (*run_batch)(void *ctx, const struct kiln_kind *kind, struct kiln_task *tasks, size_t n);
        /* Optional (NULL: the backend keeps no copies): makes a resident copy of a
         * compiled object on the backend's devices, so that batches against it do
         * not copy it each time (ggml's "run where the weights are"). Called from a
         * worker thread once an object version is compiled; a batch whose object was
         * not uploaded still runs (the backend copies it on demand). Returns >= 0
         * when at least one device holds it, -ENOTSUP when no kind of this backend
         * uses the object's class, -E2BIG when it does not fit, or -EIO/-ENODEV. */
        int (*object_upload)(void *ctx, const struct kiln_object *obj);
        /* Optional: drops every resident copy of `obj` (same cls, version and
         * snapshot). Called before the object's snapshot is released; copies in use
         * by a running batch go when that batch ends. */
        void (*object_release)(void *ctx, const struct kiln_object *obj);
        /* Housekeeping, called every second or so from a worker thread: re-probes
         * devices that are out of service once their back-off has passed. now_ms is
         * CLOCK_MONOTONIC milliseconds. May be NULL. */
        void (*maintain)(void *ctx, int64_t now_ms);
        /* Frees the context (the struct itself is owned by the backend). May be NULL. */
        void (*destroy)(void *ctx);
};

/* What the daemon tells a plugin. */
struct kiln_backend_host {
        uint32_t api_version;            /* KILN_BACKEND_API_VERSION */
        const char *devices;             /* gpu.devices: "all" or "0,2" */
        double memory_fraction;          /* gpu.memory_fraction, (0, 1] */
};

/* The plugin's entry point, the one symbol kilnd looks up (tests/gpu also reads
 * a diagnostic, kiln_cuda_vec_cublas_state). Returns >= 0 and a backend in *ret
 * (owned by the plugin until its destroy), -ENODEV when it found no usable device
 * (no driver, no GPU), -EPROTO when host->api_version is not its own, or another
 * -errno. */
typedef int kiln_backend_plugin_init_fn(const struct kiln_backend_host *host, struct kiln_backend **ret);
#define KILN_BACKEND_PLUGIN_INIT "kiln_backend_plugin_init"

/* The built-in CPU backend: runs each task with the kind's run_cpu on the calling
 * thread (the daemon's worker pool provides the parallelism), or two or more with
 * its run_cpu_batch when it has one. One device, "cpu", always in service; no
 * object hooks (the snapshot is the CPU's copy). Never NULL; static storage. */
const struct kiln_backend *kiln_backend_cpu(void);

/* ---- the backend list (gpu/registry.c) ---- */

enum kiln_backend_mode {
        KILN_BACKENDS_AUTO,  /* every usable plugin, then the CPU */
        KILN_BACKENDS_CUDA,  /* the CUDA plugin only: no CPU fallback */
        KILN_BACKENDS_CPU,   /* the CPU only: no plugin is loaded */
};

struct kiln_backends_config {
        enum kiln_backend_mode mode;
        const char *devices;         /* gpu.devices */
        double memory_fraction;      /* gpu.memory_fraction */
        const char *plugin_dir;      /* NULL: $KILN_PLUGIN_DIR, else next to the
                                      * executable's build tree, else the libdir */
};

/* The active backends, in order of preference. */
struct kiln_backends {
        const struct kiln_backend *list[4];
        size_t n;
        void *plugin_handle;         /* dlopen handle, NULL when none */
        char plugin_path[512];       /* the plugin found, "" when none */
        char plugin_status[128];     /* "loaded", "not found", "no devices", ... */
};

/* Builds the backend list for `cfg`: loads the CUDA plugin unless mode is CPU (an
 * absent plugin or one that finds no device is not an error: plugin_status says
 * why), and appends the CPU backend unless mode is CUDA. Returns >= 0 and a list in
 * *ret (free it with kiln_backends_free), or -ENOMEM. With mode CUDA the list may
 * be empty. */
int kiln_backends_open(const struct kiln_backends_config *cfg, struct kiln_backends **ret);
/* Destroys the plugin's backend and unloads it. Accepts NULL. */
void kiln_backends_free(struct kiln_backends *b);
