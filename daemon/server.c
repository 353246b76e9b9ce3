/* libwebsockets wiring: one vhost serving the web UI, the HTTP endpoints and the
 * WebSocket API on one port; the loop's timers; signals, draining and reloads. */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <libwebsockets.h>
#include <systemd/sd-daemon.h>

#include "auth.h"
#include "cache.h"
#include "daemon.h"
#include "jobs.h"
#include "limiter.h"
#include "listen.h"
#include "log.h"
#include "mailbox.h"
#include "membudget.h"
#include "memtrim.h"
#include "hotcache.h"
#include "http_api.h"
#include "objects.h"
#include "scheduler.h"
#include "session.h"
#include "stats.h"
#include "store.h"
#include "storeq.h"
#include "util.h"

/* How long SIGTERM waits for running jobs before asking them to stop (they then
 * stay queued in the store and run again after the restart), and how much longer
 * it waits for their results to reach the clients watching them. */
#define DRAIN_GRACE_MS 20000
#define DRAIN_FLUSH_MS 5000

struct timers {
        lws_sorted_usec_list_t deadline;
        int64_t deadline_armed_ms;   /* 0 = not armed */
        lws_sorted_usec_list_t tick; /* once a second: stats push, STATUS, drain */
        lws_sorted_usec_list_t watchdog;
        uint64_t watchdog_usec;
};

static struct kilnd *server_daemon; /* for the lws callbacks' user pointer-less paths */
static struct timers timers;

/* ---- HTTP endpoints ---- */

struct http_pss {
        struct http_api_req *api;     /* a request to /api/ */
        bool held;                    /* the connection's input is held until it is answered */
};

/*
 * One response per connection. kilnd answers one HTTP request per connection,
 * with `Connection: close`, and closes it: libwebsockets 4.1.6 mishandles what a
 * client pipelines on a kept-alive connection. It parses a request pipelined
 * behind one whose callback returned without ending its transaction (rebinding
 * the connection, which frees pss and the pending request with it), and a POST
 * it takes from its buffer of pipelined input gets its own request line as its
 * body, then loops forever in lws_http_action: one segment from any client would
 * stop the daemon. Closing after each response leaves nothing pipelined to parse.
 *
 * An /api/ request is often answered later (a submit once its job is stored, a
 * status read from the store). Until then the connection's input is held (rx flow
 * control), so what a client pipelined behind it stays buffered, unparsed; lws
 * 4.1.6 calls LWS_CALLBACK_HTTP_WRITEABLE only once it is let go (api_ready).
 * Should lws then parse a pipelined request before the answer is written, the
 * answer is written there (LWS_CALLBACK_FILTER_HTTP_CONNECTION) and the
 * connection closed. A part (.npy) is streamed as the socket takes it, and a
 * request pipelined behind a part (even a stray CRLF) cuts it short the same
 * way: the client retries what went unanswered (RFC 9112 §9.3.2). lws then
 * spends up to 5 s (PENDING_FLUSH_STORED_SEND_BEFORE_CLOSE) on what it still
 * holds of the part, its loop busy meanwhile; other clients are served.
 *
 * A response waits for its answer, and a part for its reader, up to
 * server.idle_timeout_s between two steps (lws's own limit, handshake_timeout_s,
 * is for the request). Methods but GET and POST are refused (refuse_other_methods).
 */

/* The connection may go server.idle_timeout_s without progress from here on. */
static void http_keep_waiting(struct lws *wsi)
{
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, (int)server_daemon->cfg->server.idle_timeout_s);
}

/* Frees the request in pss, answered or not. Returns what the HTTP callback
 * returns: the connection closes either way. */
static int api_finish(struct http_pss *pss)
{
        http_api_end(pss->api);
        pss->api = NULL;
        return -1;
}

/* After an /api/ request is parsed (a POST: after its body): answered now when
 * its answer is known, else the input is held until api_ready. */
static int api_answer_or_hold(struct lws *wsi, struct http_pss *pss)
{
        http_keep_waiting(wsi);
        if (!http_api_ready(pss->api)) {
                lws_rx_flow_control(wsi, 0);
                pss->held = true;
                return 0;
        }
        int r = http_api_write_now(pss->api, wsi);
        if (r == 0) {
                lws_callback_on_writable(wsi); /* a part to stream */
                return 0;
        }
        return api_finish(pss);
}

/* http_api_ready_fn, called from within the session that replied (or within
 * http_api_begin and http_api_body_done, before api_answer_or_hold looks). */
static void api_ready(struct lws *wsi)
{
        struct http_pss *pss = lws_wsi_user(wsi);

        if (!pss || !pss->api)
                return;
        if (pss->held) {
                pss->held = false;
                lws_rx_flow_control(wsi, 1);
        }
        lws_callback_on_writable(wsi);
}

