/* Inputs given inline in params as JSON nested arrays, lifted into the typed arrays
 * that the binary form of the same data gives (see params.h). */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"

static int __attribute__((format(printf, 4, 5)))
fail_code(struct kiln_error *err, int code, const char *field, const char *fmt, ...)
{
        va_list ap;

        if (err) {
                snprintf(err->field, sizeof(err->field), "%s", field);
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return code;
}

/* Walks one nested array: checks that it is rectangular with `shape` (ndim deep) and
 * writes its elements in row-major order at *out. */
struct walk {
        enum kiln_dtype dtype;
        int ndim;
        const uint64_t *shape;
        unsigned char *out;
        size_t at;            /* elements written */
        const char *field;    /* the array's own field name */
        size_t idx[4];        /* where the walk is, at each depth */
        struct kiln_error *err;
};

/* The field name of the element at idx[0..depth): "params.rows[3][1]". Written only
 * for an error, so that a valid array of a million numbers costs no formatting. */
static const char *walk_field(const struct walk *w, int depth, char buf[128])
{
        char tmp[128];
        snprintf(buf, 128, "%s", w->field);
        for (int k = 0; k < depth; k++) {
                snprintf(tmp, sizeof(tmp), "%.100s[%zu]", buf, w->idx[k]);
                memcpy(buf, tmp, sizeof(tmp));
        }
        return buf;
}

/* Fails the walk at idx[0..depth): "<field> <what>". */
static int __attribute__((format(printf, 3, 4))) walk_fail(const struct walk *w, int depth, const char *fmt, ...)
{
        char field[128], what[256];
        va_list ap;

        walk_field(w, depth, field);
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        return fail_code(w->err, -EINVAL, field, "%s %s", field, what);
}

static int put_element(struct walk *w, const json_t *e, int depth)
{
        unsigned char *dst = w->out + w->at * kiln_dtype_size(w->dtype);
        double d;

        if (w->dtype == KILN_DTYPE_F32) {
                float f;
                if (json_is_null(e)) {
                        f = NAN;
                } else if (json_is_number(e)) {
                        d = json_number_value(e);
                        f = (float)d; /* 3.4028235e38, float32's largest as printed, is FLT_MAX */
                        if (isinf(f))
                                return walk_fail(w, depth, "is outside the f32 range");
                } else {
                        return walk_fail(w, depth, "must be a number or null");
                }
                memcpy(dst, &f, sizeof(f));
                w->at++;
                return 0;
        }

        double lo = 0, hi = 0;
        const char *name = kiln_dtype_name(w->dtype);
        switch (w->dtype) {
        case KILN_DTYPE_I32: lo = -2147483648.0; hi = 2147483647.0; break;
        case KILN_DTYPE_U32: lo = 0; hi = 4294967295.0; break;
        case KILN_DTYPE_U8: lo = 0; hi = 255; break;
        default: return walk_fail(w, depth, "cannot be given as JSON");
        }
        if (json_is_integer(e))
                d = (double)json_integer_value(e);
        else if (json_is_real(e) && json_real_value(e) == floor(json_real_value(e)))
                d = json_real_value(e);
        else
                return walk_fail(w, depth, "must be an integer");
        if (!(d >= lo && d <= hi))
                return walk_fail(w, depth, "must be an integer between %.0f and %.0f (%s)", lo, hi, name);
        if (w->dtype == KILN_DTYPE_I32) {
                int32_t x = (int32_t)d;
                memcpy(dst, &x, sizeof(x));
        } else if (w->dtype == KILN_DTYPE_U32) {
                uint32_t x = (uint32_t)d;
                memcpy(dst, &x, sizeof(x));
        } else {
                *dst = (uint8_t)d;
        }
        w->at++;
        return 0;
}

static int walk_level(struct walk *w, const json_t *v, int depth)
{
        if (depth == w->ndim) {
                if (json_is_array(v) || json_is_object(v))
                        return walk_fail(w, depth, "must be a single value: the array is %d deep", w->ndim);
                return put_element(w, v, depth);
        }
        if (!json_is_array(v))
                return walk_fail(w, depth, "must be an array of %llu", (unsigned long long)w->shape[depth]);
        if (json_array_size(v) != w->shape[depth])
                return walk_fail(w, depth, "has %zu elements where the first has %llu: arrays must be rectangular",
                                 json_array_size(v), (unsigned long long)w->shape[depth]);
        for (size_t i = 0; i < json_array_size(v); i++) {
                w->idx[depth] = i;
                int r = walk_level(w, json_array_get(v, i), depth + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

int kiln_input_from_json(const struct kiln_input_spec *spec, const json_t *v, const char *field, size_t max_bytes,
                         struct kiln_array *ret, void **ret_data, struct kiln_error *err)
{
        uint64_t shape[4] = { 0 };
        int ndim = 0, dt = kiln_input_json_dtype(spec);

        /* A bytes input given as a JSON string (its UTF-8 bytes) or object (its
         * compact text, keys sorted): the bytes a client would send as the part. */
        if ((spec->dtypes & KILN_DTYPE_BIT(KILN_DTYPE_BYTES)) && (json_is_string(v) || json_is_object(v))) {
                /* A string's every byte, a NUL among them (json_stringn makes such). */
                size_t n = json_is_string(v) ? json_string_length(v) : 0;
                char *text = json_is_string(v) ? malloc(n + 1) : json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
                if (!text)
                        return fail_code(err, -ENOMEM, field, "out of memory while reading %s", field);
                if (json_is_string(v))
                        memcpy(text, json_string_value(v), n + 1);
                else
                        n = strlen(text);
                struct kiln_error kerr;
                shape[0] = n;
                if (n > max_bytes) {
                        free(text);
                        return fail_code(err, -E2BIG, field, "%s holds %zu bytes, over the limit of %zu", field, n,
                                         max_bytes);
                }
                if (kiln_array_init(ret, spec->name, KILN_DTYPE_BYTES, 1, shape, text, n, &kerr) < 0) {
                        free(text);
                        return fail_code(err, -EINVAL, field, "%s", kerr.message);
                }
                *ret_data = text;
                return 0;
        }
        if (dt < 0)
                return fail_code(err, -EINVAL, field, "%s cannot be given as JSON: send it as a binary part", field);
        if (!json_is_array(v) && (spec->dtypes & KILN_DTYPE_BIT(KILN_DTYPE_BYTES)))
                return fail_code(err, -EINVAL, field, "%s must be a string or an object (or an array of bytes)",
                                 field);
        if (!json_is_array(v))
                return fail_code(err, -EINVAL, field, "%s must be an array", field);
        /* The shape from the first element at each depth; walk_level checks the rest. */
        for (const json_t *c = v; json_is_array(c); c = json_array_get(c, 0)) {
                if (ndim == 4)
                        return fail_code(err, -EINVAL, field, "%s must be nested at most 4 deep", field);
                shape[ndim++] = json_array_size(c);
                if (json_array_size(c) == 0)
                        break;
        }
        if (spec->ndim && ndim != spec->ndim)
                return fail_code(err, -EINVAL, field, "%s must be a %d-dimensional array (nested %d deep), not %d",
                                 field, spec->ndim, spec->ndim, ndim);
        uint64_t count = 1;
        for (int d = 0; d < ndim; d++) {
                if (shape[d] != 0 && count > SIZE_MAX / 8 / shape[d])
                        return fail_code(err, -E2BIG, field, "%s is too large", field);
                count *= shape[d];
        }
        size_t bytes = (size_t)count * kiln_dtype_size((enum kiln_dtype)dt);
        if (bytes > max_bytes)
                return fail_code(err, -E2BIG, field, "%s holds %zu bytes as %s, over the limit of %zu", field, bytes,
                                 kiln_dtype_name((enum kiln_dtype)dt), max_bytes);
        unsigned char *data = malloc(bytes ? bytes : 1);
        if (!data)
                return fail_code(err, -ENOMEM, field, "out of memory while reading %s", field);
        struct walk w = { .dtype = (enum kiln_dtype)dt, .ndim = ndim, .shape = shape, .out = data, .field = field,
                          .err = err };
        int r = walk_level(&w, v, 0);
        struct kiln_error kerr;
        if (r >= 0 && kiln_array_init(ret, spec->name, w.dtype, ndim, shape, data, bytes, &kerr) < 0)
                r = fail_code(err, -EINVAL, field, "%s", kerr.message);
        if (r < 0) {
                free(data);
                return r;
        }
        *ret_data = data;
        return 0;
}

int kiln_inputs_from_params(const struct kiln_kind *kind, const json_t *params, size_t max_bytes,
                            struct kiln_array ret[KILN_MAX_INPUTS], void *ret_data[KILN_MAX_INPUTS],
                            struct kiln_error *err)
{
        int n = 0;

        for (size_t i = 0; kind && kind->inputs && kind->inputs[i].name; i++) {
                const struct kiln_input_spec *s = &kind->inputs[i];
                const json_t *v = s->json_param && json_is_object(params) ? json_object_get(params, s->json_param)
                                                                          : NULL;
                char field[128];
                if (!v)
                        continue;
                snprintf(field, sizeof(field), "params.%.100s", s->json_param);
                int r = n < KILN_MAX_INPUTS ? kiln_input_from_json(s, v, field, max_bytes, &ret[n], &ret_data[n], err)
                                            : fail_code(err, -EINVAL, field, "too many inputs");
                if (r < 0) {
                        while (n > 0)
                                free(ret_data[--n]);
                        return r;
                }
                n++;
        }
        return n;
}

/* Sets key to a new value; false when value is NULL or setting fails. */
static bool set_new(json_t *o, const char *key, json_t *value)
{
        return value && json_object_set_new(o, key, value) == 0;
}

json_t *kiln_inputs_schema_json(const struct kiln_kind *kind)
{
        json_t *a = json_array();

        for (size_t i = 0; a && kind && kind->inputs && kind->inputs[i].name; i++) {
                const struct kiln_input_spec *s = &kind->inputs[i];
                json_t *o = json_object(), *dtypes = json_array();
                bool ok = o && dtypes;
                for (int t = 0; ok && t < KILN_N_DTYPES; t++)
                        if (s->dtypes & KILN_DTYPE_BIT(t))
                                ok = json_array_append_new(dtypes, json_string(kiln_dtype_name(t))) == 0;
                ok = ok && set_new(o, "name", json_string(s->name));
                if (ok)
                        ok = set_new(o, "dtypes", dtypes); /* takes dtypes, also on failure */
                else
                        json_decref(dtypes);
                dtypes = NULL;
                ok = ok && set_new(o, "ndim", json_integer(s->ndim));
                ok = ok && set_new(o, "required", json_boolean(s->required));
                ok = ok && set_new(o, "json_param", s->json_param ? json_string(s->json_param) : json_null());
                ok = ok && set_new(o, "doc", json_string(s->doc ? s->doc : ""));
                if (!ok || json_array_append_new(a, o) < 0) {
                        if (!ok)
                                json_decref(o);
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}
