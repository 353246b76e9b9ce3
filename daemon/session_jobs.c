/* The job ops of a session (submit, status, result, watch, cancel, list,
 * cache.purge) and the job lifecycle's events, routed to the sessions they name. */
#include "session_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "jobs.h"
#include "log.h"
#include "objects.h"
#include "store.h"
#include "storeq.h"
#include "textbuf.h"
#include "util.h"

/* ---- job events ---- */

/* Written directly (one per submission; the job id and state names need no
 * escaping): the same text send_json makes of the object, without building it. */
static void send_accepted(struct session *s, struct job *j, json_t *ref, bool cached)
{
        const char *state = kiln_job_state_name(atomic_load(&j->state));
        char small[256], *r = NULL, *text = small;
        size_t cap = 160; /* the text around the ref, with an integer ref */

        if (ref && !json_is_integer(ref)) {
                r = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
                if (!r)
                        return; /* no memory for the ref */
                cap += strlen(r);
        }
        if (cap > sizeof(small))
                text = malloc(cap);
        else
                cap = sizeof(small);
        if (!text)
                goto out;
        struct textbuf b = textbuf_init(text, cap);
        textbuf_str(&b, "{\"op\":\"accepted\",\"job\":\"");
        textbuf_str(&b, j->id_text);
        textbuf_str(&b, "\",\"state\":\"");
        textbuf_str(&b, state);
        textbuf_str(&b, cached ? "\",\"cached\":true" : "\",\"cached\":false");
        if (ref) {
                textbuf_str(&b, ",\"ref\":");
                if (r)
                        textbuf_str(&b, r);
                else
                        textbuf_i64(&b, (int64_t)json_integer_value(ref));
        }
        textbuf_put(&b, "}", 1);
        if (!textbuf_over(&b))
                session_send_text(s, text, b.len);
out:
        if (text != small)
                free(text);
        free(r);
}

/* ---- what the job lifecycle tells sessions (struct job_events, loop thread) ---- */

static void ev_accepted(void *ctx, uint64_t session, struct job *j, json_t *ref, bool cached)
{
        struct session *s = session_find(ctx, session);
        if (s)
                send_accepted(s, j, ref, cached);
}

static void ev_rejected(void *ctx, uint64_t session, json_t *ref, enum kiln_err code, const char *field,
                        const char *message)
{
        struct session *s = session_find(ctx, session);
        if (s)
                session_send_error(s, ref, code, field, "%s", message);
}

/* Appends `,"name":text` for each JSON value of v[0..n) that o does not name: the
 * text (checked by the job when it took it) goes in as it is, so that a big one
 * (sched.jobshop's schedule) is never parsed and encoded again here, on the loop
 * thread. `head` is o's compact text; returns the message, malloc'd, or NULL. */
static char *progress_text(const char *head, json_t *o, const struct kiln_value *v, int n)
{
        size_t len = strlen(head), cap = len + 1;
        char *names[KILN_MAX_PROGRESS_VALUES] = { 0 };
        for (int i = 0; i < n; i++) {
                bool again = false;
                for (int k = 0; k < i; k++)
                        again |= names[k] && !strcmp(v[k].name, v[i].name);
                if (v[i].type != KILN_V_JSON || again || json_object_get(o, v[i].name))
                        continue;
                json_t *name = json_string(v[i].name);
                names[i] = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
                json_decref(name);
                if (names[i])
                        cap += strlen(names[i]) + strlen(v[i].text) + 2;
        }
        char *text = malloc(cap);
        if (text) {
                memcpy(text, head, len - 1); /* all but the closing brace */
                len--;
                for (int i = 0; i < n; i++) {
                        if (names[i])
                                len += (size_t)sprintf(text + len, ",%s:%s", names[i], v[i].text);
                }
                memcpy(text + len, "}", 2);
        }
        for (int i = 0; i < n; i++)
                free(names[i]);
        return text;
}

