/* The result blob and the `done` message (see result_codec.h). */
#include "result_codec.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json_compact.h"
#include "proto.h"
#include "textbuf.h"

static const char blob_magic[4] = { 'K', 'L', 'N', 'R' };
/* Version 2: the scalars object may hold integers, booleans, strings, arrays and
 * objects (typed result values); version 1 held numbers and nulls only and reads
 * the same way. */
#define BLOB_VERSION 2u
#define BLOB_VERSION_MIN 1u

/* One value as a jansson value: a non-finite number is null, and so is a JSON text
 * (KILN_V_JSON: a scalar one here) that jansson does not read. */
static json_t *value_json(const struct kiln_value *v)
{
        switch (v->type) {
        case KILN_V_NULL: break;
        case KILN_V_NUM: return isfinite(v->num) ? json_real(v->num) : json_null();
        case KILN_V_INT: return json_integer((json_int_t)v->i);
        case KILN_V_BOOL: return json_boolean(v->b);
        case KILN_V_STR: return v->text ? json_string(v->text) : json_null();
        case KILN_V_JSON: {
                json_t *j = v->text ? json_loads(v->text, JSON_DECODE_ANY, NULL) : NULL;
                return j ? j : json_null();
        }
        }
        return json_null();
}

/* Adds one value read back from a blob (not an array or object), with the type
 * JSON gives it. */
static int add_value(struct kiln_result *r, const char *name, json_t *v)
{
        if (json_is_integer(v))
                return kiln_result_add_int(r, name, (int64_t)json_integer_value(v));
        if (json_is_real(v))
                return kiln_result_add_scalar(r, name, json_real_value(v));
        if (json_is_boolean(v))
                return kiln_result_add_bool(r, name, json_is_true(v));
        if (json_is_string(v))
                return kiln_result_add_string(r, name, json_string_value(v));
        return kiln_result_add_null(r, name);
}

/* The text of one member of the scalars object: its key and value, each either
 * borrowed, written into `num`, or formatted by jansson (owned). */
struct member_text {
        const char *key, *value;
        size_t key_len, value_len;
        char *key_owned, *value_owned;
        bool compact;     /* value: a KILN_V_JSON text, copied compactly */
        char key_buf[KILN_NAME_MAX + 3];
        char num[24];
};

static int member_text(const struct kiln_value *v, struct member_text *m)
{
        if (proto_json_plain(v->name) && strlen(v->name) < KILN_NAME_MAX) {
                snprintf(m->key_buf, sizeof(m->key_buf), "\"%s\"", v->name);
                m->key = m->key_buf;
                m->key_len = strlen(m->key_buf);
        } else {
                json_t *k = json_string(v->name);
                m->key_owned = k ? json_dumps(k, JSON_ENCODE_ANY) : NULL;
                json_decref(k);
                if (!m->key_owned)
                        return -ENOMEM;
                m->key = m->key_owned;
                m->key_len = strlen(m->key_owned);
        }
        /* An array or object, however big, is checked and copied as it is, as the
         * blob's reader reads it back (parse_member_value); a JSON text of one
         * scalar goes through jansson like the other values. */
        size_t pos = 0;
        const char *first = v->type == KILN_V_JSON && v->text ? v->text + strspn(v->text, " \t\r\n") : "";
        bool container = *first == '[' || *first == '{';
        if (container && json_value_compact(v->text, strlen(v->text), &pos, NULL, &m->value_len) == 0 &&
            !v->text[pos]) {
                m->value = v->text;
                m->compact = true;
                return 0;
        }
        if (v->type == KILN_V_INT || v->type == KILN_V_BOOL || v->type == KILN_V_NULL || container ||
            (v->type == KILN_V_NUM && !isfinite(v->num))) {
                /* An array or object that is not JSON (a kind's bug) is null. */
                struct textbuf b = textbuf_init(m->num, sizeof(m->num));
                if (v->type == KILN_V_INT)
                        textbuf_i64(&b, v->i);
                else
                        textbuf_str(&b, v->type == KILN_V_BOOL ? (v->b ? "true" : "false") : "null");
                m->value = m->num;
                m->value_len = strlen(m->num);
                return 0;
        }
        json_t *j = value_json(v);
        m->value_owned = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
        json_decref(j);
        if (!m->value_owned)
                return -ENOMEM;
        m->value = m->value_owned;
        m->value_len = strlen(m->value_owned);
        return 0;
}

