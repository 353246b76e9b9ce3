/* Unit tests for the protocol codec (daemon/proto.c) and job ids (daemon/uuid.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include "kind.h"
#include "proto.h"
#include "store.h"

#define ID_A "0190f5a2-7c3e-7abc-8def-0123456789ab"
#define ID_B "0190f5a2-7c3e-7abc-9def-0123456789ff"

/* ---- helpers ---- */

static int decode(const char *text, struct proto_req *r, json_t **ref, struct proto_error *err)
{
        return proto_decode(text, strlen(text), r, ref, err);
}

static void decode_ok(const char *text, struct proto_req *r)
{
        struct proto_error err = { 0 };
        json_t *ref = (json_t *)0x1;
        int k = decode(text, r, &ref, &err);

        if (k < 0)
                fail_msg("decoding %s failed: %s (field \"%s\")", text, err.message, err.field);
        assert_null(ref);
}

/* Decodes bytes expected to fail with code/field; returns the echoed ref (or NULL). */
static json_t *expect_errorn(const char *text, size_t len, enum kiln_err code, const char *field)
{
        struct proto_req r;
        struct proto_error err = { 0 };
        json_t *ref = NULL;
        int k;

        memset(&r, 0xA5, sizeof(r));
        k = proto_decode(text, len, &r, &ref, &err);
        if (k >= 0) {
                proto_req_clear(&r);
                fail_msg("decoding %.*s succeeded; expected %s", (int)len, text, kiln_err_name(code));
        }
        assert_int_equal(k, -EINVAL);
        if (err.code != code || strcmp(err.field, field) != 0)
                fail_msg("%.*s: got %s field \"%s\" (%s); expected %s field \"%s\"", (int)len, text,
                         kiln_err_name(err.code), err.field, err.message, kiln_err_name(code), field);
        assert_true(err.message[0] != '\0');
        /* The request is not written on failure. */
        assert_int_equal(((unsigned char *)&r)[0], 0xA5);
        return ref;
}

static void expect_error(const char *text, enum kiln_err code, const char *field)
{
        json_t *ref = expect_errorn(text, strlen(text), code, field);

        json_decref(ref);
}

static void check_uuid_text(const uint8_t id[16], const char *text)
{
        char s[37];

        kiln_uuid_format(id, s);
        assert_string_equal(s, text);
}

/* ---- name tables ---- */

static void test_err_names_follow_spec(void **state)
{
        static const char *const want[] = { "bad_request", "unknown_op", "unknown_kind", "bad_params",
                                            "too_large", "unauthorized", "forbidden", "not_found",
                                            "queue_full", "rate_limited", "timeout", "cancelled",
                                            "unavailable", "shutting_down", "internal" };

        assert_int_equal(sizeof(want) / sizeof(want[0]), _KERR_MAX);
        for (int i = 0; i < _KERR_MAX; i++)
                assert_string_equal(kiln_err_name((enum kiln_err)i), want[i]);
        assert_null(kiln_err_name(_KERR_MAX));
        assert_null(kiln_err_name((enum kiln_err)-1));
}

static void test_op_names_follow_spec(void **state)
{
        static const char *const want[] = { "hello", "submit", "status", "result", "watch",
                                            "cancel", "list", "stats", "subscribe", "cache.purge",
                                            "config.get", "model.put", "model.list", "model.delete",
                                            "vec.put", "vec.delete", "vec.drop", "vec.info", "vec.list" };

        assert_int_equal(sizeof(want) / sizeof(want[0]), _KOP_MAX);
        for (int i = 0; i < _KOP_MAX; i++)
                assert_string_equal(kiln_op_name((enum kiln_op)i), want[i]);
        assert_null(kiln_op_name(_KOP_MAX));
        assert_null(kiln_op_name((enum kiln_op)-1));
}

static void test_priority_names_follow_spec(void **state)
{
        static const char *const want[] = { "critical", "high", "normal", "low", "batch" };

        assert_int_equal(sizeof(want) / sizeof(want[0]), _KILN_PRIO_MAX);
        for (int i = 0; i < _KILN_PRIO_MAX; i++)
                assert_string_equal(kiln_priority_name((enum kiln_priority)i), want[i]);
        assert_null(kiln_priority_name(_KILN_PRIO_MAX));
}

/* ---- hello ---- */

static void test_hello_decodes_token_and_client(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"hello\",\"token\":\"s3cret\",\"client\":\"kilnctl/0.1\",\"ref\":7}", &r);
        assert_int_equal(r.op, KOP_HELLO);
        assert_string_equal(r.hello.token, "s3cret");
        assert_string_equal(r.hello.client, "kilnctl/0.1");
        assert_non_null(r.ref);
        assert_int_equal(json_integer_value(r.ref), 7);
        proto_req_clear(&r);
        assert_null(r.root);
}

static void test_hello_defaults_to_no_token_no_client(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"hello\"}", &r);
        assert_int_equal(r.op, KOP_HELLO);
        assert_null(r.hello.token);
        assert_null(r.hello.client);
        assert_null(r.ref);
        proto_req_clear(&r);
}

static void test_hello_rejects_non_string_token_and_client(void **state)
{
        expect_error("{\"op\":\"hello\",\"token\":123}", KERR_BAD_REQUEST, "token");
        expect_error("{\"op\":\"hello\",\"token\":null}", KERR_BAD_REQUEST, "token");
        expect_error("{\"op\":\"hello\",\"client\":[\"x\"]}", KERR_BAD_REQUEST, "client");
}

/* ---- submit ---- */

static void test_submit_decodes_every_field(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"submit\",\"kind\":\"lens.nfw\",\"params\":{\"mass\":1e14},\"priority\":\"high\","
                  "\"timeout_ms\":5000,\"key\":\"abc-1\",\"cache\":false,\"watch\":false,\"ref\":\"r1\"}", &r);
        assert_int_equal(r.op, KOP_SUBMIT);
        assert_string_equal(r.submit.kind, "lens.nfw");
        assert_true(json_is_object(r.submit.params));
        assert_true(json_real_value(json_object_get(r.submit.params, "mass")) == 1e14);
        assert_int_equal(r.submit.priority, KILN_PRIO_HIGH);
        assert_int_equal(r.submit.timeout_ms, 5000);
        assert_string_equal(r.submit.key, "abc-1");
        assert_false(r.submit.cache);
        assert_false(r.submit.watch);
        assert_string_equal(json_string_value(r.ref), "r1");
        proto_req_clear(&r);
}

static void test_submit_defaults(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"submit\",\"kind\":\"risk.score\"}", &r);
        assert_string_equal(r.submit.kind, "risk.score");
        assert_non_null(r.submit.params);
        assert_true(json_is_object(r.submit.params));
        assert_int_equal(json_object_size(r.submit.params), 0);
        assert_int_equal(r.submit.priority, KILN_PRIO_NORMAL);
        assert_int_equal(r.submit.timeout_ms, -1);
        assert_null(r.submit.key);
        assert_true(r.submit.cache);
        assert_true(r.submit.watch);
        proto_req_clear(&r);
}

static void test_submit_accepts_every_priority_name(void **state)
{
        for (int p = 0; p < _KILN_PRIO_MAX; p++) {
                char text[128];
                struct proto_req r;

                snprintf(text, sizeof(text), "{\"op\":\"submit\",\"kind\":\"k\",\"priority\":\"%s\"}",
                         kiln_priority_name((enum kiln_priority)p));
                decode_ok(text, &r);
                assert_int_equal(r.submit.priority, p);
                proto_req_clear(&r);
        }
}

static void test_submit_requires_string_kind(void **state)
{
        expect_error("{\"op\":\"submit\"}", KERR_BAD_REQUEST, "kind");
        expect_error("{\"op\":\"submit\",\"params\":{}}", KERR_BAD_REQUEST, "kind");
        expect_error("{\"op\":\"submit\",\"kind\":5}", KERR_BAD_REQUEST, "kind");
        expect_error("{\"op\":\"submit\",\"kind\":null}", KERR_BAD_REQUEST, "kind");
}

static void test_submit_rejects_non_object_params(void **state)
{
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"params\":[1,2]}", KERR_BAD_REQUEST, "params");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"params\":\"x\"}", KERR_BAD_REQUEST, "params");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"params\":null}", KERR_BAD_REQUEST, "params");
}

static void test_submit_rejects_bad_priority(void **state)
{
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"priority\":\"urgent\"}", KERR_BAD_REQUEST, "priority");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"priority\":\"HIGH\"}", KERR_BAD_REQUEST, "priority");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"priority\":\"\"}", KERR_BAD_REQUEST, "priority");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"priority\":1}", KERR_BAD_REQUEST, "priority");
}

static void test_submit_timeout_range_is_1_to_2_pow_31(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":1}", &r);
        assert_int_equal(r.submit.timeout_ms, 1);
        proto_req_clear(&r);
        decode_ok("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":2147483648}", &r);
        assert_int_equal(r.submit.timeout_ms, 2147483648LL);
        proto_req_clear(&r);

        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":0}", KERR_BAD_REQUEST, "timeout_ms");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":-5}", KERR_BAD_REQUEST, "timeout_ms");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":2147483649}", KERR_BAD_REQUEST, "timeout_ms");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":9223372036854775807}", KERR_BAD_REQUEST,
                     "timeout_ms");
}

static void test_submit_timeout_must_be_an_integer(void **state)
{
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":1000.5}", KERR_BAD_REQUEST, "timeout_ms");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":1000.0}", KERR_BAD_REQUEST, "timeout_ms");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":1e300}", KERR_BAD_REQUEST, "timeout_ms");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":\"100\"}", KERR_BAD_REQUEST, "timeout_ms");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":true}", KERR_BAD_REQUEST, "timeout_ms");
}

