/* The result codec: blobs round-trip, malformed blobs are refused, `done` texts. */
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

#include "json_compact.h"
#include "jtext.h"
#include "result_codec.h"

/* A result with three scalars (one null) and two parts of different dtypes. */
static void make_result(struct kiln_result *r)
{
        memset(r, 0, sizeof(*r));
        assert_true(kiln_result_add_scalar(r, "mass", 1e14) >= 0);
        assert_true(kiln_result_add_scalar(r, "theta_e_arcsec", NAN) >= 0);
        assert_true(kiln_result_add_scalar(r, "third", 0.1) >= 0);
        uint64_t shape2[2] = { 3, 5 }, shape1[1] = { 7 };
        struct kiln_part *a = kiln_result_add_part(r, "kappa", KILN_DTYPE_F32, 2, shape2);
        struct kiln_part *b = kiln_result_add_part(r, "zone", KILN_DTYPE_U8, 1, shape1);
        assert_non_null(a);
        assert_non_null(b);
        for (size_t i = 0; i < 15; i++)
                ((float *)a->data)[i] = (float)i * 0.5f - 3.0f;
        for (size_t i = 0; i < 7; i++)
                ((uint8_t *)b->data)[i] = (uint8_t)(i * 37);
}

static uint8_t *encode(const struct kiln_result *r, size_t *ret_size)
{
        char *scalars = result_scalars_text(r);
        struct result_blob *b = NULL;
        assert_int_equal(result_blob_new(r, scalars, &b), 0);
        size_t n = result_blob_size(b);
        uint8_t *buf = malloc(n);
        assert_non_null(buf);
        /* in uneven pieces, as the store writes it */
        for (size_t off = 0; off < n; off += 13)
                result_blob_write_range(b, buf + off, off, n - off < 13 ? n - off : 13);
        result_blob_free(b); /* and the scalars text it took */
        *ret_size = n;
        return buf;
}

static void test_blob_round_trip(void **state)
{
        struct kiln_result r, back;
        make_result(&r);
        size_t n;
        uint8_t *buf = encode(&r, &n);
        assert_int_equal(result_blob_parse(buf, n, &back), 0);
        assert_int_equal(back.n_scalars, 3);
        assert_string_equal(back.scalars[0].name, "mass");
        assert_int_equal(back.scalars[0].type, KILN_V_NUM);
        assert_true(back.scalars[0].num == 1e14);
        assert_int_equal(back.scalars[1].type, KILN_V_NULL);
        assert_true(back.scalars[2].num == 0.1); /* 17 digits: exact */
        assert_int_equal(back.n_parts, 2);
        for (int i = 0; i < 2; i++) {
                assert_string_equal(back.parts[i].name, r.parts[i].name);
                assert_int_equal(back.parts[i].dtype, r.parts[i].dtype);
                assert_int_equal(back.parts[i].ndim, r.parts[i].ndim);
                assert_memory_equal(back.parts[i].shape, r.parts[i].shape, sizeof(uint64_t) * (size_t)r.parts[i].ndim);
                assert_int_equal(back.parts[i].bytes, r.parts[i].bytes);
                assert_memory_equal(back.parts[i].data, r.parts[i].data, r.parts[i].bytes);
                /* part data is 8-byte aligned within the blob */
                assert_int_equal(((uint8_t *)back.parts[i].data - buf) % 8, 0);
                assert_true(back.parts[i].borrowed);
        }
        kiln_result_clear(&back); /* leaves the parts (in buf) alone */
        free(buf);
        kiln_result_clear(&r);
}

