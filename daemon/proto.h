/* The WebSocket protocol (SPEC §2): client messages decoded into typed requests,
 * the KLNB binary frame, error codes, and the JSON replies.
 *
 * Decoding checks shape and types only (no authentication, no kind lookup, no
 * parameter validation: those belong to session.c and the kinds). Every rejection
 * names the offending field ("op", "params", "job", "priority", ...). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum kiln_err {
        KERR_BAD_REQUEST,
        KERR_UNKNOWN_OP,
        KERR_UNKNOWN_KIND,
        KERR_BAD_PARAMS,
        KERR_TOO_LARGE,
        KERR_UNAUTHORIZED,
        KERR_FORBIDDEN,
        KERR_NOT_FOUND,
        KERR_QUEUE_FULL,
        KERR_RATE_LIMITED,
        KERR_TIMEOUT,
        KERR_CANCELLED,
        KERR_UNAVAILABLE,
        KERR_SHUTTING_DOWN,
        KERR_INTERNAL,
        _KERR_MAX,
};

/* "bad_request", ...; NULL for an invalid value. */
const char *kiln_err_name(enum kiln_err e);

enum kiln_op {
        KOP_HELLO,
        KOP_SUBMIT,
        KOP_STATUS,
        KOP_RESULT,
        KOP_WATCH,
        KOP_CANCEL,
        KOP_LIST,
        KOP_STATS,
        KOP_SUBSCRIBE,
        KOP_CACHE_PURGE,   /* "cache.purge" (role admin) */
        KOP_CONFIG_GET,    /* "config.get" (role admin): the effective configuration */
        /* Stored objects (SPEC §2.4); decoded into `object`. */
        KOP_MODEL_PUT,     /* "model.put" (admin): name, binary part "model" */
        KOP_MODEL_LIST,    /* "model.list" (read) */
        KOP_MODEL_DELETE,  /* "model.delete" (admin): name */
        KOP_VEC_PUT,       /* "vec.put" (writer): collection, metric, ids, binary part "vectors" */
        KOP_VEC_DELETE,    /* "vec.delete" (writer): collection, ids */
        KOP_VEC_DROP,      /* "vec.drop" (writer): collection */
        KOP_VEC_INFO,      /* "vec.info" (read): collection */
        KOP_VEC_LIST,      /* "vec.list" (read) */
        _KOP_MAX,
};

/* "hello", ...; NULL for an invalid value. */
const char *kiln_op_name(enum kiln_op op);

enum kiln_priority {
        KILN_PRIO_CRITICAL,
        KILN_PRIO_HIGH,
        KILN_PRIO_NORMAL,
        KILN_PRIO_LOW,
        KILN_PRIO_BATCH,
        _KILN_PRIO_MAX,
};

const char *kiln_priority_name(enum kiln_priority p);

struct proto_error {
        enum kiln_err code;
        char field[128];   /* "" when the error is about the message as a whole */
        char message[256];
};

/* A decoded client message. All pointers point into `root` (owned by the request). */
struct proto_req {
        enum kiln_op op;
        json_t *root;      /* the whole message */
        json_t *ref;       /* borrowed; NULL when absent; any JSON value, echoed back */
        union {
                struct {
                        const char *token;   /* NULL when absent */
                        const char *client;  /* NULL when absent */
                } hello;
                struct {
                        const char *kind;
                        json_t *params;      /* borrowed object; an empty object when absent */
                        enum kiln_priority priority; /* default normal */
                        int64_t timeout_ms;  /* -1 when absent (use jobs.default_timeout_ms) */
                        const char *key;     /* idempotency key, NULL when absent (1..256 chars) */
                        bool cache;          /* default true */
                        bool watch;          /* default true */
                } submit;
                struct {
                        uint8_t id[16];      /* status, result, watch, cancel */
                } job;
                struct {
                        int state;           /* enum kiln_job_state or -1 */
                        const char *kind;    /* NULL for any */
                        uint32_t limit;      /* 1..1000, default 100 */
                        bool has_after;
                        uint8_t after[16];
                } list;
                struct {
                        const char *topic;   /* "stats" */
                } subscribe;
                struct {
                        const char *kind;    /* NULL: purge every kind */
                } purge;
                /* The object ops. `name` is the model's "name" or the collection's
                 * "collection" (required, 1..STORE_OBJECT_NAME_MAX bytes; NULL for the
                 * two list ops). `metric`: vec.put's "metric", NULL when absent (its value
                 * is not checked here). `ids`: vec.put's and vec.delete's "ids", a
                 * borrowed array whose elements are all strings (their lengths are not
                 * checked here); NULL for the other ops. */
                struct {
                        const char *name;
                        const char *metric;
                        json_t *ids;
                } object;
        };
};

/* Decodes one text message. On success returns >= 0 and fills *ret (free with
 * proto_req_clear). On failure returns -EINVAL, fills err, and — when the message
 * was a JSON object with a "ref" — sets *ret_ref to a new reference to it (else
 * NULL) so the error reply can echo it; also when the message was refused as
 * malformed but is JSON all the same (an integer past int64, a NUL in a string, a
 * duplicate key). Errors: not JSON / not an object /
 * embedded NUL -> bad_request; "op" missing or not a string -> bad_request
 * (field "op"); unknown op -> unknown_op (field "op"); a field of the wrong type or
 * out of range -> bad_request naming it (e.g. "job", "priority", "timeout_ms",
 * "limit", "state", "after", "key", "params", "name", "collection", "metric", "ids",
 * "ids[i]"). */
