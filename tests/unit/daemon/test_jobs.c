/* The job lifecycle (daemon/jobs.c, jobs_submit.c) with fake collaborators: the
 * store writer, the scheduler and the events are this file's, linked in place of
 * the real ones, so each test sees exactly which operations, pushes and events one
 * submission causes, and decides how the store answers. The mailbox is the real
 * one, drained by the test as the loop thread would. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "jobs.h"
#include "jobs_internal.h"
#include "mailbox.h"
#include "scheduler.h"
#include "store.h"
#include "storeq.h"
#include "util.h"

/* ---- the fake store writer: operations wait here until the test answers them ---- */

#define MAX_OPS 64
static struct store_op *ops[MAX_OPS];
static size_t n_ops;

void store_writer_submit(struct store_writer *w, struct store_op *op)
{
        assert_true(n_ops < MAX_OPS);
        ops[n_ops++] = op;
}

void store_writer_submit_chain(struct store_writer *w, struct store_op *first, struct store_op *last)
{
        for (struct store_op *op = first, *next; op; op = next) {
                next = op->next;
                store_writer_submit(w, op);
                if (op == last)
                        break;
        }
}

/* Takes the oldest waiting operation out. */
static struct store_op *op_take(void)
{
        assert_true(n_ops > 0);
        struct store_op *op = ops[0];
        memmove(ops, ops + 1, (n_ops - 1) * sizeof(*ops));
        n_ops--;
        return op;
}

/* ---- the fake scheduler ---- */

#define MAX_ITEMS 64
static struct sched_item *queued[MAX_ITEMS];
static size_t n_queued;
static const struct sched_sink *sink;

void sched_push(struct sched *s, struct sched_item *it)
{
        static uint64_t seq;
        sink->hold(sink->ctx, it);
        it->seq = ++seq;
        queued[n_queued++] = it;
}

/* In its place, as the real one puts it back: by seq. */
void sched_requeue(struct sched *s, struct sched_item *it)
{
        sink->hold(sink->ctx, it);
        size_t i = n_queued;
        while (i > 0 && queued[i - 1]->seq > it->seq)
                i--;
        memmove(queued + i + 1, queued + i, (n_queued - i) * sizeof(*queued));
        queued[i] = it;
        n_queued++;
}

bool sched_remove(struct sched *s, struct sched_item *it)
{
        for (size_t i = 0; i < n_queued; i++)
                if (queued[i] == it) {
                        memmove(queued + i, queued + i + 1, (n_queued - i - 1) * sizeof(*queued));
                        n_queued--;
                        sink->release(sink->ctx, it);
                        return true;
                }
        return false;
}

uint32_t sched_queued(struct sched *s)
{
        return (uint32_t)n_queued;
}

/* ---- the events ---- */

struct event {
        char what[16];
        uint64_t session;
        char job[37];
        char state[16];
        bool cached;
        enum kiln_err code;
        char field[64];
        char done[1024];
};

#define MAX_EVENTS 64
static struct event events[MAX_EVENTS];
static size_t n_events;

static struct event *event_add(const char *what, uint64_t session, struct job *j)
{
        assert_true(n_events < MAX_EVENTS);
        struct event *e = &events[n_events++];
        memset(e, 0, sizeof(*e));
        snprintf(e->what, sizeof(e->what), "%s", what);
        e->session = session;
        if (j) {
                snprintf(e->job, sizeof(e->job), "%s", j->id_text);
                snprintf(e->state, sizeof(e->state), "%s", kiln_job_state_name(atomic_load(&j->state)));
        }
        return e;
}

static void ev_accepted(void *ctx, uint64_t session, struct job *j, json_t *ref, bool cached)
{
        event_add("accepted", session, j)->cached = cached;
}

static void ev_rejected(void *ctx, uint64_t session, json_t *ref, enum kiln_err code, const char *field,
                        const char *message)
{
        event_add("rejected", session, NULL)->code = code;
}

static void ev_progress(void *ctx, uint64_t session, struct job *j)
{
        struct event *e = event_add("progress", session, j);
        struct kiln_value v[KILN_MAX_PROGRESS_VALUES];
        int n = jobs_progress_values(j, v, KILN_MAX_PROGRESS_VALUES);
        int len = snprintf(e->done, sizeof(e->done), "pct=%d", atomic_load(&j->pct));
        for (int i = 0; i < n; i++) {
                size_t room = sizeof(e->done) - (size_t)len;
                if (v[i].type == KILN_V_INT)
                        len += snprintf(e->done + len, room, " %s=%lld", v[i].name, (long long)v[i].i);
                else if (v[i].type == KILN_V_JSON || v[i].type == KILN_V_STR)
                        len += snprintf(e->done + len, room, " %s=%s", v[i].name, v[i].text);
                else
                        len += snprintf(e->done + len, room, " %s=null", v[i].name);
        }
        jobs_progress_values_free(v, n);
}

static void ev_done(void *ctx, uint64_t session, struct job *j, json_t *ref)
{
        struct event *e = event_add("done", session, j);
        snprintf(e->done, sizeof(e->done), "%s", j->done ? j->done->text : "");
}

static void ev_ended(void *ctx, uint64_t session)
{
        event_add("ended", session, NULL);
}

/* ---- the fixture ---- */

struct fixture {
        struct kiln_config *cfg;
        struct mailbox *mb;
        struct storeq *q;
        struct jobs *js;
};

