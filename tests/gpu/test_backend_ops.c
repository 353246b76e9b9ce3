/* Backend parity (ggml's test-backend-ops): every kind marked `cuda` in
 * gpu/kinds/KINDS, its parity cases run as one batch on every non-CPU backend that
 * has a device in service, each result compared with the kind's run_cpu: every
 * part (every dtype) and every named value, within the kind's rtol/atol.
 *
 *   test_backend_ops [--json FILE] [--kind NAME]
 *                                    the parity test (CTest gpu/test_backend_ops),
 *                                    of every kind or of NAME alone
 *   test_backend_ops --self-test     checks the comparison itself on made-up results
 *   test_backend_ops --check-cases   checks that every parity and benchmark case is a
 *                                    job its kind accepts (cases.c)
 *
 * Prints one line per (kind, device) and the first difference of a failing case.
 * Exit status: 0 when every such backend agreed on every kind, 1 on a difference
 * or an error, 77 (CTest's skip) when no backend but the CPU has a device: without
 * a GPU nothing is compared, so nothing is reported as passed. --json also writes
 * the outcome as JSON (kinds, devices, statuses, largest errors) to FILE. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "compare.h"
#include "jtext.h"
#include "kind_tests.h"
#include "vec_products.h"

/* One (kind, backend) outcome, for the summary and the JSON report. */
struct outcome {
        const char *kind;
        char device[16];
        const char *status;        /* "passed", "failed", "skipped" */
        char message[512];
        size_t cases;
        struct cmp_stats st;
        double rtol, atol;
};

#define MAX_OUTCOMES 64

static struct outcome outcomes[MAX_OUTCOMES];
static size_t n_outcomes;

static struct outcome *new_outcome(const struct kiln_kind *kind, const char *device, const char *status)
{
        struct outcome *o = &outcomes[n_outcomes < MAX_OUTCOMES ? n_outcomes++ : MAX_OUTCOMES - 1];
        memset(o, 0, sizeof(*o));
        o->kind = kind->name;
        snprintf(o->device, sizeof(o->device), "%s", device);
        o->status = status;
        o->rtol = kind->rtol;
        o->atol = kind->atol;
        return o;
}

static void print_outcome(const struct outcome *o)
{
        if (!strcmp(o->status, "passed"))
                printf("%-14s %-10s OK       %zu cases in one batch, %zu values, worst %.3g of tolerance "
                       "(rtol %g, atol %g), largest difference %.3g\n",
                       o->kind, o->device, o->cases, o->st.values, o->st.worst, o->rtol, o->atol, o->st.max_abs);
        else
                printf("%-14s %-10s %-8s %s\n", o->kind, o->device, !strcmp(o->status, "failed") ? "FAILED" : "SKIPPED",
                       o->message);
}

/* A task for case c writing into `result`. */
static struct kiln_task task_for(const struct kiln_case *c, struct kiln_result *result)
{
        return (struct kiln_task){ .params = c->params, .inputs = c->inputs, .n_inputs = c->n_inputs,
                                   .object = c->object, .result = result };
}

/* Runs one kind's parity cases on one backend. Returns 1 when compared and equal, 0
 * when skipped (no device in service), -1 on a difference or an error. */