/* `progress` with the kind's own fields (SPEC §2.2: sched.jobshop's best,
 * lower_bound and the schedule `starts`), which never replace the protocol's own. */
static void ev_progress(void *ctx, uint64_t session, struct job *j)
{
        struct session *s = session_find(ctx, session);
        if (!s)
                return;
        json_t *o = json_pack("{s:s, s:s, s:i}", "op", "progress", "job", j->id_text, "pct", atomic_load(&j->pct));
        struct kiln_value v[KILN_MAX_PROGRESS_VALUES];
        int n = jobs_progress_values(j, v, KILN_MAX_PROGRESS_VALUES);
        bool spliced = false;
        for (int i = 0; o && i < n; i++) {
                if (json_object_get(o, v[i].name))
                        continue;
                if (v[i].type == KILN_V_JSON) {
                        spliced = true; /* added to the text below */
                        continue;
                }
                json_t *x = v[i].type == KILN_V_NUM    ? (isfinite(v[i].num) ? json_real(v[i].num) : json_null())
                            : v[i].type == KILN_V_INT  ? json_integer(v[i].i)
                            : v[i].type == KILN_V_BOOL ? json_boolean(v[i].b)
                            : v[i].type == KILN_V_STR  ? json_string(v[i].text)
                                                       : json_null();
                json_object_set_new(o, v[i].name, x);
        }
        if (!spliced) {
                session_send_json(s, o, NULL);
        } else {
                char *head = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
                char *text = head ? progress_text(head, o, v, n) : NULL;
                if (text)
                        session_send_text(s, text, strlen(text));
                else
                        log_error("job %s: out of memory writing its progress", j->id_text);
                free(text);
                free(head);
                json_decref(o);
        }
        jobs_progress_values_free(v, n);
}

static void ev_done(void *ctx, uint64_t session, struct job *j, json_t *ref)
{
        struct session *s = session_find(ctx, session);
        if (s)
                session_send_done(s, j, ref);
}

static void ev_ended(void *ctx, uint64_t session)
{
        struct session *s = session_find(ctx, session);
        if (s && s->inflight)
                s->inflight--;
}

struct job_events sessions_job_events(struct kilnd *d)
{
        return (struct job_events){ .ctx = d, .accepted = ev_accepted, .rejected = ev_rejected,
                                    .progress = ev_progress, .done = ev_done, .ended = ev_ended };
}

/* ---- submit ---- */

/* Refuses a submission that came with binary parts its kind does not take. */
static bool consume_parts(struct session *s, json_t *ref, const struct kiln_kind *kind)
{
        const char *left = s->parts && ref ? parts_left(s->parts, ref) : NULL;
        if (!left)
                return true;
        char field[64];
        snprintf(field, sizeof(field), "parts.%s", left);
        session_send_error(s, ref, KERR_BAD_PARAMS, field, "%s takes no binary part \"%s\"", kind->name, left);
        parts_drop(s->parts, ref);
        return false;
}

/* What is the connection's to check (draining, its parts, its in-flight limit);
 * the rest of the submission is the job lifecycle's (jobs_submit). */
