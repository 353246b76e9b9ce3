/* KLNB frames that carry a client's binary part to kilnd (SPEC §2): one frame
 * when the part fits in one message, else several, each with the byte "offset"
 * of its payload in the part. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static size_t elem_size(const char *dtype)
{
        if (!strcmp(dtype, "f32") || !strcmp(dtype, "u32") || !strcmp(dtype, "i32"))
                return 4;
        if (!strcmp(dtype, "u8") || !strcmp(dtype, "bytes"))
                return 1;
        return 0;
}

int ctl_frame_prefix(long long ref, const char *part, const char *dtype, int ndim, const uint64_t *shape,
                     int64_t offset, uint8_t **ret_buf, size_t *ret_len)
{
        if (ndim < 1 || ndim > 4 || !elem_size(dtype))
                return -EINVAL;
        json_t *dims = json_array();
        for (int i = 0; dims && i < ndim; i++)
                if (json_array_append_new(dims, json_integer((json_int_t)shape[i])) < 0) {
                        json_decref(dims);
                        dims = NULL;
                }
        json_t *h = dims ? json_pack("{s:I, s:s, s:s, s:o}", "ref", (json_int_t)ref, "part", part, "dtype", dtype,
                                     "shape", dims)
                         : NULL;
        if (h && offset >= 0 && json_object_set_new(h, "offset", json_integer((json_int_t)offset)) < 0) {
                json_decref(h);
                h = NULL;
        }
        char *text = h ? json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(h);
        if (!text)
                return -ENOMEM;
        size_t hl = strlen(text);
        uint8_t *buf = malloc(8 + hl);
        if (!buf) {
                free(text);
                return -ENOMEM;
        }
        memcpy(buf, "KLNB", 4);
        buf[4] = (uint8_t)(hl & 0xff);
        buf[5] = (uint8_t)(hl >> 8 & 0xff);
        buf[6] = (uint8_t)(hl >> 16 & 0xff);
        buf[7] = (uint8_t)(hl >> 24 & 0xff);
        memcpy(buf + 8, text, hl);
        free(text);
        *ret_buf = buf;
        *ret_len = 8 + hl;
        return 0;
}

int ctl_frame_plan(long long ref, const char *part, const char *dtype, int ndim, const uint64_t *shape,
                   uint64_t total, size_t max_message, size_t cap, size_t *ret_chunk, bool *ret_multi)
{
        size_t es = elem_size(dtype);
        uint8_t *buf;
        size_t single, multi;
        int r;

        if (!es)
                return -EINVAL;
        /* One frame, without an offset, when the whole part fits. */
        if ((r = ctl_frame_prefix(ref, part, dtype, ndim, shape, -1, &buf, &single)) < 0)
                return r;
        free(buf);
        if (total <= cap && single <= max_message && total <= max_message - single) {
                *ret_chunk = (size_t)total;
                *ret_multi = false;
                return 0;
        }
        /* The largest prefix is the one with the largest offset (most digits). */
        if ((r = ctl_frame_prefix(ref, part, dtype, ndim, shape, (int64_t)total, &buf, &multi)) < 0)
                return r;
        free(buf);
        if (multi >= max_message)
                return -EMSGSIZE;
        size_t chunk = max_message - multi;
        if (chunk > cap)
                chunk = cap;
        /* Whole elements per frame, so that no value straddles two frames. */
        chunk -= chunk % es;
        if (chunk == 0)
                return -EMSGSIZE;
        *ret_chunk = chunk;
        *ret_multi = true;
        return 0;
}
