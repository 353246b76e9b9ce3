/* Reading an instance on the host: parse.h does the reading, this file allocates
 * and turns a parse error into a sentence that names the field. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobshop.h"

/* "params.instance.jobs[2][1][0]" as far as the error knows its place. */
static void jobs_field(const struct js_parse_err *e, char *buf, size_t size)
{
        int n = snprintf(buf, size, "params.instance.jobs");
        if (e->depth >= 1 && n > 0 && (size_t)n < size)
                n += snprintf(buf + n, size - (size_t)n, "[%d]", e->job);
        if (e->depth >= 2 && n > 0 && (size_t)n < size)
                n += snprintf(buf + n, size - (size_t)n, "[%d]", e->op);
        if (e->depth >= 3 && n > 0 && (size_t)n < size)
                snprintf(buf + n, size - (size_t)n, "[%d]", e->item);
}

/* Where in the OR-Library text: "line 3" (and the job and operation when known). */
static void text_place(const struct js_parse_err *e, bool with_op, char *buf, size_t size)
{
        if (with_op)
                snprintf(buf, size, "line %d (job %d, operation %d)", e->line, e->job, e->op);
        else
                snprintf(buf, size, "line %d", e->line);
}

static int describe(const struct js_parse_err *e, struct kiln_error *err)
{
        char field[128], at[96], num[48];
        const char *what = e->json ? "the instance's text" : "the OR-Library text";

        /* A number read as JS_NUM_HUGE was longer than the reader keeps. */
        if (e->value >= JS_NUM_HUGE || e->value <= -JS_NUM_HUGE)
                snprintf(num, sizeof(num), "%s", e->value < 0 ? "below -10^12" : "past 10^12");
        else
                snprintf(num, sizeof(num), "%lld", (long long)e->value);

        switch (e->where) {
        case JS_AT_JOBS: jobs_field(e, field, sizeof(field)); break;
        case JS_AT_TEXT: snprintf(field, sizeof(field), "params.instance.text"); break;
        case JS_AT_FORMAT: snprintf(field, sizeof(field), "params.instance.format"); break;
        default: snprintf(field, sizeof(field), "params.instance"); break;
        }
        bool text = e->where == JS_AT_TEXT || (!e->json && e->where == JS_AT_INSTANCE);
        if (text) {
                bool op = e->code == JS_E_MACHINE || e->code == JS_E_TWICE || e->code == JS_E_NEGATIVE ||
                          e->code == JS_E_LONG || e->code == JS_E_SHORT;
                text_place(e, op && e->code != JS_E_SHORT, at, sizeof(at));
        } else {
                at[0] = '\0';
        }

        switch (e->code) {
        case JS_E_SYNTAX:
                return kiln_error_set(err, field, "%s is malformed at %s: an integer was expected", what, at);
        case JS_E_CHAR:
                return kiln_error_set(err, field, "%s holds a character that is not part of an OR-Library "
                                      "instance at %s", what, at);
        case JS_E_SHORT:
                return kiln_error_set(err, field, "%s ends at %s before job %d's operation %d: each job needs "
                                      "m pairs \"machine duration\"", what, at, e->job, e->op);
        case JS_E_TRAILING:
                return kiln_error_set(err, field, "%s has more than n jobs of m pairs: unexpected text at %s",
                                      what, at);
        case JS_E_DIMS:
                return kiln_error_set(err, field, "%s must start with \"n m\", both at least 1 (got %lld at %s)",
                                      what, (long long)e->value, at);
        case JS_E_TOO_MANY:
                return kiln_error_set(err, field, "the instance has more than %lld operations (%lld)",
                                      (long long)e->limit, (long long)e->value);
        case JS_E_MACHINE:
                if (text)
                        return kiln_error_set(err, field, "%s names machine %s at %s: machines are 0..%lld",
                                              what, num, at, (long long)e->limit);
                return kiln_error_set(err, field, "%s is machine %s: machines are numbered from 0 to at most "
                                      "%lld", field, num, (long long)e->limit);
        case JS_E_TWICE:
                if (text)
                        return kiln_error_set(err, field, "%s sends job %d to machine %lld twice, at %s: a job "
                                              "visits each machine at most once", what, e->job,
                                              (long long)e->value, at);
                return kiln_error_set(err, field, "%s: job %d visits machine %lld a second time; a job visits "
                                      "each machine at most once", field, e->job, (long long)e->value);
        case JS_E_NEGATIVE:
        case JS_E_LONG:
                if (text)
                        return kiln_error_set(err, field, "%s has duration %s at %s: durations are 0..%lld",
                                              what, num, at, (long long)e->limit);
                return kiln_error_set(err, field, "%s is duration %s: durations are 0..%lld", field, num,
                                      (long long)e->limit);
        case JS_E_EMPTY:
                return kiln_error_set(err, field, "%s holds no operation", field);
        case JS_E_JSON:
                return kiln_error_set(err, field, "the instance is not well-formed JSON near byte %zu", e->offset);
        case JS_E_KEY:
                if (e->value)
                        return kiln_error_set(err, field, "params.instance gives \"%s\" twice", e->key);
                return kiln_error_set(err, field, "params.instance.%s is not a field of an instance (jobs, or "
                                      "format and text)", e->key);
        case JS_E_TYPE:
                if (e->where == JS_AT_JOBS)
                        return kiln_error_set(err, field, "%s must be %s", field,
                                              e->depth == 0 ? "an array of jobs"
                                              : e->depth == 1 ? "an array of [machine, duration] pairs"
                                              : e->depth == 2 ? "a pair [machine, duration]" : "an integer");
                return kiln_error_set(err, field, "%s must be a string", field);
        case JS_E_FORMAT:
                return kiln_error_set(err, field, "%s must be \"orlib\"", field);
        case JS_E_SHAPE:
                if (e->where == JS_AT_TEXT)
                        return kiln_error_set(err, field, "%s is required with format \"orlib\"", field);
                if (e->where == JS_AT_FORMAT)
                        return kiln_error_set(err, field, "%s (\"orlib\") is required with text", field);
                return kiln_error_set(err, field, "params.instance must hold either jobs or format and text");
        }
        return kiln_error_set(err, field, "the instance could not be read");
}