void session_op_submit(struct session *s, const struct proto_req *rq)
{
        struct kilnd *d = s->d;
        json_t *ref = rq->ref;

        const struct kiln_kind *kind = kiln_kind_find(rq->submit.kind);
        if ((d->draining || !kind || s->inflight >= d->cfg->limits.max_inflight_per_conn) && s->parts && ref)
                parts_drop(s->parts, ref); /* refused: its parts go too */
        if (d->draining) {
                session_send_error(s, ref, KERR_SHUTTING_DOWN, NULL, "kilnd is shutting down and takes no new jobs");
                return;
        }
        if (!kind) {
                session_send_error(s, ref, KERR_UNKNOWN_KIND, "kind", "unknown job kind \"%s\"", rq->submit.kind);
                return;
        }
        if (s->inflight >= d->cfg->limits.max_inflight_per_conn) {
                session_send_error(s, ref, KERR_RATE_LIMITED, NULL,
                           "this connection has %u unfinished jobs, its maximum (limits.max_inflight_per_conn); "
                           "wait for some to finish",
                           s->inflight);
                return;
        }
        /* The kind's inputs sent as binary parts with this message's ref. */
        struct part *parts[KILN_MAX_INPUTS];
        size_t n_parts = 0;
        struct proto_error err;
        for (size_t i = 0; kind->inputs && kind->inputs[i].name && s->parts && ref; i++) {
                int k = parts_take(s->parts, ref, kind->inputs[i].name, &parts[n_parts], NULL, &err);
                if (k >= 0) {
                        n_parts++;
                } else if (k != -ENOENT) {
                        while (n_parts)
                                part_free(parts[--n_parts]);
                        parts_drop(s->parts, ref);
                        session_send_error(s, ref, err.code, err.field, "%s", err.message);
                        return;
                }
        }
        if (!consume_parts(s, ref, kind)) {
                while (n_parts)
                        part_free(parts[--n_parts]);
                return;
        }
        struct job_submit sub = {
                .kind = rq->submit.kind,
                .params = rq->submit.params,
                .tenant = s->who.tenant,
                .priority = rq->submit.priority,
                .timeout_ms = rq->submit.timeout_ms,
                .key = rq->submit.key,
                .cache = rq->submit.cache,
                .watch = rq->submit.watch,
                .session = s->id,
                .ref = ref,
                .parts = parts,
                .n_parts = n_parts,
        };
        int r = jobs_submit(d->jobs, &sub, &err);
        if (r < 0)
                session_send_error(s, ref, err.code, err.field[0] ? err.field : NULL, "%s", err.message);
        else if (r > 0)
                s->inflight++;
}

/* ---- ops answered from the store ---- */

struct store_req {
        struct store_op op;
        struct mail mail;
        struct objects_work work;   /* a list, read on a worker */
        struct kilnd *d;
        uint64_t session_id;
        enum kiln_op kind;
        json_t *ref;
        char tenant[64];
        char *list_kind;
        /* list: read on a worker (list_read), not by the store writer */
        struct store_list_query list;
        struct store_job **list_out;
        size_t list_n;
        bool list_more;
        uint8_t list_next[16];
};

static void store_req_free(struct store_req *r)
{
        store_job_free(r->op.job_out);
        free(r->op.result_out);
        for (size_t i = 0; i < r->list_n; i++)
                store_job_free(r->list_out[i]);
        free(r->list_out);
        free(r->list_kind);
        json_decref(r->ref);
        free(r);
}

static json_t *iso8601(int64_t ms)
{
        if (ms <= 0)
                return json_null();
        char buf[96];
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
        return json_string(buf);
}

/* `attempts`: device runs started for the job, retries after a device failure
 * included (jobs.max_retries bounds them). */
static void send_status(struct session *s, json_t *ref, const char *id, const char *kind, int state, int pct,
                        int64_t submitted, int64_t finished, unsigned attempts)
{
        session_send_json(s,
                  json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:o, s:i}", "op", "status", "job", id, "kind", kind,
                            "state", kiln_job_state_name(state), "pct", pct, "submitted", iso8601(submitted),
                            "finished", iso8601(kiln_job_state_is_final(state) ? finished : 0), "attempts",
                            (int)attempts),
                  ref);
}

/* The `ok` of a `watch`, or of a `result` whose `done` is still to come: the
 * job's id and state. The state may already be final (finished, its `done` on
 * its way once its record is stored): an HTTP request for its part waits for
 * that `done` rather than answer "not finished". */
static void send_watching(struct session *s, struct job *j, json_t *ref)
{
        session_send_json(s, json_pack("{s:s, s:s, s:s}", "op", "ok", "job", j->id_text, "state",
                                       kiln_job_state_name(atomic_load(&j->state))),
                          ref);
}

/* The reply to `watch` or `result` of a finished job: `ok` for a watch, then the
 * `done` and its parts (carrying the request's ref for a result). */
