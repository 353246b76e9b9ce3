/* Backend parity (ggml's test-backend-ops): every kind, run as one batch on every
 * available backend device, against the CPU implementation within the kind's
 * tolerance. Prints one summary line per (kind, backend). Exit status: 0 when every
 * non-CPU backend that has a device in service agreed, 1 on a mismatch or error,
 * 77 (CTest's skip) when no such backend exists: without a GPU nothing is compared,
 * so nothing is reported as passed. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cases.h"

#define MAX_CASES 16

struct kind_cases {
        const struct kiln_kind *kind;
        const void *params[MAX_CASES];
        size_t n;
        double rtol, atol;
};

/* Compares two results part by part; returns the number of bad values and writes the
 * largest error relative to the tolerance. */
static size_t compare(const struct kiln_result *got, const struct kiln_result *want, double rtol, double atol,
                      double *ret_worst)
{
        size_t bad = 0;
        if (got->n_parts != want->n_parts || got->n_scalars != want->n_scalars)
                return 1;
        for (int s = 0; s < want->n_scalars; s++)
                if (!(got->scalars[s].value == want->scalars[s].value ||
                      (isnan(got->scalars[s].value) && isnan(want->scalars[s].value))))
                        bad++;
        for (int p = 0; p < want->n_parts; p++) {
                const struct kiln_part *g = &got->parts[p], *w = &want->parts[p];
                if (g->bytes != w->bytes || strcmp(g->name, w->name) || w->dtype != KILN_DTYPE_F32) {
                        bad++;
                        continue;
                }
                const float *a = g->data, *b = w->data;
                for (size_t i = 0; i < w->bytes / sizeof(float); i++) {
                        if (isinf(b[i]) || isinf(a[i])) {
                                bad += a[i] != b[i];
                                continue;
                        }
                        double err = fabs((double)a[i] - b[i]) / (atol + rtol * fabs(b[i]));
                        if (!(err <= 1.0))
                                bad++;
                        if (err > *ret_worst)
                                *ret_worst = err;
                }
        }
        return bad;
}

/* Runs one kind's cases on one backend. Returns 1 when compared and equal, 0 when
 * skipped (no device in service), -1 on a mismatch or error. */
static int parity(const struct kiln_backend *be, const struct kind_cases *kc)
{
        struct kiln_task tasks[MAX_CASES] = { 0 };
        struct kiln_result got[MAX_CASES] = { 0 }, want[MAX_CASES] = { 0 };
        size_t bad = 0;
        double worst = 0;

        for (size_t i = 0; i < kc->n; i++) {
                tasks[i] = (struct kiln_task){ .params = kc->params[i], .result = &got[i] };
                if (kc->kind->run_cpu(kc->params[i], &want[i], NULL) < 0) {
                        printf("%-14s %-10s FAILED  (the CPU reference failed on case %zu)\n", kc->kind->name, "cpu", i);
                        return -1;
                }
        }
        int r = be->run_batch(be->ctx, kc->kind, tasks, kc->n);
        const char *dev = tasks[0].device[0] ? tasks[0].device : be->name;
        if (r == -ENODEV) {
                printf("%-14s %-10s SKIPPED (no device in service)\n", kc->kind->name, be->name);
                return 0;
        }
        if (r < 0) {
                printf("%-14s %-10s FAILED  (batch: %s)\n", kc->kind->name, dev, strerror(-r));
                return -1;
        }
        for (size_t i = 0; i < kc->n; i++) {
                if (tasks[i].status < 0) {
                        printf("%-14s %-10s FAILED  (case %zu: %s)\n", kc->kind->name, dev, i,
                               strerror(-tasks[i].status));
                        bad++;
                        continue;
                }
                bad += compare(&got[i], &want[i], kc->rtol, kc->atol, &worst);
        }
        for (size_t i = 0; i < kc->n; i++) {
                kiln_result_clear(&got[i]);
                kiln_result_clear(&want[i]);
        }
        printf("%-14s %-10s %s  (%zu cases in one batch, worst error %.3g of tolerance, %zu bad values)\n",
               kc->kind->name, dev, bad ? "FAILED " : "OK     ", kc->n, worst, bad);
        return bad ? -1 : 1;
}

/* Kind descriptors without their JSON half (the daemon's live in kiln_kinds, which
 * needs jansson): backends look kinds up by name and call run_cpu. */
static const struct kiln_kind kind_nfw = { .name = "lens.nfw", .run_cpu = lens_nfw_run_cpu };
static const struct kiln_kind kind_ray = { .name = "lens.raytrace", .run_cpu = lens_raytrace_run_cpu };

int main(void)
{
        static struct lens_nfw_params nfw[5];
        static struct lens_raytrace_params ray[5];
        nfw[0] = case_nfw(8, 1e14, LENS_NFW_ALL_MAPS);
        nfw[1] = case_nfw(33, 1e15, LENS_NFW_ALL_MAPS); /* odd: a pixel on the cusp */
        nfw[2] = case_nfw(256, 3e14, LENS_NFW_ALL_MAPS);
        nfw[3] = case_nfw(64, 1e9, LENS_NFW_KAPPA | LENS_NFW_PSI);
        nfw[4] = case_nfw(100, 1e16, LENS_NFW_MU | LENS_NFW_GAMMA2);
        ray[0] = case_ray(16, 1e15, 0, 0.3, 1);
        ray[1] = case_ray(65, 1e15, 1.0, 0.5, 3);
        ray[2] = case_ray(128, 5e14, -2.0, 2.0, 2);
        ray[3] = case_ray(31, 1e13, 0.1, 0.05, 8);
        ray[4] = case_ray(200, 1e15, 0, 0.2, 4);

        struct kind_cases all[2] = {
                { .kind = &kind_nfw, .n = 5, .rtol = 1e-5, .atol = 1e-6 },
                { .kind = &kind_ray, .n = 5, .rtol = 1e-4, .atol = 1e-5 },
        };
        for (size_t i = 0; i < 5; i++) {
                all[0].params[i] = &nfw[i];
                all[1].params[i] = &ray[i];
        }

        struct kiln_backends_config cfg = { .mode = KILN_BACKENDS_AUTO, .devices = "all", .memory_fraction = 0.9 };
        struct kiln_backends *bs;
        if (kiln_backends_open(&cfg, &bs) < 0)
                return 1;
        printf("plugin: %s%s%s\n", bs->plugin_status, bs->plugin_path[0] ? " " : "", bs->plugin_path);

        int compared = 0, failed = 0;
        for (size_t k = 0; k < bs->n; k++) {
                const struct kiln_backend *be = bs->list[k];
                if (be == kiln_backend_cpu())
                        continue; /* the reference itself */
                for (size_t c = 0; c < 2; c++) {
                        if (!be->supports(be->ctx, all[c].kind)) {
                                printf("%-14s %-10s FAILED  (kind not implemented)\n", all[c].kind->name, be->name);
                                failed++;
                                continue;
                        }
                        int r = parity(be, &all[c]);
                        compared += r > 0;
                        failed += r < 0;
                }
        }
        if (!compared && !failed)
                printf("no GPU backend has a device in service: SKIPPED (nothing compared)\n");
        kiln_backends_free(bs);
        return failed ? 1 : compared ? 0 : 77;
}
