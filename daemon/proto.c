/* The WebSocket protocol codec (SPEC §2): text messages into typed requests, the
 * KLNB binary frame both ways, and the error reply.
 *
 * Decoding checks shape and types only. Strings returned in requests and frames
 * point into the jansson tree owned by the request or frame: nothing is copied. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kind.h"
#include "proto.h"
#include "proto_internal.h"
#include "store.h"
#include "textbuf.h"

#define KLNB_MAGIC "KLNB"
#define KLNB_PREFIX PROTO_KLNB_PREFIX
#define PART_NAME_MAX 31
#define KEY_MAX 256
#define LIST_LIMIT_MAX 1000
#define LIST_LIMIT_DEFAULT 100
#define TIMEOUT_MS_MAX 2147483648LL /* 2^31 */

static const char *const err_names[_KERR_MAX] = {
        [KERR_BAD_REQUEST] = "bad_request",
        [KERR_UNKNOWN_OP] = "unknown_op",
        [KERR_UNKNOWN_KIND] = "unknown_kind",
        [KERR_BAD_PARAMS] = "bad_params",
        [KERR_TOO_LARGE] = "too_large",
        [KERR_UNAUTHORIZED] = "unauthorized",
        [KERR_FORBIDDEN] = "forbidden",
        [KERR_NOT_FOUND] = "not_found",
        [KERR_QUEUE_FULL] = "queue_full",
        [KERR_RATE_LIMITED] = "rate_limited",
        [KERR_TIMEOUT] = "timeout",
        [KERR_CANCELLED] = "cancelled",
        [KERR_UNAVAILABLE] = "unavailable",
        [KERR_SHUTTING_DOWN] = "shutting_down",
        [KERR_INTERNAL] = "internal",
};

static const char *const op_names[_KOP_MAX] = {
        [KOP_HELLO] = "hello",
        [KOP_SUBMIT] = "submit",
        [KOP_STATUS] = "status",
        [KOP_RESULT] = "result",
        [KOP_WATCH] = "watch",
        [KOP_CANCEL] = "cancel",
        [KOP_LIST] = "list",
        [KOP_STATS] = "stats",
        [KOP_SUBSCRIBE] = "subscribe",
        [KOP_CACHE_PURGE] = "cache.purge",
        [KOP_CONFIG_GET] = "config.get",
        [KOP_MODEL_PUT] = "model.put",
        [KOP_MODEL_LIST] = "model.list",
        [KOP_MODEL_DELETE] = "model.delete",
        [KOP_VEC_PUT] = "vec.put",
        [KOP_VEC_DELETE] = "vec.delete",
        [KOP_VEC_DROP] = "vec.drop",
        [KOP_VEC_INFO] = "vec.info",
        [KOP_VEC_LIST] = "vec.list",
};

static const char *const priority_names[_KILN_PRIO_MAX] = {
        [KILN_PRIO_CRITICAL] = "critical",
        [KILN_PRIO_HIGH] = "high",
        [KILN_PRIO_NORMAL] = "normal",
        [KILN_PRIO_LOW] = "low",
        [KILN_PRIO_BATCH] = "batch",
};

/* Indexed by enum kiln_job_state (store.h); duplicated here so the codec does not
 * link the store. The designated initialisers keep it in the store's order. */
static const char *const state_names[] = {
        [KILN_JOB_QUEUED] = "queued",
        [KILN_JOB_RUNNING] = "running",
        [KILN_JOB_DONE] = "done",
        [KILN_JOB_FAILED] = "failed",
        [KILN_JOB_CANCELLED] = "cancelled",
        [KILN_JOB_EXPIRED] = "expired",
};

/* Returns "bad_request", ... or NULL for a value outside the enum. */
const char *kiln_err_name(enum kiln_err e)
{
        return (unsigned)e < _KERR_MAX ? err_names[e] : NULL;
}

/* Returns "hello", ... or NULL for a value outside the enum. */
const char *kiln_op_name(enum kiln_op op)
{
        return (unsigned)op < _KOP_MAX ? op_names[op] : NULL;
}

/* Returns "critical", ... or NULL for a value outside the enum. */
const char *kiln_priority_name(enum kiln_priority p)
{
        return (unsigned)p < _KILN_PRIO_MAX ? priority_names[p] : NULL;
}

