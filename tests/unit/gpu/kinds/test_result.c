/* Results (result.c): typed named values, parts of every dtype, ownership; and the
 * JSON text writer for JSON values (jtext.c). */
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

#include "jtext.h"
#include "kind.h"

static void test_nan_is_null_and_numbers_are_numbers(void **state)
{
        struct kiln_result r = { 0 };

        assert_int_equal(kiln_result_add_scalar(&r, "a", 1.5), 0);
        assert_int_equal(kiln_result_add_scalar(&r, "b", NAN), 0);
        assert_int_equal(kiln_result_add_scalar(&r, "c", INFINITY), 0);
        assert_int_equal(r.scalars[0].type, KILN_V_NUM);
        assert_true(r.scalars[0].num == 1.5);
        assert_int_equal(r.scalars[1].type, KILN_V_NULL);
        assert_string_equal(r.scalars[1].name, "b");
        /* Infinity stays a number; the codec writes it as null. */
        assert_int_equal(r.scalars[2].type, KILN_V_NUM);
        kiln_result_clear(&r);
}

static void test_every_value_type_is_kept_with_its_type(void **state)
{
        struct kiln_result r = { 0 };

        assert_int_equal(kiln_result_add_int(&r, "n", -(INT64_C(1) << 60)), 0);
        assert_int_equal(kiln_result_add_bool(&r, "ok", true), 0);
        assert_int_equal(kiln_result_add_string(&r, "model", "fraud-v3"), 0);
        assert_int_equal(kiln_result_add_null(&r, "nothing"), 0);
        assert_int_equal(kiln_result_add_json(&r, "ids", "[[\"a\"],[\"b\"]]"), 0);

        const struct kiln_value *v = kiln_result_find(&r, "n");
        assert_int_equal(v->type, KILN_V_INT);
        assert_true(v->i == -(INT64_C(1) << 60));
        assert_int_equal(kiln_result_find(&r, "ok")->type, KILN_V_BOOL);
        assert_true(kiln_result_find(&r, "ok")->b);
        assert_int_equal(kiln_result_find(&r, "model")->type, KILN_V_STR);
        assert_string_equal(kiln_result_find(&r, "model")->text, "fraud-v3");
        assert_int_equal(kiln_result_find(&r, "nothing")->type, KILN_V_NULL);
        assert_int_equal(kiln_result_find(&r, "ids")->type, KILN_V_JSON);
        assert_string_equal(kiln_result_find(&r, "ids")->text, "[[\"a\"],[\"b\"]]");
        assert_null(kiln_result_find(&r, "missing"));
        assert_int_equal(r.n_scalars, 5);
        kiln_result_clear(&r);
        assert_int_equal(r.n_scalars, 0);
}

static void test_strings_are_copied(void **state)
{
        struct kiln_result r = { 0 };
        char text[] = "original";

        assert_int_equal(kiln_result_add_string(&r, "s", text), 0);
        text[0] = 'X';
        assert_string_equal(kiln_result_find(&r, "s")->text, "original");
        char *owned = strdup("[1,2]");
        assert_int_equal(kiln_result_take_json(&r, "j", owned), 0);
        assert_ptr_equal(kiln_result_find(&r, "j")->text, owned);
        kiln_result_clear(&r); /* frees both (the sanitizer build checks) */
}

static void test_bad_values_are_refused(void **state)
{
        struct kiln_result r = { 0 };

        assert_int_equal(kiln_result_add_int(&r, "dup", 1), 0);
        assert_int_equal(kiln_result_add_scalar(&r, "dup", 2), -EEXIST);
        assert_int_equal(kiln_result_add_string(&r, "", "x"), -EINVAL);
        assert_int_equal(kiln_result_add_string(&r, "s", NULL), -EINVAL);
        assert_int_equal(kiln_result_add_json(&r, "j", ""), -EINVAL);
        assert_int_equal(kiln_result_take_json(&r, "j", NULL), -EINVAL);
        assert_int_equal(kiln_result_add_bool(&r, "a_name_of_thirty_two_characters_", true), -EINVAL);
        assert_int_equal(r.n_scalars, 1);
        kiln_result_clear(&r);
}

