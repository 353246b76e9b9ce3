/* See json_path.h. A scan of the tokens before the offset, keeping one frame per
 * open object or array: its key or its index. */
#include "json_path.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct frame {
        bool object;
        bool want_key;      /* in an object, between '{' or ',' and the key */
        const char *key;    /* the key's text between its quotes (object) */
        size_t key_len;
        size_t index;       /* array */
};

static void write_path(const struct frame *f, int depth, char *buf, size_t cap)
{
        size_t n = 0;

        buf[0] = '\0';
        for (int i = 0; i < depth && n < cap; i++) {
                int k;
                if (f[i].object)
                        k = snprintf(buf + n, cap - n, "%s%.*s", i ? "." : "", (int)f[i].key_len, f[i].key);
                else
                        k = snprintf(buf + n, cap - n, "[%zu]", f[i].index);
                if (k < 0)
                        break;
                n += (size_t)k;
        }
}

/* The end of the string whose opening quote is at text[i]: the offset past its
 * closing quote, or len when it is not closed. */
static size_t string_end(const char *text, size_t len, size_t i)
{
        for (i++; i < len; i++) {
                if (text[i] == '\\')
                        i++;
                else if (text[i] == '"')
                        return i + 1;
        }
        return len;
}

int json_path_at(const char *text, size_t len, size_t end, char *buf, size_t cap)
{
        struct frame f[JSON_PATH_MAX_DEPTH];
        int depth = 0;
        bool found = false;

        if (!cap)
                return -1;
        if (end > len)
                end = len;
        for (size_t i = 0; i < end;) {
                char c = text[i];
                struct frame *top = depth ? &f[depth - 1] : NULL;

                switch (c) {
                case ' ': case '\t': case '\r': case '\n':
                        i++;
                        continue;
                case '{':
                case '[':
                        if (depth == JSON_PATH_MAX_DEPTH)
                                return -1;
                        f[depth++] = (struct frame){ .object = c == '{', .want_key = c == '{' };
                        i++;
                        continue;
                case '}':
                case ']':
                        if (!depth)
                                return -1;
                        depth--;
                        i++;
                        continue;
                case ',':
                        if (!top)
                                return -1;
                        if (top->object)
                                top->want_key = true;
                        else
                                top->index++;
                        i++;
                        continue;
                case ':':
                        if (!top || !top->object)
                                return -1;
                        top->want_key = false;
                        i++;
                        continue;
                }
                /* A key or a value: a string, a number or a literal. */
                size_t e;
                if (c == '"') {
                        e = string_end(text, len, i);
                        if (top && top->object && top->want_key) {
                                top->key = text + i + 1;
                                top->key_len = e - i >= 2 ? e - i - 2 : 0;
                        }
                } else {
                        for (e = i; e < len && !strchr(",:]} \t\r\n", text[e]); e++)
                                ;
                        if (e == i) /* a NUL byte */
                                return -1;
                }
                write_path(f, depth, buf, cap);
                found = true;
                i = e;
        }
        return found ? 0 : -1;
}
