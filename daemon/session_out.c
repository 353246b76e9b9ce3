/* A session's output: replies and result parts queued in order, written as WebSocket
 * frames one writeable callback at a time (or handed to the sink of a socket-less
 * session), so a big result never holds up other connections. */
#include "session_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "daemon.h"
#include "jobs.h"
#include "log.h"
#include "membudget.h"
#include "store.h"
#include "stats.h"
#include "util.h"


static void out_free(struct session *s, struct outmsg *m);

/* A connection whose queued output holds more memory than
 * memory.max_output_buffer_bytes reads too slowly: its queue is dropped, it is closed
 * with 1008 at its next writeable callback, or killed after OVERFLOW_KILL_S when the
 * peer reads nothing at all. Its jobs go on; their results stay retrievable. */
#define OVERFLOW_KILL_S 5
/* A backlog that makes a connection the one to close when memory.max_bytes is full,
 * and past which its input waits (session_in_throttle). */
#define OUT_BACKLOG_BYTES (64u << 10)
/* How long a backlog over the limit may go without the client taking a byte. */
#define OUT_STALL_MS 5000

static void out_overflow(struct session *s, const char *why)
{
        log_warning("session %llu: %s: the client reads too slowly; closing it (its jobs go on)",
                    (unsigned long long)s->id, why);
        s->out_overflow = true;
        session_out_clear(s);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, OVERFLOW_KILL_S);
        lws_callback_on_writable(s->wsi);
}

/* d->out_busy: the sessions whose queue is not empty. */
static void busy_link(struct session *s)
{
        s->busy_prev = NULL;
        s->busy_next = s->d->out_busy;
        if (s->busy_next)
                s->busy_next->busy_prev = s;
        s->d->out_busy = s;
}

static void busy_unlink(struct session *s)
{
        if (s->busy_prev)
                s->busy_prev->busy_next = s->busy_next;
        else if (s->d->out_busy == s)
                s->d->out_busy = s->busy_next;
        else
                return; /* not in the list */
        if (s->busy_next)
                s->busy_next->busy_prev = s->busy_prev;
        s->busy_prev = s->busy_next = NULL;
}

static void out_push(struct session *s, struct outmsg *m)
{
        if (s->sink) {
                s->sink(s->sink_opaque, m->binary, m->head + LWS_PRE, m->head_len, m->job, m->payload, m->payload_len,
                        m->stored ? m->stored_blob : NULL, m->payload_off);
                out_free(s, m);
                return;
        }
        if (s->out_overflow) {
                out_free(s, m);
                return;
        }
        /* What the message itself holds; a part's data is the job's (counted in its
         * result's memory), and a reader that leaves it unread is closed by
         * session_out_check_stalled. */
        m->cost = sizeof(*m) + LWS_PRE + m->head_len;
        if (!membudget_try_take(s->d->mem, MEM_OUTPUT, m->cost)) {
                /* memory.max_bytes is full: a connection with a backlog of its own
                 * is the one to let go; a reply to one that reads goes out all the
                 * same. */
                if (s->out_bytes > OUT_BACKLOG_BYTES) {
                        m->cost = 0;
                        out_free(s, m);
                        out_overflow(s, "memory.max_bytes is full and its output waits unread");
                        return;
                }
                membudget_charge(s->d->mem, MEM_OUTPUT, m->cost);
        }
        if (s->out_tail) {
                s->out_tail->next = m;
        } else {
                s->out_head = m;
                s->out_progress_ms = kiln_mono_ms(); /* a backlog begins */
                busy_link(s);
        }
        s->out_tail = m;
        s->out_queued++;
        s->out_bytes += m->cost;
        s->out_pending += m->head_len + m->payload_len;
        s->d->ws_messages_out++;
        if (s->out_bytes > s->d->cfg->memory.max_output_buffer_bytes) {
                out_overflow(s, "its output buffer is over memory.max_output_buffer_bytes");
                return;
        }
        lws_callback_on_writable(s->wsi);
}

static void out_free(struct session *s, struct outmsg *m)
{
        if (m->cost) {
                membudget_give(s->d->mem, MEM_OUTPUT, m->cost);
                s->out_bytes -= m->cost;
                s->out_pending -= m->head_len + m->payload_len - m->sent;
        }
        free(m->head);
        job_unref(m->job);
        done_text_unref(m->text);
        free(m);
}

