/* The JSON reader of xjson.h: a recursive-descent parser (depth limited) writing
 * values into a bump arena. A container's children are gathered on one shared
 * pending stack while it is parsed and copied into the arena, contiguous, when it
 * closes, so arrays of any length cost one copy and no per-value allocation. */
#include "xjson.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK (256u << 10)

struct block {
        struct block *next;
        size_t used, cap;
        _Alignas(16) unsigned char data[];
};

struct xj_doc {
        struct block *blocks;
        struct xj_value root;
};

struct parser {
        const char *s;
        size_t len, pos;
        size_t left;                   /* bytes the parse may still allocate */
        bool capped;                   /* an allocation would have passed max_bytes */
        struct xj_doc *doc;
        struct xj_member *pending;     /* children of the open containers */
        size_t n_pending, cap_pending;
        struct xj_error *err;
        int depth;
};

/* Takes n bytes of what the parse may allocate; false (nothing taken) past it. */
static bool charge(struct parser *p, size_t n)
{
        if (n > p->left) {
                p->capped = true;
                return false;
        }
        p->left -= n;
        return true;
}

/* Gives back what charge took for memory freed since. */
static void refund(struct parser *p, size_t n)
{
        p->left += n;
}

static void *arena_alloc(struct parser *p, size_t bytes)
{
        struct xj_doc *doc = p->doc;
        struct block *b = doc->blocks;

        bytes = (bytes + 15) & ~(size_t)15;
        if (!b || b->cap - b->used < bytes) {
                size_t cap = bytes > ARENA_BLOCK ? bytes : ARENA_BLOCK;
                if (!charge(p, sizeof(*b) + cap))
                        return NULL;
                b = malloc(sizeof(*b) + cap);
                if (!b)
                        return NULL;
                b->used = 0;
                b->cap = cap;
                if (cap > ARENA_BLOCK && doc->blocks) {
                        /* A block of its own for a big array: behind the current one,
                         * which small values go on filling. */
                        b->next = doc->blocks->next;
                        doc->blocks->next = b;
                } else {
                        b->next = doc->blocks;
                        doc->blocks = b;
                }
        }
        void *at = b->data + b->used;
        b->used += bytes;
        return at;
}

/* Records the error at byte `at` (line and column counted only now) and returns
 * -EINVAL. */
static int fail_at(struct parser *p, size_t at, const char *what)
{
        if (p->err) {
                int line = 1, col = 1;
                for (size_t i = 0; i < at && i < p->len; i++) {
                        if (p->s[i] == '\n') {
                                line++;
                                col = 1;
                        } else {
                                col++;
                        }
                }
                snprintf(p->err->text, sizeof(p->err->text), "%s", what);
                p->err->line = line;
                p->err->column = col;
        }
        return -EINVAL;
}

/* Out of memory, or (-E2BIG) of what the parse may allocate. */
static int fail_nomem(struct parser *p)
{
        if (p->capped) {
                if (p->err)
                        snprintf(p->err->text, sizeof(p->err->text), "reading it takes more memory than allowed");
                return -E2BIG;
        }
        if (p->err) {
                snprintf(p->err->text, sizeof(p->err->text), "out of memory");
                p->err->nomem = true;
        }
        return -ENOMEM;
}

static void skip_ws(struct parser *p)
{
        while (p->pos < p->len) {
                char c = p->s[p->pos];
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
                        return;
                p->pos++;
        }
}

static bool match(struct parser *p, const char *word)
{
        size_t n = strlen(word);

        if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
                return false;
        p->pos += n;
        return true;
}

/* The length of a valid UTF-8 sequence at s (at most `left` bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
        unsigned c = s[0];
        size_t n;
        uint32_t cp;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
                n = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
                n = 4, cp = c & 0x07;
        else
                return 0;
        if (left < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return 0;
        return n;
}

static int hex4(const char *s, uint32_t *ret)
{
        uint32_t v = 0;

        for (int i = 0; i < 4; i++) {
                char c = s[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (uint32_t)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (uint32_t)(c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (uint32_t)(c - 'A' + 10);
                else
                        return -1;
        }
        *ret = v;
        return 0;
}

static size_t put_utf8(char *o, uint32_t cp)
{
        if (cp < 0x80) {
                o[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (char)(0xc0 | cp >> 6);
                o[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (char)(0xe0 | cp >> 12);
                o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
                o[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        o[0] = (char)(0xf0 | cp >> 18);
        o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

/* A string at p->pos (the opening quote), decoded into the arena. The decoded form
 * is never longer than the source. */
