/* vec.search as a job kind: its schema, its checks against the collection (each
 * refusal naming the field), the result a job gets (ids as JSON, the scores part,
 * count and version), a stored id as the query (the same answer as its vector
 * sent), and batches of jobs grouped into one search per collection version that
 * answer each job exactly as it alone would be answered. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "params.h"
#include "vec_search/vec_search.h"
#include "vec_test.h"

static const struct kiln_kind *kind = &kiln_kind_vec_search;

static struct vec_search_params params_of(const char *json)
{
        struct vec_search_params p;
        struct kiln_error err;
        json_t *in = json_loads(json, 0, NULL), *canonical = NULL;

        assert_non_null(in);
        assert_int_equal(kiln_params_validate(kind, in, &canonical, &p, &err), 0);
        json_decref(in);
        json_decref(canonical);
        return p;
}

static void test_schema_defaults_k_and_refuses_what_is_out_of_range(void **state)
{
        static const char *const bad[][2] = {
                { "{\"k\":5}", "params.collection" },
                { "{\"collection\":\"c\",\"k\":0}", "params.k" },
                { "{\"collection\":\"c\",\"k\":1001}", "params.k" },
                { "{\"collection\":\"c\",\"k\":2.5}", "params.k" },
                { "{\"collection\":7}", "params.collection" },
                { "{\"collection\":\"\"}", "params.collection" },
        };
        struct kiln_error err;
        struct vec_search_params p = params_of("{\"collection\":\"docs\"}");
        json_t *canonical = NULL;

        assert_string_equal(p.collection, "docs");
        assert_int_equal(p.k, 10);
        p = params_of("{\"collection\":\"docs\",\"k\":1000}");
        assert_int_equal(p.k, 1000);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                json_t *in = json_loads(bad[i][0], 0, NULL);
                assert_int_equal(kiln_params_validate(kind, in, &canonical, &p, &err), -EINVAL);
                assert_string_equal(err.field, bad[i][1]);
                json_decref(in);
        }
        /* Inline queries are an input, not a parameter: not in the canonical params. */
        json_t *in = json_loads("{\"collection\":\"docs\",\"queries\":[[1,2]]}", 0, NULL);
        assert_int_equal(kiln_params_validate(kind, in, &canonical, &p, &err), 0);
        assert_null(json_object_get(canonical, "queries"));
        json_decref(canonical);
        json_decref(in);
        assert_int_equal(kiln_params_schema_check(kind, &err), 0);
}

static void test_query_id_is_a_parameter_of_up_to_256_bytes(void **state)
{
        struct kiln_error err;
        struct vec_search_params p = params_of("{\"collection\":\"docs\"}");
        json_t *canonical = NULL, *in;
        char json[600];

        assert_string_equal(p.query_id, "");
        p = params_of("{\"collection\":\"docs\",\"query_id\":\"doc-7\"}");
        assert_string_equal(p.query_id, "doc-7");
        /* In the canonical params (the cache key); absent when not given. */
        in = json_loads("{\"collection\":\"docs\",\"query_id\":\"doc-7\"}", 0, NULL);
        assert_int_equal(kiln_params_validate(kind, in, &canonical, &p, &err), 0);
        assert_string_equal(json_string_value(json_object_get(canonical, "query_id")), "doc-7");
        json_decref(canonical);
        json_decref(in);
        in = json_loads("{\"collection\":\"docs\"}", 0, NULL);
        assert_int_equal(kiln_params_validate(kind, in, &canonical, &p, &err), 0);
        assert_null(json_object_get(canonical, "query_id"));
        json_decref(canonical);
        json_decref(in);
        /* 256 bytes is the longest id; 257 and a number are refused. */
        char id[258];
        memset(id, 'x', 257);
        id[256] = '\0';
        snprintf(json, sizeof(json), "{\"collection\":\"c\",\"query_id\":\"%s\"}", id);
        p = params_of(json);
        assert_int_equal(strlen(p.query_id), 256);
        id[256] = 'x';
        id[257] = '\0';
        snprintf(json, sizeof(json), "{\"collection\":\"c\",\"query_id\":\"%s\"}", id);
        static const char *const bad[] = { NULL, "{\"collection\":\"c\",\"query_id\":7}",
                                           "{\"collection\":\"c\",\"query_id\":[\"a\"]}" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                in = json_loads(bad[i] ? bad[i] : json, 0, NULL);
                assert_non_null(in);
                assert_int_equal(kiln_params_validate(kind, in, &canonical, &p, &err), -EINVAL);
                assert_string_equal(err.field, "params.query_id");
                json_decref(in);
        }
}

/* ---- one job ---- */

struct job {
        struct vec_search_params p;
        struct kiln_array in;
        struct kiln_object obj;
        struct kiln_result res;
        struct kiln_exec ex;
        atomic_int stop;
        struct kiln_task t;
};

