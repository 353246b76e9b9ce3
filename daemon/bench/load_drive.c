/* kiln-bench's run: its phases (connect the idle connections, then the load
 * ones, settle, run, drain) and the two ways of loading the server.
 *
 * Closed loop: a finished job is replaced at once, latency runs from the moment it
 * was written. Open loop: every connection follows a fixed schedule (rate /
 * connections jobs/s, phases spread evenly); a job's latency runs from its
 * scheduled time, so a server that falls behind is charged for the queueing it
 * causes (no coordinated omission), and a full slot table delays sending, not the
 * schedule.
 *
 * Writes go out from writeable callbacks, so a slow server pushes back on
 * sending; timers (lws_sul, or libev's and a timerfd on the libev loop) drive the
 * schedule, the phases and the progress line: the loop sleeps whenever there is
 * nothing to do. */
#include <errno.h>
#include <time.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "load_internal.h"

static void pump(struct conn *c);

void load_finish(struct bench *b)
{
        if (b->phase == PH_DONE)
                return;
        b->phase = PH_DONE;
        lws_sul_cancel(&b->sul_phase);
        lws_sul_cancel(&b->sul_progress);
        if (b->loop) {
                ev_timer_stop(b->loop, &b->phase_evt);
                ev_timer_stop(b->loop, &b->progress_evt);
        }
        lws_cancel_service(b->ctx);
}

/* Frees a slot and accounts for its job. ok: finished normally. */
void load_release(struct conn *c, unsigned i)
{
        struct bench *b = c->b;
        struct slot *s = &c->slots[i];

        s->st = SL_FREE;
        s->job[0] = '\0';
        c->free_idx[c->n_free++] = i;
        c->inflight--;
        b->inflight--;
}

static void issue_next(struct conn *c);

/* A job ended: records it, frees its slot and keeps the load going. */
void load_complete(struct conn *c, unsigned i, bool ok)
{
        struct bench *b = c->b;
        uint64_t t = now_ns();

        if (ok) {
                struct slot *s = &c->slots[i];
                uint64_t lat = t > s->t_start_ns ? t - s->t_start_ns : 0;
                hdr_record(&b->r->latency, (lat + 500) / 1000);
                b->r->jobs_total++;
                if (t <= b->t_end_ns)
                        b->r->jobs++;
        }
        load_release(c, i);
        if (b->phase == PH_RUN)
                issue_next(c);
        else if (b->phase == PH_DRAIN && !b->inflight)
                load_finish(b);
}

/* Queues one job scheduled at t_sched for writing. Returns false when every slot
 * is taken. */
static bool issue(struct conn *c, uint64_t t_sched)
{
        if (!c->n_free || c->st != CS_READY)
                return false;
        unsigned i = c->free_idx[--c->n_free];
        struct slot *s = &c->slots[i];
        s->ref = (++c->gen << REF_BITS) | i;
        s->st = SL_UNSENT;
        s->t_sched_ns = t_sched;
        s->t_start_ns = t_sched;
        s->job[0] = '\0';
        c->unsent[(c->unsent_head + c->n_unsent) % c->cap] = i;
        c->n_unsent++;
        c->inflight++;
        c->b->inflight++;
        lws_callback_on_writable(c->wsi);
        return true;
}

static void issue_next(struct conn *c)
{
        if (c->b->o->rate > 0)
                pump(c);
        else
                issue(c, now_ns());
}

static void on_conn_timer(lws_sorted_usec_list_t *sul)
{
        pump(lws_container_of(sul, struct conn, sul));
}

void load_on_conn_ev_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
        pump(lws_container_of(w, struct conn, evt));
}

/* Sets the schedule timerfd to the earliest due connection. */
static void sched_rearm(struct bench *b)
{
        uint64_t first = 0;
        for (unsigned k = b->n_idle; k < b->n_conns; k++) {
                uint64_t t = b->conns[k].due_ns;
                if (t && (!first || t < first))
                        first = t;
        }
        if (first == b->sched_armed_ns)
                return;
        struct itimerspec its = { 0 };
        if (first) {
                its.it_value.tv_sec = (time_t)(first / 1000000000ull);
                its.it_value.tv_nsec = (long)(first % 1000000000ull);
        }
        timerfd_settime(b->sched_fd, TFD_TIMER_ABSTIME, &its, NULL);
        b->sched_armed_ns = first;
}