static int parse_string(struct parser *p, const char **ret_s, uint32_t *ret_n)
{
        size_t start = ++p->pos, end = start;

        while (end < p->len && p->s[end] != '"')
                end += p->s[end] == '\\' ? 2 : 1;
        if (end >= p->len)
                return fail_at(p, start - 1, "unterminated string");
        if (end - start > UINT32_MAX - 1)
                return fail_at(p, start - 1, "string too long");
        char *out = arena_alloc(p, end - start + 1);
        size_t o = 0;
        if (!out)
                return fail_nomem(p);
        for (size_t i = start; i < end;) {
                unsigned char c = (unsigned char)p->s[i];
                if (c < 0x20)
                        return fail_at(p, i, "control character in a string");
                if (c != '\\') {
                        size_t n = utf8_len((const unsigned char *)p->s + i, end - i);
                        if (!n)
                                return fail_at(p, i, "invalid UTF-8 in a string");
                        memcpy(out + o, p->s + i, n);
                        o += n;
                        i += n;
                        continue;
                }
                char e = p->s[i + 1];
                const char *simple = strchr("\"\\/bfnrt", e);
                if (e && simple) {
                        out[o++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
                        i += 2;
                        continue;
                }
                uint32_t cp, lo;
                if (e != 'u' || end - i < 6 || hex4(p->s + i + 2, &cp) < 0)
                        return fail_at(p, i, "invalid escape in a string");
                i += 6;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                        return fail_at(p, i - 6, "lone low surrogate in a string");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                        if (end - i < 6 || p->s[i] != '\\' || p->s[i + 1] != 'u' || hex4(p->s + i + 2, &lo) < 0 ||
                            lo < 0xdc00 || lo > 0xdfff)
                                return fail_at(p, i - 6, "unpaired high surrogate in a string");
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        i += 6;
                }
                o += put_utf8(out + o, cp);
        }
        out[o] = '\0';
        p->pos = end + 1;
        *ret_s = out;
        *ret_n = (uint32_t)o;
        return 0;
}

static int parse_number(struct parser *p, struct xj_value *ret)
{
        size_t start = p->pos, i = p->pos;
        bool real = false;
        char buf[64], *text = buf, *end;

        if (i < p->len && p->s[i] == '-')
                i++;
        if (i >= p->len || p->s[i] < '0' || p->s[i] > '9')
                return fail_at(p, start, "invalid number");
        if (p->s[i] == '0')
                i++;
        else
                while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9')
                        i++;
        if (i < p->len && p->s[i] == '.') {
                real = true;
                if (++i >= p->len || p->s[i] < '0' || p->s[i] > '9')
                        return fail_at(p, start, "invalid number");
                while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9')
                        i++;
        }
        if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
                real = true;
                if (++i < p->len && (p->s[i] == '+' || p->s[i] == '-'))
                        i++;
                if (i >= p->len || p->s[i] < '0' || p->s[i] > '9')
                        return fail_at(p, start, "invalid number");
                while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9')
                        i++;
        }
        size_t n = i - start;
        if (n >= sizeof(buf)) {
                if (!charge(p, n + 1))
                        return fail_nomem(p);
                text = malloc(n + 1);
                if (!text)
                        return fail_nomem(p);
        }
        memcpy(text, p->s + start, n);
        text[n] = '\0';
        if (!real) {
                errno = 0;
                long long v = strtoll(text, &end, 10);
                if (errno == 0) {
                        *ret = (struct xj_value){ .type = XJ_INT, .i = v };
                        goto done;
                }
                /* Past int64: read as a real, like any other big number. */
        }
        *ret = (struct xj_value){ .type = XJ_REAL, .d = strtod(text, &end), .f = strtof(text, &end) };
