/* Reading a job-shop instance (SPEC 1.5), shared by the C code and the CUDA kernel.
 *
 * An instance arrives as bytes: either the classic OR-Library text ("n m", then per
 * job m pairs "machine duration", machines from 0, `#` comments allowed) or the JSON
 * object of the params, {"jobs": [[[machine, duration], ...], ...]} or
 * {"format": "orlib", "text": "..."}. One function, js_parse, reads both: a first
 * call with no arrays checks everything and gives the dimensions, a second one with
 * arrays of those sizes fills them. The host checks at submit (instance.c turns a
 * struct js_parse_err into a sentence naming the field); the GPU only fills what the
 * host has checked, so the kernel builds the same instance from the same bytes.
 *
 * Every function is `static inline` and uses no library, so nvcc builds it too. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hostdev.h"

#define JS_MAX_OPS 10000          /* SPEC 1.5: at most 10,000 operations */
#define JS_MAX_DURATION 1000000   /* durations 0..10^6 */
/* A number read stops growing here (no overflow): any number this big or more is
 * read as this, far past every limit. */
#define JS_NUM_HUGE ((int64_t)1 << 40)

/* What went wrong (struct js_parse_err.code). */
enum js_perr {
        JS_OK,
        JS_E_SYNTAX,      /* OR-Library text: not an integer where one belongs */
        JS_E_SHORT,       /* OR-Library text: ends before the last job's pairs */
        JS_E_TRAILING,    /* OR-Library text: more after the last job */
        JS_E_DIMS,        /* OR-Library text: n or m below 1 */
        JS_E_TOO_MANY,    /* more than JS_MAX_OPS operations */
        JS_E_MACHINE,     /* machine outside 0..m-1 (JSON: 0..JS_MAX_OPS-1) */
        JS_E_TWICE,       /* a machine twice in one job */
        JS_E_NEGATIVE,    /* a negative duration */
        JS_E_LONG,        /* a duration over JS_MAX_DURATION */
        JS_E_EMPTY,       /* no operation at all */
        JS_E_JSON,        /* JSON: malformed text */
        JS_E_KEY,         /* JSON: a key other than jobs, format, text, or one twice */
        JS_E_TYPE,        /* JSON: a value of the wrong type (where: which) */
        JS_E_FORMAT,      /* JSON: format other than "orlib" */
        JS_E_SHAPE,       /* JSON: neither jobs nor format+text, or both */
        JS_E_CHAR,        /* JSON text: a character an OR-Library text cannot hold */
};

/* Where the error is, for the field name. */
enum js_where {
        JS_AT_INSTANCE,   /* params.instance (or the raw text part) */
        JS_AT_TEXT,       /* params.instance.text */
        JS_AT_FORMAT,     /* params.instance.format */
        JS_AT_JOBS,       /* params.instance.jobs, [job], [job][op], [job][op][item] as far as known */
};

struct js_parse_err {
        int code;          /* enum js_perr */
        int where;         /* enum js_where */
        int json;          /* the bytes were the JSON object (else raw OR-Library text) */
        int line;          /* OR-Library text: 1-based line of the error */
        int depth;         /* JS_AT_JOBS: how many of job, op, item are known (0..3) */
        int job, op, item;
        int64_t value;     /* the offending number, where there is one */
        int64_t limit;     /* the bound it broke */
        size_t offset;     /* JSON: byte offset of the error */
        char key[24];      /* JS_E_KEY: the key (truncated) */
};

struct js_dims {
        int32_t n_jobs, n_mach, n_ops;
};

/* The arrays js_parse fills (each NULL in a checking call). */
struct js_fill {
        int32_t *job_start;   /* n_jobs + 1: job j's operations are job_start[j]..job_start[j+1]-1 */
        int32_t *mach;        /* n_ops */
        int32_t *dur;         /* n_ops */
};

/* ---- reading characters: raw text, or the inside of a JSON string ---- */

#define JS_EOF (-1)
#define JS_BAD (-2)

struct js_reader {
        const char *p, *end;
        int line;
        int in_string;        /* decode JSON escapes; an unescaped quote ends the text */
};

