/* vec.search's parity and benchmark cases (see kind_tests.h): collections built
 * as the daemon builds them (compiled from items in id order, cosine rows
 * normalised as a put normalises them) and queries as jobs send them. The parity
 * test wants every backend's ids and scores equal to the CPU's, bit for bit. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kind_tests.h"
#include "vec_search/vec_search.h"

#define MAX_COLLECTIONS 12

/* What a case set points into. */
struct store {
        size_t n;
        struct vec_search_params *params;
        struct kiln_array *inputs;
        float **queries;
        struct kiln_object objects[MAX_COLLECTIONS];
        struct vec_collection *colls[MAX_COLLECTIONS];
        size_t n_colls;
};

static uint64_t next_u64(uint64_t *s)
{
        uint64_t x = *s;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [-1, 1): cheap enough for a billion values. */
static float uniform(uint64_t *s)
{
        return (float)((double)(next_u64(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

struct items {
        const float *rows;
        uint32_t dim;
        size_t n;
};

/* Ids "r0000000", "r0000001"...: byte order is row order. */
static int items_foreach(void *ctx, kiln_object_item_cb cb, void *userdata)
{
        const struct items *it = ctx;
        char id[24];

        for (size_t i = 0; i < it->n; i++) {
                int len = snprintf(id, sizeof(id), "r%07zu", i);
                int r = cb((const uint8_t *)id, (size_t)len, (const uint8_t *)(it->rows + i * it->dim),
                           it->dim * sizeof(float), userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Adds a collection of n rows (`base` distinct vectors repeated when base > 0, to
 * make ties; every `zero`-th row zero when zero > 0) to the store. */
static int add_collection(struct store *st, enum kiln_metric metric, size_t n, uint32_t dim, size_t base,
                          size_t zero, uint64_t seed, uint64_t version)
{
        float *rows = malloc((n ? n : 1) * dim * sizeof(float));
        uint8_t meta[KILN_VEC_META_BYTES];
        struct items it = { rows, dim, n };
        struct kiln_object_source src = { .meta = meta, .meta_len = sizeof(meta), .count = n,
                                          .foreach_items = items_foreach, .ctx = &it };
        struct vec_collection *c = NULL;
        int r;

        if (!rows || st->n_colls == MAX_COLLECTIONS) {
                free(rows);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                uint64_t s = seed + (base ? (i * 2654435761u) % base : i) * 0x9E3779B97F4A7C15ull;
                for (uint32_t j = 0; j < dim; j++)
                        rows[i * dim + j] = zero && i % zero == 0 && metric != KILN_METRIC_COSINE ? 0.0f : uniform(&s);
                vec_row_prepare(metric, rows + i * dim, dim);
        }
        kiln_vec_meta_encode(metric, dim, meta);
        r = vec_collection_compile(&src, &c, NULL);
        free(rows);
        if (r < 0)
                return r;
        st->colls[st->n_colls] = c;
        st->objects[st->n_colls] = (struct kiln_object){ .cls = &vec_collection_class, .version = version,
                                                         .snapshot = c };
        return (int)st->n_colls++;
}

static void release(struct kiln_cases *cs)
{
        struct store *st = cs->storage;

        for (size_t i = 0; st->queries && i < st->n; i++)
                free(st->queries[i]);
        for (size_t i = 0; i < st->n_colls; i++)
                vec_collection_free(st->colls[i]);
        free(st->params);
        free(st->inputs);
        free(st->queries);
        free(st);
}

static struct kiln_cases *cases_new(size_t n)
{
        struct kiln_cases *cs = kiln_cases_new(n, sizeof(struct store));
        struct store *st = cs ? cs->storage : NULL;

        if (!cs)
                return NULL;
        cs->release = release;
        st->n = n;
        st->params = calloc(n, sizeof(*st->params));
        st->inputs = calloc(n, sizeof(*st->inputs));
        st->queries = calloc(n, sizeof(*st->queries));
        if (!st->params || !st->inputs || !st->queries) {
                kiln_cases_free(cs);
                return NULL;
        }
        return cs;
}

/* Case i: the stored item `row` of collection coll as the query (params.query_id,
 * no inputs), k. */
static void set_stored_case(struct kiln_cases *cs, size_t i, size_t coll, size_t row, int32_t k)
{
        struct store *st = cs->storage;
        const struct vec_collection *c = st->colls[coll];

        snprintf(st->params[i].collection, sizeof(st->params[i].collection), "c%zu", coll);
        snprintf(st->params[i].query_id, sizeof(st->params[i].query_id), "r%07zu", row);
        st->params[i].k = k;
        cs->cases[i] = (struct kiln_case){ .params = &st->params[i], .object = &st->objects[coll], .work = 1 };
        snprintf(cs->cases[i].label, sizeof(cs->cases[i].label), "%s %llux%u, stored id %zu, k %d",
                 kiln_metric_name(c->metric), (unsigned long long)c->count, c->dim, row, k);
}

/* Case i: q queries (query_zero: the first one all zeros) of collection coll, k. */
static int set_case(struct kiln_cases *cs, size_t i, size_t coll, uint32_t q, int32_t k, bool query_zero,
                    uint64_t seed)
{
        struct store *st = cs->storage;
        const struct vec_collection *c = st->colls[coll];
        uint64_t shape[2] = { q, c->dim };
        float *data = malloc((size_t)q * c->dim * sizeof(float));

        if (!data)
                return -ENOMEM;
        for (size_t j = 0; j < (size_t)q * c->dim; j++)
                data[j] = query_zero && j < c->dim ? 0.0f : uniform(&seed);
        st->queries[i] = data;
        snprintf(st->params[i].collection, sizeof(st->params[i].collection), "c%zu", coll);
        st->params[i].k = k;
        kiln_array_init(&st->inputs[i], "queries", KILN_DTYPE_F32, 2, shape, data, (size_t)q * c->dim * sizeof(float),
                        NULL);
        cs->cases[i] = (struct kiln_case){ .params = &st->params[i], .inputs = &st->inputs[i], .n_inputs = 1,
                                           .object = &st->objects[coll], .work = q };
        snprintf(cs->cases[i].label, sizeof(cs->cases[i].label), "%s %llux%u, %u queries, k %d",
                 kiln_metric_name(c->metric), (unsigned long long)c->count, c->dim, q, k);
        return 0;
}

static int parity(struct kiln_cases **ret)
{
        static const struct {
                enum kiln_metric metric;
                size_t n;
                uint32_t dim;
                size_t base, zero;
        } colls[] = {
                { KILN_METRIC_COSINE, 2000, 96, 0, 0 },  { KILN_METRIC_IP, 2000, 96, 0, 0 },
                { KILN_METRIC_L2, 2000, 96, 0, 0 },      { KILN_METRIC_IP, 3000, 17, 5, 0 },
                { KILN_METRIC_L2, 50, 3, 0, 7 },         { KILN_METRIC_COSINE, 4000, 768, 0, 0 },
                { KILN_METRIC_IP, 500, 1, 0, 0 },        { KILN_METRIC_IP, 0, 8, 0, 0 },
                /* One vector 6000 times: more ties than a device keeps, so the host
                 * answers (the flag path). */
                { KILN_METRIC_L2, 6000, 4, 1, 0 },
        };
        /* stored > 0: the query is the stored item of row stored - 1 (params.query_id). */
        static const struct {
                size_t coll;
                uint32_t q;
                int32_t k;
                bool zero;
                size_t stored;
        } jobs[] = {
                { 0, 3, 10, false, 0 }, { 1, 1, 1, false, 0 }, { 2, 4, 100, false, 0 }, { 3, 2, 50, false, 0 },
                { 3, 2, 10, true, 0 },  { 4, 3, 1000, false, 0 }, { 5, 2, 10, false, 0 }, { 6, 2, 7, false, 0 },
                { 7, 1, 5, false, 0 },  { 0, 1, 1000, false, 0 }, { 2, 1, 3, false, 0 }, { 8, 2, 10, false, 0 },
                { 0, 1, 10, false, 124 }, { 2, 1, 100, false, 6 }, { 3, 1, 50, false, 3000 },
                /* Batches of the size the benchmark times: more than one block of
                 * queries (a device's chunks and its widest tiles), cosine and l2. */
                { 5, 300, 10, false, 0 }, { 2, 70, 100, false, 0 },
        };
        const size_t n = sizeof(jobs) / sizeof(jobs[0]);
        struct kiln_cases *cs = cases_new(n);
        int r = cs ? 0 : -ENOMEM;

        for (size_t i = 0; r >= 0 && i < sizeof(colls) / sizeof(colls[0]); i++)
                r = add_collection(cs->storage, colls[i].metric, colls[i].n, colls[i].dim, colls[i].base, colls[i].zero,
                                   1000 + i, 1 + i);
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (jobs[i].stored)
                        set_stored_case(cs, i, jobs[i].coll, jobs[i].stored - 1, jobs[i].k);
                else
                        r = set_case(cs, i, jobs[i].coll, jobs[i].q, jobs[i].k, jobs[i].zero, 77 + i);
        if (r < 0) {
                kiln_cases_free(cs);
                return r;
        }
        *ret = cs;
        return 0;
}

/* The benchmark's collection stays built (and resident on a device, the same
 * snapshot) across its batch sizes: one per size step, the last one kept. */
static struct {
        unsigned size;
        struct vec_collection *c;
} bench_cache;

static void release_bench(struct kiln_cases *cs)
{
        struct store *st = cs->storage;

        st->n_colls = 0; /* bench_cache owns it */
        release(cs);
}

/* Single-query jobs against 100,000 x 384 (steps 0, 1) and 1,000,000 x 768 (steps
 * 2, 3), k 10 and 100, inner product. */
static int bench(unsigned size, size_t n, struct kiln_cases **ret)
{
        static const struct {
                size_t rows;
                uint32_t dim;
                int32_t k;
        } steps[] = { { 100000, 384, 10 }, { 100000, 384, 100 }, { 1000000, 768, 10 }, { 1000000, 768, 100 } };
        struct kiln_cases *cs;
        struct store *st;
        int r = 0;

        if (size >= sizeof(steps) / sizeof(steps[0]))
                return -ERANGE;
        cs = cases_new(n);
        if (!cs)
                return -ENOMEM;
        cs->release = release_bench;
        st = cs->storage;
        if (!bench_cache.c || steps[bench_cache.size].rows != steps[size].rows ||
            steps[bench_cache.size].dim != steps[size].dim) {
                vec_collection_free(bench_cache.c);
                bench_cache.c = NULL;
                /* A version of its own: a device keys what it keeps by snapshot and
                 * version, and a new snapshot may get a freed one's address. */
                r = add_collection(st, KILN_METRIC_IP, steps[size].rows, steps[size].dim, 0, 0, 5, 100 + size);
                if (r >= 0) {
                        bench_cache.c = st->colls[0];
                        bench_cache.size = size;
                }
        } else {
                st->colls[0] = bench_cache.c;
                st->objects[0] = (struct kiln_object){ .cls = &vec_collection_class,
                                                       .version = 100 + bench_cache.size, .snapshot = bench_cache.c };
                st->n_colls = 1;
        }
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = set_case(cs, i, 0, 1, steps[size].k, false, 900 + i);
        if (r < 0) {
                kiln_cases_free(cs);
                return r;
        }
        /* A product per (query, row); the exact rescoring of a few candidates
         * is left out. */
        const double rows = (double)steps[size].rows, dim = steps[size].dim;
        cs->flop = 2.0 * rows * dim * (double)n;
        cs->read_bytes = (rows + (double)n) * dim * sizeof(float);
        *ret = cs;
        return 0;
}

const struct kiln_kind_tests kiln_kind_tests_vec_search = {
        .kind = &kiln_kind_vec_search,
        .parity = parity,
        .bench = bench,
        .work_unit = "queries",
};
