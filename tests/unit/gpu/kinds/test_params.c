/* Generic parameter validation (params.c): checking, storing into the typed struct,
 * the schema's self-check and the kind registry.
 *
 * lens.nfw exercises the real schema; a toy kind declared here covers the types
 * lens.nfw does not use (booleans, plain strings, nested objects, open bounds). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kind.h"
#include "lens_nfw/lens_nfw.h"
#include "params.h"

/* ---- a toy kind ---- */

static const char *const colours[] = { "red", "green", "blue", NULL };

struct toy_params {
        int finish_calls;
        double x;
        double sigma;
        int32_t count;
        double scale;
        bool flag;
        int colour;
        char label[8];
};

static const struct kiln_param toy_source[] = {
        { .name = "x_arcsec", .type = KILN_PARAM_NUMBER, .required = true, .min = -1e3, .max = 1e3,
          KILN_PARAM_AT(struct toy_params, x) },
        { .name = "sigma_arcsec", .type = KILN_PARAM_NUMBER, .min = 0, .min_exclusive = true, .max = INFINITY,
          .def = "1", KILN_PARAM_AT(struct toy_params, sigma) },
        { .name = NULL },
};

static const struct kiln_param toy_schema[] = {
        { .name = "count", .type = KILN_PARAM_INTEGER, .min = 1, .max = 100, .def = "10",
          KILN_PARAM_AT(struct toy_params, count) },
        { .name = "scale", .type = KILN_PARAM_NUMBER, .min = -INFINITY, .max = INFINITY, .def = "2",
          KILN_PARAM_AT(struct toy_params, scale) },
        { .name = "flag", .type = KILN_PARAM_BOOL, .def = "false", KILN_PARAM_AT(struct toy_params, flag) },
        { .name = "colour", .type = KILN_PARAM_STRING, .def = "\"red\"", .choices = colours,
          KILN_PARAM_AT(struct toy_params, colour) },
        { .name = "label", .type = KILN_PARAM_STRING, KILN_PARAM_AT(struct toy_params, label) },
        { .name = "tags", .type = KILN_PARAM_STRING_SET, .def = "[\"a\"]" },
        { .name = "source", .type = KILN_PARAM_OBJECT, .required = true, .fields = toy_source,
          .doc = "a source" },
        { .name = NULL },
};

static int toy_finish(void *params, struct kiln_error *err)
{
        struct toy_params *p = params;

        p->finish_calls++;
        if (p->x == 999.0)
                return kiln_error_set(err, "params.source.x_arcsec", "params.source.x_arcsec must not be %d", 999);
        return 0;
}

static int toy_run(struct kiln_task *t)
{
        return 0;
}

static const struct kiln_kind toy_kind = {
        .name = "toy.kind",
        .version = 1,
        .params = toy_schema,
        .params_size = sizeof(struct toy_params),
        .finish = toy_finish,
        .run_cpu = toy_run,
};

/* ---- helpers ---- */

static json_t *parse(const char *text)
{
        json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);

        assert_non_null(j);
        return j;
}

static char *dump(const json_t *j)
{
        char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);

        assert_non_null(s);
        return s;
}

/* Validates `text` for `kind` and expects success; returns the canonical object. */
static json_t *accept_params(const struct kiln_kind *kind, const char *text, void *typed)
{
        struct kiln_error err = { .field = "" };
        json_t *in = parse(text), *out = NULL;
        int r = kiln_params_validate(kind, in, &out, typed, &err);

        json_decref(in);
        if (r < 0)
                fail_msg("%s rejected: %s: %s", text, err.field, err.message);
        assert_non_null(out);
        return out;
}

/* Validates `text` and expects -EINVAL naming `field` with exactly `message`
 * (or any message when NULL); checks that nothing was written to the outputs. */
static void reject_params(const struct kiln_kind *kind, const char *text, const char *field, const char *message)
{
        struct kiln_error err = { .field = "" };
        json_t *in = parse(text), *out = (json_t *)&err;
        unsigned char typed[256];

        memset(typed, 0xa5, sizeof(typed));
        assert_true(kind->params_size <= sizeof(typed));
        assert_int_equal(kiln_params_validate(kind, in, &out, typed, &err), -EINVAL);
        json_decref(in);
        assert_ptr_equal(out, (json_t *)&err);
        for (size_t i = 0; i < kind->params_size; i++)
                assert_int_equal(typed[i], 0xa5);
        assert_string_equal(err.field, field);
        if (message)
                assert_string_equal(err.message, message);
}