static int setup(void **state)
{
        static char *env[] = { "KILN_JOBS_DEFAULT_TIMEOUT_MS=60000", NULL };
        static const char *kinds[] = { "lens.nfw", "lens.raytrace", NULL };
        struct fixture *f = calloc(1, sizeof(*f));
        struct kiln_config_error err;
        assert_int_equal(kiln_config_load("/nonexistent/kiln.conf", true, env, kinds, &f->cfg, &err), 0);
        assert_int_equal(mailbox_new(&f->mb), 0);
        assert_int_equal(storeq_new(NULL, &f->q), 0);
        struct jobs_deps deps = {
                .cfg = f->cfg,
                .storeq = f->q,
                .mailbox = f->mb,
                .events = { .accepted = ev_accepted, .rejected = ev_rejected, .progress = ev_progress,
                            .done = ev_done, .ended = ev_ended },
        };
        assert_int_equal(jobs_new(&deps, &f->js), 0);
        sink = jobs_sched_sink(f->js);
        jobs_set_sched(f->js, (struct sched *)f); /* any non-NULL: the fake ignores it */
        n_ops = n_queued = n_events = 0;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        while (n_queued)
                sched_remove(NULL, queued[0]);
        jobs_free(f->js);
        storeq_free(f->q);
        mailbox_free(f->mb);
        kiln_config_free(f->cfg);
        free(f);
        return 0;
}

/* Answers the oldest store operation with `status` (and, for a submit, `outcome`),
 * then delivers the mails as the loop thread would. */
static struct store_op *answer(struct fixture *f, int status, enum store_submit_outcome outcome)
{
        storeq_flush(f->q);
        struct store_op *op = op_take();
        op->status = status;
        op->outcome = outcome;
        op->done(op);
        mailbox_drain(f->mb);
        return op;
}

/* Submits for tenant acme, watching; timeout_ms <= 0: the default timeout. */
static int submit_timed(struct fixture *f, const char *kind, const char *params, uint64_t session, const char *key,
                        int64_t timeout_ms, struct proto_error *err)
{
        json_t *p = json_loads(params, 0, NULL);
        assert_non_null(p);
        struct job_submit rq = { .kind = kind, .params = p, .tenant = "acme", .priority = KILN_PRIO_NORMAL,
                                 .key = key, .timeout_ms = timeout_ms, .cache = true, .watch = true,
                                 .session = session };
        int r = jobs_submit(f->js, &rq, err);
        json_decref(p);
        return r;
}

static int submit(struct fixture *f, const char *kind, const char *params, uint64_t session, const char *key,
                  struct proto_error *err)
{
        return submit_timed(f, kind, params, session, key, 0, err);
}

static const char small[] = "{\"mass\": 1e14, \"concentration\": 5, \"grid_size\": 8}";

/* ---- tests ---- */

static void test_submit_is_accepted_only_after_its_record_is_stored(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        assert_int_equal(n_events, 0);       /* nothing before the commit */
        assert_int_equal(n_queued, 0);
        assert_int_equal(jobs_committing(f->js), 1);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 1);
        assert_int_equal(ops[0]->type, STORE_OP_SUBMIT);
        assert_int_equal(ops[0]->job->state, KILN_JOB_QUEUED);
        assert_string_equal(ops[0]->job->tenant, "acme");

        answer(f, 0, STORE_SUBMIT_STORED);
        assert_int_equal(n_events, 1);
        assert_string_equal(events[0].what, "accepted");
        assert_int_equal(events[0].session, 7);
        assert_string_equal(events[0].state, "queued");
        assert_false(events[0].cached);
        assert_int_equal(n_queued, 1);       /* then it is scheduled */
        assert_int_equal(jobs_committing(f->js), 0);
        assert_int_equal(jobs_live(f->js), 1);
        struct job *j = container_of(queued[0], struct job, item);
        assert_ptr_equal(jobs_find(f->js, j->id), j);
        /* The default timeout armed its deadline. */
        assert_int_equal(jobs_next_deadline(f->js), j->submitted_ms + 60000);
}

static void test_a_finished_job_is_stored_then_reported_once(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        struct sched_item *it = queued[0];
        struct job *j = job_ref(container_of(it, struct job, item));
        n_queued = 0; /* a worker took it (the queue's hold is now the worker's) */

        sink->started(sink->ctx, it, kiln_wall_ms());
        assert_int_equal(atomic_load(&j->state), KILN_JOB_RUNNING);
        struct kiln_result r = { 0 };
        uint64_t shape[2] = { 2, 2 };
        assert_non_null(kiln_result_add_part(&r, "kappa", KILN_DTYPE_F32, 2, shape));
        assert_int_equal(kiln_result_add_scalar(&r, "kappa_s", 0.25), 0);
        sink->finished(sink->ctx, it, SCHED_END_DONE, 0, NULL, NULL, &r, "cpu", 3);
        assert_int_equal(r.n_parts, 0); /* taken over */
        sink->release(sink->ctx, it);

        size_t before = n_events;        /* nothing until the final record is stored */
        storeq_flush(f->q);
        assert_int_equal(n_ops, 1);
        assert_int_equal(ops[0]->type, STORE_OP_JOB_PUT);
        assert_int_equal(ops[0]->job->state, KILN_JOB_DONE);
        assert_true(ops[0]->result_size > 16);
        assert_non_null(ops[0]->cache_key);
        assert_int_equal(n_events, before);
        answer(f, 0, 0);

        /* The submitter watched it: ended (in-flight count), then done. */
        assert_int_equal(n_events, before + 2);
        assert_string_equal(events[before].what, "ended");
        assert_string_equal(events[before + 1].what, "done");
        assert_string_equal(events[before + 1].state, "done");
        assert_non_null(strstr(events[before + 1].done, "\"batch\":3"));
        assert_non_null(strstr(events[before + 1].done, "\"kappa_s\":0.25"));
        assert_null(jobs_find(f->js, j->id));
        assert_int_equal(jobs_next_deadline(f->js), 0);
        job_unref(j);
}

