/* One WebSocket connection: decoding, the ops of SPEC §2, and its output queue. */
#include "session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <libwebsockets.h>

#include "auth.h"
#include "daemon.h"
#include "jobs.h"
#include "limiter.h"
#include "log.h"
#include "params.h"
#include "schema.h"
#include "stats.h"
#include "storeq.h"
#include "util.h"

/* Bytes handed to lws_write per writeable callback: big enough to keep a fast link
 * busy, small enough that one connection never holds the loop for long. */
#define CHUNK (256 * 1024)

/* One queued outgoing message: text, or a KLNB frame whose payload is a part of a
 * job's result (the job is referenced until the frame is sent). */
struct outmsg {
        struct outmsg *next;
        bool binary;
        uint8_t *head;            /* LWS_PRE bytes of headroom, then head_len bytes */
        size_t head_len;
        struct job *job;          /* binary: payload source */
        const uint8_t *payload;
        size_t payload_len;
        size_t sent;              /* bytes of head + payload already written */
};

/* A binary part received ahead of the message that refers to it. */
struct in_part {
        struct in_part *next;
        char *ref;                /* the frame's "ref", dumped as compact JSON */
        char name[32];
        size_t len;
};

enum idle_state {
        IDLE_HEARD,    /* a frame came in within half of server.idle_timeout_s */
        IDLE_PING_DUE, /* silent that long: a ping goes out at the next writeable */
        IDLE_PINGED,   /* pinged, waiting for any frame back */
        IDLE_CLOSE,    /* silent for the other half too: close at the next writeable */
};

struct session {
        struct session *bucket_next;
        uint64_t id;
        struct lws *wsi;
        struct kilnd *d;

        uint8_t *rx;
        size_t rx_len, rx_cap;

        struct outmsg *out_head, *out_tail;
        size_t out_queued;

        bool authed;
        struct auth_identity who;

        struct in_part *parts;
        size_t parts_bytes;

        bool stats_subscribed;

        /* Idle connections (server.idle_timeout_s): WebSocket sessions in order of
         * their last received frame (or the ping sent since), oldest first. */
        struct session *idle_prev, *idle_next;
        int64_t idle_since_us;
        enum idle_state idle;

        struct token_bucket bucket; /* limits.rate_per_s when there is no token */
        uint32_t inflight;          /* jobs it submitted that have not finished */

        /* A session without a WebSocket (the HTTP API): its frames go to sink. */
        session_sink_fn sink;
        void *sink_opaque;
};

static void handle_text(struct session *s, const char *text, size_t len);

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

static struct session *table_get(struct kilnd *d, uint64_t id)
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
                if (s->idle == IDLE_HEARD) {
                        s->idle = IDLE_PING_DUE;
                        idle_append(d, s, now);
                } else {
                        s->idle = IDLE_CLOSE; /* out of the list for good */
                }
                lws_callback_on_writable(s->wsi);
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
        for (size_t b = 0; b < d->session_buckets; b++)
                for (struct session *s = d->sessions[b]; s; s = s->bucket_next)
                        n += s->out_head != NULL;
        return n;
}

void sessions_close_all(struct kilnd *d)
{
        for (size_t b = 0; b < d->session_buckets; b++)
                for (struct session *s = d->sessions[b]; s; s = s->bucket_next)
                        if (s->wsi) /* HTTP API sessions have none */
                                lws_callback_on_writable(s->wsi);
}

/* ---- output ---- */

static void out_free(struct outmsg *m);

static void out_push(struct session *s, struct outmsg *m)
{
        if (s->sink) {
                s->sink(s->sink_opaque, m->binary, m->head + LWS_PRE, m->head_len, m->job, m->payload,
                        m->payload_len);
                out_free(m);
                return;
        }
        if (s->out_tail)
                s->out_tail->next = m;
        else
                s->out_head = m;
        s->out_tail = m;
        s->out_queued++;
        s->d->ws_messages_out++;
        lws_callback_on_writable(s->wsi);
}

static void out_free(struct outmsg *m)
{
        free(m->head);
        job_unref(m->job);
        free(m);
}

/* Queues a text message; `text` is copied. */
static void send_text(struct session *s, const char *text, size_t len)
{
        struct outmsg *m = calloc(1, sizeof(*m));
        if (!m || !(m->head = malloc(LWS_PRE + len))) {
                free(m);
                log_error("session %llu: out of memory queueing a reply", (unsigned long long)s->id);
                return;
        }
        memcpy(m->head + LWS_PRE, text, len);
        m->head_len = len;
        out_push(s, m);
}

