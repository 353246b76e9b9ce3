/* One WebSocket connection: the table of sessions, idle connections, decoding and
 * dispatch of the ops of SPEC §2 (the job ops are in session_jobs.c, the output
 * queue in session_out.c). */
#include "session_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <libwebsockets.h>

#include "auth.h"
#include "daemon.h"
#include "jobs.h"
#include "json_compact.h"
#include "limiter.h"
#include "log.h"
#include "mailbox.h"
#include "membudget.h"
#include "objects.h"
#include "params.h"
#include "schema.h"
#include "stats.h"
#include "storeq.h"
#include "util.h"

static void handle_decoded(struct session *s, int r, struct proto_req *rqp, json_t *ref,
                           const struct proto_error *errp);

size_t session_struct_size(void)
{
        return sizeof(struct session);
}

/* ---- the session table ---- */

static void table_put(struct kilnd *d, struct session *s)
{
        if (d->n_sessions >= d->session_buckets) {
                size_t n = d->session_buckets ? d->session_buckets * 2 : 256;
                struct session **t = calloc(n, sizeof(*t));
                if (t) {
                        for (size_t b = 0; b < d->session_buckets; b++)
                                for (struct session *x = d->sessions[b], *next; x; x = next) {
                                        next = x->bucket_next;
                                        x->bucket_next = t[x->id & (n - 1)];
                                        t[x->id & (n - 1)] = x;
                                }
                        free(d->sessions);
                        d->sessions = t;
                        d->session_buckets = n;
                }
        }
        struct session **b = &d->sessions[s->id & (d->session_buckets - 1)];
        s->bucket_next = *b;
        *b = s;
        d->n_sessions++;
}

static void table_del(struct kilnd *d, struct session *s)
{
        if (!d->session_buckets)
                return;
        for (struct session **pp = &d->sessions[s->id & (d->session_buckets - 1)]; *pp; pp = &(*pp)->bucket_next)
                if (*pp == s) {
                        *pp = s->bucket_next;
                        d->n_sessions--;
                        return;
                }
}

struct session *session_find(struct kilnd *d, uint64_t id)
{
        if (!d->session_buckets)
                return NULL;
        for (struct session *s = d->sessions[id & (d->session_buckets - 1)]; s; s = s->bucket_next)
                if (s->id == id)
                        return s;
        return NULL;
}

/* ---- idle connections ----
 *
 * libwebsockets' own keepalive (retry_and_idle_policy) re-inserts a timer into one
 * sorted list on every frame received, a walk over every connection's timer: with
 * 10,000 idle connections that walk was 18 % of the loop thread. kilnd keeps its
 * WebSocket sessions in a list ordered by their last received frame instead
 * (moving one to the end costs nothing), so the once-a-second sweep only looks at
 * the connections that are due. A session silent for half of server.idle_timeout_s
 * is pinged; one still silent after the other half is closed. */

static void idle_unlink(struct kilnd *d, struct session *s)
{
        if (s->idle_prev)
                s->idle_prev->idle_next = s->idle_next;
        else if (d->idle_head == s)
                d->idle_head = s->idle_next;
        else
                return; /* not in the list */
        if (s->idle_next)
                s->idle_next->idle_prev = s->idle_prev;
        else
                d->idle_tail = s->idle_prev;
        s->idle_prev = s->idle_next = NULL;
}

static void idle_append(struct kilnd *d, struct session *s, int64_t now)
{
        s->idle_since_us = now;
        s->idle_prev = d->idle_tail;
        s->idle_next = NULL;
        if (d->idle_tail)
                d->idle_tail->idle_next = s;
        else
                d->idle_head = s;
        d->idle_tail = s;
}


/* A frame came in: the peer is there (even one that crossed a close decision). */
void session_seen(struct kilnd *d, struct session *s)
{
        s->idle = IDLE_HEARD;
        idle_unlink(d, s);
        idle_append(d, s, kiln_mono_us());
}