/* Finds a JSON string (with its length, so no strlen and no NUL surprises) in a
 * table of names; returns the index or -1. */
static int name_index(const char *const *names, size_t n, const char *s, size_t len)
{
        for (size_t i = 0; i < n; i++)
                if (names[i] && strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
                        return (int)i;
        return -1;
}

int proto_fail(struct proto_error *err, enum kiln_err code, const char *field, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return -EINVAL;
        err->code = code;
        snprintf(err->field, sizeof(err->field), "%s", field);
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

int proto_echo_len(const char *s, size_t len)
{
        if (len <= PROTO_ECHO_MAX)
                return (int)len;
        len = PROTO_ECHO_MAX;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
                len--;
        return (int)len;
}

/* ---- field readers: 1 when present and valid, 0 when absent, -EINVAL ---- */

static int get_string(json_t *o, const char *name, const char **ret, size_t *ret_len,
                      struct proto_error *err)
{
        json_t *v = json_object_get(o, name);

        if (!v)
                return 0;
        if (!json_is_string(v))
                return proto_fail(err, KERR_BAD_REQUEST, name, "\"%s\" must be a string", name);
        *ret = json_string_value(v);
        if (ret_len)
                *ret_len = json_string_length(v);
        return 1;
}

static int get_bool(json_t *o, const char *name, bool *ret, struct proto_error *err)
{
        json_t *v = json_object_get(o, name);

        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return proto_fail(err, KERR_BAD_REQUEST, name, "\"%s\" must be true or false", name);
        *ret = json_is_true(v);
        return 1;
}

static int get_int(json_t *o, const char *name, long long min, long long max, int64_t *ret,
                   struct proto_error *err)
{
        json_t *v = json_object_get(o, name);

        if (!v)
                return 0;
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return proto_fail(err, KERR_BAD_REQUEST, name, "\"%s\" must be an integer from %lld to %lld",
                            name, min, max);
        *ret = json_integer_value(v);
        return 1;
}

static int get_enum(json_t *o, const char *name, const char *const *names, size_t n, int *ret,
                    const char *choices, struct proto_error *err)
{
        json_t *v = json_object_get(o, name);
        int i;

        if (!v)
                return 0;
        i = json_is_string(v) ? name_index(names, n, json_string_value(v), json_string_length(v)) : -1;
        if (i < 0)
                return proto_fail(err, KERR_BAD_REQUEST, name, "\"%s\" must be one of %s", name, choices);
        *ret = i;
        return 1;
}

static int get_uuid(json_t *o, const char *name, bool required, uint8_t ret[16], struct proto_error *err)
{
        json_t *v = json_object_get(o, name);

        if (!v) {
                if (required)
                        return proto_fail(err, KERR_BAD_REQUEST, name, "\"%s\" is required", name);
                return 0;
        }
        if (!json_is_string(v) || json_string_length(v) != 36 || kiln_uuid_parse(json_string_value(v), ret) < 0)
                return proto_fail(err, KERR_BAD_REQUEST, name, "\"%s\" must be a job id (a UUID string)", name);
        return 1;
}

/* ---- per-op decoders: fill r from r->root ---- */

static int decode_hello(struct proto_req *r, struct proto_error *err)
{
        int k;

        r->hello.token = NULL;
        r->hello.client = NULL;
        k = get_string(r->root, "token", &r->hello.token, NULL, err);
        if (k < 0)
                return k;
        k = get_string(r->root, "client", &r->hello.client, NULL, err);
        return k < 0 ? k : 0;
}

static int decode_submit(struct proto_req *r, struct proto_error *err)
{
        json_t *params;
        size_t key_len = 0;
        int prio = KILN_PRIO_NORMAL;
        int k;

        k = get_string(r->root, "kind", &r->submit.kind, NULL, err);
        if (k < 0)
                return k;
        if (k == 0)
                return proto_fail(err, KERR_BAD_REQUEST, "kind", "\"kind\" is required");

        params = json_object_get(r->root, "params");
        if (params && !json_is_object(params))
                return proto_fail(err, KERR_BAD_REQUEST, "params", "\"params\" must be an object");
        if (!params) {
                /* Attach an empty object to the message so the request owns it like
                 * every other borrowed pointer. */
                params = json_object();
                if (!params || json_object_set_new(r->root, "params", params) < 0)
                        return -ENOMEM;
        }
        r->submit.params = params;

        k = get_enum(r->root, "priority", priority_names, N_ELEMS(priority_names), &prio,
                     "critical, high, normal, low, batch", err);
        if (k < 0)
                return k;
        r->submit.priority = (enum kiln_priority)prio;

        r->submit.timeout_ms = -1;
        k = get_int(r->root, "timeout_ms", 1, TIMEOUT_MS_MAX, &r->submit.timeout_ms, err);
        if (k < 0)
                return k;

        r->submit.key = NULL;
        k = get_string(r->root, "key", &r->submit.key, &key_len, err);
        if (k < 0)
                return k;
        if (k > 0 && (key_len < 1 || key_len > KEY_MAX))
                return proto_fail(err, KERR_BAD_REQUEST, "key", "\"key\" must be 1 to %d bytes long", KEY_MAX);

        r->submit.cache = true;
        k = get_bool(r->root, "cache", &r->submit.cache, err);
        if (k < 0)
                return k;
        r->submit.watch = true;
        k = get_bool(r->root, "watch", &r->submit.watch, err);
        return k < 0 ? k : 0;
}

static int decode_job(struct proto_req *r, struct proto_error *err)
{
        int k = get_uuid(r->root, "job", true, r->job.id, err);

        return k < 0 ? k : 0;
}

static int decode_list(struct proto_req *r, struct proto_error *err)
{
        int64_t limit = LIST_LIMIT_DEFAULT;
        json_t *after;
        int k;

        r->list.state = -1;
        k = get_enum(r->root, "state", state_names, N_ELEMS(state_names), &r->list.state,
                     "queued, running, done, failed, cancelled, expired", err);
        if (k < 0)
                return k;

        r->list.kind = NULL;
        k = get_string(r->root, "kind", &r->list.kind, NULL, err);
        if (k < 0)
                return k;

        k = get_int(r->root, "limit", 1, LIST_LIMIT_MAX, &limit, err);
        if (k < 0)
                return k;
        r->list.limit = (uint32_t)limit;

        /* A null "after" is the first page: clients pass back the "next" of the
         * previous reply, which is null at the end. */
        r->list.has_after = false;
        after = json_object_get(r->root, "after");
        if (after && json_is_null(after))
                return 0;
        k = get_uuid(r->root, "after", false, r->list.after, err);
        if (k < 0)
                return k;
        r->list.has_after = k > 0;
        return 0;
}

static int decode_subscribe(struct proto_req *r, struct proto_error *err)
{
        size_t len = 0;
        int k;

        k = get_string(r->root, "topic", &r->subscribe.topic, &len, err);
        if (k < 0)
                return k;
        if (k == 0 || len != 5 || memcmp(r->subscribe.topic, "stats", 5) != 0)
                return proto_fail(err, KERR_BAD_REQUEST, "topic", "\"topic\" must be \"stats\"");
        return 0;
}

/* cache.purge: {"kind": K} purges one kind's entries; without "kind", every entry. */
static int decode_cache_purge(struct proto_req *r, struct proto_error *err)
{
        size_t len = 0;
        int k;

        r->purge.kind = NULL;
        k = get_string(r->root, "kind", &r->purge.kind, &len, err);
        if (k < 0)
                return k;
        if (k == 1 && (len == 0 || len >= 32 || strlen(r->purge.kind) != len))
                return proto_fail(err, KERR_BAD_REQUEST, "kind", "\"kind\" must name a job kind");
        return 0;
}

/* The object ops (SPEC §2.4). Only the shape is checked here: the name is a string
 * the store can key (1..STORE_OBJECT_NAME_MAX bytes), "ids" an array of strings.
 * Whether a metric is known, an id's length and the binary part are the op's to
 * check (bad_params), as a kind checks a job's params. */
static int decode_object(struct proto_req *r, struct proto_error *err)
{
        const char *field = NULL;
        size_t len = 0;
        int k;

        r->object.name = NULL;
        r->object.metric = NULL;
        r->object.ids = NULL;
        switch (r->op) {
        case KOP_MODEL_PUT:
        case KOP_MODEL_DELETE:
                field = "name";
                break;
        case KOP_VEC_PUT:
        case KOP_VEC_DELETE:
        case KOP_VEC_DROP:
        case KOP_VEC_INFO:
                field = "collection";
                break;
        default:
                return 0; /* model.list, vec.list */
        }
        k = get_string(r->root, field, &r->object.name, &len, err);
        if (k < 0)
                return k;
        if (k == 0)
                return proto_fail(err, KERR_BAD_REQUEST, field, "\"%s\" is required", field);
        if (len < 1 || len > STORE_OBJECT_NAME_MAX)
                return proto_fail(err, KERR_BAD_REQUEST, field, "\"%s\" must be 1 to %d bytes long", field,
                            STORE_OBJECT_NAME_MAX);

        if (r->op == KOP_VEC_PUT) {
                k = get_string(r->root, "metric", &r->object.metric, NULL, err);
                if (k < 0)
                        return k;
        }
        if (r->op != KOP_VEC_PUT && r->op != KOP_VEC_DELETE)
                return 0;
        json_t *ids = json_object_get(r->root, "ids");
        if (!ids)
                return proto_fail(err, KERR_BAD_REQUEST, "ids", "\"ids\" is required");
        if (!json_is_array(ids))
                return proto_fail(err, KERR_BAD_REQUEST, "ids", "\"ids\" must be an array of strings");
        for (size_t i = 0; i < json_array_size(ids); i++)
                if (!json_is_string(json_array_get(ids, i))) {
                        char f[32];
                        snprintf(f, sizeof(f), "ids[%zu]", i);
                        return proto_fail(err, KERR_BAD_REQUEST, f, "\"%s\" must be a string", f);
                }
        r->object.ids = ids;
        return 0;
}


/* Decodes one text message; see proto.h for the contract. *ret and (on success)
 * *ret_ref are written only when the pointers are non-NULL. */
int proto_decode(const char *text, size_t len, struct proto_req *ret, json_t **ret_ref,
                 struct proto_error *err)
{
        struct proto_req r = { 0 };
        json_error_t jerr;
        int k;

        /* No JSON_DECODE_ANY (the top level must be an object or array) and no
         * JSON_ALLOW_NUL (a "\u0000" in a string is an error). */
        r.root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!r.root) {
                k = proto_json_refused(text, len, &jerr, err);
                if (ret_ref)
                        *ret_ref = proto_lenient_ref(text, len);
                return k;
        }
        return proto_decode_json(r.root, ret, ret_ref, err);
}

int proto_decode_json(json_t *root, struct proto_req *ret, json_t **ret_ref, struct proto_error *err)
{
        struct proto_req r = { .root = root };
        json_t *op;
        int k;

        if (!json_is_object(r.root)) {
                k = proto_fail(err, KERR_BAD_REQUEST, "", "a message must be a JSON object");
                goto fail_noref;
        }
        r.ref = json_object_get(r.root, "ref");

        op = json_object_get(r.root, "op");
        if (!op) {
                k = proto_fail(err, KERR_BAD_REQUEST, "op", "\"op\" is required");
                goto fail;
        }
        if (!json_is_string(op)) {
                k = proto_fail(err, KERR_BAD_REQUEST, "op", "\"op\" must be a string");
                goto fail;
        }
        k = name_index(op_names, N_ELEMS(op_names), json_string_value(op), json_string_length(op));
        if (k < 0) {
                k = proto_fail(err, KERR_UNKNOWN_OP, "op", "unknown op \"%.*s\"",
                         proto_echo_len(json_string_value(op), json_string_length(op)), json_string_value(op));
                goto fail;
        }
        r.op = (enum kiln_op)k;

        switch (r.op) {
        case KOP_HELLO:
                k = decode_hello(&r, err);
                break;
        case KOP_SUBMIT:
                k = decode_submit(&r, err);
                break;
        case KOP_STATUS:
        case KOP_RESULT:
        case KOP_WATCH:
        case KOP_CANCEL:
                k = decode_job(&r, err);
                break;
        case KOP_LIST:
                k = decode_list(&r, err);
                break;
        case KOP_STATS:
        case KOP_CONFIG_GET:
                k = 0;
                break;
        case KOP_SUBSCRIBE:
                k = decode_subscribe(&r, err);
                break;
        case KOP_CACHE_PURGE:
                k = decode_cache_purge(&r, err);
                break;
        case KOP_MODEL_PUT:
        case KOP_MODEL_LIST:
        case KOP_MODEL_DELETE:
        case KOP_VEC_PUT:
        case KOP_VEC_DELETE:
        case KOP_VEC_DROP:
        case KOP_VEC_INFO:
        case KOP_VEC_LIST:
                k = decode_object(&r, err);
                break;
        default:
                k = proto_fail(err, KERR_INTERNAL, "op", "op not handled");
                break;
        }
        if (k >= 0)
                k = proto_check_fields(&r, err);
        if (k == -ENOMEM)
                proto_fail(err, KERR_INTERNAL, "", "out of memory");
        if (k < 0)
                goto fail;

        if (ret_ref)
                *ret_ref = NULL;
        if (ret)
                *ret = r;
        else
                json_decref(r.root);
        return 0;

fail:
        if (ret_ref)
                *ret_ref = r.ref ? json_incref(r.ref) : NULL;
        json_decref(r.root);
        return k;
fail_noref:
        if (ret_ref)
                *ret_ref = NULL;
        json_decref(r.root);
        return k;
}

/* Releases the message a request points into and zeroes it. Accepts NULL. */
void proto_req_clear(struct proto_req *r)
{
        if (!r)
                return;
        json_decref(r->root);
        memset(r, 0, sizeof(*r));
}

/* ---- KLNB frames ---- */

static bool part_name_ok(const char *s, size_t len)
{
        if (len < 1 || len > PART_NAME_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-'))
                        return false;
        }
        return true;
}

int proto_frame_prefix(const uint8_t *prefix, uint32_t *ret_hlen)
{
        if (memcmp(prefix, KLNB_MAGIC, 4) != 0)
                return -EINVAL;
        *ret_hlen = (uint32_t)prefix[4] | (uint32_t)prefix[5] << 8 | (uint32_t)prefix[6] << 16 |
                    (uint32_t)prefix[7] << 24;
        return 0;
}

/* Decodes one binary frame; see proto.h. Every read of buf is bounded by len. With
 * `whole` false only the prefix and header need be in buf, and the payload's length
 * is left to the caller. */
static int frame_decode(const uint8_t *buf, size_t len, bool whole, struct proto_frame *ret, json_t **ret_ref,
                        struct proto_error *err)
{
        struct proto_frame f = { 0 };

        if (ret_ref)
                *ret_ref = NULL;
        json_error_t jerr;
        json_t *job, *part, *dtype, *shape;
        enum kiln_dtype dt;
        uint64_t bytes;
        uint32_t hlen;
        int k;

        if (!buf || len < KLNB_PREFIX)
                return proto_fail(err, KERR_BAD_REQUEST, "frame", "a binary frame must start with \"KLNB\" and a length");
        if (proto_frame_prefix(buf, &hlen) < 0)
                return proto_fail(err, KERR_BAD_REQUEST, "frame", "a binary frame must start with \"KLNB\"");
        if (hlen > len - KLNB_PREFIX)
                return proto_fail(err, KERR_BAD_REQUEST, "frame", "header length %u exceeds the frame (%zu bytes)",
                            hlen, len);

        f.header = json_loadb((const char *)buf + KLNB_PREFIX, hlen, JSON_REJECT_DUPLICATES, &jerr);
        if (!f.header)
                return proto_fail(err, KERR_BAD_REQUEST, "frame", "malformed frame header: %s", jerr.text);
        if (!json_is_object(f.header)) {
                k = proto_fail(err, KERR_BAD_REQUEST, "frame", "the frame header must be a JSON object");
                goto fail;
        }

        job = json_object_get(f.header, "job");
        f.ref = json_object_get(f.header, "ref");
        if (!job == !f.ref) {
                k = proto_fail(err, KERR_BAD_REQUEST, "frame", "the frame header needs exactly one of \"job\" and \"ref\"");
                goto fail;
        }
        if (job) {
                if (!json_is_string(job)) {
                        k = proto_fail(err, KERR_BAD_REQUEST, "frame.job", "\"job\" must be a string");
                        goto fail;
                }
                f.job = json_string_value(job);
        }

        part = json_object_get(f.header, "part");
        if (!part || !json_is_string(part) || !part_name_ok(json_string_value(part), json_string_length(part))) {
                k = proto_fail(err, KERR_BAD_REQUEST, "frame.part",
                         "\"part\" must be 1 to %d characters of A-Z a-z 0-9 _ . -", PART_NAME_MAX);
                goto fail;
        }
        f.part = json_string_value(part);

        dtype = json_object_get(f.header, "dtype");
        if (!dtype || !json_is_string(dtype) || kiln_dtype_from_name(json_string_value(dtype), &dt) < 0) {
                k = proto_fail(err, KERR_BAD_REQUEST, "frame.dtype", "\"dtype\" must be one of f32, u8, u32, bytes");
                goto fail;
        }
        f.dtype = dt;

        shape = json_object_get(f.header, "shape");
        if (!shape || !json_is_array(shape) || json_array_size(shape) < 1 || json_array_size(shape) > 4) {
                k = proto_fail(err, KERR_BAD_REQUEST, "frame.shape", "\"shape\" must be an array of 1 to 4 integers");
                goto fail;
        }
        f.ndim = (int)json_array_size(shape);
        if (dt == KILN_DTYPE_BYTES && f.ndim != 1) {
                k = proto_fail(err, KERR_BAD_REQUEST, "frame.shape", "a \"bytes\" part has one dimension: [n]");
                goto fail;
        }
        bytes = kiln_dtype_size(dt);
        for (int i = 0; i < f.ndim; i++) {
                json_t *d = json_array_get(shape, (size_t)i);

                if (!json_is_integer(d) || json_integer_value(d) < 0) {
                        k = proto_fail(err, KERR_BAD_REQUEST, "frame.shape", "\"shape\" must hold non-negative integers");
                        goto fail;
                }
                f.shape[i] = (uint64_t)json_integer_value(d);
                if (__builtin_mul_overflow(bytes, f.shape[i], &bytes)) {
                        k = proto_fail(err, KERR_BAD_REQUEST, "frame.shape", "\"shape\" is too large");
                        goto fail;
                }
        }

        f.payload = buf + KLNB_PREFIX + hlen;
        f.payload_len = len - KLNB_PREFIX - hlen;
        f.part_bytes = bytes;
        /* A piece of a part sent in several frames (SPEC §2): shape and dtype
         * describe the whole part, the payload lands at offset. */
        json_t *offset = json_object_get(f.header, "offset");
        if (offset && (!json_is_integer(offset) || json_integer_value(offset) < 0)) {
                k = proto_fail(err, KERR_BAD_REQUEST, "frame.offset", "\"offset\" must be a non-negative integer");
                goto fail;
        }
        f.has_offset = offset != NULL;
        f.offset = offset ? (uint64_t)json_integer_value(offset) : 0;
        if (whole && offset && (f.offset > bytes || f.payload_len > bytes - f.offset)) {
                k = proto_fail(err, KERR_BAD_REQUEST, "frame.offset",
                         "a payload of %zu bytes at offset %llu does not fit the part's %llu bytes", f.payload_len,
                         (unsigned long long)f.offset, (unsigned long long)bytes);
                goto fail;
        }
        if (whole && !offset && bytes != f.payload_len) {
                k = proto_fail(err, KERR_BAD_REQUEST, "frame.shape",
                         "\"shape\" and \"dtype\" need %llu payload bytes but the frame has %zu",
                         (unsigned long long)bytes, f.payload_len);
                goto fail;
        }

        if (ret)
                *ret = f;
        else
                json_decref(f.header);
        return 0;

fail:
        if (ret_ref && json_is_object(f.header) && json_object_get(f.header, "ref"))
                *ret_ref = json_incref(json_object_get(f.header, "ref"));
        json_decref(f.header);
        return k;
}

int proto_frame_decode(const uint8_t *buf, size_t len, struct proto_frame *ret, json_t **ret_ref,
                       struct proto_error *err)
{
        return frame_decode(buf, len, true, ret, ret_ref, err);
}

int proto_frame_decode_head(const uint8_t *buf, size_t len, struct proto_frame *ret, struct proto_error *err)
{
        return frame_decode(buf, len, false, ret, NULL, err);
}

/* Releases the header a frame points into and zeroes it. Accepts NULL. */
void proto_frame_clear(struct proto_frame *f)
{
        if (!f)
                return;
        json_decref(f->header);
        memset(f, 0, sizeof(*f));
}

/* Whether `s` needs no escaping in a JSON string: printable ASCII but '"' and '\\'
 * (job ids, part names and dtypes always are). Sets *len. */
static bool json_plain(const char *s, size_t *len)
{
        const char *p = s;
        for (; *p; p++)
                if (*p < 0x20 || *p > 0x7E || *p == '"' || *p == '\\')
                        return false;
        *len = (size_t)(p - s);
        return true;
}

bool proto_json_plain(const char *s)
{
        size_t len;
        return json_plain(s, &len);
}

static char *put(char *p, const char *s, size_t n)
{
        memcpy(p, s, n);
        return p + n;
}

/* The header of plain strings written directly, byte for byte what jansson writes
 * (JSON_COMPACT, keys in this order): a part header is built for every part of
 * every answer, and building it as a jansson object cost ~9 % of the loop thread
 * on cache hits. NULL when the strings need escaping or on ENOMEM. */
static uint8_t *frame_header_plain(const char *job_id, const char *part, const char *dtype, int ndim,
                                   const uint64_t *shape, size_t *ret_len)
{
        size_t lj, lp, ld;
        char dims[4][21];
        size_t ldims[4], n;

        if (!json_plain(job_id, &lj) || !json_plain(part, &lp) || !json_plain(dtype, &ld))
                return NULL;
        n = sizeof("{\"job\":\"\",\"part\":\"\",\"dtype\":\"\",\"shape\":[]}") - 1 + lj + lp + ld;
        for (int i = 0; i < ndim; i++) {
                struct textbuf b = textbuf_init(dims[i], sizeof(dims[i]));
                textbuf_u64(&b, shape[i]);
                ldims[i] = b.len;
                n += ldims[i] + (i > 0);
        }
        uint8_t *buf = n <= UINT32_MAX ? malloc(KLNB_PREFIX + n) : NULL;
        if (!buf)
                return NULL;
        char *p = (char *)buf + KLNB_PREFIX;
        p = put(p, "{\"job\":\"", 8);
        p = put(p, job_id, lj);
        p = put(p, "\",\"part\":\"", 10);
        p = put(p, part, lp);
        p = put(p, "\",\"dtype\":\"", 11);
        p = put(p, dtype, ld);
        p = put(p, "\",\"shape\":[", 11);
        for (int i = 0; i < ndim; i++) {
                if (i)
                        *p++ = ',';
                p = put(p, dims[i], ldims[i]);
        }
        p = put(p, "]}", 2);
        *ret_len = n;
        return buf;
}

/* Builds the KLNB prefix for one outgoing part. Returns >= 0, -ENOMEM, or -EINVAL
 * for arguments no frame can carry (NULL or non-UTF-8 strings, ndim outside 1..4,
 * a dimension above INT64_MAX, a header over 4 GiB). */
int proto_frame_header(const char *job_id, const char *part, const char *dtype, int ndim,
                       const uint64_t *shape, uint8_t **ret_buf, size_t *ret_len)
{
        json_t *h = NULL, *dims, *v;
        uint8_t *buf;
        size_t n;
        int k = -ENOMEM;

        if (!job_id || !part || !dtype || ndim < 1 || ndim > 4 || !shape || !ret_buf || !ret_len)
                return -EINVAL;
        for (int i = 0; i < ndim; i++)
                if (shape[i] > INT64_MAX)
                        return -EINVAL;
        buf = frame_header_plain(job_id, part, dtype, ndim, shape, &n);
        if (buf)
                goto prefix;

        h = json_object();
        dims = json_array();
        if (!h || !dims) {
                json_decref(dims);
                goto out;
        }
        if (json_object_set_new(h, "job", json_string(job_id)) < 0 ||
            json_object_set_new(h, "part", json_string(part)) < 0 ||
            json_object_set_new(h, "dtype", json_string(dtype)) < 0) {
                /* json_string returns NULL for invalid UTF-8, and setting NULL fails. */
                k = -EINVAL;
                json_decref(dims);
                goto out;
        }
        if (json_object_set_new(h, "shape", dims) < 0)
                goto out;
        for (int i = 0; i < ndim; i++) {
                v = json_integer((json_int_t)shape[i]); /* <= INT64_MAX, checked above */
                if (json_array_append_new(dims, v) < 0)
                        goto out;
        }

        n = json_dumpb(h, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (n == 0)
                goto out;
        if (n > UINT32_MAX) {
                k = -EINVAL;
                goto out;
        }
        buf = malloc(KLNB_PREFIX + n);
        if (!buf)
                goto out;
        if (json_dumpb(h, (char *)buf + KLNB_PREFIX, n, JSON_COMPACT | JSON_PRESERVE_ORDER) != n) {
                free(buf);
                goto out;
        }
prefix:
        memcpy(buf, KLNB_MAGIC, 4);
        buf[4] = (uint8_t)n;
        buf[5] = (uint8_t)(n >> 8);
        buf[6] = (uint8_t)(n >> 16);
        buf[7] = (uint8_t)(n >> 24);
        *ret_buf = buf;
        *ret_len = KLNB_PREFIX + n;
        k = 0;
out:
        json_decref(h);
        return k;
}

/* A JSON string for text that should be UTF-8 but may have been cut mid-character
 * by a fixed-size buffer: invalid bytes become '?'. */
static json_t *string_lossy(const char *s, size_t cap)
{
        size_t len = strnlen(s, cap);
        json_t *v = json_stringn(s, len);
        char *copy;

        if (v)
                return v;
        copy = malloc(len + 1);
        if (!copy)
                return NULL;
        for (size_t i = 0; i < len; i++)
                copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
        v = json_stringn(copy, len);
        free(copy);
        return v;
}

/* Formats the error reply; see proto.h. An out-of-range code is sent as "internal". */
char *proto_error_json(json_t *ref, const struct proto_error *err)
{
        const char *code = err ? kiln_err_name(err->code) : NULL;
        json_t *o = json_object();
        char *s = NULL;

        if (!o)
                return NULL;
        if (json_object_set_new(o, "op", json_string("error")) < 0 ||
            (ref && json_object_set(o, "ref", ref) < 0) ||
            json_object_set_new(o, "code", json_string(code ? code : "internal")) < 0 ||
            json_object_set_new(o, "message", err ? string_lossy(err->message, sizeof(err->message))
                                                  : json_string("internal error")) < 0)
                goto out;
        if (err && err->field[0] &&
            json_object_set_new(o, "field", string_lossy(err->field, sizeof(err->field))) < 0)
                goto out;
        s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
        json_decref(o);
        return s;
}

/* ---- client URLs ---- */

int kiln_ws_url_parse(const char *url, struct kiln_ws_url *ret)
{
        bool tls;
        const char *p;

        if (!strncasecmp(url, "ws://", 5)) {
                tls = false;
                p = url + 5;
        } else if (!strncasecmp(url, "wss://", 6)) {
                tls = true;
                p = url + 6;
        } else {
                return -EINVAL;
        }

        const char *host = p, *host_end;
        if (*p == '[') {
                host = ++p;
                host_end = strchr(p, ']');
                if (!host_end)
                        return -EINVAL;
                p = host_end + 1;
        } else {
                p += strcspn(p, ":/");
                host_end = p;
        }
        size_t hl = (size_t)(host_end - host);
        if (hl == 0 || hl >= sizeof(ret->host))
                return -EINVAL;

        int port = tls ? 443 : 80;
        bool default_port = true;
        if (*p == ':') {
                char *end;
                long v = strtol(p + 1, &end, 10);
                if (end == p + 1 || (*end && *end != '/'))
                        return -EINVAL;
                if (v < 1 || v > 65535)
                        return -ERANGE;
                port = (int)v;
                default_port = port == (tls ? 443 : 80);
                p = end;
        } else if (*p && *p != '/') {
                return -EINVAL;
        }

        const char *path = *p ? p : "/";
        if (strlen(path) >= sizeof(ret->path))
                return -EINVAL;

        memset(ret, 0, sizeof(*ret));
        ret->tls = tls;
        memcpy(ret->host, host, hl);
        ret->port = port;
        snprintf(ret->path, sizeof(ret->path), "%s", path);
        if (default_port)
                snprintf(ret->host_header, sizeof(ret->host_header), "%s", ret->host);
        else
                snprintf(ret->host_header, sizeof(ret->host_header), "%s:%d", ret->host, port);
        return 0;
}
