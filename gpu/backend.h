/* The one backend interface (STYLE.md habit 5).
 *
 * A backend runs batches of jobs of one kind. The CPU backend is built in and always
 * last in the list; other backends (the CUDA plugin) come before it when present.
 * Backends return errors; they do not log. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kind.h"

#define KILN_BACKEND_API_VERSION 1u

/* One job of a batch, as a backend sees it. */
struct kiln_task {
        const void *params;        /* the kind's typed parameters */
        struct kiln_result *result;/* empty on entry; filled on success */
        struct kiln_exec *exec;    /* stop flag and progress for this job */
        int status;                /* out: >= 0, -ECANCELED, -ENOMEM, -EIO, ... */
        char device[16];           /* out: where it ran, e.g. "cpu" or "cuda:0" */
};

struct kiln_backend {
        uint32_t api_version;      /* KILN_BACKEND_API_VERSION */
        const char *name;          /* "cpu", "cuda" */
        void *ctx;

        /* Whether this backend can run `kind` right now. */
        bool (*supports)(void *ctx, const struct kiln_kind *kind);
        /* Runs n tasks of one kind; sets each task's status and device. Returns >= 0
         * when the batch ran (individual tasks may still have failed), or -errno when
         * the backend itself failed and the whole batch should be retried elsewhere. */
        int (*run_batch)(void *ctx, const struct kiln_kind *kind, struct kiln_task *tasks, size_t n);
        /* A JSON-free one-line description for /readyz and stats ("cpu: 16 threads"). */
        int (*describe)(void *ctx, char *buf, size_t size);
        void (*destroy)(void *ctx);
};

/* The built-in CPU backend: runs each task with the kind's run_cpu on the calling
 * thread (the daemon's worker pool provides the parallelism). Never NULL. */
const struct kiln_backend *kiln_backend_cpu(void);