static void send_finished(struct session *s, struct job *j, enum kiln_op op, json_t *ref)
{
        if (op == KOP_WATCH)
                send_watching(s, j, ref);
        /* With the ref of the op that asked for it, as a watch of a job still
         * running gets it when it ends. */
        session_send_done(s, j, ref);
}

static void send_list(struct session *s, struct store_req *r)
{
        json_t *arr = json_array();
        char last[37] = "";
        for (size_t i = 0; i < r->list_n; i++) {
                const struct store_job *rec = r->list_out[i];
                int state = rec->state;
                struct job *live = jobs_find(s->d->jobs, rec->id);
                if (live)
                        state = atomic_load(&live->state);
                /* The store matched an unfinished record on any state (store.h): the
                 * job's own state decides. The page may come out shorter than
                 * `limit`; `next` goes on after the last record read all the same. */
                if (r->list.state >= 0 && state != r->list.state)
                        continue;
                kiln_uuid_format(rec->id, last);
                json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:o}", "job", last, "kind", rec->kind, "state",
                                                     kiln_job_state_name(state), "submitted",
                                                     iso8601(rec->submitted_ms)));
        }
        json_t *next = json_null();
        if (r->list_more) {
                kiln_uuid_format(r->list_next, last);
                next = json_string(last);
        }
        session_send_json(s, json_pack("{s:s, s:o, s:o}", "op", "jobs", "jobs", arr, "next", next), r->ref);
}

static void store_reply(struct store_req *r)
{
        struct kilnd *d = r->d;
        struct session *s = session_find(d, r->session_id);

        if (!s)
                goto out;
        if (r->op.status < 0 && r->op.status != -ENOENT) {
                session_send_error(s, r->ref, KERR_INTERNAL, NULL, "reading the job store failed: %s",
                           strerror(-r->op.status));
                goto out;
        }
        if (r->kind == KOP_LIST) {
                send_list(s, r);
                goto out;
        }
        if (r->kind == KOP_CACHE_PURGE) {
                session_send_json(s, json_pack("{s:s, s:I}", "op", "ok", "purged", (json_int_t)r->op.purge_n), r->ref);
                goto out;
        }
        struct store_job *rec = r->op.job_out;
        if (r->op.status == -ENOENT || !rec || strcmp(rec->tenant, r->tenant)) {
                session_send_error(s, r->ref, KERR_NOT_FOUND, "job", "no such job");
                goto out;
        }
        char id[37];
        kiln_uuid_format(rec->id, id);
        /* A job still live in memory answers for itself (the record may lag behind). */
        struct job *live = jobs_find(d->jobs, rec->id);
        switch (r->kind) {
        case KOP_STATUS:
                if (live)
                        send_status(s, r->ref, id, rec->kind, atomic_load(&live->state), atomic_load(&live->pct),
                                    live->submitted_ms, live->finished_ms, job_attempts(live));
                else
                        send_status(s, r->ref, id, rec->kind, rec->state,
                                    kiln_job_state_is_final(rec->state) ? 100 : 0, rec->submitted_ms,
                                    rec->finished_ms, rec->attempts);
                break;
        case KOP_CANCEL: {
                /* The role is looked at again: a reload may have lowered or revoked
                 * it while the store was read. */
                if (!s->authed || s->kick || s->who.role < AUTH_ROLE_SUBMIT) {
                        session_send_error(s, r->ref, KERR_FORBIDDEN, "op", "cancel needs the submit role; this token has "
                                           "the %s role", auth_role_name(s->who.role));
                        break;
                }
                /* Live by now (it was not when asked): cancelled as on the live path. */
                int was = live ? atomic_load(&live->state) : rec->state;
                if (live)
                        jobs_cancel(d->jobs, live);
                session_send_json(s, json_pack("{s:s, s:s, s:s, s:s}", "op", "ok", "job", id, "state",
                                               kiln_job_state_name(live ? atomic_load(&live->state) : rec->state),
                                               "was", kiln_job_state_name(was)),
                                  r->ref);
                break;
        }
        case KOP_WATCH:
        case KOP_RESULT:
                if (live && live->delivered) {
                        /* Finished, its record waiting for room in the store: complete. */
                        send_finished(s, live, r->kind, r->ref);
                        break;
                }
                if (live) {
                        jobs_watch(d->jobs, live, s->id, r->ref);
                        send_watching(s, live, r->ref);
                        break;
                }
                struct job *j = NULL;
                /* Its result is read from the store as the socket takes it. */
                int k = jobs_load_finished(d->jobs, rec, NULL, 0, true, &j);
                if (k == -EAGAIN) {
                        session_send_error(s, r->ref, KERR_UNAVAILABLE, NULL,
                                           "kilnd's memory (memory.max_bytes) has no room to read job %s's stored "
                                           "result back now; retry later", id);
                } else if (k == -EFBIG) {
                        session_send_error(s, r->ref, KERR_TOO_LARGE, "job",
                                           "reading job %s's stored result back would take more memory than "
                                           "memory.max_bytes lets kilnd hold (it was lowered since the job ran)", id);
                } else if (k < 0) {
                        session_send_error(s, r->ref, KERR_INTERNAL, "job", "the stored result of job %s is unreadable",
                                   id);
                } else {
                        send_finished(s, j, r->kind, r->ref);
                }
                job_unref(j);
                break;
        default:
                break;
        }
out:
        store_req_free(r);
}

