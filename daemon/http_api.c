/* The HTTP API of SPEC §3: GET /api/v1/jobs/ID, GET /api/v1/jobs/ID/parts/NAME.npy
 * and POST /api/v1/jobs, with `Authorization: Bearer T`.
 *
 * Each request runs through a session without a WebSocket (session_new_internal):
 * it is turned into the equivalent protocol op, so roles, tenants, limits, the
 * cache and idempotency apply exactly as for a WebSocket client, and the reply that
 * comes back (possibly later, from the store) becomes the HTTP response. Loop
 * thread only; nothing here waits. */
#include "http_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "auth.h"
#include "daemon.h"
#include "jobs.h"
#include "json_compact.h"
#include "kind.h"
#include "log.h"
#include "mailbox.h"
#include "membudget.h"
#include "objects.h"
#include "proto.h"
#include "session.h"
#include "util.h"

#define CHUNK (256 * 1024)

enum api_route { ROUTE_STATUS, ROUTE_PART, ROUTE_SUBMIT };

struct http_api_req {
        struct kilnd *d;
        struct lws *wsi;
        http_api_ready_fn on_ready;   /* told once the response is ready to be written */
        struct session *session;
        enum api_route route;
        char part[32];                /* ROUTE_PART: the part asked for */
        bool done_seen;               /* ROUTE_PART: the `done` arrived */

        uint8_t *body;                /* POST body */
        size_t body_len, body_cap;    /* body_cap bytes held in memory.max_bytes (MEM_INPUTS) */
        bool body_too_large;
        bool body_no_room;            /* the memory budget had no room for the rest of it */
        struct body_work *parsing;    /* a big body being parsed on a worker */

        /* The response: status, type, then head + payload bytes. */
        bool ready, headers_sent;
        unsigned status;
        const char *type;
        uint8_t *head;
        size_t head_len;
        struct job *job;              /* holds payload */
        const uint8_t *payload;
        size_t payload_len, sent;
        bool stored;                  /* payload NULL: read from the store as it is written */
        uint8_t stored_blob[16];
        uint64_t stored_off;
};

static unsigned http_status_of(const char *code)
{
        static const struct {
                const char *code;
                unsigned status;
        } map[] = {
                { "bad_request", 400 }, { "unknown_op", 400 }, { "unknown_kind", 400 }, { "bad_params", 400 },
                { "unauthorized", 401 }, { "forbidden", 403 }, { "not_found", 404 }, { "too_large", 413 },
                { "rate_limited", 429 }, { "queue_full", 503 }, { "unavailable", 503 }, { "shutting_down", 503 },
                { "timeout", 409 }, { "cancelled", 409 },
        };
        for (size_t i = 0; code && i < sizeof(map) / sizeof(map[0]); i++)
                if (!strcmp(code, map[i].code))
                        return map[i].status;
        return 500;
}

/* Sets a JSON response (text is copied). */
static void respond_json(struct http_api_req *r, unsigned status, const char *text, size_t len)
{
        if (r->ready)
                return;
        free(r->head);
        r->head = malloc(len ? len : 1);
        if (!r->head) {
                r->head_len = 0;
                status = 500;
        } else {
                memcpy(r->head, text, len);
                r->head_len = len;
        }
        r->status = status;
        r->type = "application/json";
        r->ready = true;
        r->on_ready(r->wsi);
}

const char *http_api_full_message(const struct kilnd *d, char *buf, size_t size)
{
        snprintf(buf, size, "kilnd holds server.max_connections (%u) connections and requests; retry later",
                 (unsigned)d->cfg->server.max_connections);
        return buf;
}

char *http_api_error_json(const char *code, const char *field, const char *message)
{
        struct proto_error e = { .code = KERR_INTERNAL };
        for (int c = 0; c < _KERR_MAX; c++)
                if (!strcmp(kiln_err_name(c), code))
                        e.code = c;
        snprintf(e.field, sizeof(e.field), "%s", field ? field : "");
        snprintf(e.message, sizeof(e.message), "%s", message);
        return proto_error_json(NULL, &e);
}

static void respond_error(struct http_api_req *r, unsigned status, const char *code, const char *field,
                          const char *message)
{
        char *text = http_api_error_json(code, field, message);
        if (text) {
                respond_json(r, status, text, strlen(text));
                free(text);
        } else {
                respond_json(r, 500, "{}", 2);
        }
}

