/* kiln-bench's load engine: one libwebsockets client context holding every
 * connection, one service loop, no threads.
 *
 * Each load connection keeps a table of in-flight jobs ("slots"), keyed by the
 * submit's `ref` (generation << 16 | slot index, so a reply finds its slot in O(1)
 * and a stale ref never matches). A job is finished by its `done` and the binary
 * parts that follow it (or, in accept-only mode, by `accepted`). Closed loop: a
 * finished job is replaced at once, latency runs from the moment it was written.
 * Open loop: every connection follows a fixed schedule (rate / connections jobs/s,
 * phases spread evenly); a job's latency runs from its scheduled time, so a server
 * that falls behind is charged for the queueing it causes (no coordinated
 * omission), and a full slot table delays sending, not the schedule.
 *
 * Writes go out one per writeable callback, so a slow server pushes back on
 * sending; timers (lws_sul) drive the schedule, the phases and the progress line:
 * the loop sleeps whenever there is nothing to do.
 *
 * The loop is libev's on epoll, handed to libwebsockets as a foreign loop (its
 * libev plugin): libwebsockets' own loop calls poll() over every descriptor at
 * each wakeup, which with 10,000 connections costs more than the load itself.
 * Without the plugin it falls back to that poll() loop.
 *
 * Framing. For ws:// the connections are libwebsockets raw sockets and the
 * WebSocket layer (RFC 6455: the upgrade, masked client frames, fragments, ping,
 * close) is done here: libwebsockets' WebSocket client parses what it receives one
 * byte at a time, which for a job's 16 KiB part cost ~80 µs of client CPU per job,
 * more than the server spent on it, so kiln-bench measured itself. Here a part's
 * payload is skipped in bulk, and every pending submit of a connection goes out in
 * one write. For wss:// (TLS) libwebsockets' own WebSocket client is used
 * (KILN_BENCH_LWS_WS=1 forces it for ws:// too). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>
#include <libwebsockets.h>

#include "bench.h"
#include "proto.h"

#define MAX_CONNECTING 256       /* handshakes in progress at once */
#define OPEN_WINDOW 1024         /* open loop: most jobs in flight per connection */
#define MAX_TEXT (16u << 20)     /* longest text message accepted */
#define HDR_KEEP 4096u           /* bytes of a binary part kept to read its header */
#define REF_BITS 16

enum phase {
        PH_CONNECT_IDLE,
        PH_CONNECT_LOAD,
        PH_SETTLE,
        PH_RUN,
        PH_DRAIN,
        PH_DONE,
};

enum conn_state {
        CS_PENDING,
        CS_CONNECTING,
        CS_UPGRADING,      /* raw framing: the upgrade request is out, awaiting 101 */
        CS_HELLO,
        CS_READY,
        CS_CLOSED,
};

enum slot_state {
        SL_FREE,
        SL_UNSENT,
        SL_SENT,
        SL_ACCEPTED,
        SL_PARTS,
};

struct slot {
        uint64_t ref;
        uint64_t t_start_ns;       /* latency origin: send time or scheduled time */
        uint64_t t_sched_ns;       /* open loop: scheduled time; closed loop: issue time */
        enum slot_state st;
        char job[48];
};

struct bench;

struct conn {
        struct bench *b;
        struct lws *wsi;
        unsigned idx;
        bool idle;
        bool hello_unsent;
        enum conn_state st;

        struct slot *slots;
        unsigned cap, inflight;
        uint64_t gen;
        unsigned *free_idx;        /* stack of free slot indices */
        unsigned n_free;
        unsigned *unsent;          /* FIFO of slots waiting to be written */
        unsigned unsent_head, n_unsent;

        uint64_t next_sched_ns;    /* open loop */
        lws_sorted_usec_list_t sul; /* its timer on the poll() loop */
        uint64_t due_ns;           /* libev loop: when the schedule timerfd should pump it (0: never) */
        ev_timer evt;              /* its timer on the libev loop (lws_sul timers set from
                                    * a timer callback fire late with the libev plugin) */

        /* the message being received */
        bool rx_active, rx_binary, rx_overflow;
        char *rx;
        size_t rx_len, rx_cap;

        /* parts still expected after a `done` */
        unsigned parts_left;
        char parts_job[48];

        /* raw framing (see the top): the upgrade, then the frame being read */
        bool upgrade_unsent;
        char ws_accept[32];        /* the Sec-WebSocket-Accept the server must send */
        char *hs;                  /* the upgrade response so far */
        size_t hs_len;
        uint8_t fh[14];            /* frame header bytes so far */
        unsigned fh_len;
        bool in_frame;             /* reading a frame's payload */
        uint8_t f_op;
        bool f_fin;
        uint64_t f_left;           /* payload bytes still to come */
        uint8_t ctl[125];          /* a control frame's payload */
        size_t ctl_len;
        bool pong_unsent;
        uint8_t pong[125];
        size_t pong_len;
};

