/* sched.jobshop's instance reader and lower bound: both forms of SPEC 1.5 read
 * alike, every refusal names its field, and the bound is what the relaxations
 * say on instances small enough to check by hand. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kind.h"
#include "sched_jobshop/jobshop.h"

static struct js_instance *parse_ok(const char *text)
{
        struct js_instance *in = NULL;
        struct kiln_error err = { 0 };
        int r = js_instance_parse(text, strlen(text), &in, &err);
        if (r < 0)
                fail_msg("%s refused: %s: %s", text, err.field, err.message);
        return in;
}

/* The instance must be refused with exactly this field, and a message that
 * contains `words`. */
static void refused(const char *text, const char *field, const char *words)
{
        struct js_instance *in = NULL;
        struct kiln_error err = { 0 };
        int r = js_instance_parse(text, strlen(text), &in, &err);
        if (r != -EINVAL)
                fail_msg("\"%s\" was not refused (%d)", text, r);
        assert_null(in);
        if (strcmp(err.field, field) != 0)
                fail_msg("\"%s\": field %s, expected %s (%s)", text, err.field, field, err.message);
        if (!strstr(err.message, words))
                fail_msg("\"%s\": message \"%s\" lacks \"%s\"", text, err.message, words);
        struct js_dims d;
        assert_int_equal(js_instance_check(text, strlen(text), &d, &err), -EINVAL);
}

static void test_orlib_text_is_read_job_by_job(void **state)
{
        struct js_instance *in = parse_ok("# a comment\n2 3\n0 5 1 4 2 3\n2 1 0 2 1 7 # tail\n");
        assert_int_equal(in->n_jobs, 2);
        assert_int_equal(in->n_mach, 3);
        assert_int_equal(in->n_ops, 6);
        int32_t mach[] = { 0, 1, 2, 2, 0, 1 }, dur[] = { 5, 4, 3, 1, 2, 7 };
        for (int i = 0; i < 6; i++) {
                assert_int_equal(in->mach[i], mach[i]);
                assert_int_equal(in->dur[i], dur[i]);
        }
        assert_int_equal(in->job_start[0], 0);
        assert_int_equal(in->job_start[1], 3);
        assert_int_equal(in->job_start[2], 6);
        js_instance_free(in);
}

static void test_both_json_forms_read_like_the_text(void **state)
{
        struct js_instance *a = parse_ok(" {\"jobs\": [[[0, 5], [1, 4]], [[1, 2]], []]}");
        assert_int_equal(a->n_jobs, 3);
        assert_int_equal(a->n_mach, 2);
        assert_int_equal(a->n_ops, 3);
        assert_int_equal(a->job_start[1], 2);
        assert_int_equal(a->job_start[2], 3);
        assert_int_equal(a->job_start[3], 3);
        assert_int_equal(a->mach[2], 1);
        assert_int_equal(a->dur[2], 2);
        js_instance_free(a);

        struct js_instance *b = parse_ok("{\"text\": \"2 2\\n0 3 1 4\\n1 1\\t0 9\\n\", \"format\": \"orlib\"}");
        assert_int_equal(b->n_jobs, 2);
        assert_int_equal(b->n_mach, 2);
        assert_int_equal(b->dur[3], 9);
        assert_int_equal(b->mach[2], 1);
        js_instance_free(b);
}

static void test_zero_durations_and_unused_machines_are_allowed(void **state)
{
        struct js_instance *in = parse_ok("{\"jobs\": [[[4, 0], [0, 1000000]]]}");
        assert_int_equal(in->n_mach, 5);
        assert_int_equal(js_lower_bound(in), 1000000);
        js_instance_free(in);
}