/* LWS_CALLBACK_FILTER_HTTP_CONNECTION, which lws asks of the protocol the
 * connection is bound to: "kiln.v1", the vhost's default, for its first request.
 * Every method but GET and POST is refused, 405 (with Allow) and closed. HEAD has
 * no body; lws would answer it for a static file itself and keep the connection
 * (see "One response per connection"). The others, which lws passes on with no
 * URI kilnd reads, get an error naming the field `method`. */
static int http_answer(struct lws *wsi, unsigned status, const char *type, char *body);

static int refuse_other_methods(struct lws *wsi)
{
        static const enum lws_token_indexes others[] = { WSI_TOKEN_OPTIONS_URI, WSI_TOKEN_PUT_URI,
                                                         WSI_TOKEN_PATCH_URI, WSI_TOKEN_DELETE_URI };

        if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI)) {
                http_write_response(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, "application/json", NULL, 0);
                return -1;
        }
        for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
                if (lws_hdr_total_length(wsi, others[i])) {
                        http_answer(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, "application/json",
                                    http_api_error_json("bad_request", "method", "kilnd answers GET and POST only"));
                        return -1;
                }
        return 0;
}

/* Answers a request at once, headers and body (freed here), and closes the
 * connection (see "One response per connection"). Returns what the HTTP
 * callback returns. */
static int http_answer(struct lws *wsi, unsigned status, const char *type, char *body)
{
        if (body)
                http_write_response(wsi, status, type, body, strlen(body));
        free(body);
        return -1; /* one response per connection */
}

/* A POST's Content-Length, checked before lws reads the body by it: missing (a
 * chunked body: 411), not a decimal count of bytes (lws would take "abc" as 0 and
 * "-1" as no body at all: 400), or over server.max_message_bytes (413, without
 * waiting for a body that would be refused). false: answered, the connection
 * closes. */
static bool post_length_ok(struct kilnd *d, struct lws *wsi)
{
        char v[24] = "";
        int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);

        if (!n) {
                http_answer(wsi, HTTP_STATUS_LENGTH_REQUIRED, "application/json",
                            http_api_error_json("bad_request", "Content-Length", "a POST needs a Content-Length header"));
                return false;
        }
        if (n >= (int)sizeof(v) || lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP_CONTENT_LENGTH) != n ||
            strspn(v, "0123456789") != (size_t)n) {
                http_answer(wsi, HTTP_STATUS_BAD_REQUEST, "application/json",
                            http_api_error_json("bad_request", "Content-Length",
                                                "Content-Length must be a decimal number of bytes"));
                return false;
        }
        if (strtoull(v, NULL, 10) > d->cfg->server.max_message_bytes) {
                http_answer(wsi, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, "application/json",
                            http_api_error_json("too_large", "Content-Length",
                                                "the request body exceeds server.max_message_bytes"));
                return false;
        }
        return true;
}

static char *health_body(struct kilnd *d, bool ready, const char *reason)
{
        /* "backends" names the backends with a device in service; "devices" says
         * what each backend has and the state of every device. */
        json_t *devices = sched_backends_json(d->sched), *names = json_array(), *v, *dev;
        size_t i, k;
        json_array_foreach(devices, i, v) {
                bool up = false;
                json_array_foreach(json_object_get(v, "devices"), k, dev)
                        up |= !strcmp(json_string_value(json_object_get(dev, "state")) ?: "", "in_service");
                if (up)
                        json_array_append(names, json_object_get(v, "name"));
        }
        json_t *o = json_pack("{s:s, s:o, s:o, s:f, s:b}", "status", ready ? "ok" : "unavailable", "backends", names,
                              "devices", devices, "uptime_s", (double)(kiln_mono_ms() - d->started_mono) / 1000.0,
                              "draining", d->draining);
        if (o && reason && *reason)
                json_object_set_new(o, "reason", json_string(reason));
        if (o && d->room_known)
                json_object_set_new(o, "store",
                                    json_pack("{s:I, s:I, s:I}", "room_bytes", (json_int_t)jobs_store_room_left(d->jobs), "fs_free_bytes",
                                              (json_int_t)d->room.fs_free, "map_free_bytes",
                                              (json_int_t)d->room.map_free));
        char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
        json_decref(o);
        return s;
}

/* Why a Sec-WebSocket-Protocol list ("a, b") is refused, or NULL when it names
 * kiln.v1 and lws can read it (names of up to 62 bytes: it drops the connection
 * on a longer one without a word). */