/* A worker takes the oldest queued job and runs it to done with a small result;
 * returns the job, referenced once more for the caller. */
static struct job *run_to_done(struct fixture *f)
{
        assert_true(n_queued > 0);
        struct sched_item *it = queued[0];
        struct job *j = job_ref(container_of(it, struct job, item));
        memmove(queued, queued + 1, (n_queued - 1) * sizeof(*queued));
        n_queued--;
        sink->started(sink->ctx, it, kiln_wall_ms());
        struct kiln_result r = { 0 };
        uint64_t shape[2] = { 2, 2 };
        assert_non_null(kiln_result_add_part(&r, "kappa", KILN_DTYPE_F32, 2, shape));
        sink->finished(sink->ctx, it, SCHED_END_DONE, 0, NULL, NULL, &r, "cpu", 1);
        sink->release(sink->ctx, it);
        return j;
}

/* A final record the store has no room for is not a failed job: the watchers get
 * its result (said not to be kept), the job answers for itself, and its record is
 * written when room comes back. */
static void test_a_final_record_without_room_is_delivered_then_stored_later(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        struct job *j = run_to_done(f);
        size_t before = n_events;
        answer(f, -ENOSPC, 0);
        assert_int_equal(n_events, before + 2);
        assert_string_equal(events[before + 1].what, "done");
        assert_string_equal(events[before + 1].state, "done");
        assert_non_null(strstr(events[before + 1].done, "\"stored\":false"));
        assert_ptr_equal(jobs_find(f->js, j->id), j); /* it answers for itself meanwhile */
        assert_int_equal(atomic_load(&j->state), KILN_JOB_DONE);
        /* One more submitter of it (its idempotency key) gets its `done` at once. */
        jobs_accept_one(f->js, j, 8, NULL, true, false);
        assert_int_equal(n_events, before + 4);
        assert_string_equal(events[before + 2].what, "accepted");
        assert_string_equal(events[before + 3].what, "done");
        assert_int_equal(events[before + 3].session, 8);
        before += 2;

        jobs_store_room(f->js, JOBS_STORE_LOW_BYTES - 1); /* still no room: not tried */
        storeq_flush(f->q);
        assert_int_equal(n_ops, 0);
        jobs_store_room(f->js, 1ull << 30);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 1);
        assert_int_equal(ops[0]->type, STORE_OP_JOB_PUT);
        assert_int_equal(ops[0]->job->state, KILN_JOB_DONE);
        answer(f, 0, 0);
        assert_int_equal(n_events, before + 2); /* no second `done` */
        assert_null(jobs_find(f->js, j->id));
        job_unref(j);
}

/* While the store is (nearly) full, new work is refused before it is accepted,
 * with `unavailable` naming the store; once room is back it is accepted again. */
static void test_submits_are_refused_while_the_store_is_full(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;
        char reason[256];

        assert_false(jobs_store_full(f->js, reason)); /* not measured yet: no refusal */
        jobs_store_room(f->js, 1u << 20);
        assert_true(jobs_store_full(f->js, reason));
        assert_non_null(strstr(reason, "store"));
        /* Neither a key nor the cache could answer it: refused at once. */
        f->cfg->cache.enabled = false;
        assert_true(submit(f, "lens.nfw", small, 7, NULL, &err) < 0);
        assert_int_equal(err.code, KERR_UNAVAILABLE);
        assert_non_null(strstr(err.message, "store"));
        storeq_flush(f->q);
        assert_int_equal(n_ops, 0);
        f->cfg->cache.enabled = true;
        /* The cache or a key may: the store is asked for those answers only, and
         * without one the submitter hears why it was not taken. */
        assert_int_equal(submit(f, "lens.nfw", small, 7, "k1", &err), 1);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 1);
        assert_true(ops[0]->lookup_only);
        assert_non_null(ops[0]->cache_key);
        assert_int_equal(ops[0]->input_size, 0);
        answer(f, -ENOSPC, 0);
        assert_int_equal(n_events, 2);
        assert_string_equal(events[0].what, "ended"); /* no longer in its submitter's in-flight jobs */
        assert_string_equal(events[1].what, "rejected");
        assert_int_equal(events[1].code, KERR_UNAVAILABLE);
        assert_int_equal(n_queued, 0);
        uint64_t fin[6];
        assert_int_equal(jobs_tenant_counts(f->js, "acme", fin), 0);
        /* (Answered by the key or the cache instead: test_pressure.py's MapFullTest.) */
        /* Room enough for the floor, not for a result of this size on top. */
        jobs_store_room(f->js, JOBS_STORE_LOW_BYTES + 1000);
        assert_false(jobs_store_full(f->js, reason));
        f->cfg->cache.enabled = false;
        assert_true(submit(f, "lens.nfw", "{\"mass\": 1e14, \"concentration\": 5, \"grid_size\": 1024}", 7,
                           NULL, &err) < 0);
        assert_int_equal(err.code, KERR_UNAVAILABLE);
        f->cfg->cache.enabled = true;
        jobs_store_room(f->js, 1ull << 30);
        size_t before = n_events;
        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        storeq_flush(f->q);
        assert_false(ops[0]->lookup_only);
        answer(f, 0, STORE_SUBMIT_STORED);
        assert_int_equal(n_queued, 1);
        assert_string_equal(events[before].what, "accepted");
}

