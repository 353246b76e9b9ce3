/* kiln-bench's results: what the server's replies mean for the jobs in flight
 * (accepted, done, parts, errors), the error counts and the first error, this
 * process's memory, and the progress line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load_internal.h"
#include "reply_scan.h"

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
        return r->err_replies + r->err_failed + r->err_bad_results + r->err_connect + r->err_dropped +
               r->err_lost_jobs + r->unfinished;
}

/* n, or less: the length of s[0..n) without a UTF-8 sequence that s[n] would
 * continue (s[n] must be readable). */
static size_t utf8_cut(const char *s, size_t n)
{
        for (int k = 0; k < 3 && n && ((unsigned char)s[n] & 0xC0) == 0x80; k++)
                n--;
        return n;
}

void load_note_error(struct bench *b, const char *fmt, ...)
{
        char *dst = b->r->first_error, text[1024];
        va_list ap;

        if (dst[0])
                return;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        /* The server's text is cut between characters, not within one. */
        size_t n = strlen(text);
        if (n >= sizeof(b->r->first_error))
                n = utf8_cut(text, sizeof(b->r->first_error) - 1);
        memcpy(dst, text, n);
        dst[n] = '\0';
}

/* Finds the in-flight slot a ref names; -1 when none. */
static int slot_of(struct conn *c, const struct reply *m)
{
        if (!m->has_ref || !c->cap)
                return -1;
        unsigned i = (unsigned)(m->ref & ((1u << REF_BITS) - 1));
        if (i >= c->cap || c->slots[i].st == SL_FREE || c->slots[i].ref != m->ref)
                return -1;
        return (int)i;
}

/* Ends every job the `done` of `job` finishes (the ref's own slot first).
 * Returns how many. */
static unsigned done_for(struct conn *c, int by_ref, const char *job, bool ok, enum slot_state only)
{
        unsigned n = 0;

        if (by_ref >= 0) {
                load_complete(c, (unsigned)by_ref, ok);
                n++;
        }
        for (unsigned i = 0; i < c->cap; i++)
                if (c->slots[i].st == only && job && !strcmp(c->slots[i].job, job)) {
                        load_complete(c, i, ok);
                        n++;
                }
        return n;
}

/* Counts n jobs of `job` whose done or parts were wrong, and why. */
__attribute__((format(printf, 4, 5))) static void bad_result(struct conn *c, unsigned n, const char *job,
                                                             const char *fmt, ...)
{
        char why[200];
        va_list ap;

        if (!n)
                return;
        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        c->b->r->err_bad_results += n;
        load_note_error(c->b, "job %s: %s", job && job[0] ? job : "?", why);
}

/* Ends the jobs whose parts were arriving: finished, or when `why` is not NULL
 * wrong (counted and said). */
static void parts_end(struct conn *c, const char *why)
{
        c->parts_left = 0;
        unsigned n = done_for(c, -1, c->parts_job, !why, SL_PARTS);
        if (why)
                bad_result(c, n, c->parts_job, "%s", why);
}

static void copy_field(char *dst, size_t size, json_t *v)
{
        snprintf(dst, size, "%s", json_string_value(v) ?: "");
}

/* The fields reply_scan keeps, from a whole parse. */
static void reply_from_json(json_t *m, struct reply *r)
{
        json_t *ref = json_object_get(m, "ref"), *parts = json_object_get(m, "parts");

        memset(r, 0, sizeof(*r));
        copy_field(r->op, sizeof(r->op), json_object_get(m, "op"));
        copy_field(r->job, sizeof(r->job), json_object_get(m, "job"));
        copy_field(r->state, sizeof(r->state), json_object_get(m, "state"));
        r->has_ref = json_is_integer(ref);
        r->ref = (uint64_t)json_integer_value(ref);
        r->result_is_object = json_is_object(json_object_get(m, "result"));
        r->parts_is_array = json_is_array(parts);
        r->n_parts = json_array_size(parts);
        for (size_t k = 0; k < r->n_parts && !r->parts_fault; k++) {
                json_t *p = json_array_get(parts, k), *name = json_object_get(p, "name");
                json_t *bytes = json_object_get(p, "bytes");
                if (k == REPLY_MAX_PARTS)
                        r->parts_fault = "more parts than kiln-bench checks";
                else if (!json_is_object(p))
                        r->parts_fault = "a part that is not an object";
                else if (!json_string_length(name))
                        r->parts_fault = "a part without a name";
                else if (json_string_length(name) >= sizeof(r->parts[k].name))
                        r->parts_fault = "a part name too long";
                else if (bytes && (!json_is_integer(bytes) || json_integer_value(bytes) < 0))
                        r->parts_fault = "a part whose \"bytes\" is not a count";
                else {
                        copy_field(r->parts[k].name, sizeof(r->parts[k].name), name);
                        r->parts[k].has_bytes = bytes != NULL;
                        r->parts[k].bytes = (uint64_t)json_integer_value(bytes);
                }
        }
}

