/* sched.jobshop on the CPU: every schedule it returns is valid (job orders kept,
 * no two operations on one machine at once, the makespan its latest end), it
 * reaches the optima of small classic instances, stops at a target or the bound,
 * honours the stop flag and the time limit, and reports best, lower_bound and the
 * best schedule's start times (valid, ending at best; the last one the result's). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kind.h"
#include "sched_jobshop/jobshop.h"

static char *read_instance(const char *name, size_t *ret_len)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/%s.txt", JS_TEST_INSTANCES, name);
        FILE *f = fopen(path, "rb");
        if (!f)
                fail_msg("cannot open %s", path);
        char *text = malloc(1 << 16);
        *ret_len = fread(text, 1, 1 << 16, f);
        fclose(f);
        return text;
}

struct run {
        struct kiln_result res;
        struct kiln_exec ex;
        atomic_int stop;
        int reports;
        int64_t last_best, last_lb;
        char *last_starts;      /* a copy: the reported text is lent for the call */
        const char *text;       /* the instance */
        size_t len;
        int status;
};

static int64_t check_starts(const char *json, const char *text, size_t len);

static void on_report(struct kiln_exec *ex, double fraction, const struct kiln_value *v, int n)
{
        struct run *r = ex->opaque;
        assert_int_equal(n, 3);
        assert_string_equal(v[0].name, "best");
        assert_string_equal(v[1].name, "lower_bound");
        assert_string_equal(v[2].name, "starts");
        assert_int_equal(v[2].type, KILN_V_JSON);
        assert_true(fraction >= 0.0 && fraction <= 1.0);
        if (r->reports > 0)
                assert_true(v[0].i <= r->last_best); /* the incumbent never gets worse */
        r->last_best = v[0].i;
        r->last_lb = v[1].i;
        /* Each report's schedule is valid and ends at its best. */
        assert_int_equal(check_starts(v[2].text, r->text, r->len), v[0].i);
        free(r->last_starts);
        r->last_starts = strdup(v[2].text);
        r->reports++;
}

static void run_on(struct run *r, const char *text, size_t len, struct jobshop_params p)
{
        struct kiln_array in;
        uint64_t shape[1] = { len };
        assert_int_equal(kiln_array_init(&in, "instance", KILN_DTYPE_BYTES, 1, shape, text, len, NULL), 0);
        memset(r, 0, sizeof(*r));
        r->text = text;
        r->len = len;
        atomic_init(&r->stop, 0);
        r->ex.stop = &r->stop;
        r->ex.report = on_report;
        r->ex.opaque = r;
        struct kiln_task t = { .params = &p, .inputs = &in, .n_inputs = 1, .result = &r->res, .exec = &r->ex };
        r->status = kiln_kind_sched_jobshop.run_cpu(&t);
}

static void run_clear(struct run *r)
{
        kiln_result_clear(&r->res);
        free(r->last_starts);
        r->last_starts = NULL;
}

static int64_t int_value(const struct kiln_result *res, const char *name)
{
        const struct kiln_value *v = kiln_result_find(res, name);
        if (!v || v->type != KILN_V_INT)
                fail_msg("no integer %s", name);
        return v->i;
}

/* Reads the next integer of a JSON text of nested integer arrays. */
static int next_int(const char **p, int64_t *ret)
{
        while (**p && !(**p == '-' || (**p >= '0' && **p <= '9'))) {
                if (**p == ']')
                        return 0;
                (*p)++;
        }
        char *end;
        *ret = strtoll(*p, &end, 10);
        *p = end;
        return 1;
}

/* Checks start times (JSON, one array per job) against the instance: job orders
 * kept, no two operations on one machine at once. Returns where they end. */
