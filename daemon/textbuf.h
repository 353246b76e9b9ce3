/* Text appended to a buffer sized in advance, without printf. The messages and
 * records built for every job (its `done`, its `accepted`, its parts' headers) are
 * made thousands of times a second, and snprintf's parsing of its format string
 * cost more than the rest of their building together (callgrind, risk.score jobs:
 * about a seventh of kilnd's instructions).
 *
 *   char buf[64];
 *   struct textbuf b = textbuf_init(buf, sizeof(buf));
 *   textbuf_str(&b, "{\"bytes\":");
 *   textbuf_u64(&b, n);
 *   textbuf_str(&b, "}");
 *   if (textbuf_over(&b)) ...          the text did not fit: nothing was cut silently
 *
 * The text is always NUL-terminated within the buffer. Nothing here escapes: the
 * caller writes strings that need none (proto_json_plain) or escapes them first. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct textbuf {
        char *p;
        size_t len, cap; /* cap counts the terminating NUL */
        bool over;
};

/* Decimal digits of the longest uint64_t, 18446744073709551615. */
#define TEXTBUF_U64_DIGITS 20

static inline struct textbuf textbuf_init(char *buf, size_t cap)
{
        if (cap)
                buf[0] = '\0';
        return (struct textbuf){ .p = buf, .cap = cap, .over = cap == 0 };
}

static inline void textbuf_put(struct textbuf *b, const char *s, size_t n)
{
        if (b->over || n >= b->cap - b->len) {
                b->over = true;
                return;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static inline void textbuf_str(struct textbuf *b, const char *s)
{
        textbuf_put(b, s, strlen(s));
}

static inline void textbuf_u64(struct textbuf *b, uint64_t v)
{
        char d[TEXTBUF_U64_DIGITS];
        size_t i = sizeof(d);

        do {
                d[--i] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        textbuf_put(b, d + i, sizeof(d) - i);
}

static inline void textbuf_i64(struct textbuf *b, int64_t v)
{
        if (v < 0) {
                textbuf_put(b, "-", 1);
                textbuf_u64(b, -(uint64_t)v); /* INT64_MIN too: unsigned negation */
        } else {
                textbuf_u64(b, (uint64_t)v);
        }
}

static inline bool textbuf_over(const struct textbuf *b)
{
        return b->over;
}
