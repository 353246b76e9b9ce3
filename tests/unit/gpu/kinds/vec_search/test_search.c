/* vec.search's CPU search: whatever the threads, tiles, product (BLIS or the
 * own kernel) and candidate-list sizes, it returns exactly what the plain reference
 * search returns -- the same rows in the same order with bit-equal scores -- and
 * that is the float64 brute force's ranking, equal scores ordered by row (id). */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vec_search/vec_math.h"
#include "vec_search/vec_search.h"
#include "vec_test.h"

static const enum kiln_metric metrics[] = { KILN_METRIC_COSINE, KILN_METRIC_IP, KILN_METRIC_L2 };

/* Prepared copies of m queries (unit length for cosine). */
static float *prepared(enum kiln_metric metric, const float *q, size_t m, uint32_t dim)
{
        float *p = malloc((m ? m : 1) * dim * sizeof(float));

        assert_non_null(p);
        memcpy(p, q, m * dim * sizeof(float));
        for (size_t i = 0; i < m; i++)
                assert_int_equal(vec_row_prepare(metric, p + i * dim, dim), 0);
        return p;
}

/* Runs the search and compares every query's answer with vec_search_ref's, bit for
 * bit. */
static void expect_reference(const struct vec_collection *c, const float *q, size_t m, uint32_t k,
                             const struct vec_search_opts *opts)
{
        uint32_t n_out = c->count < k ? (uint32_t)c->count : k;
        uint64_t *idx = malloc((m * n_out + 1) * sizeof(*idx)), *ref_idx = malloc((k + 1) * sizeof(*ref_idx));
        float *score = malloc((m * n_out + 1) * sizeof(*score)), *ref_score = malloc((k + 1) * sizeof(*ref_score));

        assert_int_equal(vec_search_cpu(c, q, m, k, opts, idx, score), 0);
        for (size_t i = 0; i < m; i++) {
                assert_int_equal(vec_search_ref(c, q + i * c->dim, k, ref_idx, ref_score), n_out);
                for (uint32_t h = 0; h < n_out; h++) {
                        if (idx[i * n_out + h] != ref_idx[h] ||
                            memcmp(&score[i * n_out + h], &ref_score[h], sizeof(float)) != 0)
                                fail_msg("query %zu rank %u: row %llu score %.9g, the reference row %llu score %.9g",
                                         i, h, (unsigned long long)idx[i * n_out + h], (double)score[i * n_out + h],
                                         (unsigned long long)ref_idx[h], (double)ref_score[h]);
                }
        }
        free(idx);
        free(ref_idx);
        free(score);
        free(ref_score);
}

static void test_equals_the_reference_across_shapes_and_metrics(void **state)
{
        static const struct { size_t n; uint32_t dim; size_t m; uint32_t k; } shapes[] = {
                { 1, 1, 1, 1 },     { 5, 3, 2, 10 },     { 100, 17, 5, 7 },   { 700, 64, 3, 10 },
                { 1500, 130, 40, 25 }, { 2000, 8, 70, 100 }, { 300, 384, 1, 300 }, { 64, 5, 300, 3 },
        };
        uint64_t s = 11;

        for (size_t sh = 0; sh < sizeof(shapes) / sizeof(shapes[0]); sh++)
                for (size_t mt = 0; mt < 3; mt++) {
                        float *rows = vt_gauss_rows(&s, shapes[sh].n, shapes[sh].dim);
                        float *q = vt_gauss_rows(&s, shapes[sh].m, shapes[sh].dim);
                        struct vec_collection *c = vt_collection(metrics[mt], rows, shapes[sh].n, shapes[sh].dim);
                        float *qp = prepared(metrics[mt], q, shapes[sh].m, shapes[sh].dim);
                        assert_non_null(c);
                        expect_reference(c, qp, shapes[sh].m, shapes[sh].k, NULL);
                        vec_collection_free(c);
                        free(rows);
                        free(q);
                        free(qp);
                }
}

/* Threads, tiles, the product used and the lists' sizes change how the work is cut,
 * never the answer. */
