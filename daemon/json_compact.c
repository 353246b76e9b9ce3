/* One JSON value checked and copied compactly (see json_compact.h). */
#include "json_compact.h"

#include <stdbool.h>
#include <string.h>

struct scan {
        const char *t;
        size_t len, i;
        char *out;
        size_t o;
};

static void skip_ws(struct scan *s)
{
        while (s->i < s->len && (s->t[s->i] == ' ' || s->t[s->i] == '\t' || s->t[s->i] == '\n' || s->t[s->i] == '\r'))
                s->i++;
}

/* Copies text[from, s->i) to the output. */
static void emit_from(struct scan *s, size_t from)
{
        if (s->out)
                memcpy(s->out + s->o, s->t + from, s->i - from);
        s->o += s->i - from;
}

static bool is_hex(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool in(unsigned char c, unsigned char lo, unsigned char hi)
{
        return c >= lo && c <= hi;
}

/* The UTF-8 sequence at s->i (a lead byte >= 0x80): well-formed (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF). */
static int scan_utf8(struct scan *s)
{
        const unsigned char *b = (const unsigned char *)s->t + s->i;
        size_t left = s->len - s->i;
        unsigned char c = b[0];
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */

        if (in(c, 0xC2, 0xDF))
                n = 2;
        else if (in(c, 0xE0, 0xEF))
                n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (in(c, 0xF0, 0xF4))
                n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else
                return -1;
        if (left < n || !in(b[1], lo, hi))
                return -1;
        for (size_t k = 2; k < n; k++)
                if (!in(b[k], 0x80, 0xBF))
                        return -1;
        s->i += n;
        return 0;
}

/* A string at s->i ('"'), copied. */
static int scan_string(struct scan *s)
{
        size_t from = s->i++;
        for (;;) {
                if (s->i >= s->len)
                        return -1;
                unsigned char c = (unsigned char)s->t[s->i];
                if (c == '"') {
                        s->i++;
                        emit_from(s, from);
                        return 0;
                }
                if (c < 0x20)
                        return -1;
                if (c == '\\') {
                        if (++s->i >= s->len)
                                return -1;
                        switch (s->t[s->i]) {
                        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                                s->i++;
                                break;
                        case 'u':
                                if (s->len - s->i < 5 || !is_hex(s->t[s->i + 1]) || !is_hex(s->t[s->i + 2]) ||
                                    !is_hex(s->t[s->i + 3]) || !is_hex(s->t[s->i + 4]))
                                        return -1;
                                s->i += 5;
                                break;
                        default:
                                return -1;
                        }
                } else if (c < 0x80) {
                        s->i++;
                } else if (scan_utf8(s) < 0) {
                        return -1;
                }
        }
}

static size_t digits(struct scan *s)
{
        size_t from = s->i;
        while (s->i < s->len && s->t[s->i] >= '0' && s->t[s->i] <= '9')
                s->i++;
        return s->i - from;
}

/* A number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, copied. */
static int scan_number(struct scan *s)
{
        size_t from = s->i;
        if (s->t[s->i] == '-')
                s->i++;
        if (s->i < s->len && s->t[s->i] == '0')
                s->i++;
        else if (digits(s) == 0)
                return -1;
        if (s->i < s->len && s->t[s->i] == '.') {
                s->i++;
                if (digits(s) == 0)
                        return -1;
        }
        if (s->i < s->len && (s->t[s->i] == 'e' || s->t[s->i] == 'E')) {
                s->i++;
                if (s->i < s->len && (s->t[s->i] == '+' || s->t[s->i] == '-'))
                        s->i++;
                if (digits(s) == 0)
                        return -1;
        }
        emit_from(s, from);
        return 0;
}

static int scan_literal(struct scan *s)
{
        static const char *const words[] = { "true", "false", "null" };
        for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++) {
                size_t n = strlen(words[k]);
                if (s->len - s->i >= n && memcmp(s->t + s->i, words[k], n) == 0) {
                        size_t from = s->i;
                        s->i += n;
                        emit_from(s, from);
                        return 0;
                }
        }
        return -1;
}

/* The punctuation `c` at s->i (after white space), copied. */
static int expect(struct scan *s, char c)
{
        skip_ws(s);
        if (s->i >= s->len || s->t[s->i] != c)
                return -1;
        s->i++;
        if (s->out)
                s->out[s->o] = c;
        s->o++;
        return 0;
}