#define MAP_LIST "kappa, gamma1, gamma2, alpha_x, alpha_y, mu, psi"

/* ---- lens.nfw through the generic validator ---- */

static void test_defaults_are_filled_in(void **state)
{
        struct lens_nfw_params p;
        json_t *c = accept_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5}", &p);
        char *s = dump(c);

        assert_string_equal(s, "{\"concentration\":5.0,\"fov_arcsec\":60.0,\"grid_size\":64,\"h\":0.69999999999999996,"
                               "\"maps\":[\"kappa\"],\"mass\":100000000000000.0,\"omega_m\":0.29999999999999999,"
                               "\"z_lens\":0.29999999999999999,\"z_source\":1.0}");
        assert_true(p.mass == 1e14 && p.concentration == 5.0 && p.z_lens == 0.3 && p.z_source == 1.0);
        assert_int_equal(p.grid_size, 64);
        assert_true(p.fov_arcsec == 60.0 && p.h == 0.7 && p.omega_m == 0.3);
        assert_int_equal(p.maps, LENS_NFW_KAPPA);
        free(s);
        json_decref(c);
}

/* Defaults of every literal form: those made without jansson's lexer (bare words,
 * plain integers, plain strings) give what json_loads gives, as do the others. */
static const char *const words[] = { "a b", "x\"y", "caf\xc3\xa9", NULL };

static const struct kiln_param literal_schema[] = {
        { .name = "a_int", .type = KILN_PARAM_INTEGER, .min = -1e9, .max = 1e9, .def = "-42" },
        { .name = "b_zero", .type = KILN_PARAM_INTEGER, .min = -1, .max = 1, .def = "0" },
        { .name = "c_big", .type = KILN_PARAM_NUMBER, .min = -INFINITY, .max = INFINITY, .def = "123456789012345" },
        { .name = "d_long", .type = KILN_PARAM_NUMBER, .min = -INFINITY, .max = INFINITY, .def = "1234567890123456789" },
        { .name = "e_real", .type = KILN_PARAM_NUMBER, .min = -INFINITY, .max = INFINITY, .def = "-0.25" },
        { .name = "f_exp", .type = KILN_PARAM_NUMBER, .min = -INFINITY, .max = INFINITY, .def = "1e14" },
        { .name = "g_true", .type = KILN_PARAM_BOOL, .def = "true" },
        { .name = "h_plain", .type = KILN_PARAM_STRING, .choices = words, .def = "\"a b\"" },
        { .name = "i_escaped", .type = KILN_PARAM_STRING, .choices = words, .def = "\"x\\\"y\"" },
        { .name = "j_utf8", .type = KILN_PARAM_STRING, .choices = words, .def = "\"caf\xc3\xa9\"" },
        { .name = "k_unicode", .type = KILN_PARAM_STRING, .choices = words, .def = "\"caf\\u00e9\"" },
        { .name = "l_spaced", .type = KILN_PARAM_NUMBER, .min = -INFINITY, .max = INFINITY, .def = " 7 " },
        { .name = "m_point", .type = KILN_PARAM_NUMBER, .min = -INFINITY, .max = INFINITY, .def = "0.3" },
        { .name = "n_exp", .type = KILN_PARAM_NUMBER, .min = -INFINITY, .max = INFINITY, .def = "2.5e-3" },
        { .name = "o_capexp", .type = KILN_PARAM_NUMBER, .min = -INFINITY, .max = INFINITY, .def = "-1E+2" },
        { .name = NULL },
};

static const struct kiln_kind literal_kind = {
        .name = "toy.literals",
        .version = 1,
        .params = literal_schema,
        .run_cpu = toy_run,
};

static void test_defaults_of_every_literal_form_are_what_json_gives(void **state)
{
        json_t *c = accept_params(&literal_kind, "{}", NULL);
        char *s = dump(c);

        assert_string_equal(s, "{\"a_int\":-42,\"b_zero\":0,\"c_big\":123456789012345.0,"
                               "\"d_long\":1.2345678901234568e18,\"e_real\":-0.25,\"f_exp\":100000000000000.0,"
                               "\"g_true\":true,\"h_plain\":\"a b\",\"i_escaped\":\"x\\\"y\",\"j_utf8\":\"caf\xc3\xa9\","
                               "\"k_unicode\":\"caf\xc3\xa9\",\"l_spaced\":7.0,\"m_point\":0.29999999999999999,"
                               "\"n_exp\":0.0025000000000000001,\"o_capexp\":-100.0}");
        free(s);
        json_decref(c);
}

