/* kiln-bench's load engine: one libwebsockets client context holding every
 * connection, one service loop, no threads. This file makes the context and the
 * loop, opens the connections and dispatches libwebsockets' callbacks; the run's
 * phases and the load are in load_drive.c, the WebSocket layer in load_ws.c, the
 * replies and what they count in load_results.c (load_internal.h: what they share).
 *
 * The loop is libev's on epoll, handed to libwebsockets as a foreign loop (its
 * libev plugin): libwebsockets' own loop calls poll() over every descriptor at
 * each wakeup, which with 10,000 connections costs more than the load itself.
 * Without the plugin it falls back to that poll() loop. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "load_internal.h"

#define MAX_CONNECTING 256       /* handshakes in progress at once */
#define OPEN_WINDOW 1024         /* open loop: most jobs in flight per connection */

static void connect_more(lws_sorted_usec_list_t *sul);

void load_schedule_connects(struct bench *b)
{
        lws_sul_schedule(b->ctx, 0, &b->sul_connect, connect_more, 1);
}

/* libwebsockets 4.1's libev plugin re-arms its own timer only when that fires: a
 * sul set meanwhile ran at the next socket event, so the run and the drain of a
 * quiet server lasted up to ~20 s whatever --duration and --drain said. */
void load_timer_after(struct bench *b, ev_timer *evt, lws_sorted_usec_list_t *sul, sul_cb_t cb, double s)
{
        if (!b->loop) {
                lws_sul_schedule(b->ctx, 0, sul, cb, (lws_usec_t)(s * 1e6));
                return;
        }
        ev_timer_stop(b->loop, evt);
        ev_now_update(b->loop); /* from now, not from when the loop woke */
        ev_timer_set(evt, s, 0);
        ev_timer_start(b->loop, evt);
}

void load_conn_closed(struct conn *c, const char *why)
{
        struct bench *b = c->b;
        enum conn_state was = c->st;

        if (was == CS_CLOSED)
                return;
        c->st = CS_CLOSED;
        c->wsi = NULL;
        lws_sul_cancel(&c->sul);
        c->due_ns = 0;
        if (b->loop)
                ev_timer_stop(b->loop, &c->evt);
        if (was == CS_CONNECTING || was == CS_UPGRADING || was == CS_HELLO || was == CS_PENDING) {
                char late[64];
                b->r->err_connect++;
                uint64_t waited = now_ns() - c->connect_ns;
                if (waited >= (uint64_t)HANDSHAKE_TIMEOUT_S * 1000000000ull) {
                        snprintf(late, sizeof(late), "no answer from the server in %.0f s", (double)waited / 1e9);
                        why = late;
                }
                load_note_error(b, "connection %u: %s", c->idx, why);
                b->connecting--;
                load_conn_resolved(b);
                return;
        }
        if (b->phase == PH_DONE)
                return;
        b->r->err_dropped++;
        load_note_error(b, "connection %u lost: %s", c->idx, why);
        for (unsigned i = 0; i < c->cap; i++)
                if (c->slots[i].st != SL_FREE) {
                        b->r->err_lost_jobs++;
                        load_release(c, i);
                }
        c->n_unsent = 0;
        if (b->phase == PH_DRAIN && !b->inflight)
                load_finish(b);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct conn *c = user;

        if (!c)
                return 0;
        switch (reason) {
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
                char why[160];
                snprintf(why, sizeof(why), "%.*s", (int)(in && len < 150 ? len : 0), in ? (const char *)in : "");
                if (in && !len)
                        snprintf(why, sizeof(why), "%s", (const char *)in);
                load_conn_closed(c, why[0] ? why : "connection failed");
                break;
        }
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                c->wsi = wsi;
                lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, HANDSHAKE_TIMEOUT_S); /* until the welcome */
                c->st = CS_HELLO;
                c->hello_unsent = true;
                lws_callback_on_writable(wsi);
                break;
        case LWS_CALLBACK_CLIENT_WRITEABLE:
                if (c->st == CS_CLOSED)
                        return -1;
                return load_ws_writeable(c, wsi);
        case LWS_CALLBACK_CLIENT_RECEIVE: {
                bool last = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
                int r = load_rx_chunk(c, in, len, lws_frame_is_binary(wsi), last);
                if (r < 0) {
                        load_conn_closed(c, r == -EMSGSIZE ? "text message too long" : "out of memory");
                        return -1;
                }
                break;
        }
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
                if (len >= 2) {
                        const unsigned char *p = in;
                        load_note_error(c->b, "connection %u closed by the server with %u", c->idx,
                                   (unsigned)(p[0] << 8 | p[1]));
                }
                break;
        case LWS_CALLBACK_CLIENT_CLOSED:
                load_conn_closed(c, "the server closed the connection");
                break;
        case LWS_CALLBACK_RAW_CONNECTED:
                c->wsi = wsi;
                lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, HANDSHAKE_TIMEOUT_S); /* until the welcome */
                c->upgrade_unsent = true;
                lws_callback_on_writable(wsi);
                break;
        case LWS_CALLBACK_RAW_WRITEABLE:
                if (c->st == CS_CLOSED)
                        return -1;
                return load_raw_writeable(c, wsi);
        case LWS_CALLBACK_RAW_RX:
                if (c->st == CS_CLOSED)
                        return -1;
                return load_raw_rx(c, in, len);
        case LWS_CALLBACK_RAW_CLOSE:
                load_conn_closed(c, "the server closed the connection");
                break;
        default:
                break;
        }
        return 0;
}