void sessions_idle_sweep(struct kilnd *d)
{
        int64_t now = kiln_mono_us();
        int64_t half = (int64_t)(d->cfg->server.idle_timeout_s / 2 ? d->cfg->server.idle_timeout_s / 2 : 1) * 1000000;
        struct session *s;

        while ((s = d->idle_head) && now - s->idle_since_us >= half) {
                idle_unlink(d, s);
                if (s->in_paused || s->in_decoding) {
                        /* Its input (pongs too) waits for its replies, or for its big
                         * message to be decoded: while it takes them it is alive, and
                         * when it stops the stall check closes it. */
                        s->idle = IDLE_HEARD;
                        idle_append(d, s, now);
                        continue;
                }
                if (s->idle == IDLE_HEARD) {
                        s->idle = IDLE_PING_DUE;
                        idle_append(d, s, now);
                } else {
                        s->idle = IDLE_CLOSE; /* out of the list for good */
                }
                lws_callback_on_writable(s->wsi);
        }
}

void sessions_output_sweep(struct kilnd *d)
{
        int64_t now = kiln_mono_ms();
        for (struct session *s = d->out_busy, *next; s; s = next) {
                next = s->busy_next; /* one closed for stalling leaves the list */
                session_out_check_stalled(s, now);
        }
}

/* Calls fn for every open session (the stats push). */
void sessions_foreach(struct kilnd *d, void (*fn)(struct session *s, void *userdata), void *userdata)
{
        for (size_t b = 0; b < d->session_buckets; b++)
                for (struct session *s = d->sessions[b]; s; s = s->bucket_next)
                        fn(s, userdata);
}

size_t sessions_output_pending(struct kilnd *d)
{
        size_t n = 0;
        for (struct session *s = d->out_busy; s; s = s->busy_next)
                n++;
        return n;
}

void sessions_close_all(struct kilnd *d)
{
        for (size_t b = 0; b < d->session_buckets; b++)
                for (struct session *s = d->sessions[b]; s; s = s->bucket_next)
                        if (s->wsi) /* HTTP API sessions have none */
                                lws_callback_on_writable(s->wsi);
}

/* ---- connection lifecycle ---- */

int session_open(struct kilnd *d, struct session *s, struct lws *wsi)
{
        memset(s, 0, sizeof(*s));
        s->d = d;
        s->wsi = wsi;
        s->id = ++d->next_session_id;
        s->opened_ms = kiln_mono_ms();
        if (!d->cfg->auth.required) {
                s->authed = true;
                auth_anonymous(&s->who);
        }
        table_put(d, s);
        idle_append(d, s, kiln_mono_us());
        return 0;
}

static void input_sweep_one(struct session *s, void *userdata)
{
        int64_t now = *(const int64_t *)userdata;
        const struct kiln_config *c = s->d->cfg;

        if (!s->wsi)
                return;
        if (!s->authed && !s->kick && now - s->opened_ms > (int64_t)c->server.handshake_timeout_s * 1000) {
                s->kick = "no valid hello within server.handshake_timeout_s";
                lws_callback_on_writable(s->wsi);
        }
        if (s->parts && !s->in_paused && !s->in_decoding) {
                size_t n = parts_expire(s->parts, now - (int64_t)c->server.idle_timeout_s * 1000);
                if (n)
                        log_info("session %llu: %zu binary part(s) dropped: no message used them and no frame "
                                 "of theirs came for %u s (server.idle_timeout_s)",
                                 (unsigned long long)s->id, n, c->server.idle_timeout_s);
        }
}

void sessions_input_sweep(struct kilnd *d)
{
        int64_t now = kiln_mono_ms();
        sessions_foreach(d, input_sweep_one, &now);
}

static void recheck_one(struct session *s, void *userdata)
{
        if (!s->wsi || !s->authed || s->kick)
                return;
        enum auth_role was = s->who.role;
        if (auth_recheck(s->d, &s->who) < 0) {
                log_notice("session %llu: the token it signed in with (%s, tenant %s) is no longer in the tokens "
                           "file: closing it",
                           (unsigned long long)s->id, s->who.name[0] ? s->who.name : "none", s->who.tenant);
                s->authed = false; /* nothing more is served to it */
                s->kick = "token revoked";
                lws_callback_on_writable(s->wsi);
        } else if (s->who.role != was) {
                log_info("session %llu: token %s is now role %s", (unsigned long long)s->id, s->who.name,
                         auth_role_name(s->who.role));
        }
}

