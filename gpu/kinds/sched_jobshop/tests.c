/* sched.jobshop's parity and benchmark cases (see kind_tests.h).
 *
 * A search is compared value by value, so a parity case must end the same way on
 * every backend: one walk (walk 0 takes the job's seed on every backend and walks
 * the same way, search.h), stopped by reaching its bound or target within a few
 * moves, so that even ms_to_best is 0 on both. The cases reach every branch of
 * the reader (OR-Library text with comments, both JSON forms, zero durations,
 * empty jobs) and of the search (no move at all, a target, the bound).
 *
 * The benchmark runs Taillard-style random instances (his generator) for 50 ms
 * each; each job counts as 65536 work units so that a CPU run keeps to batches of
 * 64. The moves a search judged are its `moves` value
 * (tests/bench/jobshop/bench.py turns them into moves per second). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "jobshop.h"
#include "kind_tests.h"

#define BENCH_WORK 65536
#define TEXT_MAX 24576

struct slot {
        struct jobshop_params p;
        struct kiln_array in;
        char text[TEXT_MAX];
};

static void put(struct kiln_case *c, struct slot *s, const char *label, struct jobshop_params p, uint64_t work)
{
        uint64_t shape[1] = { strlen(s->text) };
        snprintf(c->label, sizeof(c->label), "%s", label);
        s->p = p;
        kiln_array_init(&s->in, "instance", KILN_DTYPE_BYTES, 1, shape, s->text, shape[0], NULL);
        c->params = &s->p;
        c->inputs = &s->in;
        c->n_inputs = 1;
        c->work = work;
}

static struct jobshop_params params(int ms, int64_t seed, int64_t target, int walks)
{
        struct jobshop_params p = { .time_limit_ms = ms, .seed = seed, .target = target, .walks = walks };
        return p;
}

static const char ft06[] = "# Fisher and Thompson 6 x 6, optimum 55\n6 6\n"
                           "2 1 0 3 1 6 3 7 5 3 4 6\n1 8 2 5 4 10 5 10 0 10 3 4\n2 5 3 4 5 8 0 9 1 1 4 7\n"
                           "1 5 0 5 2 5 3 3 4 8 5 9\n2 9 1 3 4 5 5 4 0 3 3 1\n1 3 3 3 5 9 0 10 4 4 2 1\n";

static int parity(struct kiln_cases **ret)
{
        static const struct {
                const char *label, *text;
                int64_t target;
        } cases[] = {
                { "ft06, target 60", ft06, 60 },
                { "ft06, target 58", ft06, 58 },
                { "one machine: any order is optimal", "3 1\n0 4\n0 2\n0 7\n", 0 },
                { "one job", "1 3\n2 5 0 1 1 2\n", 0 },
                { "JSON jobs, zero durations, an empty job",
                  "{\"jobs\": [[[1, 3], [0, 0]], [], [[0, 2], [1, 0]], [[1, 0]]]}", 0 },
                { "JSON orlib text", "{\"format\": \"orlib\", \"text\": \"2 2\\n0 3 1 2\\n0 1 1 4\\n\"}", 0 },
        };
        size_t n = sizeof(cases) / sizeof(cases[0]);
        struct kiln_cases *cs = kiln_cases_new(n, n * sizeof(struct slot));
        if (!cs)
                return -ENOMEM;
        struct slot *s = cs->storage;
        for (size_t i = 0; i < n; i++) {
                snprintf(s[i].text, sizeof(s[i].text), "%s", cases[i].text);
                put(&cs->cases[i], &s[i], cases[i].label, params(10000, (int64_t)i, cases[i].target, 1), 1);
        }
        *ret = cs;
        return 0;
}

/* Taillard's generator (1993): durations 1..99 and random routes from two seeds. */
static int32_t unif(int32_t *seed, int32_t low, int32_t high)
{
        const int32_t m = 2147483647, a = 16807, b = 127773, c = 2836;
        int32_t k = *seed / b;
        *seed = a * (*seed % b) - k * c;
        if (*seed < 0)
                *seed += m;
        return low + (int32_t)((double)*seed / m * (high - low + 1));
}

static void taillard(char *buf, size_t size, int n, int m, int32_t time_seed, int32_t machine_seed)
{
        int32_t d[100][20], route[100][20];
        for (int j = 0; j < n; j++)
                for (int k = 0; k < m; k++)
                        d[j][k] = unif(&time_seed, 1, 99);
        for (int j = 0; j < n; j++) {
                for (int k = 0; k < m; k++)
                        route[j][k] = k;
                for (int k = 0; k < m; k++) {
                        int32_t s = unif(&machine_seed, k, m - 1), t = route[j][k];
                        route[j][k] = route[j][s];
                        route[j][s] = t;
                }
        }
        size_t at = (size_t)snprintf(buf, size, "%d %d\n", n, m);
        for (int j = 0; j < n && at < size; j++) {
                for (int k = 0; k < m && at < size; k++)
                        at += (size_t)snprintf(buf + at, size - at, "%d %d ", route[j][k], d[j][k]);
                if (at < size)
                        buf[at++] = '\n';
        }
        buf[at < size ? at : size - 1] = '\0';
}

static int bench(unsigned size, size_t n, struct kiln_cases **ret)
{
        static const int shapes[][2] = { { 10, 10 }, { 15, 15 }, { 20, 20 }, { 50, 20 }, { 100, 20 } };
        if (size >= sizeof(shapes) / sizeof(shapes[0]))
                return -ERANGE;
        struct kiln_cases *cs = kiln_cases_new(n, n * sizeof(struct slot));
        if (!cs)
                return -ENOMEM;
        struct slot *s = cs->storage;
        int jobs = shapes[size][0], machines = shapes[size][1];
        for (size_t i = 0; i < n; i++) {
                char label[64];
                taillard(s[i].text, sizeof(s[i].text), jobs, machines, 840612802 + (int32_t)(i % 997),
                         398197754 + (int32_t)size);
                snprintf(label, sizeof(label), "%dx%d random, 50 ms", jobs, machines);
                put(&cs->cases[i], &s[i], label, params(50, (int64_t)i, 0, 0), BENCH_WORK);
        }
        *ret = cs;
        return 0;
}

const struct kiln_kind_tests kiln_kind_tests_sched_jobshop = {
        .kind = &kiln_kind_sched_jobshop,
        .parity = parity,
        .bench = bench,
        .work_unit = "jobs/65536",
};
