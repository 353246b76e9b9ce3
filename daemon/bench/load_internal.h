/* What the files of kiln-bench's load engine share (load.c: the context, the
 * loop, connecting and the libwebsockets callback; load_drive.c: the phases and
 * the closed-loop and open-loop drivers; load_ws.c: WebSocket framing and I/O;
 * load_results.c: the server's replies, the counts and the progress line).
 * Nothing outside the engine includes this; bench.h is its interface.
 *
 * Each load connection keeps a table of in-flight jobs ("slots"), keyed by the
 * submit's `ref` (generation << 16 | slot index, so a reply finds its slot in O(1)
 * and a stale ref never matches). A job is finished by its `done` and the binary
 * parts that follow it, each the one the `done` announced (or, in accept-only
 * mode, by `accepted`). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>
#include <libwebsockets.h>

#include "bench.h"
#include "proto.h"
#include "reply_scan.h"
#include "ws_frame.h"

/* A submit's ref is generation << REF_BITS | slot index. */
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
        bool part_sent;            /* its scenario's binary part is out, the submit not yet */
        char job[48];
};

struct bench;

/* A connection the server has not welcomed this long after it was opened (TCP
 * taken, the upgrade or the hello unanswered) is closed as failed (libwebsockets
 * checks its timeouts seldom on the libev loop: up to 20 s later). */
#define HANDSHAKE_TIMEOUT_S 10

struct conn {
        struct bench *b;
        struct lws *wsi;
        unsigned idx;
        bool idle;
        bool hello_unsent;
        enum conn_state st;
        uint64_t connect_ns;       /* when its connection was started */

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
        uint64_t rx_total;         /* its bytes so far, those not kept included */

        /* parts still expected after a `done`: parts_want[parts_n - parts_left] next */
        unsigned parts_n, parts_left;
        char parts_job[48];
        struct reply_part *parts_want; /* REPLY_MAX_PARTS, load connections only */

        /* raw framing (load_ws.c): the upgrade, then the frame being read */
        bool upgrade_unsent;
        char ws_accept[32];        /* the Sec-WebSocket-Accept the server must send */
        struct kiln_ws_hs hs;      /* the upgrade response so far */
        struct kiln_ws_rx frx;     /* the frame being read */
        bool pong_unsent;
        uint8_t pong[KILN_WS_MAX_CONTROL];
        size_t pong_len;
};

struct bench {
        const struct bench_opts *o;
        struct bench_result *r;
        struct lws_context *ctx;
        struct ev_loop *loop;      /* NULL: libwebsockets' own poll() loop */
        bool raw;                  /* WebSocket framing done by load_ws.c */
        int sched_fd;              /* open loop on libev: a timerfd for the schedule, -1: none */
        ev_io sched_io;
        ev_timer deadline_evt;     /* handshake deadlines on the libev loop (load.c) */
        lws_sorted_usec_list_t sul_deadline; /* the same without it */
        ev_timer phase_evt, progress_evt; /* sul_phase and sul_progress on the libev loop */
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

static inline uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- load.c ---- */

/* Starts more connections from the loop (at once, from a timer). */
void load_schedule_connects(struct bench *b);

/* Runs one of the run's own timers (the phases, the progress line) after s
 * seconds: its libev timer evt on the libev loop, else its sul. */
void load_timer_after(struct bench *b, ev_timer *evt, lws_sorted_usec_list_t *sul, sul_cb_t cb, double s);

/* Marks c closed (idempotent) and counts why: a failed connect or hello, or a
 * connection lost during the run with its jobs. `why` is copied into the first
 * error when it is the first. */
void load_conn_closed(struct conn *c, const char *why);

/* ---- load_drive.c ---- */

/* Ends the run: the service loop returns. */
void load_finish(struct bench *b);

/* Frees slot i of c without recording its job. */
void load_release(struct conn *c, unsigned i);

/* Job i of c ended (ok: finished normally, its latency recorded): frees its slot
 * and keeps the load going. */
void load_complete(struct conn *c, unsigned i, bool ok);

/* A connection finished connecting (welcome) or failed to: moves the phases on. */
void load_conn_resolved(struct bench *b);

/* The libev timer of one connection and the open loop's schedule timerfd. */
void load_on_conn_ev_timer(struct ev_loop *loop, ev_timer *w, int revents);
void load_on_sched_fd(struct ev_loop *loop, ev_io *w, int revents);

/* The end of a phase (the settling, the run, the drain): on the libev loop. */
void load_on_phase_ev(struct ev_loop *loop, ev_timer *w, int revents);

/* ---- load_ws.c ---- */

/* Takes one received chunk of a message (binary or text; last: the message's
 * end). Returns >= 0 or -ENOMEM / -EMSGSIZE. */
int load_rx_chunk(struct conn *c, const void *in, size_t len, bool binary, bool last);

/* The writeable callback with libwebsockets' WebSocket client: one message.
 * Returns -1 to close. */
int load_ws_writeable(struct conn *c, struct lws *wsi);

/* Raw framing: the writeable callback (the upgrade, then every pending frame in
 * one write) and received bytes. Both return -1 to close. */
int load_raw_writeable(struct conn *c, struct lws *wsi);
int load_raw_rx(struct conn *c, const uint8_t *in, size_t len);

/* ---- load_results.c ---- */

/* Keeps the first error of the run in b->r->first_error; later ones are dropped. */
__attribute__((format(printf, 2, 3))) void load_note_error(struct bench *b, const char *fmt, ...);

/* A whole text message arrived (text[len] is NUL). */
void load_on_text(struct conn *c, const char *text, size_t len);

/* A whole binary part arrived (its first bytes are in c->rx, its length in
 * c->rx_total). */
void load_on_part(struct conn *c);

/* The progress line on stderr, once a second (the poll() loop's and the libev
 * loop's timer). */
void load_on_progress(lws_sorted_usec_list_t *sul);
void load_on_progress_ev(struct ev_loop *loop, ev_timer *w, int revents);