static void test_an_identical_submission_attaches_to_the_live_job(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        /* Same tenant, same canonical params (other key order): coalesced, no new record. */
        assert_int_equal(submit(f, "lens.nfw", "{\"concentration\": 5, \"grid_size\": 8, \"mass\": 1e14}", 8, NULL,
                                &err),
                         0);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 1);
        assert_int_equal(jobs_coalesced(f->js), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        assert_int_equal(n_events, 2);
        assert_string_equal(events[0].what, "accepted");
        assert_string_equal(events[1].what, "accepted");
        assert_string_equal(events[0].job, events[1].job);
        assert_int_equal(events[0].session + events[1].session, 15);
        assert_int_equal(n_queued, 1);
}

/* A job has one place in the queues and one deadline: a submission of another
 * priority or timeout_ms is a job of its own, and one made after the live job was
 * asked to stop (cancelled) is never attached to it. */
static void test_only_a_submission_on_the_same_terms_attaches(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        json_t *p = json_loads(small, 0, NULL);
        struct job_submit rq = { .kind = "lens.nfw", .params = p, .tenant = "acme", .priority = KILN_PRIO_CRITICAL,
                                 .cache = true, .watch = true, .session = 8 };
        assert_int_equal(jobs_submit(f->js, &rq, &err), 1); /* critical: its own job */
        rq.priority = KILN_PRIO_NORMAL;
        rq.timeout_ms = 300;
        assert_int_equal(jobs_submit(f->js, &rq, &err), 1); /* another deadline: its own */
        assert_int_equal(jobs_coalesced(f->js), 0);
        rq.timeout_ms = 0;
        assert_int_equal(jobs_submit(f->js, &rq, &err), 0); /* the same terms: attached */
        assert_int_equal(jobs_coalesced(f->js), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        answer(f, 0, STORE_SUBMIT_STORED);

        struct job *live = container_of(queued[0], struct job, item);
        jobs_cancel(f->js, live);
        assert_int_equal(submit(f, "lens.nfw", small, 9, NULL, &err), 1); /* not the cancelled one */
        assert_int_equal(jobs_coalesced(f->js), 1);
        for (storeq_flush(f->q); n_ops; storeq_flush(f->q)) /* the cancelled one's final record, the submit */
                answer(f, 0, STORE_SUBMIT_STORED);
        json_decref(p);
}

/* ---- quick jobs: run before anything of them is stored ---- */

static const char one_row[] = "{\"model\": \"altman-z2\", \"rows\": [[0.1, 0.2, 0.3, 0.4]]}";

/* A quick job (risk.score of one row) is scheduled at once with nothing stored;
 * its one store operation is its final record with its result, and `accepted`
 * comes after that commit, then its `done`. */
static void test_a_quick_job_runs_first_and_is_stored_once_finished(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "risk.score", one_row, 7, NULL, &err), 1);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 0);          /* nothing stored */
        assert_int_equal(n_queued, 1);       /* scheduled at once */
        assert_int_equal(n_events, 0);       /* and not acknowledged */
        assert_int_equal(jobs_committing(f->js), 0);

        struct job *j = run_to_done(f);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 1);
        assert_int_equal(ops[0]->type, STORE_OP_SUBMIT);
        assert_true(ops[0]->ran);
        assert_int_equal(ops[0]->job->state, KILN_JOB_DONE);
        assert_true(ops[0]->result_size > 0);
        assert_non_null(ops[0]->write_result);
        assert_false(ops[0]->result_optional);
        assert_int_equal(ops[0]->input_size, 0);
        assert_null(ops[0]->job->idem_key);
        assert_non_null(ops[0]->cache_key);
        assert_int_equal(n_events, 0);       /* still nothing before the commit */

        answer(f, 0, STORE_SUBMIT_STORED);
        assert_int_equal(n_events, 3);
        assert_string_equal(events[0].what, "accepted");
        assert_string_equal(events[0].state, "done");
        assert_false(events[0].cached);
        assert_string_equal(events[1].what, "ended");
        assert_string_equal(events[2].what, "done");
        assert_string_equal(events[2].job, events[0].job);
        assert_null(jobs_find(f->js, j->id));
        assert_int_equal(jobs_next_deadline(f->js), 0);
        job_unref(j);
}

/* One that no worker takes within JOBS_EARLY_WAIT_MS (all busy with long jobs) is
 * stored queued as any job is, its submitter told it is accepted (it has a job id
 * to watch or cancel), and it is queued again; it then ends as a stored job. */
static void test_a_quick_job_left_waiting_is_stored_queued_and_accepted(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "risk.score", one_row, 7, NULL, &err), 1);
        assert_int_equal(submit(f, "lens.nfw", small, 8, NULL, &err), 1); /* queued behind it */
        answer(f, 0, STORE_SUBMIT_STORED);
        assert_int_equal(n_queued, 2);
        n_events = 0;
        int64_t due = jobs_next_deadline(f->js);
        assert_true(due > 0 && due <= kiln_wall_ms() + JOBS_EARLY_WAIT_MS + 1);
        jobs_deadline_run(f->js, due - 20); /* not yet (the wait runs on the monotonic clock) */
        storeq_flush(f->q);
        assert_int_equal(n_ops, 0);
        assert_int_equal(n_queued, 2);

        struct sched_item *quick = queued[0];
        jobs_deadline_run(f->js, due + 20);
        storeq_flush(f->q);
        assert_int_equal(n_queued, 1);       /* out of its queue while it is stored */
        assert_int_equal(n_ops, 1);
        assert_int_equal(ops[0]->type, STORE_OP_SUBMIT);
        assert_int_equal(ops[0]->job->state, KILN_JOB_QUEUED);
        assert_int_equal(n_events, 0);
        answer(f, 0, STORE_SUBMIT_STORED);
        assert_int_equal(n_events, 1);
        assert_string_equal(events[0].what, "accepted");
        assert_string_equal(events[0].state, "queued");
        assert_int_equal(n_queued, 2);       /* queued again, in its place: first */
        assert_ptr_equal(queued[0], quick);
        assert_true(jobs_next_deadline(f->js) > due); /* its own deadline, no early one */

        struct job *j = run_to_done(f);
        answer(f, 0, 0);                     /* its final record replaces the queued one */
        assert_string_equal(events[n_events - 1].what, "done");
        assert_null(jobs_find(f->js, j->id));
        job_unref(j);
}