struct bench {
        const struct bench_opts *o;
        struct bench_result *r;
        struct lws_context *ctx;
        struct ev_loop *loop;      /* NULL: libwebsockets' own poll() loop */
        bool raw;                  /* WebSocket framing done here (see the top) */
        int sched_fd;              /* open loop on libev: a timerfd for the schedule, -1: none */
        ev_io sched_io;
        uint64_t sched_armed_ns;   /* when it is set to fire (0: disarmed) */
        struct conn *conns;        /* idle ones first, then load ones */
        unsigned n_conns, n_idle;
        unsigned next_connect, connecting, resolved;
        enum phase phase;
        uint64_t t0_ns, t_end_ns;
        uint64_t inflight;
        double interval_ns;        /* open loop, per connection */
        uint64_t rng;
        struct kiln_ws_url url;
        char *hello;
        size_t hello_len;
        lws_sorted_usec_list_t sul_connect, sul_phase, sul_progress;
};

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

long bench_rss_kb(void)
{
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        long kb = -1;

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (!strncmp(line, "VmRSS:", 6)) {
                        kb = strtol(line + 6, NULL, 10);
                        break;
                }
        fclose(f);
        return kb;
}

uint64_t bench_errors(const struct bench_result *r)
{
        return r->err_replies + r->err_failed + r->err_connect + r->err_dropped + r->err_lost_jobs + r->unfinished;
}

__attribute__((format(printf, 2, 3))) static void note_error(struct bench *b, const char *fmt, ...)
{
        va_list ap;

        if (b->r->first_error[0])
                return;
        va_start(ap, fmt);
        vsnprintf(b->r->first_error, sizeof(b->r->first_error), fmt, ap);
        va_end(ap);
}

static void connect_more(lws_sorted_usec_list_t *sul);
static void pump(struct conn *c);

static void schedule_connects(struct bench *b)
{
        lws_sul_schedule(b->ctx, 0, &b->sul_connect, connect_more, 1);
}

static void finish(struct bench *b)
{
        if (b->phase == PH_DONE)
                return;
        b->phase = PH_DONE;
        lws_sul_cancel(&b->sul_phase);
        lws_sul_cancel(&b->sul_progress);
        lws_cancel_service(b->ctx);
}

/* Frees a slot and accounts for its job. ok: finished normally. */
static void release(struct conn *c, unsigned i)
{
        struct bench *b = c->b;
        struct slot *s = &c->slots[i];

        s->st = SL_FREE;
        s->job[0] = '\0';
        c->free_idx[c->n_free++] = i;
        c->inflight--;
        b->inflight--;
}

static void issue_next(struct conn *c);

/* A job ended: records it, frees its slot and keeps the load going. */
static void complete(struct conn *c, unsigned i, bool ok)
{
        struct bench *b = c->b;
        uint64_t t = now_ns();

        if (ok) {
                struct slot *s = &c->slots[i];
                uint64_t lat = t > s->t_start_ns ? t - s->t_start_ns : 0;
                hdr_record(&b->r->latency, (lat + 500) / 1000);
                b->r->jobs_total++;
                if (t <= b->t_end_ns)
                        b->r->jobs++;
        }
        release(c, i);
        if (b->phase == PH_RUN)
                issue_next(c);
        else if (b->phase == PH_DRAIN && !b->inflight)
                finish(b);
}

/* Queues one job scheduled at t_sched for writing. Returns false when every slot
 * is taken. */
static bool issue(struct conn *c, uint64_t t_sched)
{
        if (!c->n_free || c->st != CS_READY)
                return false;
        unsigned i = c->free_idx[--c->n_free];
        struct slot *s = &c->slots[i];
        s->ref = (++c->gen << REF_BITS) | i;
        s->st = SL_UNSENT;
        s->t_sched_ns = t_sched;
        s->t_start_ns = t_sched;
        s->job[0] = '\0';
        c->unsent[(c->unsent_head + c->n_unsent) % c->cap] = i;
        c->n_unsent++;
        c->inflight++;
        c->b->inflight++;
        lws_callback_on_writable(c->wsi);
        return true;
}

static void issue_next(struct conn *c)
{
        if (c->b->o->rate > 0)
                pump(c);
        else
                issue(c, now_ns());
}

static void on_conn_timer(lws_sorted_usec_list_t *sul)
{
        pump(lws_container_of(sul, struct conn, sul));
}