static void test_submit_key_is_1_to_256_bytes(void **state)
{
        char text[512], key[258];
        struct proto_req r;

        memset(key, 'k', 256);
        key[256] = '\0';
        snprintf(text, sizeof(text), "{\"op\":\"submit\",\"kind\":\"k\",\"key\":\"%s\"}", key);
        decode_ok(text, &r);
        assert_int_equal(strlen(r.submit.key), 256);
        proto_req_clear(&r);

        key[256] = 'k';
        key[257] = '\0';
        snprintf(text, sizeof(text), "{\"op\":\"submit\",\"kind\":\"k\",\"key\":\"%s\"}", key);
        expect_error(text, KERR_BAD_REQUEST, "key");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"key\":\"\"}", KERR_BAD_REQUEST, "key");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"key\":42}", KERR_BAD_REQUEST, "key");
}

static void test_submit_key_length_counts_bytes_not_characters(void **state)
{
        /* 129 two-byte characters: 129 characters but 258 bytes. */
        char text[600];
        size_t n = (size_t)snprintf(text, sizeof(text), "{\"op\":\"submit\",\"kind\":\"k\",\"key\":\"");

        for (int i = 0; i < 129; i++) {
                text[n++] = (char)0xC3;
                text[n++] = (char)0xA9;
        }
        snprintf(text + n, sizeof(text) - n, "\"}");
        expect_error(text, KERR_BAD_REQUEST, "key");
}

static void test_submit_rejects_non_bool_cache_and_watch(void **state)
{
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"cache\":1}", KERR_BAD_REQUEST, "cache");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"cache\":\"true\"}", KERR_BAD_REQUEST, "cache");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"watch\":0}", KERR_BAD_REQUEST, "watch");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"watch\":null}", KERR_BAD_REQUEST, "watch");
}

/* ---- status, result, watch, cancel ---- */

static void test_job_ops_decode_job_id(void **state)
{
        static const enum kiln_op ops[] = { KOP_STATUS, KOP_RESULT, KOP_WATCH, KOP_CANCEL };

        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
                char text[128];
                struct proto_req r;

                snprintf(text, sizeof(text), "{\"op\":\"%s\",\"job\":\"%s\"}", kiln_op_name(ops[i]), ID_A);
                decode_ok(text, &r);
                assert_int_equal(r.op, ops[i]);
                check_uuid_text(r.job.id, ID_A);
                proto_req_clear(&r);
        }
}

static void test_job_ops_accept_uppercase_job_id(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"status\",\"job\":\"0190F5A2-7C3E-7ABC-8DEF-0123456789AB\"}", &r);
        check_uuid_text(r.job.id, ID_A);
        proto_req_clear(&r);
}

static void test_job_ops_require_job(void **state)
{
        expect_error("{\"op\":\"status\"}", KERR_BAD_REQUEST, "job");
        expect_error("{\"op\":\"result\"}", KERR_BAD_REQUEST, "job");
        expect_error("{\"op\":\"watch\"}", KERR_BAD_REQUEST, "job");
        expect_error("{\"op\":\"cancel\"}", KERR_BAD_REQUEST, "job");
}

static void test_job_ops_reject_malformed_job_id(void **state)
{
        static const char *const bad[] = {
                "\"\"",
                "\"0190f5a2-7c3e-7abc-8def-0123456789a\"",    /* 35 chars */
                "\"0190f5a2-7c3e-7abc-8def-0123456789abc\"",  /* 37 chars */
                "\"0190f5a27c3e7abc8def0123456789ab\"",       /* no dashes */
                "\"0190f5a2-7c3e-7abc-8def_0123456789ab\"",   /* wrong separator */
                "\"0190f5g2-7c3e-7abc-8def-0123456789ab\"",   /* not hex */
                "\"{0190f5a2-7c3e-7abc-8def-0123456789a}\"",
                "42",
                "null",
                "[\"" ID_A "\"]",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char text[128];

                snprintf(text, sizeof(text), "{\"op\":\"cancel\",\"job\":%s}", bad[i]);
                expect_error(text, KERR_BAD_REQUEST, "job");
        }
}

/* ---- list ---- */

static void test_list_decodes_every_field(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"list\",\"state\":\"failed\",\"kind\":\"vec.search\",\"limit\":20,\"after\":\"" ID_B "\"}",
                  &r);
        assert_int_equal(r.op, KOP_LIST);
        assert_int_equal(r.list.state, KILN_JOB_FAILED);
        assert_string_equal(r.list.kind, "vec.search");
        assert_int_equal(r.list.limit, 20);
        assert_true(r.list.has_after);
        check_uuid_text(r.list.after, ID_B);
        proto_req_clear(&r);
}

static void test_list_defaults(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"list\"}", &r);
        assert_int_equal(r.list.state, -1);
        assert_null(r.list.kind);
        assert_int_equal(r.list.limit, 100);
        assert_false(r.list.has_after);
        proto_req_clear(&r);
}

static void test_list_null_after_means_first_page(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"list\",\"after\":null}", &r);
        assert_false(r.list.has_after);
        proto_req_clear(&r);
}

static void test_list_state_names_follow_store_enum(void **state)
{
        static const struct { const char *name; int value; } states[] = {
                { "queued", KILN_JOB_QUEUED },   { "running", KILN_JOB_RUNNING },
                { "done", KILN_JOB_DONE },       { "failed", KILN_JOB_FAILED },
                { "cancelled", KILN_JOB_CANCELLED }, { "expired", KILN_JOB_EXPIRED },
        };

        for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
                char text[128];
                struct proto_req r;

                snprintf(text, sizeof(text), "{\"op\":\"list\",\"state\":\"%s\"}", states[i].name);
                decode_ok(text, &r);
                assert_int_equal(r.list.state, states[i].value);
                proto_req_clear(&r);
        }
}

static void test_list_rejects_bad_state(void **state)
{
        expect_error("{\"op\":\"list\",\"state\":\"pending\"}", KERR_BAD_REQUEST, "state");
        expect_error("{\"op\":\"list\",\"state\":\"Done\"}", KERR_BAD_REQUEST, "state");
        expect_error("{\"op\":\"list\",\"state\":2}", KERR_BAD_REQUEST, "state");
}

static void test_list_rejects_non_string_kind(void **state)
{
        expect_error("{\"op\":\"list\",\"kind\":{}}", KERR_BAD_REQUEST, "kind");
}

static void test_list_limit_range_is_1_to_1000(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"list\",\"limit\":1}", &r);
        assert_int_equal(r.list.limit, 1);
        proto_req_clear(&r);
        decode_ok("{\"op\":\"list\",\"limit\":1000}", &r);
        assert_int_equal(r.list.limit, 1000);
        proto_req_clear(&r);

        expect_error("{\"op\":\"list\",\"limit\":0}", KERR_BAD_REQUEST, "limit");
        expect_error("{\"op\":\"list\",\"limit\":1001}", KERR_BAD_REQUEST, "limit");
        expect_error("{\"op\":\"list\",\"limit\":-1}", KERR_BAD_REQUEST, "limit");
        expect_error("{\"op\":\"list\",\"limit\":4294967396}", KERR_BAD_REQUEST, "limit");
        expect_error("{\"op\":\"list\",\"limit\":10.0}", KERR_BAD_REQUEST, "limit");
        expect_error("{\"op\":\"list\",\"limit\":\"10\"}", KERR_BAD_REQUEST, "limit");
}

static void test_list_rejects_malformed_after(void **state)
{
        expect_error("{\"op\":\"list\",\"after\":\"yesterday\"}", KERR_BAD_REQUEST, "after");
        expect_error("{\"op\":\"list\",\"after\":12}", KERR_BAD_REQUEST, "after");
}

/* ---- stats, subscribe ---- */

static void test_stats_decodes(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"stats\",\"ref\":{\"n\":1}}", &r);
        assert_int_equal(r.op, KOP_STATS);
        assert_true(json_is_object(r.ref));
        proto_req_clear(&r);
}

static void test_subscribe_decodes_stats_topic(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"subscribe\",\"topic\":\"stats\"}", &r);
        assert_int_equal(r.op, KOP_SUBSCRIBE);
        assert_string_equal(r.subscribe.topic, "stats");
        proto_req_clear(&r);
}

static void test_subscribe_rejects_other_topics(void **state)
{
        expect_error("{\"op\":\"subscribe\"}", KERR_BAD_REQUEST, "topic");
        expect_error("{\"op\":\"subscribe\",\"topic\":\"jobs\"}", KERR_BAD_REQUEST, "topic");
        expect_error("{\"op\":\"subscribe\",\"topic\":\"statsx\"}", KERR_BAD_REQUEST, "topic");
        expect_error("{\"op\":\"subscribe\",\"topic\":1}", KERR_BAD_REQUEST, "topic");
}

/* ---- stored objects ---- */

static void test_model_ops_decode_name(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"model.put\",\"name\":\"credit-2024\",\"ref\":7}", &r);
        assert_int_equal(r.op, KOP_MODEL_PUT);
        assert_string_equal(r.object.name, "credit-2024");
        assert_null(r.object.metric);
        assert_null(r.object.ids);
        assert_int_equal(json_integer_value(r.ref), 7);
        proto_req_clear(&r);

        decode_ok("{\"op\":\"model.delete\",\"name\":\"m\"}", &r);
        assert_int_equal(r.op, KOP_MODEL_DELETE);
        assert_string_equal(r.object.name, "m");
        proto_req_clear(&r);

        decode_ok("{\"op\":\"model.list\"}", &r);
        assert_int_equal(r.op, KOP_MODEL_LIST);
        assert_null(r.object.name);
        proto_req_clear(&r);
}