int session_read_stored(struct kilnd *d, const uint8_t blob[16], uint64_t off, void *dst, size_t n)
{
        struct store_txn *t;
        int r = store_txn_begin(d->store, false, &t);
        if (r < 0)
                return r;
        r = store_result_read(t, blob, off, dst, n);
        store_txn_abort(t);
        return r;
}

/* Queues a text message; `text` is copied. */
void session_send_text(struct session *s, const char *text, size_t len)
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
void session_send_json(struct session *s, json_t *o, json_t *ref)
{
        if (!o)
                return;
        if (ref)
                json_object_set(o, "ref", ref);
        char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(o);
        if (!text)
                return;
        session_send_text(s, text, strlen(text));
        free(text);
}

void session_send_error(struct session *s, json_t *ref, enum kiln_err code, const char *field, const char *fmt, ...)
{
        struct proto_error e = { .code = code };
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e.message, sizeof(e.message), fmt, ap);
        va_end(ap);
        snprintf(e.field, sizeof(e.field), "%s", field ? field : "");
        char *text = proto_error_json(ref, &e);
        if (text) {
                session_send_text(s, text, strlen(text));
                free(text);
        }
        stats_rejected(s->d, code);
}

void session_send_ok(struct session *s, json_t *ref)
{
        session_send_json(s, json_pack("{s:s}", "op", "ok"), ref);
}

/* Queues a finished job's `done` (with `ref` spliced in when given) and its parts. */
/* Queues the job's `done`: its own head ('{"ref":R,' when the request had a ref)
 * and then the job's text, shared, not copied (a vec.search answer may be hundreds
 * of MiB: copied, it alone would pass memory.max_output_buffer_bytes). A session
 * without a socket gets it in one piece. */
static void send_done_text(struct session *s, struct done_text *d, json_t *ref)
{
        if (s->sink) {
                /* The job's own text, without the ref (session.h): a done of hundreds
                 * of megabytes is not copied for an HTTP request. */
                s->sink(s->sink_opaque, false, (const uint8_t *)d->text, d->len, NULL, NULL, 0, NULL, 0);
                return;
        }
        char *r = ref ? json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        size_t rl = r ? strlen(r) : 0, hl = r ? rl + 8 : 0;
        struct outmsg *m = calloc(1, sizeof(*m));

        if (!m || !(m->head = malloc(LWS_PRE + hl + 1))) {
                free(m);
                free(r);
                log_error("session %llu: out of memory queueing a done", (unsigned long long)s->id);
                return;
        }
        if (r) {
                /* The job's text starts with '{"op":"done",': the head takes its '{'. */
                memcpy(m->head + LWS_PRE, "{\"ref\":", 7);
                memcpy(m->head + LWS_PRE + 7, r, rl);
                m->head[LWS_PRE + 7 + rl] = ',';
        }
        free(r);
        m->head_len = hl;
        m->text = done_text_ref(d);
        m->payload = (const uint8_t *)(d->text + (hl ? 1 : 0));
        m->payload_len = d->len - (hl ? 1 : 0);
        out_push(s, m);
}

void session_send_done(struct session *s, struct job *j, json_t *ref)
{
        if (!j->done) {
                /* Its `done` could not be written (no memory then): the watcher is told
                 * rather than left waiting for it, as an HTTP part request was until
                 * its connection's idle timeout. */
                session_send_error(s, ref, KERR_UNAVAILABLE, "job",
                                   "job %s ended %s, but kilnd had no memory to write its done; ask for it again "
                                   "with result",
                                   j->id_text, kiln_job_state_name(atomic_load(&j->state)));
                return;
        }
        send_done_text(s, j->done, ref);
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
                if (j->result_in_store) {
                        m->stored = true;
                        memcpy(m->stored_blob, j->stored_blob, 16);
                        m->payload_off = j->part_off[i];
                }
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

/* Copies bytes [m->sent, m->sent + n) of a queued message (head, then payload).
 * Returns >= 0, or -errno when a stored payload could not be read (the result was
 * purged meanwhile, or the store failed). */
static int out_copy(struct session *s, const struct outmsg *m, uint8_t *dst, size_t n)
{
        size_t off = m->sent, w = 0;
        if (off < m->head_len) {
                w = m->head_len - off < n ? m->head_len - off : n;
                memcpy(dst, m->head + LWS_PRE + off, w);
        }
        if (w == n)
                return 0;
        if (m->stored)
                return session_read_stored(s->d, m->stored_blob, m->payload_off + (off + w - m->head_len), dst + w,
                                           n - w);
        memcpy(dst + w, m->payload + (off + w - m->head_len), n - w);
        return 0;
}

/* A stored payload that cannot be read: the client cannot be given that part, and
 * a WebSocket message cannot be taken back half sent. */
static int out_read_failed(struct session *s, const struct outmsg *m, int r)
{
        static const char reason[] = "a stored result could not be read";
        log_error("job %s: reading its stored result failed: %s; closing session %llu", m->job->id_text,
                  strerror(-r), (unsigned long long)s->id);
        lws_close_reason(s->wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, (unsigned char *)reason, sizeof(reason) - 1);
        return -1;
}

static void out_pop(struct session *s)
{
        struct outmsg *m = s->out_head;
        s->out_head = m->next;
        if (!s->out_head) {
                s->out_tail = NULL;
                busy_unlink(s);
        }
        s->out_queued--;
        out_free(s, m);
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
                int r = out_copy(s, m, buf + used, n);
                if (r < 0)
                        return out_read_failed(s, m, r);
                used += n;
                m->sent += n;
                s->out_pending -= n;
                if (m->sent < total)
                        break;
                out_pop(s);
        }
        if (used && lws_write(s->wsi, buf, used, LWS_WRITE_RAW) < (int)used)
                return -1;
        return 0;
}

