/* Kernel benchmark: the throughput of every kind marked `cuda` in gpu/kinds/KINDS on
 * every available backend device, across job sizes and batch sizes (not a CTest
 * test; see README.md).
 *
 *   bench_kernels [--max-work N] [--cpu-max-work N] [--budget SECONDS] [--kind NAME]
 *                 [--first NAME,NAME...] [--json FILE]
 *
 * For each (kind, backend, size step, batch) it runs one batch through the backend's
 * run_batch (host preparation, copies and the kernel: what a daemon batch costs)
 * after a warm-up run and prints the work items per second (pixels, rows: the kind's
 * unit) and the output bytes written per second (GB/s), with the device's peak
 * memory bandwidth alongside when the backend knows it; for a kind whose cases give
 * their arithmetic and least reads (vec.search), also GFLOP/s and read GB/s.
 * Batches above --max-work work items (default 2^28) are left out, and on the CPU
 * above --cpu-max-work (default 2^22), so a CPU-only run finishes in minutes.
 * --budget stops starting new measurements after that many seconds (the JSON then
 * says "truncated"); --first names the kinds to time before the others (KINDS
 * order), so that a budget cuts the others; --kind times that kind alone. A run
 * that fails is printed with its reason and listed in the JSON's "failures"; the
 * exit status is then 1. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "jtext.h"
#include "kind_tests.h"
#include "vec_products.h"

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Runs the cases as one batch; returns seconds, or < 0 on failure with the reason
 * (the batch's error, or the first failed job's status and error) in why. */
static double run_once(const struct kiln_backend *be, const struct kiln_kind *kind, const struct kiln_cases *cs,
                       size_t *ret_bytes, char *why, size_t why_cap)
{
        struct kiln_task *tasks = calloc(cs->n, sizeof(*tasks));
        struct kiln_result *res = calloc(cs->n, sizeof(*res));
        double t = -1;

        if (tasks && res) {
                for (size_t i = 0; i < cs->n; i++) {
                        const struct kiln_case *c = &cs->cases[i];
                        tasks[i] = (struct kiln_task){ .params = c->params, .inputs = c->inputs,
                                                       .n_inputs = c->n_inputs, .object = c->object,
                                                       .result = &res[i] };
                }
                double t0 = now_s();
                int r = be->run_batch(be->ctx, kind, tasks, cs->n);
                t = now_s() - t0;
                *ret_bytes = 0;
                if (r < 0)
                        snprintf(why, why_cap, "the batch: %s", strerror(-r));
                for (size_t i = 0; i < cs->n; i++) {
                        if (tasks[i].status < 0 && r >= 0) {
                                r = tasks[i].status;
                                snprintf(why, why_cap, "job %zu: %s%s%s%s%s", i, strerror(-r),
                                         tasks[i].error.field[0] ? ": " : "", tasks[i].error.field,
                                         tasks[i].error.message[0] ? ": " : "", tasks[i].error.message);
                        }
                        *ret_bytes += kiln_result_bytes(&res[i]);
                        kiln_result_clear(&res[i]);
                }
                if (r < 0)
                        t = -1;
        } else {
                snprintf(why, why_cap, "out of memory");
        }
        free(tasks);
        free(res);
        return t;
}

static void json_row(struct kiln_jtext *j, const char *kind, const char *device, const char *label, size_t batch,
                     double seconds, double work, const char *unit, double bytes, double peak,
                     const struct kiln_cases *cs)
{
        kiln_jtext_open_object(j);
        kiln_jtext_key(j, "kind");
        kiln_jtext_str(j, kind);
        kiln_jtext_key(j, "device");
        kiln_jtext_str(j, device);
        kiln_jtext_key(j, "case");
        kiln_jtext_str(j, label);
        kiln_jtext_key(j, "batch");
        kiln_jtext_int(j, (int64_t)batch);
        kiln_jtext_key(j, "seconds");
        kiln_jtext_num(j, seconds);
        kiln_jtext_key(j, "work");
        kiln_jtext_num(j, work);
        kiln_jtext_key(j, "work_unit");
        kiln_jtext_str(j, unit);
        kiln_jtext_key(j, "work_per_s");
        kiln_jtext_num(j, seconds > 0 ? work / seconds : NAN);
        kiln_jtext_key(j, "out_gb_per_s");
        kiln_jtext_num(j, seconds > 0 ? bytes / seconds / 1e9 : NAN);
        kiln_jtext_key(j, "peak_gb_per_s");
        kiln_jtext_num(j, peak / 1e9);
        /* null where the kind gives no figure (JSON has no NaN: jtext writes null) */
        kiln_jtext_key(j, "flop_per_s");
        kiln_jtext_num(j, cs->flop > 0 && seconds > 0 ? cs->flop / seconds : NAN);
        kiln_jtext_key(j, "read_gb_per_s");
        kiln_jtext_num(j, cs->read_bytes > 0 && seconds > 0 ? cs->read_bytes / seconds / 1e9 : NAN);
        kiln_jtext_close(j);
}

