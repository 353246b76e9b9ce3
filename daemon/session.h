/* One WebSocket connection: its messages in, its queue of frames out, and the
 * replies to every op of SPEC §2. Everything here runs on the loop thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobs.h"
#include "proto.h"

struct kilnd;
struct job;
struct lws;
struct session;
struct auth_identity;

/* Receives every frame a session without a WebSocket would have sent: a text
 * message (binary false; head/head_len is the JSON; a `done` comes without its
 * "ref", as the job's own text, not copied) or a KLNB part (head is the
 * frame header, payload the part's bytes, valid while the caller holds a
 * reference to `job`, which it must take with job_ref to keep them). A big stored
 * result's payload is NULL instead, with `stored_blob` and `stored_off` saying
 * where it is in the store (read it with session_read_stored as it is written out). */
typedef void (*session_sink_fn)(void *opaque, bool binary, const uint8_t *head, size_t head_len, struct job *job,
                                const uint8_t *payload, size_t payload_len, const uint8_t *stored_blob,
                                uint64_t stored_off);

/* Copies bytes [off, off + n) of stored result blob `blob` into dst: one short
 * read transaction (it never waits for the writer), so that a big result is read
 * piece by piece as a socket takes it. Returns >= 0, or -errno when it cannot be
 * read (purged meanwhile, or the store failed). */
int session_read_stored(struct kilnd *d, const uint8_t blob[16], uint64_t off, void *dst, size_t n);

/* A session for one HTTP API request, signed in as `who`: the ops it is given run
 * exactly as a WebSocket client's would (roles, limits, tenants) and its replies go
 * to sink. Returns NULL on ENOMEM. */
struct session *session_new_internal(struct kilnd *d, const struct auth_identity *who, session_sink_fn sink,
                                     void *opaque);
/* Drops it; later replies for it are discarded. Accepts NULL. */
void session_free_internal(struct kilnd *d, struct session *s);
/* Runs one client message, already parsed (proto_decode_json), through the
 * session; takes over msg. */
void session_handle_json(struct session *s, json_t *msg);

/* Connection lifecycle, from server.c's protocol callback. */
int session_open(struct kilnd *d, struct session *s, struct lws *wsi);
void session_close(struct kilnd *d, struct session *s);
/* A received fragment; returns -1 when the connection must close. */
int session_receive(struct kilnd *d, struct session *s, const void *in, size_t len);
/* The socket can take more; writes one frame fragment. Returns -1 to close. */
int session_writable(struct kilnd *d, struct session *s);
/* A frame (or pong) came in on the session's WebSocket: it is not idle. */
void session_seen(struct kilnd *d, struct session *s);
/* Pings sessions silent for half of server.idle_timeout_s, closes those silent for
 * the other half too (from the once-a-second tick). */
void sessions_idle_sweep(struct kilnd *d);
/* Closes (1008) every connection that has left more than
 * memory.max_output_buffer_bytes unread for a few seconds (once a second; only
 * connections with output queued are looked at). */
void sessions_output_sweep(struct kilnd *d);
/* Once a second: closes a connection that has not signed in within
 * server.handshake_timeout_s of opening, and drops the binary parts that waited
 * server.idle_timeout_s for their message without a frame of theirs arriving
 * (not while kilnd itself holds the connection's input back). */
void sessions_input_sweep(struct kilnd *d);
/* After SIGHUP replaced the token set: a connection whose token is no longer in it
 * (or now names another tenant) is closed with 1008, one whose role changed has
 * its new role from now on. With auth.required, a connection that signed in with
 * no token (auth was off) is closed too. */
void sessions_recheck_tokens(struct kilnd *d);
size_t session_struct_size(void);

/* Sessions that still have frames queued to send (draining waits for them). */
size_t sessions_output_pending(struct kilnd *d);
/* Asks every connection to close with 1001 (going away) once its queue is sent. */
void sessions_close_all(struct kilnd *d);

/* The job lifecycle's events (jobs.h), routed to the sessions they name: handed to
 * jobs_new by main.c. */
struct job_events sessions_job_events(struct kilnd *d);

/* Pushes the stats message to every subscribed session (once a second). */
void sessions_push_stats(struct kilnd *d);
