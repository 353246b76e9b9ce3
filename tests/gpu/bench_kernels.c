/* Kernel benchmark: lens.nfw and lens.raytrace throughput on every available backend
 * device, across grid sizes and batch sizes (not a CTest test; see README.md).
 *
 *   bench_kernels [--max-pixels N] [--cpu-max-pixels N]
 *
 * For each (kind, backend, grid, batch) it runs one batch through the backend's
 * run_batch (host preparation, copies and the kernel: what a daemon batch costs) and
 * prints pixels/s and the output bytes written per second (GB/s), with the device's
 * peak memory bandwidth alongside when the backend knows it. Combinations above
 * --max-pixels (grid^2 x batch; default 2^28) are left out, and on the CPU above
 * --cpu-max-pixels (default 2^22), so a CPU-only run finishes in minutes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cases.h"

static const struct kiln_kind kind_nfw = { .name = "lens.nfw", .run_cpu = lens_nfw_run_cpu };
static const struct kiln_kind kind_ray = { .name = "lens.raytrace", .run_cpu = lens_raytrace_run_cpu };

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Runs `batch` jobs of grid n as one batch; returns seconds, or < 0 on failure. */
static double run_once(const struct kiln_backend *be, const struct kiln_kind *kind, int n, size_t batch,
                       size_t *ret_bytes)
{
        struct kiln_task *tasks = calloc(batch, sizeof(*tasks));
        struct kiln_result *res = calloc(batch, sizeof(*res));
        struct lens_nfw_params *pn = calloc(batch, sizeof(*pn));
        struct lens_raytrace_params *pr = calloc(batch, sizeof(*pr));
        double t = -1;

        if (tasks && res && pn && pr) {
                for (size_t i = 0; i < batch; i++) {
                        pn[i] = case_nfw(n, 1e14 * (1 + 1e-3 * (double)i), LENS_NFW_KAPPA);
                        pr[i] = case_ray(n, 1e15 * (1 + 1e-3 * (double)i), 0.5, 0.5, 2);
                        tasks[i] = (struct kiln_task){ .params = kind == &kind_nfw ? (void *)&pn[i] : (void *)&pr[i],
                                                       .result = &res[i] };
                }
                double t0 = now_s();
                int r = be->run_batch(be->ctx, kind, tasks, batch);
                t = now_s() - t0;
                *ret_bytes = 0;
                for (size_t i = 0; i < batch; i++) {
                        if (tasks[i].status < 0)
                                r = tasks[i].status;
                        *ret_bytes += kiln_result_bytes(&res[i]);
                        kiln_result_clear(&res[i]);
                }
                if (r < 0)
                        t = -1;
        }
        free(tasks);
        free(res);
        free(pn);
        free(pr);
        return t;
}

int main(int argc, char **argv)
{
        double max_pixels = 268435456.0, cpu_max_pixels = 4194304.0;
        for (int i = 1; i + 1 < argc; i += 2) {
                if (!strcmp(argv[i], "--max-pixels"))
                        max_pixels = atof(argv[i + 1]);
                else if (!strcmp(argv[i], "--cpu-max-pixels"))
                        cpu_max_pixels = atof(argv[i + 1]);
        }
        static const int grids[] = { 64, 128, 256, 512, 1024, 2048, 4096, 8192 };
        static const size_t batches[] = { 1, 4, 16, 64, 256, 1024 };
        const struct kiln_kind *kinds[] = { &kind_nfw, &kind_ray };

        struct kiln_backends_config cfg = { .mode = KILN_BACKENDS_AUTO, .devices = "all", .memory_fraction = 0.9 };
        struct kiln_backends *bs;
        if (kiln_backends_open(&cfg, &bs) < 0)
                return 1;
        printf("# plugin: %s %s\n", bs->plugin_status, bs->plugin_path);
        printf("%-14s %-10s %6s %6s %12s %14s %10s %10s\n", "kind", "device", "grid", "batch", "seconds",
               "pixels/s", "GB/s", "peak GB/s");
        for (size_t b = 0; b < bs->n; b++) {
                const struct kiln_backend *be = bs->list[b];
                bool cpu = be == kiln_backend_cpu();
                struct kiln_device_info di = { 0 };
                be->device_info(be->ctx, 0, &di);
                for (size_t k = 0; k < 2; k++)
                        for (size_t g = 0; g < sizeof(grids) / sizeof(grids[0]); g++)
                                for (size_t j = 0; j < sizeof(batches) / sizeof(batches[0]); j++) {
                                        double pix = (double)grids[g] * grids[g] * (double)batches[j];
                                        if (pix > (cpu ? cpu_max_pixels : max_pixels))
                                                continue;
                                        size_t bytes = 0;
                                        run_once(be, kinds[k], grids[g], batches[j], &bytes); /* warm-up */
                                        double t = run_once(be, kinds[k], grids[g], batches[j], &bytes);
                                        if (t < 0) {
                                                printf("%-14s %-10s %6d %6zu  failed\n", kinds[k]->name, be->name,
                                                       grids[g], batches[j]);
                                                continue;
                                        }
                                        printf("%-14s %-10s %6d %6zu %12.6f %14.4g %10.3f %10.1f\n",
                                               kinds[k]->name, cpu ? "cpu" : di.name, grids[g], batches[j], t,
                                               pix / t, (double)bytes / t / 1e9, di.memory_bandwidth / 1e9);
                                        fflush(stdout);
                                }
        }
        kiln_backends_free(bs);
        return 0;
}
