/* A job's inputs (daemon/job_inputs.c): the same rows sent as JSON and as a binary
 * part make the same blob and digest (one cache key), other rows never do, every
 * bad input names its field, and inputs stored with a job's record come back
 * whole after the store is reopened, as at recovery. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "job_inputs.h"
#include "store.h"
#include "unit_tmpdir.h"
#include "store_fixture.h"

/* A kind of this test's own: rows f32[n][f] (or inline params.rows), and an
 * optional binary-only "mask" u8[n]. */
static const struct kiln_input_spec specs[] = {
        { .name = "rows", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_F32), .ndim = 2, .required = true, .json_param = "rows" },
        { .name = "mask", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_U8), .ndim = 1 },
        { 0 },
};
static const struct kiln_param schema[] = { { 0 } };
static const struct kiln_kind kind = { .name = "test.rows", .version = 1, .params = schema, .inputs = specs };

static struct part *part_of(const char *name, int dtype, int ndim, const uint64_t *shape, const void *data, size_t n)
{
        struct part *p = calloc(1, sizeof(*p));
        snprintf(p->name, sizeof(p->name), "%s", name);
        p->dtype = dtype;
        p->ndim = ndim;
        memcpy(p->shape, shape, sizeof(uint64_t) * (size_t)ndim);
        p->bytes = n;
        p->data = malloc(n ? n : 1);
        memcpy(p->data, data, n);
        return p;
}

static const float rows[2][3] = { { 1.5f, -0.0f, NAN }, { 3e38f, 0.1f, -7.0f } };
static const char rows_json[] = "{\"rows\": [[1.5, -0.0, null], [3e38, 0.1, -7.0]]}";

static void test_json_and_binary_rows_make_one_digest(void **state)
{
        struct proto_error err;
        struct job_inputs a, b;
        json_t *params = json_loads(rows_json, 0, NULL);
        assert_int_equal(job_inputs_assemble(&kind, params, NULL, 0, 1 << 20, &a, &err), 0);
        json_decref(params);

        uint64_t shape[2] = { 2, 3 };
        struct part *parts[1] = { part_of("rows", KILN_DTYPE_F32, 2, shape, rows, sizeof(rows)) };
        json_t *empty = json_object();
        assert_int_equal(job_inputs_assemble(&kind, empty, parts, 1, 1 << 20, &b, &err), 0);
        json_decref(empty);

        assert_int_equal(a.n, 1);
        assert_int_equal(b.n, 1);
        assert_string_equal(a.digest, b.digest);
        assert_int_equal(a.size, b.size);
        assert_memory_equal(a.blob, b.blob, a.size);
        assert_int_equal(a.arrays[0].bytes, sizeof(rows));
        assert_memory_equal(a.arrays[0].data, rows, sizeof(rows)); /* null became NaN, -0 kept */

        /* One bit of another row: another digest. */
        float other[2][3];
        memcpy(other, rows, sizeof(other));
        other[1][1] = nextafterf(0.1f, 0.0f);
        struct job_inputs c;
        struct part *p2[1] = { part_of("rows", KILN_DTYPE_F32, 2, shape, other, sizeof(other)) };
        empty = json_object();
        assert_int_equal(job_inputs_assemble(&kind, empty, p2, 1, 1 << 20, &c, &err), 0);
        json_decref(empty);
        assert_string_not_equal(a.digest, c.digest);
        job_inputs_clear(&a);
        job_inputs_clear(&b);
        job_inputs_clear(&c);
}

static void test_inputs_come_in_spec_order_whatever_the_order_sent(void **state)
{
        struct proto_error err;
        struct job_inputs a, b;
        uint64_t rs[2] = { 2, 3 }, ms[1] = { 2 };
        uint8_t mask[2] = { 1, 0 };
        struct part *one[2] = { part_of("rows", KILN_DTYPE_F32, 2, rs, rows, sizeof(rows)),
                                part_of("mask", KILN_DTYPE_U8, 1, ms, mask, 2) };
        struct part *two[2] = { part_of("mask", KILN_DTYPE_U8, 1, ms, mask, 2),
                                part_of("rows", KILN_DTYPE_F32, 2, rs, rows, sizeof(rows)) };
        json_t *empty = json_object();
        assert_int_equal(job_inputs_assemble(&kind, empty, one, 2, 1 << 20, &a, &err), 0);
        assert_int_equal(job_inputs_assemble(&kind, empty, two, 2, 1 << 20, &b, &err), 0);
        json_decref(empty);
        assert_string_equal(a.digest, b.digest);
        assert_string_equal(a.arrays[0].name, "rows");
        assert_string_equal(a.arrays[1].name, "mask");
        job_inputs_clear(&a);
        job_inputs_clear(&b);
}