static void test_values_run_out_of_space(void **state)
{
        struct kiln_result r = { 0 };
        char name[8];

        for (int i = 0; i < KILN_MAX_SCALARS; i++) {
                snprintf(name, sizeof(name), "s%d", i);
                assert_int_equal(kiln_result_add_string(&r, name, "x"), 0);
        }
        assert_int_equal(kiln_result_add_scalar(&r, "one_more", 0), -ENOSPC);
        char *owned = strdup("[]");
        assert_int_equal(kiln_result_take_json(&r, "one_more", owned), -ENOSPC); /* and freed */
        assert_int_equal(r.n_scalars, KILN_MAX_SCALARS);
        kiln_result_clear(&r);
}

static void test_parts_of_every_dtype_are_zeroed_and_counted(void **state)
{
        struct kiln_result r = { 0 };
        uint64_t shape[2] = { 3, 5 };

        struct kiln_part *p = kiln_result_add_part(&r, "img", KILN_DTYPE_F32, 2, shape);
        assert_non_null(p);
        assert_int_equal(p->bytes, 60);
        for (int i = 0; i < 15; i++)
                assert_true(((float *)p->data)[i] == 0.0f);
        assert_int_equal(kiln_result_add_part(&r, "idx", KILN_DTYPE_I32, 2, shape)->bytes, 60);
        assert_int_equal(kiln_result_add_part(&r, "cnt", KILN_DTYPE_U32, 2, shape)->bytes, 60);
        uint64_t n = 7;
        assert_int_equal(kiln_result_add_part(&r, "flags", KILN_DTYPE_U8, 1, &n)->bytes, 7);
        assert_int_equal(kiln_result_add_part(&r, "stl", KILN_DTYPE_BYTES, 1, &n)->bytes, 7);
        assert_int_equal(kiln_result_bytes(&r), 194);
        assert_null(kiln_result_add_part(&r, "img", KILN_DTYPE_F32, 1, &n)); /* a name it holds */
        assert_null(kiln_result_add_part(&r, "bad", (enum kiln_dtype)99, 1, &n));
        for (int i = 5; i < KILN_MAX_PARTS; i++) {
                char name[8];
                snprintf(name, sizeof(name), "p%d", i);
                assert_non_null(kiln_result_add_part(&r, name, KILN_DTYPE_U8, 1, &n));
        }
        assert_null(kiln_result_add_part(&r, "one_too_many", KILN_DTYPE_U8, 1, &n));
        assert_ptr_equal(kiln_result_find_part(&r, "idx"), &r.parts[1]);
        kiln_result_clear(&r);
        assert_int_equal(r.n_parts, 0);
        assert_int_equal(kiln_result_bytes(&r), 0);
        kiln_result_clear(NULL);
}

static void test_borrowed_parts_are_not_freed(void **state)
{
        struct kiln_result r = { 0 };
        static float outside[4] = { 1, 2, 3, 4 };
        uint64_t n = 4;

        struct kiln_part *p = kiln_result_add_part(&r, "x", KILN_DTYPE_F32, 1, &n);
        free(p->data);
        p->data = outside; /* as a result parsed from a stored blob */
        p->borrowed = true;
        assert_int_equal(kiln_result_add_string(&r, "s", "owned"), 0);
        kiln_result_clear(&r); /* frees the string, leaves `outside` alone */
        assert_true(outside[3] == 4.0f);
}

static void test_part_rejects_overflowing_shape(void **state)
{
        struct kiln_result r = { 0 };
        uint64_t shape[2] = { UINT64_C(1) << 40, UINT64_C(1) << 40 };

        assert_null(kiln_result_add_part(&r, "huge", KILN_DTYPE_F32, 2, shape));
        assert_int_equal(r.n_parts, 0);
}

static void test_dtype_names_round_trip(void **state)
{
        static const char *const names[] = { "f32", "u8", "u32", "bytes", "i32" };
        enum kiln_dtype t;

        for (int i = 0; i < KILN_N_DTYPES; i++) {
                assert_string_equal(kiln_dtype_name((enum kiln_dtype)i), names[i]);
                assert_int_equal(kiln_dtype_from_name(names[i], &t), 0);
                assert_int_equal(t, i);
        }
        assert_int_equal(kiln_dtype_size(KILN_DTYPE_I32), 4);
        assert_int_equal(kiln_dtype_size(KILN_DTYPE_BYTES), 1);
        assert_int_equal(kiln_dtype_from_name("i64", &t), -EINVAL);
        assert_int_equal(kiln_dtype_from_name("f3", &t), -EINVAL);
        assert_int_equal(kiln_dtype_from_name(NULL, &t), -EINVAL);
}