static void test_vec_ops_decode_collection_metric_and_ids(void **state)
{
        struct proto_req r;

        decode_ok("{\"op\":\"vec.put\",\"collection\":\"docs\",\"metric\":\"cosine\",\"ids\":[\"a\",\"\"]}", &r);
        assert_int_equal(r.op, KOP_VEC_PUT);
        assert_string_equal(r.object.name, "docs");
        assert_string_equal(r.object.metric, "cosine");
        assert_int_equal(json_array_size(r.object.ids), 2);
        proto_req_clear(&r);

        /* The metric may be left out (an existing collection keeps its own); its
         * value is the op's to check. */
        decode_ok("{\"op\":\"vec.put\",\"collection\":\"docs\",\"metric\":\"hamming\",\"ids\":[]}", &r);
        assert_string_equal(r.object.metric, "hamming");
        proto_req_clear(&r);
        decode_ok("{\"op\":\"vec.put\",\"collection\":\"docs\",\"ids\":[\"x\"]}", &r);
        assert_null(r.object.metric);
        proto_req_clear(&r);

        decode_ok("{\"op\":\"vec.delete\",\"collection\":\"docs\",\"ids\":[\"x\"]}", &r);
        assert_int_equal(r.op, KOP_VEC_DELETE);
        assert_int_equal(json_array_size(r.object.ids), 1);
        proto_req_clear(&r);

        static const enum kiln_op named[] = { KOP_VEC_DROP, KOP_VEC_INFO };
        for (size_t i = 0; i < 2; i++) {
                char text[128];
                snprintf(text, sizeof(text), "{\"op\":\"%s\",\"collection\":\"c\"}", kiln_op_name(named[i]));
                decode_ok(text, &r);
                assert_int_equal(r.op, named[i]);
                assert_string_equal(r.object.name, "c");
                assert_null(r.object.ids);
                proto_req_clear(&r);
        }
        decode_ok("{\"op\":\"vec.list\"}", &r);
        assert_int_equal(r.op, KOP_VEC_LIST);
        proto_req_clear(&r);
}

static void test_object_names_are_required_strings_of_1_to_128_bytes(void **state)
{
        char text[400], name[130];
        struct proto_req r;

        expect_error("{\"op\":\"model.put\"}", KERR_BAD_REQUEST, "name");
        expect_error("{\"op\":\"model.delete\",\"name\":3}", KERR_BAD_REQUEST, "name");
        expect_error("{\"op\":\"model.put\",\"name\":\"\"}", KERR_BAD_REQUEST, "name");
        expect_error("{\"op\":\"vec.info\"}", KERR_BAD_REQUEST, "collection");
        expect_error("{\"op\":\"vec.drop\",\"collection\":null}", KERR_BAD_REQUEST, "collection");
        expect_error("{\"op\":\"vec.put\",\"name\":\"c\",\"ids\":[]}", KERR_BAD_REQUEST, "collection");

        memset(name, 'n', 128);
        name[128] = '\0';
        snprintf(text, sizeof(text), "{\"op\":\"model.put\",\"name\":\"%s\"}", name);
        decode_ok(text, &r);
        assert_int_equal(strlen(r.object.name), 128);
        proto_req_clear(&r);
        name[128] = 'n';
        name[129] = '\0';
        snprintf(text, sizeof(text), "{\"op\":\"vec.info\",\"collection\":\"%s\"}", name);
        expect_error(text, KERR_BAD_REQUEST, "collection");
}

static void test_vec_ids_must_be_an_array_of_strings(void **state)
{
        expect_error("{\"op\":\"vec.put\",\"collection\":\"c\"}", KERR_BAD_REQUEST, "ids");
        expect_error("{\"op\":\"vec.delete\",\"collection\":\"c\"}", KERR_BAD_REQUEST, "ids");
        expect_error("{\"op\":\"vec.put\",\"collection\":\"c\",\"ids\":\"a\"}", KERR_BAD_REQUEST, "ids");
        expect_error("{\"op\":\"vec.delete\",\"collection\":\"c\",\"ids\":[\"a\",\"b\",7]}", KERR_BAD_REQUEST,
                     "ids[2]");
        expect_error("{\"op\":\"vec.put\",\"collection\":\"c\",\"ids\":[\"a\"],\"metric\":1}", KERR_BAD_REQUEST,
                     "metric");
}

/* ---- message shape ---- */

/* A field the op does not take is refused naming it: a misspelt "priorty" would
 * otherwise be a normal job. */
static void test_unknown_fields_are_bad_request(void **state)
{
        struct proto_error err = { 0 };
        const char *t = "{\"op\":\"submit\",\"kind\":\"k\",\"params\":{},\"priorty\":\"critical\"}";
        struct proto_req r;

        expect_error("{\"op\":\"stats\",\"x-future\":[1,{\"a\":null}]}", KERR_BAD_REQUEST, "x-future");
        expect_error(t, KERR_BAD_REQUEST, "priorty");
        assert_int_equal(proto_decode(t, strlen(t), NULL, NULL, &err), -EINVAL);
        assert_string_equal(err.message, "\"priorty\" is not a field of submit (it takes kind,params,priority,"
                                         "timeout_ms,key,cache,watch)");
        expect_error("{\"op\":\"vec.info\",\"collection\":\"c\",\"ids\":[]}", KERR_BAD_REQUEST, "ids");
        expect_error("{\"op\":\"hello\",\"tokn\":\"t\"}", KERR_BAD_REQUEST, "tokn");
        /* "op" and "ref" go with every op. */
        decode_ok("{\"op\":\"stats\"}", &r);
        proto_req_clear(&r);
        decode_ok("{\"op\":\"stats\",\"ref\":9}", &r);
        proto_req_clear(&r);
}

static void test_op_missing_or_not_string_is_bad_request(void **state)
{
        expect_error("{}", KERR_BAD_REQUEST, "op");
        expect_error("{\"job\":\"" ID_A "\"}", KERR_BAD_REQUEST, "op");
        expect_error("{\"op\":3}", KERR_BAD_REQUEST, "op");
        expect_error("{\"op\":null}", KERR_BAD_REQUEST, "op");
        expect_error("{\"op\":[\"hello\"]}", KERR_BAD_REQUEST, "op");
}

static void test_unknown_op_is_unknown_op(void **state)
{
        expect_error("{\"op\":\"launch\"}", KERR_UNKNOWN_OP, "op");
        expect_error("{\"op\":\"\"}", KERR_UNKNOWN_OP, "op");
        expect_error("{\"op\":\"HELLO\"}", KERR_UNKNOWN_OP, "op");
        expect_error("{\"op\":\"stat\"}", KERR_UNKNOWN_OP, "op");
        expect_error("{\"op\":\"statss\"}", KERR_UNKNOWN_OP, "op");
}

static void test_unknown_op_message_quotes_long_names_safely(void **state)
{
        char text[2048];
        struct proto_req r;
        struct proto_error err;
        json_t *ref = NULL, *check;
        size_t n = (size_t)snprintf(text, sizeof(text), "{\"op\":\"");

        /* Three-byte characters straddling the quoting limit must not be cut in half. */
        for (int i = 0; i < 400; i++) {
                text[n++] = (char)0xE2;
                text[n++] = (char)0x82;
                text[n++] = (char)0xAC;
        }
        snprintf(text + n, sizeof(text) - n, "\"}");
        assert_int_equal(decode(text, &r, &ref, &err), -EINVAL);
        assert_int_equal(err.code, KERR_UNKNOWN_OP);
        assert_true(strlen(err.message) < sizeof(err.message));
        check = json_string(err.message); /* NULL unless valid UTF-8 */
        assert_non_null(check);
        json_decref(check);
}

static void test_not_json_is_bad_request(void **state)
{
        json_t *ref;

        expect_error("hello", KERR_BAD_REQUEST, "");
        expect_error("{op:\"stats\"}", KERR_BAD_REQUEST, "");
        /* Not a JSON value where one is due: named by its path. */
        expect_error("{\"op\":'stats'}", KERR_BAD_REQUEST, "op");
        expect_error("{\"op\":\"submit\",\"params\":{\"z\":NaN}}", KERR_BAD_REQUEST, "params.z");
        expect_error("{\"op\":\"submit\",\"params\":{\"z\":[1,-Infinity]}}", KERR_BAD_REQUEST, "params.z[1]");
        /* Garbage after the object. */
        expect_error("{\"op\":\"stats\"} {}", KERR_BAD_REQUEST, "");
        /* Not an object: no ref to echo even when there is one inside. */
        ref = expect_errorn("[{\"op\":\"stats\",\"ref\":1}]", strlen("[{\"op\":\"stats\",\"ref\":1}]"),
                            KERR_BAD_REQUEST, "");
        assert_null(ref);
}

static void test_truncated_json_is_bad_request(void **state)
{
        const char *full = "{\"op\":\"submit\",\"kind\":\"k\",\"params\":{\"a\":[1,2,3]},\"ref\":9}";
        size_t n = strlen(full);

        for (size_t len = 0; len < n; len++) {
                json_t *ref = expect_errorn(full, len, KERR_BAD_REQUEST, "");

                assert_null(ref);
        }
}

static void test_top_level_must_be_an_object(void **state)
{
        expect_error("[]", KERR_BAD_REQUEST, "");
        expect_error("[\"op\",\"stats\"]", KERR_BAD_REQUEST, "");
        expect_error("\"stats\"", KERR_BAD_REQUEST, "");
        expect_error("42", KERR_BAD_REQUEST, "");
        expect_error("null", KERR_BAD_REQUEST, "");
        expect_error("true", KERR_BAD_REQUEST, "");
}

static void test_empty_message_is_bad_request(void **state)
{
        expect_errorn("", 0, KERR_BAD_REQUEST, "");
        expect_error("   ", KERR_BAD_REQUEST, "");
}

static void test_embedded_nul_is_bad_request(void **state)
{
        static const char raw[] = "{\"op\":\"stats\",\"x\":\"a\0b\"}";

        /* An escaped NUL in a string is named by its path. */
        expect_error("{\"op\":\"hello\",\"token\":\"ab\\u0000cd\"}", KERR_BAD_REQUEST, "token");
        expect_error("{\"op\":\"st\\u0000ats\"}", KERR_BAD_REQUEST, "op");
        expect_errorn(raw, sizeof(raw) - 1, KERR_BAD_REQUEST, "");
        /* A NUL byte right after a complete object. */
        expect_errorn("{\"op\":\"stats\"}\0", 15, KERR_BAD_REQUEST, "");
}