static void on_store_reply_mail(struct mail *m)
{
        struct store_req *r = container_of(m, struct store_req, mail);
        storeq_answered(r->d->storeq);
        store_reply(r);
}

static void on_store_reply(struct store_op *op)
{
        struct store_req *r = container_of(op, struct store_req, op);
        r->mail.fn = on_store_reply_mail;
        mailbox_post(r->d->mailbox, &r->mail);
}

/* A list reads a committed snapshot in a read transaction of its own, on a
 * worker: not in the writer's transaction, where a tenant's lists held up every
 * tenant's commits. Worker thread. */
static void list_read(struct objects_work *w)
{
        struct store_req *r = container_of(w, struct store_req, work);
        struct store_txn *t;
        int k = store_txn_begin(r->d->store, false, &t);
        if (k >= 0) {
                k = store_job_list(t, &r->list, &r->list_out, &r->list_n, &r->list_more,
                                   r->list_next);
                store_txn_abort(t);
        }
        r->op.status = k;
}

static void on_list_read(struct mail *m)
{
        struct store_req *r = container_of(m, struct store_req, work.mail);
        r->d->object_reads--; /* draining waits for it (server.c, check_drain) */
        store_reply(r);
}

static struct store_req *store_req_new(struct session *s, const struct proto_req *rq)
{
        struct store_req *r = calloc(1, sizeof(*r));
        if (!r) {
                session_send_error(s, rq->ref, KERR_INTERNAL, NULL, "out of memory");
                return NULL;
        }
        r->d = s->d;
        r->session_id = s->id;
        r->kind = rq->op;
        r->ref = rq->ref ? json_incref(rq->ref) : NULL;
        snprintf(r->tenant, sizeof(r->tenant), "%s", s->who.tenant);
        return r;
}

static void ask_store(struct session *s, const struct proto_req *rq, enum store_op_type type)
{
        struct store_req *r = store_req_new(s, rq);
        if (!r)
                return;
        r->op.type = type;
        r->op.done = on_store_reply;
        if (type == STORE_OP_CACHE_PURGE) {
                r->list_kind = rq->purge.kind ? strdup(rq->purge.kind) : NULL;
                r->op.purge_kind = r->list_kind;
                r->op.purge_tenant = r->tenant; /* an admin purges its own tenant's entries */
        } else {
                memcpy(r->op.id, rq->job.id, 16);
        }
        storeq_submit_loop(s->d->storeq, &r->op);
}