/* The NumPy .npy (format 1.0) header for a part, padded so the data starts at a
 * multiple of 64 bytes. */
static int npy_header(const char *dtype, const json_t *shape, uint8_t **ret, size_t *ret_len)
{
        const char *descr = !strcmp(dtype, "f32")   ? "<f4"
                            : !strcmp(dtype, "u32") ? "<u4"
                            : !strcmp(dtype, "i32") ? "<i4"
                                                    : "|u1";
        char dict[256];
        size_t n = (size_t)snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
        size_t i;
        json_t *v;
        json_array_foreach(shape, i, v)
                n += (size_t)snprintf(dict + n, sizeof(dict) - n, "%lld,%s", (long long)json_integer_value(v),
                                      json_array_size(shape) > 1 && i + 1 < json_array_size(shape) ? " " : "");
        if (json_array_size(shape) > 1 && n > 0 && dict[n - 1] == ',')
                n--; /* (a, b) but (a,) */
        n += (size_t)snprintf(dict + n, sizeof(dict) - n, "), }");
        if (n >= sizeof(dict) - 2)
                return -EINVAL;
        size_t total = 10 + n + 1;
        size_t pad = (64 - total % 64) % 64;
        uint8_t *h = malloc(total + pad);
        if (!h)
                return -ENOMEM;
        memcpy(h, "\x93NUMPY\x01\x00", 8);
        size_t hl = n + pad + 1;
        h[8] = (uint8_t)hl;
        h[9] = (uint8_t)(hl >> 8);
        memcpy(h + 10, dict, n);
        memset(h + 10 + n, ' ', pad);
        h[total + pad - 1] = '\n';
        *ret = h;
        *ret_len = total + pad;
        return 0;
}

/* The value of a top-level member of a JSON object text, read alone; NULL when
 * there is none. */
static json_t *member(const uint8_t *text, size_t len, const char *key)
{
        size_t at, n;
        if (json_object_member((const char *)text, len, key, &at, &n) < 0)
                return NULL;
        return json_loadb((const char *)text + at, n, JSON_DECODE_ANY, NULL);
}

/* The `done` of the job whose part is asked for: whether it finished with one of
 * that name. */
static void on_part_done(struct http_api_req *r, const uint8_t *text, size_t len)
{
        json_t *state = member(text, len, "state"), *parts = member(text, len, "parts"), *p;
        bool found = false;
        size_t i;

        json_array_foreach(parts, i, p)
                found |= !strcmp(json_string_value(json_object_get(p, "name")) ?: "", r->part);
        if (!json_string_value(state) || strcmp(json_string_value(state), "done"))
                respond_error(r, 409, "not_found", "job", "the job did not finish with a result");
        else if (!found)
                respond_error(r, 404, "not_found", "part", "the job has no part of that name");
        else
                r->done_seen = true;
        json_decref(state);
        json_decref(parts);
}