/* Sets "ref" (when given), encodes, queues, and drops the object. */
static void send_json(struct session *s, json_t *o, json_t *ref)
{
        if (!o)
                return;
        if (ref)
                json_object_set(o, "ref", ref);
        char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(o);
        if (!text)
                return;
        send_text(s, text, strlen(text));
        free(text);
}

static void send_error(struct session *s, json_t *ref, enum kiln_err code, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

static void send_error(struct session *s, json_t *ref, enum kiln_err code, const char *field, const char *fmt, ...)
{
        struct proto_error e = { .code = code };
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e.message, sizeof(e.message), fmt, ap);
        va_end(ap);
        snprintf(e.field, sizeof(e.field), "%s", field ? field : "");
        char *text = proto_error_json(ref, &e);
        if (text) {
                send_text(s, text, strlen(text));
                free(text);
        }
        stats_rejected(s->d, code);
}

static void send_ok(struct session *s, json_t *ref)
{
        send_json(s, json_pack("{s:s}", "op", "ok"), ref);
}

/* Queues a finished job's `done` (with `ref` spliced in when given) and its parts. */
static void send_done(struct session *s, struct job *j, json_t *ref)
{
        if (!j->done_json)
                return;
        if (ref) {
                char *r = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
                size_t rl = r ? strlen(r) : 0, dl = strlen(j->done_json);
                char *text = r ? malloc(dl + rl + 8) : NULL;
                if (text) {
                        /* done_json starts with '{"op":"done",' */
                        int n = snprintf(text, dl + rl + 8, "{\"ref\":%s,%s", r, j->done_json + 1);
                        send_text(s, text, (size_t)n);
                } else {
                        send_text(s, j->done_json, strlen(j->done_json));
                }
                free(text);
                free(r);
        } else {
                send_text(s, j->done_json, strlen(j->done_json));
        }
        if (atomic_load(&j->state) != KILN_JOB_DONE)
                return;
        for (int i = 0; i < j->result.n_parts; i++) {
                const struct kiln_part *p = &j->result.parts[i];
                uint8_t *hdr;
                size_t hdr_len;
                struct outmsg *m = calloc(1, sizeof(*m));
                if (!m || proto_frame_header(j->id_text, p->name, kiln_dtype_name(p->dtype), p->ndim, p->shape,
                                             &hdr, &hdr_len) < 0) {
                        free(m);
                        log_error("job %s: out of memory queueing part %s", j->id_text, p->name);
                        return;
                }
                m->head = malloc(LWS_PRE + hdr_len);
                if (!m->head) {
                        free(hdr);
                        free(m);
                        return;
                }
                memcpy(m->head + LWS_PRE, hdr, hdr_len);
                free(hdr);
                m->head_len = hdr_len;
                m->binary = true;
                m->job = job_ref(j);
                m->payload = p->data;
                m->payload_len = p->bytes;
                out_push(s, m);
        }
}

/* What the writers below assemble a write in (loop thread only). */
static uint8_t scratch[LWS_PRE + CHUNK];

/* Writes a WebSocket frame header (server side: unmasked) for a frame of `len`
 * bytes into p; returns its length (2, 4 or 10 bytes). */