static uint32_t get_u32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A part's header is the compact JSON jansson writes, whether or not its name needs
 * escaping (the input blobs' digests, hence cache keys, depend on these bytes). */
static void test_part_headers_are_jansson_compact_json(void **state)
{
        const char *names[] = { "rows", "a\"b\\c\n" };
        for (int k = 0; k < 2; k++) {
                struct kiln_result r;
                memset(&r, 0, sizeof(r));
                uint64_t shape[2] = { 1, 4 };
                struct kiln_part *p = kiln_result_add_part(&r, "x", KILN_DTYPE_F32, 2, shape);
                assert_non_null(p);
                snprintf(p->name, sizeof(p->name), "%s", names[k]);
                size_t n;
                uint8_t *buf = encode(&r, &n);
                uint32_t scalars = get_u32(buf + 8);
                const uint8_t *h = buf + 12 + scalars + 4;
                uint32_t hl = get_u32(h);
                json_t *o = json_pack("{s:s, s:s, s:[I, I], s:I}", "name", names[k], "dtype", "f32", "shape",
                                      (json_int_t)1, (json_int_t)4, "bytes", (json_int_t)16);
                char *want = json_dumps(o, JSON_COMPACT);
                assert_int_equal(hl, strlen(want));
                assert_memory_equal(h + 4, want, hl);
                free(want);
                json_decref(o);
                free(buf);
                kiln_result_clear(&r);
        }
}

/* A result with a value of every type and a part of every dtype. */
static void make_typed(struct kiln_result *r)
{
        memset(r, 0, sizeof(*r));
        assert_int_equal(kiln_result_add_scalar(r, "score", 0.25), 0);
        assert_int_equal(kiln_result_add_scalar(r, "whole", 3.0), 0);
        assert_int_equal(kiln_result_add_scalar(r, "inf", INFINITY), 0);
        assert_int_equal(kiln_result_add_int(r, "makespan", INT64_C(1) << 40), 0);
        assert_int_equal(kiln_result_add_bool(r, "optimal", true), 0);
        assert_int_equal(kiln_result_add_string(r, "model", "fraud \"v3\""), 0);
        assert_int_equal(kiln_result_add_null(r, "none"), 0);
        assert_int_equal(kiln_result_add_json(r, "ids", "[[\"a\", \"b\"], [\"c\", \"d\"]]"), 0);
        assert_int_equal(kiln_result_add_json(r, "starts", "[[0,3],[2,5]]"), 0);
        uint64_t shape[1] = { 3 };
        const enum kiln_dtype dts[] = { KILN_DTYPE_F32, KILN_DTYPE_I32, KILN_DTYPE_U32, KILN_DTYPE_U8, KILN_DTYPE_BYTES };
        const char *names[] = { "f", "i", "u", "b", "raw" };
        for (int k = 0; k < 5; k++) {
                struct kiln_part *p = kiln_result_add_part(r, names[k], dts[k], 1, shape);
                assert_non_null(p);
                memset(p->data, 0x40 + k, p->bytes);
        }
}

static void test_typed_values_round_trip(void **state)
{
        struct kiln_result r, back;
        make_typed(&r);
        size_t n;
        uint8_t *buf = encode(&r, &n);
        assert_int_equal(result_blob_parse(buf, n, &back), 0);
        assert_int_equal(back.n_scalars, r.n_scalars);
        const struct kiln_value *v = kiln_result_find(&back, "score");
        assert_int_equal(v->type, KILN_V_NUM);
        assert_true(v->num == 0.25);
        v = kiln_result_find(&back, "whole"); /* written 3.0: stays a number */
        assert_int_equal(v->type, KILN_V_NUM);
        assert_true(v->num == 3.0);
        assert_int_equal(kiln_result_find(&back, "inf")->type, KILN_V_NULL);
        v = kiln_result_find(&back, "makespan");
        assert_int_equal(v->type, KILN_V_INT);
        assert_true(v->i == INT64_C(1) << 40);
        v = kiln_result_find(&back, "optimal");
        assert_int_equal(v->type, KILN_V_BOOL);
        assert_true(v->b);
        v = kiln_result_find(&back, "model");
        assert_int_equal(v->type, KILN_V_STR);
        assert_string_equal(v->text, "fraud \"v3\"");
        assert_int_equal(kiln_result_find(&back, "none")->type, KILN_V_NULL);
        v = kiln_result_find(&back, "ids");
        assert_int_equal(v->type, KILN_V_JSON);
        assert_string_equal(v->text, "[[\"a\",\"b\"],[\"c\",\"d\"]]");
        assert_string_equal(kiln_result_find(&back, "starts")->text, "[[0,3],[2,5]]");
        assert_int_equal(back.n_parts, 5);
        for (int i = 0; i < 5; i++) {
                assert_int_equal(back.parts[i].dtype, r.parts[i].dtype);
                assert_int_equal(back.parts[i].bytes, r.parts[i].bytes);
                assert_memory_equal(back.parts[i].data, r.parts[i].data, r.parts[i].bytes);
        }
        /* The same values, formatted again, give the same text. */
        char *a = result_scalars_text(&r), *b = result_scalars_text(&back);
        assert_string_equal(a, "{\"score\":0.25,\"whole\":3.0,\"inf\":null,\"makespan\":1099511627776,"
                               "\"optimal\":true,\"model\":\"fraud \\\"v3\\\"\",\"none\":null,"
                               "\"ids\":[[\"a\",\"b\"],[\"c\",\"d\"]],\"starts\":[[0,3],[2,5]]}");
        assert_string_equal(a, b);
        free(a);
        free(b);
        kiln_result_clear(&back);
        free(buf);
        kiln_result_clear(&r);
}

static void test_a_json_value_that_does_not_parse_is_null(void **state)
{
        struct kiln_result r = { 0 };
        assert_int_equal(kiln_result_add_json(&r, "bad", "[1, 2"), 0);
        assert_int_equal(kiln_result_add_json(&r, "ctl", "[\"a\x01\"]"), 0);     /* a raw control byte */
        assert_int_equal(kiln_result_add_json(&r, "utf8", "[\"\xc0\x80\"]"), 0); /* an overlong form */
        assert_int_equal(kiln_result_add_json(&r, "tail", "[1] 2"), 0);
        assert_int_equal(kiln_result_add_json(&r, "ok", " [ \"\xe2\x82\xac\" , {\"a\" : 1e+20} ] "), 0);
        char *t = result_scalars_text(&r);
        assert_string_equal(t, "{\"bad\":null,\"ctl\":null,\"utf8\":null,\"tail\":null,"
                               "\"ok\":[\"\xe2\x82\xac\",{\"a\":1e+20}]}");
        free(t);
        kiln_result_clear(&r);
}

/* Whatever JSON value a kind gives, the blob written of it is read back: an array
 * or object as deep as the scanner takes, numbers jansson cannot hold inside one;
 * a JSON text of one scalar that jansson does not read is null. */
static void test_every_json_value_written_is_read_back(void **state)
{
        char deep[2 * JSON_COMPACT_MAX_DEPTH + 1];
        struct kiln_result r = { 0 }, back;
        for (int d = 0; d < JSON_COMPACT_MAX_DEPTH; d++)
                deep[d] = '[', deep[2 * JSON_COMPACT_MAX_DEPTH - 1 - d] = ']';
        deep[2 * JSON_COMPACT_MAX_DEPTH] = '\0';
        assert_int_equal(kiln_result_add_json(&r, "deep", deep), 0);
        assert_int_equal(kiln_result_add_json(&r, "big", "[1e400,18446744073709551616,\"\\ud800\"]"), 0);
        assert_int_equal(kiln_result_add_json(&r, "huge", "1e400"), 0);
        assert_int_equal(kiln_result_add_json(&r, "nul", "\"a\\u0000b\""), 0);
        assert_int_equal(kiln_result_add_json(&r, "one", " 7 "), 0);
        size_t n;
        uint8_t *buf = encode(&r, &n);
        assert_int_equal(result_blob_parse(buf, n, &back), 0);
        assert_string_equal(kiln_result_find(&back, "deep")->text, deep);
        assert_string_equal(kiln_result_find(&back, "big")->text, "[1e400,18446744073709551616,\"\\ud800\"]");
        assert_int_equal(kiln_result_find(&back, "huge")->type, KILN_V_NULL);
        assert_int_equal(kiln_result_find(&back, "nul")->type, KILN_V_NULL);
        assert_int_equal(kiln_result_find(&back, "one")->type, KILN_V_INT);
        assert_int_equal(kiln_result_find(&back, "one")->i, 7);
        kiln_result_clear(&back);
        free(buf);
        kiln_result_clear(&r);
}

/* A search's ids (q x k strings) go into the blob and the done message as they
 * are, and come back from the blob as the same text. */
static void test_a_big_json_value_round_trips_as_text(void **state)
{
        struct kiln_result r = { 0 }, back;
        struct kiln_jtext j;
        char id[32];
        kiln_jtext_init(&j);
        kiln_jtext_open(&j);
        for (int q = 0; q < 1000; q++) {
                kiln_jtext_open(&j);
                for (int h = 0; h < 100; h++) {
                        snprintf(id, sizeof(id), "id \"%d\" \\ %d", q, h);
                        kiln_jtext_str(&j, id);
                }
                kiln_jtext_close(&j);
        }
        kiln_jtext_close(&j);
        assert_int_equal(kiln_result_take_jtext(&r, "ids", &j), 0);
        assert_int_equal(kiln_result_add_int(&r, "count", 7), 0);
        const char *ids = kiln_result_find(&r, "ids")->text;
        size_t n;
        uint8_t *buf = encode(&r, &n);
        assert_int_equal(result_blob_parse(buf, n, &back), 0);
        assert_int_equal(kiln_result_find(&back, "ids")->type, KILN_V_JSON);
        assert_string_equal(kiln_result_find(&back, "ids")->text, ids);
        assert_int_equal(kiln_result_find(&back, "count")->i, 7);
        json_t *o = json_loads(kiln_result_find(&back, "ids")->text, 0, NULL);
        assert_int_equal(json_array_size(o), 1000);
        assert_string_equal(json_string_value(json_array_get(json_array_get(o, 999), 99)), "id \"999\" \\ 99");
        json_decref(o);

        struct done_info in = { .job = "j", .state = "done", .result = &back };
        char *text;
        assert_int_equal(result_done_text_at(&in, &text, NULL), 0);
        char *at = strstr(text, "\"result\":{\"ids\":");
        assert_non_null(at);
        assert_memory_equal(at + strlen("\"result\":{\"ids\":"), ids, strlen(ids));
        free(text);
        kiln_result_clear(&back);
        free(buf);
        kiln_result_clear(&r);
}

static void test_version_1_blobs_are_read(void **state)
{
        /* "KLNR" v1, the scalars {"a":1.5,"b":null}, no part. */
        static const char scalars[] = "{\"a\":1.5,\"b\":null}";
        uint8_t blob[12 + sizeof(scalars) - 1 + 4] = { 'K', 'L', 'N', 'R', 1, 0, 0, 0, sizeof(scalars) - 1, 0, 0, 0 };
        memcpy(blob + 12, scalars, sizeof(scalars) - 1);
        struct kiln_result back;
        assert_int_equal(result_blob_parse(blob, sizeof(blob), &back), 0);
        assert_int_equal(back.n_scalars, 2);
        assert_true(back.scalars[0].type == KILN_V_NUM && back.scalars[0].num == 1.5);
        assert_int_equal(back.scalars[1].type, KILN_V_NULL);
        kiln_result_clear(&back);
        blob[4] = 3; /* a version from the future */
        assert_int_equal(result_blob_parse(blob, sizeof(blob), &back), -EIO);
}

static void test_blob_refuses_every_truncation(void **state)
{
        struct kiln_result r, back;
        make_typed(&r); /* strings to free on every failure (the sanitizer build checks) */
        size_t n;
        uint8_t *buf = encode(&r, &n);
        for (size_t cut = 0; cut < n; cut++) {
                uint8_t *copy = malloc(cut ? cut : 1);
                memcpy(copy, buf, cut);
                assert_int_equal(result_blob_parse(copy, cut, &back), -EIO);
                assert_int_equal(back.n_parts, 0);
                assert_int_equal(back.n_scalars, 0);
                free(copy);
        }
        buf[0] = 'X';
        assert_int_equal(result_blob_parse(buf, n, &back), -EIO);
        free(buf);
        kiln_result_clear(&r);
}

static void test_done_text_of_a_done_job(void **state)
{
        struct kiln_result r;
        make_result(&r);
        struct done_info in = { .job = "0190f0e2-7a3c-7cde-8f00-000000000001", .state = "done", .queue_ms = 3,
                                .run_ms = 40, .result = &r, .backend = "", .batch = 4 };
        char *text;
        assert_int_equal(result_done_text_at(&in, &text, NULL), 0);
        json_t *o = json_loads(text, 0, NULL);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "op")), "done");
        assert_string_equal(json_string_value(json_object_get(o, "state")), "done");
        assert_string_equal(json_string_value(json_object_get(o, "backend")), "cpu");
        assert_int_equal(json_integer_value(json_object_get(o, "batch")), 4);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "ms"), "run")), 40);
        json_t *res = json_object_get(o, "result");
        assert_true(json_is_null(json_object_get(res, "theta_e_arcsec")));
        assert_true(json_real_value(json_object_get(res, "mass")) == 1e14);
        json_t *parts = json_object_get(o, "parts");
        assert_int_equal(json_array_size(parts), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(parts, 1), "dtype")), "u8");
        assert_int_equal(json_integer_value(json_object_get(json_array_get(parts, 0), "bytes")), 60);

        /* The direct writer and the jansson path agree byte for byte: a part name
         * that needs escaping forces the jansson path for the same content. */
        char *plain = text;
        snprintf(r.parts[0].name, sizeof(r.parts[0].name), "ka\"ppa");
        char *escaped;
        assert_int_equal(result_done_text_at(&in, &escaped, NULL), 0);
        json_t *e = json_loads(escaped, 0, NULL);
        assert_non_null(e);
        assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(e, "parts"), 0), "name")),
                            "ka\"ppa");
        snprintf(r.parts[0].name, sizeof(r.parts[0].name), "kappa");
        json_object_set_new(json_array_get(json_object_get(e, "parts"), 0), "name", json_string("kappa"));
        char *again = json_dumps(e, JSON_COMPACT | JSON_REAL_PRECISION(17));
        assert_string_equal(again, plain);
        free(again);
        json_decref(e);
        free(escaped);
        json_decref(o);
        free(plain);
        kiln_result_clear(&r);
}