/* Every frame the request's session would have sent over a WebSocket. */
static void on_reply(void *opaque, bool binary, const uint8_t *head, size_t head_len, struct job *job,
                     const uint8_t *payload, size_t payload_len, const uint8_t *stored_blob, uint64_t stored_off)
{
        struct http_api_req *r = opaque;

        if (r->ready)
                return;
        if (!binary) {
                /* Its op first: a `done` is not read whole (its result can be
                 * hundreds of megabytes of ids), only its state and parts. */
                char op[16] = "";
                json_t *v = member(head, head_len, "op");
                snprintf(op, sizeof(op), "%s", json_string_value(v) ? json_string_value(v) : "");
                json_decref(v);
                if (!strcmp(op, "done")) {
                        if (r->route == ROUTE_PART)
                                on_part_done(r, head, head_len);
                        return;
                }
                json_t *m = json_loadb((const char *)head, head_len, 0, NULL);
                if (!strcmp(op, "error")) {
                        const char *code = json_string_value(json_object_get(m, "code"));
                        json_object_del(m, "ref"); /* the request's internal ref */
                        char *text = json_dumps(m, JSON_COMPACT);
                        if (text)
                                respond_json(r, http_status_of(code), text, strlen(text));
                        free(text);
                } else if (r->route == ROUTE_PART && !strcmp(op, "ok")) {
                        /* `result` of an unfinished job watches it; HTTP does not wait
                         * for one still running. One already finished has its `done`
                         * on the way (its record being stored): that is waited for. */
                        enum kiln_job_state state;
                        const char *name = json_string_value(json_object_get(m, "state"));
                        if (!name || kiln_job_state_from_name(name, &state) < 0 || !kiln_job_state_is_final(state))
                                respond_error(r, 409, "not_found", "job", "the job has not finished yet");
                } else if (r->route != ROUTE_PART && (!strcmp(op, "status") || !strcmp(op, "accepted"))) {
                        json_object_del(m, "ref");
                        char *text = json_dumps(m, JSON_COMPACT | JSON_REAL_PRECISION(17));
                        if (text) {
                                respond_json(r, !strcmp(op, "accepted") ? 202 : 200, text, strlen(text));
                                free(text);
                        }
                }
                json_decref(m);
                return;
        }
        if (r->route != ROUTE_PART || !r->done_seen)
                return;
        /* head is the KLNB prefix: "KLNB" | u32 LE length | header JSON. */
        if (head_len < 8)
                return;
        uint32_t hl = (uint32_t)head[4] | (uint32_t)head[5] << 8 | (uint32_t)head[6] << 16 | (uint32_t)head[7] << 24;
        json_t *h = hl <= head_len - 8 ? json_loadb((const char *)head + 8, hl, 0, NULL) : NULL;
        const char *name = json_string_value(json_object_get(h, "part"));
        if (name && !strcmp(name, r->part)) {
                uint8_t *npy;
                size_t npy_len;
                if (npy_header(json_string_value(json_object_get(h, "dtype")) ?: "bytes", json_object_get(h, "shape"),
                               &npy, &npy_len) < 0) {
                        respond_error(r, 500, "internal", NULL, "cannot describe the part as .npy");
                } else {
                        free(r->head);
                        r->head = npy;
                        r->head_len = npy_len;
                        r->job = job_ref(job);
                        r->payload = payload;
                        r->payload_len = payload_len;
                        if (stored_blob) {
                                r->stored = true;
                                memcpy(r->stored_blob, stored_blob, 16);
                                r->stored_off = stored_off;
                        }
                        r->status = 200;
                        r->type = "application/octet-stream";
                        r->ready = true;
                        r->on_ready(r->wsi);
                }
        }
        json_decref(h);
}

/* The identity of the request: Bearer token when auth is required. */
static int identify(struct kilnd *d, struct lws *wsi, struct auth_identity *ret)
{
        if (!d->cfg->auth.required) {
                auth_anonymous(ret);
                return 0;
        }
        char hdr[512] = "";
        if (lws_hdr_copy(wsi, hdr, sizeof(hdr), WSI_TOKEN_HTTP_AUTHORIZATION) <= 0)
                return -EACCES;
        /* RFC 9110 §11: the scheme is case-insensitive, then one or more spaces; a
         * token has no space inside (trailing ones, which some clients send, go). */
        char *tok = hdr + strspn(hdr, " \t");
        if (strncasecmp(tok, "Bearer", 6) || (tok[6] != ' ' && tok[6] != '\t'))
                return -EACCES;
        tok += 6 + strspn(tok + 6, " \t");
        size_t n = strlen(tok);
        while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
                tok[--n] = '\0';
        return auth_check(d, tok, ret);
}

static void run_op(struct http_api_req *r, json_t *msg)
{
        if (!msg || json_object_set_new(msg, "ref", json_integer(1)) < 0) {
                json_decref(msg);
                respond_error(r, 500, "internal", NULL, "out of memory");
                return;
        }
        session_handle_json(r->session, msg);
}

static bool valid_id(const char *s, size_t n)
{
        uint8_t id[16];
        char buf[37];
        if (n != 36)
                return false;
        memcpy(buf, s, 36);
        buf[36] = 0;
        return kiln_uuid_parse(buf, id) >= 0;
}

int http_api_begin(struct kilnd *d, struct lws *wsi, const char *uri, bool post, http_api_ready_fn on_ready,
                   struct http_api_req **ret)
{
        struct http_api_req *r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->d = d;
        r->wsi = wsi;
        r->on_ready = on_ready;
        *ret = r;