/* `list` reads in a transaction of its own on an objects worker: never in the
 * writer's, where it held every tenant's commits. */
static void list_jobs(struct session *s, const struct proto_req *rq)
{
        struct store_req *r = store_req_new(s, rq);
        if (!r)
                return;
        r->list_kind = rq->list.kind ? strdup(rq->list.kind) : NULL;
        r->list.tenant = r->tenant;
        r->list.state = rq->list.state;
        r->list.kind = r->list_kind;
        r->list.has_after = rq->list.has_after;
        memcpy(r->list.after, rq->list.after, 16);
        r->list.limit = rq->list.limit;
        r->work.run = list_read;
        r->work.prompt = true;
        r->work.mail.fn = on_list_read;
        s->d->object_reads++;
        objects_work_submit(s->d->objects, &r->work);
}

/* ---- the job ops ---- */

void session_op_job(struct session *s, const struct proto_req *rq)
{
        struct kilnd *d = s->d;
        struct job *j = jobs_find(d->jobs, rq->job.id);

        /* Another tenant's job is looked up in the store like an id nobody has,
         * so that neither the reply nor its order among the others tells the two
         * apart: store_reply answers both `not_found`. */
        if (!j || strcmp(j->tenant, s->who.tenant)) {
                ask_store(s, rq, STORE_OP_JOB_GET);
                return;
        }
        int state = atomic_load(&j->state);
        switch (rq->op) {
        case KOP_STATUS:
                send_status(s, rq->ref, j->id_text, j->kind->name, state, atomic_load(&j->pct), j->submitted_ms,
                            j->finished_ms, job_attempts(j));
                break;
        case KOP_WATCH:
        case KOP_RESULT:
                if (j->delivered) {
                        /* Finished, its record waiting for room in the store: its
                         * watchers have had their `done`, and so does this one. */
                        send_finished(s, j, rq->op, rq->ref);
                        break;
                }
                /* Not finished yet: the `done` (and parts) follow when it is. */
                if (jobs_watch(d->jobs, j, s->id, rq->ref) < 0) {
                        session_send_error(s, rq->ref, KERR_INTERNAL, NULL, "out of memory");
                        break;
                }
                send_watching(s, j, rq->ref);
                break;
        case KOP_CANCEL: {
                /* `was`: whether this cancel found it unfinished (a job cancelled
                 * before reads `cancelled` in both). */
                int was = atomic_load(&j->state);
                jobs_cancel(d->jobs, j);
                session_send_json(s, json_pack("{s:s, s:s, s:s, s:s}", "op", "ok", "job", j->id_text, "state",
                                               kiln_job_state_name(atomic_load(&j->state)), "was",
                                               kiln_job_state_name(was)),
                                  rq->ref);
                break;
        }
        default:
                break;
        }
}

/* cache.purge (role admin): the tenant's entries of one kind, or all, in the
 * writer. */
void session_op_cache_purge(struct session *s, const struct proto_req *rq)
{
        if (s->who.role != AUTH_ROLE_ADMIN) {
                session_send_error(s, rq->ref, KERR_FORBIDDEN, "op", "cache.purge needs the admin role");
                return;
        }
        if (rq->purge.kind && !kiln_kind_find(rq->purge.kind)) {
                session_send_error(s, rq->ref, KERR_UNKNOWN_KIND, "kind", "unknown job kind \"%s\"", rq->purge.kind);
                return;
        }
        ask_store(s, rq, STORE_OP_CACHE_PURGE);
}

void session_op_list(struct session *s, const struct proto_req *rq)
{
        /* As cache.purge: a kind no job can have is a mistake, not an empty page. */
        if (rq->list.kind && !kiln_kind_find(rq->list.kind)) {
                session_send_error(s, rq->ref, KERR_UNKNOWN_KIND, "kind", "unknown job kind \"%s\"", rq->list.kind);
                return;
        }
        list_jobs(s, rq);
}