static void test_every_bad_instance_names_its_field(void **state)
{
        /* A machine twice in a job. */
        refused("2 2\n0 1 0 2\n1 1 0 1\n", "params.instance", "twice");
        refused("{\"jobs\": [[[0, 1], [1, 1]], [[1, 1], [1, 3]]]}", "params.instance.jobs[1][1][0]",
                "second time");
        /* A machine out of range. */
        refused("2 2\n0 1 2 1\n0 1 1 1\n", "params.instance", "machines are 0..1");
        refused("{\"jobs\": [[[-1, 1]]]}", "params.instance.jobs[0][0][0]", "machine -1");
        refused("{\"jobs\": [[[10000, 1]]]}", "params.instance.jobs[0][0][0]", "machine 10000");
        /* Negative and too long durations. */
        refused("1 2\n0 -3 1 1\n", "params.instance", "duration -3");
        refused("{\"jobs\": [[[0, 5], [1, -1]]]}", "params.instance.jobs[0][1][1]", "duration -1");
        refused("{\"jobs\": [[[0, 1000001]]]}", "params.instance.jobs[0][0][1]", "0..1000000");
        /* Numbers longer than the reader keeps are said to be so, not cut short. */
        refused("{\"jobs\": [[[9223372036854775807, 1]]]}", "params.instance.jobs[0][0][0]", "machine past 10^12");
        refused("1 1\n0 99999999999999999999\n", "params.instance", "duration past 10^12");
        refused("{\"jobs\": [[[0, -99999999999999]]]}", "params.instance.jobs[0][0][1]", "duration below -10^12");
        /* Malformed OR-Library text. */
        refused("", "params.instance", "ends");
        refused("2 2\n0 1 1 1\n0 1\n", "params.instance", "ends");
        refused("1 2\n0 1 1 x\n", "params.instance", "malformed");
        refused("1 2\n0 1.5 1 1\n", "params.instance", "malformed");
        refused("1 1\n0 1\n0 1\n", "params.instance", "unexpected text");
        refused("0 3\n", "params.instance", "at least 1");
        refused("{\"format\": \"orlib\", \"text\": \"1 2\\n0 1 1\"}", "params.instance.text", "ends");
        refused("{\"format\": \"orlib\", \"text\": \"1 1\\n0 \\u00e91\"}", "params.instance.text", "character");
        /* More than 10,000 operations, in both forms. */
        refused("101 100\n", "params.instance", "more than 10000 operations");
        refused("99999999999 99999999999\n", "params.instance", "more than 10000 operations");
        /* The JSON object itself. */
        refused("{\"jobs\": [[[0, 1]]], \"text\": \"1 1\\n0 1\"}", "params.instance", "either jobs or");
        refused("{\"format\": \"csv\", \"text\": \"1 1\\n0 1\"}", "params.instance.format", "\"orlib\"");
        refused("{\"format\": \"orlib\"}", "params.instance.text", "required");
        refused("{\"text\": \"1 1\\n0 1\"}", "params.instance.format", "required");
        refused("{\"jobs\": [[[0, 1]]], \"colour\": 1}", "params.instance", "instance.colour is not a field");
        refused("{\"jobs\": [[[0, 1]]], \"jobs\": []}", "params.instance", "twice");
        refused("{\"jobs\": [[[0, 1.5]]]}", "params.instance.jobs[0][0][1]", "an integer");
        refused("{\"jobs\": [[0, 1]]}", "params.instance.jobs[0][0]", "a pair");
        refused("{\"jobs\": {}}", "params.instance.jobs", "an array of jobs");
        refused("{\"jobs\": [[]]}", "params.instance.jobs", "no operation");
        refused("{\"jobs\": [[[0, 1]]]", "params.instance", "well-formed");
        refused("{\"jobs\": [[[0, 1]]]} x", "params.instance", "well-formed");
}

static void test_ten_thousand_operations_are_the_limit(void **state)
{
        /* 100 jobs of 100 machines: exactly the limit, read; one more job is not. */
        size_t cap = 8u << 20;
        char *text = malloc(cap);
        assert_non_null(text);
        for (int jobs = 100; jobs <= 101; jobs++) {
                size_t at = (size_t)snprintf(text, cap, "%d 100\n", jobs);
                for (int j = 0; j < jobs; j++) {
                        for (int k = 0; k < 100; k++)
                                at += (size_t)snprintf(text + at, cap - at, "%d %d ", (k + j) % 100, 1 + (j * k) % 97);
                        text[at++] = '\n';
                }
                text[at] = '\0';
                struct js_instance *in = NULL;
                struct kiln_error err;
                int r = js_instance_parse(text, at, &in, &err);
                if (jobs == 100) {
                        assert_int_equal(r, 0);
                        assert_int_equal(in->n_ops, 10000);
                        js_instance_free(in);
                } else {
                        assert_int_equal(r, -EINVAL);
                        assert_string_equal(err.field, "params.instance");
                }
        }
        free(text);
}

