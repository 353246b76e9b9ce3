/* Reading a reply's top-level fields in place; see reply_scan.h.
 *
 * The walk checks RFC 8259's grammar (strings without raw control characters,
 * escapes, numbers, literals, nesting). What jansson checks beyond the grammar is
 * left to it: strings with bytes past ASCII (UTF-8 validity) or \u escapes
 * (surrogate pairs, \u0000), and numbers long enough to overflow a double or an
 * int64. Routine replies from kilnd have none of these. */
#include "reply_scan.h"

#include <stdint.h>
#include <string.h>

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

/* A string at s->p: [*v, *v + *n) are its bytes as written, *escaped whether it
 * has an escape. */
static bool scan_string(struct scan *s, const char **v, size_t *n, bool *escaped)
{
        if (!at(s, '"'))
                return false;
        const char *first = ++s->p;
        *escaped = false;
        while (s->p < s->end && *s->p != '"') {
                unsigned char ch = (unsigned char)*s->p++;
                if (ch < 0x20 || ch >= 0x80)
                        return false;
                if (ch != '\\')
                        continue;
                *escaped = true;
                if (s->p >= s->end || !memchr("\"\\/bfnrt", *s->p++, 8))
                        return false;
        }
        if (s->p >= s->end)
                return false;
        *v = first;
        *n = (size_t)(s->p - first);
        s->p++;
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

/* The elements of an array at s->p, counted into *n when n is not NULL. */
static bool scan_array(struct scan *s, int depth, size_t *n)
{
        size_t count = 0;
        bool more;

        if (!scan_open(s, depth, '[', ']', &more))
                return false;
        for (; more; count++)
                if (!skip_value(s, depth + 1) || !scan_next(s, ']', &more))
                        return false;
        if (n)
                *n = count;
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
                return scan_array(s, depth, NULL);
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

/* `ref`: digits only, few enough for any integer jansson reads (int64). */
static bool keep_ref(struct scan *s, uint64_t *ref)
{
        const char *first = s->p;
        uint64_t v = 0;

        while (s->p < s->end && is_digit(*s->p) && s->p - first < 18)
                v = v * 10 + (uint64_t)(*s->p++ - '0');
        if (s->p == first || (s->p < s->end && (is_digit(*s->p) || *s->p == '.' || *s->p == 'e' || *s->p == 'E')) ||
            (*first == '0' && s->p - first > 1))
                return false;
        *ref = v;
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
                return (r->has_ref = keep_ref(s, &r->ref));
        if (key_is(key, n, "parts"))
                return scan_array(s, depth + 1, &r->n_parts);
        return skip_value(s, depth + 1);
}

int reply_scan(const char *text, size_t len, struct reply *r)
{
        struct scan s = { .p = text, .end = text + len };

        memset(r, 0, sizeof(*r));
        skip_ws(&s);
        if (!scan_object(&s, 0, reply_member, r))
                return -1;
        skip_ws(&s);
        return s.p == s.end ? 0 : -1;
}