static void job_init(struct job *j, const struct vec_collection *c, uint64_t version, int32_t k, const float *q,
                     size_t m, uint32_t dim)
{
        uint64_t shape[2] = { m, dim };

        memset(j, 0, sizeof(*j));
        snprintf(j->p.collection, sizeof(j->p.collection), "docs");
        j->p.k = k;
        assert_int_equal(kiln_array_init(&j->in, "queries", KILN_DTYPE_F32, 2, shape, q, m * dim * sizeof(float),
                                         NULL),
                         0);
        j->obj = (struct kiln_object){ .cls = &vec_collection_class, .version = version, .snapshot = c };
        atomic_init(&j->stop, 0);
        j->ex.stop = &j->stop;
        j->t = (struct kiln_task){ .params = &j->p, .inputs = &j->in, .n_inputs = 1, .object = &j->obj,
                                   .result = &j->res, .exec = &j->ex };
}

/* A job whose query is the stored item `id` (no inputs). */
static void job_init_id(struct job *j, const struct vec_collection *c, uint64_t version, int32_t k, const char *id)
{
        memset(j, 0, sizeof(*j));
        snprintf(j->p.collection, sizeof(j->p.collection), "docs");
        snprintf(j->p.query_id, sizeof(j->p.query_id), "%s", id);
        j->p.k = k;
        j->obj = (struct kiln_object){ .cls = &vec_collection_class, .version = version, .snapshot = c };
        atomic_init(&j->stop, 0);
        j->ex.stop = &j->stop;
        j->t = (struct kiln_task){ .params = &j->p, .inputs = NULL, .n_inputs = 0, .object = &j->obj,
                                   .result = &j->res, .exec = &j->ex };
}

/* Two finished jobs hold the same ids and, bit for bit, the same scores. */
static void expect_same_result(const struct job *a, const struct job *b)
{
        const struct kiln_part *sa = kiln_result_find_part(&a->res, "scores");
        const struct kiln_part *sb = kiln_result_find_part(&b->res, "scores");

        assert_int_equal(a->t.status, 0);
        assert_int_equal(b->t.status, 0);
        assert_string_equal(kiln_result_find(&a->res, "ids")->text, kiln_result_find(&b->res, "ids")->text);
        assert_int_equal(kiln_result_find(&a->res, "count")->i, kiln_result_find(&b->res, "count")->i);
        assert_int_equal(kiln_result_find(&a->res, "collection_version")->i,
                         kiln_result_find(&b->res, "collection_version")->i);
        assert_non_null(sa);
        assert_non_null(sb);
        assert_int_equal(sa->ndim, 2);
        assert_memory_equal(sa->shape, sb->shape, sizeof(sa->shape));
        assert_int_equal(sa->bytes, sb->bytes);
        assert_memory_equal(sa->data, sb->data, sa->bytes);
}