static void test_invalid_utf8_is_bad_request(void **state)
{
        expect_error("{\"op\":\"hello\",\"client\":\"\xC3\x28\"}", KERR_BAD_REQUEST, "");
        expect_error("{\"op\":\"hello\",\"client\":\"\xED\xA0\x80\"}", KERR_BAD_REQUEST, "");
}

/* A repeated key and a number jansson cannot hold are named by their path. */
static void test_duplicate_keys_are_bad_request(void **state)
{
        expect_error("{\"op\":\"stats\",\"op\":\"hello\"}", KERR_BAD_REQUEST, "op");
        expect_error("{\"op\":\"submit\",\"kind\":\"a\",\"params\":{\"x\":1,\"x\":2}}", KERR_BAD_REQUEST,
                     "params.x");
}

/* Numbers past what kilnd holds are valid JSON: bad params within params, a bad
 * request in an op's own fields. */
static void test_huge_numbers_are_bad_params_or_a_bad_request(void **state)
{
        struct proto_error err = { 0 };
        const char *t = "{\"op\":\"submit\",\"kind\":\"vec.search\",\"params\":{\"k\":99999999999999999999999}}";

        expect_error("{\"op\":\"list\",\"limit\":99999999999999999999999}", KERR_BAD_REQUEST, "limit");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"params\":{\"x\":1e999}}", KERR_BAD_PARAMS, "params.x");
        expect_error("{\"op\":\"list\",\"limit\":-99999999999999999999999 }", KERR_BAD_REQUEST, "limit");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"params\":{\"rows\":[[1,2],[3,1e999]]}}",
                     KERR_BAD_PARAMS, "params.rows[1][1]");
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"paramsx\":1e999}", KERR_BAD_REQUEST, "paramsx");
        /* Not JSON at all within params: still a bad request. */
        expect_error("{\"op\":\"submit\",\"kind\":\"k\",\"params\":{\"x\":NaN}}", KERR_BAD_REQUEST, "params.x");
        /* Other faults name no field. */
        expect_error("{\"op\":\"list\",\"limit\":12x}", KERR_BAD_REQUEST, "");
        assert_int_equal(proto_decode(t, strlen(t), NULL, NULL, &err), -EINVAL);
        assert_string_equal(err.message, "\"params.k\" is an integer past the 64-bit range (at byte 72)");
}

/* The ref of a message jansson cannot read at all (a number past a double, nesting
 * past its depth) is still echoed: the members are walked as text. */
static void test_the_ref_of_an_unreadable_message_is_echoed(void **state)
{
        static const struct {
                const char *text, *ref; /* ref as compact JSON, or NULL for none */
        } cases[] = {
                { "{\"op\":\"submit\",\"ref\":14,\"params\":{\"mass\":-1e999}}", "14" },
                { "{\"op\":\"submit\",\"params\":{\"m\":[1e999,{\"a\":\"}\"}]}, \"ref\" : \"a\\\"b\"}", "\"a\\\"b\"" },
                { "{\"op\":\"submit\",\"timeout_ms\":1e999,\"ref\":null}", "null" },
                { "{\"op\":\"submit\",\"ref\":[1],\"params\":{\"mass\":1e999}}", NULL },  /* not a kind a ref is */
                { "{\"op\":\"submit\",\"ref\":1e999}", NULL },
                { "{\"op\":\"submit\",\"params\":{\"mass\":1e999}}", NULL },
                { "{\"op\":\"submit\",\"params\":{\"mass\":1e999}", NULL },                /* cut short */
                { "[{\"ref\":3,\"x\":1e999}]", NULL },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct proto_req r;
                struct proto_error err;
                json_t *ref = NULL;
                assert_int_equal(decode(cases[i].text, &r, &ref, &err), -EINVAL);
                char *got = ref ? json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
                if (cases[i].ref ? !got || strcmp(got, cases[i].ref) : got != NULL)
                        fail_msg("%s: ref %s, expected %s", cases[i].text, got ? got : "none",
                                 cases[i].ref ? cases[i].ref : "none");
                free(got);
                json_decref(ref);
        }
        /* Deeper than jansson reads, with the ref after the depth. */
        char deep[8192];
        size_t n = (size_t)snprintf(deep, sizeof(deep), "{\"op\":\"submit\",\"params\":");
        for (int i = 0; i < 3000; i++)
                deep[n++] = '[';
        for (int i = 0; i < 3000; i++)
                deep[n++] = ']';
        snprintf(deep + n, sizeof(deep) - n, ",\"ref\":\"deep\"}");
        struct proto_req r;
        struct proto_error err;
        json_t *ref = NULL;
        assert_int_equal(decode(deep, &r, &ref, &err), -EINVAL);
        assert_non_null(ref);
        assert_string_equal(json_string_value(ref), "deep");
        json_decref(ref);
}

static void test_decode_reads_only_len_bytes(void **state)
{
        static const char text[] = "{\"op\":\"stats\"}GARBAGE";
        struct proto_req r;
        struct proto_error err;
        json_t *ref;

        assert_true(proto_decode(text, 14, &r, &ref, &err) >= 0);
        assert_int_equal(r.op, KOP_STATS);
        proto_req_clear(&r);
}

/* ---- ref echo ---- */

static void test_error_echoes_number_ref(void **state)
{
        const char *text = "{\"op\":\"nope\",\"ref\":42}";
        json_t *ref = expect_errorn(text, strlen(text), KERR_UNKNOWN_OP, "op");

        assert_non_null(ref);
        assert_true(json_is_integer(ref));
        assert_int_equal(json_integer_value(ref), 42);
        json_decref(ref);
}

static void test_error_echoes_string_ref(void **state)
{
        const char *text = "{\"ref\":\"req-7\",\"op\":\"submit\",\"kind\":\"k\",\"timeout_ms\":0}";
        json_t *ref = expect_errorn(text, strlen(text), KERR_BAD_REQUEST, "timeout_ms");

        assert_non_null(ref);
        assert_string_equal(json_string_value(ref), "req-7");
        json_decref(ref);
}

static void test_error_echoes_object_ref_that_outlives_the_message(void **state)
{
        const char *text = "{\"op\":\"status\",\"ref\":{\"tab\":3,\"ids\":[1,2]},\"job\":\"x\"}";
        json_t *ref = expect_errorn(text, strlen(text), KERR_BAD_REQUEST, "job");
        char *s;

        assert_non_null(ref);
        assert_int_equal(ref->refcount, 1); /* the message itself is gone */
        s = json_dumps(ref, JSON_COMPACT);
        assert_string_equal(s, "{\"tab\":3,\"ids\":[1,2]}");
        free(s);
        json_decref(ref);
}

static void test_error_without_ref_sets_ref_null(void **state)
{
        struct proto_req r;
        struct proto_error err;
        json_t *ref = (json_t *)0x1;

        assert_int_equal(decode("{\"op\":\"nope\"}", &r, &ref, &err), -EINVAL);
        assert_null(ref);
        ref = (json_t *)0x1;
        assert_int_equal(decode("not json", &r, &ref, &err), -EINVAL);
        assert_null(ref);
}

static void test_error_echoes_null_ref(void **state)
{
        const char *text = "{\"op\":3,\"ref\":null}";
        json_t *ref = expect_errorn(text, strlen(text), KERR_BAD_REQUEST, "op");

        assert_non_null(ref);
        assert_true(json_is_null(ref));
        json_decref(ref);
}

/* ---- error replies ---- */

static void test_error_json_has_every_field(void **state)
{
        struct proto_error err = { .code = KERR_BAD_PARAMS };
        json_t *ref = json_pack("{s:i}", "n", 1);
        char *s;

        snprintf(err.field, sizeof(err.field), "params.mass");
        snprintf(err.message, sizeof(err.message), "mass must be \"positive\"");
        s = proto_error_json(ref, &err);
        assert_string_equal(s, "{\"op\":\"error\",\"ref\":{\"n\":1},\"code\":\"bad_params\","
                               "\"message\":\"mass must be \\\"positive\\\"\",\"field\":\"params.mass\"}");
        free(s);
        json_decref(ref);
}

static void test_error_json_omits_null_ref_and_empty_field(void **state)
{
        struct proto_error err = { .code = KERR_QUEUE_FULL };
        char *s;

        snprintf(err.message, sizeof(err.message), "the queue is full");
        s = proto_error_json(NULL, &err);
        assert_string_equal(s, "{\"op\":\"error\",\"code\":\"queue_full\",\"message\":\"the queue is full\"}");
        free(s);
}

static void test_error_json_survives_cut_utf8_message(void **state)
{
        struct proto_error err = { .code = KERR_BAD_REQUEST };
        json_t *back;
        char *s;

        snprintf(err.message, sizeof(err.message), "bad \xE2\x82");  /* a character cut in half */
        s = proto_error_json(NULL, &err);
        assert_non_null(s);
        back = json_loads(s, 0, NULL);
        assert_non_null(back);
        assert_string_equal(json_string_value(json_object_get(back, "message")), "bad ??");
        json_decref(back);
        free(s);
}

static void test_error_json_roundtrips_decode_errors(void **state)
{
        struct proto_req r;
        struct proto_error err;
        json_t *ref = NULL, *back;
        char *s;

        assert_int_equal(decode("{\"op\":\"list\",\"limit\":0,\"ref\":[1]}", &r, &ref, &err), -EINVAL);
        s = proto_error_json(ref, &err);
        back = json_loads(s, 0, NULL);
        assert_non_null(back);
        assert_string_equal(json_string_value(json_object_get(back, "code")), "bad_request");
        assert_string_equal(json_string_value(json_object_get(back, "field")), "limit");
        assert_true(json_equal(json_object_get(back, "ref"), ref));
        json_decref(back);
        json_decref(ref);
        free(s);
}

/* ---- KLNB frames ---- */

