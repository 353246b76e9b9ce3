/* Inputs: JSON nested arrays lifted into typed arrays (inputs_json.c) that equal the
 * binary form byte for byte, and the checks of a job's inputs and object against
 * its kind (inputs.c). */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kind.h"
#include "params.h"

static const struct kiln_input_spec rows_spec = {
        .name = "rows", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_F32), .ndim = 2, .required = true, .json_param = "rows",
};
static const struct kiln_input_spec ops_spec = {
        .name = "ops", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_I32) | KILN_DTYPE_BIT(KILN_DTYPE_U8), .ndim = 3,
        .json_param = "jobs",
};
static const struct kiln_input_spec image_spec = {
        .name = "image", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_U8) | KILN_DTYPE_BIT(KILN_DTYPE_BYTES),
};

static json_t *parse(const char *text)
{
        json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
        assert_non_null(j);
        return j;
}

/* Converts `text` with `spec`; returns the error code, the array and its data. */
static int lift(const struct kiln_input_spec *spec, const char *text, struct kiln_array *ret, void **ret_data,
                struct kiln_error *err)
{
        json_t *v = parse(text);
        char field[64];
        snprintf(field, sizeof(field), "params.%s", spec->json_param ? spec->json_param : spec->name);
        int r = kiln_input_from_json(spec, v, field, 1 << 20, ret, ret_data, err);
        json_decref(v);
        return r;
}

static void reject(const struct kiln_input_spec *spec, const char *text, int code, const char *field,
                   const char *message)
{
        struct kiln_array a;
        void *data = NULL;
        struct kiln_error err = { "", "" };

        assert_int_equal(lift(spec, text, &a, &data, &err), code);
        assert_null(data);
        assert_string_equal(err.field, field);
        if (message)
                assert_string_equal(err.message, message);
}

static void test_json_rows_equal_the_binary_part_byte_for_byte(void **state)
{
        const float binary[2][3] = { { 0.1f, -2.5f, 1e30f }, { 3.0f, 0.0f, 16777217.0f } };
        const uint64_t shape[2] = { 2, 3 };
        struct kiln_array want, got;
        struct kiln_error kerr;
        void *data = NULL;

        assert_int_equal(kiln_array_init(&want, "rows", KILN_DTYPE_F32, 2, shape, binary, sizeof(binary), &kerr), 0);
        assert_int_equal(lift(&rows_spec, "[[0.1, -2.5, 1e30], [3, 0, 16777217]]", &got, &data, NULL), 0);
        assert_string_equal(got.name, want.name);
        assert_int_equal(got.dtype, want.dtype);
        assert_int_equal(got.ndim, 2);
        assert_int_equal(got.shape[0], 2);
        assert_int_equal(got.shape[1], 3);
        assert_int_equal(got.bytes, want.bytes);
        assert_memory_equal(got.data, want.data, want.bytes);
        assert_ptr_equal(got.data, data);
        free(data);
}

static void test_json_null_is_nan_in_f32(void **state)
{
        struct kiln_array a;
        void *data = NULL;

        assert_int_equal(lift(&rows_spec, "[[1, null], [null, 2]]", &a, &data, NULL), 0);
        const float *f = a.data;
        assert_true(f[0] == 1.0f && isnan(f[1]) && isnan(f[2]) && f[3] == 2.0f);
        free(data);
}

static void test_json_integers_take_the_first_allowed_integer_dtype(void **state)
{
        struct kiln_array a;
        void *data = NULL;

        /* ops allows i32 and u8: JSON becomes i32, the first of f32, i32, u32, u8. */
        assert_int_equal(kiln_input_json_dtype(&ops_spec), KILN_DTYPE_I32);
        assert_int_equal(lift(&ops_spec, "[[[0, 3], [1, -2]], [[2, 2147483647], [0, 4.0]]]", &a, &data, NULL), 0);
        assert_int_equal(a.dtype, KILN_DTYPE_I32);
        assert_int_equal(a.ndim, 3);
        assert_int_equal(a.bytes, 8 * 4);
        const int32_t *v = a.data;
        assert_int_equal(v[3], -2);
        assert_int_equal(v[5], 2147483647);
        assert_int_equal(v[7], 4);
        free(data);
        assert_int_equal(kiln_input_json_dtype(&image_spec), KILN_DTYPE_U8);
        struct kiln_input_spec bytes_only = { .name = "stl", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_BYTES) };
        assert_int_equal(kiln_input_json_dtype(&bytes_only), -1);
}

