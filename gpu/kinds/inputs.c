/* Input arrays and the checks of a job against its kind (see kind.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kind.h"

/* An error about the field `prefix name` ("inputs.rows"): its message is the field
 * followed by fmt. The field is formatted only here, on failure: every job's inputs
 * pass these checks, and formatting it up front cost more than the checks. */
static int __attribute__((format(printf, 4, 5)))
field_error(struct kiln_error *err, const char *prefix, const char *name, const char *fmt, ...)
{
        char field[96], rest[sizeof(err->message)];
        va_list ap;

        snprintf(field, sizeof(field), "%s%.64s", prefix, name ? name : "");
        va_start(ap, fmt);
        vsnprintf(rest, sizeof(rest), fmt, ap);
        va_end(ap);
        return kiln_error_set(err, field, "%s%s", field, rest);
}

int kiln_input_json_dtype(const struct kiln_input_spec *spec)
{
        static const enum kiln_dtype order[] = { KILN_DTYPE_F32, KILN_DTYPE_I32, KILN_DTYPE_U32, KILN_DTYPE_U8 };

        for (size_t i = 0; spec && i < sizeof(order) / sizeof(order[0]); i++)
                if (spec->dtypes & KILN_DTYPE_BIT(order[i]))
                        return (int)order[i];
        return -1;
}

const struct kiln_array *kiln_inputs_find(const struct kiln_array *in, size_t n, const char *name)
{
        for (size_t i = 0; in && name && i < n; i++)
                if (strcmp(in[i].name, name) == 0)
                        return &in[i];
        return NULL;
}

int kiln_array_init(struct kiln_array *ret, const char *name, enum kiln_dtype dtype, int ndim,
                    const uint64_t *shape, const void *data, size_t bytes, struct kiln_error *err)
{
        struct kiln_array a = { .dtype = dtype, .ndim = ndim, .bytes = bytes, .data = data };
        size_t len = name ? strlen(name) : 0;

        if (len == 0 || len >= sizeof(a.name))
                return field_error(err, "inputs.", name, ": an input name has 1 to %d characters", KILN_NAME_MAX - 1);
        memcpy(a.name, name, len + 1);
        if (!kiln_dtype_name(dtype))
                return field_error(err, "inputs.", name, " has an unknown dtype");
        if (ndim < 0 || ndim > 4 || (ndim > 0 && !shape))
                return field_error(err, "inputs.", name, " must have 0 to 4 dimensions");
        uint64_t count = 1;
        for (int d = 0; d < ndim; d++) {
                if (shape[d] != 0 && count > UINT64_MAX / shape[d])
                        return field_error(err, "inputs.", name, " has a shape too large to address");
                count *= shape[d];
                a.shape[d] = shape[d];
        }
        uint64_t esize = kiln_dtype_size(dtype);
        if (count > UINT64_MAX / esize || count * esize != (uint64_t)bytes)
                return field_error(err, "inputs.", name, " has %zu bytes, but its shape and dtype %s make %llu", bytes,
                                   kiln_dtype_name(dtype),
                                   count > UINT64_MAX / esize ? 0ULL : (unsigned long long)(count * esize));
        if (bytes && !data)
                return field_error(err, "inputs.", name, " has no data");
        *ret = a;
        return 0;
}

/* "f32, i32" for a dtype mask. */
static void dtype_list(uint32_t mask, char *buf, size_t size)
{
        size_t used = 0;

        buf[0] = '\0';
        for (int t = 0; t < KILN_N_DTYPES && used < size; t++) {
                if (!(mask & KILN_DTYPE_BIT(t)))
                        continue;
                int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", kiln_dtype_name(t));
                if (n < 0)
                        break;
                used += (size_t)n;
        }
}

static int check_one(const struct kiln_kind *kind, const struct kiln_input_spec *spec, const struct kiln_array *a,
                     struct kiln_error *err)
{
        char list[64];
        struct kiln_array copy;

        if (!(spec->dtypes & KILN_DTYPE_BIT(a->dtype))) {
                dtype_list(spec->dtypes, list, sizeof(list));
                return field_error(err, "inputs.", spec->name, " must have dtype %s, not %s", list,
                                   kiln_dtype_name(a->dtype) ? kiln_dtype_name(a->dtype) : "unknown");
        }
        if (spec->ndim && a->ndim != spec->ndim)
                return field_error(err, "inputs.", spec->name, " must have %d dimension%s, not %d", spec->ndim,
                                   spec->ndim == 1 ? "" : "s", a->ndim);
        /* The shape, dtype and size agree (a caller may have filled the array by hand). */
        return kiln_array_init(&copy, a->name, a->dtype, a->ndim, a->shape, a->data, a->bytes, err);
}