/* Load connections read big parts in 64 KiB pieces; idle ones bind a protocol
 * with a small receive buffer (libwebsockets allocates it per connection). */
static const struct lws_protocols protocols[] = {
        { .name = "kiln.v1", .callback = callback, .rx_buffer_size = 65536 },
        { .name = "kiln.v1-idle", .callback = callback, .rx_buffer_size = 2048 },
        { .name = NULL },
};

static void start_connect(struct bench *b, struct conn *c)
{
        struct lws_client_connect_info ci;

        memset(&ci, 0, sizeof(ci));
        ci.context = b->ctx;
        ci.address = b->url.host;
        ci.port = b->url.port;
        ci.ssl_connection = b->url.tls ? LCCSCF_USE_SSL : 0;
        ci.path = b->url.path;
        ci.host = b->url.host_header;
        ci.origin = b->url.host_header;
        ci.protocol = "kiln.v1";
        ci.local_protocol_name = c->idle ? protocols[1].name : protocols[0].name;
        ci.ietf_version_or_minus_one = -1;
        ci.userdata = c;
        if (b->raw)
                ci.method = "RAW"; /* a plain socket: the upgrade and frames are done here */
        c->st = CS_CONNECTING;
        c->connect_ns = now_ns();
        b->connecting++;
        struct lws *wsi = lws_client_connect_via_info(&ci);
        if (!wsi && c->st == CS_CONNECTING)
                load_conn_closed(c, "the connection could not be started");
        else if (wsi && c->st == CS_CONNECTING)
                c->wsi = wsi; /* for load_handshake_deadlines */
}

/* Starts connections, idle ones (all of them) before load ones: idle ones at most
 * MAX_CONNECTING handshakes at a time, load ones one after the other. A server of
 * several processes sharing one listening socket (the baseline stack's uvicorn
 * --workers 2) then takes each as one of them is free to: opened all at once, the
 * 32 load connections of a compare.py run all went to one of its two workers in 3
 * runs of 4, which measured it at 4.1 k jobs/s instead of 7.3 k. */
static void connect_more(lws_sorted_usec_list_t *sul)
{
        struct bench *b = lws_container_of(sul, struct bench, sul_connect);
        unsigned limit = b->phase == PH_CONNECT_IDLE ? b->n_idle : b->n_conns;

        unsigned at_once = b->phase == PH_CONNECT_IDLE ? MAX_CONNECTING : 1;

        while (b->phase <= PH_CONNECT_LOAD && b->next_connect < limit && b->connecting < at_once)
                start_connect(b, &b->conns[b->next_connect++]);
}