/* Builds "KLNB" | len | header | payload in a buffer of exactly the frame's size. */
static uint8_t *make_frame(const char *header, const void *payload, size_t payload_len, size_t *ret_len)
{
        size_t hlen = strlen(header);
        uint8_t *buf = malloc(8 + hlen + payload_len); /* exact: ASan sees any over-read */

        assert_non_null(buf);
        memcpy(buf, "KLNB", 4);
        buf[4] = (uint8_t)hlen;
        buf[5] = (uint8_t)(hlen >> 8);
        buf[6] = (uint8_t)(hlen >> 16);
        buf[7] = (uint8_t)(hlen >> 24);
        memcpy(buf + 8, header, hlen);
        if (payload_len)
                memcpy(buf + 8 + hlen, payload, payload_len);
        *ret_len = 8 + hlen + payload_len;
        return buf;
}

static void expect_frame_error(const char *header, size_t payload_len, const char *field)
{
        uint8_t payload[256] = { 0 };
        struct proto_frame f;
        struct proto_error err = { 0 };
        size_t len;
        uint8_t *buf;
        int k;

        assert_true(payload_len <= sizeof(payload));
        buf = make_frame(header, payload, payload_len, &len);
        memset(&f, 0xA5, sizeof(f));
        k = proto_frame_decode(buf, len, &f, NULL, &err);
        if (k >= 0)
                fail_msg("frame %s (+%zu bytes) decoded; expected an error on %s", header, payload_len, field);
        assert_int_equal(k, -EINVAL);
        assert_int_equal(err.code, KERR_BAD_REQUEST);
        if (strcmp(err.field, field) != 0)
                fail_msg("frame %s: field \"%s\" (%s); expected \"%s\"", header, err.field, err.message, field);
        assert_int_equal(((unsigned char *)&f)[0], 0xA5);
        free(buf);
}

static void test_frame_decodes_f32(void **state)
{
        float data[6] = { 1, 2, 3, 4, 5, 6 };
        struct proto_frame f;
        struct proto_error err;
        size_t len;
        uint8_t *buf = make_frame("{\"job\":\"" ID_A "\",\"part\":\"kappa\",\"dtype\":\"f32\",\"shape\":[2,3]}",
                                  data, sizeof(data), &len);

        assert_true(proto_frame_decode(buf, len, &f, NULL, &err) >= 0);
        assert_string_equal(f.job, ID_A);
        assert_null(f.ref);
        assert_string_equal(f.part, "kappa");
        assert_int_equal(f.dtype, KILN_DTYPE_F32);
        assert_int_equal(f.ndim, 2);
        assert_int_equal(f.shape[0], 2);
        assert_int_equal(f.shape[1], 3);
        assert_int_equal(f.payload_len, sizeof(data));
        assert_ptr_equal(f.payload, buf + len - sizeof(data));
        assert_memory_equal(f.payload, data, sizeof(data));
        proto_frame_clear(&f);
        assert_null(f.header);
        free(buf);
}

/* The header of a frame whose payload is still arriving: no payload check, the
 * header's own checks all kept. */
static void test_frame_head_leaves_the_payload_to_the_caller(void **state)
{
        float data[6] = { 1, 2, 3, 4, 5, 6 };
        const char *hdr = "{\"job\":\"" ID_A "\",\"part\":\"kappa\",\"dtype\":\"f32\",\"shape\":[2,3]}";
        struct proto_frame f;
        struct proto_error err;
        size_t len;
        uint8_t *buf = make_frame(hdr, data, sizeof(data), &len);

        for (size_t have = 0; have <= sizeof(data); have++) {
                assert_int_equal(proto_frame_decode_head(buf, len - sizeof(data) + have, &f, &err), 0);
                assert_string_equal(f.part, "kappa");
                assert_int_equal(f.part_bytes, sizeof(data));
                assert_int_equal(f.payload_len, have);
                assert_false(f.has_offset);
                proto_frame_clear(&f);
        }
        assert_int_equal(proto_frame_decode_head(buf, len - sizeof(data) - 1, &f, &err), -EINVAL);
        assert_string_equal(err.field, "frame");
        free(buf);

        buf = make_frame("{\"ref\":1,\"part\":\"p\",\"dtype\":\"f64\",\"shape\":[2]}", NULL, 0, &len);
        assert_int_equal(proto_frame_decode_head(buf, len, &f, &err), -EINVAL);
        assert_string_equal(err.field, "frame.dtype");
        free(buf);
        buf = make_frame("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[2],\"offset\":-1}", NULL, 0, &len);
        assert_int_equal(proto_frame_decode_head(buf, len, &f, &err), -EINVAL);
        assert_string_equal(err.field, "frame.offset");
        free(buf);
        buf = make_frame("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[2],\"offset\":1}", NULL, 0, &len);
        assert_int_equal(proto_frame_decode_head(buf, len, &f, &err), 0);
        assert_true(f.has_offset);
        assert_int_equal(f.offset, 1);
        proto_frame_clear(&f);
        free(buf);
}

static void test_frame_decodes_u8_with_ref(void **state)
{
        uint8_t data[5] = { 0, 1, 2, 1, 0 };
        struct proto_frame f;
        struct proto_error err;
        size_t len;
        uint8_t *buf = make_frame("{\"ref\":{\"q\":1},\"part\":\"zone\",\"dtype\":\"u8\",\"shape\":[5]}",
                                  data, sizeof(data), &len);

        assert_true(proto_frame_decode(buf, len, &f, NULL, &err) >= 0);
        assert_null(f.job);
        assert_true(json_is_object(f.ref));
        assert_int_equal(f.dtype, KILN_DTYPE_U8);
        assert_int_equal(f.ndim, 1);
        assert_int_equal(f.shape[0], 5);
        assert_int_equal(f.payload_len, 5);
        proto_frame_clear(&f);
        free(buf);
}

static void test_frame_decodes_u32_four_dims(void **state)
{
        uint32_t data[24] = { 0 };
        struct proto_frame f;
        struct proto_error err;
        size_t len;
        uint8_t *buf = make_frame("{\"ref\":3,\"part\":\"a.b-c_D9\",\"dtype\":\"u32\",\"shape\":[1,2,3,4]}",
                                  data, sizeof(data), &len);

        assert_true(proto_frame_decode(buf, len, &f, NULL, &err) >= 0);
        assert_int_equal(f.dtype, KILN_DTYPE_U32);
        assert_int_equal(f.ndim, 4);
        assert_int_equal(f.shape[3], 4);
        assert_int_equal(f.payload_len, 96);
        assert_string_equal(f.part, "a.b-c_D9");
        proto_frame_clear(&f);
        free(buf);
}

static void test_frame_decodes_bytes(void **state)
{
        const char data[] = "\x89PNG\r\n\x1a";
        struct proto_frame f;
        struct proto_error err;
        size_t len;
        uint8_t *buf = make_frame("{\"ref\":\"img\",\"part\":\"image\",\"dtype\":\"bytes\",\"shape\":[7]}",
                                  data, 7, &len);

        assert_true(proto_frame_decode(buf, len, &f, NULL, &err) >= 0);
        assert_int_equal(f.dtype, KILN_DTYPE_BYTES);
        assert_int_equal(f.payload_len, 7);
        assert_memory_equal(f.payload, data, 7);
        proto_frame_clear(&f);
        free(buf);
}

static void test_frame_allows_empty_payload_for_zero_dim(void **state)
{
        struct proto_frame f;
        struct proto_error err;
        size_t len;
        uint8_t *buf = make_frame("{\"ref\":1,\"part\":\"p\",\"dtype\":\"f32\",\"shape\":[0,8]}", NULL, 0, &len);

        assert_true(proto_frame_decode(buf, len, &f, NULL, &err) >= 0);
        assert_int_equal(f.payload_len, 0);
        proto_frame_clear(&f);
        free(buf);
}

static void test_frame_ignores_unknown_header_fields(void **state)
{
        struct proto_frame f;
        struct proto_error err;
        size_t len;
        uint8_t *buf = make_frame("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[1],\"x\":[true]}", "z", 1,
                                  &len);

        assert_true(proto_frame_decode(buf, len, &f, NULL, &err) >= 0);
        proto_frame_clear(&f);
        free(buf);
}

static void test_frame_shorter_than_prefix_is_rejected(void **state)
{
        static const uint8_t prefix[8] = { 'K', 'L', 'N', 'B', 0, 0, 0, 0 };
        struct proto_error err;
        struct proto_frame f;

        for (size_t n = 0; n < 8; n++) {
                uint8_t *buf = malloc(n ? n : 1);

                memcpy(buf, prefix, n);
                assert_int_equal(proto_frame_decode(buf, n, &f, NULL, &err), -EINVAL);
                assert_string_equal(err.field, "frame");
                free(buf);
        }
        assert_int_equal(proto_frame_decode(NULL, 0, &f, NULL, &err), -EINVAL);
}

static void test_frame_bad_magic_is_rejected(void **state)
{
        struct proto_frame f;
        struct proto_error err;
        size_t len;
        uint8_t *buf = make_frame("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[1]}", "z", 1, &len);

        buf[3] = 'b';
        assert_int_equal(proto_frame_decode(buf, len, &f, NULL, &err), -EINVAL);
        assert_int_equal(err.code, KERR_BAD_REQUEST);
        assert_string_equal(err.field, "frame");
        free(buf);
}

static void test_frame_header_len_past_end_is_rejected(void **state)
{
        struct proto_frame f;
        struct proto_error err;
        size_t len;
        uint8_t *buf = make_frame("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[0]}", NULL, 0, &len);
        uint32_t hlen = (uint32_t)(len - 8);

        /* One byte more than there is. */
        buf[4] = (uint8_t)(hlen + 1);
        assert_int_equal(proto_frame_decode(buf, len, &f, NULL, &err), -EINVAL);
        assert_string_equal(err.field, "frame");
        /* The largest length: must not wrap around. */
        memset(buf + 4, 0xFF, 4);
        assert_int_equal(proto_frame_decode(buf, len, &f, NULL, &err), -EINVAL);
        assert_string_equal(err.field, "frame");
        free(buf);
}

static void test_frame_bad_header_json_is_rejected(void **state)
{
        expect_frame_error("", 0, "frame");
        expect_frame_error("{\"ref\":1,\"part\":\"p\"", 0, "frame");
        expect_frame_error("[\"ref\",1]", 0, "frame");
        expect_frame_error("\"ref\"", 0, "frame");
        expect_frame_error("{\"ref\":1,\"ref\":2,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame");
        expect_frame_error("{\"ref\":\"a\\u0000b\",\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame");
        expect_frame_error("{\"ref\":\"\xFF\",\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame");
}