static void test_bad_inputs_name_their_field(void **state)
{
        struct proto_error err;
        struct job_inputs in;
        uint64_t shape[2] = { 2, 3 };

        /* Both ways at once. */
        json_t *params = json_loads(rows_json, 0, NULL);
        struct part *both[1] = { part_of("rows", KILN_DTYPE_F32, 2, shape, rows, sizeof(rows)) };
        assert_true(job_inputs_assemble(&kind, params, both, 1, 1 << 20, &in, &err) < 0);
        assert_int_equal(err.code, KERR_BAD_PARAMS);
        assert_string_equal(err.field, "parts.rows");
        /* A part the kind does not take. */
        json_t *empty = json_object();
        struct part *unknown[1] = { part_of("image", KILN_DTYPE_U8, 1, shape, rows, 2) };
        assert_true(job_inputs_assemble(&kind, empty, unknown, 1, 1 << 20, &in, &err) < 0);
        assert_string_equal(err.field, "parts.image");
        /* Over the limit. */
        struct part *big[1] = { part_of("rows", KILN_DTYPE_F32, 2, shape, rows, sizeof(rows)) };
        assert_true(job_inputs_assemble(&kind, empty, big, 1, 16, &in, &err) < 0);
        assert_int_equal(err.code, KERR_TOO_LARGE);
        assert_string_equal(err.field, "inputs");
        /* Ragged JSON rows. */
        json_t *ragged = json_loads("{\"rows\": [[1, 2], [3]]}", 0, NULL);
        assert_true(job_inputs_assemble(&kind, ragged, NULL, 0, 1 << 20, &in, &err) < 0);
        assert_int_equal(err.code, KERR_BAD_PARAMS);
        assert_non_null(strstr(err.field, "rows"));
        json_decref(ragged);
        json_decref(empty);
        json_decref(params);
}

static void blob_writer(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        memcpy(dst, (const uint8_t *)opaque + offset, len);
}

static void test_stored_inputs_come_back_after_a_restart(void **state)
{
        struct fixture *f = NULL;
        store_fixture_setup((void **)&f, "job-inputs");
        struct proto_error err;
        struct job_inputs in, back;
        uint64_t rs[2] = { 2, 3 }, ms[1] = { 2 };
        uint8_t mask[2] = { 9, 7 };
        struct part *parts[2] = { part_of("rows", KILN_DTYPE_F32, 2, rs, rows, sizeof(rows)),
                                  part_of("mask", KILN_DTYPE_U8, 1, ms, mask, 2) };
        json_t *empty = json_object();
        assert_int_equal(job_inputs_assemble(&kind, empty, parts, 2, 1 << 20, &in, &err), 0);
        json_decref(empty);

        /* Stored with its job's record, as a submit stores it (an input without
         * one is a leftover the next open deletes). */
        struct store_job rec;
        fixture_job_init(&rec, 1000, "acme", "risk.score", KILN_JOB_QUEUED);
        rec.input_size = in.size;
        const uint8_t *id = rec.id;
        struct store_txn *t;
        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        assert_int_equal(store_job_put(t, &rec), 0);
        assert_int_equal(store_input_put(t, id, in.size, blob_writer, in.blob), 0);
        assert_int_equal(store_txn_commit(t), 0);
        store_fixture_reopen(f, STORE_SYNC_FULL);

        uint8_t *blob = NULL;
        size_t size = 0;
        assert_int_equal(store_txn_begin(f->s, false, &t), 0);
        assert_int_equal(store_input_get(t, id, &blob, &size), 0);
        store_txn_abort(t);
        assert_int_equal(job_inputs_parse(blob, size, &back), 0);
        assert_int_equal(back.n, 2);
        assert_string_equal(back.digest, in.digest);
        for (size_t i = 0; i < 2; i++) {
                assert_string_equal(back.arrays[i].name, in.arrays[i].name);
                assert_int_equal(back.arrays[i].dtype, in.arrays[i].dtype);
                assert_int_equal(back.arrays[i].ndim, in.arrays[i].ndim);
                assert_memory_equal(back.arrays[i].shape, in.arrays[i].shape, sizeof(in.arrays[i].shape));
                assert_int_equal(back.arrays[i].bytes, in.arrays[i].bytes);
                assert_memory_equal(back.arrays[i].data, in.arrays[i].data, in.arrays[i].bytes);
                /* assembled arrays point into their own blob, where a parse finds them */
                assert_int_equal((const uint8_t *)in.arrays[i].data - in.blob,
                                 (const uint8_t *)back.arrays[i].data - blob);
        }
        /* A damaged blob is refused, not half read. */
        struct job_inputs bad;
        uint8_t *cut = malloc(size / 2);
        memcpy(cut, blob, size / 2);
        assert_int_equal(job_inputs_parse(cut, size / 2, &bad), -EIO);
        free(cut);
        job_inputs_clear(&back);
        job_inputs_clear(&in);
        store_fixture_teardown((void **)&f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_and_binary_rows_make_one_digest),
                cmocka_unit_test(test_inputs_come_in_spec_order_whatever_the_order_sent),
                cmocka_unit_test(test_bad_inputs_name_their_field),
                cmocka_unit_test(test_stored_inputs_come_back_after_a_restart),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