static void test_every_way_of_cutting_the_work_gives_the_same_answer(void **state)
{
        enum { N = 3000, DIM = 40, M = 67 };
        uint64_t s = 5;
        float *rows = vt_gauss_rows(&s, N, DIM), *q = vt_gauss_rows(&s, M, DIM);

        for (size_t mt = 0; mt < 3; mt++) {
                struct vec_collection *c = vt_collection(metrics[mt], rows, N, DIM);
                float *qp = prepared(metrics[mt], q, M, DIM);
                for (unsigned threads = 1; threads <= 3; threads++)
                        for (int portable = 0; portable < 2; portable++)
                                for (uint32_t tile = 0; tile <= 64; tile += 64) {
                                        struct vec_search_opts o = { .threads = threads, .portable = portable,
                                                                     .tile_rows = tile, .cand_cap = tile ? 2 : 0 };
                                        expect_reference(c, qp, M, 10, &o);
                                        expect_reference(c, qp, M, 1, &o);
                                        expect_reference(c, qp, 3, 200, &o);
                                }
                vec_collection_free(c);
                free(qp);
        }
        free(rows);
        free(q);
}

/* ---- against a float64 brute force ---- */

struct ranked {
        float score;
        uint64_t row;
};

static enum kiln_metric sort_metric;

static int cmp_ranked(const void *a, const void *b)
{
        const struct ranked *x = a, *y = b;

        if (vec_ranks_before(sort_metric, x->score, x->row, y->score, y->row))
                return -1;
        return vec_ranks_before(sort_metric, y->score, y->row, x->score, x->row) ? 1 : 0;
}

/* The score summed in long double from the last column back: another order and
 * more precision than the search's, rounded to float32 once. */
static float brute_score(enum kiln_metric m, const float *q, const float *x, uint32_t dim)
{
        long double s = 0;

        for (uint32_t j = dim; j-- > 0;)
                s += m == KILN_METRIC_L2 ? ((long double)q[j] - x[j]) * ((long double)q[j] - x[j])
                                         : (long double)q[j] * x[j];
        return (float)s;
}

static void test_equals_a_float64_brute_force(void **state)
{
        enum { N = 4000, DIM = 96, M = 20, K = 50 };
        uint64_t s = 77;
        float *rows = vt_gauss_rows(&s, N, DIM), *q = vt_gauss_rows(&s, M, DIM);
        uint64_t *idx = malloc(M * K * sizeof(*idx));
        float *score = malloc(M * K * sizeof(*score));
        struct ranked *all = malloc(N * sizeof(*all));

        for (size_t mt = 0; mt < 3; mt++) {
                struct vec_collection *c = vt_collection(metrics[mt], rows, N, DIM);
                float *qp = prepared(metrics[mt], q, M, DIM);
                assert_int_equal(vec_search_cpu(c, qp, M, K, NULL, idx, score), 0);
                sort_metric = metrics[mt];
                for (size_t i = 0; i < M; i++) {
                        for (uint64_t r = 0; r < N; r++)
                                all[r] = (struct ranked){ brute_score(metrics[mt], qp + i * DIM, c->rows + r * DIM, DIM),
                                                          r };
                        qsort(all, N, sizeof(*all), cmp_ranked);
                        for (size_t h = 0; h < K; h++) {
                                assert_int_equal(idx[i * K + h], all[h].row);
                                assert_true(score[i * K + h] == all[h].score);
                        }
                }
                vec_collection_free(c);
                free(qp);
        }
        free(rows);
        free(q);
        free(idx);
        free(score);
        free(all);
}

/* ---- ties, duplicates, zeros, edges ---- */

/* Many copies of a few vectors: equal scores come in row (id) order, and a k that
 * cuts through a run of ties keeps its smallest rows. */
static void test_duplicates_tie_in_row_order(void **state)
{
        enum { N = 5000, DIM = 16 };
        uint64_t s = 3;
        float *base = vt_gauss_rows(&s, 4, DIM), *rows = malloc(N * DIM * sizeof(float));
        float *q = vt_gauss_rows(&s, 9, DIM);

        for (size_t i = 0; i < N; i++)
                memcpy(rows + i * DIM, base + (vt_next(&s) % 4) * DIM, DIM * sizeof(float));
        memcpy(q, base, DIM * sizeof(float)); /* a query equal to a stored vector */
        for (size_t mt = 0; mt < 3; mt++) {
                struct vec_collection *c = vt_collection(metrics[mt], rows, N, DIM);
                float *qp = prepared(metrics[mt], q, 9, DIM);
                struct vec_search_opts small = { .tile_rows = 64, .cand_cap = 2, .threads = 2 };
                expect_reference(c, qp, 9, 10, NULL);
                expect_reference(c, qp, 9, 1000, NULL);
                expect_reference(c, qp, 9, 10, &small);
                expect_reference(c, qp, 2, N, &small);
                vec_collection_free(c);
                free(qp);
        }
        free(base);
        free(rows);
        free(q);
}