/* The answer a job must get, from the reference search: ids as JSON text and scores. */
static char *expected_ids(const struct vec_collection *c, const float *q, size_t m, uint32_t k, float *ret_scores)
{
        json_t *all = json_array();
        uint64_t *idx = malloc((k + 1) * sizeof(*idx));
        float *score = malloc((k + 1) * sizeof(*score)), *qp = malloc(c->dim * sizeof(float));
        uint32_t n_out = c->count < k ? (uint32_t)c->count : k;

        for (size_t i = 0; i < m; i++) {
                json_t *row = json_array();
                memcpy(qp, q + i * c->dim, c->dim * sizeof(float));
                assert_int_equal(vec_row_prepare(c->metric, qp, c->dim), 0);
                assert_int_equal(vec_search_ref(c, qp, k, idx, score), n_out);
                for (uint32_t h = 0; h < n_out; h++) {
                        size_t len;
                        const uint8_t *id = vec_collection_id(c, idx[h], &len);
                        json_array_append_new(row, json_stringn((const char *)id, len));
                        ret_scores[i * n_out + h] = score[h];
                }
                json_array_append_new(all, row);
        }
        char *text = json_dumps(all, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(all);
        free(idx);
        free(score);
        free(qp);
        return text;
}

/* The job's result is the reference's answer, in the result's shape. */
static void expect_answer(const struct job *j, const struct vec_collection *c, const float *q, size_t m,
                          uint64_t version)
{
        uint32_t n_out = c->count < (uint64_t)j->p.k ? (uint32_t)c->count : (uint32_t)j->p.k;
        float *want = malloc((m * n_out + 1) * sizeof(float));
        char *ids = expected_ids(c, q, m, (uint32_t)j->p.k, want);
        const struct kiln_value *v = kiln_result_find(&j->res, "ids");
        const struct kiln_part *s = kiln_result_find_part(&j->res, "scores");
        json_t *got;

        assert_int_equal(j->t.status, 0);
        assert_non_null(v);
        assert_int_equal(v->type, KILN_V_JSON);
        got = json_loads(v->text, 0, NULL);
        assert_non_null(got);
        char *again = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        assert_string_equal(again, ids);
        free(again);
        json_decref(got);
        assert_int_equal(kiln_result_find(&j->res, "count")->i, (int64_t)c->count);
        assert_int_equal(kiln_result_find(&j->res, "collection_version")->i, (int64_t)version);
        assert_non_null(s);
        assert_int_equal(s->dtype, KILN_DTYPE_F32);
        assert_int_equal(s->ndim, 2);
        assert_int_equal(s->shape[0], m);
        assert_int_equal(s->shape[1], n_out);
        assert_memory_equal(s->data, want, m * n_out * sizeof(float));
        free(want);
        free(ids);
}

static void test_a_job_gets_ids_scores_count_and_version(void **state)
{
        enum { N = 800, DIM = 20, M = 3 };
        static const enum kiln_metric metrics[] = { KILN_METRIC_COSINE, KILN_METRIC_IP, KILN_METRIC_L2 };
        uint64_t s = 17;
        float *rows = vt_gauss_rows(&s, N, DIM), *q = vt_gauss_rows(&s, M, DIM);

        for (size_t mt = 0; mt < 3; mt++) {
                struct vec_collection *c = vt_collection(metrics[mt], rows, N, DIM);
                static const int32_t ks[] = { 1, 10, 1000 };
                for (size_t kk = 0; kk < 3; kk++) {
                        struct job j;
                        job_init(&j, c, 42 + mt, ks[kk], q, M, DIM);
                        assert_int_equal(kiln_kind_check(kind, &j.p, &j.in, 1, &j.obj, NULL), 0);
                        assert_int_equal(kind->run_cpu(&j.t), 0);
                        expect_answer(&j, c, q, M, 42 + mt);
                        kiln_result_clear(&j.res);
                }
                vec_collection_free(c);
        }
        free(rows);
        free(q);
}

/* Items given in the order of an array of (id, row). */
struct pairs {
        const struct kiln_object_id *ids;
        const float *rows;
        uint32_t dim;
        size_t n;
};

static int pairs_foreach(void *ctx, kiln_object_item_cb cb, void *userdata)
{
        const struct pairs *p = ctx;

        for (size_t i = 0; i < p->n; i++) {
                int r = cb(p->ids[i].data, p->ids[i].len, (const uint8_t *)(p->rows + i * p->dim),
                           p->dim * sizeof(float), userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Ids are any bytes but NUL: quotes, backslashes, control characters and UTF-8
 * come back as the same strings. */
static void test_ids_come_back_as_the_same_strings(void **state)
{
        static const char *const ids[] = { "\"quoted\"", "back\\slash", "tab\there", "\xc3\xa9t\xc3\xa9", "z" };
        float rows[5][2] = { { 1, 0 }, { 2, 0 }, { 3, 0 }, { 4, 0 }, { 5, 0 } }, q[2] = { 1, 0 };
        struct kiln_object_id oid[5];
        uint8_t meta[KILN_VEC_META_BYTES];
        struct kiln_object_info info;
        struct pairs items = { oid, &rows[0][0], 2, 5 };
        struct kiln_object_source src = { .meta = meta, .meta_len = sizeof(meta), .count = 5,
                                          .foreach_items = pairs_foreach, .ctx = &items };
        struct vec_collection *c = NULL;
        struct job j;

        for (size_t i = 0; i < 5; i++)
                oid[i] = (struct kiln_object_id){ ids[i], strlen(ids[i]) };
        kiln_vec_meta_encode(KILN_METRIC_IP, 2, meta);
        struct kiln_object_put put = { .meta = meta, .meta_len = sizeof(meta), .ids = oid, .n = 5,
                                       .rows = &rows[0][0], .rows_bytes = sizeof(rows) };
        assert_int_equal(vec_collection_class.validate(&put, &info, NULL), 0);
        /* Out of id order: compile sorts them. */
        assert_int_equal(vec_collection_compile(&src, &c, NULL), 0);
        job_init(&j, c, 1, 5, q, 1, 2);
        assert_int_equal(kind->run_cpu(&j.t), 0);
        json_t *got = json_loads(kiln_result_find(&j.res, "ids")->text, 0, NULL);
        assert_non_null(got);
        /* Scores 5, 4, 3, 2, 1: the ids in reverse put order. */
        for (size_t h = 0; h < 5; h++)
                assert_string_equal(json_string_value(json_array_get(json_array_get(got, 0), h)), ids[4 - h]);
        json_decref(got);
        kiln_result_clear(&j.res);
        vec_collection_free(c);
        /* A NUL inside an id is refused at put. */
        oid[2] = (struct kiln_object_id){ "a\0b", 3 };
        struct kiln_error oerr;
        assert_int_equal(vec_collection_class.validate(&put, &info, &oerr), -EINVAL);
        assert_string_equal(oerr.field, "ids[2]");
}

/* ---- refusals ---- */

static void test_refusals_name_the_field(void **state)
{
        enum { DIM = 4 };
        float rows[3 * DIM] = { 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0 };
        float good[2 * DIM] = { 1, 2, 3, 4, 5, 6, 7, 8 }, wide[2 * 5] = { 0 };
        struct vec_collection *cos = vt_collection(KILN_METRIC_COSINE, rows, 3, DIM);
        struct vec_collection *ip = vt_collection(KILN_METRIC_IP, rows, 3, DIM);
        struct kiln_error err;
        struct job j;

        /* Another dim than the collection's. */
        job_init(&j, ip, 1, 3, wide, 2, 5);
        assert_int_equal(kiln_kind_check(kind, &j.p, &j.in, 1, &j.obj, &err), -EINVAL);
        assert_string_equal(err.field, "inputs.queries");
        assert_non_null(strstr(err.message, "dim 5"));
        assert_int_equal(kind->run_cpu(&j.t), -EINVAL);
        /* NaN, +-infinity; an all-zero query under cosine. */
        static const float bads[] = { NAN, INFINITY, -INFINITY };
        for (size_t b = 0; b < 3; b++) {
                float q[2 * DIM];
                memcpy(q, good, sizeof(q));
                q[DIM + 2] = bads[b];
                job_init(&j, ip, 1, 3, q, 2, DIM);
                assert_int_equal(kiln_kind_check(kind, &j.p, &j.in, 1, &j.obj, &err), -EINVAL);
                assert_string_equal(err.field, "inputs.queries[1]");
                /* Also without the collection (what a submission can check). */
                assert_int_equal(kind->check(&j.p, &j.in, 1, NULL, &err), -EINVAL);
                assert_string_equal(err.field, "inputs.queries[1]");
        }
        float zero[DIM] = { 0 };
        job_init(&j, cos, 1, 3, zero, 1, DIM);
        assert_int_equal(kiln_kind_check(kind, &j.p, &j.in, 1, &j.obj, &err), -EINVAL);
        assert_string_equal(err.field, "inputs.queries[0]");
        job_init(&j, ip, 1, 3, zero, 1, DIM); /* ip takes it: every score is 0 */
        assert_int_equal(kiln_kind_check(kind, &j.p, &j.in, 1, &j.obj, &err), 0);
        /* More queries than a job may hold. */
        float *many = calloc((VEC_Q_MAX + 1) * DIM, sizeof(float));
        job_init(&j, ip, 1, 3, many, VEC_Q_MAX + 1, DIM);
        assert_int_equal(kiln_kind_check(kind, &j.p, &j.in, 1, &j.obj, &err), -EINVAL);
        assert_string_equal(err.field, "inputs.queries");
        free(many);
        /* No queries; no collection. */
        job_init(&j, ip, 1, 3, good, 2, DIM);
        assert_int_equal(kiln_kind_check(kind, &j.p, NULL, 0, &j.obj, &err), -EINVAL);
        assert_string_equal(err.field, "inputs.queries");
        assert_int_equal(kiln_kind_check(kind, &j.p, &j.in, 1, NULL, &err), -EINVAL);
        assert_string_equal(err.field, "params.collection");
        vec_collection_free(cos);
        vec_collection_free(ip);
}

/* Checks j at submission against `meta` and with the collection when it runs:
 * both refuse it with the same field and message, or both take it. */
static void assert_same_verdict(struct job *j, const struct kiln_array *in, size_t n_in, const uint8_t *meta,
                                int want)
{
        struct kiln_error at_run = { "", "" }, at_submit = { "", "" };

        assert_int_equal(kiln_kind_check(kind, &j->p, in, n_in, &j->obj, &at_run), want);
        assert_int_equal(kiln_kind_check_meta(kind, &j->p, in, n_in, j->obj.version, meta, KILN_VEC_META_BYTES,
                                              &at_submit),
                         want);
        assert_string_equal(at_submit.field, at_run.field);
        assert_string_equal(at_submit.message, at_run.message);
}

/* At submission the queries are checked against the metric and dim the
 * collection's meta records: what the check with the collection refuses, except an
 * id it does not hold, is refused there with the same words. */
static void test_submission_checks_the_queries_against_the_meta(void **state)
{
        enum { DIM = 4 };
        float rows[3 * DIM] = { 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0 };
        float good[2 * DIM] = { 1, 2, 3, 4, 5, 6, 7, 8 }, wide[2 * 5] = { 1, 1 }, zero[DIM] = { 0 };
        float nan[2 * DIM] = { 1, 2, 3, 4, 5, 6, NAN, 8 };
        struct vec_collection *cos = vt_collection(KILN_METRIC_COSINE, rows, 3, DIM);
        uint8_t meta[KILN_VEC_META_BYTES], bad_meta[KILN_VEC_META_BYTES];
        struct kiln_error err;
        struct job j;

        kiln_vec_meta_encode(KILN_METRIC_COSINE, DIM, meta);
        job_init(&j, cos, 7, 3, good, 2, DIM);
        assert_same_verdict(&j, &j.in, 1, meta, 0);
        job_init(&j, cos, 7, 3, wide, 2, 5);
        assert_same_verdict(&j, &j.in, 1, meta, -EINVAL);
        assert_int_equal(kiln_kind_check_meta(kind, &j.p, &j.in, 1, 7, meta, sizeof(meta), &err), -EINVAL);
        assert_string_equal(err.field, "inputs.queries");
        assert_non_null(strstr(err.message, "dim 5"));
        job_init(&j, cos, 7, 3, nan, 2, DIM);
        assert_same_verdict(&j, &j.in, 1, meta, -EINVAL);
        job_init(&j, cos, 7, 3, zero, 1, DIM);
        assert_same_verdict(&j, &j.in, 1, meta, -EINVAL);
        float *many = calloc((VEC_Q_MAX + 1) * DIM, sizeof(float));
        assert_non_null(many);
        job_init(&j, cos, 7, 3, many, VEC_Q_MAX + 1, DIM);
        assert_same_verdict(&j, &j.in, 1, meta, -EINVAL);
        free(many);
        /* Neither queries nor an id; both. */
        job_init(&j, cos, 7, 3, good, 2, DIM);
        assert_same_verdict(&j, NULL, 0, meta, -EINVAL);
        snprintf(j.p.query_id, sizeof(j.p.query_id), "r000001");
        assert_same_verdict(&j, &j.in, 1, meta, -EINVAL);
        /* Whether an id is stored waits for the items. */
        job_init_id(&j, cos, 7, 3, "nowhere");
        assert_int_equal(kiln_kind_check_meta(kind, &j.p, NULL, 0, 7, meta, sizeof(meta), NULL), 0);
        assert_int_equal(kiln_kind_check(kind, &j.p, NULL, 0, &j.obj, NULL), -EINVAL);
        /* A meta not known, or not readable: the shape and finiteness alone. */
        memcpy(bad_meta, meta, sizeof(meta));
        bad_meta[0] = 9;
        const uint8_t *unknown[] = { NULL, bad_meta };
        for (size_t i = 0; i < 2; i++) {
                job_init(&j, cos, 7, 3, wide, 2, 5);
                assert_int_equal(kiln_kind_check_meta(kind, &j.p, &j.in, 1, 7, unknown[i], sizeof(meta), NULL), 0);
                job_init(&j, cos, 7, 3, zero, 1, DIM);
                assert_int_equal(kiln_kind_check_meta(kind, &j.p, &j.in, 1, 7, unknown[i], sizeof(meta), NULL), 0);
                job_init(&j, cos, 7, 3, nan, 2, DIM);
                assert_int_equal(kiln_kind_check_meta(kind, &j.p, &j.in, 1, 7, unknown[i], sizeof(meta), &err),
                                 -EINVAL);
                assert_string_equal(err.field, "inputs.queries[1]");
        }
        /* A meta of the right bytes but another length is not read. */
        job_init(&j, cos, 7, 3, wide, 2, 5);
        assert_int_equal(kiln_kind_check_meta(kind, &j.p, &j.in, 1, 7, meta, sizeof(meta) - 1, NULL), 0);
        vec_collection_free(cos);
}

/* The queries sent inline as JSON are the same input as the binary part. */
static void test_inline_queries_are_the_same_input(void **state)
{
        float q[2][3] = { { 0.5f, -1.25f, 3 }, { 1e-3f, 7, 0 } };
        json_t *params = json_loads("{\"collection\":\"c\",\"queries\":[[0.5,-1.25,3],[0.001,7,0]]}", 0, NULL);
        struct kiln_array arr[KILN_MAX_INPUTS];
        void *data[KILN_MAX_INPUTS];
        struct kiln_error err;

        assert_int_equal(kiln_inputs_from_params(kind, params, 1 << 20, arr, data, &err), 1);
        assert_string_equal(arr[0].name, "queries");
        assert_int_equal(arr[0].dtype, KILN_DTYPE_F32);
        assert_int_equal(arr[0].ndim, 2);
        assert_int_equal(arr[0].shape[0], 2);
        assert_int_equal(arr[0].shape[1], 3);
        assert_memory_equal(arr[0].data, q, sizeof(q));
        free(data[0]);
        json_decref(params);
}

/* ---- a stored id as the query ---- */

/* A query_id job answers exactly what sending the vector that was put answers
 * (under cosine the stored row is that vector as a query becomes), and as the
 * stored row sent itself for ip and l2; the item itself comes first where nothing
 * beats it. */
static void test_a_stored_id_answers_as_its_vector_sent(void **state)
{
        enum { N = 700, DIM = 24 };
        static const enum kiln_metric metrics[] = { KILN_METRIC_COSINE, KILN_METRIC_IP, KILN_METRIC_L2 };
        static const size_t picks[] = { 0, 1, 345, N - 1 };
        uint64_t s = 23;
        float *rows = vt_gauss_rows(&s, N, DIM);

        for (size_t mt = 0; mt < 3; mt++) {
                struct vec_collection *c = vt_collection(metrics[mt], rows, N, DIM);
                for (size_t pi = 0; pi < sizeof(picks) / sizeof(picks[0]); pi++) {
                        size_t row = picks[pi];
                        char id[16];
                        snprintf(id, sizeof(id), "r%06zu", row);
                        for (int32_t k = 1; k <= 100; k *= 10) {
                                struct job by_id, by_vector, by_stored;
                                job_init_id(&by_id, c, 5, k, id);
                                job_init(&by_vector, c, 5, k, rows + row * DIM, 1, DIM);
                                job_init(&by_stored, c, 5, k, c->rows + row * DIM, 1, DIM);
                                assert_int_equal(kiln_kind_check(kind, &by_id.p, NULL, 0, &by_id.obj, NULL), 0);
                                assert_int_equal(kind->run_cpu(&by_id.t), 0);
                                assert_int_equal(kind->run_cpu(&by_vector.t), 0);
                                assert_int_equal(kind->run_cpu(&by_stored.t), 0);
                                expect_same_result(&by_id, &by_vector);
                                if (metrics[mt] != KILN_METRIC_COSINE)
                                        expect_same_result(&by_id, &by_stored);
                                /* And the reference's answer for the vector put. */
                                expect_answer(&by_id, c, rows + row * DIM, 1, 5);
                                json_t *ids = json_loads(kiln_result_find(&by_id.res, "ids")->text, 0, NULL);
                                const float *score = kiln_result_find_part(&by_id.res, "scores")->data;
                                if (metrics[mt] == KILN_METRIC_L2) {
                                        /* Distinct gaussian rows: the item is its own nearest, at 0. */
                                        assert_string_equal(json_string_value(json_array_get(json_array_get(ids, 0), 0)),
                                                            id);
                                        assert_true(score[0] == 0.0f);
                                } else if (metrics[mt] == KILN_METRIC_COSINE) {
                                        assert_string_equal(json_string_value(json_array_get(json_array_get(ids, 0), 0)),
                                                            id);
                                        assert_true(fabsf(score[0] - 1.0f) < 1e-6f);
                                }
                                json_decref(ids);
                                kiln_result_clear(&by_id.res);
                                kiln_result_clear(&by_vector.res);
                                kiln_result_clear(&by_stored.res);
                        }
                }
                vec_collection_free(c);
        }
        free(rows);
}

/* Under cosine, scaling a stored (unit) row again may move a last bit: a stored id
 * is the query as stored, so it answers as the vector that was put, even for such
 * a row. */
static void test_a_stored_cosine_row_is_not_scaled_again(void **state)
{
        enum { N = 2000, DIM = 3 };
        uint64_t s = 41;
        float *rows = vt_gauss_rows(&s, N, DIM), again[DIM];
        struct vec_collection *c = vt_collection(KILN_METRIC_COSINE, rows, N, DIM);
        size_t row = N;

        for (size_t i = 0; i < N && row == N; i++) {
                memcpy(again, c->rows + i * DIM, sizeof(again));
                assert_int_equal(vec_row_prepare(KILN_METRIC_COSINE, again, DIM), 0);
                if (memcmp(again, c->rows + i * DIM, sizeof(again)))
                        row = i;
        }
        assert_true(row < N); /* a few in a thousand such rows at dim 3 */
        char id[16];
        struct job by_id, by_vector;
        snprintf(id, sizeof(id), "r%06zu", row);
        job_init_id(&by_id, c, 2, 50, id);
        job_init(&by_vector, c, 2, 50, rows + row * DIM, 1, DIM);
        assert_int_equal(kind->run_cpu(&by_id.t), 0);
        assert_int_equal(kind->run_cpu(&by_vector.t), 0);
        expect_same_result(&by_id, &by_vector);
        kiln_result_clear(&by_id.res);
        kiln_result_clear(&by_vector.res);
        vec_collection_free(c);
        free(rows);
}

/* Exactly one of inputs.queries and params.query_id; an id the bound version does
 * not hold is refused naming params.query_id, at the check and at the run, and
 * before the collection is known nothing about the id can be said. */
static void test_query_id_refusals_name_the_field(void **state)
{
        enum { DIM = 3 };
        float rows[4 * DIM] = { 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1 };
        struct vec_collection *c = vt_collection(KILN_METRIC_IP, rows, 4, DIM);
        struct kiln_error err;
        struct job j;

        /* Both. */
        job_init(&j, c, 3, 2, rows, 1, DIM);
        snprintf(j.p.query_id, sizeof(j.p.query_id), "r000001");
        assert_int_equal(kiln_kind_check(kind, &j.p, &j.in, 1, &j.obj, &err), -EINVAL);
        assert_string_equal(err.field, "params.query_id");
        assert_non_null(strstr(err.message, "both"));
        assert_int_equal(kind->check(&j.p, &j.in, 1, NULL, &err), -EINVAL);
        assert_string_equal(err.field, "params.query_id");
        assert_int_equal(kind->run_cpu(&j.t), -EINVAL);
        assert_string_equal(j.t.error.field, "params.query_id");
        /* Neither. */
        job_init_id(&j, c, 3, 2, "");
        assert_int_equal(kiln_kind_check(kind, &j.p, NULL, 0, &j.obj, &err), -EINVAL);
        assert_string_equal(err.field, "inputs.queries");
        assert_non_null(strstr(err.message, "params.query_id"));
        /* An id not in this version: "r0000010" is longer than r000001, "r" shorter,
         * "" never stored; the message shows the id and the version. */
        static const char *const missing[] = { "r0000010", "r", "r000004", "a", "\xc3\xa9" };
        for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
                job_init_id(&j, c, 3, 2, missing[i]);
                assert_int_equal(kiln_kind_check(kind, &j.p, NULL, 0, &j.obj, &err), -EINVAL);
                assert_string_equal(err.field, "params.query_id");
                assert_non_null(strstr(err.message, missing[i]));
                assert_non_null(strstr(err.message, "version 3"));
                assert_int_equal(kind->run_cpu(&j.t), -EINVAL);
                assert_string_equal(j.t.error.field, "params.query_id");
                assert_int_equal(j.res.n_parts + j.res.n_scalars, 0);
                /* Without the collection (at submission) it cannot be known. */
                assert_int_equal(kind->check(&j.p, NULL, 0, NULL, &err), 0);
        }
        /* A long id is shown cut, between UTF-8 characters. */
        char longid[257];
        memset(longid, 'a', 63);
        for (size_t i = 63; i + 1 < sizeof(longid); i += 2)
                memcpy(longid + i, "\xc3\xa9", 2);
        longid[255] = '\0';
        job_init_id(&j, c, 3, 2, longid);
        assert_int_equal(kiln_kind_check(kind, &j.p, NULL, 0, &j.obj, &err), -EINVAL);
        assert_non_null(strstr(err.message, "\"aaaa"));
        assert_non_null(strstr(err.message, "a...\""));
        assert_null(strchr(err.message, '\xc3'));
        /* A job's result bound: one query; with the collection, its ids' text too
         * (ids like "r000000": 9 bytes as JSON strings, 2 of them and a comma, the
         * brackets and the NUL). */
        job_init_id(&j, c, 3, 2, "r000000");
        assert_int_equal(kind->result_size(&j.p, NULL, 0, NULL), 2 * sizeof(float));
        assert_int_equal(kind->result_size(&j.p, NULL, 0, &j.obj), 2 * sizeof(float) + (2 * (9 + 1) + 2) + 3);
        assert_int_equal(kind->values_text_size(&j.p, NULL, 0, &j.obj), (2 * (9 + 1) + 2) + 3);
        assert_int_equal(kind->values_text_size(&j.p, NULL, 0, NULL), 0);
        assert_int_equal(vec_task_query_count(&j.t), 1);
        vec_collection_free(c);
}

/* ---- batches ---- */

/* Jobs against two collections (and two versions of one), with different k and
 * query counts, one of them bad: each gets what it would get alone. */
static void test_a_batch_answers_each_job_as_alone(void **state)
{
        enum { N = 1500, DIM = 12, JOBS = 7 };
        uint64_t s = 31;
        float *rows = vt_gauss_rows(&s, N, DIM), *q = vt_gauss_rows(&s, 40, DIM), wide[5] = { 0 };
        struct vec_collection *a = vt_collection(KILN_METRIC_L2, rows, N, DIM);
        struct vec_collection *b = vt_collection(KILN_METRIC_IP, rows, N / 2, DIM);
        struct job *j = calloc(JOBS, sizeof(*j));
        struct kiln_task *t[JOBS];
        static const int32_t ks[JOBS] = { 10, 3, 50, 10, 1, 7, 10 };
        static const size_t ms[JOBS] = { 1, 1, 4, 1, 2, 1, 1 };

        for (size_t i = 0; i < JOBS; i++) {
                const struct vec_collection *c = i % 3 == 1 ? b : a;
                job_init(&j[i], c, i == 6 ? 2 : 1, ks[i], q + i * 5 * DIM, ms[i], DIM);
                t[i] = &j[i].t;
        }
        job_init(&j[5], a, 1, 7, wide, 1, 5); /* the wrong dim */
        t[5] = &j[5].t;
        assert_int_equal(kind->run_cpu_batch(t, JOBS), 0);
        for (size_t i = 0; i < JOBS; i++) {
                if (i == 5) {
                        assert_int_equal(j[i].t.status, -EINVAL);
                        assert_string_equal(j[i].t.error.field, "inputs.queries");
                        continue;
                }
                expect_answer(&j[i], i % 3 == 1 ? b : a, q + i * 5 * DIM, ms[i], i == 6 ? 2 : 1);
                kiln_result_clear(&j[i].res);
        }
        /* Stored ids among vectors in one batch: each as alone; a missing id fails alone. */
        static const char *const qids[JOBS] = { "r000010", NULL, "r001499", NULL, "nope", "r000000", NULL };
        for (size_t i = 0; i < JOBS; i++) {
                const struct vec_collection *c = i % 3 == 1 ? b : a;
                if (qids[i])
                        job_init_id(&j[i], c, 1, ks[i], qids[i]);
                else
                        job_init(&j[i], c, 1, ks[i], q + i * 5 * DIM, ms[i], DIM);
                t[i] = &j[i].t;
        }
        assert_int_equal(kind->run_cpu_batch(t, JOBS), 0);
        for (size_t i = 0; i < JOBS; i++) {
                const struct vec_collection *c = i % 3 == 1 ? b : a;
                if (i == 4) {
                        assert_int_equal(j[i].t.status, -EINVAL);
                        assert_string_equal(j[i].t.error.field, "params.query_id");
                        continue;
                }
                if (qids[i]) {
                        uint64_t row;
                        assert_int_equal(vec_collection_find(c, qids[i], strlen(qids[i]), &row), 0);
                        expect_answer(&j[i], c, c->rows + row * DIM, 1, 1);
                } else {
                        expect_answer(&j[i], c, q + i * 5 * DIM, ms[i], 1);
                }
                kiln_result_clear(&j[i].res);
        }
        vec_collection_free(a);
        vec_collection_free(b);
        free(j);
        free(rows);
        free(q);
}

/* A job whose queries would take the group's kept answers past its bound (every
 * query keeps the group's largest k) is searched in a group of its own, after the
 * jobs around it: each still gets what it would get alone. */
static void test_a_group_keeps_a_bounded_number_of_answers(void **state)
{
        enum { N = 1200, DIM = 4, BIG = 5600, JOBS = 3 };
        uint64_t s = 77;
        float *rows = vt_gauss_rows(&s, N, DIM), *q = vt_gauss_rows(&s, BIG + 2, DIM);
        struct vec_collection *c = vt_collection(KILN_METRIC_IP, rows, N, DIM);
        struct job *j = calloc(JOBS, sizeof(*j));
        struct kiln_task *t[JOBS];
        static const int32_t ks[JOBS] = { 1000, 1, 1000 };
        static const size_t ms[JOBS] = { 1, BIG, 1 }, at[JOBS] = { 0, 1, BIG + 1 };

        /* 5,601 queries at k 1000 would keep 5.6 M answers, 67 MB. */
        assert_true((1 + BIG) * 1000ull > VEC_GROUP_ANSWERS_MAX);
        for (size_t i = 0; i < JOBS; i++) {
                job_init(&j[i], c, 1, ks[i], q + at[i] * DIM, ms[i], DIM);
                t[i] = &j[i].t;
        }
        /* The plan: the two small jobs together, the big one after them. */
        size_t group[JOBS];
        bool skip[JOBS] = { false };
        assert_int_equal(vec_plan_groups(t, JOBS, ms, skip, group), 2);
        assert_int_equal(group[0], 0);
        assert_int_equal(group[1], 1);
        assert_int_equal(group[2], 0);
        /* Within the bound (k 1 for all), one group; a skipped job is in none. */
        for (size_t i = 0; i < JOBS; i++)
                j[i].p.k = 1;
        skip[2] = true;
        assert_int_equal(vec_plan_groups(t, JOBS, ms, skip, group), 1);
        assert_int_equal(group[0], 0);
        assert_int_equal(group[1], 0);
        assert_int_equal(group[2], SIZE_MAX);
        /* Another version of the collection is another search. */
        skip[2] = false;
        j[1].obj.version = 2;
        assert_int_equal(vec_plan_groups(t, JOBS, ms, skip, group), 2);
        assert_int_equal(group[0], 0);
        assert_int_equal(group[1], 1);
        assert_int_equal(group[2], 0);
        j[1].obj.version = 1;
        for (size_t i = 0; i < JOBS; i++)
                j[i].p.k = ks[i];
        assert_int_equal(kind->run_cpu_batch(t, JOBS), 0);
        for (size_t i = 0; i < JOBS; i++) {
                expect_answer(&j[i], c, q + at[i] * DIM, ms[i], 1);
                kiln_result_clear(&j[i].res);
        }
        vec_collection_free(c);
        free(j);
        free(rows);
        free(q);
}

static void test_a_stopped_job_is_cancelled(void **state)
{
        enum { N = 100, DIM = 4 };
        uint64_t s = 2;
        float *rows = vt_gauss_rows(&s, N, DIM), q[DIM] = { 1, 2, 3, 4 };
        struct vec_collection *c = vt_collection(KILN_METRIC_IP, rows, N, DIM);
        struct job j;

        job_init(&j, c, 1, 5, q, 1, DIM);
        atomic_store(&j.stop, 1);
        assert_int_equal(kind->run_cpu(&j.t), -ECANCELED);
        kiln_result_clear(&j.res);
        vec_collection_free(c);
        free(rows);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_schema_defaults_k_and_refuses_what_is_out_of_range),
                cmocka_unit_test(test_query_id_is_a_parameter_of_up_to_256_bytes),
                cmocka_unit_test(test_a_job_gets_ids_scores_count_and_version),
                cmocka_unit_test(test_ids_come_back_as_the_same_strings),
                cmocka_unit_test(test_refusals_name_the_field),
                cmocka_unit_test(test_submission_checks_the_queries_against_the_meta),
                cmocka_unit_test(test_inline_queries_are_the_same_input),
                cmocka_unit_test(test_a_stored_id_answers_as_its_vector_sent),
                cmocka_unit_test(test_a_stored_cosine_row_is_not_scaled_again),
                cmocka_unit_test(test_query_id_refusals_name_the_field),
                cmocka_unit_test(test_a_batch_answers_each_job_as_alone),
                cmocka_unit_test(test_a_group_keeps_a_bounded_number_of_answers),
                cmocka_unit_test(test_a_stopped_job_is_cancelled),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