#define MAX_FAILS 64
#define MAX_KINDS 32

/* The kinds' tests in the order to time them: those named in `first` (a comma
 * list), then the rest, each in KINDS order. -1 when a name is unknown or twice. */
static int order_kinds(const char *first, const struct kiln_kind_tests **order)
{
        size_t n = 0, total = 0;
        bool taken[MAX_KINDS] = { false };

        while (kiln_kind_tests[total] && total < MAX_KINDS)
                total++;
        for (const char *p = first; *p;) {
                size_t len = strcspn(p, ",");
                size_t k = 0;
                while (k < total && (strlen(kiln_kind_tests[k]->kind->name) != len ||
                                     strncmp(kiln_kind_tests[k]->kind->name, p, len)))
                        k++;
                if (len == 0 || k == total || taken[k])
                        return -1;
                taken[k] = true;
                order[n++] = kiln_kind_tests[k];
                p += len + (p[len] == ',');
        }
        for (size_t k = 0; k < total; k++)
                if (!taken[k])
                        order[n++] = kiln_kind_tests[k];
        order[n] = NULL;
        return 0;
}

struct failure {
        const char *kind;
        char device[32];
        char label[64];
        size_t batch;
        char why[512];
};

/* A run that failed: printed, and kept (the first MAX_FAILS) for the JSON. */
static void note_failure(struct failure *fails, size_t *n_fails, const char *kind, const char *device,
                         const char *label, size_t batch, const char *why)
{
        printf("%-14s %-10s %-44.44s %6zu  failed: %s\n", kind, device, label, batch, why);
        if (*n_fails == MAX_FAILS)
                return;
        struct failure *f = &fails[(*n_fails)++];
        f->kind = kind;
        f->batch = batch;
        snprintf(f->device, sizeof(f->device), "%s", device);
        snprintf(f->label, sizeof(f->label), "%s", label);
        snprintf(f->why, sizeof(f->why), "%s", why);
}

