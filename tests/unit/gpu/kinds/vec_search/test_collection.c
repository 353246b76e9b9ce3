/* vec.collection: puts are checked (and normalised for cosine) before they are
 * stored, snapshots hold ids in byte order beside one float32 matrix, and the
 * reference search agrees with a float64 brute force, ties broken by id. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vec_search/collection.h"

/* ---- building puts and item sources ---- */

static struct kiln_object_put make_put(enum kiln_metric metric, uint32_t dim, uint8_t meta[KILN_VEC_META_BYTES],
                                       const struct kiln_object_id *ids, size_t n, float *rows)
{
        kiln_vec_meta_encode(metric, dim, meta);
        return (struct kiln_object_put){ .meta = meta, .meta_len = KILN_VEC_META_BYTES, .ids = ids, .n = n,
                                         .rows = rows, .rows_bytes = n * dim * sizeof(float) };
}

static struct kiln_object_id id_of(const char *s)
{
        return (struct kiln_object_id){ s, strlen(s) };
}

/* Items handed to compile in a chosen order, as the store's foreach would. */
struct items {
        const struct kiln_object_id *ids;
        const float *rows;
        uint32_t dim;
        size_t n;
        const size_t *order;       /* NULL: 0..n-1 */
        int fail_at;               /* >= 0: return -EIO before that item */
};

static int items_foreach(void *ctx, kiln_object_item_cb cb, void *userdata)
{
        const struct items *it = ctx;

        for (size_t i = 0; i < it->n; i++) {
                size_t k = it->order ? it->order[i] : i;
                int rc;
                if ((int)i == it->fail_at)
                        return -EIO;
                rc = cb(it->ids[k].data, it->ids[k].len, (const uint8_t *)(it->rows + k * it->dim),
                        it->dim * sizeof(float), userdata);
                if (rc < 0)
                        return rc;
        }
        return 0;
}

static struct vec_collection *compile_items(enum kiln_metric metric, struct items *it, struct kiln_error *err,
                                            int *ret_rc)
{
        uint8_t meta[KILN_VEC_META_BYTES];
        struct kiln_object_source src = { .meta = meta, .meta_len = sizeof(meta), .count = it->n,
                                          .foreach_items = items_foreach, .ctx = it };
        struct vec_collection *c = NULL;

        kiln_vec_meta_encode(metric, it->dim, meta);
        *ret_rc = vec_collection_compile(&src, &c, err);
        return c;
}

static double norm64(const float *x, uint32_t dim)
{
        double s = 0;
        for (uint32_t j = 0; j < dim; j++)
                s += (double)x[j] * x[j];
        return sqrt(s);
}

/* ---- meta and metric names ---- */

static void test_meta_is_eight_canonical_bytes_and_round_trips(void **state)
{
        static const uint8_t expect[KILN_VEC_META_BYTES] = { 1, KILN_METRIC_L2, 0, 0, 0x00, 0x10, 0, 0 };
        static const enum kiln_metric metrics[] = { KILN_METRIC_COSINE, KILN_METRIC_IP, KILN_METRIC_L2 };
        uint8_t meta[KILN_VEC_META_BYTES];
        enum kiln_metric m;
        uint32_t dim;

        kiln_vec_meta_encode(KILN_METRIC_L2, 4096, meta);
        assert_memory_equal(meta, expect, sizeof(expect));
        for (size_t i = 0; i < 3; i++)
                for (uint32_t d = 1; d <= KILN_VEC_DIM_MAX; d += 1365) {
                        kiln_vec_meta_encode(metrics[i], d, meta);
                        assert_int_equal(kiln_vec_meta_decode(meta, sizeof(meta), &m, &dim), 0);
                        assert_int_equal(m, metrics[i]);
                        assert_int_equal(dim, d);
                }
        kiln_vec_meta_encode(KILN_METRIC_IP, 0, meta);
        assert_int_equal(kiln_vec_meta_decode(meta, sizeof(meta), &m, &dim), -EINVAL);
        kiln_vec_meta_encode(KILN_METRIC_IP, KILN_VEC_DIM_MAX + 1, meta);
        assert_int_equal(kiln_vec_meta_decode(meta, sizeof(meta), &m, &dim), -EINVAL);
        kiln_vec_meta_encode((enum kiln_metric)4, 8, meta);
        assert_int_equal(kiln_vec_meta_decode(meta, sizeof(meta), &m, &dim), -EINVAL);
        kiln_vec_meta_encode(KILN_METRIC_IP, 8, meta);
        assert_int_equal(kiln_vec_meta_decode(meta, sizeof(meta) - 1, &m, &dim), -EINVAL);
        meta[0] = 2;
        assert_int_equal(kiln_vec_meta_decode(meta, sizeof(meta), &m, &dim), -EINVAL);
        assert_int_equal(kiln_vec_meta_decode(NULL, 8, &m, &dim), -EINVAL);
}