/* One a worker is gathering into a batch when its wait ends is in no queue: it is
 * watched again, and stored queued when it is back in its queue (put back for
 * memory, say) at the end of the next wait. */
static void test_a_quick_job_gathered_when_its_wait_ends_is_watched_again(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "risk.score", one_row, 7, NULL, &err), 1);
        struct sched_item *it = queued[0];
        n_queued = 0; /* a worker gathers it: still queued, in no queue */
        int64_t due = jobs_next_deadline(f->js);
        jobs_deadline_run(f->js, due + 20);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 0);
        int64_t again = jobs_next_deadline(f->js);
        assert_true(again >= due);           /* watched again */

        queued[n_queued++] = it;             /* put back in its queue */
        jobs_deadline_run(f->js, again + 20);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 1);
        assert_int_equal(ops[0]->job->state, KILN_JOB_QUEUED);
        answer(f, 0, STORE_SUBMIT_STORED);
        assert_string_equal(events[0].what, "accepted");
        assert_int_equal(n_queued, 1);
}

/* One that the store cannot take was never acknowledged: its submitter and those
 * attached to it are told, and it is gone. */
static void test_a_quick_job_the_store_refuses_is_rejected_not_accepted(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "risk.score", one_row, 7, NULL, &err), 1);
        assert_int_equal(submit(f, "risk.score", one_row, 8, NULL, &err), 0); /* attached */
        struct job *j = run_to_done(f);
        answer(f, -ENOSPC, 0);
        size_t rejected = 0, accepted = 0, done = 0;
        for (size_t i = 0; i < n_events; i++) {
                rejected += !strcmp(events[i].what, "rejected") && events[i].code == KERR_UNAVAILABLE;
                accepted += !strcmp(events[i].what, "accepted");
                done += !strcmp(events[i].what, "done");
        }
        assert_int_equal(rejected, 2);
        assert_int_equal(accepted, 0);
        assert_int_equal(done, 0);
        assert_null(jobs_find(f->js, j->id));
        assert_int_equal(jobs_next_deadline(f->js), 0);
        uint64_t fin[6];
        assert_int_equal(jobs_tenant_counts(f->js, "acme", fin), 0); /* counts nothing any more */
        /* The next identical one is not attached to it: it runs on its own. */
        assert_int_equal(submit(f, "risk.score", one_row, 7, NULL, &err), 1);
        assert_int_equal(n_queued, 1);
        job_unref(j);
}

/* A submission attached to a quick job that is running is accepted with it, after
 * its record is stored, and watches it to the end. */
static void test_a_submission_attached_to_a_quick_job_is_accepted_with_it(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "risk.score", one_row, 7, NULL, &err), 1);
        assert_int_equal(submit(f, "risk.score", one_row, 8, NULL, &err), 0);
        assert_int_equal(n_events, 0);
        assert_int_equal(n_queued, 1);
        struct job *j = run_to_done(f);
        answer(f, 0, STORE_SUBMIT_STORED);
        size_t accepted = 0, done = 0;
        for (size_t i = 0; i < n_events; i++) {
                if (!strcmp(events[i].what, "accepted"))
                        accepted++;
                if (!strcmp(events[i].what, "done")) {
                        assert_int_equal(accepted, 2); /* both accepted before any done */
                        done++;
                }
        }
        assert_int_equal(accepted, 2);
        assert_int_equal(done, 2);
        job_unref(j);
}

/* A keyed quick submission goes to the store first (its key may name another job),
 * as do jobs of kinds that are not quick and quick kinds' jobs that are not. */
static void test_keyed_and_slow_jobs_are_stored_before_they_run(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;
        char rows[4096];
        int n = snprintf(rows, sizeof(rows), "{\"model\": \"altman-z2\", \"rows\": [");
        for (int i = 0; i < 65; i++)
                n += snprintf(rows + n, sizeof(rows) - (size_t)n, "%s[0.1, 0.2, 0.3, %d]", i ? "," : "", i);
        snprintf(rows + n, sizeof(rows) - (size_t)n, "]}");

        assert_int_equal(submit(f, "risk.score", one_row, 7, "k1", &err), 1);
        assert_int_equal(submit(f, "risk.score", rows, 7, NULL, &err), 1);
        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 3);
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(ops[i]->type, STORE_OP_SUBMIT);
                assert_false(ops[i]->ran);
                assert_int_equal(ops[i]->job->state, KILN_JOB_QUEUED);
        }
        assert_int_equal(n_queued, 0);
        for (size_t i = 0; i < 3; i++)
                answer(f, 0, STORE_SUBMIT_STORED);
        assert_int_equal(n_queued, 3);
}

static void test_cancelling_a_queued_job_ends_it_cancelled(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        struct job *j = container_of(queued[0], struct job, item);
        jobs_cancel(f->js, j);
        assert_int_equal(n_queued, 0);
        storeq_flush(f->q);
        assert_int_equal(ops[0]->job->state, KILN_JOB_CANCELLED);
        assert_string_equal(ops[0]->job->error_code, "cancelled");
        answer(f, 0, 0);
        assert_string_equal(events[n_events - 1].what, "done");
        assert_string_equal(events[n_events - 1].state, "cancelled");
}

