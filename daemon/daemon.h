/* The wiring of kilnd: which subsystem objects exist and who owns them.
 *
 * main.c creates and destroys everything here; each subsystem keeps its own state
 * behind its own opaque pointer and is driven through its functions. Fields marked
 * "loop" are touched only on the libwebsockets thread. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct lws_context;
struct ev_loop;
struct lws_vhost;
struct store;
struct store_writer;
struct sched;
struct mailbox;
struct job;
struct session;
struct auth_tokens;
struct limits_map;

struct kilnd {
        struct kiln_config *cfg;      /* replaced on SIGHUP (loop) */
        const char *config_path;
        bool config_path_optional;    /* the default path may be absent */

        struct store *store;
        struct store_writer *writer;
        struct sched *sched;
        struct mailbox *mailbox;
        struct lws_context *lws;
        struct ev_loop *evloop;       /* libev loop under lws (server.c); NULL: lws' poll() */
        struct lws_vhost *vhost;

        struct auth_tokens *tokens;   /* replaced on SIGHUP (loop) */
        int64_t started_ms;

        /* loop: jobs */
        struct job **table;           /* hash buckets of live jobs */
        size_t table_buckets, table_count;
        struct job **deadlines;       /* min-heap on deadline_ms */
        size_t n_deadlines, cap_deadlines;
        uint32_t committing;          /* submitted, record not yet committed */
        uint32_t hot_recording;       /* answered from a hot copy, record not yet stored */

        /* loop: sessions */
        struct session **sessions;    /* hash buckets by session id */
        size_t session_buckets, n_sessions;
        struct session *idle_head, *idle_tail; /* WebSocket sessions, least recently heard first */
        size_t n_stats_subscribed;
        uint64_t next_session_id;

        /* loop: lifecycle */
        bool draining;                /* SIGTERM seen: refuse new work, finish running */
        int64_t drain_deadline_ms;
        int64_t drain_closing_ms;
        bool closing;                 /* drained: closing connections with 1001 */
        bool quit;                    /* leave the service loop */
        atomic_uint store_ops_in_flight; /* store operations not yet answered */
        struct store_op *store_held, *store_held_tail; /* loop: queued at the end of the iteration */

        /* set by the signal thread, read by the loop */
        atomic_bool sig_term, sig_hup;

        /* counters (loop) */
        uint64_t jobs_finished[6];
        uint64_t ws_messages_in, ws_messages_out;
        uint64_t rejected[16];        /* by enum kiln_err */

        /* loop: limits (limits.h), created on first use, freed by server_stop */
        struct limits_map *token_limits;  /* rate buckets by token name */
        struct limits_map *tenant_limits; /* unfinished and finished jobs by tenant */
};

/* Submits a store operation whose completion will be handled on the loop thread
 * (counts it so shutdown waits for it). */
struct store_op;
void kilnd_store_submit(struct kilnd *d, struct store_op *op);
/* The same from the loop thread: the operation is handed to the writer together
 * with the others of this loop iteration (kilnd_store_flush), so that a burst of
 * messages read in one iteration costs the writer one wake-up and one batch. */
void kilnd_store_submit_loop(struct kilnd *d, struct store_op *op);
/* Hands the writer what kilnd_store_submit_loop held (loop thread, after each
 * iteration of the service loop). */
void kilnd_store_flush(struct kilnd *d);
/* Called on the loop thread when a store operation submitted through
 * kilnd_store_submit has been handled. */
void kilnd_store_answered(struct kilnd *d);
