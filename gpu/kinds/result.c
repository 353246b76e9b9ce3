/* Job results: named typed values and binary parts (see kind.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kind.h"

int kiln_error_set(struct kiln_error *err, const char *field, const char *fmt, ...)
{
        va_list ap;

        if (err) {
                snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

/* Copies `name` into a fixed field; false when it does not fit or is empty. */
static bool copy_name(char *dst, const char *name)
{
        size_t len = name ? strlen(name) : 0;

        if (len == 0 || len >= KILN_NAME_MAX)
                return false;
        memcpy(dst, name, len + 1);
        return true;
}

const struct kiln_part *kiln_result_find_part(const struct kiln_result *r, const char *name)
{
        for (int i = 0; r && name && i < r->n_parts && i < KILN_MAX_PARTS; i++)
                if (strcmp(r->parts[i].name, name) == 0)
                        return &r->parts[i];
        return NULL;
}

struct kiln_part *kiln_result_add_part(struct kiln_result *r, const char *name, enum kiln_dtype dtype,
                                       int ndim, const uint64_t *shape)
{
        struct kiln_part *p;
        size_t count = 1;

        if (!r || r->n_parts >= KILN_MAX_PARTS || ndim < 0 || ndim > 4 || (ndim > 0 && !shape) ||
            !kiln_dtype_name(dtype) || kiln_result_find_part(r, name))
                return NULL;
        for (int d = 0; d < ndim; d++) {
                if (shape[d] > SIZE_MAX || (shape[d] != 0 && count > SIZE_MAX / shape[d]))
                        return NULL;
                count *= (size_t)shape[d];
        }
        size_t esize = kiln_dtype_size(dtype);
        if (count > SIZE_MAX / esize)
                return NULL;

        p = &r->parts[r->n_parts];
        memset(p, 0, sizeof(*p));
        if (!copy_name(p->name, name))
                return NULL;
        /* calloc(0) may return NULL; allocate at least one byte so data is valid. */
        p->data = calloc(count ? count : 1, esize);
        if (!p->data)
                return NULL;
        p->dtype = dtype;
        p->ndim = ndim;
        for (int d = 0; d < ndim; d++)
                p->shape[d] = shape[d];
        p->bytes = count * esize;
        r->n_parts++;
        return p;
}

const struct kiln_value *kiln_result_find(const struct kiln_result *r, const char *name)
{
        for (int i = 0; r && name && i < r->n_scalars && i < KILN_MAX_SCALARS; i++)
                if (strcmp(r->scalars[i].name, name) == 0)
                        return &r->scalars[i];
        return NULL;
}

/* The next free value slot named `name`, or NULL with *ret_err set. The slot is
 * only counted once the caller increments n_scalars. */
static struct kiln_value *new_value(struct kiln_result *r, const char *name, enum kiln_vtype type, int *ret_err)
{
        struct kiln_value *v;

        if (!r || r->n_scalars >= KILN_MAX_SCALARS) {
                *ret_err = -ENOSPC;
                return NULL;
        }
        if (kiln_result_find(r, name)) {
                *ret_err = -EEXIST;
                return NULL;
        }
        v = &r->scalars[r->n_scalars];
        memset(v, 0, sizeof(*v));
        if (!copy_name(v->name, name)) {
                *ret_err = -EINVAL;
                return NULL;
        }
        v->type = type;
        return v;
}

int kiln_result_add_scalar(struct kiln_result *r, const char *name, double value)
{
        int err;
        struct kiln_value *v = new_value(r, name, isnan(value) ? KILN_V_NULL : KILN_V_NUM, &err);

        if (!v)
                return err;
        if (v->type == KILN_V_NUM)
                v->num = value;
        r->n_scalars++;
        return 0;
}

int kiln_result_add_int(struct kiln_result *r, const char *name, int64_t value)
{
        int err;
        struct kiln_value *v = new_value(r, name, KILN_V_INT, &err);

        if (!v)
                return err;
        v->i = value;
        r->n_scalars++;
        return 0;
}

int kiln_result_add_bool(struct kiln_result *r, const char *name, bool value)
{
        int err;
        struct kiln_value *v = new_value(r, name, KILN_V_BOOL, &err);

        if (!v)
                return err;
        v->b = value;
        r->n_scalars++;
        return 0;
}

int kiln_result_add_null(struct kiln_result *r, const char *name)
{
        int err;

        if (!new_value(r, name, KILN_V_NULL, &err))
                return err;
        r->n_scalars++;
        return 0;
}

/* Adds a text value, taking over `text` (freed on failure). */
static int add_text(struct kiln_result *r, const char *name, enum kiln_vtype type, char *text)
{
        int err;
        struct kiln_value *v = text ? new_value(r, name, type, &err) : NULL;

        if (!v) {
                free(text);
                return text ? err : -ENOMEM;
        }
        v->text = text;
        r->n_scalars++;
        return 0;
}

int kiln_result_add_string(struct kiln_result *r, const char *name, const char *text)
{
        return text ? add_text(r, name, KILN_V_STR, strdup(text)) : -EINVAL;
}

int kiln_result_add_json(struct kiln_result *r, const char *name, const char *json)
{
        return json && *json ? add_text(r, name, KILN_V_JSON, strdup(json)) : -EINVAL;
}

int kiln_result_take_json(struct kiln_result *r, const char *name, char *json)
{
        if (!json || !*json) {
                free(json);
                return -EINVAL;
        }
        return add_text(r, name, KILN_V_JSON, json);
}

void kiln_result_clear(struct kiln_result *r)
{
        if (!r)
                return;
        for (int i = 0; i < r->n_parts && i < KILN_MAX_PARTS; i++)
                if (!r->parts[i].borrowed)
                        free(r->parts[i].data);
        for (int i = 0; i < r->n_scalars && i < KILN_MAX_SCALARS; i++)
                if (r->scalars[i].type == KILN_V_STR || r->scalars[i].type == KILN_V_JSON)
                        free(r->scalars[i].text);
        memset(r, 0, sizeof(*r));
}

size_t kiln_result_held_bytes(const struct kiln_result *r)
{
        size_t total = 0;

        if (!r)
                return 0;
        for (int i = 0; i < r->n_parts && i < KILN_MAX_PARTS; i++)
                if (!r->parts[i].borrowed)
                        total += r->parts[i].bytes;
        for (int i = 0; i < r->n_scalars && i < KILN_MAX_SCALARS; i++)
                if ((r->scalars[i].type == KILN_V_STR || r->scalars[i].type == KILN_V_JSON) && r->scalars[i].text)
                        total += strlen(r->scalars[i].text) + 1;
        return total;
}

size_t kiln_result_bytes(const struct kiln_result *r)
{
        size_t total = 0;

        if (!r)
                return 0;
        for (int i = 0; i < r->n_parts && i < KILN_MAX_PARTS; i++)
                total += r->parts[i].bytes;
        return total;
}