static int parity(const struct kiln_backend *be, const struct kiln_kind_tests *kt)
{
        const struct kiln_kind *kind = kt->kind;
        struct kiln_cases *cs = NULL;
        int r = kt->parity(&cs);
        if (r < 0) {
                struct outcome *o = new_outcome(kind, be->name, "failed");
                snprintf(o->message, sizeof(o->message), "the kind's cases could not be made: %s", strerror(-r));
                print_outcome(o);
                return -1;
        }
        size_t n = cs->n;
        struct kiln_task *tasks = calloc(n, sizeof(*tasks));
        struct kiln_result *got = calloc(n, sizeof(*got)), *want = calloc(n, sizeof(*want));
        struct outcome *o = NULL;
        int ret = -1;

        if (!tasks || !got || !want) {
                o = new_outcome(kind, be->name, "failed");
                snprintf(o->message, sizeof(o->message), "out of memory");
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                struct kiln_task ref = task_for(&cs->cases[i], &want[i]);
                struct kiln_error err = { "", "" };
                r = kiln_kind_check(kind, cs->cases[i].params, cs->cases[i].inputs, cs->cases[i].n_inputs,
                                    cs->cases[i].object, &err);
                if (r >= 0)
                        r = kind->run_cpu(&ref);
                if (r < 0) {
                        o = new_outcome(kind, "cpu", "failed");
                        snprintf(o->message, sizeof(o->message), "the CPU reference failed on case %zu (%s): %s %s",
                                 i, cs->cases[i].label, strerror(-r), err.message);
                        goto out;
                }
                tasks[i] = task_for(&cs->cases[i], &got[i]);
                if (cs->cases[i].object && be->object_upload) {
                        r = be->object_upload(be->ctx, cs->cases[i].object);
                        if (r < 0 && r != -ENODEV) {
                                o = new_outcome(kind, be->name, "failed");
                                snprintf(o->message, sizeof(o->message), "uploading case %zu's object: %s", i,
                                         strerror(-r));
                                goto out;
                        }
                }
        }
        r = be->run_batch(be->ctx, kind, tasks, n);
        const char *dev = tasks[0].device[0] ? tasks[0].device : be->name;
        if (r == -ENODEV) {
                o = new_outcome(kind, be->name, "skipped");
                snprintf(o->message, sizeof(o->message), "no device in service");
                ret = 0;
                goto out;
        }
        o = new_outcome(kind, dev, "failed");
        o->cases = n;
        if (r < 0) {
                snprintf(o->message, sizeof(o->message), "the batch failed: %s", strerror(-r));
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                if (tasks[i].status < 0) {
                        o->st.bad++;
                        if (!o->message[0])
                                snprintf(o->message, sizeof(o->message), "case %zu (%s) failed: %s", i,
                                         cs->cases[i].label, strerror(-tasks[i].status));
                        continue;
                }
                size_t before = o->st.bad;
                cmp_results(&got[i], &want[i], kind->rtol, kind->atol, &o->st);
                if (o->st.bad > before && !o->message[0]) {
                        char first[sizeof(o->st.first)];
                        memcpy(first, o->st.first, sizeof(first));
                        snprintf(o->message, sizeof(o->message), "case %zu (%s): %s", i, cs->cases[i].label, first);
                }
        }
        if (o->st.bad == 0) {
                o->status = "passed";
                ret = 1;
        } else {
                char tail[64];
                snprintf(tail, sizeof(tail), " [%zu bad values]", o->st.bad);
                strncat(o->message, tail, sizeof(o->message) - strlen(o->message) - 1);
        }
out:
        for (size_t i = 0; i < n; i++) {
                if (cs->cases[i].object && be->object_release)
                        be->object_release(be->ctx, cs->cases[i].object);
                if (got)
                        kiln_result_clear(&got[i]);
                if (want)
                        kiln_result_clear(&want[i]);
        }
        free(tasks);
        free(got);
        free(want);
        kiln_cases_free(cs);
        if (o)
                print_outcome(o);
        return ret;
}