static void test_cancelling_a_running_job_asks_it_to_stop(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        struct sched_item *it = queued[0];
        n_queued = 0; /* a worker has it */
        sink->started(sink->ctx, it, kiln_wall_ms());
        jobs_cancel(f->js, container_of(it, struct job, item));
        assert_int_equal(atomic_load(&it->stop), SCHED_STOP_CANCEL);
        assert_int_equal(n_ops, 0); /* the worker ends it */
        sink->finished(sink->ctx, it, SCHED_END_CANCELLED, KERR_CANCELLED, "cancelled while running", NULL, NULL, "cpu",
                       1);
        sink->release(sink->ctx, it);
        answer(f, 0, 0);
        assert_string_equal(events[n_events - 1].state, "cancelled");
}

static void test_a_passed_deadline_expires_a_queued_job(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit_timed(f, "lens.nfw", small, 3, NULL, 5, &err), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        int64_t due = jobs_next_deadline(f->js);
        assert_true(due > 0);
        jobs_deadline_run(f->js, due - 1);
        assert_int_equal(n_queued, 1);
        jobs_deadline_run(f->js, due);
        assert_int_equal(n_queued, 0);
        storeq_flush(f->q);
        assert_int_equal(ops[0]->job->state, KILN_JOB_EXPIRED);
        assert_string_equal(ops[0]->job->error_code, "timeout");
        answer(f, 0, 0);
        assert_string_equal(events[n_events - 1].state, "expired");
}

/* A quick job whose deadline passes before a worker takes it is stored once,
 * expired, and its submitter hears `accepted` (expired) and then its `done`. */
static void test_a_quick_job_that_expires_queued_is_stored_once_expired(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit_timed(f, "risk.score", one_row, 3, NULL, 5, &err), 1);
        assert_int_equal(n_queued, 1);
        jobs_deadline_run(f->js, jobs_next_deadline(f->js));
        assert_int_equal(n_queued, 0);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 1);
        assert_int_equal(ops[0]->type, STORE_OP_SUBMIT);
        assert_true(ops[0]->ran);
        assert_int_equal(ops[0]->job->state, KILN_JOB_EXPIRED);
        assert_int_equal(ops[0]->result_size, 0);
        assert_int_equal(n_events, 0);
        answer(f, 0, STORE_SUBMIT_STORED);
        assert_int_equal(n_events, 3);
        assert_string_equal(events[0].what, "accepted");
        assert_string_equal(events[0].state, "expired");
        assert_string_equal(events[2].what, "done");
        assert_string_equal(events[2].state, "expired");
}

/* Draining, a quick job still queued is taken out of the scheduler and stored as a
 * queued job with its input: its submitter hears `accepted` (queued), and it runs
 * after the restart. One stopped while running (SCHED_END_REQUEUED) is too. Once
 * stored, neither is early any more: a final record would replace its queued one. */
static void test_quick_jobs_that_do_not_run_before_a_stop_are_stored_queued(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "risk.score", one_row, 7, NULL, &err), 1);
        assert_int_equal(submit(f, "risk.score", "{\"model\": \"altman-z2\", \"rows\": [[1, 2, 3, 4]]}", 8, NULL,
                                &err),
                         1);
        assert_int_equal(n_queued, 2);
        /* The second one is running when the stop comes. */
        struct sched_item *running = queued[1];
        n_queued = 1;
        sink->started(sink->ctx, running, kiln_wall_ms());

        jobs_store_early(f->js);
        assert_int_equal(n_queued, 0);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 1);
        assert_int_equal(ops[0]->type, STORE_OP_SUBMIT);
        assert_false(ops[0]->ran);
        assert_int_equal(ops[0]->job->state, KILN_JOB_QUEUED);
        assert_true(ops[0]->input_size > 0);
        assert_non_null(ops[0]->write_input);
        answer(f, 0, STORE_SUBMIT_STORED);
        assert_int_equal(n_events, 1);
        assert_string_equal(events[0].what, "accepted");
        assert_int_equal(events[0].session, 7);
        assert_string_equal(events[0].state, "queued");

        struct job *stopped = job_ref(container_of(running, struct job, item));
        sink->finished(sink->ctx, running, SCHED_END_REQUEUED, 0, NULL, NULL, NULL, "cpu", 1);
        sink->release(sink->ctx, running);
        storeq_flush(f->q);
        assert_int_equal(n_ops, 1);
        assert_int_equal(ops[0]->type, STORE_OP_SUBMIT);
        assert_false(ops[0]->ran);
        assert_int_equal(ops[0]->job->state, KILN_JOB_QUEUED);
        answer(f, 0, STORE_SUBMIT_STORED);
        assert_int_equal(n_events, 2);
        assert_string_equal(events[1].what, "accepted");
        assert_int_equal(events[1].session, 8);
        assert_string_equal(events[1].state, "queued");
        assert_false(stopped->early);
        job_unref(stopped);
}

static void test_a_submit_the_store_refuses_is_rejected(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 9, NULL, &err), 1);
        answer(f, -EIO, 0);
        assert_int_equal(n_events, 2);
        assert_string_equal(events[0].what, "ended");
        assert_string_equal(events[1].what, "rejected");
        assert_int_equal(events[1].code, KERR_UNAVAILABLE);
        assert_int_equal(n_queued, 0);
        assert_int_equal(jobs_live(f->js), 0);
        uint64_t fin[6];
        assert_int_equal(jobs_tenant_counts(f->js, "acme", fin), 0);
}