static void test_metric_names_parse_exactly(void **state)
{
        enum kiln_metric m = 0;

        assert_int_equal(kiln_metric_from_name("cosine", &m), 0);
        assert_int_equal(m, KILN_METRIC_COSINE);
        assert_int_equal(kiln_metric_from_name("ip", &m), 0);
        assert_int_equal(m, KILN_METRIC_IP);
        assert_int_equal(kiln_metric_from_name("l2", &m), 0);
        assert_int_equal(m, KILN_METRIC_L2);
        assert_int_equal(kiln_metric_from_name("L2", &m), -EINVAL);
        assert_int_equal(kiln_metric_from_name("l", &m), -EINVAL);
        assert_int_equal(kiln_metric_from_name("l2 ", &m), -EINVAL);
        assert_int_equal(kiln_metric_from_name(NULL, &m), -EINVAL);
        assert_string_equal(kiln_metric_name(KILN_METRIC_IP), "ip");
        assert_null(kiln_metric_name((enum kiln_metric)0));
}

/* ---- puts ---- */

static void test_cosine_puts_are_normalised_in_place(void **state)
{
        struct kiln_object_id ids[] = { id_of("a"), id_of("b"), id_of("c"), id_of("d") };
        float rows[] = { 3, 4, 0, -2, 1e-30f, 0, 3e38f, -3e38f };
        uint8_t meta[KILN_VEC_META_BYTES];
        struct kiln_object_put put = make_put(KILN_METRIC_COSINE, 2, meta, ids, 4, rows);
        struct kiln_object_info info = { 0 };
        struct kiln_error err = { 0 };

        assert_int_equal(vec_collection_class.validate(&put, &info, &err), 0);
        assert_int_equal(info.count, 4);
        assert_int_equal(info.dim, 2);
        assert_int_equal(info.metric, KILN_METRIC_COSINE);
        assert_int_equal(info.trees, 0);
        assert_true(rows[0] == 0.6f && rows[1] == 0.8f);
        assert_true(rows[2] == 0.0f && rows[3] == -1.0f);
        assert_true(rows[4] == 1.0f && rows[5] == 0.0f);
        assert_true(fabsf(rows[6] - (float)M_SQRT1_2) <= FLT_EPSILON && rows[7] == -rows[6]);
        for (int i = 0; i < 4; i++)
                assert_true(fabs(norm64(rows + 2 * i, 2) - 1.0) < 1e-7);
}

static void test_ip_and_l2_puts_are_stored_as_given(void **state)
{
        static const enum kiln_metric metrics[] = { KILN_METRIC_IP, KILN_METRIC_L2 };
        struct kiln_object_id ids[] = { id_of("x"), id_of("y") };

        for (int k = 0; k < 2; k++) {
                float rows[] = { 3, 4, 0, 0, 1e18f }, copy[5];
                uint8_t meta[KILN_VEC_META_BYTES];
                struct kiln_object_put put = make_put(metrics[k], 2, meta, ids, 2, rows);
                struct kiln_object_info info;
                struct kiln_error err;

                memcpy(copy, rows, sizeof(rows));
                assert_int_equal(vec_collection_class.validate(&put, &info, &err), 0);
                assert_memory_equal(rows, copy, sizeof(rows));
                assert_int_equal(info.metric, metrics[k]);
        }
}

/* Runs validate on a put and checks it is refused naming `field`; returns err. */
static struct kiln_error refused(struct kiln_object_put *put, const char *field)
{
        struct kiln_object_info info = { .count = 99 };
        struct kiln_error err = { 0 };

        assert_int_equal(vec_collection_class.validate(put, &info, &err), -EINVAL);
        if (strcmp(err.field, field) != 0)
                fail_msg("field %s (%s), expected %s", err.field, err.message, field);
        assert_true(strlen(err.message) > 10);
        assert_int_equal(info.count, 99);
        return err;
}