/* kiln_params_text writes what json_dumps(JSON_COMPACT | JSON_SORT_KEYS) writes. */
static void assert_text_is_jansson(const json_t *o)
{
        char *want = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS), *got = kiln_params_text(o);
        assert_non_null(want);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(want);
        free(got);
}

static void test_params_text_is_what_jansson_writes(void **state)
{
        static const double reals[] = { 0.0, -0.0, 1.0, -1.0, 5.0, 64.0, 1e14, -1e14, 1e16, 9.9999999999999984e16,
                                        1e17, -1e17, 1.5e17, 1e22, 1e300, -1e300, 0.1, 0.3, 0.7, -0.25, 1e-5,
                                        1.2345678901234567e-7, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                                        4503599627370495.5, 9007199254740993.0, 123456.789, 3.141592653589793 };
        static const long long ints[] = { 0, 1, -1, 42, -9223372036854775807LL - 1, 9223372036854775807LL };
        static const char *const strings[] = { "", "plain", "quote\" back\\slash /", "\x01\x1f\b\f\n\r\t\x7f",
                                               "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" };
        json_t *o = json_object(), *a = json_array(), *nested = json_object();
        char key[32];

        for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
                snprintf(key, sizeof(key), "r%02zu", sizeof(reals) / sizeof(reals[0]) - i); /* unsorted */
                json_object_set_new(o, key, json_real(reals[i]));
                json_array_append_new(a, json_real(reals[i]));
        }
        for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
                snprintf(key, sizeof(key), "i%zu", i);
                json_object_set_new(o, key, json_integer(ints[i]));
                json_array_append_new(a, json_integer(ints[i]));
        }
        for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
                snprintf(key, sizeof(key), "s\t%zu\"", i);
                json_object_set_new(o, key, json_string(strings[i]));
                json_object_set_new(nested, strings[i], json_string(strings[i]));
        }
        json_object_set_new(nested, "z", json_pack("[[],{},[true,false,null],[[1.5]]]"));
        json_object_set_new(o, "array", a);
        json_object_set_new(o, "nested", nested);
        json_object_set_new(o, "B", json_true());
        json_object_set_new(o, "a", json_null());
        assert_text_is_jansson(o);
        json_decref(o);

        /* Reals from random bit patterns (finite ones) and random decimals. */
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (int i = 0; i < 20000; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                double d;
                memcpy(&d, &x, sizeof(d));
                if (!isfinite(d))
                        continue;
                double e = (double)(int64_t)(x >> 20) / (double)(1 + (x & 0xfff));
                double f = (double)(int64_t)(x % 2000001) - 1000000.0;
                json_t *r = json_pack("{s:f,s:f,s:f}", "bits", d, "ratio", e, "whole", f);
                assert_text_is_jansson(r);
                json_decref(r);
        }
        /* Objects of more keys than kept on the stack. */
        o = json_object();
        for (int i = 0; i < 40; i++) {
                snprintf(key, sizeof(key), "k%d", (i * 17) % 40);
                json_object_set_new(o, key, json_integer(i));
        }
        assert_text_is_jansson(o);
        json_decref(o);
}

static void test_canonical_form_ignores_spelled_out_defaults(void **state)
{
        json_t *a = accept_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5}", NULL);
        json_t *b = accept_params(&kiln_kind_lens_nfw,
                                  "{\"omega_m\":0.3,\"h\":0.7,\"maps\":[\"kappa\",\"kappa\"],\"fov_arcsec\":60,"
                                  "\"grid_size\":64.0,\"z_source\":1,\"z_lens\":0.3,\"concentration\":5.0,"
                                  "\"mass\":100000000000000}",
                                  NULL);
        char *sa = dump(a), *sb = dump(b);

        assert_string_equal(sa, sb);
        free(sa);
        free(sb);
        json_decref(a);
        json_decref(b);
}