static size_t ws_frame_header(uint8_t *p, bool binary, bool first, bool fin, size_t len)
{
        p[0] = (uint8_t)((fin ? 0x80 : 0) | (first ? (binary ? 0x2 : 0x1) : 0x0));
        if (len < 126) {
                p[1] = (uint8_t)len;
                return 2;
        }
        if (len <= 0xffff) {
                p[1] = 126;
                p[2] = (uint8_t)(len >> 8);
                p[3] = (uint8_t)len;
                return 4;
        }
        p[1] = 127;
        for (int i = 0; i < 8; i++)
                p[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        return 10;
}

/* Copies bytes [m->sent, m->sent + n) of a queued message (head, then payload). */
static void out_copy(const struct outmsg *m, uint8_t *dst, size_t n)
{
        size_t off = m->sent, w = 0;
        if (off < m->head_len) {
                w = m->head_len - off < n ? m->head_len - off : n;
                memcpy(dst, m->head + LWS_PRE + off, w);
        }
        if (w < n)
                memcpy(dst + w, m->payload + (off + w - m->head_len), n - w);
}

static void out_pop(struct session *s)
{
        struct outmsg *m = s->out_head;
        s->out_head = m->next;
        if (!s->out_head)
                s->out_tail = NULL;
        s->out_queued--;
        out_free(m);
}

/* Framed output: as many queued messages as fit in CHUNK bytes, each as complete
 * WebSocket frames (a message larger than the room left goes as fragments), in one
 * raw write — one send() for a job's `accepted`, `done` and parts instead of one
 * write and one trip round the event loop per message. Frames never straddle two
 * writes, so the pings, pongs and close that libwebsockets sends itself fall
 * between them. */
static int writable_framed(struct session *s)
{
        uint8_t *buf = scratch + LWS_PRE;
        size_t used = 0;
        struct outmsg *m;

        while ((m = s->out_head)) {
                size_t total = m->head_len + m->payload_len, left = total - m->sent;
                if (used + 10 >= CHUNK)
                        break; /* no room for another frame header */
                size_t room = CHUNK - used - 10;
                size_t n = left < room ? left : room;
                if (n < left && room < 16 * 1024 && used)
                        break; /* a small fragment is not worth it: next time */
                used += ws_frame_header(buf + used, m->binary, m->sent == 0, n == left, n);
                out_copy(m, buf + used, n);
                used += n;
                m->sent += n;
                if (m->sent < total)
                        break;
                out_pop(s);
        }
        if (used && lws_write(s->wsi, buf, used, LWS_WRITE_RAW) < (int)used)
                return -1;
        return 0;
}

/* One message fragment per writeable callback through lws's own framing: for a
 * connection that is a stream inside another (WebSocket over HTTP/2). */
static int writable_fragment(struct session *s)
{
        struct outmsg *m = s->out_head;
        size_t total = m->head_len + m->payload_len;
        size_t n = total - m->sent;
        if (n > CHUNK)
                n = CHUNK;
        uint8_t *buf;
        if (!m->binary && total <= CHUNK) {
                buf = m->head + LWS_PRE; /* whole small text message: no copy */
        } else {
                out_copy(m, scratch + LWS_PRE, n);
                buf = scratch + LWS_PRE;
        }
        int flags = lws_write_ws_flags(m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT, m->sent == 0,
                                       m->sent + n == total);
        if (lws_write(s->wsi, buf, n, (enum lws_write_protocol)flags) < (int)n)
                return -1;
        m->sent += n;
        if (m->sent == total)
                out_pop(s);
        return 0;
}

int session_writable(struct kilnd *d, struct session *s)
{
        if (s->idle == IDLE_CLOSE) {
                static const char reason[] = "idle timeout";
                lws_close_reason(s->wsi, LWS_CLOSE_STATUS_GOINGAWAY, (unsigned char *)reason, sizeof(reason) - 1);
                return -1;
        }
        if (s->idle == IDLE_PING_DUE) {
                /* Not empty: libwebsockets passes no empty pong up (LWS_CALLBACK_RECEIVE_PONG). */
                uint8_t ping[LWS_PRE + 4];
                memcpy(ping + LWS_PRE, "kiln", 4);
                s->idle = IDLE_PINGED;
                if (lws_write(s->wsi, ping + LWS_PRE, 4, LWS_WRITE_PING) < 4)
                        return -1;
                if (s->out_head || d->closing)
                        lws_callback_on_writable(s->wsi);
                return 0;
        }
        if (!s->out_head) {
                if (d->closing) {
                        static const char reason[] = "kilnd is shutting down";
                        lws_close_reason(s->wsi, LWS_CLOSE_STATUS_GOINGAWAY, (unsigned char *)reason,
                                         sizeof(reason) - 1);
                        return -1;
                }
                return 0;
        }
        int r = lws_get_network_wsi(s->wsi) == s->wsi ? writable_framed(s) : writable_fragment(s);
        if (r < 0)
                return -1;
        if (s->out_head)
                lws_callback_on_writable(s->wsi);
        return 0;
}

/* ---- connection lifecycle ---- */

int session_open(struct kilnd *d, struct session *s, struct lws *wsi)
{
        memset(s, 0, sizeof(*s));
        s->d = d;
        s->wsi = wsi;
        s->id = ++d->next_session_id;
        if (!d->cfg->auth.required) {
                s->authed = true;
                auth_anonymous(&s->who);
        }
        table_put(d, s);
        idle_append(d, s, kiln_mono_us());
        return 0;
}

static void parts_clear(struct session *s)
{
        while (s->parts) {
                struct in_part *p = s->parts;
                s->parts = p->next;
                free(p->ref);
                free(p);
        }
        s->parts_bytes = 0;
}

void session_close(struct kilnd *d, struct session *s)
{
        table_del(d, s);
        idle_unlink(d, s);
        if (s->stats_subscribed)
                d->n_stats_subscribed--;
        while (s->out_head) {
                struct outmsg *m = s->out_head;
                s->out_head = m->next;
                out_free(m);
        }
        s->out_tail = NULL;
        parts_clear(s);
        free(s->rx);
        s->rx = NULL;
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

void session_handle_text(struct session *s, const char *text, size_t len)
{
        handle_text(s, text, len);
}

/* ---- job events ---- */

/* Written directly (one per submission; the job id and state names need no
 * escaping): the same text send_json makes of the object, without building it. */
static void send_accepted(struct session *s, struct job *j, json_t *ref, bool cached)
{
        static const char fmt[] = "{\"op\":\"accepted\",\"job\":\"%s\",\"state\":\"%s\",\"cached\":%s%s%s}";
        const char *state = kiln_job_state_name(atomic_load(&j->state));
        char small[32], text[256], *r = NULL;
        const char *rt = "";

        if (ref && json_is_integer(ref)) {
                snprintf(small, sizeof(small), "%lld", (long long)json_integer_value(ref));
                rt = small;
        } else if (ref) {
                r = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
                if (!r)
                        return;
                rt = r;
        }
        const char *sep = ref ? ",\"ref\":" : "", *c = cached ? "true" : "false";
        int n = snprintf(text, sizeof(text), fmt, j->id_text, state, c, sep, rt);
        char *big = NULL;
        if (n > 0 && (size_t)n >= sizeof(text) && (n = asprintf(&big, fmt, j->id_text, state, c, sep, rt)) < 0)
                big = NULL; /* a long ref, and no memory for it: undefined after a failure */
        if (n > 0)
                send_text(s, big ? big : text, (size_t)n);
        free(big);
        free(r);
}

static void send_done(struct session *s, struct job *j, json_t *ref);

/* ---- what the job lifecycle tells sessions (struct job_events, loop thread) ---- */

static void ev_accepted(void *ctx, uint64_t session, struct job *j, json_t *ref, bool cached)
{
        struct session *s = table_get(ctx, session);
        if (s)
                send_accepted(s, j, ref, cached);
}

static void ev_rejected(void *ctx, uint64_t session, json_t *ref, enum kiln_err code, const char *field,
                        const char *message)
{
        struct session *s = table_get(ctx, session);
        if (s)
                send_error(s, ref, code, field, "%s", message);
}

static void ev_progress(void *ctx, uint64_t session, struct job *j)
{
        struct session *s = table_get(ctx, session);
        if (s)
                send_json(s, json_pack("{s:s, s:s, s:i}", "op", "progress", "job", j->id_text, "pct",
                                       atomic_load(&j->pct)),
                          NULL);
}

static void ev_done(void *ctx, uint64_t session, struct job *j, json_t *ref)
{
        struct session *s = table_get(ctx, session);
        if (s)
                send_done(s, j, ref);
}

static void ev_ended(void *ctx, uint64_t session)
{
        struct session *s = table_get(ctx, session);
        if (s && s->inflight)
                s->inflight--;
}

struct job_events sessions_job_events(struct kilnd *d)
{
        return (struct job_events){ .ctx = d, .accepted = ev_accepted, .rejected = ev_rejected,
                                    .progress = ev_progress, .done = ev_done, .ended = ev_ended };
}

/* ---- submit ---- */

static bool consume_parts(struct session *s, json_t *ref, const struct kiln_kind *kind)
{
        char *r = ref ? json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        bool refused = false;
        for (struct in_part **pp = &s->parts; *pp;) {
                struct in_part *p = *pp;
                if (r && p->ref && !strcmp(p->ref, r)) {
                        if (!refused) {
                                char field[64];
                                snprintf(field, sizeof(field), "parts.%s", p->name);
                                send_error(s, ref, KERR_BAD_PARAMS, field, "%s takes no binary part \"%s\"",
                                           kind->name, p->name);
                                refused = true;
                        }
                        *pp = p->next;
                        s->parts_bytes -= p->len;
                        free(p->ref);
                        free(p);
                } else {
                        pp = &p->next;
                }
        }
        free(r);
        return !refused;
}

/* What is the connection's to check (draining, its parts, its in-flight limit);
 * the rest of the submission is the job lifecycle's (jobs_submit). */
static void op_submit(struct session *s, const struct proto_req *rq)
{
        struct kilnd *d = s->d;
        json_t *ref = rq->ref;

        if (d->draining) {
                send_error(s, ref, KERR_SHUTTING_DOWN, NULL, "kilnd is shutting down and takes no new jobs");
                return;
        }
        const struct kiln_kind *kind = kiln_kind_find(rq->submit.kind);
        if (!kind) {
                send_error(s, ref, KERR_UNKNOWN_KIND, "kind", "unknown job kind \"%s\"", rq->submit.kind);
                return;
        }
        if (!consume_parts(s, ref, kind))
                return;
        if (s->inflight >= d->cfg->limits.max_inflight_per_conn) {
                send_error(s, ref, KERR_RATE_LIMITED, NULL,
                           "this connection has %u unfinished jobs, its maximum (limits.max_inflight_per_conn); "
                           "wait for some to finish",
                           s->inflight);
                return;
        }
        struct job_submit sub = {
                .kind = rq->submit.kind,
                .params = rq->submit.params,
                .tenant = s->who.tenant,
                .priority = rq->submit.priority,
                .timeout_ms = rq->submit.timeout_ms,
                .key = rq->submit.key,
                .cache = rq->submit.cache,
                .watch = rq->submit.watch,
                .session = s->id,
                .ref = ref,
        };
        struct proto_error err;
        int r = jobs_submit(d->jobs, &sub, &err);
        if (r < 0)
                send_error(s, ref, err.code, err.field[0] ? err.field : NULL, "%s", err.message);
        else if (r > 0)
                s->inflight++;
}

/* ---- ops answered from the store ---- */

struct store_req {
        struct store_op op;
        struct mail mail;
        struct kilnd *d;
        uint64_t session_id;
        enum kiln_op kind;
        json_t *ref;
        char tenant[64];
        char *list_kind;
};

static void store_req_free(struct store_req *r)
{
        store_job_free(r->op.job_out);
        free(r->op.result_out);
        for (size_t i = 0; i < r->op.list_n; i++)
                store_job_free(r->op.list_out[i]);
        free(r->op.list_out);
        free(r->list_kind);
        json_decref(r->ref);
        free(r);
}

static json_t *iso8601(int64_t ms)
{
        if (ms <= 0)
                return json_null();
        char buf[96];
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
        return json_string(buf);
}

/* `attempts`: device runs started for the job, retries after a device failure
 * included (jobs.max_retries bounds them). */
static void send_status(struct session *s, json_t *ref, const char *id, const char *kind, int state, int pct,
                        int64_t submitted, int64_t finished, unsigned attempts)
{
        send_json(s,
                  json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:o, s:i}", "op", "status", "job", id, "kind", kind,
                            "state", kiln_job_state_name(state), "pct", pct, "submitted", iso8601(submitted),
                            "finished", iso8601(kiln_job_state_is_final(state) ? finished : 0), "attempts",
                            (int)attempts),
                  ref);
}

