/* Canonical params as text (kiln_params_text): what json_dumps(JSON_COMPACT |
 * JSON_SORT_KEYS) writes, byte for byte, so that cache keys and stored records are
 * unchanged, written without jansson's per-token callbacks.
 *
 * jansson writes a real as snprintf("%.17g"), then appends ".0" when that has
 * neither '.' nor 'e', and drops an exponent's '+' and leading zeros. For an integral
 * value under 1e17 "%.17g" is the integer's digits, so those are written directly:
 * what lens.nfw's masses, sizes and counts mostly are. Every other real still goes
 * through snprintf. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"

struct text {
        char *p;
        size_t n, cap;
        bool oom;
};

static char *room(struct text *t, size_t n)
{
        if (t->oom)
                return NULL;
        if (t->n + n + 1 > t->cap) {
                size_t cap = t->cap ? t->cap : 256;
                while (cap < t->n + n + 1)
                        cap *= 2;
                char *p = realloc(t->p, cap);
                if (!p) {
                        t->oom = true;
                        return NULL;
                }
                t->p = p;
                t->cap = cap;
        }
        char *at = t->p + t->n;
        t->n += n;
        return at;
}

static void put(struct text *t, const char *s, size_t n)
{
        char *at = room(t, n);
        if (at)
                memcpy(at, s, n);
}

static void put_char(struct text *t, char c)
{
        char *at = room(t, 1);
        if (at)
                *at = c;
}

/* The decimal digits of v (no sign) into the end of buf[24]; returns the first. */
static char *digits(uint64_t v, char buf[24])
{
        char *p = buf + 24;
        do {
                *--p = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        return p;
}

static void put_integer(struct text *t, long long v)
{
        char buf[24], *p;
        uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
        p = digits(u, buf);
        if (v < 0)
                put_char(t, '-');
        put(t, p, (size_t)(buf + 24 - p));
}

/* jsonp_dtostr of jansson, precision 17. */
static void put_real(struct text *t, double v)
{
        if (v == floor(v) && fabs(v) < 1e17) {
                char buf[24], *p = digits((uint64_t)fabs(v), buf);
                if (signbit(v))
                        put_char(t, '-');
                put(t, p, (size_t)(buf + 24 - p));
                put(t, ".0", 2);
                return;
        }
        /* The same few reals (a kind's defaults: 0.3, 0.7) come in job after job: the
         * text snprintf made for a value is kept, per thread, by its bits. */
        static _Thread_local struct {
                uint64_t bits;
                uint8_t len;
                char text[31];
        } memo[64];
        uint64_t bits;
        memcpy(&bits, &v, sizeof(bits));
        size_t slot = (size_t)((bits * 0x9e3779b97f4a7c15ull) >> 58);
        if (memo[slot].len && memo[slot].bits == bits) {
                put(t, memo[slot].text, memo[slot].len);
                return;
        }
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "%.17g", v);
        if (n < 0 || (size_t)n >= sizeof(buf) - 3) {
                t->oom = true;
                return;
        }
        size_t len = (size_t)n;
        if (!strchr(buf, '.') && !strchr(buf, 'e')) {
                memcpy(buf + len, ".0", 3);
                len += 2;
        }
        char *start = strchr(buf, 'e');
        if (start) {
                start++;
                char *end = start + 1;
                if (*start == '-')
                        start++;
                while (*end == '0')
                        end++;
                if (end != start) {
                        memmove(start, end, len - (size_t)(end - buf));
                        len -= (size_t)(end - start);
                }
        }
        if (len < sizeof(memo[slot].text)) {
                memo[slot].bits = bits;
                memo[slot].len = (uint8_t)len;
                memcpy(memo[slot].text, buf, len);
        }
        put(t, buf, len);
}

/* A JSON string as jansson writes it without flags: '"' and '\\' escaped, control
 * characters as \b \f \n \r \t or \u00XX (upper-case hex), everything else (UTF-8
 * included) as is. */
static void put_string(struct text *t, const char *s, size_t n)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t run = 0;

        put_char(t, '"');
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                put(t, s + run, i - run);
                run = i + 1;
                char esc[6] = { '\\', 0 };
                size_t k = 2;
                switch (c) {
                case '"': esc[1] = '"'; break;
                case '\\': esc[1] = '\\'; break;
                case '\b': esc[1] = 'b'; break;
                case '\f': esc[1] = 'f'; break;
                case '\n': esc[1] = 'n'; break;
                case '\r': esc[1] = 'r'; break;
                case '\t': esc[1] = 't'; break;
                default:
                        memcpy(esc + 1, "u00", 3);
                        esc[4] = hex[c >> 4];
                        esc[5] = hex[c & 15];
                        k = 6;
                }
                put(t, esc, k);
        }
        put(t, s + run, n - run);
        put_char(t, '"');
}

static int key_order(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void put_value(struct text *t, const json_t *v, int depth);

static void put_object(struct text *t, const json_t *o, int depth)
{
        size_t n = json_object_size(o), i = 0;
        const char *small[16], **keys = n <= 16 ? small : malloc(n * sizeof(*keys));
        const char *key;
        json_t *v;

        if (!keys) {
                t->oom = true;
                return;
        }
        json_object_foreach((json_t *)o, key, v) keys[i++] = key;
        qsort(keys, n, sizeof(*keys), key_order);
        put_char(t, '{');
        for (i = 0; i < n && !t->oom; i++) {
                if (i)
                        put_char(t, ',');
                put_string(t, keys[i], strlen(keys[i]));
                put_char(t, ':');
                put_value(t, json_object_get(o, keys[i]), depth + 1);
        }
        put_char(t, '}');
        if (keys != small)
                free(keys);
}

static void put_value(struct text *t, const json_t *v, int depth)
{
        /* A guard only: canonical params have their schema's shape, a few levels
         * (json_dumps itself has no such limit). */
        if (depth > 2048) {
                t->oom = true;
                return;
        }
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                put_object(t, v, depth);
                break;
        case JSON_ARRAY:
                put_char(t, '[');
                for (size_t i = 0; i < json_array_size(v) && !t->oom; i++) {
                        if (i)
                                put_char(t, ',');
                        put_value(t, json_array_get(v, i), depth + 1);
                }
                put_char(t, ']');
                break;
        case JSON_STRING:
                put_string(t, json_string_value(v), json_string_length(v));
                break;
        case JSON_INTEGER:
                put_integer(t, (long long)json_integer_value(v));
                break;
        case JSON_REAL:
                put_real(t, json_real_value(v));
                break;
        case JSON_TRUE:
                put(t, "true", 4);
                break;
        case JSON_FALSE:
                put(t, "false", 5);
                break;
        case JSON_NULL:
                put(t, "null", 4);
                break;
        }
}

char *kiln_params_text(const json_t *canonical)
{
        struct text t = { 0 };

        if (!json_is_object(canonical))
                return NULL;
        put_value(&t, canonical, 0);
        if (t.oom) {
                free(t.p);
                return NULL;
        }
        t.p[t.n] = '\0';
        return t.p;
}