void sessions_recheck_tokens(struct kilnd *d)
{
        if (d->cfg->auth.required)
                sessions_foreach(d, recheck_one, NULL);
}

/* Parts waiting for their message are bounded by the larger of what a job's inputs
 * and what a stored object may be; the op that takes them checks its own limit. */
struct parts *session_parts(struct session *s)
{
        const struct kiln_config *c = s->d->cfg;
        uint64_t max = c->limits.max_input_bytes > c->limits.max_object_bytes ? c->limits.max_input_bytes
                                                                              : c->limits.max_object_bytes;
        if (!s->parts)
                s->parts = parts_new(max, s->d->mem);
        else
                parts_set_limit(s->parts, max); /* SIGHUP may change it */
        return s->parts;
}

#define REF_SCAN_MAX (1u << 20)

/* The "ref" of a message kilnd could not hold, from what arrived of it: a text
 * message's members before the cut, a binary frame's header. NULL when none came. */
static json_t *ref_of_prefix(const uint8_t *p, size_t n, bool binary)
{
        if (binary) {
                uint32_t hl;
                if (n < PROTO_KLNB_PREFIX || proto_frame_prefix(p, &hl) < 0 || hl > n - PROTO_KLNB_PREFIX)
                        return NULL;
                json_t *h = json_loadb((const char *)p + PROTO_KLNB_PREFIX, hl, 0, NULL);
                json_t *ref = json_is_object(h) ? json_incref(json_object_get(h, "ref")) : NULL;
                json_decref(h);
                return ref;
        }
        /* Its first MiB at most: on the loop thread, a ref past a many-MiB params
         * is not worth the walk. */
        size_t pos = 0;
        struct json_member m;
        if (n > REF_SCAN_MAX)
                n = REF_SCAN_MAX;
        while (json_object_next((const char *)p, n, &pos, &m) == 1)
                if (m.key_len == 5 && !memcmp(p + m.key_at, "\"ref\"", 5))
                        return json_loadb((const char *)p + m.value_at, m.value_len, JSON_DECODE_ANY, NULL);
        return NULL;
}

/* The dropped message has come whole: answered, its parts gone with it. */
static void rx_drop_done(struct session *s)
{
        session_send_error(s, s->rx_drop_ref, KERR_UNAVAILABLE, NULL,
                           "kilnd's memory budget (memory.max_bytes) had no room for this message of %llu bytes: it "
                           "was dropped; retry later",
                           (unsigned long long)s->rx_dropped);
        if (s->parts && s->rx_drop_ref)
                parts_drop(s->parts, s->rx_drop_ref);
        json_decref(s->rx_drop_ref);
        s->rx_drop_ref = NULL;
        s->rx_dropped = 0;
}

static void rx_release(struct session *s)
{
        free(s->rx);
        if (s->d->mem)
                membudget_give(s->d->mem, MEM_INPUTS, s->rx_cap);
        s->rx = NULL;
        s->rx_cap = 0;
}

void session_close(struct kilnd *d, struct session *s)
{
        /* libwebsockets 4.1.6 also reports CLOSED for an upgrade the server
         * refused (FILTER_PROTOCOL_CONNECTION), whose ESTABLISHED never came: that
         * session, zeroed by libwebsockets, was never opened. */
        if (!s->d)
                return;
        table_del(d, s);
        idle_unlink(d, s);
        if (s->stats_subscribed)
                d->n_stats_subscribed--;
        session_out_clear(s);
        parts_free(s->parts);
        s->parts = NULL;
        session_objects_close(s);
        rx_release(s);
        json_decref(s->rx_drop_ref);
        s->rx_drop_ref = NULL;
}

struct session *session_new_internal(struct kilnd *d, const struct auth_identity *who, session_sink_fn sink,
                                     void *opaque)
{
        struct session *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->d = d;
        s->id = ++d->next_session_id;
        s->authed = true;
        s->who = *who;
        s->sink = sink;
        s->sink_opaque = opaque;
        table_put(d, s);
        return s;
}