static void send_list(struct session *s, struct store_req *r)
{
        json_t *arr = json_array();
        char last[37] = "";
        for (size_t i = 0; i < r->op.list_n; i++) {
                const struct store_job *rec = r->op.list_out[i];
                int state = rec->state;
                struct job *live = jobs_find(s->d->jobs, rec->id);
                if (live)
                        state = atomic_load(&live->state);
                kiln_uuid_format(rec->id, last);
                json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:o}", "job", last, "kind", rec->kind, "state",
                                                     kiln_job_state_name(state), "submitted",
                                                     iso8601(rec->submitted_ms)));
        }
        json_t *next = r->op.list_more && last[0] ? json_string(last) : json_null();
        send_json(s, json_pack("{s:s, s:o, s:o}", "op", "jobs", "jobs", arr, "next", next), r->ref);
}

static void on_store_reply_mail(struct mail *m)
{
        struct store_req *r = container_of(m, struct store_req, mail);
        struct kilnd *d = r->d;
        struct session *s = table_get(d, r->session_id);

        storeq_answered(d->storeq);
        if (!s)
                goto out;
        if (r->op.status < 0 && r->op.status != -ENOENT) {
                send_error(s, r->ref, KERR_INTERNAL, NULL, "reading the job store failed: %s",
                           strerror(-r->op.status));
                goto out;
        }
        if (r->kind == KOP_LIST) {
                send_list(s, r);
                goto out;
        }
        if (r->kind == KOP_CACHE_PURGE) {
                send_json(s, json_pack("{s:s, s:I}", "op", "ok", "purged", (json_int_t)r->op.purge_n), r->ref);
                goto out;
        }
        struct store_job *rec = r->op.job_out;
        if (r->op.status == -ENOENT || !rec || strcmp(rec->tenant, r->tenant)) {
                send_error(s, r->ref, KERR_NOT_FOUND, "job", "no such job");
                goto out;
        }
        char id[37];
        kiln_uuid_format(rec->id, id);
        /* A job still live in memory answers for itself (the record may lag behind). */
        struct job *live = jobs_find(d->jobs, rec->id);
        switch (r->kind) {
        case KOP_STATUS:
                if (live)
                        send_status(s, r->ref, id, rec->kind, atomic_load(&live->state), atomic_load(&live->pct),
                                    live->submitted_ms, live->finished_ms, job_attempts(live));
                else
                        send_status(s, r->ref, id, rec->kind, rec->state,
                                    kiln_job_state_is_final(rec->state) ? 100 : 0, rec->submitted_ms,
                                    rec->finished_ms, rec->attempts);
                break;
        case KOP_CANCEL:
                send_json(s, json_pack("{s:s, s:s, s:s}", "op", "ok", "job", id, "state",
                                       kiln_job_state_name(live ? atomic_load(&live->state) : rec->state)),
                          r->ref);
                break;
        case KOP_WATCH:
        case KOP_RESULT:
                if (live) {
                        jobs_watch(d->jobs, live, s->id);
                        send_ok(s, r->ref);
                        break;
                }
                struct job *j = NULL;
                int k = jobs_load_finished(d->jobs, rec, &r->op.result_out, r->op.result_size, &j);
                if (k < 0) {
                        send_error(s, r->ref, KERR_INTERNAL, "job", "the stored result of job %s is unreadable",
                                   id);
                } else {
                        if (r->kind == KOP_WATCH)
                                send_ok(s, r->ref);
                        send_done(s, j, r->kind == KOP_RESULT ? r->ref : NULL);
                }
                job_unref(j);
                break;
        default:
                break;
        }
out:
        store_req_free(r);
}