/* The scalars object's text, measured, then written where its caller wants it. */
struct scalars {
        struct member_text m[KILN_MAX_SCALARS];
        int n;
        size_t len; /* the text's bytes, without a NUL */
};

static void scalars_release(struct scalars *sc)
{
        for (int i = 0; i < sc->n; i++) {
                free(sc->m[i].key_owned);
                free(sc->m[i].value_owned);
        }
}

static int scalars_prepare(const struct kiln_result *r, struct scalars *sc)
{
        memset(sc, 0, sizeof(*sc));
        sc->n = r->n_scalars < KILN_MAX_SCALARS ? r->n_scalars : KILN_MAX_SCALARS;
        sc->len = 2; /* {} */
        for (int i = 0; i < sc->n; i++) {
                if (member_text(&r->scalars[i], &sc->m[i]) < 0) {
                        scalars_release(sc);
                        return -ENOMEM;
                }
                sc->len += (i ? 1 : 0) + sc->m[i].key_len + 1 + sc->m[i].value_len; /* ,key:value */
        }
        return 0;
}

/* Writes the sc->len bytes of the text at out (no NUL). */
static void scalars_write(const struct scalars *sc, char *out)
{
        size_t o = 0;
        out[o++] = '{';
        for (int i = 0; i < sc->n; i++) {
                const struct member_text *m = &sc->m[i];
                if (i)
                        out[o++] = ',';
                memcpy(out + o, m->key, m->key_len);
                o += m->key_len;
                out[o++] = ':';
                if (m->compact) {
                        size_t pos = 0, len;
                        json_value_compact(m->value, strlen(m->value), &pos, out + o, &len); /* checked */
                        o += len;
                } else {
                        memcpy(out + o, m->value, m->value_len);
                        o += m->value_len;
                }
        }
        out[o] = '}';
}

char *result_scalars_text(const struct kiln_result *r)
{
        struct scalars sc;
        if (scalars_prepare(r, &sc) < 0)
                return NULL;
        char *text = malloc(sc.len + 1);
        if (text) {
                scalars_write(&sc, text);
                text[sc.len] = '\0';
        }
        scalars_release(&sc);
        return text;
}

static json_t *part_header_json(const struct kiln_part *p)
{
        json_t *shape = json_array();
        for (int k = 0; k < p->ndim; k++)
                json_array_append_new(shape, json_integer((json_int_t)p->shape[k]));
        return json_pack("{s:s, s:s, s:o, s:I}", "name", p->name, "dtype", kiln_dtype_name(p->dtype), "shape", shape,
                         "bytes", (json_int_t)p->bytes);
}

/* The longest header part_header_put writes: the name and dtype, each dimension and
 * the byte count in decimal, and the text around them. */
#define PART_HEADER_FIXED "{\"name\":\"\",\"dtype\":\"\",\"shape\":[],\"bytes\":}"
#define PART_HEADER_MAX \
        (KILN_NAME_MAX + 16 + 4 * (TEXTBUF_U64_DIGITS + 1) + TEXTBUF_U64_DIGITS + sizeof(PART_HEADER_FIXED))

/* Whether a part's header can be written directly: its strings need no escaping. */
static bool part_header_plain(const struct kiln_part *p)
{
        return proto_json_plain(p->name) && proto_json_plain(kiln_dtype_name(p->dtype));
}

/* A part's header as compact JSON, byte for byte what json_dumps(JSON_COMPACT)
 * writes of part_header_json (keys in insertion order); part_header_plain(p). */
static void part_header_put(struct textbuf *b, const struct kiln_part *p)
{
        textbuf_str(b, "{\"name\":\"");
        textbuf_str(b, p->name);
        textbuf_str(b, "\",\"dtype\":\"");
        textbuf_str(b, kiln_dtype_name(p->dtype));
        textbuf_str(b, "\",\"shape\":[");
        for (int k = 0; k < p->ndim; k++) {
                if (k)
                        textbuf_put(b, ",", 1);
                textbuf_u64(b, p->shape[k]);
        }
        textbuf_str(b, "],\"bytes\":");
        textbuf_u64(b, p->bytes);
        textbuf_put(b, "}", 1);
}

