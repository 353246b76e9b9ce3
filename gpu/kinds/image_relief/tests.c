/* image.relief's parity and benchmark cases (see kind_tests.h): images encoded here
 * with the libraries the kind decodes with (libspng, libjpeg-turbo), covering every
 * branch of the kernels: no shrink and shrink, every kind of orientation swap, 8 and
 * 16 bits with alpha, one-pixel sides, STL and GLB, and the heightfield that comes
 * back for the host to simplify. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RELIEF_NO_PNG
#include <spng.h>
#endif
#ifndef RELIEF_NO_JPEG
#include <jpeglib.h>
#endif

#include "image_relief.h"
#include "kind_tests.h"

/* A case set's storage: n params, inputs and encoded images in one block. */
struct store {
        size_t n;
        struct relief_params *p;
        struct kiln_array *in;
        uint8_t **img;
};

static void release_store(struct kiln_cases *cs)
{
        struct store *st = cs->storage;
        for (size_t k = 0; k < st->n; k++)
                free(st->img[k]);
        free(st);
}

static struct kiln_cases *cases_new(size_t n)
{
        size_t bytes = sizeof(struct store) + n * (sizeof(struct relief_params) + sizeof(struct kiln_array) +
                                                   sizeof(uint8_t *));
        struct kiln_cases *cs = kiln_cases_new(n, bytes);
        if (!cs)
                return NULL;
        struct store *st = cs->storage;
        st->n = n;
        st->p = (struct relief_params *)(st + 1);
        st->in = (struct kiln_array *)(st->p + n);
        st->img = (uint8_t **)(st->in + n);
        cs->release = release_store;
        return cs;
}

/* A smooth test picture with a hard edge, in [0, 1]; `phase` shifts it. */
static double picture(double x, double y, double phase)
{
        double r = hypot(x - 0.45 - phase, y - 0.5);
        double v = 0.5 + 0.35 * cos(7.0 * r) * exp(-2.0 * r) + 0.1 * x;
        return r < 0.12 ? 0.97 : v < 0 ? 0 : v > 1 ? 1 : v;
}

/* A PNG of w x h pixels: colour type 0 (grey), 2 (RGB) or 6 (RGBA), 8 or 16 bits. */
static int make_png(uint32_t w, uint32_t h, int colour, int depth, double phase, uint8_t **ret, size_t *ret_len)
{
#ifdef RELIEF_NO_PNG
        return -ENOTSUP;
#else
        int ch = colour == 0 ? 1 : colour == 2 ? 3 : 4, bytes = depth / 8;
        size_t n = (size_t)w * h * ch * bytes;
        uint8_t *px = malloc(n ? n : 1);
        if (!px)
                return -ENOMEM;
        for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++)
                        for (int c = 0; c < ch; c++) {
                                double v = picture((double)x / w, (double)y / h, phase + 0.03 * c);
                                if (c == 3)
                                        v = 0.3 + 0.7 * (double)x / w; /* alpha */
                                size_t at = (((size_t)y * w + x) * ch + c) * bytes;
                                if (depth == 16) {
                                        uint16_t s = (uint16_t)lround(v * 65535);
                                        memcpy(px + at, &s, 2);
                                } else {
                                        px[at] = (uint8_t)lround(v * 255);
                                }
                        }
        spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
        struct spng_ihdr ihdr = { .width = w, .height = h, .bit_depth = (uint8_t)depth, .color_type = (uint8_t)colour };
        int e = ctx ? spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1) : SPNG_EMEM;
        if (!e)
                e = spng_set_ihdr(ctx, &ihdr);
        if (!e)
                e = spng_encode_image(ctx, px, n, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
        if (!e)
                *ret = spng_get_png_buffer(ctx, ret_len, &e);
        spng_ctx_free(ctx);
        free(px);
        return e ? -ENOMEM : 0;
#endif
}

/* An RGB JPEG (quality 95) with an EXIF orientation tag. */
static int make_jpeg(uint32_t w, uint32_t h, int orientation, double phase, uint8_t **ret, size_t *ret_len)
{
#ifdef RELIEF_NO_JPEG
        return -ENOTSUP;
#else
        struct jpeg_compress_struct c;
        struct jpeg_error_mgr jerr;
        unsigned char *buf = NULL;
        unsigned long n = 0;
        uint8_t *row = malloc((size_t)w * 3);
        if (!row)
                return -ENOMEM;
        c.err = jpeg_std_error(&jerr);
        jpeg_create_compress(&c);
        jpeg_mem_dest(&c, &buf, &n);
        c.image_width = w;
        c.image_height = h;
        c.input_components = 3;
        c.in_color_space = JCS_RGB;
        jpeg_set_defaults(&c);
        jpeg_set_quality(&c, 95, TRUE);
        jpeg_start_compress(&c, TRUE);
        uint8_t exif[] = { 'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0,
                           0x12, 0x01, 3, 0, 1, 0, 0, 0, (uint8_t)orientation, 0, 0, 0, 0, 0, 0, 0 };
        jpeg_write_marker(&c, JPEG_APP0 + 1, exif, sizeof(exif));
        while (c.next_scanline < h) {
                for (uint32_t x = 0; x < w; x++)
                        for (int k = 0; k < 3; k++)
                                row[3 * x + k] = (uint8_t)lround(
                                        255 * picture((double)x / w, (double)c.next_scanline / h, phase + 0.05 * k));
                JSAMPROW r = row;
                jpeg_write_scanlines(&c, &r, 1);
        }
        jpeg_finish_compress(&c);
        jpeg_destroy_compress(&c);
        free(row);
        *ret = buf;
        *ret_len = n;
        return 0;
#endif
}