void session_free_internal(struct kilnd *d, struct session *s)
{
        if (!s)
                return;
        session_close(d, s);
        free(s);
}

void session_handle_json(struct session *s, json_t *msg)
{
        struct proto_req rq;
        struct proto_error err;
        json_t *ref = NULL;
        int r = proto_decode_json(msg, &rq, &ref, &err);

        handle_decoded(s, r, &rq, ref, &err);
}

/* ---- dispatch ---- */

static void op_hello(struct session *s, const struct proto_req *rq)
{
        struct kilnd *d = s->d;
        if (d->cfg->auth.required) {
                int r = auth_check(d, rq->hello.token, &s->who);
                if (r < 0) {
                        s->authed = false;
                        auth_note_refused(s->wsi ? "WebSocket" : "HTTP", s->wsi);
                        session_send_error(s, rq->ref, KERR_UNAUTHORIZED, "token",
                                   rq->hello.token ? "the token is not valid" : "a token is required");
                        return;
                }
                s->authed = true;
        } else if (!s->authed && !s->kick) { /* not one being closed (a revoked token) */
                /* Opened while auth was required, signing in after a reload turned it
                 * off: as every connection without auth (session_open). */
                auth_anonymous(&s->who);
                s->authed = true;
        }
        /* "kinds" lists the names (SPEC §2.1); "schemas" gives each kind's parameter
         * schema and its inputs so a client (the web UI) can build and check its forms. */
        json_t *kinds = json_array(), *schemas = json_object();
        for (int i = 0; kiln_kinds[i]; i++) {
                json_array_append_new(kinds, json_string(kiln_kinds[i]->name));
                json_object_set_new(schemas, kiln_kinds[i]->name,
                                    json_pack("{s:s, s:o, s:o}", "doc", kiln_kinds[i]->doc ? kiln_kinds[i]->doc : "",
                                              "params", kiln_params_schema_json(kiln_kinds[i]), "inputs",
                                              kiln_inputs_schema_json(kiln_kinds[i])));
        }
        const struct kiln_config *c = d->cfg;
        json_t *limits = json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I}", "max_message_bytes",
                                   (json_int_t)c->server.max_message_bytes, "max_queued", (json_int_t)c->jobs.max_queued,
                                   "default_timeout_ms", (json_int_t)c->jobs.default_timeout_ms, "rate_per_s",
                                   c->limits.rate_per_s, "burst", (json_int_t)c->limits.burst,
                                   "max_inflight_per_conn", (json_int_t)c->limits.max_inflight_per_conn,
                                   "max_queued_per_tenant", (json_int_t)c->limits.max_queued_per_tenant,
                                   "max_result_bytes", (json_int_t)c->limits.max_result_bytes);
        /* What a job's inputs and the stored objects may hold (SPEC §2.4): kilnctl
         * and the web UI check an upload against these before sending it. */
        json_object_set_new(limits, "max_input_bytes", json_integer((json_int_t)c->limits.max_input_bytes));
        json_object_set_new(limits, "max_object_bytes", json_integer((json_int_t)c->limits.max_object_bytes));
        json_object_set_new(limits, "max_objects_per_tenant",
                            json_integer((json_int_t)c->limits.max_objects_per_tenant));
        json_object_set_new(limits, "max_tenant_bytes", json_integer((json_int_t)c->limits.max_tenant_bytes));
        session_send_json(s,
                  json_pack("{s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:o}", "op", "welcome", "server",
                            "kiln/" KILN_VERSION, "protocol", 1, "tenant", s->who.tenant, "role",
                            auth_role_name(s->who.role), "kinds", kinds, "schemas", schemas, "limits", limits),
                  rq->ref);
}