/* Every row scores the same (a zero query under ip; identical rows): more ties
 * than any list keeps, settled by exact scores, rows 0..k-1 in order. */
static void test_all_ties_are_settled_exactly(void **state)
{
        enum { N = 40000, DIM = 8, K = 30 };
        float *rows = malloc(N * DIM * sizeof(float)), zero[DIM] = { 0 }, q[DIM] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        uint64_t idx[K];
        float score[K];
        uint64_t s = 9;

        for (size_t i = 0; i < N * DIM; i++)
                rows[i] = vt_gauss(&s);
        struct vec_collection *c = vt_collection(KILN_METRIC_IP, rows, N, DIM);
        for (unsigned threads = 1; threads <= 2; threads++) {
                struct vec_search_opts o = { .threads = threads };
                assert_int_equal(vec_search_cpu(c, zero, 1, K, &o, idx, score), 0);
                for (uint64_t h = 0; h < K; h++) {
                        assert_int_equal(idx[h], h);
                        assert_true(score[h] == 0.0f);
                }
        }
        vec_collection_free(c);
        for (size_t i = 0; i < N; i++)
                memcpy(rows + i * DIM, q, sizeof(q));
        for (size_t mt = 0; mt < 3; mt++) {
                c = vt_collection(metrics[mt], rows, N, DIM);
                float *qp = prepared(metrics[mt], q, 1, DIM);
                assert_int_equal(vec_search_cpu(c, qp, 1, K, NULL, idx, score), 0);
                for (uint64_t h = 0; h < K; h++)
                        assert_int_equal(idx[h], h);
                expect_reference(c, qp, 1, K, NULL);
                vec_collection_free(c);
                free(qp);
        }
        free(rows);
}

/* ip and l2 keep zero rows (cosine refuses them at put): they score 0 (ip) or the
 * query's squared norm (l2) like any other row. */
static void test_zero_rows_and_zero_queries(void **state)
{
        enum { N = 600, DIM = 24 };
        uint64_t s = 21;
        float *rows = vt_gauss_rows(&s, N, DIM), *q = vt_gauss_rows(&s, 4, DIM);

        for (size_t i = 0; i < N; i += 3)
                memset(rows + i * DIM, 0, DIM * sizeof(float));
        memset(q + DIM, 0, DIM * sizeof(float));
        for (size_t mt = 1; mt < 3; mt++) {
                struct vec_collection *c = vt_collection(metrics[mt], rows, N, DIM);
                expect_reference(c, q, 4, 10, NULL);
                expect_reference(c, q, 4, N, NULL);
                vec_collection_free(c);
        }
        free(rows);
        free(q);
}

/* A product that rounds to -0 (ip: -1e-30 x 1e-30) is the score +0 on every
 * backend: a device's rank keys do not tell -0 from +0. */
static void test_a_negative_zero_score_is_reported_as_zero(void **state)
{
        float rows[2] = { -1e-30f, 1e-30f }, q[1] = { 1e-30f }, score[2];
        uint64_t idx[2];
        struct vec_collection *c = vt_collection(KILN_METRIC_IP, rows, 2, 1);

        assert_int_equal(vec_search_cpu(c, q, 1, 2, NULL, idx, score), 0);
        for (size_t h = 0; h < 2; h++) {
                assert_true(score[h] == 0.0f);
                assert_false(signbit(score[h]));
        }
        assert_int_equal(idx[0], 0); /* a tie: by row */
        assert_int_equal(idx[1], 1);
        vec_collection_free(c);
}