static int64_t check_starts(const char *json, const char *text, size_t len)
{
        struct js_instance *in = NULL;
        struct kiln_error err;
        assert_int_equal(js_instance_parse(text, len, &in, &err), 0);
        int64_t *start = calloc((size_t)in->n_ops, sizeof(*start));
        const char *p = json;
        assert_int_equal(*p, '[');
        p++;
        for (int32_t j = 0; j < in->n_jobs; j++) {
                while (*p == ',' || *p == ' ')
                        p++;
                assert_int_equal(*p, '[');
                p++;
                for (int32_t o = in->job_start[j]; o < in->job_start[j + 1]; o++) {
                        assert_true(next_int(&p, &start[o]));
                        assert_true(start[o] >= 0);
                }
                while (*p == ' ')
                        p++;
                assert_int_equal(*p, ']'); /* exactly one start per operation */
                p++;
        }
        assert_string_equal(p, "]");
        int64_t mk = 0;
        for (int32_t j = 0; j < in->n_jobs; j++)
                for (int32_t o = in->job_start[j]; o < in->job_start[j + 1]; o++) {
                        if (o > in->job_start[j])
                                assert_true(start[o] >= start[o - 1] + in->dur[o - 1]);
                        if (start[o] + in->dur[o] > mk)
                                mk = start[o] + in->dur[o];
                }
        /* No overlap on a machine: pairwise, since instances here are small. */
        for (int32_t a = 0; a < in->n_ops; a++)
                for (int32_t b = a + 1; b < in->n_ops; b++)
                        if (in->mach[a] == in->mach[b] && in->dur[a] > 0 && in->dur[b] > 0)
                                assert_true(start[a] + in->dur[a] <= start[b] || start[b] + in->dur[b] <= start[a]);
        free(start);
        js_instance_free(in);
        return mk;
}

/* Checks the result's schedule against the instance; returns its makespan. */
static int64_t check_schedule(const struct kiln_result *res, const char *text, size_t len)
{
        struct js_instance *in = NULL;
        struct kiln_error err;
        assert_int_equal(js_instance_parse(text, len, &in, &err), 0);
        const struct kiln_value *v = kiln_result_find(res, "starts");
        assert_non_null(v);
        assert_int_equal(v->type, KILN_V_JSON);
        int64_t mk = check_starts(v->text, text, len);
        assert_int_equal(int_value(res, "makespan"), mk);
        int64_t lb = int_value(res, "lower_bound");
        assert_true(lb <= mk);
        assert_int_equal(lb, js_lower_bound(in));
        const struct kiln_value *opt = kiln_result_find(res, "optimal");
        assert_non_null(opt);
        assert_int_equal(opt->b, mk == lb);
        const struct kiln_value *gap = kiln_result_find(res, "gap");
        assert_non_null(gap);
        assert_true(gap->num >= 0.0 && gap->num < 10.0);
        js_instance_free(in);
        return mk;
}

static struct jobshop_params params(int ms, int64_t seed, int64_t target, int walks)
{
        struct jobshop_params p = { .time_limit_ms = ms, .seed = seed, .target = target, .walks = walks };
        return p;
}

static void test_ft06_reaches_55_and_stops_at_the_target(void **state)
{
        size_t len;
        char *text = read_instance("ft06", &len);
        for (int64_t seed = 0; seed < 5; seed++) {
                struct run r;
                run_on(&r, text, len, params(20000, seed, 55, 1));
                assert_int_equal(r.status, 0);
                assert_int_equal(check_schedule(&r.res, text, len), 55);
                assert_true(int_value(&r.res, "ms_to_best") < 20000);
                assert_true(r.reports >= 1);
                assert_int_equal(r.last_best, 55);
                assert_int_equal(r.last_lb, int_value(&r.res, "lower_bound"));
                /* The last report's schedule is the result's, text for text. */
                assert_int_equal(check_starts(r.last_starts, text, len), 55);
                assert_string_equal(r.last_starts, kiln_result_find(&r.res, "starts")->text);
                run_clear(&r);
        }
        free(text);
}

static void test_la02_reaches_its_optimum_which_meets_the_bound(void **state)
{
        size_t len;
        char *text = read_instance("la02", &len);
        struct run r;
        /* la02's bound is its optimum, so the search ends there by itself. */
        run_on(&r, text, len, params(60000, 7, 0, 1));
        assert_int_equal(r.status, 0);
        assert_int_equal(check_schedule(&r.res, text, len), 655);
        assert_true(kiln_result_find(&r.res, "optimal")->b);
        assert_true(int_value(&r.res, "iterations") > 0);
        run_clear(&r);
        free(text);
}