static int write_json(const char *path, const struct kiln_backends *bs, const char *verdict)
{
        struct kiln_jtext j;
        char *text = NULL;

        kiln_jtext_init(&j);
        kiln_jtext_open_object(&j);
        kiln_jtext_key(&j, "plugin");
        kiln_jtext_str(&j, bs->plugin_status);
        kiln_jtext_key(&j, "devices");
        kiln_jtext_open(&j);
        for (size_t b = 0; b < bs->n; b++) {
                const struct kiln_backend *be = bs->list[b];
                for (unsigned d = 0; d < be->n_devices(be->ctx); d++) {
                        struct kiln_device_info di;
                        if (be->device_info(be->ctx, d, &di) < 0)
                                continue;
                        kiln_jtext_open_object(&j);
                        kiln_jtext_key(&j, "name");
                        kiln_jtext_str(&j, di.name);
                        kiln_jtext_key(&j, "model");
                        kiln_jtext_str(&j, di.model);
                        kiln_jtext_key(&j, "in_service");
                        kiln_jtext_bool(&j, di.in_service);
                        kiln_jtext_key(&j, "memory_total");
                        kiln_jtext_int(&j, (int64_t)di.memory_total);
                        kiln_jtext_close(&j);
                }
        }
        kiln_jtext_close(&j);
        kiln_jtext_key(&j, "kinds");
        kiln_jtext_open(&j);
        for (size_t i = 0; i < n_outcomes; i++) {
                const struct outcome *o = &outcomes[i];
                kiln_jtext_open_object(&j);
                kiln_jtext_key(&j, "kind");
                kiln_jtext_str(&j, o->kind);
                kiln_jtext_key(&j, "device");
                kiln_jtext_str(&j, o->device);
                kiln_jtext_key(&j, "status");
                kiln_jtext_str(&j, o->status);
                kiln_jtext_key(&j, "cases");
                kiln_jtext_int(&j, (int64_t)o->cases);
                kiln_jtext_key(&j, "values");
                kiln_jtext_int(&j, (int64_t)o->st.values);
                kiln_jtext_key(&j, "bad_values");
                kiln_jtext_int(&j, (int64_t)o->st.bad);
                kiln_jtext_key(&j, "max_error_of_tolerance");
                kiln_jtext_num(&j, o->st.worst);
                kiln_jtext_key(&j, "max_abs_error");
                kiln_jtext_num(&j, o->st.max_abs);
                kiln_jtext_key(&j, "rtol");
                kiln_jtext_num(&j, o->rtol);
                kiln_jtext_key(&j, "atol");
                kiln_jtext_num(&j, o->atol);
                kiln_jtext_key(&j, "message");
                kiln_jtext_str(&j, o->message);
                kiln_jtext_close(&j);
        }
        kiln_jtext_close(&j);
        vec_products_report(bs->plugin_handle, &j, NULL, NULL);
        kiln_jtext_key(&j, "result");
        kiln_jtext_str(&j, verdict);
        kiln_jtext_close(&j);
        if (kiln_jtext_finish(&j, &text) < 0)
                return -1;
        FILE *f = fopen(path, "w");
        int r = f && fprintf(f, "%s\n", text) > 0 ? 0 : -1;
        if (f && fclose(f) != 0)
                r = -1;
        free(text);
        return r;
}

int self_test(void);   /* selftest.c */
int check_cases(void); /* cases.c */

int main(int argc, char **argv)
{
        const char *json = NULL, *only = NULL;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--self-test"))
                        return self_test();
                if (!strcmp(argv[i], "--check-cases"))
                        return check_cases();
                if (!strcmp(argv[i], "--json") && i + 1 < argc)
                        json = argv[++i];
                else if (!strcmp(argv[i], "--kind") && i + 1 < argc)
                        only = argv[++i];
                else {
                        fprintf(stderr, "usage: test_backend_ops [--json FILE] [--kind NAME] | --self-test | "
                                        "--check-cases\n");
                        return 2;
                }
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
                for (size_t c = 0; kiln_kind_tests[c]; c++) {
                        const struct kiln_kind_tests *kt = kiln_kind_tests[c];
                        if (only && strcmp(only, kt->kind->name))
                                continue;
                        if (!be->supports(be->ctx, kt->kind)) {
                                struct outcome *o = new_outcome(kt->kind, be->name, "failed");
                                snprintf(o->message, sizeof(o->message),
                                         "marked cuda in gpu/kinds/KINDS but not implemented by this backend");
                                print_outcome(o);
                                failed++;
                                continue;
                        }
                        int r = parity(be, kt);
                        compared += r > 0;
                        failed += r < 0;
                }
        }
        if (compared || failed)
                vec_products_report(bs->plugin_handle, NULL, stdout, "");
        const char *verdict = failed ? "failed" : compared ? "passed" : "skipped";
        if (!compared && !failed) {
                for (size_t c = 0; kiln_kind_tests[c]; c++) {
                        struct outcome *o = new_outcome(kiln_kind_tests[c]->kind, "-", "skipped");
                        snprintf(o->message, sizeof(o->message), "no GPU backend has a device in service (%s)",
                                 bs->plugin_status);
                }
                printf("no GPU backend has a device in service: SKIPPED (nothing compared)\n");
        }
        if (json && write_json(json, bs, verdict) < 0) {
                fprintf(stderr, "test_backend_ops: cannot write %s\n", json);
                failed++;
        }
        kiln_backends_free(bs);
        return failed ? 1 : compared ? 0 : 77;
}