static const char *subprotocols_refused(char *list)
{
        bool kiln_v1 = false;
        char *save = NULL;
        for (char *t = strtok_r(list, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
                if (strlen(t) > 62)
                        return "a subprotocol name over 62 bytes is not taken; ask for kiln.v1";
                kiln_v1 |= !strcmp(t, "kiln.v1");
        }
        return kiln_v1 ? NULL : "kilnd speaks the WebSocket subprotocol kiln.v1 only";
}

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE, asked of whichever protocol the request is
 * bound to: kilnd speaks HTTP/1.1 only (see the ALPN in server_start), so an h2c
 * upgrade is refused by closing the connection. A WebSocket past
 * server.max_connections is answered 503 as an /api/ request is (the client sees
 * why), then closed; so is one asking only for subprotocols kilnd does not speak
 * (400), which lws would drop without a word. */
static int confirm_upgrade(struct kilnd *d, struct lws *wsi, const char *up)
{
        if (up && !strcasecmp(up, "h2c"))
                return -1;
        /* lws reads at most 127 bytes of the list; past that it drops the
         * connection itself. */
        char asked[128];
        int n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
        const char *why = n >= (int)sizeof(asked) ? "a subprotocol list of 128 bytes or more is not taken; "
                                                     "ask for kiln.v1"
                          : n > 0 && lws_hdr_copy(wsi, asked, sizeof(asked), WSI_TOKEN_PROTOCOL) > 0
                                  ? subprotocols_refused(asked)
                                  : NULL;
        if (why)
                return http_answer(wsi, HTTP_STATUS_BAD_REQUEST, "application/json",
                                   http_api_error_json("bad_request", "Sec-WebSocket-Protocol", why));
        if (d->n_sessions >= d->cfg->server.max_connections) {
                char msg[160];
                return http_answer(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "application/json",
                                   http_api_error_json("unavailable", NULL, http_api_full_message(d, msg, sizeof(msg))));
        }
        return 0;
}

static int callback_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct kilnd *d = server_daemon;
        struct http_pss *pss = user;

        switch (reason) {
        case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
                /* Draining: no new connections. */
                return d->draining ? -1 : 0;
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
                /* A WebSocket upgrade naming "http" as its subprotocol: not one a
                 * client may ask for (it would bypass callback_ws's checks). */
                return -1;
        case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
                if (pss && pss->api)
                        return -1; /* pipelined behind an /api/ request */
                return confirm_upgrade(d, wsi, in);
        case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
                /* Pipelined behind an /api/ request not yet answered in full (see
                 * "One response per connection"): its answer, if known and not
                 * begun, goes out now, and the connection closes. */
                if (pss && pss->api) {
                        if (http_api_ready(pss->api))
                                http_api_write_now(pss->api, wsi);
                        return -1;
                }
                return refuse_other_methods(wsi);
        case LWS_CALLBACK_ADD_HEADERS: {
                /* A static file of the web UI, sent by lws itself. */
                struct lws_process_html_args *args = in;
                unsigned char *p = (unsigned char *)args->p, *end = p + args->max_len;
                if (lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5, &p,
                                                 end))
                        return 1;
                args->max_len -= lws_ptr_diff(p, args->p);
                args->p = (char *)p;
                return 0;
        }
        case LWS_CALLBACK_HTTP_FILE_COMPLETION:
                return -1; /* one response per connection */
        case LWS_CALLBACK_HTTP: {
                char uri[128] = "";
                bool post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
                lws_hdr_copy(wsi, uri, sizeof(uri), post ? WSI_TOKEN_POST_URI : WSI_TOKEN_GET_URI);
                if (post && !post_length_ok(d, wsi))
                        return -1;
                if (!strncmp(uri, "/api/", 5)) {
                        if (http_api_begin(d, wsi, uri, post, api_ready, &pss->api) < 0)
                                return -1;
                        /* A POST is answered once its body is in, even when its answer
                         * is already known: closing with the body unread would reset
                         * the connection under the answer. */
                        return post ? 0 : api_answer_or_hold(wsi, pss);
                }
                bool ready_probe = !strcmp(uri, "/readyz") || !strcmp(uri, "/readyz/");
                bool metrics = !strcmp(uri, "/metrics");
                const char *type = "application/json";
                if (!ready_probe && !metrics && strcmp(uri, "/healthz") && strcmp(uri, "/healthz/")) {
                        /* Also reached for a missing static file. */
                        return http_answer(wsi, HTTP_STATUS_NOT_FOUND, "application/json",
                                           http_api_error_json("not_found", "path", "no such file"));
                }
                char why[256] = "";
                bool ready = d->store && sched_ready(d->sched) && !d->draining;
                if (!d->store)
                        snprintf(why, sizeof(why), "the job store is not open");
                else if (!sched_ready(d->sched))
                        snprintf(why, sizeof(why), "no backend has a device in service");
                else if (d->draining)
                        snprintf(why, sizeof(why), "kilnd is draining");
                else if (jobs_store_full(d->jobs, why))
                        ready = false;
                int status = ready_probe && !ready ? HTTP_STATUS_SERVICE_UNAVAILABLE : HTTP_STATUS_OK;
                char *body = metrics ? stats_metrics_text(d)
                                     : health_body(d, ready_probe ? ready : true, ready_probe ? why : NULL);
                if (metrics)
                        type = "text/plain; version=0.0.4; charset=utf-8";
                return http_answer(wsi, status, type, body);
        }
        case LWS_CALLBACK_HTTP_BODY:
                if (pss && pss->api)
                        http_api_body(pss->api, in, len);
                return 0;
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                if (pss && pss->api) {
                        http_api_body_done(pss->api);
                        return api_answer_or_hold(wsi, pss);
                }
                return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE: {
                if (!pss || !pss->api)
                        break;
                if (http_api_write(pss->api, wsi) == 0) {
                        http_keep_waiting(wsi); /* more to write */
                        return 0;
                }
                return api_finish(pss);
        }
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
                /* pss is freed next: a request still in it goes with it (its
                 * session included), never left behind. */
        case LWS_CALLBACK_CLOSED_HTTP:
                if (pss && pss->api)
                        api_finish(pss);
                break;
        default:
                break;
        }
        return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- signals, draining, reload ---- */

