/* Reading a reply's top-level fields, and a part's header, in place; see
 * reply_scan.h.
 *
 * The walk checks RFC 8259's grammar (strings without raw control characters,
 * escapes, numbers, literals, nesting). What jansson checks beyond the grammar is
 * left to it: strings with bytes past ASCII (UTF-8 validity) or \u escapes
 * (surrogate pairs, \u0000), and numbers long enough to overflow a double or an
 * int64. Routine replies from kilnd have none of these. */
#include "reply_scan.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kind.h"

#define DEPTH_MAX 64 /* deeper: left to jansson */

struct scan {
        const char *p, *end;
};

static void skip_ws(struct scan *s)
{
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
                s->p++;
}

static bool at(const struct scan *s, char c)
{
        return s->p < s->end && *s->p == c;
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

/* Bytes a string holds as they are: ASCII but controls, '"' and '\\'. A table:
 * the job ids in every reply and part header are most of the bytes scanned. */
static const bool plain[256] = { [0x20 ... 0x21] = true, [0x23 ... 0x5b] = true, [0x5d ... 0x7f] = true };

/* A string at s->p: [*v, *v + *n) are its bytes as written, *escaped whether it
 * has an escape. */
static bool scan_string(struct scan *s, const char **v, size_t *n, bool *escaped)
{
        if (!at(s, '"'))
                return false;
        const char *first = s->p + 1, *p = first, *end = s->end;
        *escaped = false;
        for (;;) {
                while (p < end && plain[(unsigned char)*p])
                        p++;
                if (p >= end || *p == '"')
                        break;
                if (*p++ != '\\') /* a control or a byte past ASCII */
                        return false;
                *escaped = true;
                if (p >= end || !memchr("\"\\/bfnrt", *p++, 8))
                        return false;
        }
        if (p >= end)
                return false;
        *v = first;
        *n = (size_t)(p - first);
        s->p = p + 1;
        return true;
}

/* One to `max` digits. */
static bool scan_digits(struct scan *s, size_t max)
{
        const char *first = s->p;
        while (s->p < s->end && is_digit(*s->p))
                s->p++;
        return s->p > first && (size_t)(s->p - first) <= max;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, with at most 18 digits before
 * the point and 2 in the exponent: nothing that overflows an int64 or a double. */
static bool scan_number(struct scan *s)
{
        if (at(s, '-'))
                s->p++;
        if (at(s, '0'))
                s->p++;
        else if (!scan_digits(s, 18))
                return false;
        if (at(s, '.')) {
                s->p++;
                if (!scan_digits(s, SIZE_MAX))
                        return false;
        }
        if (at(s, 'e') || at(s, 'E')) {
                s->p++;
                if (at(s, '+') || at(s, '-'))
                        s->p++;
                if (!scan_digits(s, 2))
                        return false;
        }
        return true;
}

static bool scan_literal(struct scan *s, const char *word)
{
        size_t n = strlen(word);
        if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n))
                return false;
        s->p += n;
        return true;
}

static bool skip_value(struct scan *s, int depth);

/* The `open` of an array or object at s->p: *more is false when its `close`
 * follows at once (then taken too). */
static bool scan_open(struct scan *s, int depth, char open, char close, bool *more)
{
        if (depth > DEPTH_MAX || !at(s, open))
                return false;
        s->p++;
        skip_ws(s);
        *more = !at(s, close);
        if (!*more)
                s->p++;
        return true;
}

/* After an element: a ',' (*more) or the `close` (!*more). */
static bool scan_next(struct scan *s, char close, bool *more)
{
        skip_ws(s);
        *more = at(s, ',');
        if (!*more && !at(s, close))
                return false;
        s->p++;
        skip_ws(s);
        return true;
}

/* The elements of an array at s->p. */
static bool scan_array(struct scan *s, int depth)
{
        bool more;

        if (!scan_open(s, depth, '[', ']', &more))
                return false;
        while (more)
                if (!skip_value(s, depth + 1) || !scan_next(s, ']', &more))
                        return false;
        return true;
}