/* A part's header as compact JSON text (malloc'd): written directly when no string
 * needs escaping, else by jansson. NULL on ENOMEM. */
static char *part_header_text(const struct kiln_part *p)
{
        if (part_header_plain(p)) {
                char buf[PART_HEADER_MAX];
                struct textbuf b = textbuf_init(buf, sizeof(buf));
                part_header_put(&b, p);
                if (!textbuf_over(&b))
                        return strdup(buf);
        }
        json_t *h = part_header_json(p);
        char *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
        json_decref(h);
        return text;
}

static size_t pad8(size_t n)
{
        return (n + 7) & ~(size_t)7;
}

/* The blob as a list of segments: small headers built once, part data borrowed from
 * the result. */
struct blob_seg {
        const uint8_t *p;
        size_t len;
        bool owned;
};

struct result_blob {
        struct blob_seg seg[3 + 2 * KILN_MAX_PARTS];
        int n;
        size_t size;
};

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
        return p + 4;
}

static uint32_t get_u32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void result_blob_free(struct result_blob *b)
{
        if (!b)
                return;
        for (int i = 0; i < b->n; i++)
                if (b->seg[i].owned)
                        free((void *)b->seg[i].p);
        free(b);
}

static int blob_add_owned(struct result_blob *b, uint8_t *p, size_t len)
{
        if (!p)
                return -ENOMEM;
        b->seg[b->n++] = (struct blob_seg){ .p = p, .len = len, .owned = true };
        b->size += len;
        return 0;
}

/* result_blob_new and result_blob_new_shared: the scalars text taken over
 * (owned) or borrowed. */
static int blob_new(const struct kiln_result *r, const char *scalars, size_t n, bool owned,
                    struct result_blob **ret)
{
        struct result_blob *b = scalars ? calloc(1, sizeof(*b)) : NULL;
        if (!b) {
                if (owned)
                        free((char *)scalars);
                return -ENOMEM; /* or result_scalars_text failed */
        }
        uint8_t *head = malloc(12), *tail = malloc(4);
        if (head) {
                memcpy(head, blob_magic, 4);
                put_u32(put_u32(head + 4, BLOB_VERSION), (uint32_t)n);
        }
        if (tail)
                put_u32(tail, (uint32_t)r->n_parts);
        /* The scalars text is not copied: it can be most of the blob. */
        if (blob_add_owned(b, head, 12) < 0) {
                if (owned)
                        free((char *)scalars);
                free(tail);
                goto fail;
        }
        b->seg[b->n++] = (struct blob_seg){ .p = (const uint8_t *)scalars, .len = n, .owned = owned };
        b->size += n;
        if (blob_add_owned(b, tail, 4) < 0)
                goto fail;
        for (int i = 0; i < r->n_parts; i++) {
                const struct kiln_part *part = &r->parts[i];
                char *hdr = part_header_text(part);
                if (!hdr)
                        goto fail;
                size_t hl = strlen(hdr);
                /* u32 len | header | u64 bytes | zero padding to 8 (from the blob start) */
                size_t start = b->size, end = pad8(start + 4 + hl + 8);
                uint8_t *seg = calloc(1, end - start);
                if (seg) {
                        uint8_t *w = put_u32(seg, (uint32_t)hl);
                        memcpy(w, hdr, hl);
                        w = put_u32(w + hl, (uint32_t)part->bytes);
                        put_u32(w, (uint32_t)((uint64_t)part->bytes >> 32));
                }
                free(hdr);
                if (blob_add_owned(b, seg, end - start) < 0)
                        goto fail;
                b->seg[b->n++] = (struct blob_seg){ .p = part->data, .len = part->bytes };
                b->size += part->bytes;
        }
        *ret = b;
        return 0;
fail:
        result_blob_free(b);
        return -ENOMEM;
}

int result_blob_new(const struct kiln_result *r, char *scalars, struct result_blob **ret)
{
        return blob_new(r, scalars, scalars ? strlen(scalars) : 0, true, ret);
}

int result_blob_new_shared(const struct kiln_result *r, const char *scalars, size_t len, struct result_blob **ret)
{
        return blob_new(r, scalars, len, false, ret);
}

