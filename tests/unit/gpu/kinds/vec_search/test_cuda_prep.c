/* vec.search's host half of the CUDA path (cuda_prep.c), without a GPU: the
 * parameter words and output size prepare() gives the kernel, the collection's
 * image, and complete() turning an output region laid out as the kernel writes it
 * into the same result the CPU gives -- also for queries the device flagged, which
 * complete() answers with the CPU search whatever the region holds for them, and
 * for a stored id as the query (params.query_id), which the device never sees. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kind_tests.h"
#include "vec_search/vec_search.h"
#include "vec_search/vec_search_cuda.h"
#include "vec_test.h"

extern const struct kiln_cuda_kind kiln_cuda_kind_vec_search;

/* The plugin's launch function lives in kernel.cu, its cuBLAS handles in
 * cuda_cublas.c (the CUDA runtime's); nothing here launches or releases a device. */
void vec_search_cuda_launch(const struct kiln_cuda_launch *l)
{
        fail_msg("no launch without a GPU");
}

void vec_cublas_device_release(int device)
{
        fail_msg("no device to release without a GPU");
}

struct job {
        struct vec_search_params p;
        struct kiln_array in;
        struct kiln_object obj;
        struct kiln_result res;
        struct kiln_task t;
};

static void job_init(struct job *j, const struct vec_collection *c, int32_t k, const float *q, size_t m)
{
        uint64_t shape[2] = { m, c->dim };

        memset(j, 0, sizeof(*j));
        snprintf(j->p.collection, sizeof(j->p.collection), "c");
        j->p.k = k;
        assert_int_equal(kiln_array_init(&j->in, "queries", KILN_DTYPE_F32, 2, shape, q, m * c->dim * sizeof(float),
                                         NULL),
                         0);
        j->obj = (struct kiln_object){ .cls = &vec_collection_class, .version = 9, .snapshot = c };
        j->t = (struct kiln_task){ .params = &j->p, .inputs = &j->in, .n_inputs = 1, .object = &j->obj,
                                   .result = &j->res };
}

/* Two results hold the same ids and, bit for bit, the same scores. */
static void assert_same_answer(const struct kiln_result *a, const struct kiln_result *b)
{
        const struct kiln_part *sa = kiln_result_find_part(a, "scores");
        const struct kiln_part *sb = kiln_result_find_part(b, "scores");

        assert_string_equal(kiln_result_find(a, "ids")->text, kiln_result_find(b, "ids")->text);
        assert_non_null(sa);
        assert_non_null(sb);
        assert_int_equal(sa->bytes, sb->bytes);
        assert_memory_equal(sa->data, sb->data, sa->bytes);
}

static void test_prepare_packs_the_words_and_sizes_the_region(void **state)
{
        enum { N = 300, DIM = 7, M = 3 };
        uint64_t s = 4, offsets[KILN_MAX_INPUTS] = { 32, UINT64_MAX };
        float *rows = vt_gauss_rows(&s, N, DIM), *q = vt_gauss_rows(&s, M, DIM);
        struct vec_collection *c = vt_collection(KILN_METRIC_L2, rows, N, DIM);
        struct kiln_cuda_desc desc = { 0 };
        uint64_t work = 0;
        const void *image;
        uint64_t bytes;
        struct job j;

        job_init(&j, c, 500, q, M);
        assert_int_equal(kiln_cuda_kind_vec_search.prepare(&j.t, offsets, &desc, &work), 0);
        assert_int_equal(work, M);
        assert_int_equal(desc.params[VEC_W_Q], M);
        assert_int_equal(desc.params[VEC_W_K], 500);
        assert_int_equal(desc.params[VEC_W_KK], N);
        assert_int_equal(desc.params[VEC_W_DIM], DIM);
        assert_int_equal(desc.params[VEC_W_METRIC], KILN_METRIC_L2);
        assert_int_equal(desc.params[VEC_W_COUNT], N);
        assert_int_equal(desc.params[VEC_W_COUNT + 1], 0);
        assert_int_equal(desc.params[VEC_W_HOST], 0);
        assert_int_equal(desc.params[VEC_W_IN], 32);
        assert_true(kiln_cuda_get_f64(desc.params, VEC_W_MAX_NORM) == c->max_norm);
        assert_int_equal(desc.out_bytes, vec_cuda_out_bytes(M, N));
        assert_int_equal(j.res.n_parts + j.res.n_scalars, 0);
        /* The image is the rows and then their squared norms, in one block. */
        assert_int_equal(kiln_cuda_kind_vec_search.object_image(&j.obj, &image, &bytes), 0);
        assert_ptr_equal(image, c->rows);
        assert_int_equal(bytes, (uint64_t)N * (DIM + 1) * sizeof(float));
        assert_ptr_equal(c->sqnorms, c->rows + N * DIM);
        /* Queries of another dim are the kernel's to refuse: prepare does. */
        float wide[8] = { 0 };
        uint64_t shape[2] = { 1, 8 };
        assert_int_equal(kiln_array_init(&j.in, "queries", KILN_DTYPE_F32, 2, shape, wide, sizeof(wide), NULL), 0);
        assert_int_equal(kiln_cuda_kind_vec_search.prepare(&j.t, offsets, &desc, &work), -EINVAL);
        vec_collection_free(c);
        free(rows);
        free(q);
}