/* An input that allows bytes takes a JSON string as its bytes (every one, a NUL
 * too) and a JSON object as its compact text, keys sorted. */
static void test_bytes_come_from_a_json_string_or_object(void **state)
{
        static const char object_text[] = "{\"a\":\"x\",\"b\":[1,2]}";
        struct kiln_array a;
        void *data = NULL;
        struct kiln_error err;
        json_t *s = json_stringn("a\0bc", 4);

        assert_non_null(s);
        assert_int_equal(kiln_input_from_json(&image_spec, s, "params.image", 1 << 20, &a, &data, NULL), 0);
        assert_int_equal(a.dtype, KILN_DTYPE_BYTES);
        assert_int_equal(a.bytes, 4);
        assert_memory_equal(a.data, "a\0bc", 4);
        free(data);
        data = NULL;
        assert_int_equal(kiln_input_from_json(&image_spec, s, "params.image", 3, &a, &data, &err), -E2BIG);
        assert_null(data);
        assert_string_equal(err.message, "params.image holds 4 bytes, over the limit of 3");
        json_decref(s);
        assert_int_equal(lift(&image_spec, "{\"b\": [1, 2], \"a\": \"x\"}", &a, &data, NULL), 0);
        assert_int_equal(a.dtype, KILN_DTYPE_BYTES);
        assert_int_equal(a.bytes, strlen(object_text));
        assert_memory_equal(a.data, object_text, a.bytes);
        free(data);
        /* Anything else is refused saying what it takes. */
        reject(&image_spec, "null", -EINVAL, "params.image",
               "params.image must be a string or an object (or an array of bytes)");
        reject(&image_spec, "5", -EINVAL, "params.image",
               "params.image must be a string or an object (or an array of bytes)");
}

static void test_empty_arrays_have_a_zero_extent(void **state)
{
        struct kiln_array a;
        void *data = NULL;

        assert_int_equal(lift(&rows_spec, "[[]]", &a, &data, NULL), 0);
        assert_int_equal(a.shape[0], 1);
        assert_int_equal(a.shape[1], 0);
        assert_int_equal(a.bytes, 0);
        free(data);
        reject(&rows_spec, "[]", -EINVAL, "params.rows",
               "params.rows must be a 2-dimensional array (nested 2 deep), not 1");
}

/* The largest float32 as numpy prints it reads as FLT_MAX, as in a binary part;
 * what rounds past it is refused. */
static void test_json_f32_reaches_the_largest_float(void **state)
{
        struct kiln_array a;
        void *data = NULL;

        assert_int_equal(lift(&rows_spec, "[[3.4028235e38, -3.4028235e38, 3.40282356e38]]", &a, &data, NULL),
                         0);
        assert_true(((const float *)a.data)[0] == FLT_MAX);
        assert_true(((const float *)a.data)[1] == -FLT_MAX);
        assert_true(((const float *)a.data)[2] == FLT_MAX);
        free(data);
        reject(&rows_spec, "[[3.4028236e38]]", -EINVAL, "params.rows[0][0]",
               "params.rows[0][0] is outside the f32 range");
}