static void on_store_reply(struct store_op *op)
{
        struct store_req *r = container_of(op, struct store_req, op);
        r->mail.fn = on_store_reply_mail;
        mailbox_post(r->d->mailbox, &r->mail);
}

static void ask_store(struct session *s, const struct proto_req *rq, enum store_op_type type)
{
        struct store_req *r = calloc(1, sizeof(*r));
        if (!r) {
                send_error(s, rq->ref, KERR_INTERNAL, NULL, "out of memory");
                return;
        }
        r->d = s->d;
        r->session_id = s->id;
        r->kind = rq->op;
        r->ref = rq->ref ? json_incref(rq->ref) : NULL;
        snprintf(r->tenant, sizeof(r->tenant), "%s", s->who.tenant);
        r->op.type = type;
        r->op.done = on_store_reply;
        if (type == STORE_OP_CACHE_PURGE) {
                r->list_kind = rq->purge.kind ? strdup(rq->purge.kind) : NULL;
                r->op.purge_kind = r->list_kind;
        } else if (type == STORE_OP_LIST) {
                r->list_kind = rq->list.kind ? strdup(rq->list.kind) : NULL;
                r->op.list.tenant = r->tenant;
                r->op.list.state = rq->list.state;
                r->op.list.kind = r->list_kind;
                r->op.list.has_after = rq->list.has_after;
                memcpy(r->op.list.after, rq->list.after, 16);
                r->op.list.limit = rq->list.limit;
        } else {
                memcpy(r->op.id, rq->job.id, 16);
        }
        storeq_submit_loop(s->d->storeq, &r->op);
}