/* A stored id as the query: no input for the device, so the task is the host's
 * (VEC_W_HOST) and complete() gives the CPU's answer whatever the region holds --
 * the same as the vector that was put, sent. */
static void test_a_stored_id_is_answered_on_the_host(void **state)
{
        enum { N = 900, DIM = 16, ROW = 417 };
        static const enum kiln_metric metrics[] = { KILN_METRIC_COSINE, KILN_METRIC_IP, KILN_METRIC_L2 };
        uint64_t s = 12, none[KILN_MAX_INPUTS];
        float *rows = vt_gauss_rows(&s, N, DIM);

        for (size_t i = 0; i < KILN_MAX_INPUTS; i++)
                none[i] = UINT64_MAX;
        for (size_t mt = 0; mt < 3; mt++) {
                struct vec_collection *c = vt_collection(metrics[mt], rows, N, DIM);
                struct kiln_cuda_desc desc = { 0 };
                uint64_t work = 0;
                struct job dev, cpu;
                job_init(&dev, c, 25, rows + ROW * DIM, 1);
                job_init(&cpu, c, 25, rows + ROW * DIM, 1);
                /* Both a stored id and queries: refused (the check refuses it first). */
                snprintf(dev.p.query_id, sizeof(dev.p.query_id), "r%06d", ROW);
                assert_int_equal(kiln_cuda_kind_vec_search.prepare(&dev.t, none, &desc, &work), -EINVAL);
                dev.t.inputs = NULL;
                dev.t.n_inputs = 0;
                assert_int_equal(kiln_cuda_kind_vec_search.prepare(&dev.t, none, &desc, &work), 0);
                assert_int_equal(work, 1);
                assert_int_equal(desc.params[VEC_W_Q], 1);
                assert_int_equal(desc.params[VEC_W_HOST], 1);
                assert_int_equal(desc.params[VEC_W_KK], 25);
                assert_int_equal(desc.params[VEC_W_IN], 0);
                assert_int_equal(desc.params[VEC_W_IN + 1], 0);
                assert_int_equal(desc.out_bytes, vec_cuda_out_bytes(1, 25));
                /* The region as the kernel leaves a skipped task: untouched (flag 0 here). */
                unsigned char *out = calloc(1, desc.out_bytes);
                assert_int_equal(kiln_cuda_kind_vec_search.complete(&dev.t, out, desc.out_bytes), 0);
                assert_int_equal(kiln_kind_vec_search.run_cpu(&cpu.t), 0);
                assert_same_answer(&dev.res, &cpu.res);
                free(out);
                kiln_result_clear(&dev.res);
                kiln_result_clear(&cpu.res);
                vec_collection_free(c);
        }
        free(rows);
}

/* An output region as the finish kernel writes it: the CPU's answers, except that
 * flagged queries hold garbage. */
static unsigned char *region_of(const struct vec_collection *c, const float *prepared, size_t m, uint32_t k,
                                const int32_t *flags)
{
        uint64_t kk = c->count < k ? c->count : k;
        unsigned char *out = malloc(vec_cuda_out_bytes(m, kk));
        uint64_t *idx = malloc((kk + 1) * sizeof(*idx));
        float *score = malloc((kk + 1) * sizeof(*score));

        memset(out, 0xA5, vec_cuda_out_bytes(m, kk));
        for (size_t i = 0; i < m; i++) {
                memcpy(out + 4 * i, &flags[i], 4);
                if (flags[i])
                        continue;
                assert_int_equal(vec_search_ref(c, prepared + i * c->dim, k, idx, score), kk);
                for (uint64_t h = 0; h < kk; h++) {
                        uint32_t row = (uint32_t)idx[h];
                        memcpy(out + vec_cuda_rows_at(m) + (i * kk + h) * 4, &row, 4);
                        memcpy(out + vec_cuda_scores_at(m, kk) + (i * kk + h) * 4, &score[h], 4);
                }
        }
        free(idx);
        free(score);
        return out;
}