static void test_k_beyond_the_count_returns_every_row_sorted(void **state)
{
        enum { N = 37, DIM = 5 };
        uint64_t s = 8, idx[N];
        float *rows = vt_gauss_rows(&s, N, DIM), q[DIM] = { 1, -1, 0.5f, 2, 0 }, score[N];

        for (size_t mt = 0; mt < 3; mt++) {
                struct vec_collection *c = vt_collection(metrics[mt], rows, N, DIM);
                float *qp = prepared(metrics[mt], q, 1, DIM);
                assert_int_equal(vec_search_cpu(c, qp, 1, 1000, NULL, idx, score), 0);
                for (size_t h = 1; h < N; h++)
                        assert_true(vec_ranks_before(metrics[mt], score[h - 1], idx[h - 1], score[h], idx[h]));
                expect_reference(c, qp, 1, 1000, NULL);
                vec_collection_free(c);
                free(qp);
        }
        free(rows);
}

/* Rows that differ from one another by less than float32 products can tell apart:
 * the screening is wrong about their order, the exact finish is not. */
static void test_near_ties_below_float32_resolution(void **state)
{
        enum { N = 3000, DIM = 256 };
        uint64_t s = 123;
        float *base = vt_gauss_rows(&s, 1, DIM), *rows = malloc(N * DIM * sizeof(float));
        float *q = vt_gauss_rows(&s, 6, DIM);

        for (size_t i = 0; i < N; i++)
                for (size_t j = 0; j < DIM; j++)
                        rows[i * DIM + j] = base[j] * (1.0f + 3e-7f * (float)(vt_next(&s) % 5));
        memcpy(q, base, DIM * sizeof(float));
        for (size_t mt = 0; mt < 3; mt++) {
                struct vec_collection *c = vt_collection(metrics[mt], rows, N, DIM);
                float *qp = prepared(metrics[mt], q, 6, DIM);
                struct vec_search_opts own = { .portable = true, .threads = 2 };
                expect_reference(c, qp, 6, 10, NULL);
                expect_reference(c, qp, 6, 10, &own);
                expect_reference(c, qp, 6, 500, NULL);
                vec_collection_free(c);
                free(qp);
        }
        free(base);
        free(rows);
        free(q);
}

/* Norms near the 2^62 limit overflow nothing; values near float32's smallest
 * normals round below it (denormals) and are still ranked exactly. */
static void test_huge_and_tiny_magnitudes(void **state)
{
        enum { N = 500, DIM = 12 };
        static const float scales[] = { 1e17f, 1e-19f, 1e-30f };
        uint64_t s = 4;
        float *rows = vt_gauss_rows(&s, N, DIM), *q = vt_gauss_rows(&s, 5, DIM);
        float *sr = malloc(N * DIM * sizeof(float)), sq[5 * DIM];

        for (size_t sc = 0; sc < 3; sc++) {
                for (size_t i = 0; i < N * DIM; i++)
                        sr[i] = rows[i] * scales[sc];
                for (size_t i = 0; i < 5 * DIM; i++)
                        sq[i] = q[i] * scales[sc];
                for (size_t mt = 1; mt < 3; mt++) {
                        struct vec_collection *c = vt_collection(metrics[mt], sr, N, DIM);
                        assert_non_null(c);
                        expect_reference(c, sq, 5, 10, NULL);
                        vec_collection_free(c);
                }
        }
        free(rows);
        free(q);
        free(sr);
}

/* The margin is a bound: no float32 product, by either way of computing it, is
 * further than half of it from the exact value. */
static void test_the_margin_bounds_float32_products(void **state)
{
        enum { N = 512, M = 24 };
        static const uint32_t dims[] = { 3, 64, 1000 };
        uint64_t s = 99;

        for (size_t dd = 0; dd < 3; dd++) {
                uint32_t dim = dims[dd];
                float *x = vt_gauss_rows(&s, N, dim), *q = vt_gauss_rows(&s, M, dim);
                float *prod = malloc(M * N * sizeof(float));
                for (int portable = 0; portable < 2; portable++) {
                        vec_gemm_nt(M, N, dim, q, x, prod, N, portable);
                        double max_norm = 0;
                        for (size_t r = 0; r < N; r++) {
                                double ss = 0;
                                for (uint32_t j = 0; j < dim; j++)
                                        ss += (double)x[r * dim + j] * x[r * dim + j];
                                max_norm = fmax(max_norm, sqrt(ss));
                        }
                        for (size_t i = 0; i < M; i++) {
                                double qn = 0;
                                for (uint32_t j = 0; j < dim; j++)
                                        qn += (double)q[i * dim + j] * q[i * dim + j];
                                double half = vec_margin(KILN_METRIC_IP, dim, sqrt(qn), max_norm) / 2;
                                for (size_t r = 0; r < N; r++) {
                                        long double exact = 0;
                                        for (uint32_t j = 0; j < dim; j++)
                                                exact += (long double)q[i * dim + j] * x[r * dim + j];
                                        assert_true(fabsl((long double)prod[i * N + r] - exact) <= half);
                                }
                        }
                }
                free(x);
                free(q);
                free(prod);
        }
}