/* Takes the value of member `key` (its bytes as written, `escaped` when it has an
 * escape) at s->p, in an object at `depth`. */
typedef bool (*member_fn)(struct scan *s, const char *key, size_t n, bool escaped, int depth, void *ctx);

static bool scan_object(struct scan *s, int depth, member_fn take, void *ctx)
{
        const char *k;
        size_t kn;
        bool escaped, more;

        if (!scan_open(s, depth, '{', '}', &more))
                return false;
        while (more) {
                if (!scan_string(s, &k, &kn, &escaped))
                        return false;
                skip_ws(s);
                if (!at(s, ':'))
                        return false;
                s->p++;
                skip_ws(s);
                if (!take(s, k, kn, escaped, depth, ctx) || !scan_next(s, '}', &more))
                        return false;
        }
        return true;
}

static bool skip_member(struct scan *s, const char *key, size_t n, bool escaped, int depth, void *ctx)
{
        (void)key, (void)n, (void)escaped, (void)ctx;
        return skip_value(s, depth + 1);
}

static bool skip_value(struct scan *s, int depth)
{
        const char *v;
        size_t n;
        bool escaped;

        if (s->p >= s->end)
                return false;
        switch (*s->p) {
        case '"':
                return scan_string(s, &v, &n, &escaped);
        case '{':
                return scan_object(s, depth, skip_member, NULL);
        case '[':
                return scan_array(s, depth);
        case 't':
                return scan_literal(s, "true");
        case 'f':
                return scan_literal(s, "false");
        case 'n':
                return scan_literal(s, "null");
        default:
                return scan_number(s);
        }
}

static bool key_is(const char *k, size_t n, const char *name)
{
        return strlen(name) == n && !memcmp(k, name, n);
}

/* A kept string field: a string without escapes that fits dst with its NUL. */
static bool keep_string(struct scan *s, char *dst, size_t size)
{
        const char *v;
        size_t n;
        bool escaped;

        if (!scan_string(s, &v, &n, &escaped) || escaped || n >= size)
                return false;
        memcpy(dst, v, n);
        dst[n] = '\0';
        return true;
}

/* A `ref`, a byte count, a dimension: digits only, few enough for any integer
 * jansson reads (int64). */
static bool keep_uint(struct scan *s, uint64_t *ret)
{
        const char *first = s->p;
        uint64_t v = 0;

        while (s->p < s->end && is_digit(*s->p) && s->p - first < 18)
                v = v * 10 + (uint64_t)(*s->p++ - '0');
        if (s->p == first || (s->p < s->end && (is_digit(*s->p) || *s->p == '.' || *s->p == 'e' || *s->p == 'E')) ||
            (*first == '0' && s->p - first > 1))
                return false;
        *ret = v;
        return true;
}

/* A member of an element of "parts": its name and byte count kept. */
static bool part_member(struct scan *s, const char *key, size_t n, bool escaped, int depth, void *ctx)
{
        struct reply_part *p = ctx;

        if (escaped)
                return false;
        if (key_is(key, n, "name"))
                return keep_string(s, p->name, sizeof(p->name));
        if (key_is(key, n, "bytes"))
                return (p->has_bytes = keep_uint(s, &p->bytes));
        return skip_value(s, depth + 1);
}

/* "parts": its elements counted, the first REPLY_MAX_PARTS kept. */
static bool scan_parts(struct scan *s, int depth, struct reply *r)
{
        bool more;

        r->n_parts = 0;
        r->parts_fault = NULL;
        if (!scan_open(s, depth, '[', ']', &more))
                return false;
        r->parts_is_array = true;
        for (; more; r->n_parts++) {
                struct reply_part spare, *p = r->n_parts < REPLY_MAX_PARTS ? &r->parts[r->n_parts] : &spare;
                memset(p, 0, sizeof(*p));
                if (at(s, '{')) {
                        if (!scan_object(s, depth + 1, part_member, p))
                                return false;
                        if (!p->name[0] && !r->parts_fault)
                                r->parts_fault = "a part without a name";
                } else {
                        if (!skip_value(s, depth + 1))
                                return false;
                        if (!r->parts_fault)
                                r->parts_fault = "a part that is not an object";
                }
                if (!scan_next(s, ']', &more))
                        return false;
        }
        if (r->n_parts > REPLY_MAX_PARTS && !r->parts_fault)
                r->parts_fault = "more parts than kiln-bench checks";
        return true;
}

