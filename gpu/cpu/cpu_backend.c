/* The built-in CPU backend: every kind's run_cpu, on the calling worker thread.
 *
 * A batch runs task after task on the one worker that took it, so other workers stay
 * free for other batches; each task is reported finished (on_done) as soon as it is,
 * and a task whose stop flag is up when its turn comes is skipped at once. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"

static bool cpu_supports(void *ctx, const struct kiln_kind *kind)
{
        return kind && kind->run_cpu;
}

static unsigned cpu_n_devices(void *ctx)
{
        return 1;
}

static int cpu_device_info(void *ctx, unsigned index, struct kiln_device_info *ret)
{
        if (index != 0)
                return -EINVAL;
        memset(ret, 0, sizeof(*ret));
        snprintf(ret->name, sizeof(ret->name), "cpu");
        ret->in_service = true;
        return 0;
}

static int cpu_run_batch(void *ctx, const struct kiln_kind *kind, struct kiln_task *tasks, size_t n)
{
        if (!cpu_supports(ctx, kind))
                return -ENODEV;
        for (size_t i = 0; i < n; i++) {
                struct kiln_task *t = &tasks[i];
                if (t->finished)
                        continue;
                snprintf(t->device, sizeof(t->device), "cpu");
                if (kiln_exec_stopped(t->exec)) {
                        t->status = -ECANCELED;
                } else {
                        atomic_store(&t->started, true);
                        t->status = kind->run_cpu(t->params, t->result, t->exec);
                }
                t->finished = true;
                if (t->on_done)
                        t->on_done(t);
        }
        return 0;
}

static const struct kiln_backend cpu_backend = {
        .api_version = KILN_BACKEND_API_VERSION,
        .name = "cpu",
        .supports = cpu_supports,
        .n_devices = cpu_n_devices,
        .device_info = cpu_device_info,
        .run_batch = cpu_run_batch,
};

const struct kiln_backend *kiln_backend_cpu(void)
{
        return &cpu_backend;
}