void session_out_check_stalled(struct session *s, int64_t now_ms)
{
        if (!s->out_head || s->out_overflow || !s->wsi || now_ms - s->out_progress_ms < OUT_STALL_MS)
                return;
        if (s->out_pending > s->d->cfg->memory.max_output_buffer_bytes)
                out_overflow(s, "more than memory.max_output_buffer_bytes waits for it and it took none for 5 s");
        /* The results its replies hold count in memory.max_bytes: one that reads
         * nothing must not keep other work waiting for room for good. */
        else if (s->out_pending > OUT_BACKLOG_BYTES && s->d->mem && membudget_pressed(s->d->mem))
                out_overflow(s, "memory.max_bytes is full, work waits for room, and it took none of its replies for 5 s");
        else if (s->in_paused) /* held by session_in_throttle: it would wait for good */
                out_overflow(s, "its input waits for its replies to go out, and it took none for 5 s");
}

/* Input is taken only as fast as the replies to it go out. libwebsockets reads up to
 * 64 KiB of a connection at a time, thousands of small requests that were all
 * answered before any other connection was served: a client pipelining stats
 * requests kept every other client waiting 360 ms (a sanitizer build). Past
 * OUT_BACKLOG_BYTES of queued replies the connection's input is held, and
 * libwebsockets keeps what it read of it until session_writable lets it go on. A
 * client that takes none of its replies for OUT_STALL_MS while held is closed
 * (session_out_check_stalled); one that reads slowly is not idle while held
 * (sessions_idle_sweep), as its pongs wait behind the held input. */
void session_in_throttle(struct session *s)
{
        if (!s->in_paused && s->wsi && !s->sink && s->out_bytes > OUT_BACKLOG_BYTES) {
                lws_rx_flow_control(s->wsi, 0);
                s->in_paused = true;
        }
}

static void in_resume(struct session *s)
{
        if (s->in_paused && s->out_bytes <= OUT_BACKLOG_BYTES / 2) {
                if (!s->in_decoding) /* else when the decode is done (session.c) */
                        lws_rx_flow_control(s->wsi, 1);
                s->in_paused = false;
        }
}

int session_writable(struct kilnd *d, struct session *s)
{
        if (s->out_overflow) {
                static const char reason[] = "output buffer over memory.max_output_buffer_bytes: the client reads "
                                             "too slowly; its jobs go on";
                lws_close_reason(s->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)reason,
                                 sizeof(reason) - 1);
                return -1;
        }
        if (s->kick) {
                lws_close_reason(s->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)s->kick, strlen(s->kick));
                return -1;
        }
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
        s->out_progress_ms = kiln_mono_ms(); /* the socket takes bytes again */
        /* Every connection is HTTP/1.1 (server.c refuses HTTP/2): frames go
         * straight onto its socket. */
        if (writable_framed(s) < 0)
                return -1;
        in_resume(s);
        if (s->out_head)
                lws_callback_on_writable(s->wsi);
        return 0;
}

void session_out_clear(struct session *s)
{
        while (s->out_head) {
                struct outmsg *m = s->out_head;
                s->out_head = m->next;
                out_free(s, m);
        }
        s->out_tail = NULL;
        s->out_queued = 0;
        s->out_pending = 0;
        busy_unlink(s);
}