/* A done job whose result the store did not keep says so, last ("stored": false),
 * in the direct writer and the jansson path alike; one that was kept says nothing. */
static void test_done_text_says_when_the_result_was_not_kept(void **state)
{
        struct kiln_result r;
        make_result(&r);
        struct done_info in = { .job = "j", .state = "done", .queue_ms = 3, .run_ms = 40, .result = &r,
                                .backend = "cpu", .batch = 1 };
        char *kept, *plain, *escaped;
        assert_int_equal(result_done_text_at(&in, &kept, NULL), 0);
        assert_null(strstr(kept, "stored"));
        in.not_kept = true;
        assert_int_equal(result_done_text_at(&in, &plain, NULL), 0);
        size_t n = strlen(kept);
        assert_int_equal(strlen(plain), n + strlen(",\"stored\":false"));
        assert_memory_equal(plain, kept, n - 1);
        assert_string_equal(plain + n - 1, ",\"stored\":false}");

        in.job = "j\"1"; /* forces the jansson path */
        assert_int_equal(result_done_text_at(&in, &escaped, NULL), 0);
        json_t *e = json_loads(escaped, 0, NULL);
        assert_non_null(e);
        assert_true(json_is_false(json_object_get(e, "stored")));
        json_object_set_new(e, "job", json_string("j"));
        char *again = json_dumps(e, JSON_COMPACT | JSON_REAL_PRECISION(17));
        assert_string_equal(again, plain);
        free(again);
        json_decref(e);
        free(escaped);
        free(plain);
        free(kept);
        kiln_result_clear(&r);
}