static void on_conn_ev_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
        pump(lws_container_of(w, struct conn, evt));
}

/* Sets the schedule timerfd to the earliest due connection. */
static void sched_rearm(struct bench *b)
{
        uint64_t first = 0;
        for (unsigned k = b->n_idle; k < b->n_conns; k++) {
                uint64_t t = b->conns[k].due_ns;
                if (t && (!first || t < first))
                        first = t;
        }
        if (first == b->sched_armed_ns)
                return;
        struct itimerspec its = { 0 };
        if (first) {
                its.it_value.tv_sec = (time_t)(first / 1000000000ull);
                its.it_value.tv_nsec = (long)(first % 1000000000ull);
        }
        timerfd_settime(b->sched_fd, TFD_TIMER_ABSTIME, &its, NULL);
        b->sched_armed_ns = first;
}

static void on_sched_fd(struct ev_loop *loop, ev_io *w, int revents)
{
        struct bench *b = lws_container_of(w, struct bench, sched_io);
        uint64_t expirations;

        if (read(b->sched_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
                return;
        b->sched_armed_ns = 0;
        uint64_t t = now_ns();
        for (unsigned k = b->n_idle; k < b->n_conns; k++) {
                struct conn *c = &b->conns[k];
                if (c->due_ns && c->due_ns <= t) {
                        c->due_ns = 0;
                        pump(c);
                }
        }
        sched_rearm(b);
}

/* Calls pump(c) after us microseconds. On the libev loop the open-loop schedule
 * runs from a timerfd, to the nanosecond: libev's epoll backend waits in whole
 * milliseconds, and a job sent up to a millisecond late is charged to the server
 * (latency runs from the scheduled time). */
static void conn_timer(struct conn *c, uint64_t us)
{
        struct bench *b = c->b;

        if (b->loop && b->sched_fd >= 0) {
                c->due_ns = now_ns() + us * 1000;
                sched_rearm(b);
                return;
        }
        if (!b->loop) {
                lws_sul_schedule(b->ctx, 0, &c->sul, on_conn_timer, (lws_usec_t)us);
                return;
        }
        ev_timer_stop(b->loop, &c->evt);
        ev_timer_set(&c->evt, (double)us / 1e6, 0);
        ev_timer_start(b->loop, &c->evt);
}

/* Open loop: issues every job whose scheduled time has come (as slots allow) and
 * sets the timer for the next one. */
static void pump(struct conn *c)
{
        struct bench *b = c->b;
        if (b->phase != PH_RUN || c->st != CS_READY)
                return;
        uint64_t t = now_ns();
        while (c->next_sched_ns <= t && c->next_sched_ns < b->t_end_ns) {
                if (!issue(c, c->next_sched_ns))
                        return; /* a completion calls pump again */
                c->next_sched_ns += (uint64_t)b->interval_ns;
        }
        if (c->next_sched_ns < b->t_end_ns)
                conn_timer(c, (c->next_sched_ns - t + 999) / 1000);
}

/* Finds the in-flight slot a ref names; -1 when none. */
static int slot_of(struct conn *c, json_t *ref)
{
        if (!json_is_integer(ref) || !c->cap)
                return -1;
        uint64_t r = (uint64_t)json_integer_value(ref);
        unsigned i = (unsigned)(r & ((1u << REF_BITS) - 1));
        if (i >= c->cap || c->slots[i].st == SL_FREE || c->slots[i].ref != r)
                return -1;
        return (int)i;
}

static void on_phase(lws_sorted_usec_list_t *sul);

static void start_run(struct bench *b)
{
        b->phase = PH_RUN;
        b->t0_ns = now_ns();
        b->t_end_ns = b->t0_ns + (uint64_t)(b->o->duration_s * 1e9);
        unsigned n_load = b->n_conns - b->n_idle;
        if (b->o->rate > 0)
                b->interval_ns = 1e9 * (double)n_load / b->o->rate;
        for (unsigned k = b->n_idle; k < b->n_conns; k++) {
                struct conn *c = &b->conns[k];
                if (c->st != CS_READY)
                        continue;
                if (b->o->rate > 0) {
                        c->next_sched_ns = b->t0_ns + (uint64_t)(b->interval_ns * (k - b->n_idle) / n_load);
                        pump(c);
                } else {
                        for (unsigned j = 0; j < b->o->pipeline; j++)
                                issue(c, b->t0_ns);
                }
        }
        lws_sul_schedule(b->ctx, 0, &b->sul_phase, on_phase, (lws_usec_t)(b->o->duration_s * 1e6));
}

static void on_phase(lws_sorted_usec_list_t *sul)
{
        struct bench *b = lws_container_of(sul, struct bench, sul_phase);

        if (b->phase == PH_SETTLE) {
                start_run(b);
        } else if (b->phase == PH_RUN) {
                b->phase = PH_DRAIN;
                b->r->elapsed_s = (double)(now_ns() - b->t0_ns) / 1e9;
                if (!b->inflight) {
                        finish(b);
                        return;
                }
                lws_sul_schedule(b->ctx, 0, &b->sul_phase, on_phase, (lws_usec_t)(b->o->drain_s * 1e6));
        } else if (b->phase == PH_DRAIN) {
                b->r->unfinished = b->inflight;
                finish(b);
        }
}

/* A connection finished connecting (ok) or failed to: moves the phases on. */
static void resolved(struct bench *b)
{
        b->resolved++;
        if (b->phase == PH_CONNECT_IDLE && b->resolved == b->n_idle) {
                b->r->rss_idle_kb = bench_rss_kb();
                b->phase = PH_CONNECT_LOAD;
        }
        if (b->phase == PH_CONNECT_LOAD && b->resolved == b->n_conns) {
                if (!b->r->connected) {
                        finish(b);
                } else if (b->n_idle) {
                        /* The load measures holding the idle connections, not opening
                         * them: a second for both sides to settle after the last one. */
                        b->phase = PH_SETTLE;
                        lws_sul_schedule(b->ctx, 0, &b->sul_phase, on_phase, LWS_US_PER_SEC);
                } else {
                        start_run(b);
                }
                return;
        }
        schedule_connects(b);
}

static void conn_closed(struct conn *c, const char *why)
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
                b->r->err_connect++;
                note_error(b, "connection %u: %s", c->idx, why);
                b->connecting--;
                resolved(b);
                return;
        }
        if (b->phase == PH_DONE)
                return;
        b->r->err_dropped++;
        note_error(b, "connection %u lost: %s", c->idx, why);
        for (unsigned i = 0; i < c->cap; i++)
                if (c->slots[i].st != SL_FREE) {
                        b->r->err_lost_jobs++;
                        release(c, i);
                }
        c->n_unsent = 0;
        if (b->phase == PH_DRAIN && !b->inflight)
                finish(b);
}