size_t result_blob_owned_bytes(const struct result_blob *b)
{
        size_t n = 0;
        for (int i = 0; i < b->n; i++)
                if (b->seg[i].owned)
                        n += b->seg[i].len;
        return n;
}

size_t result_blob_size(const struct result_blob *b)
{
        return b->size;
}

void result_blob_write_range(const struct result_blob *b, uint8_t *dst, size_t offset, size_t len)
{
        size_t pos = 0;
        for (int i = 0; i < b->n && len; i++) {
                const struct blob_seg *s = &b->seg[i];
                if (offset >= pos + s->len) {
                        pos += s->len;
                        continue;
                }
                size_t from = offset - pos, n = s->len - from < len ? s->len - from : len;
                memcpy(dst, s->p + from, n);
                dst += n;
                offset += n;
                len -= n;
                pos += s->len;
        }
}

size_t result_blob_part_offset(const struct result_blob *b, int i)
{
        /* seg[0..2] are the head, the scalars and the part count, then a header
         * segment and a data segment per part */
        size_t off = 0;
        for (int k = 0; k < 4 + 2 * i && k < b->n; k++)
                off += b->seg[k].len;
        return off;
}

/* Reads [off, off + len) of the blob into dst; -EIO when out of the blob's size. */
static int blob_read(result_read_fn read, void *opaque, uint64_t size, uint64_t off, void *dst, size_t len)
{
        if (off > size || len > size - off)
                return -EIO;
        return read(opaque, off, dst, len) < 0 ? -EIO : 0;
}

/* One part header of a blob at *off; advances *off past its data, whose offset goes
 * into *ret_data. */
static int parse_part(result_read_fn read, void *opaque, uint64_t size, uint64_t *off, struct kiln_part *p,
                      uint64_t *ret_data)
{
        uint8_t b4[8];
        if (blob_read(read, opaque, size, *off, b4, 4) < 0)
                return -EIO;
        uint32_t n = get_u32(b4);
        *off += 4;
        if (n > 65536)
                return -EIO;
        char *text = malloc(n ? n : 1);
        if (!text)
                return -ENOMEM;
        if (blob_read(read, opaque, size, *off, text, n) < 0 || blob_read(read, opaque, size, *off + n, b4, 8) < 0) {
                free(text);
                return -EIO;
        }
        json_t *h = json_loadb(text, n, 0, NULL);
        free(text);
        *off += n;
        uint64_t bytes = get_u32(b4) | (uint64_t)get_u32(b4 + 4) << 32;
        *off = pad8(*off + 8);
        const char *name = json_string_value(json_object_get(h, "name"));
        json_t *shape = json_object_get(h, "shape");
        enum kiln_dtype dt;
        int r = -EIO;
        if (name && strlen(name) < sizeof(p->name) &&
            kiln_dtype_from_name(json_string_value(json_object_get(h, "dtype")), &dt) >= 0 &&
            json_is_array(shape) && json_array_size(shape) <= 4 && *off <= size && bytes <= size - *off) {
                snprintf(p->name, sizeof(p->name), "%s", name);
                p->dtype = dt;
                p->ndim = (int)json_array_size(shape);
                for (int k = 0; k < p->ndim; k++)
                        p->shape[k] = (uint64_t)json_integer_value(json_array_get(shape, (size_t)k));
                p->bytes = bytes;
                p->data = NULL;
                p->borrowed = true;
                *ret_data = *off;
                *off += bytes;
                r = 0;
        }
        json_decref(h);
        return r;
}

/* One member's value of a blob's scalars object (n bytes at v): an array or object
 * is kept as its compact text (KILN_V_JSON), without a tree of its values; any
 * other is read by jansson. */
static int parse_member_value(const char *v, size_t n, const char *name, struct kiln_result *ret)
{
        size_t pos = 0, len;
        if (json_value_compact(v, n, &pos, NULL, &len) < 0 || pos != n)
                return -EIO;
        if (v[0] == '[' || v[0] == '{') {
                char *copy = malloc(len + 1);
                if (!copy)
                        return -ENOMEM;
                pos = 0;
                json_value_compact(v, n, &pos, copy, &len);
                copy[len] = '\0';
                return kiln_result_take_json(ret, name, copy);
        }
        json_t *j = json_loadb(v, n, JSON_DECODE_ANY, NULL);
        int r = j ? add_value(ret, name, j) : -EIO;
        json_decref(j);
        return r;
}