static void test_done_text_of_a_failed_job(void **state)
{
        struct done_info in = { .job = "j", .state = "expired", .queue_ms = 1, .run_ms = 0,
                                .error_code = "timeout", .error_message = "the job's \"deadline\" passed" };
        char *text;
        assert_int_equal(result_done_text_at(&in, &text, NULL), 0);
        json_t *o = json_loads(text, 0, NULL);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "state")), "expired");
        json_t *err = json_object_get(o, "error");
        assert_string_equal(json_string_value(json_object_get(err, "code")), "timeout");
        assert_string_equal(json_string_value(json_object_get(err, "message")), "the job's \"deadline\" passed");
        assert_null(json_object_get(o, "result"));
        json_decref(o);
        free(text);
}

/* A reader that counts what it was asked for, over an encoded blob. */
struct counting_reader {
        const uint8_t *blob;
        size_t read_bytes;
};

static int counting_read(void *opaque, uint64_t off, void *dst, size_t len)
{
        struct counting_reader *c = opaque;
        memcpy(dst, c->blob + off, len);
        c->read_bytes += len;
        return 0;
}

static int failing_read(void *opaque, uint64_t off, void *dst, size_t len)
{
        return -ENOENT;
}

/* Parsing through a reader finds the parts' offsets (those result_blob_part_offset
 * gives the writer) without reading their data. */