static void test_integer_given_for_number_becomes_real(void **state)
{
        json_t *c = accept_params(&kiln_kind_lens_nfw, "{\"mass\":100000000000000,\"concentration\":5}", NULL);

        assert_true(json_is_real(json_object_get(c, "mass")));
        assert_true(json_is_real(json_object_get(c, "concentration")));
        assert_true(json_real_value(json_object_get(c, "mass")) == 1e14);
        json_decref(c);
}

static void test_integral_real_is_accepted_as_integer(void **state)
{
        struct lens_nfw_params p;
        json_t *c = accept_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"grid_size\":128.0}", &p);

        assert_true(json_is_integer(json_object_get(c, "grid_size")));
        assert_int_equal(json_integer_value(json_object_get(c, "grid_size")), 128);
        assert_int_equal(p.grid_size, 128);
        json_decref(c);
}

static void test_fractional_real_is_rejected_as_integer(void **state)
{
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"grid_size\":64.5}",
                      "params.grid_size", "params.grid_size must be an integer");
}

static void test_missing_required_parameter_is_rejected(void **state)
{
        reject_params(&kiln_kind_lens_nfw, "{\"concentration\":5}", "params.mass", "params.mass is required");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14}", "params.concentration",
                      "params.concentration is required");
}

static void test_unknown_parameter_is_rejected(void **state)
{
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"foo\":1}", "params.foo",
                      "params.foo is not a parameter of lens.nfw");
}

static void test_wrong_types_are_rejected(void **state)
{
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":\"1e14\",\"concentration\":5}", "params.mass",
                      "params.mass must be a number");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":null,\"concentration\":5}", "params.mass",
                      "params.mass must be a number");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"grid_size\":\"64\"}",
                      "params.grid_size", "params.grid_size must be an integer");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"grid_size\":true}",
                      "params.grid_size", "params.grid_size must be an integer");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"maps\":\"kappa\"}", "params.maps",
                      "params.maps must be an array of strings");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"maps\":[\"kappa\",7]}",
                      "params.maps[1]", "params.maps[1] must be a string");
}

static void test_out_of_range_values_are_rejected(void **state)
{
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e18,\"concentration\":5}", "params.mass",
                      "params.mass must be between 1e+08 and 1e+17");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e7,\"concentration\":5}", "params.mass",
                      "params.mass must be between 1e+08 and 1e+17");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"grid_size\":8193}",
                      "params.grid_size", "params.grid_size must be between 8 and 8192");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"grid_size\":-1e300}",
                      "params.grid_size", "params.grid_size must be between 8 and 8192");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"h\":0.39}", "params.h",
                      "params.h must be between 0.4 and 1");
}

static void test_inclusive_bounds_are_accepted(void **state)
{
        json_t *c = accept_params(&kiln_kind_lens_nfw,
                                  "{\"mass\":1e8,\"concentration\":50,\"grid_size\":8,\"h\":1,\"omega_m\":0.01}", NULL);
        json_decref(c);
        c = accept_params(&kiln_kind_lens_nfw, "{\"mass\":1e17,\"concentration\":1,\"grid_size\":8192,\"z_source\":20}",
                          NULL);
        json_decref(c);
}

static void test_exclusive_minimum_is_rejected(void **state)
{
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"fov_arcsec\":0}",
                      "params.fov_arcsec", "params.fov_arcsec must be greater than 0 and at most 1e+06");
        json_t *c = accept_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"fov_arcsec\":1e-9}",
                                  NULL);
        json_decref(c);
}

static void test_string_set_is_deduplicated_in_schema_order(void **state)
{
        struct lens_nfw_params p;
        json_t *c = accept_params(&kiln_kind_lens_nfw,
                                  "{\"mass\":1e14,\"concentration\":5,\"maps\":[\"psi\",\"kappa\",\"psi\",\"gamma1\"]}",
                                  &p);
        char *s = dump(json_object_get(c, "maps"));

        assert_string_equal(s, "[\"kappa\",\"gamma1\",\"psi\"]");
        assert_int_equal(p.maps, LENS_NFW_KAPPA | LENS_NFW_GAMMA1 | LENS_NFW_PSI);
        free(s);
        json_decref(c);
}

static void test_string_set_names_a_bad_element_by_index(void **state)
{
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"maps\":[\"kappa\",\"mu\",\"bogus\"]}",
                      "params.maps[2]", "params.maps[2] must be one of " MAP_LIST);
}