/* The least role each op needs (read < submit < writer < admin); hello needs none. */
static const enum auth_role op_min_role[_KOP_MAX] = {
        [KOP_HELLO] = AUTH_ROLE_READ,      [KOP_SUBMIT] = AUTH_ROLE_SUBMIT,  [KOP_STATUS] = AUTH_ROLE_READ,
        [KOP_RESULT] = AUTH_ROLE_READ,     [KOP_WATCH] = AUTH_ROLE_READ,     [KOP_CANCEL] = AUTH_ROLE_SUBMIT,
        [KOP_LIST] = AUTH_ROLE_READ,       [KOP_STATS] = AUTH_ROLE_READ,     [KOP_SUBSCRIBE] = AUTH_ROLE_READ,
        [KOP_CACHE_PURGE] = AUTH_ROLE_ADMIN, [KOP_CONFIG_GET] = AUTH_ROLE_ADMIN,
        [KOP_MODEL_PUT] = AUTH_ROLE_ADMIN, [KOP_MODEL_LIST] = AUTH_ROLE_READ,   [KOP_MODEL_DELETE] = AUTH_ROLE_ADMIN,
        [KOP_VEC_PUT] = AUTH_ROLE_WRITER,  [KOP_VEC_DELETE] = AUTH_ROLE_WRITER, [KOP_VEC_DROP] = AUTH_ROLE_WRITER,
        [KOP_VEC_INFO] = AUTH_ROLE_READ,   [KOP_VEC_LIST] = AUTH_ROLE_READ,
};

/* limits.rate_per_s / limits.burst: one bucket per token (shared by every
 * connection using it), or per connection when there is no token (auth off, or
 * before a successful hello); without auth, HTTP API requests (one session each)
 * share one bucket. Returns true when the message may be handled. */
static bool rate_ok(struct session *s)
{
        struct kilnd *d = s->d;
        struct token_bucket *b = &s->bucket;
        bool http_anonymous = s->sink && !d->cfg->auth.required;
        if (s->authed && (d->cfg->auth.required || http_anonymous)) {
                if (!d->token_limits)
                        d->token_limits = limits_map_new();
                /* No token is named "" (tokens_file names are never empty). */
                const char *key = http_anonymous ? "" : s->who.name;
                struct limits_entry *e = d->token_limits ? limits_map_get(d->token_limits, key) : NULL;
                if (e)
                        b = &e->bucket;
        }
        return token_bucket_take(b, d->cfg->limits.rate_per_s, (double)d->cfg->limits.burst, kiln_mono_us());
}

static void send_rate_limited(struct session *s, json_t *ref)
{
        session_send_error(s, ref, KERR_RATE_LIMITED, NULL, "more than %g messages per second (limits.rate_per_s, burst %u); slow down",
                   s->d->cfg->limits.rate_per_s, s->d->cfg->limits.burst);
}

/* config.get (role admin): every key of the effective configuration, typed, by
 * section. The configuration holds no token (those live hashed in tokens_file);
 * the TLS key's path is shown only as set or not. */
static json_t *config_json(const struct kiln_config *c)
{
        json_t *o = json_object();
        for (size_t i = 0; i < kiln_cfg_n_keys; i++) {
                const struct kiln_cfg_key *k = &kiln_cfg_keys[i];
                json_t *sec = json_object_get(o, k->section);
                if (!sec) {
                        sec = json_object();
                        json_object_set_new(o, k->section, sec);
                }
                const char *field = (const char *)c + k->offset;
                char text[4200];
                kiln_cfg_format_value(k, c, text, sizeof(text));
                json_t *v;
                if (!strcmp(k->section, "server") && !strcmp(k->key, "tls_key"))
                        v = json_string(text[0] ? "(set)" : "");
                else if (k->type == KILN_CFG_BOOL)
                        v = json_boolean(*(const bool *)field);
                else if (k->type == KILN_CFG_U32)
                        v = json_integer((json_int_t) * (const uint32_t *)field);
                else if (k->type == KILN_CFG_SIZE)
                        v = json_integer((json_int_t) * (const uint64_t *)field);
                else if (k->type == KILN_CFG_DOUBLE)
                        v = json_real(*(const double *)field);
                else
                        v = json_string(text);
                json_object_set_new(sec, k->key, v);
        }
        for (size_t b = 0; b < c->n_batch; b++) {
                char name[64];
                snprintf(name, sizeof(name), "batch.%s", c->batch[b].kind);
                json_object_set_new(o, name, json_pack("{s:I, s:I}", "max_batch", (json_int_t)c->batch[b].max_batch,
                                                       "max_delay_us", (json_int_t)c->batch[b].max_delay_us));
        }
        return o;
}