static void test_parse_with_reads_headers_only(void **state)
{
        struct kiln_result r, back;
        make_result(&r);
        /* a big part: reading it would show in the count */
        uint64_t shape[1] = { 100000 };
        struct kiln_part *big = kiln_result_add_part(&r, "big", KILN_DTYPE_F32, 1, shape);
        assert_non_null(big);
        memset(big->data, 0x5a, big->bytes);
        char *scalars = result_scalars_text(&r);
        struct result_blob *b = NULL;
        assert_int_equal(result_blob_new(&r, scalars, &b), 0);
        size_t n;
        uint8_t *buf = encode(&r, &n);
        struct counting_reader c = { .blob = buf };
        uint64_t offsets[KILN_MAX_PARTS];
        assert_int_equal(result_blob_parse_with(counting_read, &c, n, &back, offsets), 0);
        assert_int_equal(back.n_parts, 3);
        assert_true(c.read_bytes < 1024);
        for (int i = 0; i < 3; i++) {
                assert_null(back.parts[i].data);
                assert_int_equal(offsets[i], result_blob_part_offset(b, i));
                assert_int_equal(back.parts[i].bytes, r.parts[i].bytes);
                assert_memory_equal(buf + offsets[i], r.parts[i].data, r.parts[i].bytes);
        }
        assert_string_equal(back.parts[2].name, "big");
        assert_int_equal(back.n_scalars, 3);
        /* a reader that fails is an unreadable blob */
        struct kiln_result none;
        assert_int_equal(result_blob_parse_with(failing_read, NULL, n, &none, offsets), -EIO);
        /* so is a size that cuts the last part short */
        assert_int_equal(result_blob_parse_with(counting_read, &c, n - 1, &none, offsets), -EIO);
        kiln_result_clear(&back);
        result_blob_free(b);
        free(buf);
        kiln_result_clear(&r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_blob_round_trip),
                cmocka_unit_test(test_parse_with_reads_headers_only),
                cmocka_unit_test(test_part_headers_are_jansson_compact_json),
                cmocka_unit_test(test_blob_refuses_every_truncation),
                cmocka_unit_test(test_typed_values_round_trip),
                cmocka_unit_test(test_a_big_json_value_round_trips_as_text),
                cmocka_unit_test(test_every_json_value_written_is_read_back),
                cmocka_unit_test(test_a_json_value_that_does_not_parse_is_null),
                cmocka_unit_test(test_version_1_blobs_are_read),
                cmocka_unit_test(test_done_text_of_a_done_job),
                cmocka_unit_test(test_done_text_says_when_the_result_was_not_kept),
                cmocka_unit_test(test_done_text_of_a_failed_job),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