static void test_bad_json_arrays_are_rejected_naming_the_element(void **state)
{
        reject(&rows_spec, "{\"a\":1}", -EINVAL, "params.rows", "params.rows must be an array");
        reject(&rows_spec, "[1, 2]", -EINVAL, "params.rows",
               "params.rows must be a 2-dimensional array (nested 2 deep), not 1");
        reject(&rows_spec, "[[1, 2], [3]]", -EINVAL, "params.rows[1]",
               "params.rows[1] has 1 elements where the first has 2: arrays must be rectangular");
        reject(&rows_spec, "[[1, 2], 3]", -EINVAL, "params.rows[1]", "params.rows[1] must be an array of 2");
        reject(&rows_spec, "[[1, \"2\"]]", -EINVAL, "params.rows[0][1]",
               "params.rows[0][1] must be a number or null");
        reject(&rows_spec, "[[1, [2]]]", -EINVAL, "params.rows[0][1]",
               "params.rows[0][1] must be a single value: the array is 2 deep");
        reject(&rows_spec, "[[1, 1e39]]", -EINVAL, "params.rows[0][1]", "params.rows[0][1] is outside the f32 range");
        reject(&ops_spec, "[[[1, 2.5]]]", -EINVAL, "params.jobs[0][0][1]", "params.jobs[0][0][1] must be an integer");
        reject(&ops_spec, "[[[1, 2147483648]]]", -EINVAL, "params.jobs[0][0][1]",
               "params.jobs[0][0][1] must be an integer between -2147483648 and 2147483647 (i32)");
        reject(&ops_spec, "[[[null]]]", -EINVAL, "params.jobs[0][0][0]", "params.jobs[0][0][0] must be an integer");
        reject(&image_spec, "[256]", -EINVAL, "params.image[0]",
               "params.image[0] must be an integer between 0 and 255 (u8)");
        reject(&image_spec, "[[[[[1]]]]]", -EINVAL, "params.image", "params.image must be nested at most 4 deep");
}

static void test_json_arrays_over_the_limit_are_refused(void **state)
{
        json_t *v = parse("[[1, 2, 3], [4, 5, 6]]");
        struct kiln_array a;
        void *data = NULL;
        struct kiln_error err;

        assert_int_equal(kiln_input_from_json(&rows_spec, v, "params.rows", 23, &a, &data, &err), -E2BIG);
        assert_string_equal(err.message, "params.rows holds 24 bytes as f32, over the limit of 23");
        assert_int_equal(kiln_input_from_json(&rows_spec, v, "params.rows", 24, &a, &data, &err), 0);
        free(data);
        json_decref(v);
}

/* ---- a kind with inputs ---- */

static const struct kiln_input_spec score_inputs[] = {
        { .name = "rows", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_F32), .ndim = 2, .required = true,
          .json_param = "rows" },
        { .name = "weights", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_F32), .ndim = 1 },
        { .name = NULL },
};

static int score_check(const void *params, const struct kiln_array *in, size_t n_in, const struct kiln_object *obj,
                       struct kiln_error *err)
{
        const struct kiln_array *rows = kiln_inputs_find(in, n_in, "rows");
        const struct kiln_array *w = kiln_inputs_find(in, n_in, "weights");
        if (w && w->shape[0] != rows->shape[1])
                return kiln_error_set(err, "inputs.weights", "inputs.weights must have one weight per column (%llu)",
                                      (unsigned long long)rows->shape[1]);
        return 0;
}

static int no_run(struct kiln_task *t)
{
        return 0;
}

static const struct kiln_kind score_kind = {
        .name = "toy.score", .inputs = score_inputs, .check = score_check, .run_cpu = no_run,
};

static void test_inputs_lift_from_params(void **state)
{
        json_t *params = parse("{\"threshold\":0.5,\"rows\":[[1,2],[3,4],[5,6]]}");
        struct kiln_array in[KILN_MAX_INPUTS];
        void *data[KILN_MAX_INPUTS];
        struct kiln_error err;
        struct kiln_error kerr;

        assert_int_equal(kiln_inputs_from_params(&score_kind, params, 1 << 20, in, data, &err), 1);
        assert_string_equal(in[0].name, "rows");
        assert_int_equal(in[0].shape[0], 3);
        assert_int_equal(kiln_kind_check(&score_kind, NULL, in, 1, NULL, &kerr), 0);
        free(data[0]);
        json_decref(params);

        params = parse("{\"rows\":[[1,2],[3]]}");
        assert_int_equal(kiln_inputs_from_params(&score_kind, params, 1 << 20, in, data, &err), -EINVAL);
        assert_string_equal(err.field, "params.rows[1]");
        json_decref(params);

        params = parse("{\"threshold\":1}");
        assert_int_equal(kiln_inputs_from_params(&score_kind, params, 1 << 20, in, data, &err), 0);
        json_decref(params);
}