static void test_frame_raw_nul_in_header_is_rejected(void **state)
{
        static const char header[] = "{\"ref\":\"a\0\",\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[0]}";
        uint8_t buf[8 + sizeof(header) - 1];
        struct proto_frame f;
        struct proto_error err;

        memcpy(buf, "KLNB", 4);
        buf[4] = sizeof(header) - 1;
        buf[5] = buf[6] = buf[7] = 0;
        memcpy(buf + 8, header, sizeof(header) - 1);
        assert_int_equal(proto_frame_decode(buf, sizeof(buf), &f, NULL, &err), -EINVAL);
        assert_string_equal(err.field, "frame");
}

static void test_frame_needs_exactly_one_of_job_and_ref(void **state)
{
        expect_frame_error("{\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame");
        expect_frame_error("{\"job\":\"" ID_A "\",\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame");
        expect_frame_error("{\"job\":7,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame.job");
}

static void test_frame_bad_part_name_is_rejected(void **state)
{
        expect_frame_error("{\"ref\":1,\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame.part");
        expect_frame_error("{\"ref\":1,\"part\":\"\",\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame.part");
        expect_frame_error("{\"ref\":1,\"part\":\"a b\",\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame.part");
        expect_frame_error("{\"ref\":1,\"part\":\"../etc\",\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame.part");
        expect_frame_error("{\"ref\":1,\"part\":\"\xC3\xA9\",\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame.part");
        expect_frame_error("{\"ref\":1,\"part\":5,\"dtype\":\"u8\",\"shape\":[0]}", 0, "frame.part");
        /* 32 characters: one too many. */
        expect_frame_error("{\"ref\":1,\"part\":\"abcdefghijklmnopqrstuvwxyz012345\",\"dtype\":\"u8\",\"shape\":[0]}", 0,
                           "frame.part");
}

static void test_frame_part_name_of_31_chars_is_accepted(void **state)
{
        struct proto_frame f;
        struct proto_error err;
        size_t len;
        uint8_t *buf = make_frame("{\"ref\":1,\"part\":\"abcdefghijklmnopqrstuvwxyz01234\",\"dtype\":\"u8\",\"shape\":[0]}",
                                  NULL, 0, &len);

        assert_true(proto_frame_decode(buf, len, &f, NULL, &err) >= 0);
        assert_int_equal(strlen(f.part), 31);
        proto_frame_clear(&f);
        free(buf);
}

static void test_frame_bad_dtype_is_rejected(void **state)
{
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"shape\":[0]}", 0, "frame.dtype");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"f64\",\"shape\":[0]}", 0, "frame.dtype");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"F32\",\"shape\":[0]}", 0, "frame.dtype");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"f3\",\"shape\":[0]}", 0, "frame.dtype");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":0,\"shape\":[0]}", 0, "frame.dtype");
}

static void test_frame_bad_shape_is_rejected(void **state)
{
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\"}", 0, "frame.shape");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":4}", 4, "frame.shape");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[]}", 0, "frame.shape");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[1,1,1,1,1]}", 1, "frame.shape");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[-1]}", 0, "frame.shape");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[2.0]}", 2, "frame.shape");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[\"2\"]}", 2, "frame.shape");
        /* bytes are of shape [n] */
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"bytes\",\"shape\":[2,2]}", 4, "frame.shape");
}

static void test_frame_payload_must_match_shape(void **state)
{
        const char *h = "{\"ref\":1,\"part\":\"p\",\"dtype\":\"f32\",\"shape\":[2,3]}";

        expect_frame_error(h, 23, "frame.shape");
        expect_frame_error(h, 25, "frame.shape");
        expect_frame_error(h, 6, "frame.shape");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"bytes\",\"shape\":[7]}", 8, "frame.shape");
}

static void test_frame_shape_overflow_is_rejected(void **state)
{
        /* 2^62 * 2^62 overflows 64 bits; so does 2^62 * 4 bytes of f32. */
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[4611686018427387904,4611686018427387904]}",
                           0, "frame.shape");
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"f32\",\"shape\":[4611686018427387904]}", 0,
                           "frame.shape");
        /* Overflow that wraps to exactly the payload length (2^64 + 0). */
        expect_frame_error("{\"ref\":1,\"part\":\"p\",\"dtype\":\"u8\",\"shape\":[4294967296,4294967296]}", 0,
                           "frame.shape");
}

/* Every proper prefix of a valid frame fails, read from an exactly-sized buffer. */
static void test_frame_every_truncation_is_rejected(void **state)
{
        uint32_t data[6] = { 1, 2, 3, 4, 5, 6 };
        size_t len;
        uint8_t *full = make_frame("{\"job\":\"" ID_A "\",\"part\":\"ids\",\"dtype\":\"u32\",\"shape\":[3,2]}", data,
                                   sizeof(data), &len);
        struct proto_frame f;
        struct proto_error err;

        for (size_t n = 0; n < len; n++) {
                uint8_t *cut = malloc(n ? n : 1);

                memcpy(cut, full, n);
                assert_int_equal(proto_frame_decode(cut, n, &f, NULL, &err), -EINVAL);
                assert_int_equal(err.code, KERR_BAD_REQUEST);
                free(cut);
        }
        assert_true(proto_frame_decode(full, len, &f, NULL, &err) >= 0);
        proto_frame_clear(&f);
        free(full);
}

static uint64_t rng_state = 0x243F6A8885A308D3ULL;

static uint32_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return (uint32_t)(rng_state >> 16);
}

/* Random bytes, some behind a plausible prefix, and random mutations of a valid
 * frame: each either fails cleanly or yields a frame whose payload lies inside. */
static void test_frame_random_bytes_never_crash(void **state)
{
        static const char *const alphabet = "{}[]\":,0123456789-. KLNBrefjobpartdtypeshapeu8f32bytes\\\xC3\xA9";
        size_t alen = strlen(alphabet);
        size_t vlen;
        uint8_t *valid = make_frame("{\"ref\":[1],\"part\":\"v\",\"dtype\":\"u8\",\"shape\":[2,2]}", "abcd", 4, &vlen);
        int accepted = 0;

        for (int iter = 0; iter < 6000; iter++) {
                size_t n;
                uint8_t *buf;
                struct proto_frame f;
                struct proto_error err;
                int mode = iter % 3;

                if (mode == 2) {
                        n = vlen;
                        buf = malloc(n);
                        memcpy(buf, valid, n);
                        for (int m = 1 + (int)(rng() % 3); m > 0; m--)
                                buf[rng() % n] = (uint8_t)rng();
                } else {
                        n = rng() % 96;
                        buf = malloc(n ? n : 1);
                        for (size_t i = 0; i < n; i++)
                                buf[i] = mode == 0 ? (uint8_t)rng() : (uint8_t)alphabet[rng() % alen];
                        if (mode == 1 && n >= 8) {
                                uint32_t h = rng() % (uint32_t)(n - 7);

                                memcpy(buf, "KLNB", 4);
                                buf[4] = (uint8_t)h;
                                buf[5] = buf[6] = buf[7] = 0;
                        }
                }
                if (proto_frame_decode(buf, n, &f, NULL, &err) >= 0) {
                        accepted++;
                        assert_true(f.payload >= buf + 8 && f.payload + f.payload_len == buf + n);
                        assert_true(f.ndim >= 1 && f.ndim <= 4);
                        proto_frame_clear(&f);
                } else {
                        assert_int_equal(err.code, KERR_BAD_REQUEST);
                        assert_true(strncmp(err.field, "frame", 5) == 0);
                }
                free(buf);
        }
        /* Mutations that hit only the payload leave a valid frame. */
        assert_true(accepted > 0);
        free(valid);
}

static void test_text_decoder_random_bytes_never_crash(void **state)
{
        static const char *const alphabet = "{}[]\":,0123456789-.e tnulfasrubmitopjobref\\u\xC3\xA9";
        size_t alen = strlen(alphabet);

        for (int iter = 0; iter < 4000; iter++) {
                size_t n = rng() % 64;
                char *buf = malloc(n ? n : 1);
                struct proto_req r;
                struct proto_error err;
                json_t *ref = NULL;

                for (size_t i = 0; i < n; i++)
                        buf[i] = iter % 2 ? (char)rng() : alphabet[rng() % alen];
                if (proto_decode(buf, n, &r, &ref, &err) >= 0)
                        proto_req_clear(&r);
                else
                        json_decref(ref);
                free(buf);
        }
}

static void test_frame_header_roundtrips_through_decode(void **state)
{
        static const struct { const char *dtype; int ndim; uint64_t shape[4]; size_t bytes; } cases[] = {
                { "f32", 2, { 3, 5 }, 60 },
                { "u8", 1, { 9 }, 9 },
                { "u32", 4, { 1, 2, 1, 3 }, 24 },
                { "bytes", 1, { 11 }, 11 },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                uint8_t *head, *buf;
                size_t hlen;
                struct proto_frame f;
                struct proto_error err;
                enum kiln_dtype dt;

                assert_int_equal(proto_frame_header(ID_B, "out_1", cases[i].dtype, cases[i].ndim, cases[i].shape,
                                                    &head, &hlen), 0);
                buf = malloc(hlen + cases[i].bytes);
                memcpy(buf, head, hlen);
                memset(buf + hlen, 0x5A, cases[i].bytes);
                if (proto_frame_decode(buf, hlen + cases[i].bytes, &f, NULL, &err) < 0)
                        fail_msg("%s: %s (%s)", cases[i].dtype, err.message, err.field);
                assert_string_equal(f.job, ID_B);
                assert_string_equal(f.part, "out_1");
                assert_int_equal(kiln_dtype_from_name(cases[i].dtype, &dt), 0);
                assert_int_equal(f.dtype, dt);
                assert_int_equal(f.ndim, cases[i].ndim);
                assert_memory_equal(f.shape, cases[i].shape, sizeof(uint64_t) * (size_t)cases[i].ndim);
                assert_ptr_equal(f.payload, buf + hlen);
                assert_int_equal(f.payload_len, cases[i].bytes);
                proto_frame_clear(&f);
                free(buf);
                free(head);
        }
}