static void begin_drain(struct kilnd *d)
{
        if (d->draining)
                return;
        d->draining = true;
        d->drain_deadline_ms = kiln_mono_ms() + DRAIN_GRACE_MS;
        sched_pause(d->sched);
        jobs_store_early(d->jobs); /* quick jobs not yet run: stored queued, accepted */
        sd_notify(0, "STOPPING=1\nSTATUS=Draining: finishing running jobs");
        log_notice("SIGTERM: draining (%u running, %u queued stay in the store)", sched_running(d->sched),
                   sched_queued(d->sched));
}

static void check_drain(struct kilnd *d)
{
        if (!d->draining || d->quit)
                return;
        if (kiln_mono_ms() >= d->drain_deadline_ms)
                jobs_stop_all(d->jobs); /* running ones stay queued in the store */
        bool flushed = sessions_output_pending(d) == 0 || kiln_mono_ms() >= d->drain_deadline_ms + DRAIN_FLUSH_MS;
        /* A message received before the drain and being decoded, an object read or
         * a list on a worker, an object op waiting for a put being checked: each is
         * still answered. */
        bool decoded = (d->decoding == 0 && d->object_reads == 0 && d->objops_waiting == 0) ||
                       kiln_mono_ms() >= d->drain_deadline_ms + DRAIN_FLUSH_MS;
        /* A quick job a worker was gathering into a batch when the drain began is
         * put back in its queue after it: stored queued and accepted now. None may
         * be left unstored (it would be lost, its submitter never answered). */
        jobs_store_early(d->jobs);
        bool stored = jobs_early_count(d->jobs) == 0 || kiln_mono_ms() >= d->drain_deadline_ms + DRAIN_FLUSH_MS;
        if (sched_running(d->sched) == 0 && storeq_in_flight(d->storeq) == 0 && flushed && decoded && stored) {
                if (!d->closing) {
                        d->closing = true;
                        d->drain_closing_ms = kiln_mono_ms() + 1000;
                        sessions_close_all(d);
                }
                /* Quit once every connection said goodbye (or a second later). */
                if (d->n_sessions == 0 || kiln_mono_ms() >= d->drain_closing_ms) {
                        d->quit = true;
                        lws_cancel_service(d->lws);
                }
        }
}

/* The keys that take effect at start only keep the values in use (in_use) in c,
 * the reloaded configuration, so that it says what is in effect and its rules
 * are checked against that: auth.required false with server.listen changed to
 * loopback would otherwise turn auth off on the public address still listened
 * on. Returns whether c had asked for another value of any. */
static bool keep_start_only(struct kiln_config *c, const struct kiln_config *in_use)
{
        bool asked = false;
#define KEEP(f)                                 \
        do {                                    \
                asked |= c->f != in_use->f;     \
                c->f = in_use->f;               \
        } while (0)
#define KEEP_TEXT(f)                                            \
        do {                                                    \
                asked |= strcmp(c->f, in_use->f) != 0;          \
                snprintf(c->f, sizeof(c->f), "%s", in_use->f);  \
        } while (0)
        KEEP_TEXT(server.listen);
        KEEP_TEXT(server.tls_cert);
        KEEP_TEXT(server.tls_key);
        KEEP_TEXT(server.web_root);
        KEEP(server.handshake_timeout_s);
        KEEP_TEXT(store.path);
        KEEP(store.sync);
        KEEP(store.map_size_gb);
        KEEP(cpu.threads);
        KEEP(gpu.backend);
        KEEP_TEXT(gpu.devices);
        KEEP(gpu.memory_fraction);
        KEEP(log.target);
#undef KEEP
#undef KEEP_TEXT
        return asked;
}