int main(int argc, char **argv)
{
        double max_work = 268435456.0, cpu_max_work = 4194304.0, budget = 0;
        const char *json = NULL, *only = NULL, *first = "";

        for (int i = 1; i + 1 < argc; i += 2) {
                if (!strcmp(argv[i], "--max-work") || !strcmp(argv[i], "--max-pixels"))
                        max_work = atof(argv[i + 1]);
                else if (!strcmp(argv[i], "--cpu-max-work") || !strcmp(argv[i], "--cpu-max-pixels"))
                        cpu_max_work = atof(argv[i + 1]);
                else if (!strcmp(argv[i], "--budget"))
                        budget = atof(argv[i + 1]);
                else if (!strcmp(argv[i], "--json"))
                        json = argv[i + 1];
                else if (!strcmp(argv[i], "--kind"))
                        only = argv[i + 1];
                else if (!strcmp(argv[i], "--first"))
                        first = argv[i + 1];
                else {
                        fprintf(stderr, "bench_kernels: unknown option %s\n", argv[i]);
                        return 2;
                }
        }
        static const size_t batches[] = { 1, 4, 16, 64, 256, 1024 };
        double start = now_s();
        bool truncated = false;
        int failures = 0;
        /* The runs that failed (the first MAX_FAILS), for the JSON's "failures". */
        static struct failure fails[MAX_FAILS];
        size_t n_fails = 0;

        const struct kiln_kind_tests *order[MAX_KINDS + 1] = { NULL };
        if (order_kinds(first, order) < 0) {
                fprintf(stderr, "bench_kernels: --first %s: a kind is unknown or named twice\n", first);
                return 2;
        }
        struct kiln_backends_config cfg = { .mode = KILN_BACKENDS_AUTO, .devices = "all", .memory_fraction = 0.9 };
        struct kiln_backends *bs;
        if (kiln_backends_open(&cfg, &bs) < 0)
                return 1;
        struct kiln_jtext j;
        kiln_jtext_init(&j);
        kiln_jtext_open_object(&j);
        kiln_jtext_key(&j, "plugin");
        kiln_jtext_str(&j, bs->plugin_status);
        kiln_jtext_key(&j, "rows");
        kiln_jtext_open(&j);
        printf("# plugin: %s %s\n", bs->plugin_status, bs->plugin_path);
        printf("%-14s %-10s %-44s %6s %12s %14s %10s %10s %10s %10s\n", "kind", "device", "case", "batch", "seconds",
               "work/s", "GB/s", "peak GB/s", "GFLOP/s", "read GB/s");
        for (size_t b = 0; b < bs->n && !truncated; b++) {
                const struct kiln_backend *be = bs->list[b];
                bool cpu = be == kiln_backend_cpu();
                struct kiln_device_info di = { 0 };
                be->device_info(be->ctx, 0, &di);
                for (size_t k = 0; order[k] && !truncated; k++) {
                        const struct kiln_kind_tests *kt = order[k];
                        if ((only && strcmp(only, kt->kind->name)) || !be->supports(be->ctx, kt->kind))
                                continue;
                        for (unsigned size = 0; !truncated; size++) {
                                bool any = false, too_big = false;
                                for (size_t bi = 0; bi < sizeof(batches) / sizeof(batches[0]); bi++) {
                                        if (budget > 0 && now_s() - start > budget) {
                                                truncated = true;
                                                break;
                                        }
                                        struct kiln_cases *cs = NULL;
                                        int r = kt->bench(size, batches[bi], &cs);
                                        if (r == -ERANGE) {
                                                too_big = true;
                                                break;
                                        }
                                        if (r < 0) {
                                                char label[64], why[128];
                                                snprintf(label, sizeof(label), "size step %u", size);
                                                snprintf(why, sizeof(why), "the cases could not be made: %s",
                                                         strerror(-r));
                                                note_failure(fails, &n_fails, kt->kind->name, cpu ? "cpu" : di.name,
                                                             label, batches[bi], why);
                                                failures++;
                                                break;
                                        }
                                        double work = 0;
                                        for (size_t i = 0; i < cs->n; i++)
                                                work += (double)cs->cases[i].work;
                                        /* The CPU rows are a baseline only: none past 1e11
                                         * flop (vec.search's 256 queries at 1M x 768). */
                                        if (work > (cpu ? cpu_max_work : max_work) || (cpu && cs->flop > 1e11)) {
                                                kiln_cases_free(cs);
                                                break; /* larger batches are larger still */
                                        }
                                        any = true;
                                        size_t bytes = 0;
                                        char why[512] = "";
                                        double t = run_once(be, kt->kind, cs, &bytes, why, sizeof(why)); /* warm-up */
                                        if (t >= 0)
                                                t = run_once(be, kt->kind, cs, &bytes, why, sizeof(why));
                                        const char *dev = cpu ? "cpu" : di.name;
                                        if (t < 0) {
                                                note_failure(fails, &n_fails, kt->kind->name, dev,
                                                             cs->cases[0].label, cs->n, why);
                                                failures++;
                                        } else {
                                                printf("%-14s %-10s %-44.44s %6zu %12.6f %14.4g %10.3f %10.1f",
                                                       kt->kind->name, dev, cs->cases[0].label, cs->n, t, work / t,
                                                       (double)bytes / t / 1e9, di.memory_bandwidth / 1e9);
                                                if (cs->flop > 0)
                                                        printf(" %10.4g", cs->flop / t / 1e9);
                                                if (cs->read_bytes > 0)
                                                        printf(" %10.2f", cs->read_bytes / t / 1e9);
                                                printf("\n");
                                                json_row(&j, kt->kind->name, dev, cs->cases[0].label, cs->n, t, work,
                                                         kt->work_unit, (double)bytes, di.memory_bandwidth, cs);
                                        }
                                        fflush(stdout);
                                        kiln_cases_free(cs);
                                }
                                if (too_big || !any)
                                        break;
                        }
                }
        }
        kiln_jtext_close(&j);
        kiln_jtext_key(&j, "failures");
        kiln_jtext_open(&j);
        for (size_t i = 0; i < n_fails; i++) {
                kiln_jtext_open_object(&j);
                kiln_jtext_key(&j, "kind");
                kiln_jtext_str(&j, fails[i].kind);
                kiln_jtext_key(&j, "device");
                kiln_jtext_str(&j, fails[i].device);
                kiln_jtext_key(&j, "case");
                kiln_jtext_str(&j, fails[i].label);
                kiln_jtext_key(&j, "batch");
                kiln_jtext_int(&j, (int64_t)fails[i].batch);
                kiln_jtext_key(&j, "why");
                kiln_jtext_str(&j, fails[i].why);
                kiln_jtext_close(&j);
        }
        kiln_jtext_close(&j);
        kiln_jtext_key(&j, "truncated");
        kiln_jtext_bool(&j, truncated);
        kiln_jtext_key(&j, "seconds");
        kiln_jtext_num(&j, now_s() - start);
        vec_products_report(bs->plugin_handle, &j, NULL, NULL);
        kiln_jtext_close(&j);
        if (truncated)
                printf("# stopped after the budget of %g s\n", budget);
        vec_products_report(bs->plugin_handle, NULL, stdout, "# ");
        char *text = NULL;
        if (json && kiln_jtext_finish(&j, &text) >= 0) {
                FILE *f = fopen(json, "w");
                bool ok = f && fprintf(f, "%s\n", text) >= 0;
                if (f && fclose(f) != 0)
                        ok = false;
                if (!ok) {
                        fprintf(stderr, "bench_kernels: cannot write %s: %s\n", json, strerror(errno));
                        failures++;
                }
        } else if (json) {
                fprintf(stderr, "bench_kernels: out of memory writing the JSON\n");
                failures++;
        }
        free(text);
        kiln_jtext_free(&j);
        kiln_backends_free(bs);
        return failures ? 1 : 0;
}
