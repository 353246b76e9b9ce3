/* The built-in CPU backend: every kind's run_cpu, on the calling worker thread. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"

static bool cpu_supports(void *ctx, const struct kiln_kind *kind)
{
        return kind && kind->run_cpu;
}

static int cpu_run_batch(void *ctx, const struct kiln_kind *kind, struct kiln_task *tasks, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                struct kiln_task *t = &tasks[i];
                snprintf(t->device, sizeof(t->device), "cpu");
                if (kiln_exec_stopped(t->exec)) {
                        t->status = -ECANCELED;
                        continue;
                }
                t->status = kind->run_cpu(t->params, t->result, t->exec);
        }
        return 0;
}

static int cpu_describe(void *ctx, char *buf, size_t size)
{
        snprintf(buf, size, "cpu");
        return 0;
}

static const struct kiln_backend cpu_backend = {
        .api_version = KILN_BACKEND_API_VERSION,
        .name = "cpu",
        .supports = cpu_supports,
        .run_batch = cpu_run_batch,
        .describe = cpu_describe,
};

const struct kiln_backend *kiln_backend_cpu(void)
{
        return &cpu_backend;
}