static void test_empty_string_set_is_rejected(void **state)
{
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"maps\":[]}", "params.maps",
                      "params.maps must name at least one of " MAP_LIST);
}

static void test_source_not_behind_lens_is_rejected(void **state)
{
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"z_lens\":2,\"z_source\":1}",
                      "params.z_source", "params.z_source must be greater than z_lens (2)");
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"z_lens\":1}", "params.z_source",
                      NULL);
        reject_params(&kiln_kind_lens_nfw, "{\"mass\":1e14,\"concentration\":5,\"z_source\":0.001}",
                      "params.z_source", "params.z_source must be greater than 0.001 and at most 20");
}

static void test_params_that_are_not_an_object_are_rejected(void **state)
{
        reject_params(&kiln_kind_lens_nfw, "[1,2]", "params", "params must be an object");
        reject_params(&kiln_kind_lens_nfw, "\"mass\"", "params", "params must be an object");
}

static void test_null_params_count_as_empty(void **state)
{
        struct kiln_error err = { .field = "" };
        json_t *out = NULL;

        assert_int_equal(kiln_params_validate(&kiln_kind_lens_nfw, NULL, &out, NULL, &err), -EINVAL);
        assert_null(out);
        assert_string_equal(err.field, "params.mass");
}

/* ---- the generic types through the toy kind ---- */

static void test_nested_object_is_validated_with_defaults(void **state)
{
        struct toy_params p = { 0 };
        json_t *c = accept_params(&toy_kind, "{\"source\":{\"x_arcsec\":3}}", &p);
        char *s = dump(c);

        assert_string_equal(s, "{\"colour\":\"red\",\"count\":10,\"flag\":false,\"scale\":2.0,"
                               "\"source\":{\"sigma_arcsec\":1.0,\"x_arcsec\":3.0},\"tags\":[\"a\"]}");
        assert_int_equal(p.finish_calls, 1);
        assert_true(p.x == 3.0);
        free(s);
        json_decref(c);
}

static void test_nested_errors_name_the_full_path(void **state)
{
        reject_params(&toy_kind, "{\"source\":{}}", "params.source.x_arcsec", "params.source.x_arcsec is required");
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":\"1\"}}", "params.source.x_arcsec",
                      "params.source.x_arcsec must be a number");
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":1,\"y\":2}}", "params.source.y",
                      "params.source.y is not a parameter of toy.kind");
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":1,\"sigma_arcsec\":0}}", "params.source.sigma_arcsec",
                      "params.source.sigma_arcsec must be greater than 0");
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":1001}}", "params.source.x_arcsec",
                      "params.source.x_arcsec must be between -1000 and 1000");
        reject_params(&toy_kind, "{\"source\":[1]}", "params.source", "params.source must be an object");
        reject_params(&toy_kind, "{}", "params.source", "params.source is required");
}

static void test_bool_and_string_choices_are_checked(void **state)
{
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":1},\"flag\":1}", "params.flag",
                      "params.flag must be true or false");
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":1},\"colour\":\"pink\"}", "params.colour",
                      "params.colour must be one of red, green, blue");
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":1},\"label\":5}", "params.label",
                      "params.label must be a string");
        json_t *c = accept_params(&toy_kind, "{\"source\":{\"x_arcsec\":1},\"flag\":true,\"colour\":\"blue\"}", NULL);
        assert_true(json_is_true(json_object_get(c, "flag")));
        assert_string_equal(json_string_value(json_object_get(c, "colour")), "blue");
        json_decref(c);
}

static void test_optional_parameter_without_default_is_left_out(void **state)
{
        json_t *c = accept_params(&toy_kind, "{\"source\":{\"x_arcsec\":1}}", NULL);

        assert_null(json_object_get(c, "label"));
        json_decref(c);
        c = accept_params(&toy_kind, "{\"source\":{\"x_arcsec\":1},\"label\":\"hi\"}", NULL);
        assert_string_equal(json_string_value(json_object_get(c, "label")), "hi");
        json_decref(c);
}

static void test_unbounded_number_accepts_any_finite_value(void **state)
{
        json_t *c = accept_params(&toy_kind, "{\"source\":{\"x_arcsec\":1},\"scale\":-1e300}", NULL);

        assert_true(json_real_value(json_object_get(c, "scale")) == -1e300);
        json_decref(c);
}