/* A blob's scalars object (n bytes of text), member by member, in its order: no
 * value is read twice, and none deeper than it was written. */
static int parse_scalars(const char *text, size_t n, struct kiln_result *ret)
{
        struct json_member m;
        size_t pos = 0;
        int more;

        while ((more = json_object_next(text, n, &pos, &m)) == 1) {
                json_t *k = json_loadb(text + m.key_at, m.key_len, JSON_DECODE_ANY, NULL);
                const char *name = json_string_value(k);
                int r = name ? parse_member_value(text + m.value_at, m.value_len, name, ret) : -EIO;
                json_decref(k);
                if (r < 0)
                        return r;
        }
        return more == 0 ? 0 : -EIO;
}

int result_blob_parse_with(result_read_fn read, void *opaque, uint64_t size, struct kiln_result *ret,
                           uint64_t ret_offsets[KILN_MAX_PARTS])
{
        uint8_t head[12];
        memset(ret, 0, sizeof(*ret));
        if (blob_read(read, opaque, size, 0, head, 12) < 0 || memcmp(head, blob_magic, 4) ||
            get_u32(head + 4) < BLOB_VERSION_MIN || get_u32(head + 4) > BLOB_VERSION)
                return -EIO;
        uint32_t n = get_u32(head + 8);
        uint64_t off = 12;
        if (size - off < (uint64_t)n + 4)
                return -EIO;
        char *text = malloc((size_t)n + 4);
        if (!text)
                return -ENOMEM;
        if (blob_read(read, opaque, size, off, text, (size_t)n + 4) < 0) {
                free(text);
                return -EIO;
        }
        uint32_t n_parts = get_u32((const uint8_t *)text + n);
        int r = parse_scalars(text, n, ret);
        free(text);
        off += (uint64_t)n + 4;
        if (r < 0 || n_parts > KILN_MAX_PARTS)
                goto bad;
        for (uint32_t i = 0; i < n_parts; i++) {
                r = parse_part(read, opaque, size, &off, &ret->parts[i], &ret_offsets[i]);
                if (r < 0)
                        goto bad;
                ret->n_parts = (int)i + 1;
        }
        return 0;
bad:
        kiln_result_clear(ret); /* the values' texts; the parts hold no data */
        return r == -ENOMEM ? -ENOMEM : -EIO;
}

struct mem_blob {
        const uint8_t *p;
};

static int mem_read(void *opaque, uint64_t off, void *dst, size_t len)
{
        memcpy(dst, ((struct mem_blob *)opaque)->p + off, len);
        return 0;
}

int result_blob_parse(const uint8_t *blob, size_t size, struct kiln_result *ret)
{
        struct mem_blob m = { .p = blob };
        uint64_t offsets[KILN_MAX_PARTS];
        int r = result_blob_parse_with(mem_read, &m, size, ret, offsets);
        if (r < 0)
                return r == -ENOMEM ? r : -EIO;
        for (int i = 0; i < ret->n_parts; i++)
                ret->parts[i].data = (void *)(blob + offsets[i]);
        return 0;
}

/* ---- the done message ---- */

/* A finished job's `done` written directly, byte for byte what the jansson path
 * below writes (JSON_COMPACT, keys in insertion order), around the scalars text:
 * `scalars`, or when NULL the result's values written in place (no copy of their
 * own is made); *where says where that text lies. NULL when a string needs
 * escaping or on ENOMEM. */
static char *done_text_plain(const struct done_info *in, const char *scalars, const char *backend,
                             struct done_scalars *where)
{
        const struct kiln_result *r = in->result;
        struct scalars sc;
        size_t slen;