/* Ends every job the `done` of `job` finishes (the ref's own slot first). */
static void done_for(struct conn *c, int by_ref, const char *job, bool ok, enum slot_state only)
{
        if (by_ref >= 0)
                complete(c, (unsigned)by_ref, ok);
        for (unsigned i = 0; i < c->cap; i++)
                if (c->slots[i].st == only && job && !strcmp(c->slots[i].job, job))
                        complete(c, i, ok);
}

static void on_text(struct conn *c, const char *text, size_t len)
{
        struct bench *b = c->b;
        json_error_t jerr;
        json_t *m = json_loadb(text, len, 0, &jerr);
        const char *op = json_string_value(json_object_get(m, "op"));

        if (!op) {
                note_error(b, "unreadable message: %.80s", text);
                json_decref(m);
                return;
        }
        json_t *ref = json_object_get(m, "ref");
        if (c->st == CS_HELLO) {
                if (!strcmp(op, "welcome")) {
                        c->st = CS_READY;
                        b->connecting--;
                        if (c->idle)
                                b->r->idle_connected++;
                        else
                                b->r->connected++;
                        resolved(b);
                } else if (!strcmp(op, "error")) {
                        char why[200];
                        snprintf(why, sizeof(why), "hello refused: %s",
                                 json_string_value(json_object_get(m, "message")) ?: "error");
                        json_decref(m);
                        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                        conn_closed(c, why);
                        return;
                }
                json_decref(m);
                return;
        }

        int i = slot_of(c, ref);
        const char *job = json_string_value(json_object_get(m, "job"));
        if (!strcmp(op, "accepted")) {
                if (i >= 0 && c->slots[i].st == SL_SENT) {
                        if (b->o->accept_only) {
                                complete(c, (unsigned)i, true);
                        } else {
                                c->slots[i].st = SL_ACCEPTED;
                                snprintf(c->slots[i].job, sizeof(c->slots[i].job), "%s", job ?: "");
                        }
                }
        } else if (!strcmp(op, "done")) {
                const char *state = json_string_value(json_object_get(m, "state"));
                bool ok = state && !strcmp(state, "done");
                size_t n_parts = json_array_size(json_object_get(m, "parts"));
                if (i >= 0 && c->slots[i].st != SL_SENT && c->slots[i].st != SL_ACCEPTED)
                        i = -1;
                if (!ok) {
                        json_t *e = json_object_get(m, "error");
                        b->r->err_failed += (i >= 0);
                        note_error(b, "job %s ended %s: %s", job ?: "?", state ?: "?",
                                   json_string_value(json_object_get(e, "message")) ?: "");
                        done_for(c, i, job, false, SL_ACCEPTED);
                } else if (!n_parts) {
                        done_for(c, i, job, true, SL_ACCEPTED);
                } else {
                        /* Finished by its parts: mark every slot this done covers. */
                        if (i >= 0)
                                c->slots[i].st = SL_PARTS;
                        for (unsigned k = 0; k < c->cap; k++)
                                if (c->slots[k].st == SL_ACCEPTED && job && !strcmp(c->slots[k].job, job))
                                        c->slots[k].st = SL_PARTS;
                        if (i >= 0 && !c->slots[i].job[0])
                                snprintf(c->slots[i].job, sizeof(c->slots[i].job), "%s", job ?: "");
                        c->parts_left = (unsigned)n_parts;
                        snprintf(c->parts_job, sizeof(c->parts_job), "%s", job ?: "");
                }
        } else if (!strcmp(op, "error")) {
                if (i >= 0) {
                        b->r->err_replies++;
                        note_error(b, "error reply: %s: %s", json_string_value(json_object_get(m, "code")) ?: "?",
                                   json_string_value(json_object_get(m, "message")) ?: "");
                        complete(c, (unsigned)i, false);
                }
        }
        /* progress and anything else: nothing to do */
        json_decref(m);
}