/* stopping: while draining, the configuration and tokens are reloaded all the same
 * (a revoked token stops working), but systemd hears nothing: no RELOADING=1, and
 * no READY=1 "Serving" after its STOPPING=1. */
static void reload(struct kilnd *d, bool stopping)
{
        extern char **environ;
        const char *names[32];
        size_t n = 0;
        for (; kiln_kinds[n] && n < 31; n++)
                names[n] = kiln_kinds[n]->name;
        names[n] = NULL;

        if (!stopping)
                sd_notify(0, "RELOADING=1\nSTATUS=Reloading configuration");
        struct kiln_config *c = NULL;
        struct kiln_config_error err;
        int r = kiln_config_load(d->config_path, d->config_path_optional, environ, names, &c, &err);
        if (r < 0) {
                char line[1024];
                log_error("SIGHUP: configuration not reloaded: %s", kiln_config_error_format(&err, line, sizeof(line)));
        } else {
                struct auth_tokens *t = NULL;
                unsigned bad = 0;
                char why[1024];
                if (keep_start_only(c, d->cfg))
                        log_warning("SIGHUP: server.listen/tls_*/web_root/handshake_timeout_s, store.*, cpu.threads, "
                                    "gpu.* and log.target take effect at the next start");
                if (kiln_config_validate(c, &err) < 0) {
                        char line[1024];
                        log_error("SIGHUP: configuration not reloaded: %s (with the server.listen in use, %s)",
                                  kiln_config_error_format(&err, line, sizeof(line)), d->cfg->server.listen);
                        kiln_config_free(c);
                } else if (!c->auth.required && d->public_listener[0]) {
                        log_error("SIGHUP: configuration not reloaded: auth.required = false is allowed only on "
                                  "loopback addresses, and systemd passed a socket on %s",
                                  d->public_listener);
                        kiln_config_free(c);
                } else if ((r = auth_tokens_load(c->auth.tokens_file, &t, &bad)) < 0) {
                        log_error("SIGHUP: %s; configuration not reloaded",
                                  auth_tokens_error(c->auth.tokens_file, NULL, r, bad, why, sizeof(why)));
                        kiln_config_free(c);
                } else {
                        if (c->auth.required && !auth_tokens_count(t))
                                log_warning("SIGHUP: auth.required is on but %s holds no token: no client can "
                                            "sign in", c->auth.tokens_file);
                        auth_tokens_free(d->tokens);
                        d->tokens = t;
                        kiln_log_set_level(c->log.level);
                        kiln_config_free(d->cfg);
                        d->cfg = c;
                        jobs_set_config(d->jobs, c);
                        membudget_set_max(d->mem, c->memory.max_bytes);
                        sched_set_config(d->sched, c);
                        sessions_recheck_tokens(d);
                        objects_set_cache_limits(d->objects, c->memory.objects_cache_bytes,
                                                 OBJECTS_IDLE_MAX_ENTRIES);
                        log_notice("SIGHUP: configuration reloaded%s (%zu tokens)", stopping ? " while stopping" : "",
                                   auth_tokens_count(t));
                }
        }
        if (!stopping)
                sd_notify(0, "READY=1\nSTATUS=Serving");
}

static void handle_signals(struct kilnd *d)
{
        if (atomic_exchange(&d->sig_hup, false))
                reload(d, d->draining || atomic_load(&d->sig_term));
        if (atomic_load(&d->sig_term))
                begin_drain(d);
        check_drain(d);
}

/* ---- timers ---- */

static void on_deadline_timer(lws_sorted_usec_list_t *sul)
{
        struct kilnd *d = server_daemon;
        timers.deadline_armed_ms = 0;
        jobs_deadline_run(d->jobs, kiln_wall_ms());
        server_arm_deadlines(d);
}

void server_arm_deadlines(struct kilnd *d)
{
        int64_t next = d->jobs ? jobs_next_deadline(d->jobs) : 0;
        if (!d->lws || !next)
                return;
        if (timers.deadline_armed_ms && timers.deadline_armed_ms <= next)
                return;
        int64_t delay = next - kiln_wall_ms(); /* deadlines are wall-clock times */
        if (delay < 0)
                delay = 0;
        timers.deadline_armed_ms = next;
        lws_sul_schedule(d->lws, 0, &timers.deadline, on_deadline_timer, (lws_usec_t)delay * LWS_US_PER_MS);
}

