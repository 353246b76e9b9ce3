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
        return r->err_replies + r->err_failed + r->err_connect + r->err_dropped + r->err_lost_jobs + r->unfinished;
}

void load_note_error(struct bench *b, const char *fmt, ...)
{
        va_list ap;

        if (b->r->first_error[0])
                return;
        va_start(ap, fmt);
        vsnprintf(b->r->first_error, sizeof(b->r->first_error), fmt, ap);
        va_end(ap);
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

/* Ends every job the `done` of `job` finishes (the ref's own slot first). */
static void done_for(struct conn *c, int by_ref, const char *job, bool ok, enum slot_state only)
{
        if (by_ref >= 0)
                load_complete(c, (unsigned)by_ref, ok);
        for (unsigned i = 0; i < c->cap; i++)
                if (c->slots[i].st == only && job && !strcmp(c->slots[i].job, job))
                        load_complete(c, i, ok);
}

static void copy_field(char *dst, size_t size, json_t *v)
{
        snprintf(dst, size, "%s", json_string_value(v) ?: "");
}

/* The fields reply_scan keeps, from a whole parse. */
static void reply_from_json(json_t *m, struct reply *r)
{
        json_t *ref = json_object_get(m, "ref");

        memset(r, 0, sizeof(*r));
        copy_field(r->op, sizeof(r->op), json_object_get(m, "op"));
        copy_field(r->job, sizeof(r->job), json_object_get(m, "job"));
        copy_field(r->state, sizeof(r->state), json_object_get(m, "state"));
        r->has_ref = json_is_integer(ref);
        r->ref = (uint64_t)json_integer_value(ref);
        r->n_parts = json_array_size(json_object_get(m, "parts"));
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
                char why[200];
                snprintf(why, sizeof(why), "hello refused: %s",
                         json_string_value(json_object_get(m, "message")) ?: "error");
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
                        b->r->err_failed += (i >= 0);
                        load_note_error(b, "job %s ended %s: %s", job ?: "?", r->state[0] ? r->state : "?",
                                        json_string_value(json_object_get(e, "message")) ?: "");
                        done_for(c, i, job, false, SL_ACCEPTED);
                } else if (!r->n_parts) {
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
                        c->parts_left = (unsigned)r->n_parts;
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
                load_note_error(c->b, "unreadable message: %.80s", text);
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

/* A whole binary part arrived (its first bytes are in c->rx): when it is the
 * last part of a done, the jobs it covers are finished. */
void load_on_part(struct conn *c)
{
        if (!c->parts_left)
                return;
        if (--c->parts_left)
                return;
        for (unsigned k = 0; k < c->cap; k++)
                if (c->slots[k].st == SL_PARTS && !strcmp(c->slots[k].job, c->parts_job))
                        load_complete(c, k, true);
}

void load_on_progress(lws_sorted_usec_list_t *sul)
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
        lws_sul_schedule(b->ctx, 0, &b->sul_progress, load_on_progress, LWS_US_PER_SEC);
}
