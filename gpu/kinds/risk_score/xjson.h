/* A small read-only JSON reader for model files: the whole document is parsed into
 * one arena of immutable values, read through the accessors below.
 *
 * It exists so that the risk.model class (model.c) is part of gpu/'s compute half,
 * which links no JSON library: the kind's descriptor points at the class, and the
 * parity tests and kernel benchmarks build where only a compiler and CUDA exist.
 *
 * What it accepts is RFC 8259 JSON (UTF-8 checked, duplicate keys in an object
 * refused, at most XJ_MAX_DEPTH levels of nesting), plus the bare tokens NaN,
 * Infinity and -Infinity that XGBoost writes for non-finite floats, which it reads
 * as null: harmless in statistics nobody reads, refused by name where a value
 * matters. Numbers without a fraction or exponent that fit an int64 are integers;
 * every other number is a real, read with strtod (the C locale's decimal point). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XJ_MAX_DEPTH 64

enum xj_type {
        XJ_NULL,
        XJ_BOOL,
        XJ_INT,
        XJ_REAL,
        XJ_STRING,
        XJ_ARRAY,
        XJ_OBJECT,
};

struct xj_member;

/* One value (16 bytes). Strings are decoded, NUL-terminated and may hold NULs
 * (n is their length in bytes). */
struct xj_value {
        uint8_t type;                  /* enum xj_type */
        bool b;                        /* XJ_BOOL */
        union {
                uint32_t n;            /* string bytes, array items, object members */
                /* XJ_REAL: its text read straight to float32 (not through d: one
                 * rounding, as XGBoost reads JSON numbers) */
                float f;
        };
        union {
                int64_t i;             /* XJ_INT */
                double d;              /* XJ_REAL */
                const char *s;         /* XJ_STRING */
                const struct xj_value *items;     /* XJ_ARRAY */
                const struct xj_member *members;  /* XJ_OBJECT, in document order */
        };
};

struct xj_member {
        const char *key;               /* decoded, NUL-terminated */
        uint32_t key_len;
        struct xj_value value;
};

/* Where and why a document was refused. */
struct xj_error {
        char text[96];
        int line, column;              /* 1-based, of the offending byte */
        bool nomem;                    /* the parse ran out of memory */
};

struct xj_doc;

/* Parses `len` bytes of JSON. Returns >= 0 with the document in *ret_doc (free it
 * with xj_free; every value lives as long as it), -EINVAL for text that is not one
 * JSON value (err says what and where), or -ENOMEM (err->nomem set). */
int xj_parse(const char *text, size_t len, struct xj_doc **ret_doc, struct xj_error *err);
/* xj_parse allocating at most max_bytes for the document and its parse (the values
 * take 16 bytes each, an object's member 32): -E2BIG, err saying so, past that. */
int xj_parse_capped(const char *text, size_t len, size_t max_bytes, struct xj_doc **ret_doc,
                    struct xj_error *err);

/* The document's root value. */
const struct xj_value *xj_root(const struct xj_doc *doc);

/* Frees a document and all its values. Accepts NULL. */
void xj_free(struct xj_doc *doc);

/* The member `key` of object o, or NULL (also when o is NULL or not an object). */
const struct xj_value *xj_get(const struct xj_value *o, const char *key);

static inline bool xj_is(const struct xj_value *v, enum xj_type t)
{
        return v && v->type == t;
}

static inline bool xj_is_number(const struct xj_value *v)
{
        return v && (v->type == XJ_INT || v->type == XJ_REAL);
}

/* Items of an array (0 for anything else). */
static inline size_t xj_size(const struct xj_value *a)
{
        return xj_is(a, XJ_ARRAY) ? a->n : 0;
}

/* Item i of an array, or NULL when a is not an array or i is out of range. */
static inline const struct xj_value *xj_at(const struct xj_value *a, size_t i)
{
        return xj_is(a, XJ_ARRAY) && i < a->n ? &a->items[i] : NULL;
}

/* A number as a double (0 for anything else). */
static inline double xj_number(const struct xj_value *v)
{
        if (xj_is(v, XJ_INT))
                return (double)v->i;
        return xj_is(v, XJ_REAL) ? v->d : 0.0;
}

/* A number as the float32 its text rounds to (0 for anything else). */
static inline float xj_float(const struct xj_value *v)
{
        if (xj_is(v, XJ_INT))
                return (float)v->i;
        return xj_is(v, XJ_REAL) ? v->f : 0.0f;
}