static void test_frame_header_is_compact_little_endian(void **state)
{
        static const char want[] = "{\"job\":\"" ID_A "\",\"part\":\"kappa\",\"dtype\":\"f32\",\"shape\":[256,3]}";
        uint64_t shape[2] = { 256, 3 };
        uint8_t *buf;
        size_t len, n = sizeof(want) - 1;

        assert_int_equal(proto_frame_header(ID_A, "kappa", "f32", 2, shape, &buf, &len), 0);
        assert_int_equal(len, 8 + n);
        assert_memory_equal(buf, "KLNB", 4);
        assert_int_equal(buf[4], n & 0xFF);
        assert_int_equal(buf[5], n >> 8);
        assert_int_equal(buf[6], 0);
        assert_int_equal(buf[7], 0);
        assert_memory_equal(buf + 8, want, n);
        free(buf);
}

/* Names that need escaping take jansson's path; plain ones are written directly:
 * both must read back the same through the decoder, and match byte for byte. */
static void test_frame_header_escapes_names_that_need_it(void **state)
{
        static const struct {
                const char *part, *want;
        } cases[] = {
                { "a\"b\\c", "{\"job\":\"" ID_A "\",\"part\":\"a\\\"b\\\\c\",\"dtype\":\"u8\",\"shape\":[0,1,18446744073709551]}" },
                { "tab\there", "{\"job\":\"" ID_A "\",\"part\":\"tab\\there\",\"dtype\":\"u8\",\"shape\":[0,1,18446744073709551]}" },
                { "caf\xC3\xA9", "{\"job\":\"" ID_A "\",\"part\":\"caf\xC3\xA9\",\"dtype\":\"u8\",\"shape\":[0,1,18446744073709551]}" },
                { "x_1.y-z", "{\"job\":\"" ID_A "\",\"part\":\"x_1.y-z\",\"dtype\":\"u8\",\"shape\":[0,1,18446744073709551]}" },
        };
        uint64_t shape[3] = { 0, 1, 18446744073709551ULL };
        (void)state;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                uint8_t *buf;
                size_t len, n = strlen(cases[i].want);
                assert_int_equal(proto_frame_header(ID_A, cases[i].part, "u8", 3, shape, &buf, &len), 0);
                assert_int_equal(len, 8 + n);
                assert_int_equal(buf[4] | buf[5] << 8, n);
                assert_memory_equal(buf + 8, cases[i].want, n);
                free(buf);
        }
}

static void test_frame_header_rejects_unencodable_arguments(void **state)
{
        uint64_t shape[5] = { 1, 1, 1, 1, 1 };
        uint64_t huge[1] = { UINT64_MAX };
        uint8_t *buf = (uint8_t *)0x1;
        size_t len = 77;

        assert_int_equal(proto_frame_header(ID_A, "p", "u8", 0, shape, &buf, &len), -EINVAL);
        assert_int_equal(proto_frame_header(ID_A, "p", "u8", 5, shape, &buf, &len), -EINVAL);
        assert_int_equal(proto_frame_header(ID_A, "p", "u8", 1, huge, &buf, &len), -EINVAL);
        assert_int_equal(proto_frame_header(NULL, "p", "u8", 1, shape, &buf, &len), -EINVAL);
        assert_int_equal(proto_frame_header(ID_A, "\xFF", "u8", 1, shape, &buf, &len), -EINVAL);
        assert_ptr_equal(buf, (uint8_t *)0x1);
        assert_int_equal(len, 77);
}

/* ---- uuid ---- */

static void test_uuid_format_parse_roundtrip(void **state)
{
        uint8_t id[16], back[16];
        char text[37];

        for (int i = 0; i < 1000; i++) {
                kiln_uuid7_new(id);
                kiln_uuid_format(id, text);
                assert_int_equal(strlen(text), 36);
                assert_int_equal(kiln_uuid_parse(text, back), 0);
                assert_memory_equal(id, back, 16);
        }
}

static void test_uuid_format_is_lowercase_8_4_4_4_12(void **state)
{
        static const uint8_t id[16] = { 0x01, 0x90, 0xF5, 0xA2, 0x7C, 0x3E, 0x7A, 0xBC,
                                        0x8D, 0xEF, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB };

        check_uuid_text(id, ID_A);
}

static void test_uuid_parse_accepts_either_case(void **state)
{
        uint8_t lower[16], upper[16];

        assert_int_equal(kiln_uuid_parse(ID_A, lower), 0);
        assert_int_equal(kiln_uuid_parse("0190F5A2-7C3E-7ABC-8DEF-0123456789AB", upper), 0);
        assert_memory_equal(lower, upper, 16);
        assert_int_equal(lower[0], 0x01);
        assert_int_equal(lower[15], 0xAB);
}

static void test_uuid_parse_rejects_bad_forms(void **state)
{
        static const char *const bad[] = {
                "",
                "0190f5a2",
                "0190f5a2-7c3e-7abc-8def-0123456789a",
                "0190f5a2-7c3e-7abc-8def-0123456789abc",
                "0190f5a2-7c3e-7abc-8def-0123456789a ",
                " 0190f5a2-7c3e-7abc-8def-0123456789a",
                "0190f5a27c3e-7abc-8def-0123456789abcd",
                "0190f5a-27c3e-7abc-8def-0123456789ab",
                "0190f5a2-7c3e-7abc-8def+0123456789ab",
                "0190f5a2-7c3e-7abc-8def-0123456789ag",
                "x190f5a2-7c3e-7abc-8def-0123456789ab",
                "{0190f5a2-7c3e-7abc-8def-0123456789a}",
                "0190f5a20-7c3e-7abc-8def-0123456789a",
                "0x90f5a2-7c3e-7abc-8def-0123456789ab",
        };
        uint8_t id[16];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                memset(id, 0xEE, sizeof(id));
                if (kiln_uuid_parse(bad[i], id) != -EINVAL)
                        fail_msg("parsed \"%s\"", bad[i]);
                for (int b = 0; b < 16; b++)
                        assert_int_equal(id[b], 0xEE);
        }
        assert_int_equal(kiln_uuid_parse(NULL, id), -EINVAL);
}

static void test_uuid7_has_version_and_variant_bits(void **state)
{
        for (int i = 0; i < 1000; i++) {
                uint8_t id[16];

                kiln_uuid7_new(id);
                assert_int_equal(id[6] >> 4, 7);
                assert_int_equal(id[8] >> 6, 2);
        }
}

static void test_uuid7_timestamp_is_now_in_ms(void **state)
{
        struct timespec ts;
        uint64_t before, after, ms = 0;
        uint8_t id[16];

        clock_gettime(CLOCK_REALTIME, &ts);
        before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        kiln_uuid7_new(id);
        clock_gettime(CLOCK_REALTIME, &ts);
        after = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        for (int i = 0; i < 6; i++)
                ms = ms << 8 | id[i];
        /* Earlier tests may have borrowed a few milliseconds ahead on counter overflow. */
        assert_true(ms >= before && ms <= after + 1000);
}

static void test_uuid7_strictly_increasing_in_tight_loop(void **state)
{
        enum { N = 100000 };
        uint8_t (*ids)[16] = malloc(sizeof(*ids) * N);

        for (int i = 0; i < N; i++)
                kiln_uuid7_new(ids[i]);
        for (int i = 1; i < N; i++)
                if (memcmp(ids[i - 1], ids[i], 16) >= 0)
                        fail_msg("id %d does not sort after id %d", i, i - 1);
        free(ids);
}

static void test_uuid7_text_order_matches_byte_order(void **state)
{
        char prev[37], cur[37];
        uint8_t id[16];

        kiln_uuid7_new(id);
        kiln_uuid_format(id, prev);
        for (int i = 0; i < 10000; i++) {
                kiln_uuid7_new(id);
                kiln_uuid_format(id, cur);
                assert_true(strcmp(prev, cur) < 0);
                memcpy(prev, cur, sizeof(cur));
        }
}

enum { THREADS = 4, PER_THREAD = 20000 };

static int uuid_worker(void *arg)
{
        uint8_t (*ids)[16] = arg;

        for (int i = 0; i < PER_THREAD; i++)
                kiln_uuid7_new(ids[i]);
        return 0;
}

static int cmp_id(const void *a, const void *b)
{
        return memcmp(a, b, 16);
}

static void test_uuid7_unique_and_ordered_across_threads(void **state)
{
        uint8_t (*ids)[16] = malloc(sizeof(*ids) * THREADS * PER_THREAD);
        thrd_t t[THREADS];

        for (int i = 0; i < THREADS; i++)
                assert_int_equal(thrd_create(&t[i], uuid_worker, ids + i * PER_THREAD), thrd_success);
        for (int i = 0; i < THREADS; i++)
                thrd_join(t[i], NULL);
        /* Each thread's own sequence is increasing... */
        for (int i = 0; i < THREADS; i++)
                for (int j = 1; j < PER_THREAD; j++)
                        assert_true(memcmp(ids[i * PER_THREAD + j - 1], ids[i * PER_THREAD + j], 16) < 0);
        /* ...and no id was handed out twice. */
        qsort(ids, THREADS * PER_THREAD, 16, cmp_id);
        for (int i = 1; i < THREADS * PER_THREAD; i++)
                assert_true(memcmp(ids[i - 1], ids[i], 16) < 0);
        free(ids);
}