/* A whole binary part arrived (its first bytes are in c->rx): when it is the
 * last part of a done, the jobs it covers are finished. */
static void on_part(struct conn *c)
{
        if (!c->parts_left)
                return;
        if (--c->parts_left)
                return;
        for (unsigned k = 0; k < c->cap; k++)
                if (c->slots[k].st == SL_PARTS && !strcmp(c->slots[k].job, c->parts_job))
                        complete(c, k, true);
}

/* Takes one received chunk. Text is assembled whole; of a binary part only the
 * first HDR_KEEP bytes are kept (the KLNB header), the payload is counted and
 * dropped. Returns >= 0 or -ENOMEM / -EMSGSIZE. */
static int rx_chunk(struct conn *c, const void *in, size_t len, bool binary, bool last)
{
        if (!c->rx_active) {
                c->rx_active = true;
                c->rx_binary = binary;
                c->rx_len = 0;
                c->rx_overflow = false;
        }
        size_t keep = len;
        if (c->rx_binary) {
                keep = c->rx_len >= HDR_KEEP ? 0 : (len < HDR_KEEP - c->rx_len ? len : HDR_KEEP - c->rx_len);
        } else if (c->rx_len + len > MAX_TEXT) {
                return -EMSGSIZE;
        }
        if (keep) {
                if (c->rx_len + keep + 1 > c->rx_cap) {
                        size_t cap = c->rx_cap ? c->rx_cap : 1024;
                        while (cap < c->rx_len + keep + 1)
                                cap *= 2;
                        char *p = realloc(c->rx, cap);
                        if (!p)
                                return -ENOMEM;
                        c->rx = p;
                        c->rx_cap = cap;
                }
                memcpy(c->rx + c->rx_len, in, keep);
                c->rx_len += keep;
        }
        if (!last)
                return 0;
        c->rx_active = false;
        if (c->rx_binary) {
                on_part(c);
        } else {
                c->rx[c->rx_len] = '\0';
                on_text(c, c->rx, c->rx_len);
        }
        return 0;
}

static int on_writeable(struct conn *c, struct lws *wsi)
{
        struct bench *b = c->b;
        unsigned char buf[LWS_PRE + 1024];

        if (c->hello_unsent) {
                c->hello_unsent = false;
                memcpy(buf + LWS_PRE, b->hello, b->hello_len);
                if (lws_write(wsi, buf + LWS_PRE, b->hello_len, LWS_WRITE_TEXT) < (int)b->hello_len)
                        return -1;
        } else if (c->n_unsent) {
                unsigned i = c->unsent[c->unsent_head];
                c->unsent_head = (c->unsent_head + 1) % c->cap;
                c->n_unsent--;
                struct slot *s = &c->slots[i];
                if (s->st != SL_UNSENT)
                        goto more;
                int n = bench_submit_text(b->o->scenario, s->ref, !b->o->accept_only, &b->rng, (char *)buf + LWS_PRE,
                                          sizeof(buf) - LWS_PRE);
                if (n < 0)
                        return -1;
                s->st = SL_SENT;
                if (b->o->rate <= 0)
                        s->t_start_ns = now_ns();
                if (lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_TEXT) < n)
                        return -1;
        }
more:
        if (c->n_unsent)
                lws_callback_on_writable(wsi);
        return 0;
}