/* The GPU sorts (score, row) pairs as one 64-bit key: its order must be the
 * ranking's (vec_ranks_before), and the score must come back out of it. */
static void test_rank_keys_order_as_the_ranking(void **state)
{
        static const float special[] = { 0.0f, -0.0f, 1.0f, -1.0f, 1e-45f, -1e-45f, 3.4e38f, -3.4e38f, 0.5f, 2.0f };
        float v[64];
        uint64_t s = 12;

        for (size_t i = 0; i < 64; i++)
                v[i] = i < 10 ? special[i] : (float)(vt_gauss(&s) * (i % 3 ? 1.0 : 1e-30));
        for (size_t mt = 0; mt < 3; mt++)
                for (size_t a = 0; a < 64; a++) {
                        assert_true(vec_rank_key_score(metrics[mt], vec_rank_key(metrics[mt], v[a], 7)) == v[a]);
                        for (size_t b = 0; b < 64; b++)
                                for (uint32_t ra = 0; ra < 2; ra++) {
                                        uint64_t ka = vec_rank_key(metrics[mt], v[a], ra), kb = vec_rank_key(metrics[mt], v[b], 1);
                                        assert_int_equal(ka < kb, vec_ranks_before(metrics[mt], v[a], ra, v[b], 1));
                                }
                }
        /* The limit is at or below floor - margin, and the largest float that is. */
        for (size_t i = 0; i < 64; i++) {
                double margin = fabs((double)v[(i * 7) % 64]) * 1e-3 + 1e-40;
                float lim = vec_lim_of(v[i], margin);
                assert_true((double)lim <= (double)v[i] - margin);
                assert_true((double)nextafterf(lim, INFINITY) > (double)v[i] - margin || isinf(lim));
        }
        assert_true(isinf(vec_lim_of(-INFINITY, 1.0)));
}

static bool always(void *ctx)
{
        return true;
}

static void test_a_stopped_search_is_abandoned(void **state)
{
        enum { N = 2000, DIM = 8 };
        uint64_t s = 1, idx[10];
        float *rows = vt_gauss_rows(&s, N, DIM), q[DIM] = { 1 }, score[10];
        struct vec_collection *c = vt_collection(KILN_METRIC_IP, rows, N, DIM);
        struct vec_search_opts o = { .stopped = always };

        assert_int_equal(vec_search_cpu(c, q, 1, 10, &o, idx, score), -ECANCELED);
        assert_int_equal(vec_search_cpu(c, q, 1, 0, NULL, idx, score), -EINVAL);
        vec_collection_free(c);
        c = vt_collection(KILN_METRIC_IP, rows, 0, DIM);
        assert_non_null(c);
        assert_int_equal(vec_search_cpu(c, q, 1, 10, NULL, idx, score), 0);
        vec_collection_free(c);
        free(rows);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_equals_the_reference_across_shapes_and_metrics),
                cmocka_unit_test(test_every_way_of_cutting_the_work_gives_the_same_answer),
                cmocka_unit_test(test_equals_a_float64_brute_force),
                cmocka_unit_test(test_duplicates_tie_in_row_order),
                cmocka_unit_test(test_all_ties_are_settled_exactly),
                cmocka_unit_test(test_zero_rows_and_zero_queries),
                cmocka_unit_test(test_a_negative_zero_score_is_reported_as_zero),
                cmocka_unit_test(test_k_beyond_the_count_returns_every_row_sorted),
                cmocka_unit_test(test_near_ties_below_float32_resolution),
                cmocka_unit_test(test_huge_and_tiny_magnitudes),
                cmocka_unit_test(test_the_margin_bounds_float32_products),
                cmocka_unit_test(test_rank_keys_order_as_the_ranking),
                cmocka_unit_test(test_a_stopped_search_is_abandoned),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