        if (!proto_json_plain(in->job) || !proto_json_plain(backend))
                return NULL;
        for (int i = 0; i < r->n_parts; i++)
                if (!part_header_plain(&r->parts[i]))
                        return NULL;
        if (scalars)
                slen = strlen(scalars);
        else if (scalars_prepare(r, &sc) < 0)
                return NULL;
        else
                slen = sc.len;
        /* Room for the longest text: the strings, three numbers and every part's
         * header, with a generous allowance for the fixed text around them. */
        size_t cap = strlen(in->job) + slen + strlen(backend) + 3 * (TEXTBUF_U64_DIGITS + 1) +
                     (size_t)r->n_parts * (PART_HEADER_MAX + 1) + 160;
        char *text = malloc(cap);
        if (!text) {
                if (!scalars)
                        scalars_release(&sc);
                return NULL;
        }
        struct textbuf b = textbuf_init(text, cap);
        textbuf_str(&b, "{\"op\":\"done\",\"job\":\"");
        textbuf_str(&b, in->job);
        textbuf_str(&b, "\",\"state\":\"done\",\"ms\":{\"queue\":");
        textbuf_i64(&b, in->queue_ms);
        textbuf_str(&b, ",\"run\":");
        textbuf_i64(&b, in->run_ms);
        textbuf_str(&b, "},\"result\":");
        size_t at = b.len;
        if (scalars) {
                textbuf_put(&b, scalars, slen);
        } else {
                scalars_write(&sc, text + at); /* cap leaves room for it */
                b.len += slen;
                scalars_release(&sc);
        }
        textbuf_str(&b, ",\"parts\":[");
        for (int i = 0; i < r->n_parts; i++) {
                if (i)
                        textbuf_put(&b, ",", 1);
                part_header_put(&b, &r->parts[i]);
        }
        textbuf_str(&b, "],\"backend\":\"");
        textbuf_str(&b, backend);
        textbuf_str(&b, "\",\"batch\":");
        textbuf_u64(&b, in->batch);
        textbuf_str(&b, in->not_kept ? ",\"stored\":false}" : "}");
        if (textbuf_over(&b)) { /* never: cap is the longest text */
                free(text);
                return NULL;
        }
        *where = (struct done_scalars){ .at = at, .len = slen };
        return text;
}

/* The `done` message built as a jansson object: failures, and names that need
 * escaping (never a kind's own part names, job ids or backends), around the
 * scalars text of a finished job. */
static char *done_text_json(const struct done_info *in, const char *scalars, const char *backend)
{
        bool done = !strcmp(in->state, "done") && in->result;
        json_t *ms = json_pack("{s:I, s:I}", "queue", (json_int_t)in->queue_ms, "run", (json_int_t)in->run_ms);
        json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "op", "done", "job", in->job, "state", in->state, "ms", ms);
        if (!o)
                return NULL;
        if (done) {
                json_t *parts = json_array();
                for (int i = 0; i < in->result->n_parts; i++)
                        json_array_append_new(parts, part_header_json(&in->result->parts[i]));
                json_object_set_new(o, "result", json_loads(scalars, 0, NULL));
                json_object_set_new(o, "parts", parts);
                json_object_set_new(o, "backend", json_string(backend));
                json_object_set_new(o, "batch", json_integer(in->batch));
                if (in->not_kept)
                        json_object_set_new(o, "stored", json_false());
        } else {
                json_t *e = json_pack("{s:s, s:s}", "code", in->error_code ? in->error_code : "internal", "message",
                                      in->error_message ? in->error_message : "");
                /* As an error reply (SPEC §2.5): the field, when one input is at fault. */
                if (e && in->error_field && in->error_field[0])
                        json_object_set_new(e, "field", json_string(in->error_field));
                json_object_set_new(o, "error", e);
        }
        char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(o);
        return text;
}

int result_done_text_at(const struct done_info *in, char **ret, struct done_scalars *ret_where)
{
        const char *backend = in->backend && in->backend[0] ? in->backend : "cpu";
        bool done = !strcmp(in->state, "done") && in->result;
        struct done_scalars where = { 0 };
        char *text = done ? done_text_plain(in, in->scalars, backend, &where) : NULL;

        if (!text) {
                where = (struct done_scalars){ 0 };
                char *own = done && !in->scalars ? result_scalars_text(in->result) : NULL;
                if (done && !in->scalars && !own)
                        return -ENOMEM;
                text = done_text_json(in, in->scalars ? in->scalars : own, backend);
                free(own);
        }
        if (!text)
                return -ENOMEM;
        if (ret_where)
                *ret_where = where;
        *ret = text;
        return 0;
}
