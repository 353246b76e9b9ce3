/* Compact JSON text for result values (see jtext.h). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtext.h"

void kiln_jtext_init(struct kiln_jtext *j)
{
        memset(j, 0, sizeof(*j));
}

void kiln_jtext_free(struct kiln_jtext *j)
{
        free(j->buf);
        kiln_jtext_init(j);
}

static bool reserve(struct kiln_jtext *j, size_t more)
{
        if (j->err)
                return false;
        if (j->len + more + 1 <= j->cap)
                return true;
        size_t cap = j->cap ? j->cap : 256;
        while (cap < j->len + more + 1)
                cap *= 2;
        char *b = realloc(j->buf, cap);
        if (!b) {
                j->err = -ENOMEM;
                return false;
        }
        j->buf = b;
        j->cap = cap;
        return true;
}

static void put(struct kiln_jtext *j, const char *s, size_t n)
{
        if (!reserve(j, n))
                return;
        memcpy(j->buf + j->len, s, n);
        j->len += n;
        j->buf[j->len] = '\0';
}

/* What comes before any value: a comma after a sibling. */
static void before_value(struct kiln_jtext *j)
{
        if (j->need_comma)
                put(j, ",", 1);
        j->need_comma = true;
}

static void open_with(struct kiln_jtext *j, char open, char close)
{
        before_value(j);
        if (j->depth >= KILN_JTEXT_MAX_DEPTH) {
                j->err = j->err ? j->err : -EINVAL;
                return;
        }
        j->closer[j->depth++] = close;
        put(j, &open, 1);
        j->need_comma = false;
}

void kiln_jtext_open(struct kiln_jtext *j)
{
        open_with(j, '[', ']');
}

void kiln_jtext_open_object(struct kiln_jtext *j)
{
        open_with(j, '{', '}');
}

void kiln_jtext_close(struct kiln_jtext *j)
{
        if (j->depth == 0) {
                j->err = j->err ? j->err : -EINVAL;
                return;
        }
        put(j, &j->closer[--j->depth], 1);
        j->need_comma = true;
}

static void put_fmt(struct kiln_jtext *j, const char *text)
{
        before_value(j);
        put(j, text, strlen(text));
}

void kiln_jtext_num(struct kiln_jtext *j, double v)
{
        char b[32];

        if (!isfinite(v)) {
                put_fmt(j, "null");
                return;
        }
        snprintf(b, sizeof(b), "%.17g", v);
        put_fmt(j, b);
}

void kiln_jtext_f32(struct kiln_jtext *j, float v)
{
        char b[32];

        if (!isfinite(v)) {
                put_fmt(j, "null");
                return;
        }
        snprintf(b, sizeof(b), "%.9g", (double)v);
        put_fmt(j, b);
}

void kiln_jtext_int(struct kiln_jtext *j, int64_t v)
{
        char b[24];

        snprintf(b, sizeof(b), "%" PRId64, v);
        put_fmt(j, b);
}

void kiln_jtext_bool(struct kiln_jtext *j, bool v)
{
        put_fmt(j, v ? "true" : "false");
}

void kiln_jtext_null(struct kiln_jtext *j)
{
        put_fmt(j, "null");
}

/* The string body with JSON's escapes, in quotes. */
static void put_string(struct kiln_jtext *j, const char *s)
{
        static const char hex[] = "0123456789abcdef";

        put(j, "\"", 1);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                const char *esc = NULL;
                char u[7];
                switch (*p) {
                case '"': esc = "\\\""; break;
                case '\\': esc = "\\\\"; break;
                case '\n': esc = "\\n"; break;
                case '\r': esc = "\\r"; break;
                case '\t': esc = "\\t"; break;
                case '\b': esc = "\\b"; break;
                case '\f': esc = "\\f"; break;
                default:
                        if (*p < 0x20) {
                                memcpy(u, "\\u00", 4);
                                u[4] = hex[*p >> 4];
                                u[5] = hex[*p & 15];
                                u[6] = '\0';
                                esc = u;
                        }
                }
                if (esc)
                        put(j, esc, strlen(esc));
                else
                        put(j, (const char *)p, 1);
        }
        put(j, "\"", 1);
}

size_t kiln_jtext_str_bytes(const void *s, size_t n)
{
        const unsigned char *p = s;
        size_t bytes = 2;

        for (size_t i = 0; i < n; i++) {
                switch (p[i]) {
                case '"': case '\\': case '\n': case '\r': case '\t': case '\b': case '\f':
                        bytes += 2;
                        break;
                default:
                        bytes += p[i] < 0x20 ? 6 : 1;
                }
        }
        return bytes;
}

void kiln_jtext_str(struct kiln_jtext *j, const char *s)
{
        if (!s) {
                kiln_jtext_null(j);
                return;
        }
        before_value(j);
        put_string(j, s);
}

void kiln_jtext_key(struct kiln_jtext *j, const char *key)
{
        if (j->depth == 0 || j->closer[j->depth - 1] != '}' || !key) {
                j->err = j->err ? j->err : -EINVAL;
                return;
        }
        before_value(j);
        put_string(j, key);
        put(j, ":", 1);
        j->need_comma = false;
}

int kiln_jtext_finish(struct kiln_jtext *j, char **ret)
{
        int err = j->err;

        if (!err && (j->depth != 0 || j->len == 0))
                err = -EINVAL;
        if (err < 0) {
                kiln_jtext_free(j);
                return err;
        }
        *ret = j->buf;
        j->buf = NULL;
        kiln_jtext_init(j);
        return 0;
}

int kiln_result_take_jtext(struct kiln_result *r, const char *name, struct kiln_jtext *j)
{
        char *text = NULL;
        int err = kiln_jtext_finish(j, &text);

        return err < 0 ? err : kiln_result_take_json(r, name, text);
}