/* Replies that need nothing but the fields reply_scan keeps. */
static bool reply_is_routine(const struct reply *r)
{
        return !strcmp(r->op, "accepted") || !strcmp(r->op, "progress") ||
               (!strcmp(r->op, "done") && !strcmp(r->state, "done"));
}

static void on_hello_reply(struct conn *c, const struct reply *r, json_t *m)
{
        struct bench *b = c->b;

        if (!strcmp(r->op, "welcome")) {
                c->st = CS_READY;
                if (c->wsi)
                        lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
                b->connecting--;
                if (c->idle)
                        b->r->idle_connected++;
                else
                        b->r->connected++;
                load_conn_resolved(b);
        } else if (!strcmp(r->op, "error")) {
                const char *msg = json_string_value(json_object_get(m, "message")) ?: "error";
                size_t n = strlen(msg);
                char why[200];
                snprintf(why, sizeof(why), "hello refused: %.*s", (int)utf8_cut(msg, n < 150 ? n : 150), msg);
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                load_conn_closed(c, why);
        }
}

/* `m`, the whole message, is NULL for routine replies (reply_is_routine). */
static void on_reply(struct conn *c, const struct reply *r, json_t *m)
{
        struct bench *b = c->b;
        int i = slot_of(c, r);
        const char *job = r->job[0] ? r->job : NULL;

        if (!strcmp(r->op, "accepted")) {
                if (i >= 0 && c->slots[i].st == SL_SENT) {
                        if (b->o->accept_only) {
                                load_complete(c, (unsigned)i, true);
                        } else {
                                c->slots[i].st = SL_ACCEPTED;
                                snprintf(c->slots[i].job, sizeof(c->slots[i].job), "%s", job ?: "");
                        }
                }
        } else if (!strcmp(r->op, "done")) {
                bool ok = !strcmp(r->state, "done");
                if (i >= 0 && c->slots[i].st != SL_SENT && c->slots[i].st != SL_ACCEPTED)
                        i = -1;
                if (!ok) {
                        json_t *e = json_object_get(m, "error");
                        load_note_error(b, "job %s ended %s: %s", job ?: "?", r->state[0] ? r->state : "?",
                                        json_string_value(json_object_get(e, "message")) ?: "");
                        b->r->err_failed += done_for(c, i, job, false, SL_ACCEPTED);
                } else if (!r->result_is_object || !r->parts_is_array || r->parts_fault) {
                        unsigned n = done_for(c, i, job, false, SL_ACCEPTED);
                        if (!r->result_is_object)
                                bad_result(c, n, job, "its done has no \"result\" object");
                        else if (!r->parts_is_array)
                                bad_result(c, n, job, "its done has no \"parts\" list");
                        else
                                bad_result(c, n, job, "its done lists %s in \"parts\"", r->parts_fault);
                } else if (!r->n_parts) {
                        done_for(c, i, job, true, SL_ACCEPTED);
                } else {
                        /* The parts of the last done end before the next done's. */
                        if (c->parts_left) {
                                char why[80];
                                snprintf(why, sizeof(why), "%u of its %u parts came before the next done",
                                         c->parts_n - c->parts_left, c->parts_n);
                                parts_end(c, why);
                        }
                        /* Finished by its parts: mark every slot this done covers. */
                        if (i >= 0)
                                c->slots[i].st = SL_PARTS;
                        for (unsigned k = 0; k < c->cap; k++)
                                if (c->slots[k].st == SL_ACCEPTED && job && !strcmp(c->slots[k].job, job))
                                        c->slots[k].st = SL_PARTS;
                        if (i >= 0 && !c->slots[i].job[0])
                                snprintf(c->slots[i].job, sizeof(c->slots[i].job), "%s", job ?: "");
                        c->parts_n = c->parts_left = (unsigned)r->n_parts;
                        memcpy(c->parts_want, r->parts, r->n_parts * sizeof(*r->parts));
                        snprintf(c->parts_job, sizeof(c->parts_job), "%s", job ?: "");
                }
        } else if (!strcmp(r->op, "error")) {
                if (i >= 0) {
                        b->r->err_replies++;
                        load_note_error(b, "error reply: %s: %s", json_string_value(json_object_get(m, "code")) ?: "?",
                                        json_string_value(json_object_get(m, "message")) ?: "");
                        load_complete(c, (unsigned)i, false);
                }
        }
        /* progress and anything else: nothing to do */
}

