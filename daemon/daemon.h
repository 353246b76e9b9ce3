/* The wiring of kilnd: which subsystem objects exist and who owns them.
 *
 * main.c creates and destroys everything here; each subsystem keeps its own state
 * behind its own opaque pointer and is driven through its functions. Fields marked
 * "loop" are touched only on the libwebsockets thread. */
#pragma once

#include <netinet/in.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

struct lws_context;
struct ev_loop;
struct lws_vhost;
struct store;
struct store_writer;
struct storeq;
struct sched;
struct membudget;
struct jobs;
struct objects;
struct mailbox;
struct session;
struct auth_tokens;
struct limits_map;

struct kilnd {
        struct kiln_config *cfg;      /* replaced on SIGHUP (loop) */
        const char *config_path;
        bool config_path_optional;    /* the default path may be absent */

        struct store *store;
        struct store_writer *writer;
        struct storeq *storeq;        /* the loop's way to the writer */
        struct jobs *jobs;            /* the job lifecycle */
        struct objects *objects;      /* stored objects: versions, snapshots (objects.h) */
        struct sched *sched;
        struct membudget *mem;        /* memory.max_bytes: inputs, results, output buffers */
        struct mailbox *mailbox;
        struct lws_context *lws;
        struct ev_loop *evloop;       /* libev loop under lws (server.c); NULL: lws' poll() */
        struct lws_vhost *vhost;

        struct auth_tokens *tokens;   /* replaced on SIGHUP (loop) */
        /* A listening socket systemd passed that is not on a loopback address (its
         * address as text; "" for none): auth.required may not be false then. */
        char public_listener[INET6_ADDRSTRLEN + 8];
        int64_t started_mono;         /* kiln_mono_ms at start, for the uptime */

        /* loop: sessions */
        struct session **sessions;    /* hash buckets by session id */
        size_t session_buckets, n_sessions;
        struct session *idle_head, *idle_tail; /* WebSocket sessions, least recently heard first */
        struct session *out_busy;     /* sessions with output queued (session_out.c) */
        size_t n_stats_subscribed;
        /* Big messages and HTTP bodies being decoded on a worker: a drain waits for
         * them (session.c, http_api.c). */
        unsigned decoding;
        unsigned object_reads;      /* vec.list, vec.info, model.list, list on a worker (session_objects.c,
                                     * session_jobs.c) */
        unsigned objops_waiting;    /* object ops waiting for their turn (session_objects.c) */
        uint64_t next_session_id;

        /* loop: lifecycle */
        bool draining;                /* SIGTERM seen: refuse new work, finish running */
        int64_t drain_deadline_ms;
        int64_t drain_closing_ms;
        bool closing;                 /* drained: closing connections with 1001 */
        atomic_bool quit;             /* leave the service loop (the signal thread reads it) */

        /* set by the signal thread, read by the loop */
        atomic_bool sig_term, sig_hup;

        /* loop: what the store can still take, measured once a second (server.c) */
        bool room_known;
        struct store_room room;

        /* counters (loop) */
        uint64_t ws_messages_in, ws_messages_out;
        /* loop: batches launched a second, over the last tick (stats_tick) */
        uint64_t tick_batches;
        int64_t tick_mono;
        double batches_per_s;
        uint64_t rejected[16];        /* by enum kiln_err */

        /* loop: limits (limits.h), created on first use, freed by server_stop */
        struct limits_map *token_limits;  /* rate buckets by token name */
};