/* The character at the reader and its length in bytes (no advance). */
KILN_HD static inline int js_char(const struct js_reader *r, int *ret_len)
{
        if (r->p >= r->end)
                return JS_EOF;
        unsigned char c = (unsigned char)*r->p;
        *ret_len = 1;
        if (!r->in_string)
                return c;
        if (c == '"')
                return JS_EOF;
        if (c < 0x20)
                return JS_BAD;
        if (c != '\\')
                return c;
        if (r->p + 1 >= r->end)
                return JS_BAD;
        *ret_len = 2;
        switch (r->p[1]) {
        case 'n': return '\n';
        case 't': return '\t';
        case 'r': return '\r';
        case 'b': return 8;
        case 'f': return 12;
        case '"': return '"';
        case '\\': return '\\';
        case '/': return '/';
        case 'u': {
                int v = 0;
                if (r->end - r->p < 6)
                        return JS_BAD;
                for (int i = 2; i < 6; i++) {
                        char h = r->p[i];
                        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                        if (d < 0)
                                return JS_BAD;
                        v = v * 16 + d;
                }
                *ret_len = 6;
                return v < 0x80 ? v : 0x80; /* no OR-Library text needs more than ASCII */
        }
        }
        return JS_BAD;
}

KILN_HD static inline void js_advance(struct js_reader *r, int len, int c)
{
        r->p += len;
        if (c == '\n')
                r->line++;
}

