/* Job results: named scalars and malloc'd binary parts (see kind.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kind.h"

/* Copies `name` into a fixed field; false when it does not fit or is empty. */
static bool copy_name(char *dst, const char *name)
{
        size_t len = name ? strlen(name) : 0;

        if (len == 0 || len >= KILN_NAME_MAX)
                return false;
        memcpy(dst, name, len + 1);
        return true;
}

struct kiln_part *kiln_result_add_part(struct kiln_result *r, const char *name, enum kiln_dtype dtype,
                                       int ndim, const uint64_t *shape)
{
        struct kiln_part *p;
        size_t count = 1;

        if (!r || r->n_parts >= KILN_MAX_PARTS || ndim < 0 || ndim > 4 || (ndim > 0 && !shape) ||
            !kiln_dtype_name(dtype))
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

int kiln_result_add_scalar(struct kiln_result *r, const char *name, double value)
{
        struct kiln_scalar *s;

        if (!r || r->n_scalars >= KILN_MAX_SCALARS)
                return -ENOSPC;
        s = &r->scalars[r->n_scalars];
        if (!copy_name(s->name, name))
                return -EINVAL;
        s->value = value;
        s->is_null = isnan(value);
        r->n_scalars++;
        return 0;
}

void kiln_result_clear(struct kiln_result *r)
{
        if (!r)
                return;
        for (int i = 0; i < r->n_parts && i < KILN_MAX_PARTS; i++)
                free(r->parts[i].data);
        memset(r, 0, sizeof(*r));
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