static void test_complete_gives_the_cpu_result_and_answers_flagged_queries(void **state)
{
        enum { N = 1500, DIM = 24, M = 5 };
        static const enum kiln_metric metrics[] = { KILN_METRIC_COSINE, KILN_METRIC_IP, KILN_METRIC_L2 };
        static const int32_t flags[][M] = { { 0, 0, 0, 0, 0 }, { 0, 1, 0, 1, 1 }, { 1, 1, 1, 1, 1 } };
        uint64_t s = 6;
        float *rows = vt_gauss_rows(&s, N, DIM), *q = vt_gauss_rows(&s, M, DIM);

        for (size_t mt = 0; mt < 3; mt++) {
                struct vec_collection *c = vt_collection(metrics[mt], rows, N, DIM);
                float *prepared = malloc(M * DIM * sizeof(float));
                memcpy(prepared, q, M * DIM * sizeof(float));
                for (size_t i = 0; i < M; i++)
                        vec_row_prepare(metrics[mt], prepared + i * DIM, DIM);
                for (size_t f = 0; f < 3; f++) {
                        struct job gpu, cpu;
                        int32_t k = f == 2 ? 2000 : 10;
                        unsigned char *out = region_of(c, prepared, M, (uint32_t)k, flags[f]);
                        job_init(&gpu, c, k, q, M);
                        job_init(&cpu, c, k, q, M);
                        uint64_t kk = c->count < (uint64_t)k ? c->count : (uint64_t)k;
                        assert_int_equal(kiln_cuda_kind_vec_search.complete(&gpu.t, out, vec_cuda_out_bytes(M, kk)), 0);
                        assert_int_equal(kiln_kind_vec_search.run_cpu(&cpu.t), 0);
                        assert_same_answer(&gpu.res, &cpu.res);
                        assert_int_equal(kiln_result_find(&gpu.res, "collection_version")->i, 9);
                        assert_int_equal(kiln_result_find(&gpu.res, "count")->i, N);
                        /* A region cut short is an error, not a guess. */
                        kiln_result_clear(&gpu.res);
                        assert_int_equal(kiln_cuda_kind_vec_search.complete(&gpu.t, out, 8), -EIO);
                        kiln_result_clear(&gpu.res);
                        kiln_result_clear(&cpu.res);
                        free(out);
                }
                vec_collection_free(c);
                free(prepared);
        }
        free(rows);
        free(q);
}

/* A row number past the collection in the region (a fault, a stale buffer) is no
 * answer: that query is answered on the host, never with ids read out of bounds. */
static void test_a_row_past_the_collection_is_answered_on_the_host(void **state)
{
        enum { N = 700, DIM = 8, M = 2, K = 5 };
        static const int32_t flags[M] = { 0, 0 };
        uint64_t s = 21;
        float *rows = vt_gauss_rows(&s, N, DIM), *q = vt_gauss_rows(&s, M, DIM);
        struct vec_collection *c = vt_collection(KILN_METRIC_IP, rows, N, DIM);
        unsigned char *out = region_of(c, q, M, K, flags);
        uint32_t bad[2] = { N, UINT32_MAX };
        struct job gpu, cpu;

        for (size_t i = 0; i < 2; i++) {
                memcpy(out + vec_cuda_rows_at(M) + (1 * K + 2) * 4, &bad[i], 4);
                job_init(&gpu, c, K, q, M);
                job_init(&cpu, c, K, q, M);
                assert_int_equal(kiln_cuda_kind_vec_search.complete(&gpu.t, out, vec_cuda_out_bytes(M, K)), 0);
                assert_int_equal(kiln_kind_vec_search.run_cpu(&cpu.t), 0);
                assert_same_answer(&gpu.res, &cpu.res);
                kiln_result_clear(&gpu.res);
                kiln_result_clear(&cpu.res);
        }
        free(out);
        vec_collection_free(c);
        free(rows);
        free(q);
}

/* The device memory a launch allocates, which the core holds of the budget first:
 * one 1 GiB block of screening values at 1M rows for 256 queries, blocks of fewer
 * queries for more rows, nothing for tasks the host answers. */