/* Makes room for `need` descriptors (soft limit up to the hard one). */
static void raise_nofile(rlim_t need)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
                return;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
}

/* Closes the connections that have not been welcomed within HANDSHAKE_TIMEOUT_S,
 * four times a second while connecting: libwebsockets' own timeouts, on the libev
 * loop, took twice that against a server that takes the TCP connection and says
 * nothing. */
static void handshake_deadlines(struct bench *b)
{
        uint64_t now = now_ns(), limit = (uint64_t)HANDSHAKE_TIMEOUT_S * 1000000000ull;

        for (unsigned i = 0; i < b->n_conns; i++) {
                struct conn *c = &b->conns[i];
                if ((c->st == CS_CONNECTING || c->st == CS_UPGRADING || c->st == CS_HELLO) && c->wsi &&
                    now - c->connect_ns >= limit)
                        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
        }
}

static void on_deadline_sul(lws_sorted_usec_list_t *sul)
{
        struct bench *b = lws_container_of(sul, struct bench, sul_deadline);
        handshake_deadlines(b);
        if (b->phase < PH_RUN)
                lws_sul_schedule(b->ctx, 0, &b->sul_deadline, on_deadline_sul, LWS_US_PER_SEC / 4);
}

static void on_deadline_ev(struct ev_loop *loop, ev_timer *w, int revents)
{
        struct bench *b = (struct bench *)((char *)w - offsetof(struct bench, deadline_evt));
        handshake_deadlines(b);
        if (b->phase >= PH_RUN)
                ev_timer_stop(loop, w);
}

static void bench_free(struct bench *b)
{
        if (b->loop) {
                ev_timer_stop(b->loop, &b->deadline_evt);
                ev_timer_stop(b->loop, &b->phase_evt);
                ev_timer_stop(b->loop, &b->progress_evt);
        }
        if (b->ctx)
                lws_context_destroy(b->ctx);
        for (unsigned k = 0; b->loop && b->conns && k < b->n_conns; k++)
                ev_timer_stop(b->loop, &b->conns[k].evt);
        if (b->sched_fd >= 0) {
                ev_io_stop(b->loop, &b->sched_io);
                close(b->sched_fd);
        }
        if (b->loop)
                ev_loop_destroy(b->loop);
        for (unsigned k = 0; b->conns && k < b->n_conns; k++) {
                free(b->conns[k].slots);
                free(b->conns[k].free_idx);
                free(b->conns[k].unsent);
                free(b->conns[k].rx);
                free(b->conns[k].parts_want);
                kiln_ws_hs_free(&b->conns[k].hs);
        }
        free(b->conns);
        free(b->hello);
}