void load_on_sched_fd(struct ev_loop *loop, ev_io *w, int revents)
{
        struct bench *b = lws_container_of(w, struct bench, sched_io);
        uint64_t expirations;

        if (read(b->sched_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
                return;
        b->sched_armed_ns = 0;
        uint64_t t = now_ns();
        for (unsigned k = b->n_idle; k < b->n_conns; k++) {
                struct conn *c = &b->conns[k];
                if (c->due_ns && c->due_ns <= t) {
                        c->due_ns = 0;
                        pump(c);
                }
        }
        sched_rearm(b);
}

/* Calls pump(c) after us microseconds. On the libev loop the open-loop schedule
 * runs from a timerfd, to the nanosecond: libev's epoll backend waits in whole
 * milliseconds, and a job sent up to a millisecond late is charged to the server
 * (latency runs from the scheduled time). */
static void conn_timer(struct conn *c, uint64_t us)
{
        struct bench *b = c->b;

        if (b->loop && b->sched_fd >= 0) {
                c->due_ns = now_ns() + us * 1000;
                sched_rearm(b);
                return;
        }
        if (!b->loop) {
                lws_sul_schedule(b->ctx, 0, &c->sul, on_conn_timer, (lws_usec_t)us);
                return;
        }
        ev_timer_stop(b->loop, &c->evt);
        ev_timer_set(&c->evt, (double)us / 1e6, 0);
        ev_timer_start(b->loop, &c->evt);
}

/* Open loop: issues every job whose scheduled time has come (as slots allow) and
 * sets the timer for the next one. */
static void pump(struct conn *c)
{
        struct bench *b = c->b;
        if (b->phase != PH_RUN || c->st != CS_READY)
                return;
        uint64_t t = now_ns();
        while (c->next_sched_ns <= t && c->next_sched_ns < b->t_end_ns) {
                if (!issue(c, c->next_sched_ns))
                        return; /* a completion calls pump again */
                c->next_sched_ns += (uint64_t)b->interval_ns;
        }
        if (c->next_sched_ns < b->t_end_ns)
                conn_timer(c, (c->next_sched_ns - t + 999) / 1000);
}

static void on_phase(lws_sorted_usec_list_t *sul);

/* The current phase ends after s seconds. */
static void phase_after(struct bench *b, double s)
{
        load_timer_after(b, &b->phase_evt, &b->sul_phase, on_phase, s);
}

static void start_run(struct bench *b)
{
        b->phase = PH_RUN;
        b->t0_ns = now_ns();
        b->t_end_ns = b->t0_ns + (uint64_t)(b->o->duration_s * 1e9);
        unsigned n_load = b->n_conns - b->n_idle;
        if (b->o->rate > 0)
                b->interval_ns = 1e9 * (double)n_load / b->o->rate;
        for (unsigned k = b->n_idle; k < b->n_conns; k++) {
                struct conn *c = &b->conns[k];
                if (c->st != CS_READY)
                        continue;
                if (b->o->rate > 0) {
                        c->next_sched_ns = b->t0_ns + (uint64_t)(b->interval_ns * (k - b->n_idle) / n_load);
                        pump(c);
                } else {
                        for (unsigned j = 0; j < b->o->pipeline; j++)
                                issue(c, b->t0_ns);
                }
        }
        phase_after(b, b->o->duration_s);
}

static void next_phase(struct bench *b)
{
        if (b->phase == PH_SETTLE) {
                start_run(b);
        } else if (b->phase == PH_RUN) {
                b->phase = PH_DRAIN;
                b->r->elapsed_s = (double)(now_ns() - b->t0_ns) / 1e9;
                if (!b->inflight) {
                        load_finish(b);
                        return;
                }
                phase_after(b, b->o->drain_s);
        } else if (b->phase == PH_DRAIN) {
                b->r->unfinished = b->inflight;
                load_note_error(b, "%llu job%s still in flight at the end of the %g s drain",
                                (unsigned long long)b->inflight, b->inflight == 1 ? "" : "s", b->o->drain_s);
                load_finish(b);
        }
}

static void on_phase(lws_sorted_usec_list_t *sul)
{
        next_phase(lws_container_of(sul, struct bench, sul_phase));
}

void load_on_phase_ev(struct ev_loop *loop, ev_timer *w, int revents)
{
        next_phase(lws_container_of(w, struct bench, phase_evt));
}

/* A connection finished connecting (ok) or failed to: moves the phases on. */
void load_conn_resolved(struct bench *b)
{
        b->resolved++;
        /* The first one failed: the server is not there or does not answer; the
         * others, opened one after another, would each wait as long. */
        if (!b->r->connected && !b->r->idle_connected && b->r->err_connect) {
                load_finish(b);
                return;
        }
        if (b->phase == PH_CONNECT_IDLE && b->resolved == b->n_idle) {
                b->r->rss_idle_kb = bench_rss_kb();
                b->phase = PH_CONNECT_LOAD;
        }
        if (b->phase == PH_CONNECT_LOAD && b->resolved == b->n_conns) {
                if (!b->r->connected) {
                        load_finish(b);
                } else if (b->n_idle) {
                        /* The load measures holding the idle connections, not opening
                         * them: a second for both sides to settle after the last one. */
                        b->phase = PH_SETTLE;
                        phase_after(b, 1);
                } else {
                        start_run(b);
                }
                return;
        }
        load_schedule_connects(b);
}