void load_on_text(struct conn *c, const char *text, size_t len)
{
        struct reply r;

        /* Most replies are a job's `accepted` and `done`: read in place. The rest
         * (the hello's answer, errors, failed jobs) are parsed whole. */
        if (c->st != CS_HELLO && reply_scan(text, len, &r) == 0 && reply_is_routine(&r)) {
                on_reply(c, &r, NULL);
                return;
        }
        json_error_t jerr;
        json_t *m = json_loadb(text, len, 0, &jerr);
        if (!json_is_string(json_object_get(m, "op"))) {
                load_note_error(c->b, "unreadable message: %.*s", (int)utf8_cut(text, len < 80 ? len : 80), text);
                json_decref(m);
                return;
        }
        reply_from_json(m, &r);
        if (c->st == CS_HELLO)
                on_hello_reply(c, &r, m);
        else
                on_reply(c, &r, m);
        json_decref(m);
}

/* Whether the part just received (its first bytes in c->rx, c->rx_total long)
 * is `want`, the one its done announced: its job, its name, a payload its dtype
 * and shape call for, and the done's byte count. If not, why says why. */
static bool part_is(struct conn *c, const struct reply_part *want, char *why, size_t size)
{
        struct part_head h;
        uint32_t hlen;

        if (c->rx_len < PROTO_KLNB_PREFIX || proto_frame_prefix((const uint8_t *)c->rx, &hlen) < 0) {
                snprintf(why, size, "part %s: a binary message of %llu bytes that is not a KLNB frame", want->name,
                         (unsigned long long)c->rx_total);
                return false;
        }
        if (hlen > c->rx_total - PROTO_KLNB_PREFIX) {
                snprintf(why, size, "part %s: a header of %u bytes in a frame of %llu", want->name, hlen,
                         (unsigned long long)c->rx_total);
                return false;
        }
        if (hlen > c->rx_len - PROTO_KLNB_PREFIX) {
                snprintf(why, size, "part %s: a header of %u bytes, longer than kiln-bench reads", want->name, hlen);
                return false;
        }
        /* Headers the scan does not take (escapes, text past ASCII, faults) are
         * decoded whole, as kilnd decodes a client's parts. */
        if (part_head_scan(c->rx + PROTO_KLNB_PREFIX, hlen, &h) < 0) {
                struct proto_frame f;
                struct proto_error err;
                if (proto_frame_decode_head((const uint8_t *)c->rx, PROTO_KLNB_PREFIX + hlen, &f, &err) < 0) {
                        size_t n = strlen(err.message);
                        snprintf(why, size, "part %s: %.*s", want->name, (int)utf8_cut(err.message, n < 150 ? n : 150),
                                 err.message);
                        return false;
                }
                snprintf(h.job, sizeof(h.job), "%s", f.job && strlen(f.job) < sizeof(h.job) ? f.job : "?");
                snprintf(h.part, sizeof(h.part), "%s", f.part);
                h.bytes = f.part_bytes;
                proto_frame_clear(&f);
        }
        uint64_t got = c->rx_total - PROTO_KLNB_PREFIX - hlen;
        unsigned at = c->parts_n - c->parts_left + 1;
        if (c->parts_job[0] && strcmp(h.job, c->parts_job))
                snprintf(why, size, "part %s names the job \"%s\"", h.part, h.job);
        else if (strcmp(h.part, want->name))
                snprintf(why, size, "part %u of %u is \"%s\", its done announced \"%s\"", at, c->parts_n, h.part,
                         want->name);
        else if (got != h.bytes)
                snprintf(why, size, "part %s has %llu bytes, its dtype and shape call for %llu", h.part,
                         (unsigned long long)got, (unsigned long long)h.bytes);
        else if (want->has_bytes && got != want->bytes)
                snprintf(why, size, "part %s has %llu bytes, its done announced %llu", h.part,
                         (unsigned long long)got, (unsigned long long)want->bytes);
        else
                return true;
        return false;
}

/* A whole binary part arrived: when it is the last part of a done, the jobs it
 * covers are finished; when it is not the part the done announced, they are
 * errors, and the rest of its parts are not looked at. */
void load_on_part(struct conn *c)
{
        char why[200];

        if (!c->parts_left)
                return;
        if (!part_is(c, &c->parts_want[c->parts_n - c->parts_left], why, sizeof(why)))
                parts_end(c, why);
        else if (!--c->parts_left)
                parts_end(c, NULL);
}

static void print_progress(struct bench *b)
{
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
        load_timer_after(b, &b->progress_evt, &b->sul_progress, load_on_progress, 1);
}

void load_on_progress(lws_sorted_usec_list_t *sul)
{
        print_progress(lws_container_of(sul, struct bench, sul_progress));
}

void load_on_progress_ev(struct ev_loop *loop, ev_timer *w, int revents)
{
        print_progress(lws_container_of(w, struct bench, progress_evt));
}
