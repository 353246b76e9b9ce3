/* JPEG rows through libjpeg-turbo: 8-bit grey or RGB (from YCbCr, or RGB). Its
 * fatal errors come back through longjmp; its warnings about corrupt data (a bad
 * Huffman code, data that ends early) make the decode fail too, rather than hand
 * out grey rows that libjpeg made up. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>
/* After jpeglib.h: which warnings exist depends on its version and configuration. */
#include <jerror.h>

#include "image_relief.h"

struct relief_jpeg {
        struct jpeg_decompress_struct cinfo;
        struct jpeg_error_mgr jerr;
        jmp_buf env;
        bool started, corrupt;
        uint8_t *row;
};

static void on_error(j_common_ptr cinfo)
{
        struct relief_jpeg *d = (struct relief_jpeg *)cinfo;
        longjmp(d->env, 1);
}

static void on_message(j_common_ptr cinfo, int level)
{
        struct relief_jpeg *d = (struct relief_jpeg *)cinfo;
        if (level >= 0)
                return; /* trace messages */
        switch (cinfo->err->msg_code) {
        case JWRN_ARITH_BAD_CODE:
        case JWRN_BOGUS_PROGRESSION:
        case JWRN_EXTRANEOUS_DATA:
        case JWRN_HIT_MARKER:
        case JWRN_HUFF_BAD_CODE:
        case JWRN_JPEG_EOF:
        case JWRN_MUST_RESYNC:
        case JWRN_TOO_MUCH_DATA:
                d->corrupt = true;
                break;
        default:
                break; /* an unknown JFIF revision or Adobe transform: the pixels are fine */
        }
}

static void on_output(j_common_ptr cinfo)
{
        /* Libraries do not print: every message above is turned into a status. */
}

int relief_jpeg_open(const void *data, size_t n, const struct relief_image_info *info, struct relief_jpeg **ret)
{
        struct relief_jpeg *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->row = malloc((size_t)info->width * (size_t)info->channels);
        if (!d->row) {
                free(d);
                return -ENOMEM;
        }
        d->cinfo.err = jpeg_std_error(&d->jerr);
        d->jerr.error_exit = on_error;
        d->jerr.emit_message = on_message;
        d->jerr.output_message = on_output;
        jpeg_create_decompress(&d->cinfo);
        if (setjmp(d->env)) {
                relief_jpeg_free(d);
                return -EBADMSG;
        }
        jpeg_mem_src(&d->cinfo, data, (unsigned long)n);
        jpeg_read_header(&d->cinfo, TRUE);
        d->cinfo.out_color_space = info->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
        jpeg_start_decompress(&d->cinfo);
        d->started = true;
        if (d->cinfo.output_width != info->width || d->cinfo.output_height != info->height ||
            d->cinfo.output_components != info->channels || d->corrupt) {
                relief_jpeg_free(d);
                return -EBADMSG;
        }
        *ret = d;
        return 0;
}

int relief_jpeg_next(struct relief_jpeg *d, const void **ret_row)
{
        if (setjmp(d->env))
                return -EBADMSG;
        if (d->cinfo.output_scanline >= d->cinfo.output_height)
                return -EBADMSG;
        JSAMPROW rows[1] = { d->row };
        if (jpeg_read_scanlines(&d->cinfo, rows, 1) != 1 || d->corrupt)
                return -EBADMSG;
        if (d->cinfo.output_scanline == d->cinfo.output_height) {
                /* Reads up to EOI: damage after the last row shows up here. */
                jpeg_finish_decompress(&d->cinfo);
                d->started = false;
                if (d->corrupt)
                        return -EBADMSG;
        }
        *ret_row = d->row;
        return 0;
}

void relief_jpeg_free(struct relief_jpeg *d)
{
        if (!d)
                return;
        jpeg_destroy_decompress(&d->cinfo);
        free(d->row);
        free(d);
}