/* ---- raw framing (ws:// without libwebsockets' WebSocket client) ---- */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_UPGRADE_RESPONSE 8192
#define RAW_OUT (256 * 1024)       /* bytes of frames written at once */

static uint64_t rng_next(uint64_t *x)
{
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

/* Appends one masked client frame (FIN set) carrying `len` bytes to dst; returns
 * its length. dst must have room for len + 14. */
static size_t frame_masked(struct bench *b, uint8_t *dst, uint8_t opcode, const void *data, size_t len)
{
        size_t h = 0;
        dst[h++] = (uint8_t)(0x80 | opcode);
        if (len < 126) {
                dst[h++] = (uint8_t)(0x80 | len);
        } else if (len <= 0xffff) {
                dst[h++] = 0x80 | 126;
                dst[h++] = (uint8_t)(len >> 8);
                dst[h++] = (uint8_t)len;
        } else {
                dst[h++] = 0x80 | 127;
                for (int i = 0; i < 8; i++)
                        dst[h++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        }
        uint32_t key = (uint32_t)rng_next(&b->rng);
        uint8_t mask[4];
        memcpy(mask, &key, 4);
        memcpy(dst + h, mask, 4);
        h += 4;
        const uint8_t *src = data;
        for (size_t i = 0; i < len; i++)
                dst[h + i] = src[i] ^ mask[i & 3];
        return h + len;
}

static int raw_writeable(struct conn *c, struct lws *wsi)
{
        static uint8_t out[LWS_PRE + RAW_OUT];
        struct bench *b = c->b;
        uint8_t *buf = out + LWS_PRE;
        size_t used = 0;

        if (c->upgrade_unsent) {
                uint8_t nonce[16];
                char key[32], accept_src[96], sha[20];
                for (int i = 0; i < 16; i += 8) {
                        uint64_t v = rng_next(&b->rng);
                        memcpy(nonce + i, &v, 8);
                }
                lws_b64_encode_string((const char *)nonce, 16, key, sizeof(key));
                snprintf(accept_src, sizeof(accept_src), "%s%s", key, WS_GUID);
                lws_SHA1((const unsigned char *)accept_src, strlen(accept_src), (unsigned char *)sha);
                lws_b64_encode_string(sha, 20, c->ws_accept, sizeof(c->ws_accept));
                int n = snprintf((char *)buf, 2048,
                                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                                 "Sec-WebSocket-Protocol: kiln.v1\r\nOrigin: http://%s\r\n\r\n",
                                 b->url.path, b->url.host_header, key, b->url.host_header);
                c->upgrade_unsent = false;
                c->st = CS_UPGRADING;
                return lws_write(wsi, buf, (size_t)n, LWS_WRITE_RAW) < n ? -1 : 0;
        }
        if (c->pong_unsent) {
                c->pong_unsent = false;
                used += frame_masked(b, buf + used, 0xA, c->pong, c->pong_len);
        }
        if (c->hello_unsent) {
                c->hello_unsent = false;
                used += frame_masked(b, buf + used, 0x1, b->hello, b->hello_len);
        }
        while (c->n_unsent && used + 2048 + 14 <= RAW_OUT) {
                unsigned i = c->unsent[c->unsent_head];
                c->unsent_head = (c->unsent_head + 1) % c->cap;
                c->n_unsent--;
                struct slot *sl = &c->slots[i];
                if (sl->st != SL_UNSENT)
                        continue;
                char text[2048];
                int n = bench_submit_text(b->o->scenario, sl->ref, !b->o->accept_only, &b->rng, text, sizeof(text));
                if (n < 0)
                        return -1;
                sl->st = SL_SENT;
                if (b->o->rate <= 0)
                        sl->t_start_ns = now_ns();
                used += frame_masked(b, buf + used, 0x1, text, (size_t)n);
        }
        if (used && lws_write(wsi, buf, used, LWS_WRITE_RAW) < (int)used)
                return -1;
        if (c->n_unsent || c->pong_unsent)
                lws_callback_on_writable(wsi);
        return 0;
}

/* Reads the upgrade response; returns the bytes of `in` it used (frames may follow
 * in the same read), or -1 when the server refused. */
static long raw_upgrade_rx(struct conn *c, const uint8_t *in, size_t len)
{
        size_t had = c->hs_len, take = len;
        if (had + take > MAX_UPGRADE_RESPONSE)
                take = MAX_UPGRADE_RESPONSE - had;
        char *p = realloc(c->hs, had + take + 1);
        if (!p)
                return -1;
        c->hs = p;
        memcpy(c->hs + had, in, take);
        c->hs_len = had + take;
        c->hs[c->hs_len] = '\0';
        char *end = strstr(c->hs, "\r\n\r\n");
        if (!end) {
                if (c->hs_len >= MAX_UPGRADE_RESPONSE) {
                        conn_closed(c, "the upgrade response is too long");
                        return -1;
                }
                return (long)len;
        }
        size_t used = (size_t)(end + 4 - c->hs) - had;
        *end = '\0';
        bool ok = !strncmp(c->hs, "HTTP/1.1 101", 12);
        const char *a = NULL;
        for (char *line = strstr(c->hs, "\r\n"); ok && line; line = strstr(line + 2, "\r\n"))
                if (!strncasecmp(line + 2, "Sec-WebSocket-Accept:", 21)) {
                        a = line + 2 + 21;
                        a += strspn(a, " \t");
                        break;
                }
        if (!ok || !a || strncmp(a, c->ws_accept, strlen(c->ws_accept))) {
                char why[160];
                snprintf(why, sizeof(why), "upgrade refused: %.100s", c->hs);
                why[strcspn(why, "\r\n")] = '\0';
                conn_closed(c, why);
                return -1;
        }
        free(c->hs);
        c->hs = NULL;
        c->hs_len = 0;
        c->st = CS_HELLO;
        c->hello_unsent = true;
        lws_callback_on_writable(c->wsi);
        return (long)used;
}

/* The end of a control frame: ping is answered, close ends the connection. */
static int raw_control(struct conn *c)
{
        if (c->f_op == 0x9) {
                memcpy(c->pong, c->ctl, c->ctl_len);
                c->pong_len = c->ctl_len;
                c->pong_unsent = true;
                lws_callback_on_writable(c->wsi);
        } else if (c->f_op == 0x8) {
                if (c->ctl_len >= 2)
                        note_error(c->b, "connection %u closed by the server with %u", c->idx,
                                   (unsigned)(c->ctl[0] << 8 | c->ctl[1]));
                conn_closed(c, "the server closed the connection");
                return -1;
        }
        return 0;
}

/* Takes received bytes: the upgrade response, then frames. Returns -1 to close. */
static int raw_rx(struct conn *c, const uint8_t *in, size_t len)
{
        if (c->st == CS_UPGRADING) {
                long used = raw_upgrade_rx(c, in, len);
                if (used < 0)
                        return -1;
                in += used;
                len -= (size_t)used;
        }
        while (len || (c->in_frame && !c->f_left)) {
                if (!c->in_frame) {
                        c->fh[c->fh_len++] = *in++;
                        len--;
                        if (c->fh_len < 2)
                                continue;
                        unsigned l7 = c->fh[1] & 0x7f;
                        unsigned need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
                        if (c->fh[1] & 0x80 || c->fh[0] & 0x70) {
                                conn_closed(c, "the server sent a masked frame or reserved bits");
                                return -1;
                        }
                        if (c->fh_len < need)
                                continue;
                        uint64_t n = l7;
                        if (l7 == 126)
                                n = (uint64_t)c->fh[2] << 8 | c->fh[3];
                        else if (l7 == 127)
                                for (int i = 0; i < 8; i++)
                                        n = n << 8 | c->fh[2 + i];
                        c->f_fin = c->fh[0] & 0x80;
                        c->f_op = c->fh[0] & 0x0f;
                        c->f_left = n;
                        c->fh_len = 0;
                        c->in_frame = true;
                        c->ctl_len = 0;
                        if (c->f_op >= 0x8 && (n > sizeof(c->ctl) || !c->f_fin)) {
                                conn_closed(c, "the server sent a malformed control frame");
                                return -1;
                        }
                }
                size_t take = len < c->f_left ? len : (size_t)c->f_left;
                bool end = take == c->f_left;
                if (c->f_op >= 0x8) {
                        memcpy(c->ctl + c->ctl_len, in, take);
                        c->ctl_len += take;
                } else if (c->st == CS_HELLO || c->st == CS_READY) {
                        bool binary = c->f_op == 0 ? c->rx_binary : c->f_op == 0x2;
                        int r = rx_chunk(c, in, take, binary, end && c->f_fin);
                        if (r < 0) {
                                conn_closed(c, r == -EMSGSIZE ? "text message too long" : "out of memory");
                                return -1;
                        }
                        if (c->st == CS_CLOSED)
                                return -1;
                }
                in += take;
                len -= take;
                c->f_left -= take;
                if (end) {
                        c->in_frame = false;
                        if (c->f_op >= 0x8 && raw_control(c) < 0)
                                return -1;
                }
        }
        return 0;
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
                conn_closed(c, why[0] ? why : "connection failed");
                break;
        }
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                c->wsi = wsi;
                c->st = CS_HELLO;
                c->hello_unsent = true;
                lws_callback_on_writable(wsi);
                break;
        case LWS_CALLBACK_CLIENT_WRITEABLE:
                if (c->st == CS_CLOSED)
                        return -1;
                return on_writeable(c, wsi);
        case LWS_CALLBACK_CLIENT_RECEIVE: {
                bool last = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
                int r = rx_chunk(c, in, len, lws_frame_is_binary(wsi), last);
                if (r < 0) {
                        conn_closed(c, r == -EMSGSIZE ? "text message too long" : "out of memory");
                        return -1;
                }
                break;
        }
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
                if (len >= 2) {
                        const unsigned char *p = in;
                        note_error(c->b, "connection %u closed by the server with %u", c->idx,
                                   (unsigned)(p[0] << 8 | p[1]));
                }
                break;
        case LWS_CALLBACK_CLIENT_CLOSED:
                conn_closed(c, "the server closed the connection");
                break;
        case LWS_CALLBACK_RAW_CONNECTED:
                c->wsi = wsi;
                c->upgrade_unsent = true;
                lws_callback_on_writable(wsi);
                break;
        case LWS_CALLBACK_RAW_WRITEABLE:
                if (c->st == CS_CLOSED)
                        return -1;
                return raw_writeable(c, wsi);
        case LWS_CALLBACK_RAW_RX:
                if (c->st == CS_CLOSED)
                        return -1;
                return raw_rx(c, in, len);
        case LWS_CALLBACK_RAW_CLOSE:
                conn_closed(c, "the server closed the connection");
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
        b->connecting++;
        if (!lws_client_connect_via_info(&ci) && c->st == CS_CONNECTING)
                conn_closed(c, "the connection could not be started");
}

/* Starts connections, at most MAX_CONNECTING handshakes at a time, idle ones
 * (all of them) before load ones. */
static void connect_more(lws_sorted_usec_list_t *sul)
{
        struct bench *b = lws_container_of(sul, struct bench, sul_connect);
        unsigned limit = b->phase == PH_CONNECT_IDLE ? b->n_idle : b->n_conns;

        while (b->phase <= PH_CONNECT_LOAD && b->next_connect < limit && b->connecting < MAX_CONNECTING)
                start_connect(b, &b->conns[b->next_connect++]);
}

static void on_progress(lws_sorted_usec_list_t *sul)
{
        struct bench *b = lws_container_of(sul, struct bench, sul_progress);
        const struct bench_result *r = b->r;

        if (b->phase < PH_RUN) {
                fprintf(stderr, "\r\033[Kconnecting: %u/%u open, %llu failed", r->connected + r->idle_connected,
                        b->n_conns, (unsigned long long)r->err_connect);
        } else {
                double t = (double)(now_ns() - b->t0_ns) / 1e9;
                fprintf(stderr, "\r\033[K%s %5.1f/%.0f s  %llu jobs  %.0f jobs/s  p99 %.2f ms  in flight %llu  errors %llu",
                        b->phase == PH_RUN ? "running" : "draining", t, b->o->duration_s,
                        (unsigned long long)r->jobs_total, t > 0 ? (double)r->jobs_total / t : 0.0,
                        (double)hdr_value_at(&r->latency, 99) / 1000.0, (unsigned long long)b->inflight,
                        (unsigned long long)bench_errors(r));
        }
        lws_sul_schedule(b->ctx, 0, &b->sul_progress, on_progress, LWS_US_PER_SEC);
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

static void bench_free(struct bench *b)
{
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
                free(b->conns[k].hs);
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
                ev_timer_init(&c->evt, on_conn_ev_timer, 0, 0);
                if (c->idle)
                        continue;
                c->cap = cap;
                c->slots = calloc(cap, sizeof(*c->slots));
                c->free_idx = calloc(cap, sizeof(*c->free_idx));
                c->unsent = calloc(cap, sizeof(*c->unsent));
                if (!c->slots || !c->free_idx || !c->unsent) {
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
                        ev_io_init(&b.sched_io, on_sched_fd, b.sched_fd, EV_READ);
                        ev_io_start(b.loop, &b.sched_io);
                }
        }
        ret->rss_start_kb = bench_rss_kb();
        b.phase = b.n_idle ? PH_CONNECT_IDLE : PH_CONNECT_LOAD;
        ret->rss_idle_kb = b.n_idle ? -1 : ret->rss_start_kb;
        schedule_connects(&b);
        if (o->progress)
                lws_sul_schedule(b.ctx, 0, &b.sul_progress, on_progress, LWS_US_PER_SEC / 2);
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