int bench_run(const struct bench_opts *o, struct bench_result *ret)
{
        struct bench b = { .o = o, .r = ret, .rng = o->seed | 1, .sched_fd = -1 };
        int r;

        memset(ret, 0, sizeof(*ret));
        hdr_init(&ret->latency);
        if (kiln_ws_url_parse(o->url, &b.url) < 0)
                return -EINVAL;

        json_t *h = json_pack("{s:s, s:i, s:s}", "op", "hello", "ref", 0, "client", "kiln-bench/" KILN_VERSION);
        if (h && o->token)
                json_object_set_new(h, "token", json_string(o->token));
        b.hello = h ? json_dumps(h, JSON_COMPACT) : NULL;
        json_decref(h);
        if (!b.hello || strlen(b.hello) > 1000) {
                free(b.hello);
                return -ENOMEM;
        }
        b.hello_len = strlen(b.hello);

        b.n_idle = o->idle;
        b.n_conns = o->idle + o->connections;
        b.conns = calloc(b.n_conns, sizeof(*b.conns));
        if (!b.conns) {
                r = -ENOMEM;
                goto out;
        }
        unsigned cap = o->rate > 0 ? OPEN_WINDOW : o->pipeline;
        for (unsigned k = 0; k < b.n_conns; k++) {
                struct conn *c = &b.conns[k];
                c->b = &b;
                c->idx = k;
                c->idle = k < b.n_idle;
                ev_timer_init(&c->evt, load_on_conn_ev_timer, 0, 0);
                if (c->idle)
                        continue;
                c->cap = cap;
                c->slots = calloc(cap, sizeof(*c->slots));
                c->free_idx = calloc(cap, sizeof(*c->free_idx));
                c->unsent = calloc(cap, sizeof(*c->unsent));
                c->parts_want = calloc(REPLY_MAX_PARTS, sizeof(*c->parts_want));
                if (!c->slots || !c->free_idx || !c->unsent || !c->parts_want) {
                        r = -ENOMEM;
                        goto out;
                }
                for (unsigned i = 0; i < cap; i++)
                        c->free_idx[c->n_free++] = cap - 1 - i;
        }

        b.raw = !b.url.tls && !getenv("KILN_BENCH_LWS_WS");
        raise_nofile((rlim_t)b.n_conns + 64);
        const char *dbg = getenv("KILN_BENCH_DEBUG");
        lws_set_log_level(dbg && *dbg ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_CLIENT : 0, NULL);

        struct lws_context_creation_info info;
        memset(&info, 0, sizeof(info));
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = protocols;
        info.user = &b;
        info.options = b.url.tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
        info.timeout_secs = 30;
        info.count_threads = 1;
        /* No info.fd_limit_per_thread: below the soft RLIMIT_NOFILE it makes libwebsockets
         * search its whole descriptor table on every event (raise_nofile sized it). */
        info.pt_serv_buf_size = 256 * 1024;
        void *foreign[1];
        b.loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
        if (b.loop && !getenv("KILN_BENCH_POLL")) {
                foreign[0] = b.loop;
                info.foreign_loops = foreign;
                info.options |= LWS_SERVER_OPTION_LIBEV;
                b.ctx = lws_create_context(&info);
        }
        if (!b.ctx) {
                if (b.loop)
                        ev_loop_destroy(b.loop);
                b.loop = NULL;
                info.foreign_loops = NULL;
                info.options &= ~(uint64_t)LWS_SERVER_OPTION_LIBEV;
                b.ctx = lws_create_context(&info);
        }
        if (!b.ctx) {
                r = -ENOMEM;
                goto out;
        }

        if (b.loop && o->rate > 0) {
                b.sched_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
                if (b.sched_fd >= 0) {
                        ev_io_init(&b.sched_io, load_on_sched_fd, b.sched_fd, EV_READ);
                        ev_io_start(b.loop, &b.sched_io);
                }
        }
        ret->rss_start_kb = bench_rss_kb();
        b.phase = b.n_idle ? PH_CONNECT_IDLE : PH_CONNECT_LOAD;
        ret->rss_idle_kb = b.n_idle ? -1 : ret->rss_start_kb;
        load_schedule_connects(&b);
        if (b.loop) {
                ev_timer_init(&b.deadline_evt, on_deadline_ev, 0.25, 0.25);
                ev_timer_start(b.loop, &b.deadline_evt);
                ev_timer_init(&b.phase_evt, load_on_phase_ev, 0, 0);
                ev_timer_init(&b.progress_evt, load_on_progress_ev, 0, 0);
        } else {
                lws_sul_schedule(b.ctx, 0, &b.sul_deadline, on_deadline_sul, LWS_US_PER_SEC / 4);
        }
        if (o->progress)
                load_timer_after(&b, &b.progress_evt, &b.sul_progress, load_on_progress, 0.5);
        while (b.phase != PH_DONE) {
                if (b.loop)
                        ev_run(b.loop, EVRUN_ONCE);
                else if (lws_service(b.ctx, 0) < 0)
                        break;
        }
        if (o->progress)
                fprintf(stderr, "\r\033[K");
        ret->rss_end_kb = bench_rss_kb();
        if (!ret->elapsed_s && b.t0_ns)
                ret->elapsed_s = (double)(now_ns() - b.t0_ns) / 1e9;
        r = ret->connected ? 0 : -ECONNREFUSED;
out:
        bench_free(&b);
        return r;
}