static void test_scratch_is_what_the_launch_allocates(void **state)
{
        struct kiln_cuda_desc desc[2] = { 0 };
        const uint64_t MiB = 1ull << 20;
        uint64_t n = 1000000, bytes;

        for (size_t t = 0; t < 2; t++) {
                desc[t].params[VEC_W_Q] = 128;
                desc[t].params[VEC_W_K] = t ? 100 : 10;
                desc[t].params[VEC_W_DIM] = 768;
                desc[t].params[VEC_W_COUNT] = (uint32_t)n;
        }
        struct vec_cuda_plan p = vec_cuda_plan_of(desc, 2);
        assert_int_equal(p.nq, 256);
        assert_int_equal(p.kmax, 100);
        assert_int_equal(p.chunk, 256); /* 1 GiB / 4 MB of values a query: 268, at most 256 */
        assert_int_equal(p.v_cells, 256 * n);
        bytes = kiln_cuda_kind_vec_search.scratch_bytes(desc, 2, n * 769 * 4);
        assert_int_equal(bytes, vec_cuda_plan_bytes(&p));
        assert_true(bytes >= 256 * n * 4 + 256 * 768 * 4 + 256 * VEC_CUDA_CAP * 4);
        assert_true(bytes <= 256 * n * 4 + 64 * MiB);
        /* Ten times the rows: a block of 26 queries, the same 1 GiB or so. */
        n = 10000000;
        desc[0].params[VEC_W_COUNT] = desc[1].params[VEC_W_COUNT] = (uint32_t)n;
        p = vec_cuda_plan_of(desc, 2);
        assert_int_equal(p.chunk, 26);
        assert_true(kiln_cuda_kind_vec_search.scratch_bytes(desc, 2, 0) <= (1ull << 30) + 64 * MiB);
        /* Tasks the host answers allocate nothing. */
        desc[0].params[VEC_W_HOST] = desc[1].params[VEC_W_HOST] = 1;
        assert_int_equal(kiln_cuda_kind_vec_search.scratch_bytes(desc, 2, 0), 0);
}

/* The parity cases the GPU is held to are valid jobs; the CPU answers them the
 * same in one batch as one by one, and complete() with every query deferred to the
 * host gives that answer too (whatever the region's other bytes). */
static void test_the_parity_cases_agree_on_the_host(void **state)
{
        extern const struct kiln_kind_tests kiln_kind_tests_vec_search;
        struct kiln_cases *cs = NULL;

        assert_int_equal(kiln_kind_tests_vec_search.parity(&cs), 0);
        struct kiln_task *tasks = calloc(cs->n, sizeof(*tasks)), *batch[64];
        struct kiln_result *one = calloc(cs->n, sizeof(*one)), *all = calloc(cs->n, sizeof(*all)),
                           *dev = calloc(cs->n, sizeof(*dev));
        assert_true(cs->n <= 64);
        for (size_t i = 0; i < cs->n; i++) {
                const struct kiln_case *c = &cs->cases[i];
                struct kiln_error err;
                struct kiln_task t = { .params = c->params, .inputs = c->inputs, .n_inputs = c->n_inputs,
                                       .object = c->object, .result = &one[i] };
                assert_int_equal(kiln_kind_check(&kiln_kind_vec_search, c->params, c->inputs, c->n_inputs, c->object,
                                                 &err), 0);
                assert_int_equal(kiln_kind_vec_search.run_cpu(&t), 0);
                tasks[i] = t;
                tasks[i].result = &all[i];
                batch[i] = &tasks[i];
                /* Every flag 1: the host answers every query. */
                struct kiln_cuda_desc desc = { 0 };
                uint64_t offsets[KILN_MAX_INPUTS] = { 0 }, work;
                assert_int_equal(kiln_cuda_kind_vec_search.prepare(&t, offsets, &desc, &work), 0);
                unsigned char *out = malloc(desc.out_bytes + 1);
                memset(out, 0x01, desc.out_bytes + 1);
                for (uint32_t q = 0; q < desc.params[VEC_W_Q]; q++)
                        memcpy(out + 4 * q, &(int32_t){ 1 }, 4);
                t.result = &dev[i];
                assert_int_equal(kiln_cuda_kind_vec_search.complete(&t, out, desc.out_bytes), 0);
                free(out);
        }
        assert_int_equal(kiln_kind_vec_search.run_cpu_batch(batch, cs->n), 0);
        for (size_t i = 0; i < cs->n; i++) {
                assert_int_equal(tasks[i].status, 0);
                assert_same_answer(&all[i], &one[i]);
                assert_same_answer(&dev[i], &one[i]);
                kiln_result_clear(&one[i]);
                kiln_result_clear(&all[i]);
                kiln_result_clear(&dev[i]);
        }
        free(tasks);
        free(one);
        free(all);
        free(dev);
        kiln_cases_free(cs);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_prepare_packs_the_words_and_sizes_the_region),
                cmocka_unit_test(test_a_stored_id_is_answered_on_the_host),
                cmocka_unit_test(test_complete_gives_the_cpu_result_and_answers_flagged_queries),
                cmocka_unit_test(test_a_row_past_the_collection_is_answered_on_the_host),
                cmocka_unit_test(test_scratch_is_what_the_launch_allocates),
                cmocka_unit_test(test_the_parity_cases_agree_on_the_host),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