        /* Each request holds a session until it is answered, as a WebSocket does:
         * past server.max_connections of them, the request is turned away. Probes
         * (/healthz, /readyz, /metrics) and the web UI's files are never refused. */
        if (d->n_sessions >= d->cfg->server.max_connections) {
                char msg[160];
                respond_error(r, 503, "unavailable", NULL, http_api_full_message(d, msg, sizeof(msg)));
                return 0;
        }
        struct auth_identity who;
        if (identify(d, wsi, &who) < 0) {
                auth_note_refused("HTTP", wsi);
                respond_error(r, 401, "unauthorized", "Authorization",
                              "an Authorization: Bearer header with a valid token is required");
                return 0;
        }
        r->session = session_new_internal(d, &who, on_reply, r);
        if (!r->session) {
                respond_error(r, 500, "internal", NULL, "out of memory");
                return 0;
        }

        static const char jobs[] = "/api/v1/jobs";
        const size_t jl = sizeof(jobs) - 1;
        if (strncmp(uri, jobs, jl)) {
                respond_error(r, 404, "not_found", NULL, "no such API endpoint");
                return 0;
        }
        const char *rest = uri + jl;
        if (post) {
                if (*rest && strcmp(rest, "/")) {
                        respond_error(r, 404, "not_found", NULL, "POST goes to /api/v1/jobs");
                        return 0;
                }
                r->route = ROUTE_SUBMIT; /* the body follows */
                return 0;
        }
        if (*rest != '/' || !valid_id(rest + 1, strcspn(rest + 1, "/"))) {
                respond_error(r, 404, "not_found", "job", "GET /api/v1/jobs/ID or /api/v1/jobs/ID/parts/NAME.npy");
                return 0;
        }
        char id[37];
        memcpy(id, rest + 1, 36);
        id[36] = 0;
        const char *tail = rest + 37;
        if (!*tail) {
                r->route = ROUTE_STATUS;
                run_op(r, json_pack("{s:s, s:s}", "op", "status", "job", id));
                return 0;
        }
        static const char parts[] = "/parts/";
        size_t tl = strlen(tail);
        if (strncmp(tail, parts, sizeof(parts) - 1) || tl < sizeof(parts) - 1 + 5 ||
            strcmp(tail + tl - 4, ".npy") || tl - (sizeof(parts) - 1) - 4 >= sizeof(r->part)) {
                respond_error(r, 404, "not_found", "part", "parts are served as /parts/NAME.npy");
                return 0;
        }
        r->route = ROUTE_PART;
        memcpy(r->part, tail + sizeof(parts) - 1, tl - (sizeof(parts) - 1) - 4);
        run_op(r, json_pack("{s:s, s:s}", "op", "result", "job", id));
        return 0;
}

/* Drops the body and gives its bytes back. */
static void body_free(struct http_api_req *r)
{
        free(r->body);
        r->body = NULL;
        if (r->body_cap && r->d->mem)
                membudget_give(r->d->mem, MEM_INPUTS, r->body_cap);
        r->body_len = r->body_cap = 0;
}

void http_api_body(struct http_api_req *r, const void *in, size_t len)
{
        /* An empty body (Content-Length: 0) comes as one call with in == NULL. */
        if (r->ready || r->body_too_large || r->body_no_room || !len)
                return;
        size_t max = r->d->cfg->server.max_message_bytes;
        if (r->body_len + len > max) {
                r->body_too_large = true;
                body_free(r);
                return;
        }
        /* Held in the memory budget as a WebSocket message being received is: a
         * body waits in memory until it is whole. */
        if (r->body_len + len + 1 > r->body_cap &&
            !membudget_grow(r->d->mem, MEM_INPUTS, &r->body, &r->body_cap, r->body_len + len + 1, max + 1)) {
                r->body_no_room = true;
                body_free(r);
                return;
        }
        memcpy(r->body + r->body_len, in, len);
        r->body_len += len;
}

/* A parsed body (NULL: not JSON, jerr says why) run as a `submit`. */
/* Why a body that is not JSON was refused: what it names (proto_json_refused)
 * or where it goes wrong. */
static void body_refused(const uint8_t *body, size_t len, const json_error_t *jerr, struct proto_error *why)
{
        if (proto_json_refused((const char *)body, len, jerr, why) < 0 && !why->field[0]) {
                snprintf(why->field, sizeof(why->field), "body");
                snprintf(why->message, sizeof(why->message), "the body is not JSON (line %d, column %d: %s)",
                         jerr->line, jerr->column, jerr->text);
        }
}