/* An object's key and its colon, at s->i (after white space). */
static int scan_key(struct scan *s)
{
        skip_ws(s);
        if (s->i >= s->len || s->t[s->i] != '"' || scan_string(s) < 0)
                return -1;
        return expect(s, ':');
}

/* json_value_compact, nesting at most max_depth (<= JSON_COMPACT_MAX_DEPTH + 1) deep. */
static int compact_value(const char *text, size_t len, size_t *pos, char *out, size_t *ret_len, int max_depth)
{
        struct scan s = { .t = text, .len = len, .i = *pos, .out = out };
        char closer[JSON_COMPACT_MAX_DEPTH + 1];
        int depth = 0;

        for (;;) {
                /* A value. */
                skip_ws(&s);
                if (s.i >= s.len)
                        return -1;
                char c = s.t[s.i];
                if (c == '[' || c == '{') {
                        if (depth == max_depth || expect(&s, c) < 0)
                                return -1;
                        closer[depth++] = c == '[' ? ']' : '}';
                        skip_ws(&s);
                        if (s.i < s.len && s.t[s.i] == closer[depth - 1]) {
                                expect(&s, closer[--depth]);
                        } else {
                                if (c == '{' && scan_key(&s) < 0)
                                        return -1;
                                continue;
                        }
                } else if (c == '"') {
                        if (scan_string(&s) < 0)
                                return -1;
                } else if (c == '-' || (c >= '0' && c <= '9')) {
                        if (scan_number(&s) < 0)
                                return -1;
                } else if (scan_literal(&s) < 0) {
                        return -1;
                }
                /* After a value: the containers it ends, then a comma or the end. */
                for (;;) {
                        if (depth == 0) {
                                skip_ws(&s);
                                *pos = s.i;
                                if (ret_len)
                                        *ret_len = s.o;
                                return 0;
                        }
                        skip_ws(&s);
                        if (s.i < s.len && s.t[s.i] == closer[depth - 1]) {
                                expect(&s, closer[--depth]);
                                continue;
                        }
                        if (expect(&s, ',') < 0 || (closer[depth - 1] == '}' && scan_key(&s) < 0))
                                return -1;
                        break;
                }
        }
}

int json_value_compact(const char *text, size_t len, size_t *pos, char *out, size_t *ret_len)
{
        return compact_value(text, len, pos, out, ret_len, JSON_COMPACT_MAX_DEPTH);
}

/* Past the closing brace at s->i: the object ends the text (white space aside). */
static int object_end(struct scan *s, size_t *pos)
{
        s->i++;
        skip_ws(s);
        *pos = s->i;
        return s->i == s->len ? 0 : -1;
}

int json_object_next(const char *text, size_t len, size_t *pos, struct json_member *ret)
{
        struct scan s = { .t = text, .len = len, .i = *pos };

        skip_ws(&s);
        if (*pos == 0) { /* the opening brace */
                if (s.i >= len || text[s.i] != '{')
                        return -1;
                s.i++;
                skip_ws(&s);
                if (s.i < len && text[s.i] == '}')
                        return object_end(&s, pos);
        } else if (s.i < len && text[s.i] == '}') {
                return object_end(&s, pos);
        } else if (s.i < len && text[s.i] == ',') {
                s.i++;
                skip_ws(&s);
        } else {
                return -1;
        }
        ret->key_at = s.i;
        if (s.i >= len || text[s.i] != '"' || scan_string(&s) < 0)
                return -1;
        ret->key_len = s.i - ret->key_at;
        skip_ws(&s);
        if (s.i >= len || text[s.i++] != ':')
                return -1;
        skip_ws(&s);
        /* A member may hold a value as deep as json_value_compact takes, inside one
         * more level (a done's "result" object). */
        size_t end = s.i;
        ret->value_at = s.i;
        if (compact_value(text, len, &end, NULL, NULL, JSON_COMPACT_MAX_DEPTH + 1) < 0)
                return -1;
        *pos = end;
        while (end > ret->value_at &&
               (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\n' || text[end - 1] == '\r'))
                end--;
        ret->value_len = end - ret->value_at;
        return 1;
}

int json_object_member(const char *text, size_t len, const char *key, size_t *ret_at, size_t *ret_len)
{
        size_t klen = strlen(key), pos = 0;
        struct json_member m;

        while (json_object_next(text, len, &pos, &m) == 1) {
                if (m.key_len == klen + 2 && !memcmp(text + m.key_at + 1, key, klen)) {
                        *ret_at = m.value_at;
                        *ret_len = m.value_len;
                        return 0;
                }
        }
        return -1;
}
