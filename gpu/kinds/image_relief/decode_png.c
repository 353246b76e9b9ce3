/* PNG rows through libspng: every image (grey, palette, RGB, with alpha or tRNS; 1 to
 * 16 bits) decoded to RGBA8, or RGBA16 for 16-bit images. Plain images are decoded
 * one row at a time; Adam7-interlaced ones need the whole image first. */
#include <errno.h>
#include <stdlib.h>

#include <spng.h>

#include "image_relief.h"

/* Ancillary chunks (text, ICC profiles) are not needed: bound what libspng keeps
 * of them, compressed text included, so that none can take much memory. */
#define CHUNK_LIMIT (8u << 20)

struct relief_png {
        spng_ctx *ctx;
        size_t row_bytes;
        uint8_t *buf;        /* one row, or the whole image when interlaced */
        uint32_t height, next;
        bool whole;
};

static int spng_errno(int e)
{
        return e == SPNG_EMEM ? -ENOMEM : -EBADMSG;
}

int relief_png_open(const void *data, size_t n, const struct relief_image_info *info, struct relief_png **ret)
{
        struct relief_png *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        int fmt = info->depth == 16 ? SPNG_FMT_RGBA16 : SPNG_FMT_RGBA8;
        int r = -ENOMEM;
        d->ctx = spng_ctx_new(0);
        if (!d->ctx)
                goto fail;
        d->height = info->height;
        d->whole = info->interlaced;
        d->row_bytes = (size_t)info->width * 4 * (info->depth / 8);
        int e = spng_set_image_limits(d->ctx, info->width, info->height);
        if (!e)
                e = spng_set_chunk_limits(d->ctx, CHUNK_LIMIT, CHUNK_LIMIT);
        if (!e)
                e = spng_set_crc_action(d->ctx, SPNG_CRC_ERROR, SPNG_CRC_DISCARD);
        if (!e)
                e = spng_set_png_buffer(d->ctx, data, n);
        if (e) {
                r = spng_errno(e);
                goto fail;
        }
        size_t bytes = d->whole ? d->row_bytes * info->height : d->row_bytes;
        d->buf = malloc(bytes ? bytes : 1);
        if (!d->buf)
                goto fail;
        if (d->whole)
                e = spng_decode_image(d->ctx, d->buf, bytes, fmt, SPNG_DECODE_TRNS);
        else
                e = spng_decode_image(d->ctx, NULL, 0, fmt, SPNG_DECODE_TRNS | SPNG_DECODE_PROGRESSIVE);
        if (e) {
                r = spng_errno(e);
                goto fail;
        }
        *ret = d;
        return 0;
fail:
        relief_png_free(d);
        return r;
}

int relief_png_next(struct relief_png *d, const void **ret_row)
{
        if (d->next >= d->height)
                return -EBADMSG;
        if (d->whole) {
                *ret_row = d->buf + d->row_bytes * d->next++;
                return 0;
        }
        int e = spng_decode_row(d->ctx, d->buf, d->row_bytes);
        /* The last row answers SPNG_EOI. */
        if (e && !(e == SPNG_EOI && d->next + 1 == d->height))
                return spng_errno(e);
        d->next++;
        *ret_row = d->buf;
        return 0;
}

void relief_png_free(struct relief_png *d)
{
        if (!d)
                return;
        spng_ctx_free(d->ctx);
        free(d->buf);
        free(d);
}