/* msg: the parsed body, NULL when it is empty or not JSON (why says which). */
static void body_parsed(struct http_api_req *r, json_t *msg, const struct proto_error *why)
{
        if (!json_is_object(msg)) {
                json_decref(msg);
                if (msg || !why)
                        respond_error(r, 400, "bad_request", "body",
                                      "the body must be a JSON object like a submit message");
                else /* as over the WebSocket: a number past range in params is bad_params */
                        respond_error(r, 400, kiln_err_name(why->code), why->field, why->message);
                return;
        }
        /* The body is a `submit`; the answer is its `accepted` (no watching over
         * HTTP). An "op" other than submit, or a "watch", would be overwritten
         * silently: refused, as a field an op does not take is. */
        json_t *op = json_object_get(msg, "op");
        if (json_object_get(msg, "watch")) {
                json_decref(msg);
                respond_error(r, 400, "bad_request", "watch",
                              "\"watch\" is not a field of a POST /api/v1/jobs body (it answers accepted; watch "
                              "the job over the WebSocket)");
                return;
        }
        if (op && !(json_is_string(op) && !strcmp(json_string_value(op), "submit"))) {
                json_decref(msg);
                respond_error(r, 400, "bad_request", "op",
                              "the body of POST /api/v1/jobs is a submit: \"op\" may only be \"submit\"");
                return;
        }
        json_object_set_new(msg, "op", json_string("submit"));
        json_object_set_new(msg, "watch", json_false());
        run_op(r, msg);
}

/* A body this big is parsed on a worker (objects_work_submit), as a WebSocket
 * message is (session.c): 7 MB of inline rows took the loop thread from every
 * connection for 0.7 s. */
#define BODY_OFF_LOOP_BYTES (256u << 10)

struct body_work {
        struct objects_work work;
        struct http_api_req *r;       /* NULL once the request ended (http_api_end) */
        struct kilnd *d;
        uint8_t *body;
        size_t len, held;             /* held: the body's bytes in memory.max_bytes */
        json_t *msg;
        struct proto_error why;       /* when msg is NULL */
};

static void body_parse_run(struct objects_work *ow)
{
        struct body_work *w = container_of(ow, struct body_work, work);

        json_error_t jerr;

        w->msg = json_loadb((const char *)w->body, w->len, JSON_REJECT_DUPLICATES, &jerr);
        if (!w->msg)
                body_refused(w->body, w->len, &jerr, &w->why);
}

static void on_body_parsed(struct mail *m)
{
        struct body_work *w = container_of(m, struct body_work, work.mail);
        struct http_api_req *r = w->r;

        free(w->body);
        if (w->held && w->d->mem)
                membudget_give(w->d->mem, MEM_INPUTS, w->held);
        w->d->decoding--;
        if (r && !w->d->quit) {
                r->parsing = NULL;
                body_parsed(r, w->msg, &w->why);
        } else {
                if (r)
                        r->parsing = NULL;
                json_decref(w->msg);
        }
        free(w);
}