static void test_rows_that_cannot_be_scored_are_refused(void **state)
{
        struct kiln_object_id ids[] = { id_of("a"), id_of("b"), id_of("c") };
        uint8_t meta[KILN_VEC_META_BYTES];
        float rows[6], copy[6];
        struct kiln_object_put put;
        struct kiln_error err;

        /* NaN in the last row: nothing is normalised, not even the good rows before it. */
        memcpy(rows, (float[]){ 3, 4, 1, 1, 2, NAN }, sizeof(rows));
        memcpy(copy, rows, sizeof(rows));
        put = make_put(KILN_METRIC_COSINE, 2, meta, ids, 3, rows);
        err = refused(&put, "vectors[2]");
        assert_non_null(strstr(err.message, "NaN"));
        assert_memory_equal(rows, copy, 4 * sizeof(float));

        memcpy(rows, (float[]){ 1, 2, INFINITY, 0, 1, 1 }, sizeof(rows));
        put = make_put(KILN_METRIC_IP, 2, meta, ids, 3, rows);
        refused(&put, "vectors[1]");
        memcpy(rows, (float[]){ 1, 2, 0, -INFINITY, 1, 1 }, sizeof(rows));
        put = make_put(KILN_METRIC_L2, 2, meta, ids, 3, rows);
        refused(&put, "vectors[1]");

        /* A zero row has no direction for cosine, but is an ordinary point for ip and l2. */
        memcpy(rows, (float[]){ 1, 2, 0, 0, -0.0f, 0 }, sizeof(rows));
        put = make_put(KILN_METRIC_COSINE, 2, meta, ids, 3, rows);
        refused(&put, "vectors[1]");
        put = make_put(KILN_METRIC_L2, 2, meta, ids, 3, rows);
        assert_int_equal(vec_collection_class.validate(&put, &(struct kiln_object_info){ 0 }, NULL), 0);

        /* Norms above 2^62 would overflow float32 scores under ip and l2 (not cosine). */
        memcpy(rows, (float[]){ 1, 2, 4e18f, 4e18f, 0, 1 }, sizeof(rows));
        put = make_put(KILN_METRIC_L2, 2, meta, ids, 3, rows);
        refused(&put, "vectors[1]");
        put = make_put(KILN_METRIC_IP, 2, meta, ids, 3, rows);
        refused(&put, "vectors[1]");
        memcpy(rows, (float[]){ 1, 2, 3e18f, 3e18f, 0, 1 }, sizeof(rows));
        put = make_put(KILN_METRIC_IP, 2, meta, ids, 3, rows);
        assert_int_equal(vec_collection_class.validate(&put, &(struct kiln_object_info){ 0 }, NULL), 0);
        memcpy(rows, (float[]){ 1, 2, 4e18f, 4e18f, 0, 1 }, sizeof(rows));
        put = make_put(KILN_METRIC_COSINE, 2, meta, ids, 3, rows);
        assert_int_equal(vec_collection_class.validate(&put, &(struct kiln_object_info){ 0 }, NULL), 0);
}