KILN_HD static inline int js_is_space(int c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skips blanks and `#` comments. Returns the next character (not consumed). */
KILN_HD static inline int js_skip_blank(struct js_reader *r)
{
        int len = 1;
        for (;;) {
                int c = js_char(r, &len);
                if (js_is_space(c)) {
                        js_advance(r, len, c);
                } else if (c == '#') {
                        while (c != JS_EOF && c != JS_BAD && c != '\n') {
                                js_advance(r, len, c);
                                c = js_char(r, &len);
                        }
                } else {
                        return c;
                }
        }
}

/* Reads one integer token of the OR-Library text into *ret (saturating far beyond
 * any bound). Returns JS_OK, JS_E_SHORT at the end, JS_E_SYNTAX or JS_E_CHAR. */
KILN_HD static inline int js_read_int(struct js_reader *r, int64_t *ret)
{
        int len = 1, c = js_skip_blank(r), neg = 0, digits = 0;
        int64_t v = 0;

        if (c == JS_EOF)
                return JS_E_SHORT;
        if (c == JS_BAD || c == 0x80)
                return JS_E_CHAR;
        if (c == '-' || c == '+') {
                neg = c == '-';
                js_advance(r, len, c);
                c = js_char(r, &len);
        }
        while (c >= '0' && c <= '9') {
                v = v < JS_NUM_HUGE ? v * 10 + (c - '0') : JS_NUM_HUGE;
                digits++;
                js_advance(r, len, c);
                c = js_char(r, &len);
        }
        if (!digits || !(c == JS_EOF || c == '#' || js_is_space(c)))
                return c == JS_BAD || c == 0x80 ? JS_E_CHAR : JS_E_SYNTAX;
        *ret = neg ? -v : v;
        return JS_OK;
}

KILN_HD static inline int js_fail(struct js_parse_err *e, int code, int where)
{
        e->code = code;
        e->where = where;
        return code;
}

/* The OR-Library text at r. `stamp` (JS_MAX_OPS entries, or NULL to skip the
 * machine-twice check) is scratch. */
KILN_HD static inline int js_parse_orlib(struct js_reader *r, struct js_dims *d, const struct js_fill *f,
                                         int32_t *stamp, struct js_parse_err *e, int where)
{
        int64_t n = 0, m = 0;
        int c;

        e->line = r->line;
        if ((c = js_read_int(r, &n)) != JS_OK || (e->line = r->line, c = js_read_int(r, &m)) != JS_OK) {
                e->line = r->line;
                return js_fail(e, c, where);
        }
        e->value = n < 1 ? n : m;
        if (n < 1 || m < 1)
                return js_fail(e, JS_E_DIMS, where);
        if (n > JS_MAX_OPS || m > JS_MAX_OPS || n * m > JS_MAX_OPS) {
                e->value = n > JS_MAX_OPS || m > JS_MAX_OPS ? (n > m ? n : m) : n * m;
                e->limit = JS_MAX_OPS;
                return js_fail(e, JS_E_TOO_MANY, where);
        }
        for (int32_t i = 0; stamp && i < m; i++)
                stamp[i] = -1;
        for (int32_t j = 0; j < n; j++) {
                if (f->job_start)
                        f->job_start[j] = (int32_t)(j * m);
                for (int32_t k = 0; k < m; k++) {
                        int64_t mach = 0, dur = 0;
                        e->job = j;
                        e->op = k;
                        if ((c = js_read_int(r, &mach)) != JS_OK || (c = js_read_int(r, &dur)) != JS_OK) {
                                e->line = r->line;
                                return js_fail(e, c, where);
                        }
                        e->line = r->line;
                        e->value = mach;
                        e->limit = m - 1;
                        if (mach < 0 || mach >= m)
                                return js_fail(e, JS_E_MACHINE, where);
                        if (stamp && stamp[mach] == j)
                                return js_fail(e, JS_E_TWICE, where);
                        if (stamp)
                                stamp[mach] = j;
                        e->value = dur;
                        e->limit = JS_MAX_DURATION;
                        if (dur < 0 || dur > JS_MAX_DURATION)
                                return js_fail(e, dur < 0 ? JS_E_NEGATIVE : JS_E_LONG, where);
                        if (f->mach) {
                                f->mach[j * m + k] = (int32_t)mach;
                                f->dur[j * m + k] = (int32_t)dur;
                        }
                }
        }
        c = js_skip_blank(r);
        e->line = r->line;
        if (c != JS_EOF)
                return js_fail(e, c == JS_BAD ? JS_E_CHAR : JS_E_TRAILING, where);
        if (f->job_start)
                f->job_start[n] = (int32_t)(n * m);
        d->n_jobs = (int32_t)n;
        d->n_mach = (int32_t)m;
        d->n_ops = (int32_t)(n * m);
        return JS_OK;
}

/* ---- the JSON object ---- */

struct js_json {
        const char *s, *p, *end;
};

KILN_HD static inline int js_json_ws(struct js_json *j)
{
        while (j->p < j->end && js_is_space((unsigned char)*j->p))
                j->p++;
        return j->p < j->end ? (unsigned char)*j->p : JS_EOF;
}

KILN_HD static inline int js_json_fail(struct js_json *j, struct js_parse_err *e, int code, int where)
{
        e->offset = (size_t)(j->p - j->s);
        return js_fail(e, code, where);
}

/* Expects character `want` (after blanks) and takes it. */
KILN_HD static inline int js_json_take(struct js_json *j, int want)
{
        if (js_json_ws(j) != want)
                return 0;
        j->p++;
        return 1;
}

/* A JSON integer (no fraction, no exponent) into *ret. 1 when read. */
KILN_HD static inline int js_json_int(struct js_json *j, int64_t *ret)
{
        int neg = 0, digits = 0;
        int64_t v = 0;

        js_json_ws(j);
        if (j->p < j->end && *j->p == '-') {
                neg = 1;
                j->p++;
        }
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
                v = v < JS_NUM_HUGE ? v * 10 + (*j->p - '0') : JS_NUM_HUGE;
                digits++;
                j->p++;
        }
        if (!digits || (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')))
                return 0;
        *ret = neg ? -v : v;
        return 1;
}

/* A JSON string's end (the closing quote) from just after its opening quote;
 * NULL when it does not end. */
KILN_HD static inline const char *js_json_string_end(const char *p, const char *end)
{
        while (p < end && *p != '"')
                p += *p == '\\' ? 2 : 1;
        return p < end ? p : NULL;
}

/* "jobs": [[[m, d], ...], ...] */
KILN_HD static inline int js_parse_jobs(struct js_json *j, struct js_dims *d, const struct js_fill *f,
                                        int32_t *stamp, struct js_parse_err *e)
{
        int32_t n_jobs = 0, n_ops = 0, n_mach = 0;

        e->depth = 0;
        if (!js_json_take(j, '['))
                return js_json_fail(j, e, JS_E_TYPE, JS_AT_JOBS);
        for (int32_t i = 0; stamp && i < JS_MAX_OPS; i++)
                stamp[i] = -1;
        if (js_json_ws(j) == ']') {
                j->p++;
        } else {
                for (;;) {
                        e->depth = 1;
                        e->job = n_jobs;
                        if (f->job_start)
                                f->job_start[n_jobs] = n_ops;
                        if (!js_json_take(j, '['))
                                return js_json_fail(j, e, JS_E_TYPE, JS_AT_JOBS);
                        int32_t k = 0;
                        if (js_json_ws(j) == ']') {
                                j->p++;
                        } else {
                                for (;;) {
                                        int64_t mach = 0, dur = 0;
                                        e->depth = 2;
                                        e->op = k;
                                        if (n_ops >= JS_MAX_OPS) {
                                                e->value = n_ops + 1;
                                                e->limit = JS_MAX_OPS;
                                                return js_json_fail(j, e, JS_E_TOO_MANY, JS_AT_INSTANCE);
                                        }
                                        if (!js_json_take(j, '['))
                                                return js_json_fail(j, e, JS_E_TYPE, JS_AT_JOBS);
                                        e->depth = 3;
                                        e->item = 0;
                                        if (!js_json_int(j, &mach))
                                                return js_json_fail(j, e, JS_E_TYPE, JS_AT_JOBS);
                                        e->value = mach;
                                        e->limit = JS_MAX_OPS - 1;
                                        if (mach < 0 || mach >= JS_MAX_OPS)
                                                return js_json_fail(j, e, JS_E_MACHINE, JS_AT_JOBS);
                                        if (stamp && stamp[mach] == n_jobs)
                                                return js_json_fail(j, e, JS_E_TWICE, JS_AT_JOBS);
                                        if (stamp)
                                                stamp[mach] = n_jobs;
                                        e->item = 1;
                                        if (!js_json_take(j, ',') || !js_json_int(j, &dur))
                                                return js_json_fail(j, e, JS_E_TYPE, JS_AT_JOBS);
                                        e->value = dur;
                                        e->limit = JS_MAX_DURATION;
                                        if (dur < 0 || dur > JS_MAX_DURATION)
                                                return js_json_fail(j, e, dur < 0 ? JS_E_NEGATIVE : JS_E_LONG,
                                                                    JS_AT_JOBS);
                                        e->depth = 2;
                                        if (!js_json_take(j, ']'))
                                                return js_json_fail(j, e, JS_E_TYPE, JS_AT_JOBS);
                                        if (f->mach) {
                                                f->mach[n_ops] = (int32_t)mach;
                                                f->dur[n_ops] = (int32_t)dur;
                                        }
                                        if (mach + 1 > n_mach)
                                                n_mach = (int32_t)mach + 1;
                                        n_ops++;
                                        k++;
                                        if (js_json_take(j, ','))
                                                continue;
                                        e->depth = 1;
                                        if (!js_json_take(j, ']'))
                                                return js_json_fail(j, e, JS_E_JSON, JS_AT_JOBS);
                                        break;
                                }
                        }
                        n_jobs++;
                        if (js_json_take(j, ','))
                                continue;
                        e->depth = 0;
                        if (!js_json_take(j, ']'))
                                return js_json_fail(j, e, JS_E_JSON, JS_AT_JOBS);
                        break;
                }
        }
        if (f->job_start)
                f->job_start[n_jobs] = n_ops;
        e->depth = 0;
        if (n_ops == 0)
                return js_json_fail(j, e, JS_E_EMPTY, JS_AT_JOBS);
        d->n_jobs = n_jobs;
        d->n_mach = n_mach;
        d->n_ops = n_ops;
        return JS_OK;
}

KILN_HD static inline int js_key_is(const char *k, const char *kend, const char *want)
{
        while (k < kend && *want && *k == *want) {
                k++;
                want++;
        }
        return k == kend && !*want;
}

KILN_HD static inline int js_parse_json(struct js_json *j, struct js_dims *d, const struct js_fill *f,
                                        int32_t *stamp, struct js_parse_err *e)
{
        int seen_jobs = 0, seen_format = 0, seen_text = 0, r;

        if (!js_json_take(j, '{'))
                return js_json_fail(j, e, JS_E_JSON, JS_AT_INSTANCE);
        if (js_json_ws(j) != '}') {
                for (;;) {
                        if (!js_json_take(j, '"'))
                                return js_json_fail(j, e, JS_E_JSON, JS_AT_INSTANCE);
                        const char *k = j->p, *kend = js_json_string_end(j->p, j->end);
                        if (!kend)
                                return js_json_fail(j, e, JS_E_JSON, JS_AT_INSTANCE);
                        j->p = kend + 1;
                        if (!js_json_take(j, ':'))
                                return js_json_fail(j, e, JS_E_JSON, JS_AT_INSTANCE);
                        int *seen = js_key_is(k, kend, "jobs") ? &seen_jobs
                                    : js_key_is(k, kend, "format") ? &seen_format
                                    : js_key_is(k, kend, "text") ? &seen_text : NULL;
                        if (!seen || *seen) {
                                size_t n = (size_t)(kend - k) < sizeof(e->key) - 1 ? (size_t)(kend - k)
                                                                                   : sizeof(e->key) - 1;
                                for (size_t i = 0; i < n; i++)
                                        e->key[i] = k[i] >= 0x20 && k[i] < 0x7f ? k[i] : '?';
                                e->key[n] = '\0';
                                e->value = seen != NULL;
                                return js_json_fail(j, e, JS_E_KEY, JS_AT_INSTANCE);
                        }
                        *seen = 1;
                        if (seen == &seen_jobs) {
                                if ((r = js_parse_jobs(j, d, f, stamp, e)) != JS_OK)
                                        return r;
                        } else if (seen == &seen_format) {
                                if (!js_json_take(j, '"'))
                                        return js_json_fail(j, e, JS_E_TYPE, JS_AT_FORMAT);
                                const char *v = j->p, *vend = js_json_string_end(j->p, j->end);
                                if (!vend)
                                        return js_json_fail(j, e, JS_E_JSON, JS_AT_FORMAT);
                                if (!js_key_is(v, vend, "orlib"))
                                        return js_json_fail(j, e, JS_E_FORMAT, JS_AT_FORMAT);
                                j->p = vend + 1;
                        } else {
                                if (!js_json_take(j, '"'))
                                        return js_json_fail(j, e, JS_E_TYPE, JS_AT_TEXT);
                                struct js_reader rd = { j->p, j->end, 1, 1 };
                                if ((r = js_parse_orlib(&rd, d, f, stamp, e, JS_AT_TEXT)) != JS_OK)
                                        return r;
                                const char *vend = js_json_string_end(j->p, j->end);
                                if (!vend)
                                        return js_json_fail(j, e, JS_E_JSON, JS_AT_TEXT);
                                j->p = vend + 1;
                        }
                        if (js_json_take(j, ','))
                                continue;
                        if (!js_json_take(j, '}'))
                                return js_json_fail(j, e, JS_E_JSON, JS_AT_INSTANCE);
                        break;
                }
        } else {
                j->p++;
        }
        if (js_json_ws(j) != JS_EOF)
                return js_json_fail(j, e, JS_E_JSON, JS_AT_INSTANCE);
        if (seen_jobs == (seen_format || seen_text))
                return js_json_fail(j, e, JS_E_SHAPE, JS_AT_INSTANCE);
        if (seen_format != seen_text)
                return js_json_fail(j, e, JS_E_SHAPE, seen_format ? JS_AT_TEXT : JS_AT_FORMAT);
        return JS_OK;
}

/* Reads the instance in bytes[0..len): the JSON object when its first non-blank
 * byte is `{`, else the OR-Library text. With every array of f NULL it checks and
 * writes the dimensions to *d; with arrays sized by those dimensions it also fills
 * them. `stamp` (JS_MAX_OPS int32 of scratch) enables the machine-twice check; a
 * filling call after a checking one may pass NULL. Returns JS_OK or an enum js_perr
 * with *e telling where. */
KILN_HD static inline int js_parse(const char *bytes, size_t len, struct js_dims *d, const struct js_fill *f,
                                   int32_t *stamp, struct js_parse_err *e)
{
        const char *p = bytes, *end = bytes + len;

        struct js_parse_err zero = { 0 };
        *e = zero;
        while (p < end && js_is_space((unsigned char)*p))
                p++;
        if (p < end && *p == '{') {
                struct js_json j = { bytes, p, end };
                e->json = 1;
                return js_parse_json(&j, d, f, stamp, e);
        }
        struct js_reader r = { bytes, end, 1, 0 };
        return js_parse_orlib(&r, d, f, stamp, e, JS_AT_INSTANCE);
}