/* A top-level member: the kept ones into the reply, the others skipped. */
static bool reply_member(struct scan *s, const char *key, size_t n, bool escaped, int depth, void *ctx)
{
        struct reply *r = ctx;

        if (escaped)
                return false;
        if (key_is(key, n, "op"))
                return keep_string(s, r->op, sizeof(r->op));
        if (key_is(key, n, "job"))
                return keep_string(s, r->job, sizeof(r->job));
        if (key_is(key, n, "state"))
                return keep_string(s, r->state, sizeof(r->state));
        if (key_is(key, n, "ref"))
                return (r->has_ref = keep_uint(s, &r->ref));
        if (key_is(key, n, "parts"))
                return scan_parts(s, depth + 1, r);
        if (key_is(key, n, "result"))
                r->result_is_object = at(s, '{');
        return skip_value(s, depth + 1);
}

int reply_scan(const char *text, size_t len, struct reply *r)
{
        struct scan s = { .p = text, .end = text + len };

        memset(r, 0, offsetof(struct reply, parts));
        skip_ws(&s);
        if (!scan_object(&s, 0, reply_member, r))
                return -1;
        skip_ws(&s);
        return s.p == s.end ? 0 : -1;
}

/* What part_head_scan reads besides what it returns. */
struct head {
        struct part_head *h;
        char dtype[8];
        int ndim;
        uint64_t shape[4];
};

static bool scan_shape(struct scan *s, int depth, struct head *x)
{
        bool more;

        x->ndim = 0;
        if (!scan_open(s, depth, '[', ']', &more))
                return false;
        for (; more; x->ndim++)
                if (x->ndim == 4 || !keep_uint(s, &x->shape[x->ndim]) || !scan_next(s, ']', &more))
                        return false;
        return true;
}

static bool head_member(struct scan *s, const char *key, size_t n, bool escaped, int depth, void *ctx)
{
        struct head *x = ctx;

        if (escaped)
                return false;
        if (key_is(key, n, "job"))
                return keep_string(s, x->h->job, sizeof(x->h->job));
        if (key_is(key, n, "part"))
                return keep_string(s, x->h->part, sizeof(x->h->part));
        if (key_is(key, n, "dtype"))
                return keep_string(s, x->dtype, sizeof(x->dtype));
        if (key_is(key, n, "shape"))
                return scan_shape(s, depth + 1, x);
        return skip_value(s, depth + 1);
}

/* Bytes per element of a part's dtype (kind.h's), 0 for none known. */
static uint64_t dtype_size(const char *dtype)
{
        enum kiln_dtype t;
        return kiln_dtype_from_name(dtype, &t) < 0 ? 0 : kiln_dtype_size(t);
}

int part_head_scan(const char *text, size_t len, struct part_head *h)
{
        struct scan s = { .p = text, .end = text + len };
        struct head x = { .h = h };

        memset(h, 0, sizeof(*h));
        skip_ws(&s);
        if (!scan_object(&s, 0, head_member, &x))
                return -1;
        skip_ws(&s);
        h->bytes = dtype_size(x.dtype);
        if (s.p != s.end || !h->part[0] || !h->bytes || !x.ndim)
                return -1;
        for (int i = 0; i < x.ndim; i++)
                if (__builtin_mul_overflow(h->bytes, x.shape[i], &h->bytes))
                        return -1;
        return 0;
}
