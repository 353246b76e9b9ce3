/* The built-in CPU backend: every kind's run_cpu, on the calling worker thread.
 *
 * A batch runs task after task on the one worker that took it, so other workers stay
 * free for other batches; each task is reported finished (on_done) as soon as it is,
 * and a task whose stop flag is up when its turn comes is skipped at once. A kind
 * with run_cpu_batch gets the batch's tasks in one call instead (one matrix product
 * for many rows), and they are reported when it returns. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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

static void finish(struct kiln_task *t)
{
        t->finished = true;
        if (t->on_done)
                t->on_done(t);
}

/* The kind's run_cpu_batch over the tasks still to run (two or more): one call for
 * them all, then each is reported. Returns false when it did not run (the caller
 * runs them one by one). */
static bool run_together(const struct kiln_kind *kind, struct kiln_task *tasks, size_t n)
{
        struct kiln_task **todo = malloc(n * sizeof(*todo));
        size_t m = 0;

        if (!todo)
                return false;
        for (size_t i = 0; i < n; i++) {
                struct kiln_task *t = &tasks[i];
                if (t->finished)
                        continue;
                snprintf(t->device, sizeof(t->device), "cpu");
                if (kiln_exec_stopped(t->exec)) {
                        t->status = -ECANCELED;
                        finish(t);
                        continue;
                }
                atomic_store(&t->started, true);
                kiln_result_clear(t->result);
                t->status = 0;
                todo[m++] = t;
        }
        int r = m ? kind->run_cpu_batch(todo, m) : 0;
        for (size_t i = 0; i < m; i++) {
                if (r < 0)
                        todo[i]->status = r;
                finish(todo[i]);
        }
        free(todo);
        return true;
}

static int cpu_run_batch(void *ctx, const struct kiln_kind *kind, struct kiln_task *tasks, size_t n)
{
        if (!cpu_supports(ctx, kind))
                return -ENODEV;
        if (kind->run_cpu_batch && n > 1 && run_together(kind, tasks, n))
                return 0;
        for (size_t i = 0; i < n; i++) {
                struct kiln_task *t = &tasks[i];
                if (t->finished)
                        continue;
                snprintf(t->device, sizeof(t->device), "cpu");
                if (kiln_exec_stopped(t->exec)) {
                        t->status = -ECANCELED;
                } else {
                        atomic_store(&t->started, true);
                        kiln_result_clear(t->result); /* a batch another backend gave back */
                        t->status = kind->run_cpu(t);
                }
                finish(t);
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