/* ---- the job ops ---- */

static void op_job(struct session *s, const struct proto_req *rq)
{
        struct kilnd *d = s->d;
        struct job *j = jobs_find(d->jobs, rq->job.id);

        if (j && strcmp(j->tenant, s->who.tenant)) {
                send_error(s, rq->ref, KERR_NOT_FOUND, "job", "no such job");
                return;
        }
        if (!j) {
                ask_store(s, rq, rq->op == KOP_RESULT || rq->op == KOP_WATCH ? STORE_OP_RESULT_GET : STORE_OP_JOB_GET);
                return;
        }
        int state = atomic_load(&j->state);
        switch (rq->op) {
        case KOP_STATUS:
                send_status(s, rq->ref, j->id_text, j->kind->name, state, atomic_load(&j->pct), j->submitted_ms,
                            j->finished_ms, job_attempts(j));
                break;
        case KOP_WATCH:
        case KOP_RESULT:
                /* Not finished yet: the `done` (and parts) follow when it is. */
                if (jobs_watch(d->jobs, j, s->id) < 0) {
                        send_error(s, rq->ref, KERR_INTERNAL, NULL, "out of memory");
                        break;
                }
                send_ok(s, rq->ref);
                break;
        case KOP_CANCEL:
                jobs_cancel(d->jobs, j);
                send_json(s, json_pack("{s:s, s:s, s:s}", "op", "ok", "job", j->id_text, "state",
                                       kiln_job_state_name(atomic_load(&j->state))),
                          rq->ref);
                break;
        default:
                break;
        }
}