/* Checks, and with `out` non-NULL fills it. */
static int parse(const void *bytes, size_t len, struct js_dims *ret_dims, struct js_instance *out,
                 struct kiln_error *err)
{
        struct js_parse_err e;
        struct js_dims d = { 0 };
        struct js_fill none = { 0 };

        if (len > JS_MAX_TEXT_BYTES)
                return kiln_error_set(err, "params.instance", "the instance holds %zu bytes, more than %u",
                                      len, JS_MAX_TEXT_BYTES);
        int32_t *stamp = malloc(JS_MAX_OPS * sizeof(*stamp));
        if (!stamp)
                return -ENOMEM;
        int r = js_parse(bytes, len, &d, &none, stamp, &e);
        free(stamp);
        if (r != JS_OK)
                return describe(&e, err);
        if (out) {
                size_t ints = (size_t)d.n_jobs + 1 + 2 * (size_t)d.n_ops;
                int32_t *mem = malloc(ints * sizeof(*mem));
                if (!mem)
                        return -ENOMEM;
                struct js_fill f = { mem, mem + d.n_jobs + 1, mem + d.n_jobs + 1 + d.n_ops };
                struct js_dims again;
                if (js_parse(bytes, len, &again, &f, NULL, &e) != JS_OK ||
                    again.n_ops != d.n_ops || again.n_jobs != d.n_jobs) {
                        free(mem);
                        return kiln_error_set(err, "params.instance", "the instance read differently twice");
                }
                out->n_jobs = d.n_jobs;
                out->n_mach = d.n_mach;
                out->n_ops = d.n_ops;
                out->job_start = f.job_start;
                out->mach = f.mach;
                out->dur = f.dur;
        }
        *ret_dims = d;
        return 0;
}

int js_instance_check(const void *bytes, size_t len, struct js_dims *ret_dims, struct kiln_error *err)
{
        struct js_dims d;
        int r = parse(bytes, len, &d, NULL, err);
        if (r < 0)
                return r;
        *ret_dims = d;
        return 0;
}

int js_instance_parse(const void *bytes, size_t len, struct js_instance **ret, struct kiln_error *err)
{
        struct js_instance *in = calloc(1, sizeof(*in));
        struct js_dims d;

        if (!in)
                return -ENOMEM;
        int r = parse(bytes, len, &d, in, err);
        if (r < 0) {
                free(in);
                return r;
        }
        *ret = in;
        return 0;
}

void js_instance_free(struct js_instance *in)
{
        if (!in)
                return;
        free(in->job_start); /* the one block of every array */
        free(in);
}

const struct kiln_array *js_instance_input(const struct kiln_array *in, size_t n_in)
{
        return kiln_inputs_find(in, n_in, "instance");
}