/* What the store can still take, measured once a second: new work is refused, and
 * /readyz says why, while it is too little (jobs_store_room). */
static void measure_store_room(struct kilnd *d)
{
        struct store_room room;
        if (!d->store || store_room(d->store, &room) < 0)
                return;
        bool was_full = d->room_known && jobs_store_full(d->jobs, (char[256]){ 0 });
        d->room = room;
        d->room_known = true;
        jobs_store_room(d->jobs, room.room);
        char reason[256];
        bool full = jobs_store_full(d->jobs, reason);
        if (full && !was_full)
                log_warning("%s", reason);
        else if (!full && was_full)
                log_info("the job store has room again (%llu MiB): serving new work",
                         (unsigned long long)(room.room >> 20));
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
        struct kilnd *d = server_daemon;
        measure_store_room(d);
        /* Keeps the store's cache and retention limits in step with the
         * configuration, which SIGHUP may have changed. */
        struct store_policy policy;
        cache_policy(d->cfg, &policy);
        store_writer_set_policy(d->writer, &policy);
        stats_tick(d);
        hotcache_sweep(d->store, d->cfg->cache.ttl_s, kiln_wall_ms());
        memtrim_tick();
        sessions_push_stats(d);
        sessions_idle_sweep(d);
        sessions_output_sweep(d);
        sessions_input_sweep(d);
        if (!d->draining)
                sd_notifyf(0, "STATUS=Serving: %zu connections, %u queued, %u running", d->n_sessions, sched_queued(d->sched),
                           sched_running(d->sched));
        handle_signals(d);
        lws_sul_schedule(d->lws, 0, &timers.tick, on_tick, LWS_US_PER_SEC);
}

static void on_watchdog(lws_sorted_usec_list_t *sul)
{
        /* Sent from the loop thread, so a stuck loop stops the pings. */
        sd_notify(0, "WATCHDOG=1");
        lws_sul_schedule(server_daemon->lws, 0, &timers.watchdog, on_watchdog, (lws_usec_t)timers.watchdog_usec / 2);
}

/* ---- the WebSocket protocol ---- */

static int callback_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct kilnd *d = server_daemon;
        struct session *s = user;

        switch (reason) {
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
                mailbox_drain(d->mailbox);
                server_arm_deadlines(d);
                handle_signals(d);
                break;
        case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
                return refuse_other_methods(wsi);
        case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
                return confirm_upgrade(d, wsi, in);
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
                /* The API lives at /ws only; refuse upgrades elsewhere, while draining,
                 * and past server.max_connections. */
                char uri[16] = "";
                if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0 ||
                    (strcmp(uri, "/ws") && strcmp(uri, "/ws/")))
                        return -1;
                if (d->draining || d->n_sessions >= d->cfg->server.max_connections)
                        return -1;
                break;
        }
        case LWS_CALLBACK_ESTABLISHED:
                return session_open(d, s, wsi);
        case LWS_CALLBACK_CLOSED:
                session_close(d, s);
                if (d->draining)
                        check_drain(d);
                break;
        case LWS_CALLBACK_RECEIVE:
                session_seen(d, s);
                return session_receive(d, s, in, len);
        case LWS_CALLBACK_RECEIVE_PONG:
                session_seen(d, s);
                break;
        case LWS_CALLBACK_SERVER_WRITEABLE: {
                int r = session_writable(d, s);
                if (d->draining)
                        check_drain(d);
                return r;
        }
        default:
                break;
        }
        return 0;
}

static struct lws_protocols protocols[] = {
        { "http", callback_http, sizeof(struct http_pss), 0, 0, NULL, 0 },
        { "kiln.v1", callback_ws, 0, 64 * 1024, 0, NULL, 256 * 1024 },
        { "kiln-listen", listen_callback, 0, 0, 0, NULL, 0 },
        { NULL, NULL, 0, 0, 0, NULL, 0 },
};

static const struct lws_protocol_vhost_options pvo_default = { NULL, NULL, "default", "1" };
static const struct lws_protocol_vhost_options pvo = { NULL, &pvo_default, "kiln.v1", "" };

/* No keepalive from libwebsockets (0: off): its timer is re-inserted into one sorted
 * list of every connection's timers on each frame received. kilnd pings and closes
 * idle connections itself (sessions_idle_sweep). */
static const lws_retry_bo_t retry_policy = {
        .secs_since_valid_ping = 0,
        .secs_since_valid_hangup = 0,
};

static struct lws_http_mount mount_web;
/* What libwebsockets is handed by pointer and keeps for the context's life: copies,
 * since a SIGHUP frees the configuration they come from (these three are
 * start-only: keep_start_only). */