static void test_uuid7_fork_child_does_not_repeat_parent(void **state)
{
        enum { N = 200 };
        uint8_t mine[N][16], theirs[N][16];
        int fds[2];
        pid_t pid;
        size_t got = 0;
        int status;

        kiln_uuid7_new(mine[0]); /* make sure the generator is set up before the fork */
        assert_int_equal(pipe(fds), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                uint8_t ids[N][16];

                close(fds[0]);
                for (int i = 0; i < N; i++)
                        kiln_uuid7_new(ids[i]);
                _exit(write(fds[1], ids, sizeof(ids)) == (ssize_t)sizeof(ids) ? 0 : 1);
        }
        close(fds[1]);
        for (int i = 0; i < N; i++)
                kiln_uuid7_new(mine[i]);
        while (got < sizeof(theirs)) {
                ssize_t n = read(fds[0], (uint8_t *)theirs + got, sizeof(theirs) - got);

                assert_true(n > 0);
                got += (size_t)n;
        }
        close(fds[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++)
                        assert_true(memcmp(mine[i], theirs[j], 16) != 0);
}

/* ---- client URLs ---- */

static void test_ws_url_defaults_and_explicit_parts(void **state)
{
        struct kiln_ws_url u;

        assert_int_equal(kiln_ws_url_parse("ws://127.0.0.1", &u), 0);
        assert_false(u.tls);
        assert_string_equal(u.host, "127.0.0.1");
        assert_int_equal(u.port, 80);
        assert_string_equal(u.path, "/");
        assert_string_equal(u.host_header, "127.0.0.1");

        assert_int_equal(kiln_ws_url_parse("WSS://kiln.example:8443/ws?x=1", &u), 0);
        assert_true(u.tls);
        assert_string_equal(u.host, "kiln.example");
        assert_int_equal(u.port, 8443);
        assert_string_equal(u.path, "/ws?x=1");
        assert_string_equal(u.host_header, "kiln.example:8443");

        assert_int_equal(kiln_ws_url_parse("wss://[::1]:443/ws", &u), 0);
        assert_string_equal(u.host, "::1");
        assert_int_equal(u.port, 443);
        assert_string_equal(u.host_header, "::1"); /* the default port is not named */

        assert_int_equal(kiln_ws_url_parse("ws://[::1]:8080", &u), 0);
        assert_int_equal(u.port, 8080);
        assert_string_equal(u.path, "/");
}

static void test_ws_url_rejects_what_is_not_one(void **state)
{
        static const char *const bad[] = {
                "http://127.0.0.1/ws", "ws:/127.0.0.1", "ws://", "ws://:8080/ws", "ws://[::1/ws",
                "ws://host:80x/ws", "ws://host:/ws",
        };
        struct kiln_ws_url u;
        char long_host[400];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (kiln_ws_url_parse(bad[i], &u) != -EINVAL)
                        fail_msg("accepted %s", bad[i]);
        /* A port that is a number out of range says so. */
        assert_int_equal(kiln_ws_url_parse("ws://host:0/ws", &u), -ERANGE);
        assert_int_equal(kiln_ws_url_parse("ws://host:65536/ws", &u), -ERANGE);
        memset(long_host, 'a', sizeof(long_host));
        memcpy(long_host, "ws://", 5);
        long_host[sizeof(long_host) - 1] = '\0';
        assert_int_equal(kiln_ws_url_parse(long_host, &u), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_err_names_follow_spec),
                cmocka_unit_test(test_op_names_follow_spec),
                cmocka_unit_test(test_priority_names_follow_spec),

                cmocka_unit_test(test_hello_decodes_token_and_client),
                cmocka_unit_test(test_hello_defaults_to_no_token_no_client),
                cmocka_unit_test(test_hello_rejects_non_string_token_and_client),

                cmocka_unit_test(test_submit_decodes_every_field),
                cmocka_unit_test(test_submit_defaults),
                cmocka_unit_test(test_submit_accepts_every_priority_name),
                cmocka_unit_test(test_submit_requires_string_kind),
                cmocka_unit_test(test_submit_rejects_non_object_params),
                cmocka_unit_test(test_submit_rejects_bad_priority),
                cmocka_unit_test(test_submit_timeout_range_is_1_to_2_pow_31),
                cmocka_unit_test(test_submit_timeout_must_be_an_integer),
                cmocka_unit_test(test_submit_key_is_1_to_256_bytes),
                cmocka_unit_test(test_submit_key_length_counts_bytes_not_characters),
                cmocka_unit_test(test_submit_rejects_non_bool_cache_and_watch),

                cmocka_unit_test(test_job_ops_decode_job_id),
                cmocka_unit_test(test_job_ops_accept_uppercase_job_id),
                cmocka_unit_test(test_job_ops_require_job),
                cmocka_unit_test(test_job_ops_reject_malformed_job_id),

                cmocka_unit_test(test_list_decodes_every_field),
                cmocka_unit_test(test_list_defaults),
                cmocka_unit_test(test_list_null_after_means_first_page),
                cmocka_unit_test(test_list_state_names_follow_store_enum),
                cmocka_unit_test(test_list_rejects_bad_state),
                cmocka_unit_test(test_list_rejects_non_string_kind),
                cmocka_unit_test(test_list_limit_range_is_1_to_1000),
                cmocka_unit_test(test_list_rejects_malformed_after),

                cmocka_unit_test(test_stats_decodes),
                cmocka_unit_test(test_subscribe_decodes_stats_topic),
                cmocka_unit_test(test_subscribe_rejects_other_topics),

                cmocka_unit_test(test_model_ops_decode_name),
                cmocka_unit_test(test_vec_ops_decode_collection_metric_and_ids),
                cmocka_unit_test(test_object_names_are_required_strings_of_1_to_128_bytes),
                cmocka_unit_test(test_vec_ids_must_be_an_array_of_strings),

                cmocka_unit_test(test_unknown_fields_are_bad_request),
                cmocka_unit_test(test_op_missing_or_not_string_is_bad_request),
                cmocka_unit_test(test_unknown_op_is_unknown_op),
                cmocka_unit_test(test_unknown_op_message_quotes_long_names_safely),
                cmocka_unit_test(test_not_json_is_bad_request),
                cmocka_unit_test(test_truncated_json_is_bad_request),
                cmocka_unit_test(test_top_level_must_be_an_object),
                cmocka_unit_test(test_empty_message_is_bad_request),
                cmocka_unit_test(test_embedded_nul_is_bad_request),
                cmocka_unit_test(test_invalid_utf8_is_bad_request),
                cmocka_unit_test(test_duplicate_keys_are_bad_request),
                cmocka_unit_test(test_huge_numbers_are_bad_params_or_a_bad_request),
                cmocka_unit_test(test_decode_reads_only_len_bytes),

                cmocka_unit_test(test_error_echoes_number_ref),
                cmocka_unit_test(test_error_echoes_string_ref),
                cmocka_unit_test(test_error_echoes_object_ref_that_outlives_the_message),
                cmocka_unit_test(test_error_without_ref_sets_ref_null),
                cmocka_unit_test(test_error_echoes_null_ref),

                cmocka_unit_test(test_error_json_has_every_field),
                cmocka_unit_test(test_error_json_omits_null_ref_and_empty_field),
                cmocka_unit_test(test_error_json_survives_cut_utf8_message),
                cmocka_unit_test(test_error_json_roundtrips_decode_errors),

                cmocka_unit_test(test_frame_decodes_f32),
                cmocka_unit_test(test_frame_head_leaves_the_payload_to_the_caller),
                cmocka_unit_test(test_frame_decodes_u8_with_ref),
                cmocka_unit_test(test_frame_decodes_u32_four_dims),
                cmocka_unit_test(test_frame_decodes_bytes),
                cmocka_unit_test(test_frame_allows_empty_payload_for_zero_dim),
                cmocka_unit_test(test_frame_ignores_unknown_header_fields),
                cmocka_unit_test(test_frame_shorter_than_prefix_is_rejected),
                cmocka_unit_test(test_frame_bad_magic_is_rejected),
                cmocka_unit_test(test_frame_header_len_past_end_is_rejected),
                cmocka_unit_test(test_frame_bad_header_json_is_rejected),
                cmocka_unit_test(test_frame_raw_nul_in_header_is_rejected),
                cmocka_unit_test(test_frame_needs_exactly_one_of_job_and_ref),
                cmocka_unit_test(test_frame_bad_part_name_is_rejected),
                cmocka_unit_test(test_frame_part_name_of_31_chars_is_accepted),
                cmocka_unit_test(test_frame_bad_dtype_is_rejected),
                cmocka_unit_test(test_frame_bad_shape_is_rejected),
                cmocka_unit_test(test_frame_payload_must_match_shape),
                cmocka_unit_test(test_frame_shape_overflow_is_rejected),
                cmocka_unit_test(test_the_ref_of_an_unreadable_message_is_echoed),
                cmocka_unit_test(test_frame_every_truncation_is_rejected),
                cmocka_unit_test(test_frame_random_bytes_never_crash),
                cmocka_unit_test(test_text_decoder_random_bytes_never_crash),
                cmocka_unit_test(test_frame_header_roundtrips_through_decode),
                cmocka_unit_test(test_frame_header_is_compact_little_endian),
                cmocka_unit_test(test_frame_header_escapes_names_that_need_it),
                cmocka_unit_test(test_frame_header_rejects_unencodable_arguments),

                cmocka_unit_test(test_uuid_format_parse_roundtrip),
                cmocka_unit_test(test_uuid_format_is_lowercase_8_4_4_4_12),
                cmocka_unit_test(test_uuid_parse_accepts_either_case),
                cmocka_unit_test(test_uuid_parse_rejects_bad_forms),
                cmocka_unit_test(test_uuid7_has_version_and_variant_bits),
                cmocka_unit_test(test_uuid7_timestamp_is_now_in_ms),
                cmocka_unit_test(test_uuid7_strictly_increasing_in_tight_loop),
                cmocka_unit_test(test_uuid7_text_order_matches_byte_order),
                cmocka_unit_test(test_uuid7_unique_and_ordered_across_threads),
                cmocka_unit_test(test_uuid7_fork_child_does_not_repeat_parent),
                cmocka_unit_test(test_ws_url_defaults_and_explicit_parts),
                cmocka_unit_test(test_ws_url_rejects_what_is_not_one),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