/* cache.purge (role admin): the entries of one kind, or all, in the writer. */
static void op_cache_purge(struct session *s, const struct proto_req *rq)
{
        if (s->who.role != AUTH_ROLE_ADMIN) {
                send_error(s, rq->ref, KERR_FORBIDDEN, "op", "cache.purge needs the admin role");
                return;
        }
        if (rq->purge.kind && !kiln_kind_find(rq->purge.kind)) {
                send_error(s, rq->ref, KERR_UNKNOWN_KIND, "kind", "unknown job kind \"%s\"", rq->purge.kind);
                return;
        }
        ask_store(s, rq, STORE_OP_CACHE_PURGE);
}

/* ---- dispatch ---- */

static void op_hello(struct session *s, const struct proto_req *rq)
{
        struct kilnd *d = s->d;
        if (d->cfg->auth.required) {
                int r = auth_check(d, rq->hello.token, &s->who);
                if (r < 0) {
                        s->authed = false;
                        send_error(s, rq->ref, KERR_UNAUTHORIZED, "token",
                                   rq->hello.token ? "the token is not valid" : "a token is required");
                        return;
                }
                s->authed = true;
        }
        /* "kinds" lists the names (SPEC §2.1); "schemas" gives each kind's parameter
         * schema so a client (the web UI) can build and check its forms. */
        json_t *kinds = json_array(), *schemas = json_object();
        for (int i = 0; kiln_kinds[i]; i++) {
                json_array_append_new(kinds, json_string(kiln_kinds[i]->name));
                json_object_set_new(schemas, kiln_kinds[i]->name,
                                    json_pack("{s:s, s:o}", "doc", kiln_kinds[i]->doc ? kiln_kinds[i]->doc : "",
                                              "params", kiln_params_schema_json(kiln_kinds[i])));
        }
        const struct kiln_config *c = d->cfg;
        json_t *limits = json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I}", "max_message_bytes",
                                   (json_int_t)c->server.max_message_bytes, "max_queued", (json_int_t)c->jobs.max_queued,
                                   "default_timeout_ms", (json_int_t)c->jobs.default_timeout_ms, "rate_per_s",
                                   c->limits.rate_per_s, "burst", (json_int_t)c->limits.burst,
                                   "max_inflight_per_conn", (json_int_t)c->limits.max_inflight_per_conn,
                                   "max_queued_per_tenant", (json_int_t)c->limits.max_queued_per_tenant,
                                   "max_result_bytes", (json_int_t)c->limits.max_result_bytes);
        send_json(s,
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
};

/* limits.rate_per_s / limits.burst: one bucket per token (shared by every
 * connection using it), or per connection when there is no token (auth off, or
 * before a successful hello). Returns true when the message may be handled. */
static bool rate_ok(struct session *s)
{
        struct kilnd *d = s->d;
        struct token_bucket *b = &s->bucket;
        if (s->authed && d->cfg->auth.required) {
                if (!d->token_limits)
                        d->token_limits = limits_map_new();
                struct limits_entry *e = d->token_limits ? limits_map_get(d->token_limits, s->who.name) : NULL;
                if (e)
                        b = &e->bucket;
        }
        return token_bucket_take(b, d->cfg->limits.rate_per_s, (double)d->cfg->limits.burst, kiln_mono_us());
}

