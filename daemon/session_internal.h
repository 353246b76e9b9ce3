/* What the files of the session module share (session.c: connections, the table and
 * dispatch; session_out.c: the output queue; session_jobs.c: the job ops and the job
 * lifecycle's events). Nothing outside the module includes this. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "auth.h"
#include "limiter.h"
#include "parts.h"
#include "proto.h"
#include "session.h"

struct job;

/* Bytes handed to lws_write per writeable callback: big enough to keep a fast link
 * busy, small enough that one connection never holds the loop for long. */
#define CHUNK (256 * 1024)

/* One queued outgoing message: text, or a KLNB frame whose payload is a part of a
 * job's result (the job is referenced until the frame is sent). The payload is in
 * memory (payload), or in the store (a big result, read piece by piece as the socket
 * takes it: bytes [payload_off, payload_off + payload_len) of blob `stored_blob`). */
struct outmsg {
        struct outmsg *next;
        bool binary;
        bool stored;              /* payload read from the store, not memory */
        uint8_t *head;            /* LWS_PRE bytes of headroom, then head_len bytes */
        size_t head_len;
        struct job *job;          /* binary: payload source */
        struct done_text *text;   /* a `done`: payload source (its text, after the head) */
        const uint8_t *payload;
        size_t payload_len;
        uint64_t payload_off;     /* stored: where the payload begins in the blob */
        uint8_t stored_blob[16];
        size_t cost;              /* bytes of memory it holds itself (not a part's data): counted in out_bytes */
        size_t sent;              /* bytes of head + payload already written */
};

enum idle_state {
        IDLE_HEARD,    /* a frame came in within half of server.idle_timeout_s */
        IDLE_PING_DUE, /* silent that long: a ping goes out at the next writeable */
        IDLE_PINGED,   /* pinged, waiting for any frame back */
        IDLE_CLOSE,    /* silent for the other half too: close at the next writeable */
};

struct obj_req;

struct session {
        struct session *bucket_next;
        uint64_t id;
        struct lws *wsi;
        struct kilnd *d;

        uint8_t *rx;
        size_t rx_len, rx_cap;
        /* A message memory.max_bytes had no room for: its rest is read and dropped,
         * then answered `unavailable` (with its ref, when what arrived named one). */
        uint64_t rx_dropped;      /* its bytes so far; 0: none being dropped */
        json_t *rx_drop_ref;

        struct outmsg *out_head, *out_tail;
        size_t out_queued;
        size_t out_bytes;           /* memory its queued messages hold themselves (memory.max_output_buffer_bytes) */
        uint64_t out_pending;       /* bytes queued and not yet written, from memory or the store */
        int64_t out_progress_ms;    /* monotonic: the last write, or when the queue began */
        bool out_overflow;          /* over that: closing with 1008, nothing more is queued */
        bool in_paused;             /* input held until its replies go out (session_in_throttle) */
        bool in_decoding;           /* input held while a big message is decoded off the loop */
        /* In d->out_busy while out_head is set: the once-a-second stall check and
         * draining look at these sessions alone, not at every connection. */
        struct session *busy_prev, *busy_next;

        bool authed;
        const char *kick;           /* closing with 1008 for this reason (no hello in time, token revoked) */
        int64_t opened_ms;          /* monotonic */
        struct auth_identity who;

        struct parts *parts;        /* binary parts waiting for their message (parts.h) */

        bool stats_subscribed;

        /* Idle connections (server.idle_timeout_s): WebSocket sessions in order of
         * their last received frame (or the ping sent since), oldest first. */
        struct session *idle_prev, *idle_next;
        int64_t idle_since_us;
        enum idle_state idle;

        struct token_bucket bucket; /* limits.rate_per_s when there is no token */
        uint32_t inflight;          /* jobs it submitted that have not finished */
        /* Its object ops (session_objects.c): those waiting for their turn, in the
         * order they came; changes at the store writer and reads running, not yet
         * answered. */
        struct obj_req *objops_head, *objops_tail;
        struct obj_req *objops_writing; /* the changes at the store writer */
        uint32_t objops_at_writer, objops_reading;

        /* A session without a WebSocket (the HTTP API): its frames go to sink. */
        session_sink_fn sink;
        void *sink_opaque;
};


/* ---- session.c ---- */

/* The session with this id, or NULL (it has gone). */
struct session *session_find(struct kilnd *d, uint64_t id);
/* The session's parts store, created on first use (NULL on ENOMEM). */
struct parts *session_parts(struct session *s);

/* ---- session_out.c: replies, in order, written as the socket takes them ---- */

/* Queues a text message; `text` is copied. */
void session_send_text(struct session *s, const char *text, size_t len);
/* Sets "ref" (when given), encodes, queues, and drops the object. */
void session_send_json(struct session *s, json_t *o, json_t *ref);
/* An error reply (SPEC §2.5), counted in the stats by code. */
void session_send_error(struct session *s, json_t *ref, enum kiln_err code, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
void session_send_ok(struct session *s, json_t *ref);
/* Queues a finished job's `done` (with `ref` spliced in when given) and its parts. */
void session_send_done(struct session *s, struct job *j, json_t *ref);
/* Frees every queued message (closing). */
void session_out_clear(struct session *s);
/* After a message is handled: holds the connection's input while its queued replies
 * are over OUT_BACKLOG_BYTES; session_writable lets it go on when half are written. */
void session_in_throttle(struct session *s);
/* Closes (1008) a connection that has more than memory.max_output_buffer_bytes
 * waiting to be written, from memory or the store, and has taken none of it for
 * OUT_STALL_MS: a client that reads nothing, or far too slowly. Loop thread, once
 * a second. */
void session_out_check_stalled(struct session *s, int64_t now_ms);

/* ---- session_jobs.c: the job ops ---- */

void session_op_submit(struct session *s, const struct proto_req *rq);
/* status, result, watch, cancel */
void session_op_job(struct session *s, const struct proto_req *rq);
void session_op_list(struct session *s, const struct proto_req *rq);
void session_op_cache_purge(struct session *s, const struct proto_req *rq);

/* ---- session_objects.c: the stored-object ops (model.*, vec.*) ---- */

void session_op_object(struct session *s, const struct proto_req *rq);
/* Lets go of the session's object ops that wait (it is closing): nothing they
 * would change is stored. */
void session_objects_close(struct session *s);