int proto_decode(const char *text, size_t len, struct proto_req *ret, json_t **ret_ref,
                 struct proto_error *err);
/* Fills err for JSON text that jansson refused (jerr): a value it cannot hold
 * (an integer past int64, a real past double, a string with a NUL), a value that
 * is not JSON (NaN, Infinity, a stray word) and a repeated key are named by their
 * path ("params.k", "rows[2][0]"); any other fault names no field. Returns
 * -EINVAL. */
int proto_json_refused(const char *text, size_t len, const json_error_t *jerr, struct proto_error *err);
/* The same for a message already parsed (with JSON_REJECT_DUPLICATES, as
 * proto_decode parses): takes over the reference to root, whatever the outcome. */
int proto_decode_json(json_t *root, struct proto_req *ret, json_t **ret_ref, struct proto_error *err);
void proto_req_clear(struct proto_req *r);

#define PROTO_KLNB_PREFIX 8   /* "KLNB" and the u32 LE header length */

/* A decoded KLNB binary frame:
 *   "KLNB" | u32 LE header_len | header JSON | payload
 * header {"job": id | "ref": r, "part": name, "dtype": "f32"|"u8"|"u32"|"bytes", "shape": [..]}.
 * The payload must be exactly prod(shape) * dtype size bytes (any length for "bytes"
 * when shape is [n] with n == payload length). Pointers point into the input buffer
 * and into `header` (owned by the frame). */
struct proto_frame {
        json_t *header;
        json_t *ref;               /* borrowed from header, NULL when absent */
        const char *job;           /* borrowed, NULL when absent */
        const char *part;          /* 1..31 chars of [A-Za-z0-9_.-] */
        int dtype;                 /* enum kiln_dtype (gpu/kinds/kind.h) */
        int ndim;                  /* 1..4 */
        uint64_t shape[4];         /* of the whole part */
        uint64_t part_bytes;       /* of the whole part: dtype size x shape */
        bool has_offset;           /* "offset" given: one piece of a part sent in several frames */
        uint64_t offset;           /* where this frame's payload goes in the part */
        const uint8_t *payload;
        size_t payload_len;
};

/* Reads a frame's first PROTO_KLNB_PREFIX bytes: the header's length goes to
 * *ret_hlen. Returns >= 0, or -EINVAL when they do not start with "KLNB". */
int proto_frame_prefix(const uint8_t *prefix, uint32_t *ret_hlen);

/* Returns >= 0 or -EINVAL with err (code bad_request, field "frame" or the header
 * field at fault) and, when the header was an object with a "ref", a new reference
 * to it in *ret_ref (else NULL; ret_ref may be NULL). Never reads outside
 * buf[0..len). */
int proto_frame_decode(const uint8_t *buf, size_t len, struct proto_frame *ret, json_t **ret_ref,
                       struct proto_error *err);

/* Decodes the prefix and header of a frame whose payload is still arriving: buf
 * holds at least the prefix and the whole header, and payload_len counts the
 * payload bytes it holds so far. The payload's length is not checked (the caller
 * compares the bytes that follow with part_bytes, or offset and part_bytes); the
 * errors are otherwise proto_frame_decode's. */
int proto_frame_decode_head(const uint8_t *buf, size_t len, struct proto_frame *ret, struct proto_error *err);
void proto_frame_clear(struct proto_frame *f);

/* Writes the KLNB prefix (magic, length, header JSON) for an outgoing part into a
 * new buffer (*ret_buf, malloc'd, caller frees) of *ret_len bytes; the payload is
 * sent after it. Returns >= 0 or -ENOMEM. */
int proto_frame_header(const char *job_id, const char *part, const char *dtype, int ndim,
                       const uint64_t *shape, uint8_t **ret_buf, size_t *ret_len);

/* Whether `s` can be written between quotes in JSON as it is: printable ASCII but
 * '"' and '\\' (job ids, part and scalar names, dtypes and backends always are). */
bool proto_json_plain(const char *s);

/* {"op":"error","ref":R,"code":C,"message":M,"field":F} as a new JSON string
 * (malloc'd); `ref` may be NULL; "field" is omitted when empty. NULL on ENOMEM. */
char *proto_error_json(json_t *ref, const struct proto_error *err);

/* Job ids: UUIDv7 (RFC 9562) as 16 bytes / 36-char lowercase text. */
void kiln_uuid7_new(uint8_t ret[16]);
void kiln_uuid_format(const uint8_t id[16], char ret[37]);
/* Accepts the canonical 8-4-4-4-12 hex form (either case). Returns >= 0 or -EINVAL. */
int kiln_uuid_parse(const char *text, uint8_t ret[16]);

/* A client's view of a kiln URL: "ws://HOST[:PORT][/PATH]" or "wss://..." (HOST
 * may be "[v6]"), as kilnctl and kiln-bench take it. */
struct kiln_ws_url {
        bool tls;
        char host[256];
        int port;                 /* 80 / 443 when not given */
        char path[1024];          /* "/" when not given */
        char host_header[300];    /* HOST, or HOST:PORT for a port that is not the default */
};

/* Returns >= 0, -ERANGE for a port outside 1..65535, or -EINVAL for anything else
 * (another scheme, an empty host, a port that is not a number, too long a host or
 * path). */
int kiln_ws_url_parse(const char *url, struct kiln_ws_url *ret);