static void test_garbage_bytes_are_refused_not_crashed_on(void **state)
{
        unsigned char buf[64];
        uint32_t x = 12345;
        for (int round = 0; round < 20000; round++) {
                size_t n = (size_t)(round % 64);
                for (size_t i = 0; i < n; i++) {
                        x = x * 1103515245u + 12345u;
                        /* Mostly the characters instances are made of. */
                        const char *alphabet = "0123456789 \n-{}[],:\"\\tjobsformatextorlib#u";
                        buf[i] = (x >> 24) % 8 == 0 ? (unsigned char)(x >> 16) : (unsigned char)alphabet[(x >> 16) % 43];
                }
                struct js_instance *in = NULL;
                struct kiln_error err = { 0 };
                int r = js_instance_parse(buf, n, &in, &err);
                if (r == 0) {
                        assert_true(in->n_ops >= 1 && in->n_ops <= 10000);
                        js_instance_free(in);
                } else {
                        assert_int_equal(r, -EINVAL);
                        assert_true(strncmp(err.field, "params.instance", 15) == 0);
                }
        }
}

static void test_the_bound_is_the_longest_job_or_a_machine(void **state)
{
        /* Job 0 alone takes 9. */
        struct js_instance *a = parse_ok("2 2\n0 4 1 5\n1 1 0 1\n");
        assert_int_equal(js_lower_bound(a), 9);
        js_instance_free(a);
        /* Machine 0 carries 3 x 4 = 12 with no heads or tails. */
        struct js_instance *b = parse_ok("3 2\n0 4 1 1\n0 4 1 1\n0 4 1 1\n");
        assert_int_equal(js_lower_bound(b), 13); /* 12 on machine 0, then the last tail of 1 */
        js_instance_free(b);
        /* Heads and tails count: machine 1 holds two operations of 3, each behind a
         * head of 5 and before a tail of 5; preemption cannot beat 5 + 6 + 5. */
        struct js_instance *c = parse_ok("2 3\n0 5 1 3 2 5\n2 5 1 3 0 5\n");
        assert_int_equal(js_lower_bound(c), 16);
        js_instance_free(c);
}

static void test_the_bound_of_the_classic_instances_is_below_their_optima(void **state)
{
        static const struct { const char *name; int64_t opt; } cases[] = {
                { "ft06", 55 }, { "ft10", 930 }, { "la02", 655 }, { "la16", 945 }, { "ta01", 1231 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char path[512];
                snprintf(path, sizeof(path), "%s/%s.txt", JS_TEST_INSTANCES, cases[i].name);
                FILE *f = fopen(path, "rb");
                assert_non_null(f);
                static char text[1 << 16];
                size_t n = fread(text, 1, sizeof(text), f);
                fclose(f);
                struct js_instance *in = NULL;
                struct kiln_error err;
                assert_int_equal(js_instance_parse(text, n, &in, &err), 0);
                int64_t lb = js_lower_bound(in), longest = 0;
                for (int32_t j = 0; j < in->n_jobs; j++) {
                        int64_t s = 0;
                        for (int32_t o = in->job_start[j]; o < in->job_start[j + 1]; o++)
                                s += in->dur[o];
                        longest = s > longest ? s : longest;
                }
                assert_true(lb >= longest);
                assert_true(lb <= cases[i].opt);
                js_instance_free(in);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_orlib_text_is_read_job_by_job),
                cmocka_unit_test(test_both_json_forms_read_like_the_text),
                cmocka_unit_test(test_zero_durations_and_unused_machines_are_allowed),
                cmocka_unit_test(test_every_bad_instance_names_its_field),
                cmocka_unit_test(test_ten_thousand_operations_are_the_limit),
                cmocka_unit_test(test_garbage_bytes_are_refused_not_crashed_on),
                cmocka_unit_test(test_the_bound_is_the_longest_job_or_a_machine),
                cmocka_unit_test(test_the_bound_of_the_classic_instances_is_below_their_optima),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