/* ---- jtext ---- */

static char *finish(struct kiln_jtext *j)
{
        char *text = NULL;
        assert_int_equal(kiln_jtext_finish(j, &text), 0);
        return text;
}

static void test_jtext_writes_nested_arrays_compactly(void **state)
{
        struct kiln_jtext j;

        kiln_jtext_init(&j);
        kiln_jtext_open(&j);
        for (int q = 0; q < 2; q++) {
                kiln_jtext_open(&j);
                kiln_jtext_int(&j, q);
                kiln_jtext_num(&j, 0.5);
                kiln_jtext_num(&j, NAN);
                kiln_jtext_f32(&j, 0.1f);
                kiln_jtext_bool(&j, q == 1);
                kiln_jtext_null(&j);
                kiln_jtext_close(&j);
        }
        kiln_jtext_open(&j);
        kiln_jtext_close(&j);
        kiln_jtext_close(&j);
        char *t = finish(&j);
        assert_string_equal(t, "[[0,0.5,null,0.100000001,false,null],[1,0.5,null,0.100000001,true,null],[]]");
        free(t);
}

static void test_jtext_escapes_strings(void **state)
{
        struct kiln_jtext j;

        kiln_jtext_init(&j);
        kiln_jtext_open_object(&j);
        kiln_jtext_key(&j, "k\"ey");
        kiln_jtext_str(&j, "a\"b\\c\n\t\x01 é");
        kiln_jtext_key(&j, "none");
        kiln_jtext_str(&j, NULL);
        kiln_jtext_close(&j);
        char *t = finish(&j);
        assert_string_equal(t, "{\"k\\\"ey\":\"a\\\"b\\\\c\\n\\t\\u0001 é\",\"none\":null}");
        free(t);
}

static void test_jtext_reports_misuse(void **state)
{
        struct kiln_jtext j;
        char *t = NULL;

        kiln_jtext_init(&j);
        kiln_jtext_close(&j);
        assert_int_equal(kiln_jtext_finish(&j, &t), -EINVAL);
        kiln_jtext_init(&j);
        kiln_jtext_open(&j);
        assert_int_equal(kiln_jtext_finish(&j, &t), -EINVAL); /* unclosed */
        kiln_jtext_init(&j);
        assert_int_equal(kiln_jtext_finish(&j, &t), -EINVAL); /* nothing */
        kiln_jtext_init(&j);
        kiln_jtext_open(&j);
        kiln_jtext_key(&j, "k"); /* a key in an array */
        kiln_jtext_close(&j);
        assert_int_equal(kiln_jtext_finish(&j, &t), -EINVAL);
        assert_null(t);
}

static void test_jtext_becomes_a_json_value(void **state)
{
        struct kiln_result r = { 0 };
        struct kiln_jtext j;

        kiln_jtext_init(&j);
        kiln_jtext_open(&j);
        for (int i = 0; i < 1000; i++)
                kiln_jtext_str(&j, "doc-12345");
        kiln_jtext_close(&j);
        assert_int_equal(kiln_result_take_jtext(&r, "ids", &j), 0);
        const struct kiln_value *v = kiln_result_find(&r, "ids");
        assert_int_equal(v->type, KILN_V_JSON);
        assert_int_equal(strlen(v->text), 2 + 1000 * 11 + 999);
        kiln_result_clear(&r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_nan_is_null_and_numbers_are_numbers),
                cmocka_unit_test(test_every_value_type_is_kept_with_its_type),
                cmocka_unit_test(test_strings_are_copied),
                cmocka_unit_test(test_bad_values_are_refused),
                cmocka_unit_test(test_values_run_out_of_space),
                cmocka_unit_test(test_parts_of_every_dtype_are_zeroed_and_counted),
                cmocka_unit_test(test_borrowed_parts_are_not_freed),
                cmocka_unit_test(test_part_rejects_overflowing_shape),
                cmocka_unit_test(test_dtype_names_round_trip),
                cmocka_unit_test(test_jtext_writes_nested_arrays_compactly),
                cmocka_unit_test(test_jtext_escapes_strings),
                cmocka_unit_test(test_jtext_reports_misuse),
                cmocka_unit_test(test_jtext_becomes_a_json_value),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