static void test_every_schedule_is_valid_whatever_the_limit(void **state)
{
        static const char *names[] = { "ft06", "ft10", "la16", "ta01" };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                size_t len;
                char *text = read_instance(names[i], &len);
                for (int ms = 1; ms <= 60; ms *= 4) {
                        struct run r;
                        run_on(&r, text, len, params(ms, (int64_t)i * 31 + ms, 0, 1 + ms % 3));
                        assert_int_equal(r.status, 0);
                        check_schedule(&r.res, text, len);
                        run_clear(&r);
                }
                free(text);
        }
}

static void test_odd_instances_get_valid_schedules(void **state)
{
        static const char *texts[] = {
                "1 1\n0 5\n",                                   /* one operation */
                "{\"jobs\": [[[0, 0], [1, 0]], [[1, 0], [0, 0]]]}", /* all zero */
                "{\"jobs\": [[[3, 2]], [], [[3, 2], [0, 1]], [[0, 4], [3, 0]]]}", /* empty job, zero, gaps */
                "3 1\n0 2\n0 3\n0 4\n",                         /* one machine */
                "1 4\n3 1 2 1 1 1 0 1\n",                      /* one job */
        };
        for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
                struct run r;
                run_on(&r, texts[i], strlen(texts[i]), params(200, (int64_t)i, 0, 2));
                assert_int_equal(r.status, 0);
                int64_t mk = check_schedule(&r.res, texts[i], strlen(texts[i]));
                /* Each of these reaches its bound at once. */
                assert_int_equal(mk, int_value(&r.res, "lower_bound"));
                run_clear(&r);
        }
}

static void test_random_instances_with_zero_durations_stay_valid(void **state)
{
        char text[4096];
        uint32_t x = 99;
        for (int round = 0; round < 30; round++) {
                int n = 2 + round % 6, m = 1 + round % 5;
                size_t at = (size_t)snprintf(text, sizeof(text), "%d %d\n", n, m);
                for (int j = 0; j < n; j++) {
                        int order[8];
                        for (int k = 0; k < m; k++)
                                order[k] = k;
                        for (int k = m - 1; k > 0; k--) {
                                x = x * 1103515245u + 12345u;
                                int s = (int)((x >> 16) % (uint32_t)(k + 1)), t = order[k];
                                order[k] = order[s];
                                order[s] = t;
                        }
                        for (int k = 0; k < m; k++) {
                                x = x * 1103515245u + 12345u;
                                at += (size_t)snprintf(text + at, sizeof(text) - at, "%d %u ", order[k],
                                                       (x >> 16) % 4 == 0 ? 0u : (x >> 16) % 20);
                        }
                        text[at++] = '\n';
                }
                text[at] = '\0';
                struct run r;
                run_on(&r, text, at, params(30, round, 0, 1));
                assert_int_equal(r.status, 0);
                check_schedule(&r.res, text, at);
                run_clear(&r);
        }
}

static void test_a_large_instance_starts_in_release_order_and_stays_valid(void **state)
{
        /* 4,000 jobs on two machines: too many for Giffler and Thompson's
         * construction, so the walk starts from the release-order schedule. */
        size_t cap = 1 << 20, at = 0;
        char *text = malloc(cap);
        uint32_t x = 7;
        at += (size_t)snprintf(text, cap, "4000 2\n");
        for (int j = 0; j < 4000; j++) {
                x = x * 1103515245u + 12345u;
                unsigned a = (x >> 16) % 50, b = (x >> 8) % 50, first = (x >> 4) & 1;
                at += (size_t)snprintf(text + at, cap - at, "%u %u %u %u\n", first, a, 1 - first, b);
        }
        struct run r;
        run_on(&r, text, at, params(300, 3, 0, 1));
        assert_int_equal(r.status, 0);
        check_schedule(&r.res, text, at);
        run_clear(&r);
        free(text);
}