done:
        if (text != buf) {
                free(text);
                refund(p, n + 1);
        }
        p->pos = i;
        return 0;
}

static int parse_value(struct parser *p, struct xj_value *ret);

/* Appends a child to the pending stack. */
static int push(struct parser *p, const char *key, uint32_t key_len, const struct xj_value *v)
{
        if (p->n_pending == p->cap_pending) {
                size_t cap = p->cap_pending ? p->cap_pending * 2 : 256;
                /* The new stack whole: realloc may hold the old one too while it copies. */
                if (!charge(p, cap * sizeof(struct xj_member)))
                        return fail_nomem(p);
                struct xj_member *m = realloc(p->pending, cap * sizeof(*m));
                refund(p, (m ? p->cap_pending : cap) * sizeof(struct xj_member));
                if (!m)
                        return fail_nomem(p);
                p->pending = m;
                p->cap_pending = cap;
        }
        p->pending[p->n_pending++] = (struct xj_member){ .key = key, .key_len = key_len, .value = *v };
        return 0;
}

static int cmp_member(const void *a, const void *b)
{
        const struct xj_member *x = *(const struct xj_member *const *)a, *y = *(const struct xj_member *const *)b;
        size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
        int c = memcmp(x->key, y->key, n);

        return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static bool same_key(const struct xj_member *a, const struct xj_member *b)
{
        return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

/* True when two members share a key: pairwise for small objects, else sorted. */
static int has_duplicates(struct parser *p, const struct xj_member *m, size_t n, bool *ret)
{
        *ret = false;
        if (n <= 16) {
                for (size_t i = 1; i < n; i++)
                        for (size_t k = 0; k < i; k++)
                                if (same_key(&m[i], &m[k]))
                                        *ret = true;
                return 0;
        }
        if (!charge(p, n * sizeof(const struct xj_member *)))
                return -ENOMEM;
        const struct xj_member **s = malloc(n * sizeof(*s));
        if (!s) {
                refund(p, n * sizeof(*s));
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                s[i] = &m[i];
        qsort(s, n, sizeof(*s), cmp_member);
        for (size_t i = 1; i < n; i++)
                if (same_key(s[i - 1], s[i]))
                        *ret = true;
        free(s);
        refund(p, n * sizeof(*s));
        return 0;
}

/* An array or an object at p->pos; its children, gathered on the pending stack
 * from `base`, move into the arena when it closes. */
static int parse_container(struct parser *p, bool object, struct xj_value *ret)
{
        size_t open = p->pos, base = p->n_pending;
        char close = object ? '}' : ']';
        int r;

        if (++p->depth > XJ_MAX_DEPTH)
                return fail_at(p, open, "nesting too deep");
        p->pos++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == close) {
                p->pos++;
        } else {
                for (;;) {
                        const char *key = NULL;
                        uint32_t key_len = 0;
                        struct xj_value v;
                        skip_ws(p);
                        if (object) {
                                if (p->pos >= p->len || p->s[p->pos] != '"')
                                        return fail_at(p, p->pos, "string or '}' expected");
                                if ((r = parse_string(p, &key, &key_len)) < 0)
                                        return r;
                                skip_ws(p);
                                if (p->pos >= p->len || p->s[p->pos] != ':')
                                        return fail_at(p, p->pos, "':' expected");
                                p->pos++;
                        }
                        if ((r = parse_value(p, &v)) < 0 || (r = push(p, key, key_len, &v)) < 0)
                                return r;
                        skip_ws(p);
                        if (p->pos < p->len && p->s[p->pos] == ',') {
                                p->pos++;
                                continue;
                        }
                        if (p->pos < p->len && p->s[p->pos] == close) {
                                p->pos++;
                                break;
                        }
                        return fail_at(p, p->pos, object ? "',' or '}' expected" : "',' or ']' expected");
                }
        }
        size_t n = p->n_pending - base;
        if (n > UINT32_MAX)
                return fail_at(p, open, "too many items");
        *ret = (struct xj_value){ .type = object ? XJ_OBJECT : XJ_ARRAY, .n = (uint32_t)n };
        if (object) {
                struct xj_member *m = n ? arena_alloc(p, n * sizeof(*m)) : NULL;
                bool dup;
                if (n && !m)
                        return fail_nomem(p);
                if (n)
                        memcpy(m, p->pending + base, n * sizeof(*m));
                if (has_duplicates(p, m, n, &dup) < 0)
                        return fail_nomem(p);
                if (dup)
                        return fail_at(p, open, "duplicate object key");
                ret->members = m;
        } else {
                struct xj_value *items = n ? arena_alloc(p, n * sizeof(*items)) : NULL;
                if (n && !items)
                        return fail_nomem(p);
                for (size_t i = 0; i < n; i++)
                        items[i] = p->pending[base + i].value;
                ret->items = items;
        }
        p->n_pending = base;
        p->depth--;
        return 0;
}

static int parse_value(struct parser *p, struct xj_value *ret)
{
        skip_ws(p);
        if (p->pos >= p->len)
                return fail_at(p, p->pos, "unexpected end of input");
        switch (p->s[p->pos]) {
        case '{':
                return parse_container(p, true, ret);
        case '[':
                return parse_container(p, false, ret);
        case '"':
                *ret = (struct xj_value){ .type = XJ_STRING };
                return parse_string(p, &ret->s, &ret->n);
        case 't':
                if (!match(p, "true"))
                        break;
                *ret = (struct xj_value){ .type = XJ_BOOL, .b = true };
                return 0;
        case 'f':
                if (!match(p, "false"))
                        break;
                *ret = (struct xj_value){ .type = XJ_BOOL, .b = false };
                return 0;
        case 'n':
                if (!match(p, "null"))
                        break;
                *ret = (struct xj_value){ .type = XJ_NULL };
                return 0;
        case 'N':
        case 'I':
                /* XGBoost's non-finite floats: read as null. */
                if (!match(p, "NaN") && !match(p, "Infinity"))
                        break;
                *ret = (struct xj_value){ .type = XJ_NULL };
                return 0;
        case '-':
                if (match(p, "-Infinity")) {
                        *ret = (struct xj_value){ .type = XJ_NULL };
                        return 0;
                }
                return parse_number(p, ret);
        default:
                if (p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
                        return parse_number(p, ret);
                break;
        }
        return fail_at(p, p->pos, "invalid token");
}

int xj_parse(const char *text, size_t len, struct xj_doc **ret_doc, struct xj_error *err)
{
        return xj_parse_capped(text, len, SIZE_MAX, ret_doc, err);
}

int xj_parse_capped(const char *text, size_t len, size_t max_bytes, struct xj_doc **ret_doc,
                    struct xj_error *err)
{
        struct xj_doc *doc = calloc(1, sizeof(*doc));
        struct parser p = { .s = text, .len = text ? len : 0, .left = max_bytes, .doc = doc, .err = err };
        int r;

        if (err)
                memset(err, 0, sizeof(*err));
        if (!doc)
                return fail_nomem(&p);
        r = parse_value(&p, &doc->root);
        if (r >= 0) {
                skip_ws(&p);
                if (p.pos < p.len)
                        r = fail_at(&p, p.pos, "end of input expected after the value");
        }
        free(p.pending);
        if (r < 0) {
                xj_free(doc);
                return r;
        }
        *ret_doc = doc;
        return 0;
}

const struct xj_value *xj_root(const struct xj_doc *doc)
{
        return &doc->root;
}

void xj_free(struct xj_doc *doc)
{
        if (!doc)
                return;
        for (struct block *b = doc->blocks, *next; b; b = next) {
                next = b->next;
                free(b);
        }
        free(doc);
}

const struct xj_value *xj_get(const struct xj_value *o, const char *key)
{
        size_t n = strlen(key);

        if (!xj_is(o, XJ_OBJECT))
                return NULL;
        for (uint32_t i = 0; i < o->n; i++)
                if (o->members[i].key_len == n && memcmp(o->members[i].key, key, n) == 0)
                        return &o->members[i].value;
        return NULL;
}