/* A decoded text message (proto_decode's outcome `r`), handled: rq and ref are
 * cleared. */
static void handle_decoded(struct session *s, int r, struct proto_req *rqp, json_t *ref,
                           const struct proto_error *errp)
{
        struct proto_req rq = *rqp;
        struct proto_error err = *errp;

        if (r < 0) {
                session_send_error(s, ref, err.code, err.field, "%s", err.message);
                if (s->parts && ref)
                        parts_drop(s->parts, ref); /* as any refused message's: its retry sends them again */
                json_decref(ref);
                return;
        }
        if (!rate_ok(s)) {
                send_rate_limited(s, rq.ref);
                goto done;
        }
        if (!s->authed && rq.op != KOP_HELLO) {
                session_send_error(s, rq.ref, KERR_UNAUTHORIZED, NULL, "say hello with a valid token first");
                goto done;
        }
        if (rq.op != KOP_HELLO && s->who.role < op_min_role[rq.op]) {
                session_send_error(s, rq.ref, KERR_FORBIDDEN, "op", "%s needs the %s role; this token has the %s role",
                           kiln_op_name(rq.op), auth_role_name(op_min_role[rq.op]), auth_role_name(s->who.role));
                goto done;
        }
        switch (rq.op) {
        case KOP_HELLO:
                op_hello(s, &rq);
                break;
        case KOP_SUBMIT:
                session_op_submit(s, &rq);
                break;
        case KOP_STATUS:
        case KOP_RESULT:
        case KOP_WATCH:
        case KOP_CANCEL:
                session_op_job(s, &rq);
                break;
        case KOP_LIST:
                session_op_list(s, &rq);
                break;
        case KOP_STATS:
                session_send_json(s, stats_json(s->d, &s->who), rq.ref);
                break;
        case KOP_SUBSCRIBE:
                if (!s->stats_subscribed)
                        s->d->n_stats_subscribed++;
                s->stats_subscribed = true;
                session_send_ok(s, rq.ref);
                break;
        case KOP_CACHE_PURGE:
                session_op_cache_purge(s, &rq);
                break;
        case KOP_CONFIG_GET:
                session_send_json(s, json_pack("{s:s, s:o}", "op", "config", "config", config_json(s->d->cfg)), rq.ref);
                break;
        case KOP_MODEL_PUT:
        case KOP_MODEL_LIST:
        case KOP_MODEL_DELETE:
        case KOP_VEC_PUT:
        case KOP_VEC_DELETE:
        case KOP_VEC_DROP:
        case KOP_VEC_INFO:
        case KOP_VEC_LIST:
                session_op_object(s, &rq);
                break;
        default:
                session_send_error(s, rq.ref, KERR_UNKNOWN_OP, "op", "unknown op");
                break;
        }
done:
        /* A message takes the parts sent with its ref when it is handled; whatever
         * it did not take (or a refused message's parts) goes now. */
        if (s->parts && rq.ref)
                parts_drop(s->parts, rq.ref);
        proto_req_clear(&rq);
}

static void handle_text(struct session *s, const char *text, size_t len)
{
        struct proto_req rq;
        struct proto_error err;
        json_t *ref = NULL;
        int r = proto_decode(text, len, &rq, &ref, &err);

        handle_decoded(s, r, &rq, ref, &err);
}

/* ---- big text messages, decoded off the loop ---- */

/* A text message this big is decoded on a worker (objects_work_submit): tens of
 * MiB of JSON (a vec.put's ids, inline rows) took the loop thread from every other
 * connection for most of a second. The connection's input is held meanwhile, so
 * its messages are still handled one after another, in order. */
#define DECODE_OFF_LOOP_BYTES (256u << 10)

struct decode_work {
        struct objects_work work;
        struct kilnd *d;
        uint64_t session_id;
        char *text;
        size_t len, held;      /* held: the text's bytes in memory.max_bytes (MEM_INPUTS) */
        int r;
        struct proto_req rq;
        json_t *ref;
        struct proto_error err;
};

static void decode_run(struct objects_work *ow)
{
        struct decode_work *w = container_of(ow, struct decode_work, work);

        w->ref = NULL;
        w->r = proto_decode(w->text, w->len, &w->rq, &w->ref, &w->err);
}