static void check_fails(const struct kiln_array *in, size_t n, const struct kiln_object *obj, const char *field,
                        const char *message)
{
        struct kiln_error err = { "", "" };

        assert_int_equal(kiln_kind_check(&score_kind, NULL, in, n, obj, &err), -EINVAL);
        assert_string_equal(err.field, field);
        assert_string_equal(err.message, message);
}

static void test_kind_check_names_the_bad_input(void **state)
{
        static const float rows[6], w2[2], w3[3];
        static const int32_t irows[6];
        const uint64_t s23[2] = { 2, 3 }, s6[1] = { 6 }, s2[1] = { 2 }, s3[1] = { 3 };
        struct kiln_array in[3];
        struct kiln_error err;

        assert_int_equal(kiln_array_init(&in[0], "rows", KILN_DTYPE_F32, 2, s23, rows, sizeof(rows), &err), 0);
        assert_int_equal(kiln_array_init(&in[1], "weights", KILN_DTYPE_F32, 1, s3, w3, sizeof(w3), &err), 0);
        assert_int_equal(kiln_kind_check(&score_kind, NULL, in, 2, NULL, &err), 0);

        check_fails(NULL, 0, NULL, "inputs.rows",
                    "inputs.rows is required: send it as a binary part or as params.rows");
        in[2] = in[0];
        check_fails(in, 3, NULL, "inputs.rows", "inputs.rows is given twice");
        assert_int_equal(kiln_array_init(&in[2], "extra", KILN_DTYPE_F32, 1, s6, rows, sizeof(rows), &err), 0);
        check_fails(in, 3, NULL, "inputs.extra", "inputs.extra is not an input of toy.score");
        assert_int_equal(kiln_array_init(&in[1], "weights", KILN_DTYPE_F32, 1, s2, w2, sizeof(w2), &err), 0);
        check_fails(in, 2, NULL, "inputs.weights", "inputs.weights must have one weight per column (3)");
        assert_int_equal(kiln_array_init(&in[0], "rows", KILN_DTYPE_I32, 2, s23, irows, sizeof(irows), &err), 0);
        check_fails(in, 1, NULL, "inputs.rows", "inputs.rows must have dtype f32, not i32");
        assert_int_equal(kiln_array_init(&in[0], "rows", KILN_DTYPE_F32, 1, s6, rows, sizeof(rows), &err), 0);
        check_fails(in, 1, NULL, "inputs.rows", "inputs.rows must have 2 dimensions, not 1");
        /* A hand-filled array whose bytes disagree with its shape. */
        in[0] = (struct kiln_array){ .name = "rows", .dtype = KILN_DTYPE_F32, .ndim = 2, .shape = { 2, 3 },
                                     .bytes = 20, .data = rows };
        check_fails(in, 1, NULL, "inputs.rows", "inputs.rows has 20 bytes, but its shape and dtype f32 make 24");
        /* No object for a kind that takes none. */
        int cls;
        struct kiln_object obj = { .cls = (const struct kiln_object_class *)&cls, .version = 1, .snapshot = &cls };
        assert_int_equal(kiln_array_init(&in[0], "rows", KILN_DTYPE_F32, 2, s23, rows, sizeof(rows), &err), 0);
        check_fails(in, 1, &obj, "params", "toy.score runs against no object");
}