static void test_a_batch_runs_its_jobs_side_by_side(void **state)
{
        /* Four jobs of 300 ms each: one after the other they would take 1.2 s. */
        size_t len;
        char *text = read_instance("ta01", &len);
        struct kiln_array in;
        uint64_t shape[1] = { len };
        assert_int_equal(kiln_array_init(&in, "instance", KILN_DTYPE_BYTES, 1, shape, text, len, NULL), 0);
        struct jobshop_params p[4];
        struct kiln_result res[4];
        struct kiln_task tasks[4], *ptr[4];
        atomic_int stop;
        atomic_init(&stop, 0);
        struct kiln_exec ex = { .stop = &stop };
        memset(res, 0, sizeof(res));
        for (int i = 0; i < 4; i++) {
                p[i] = params(300, i, 0, 1);
                tasks[i] = (struct kiln_task){ .params = &p[i], .inputs = &in, .n_inputs = 1, .result = &res[i],
                                               .exec = &ex, .status = -1 };
                ptr[i] = &tasks[i];
        }
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        assert_int_equal(kiln_kind_sched_jobshop.run_cpu_batch(ptr, 4), 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        assert_true(s < 1.1);
        for (int i = 0; i < 4; i++) {
                assert_int_equal(tasks[i].status, 0);
                check_schedule(&res[i], text, len);
                kiln_result_clear(&res[i]);
        }
        free(text);
}

static void test_a_raised_stop_flag_cancels(void **state)
{
        size_t len;
        char *text = read_instance("ta01", &len);
        struct run r;
        struct kiln_array in;
        uint64_t shape[1] = { len };
        struct jobshop_params p = params(600000, 1, 0, 2);
        assert_int_equal(kiln_array_init(&in, "instance", KILN_DTYPE_BYTES, 1, shape, text, len, NULL), 0);
        memset(&r, 0, sizeof(r));
        atomic_init(&r.stop, 1);
        r.ex.stop = &r.stop;
        struct kiln_task t = { .params = &p, .inputs = &in, .n_inputs = 1, .result = &r.res, .exec = &r.ex };
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        assert_int_equal(kiln_kind_sched_jobshop.run_cpu(&t), -ECANCELED);
        clock_gettime(CLOCK_MONOTONIC, &b);
        assert_true(b.tv_sec - a.tv_sec < 5); /* nowhere near the ten minutes asked */
        run_clear(&r);
        free(text);
}

static void test_the_kind_checks_the_instance_at_submission(void **state)
{
        struct kiln_array in;
        struct kiln_error err = { 0 };
        struct jobshop_params p = params(1000, 0, 0, 0);
        const char *bad = "2 2\n0 1 5 1\n0 1 1 1\n";
        uint64_t shape[1] = { strlen(bad) };
        assert_int_equal(kiln_array_init(&in, "instance", KILN_DTYPE_BYTES, 1, shape, bad, strlen(bad), NULL), 0);
        assert_int_equal(kiln_kind_check(&kiln_kind_sched_jobshop, &p, &in, 1, NULL, &err), -EINVAL);
        assert_string_equal(err.field, "params.instance");
        assert_int_equal(kiln_kind_check(&kiln_kind_sched_jobshop, &p, NULL, 0, NULL, &err), -EINVAL);
        assert_string_equal(err.field, "inputs.instance");
        const char *good = "1 1\n0 1\n";
        shape[0] = strlen(good);
        assert_int_equal(kiln_array_init(&in, "instance", KILN_DTYPE_U8, 1, shape, good, strlen(good), NULL), 0);
        assert_int_equal(kiln_kind_check(&kiln_kind_sched_jobshop, &p, &in, 1, NULL, &err), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ft06_reaches_55_and_stops_at_the_target),
                cmocka_unit_test(test_la02_reaches_its_optimum_which_meets_the_bound),
                cmocka_unit_test(test_every_schedule_is_valid_whatever_the_limit),
                cmocka_unit_test(test_odd_instances_get_valid_schedules),
                cmocka_unit_test(test_random_instances_with_zero_durations_stay_valid),
                cmocka_unit_test(test_a_large_instance_starts_in_release_order_and_stays_valid),
                cmocka_unit_test(test_a_batch_runs_its_jobs_side_by_side),
                cmocka_unit_test(test_a_raised_stop_flag_cancels),
                cmocka_unit_test(test_the_kind_checks_the_instance_at_submission),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