void http_api_body_done(struct http_api_req *r)
{
        if (r->ready || r->route != ROUTE_SUBMIT)
                return;
        if (r->body_too_large) {
                respond_error(r, 413, "too_large", "body", "the request body exceeds server.max_message_bytes");
                return;
        }
        if (r->body_no_room) {
                respond_error(r, 503, "unavailable", "body",
                              "kilnd's memory budget (memory.max_bytes) has no room for this request body now; "
                              "retry later");
                return;
        }
        struct body_work *w = r->body_len >= BODY_OFF_LOOP_BYTES && r->d->objects ? calloc(1, sizeof(*w)) : NULL;
        if (w) {
                /* The body and its bytes in the budget go with the work. */
                *w = (struct body_work){ .r = r, .d = r->d, .body = r->body, .len = r->body_len,
                                         .held = r->body_cap };
                r->body = NULL;
                r->body_len = r->body_cap = 0;
                r->parsing = w;
                r->d->decoding++;
                w->work.run = body_parse_run;
                w->work.prompt = true;
                w->work.mail.fn = on_body_parsed;
                objects_work_submit(r->d->objects, &w->work);
                return; /* not ready: server.c holds the connection until on_ready */
        }
        json_error_t jerr;
        struct proto_error why;
        json_t *msg = r->body ? json_loadb((const char *)r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
        bool empty = !r->body;
        if (!empty && !msg)
                body_refused(r->body, r->body_len, &jerr, &why);
        body_free(r); /* parsed: the message holds what it needs */
        body_parsed(r, msg, empty ? NULL : &why);
}

bool http_api_ready(const struct http_api_req *r)
{
        return r->ready;
}

/* The status line and headers of a response kilnd writes itself: type, length,
 * no caching, and `Connection: close`. */
static int write_headers_of(struct lws *wsi, unsigned status, const char *type, size_t len)
{
        static const char close[] = "close";
        uint8_t buf[LWS_PRE + 512], *start = &buf[LWS_PRE], *p = start, *end = &buf[sizeof(buf) - 1];

        if (lws_add_http_common_headers(wsi, status, type, len, &p, end) ||
            (status == HTTP_STATUS_METHOD_NOT_ALLOWED && /* RFC 9110 §15.5.6: say which are */
             lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_ALLOW, (const unsigned char *)"GET, POST", 9, &p,
                                          end)) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, (const unsigned char *)"no-store", 8, &p,
                                         end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)close, sizeof(close) - 1,
                                         &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
                return -1;
        return 0;
}

int http_write_response(struct lws *wsi, unsigned status, const char *type, const void *body, size_t len)
{
        uint8_t *out = len ? malloc(LWS_PRE + len) : NULL;
        int rc = -1;

        if ((out || !len) && write_headers_of(wsi, status, type, len) == 0) {
                rc = 0;
                if (len) {
                        memcpy(out + LWS_PRE, body, len);
                        rc = lws_write(wsi, out + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) < (int)len ? -1 : 0;
                }
        }
        free(out);
        return rc;
}

static int write_headers(struct http_api_req *r, struct lws *wsi)
{
        if (write_headers_of(wsi, r->status, r->type, r->head_len + r->payload_len) < 0)
                return -1;
        r->headers_sent = true;
        return 0;
}

int http_api_write_now(struct http_api_req *r, struct lws *wsi)
{
        if (!r->ready || r->headers_sent || r->payload_len || r->stored)
                return 0;
        r->headers_sent = true;
        return http_write_response(wsi, r->status, r->type, r->head, r->head_len) < 0 ? -1 : 1;
}

int http_api_write(struct http_api_req *r, struct lws *wsi)
{
        static uint8_t scratch[LWS_PRE + CHUNK];
        size_t total = r->head_len + r->payload_len;

        if (!r->ready)
                return 0;
        if (!r->headers_sent) {
                if (write_headers(r, wsi) < 0)
                        return -1;
                lws_callback_on_writable(wsi);
                return 0;
        }
        size_t n = total - r->sent < CHUNK ? total - r->sent : CHUNK, w = 0;
        if (r->sent < r->head_len) {
                w = r->head_len - r->sent < n ? r->head_len - r->sent : n;
                memcpy(scratch + LWS_PRE, r->head + r->sent, w);
        }
        if (w < n && !r->stored) {
                memcpy(scratch + LWS_PRE + w, r->payload + (r->sent + w - r->head_len), n - w);
        } else if (w < n) {
                /* A big stored part: read chunk by chunk, never copied whole. */
                int k = session_read_stored(r->d, r->stored_blob, r->stored_off + (r->sent + w - r->head_len),
                                            scratch + LWS_PRE + w, n - w);
                if (k < 0) {
                        /* The status line has gone: all that is left is to cut the response short. */
                        log_error("HTTP API: reading a stored part failed: %s", strerror(-k));
                        return -1;
                }
        }
        bool last = r->sent + n == total;
        if (lws_write(wsi, scratch + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)n)
                return -1;
        r->sent += n;
        if (!last) {
                lws_callback_on_writable(wsi);
                return 0;
        }
        return 1;
}

void http_api_end(struct http_api_req *r)
{
        if (!r)
                return;
        if (r->parsing)
                r->parsing->r = NULL; /* its mail frees what it holds */
        session_free_internal(r->d, r->session);
        job_unref(r->job);
        free(r->head);
        body_free(r);
        free(r);
}