static char start_web_root[sizeof(((struct kiln_config *)0)->server.web_root)];
static char start_tls_cert[sizeof(((struct kiln_config *)0)->server.tls_cert)];
static char start_tls_key[sizeof(((struct kiln_config *)0)->server.tls_key)];
static struct lws_http_mount mount_readyz;
static struct lws_http_mount mount_healthz;
static struct lws_http_mount mount_metrics;
static struct lws_http_mount mount_api;

static const struct lws_protocol_vhost_options mime_mjs = { NULL, NULL, ".mjs", "text/javascript" };

/* Descriptors beyond the connections: listeners, the store, the log, pipes, plugins. */
#define NOFILE_SPARE 256

/* Raises the soft limit on open descriptors to `need` (up to the hard limit). */
static void raise_nofile(rlim_t need)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
                return;
        rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ? rl.rlim_max : need;
        if (rl.rlim_cur < need)
                log_warning("server.max_connections: the descriptor limit is %llu (LimitNOFILE=), "
                            "so at most about %llu connections can be held",
                            (unsigned long long)rl.rlim_max,
                            (unsigned long long)(rl.rlim_max > NOFILE_SPARE ? rl.rlim_max - NOFILE_SPARE : 0));
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_warning("cannot raise the descriptor limit to %llu: %s", (unsigned long long)rl.rlim_cur,
                            strerror(errno));
}