static void test_bad_submissions_name_the_field(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_true(submit(f, "lens.nope", small, 1, NULL, &err) < 0);
        assert_int_equal(err.code, KERR_UNKNOWN_KIND);
        assert_string_equal(err.field, "kind");
        assert_true(submit(f, "lens.nfw", "{\"mass\": -1, \"concentration\": 5}", 1, NULL, &err) < 0);
        assert_int_equal(err.code, KERR_BAD_PARAMS);
        assert_string_equal(err.field, "params.mass");
        /* A result over limits.max_result_bytes: 2048 x 2048 floats are 16 MiB. */
        f->cfg->limits.max_result_bytes = 1 << 20;
        assert_true(submit(f, "lens.nfw", "{\"mass\": 1e14, \"concentration\": 5, \"grid_size\": 2048}", 1, NULL,
                           &err) < 0);
        assert_int_equal(err.code, KERR_TOO_LARGE);
        assert_string_equal(err.field, "params");
        assert_int_equal(n_events, 0);
}

static void test_the_scheduler_reports_a_device_shutdown_as_still_queued(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        struct sched_item *it = queued[0];
        struct job *j = job_ref(container_of(it, struct job, item));
        n_queued = 0;
        sink->started(sink->ctx, it, kiln_wall_ms());
        atomic_store(&it->stop, SCHED_STOP_SHUTDOWN);
        sink->finished(sink->ctx, it, SCHED_END_REQUEUED, 0, NULL, NULL, NULL, "cpu", 1);
        sink->release(sink->ctx, it);
        /* Not finished: no final record, it stays queued for the next start. */
        storeq_flush(f->q);
        assert_int_equal(n_ops, 0);
        assert_int_equal(atomic_load(&j->state), KILN_JOB_QUEUED);
        assert_ptr_equal(jobs_find(f->js, j->id), j);
        job_unref(j);
}

static void test_progress_carries_the_kinds_values(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        struct sched_item *it = queued[0];
        n_queued = 0;
        sink->started(sink->ctx, it, kiln_wall_ms());
        struct kiln_value v[2] = { { .name = "best", .type = KILN_V_INT, .i = 930 },
                                   { .name = "lower_bound", .type = KILN_V_INT, .i = 655 } };
        sink->progress(sink->ctx, it, 40, v, 2);
        v[0].i = 1; /* the job keeps its own copy */
        sink->progress(sink->ctx, it, 41, v, 2); /* one mail in flight: the latest is read */
        mailbox_drain(f->mb);
        assert_int_equal(n_events, 2);
        assert_string_equal(events[1].what, "progress");
        assert_string_equal(events[1].done, "pct=41 best=1 lower_bound=655");
        sink->finished(sink->ctx, it, SCHED_END_CANCELLED, KERR_CANCELLED, "stop", NULL, NULL, "cpu", 1);
        sink->release(sink->ctx, it);
        answer(f, 0, 0);
}

/* A JSON progress value (sched.jobshop's schedule) is the job's own copy: the
 * kind's buffer may go right after the call, a newer one replaces (and frees) the
 * older, what jobs_progress_values hands out outlives both, and a text that does
 * not parse is a null. The job frees the last one when it goes (ASan checks). */
static void test_progress_keeps_its_own_copy_of_a_json_value(void **state)
{
        struct fixture *f = *state;
        struct proto_error err;

        assert_int_equal(submit(f, "lens.nfw", small, 7, NULL, &err), 1);
        answer(f, 0, STORE_SUBMIT_STORED);
        struct sched_item *it = queued[0];
        struct job *j = container_of(it, struct job, item);
        n_queued = 0;
        sink->started(sink->ctx, it, kiln_wall_ms());
        char *text = strdup("[[0,3],[3,5]]");
        struct kiln_value v[3] = { { .name = "best", .type = KILN_V_INT, .i = 8 },
                                   { .name = "lower_bound", .type = KILN_V_INT, .i = 7 },
                                   { .name = "starts", .type = KILN_V_JSON, .text = text } };
        sink->progress(sink->ctx, it, 10, v, 3);
        memset(text, 'x', strlen(text)); /* the kind's buffer changes, then goes */
        free(text);
        mailbox_drain(f->mb);
        assert_int_equal(n_events, 2);
        assert_string_equal(events[1].done, "pct=10 best=8 lower_bound=7 starts=[[0,3],[3,5]]");

        struct kiln_value got[KILN_MAX_PROGRESS_VALUES];
        int n = jobs_progress_values(j, got, KILN_MAX_PROGRESS_VALUES);
        assert_int_equal(n, 3);
        assert_int_equal(got[2].type, KILN_V_JSON);
        v[0].i = 7;
        v[2].text = "[[0,3],[3,4]]";
        sink->progress(sink->ctx, it, 20, v, 3); /* replaces the job's copy */
        assert_string_equal(got[2].text, "[[0,3],[3,5]]"); /* the copy handed out is the caller's */
        jobs_progress_values_free(got, n);
        mailbox_drain(f->mb);
        assert_int_equal(n_events, 3);
        assert_string_equal(events[2].done, "pct=20 best=7 lower_bound=7 starts=[[0,3],[3,4]]");

        v[2].text = "[[0,3],[3,";
        sink->progress(sink->ctx, it, 30, v, 3);
        mailbox_drain(f->mb);
        assert_int_equal(n_events, 4);
        assert_string_equal(events[3].done, "pct=30 best=7 lower_bound=7 starts=null");

        v[2].text = "[[0,3],[3,4]]";
        sink->progress(sink->ctx, it, 40, v, 3); /* the last copy: the job frees it */
        sink->finished(sink->ctx, it, SCHED_END_CANCELLED, KERR_CANCELLED, "stop", NULL, NULL, "cpu", 1);
        sink->release(sink->ctx, it);
        answer(f, 0, 0);
}