static struct relief_params params(int format, int max_side, double tol, bool invert)
{
        return (struct relief_params){ .width_mm = 80, .base_mm = 0.8, .max_height_mm = 2.5, .invert = invert,
                                       .max_side_px = max_side, .tolerance_mm = tol, .format = format };
}

/* Case k: image img (taken over) with params p. */
static int put(struct kiln_cases *cs, size_t k, uint8_t *img, size_t n, struct relief_params p, const char *what)
{
        struct store *st = cs->storage;
        uint64_t shape[1] = { n };
        st->img[k] = img;
        st->p[k] = p;
        int r = kiln_array_init(&st->in[k], "image", KILN_DTYPE_BYTES, 1, shape, img, n, NULL);
        if (r < 0)
                return r;
        struct kiln_case *c = &cs->cases[k];
        snprintf(c->label, sizeof(c->label), "%s, %s%s", what, p.format == RELIEF_STL ? "stl" : "glb",
                 p.tolerance_mm > 0 ? ", simplified" : "");
        c->params = &st->p[k];
        c->inputs = &st->in[k];
        c->n_inputs = 1;
        struct relief_image_info info;
        struct relief_dims d;
        if (relief_image_probe(img, n, false, &info, NULL) < 0 || relief_dims_get(&info, &p, &d) < 0)
                return -EINVAL;
        c->work = (uint64_t)info.width * info.height;
        return 0;
}

static int parity(struct kiln_cases **ret)
{
        struct kiln_cases *cs = cases_new(8);
        if (!cs)
                return -ENOMEM;
        struct {
                int png_colour, depth, orientation; /* png_colour < 0: a JPEG */
                uint32_t w, h;
                struct relief_params p;
                const char *what;
        } spec[8] = {
                { 0, 8, 1, 37, 23, params(RELIEF_STL, 256, 0, false), "grey 37x23" },
                { 6, 16, 1, 64, 48, params(RELIEF_GLB, 20, 0, true), "RGBA16 64x48 shrunk to 20, inverted" },
                { -1, 8, 6, 40, 24, params(RELIEF_STL, 17, 0, false), "JPEG 40x24 turned (6), shrunk to 17" },
                { -1, 8, 3, 33, 21, params(RELIEF_GLB, 256, 0, false), "JPEG 33x21 turned (3)" },
                { -1, 8, 7, 30, 50, params(RELIEF_GLB, 23, 0, false), "JPEG 30x50 transverse (7), shrunk to 23" },
                { 0, 8, 1, 1, 1, params(RELIEF_STL, 256, 0, false), "grey 1x1" },
                { 2, 8, 1, 300, 1, params(RELIEF_GLB, 256, 0, false), "RGB 300x1 shrunk to 256x1" },
                { 0, 16, 1, 96, 80, params(RELIEF_STL, 256, 0.02, false), "grey16 96x80" },
        };
        int r = 0;
        for (size_t k = 0; k < 8 && r >= 0; k++) {
                uint8_t *img = NULL;
                size_t n = 0;
                r = spec[k].png_colour >= 0
                            ? make_png(spec[k].w, spec[k].h, spec[k].png_colour, spec[k].depth, 0.01 * (double)k, &img, &n)
                            : make_jpeg(spec[k].w, spec[k].h, spec[k].orientation, 0.01 * (double)k, &img, &n);
                if (r >= 0)
                        r = put(cs, k, img, n, spec[k].p, spec[k].what);
                else
                        free(img);
        }
        if (r < 0) {
                kiln_cases_free(cs);
                return r;
        }
        *ret = cs;
        return 0;
}

/* Grey PNGs of 64 << size pixels a side (up to 4096), tolerance 0, STL. */
static int bench(unsigned size, size_t n, struct kiln_cases **ret)
{
        if (size > 6)
                return -ERANGE;
        struct kiln_cases *cs = cases_new(n);
        if (!cs)
                return -ENOMEM;
        uint32_t side = 64u << size;
        int r = 0;
        for (size_t k = 0; k < n && r >= 0; k++) {
                uint8_t *img = NULL;
                size_t len = 0;
                r = make_png(side, side, 0, 8, 1e-4 * (double)k, &img, &len);
                if (r >= 0)
                        r = put(cs, k, img, len, params(RELIEF_STL, (int)side, 0, false), "grey");
        }
        if (r < 0) {
                kiln_cases_free(cs);
                return r;
        }
        *ret = cs;
        return 0;
}

const struct kiln_kind_tests kiln_kind_tests_image_relief = {
        .kind = &kiln_kind_image_relief,
        .parity = parity,
        .bench = bench,
        .work_unit = "pixels",
};