static void test_kind_check_wants_the_kinds_object_class(void **state)
{
        static const int model_class, other_class, snapshot;
        struct kiln_kind k = { .name = "toy.model", .object = (const struct kiln_object_class *)&model_class,
                               .object_param = "model", .run_cpu = no_run };
        struct kiln_object obj = { .cls = (const struct kiln_object_class *)&model_class, .version = 3,
                                   .snapshot = &snapshot };
        struct kiln_error err;

        assert_int_equal(kiln_kind_check(&k, NULL, NULL, 0, &obj, &err), 0);
        assert_int_equal(kiln_kind_check(&k, NULL, NULL, 0, NULL, &err), -EINVAL);
        assert_string_equal(err.message, "params.model must name an object toy.model runs against");
        obj.cls = (const struct kiln_object_class *)&other_class;
        assert_int_equal(kiln_kind_check(&k, NULL, NULL, 0, &obj, &err), -EINVAL);
        assert_string_equal(err.field, "params.model");
}

static void test_array_init_checks_its_arguments(void **state)
{
        static const uint8_t b[4];
        const uint64_t s4[1] = { 4 }, huge[2] = { UINT64_MAX / 2, 3 };
        struct kiln_array a;
        struct kiln_error err;

        assert_int_equal(kiln_array_init(&a, "", KILN_DTYPE_U8, 1, s4, b, 4, &err), -EINVAL);
        assert_int_equal(kiln_array_init(&a, "a_name_of_thirty_two_characters_", KILN_DTYPE_U8, 1, s4, b, 4, &err),
                         -EINVAL);
        assert_int_equal(kiln_array_init(&a, "x", KILN_DTYPE_U8, 5, s4, b, 4, &err), -EINVAL);
        assert_int_equal(kiln_array_init(&a, "x", KILN_DTYPE_U8, 2, huge, b, 4, &err), -EINVAL);
        assert_int_equal(kiln_array_init(&a, "x", KILN_DTYPE_U8, 1, s4, NULL, 4, &err), -EINVAL);
        assert_int_equal(kiln_array_init(&a, "x", KILN_DTYPE_BYTES, 1, s4, b, 4, &err), 0);
        assert_ptr_equal(kiln_inputs_find(&a, 1, "x"), &a);
        assert_null(kiln_inputs_find(&a, 1, "y"));
}

static void test_inputs_schema_exports_as_json(void **state)
{
        json_t *s = kiln_inputs_schema_json(&score_kind);
        char *text = json_dumps(s, JSON_SORT_KEYS | JSON_COMPACT);

        assert_string_equal(text, "[{\"doc\":\"\",\"dtypes\":[\"f32\"],\"json_param\":\"rows\",\"name\":\"rows\","
                                  "\"ndim\":2,\"required\":true},{\"doc\":\"\",\"dtypes\":[\"f32\"],"
                                  "\"json_param\":null,\"name\":\"weights\",\"ndim\":1,\"required\":false}]");
        free(text);
        json_decref(s);
        s = kiln_inputs_schema_json(kiln_kind_find("lens.nfw"));
        assert_int_equal(json_array_size(s), 0);
        json_decref(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_rows_equal_the_binary_part_byte_for_byte),
                cmocka_unit_test(test_json_null_is_nan_in_f32),
                cmocka_unit_test(test_json_integers_take_the_first_allowed_integer_dtype),
                cmocka_unit_test(test_bytes_come_from_a_json_string_or_object),
                cmocka_unit_test(test_empty_arrays_have_a_zero_extent),
                cmocka_unit_test(test_json_f32_reaches_the_largest_float),
                cmocka_unit_test(test_bad_json_arrays_are_rejected_naming_the_element),
                cmocka_unit_test(test_json_arrays_over_the_limit_are_refused),
                cmocka_unit_test(test_inputs_lift_from_params),
                cmocka_unit_test(test_kind_check_names_the_bad_input),
                cmocka_unit_test(test_kind_check_wants_the_kinds_object_class),
                cmocka_unit_test(test_array_init_checks_its_arguments),
                cmocka_unit_test(test_inputs_schema_exports_as_json),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