/* The cache key of a job bound to a stored object: another version of it is
 * another key, so a result computed with version 1 never answers version 2; the
 * same version (and params) is the same key; and the same name and version of
 * another tenant (which numbers its own versions) is another key. */
static void test_an_object_version_bump_changes_the_cache_key(void **state)
{
        struct fixture *f = *state;
        static const struct kiln_object_class cls = { .name = "risk.model" };
        static const struct kiln_param schema[] = { { 0 } };
        static const struct kiln_kind kind = { .name = "test.model", .version = 1, .params = schema,
                                               .object = &cls, .object_param = "model" };
        struct job *a = job_alloc(f->js, &kind), *b = job_alloc(f->js, &kind), *c = job_alloc(f->js, &kind);
        struct job *d = job_alloc(f->js, &kind);
        struct job *all[] = { a, b, c, d };
        for (int i = 0; i < 4; i++) {
                all[i]->params_json = strdup("{\"model\":\"acme\"}");
                snprintf(all[i]->tenant, sizeof(all[i]->tenant), "%s", all[i] == d ? "globex" : "default");
        }
        assert_int_equal(job_bind_object(a, "acme", 1), 0);
        assert_int_equal(job_bind_object(b, "acme", 2), 0);
        assert_int_equal(job_bind_object(c, "acme", 1), 0);
        assert_int_equal(job_bind_object(d, "acme", 1), 0);
        for (int i = 0; i < 4; i++)
                assert_int_equal(job_init_cache_key(all[i]), 0);
        assert_string_equal(a->cache_key.model, "default risk.model/acme@1");
        assert_string_equal(b->cache_key.model, "default risk.model/acme@2");
        assert_string_equal(d->cache_key.model, "globex risk.model/acme@1");
        assert_memory_not_equal(a->cache_key.hash, b->cache_key.hash, 16);
        assert_memory_equal(a->cache_key.hash, c->cache_key.hash, 16);
        assert_memory_not_equal(a->cache_key.hash, d->cache_key.hash, 16);
        /* The record carries the binding, so a recovered job runs against the same version. */
        struct store_job rec;
        job_to_record(a, &rec);
        assert_string_equal(rec.object, "risk.model/acme@1");
        for (int i = 0; i < 4; i++)
                job_unref(all[i]);
}

/* The cache key of a job with inputs: jobs whose inputs have the same digest (the
 * same arrays, sent as JSON or binary: test_job_inputs) share a key; another digest
 * is another key, with the same params. */
static void test_the_inputs_digest_is_in_the_cache_key(void **state)
{
        struct fixture *f = *state;
        const struct kiln_kind *kind = kiln_kind_find("lens.nfw");
        struct job *a = job_alloc(f->js, kind), *b = job_alloc(f->js, kind), *c = job_alloc(f->js, kind),
                   *none = job_alloc(f->js, kind);
        struct job *all[4] = { a, b, c, none };
        for (int i = 0; i < 4; i++)
                all[i]->params_json = strdup("{\"mass\":1e14}");
        a->in.n = b->in.n = c->in.n = 1;
        snprintf(a->in.digest, sizeof(a->in.digest), "%064d", 1);
        snprintf(b->in.digest, sizeof(b->in.digest), "%064d", 1);
        snprintf(c->in.digest, sizeof(c->in.digest), "%064d", 2);
        for (int i = 0; i < 4; i++)
                assert_int_equal(job_init_cache_key(all[i]), 0);
        assert_memory_equal(a->cache_key.hash, b->cache_key.hash, 16);
        assert_memory_not_equal(a->cache_key.hash, c->cache_key.hash, 16);
        assert_memory_not_equal(a->cache_key.hash, none->cache_key.hash, 16);
        assert_string_equal(none->cache_key.params, "{\"mass\":1e14}"); /* no inputs: the params alone */
        for (int i = 0; i < 4; i++) {
                all[i]->in.n = 0; /* no blob to free */
                job_unref(all[i]);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_submit_is_accepted_only_after_its_record_is_stored, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_finished_job_is_stored_then_reported_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_final_record_without_room_is_delivered_then_stored_later, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_submits_are_refused_while_the_store_is_full, setup, teardown),
                cmocka_unit_test_setup_teardown(test_an_identical_submission_attaches_to_the_live_job, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_quick_job_runs_first_and_is_stored_once_finished, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_quick_job_left_waiting_is_stored_queued_and_accepted, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_only_a_submission_on_the_same_terms_attaches, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_quick_job_gathered_when_its_wait_ends_is_watched_again, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_quick_job_the_store_refuses_is_rejected_not_accepted, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_submission_attached_to_a_quick_job_is_accepted_with_it, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_keyed_and_slow_jobs_are_stored_before_they_run, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_quick_job_that_expires_queued_is_stored_once_expired, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_quick_jobs_that_do_not_run_before_a_stop_are_stored_queued,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancelling_a_queued_job_ends_it_cancelled, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancelling_a_running_job_asks_it_to_stop, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_passed_deadline_expires_a_queued_job, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_submit_the_store_refuses_is_rejected, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_submissions_name_the_field, setup, teardown),
                cmocka_unit_test_setup_teardown(test_the_scheduler_reports_a_device_shutdown_as_still_queued, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_progress_carries_the_kinds_values, setup, teardown),
                cmocka_unit_test_setup_teardown(test_progress_keeps_its_own_copy_of_a_json_value, setup, teardown),
                cmocka_unit_test_setup_teardown(test_an_object_version_bump_changes_the_cache_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_the_inputs_digest_is_in_the_cache_key, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