int server_start(struct kilnd *d)
{
        struct lws_context_creation_info info;
        char host[128];
        uint16_t port;

        server_daemon = d;
        if (kiln_config_listen_split(d->cfg->server.listen, host, sizeof(host), &port) < 0)
                return -EINVAL;
        /* Sockets passed by systemd (kiln.socket, systemd-socket-activate) replace
         * server.listen; without them kilnd binds server.listen itself. */
        int n_listen_fds = sd_listen_fds(0);
        if (n_listen_fds < 0) {
                log_warning("socket activation: %s; listening on %s instead", strerror(-n_listen_fds),
                            d->cfg->server.listen);
                n_listen_fds = 0;
        }
        /* kilnd listens on server.listen itself (listen.c). */
        int own_fd = -1, family = AF_INET;
        if (!n_listen_fds && (own_fd = listen_open(d, host, port, &family)) < 0)
                return -EADDRNOTAVAIL;
        protocols[1].per_session_data_size = session_struct_size();

        mount_api = (struct lws_http_mount){
                .mountpoint = "/api",
                .mountpoint_len = 4,
                .origin = "http",
                .origin_protocol = LWSMPRO_CALLBACK,
                .mount_next = &mount_metrics,
        };
        mount_metrics = (struct lws_http_mount){
                .mountpoint = "/metrics",
                .mountpoint_len = 8,
                .origin = "http",
                .origin_protocol = LWSMPRO_CALLBACK,
                .mount_next = &mount_healthz,
        };
        mount_healthz = (struct lws_http_mount){
                .mountpoint = "/healthz",
                .mountpoint_len = 8,
                .origin = "http",
                .origin_protocol = LWSMPRO_CALLBACK,
                .mount_next = &mount_readyz,
        };
        mount_readyz = (struct lws_http_mount){
                .mountpoint = "/readyz",
                .mountpoint_len = 7,
                .origin = "http",
                .origin_protocol = LWSMPRO_CALLBACK,
                .mount_next = &mount_web,
        };
        snprintf(start_web_root, sizeof(start_web_root), "%s", d->cfg->server.web_root);
        mount_web = (struct lws_http_mount){
                .mountpoint = "/",
                .mountpoint_len = 1,
                .origin = start_web_root,
                .def = "index.html",
                .protocol = "http", /* a missing file comes to callback_http: 404 */
                .origin_protocol = LWSMPRO_FILE,
                .extra_mimetypes = &mime_mjs,
        };

        memset(&info, 0, sizeof(info));
        info.options = LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
                       LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
        if (family == AF_INET6 || strchr(host, ':')) /* how libwebsockets reads peers' addresses */
                info.options &= ~(uint64_t)LWS_SERVER_OPTION_DISABLE_IPV6;
        info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* listening sockets are adopted */
        info.protocols = protocols;
        info.pvo = &pvo;
        info.mounts = &mount_api;
        info.vhost_name = "kiln";
        info.retry_and_idle_policy = &retry_policy;
        /* How long a connection may take to send its HTTP request headers, finish TLS
         * and the upgrade (slow-loris clients are dropped after it). */
        info.timeout_secs = d->cfg->server.handshake_timeout_s;
        info.timeout_secs_ah_idle = d->cfg->server.handshake_timeout_s; /* headers trickling in */
        info.pt_serv_buf_size = 64 * 1024;
        /* Room for a request's headers: libwebsockets' 4 KiB default drops, without
         * an answer, a browser whose cookies for the host (or a long bearer token)
         * come to more. 16 KiB, as Node.js allows. */
        info.max_http_header_data = 16 * 1024;
        /* libwebsockets sizes its descriptor table from the soft RLIMIT_NOFILE. Do not
         * set info.fd_limit_per_thread below it: that switches libwebsockets to a linear
         * search of the whole table on every event (17 % of the loop thread with
         * 10,000 idle connections). */
        raise_nofile((rlim_t)d->cfg->server.max_connections + NOFILE_SPARE);
        if (d->cfg->server.tls_cert[0]) {
                info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
                snprintf(start_tls_cert, sizeof(start_tls_cert), "%s", d->cfg->server.tls_cert);
                snprintf(start_tls_key, sizeof(start_tls_key), "%s", d->cfg->server.tls_key);
                info.ssl_cert_filepath = start_tls_cert;
                info.ssl_private_key_filepath = start_tls_key;
        }
        /* HTTP/1.1 only, never HTTP/2 (by ALPN under TLS; h2c upgrades are refused in
         * callback_http). libwebsockets 4.1.6 advertises WebSocket over HTTP/2
         * (RFC 8441), which browsers then use, but its writes of such a stream read
         * 3 bytes in front of the LWS_PRE headroom it asks for, and each stream it
         * refuses leaks 224 bytes. */
        info.alpn = "http/1.1";
        /* The loop: libev on epoll, handed to libwebsockets as a foreign loop (its
         * libev plugin, package libwebsockets-evlib-ev). libwebsockets' own loop
         * calls poll() over every descriptor at each wakeup, so 10,000 idle
         * connections would cost every message of the busy ones. Without the
         * plugin (or with KILN_POLL_LOOP=1) kilnd falls back to that loop. */
        void *foreign[1];
        const char *poll_loop = getenv("KILN_POLL_LOOP");
        if (!(poll_loop && *poll_loop && strcmp(poll_loop, "0")))
                d->evloop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV | EVFLAG_NOSIGMASK);
        if (d->evloop) {
                foreign[0] = d->evloop;
                info.foreign_loops = foreign;
                info.options |= LWS_SERVER_OPTION_LIBEV;
                d->lws = lws_create_context(&info);
                if (!d->lws) {
                        log_warning("the libwebsockets libev plugin is missing: serving from its poll() loop");
                        ev_loop_destroy(d->evloop);
                        d->evloop = NULL;
                        info.foreign_loops = NULL;
                        info.options &= ~(uint64_t)LWS_SERVER_OPTION_LIBEV;
                }
        }
        if (!d->lws)
                d->lws = lws_create_context(&info);
        if (!d->lws) {
                if (own_fd >= 0)
                        close(own_fd);
                return -EADDRINUSE;
        }
        d->vhost = lws_get_vhost_by_name(d->lws, "kiln");
        if (n_listen_fds) {
                int r = listen_adopt_systemd(d, n_listen_fds);
                if (r < 0)
                        return r;
                log_notice("listening on %d socket(s) passed by systemd (server.listen %s not used)", n_listen_fds,
                           d->cfg->server.listen);
        } else {
                int r = listen_adopt(d, own_fd);
                if (r < 0) {
                        close(own_fd);
                        return r;
                }
                log_notice("listening on %s", d->cfg->server.listen);
        }
        mailbox_set_context(d->mailbox, d->lws);

        measure_store_room(d);
        lws_sul_schedule(d->lws, 0, &timers.tick, on_tick, LWS_US_PER_SEC);
        if (sd_watchdog_enabled(0, &timers.watchdog_usec) > 0 && timers.watchdog_usec)
                lws_sul_schedule(d->lws, 0, &timers.watchdog, on_watchdog, (lws_usec_t)timers.watchdog_usec / 2);
        server_arm_deadlines(d);
        return 0;
}

void server_run(struct kilnd *d)
{
        if (d->evloop) {
                while (!d->quit) {
                        ev_run(d->evloop, EVRUN_ONCE);
                        storeq_flush(d->storeq);
                }
        } else {
                while (!d->quit && lws_service(d->lws, 0) >= 0)
                        storeq_flush(d->storeq);
        }
        storeq_flush(d->storeq);
}

void server_stop(struct kilnd *d)
{
        if (!d->lws)
                return;
        mailbox_set_context(d->mailbox, NULL);
        lws_context_destroy(d->lws);
        d->lws = NULL;
        if (d->evloop)
                ev_loop_destroy(d->evloop);
        d->evloop = NULL;
        limits_map_free(d->token_limits);
        d->token_limits = NULL;
}