const char *kiln_kind_builtin_object(const struct kiln_kind *kind, const void *params)
{
        const struct kiln_param *p = NULL;

        if (!kind || !kind->builtin_objects || !kind->object_param || !params)
                return NULL;
        for (size_t i = 0; kind->params && kind->params[i].name && !p; i++)
                if (strcmp(kind->params[i].name, kind->object_param) == 0)
                        p = &kind->params[i];
        /* The object_param is a free string stored as a char array (schema_check). */
        if (!p || p->type != KILN_PARAM_STRING || p->choices || p->size < 2)
                return NULL;
        const char *name = (const char *)params + p->offset;
        if (!memchr(name, '\0', p->size))
                return NULL;
        for (size_t i = 0; kind->builtin_objects[i]; i++)
                if (strcmp(kind->builtin_objects[i], name) == 0)
                        return kind->builtin_objects[i];
        return NULL;
}

/* The inputs against the kind's specs: every name known and given once, every
 * required one present, each one's dtype, rank and size. */
static int check_inputs(const struct kiln_kind *kind, const struct kiln_array *in, size_t n_in,
                        struct kiln_error *err)
{
        if (n_in > KILN_MAX_INPUTS)
                return kiln_error_set(err, "inputs", "a job takes at most %d inputs", KILN_MAX_INPUTS);
        for (size_t i = 0; i < n_in; i++) {
                const struct kiln_input_spec *spec = NULL;
                for (size_t s = 0; kind->inputs && kind->inputs[s].name && !spec; s++)
                        if (strcmp(kind->inputs[s].name, in[i].name) == 0)
                                spec = &kind->inputs[s];
                if (!spec)
                        return field_error(err, "inputs.", in[i].name, " is not an input of %s", kind->name);
                if (kiln_inputs_find(in, i, in[i].name))
                        return field_error(err, "inputs.", in[i].name, " is given twice");
                int r = check_one(kind, spec, &in[i], err);
                if (r < 0)
                        return r;
        }
        for (size_t s = 0; kind->inputs && kind->inputs[s].name; s++) {
                const struct kiln_input_spec *spec = &kind->inputs[s];
                if (spec->required && !kiln_inputs_find(in, n_in, spec->name)) {
                        if (spec->json_param)
                                return field_error(err, "inputs.", spec->name,
                                                   " is required: send it as a binary part or as params.%s",
                                                   spec->json_param);
                        return field_error(err, "inputs.", spec->name, " is required: send it as a binary part");
                }
        }
        return 0;
}

int kiln_kind_check(const struct kiln_kind *kind, const void *params, const struct kiln_array *in, size_t n_in,
                    const struct kiln_object *obj, struct kiln_error *err)
{
        int r;

        if (!kind)
                return kiln_error_set(err, "kind", "no kind to check against");
        r = check_inputs(kind, in, n_in, err);
        if (r < 0)
                return r;
        const char *op = kind->object_param ? kind->object_param : "object";
        if (kind->object && kiln_kind_builtin_object(kind, params)) {
                if (obj)
                        return field_error(err, "params.", op,
                                           " names one of %s's built-in objects, which runs against no stored object",
                                           kind->name);
        } else if (kind->object) {
                if (!obj || !obj->snapshot)
                        return field_error(err, "params.", op, " must name an object %s runs against", kind->name);
                if (obj->cls != kind->object)
                        return field_error(err, "params.", op, " names an object of another class than %s takes",
                                           kind->name);
        } else if (obj) {
                return kiln_error_set(err, "params", "%s runs against no object", kind->name);
        }
        return kind->check ? kind->check(params, in, n_in, obj, err) : 0;
}

int kiln_kind_check_meta(const struct kiln_kind *kind, const void *params, const struct kiln_array *in,
                         size_t n_in, uint64_t version, const void *meta, size_t meta_len, struct kiln_error *err)
{
        int r;

        if (!kind || !kind->object || kiln_kind_builtin_object(kind, params))
                return kiln_kind_check(kind, params, in, n_in, NULL, err);
        r = check_inputs(kind, in, n_in, err);
        if (r < 0)
                return r;
        if (!meta)
                meta_len = 0;
        return kind->check_meta ? kind->check_meta(params, in, n_in, version, meta, meta_len, err) : 0;
}

uint64_t kiln_kind_result_bytes(const struct kiln_kind *kind, const void *params, const struct kiln_array *in,
                                size_t n_in, const struct kiln_object *obj)
{
        if (!kind)
                return 0;
        if (kind->result_size)
                return kind->result_size(params, in, n_in, obj);
        return kind->result_bytes ? kind->result_bytes(params) : 0;
}

uint64_t kiln_kind_values_text_bytes(const struct kiln_kind *kind, const void *params, const struct kiln_array *in,
                                     size_t n_in, const struct kiln_object *obj)
{
        return kind && kind->values_text_size ? kind->values_text_size(params, in, n_in, obj) : 0;
}