static void test_string_set_without_choices_keeps_first_seen_order(void **state)
{
        json_t *c = accept_params(&toy_kind, "{\"source\":{\"x_arcsec\":1},\"tags\":[\"z\",\"b\",\"z\",\"a\"]}", NULL);
        char *s = dump(json_object_get(c, "tags"));

        assert_string_equal(s, "[\"z\",\"b\",\"a\"]");
        free(s);
        json_decref(c);
}

static void test_finish_hook_errors_are_reported(void **state)
{
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":999}}", "params.source.x_arcsec",
                      "params.source.x_arcsec must not be 999");
}

static void test_schema_exports_as_json(void **state)
{
        json_t *s = kiln_params_schema_json(&kiln_kind_lens_nfw);

        assert_non_null(s);
        assert_true(json_is_array(s));
        assert_int_equal(json_array_size(s), 9);
        json_t *mass = json_array_get(s, 0);
        char *m = dump(mass);
        assert_string_equal(m, "{\"doc\":\"M200 of the halo in solar masses\",\"max\":1e17,\"min\":100000000.0,"
                               "\"min_exclusive\":false,\"name\":\"mass\",\"required\":true,\"type\":\"number\"}");
        free(m);
        json_t *grid = json_array_get(s, 4);
        assert_string_equal(json_string_value(json_object_get(grid, "type")), "integer");
        assert_true(json_is_integer(json_object_get(grid, "min")));
        assert_int_equal(json_integer_value(json_object_get(grid, "default")), 64);
        json_t *maps = json_array_get(s, 6);
        assert_string_equal(json_string_value(json_object_get(maps, "type")), "string_set");
        assert_int_equal(json_array_size(json_object_get(maps, "choices")), 7);
        char *d = dump(json_object_get(maps, "default"));
        assert_string_equal(d, "[\"kappa\"]");
        free(d);
        json_decref(s);

        s = kiln_params_schema_json(&toy_kind);
        json_t *source = json_array_get(s, 6);
        assert_string_equal(json_string_value(json_object_get(source, "type")), "object");
        json_t *fields = json_object_get(source, "fields");
        assert_int_equal(json_array_size(fields), 2);
        json_t *sigma = json_array_get(fields, 1);
        assert_true(json_is_true(json_object_get(sigma, "min_exclusive")));
        assert_null(json_object_get(sigma, "max"));
        json_decref(s);
}

/* ---- registry and results ---- */

static void test_registry_finds_lens_nfw(void **state)
{
        size_t n = 0;

        assert_ptr_equal(kiln_kind_find("lens.nfw"), &kiln_kind_lens_nfw);
        assert_null(kiln_kind_find("lens.none"));
        assert_null(kiln_kind_find(NULL));
        while (kiln_kinds[n])
                n++;
        assert_true(n >= 1);
        assert_string_equal(kiln_kind_lens_nfw.name, "lens.nfw");
        assert_int_equal(kiln_kind_lens_nfw.version, 1);
        assert_non_null(kiln_kind_lens_nfw.run_cpu);
}

static void test_lens_nfw_result_bytes_count_requested_maps(void **state)
{
        struct lens_nfw_params p = { .grid_size = 64, .maps = LENS_NFW_KAPPA | LENS_NFW_MU | LENS_NFW_PSI };

        assert_int_equal(kiln_kind_lens_nfw.result_bytes(&p), 3 * 64 * 64 * 4);
        p.grid_size = 8192;
        p.maps = LENS_NFW_ALL_MAPS;
        assert_int_equal(kiln_kind_lens_nfw.result_bytes(&p), 7ull * 8192 * 8192 * 4);
}

static void test_parameters_are_stored_in_the_typed_struct(void **state)
{
        struct toy_params p = { 0 };
        json_t *c = accept_params(&toy_kind,
                                  "{\"source\":{\"x_arcsec\":-2.5},\"count\":7,\"scale\":-3,\"flag\":true,"
                                  "\"colour\":\"blue\",\"label\":\"hello\"}",
                                  &p);

        assert_true(p.x == -2.5);
        assert_true(p.sigma == 1.0); /* the default */
        assert_int_equal(p.count, 7);
        assert_true(p.scale == -3.0);
        assert_true(p.flag);
        assert_int_equal(p.colour, 2); /* the index of "blue" in the choices */
        assert_string_equal(p.label, "hello");
        assert_int_equal(p.finish_calls, 1);
        json_decref(c);
}

