/* kiln-bench's internals: the run's settings, the scenarios (what each job
 * submits) and the load engine (many WebSocket connections on one libwebsockets
 * context, one service loop). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "hdr.h"

enum bench_scenario {
        SCEN_CACHED,
        SCEN_SMALL,
        SCEN_MIXED,
        SCEN_HEAVY,
        SCEN_SCORE,
        SCEN_RELIEF,
        SCEN_JOBSHOP,
        SCEN_VEC,
        SCEN_SCORE_MODEL,
        _SCEN_MAX,
};

/* "cached", ...; NULL for an invalid value. */
const char *bench_scenario_name(enum bench_scenario s);

/* Parses a scenario name. Returns >= 0 or -EINVAL. */
int bench_scenario_from_name(const char *name, enum bench_scenario *ret);

/* Writes one submit message for scenario s with reference `ref` into buf (size
 * bytes), drawing random parameters from *rng. `watch` false asks for no `done`.
 * Returns the length written (> 0) or -ENOBUFS when buf is too small. */
int bench_submit_text(enum bench_scenario s, uint64_t ref, bool watch, uint64_t *rng, char *buf, size_t size);

/* The binary part that scenario s sends before its submit message (relief: a
 * random 64 x 64 PNG as part `image`; jobshop: ft06 as part `instance`; vec: one
 * random query f32[1][dim] as part `queries`), as one whole KLNB message for `ref` written
 * into buf. Returns its length, 0 when the scenario sends none, or -ENOBUFS. */
#define BENCH_MAX_PART 20480
int bench_submit_part(enum bench_scenario s, uint64_t ref, uint64_t *rng, uint8_t *buf, size_t size);

struct bench_opts {
        const char *url;
        const char *token;             /* NULL: hello without a token */
        const char *collection;        /* vec: the collection searched (--collection) */
        const char *model;             /* score-model: the stored model scored (--model) */
        enum bench_scenario scenario;
        unsigned connections;          /* load connections, >= 1 */
        unsigned idle;                 /* extra connections that only hello, then wait */
        unsigned pipeline;             /* closed loop: jobs in flight per connection */
        double duration_s;
        double rate;                   /* open loop total jobs/s; 0: closed loop */
        double drain_s;                /* after the run, wait this long at most for in-flight jobs */
        bool accept_only;              /* watch:false, latency submit -> accepted */
        bool progress;                 /* a progress line on stderr */
        uint64_t seed;
};

/* vec: the collection the scenario searches and its dim (1..4096), set once
 * before the run. Returns >= 0, or -EINVAL for a dim out of range or a name that
 * does not fit. */
int bench_vec_target(const char *collection, uint32_t dim);

/* One request before the load starts (setup.c): connects, says hello, sends
 * `request` (a new reference, stolen) and returns its reply (a new reference), or
 * NULL with err filled. */
json_t *bench_setup_ask(const struct bench_opts *o, json_t *request, char *err, size_t size);
/* A reply's "op", "" when it has none. */
const char *bench_reply_op(const json_t *m);

/* vec: asks the server at o->url (vec.info, vec_setup.c) for o->collection's dim
 * and sets the target. Returns >= 0, or -errno with a sentence in err. */
int bench_vec_setup(const struct bench_opts *o, char *err, size_t size);

/* score-model: the stored model each job scores one random row of `features`
 * values against (sent as the part `rows`), set once before the run. Returns >= 0,
 * or -EINVAL for a feature count out of range or a name that does not fit. */
int bench_model_target(const char *model, uint32_t features);

/* score-model: asks the server at o->url (model.list, model_setup.c) for
 * o->model's feature count and sets the target. Returns >= 0, or -errno with a
 * sentence in err (-ENOENT: the tenant has no such model). */
int bench_model_setup(const struct bench_opts *o, char *err, size_t size);

struct bench_result {
        struct hdr latency;            /* every finished job issued during the run */
        uint64_t jobs;                 /* jobs finished within the run's duration */
        uint64_t jobs_total;           /* jobs finished, drain included */
        double elapsed_s;              /* the run's measured length */
        unsigned connected;            /* load connections that said welcome */
        unsigned idle_connected;       /* idle connections that said welcome */
        uint64_t err_replies;          /* {"op":"error"} to a submit */
        uint64_t err_failed;           /* done with state failed/cancelled/expired */
        uint64_t err_bad_results;      /* a done or parts unlike the protocol's (names, sizes) */
        uint64_t err_connect;          /* connections that failed to open or hello */
        uint64_t err_dropped;          /* connections lost during the run */
        uint64_t err_lost_jobs;        /* in-flight jobs on a lost connection */
        uint64_t unfinished;           /* jobs still in flight when the drain ended */
        long rss_start_kb;             /* this process, before connecting */
        long rss_idle_kb;              /* after the idle connections said welcome */
        long rss_end_kb;               /* at the end of the run */
        char first_error[256];         /* the first error seen, "" when none */
};

/* Total errors counted in r. */
uint64_t bench_errors(const struct bench_result *r);

/* Connects (idle connections first, then load connections), runs the load for
 * opts->duration_s, drains, and fills *ret. Returns >= 0 when the run happened
 * (errors are counted in *ret), -ECONNREFUSED when no load connection could be
 * established (ret->first_error says why), -EINVAL for a bad URL, -ENOMEM. */
int bench_run(const struct bench_opts *opts, struct bench_result *ret);

/* This process's resident set in KiB (VmRSS), or -1. */
long bench_rss_kb(void);