static void send_rate_limited(struct session *s, json_t *ref)
{
        send_error(s, ref, KERR_RATE_LIMITED, NULL, "more than %g messages per second (limits.rate_per_s, burst %u); slow down",
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

static void handle_text(struct session *s, const char *text, size_t len)
{
        struct proto_req rq;
        struct proto_error err;
        json_t *ref = NULL;

        if (proto_decode(text, len, &rq, &ref, &err) < 0) {
                send_error(s, ref, err.code, err.field, "%s", err.message);
                json_decref(ref);
                return;
        }
        if (!rate_ok(s)) {
                send_rate_limited(s, rq.ref);
                proto_req_clear(&rq);
                return;
        }
        if (!s->authed && rq.op != KOP_HELLO) {
                send_error(s, rq.ref, KERR_UNAUTHORIZED, NULL, "say hello with a valid token first");
                proto_req_clear(&rq);
                return;
        }
        if (rq.op != KOP_HELLO && s->who.role < op_min_role[rq.op]) {
                send_error(s, rq.ref, KERR_FORBIDDEN, "op", "%s needs the %s role; this token has the %s role",
                           kiln_op_name(rq.op), auth_role_name(op_min_role[rq.op]), auth_role_name(s->who.role));
                proto_req_clear(&rq);
                return;
        }
        switch (rq.op) {
        case KOP_HELLO:
                op_hello(s, &rq);
                break;
        case KOP_SUBMIT:
                op_submit(s, &rq);
                break;
        case KOP_STATUS:
        case KOP_RESULT:
        case KOP_WATCH:
        case KOP_CANCEL:
                op_job(s, &rq);
                break;
        case KOP_LIST:
                ask_store(s, &rq, STORE_OP_LIST);
                break;
        case KOP_STATS:
                send_json(s, stats_json(s->d, &s->who), rq.ref);
                break;
        case KOP_SUBSCRIBE:
                if (!s->stats_subscribed)
                        s->d->n_stats_subscribed++;
                s->stats_subscribed = true;
                send_ok(s, rq.ref);
                break;
        case KOP_CACHE_PURGE:
                op_cache_purge(s, &rq);
                break;
        case KOP_CONFIG_GET:
                send_json(s, json_pack("{s:s, s:o}", "op", "config", "config", config_json(s->d->cfg)), rq.ref);
                break;
        default:
                send_error(s, rq.ref, KERR_UNKNOWN_OP, "op", "unknown op");
                break;
        }
        proto_req_clear(&rq);
}

static void handle_binary(struct session *s, const uint8_t *buf, size_t len)
{
        struct proto_frame f;
        struct proto_error err;

        json_t *bad_ref = NULL;
        if (proto_frame_decode(buf, len, &f, &bad_ref, &err) < 0) {
                send_error(s, bad_ref, err.code, err.field, "%s", err.message);
                json_decref(bad_ref);
                return;
        }
        json_t *ref = f.ref;
        if (!rate_ok(s)) {
                send_rate_limited(s, ref);
                goto out;
        }
        if (!s->authed) {
                send_error(s, ref, KERR_UNAUTHORIZED, NULL, "say hello with a valid token first");
                goto out;
        }
        if (!ref) {
                send_error(s, NULL, KERR_BAD_REQUEST, "frame.ref",
                           "a binary part sent to kilnd needs the \"ref\" of the message that uses it");
                goto out;
        }
        if (s->parts_bytes + f.payload_len > s->d->cfg->server.max_message_bytes) {
                send_error(s, ref, KERR_TOO_LARGE, "frame",
                           "binary parts waiting for their message exceed %llu bytes",
                           (unsigned long long)s->d->cfg->server.max_message_bytes);
                goto out;
        }
        struct in_part *p = calloc(1, sizeof(*p));
        if (!p || !(p->ref = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY))) {
                free(p);
                send_error(s, ref, KERR_INTERNAL, NULL, "out of memory");
                goto out;
        }
        /* No kind takes binary input yet: only the part's identity is kept so the
         * message that names it gets a precise error. */
        snprintf(p->name, sizeof(p->name), "%s", f.part);
        p->len = f.payload_len;
        p->next = s->parts;
        s->parts = p;
        s->parts_bytes += p->len;
out:
        proto_frame_clear(&f);
}

int session_receive(struct kilnd *d, struct session *s, const void *in, size_t len)
{
        uint64_t max = d->cfg->server.max_message_bytes;

        if (s->rx_len + len > max) {
                static const char reason[] = "message too large";
                lws_close_reason(s->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)reason,
                                 sizeof(reason) - 1);
                stats_rejected(d, KERR_TOO_LARGE);
                return -1;
        }
        bool whole = lws_is_first_fragment(s->wsi) && lws_is_final_fragment(s->wsi) &&
                     !lws_remaining_packet_payload(s->wsi) && s->rx_len == 0;
        const uint8_t *msg = in;
        if (!whole) {
                if (s->rx_len + len > s->rx_cap) {
                        size_t cap = s->rx_cap ? s->rx_cap : 4096;
                        while (cap < s->rx_len + len)
                                cap *= 2;
                        uint8_t *nb = realloc(s->rx, cap);
                        if (!nb)
                                return -1;
                        s->rx = nb;
                        s->rx_cap = cap;
                }
                memcpy(s->rx + s->rx_len, in, len);
                s->rx_len += len;
                if (!lws_is_final_fragment(s->wsi) || lws_remaining_packet_payload(s->wsi))
                        return 0;
                msg = s->rx;
                len = s->rx_len;
        }
        d->ws_messages_in++;
        if (lws_frame_is_binary(s->wsi))
                handle_binary(s, msg, len);
        else
                handle_text(s, (const char *)msg, len);
        s->rx_len = 0;
        if (s->rx_cap > 1024 * 1024) {
                free(s->rx);
                s->rx = NULL;
                s->rx_cap = 0;
        }
        return 0;
}

/* Sends the stats object to every session subscribed to it. */
static void push_stats(struct session *s, void *userdata)
{
        if (s->stats_subscribed && s->out_queued < 64)
                send_json(s, stats_json(s->d, &s->who), NULL);
}

void sessions_push_stats(struct kilnd *d)
{
        if (d->n_stats_subscribed) /* no walk over every connection for nobody */
                sessions_foreach(d, push_stats, NULL);
}