/* An optional string without a default names something when given: never empty. */
static void test_string_longer_than_its_storage_or_empty_is_rejected(void **state)
{
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":1},\"label\":\"12345678\"}", "params.label",
                      "params.label must be a string of 1 to 7 bytes without NUL");
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":1},\"label\":\"\"}", "params.label",
                      "params.label must be a string of 1 to 7 bytes without NUL");
}

static void test_lens_nfw_maps_are_stored_as_bits(void **state)
{
        struct lens_nfw_params p;
        json_t *c = accept_params(&kiln_kind_lens_nfw,
                                  "{\"mass\":1e14,\"concentration\":5,\"maps\":[\"psi\",\"kappa\",\"gamma2\"]}", &p);

        assert_int_equal(p.maps, LENS_NFW_KAPPA | LENS_NFW_GAMMA2 | LENS_NFW_PSI);
        assert_int_equal(p.grid_size, 64);
        json_decref(c);
}

static void test_every_builtin_kind_passes_the_schema_check(void **state)
{
        struct kiln_error err;

        for (size_t i = 0; kiln_kinds[i]; i++) {
                int r = kiln_params_schema_check(kiln_kinds[i], &err);
                if (r < 0)
                        fail_msg("%s: %s: %s", kiln_kinds[i]->name, err.field, err.message);
        }
        assert_int_equal(kiln_params_schema_check(&toy_kind, &err), 0);
}

struct bad_params {
        double d;
        char c;
};

static void test_schema_check_finds_unusable_storage(void **state)
{
        static const struct kiln_param wrong_size[] = {
                { .name = "n", .type = KILN_PARAM_NUMBER, .min = -INFINITY, .max = INFINITY, .def = "1",
                  KILN_PARAM_AT(struct bad_params, c) },
                { .name = NULL },
        };
        static const struct kiln_param bad_default[] = {
                { .name = "n", .type = KILN_PARAM_NUMBER, .min = 0, .max = 1, .def = "5",
                  KILN_PARAM_AT(struct bad_params, d) },
                { .name = NULL },
        };
        struct kiln_kind k = { .name = "bad.kind", .params = wrong_size, .params_size = sizeof(struct bad_params),
                               .run_cpu = toy_run };
        struct kiln_error err;

        assert_int_equal(kiln_params_schema_check(&k, &err), -EINVAL);
        assert_string_equal(err.field, "params.n");
        /* Validation refuses it the same way rather than writing a wrong size. */
        json_t *in = parse("{}"), *out = NULL;
        struct bad_params p;
        assert_int_equal(kiln_params_validate(&k, in, &out, &p, &err), -EINVAL);
        assert_string_equal(err.message, "params.n has an unusable storage in the schema of bad.kind");
        json_decref(in);
        k.params = bad_default;
        assert_int_equal(kiln_params_schema_check(&k, &err), -EINVAL);
        assert_string_equal(err.message, "params.n must be between 0 and 1");
}

static const struct kiln_input_spec rows_inputs[] = {
        { .name = "rows", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_F32), .ndim = 2, .required = true,
          .json_param = "rows" },
        { .name = NULL },
};

static void test_input_params_are_left_out_of_the_canonical_params(void **state)
{
        struct toy_params p;
        struct kiln_kind k = toy_kind;
        k.inputs = rows_inputs;
        json_t *c = accept_params(&k, "{\"source\":{\"x_arcsec\":1},\"rows\":[[1,2],[3,4]]}", &p);

        assert_null(json_object_get(c, "rows"));
        assert_non_null(json_object_get(c, "source"));
        json_decref(c);
        /* Without the input spec the same key is an unknown parameter. */
        reject_params(&toy_kind, "{\"source\":{\"x_arcsec\":1},\"rows\":[[1,2]]}", "params.rows",
                      "params.rows is not a parameter of toy.kind");
        /* Only at the top level. */
        reject_params(&k, "{\"source\":{\"x_arcsec\":1,\"rows\":[]}}", "params.source.rows",
                      "params.source.rows is not a parameter of toy.kind");
}