static void on_decoded(struct mail *m)
{
        struct decode_work *w = container_of(m, struct decode_work, work.mail);
        struct kilnd *d = w->d;
        struct session *s = d->quit ? NULL : session_find(d, w->session_id);

        free(w->text);
        if (d->mem && w->held)
                membudget_give(d->mem, MEM_INPUTS, w->held);
        d->decoding--;
        if (s) {
                s->in_decoding = false;
                if (!s->out_overflow) {
                        handle_decoded(s, w->r, &w->rq, w->ref, &w->err);
                        session_in_throttle(s);
                } else {
                        if (w->r >= 0)
                                proto_req_clear(&w->rq);
                        json_decref(w->ref);
                }
                if (!s->in_paused)
                        lws_rx_flow_control(s->wsi, 1);
        } else {
                /* Gone (its parts went with it), or the loop has stopped. */
                if (w->r >= 0)
                        proto_req_clear(&w->rq);
                json_decref(w->ref);
        }
        free(w);
}

/* Hands the whole text message `msg` (s->rx when it came in pieces, whose buffer is
 * then taken) to a worker and holds the connection's input. false: it is to be
 * decoded here (no memory for the work). */
static bool decode_off_loop(struct session *s, const uint8_t *msg, size_t len)
{
        struct decode_work *w = calloc(1, sizeof(*w));

        if (!w)
                return false;
        if (msg == s->rx) {
                w->text = (char *)s->rx;
                w->held = s->rx_cap; /* its budget goes with it */
                s->rx = NULL;
                s->rx_cap = 0;
        } else {
                if (s->d->mem && !membudget_try_take(s->d->mem, MEM_INPUTS, len)) {
                        free(w);
                        return false;
                }
                w->held = s->d->mem ? len : 0;
                w->text = malloc(len);
                if (!w->text) {
                        if (w->held)
                                membudget_give(s->d->mem, MEM_INPUTS, w->held);
                        free(w);
                        return false;
                }
                memcpy(w->text, msg, len);
        }
        w->len = len;
        w->d = s->d;
        w->session_id = s->id;
        w->work.run = decode_run;
        w->work.prompt = true;
        w->work.mail.fn = on_decoded;
        lws_rx_flow_control(s->wsi, 0);
        s->in_decoding = true;
        s->d->decoding++;
        log_debug("session %llu: a message of %zu bytes is decoded off the loop", (unsigned long long)s->id, len);
        objects_work_submit(s->d->objects, &w->work);
        return true;
}

static void handle_binary(struct session *s, const uint8_t *buf, size_t len)
{
        struct proto_frame f;
        struct proto_error err;

        json_t *bad_ref = NULL;
        if (proto_frame_decode(buf, len, &f, &bad_ref, &err) < 0) {
                session_send_error(s, bad_ref, err.code, err.field, "%s", err.message);
                json_decref(bad_ref);
                return;
        }
        json_t *ref = f.ref;
        if (!rate_ok(s)) {
                send_rate_limited(s, ref);
                goto out;
        }
        if (!s->authed) {
                session_send_error(s, ref, KERR_UNAUTHORIZED, NULL, "say hello with a valid token first");
                goto out;
        }
        if (s->who.role < AUTH_ROLE_SUBMIT) {
                /* Parts are the inputs of submit, vec.put and model.put alone. */
                session_send_error(s, ref, KERR_FORBIDDEN, "frame",
                                   "binary parts are inputs of submit, vec.put and model.put, which role %s "
                                   "may not send",
                                   auth_role_name(s->who.role));
                goto out;
        }
        if (!ref) {
                session_send_error(s, NULL, KERR_BAD_REQUEST, "frame.ref",
                           "a binary part sent to kilnd needs the \"ref\" of the message that uses it");
                goto out;
        }
        struct parts *ps = session_parts(s);
        if (!ps) {
                session_send_error(s, ref, KERR_INTERNAL, NULL, "out of memory");
                goto out;
        }
        if (parts_add(ps, &f, &err) < 0)
                session_send_error(s, ref, err.code, err.field, "%s", err.message);
out:
        proto_frame_clear(&f);
}