static void test_bad_ids_are_refused_naming_the_index(void **state)
{
        char long_id[KILN_VEC_ID_MAX + 1];
        float rows[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        uint8_t meta[KILN_VEC_META_BYTES];
        struct kiln_object_put put;

        memset(long_id, 'x', sizeof(long_id));
        {
                struct kiln_object_id ids[] = { id_of("a"), { "", 0 } };
                put = make_put(KILN_METRIC_IP, 4, meta, ids, 2, rows);
                refused(&put, "ids[1]");
        }
        {
                struct kiln_object_id ids[] = { { long_id, KILN_VEC_ID_MAX + 1 }, id_of("b") };
                put = make_put(KILN_METRIC_IP, 4, meta, ids, 2, rows);
                refused(&put, "ids[0]");
        }
        {
                struct kiln_object_id ids[] = { { long_id, KILN_VEC_ID_MAX }, id_of("b") };
                put = make_put(KILN_METRIC_IP, 4, meta, ids, 2, rows);
                assert_int_equal(vec_collection_class.validate(&put, &(struct kiln_object_info){ 0 }, NULL), 0);
        }
        {
                /* A search answers ids as JSON strings built from C strings: no NUL. */
                struct kiln_object_id ids[] = { id_of("a"), { "b\0c", 3 } };
                put = make_put(KILN_METRIC_IP, 4, meta, ids, 2, rows);
                refused(&put, "ids[1]");
        }
        {
                float r4[8] = { 0 };
                struct kiln_object_id ids[] = { id_of("q"), id_of("p"), id_of("z"), id_of("p") };
                struct kiln_error err;
                put = make_put(KILN_METRIC_L2, 2, meta, ids, 4, r4);
                err = refused(&put, "ids[3]");
                assert_non_null(strstr(err.message, "ids[1]"));
        }
        {
                /* "b" and "b\xff" differ: ids are bytes compared as bytes. */
                struct kiln_object_id ids[] = { { "b", 1 }, { "b\xff", 2 } };
                put = make_put(KILN_METRIC_IP, 4, meta, ids, 2, rows);
                assert_int_equal(vec_collection_class.validate(&put, &(struct kiln_object_info){ 0 }, NULL), 0);
        }
        put = make_put(KILN_METRIC_IP, 4, meta, NULL, 0, rows);
        refused(&put, "ids");
}

static void test_shapes_metas_and_collection_mismatches_are_refused(void **state)
{
        struct kiln_object_id ids[] = { id_of("a"), id_of("b") };
        float rows[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        uint8_t meta[KILN_VEC_META_BYTES], current[KILN_VEC_META_BYTES];
        struct kiln_object_put put;
        struct kiln_error err;

        put = make_put(KILN_METRIC_IP, 4, meta, ids, 2, rows);
        put.rows_bytes -= 4;
        refused(&put, "vectors");
        put = make_put(KILN_METRIC_IP, 4, meta, ids, 2, NULL);
        refused(&put, "vectors");
        put = make_put(KILN_METRIC_IP, 0, meta, ids, 2, rows);
        refused(&put, "vectors");
        put = make_put(KILN_METRIC_IP, KILN_VEC_DIM_MAX + 1, meta, ids, 2, rows);
        refused(&put, "vectors");
        put = make_put((enum kiln_metric)7, 4, meta, ids, 2, rows);
        refused(&put, "metric");
        put = make_put(KILN_METRIC_IP, 4, meta, ids, 2, rows);
        put.meta_len = 7;
        refused(&put, "meta");

        /* A put into an existing collection must name its metric and match its dim. */
        kiln_vec_meta_encode(KILN_METRIC_L2, 4, current);
        put = make_put(KILN_METRIC_IP, 4, meta, ids, 2, rows);
        put.current_meta = current;
        put.current_meta_len = sizeof(current);
        err = refused(&put, "metric");
        assert_non_null(strstr(err.message, "l2"));
        assert_non_null(strstr(err.message, "ip"));
        put = make_put(KILN_METRIC_L2, 2, meta, ids, 2, rows);
        put.rows_bytes = 2 * 2 * sizeof(float);
        put.current_meta = current;
        put.current_meta_len = sizeof(current);
        refused(&put, "vectors");
        put = make_put(KILN_METRIC_L2, 4, meta, ids, 2, rows);
        put.current_meta = current;
        put.current_meta_len = sizeof(current);
        assert_int_equal(vec_collection_class.validate(&put, &(struct kiln_object_info){ 0 }, NULL), 0);
        put.current_meta_len = 3;
        refused(&put, "collection");
}

static void test_the_largest_dim_is_accepted(void **state)
{
        float *rows = calloc(KILN_VEC_DIM_MAX, sizeof(float));
        struct kiln_object_id ids[] = { id_of("only") };
        uint8_t meta[KILN_VEC_META_BYTES];
        struct kiln_object_put put;
        struct kiln_object_info info;

        assert_non_null(rows);
        rows[KILN_VEC_DIM_MAX - 1] = -2;
        put = make_put(KILN_METRIC_COSINE, KILN_VEC_DIM_MAX, meta, ids, 1, rows);
        assert_int_equal(vec_collection_class.validate(&put, &info, NULL), 0);
        assert_int_equal(info.dim, KILN_VEC_DIM_MAX);
        assert_true(rows[KILN_VEC_DIM_MAX - 1] == -1.0f);
        free(rows);
}

/* ---- snapshots ---- */

static void test_snapshot_holds_ids_in_byte_order(void **state)
{
        /* Byte order: unsigned bytes, a prefix before its extensions, NUL is a byte. */
        static const struct kiln_object_id ids[] = { { "b", 1 },    { "\xff", 1 }, { "a", 1 },   { "ab", 2 },
                                                     { "\0x", 2 },  { "A", 1 },    { "aa", 2 },  { "a\0", 2 } };
        static const char *const sorted[] = { "\0x", "A", "a", "a\0", "aa", "ab", "b", "\xff" };
        static const size_t sorted_len[] = { 2, 1, 1, 2, 2, 2, 1, 1 };
        static const size_t shuffled[] = { 6, 3, 0, 7, 1, 5, 2, 4 };
        float rows[8 * 3];
        struct kiln_error err = { 0 };
        size_t store_order[8];
        int rc;

        for (int i = 0; i < 8 * 3; i++)
                rows[i] = (float)(i / 3) + 0.25f * (float)(i % 3);
        /* The same snapshot whatever order the items come in. */
        for (int pass = 0; pass < 3; pass++) {
                struct items it = { .ids = ids, .rows = rows, .dim = 3, .n = 8, .fail_at = -1 };
                struct vec_collection *c;

                if (pass == 1)
                        it.order = shuffled;
                if (pass == 2) { /* the store's order: already sorted */
                        for (size_t i = 0; i < 8; i++)
                                for (size_t k = 0; k < 8; k++)
                                        if (vec_id_cmp(ids[k].data, ids[k].len, sorted[i], sorted_len[i]) == 0)
                                                store_order[i] = k;
                        it.order = store_order;
                }
                c = compile_items(KILN_METRIC_L2, &it, &err, &rc);
                assert_int_equal(rc, 0);
                assert_int_equal(c->count, 8);
                assert_int_equal(c->dim, 3);
                assert_int_equal(c->metric, KILN_METRIC_L2);
                for (uint64_t i = 0; i < 8; i++) {
                        size_t len;
                        const uint8_t *id = vec_collection_id(c, i, &len);
                        size_t k = 0;
                        assert_int_equal(len, sorted_len[i]);
                        assert_memory_equal(id, sorted[i], len);
                        while (!(ids[k].len == len && !memcmp(ids[k].data, id, len)))
                                k++;
                        /* The row travelled with its id. */
                        assert_memory_equal(c->rows + i * 3, rows + k * 3, 3 * sizeof(float));
                        if (i > 0) {
                                size_t plen;
                                const uint8_t *prev = vec_collection_id(c, i - 1, &plen);
                                assert_true(vec_id_cmp(prev, plen, id, len) < 0);
                        }
                        /* And the id finds its row again. */
                        uint64_t row = 99;
                        assert_int_equal(vec_collection_find(c, sorted[i], sorted_len[i], &row), 0);
                        assert_int_equal(row, i);
                }
                /* Prefixes, extensions and neighbours of stored ids are not stored ids. */
                static const struct kiln_object_id absent[] = { { "", 0 }, { "\0", 1 }, { "B", 1 }, { "a\0\0", 3 },
                                                                { "abc", 3 }, { "c", 1 }, { "\xff\xff", 2 } };
                for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
                        uint64_t row = 99;
                        assert_int_equal(vec_collection_find(c, absent[i].data, absent[i].len, &row), -ENOENT);
                        assert_int_equal(row, 99);
                }
                assert_true(vec_collection_class.snapshot_bytes(c) >= 8 * 3 * sizeof(float) + 13);
                vec_collection_class.release(c);
        }
}

static void test_compile_through_the_class_and_describe(void **state)
{
        static const struct kiln_object_id ids[] = { { "k1", 2 }, { "k2", 2 } };
        float rows[4] = { 0.6f, 0.8f, 1, 0 };
        struct items it = { .ids = ids, .rows = rows, .dim = 2, .n = 2, .fail_at = -1 };
        uint8_t meta[KILN_VEC_META_BYTES];
        struct kiln_object_source src = { .meta = meta, .meta_len = sizeof(meta), .count = 2,
                                          .foreach_items = items_foreach, .ctx = &it };
        struct kiln_object_info info;
        struct kiln_error err;
        void *snap = NULL;

        assert_string_equal(vec_collection_class.name, "vec.collection");
        kiln_vec_meta_encode(KILN_METRIC_COSINE, 2, meta);
        assert_int_equal(vec_collection_class.compile(&src, &snap, &err), 0);
        vec_collection_class.describe(snap, &info);
        assert_int_equal(info.count, 2);
        assert_int_equal(info.dim, 2);
        assert_int_equal(info.metric, KILN_METRIC_COSINE);
        assert_int_equal(info.trees, 0);
        vec_collection_class.release(snap);
        vec_collection_class.release(NULL);

        /* The count is only a hint: fewer or more items than it are fine. */
        src.count = 1000;
        assert_int_equal(vec_collection_class.compile(&src, &snap, &err), 0);
        assert_int_equal(((struct vec_collection *)snap)->count, 2);
        vec_collection_class.release(snap);
        src.count = 0;
        assert_int_equal(vec_collection_class.compile(&src, &snap, &err), 0);
        assert_int_equal(((struct vec_collection *)snap)->count, 2);
        vec_collection_class.release(snap);
}

static void test_an_empty_collection_compiles_and_finds_nothing(void **state)
{
        uint8_t meta[KILN_VEC_META_BYTES];
        struct kiln_object_source src = { .meta = meta, .meta_len = sizeof(meta) };
        struct vec_collection *c = NULL;
        uint64_t idx[4];
        float score[4], q[3] = { 1, 0, 0 };

        kiln_vec_meta_encode(KILN_METRIC_IP, 3, meta);
        assert_int_equal(vec_collection_compile(&src, &c, NULL), 0);
        assert_int_equal(c->count, 0);
        assert_int_equal(vec_search_ref(c, q, 4, idx, score), 0);
        assert_int_equal(vec_collection_find(c, "a", 1, &idx[0]), -ENOENT);
        vec_collection_free(c);
}

static void test_bad_stored_items_are_refused(void **state)
{
        static const struct kiln_object_id ids[] = { { "a", 1 }, { "b", 1 }, { "a", 1 } };
        static const struct kiln_object_id empty[] = { { "a", 1 }, { "", 0 } };
        float rows[6] = { 0 };
        struct kiln_error err = { 0 };
        struct items it = { .ids = ids, .rows = rows, .dim = 2, .n = 3, .fail_at = -1 };
        uint8_t meta[KILN_VEC_META_BYTES];
        struct kiln_object_source src = { .meta = meta, .meta_len = sizeof(meta), .count = 2,
                                          .foreach_items = items_foreach, .ctx = &it };
        struct vec_collection *c = NULL;
        int rc;

        /* A repeated id, out of order and in order. */
        assert_null(compile_items(KILN_METRIC_IP, &it, &err, &rc));
        assert_int_equal(rc, -EINVAL);
        assert_string_equal(err.field, "items");
        it.order = (const size_t[]){ 0, 2, 1 };
        assert_null(compile_items(KILN_METRIC_IP, &it, &err, &rc));
        assert_int_equal(rc, -EINVAL);
        assert_string_equal(err.field, "items");
        it.order = NULL;
        it.ids = empty;
        it.n = 2;
        assert_null(compile_items(KILN_METRIC_IP, &it, &err, &rc));
        assert_int_equal(rc, -EINVAL);
        /* A row of another size than the meta's dim. */
        it.ids = ids;
        kiln_vec_meta_encode(KILN_METRIC_IP, 3, meta);
        memset(&err, 0, sizeof(err));
        assert_int_equal(vec_collection_compile(&src, &c, &err), -EINVAL);
        assert_string_equal(err.field, "items");
        /* An unreadable meta; a failing source passes its error on. */
        src.meta_len = 4;
        assert_int_equal(vec_collection_compile(&src, &c, &err), -EINVAL);
        assert_string_equal(err.field, "meta");
        kiln_vec_meta_encode(KILN_METRIC_IP, 2, meta);
        src.meta_len = sizeof(meta);
        it.fail_at = 1;
        memset(&err, 0, sizeof(err));
        assert_int_equal(vec_collection_compile(&src, &c, &err), -EIO);
        assert_string_equal(err.field, "items");
        assert_null(c);
}

/* ---- the reference search ---- */

struct ranked {
        double score;
        size_t k;                  /* index into the test's ids */
        const struct kiln_object_id *id;
        enum kiln_metric metric;
};

static int cmp_ranked(const void *a, const void *b)
{
        const struct ranked *x = a, *y = b;

        if (x->score != y->score) {
                bool before = x->metric == KILN_METRIC_L2 ? x->score < y->score : x->score > y->score;
                return before ? -1 : 1;
        }
        return vec_id_cmp(x->id->data, x->id->len, y->id->data, y->id->len);
}

static double score64(enum kiln_metric m, const float *q, const float *x, uint32_t dim)
{
        double s = 0;

        for (uint32_t j = 0; j < dim; j++)
                s += m == KILN_METRIC_L2 ? ((double)q[j] - x[j]) * ((double)q[j] - x[j]) : (double)q[j] * x[j];
        if (m == KILN_METRIC_COSINE)
                s /= norm64(q, dim) * norm64(x, dim);
        return s;
}

/* The float64 brute force over the original rows: every row scored, sorted best
 * first, ties by id bytes. */
static struct ranked *brute_force(enum kiln_metric m, const struct kiln_object_id *ids, const float *rows, size_t n,
                                  uint32_t dim, const float *q)
{
        struct ranked *r = calloc(n, sizeof(*r));

        assert_non_null(r);
        for (size_t i = 0; i < n; i++)
                r[i] = (struct ranked){ score64(m, q, rows + i * dim, dim), i, &ids[i], m };
        qsort(r, n, sizeof(*r), cmp_ranked);
        return r;
}

/* n random ids "id-NNNNN-xyz" of varying length, distinct, in random order. */
static struct kiln_object_id *random_ids(size_t n, char *store, size_t each)
{
        struct kiln_object_id *ids = calloc(n, sizeof(*ids));

        assert_non_null(ids);
        for (size_t i = 0; i < n; i++) {
                int len = snprintf(store + i * each, each, "id-%05zu-%.*s", (i * 7919) % n, (int)(i % 4), "zyxw");
                ids[i] = (struct kiln_object_id){ store + i * each, (size_t)len };
        }
        return ids;
}

/* Integer vectors make every score exact in float32 and float64, so the search must
 * give exactly the brute force's order, including its many ties. */
static void test_search_equals_brute_force_exactly_on_integer_data(void **state)
{
        enum { N = 600, DIM = 12 };
        static const enum kiln_metric metrics[] = { KILN_METRIC_IP, KILN_METRIC_L2 };
        static const uint32_t ks[] = { 1, 10, 37, N, N + 50 };
        char *idstore = malloc(N * 24);
        struct kiln_object_id *ids = random_ids(N, idstore, 24);
        float *rows = malloc(N * DIM * sizeof(float)), q[DIM];
        uint64_t *idx = malloc((N + 50) * sizeof(*idx));
        float *score = malloc((N + 50) * sizeof(*score));

        srand(42);
        for (size_t i = 0; i < N * DIM; i++)
                rows[i] = (float)(rand() % 7 - 3);
        for (int m = 0; m < 2; m++) {
                uint8_t meta[KILN_VEC_META_BYTES];
                float *copy = malloc(N * DIM * sizeof(float));
                struct kiln_object_put put;
                struct items it = { .ids = ids, .rows = copy, .dim = DIM, .n = N, .fail_at = -1 };
                struct vec_collection *c;
                int rc;

                memcpy(copy, rows, N * DIM * sizeof(float));
                put = make_put(metrics[m], DIM, meta, ids, N, copy);
                assert_int_equal(vec_collection_class.validate(&put, &(struct kiln_object_info){ 0 }, NULL), 0);
                c = compile_items(metrics[m], &it, NULL, &rc);
                assert_int_equal(rc, 0);
                for (int trial = 0; trial < 20; trial++) {
                        struct ranked *want;
                        for (int j = 0; j < DIM; j++)
                                q[j] = (float)(rand() % 5 - 2);
                        want = brute_force(metrics[m], ids, rows, N, DIM, q);
                        for (size_t kk = 0; kk < sizeof(ks) / sizeof(ks[0]); kk++) {
                                uint64_t got = vec_search_ref(c, q, ks[kk], idx, score);
                                assert_int_equal(got, ks[kk] < N ? ks[kk] : N);
                                for (uint64_t r = 0; r < got; r++) {
                                        size_t len;
                                        const uint8_t *id = vec_collection_id(c, idx[r], &len);
                                        assert_true((double)score[r] == want[r].score);
                                        assert_int_equal(len, want[r].id->len);
                                        assert_memory_equal(id, want[r].id->data, len);
                                }
                        }
                        free(want);
                }
                vec_collection_free(c);
                free(copy);
        }
        free(ids);
        free(idstore);
        free(rows);
        free(idx);
        free(score);
}

static float gauss(void)
{
        double u = (rand() + 1.0) / (RAND_MAX + 2.0), v = (rand() + 1.0) / (RAND_MAX + 2.0);
        return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}

/* Real-valued data: each returned item scores (in float64) what the brute force's
 * item of that rank scores, within float32 rounding; where the brute force has no
 * near tie around a rank, the ids are the same. */
static void test_search_matches_brute_force_on_gaussian_data(void **state)
{
        enum { N = 2000, DIM = 48, K = 25 };
        static const enum kiln_metric metrics[] = { KILN_METRIC_COSINE, KILN_METRIC_IP, KILN_METRIC_L2 };
        char *idstore = malloc(N * 24);
        struct kiln_object_id *ids = random_ids(N, idstore, 24);
        float *rows = malloc(N * DIM * sizeof(float)), q[DIM], qp[DIM];
        uint64_t idx[K];
        float score[K];
        size_t same = 0, ranks = 0;

        srand(7);
        for (size_t i = 0; i < N * DIM; i++)
                rows[i] = gauss();
        for (int m = 0; m < 3; m++) {
                uint8_t meta[KILN_VEC_META_BYTES];
                float *stored = malloc(N * DIM * sizeof(float));
                struct kiln_object_put put;
                struct items it = { .ids = ids, .rows = stored, .dim = DIM, .n = N, .fail_at = -1 };
                struct vec_collection *c;
                int rc;

                memcpy(stored, rows, N * DIM * sizeof(float));
                put = make_put(metrics[m], DIM, meta, ids, N, stored);
                assert_int_equal(vec_collection_class.validate(&put, &(struct kiln_object_info){ 0 }, NULL), 0);
                c = compile_items(metrics[m], &it, NULL, &rc);
                assert_int_equal(rc, 0);
                for (int trial = 0; trial < 10; trial++) {
                        struct ranked *want;
                        double tol;
                        for (int j = 0; j < DIM; j++)
                                q[j] = qp[j] = gauss();
                        assert_int_equal(vec_row_prepare(metrics[m], qp, DIM), 0);
                        want = brute_force(metrics[m], ids, rows, N, DIM, q);
                        tol = 1e-5 * (metrics[m] == KILN_METRIC_COSINE ? 1.0 : fabs(want[0].score) + DIM);
                        assert_int_equal(vec_search_ref(c, qp, K, idx, score), K);
                        for (int r = 0; r < K; r++) {
                                size_t len, k = 0;
                                const uint8_t *id = vec_collection_id(c, idx[r], &len);
                                bool clear_gap;
                                while (!(ids[k].len == len && !memcmp(ids[k].data, id, len)))
                                        k++;
                                assert_true(fabs(score64(metrics[m], q, rows + k * DIM, DIM) - want[r].score) <= tol);
                                assert_true(fabs((double)score[r] - want[r].score) <= tol);
                                clear_gap = (r == 0 || fabs(want[r - 1].score - want[r].score) > tol) &&
                                            fabs(want[r].score - want[r + 1].score) > tol;
                                if (clear_gap) {
                                        assert_int_equal(k, want[r].k);
                                        same++;
                                }
                                ranks++;
                        }
                        free(want);
                }
                vec_collection_free(c);
                free(stored);
        }
        /* Near ties are rare: almost every rank was checked by id. */
        assert_true(same * 10 > ranks * 9);
        free(ids);
        free(idstore);
        free(rows);
}

static void test_equal_scores_are_ordered_by_id_bytes(void **state)
{
        static const struct kiln_object_id ids[] = { { "e", 1 }, { "c", 1 }, { "a", 1 }, { "d", 1 },
                                                     { "b", 1 }, { "far", 3 } };
        static const enum kiln_metric metrics[] = { KILN_METRIC_COSINE, KILN_METRIC_IP, KILN_METRIC_L2 };

        for (int m = 0; m < 3; m++) {
                float rows[12] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1 };
                float q[2] = { 1, 1 };
                struct items it = { .ids = ids, .rows = rows, .dim = 2, .n = 6, .fail_at = -1 };
                struct vec_collection *c;
                uint64_t idx[6];
                float score[6];
                int rc;

                if (metrics[m] == KILN_METRIC_COSINE) {
                        uint8_t meta[KILN_VEC_META_BYTES];
                        struct kiln_object_put put = make_put(metrics[m], 2, meta, ids, 6, rows);
                        assert_int_equal(vec_collection_class.validate(&put, &(struct kiln_object_info){ 0 }, NULL), 0);
                        assert_int_equal(vec_row_prepare(metrics[m], q, 2), 0);
                }
                c = compile_items(metrics[m], &it, NULL, &rc);
                assert_int_equal(rc, 0);
                assert_int_equal(vec_search_ref(c, q, 6, idx, score), 6);
                for (int r = 0; r < 5; r++) {
                        size_t len;
                        const uint8_t *id = vec_collection_id(c, idx[r], &len);
                        assert_int_equal(len, 1);
                        assert_int_equal(id[0], 'a' + r);
                        assert_true(score[r] == score[0]);
                }
                assert_true(vec_ranks_before(metrics[m], score[0], idx[0], score[5], idx[5]));
                /* k below the tie keeps the smallest ids. */
                assert_int_equal(vec_search_ref(c, q, 2, idx, score), 2);
                assert_int_equal(idx[0], 0);
                assert_int_equal(idx[1], 1);
                vec_collection_free(c);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_meta_is_eight_canonical_bytes_and_round_trips),
                cmocka_unit_test(test_metric_names_parse_exactly),
                cmocka_unit_test(test_cosine_puts_are_normalised_in_place),
                cmocka_unit_test(test_ip_and_l2_puts_are_stored_as_given),
                cmocka_unit_test(test_rows_that_cannot_be_scored_are_refused),
                cmocka_unit_test(test_bad_ids_are_refused_naming_the_index),
                cmocka_unit_test(test_shapes_metas_and_collection_mismatches_are_refused),
                cmocka_unit_test(test_the_largest_dim_is_accepted),
                cmocka_unit_test(test_snapshot_holds_ids_in_byte_order),
                cmocka_unit_test(test_compile_through_the_class_and_describe),
                cmocka_unit_test(test_an_empty_collection_compiles_and_finds_nothing),
                cmocka_unit_test(test_bad_stored_items_are_refused),
                cmocka_unit_test(test_search_equals_brute_force_exactly_on_integer_data),
                cmocka_unit_test(test_search_matches_brute_force_on_gaussian_data),
                cmocka_unit_test(test_equal_scores_are_ordered_by_id_bytes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