static void test_object_param_must_be_a_required_string(void **state)
{
        static const struct kiln_param schema[] = {
                { .name = "model", .type = KILN_PARAM_STRING, .required = true },
                { .name = NULL },
        };
        static const int some_class; /* any address: the check does not look inside */
        struct kiln_kind k = { .name = "obj.kind", .params = schema, .params_size = 1, .run_cpu = toy_run,
                               .object = (const struct kiln_object_class *)&some_class, .object_param = "model" };
        struct kiln_error err;

        assert_int_equal(kiln_params_schema_check(&k, &err), 0);
        k.object_param = "collection";
        assert_int_equal(kiln_params_schema_check(&k, &err), -EINVAL);
        k.object_param = NULL;
        assert_int_equal(kiln_params_schema_check(&k, &err), -EINVAL);

        json_t *in = parse("{\"model\":\"fraud\"}"), *c = NULL;
        k.object_param = "model";
        assert_int_equal(kiln_params_validate(&k, in, &c, NULL, &err), 0);
        assert_string_equal(kiln_params_object_name(&k, c), "fraud");
        assert_null(kiln_params_object_name(&toy_kind, c));
        json_decref(in);
        json_decref(c);
}

static void test_result_bytes_go_through_the_kind(void **state)
{
        struct lens_nfw_params p = { .grid_size = 64, .maps = LENS_NFW_KAPPA | LENS_NFW_MU };

        assert_int_equal(kiln_kind_result_bytes(&kiln_kind_lens_nfw, &p, NULL, 0, NULL), 2 * 64 * 64 * 4);
        assert_int_equal(kiln_kind_result_bytes(&toy_kind, &p, NULL, 0, NULL), 0);
        assert_int_equal(kiln_kind_result_bytes(NULL, &p, NULL, 0, NULL), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults_are_filled_in),
                cmocka_unit_test(test_params_text_is_what_jansson_writes),
                cmocka_unit_test(test_defaults_of_every_literal_form_are_what_json_gives),
                cmocka_unit_test(test_canonical_form_ignores_spelled_out_defaults),
                cmocka_unit_test(test_integer_given_for_number_becomes_real),
                cmocka_unit_test(test_integral_real_is_accepted_as_integer),
                cmocka_unit_test(test_fractional_real_is_rejected_as_integer),
                cmocka_unit_test(test_missing_required_parameter_is_rejected),
                cmocka_unit_test(test_unknown_parameter_is_rejected),
                cmocka_unit_test(test_wrong_types_are_rejected),
                cmocka_unit_test(test_out_of_range_values_are_rejected),
                cmocka_unit_test(test_inclusive_bounds_are_accepted),
                cmocka_unit_test(test_exclusive_minimum_is_rejected),
                cmocka_unit_test(test_string_set_is_deduplicated_in_schema_order),
                cmocka_unit_test(test_string_set_names_a_bad_element_by_index),
                cmocka_unit_test(test_empty_string_set_is_rejected),
                cmocka_unit_test(test_source_not_behind_lens_is_rejected),
                cmocka_unit_test(test_params_that_are_not_an_object_are_rejected),
                cmocka_unit_test(test_null_params_count_as_empty),
                cmocka_unit_test(test_nested_object_is_validated_with_defaults),
                cmocka_unit_test(test_nested_errors_name_the_full_path),
                cmocka_unit_test(test_bool_and_string_choices_are_checked),
                cmocka_unit_test(test_optional_parameter_without_default_is_left_out),
                cmocka_unit_test(test_unbounded_number_accepts_any_finite_value),
                cmocka_unit_test(test_string_set_without_choices_keeps_first_seen_order),
                cmocka_unit_test(test_finish_hook_errors_are_reported),
                cmocka_unit_test(test_schema_exports_as_json),
                cmocka_unit_test(test_registry_finds_lens_nfw),
                cmocka_unit_test(test_lens_nfw_result_bytes_count_requested_maps),
                cmocka_unit_test(test_parameters_are_stored_in_the_typed_struct),
                cmocka_unit_test(test_string_longer_than_its_storage_or_empty_is_rejected),
                cmocka_unit_test(test_lens_nfw_maps_are_stored_as_bits),
                cmocka_unit_test(test_every_builtin_kind_passes_the_schema_check),
                cmocka_unit_test(test_schema_check_finds_unusable_storage),
                cmocka_unit_test(test_input_params_are_left_out_of_the_canonical_params),
                cmocka_unit_test(test_object_param_must_be_a_required_string),
                cmocka_unit_test(test_result_bytes_go_through_the_kind),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