/* Before a valid hello, a message is at most this long (a hello is a few hundred
 * bytes): a connection that has not signed in holds no more memory than that. */
#define PREAUTH_MESSAGE_BYTES (64u << 10)

int session_receive(struct kilnd *d, struct session *s, const void *in, size_t len)
{
        uint64_t max = d->cfg->server.max_message_bytes;

        if (!s->authed && max > PREAUTH_MESSAGE_BYTES)
                max = PREAUTH_MESSAGE_BYTES;
        if (s->rx_len + s->rx_dropped + len > max) {
                static const char reason[] = "message too large";
                lws_close_reason(s->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)reason,
                                 sizeof(reason) - 1);
                stats_rejected(d, KERR_TOO_LARGE);
                return -1;
        }
        bool whole = lws_is_first_fragment(s->wsi) && lws_is_final_fragment(s->wsi) &&
                     !lws_remaining_packet_payload(s->wsi) && s->rx_len == 0;
        const uint8_t *msg = in;
        bool last = lws_is_final_fragment(s->wsi) && !lws_remaining_packet_payload(s->wsi);
        if (s->rx_dropped) { /* dropping the rest of a message (never 0 bytes then) */
                s->rx_dropped += len;
                if (last)
                        rx_drop_done(s);
                return 0;
        }
        if (!whole) {
                /* The buffer a fragmented message is put together in: memory a client
                 * makes kilnd hold, taken from the budget as the parts waiting for
                 * their message are, and never past server.max_message_bytes. One it
                 * has no room for is read to its end and dropped, then answered
                 * `unavailable`: the connection stays (SPEC 2.5). */
                if (s->rx_len + len > s->rx_cap &&
                    !membudget_grow(s->d->mem, MEM_INPUTS, &s->rx, &s->rx_cap, s->rx_len + len, max)) {
                        s->rx_drop_ref = s->rx_len ? ref_of_prefix(s->rx, s->rx_len, lws_frame_is_binary(s->wsi))
                                                   : ref_of_prefix(in, len, lws_frame_is_binary(s->wsi));
                        s->rx_dropped = s->rx_len + len;
                        s->rx_len = 0;
                        rx_release(s);
                        stats_rejected(d, KERR_UNAVAILABLE);
                        if (last)
                                rx_drop_done(s);
                        return 0;
                }
                if (len) /* empty fragments come with in == NULL */
                        memcpy(s->rx + s->rx_len, in, len);
                s->rx_len += len;
                if (!lws_is_final_fragment(s->wsi) || lws_remaining_packet_payload(s->wsi))
                        return 0;
                msg = s->rx ? s->rx : (const uint8_t *)"";
                len = s->rx_len;
        }
        d->ws_messages_in++;
        /* One being closed for not reading its replies has nothing more done for it. */
        if (!s->out_overflow && lws_frame_is_binary(s->wsi)) {
                handle_binary(s, msg, len);
        } else if (!s->out_overflow && len >= DECODE_OFF_LOOP_BYTES && s->wsi && s->d->objects &&
                   decode_off_loop(s, msg, len)) {
                s->rx_len = 0;
                return 0; /* handled when decoded (on_decoded) */
        } else if (!s->out_overflow) {
                handle_text(s, (const char *)msg, len);
        }
        session_in_throttle(s);
        s->rx_len = 0;
        /* Not kept for the next message: an idle connection would hold its budget
         * (31 that each sent one 600 KB part held all the inputs' share of 64 MiB). */
        if (s->rx)
                rx_release(s);
        return 0;
}

/* Sends the stats object to every session subscribed to it. */
static void push_stats(struct session *s, void *userdata)
{
        /* Not to one being closed (its token revoked: nothing more is served to it). */
        if (s->stats_subscribed && s->authed && !s->kick && s->out_queued < 64)
                session_send_json(s, stats_json(s->d, &s->who), NULL);
}

void sessions_push_stats(struct kilnd *d)
{
        if (d->n_stats_subscribed) /* no walk over every connection for nobody */
                sessions_foreach(d, push_stats, NULL);
}
