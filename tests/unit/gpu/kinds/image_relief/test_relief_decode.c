/* image.relief's images: headers read before any pixel (sizes, formats, EXIF
 * orientation), hostile files refused cheaply with the field named, and the
 * heightfield (luma of sRGB values, alpha over white, 8 and 16 bits, palettes,
 * interlacing, orientation, the area-averaged shrink, invert). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "image_relief/relief_math.h"
#include "relief_test.h"

static int probe(const uint8_t *d, size_t n, struct relief_image_info *info, struct kiln_error *err)
{
        return relief_image_probe(d, n, true, info, err);
}

/* The heightfield of an image with params p. */
static struct relief_grid grid_of(const uint8_t *img, size_t n, const struct relief_params *p)
{
        struct relief_image_info info;
        struct relief_grid g;
        struct kiln_error err;
        if (probe(img, n, &info, &err) < 0)
                fail_msg("probe: %s", err.message);
        assert_int_equal(relief_heightfield(img, n, &info, p, &g, NULL), 0);
        return g;
}

/* A brightness back from a height with the default base 1 and max height 3. */
static double level(const struct relief_grid *g, uint32_t i, uint32_t j)
{
        return (g->h[(size_t)i * g->dims.grid_w + j] - 1.0) / 3.0;
}

static void test_png_header_gives_size_and_format(void **state)
{
        uint16_t px[6 * 4 * 4];
        for (size_t k = 0; k < sizeof(px) / 2; k++)
                px[k] = (uint16_t)(k * 1000);
        uint8_t *img;
        size_t n;
        test_png(6, 4, 6, 16, true, px, NULL, 0, NULL, &img, &n);
        struct relief_image_info info;
        assert_int_equal(probe(img, n, &info, NULL), 0);
        assert_int_equal(info.codec, RELIEF_PNG);
        assert_int_equal(info.width, 6);
        assert_int_equal(info.height, 4);
        assert_int_equal(info.depth, 16);
        assert_int_equal(info.channels, 4);
        assert_true(info.interlaced);
        assert_int_equal(info.orientation, 1);
        free(img);
}

static void test_jpeg_header_gives_size_and_exif_orientation(void **state)
{
        uint8_t px[5 * 3 * 3] = { 0 };
        for (int o = 1; o <= 8; o++) {
                for (int motorola = 0; motorola < 2; motorola++) {
                        uint8_t *img;
                        size_t n;
                        struct relief_image_info info;
                        test_jpeg(5, 3, 3, px, o, motorola, &img, &n);
                        assert_int_equal(probe(img, n, &info, NULL), 0);
                        assert_int_equal(info.codec, RELIEF_JPEG);
                        assert_int_equal(info.width, 5);
                        assert_int_equal(info.height, 3);
                        assert_int_equal(info.channels, 3);
                        assert_int_equal(info.orientation, o);
                        free(img);
                }
        }
}

/* A PNG that claims 20000 x 20000 pixels (400 MP) and has no pixel data: refused
 * as too large from its header alone. */
static void test_huge_claimed_png_is_too_large_before_decoding(void **state)
{
        uint8_t d[8 + 25] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                              0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20, 8, 0, 0, 0, 0 };
        uint32_t crc = (uint32_t)crc32(0, d + 12, 17);
        for (int k = 0; k < 4; k++)
                d[29 + k] = (uint8_t)(crc >> (24 - 8 * k));
        struct relief_image_info info;
        struct kiln_error err;
        assert_int_equal(probe(d, sizeof(d), &info, &err), -EFBIG);
        assert_string_equal(err.field, "inputs.image");
        assert_non_null(strstr(err.message, "megapixels"));
}

static void test_huge_claimed_jpeg_is_too_large_before_decoding(void **state)
{
        /* SOI, SOF0 65535 x 65535, 3 components; nothing else. */
        uint8_t d[] = { 0xff, 0xd8, 0xff, 0xc0, 0, 17, 8, 0xff, 0xff, 0xff, 0xff, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0 };
        struct relief_image_info info;
        struct kiln_error err;
        assert_int_equal(probe(d, sizeof(d), &info, &err), -EFBIG);
        assert_string_equal(err.field, "inputs.image");
}

static void test_truncated_and_damaged_files_are_refused(void **state)
{
        uint8_t px[16 * 16 * 3];
        for (size_t k = 0; k < sizeof(px); k++)
                px[k] = (uint8_t)(k * 7);
        uint8_t *png, *jpg;
        size_t np, nj;
        struct relief_image_info info;
        struct kiln_error err;
        test_png(16, 16, 2, 8, false, px, NULL, 0, NULL, &png, &np);
        test_jpeg(16, 16, 3, px, 0, false, &jpg, &nj);
        assert_int_equal(probe(png, np, &info, NULL), 0);
        assert_int_equal(probe(jpg, nj, &info, NULL), 0);
        /* Every cut of either file is refused, naming the field. */
        for (size_t cut = 0; cut < np; cut++) {
                err.field[0] = '\0';
                assert_int_equal(probe(png, cut, &info, &err), -EINVAL);
                assert_string_equal(err.field, "inputs.image");
        }
        for (size_t cut = 0; cut < nj; cut++) {
                err.field[0] = '\0';
                assert_int_equal(probe(jpg, cut, &info, &err), -EINVAL);
                assert_string_equal(err.field, "inputs.image");
        }
        /* One flipped bit anywhere after the signature fails a PNG's CRC. */
        for (size_t at = 8; at < np; at += 3) {
                png[at] ^= 0x10;
                assert_int_equal(probe(png, np, &info, NULL), -EINVAL);
                png[at] ^= 0x10;
        }
        free(png);
        free(jpg);
}

static void test_random_bytes_and_tiny_inputs_are_refused(void **state)
{
        uint8_t junk[4096];
        uint32_t x = 12345;
        struct relief_image_info info;
        struct kiln_error err;
        for (size_t k = 0; k < sizeof(junk); k++) {
                x = x * 1103515245u + 12345u;
                junk[k] = (uint8_t)(x >> 16);
        }
        assert_int_equal(probe(junk, sizeof(junk), &info, &err), -EINVAL);
        assert_non_null(strstr(err.message, "neither a PNG nor a JPEG"));
        assert_int_equal(probe(junk, 0, &info, NULL), -EINVAL);
        assert_int_equal(probe(NULL, 0, &info, NULL), -EINVAL);
        /* Random bytes behind a valid signature. */
        memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
        assert_int_equal(probe(junk, sizeof(junk), &info, NULL), -EINVAL);
        memcpy(junk, "\xff\xd8\xff", 3);
        assert_int_equal(probe(junk, sizeof(junk), &info, NULL), -EINVAL);
}

static void test_cmyk_and_12_bit_jpeg_are_refused_by_name(void **state)
{
        uint8_t cmyk[] = { 0xff, 0xd8, 0xff, 0xc0, 0, 20, 8, 0, 4, 0, 4, 4, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 4, 0x11, 0 };
        uint8_t twelve[] = { 0xff, 0xd8, 0xff, 0xc0, 0, 11, 12, 0, 4, 0, 4, 1, 1, 0x11, 0 };
        struct relief_image_info info;
        struct kiln_error err;
        assert_int_equal(probe(cmyk, sizeof(cmyk), &info, &err), -EINVAL);
        assert_non_null(strstr(err.message, "CMYK"));
        assert_int_equal(probe(twelve, sizeof(twelve), &info, &err), -EINVAL);
        assert_non_null(strstr(err.message, "12-bit"));
}

/* Rec. 709 luma of the sRGB values: pure red, green, blue, and grey levels. */
static void test_brightness_is_rec709_luma_of_srgb_values(void **state)
{
        uint8_t px[] = { 255, 0, 0, 0, 255, 0, 0, 0, 255, 128, 128, 128, 255, 255, 255, 0, 0, 0 };
        uint8_t *img;
        size_t n;
        struct relief_params p = test_params(RELIEF_STL, 0);
        test_png(6, 1, 2, 8, false, px, NULL, 0, NULL, &img, &n);
        struct relief_grid g = grid_of(img, n, &p);
        assert_int_equal(g.dims.grid_w, 6);
        assert_int_equal(g.dims.grid_h, 2);
        assert_near(level(&g, 0, 0), 0.2126, 1e-12);
        assert_near(level(&g, 0, 1), 0.7152, 1e-12);
        assert_near(level(&g, 0, 2), 0.0722, 1e-12);
        assert_near(level(&g, 0, 3), 128.0 / 255.0, 1e-12);
        assert_true(g.h[4] == 4.0); /* white: exactly base + max height */
        assert_true(g.h[5] == 1.0);
        for (int j = 0; j < 6; j++) /* the one row is doubled */
                assert_true(g.h[j] == g.h[6 + j]);
        free(g.h);
        free(img);
}

static void test_alpha_is_composited_over_white(void **state)
{
        /* Black at alpha 0, 255 and 51 (20 %); grey+alpha 16-bit black at half alpha. */
        uint8_t rgba[] = { 0, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 51 };
        uint16_t ga[] = { 0, 0, 0, 65535, 0, 32768 };
        uint8_t *img;
        size_t n;
        struct relief_params p = test_params(RELIEF_STL, 0);
        test_png(3, 1, 6, 8, false, rgba, NULL, 0, NULL, &img, &n);
        struct relief_grid g = grid_of(img, n, &p);
        assert_near(level(&g, 0, 0), 1.0, 1e-12);
        assert_near(level(&g, 0, 1), 0.0, 1e-12);
        assert_near(level(&g, 0, 2), 0.8, 1e-12);
        free(g.h);
        free(img);
        test_png(3, 1, 4, 16, false, ga, NULL, 0, NULL, &img, &n);
        g = grid_of(img, n, &p);
        assert_near(level(&g, 0, 0), 1.0, 1e-12);
        assert_near(level(&g, 0, 1), 0.0, 1e-12);
        assert_near(level(&g, 0, 2), 1.0 - 32768.0 / 65535.0, 1e-12);
        free(g.h);
        free(img);
}

static void test_sixteen_bit_grey_keeps_its_precision(void **state)
{
        uint16_t px[] = { 0, 1, 32767, 65534, 65535 };
        uint8_t *img;
        size_t n;
        struct relief_params p = test_params(RELIEF_STL, 0);
        test_png(5, 1, 0, 16, false, px, NULL, 0, NULL, &img, &n);
        struct relief_grid g = grid_of(img, n, &p);
        for (int j = 0; j < 5; j++)
                assert_near(level(&g, 0, (uint32_t)j), px[j] / 65535.0, 1e-12);
        assert_true(level(&g, 0, 1) > level(&g, 0, 0)); /* one 16-bit step is seen */
        free(g.h);
        free(img);
}

static void test_palette_with_transparency_and_low_bit_depths(void **state)
{
        uint8_t pal[] = { 0, 0, 0, 255, 255, 255, 255, 0, 0 };
        uint8_t trns[] = { 0, 255, 255 };
        uint8_t idx[] = { 0x06 }; /* 2-bit indices 0, 0, 1, 2 */
        uint8_t *img;
        size_t n;
        struct relief_params p = test_params(RELIEF_STL, 0);
        test_png(4, 1, 3, 2, false, idx, pal, 3, trns, &img, &n);
        struct relief_grid g = grid_of(img, n, &p);
        assert_near(level(&g, 0, 0), 1.0, 1e-12);  /* transparent black: white */
        assert_near(level(&g, 0, 2), 1.0, 1e-12);
        assert_near(level(&g, 0, 3), 0.2126, 1e-12);
        free(g.h);
        free(img);
        uint8_t bits[] = { 0xa0 }; /* 1-bit grey: 1 0 1 0 */
        test_png(4, 1, 0, 1, false, bits, NULL, 0, NULL, &img, &n);
        g = grid_of(img, n, &p);
        assert_near(level(&g, 0, 0), 1.0, 1e-12);
        assert_near(level(&g, 0, 1), 0.0, 1e-12);
        free(g.h);
        free(img);
}

static void test_interlaced_png_gives_the_same_heights(void **state)
{
        uint8_t px[13 * 11];
        for (size_t k = 0; k < sizeof(px); k++)
                px[k] = (uint8_t)(k * 37);
        uint8_t *a, *b;
        size_t na, nb;
        struct relief_params p = test_params(RELIEF_STL, 0);
        test_png(13, 11, 0, 8, false, px, NULL, 0, NULL, &a, &na);
        test_png(13, 11, 0, 8, true, px, NULL, 0, NULL, &b, &nb);
        struct relief_grid ga = grid_of(a, na, &p), gb = grid_of(b, nb, &p);
        assert_memory_equal(ga.h, gb.h, 13 * 11 * sizeof(double));
        free(ga.h);
        free(gb.h);
        free(a);
        free(b);
}

/* A 4 x 2 JPEG whose left column is black, the rest white: each orientation puts
 * the black where it belongs on screen. */
static void test_exif_orientation_turns_the_image_as_shown(void **state)
{
        /* Stored pixel (0, 0) black; where does it show? (column, row) of 8 x 4 blocks. */
        static const int shown[9][2] = { { 0, 0 }, { 0, 0 }, { 1, 0 }, { 1, 1 }, { 0, 1 },
                                         { 0, 0 }, { 1, 0 }, { 1, 1 }, { 0, 1 } };
        uint8_t px[32 * 16];
        for (int y = 0; y < 16; y++)
                for (int x = 0; x < 32; x++)
                        px[y * 32 + x] = x < 16 && y < 8 ? 0 : 255;
        struct relief_params p = test_params(RELIEF_STL, 0);
        for (int o = 1; o <= 8; o++) {
                uint8_t *img;
                size_t n;
                test_jpeg(32, 16, 1, px, o, o % 2, &img, &n);
                struct relief_grid g = grid_of(img, n, &p);
                bool swap = o >= 5;
                assert_int_equal(g.dims.grid_w, swap ? 16 : 32);
                assert_int_equal(g.dims.grid_h, swap ? 32 : 16);
                /* The black quadrant's centre, in the shown image. */
                uint32_t qw = g.dims.grid_w / 2, qh = g.dims.grid_h / 2;
                uint32_t cj = (uint32_t)shown[o][0] * qw + qw / 2, ci = (uint32_t)shown[o][1] * qh + qh / 2;
                if (level(&g, ci, cj) > 0.05)
                        fail_msg("orientation %d: (%u, %u) is %g, not black", o, ci, cj, level(&g, ci, cj));
                if (level(&g, g.dims.grid_h - 1 - ci, g.dims.grid_w - 1 - cj) < 0.95)
                        fail_msg("orientation %d: the opposite quadrant is not white", o);
                free(g.h);
                free(img);
        }
}

/* 5 x 3 grey shrunk to max side 2: each cell the area-weighted mean of what it
 * covers (cells 2.5 x 1.5 source pixels wide). */
static void test_shrink_averages_by_area(void **state)
{
        uint8_t px[15];
        for (int k = 0; k < 15; k++)
                px[k] = (uint8_t)(k * 17);
        uint8_t *img;
        size_t n;
        struct relief_params p = test_params(RELIEF_STL, 0);
        p.max_side_px = 2;
        test_png(5, 3, 0, 8, false, px, NULL, 0, NULL, &img, &n);
        struct relief_grid g = grid_of(img, n, &p);
        assert_int_equal(g.dims.res_w, 2);
        assert_int_equal(g.dims.res_h, 1); /* 3 * 2 / 5 = 1.2, rounded */
        for (int u = 0; u < 2; u++) {
                double sum = 0;
                for (int y = 0; y < 3; y++)
                        for (int x = 0; x < 5; x++) {
                                double lo = fmax(x, 2.5 * u), hi = fmin(x + 1, 2.5 * (u + 1));
                                if (hi > lo)
                                        sum += (hi - lo) * px[y * 5 + x] / 255.0;
                        }
                assert_near(level(&g, 0, (uint32_t)u), sum / 7.5, 1e-12);
        }
        free(g.h);
        free(img);
}

/* The model is width_mm wide and as deep as the image's aspect ratio makes it,
 * whatever the grid: a side of one pixel doubled, or a shrink that rounds. */
static void test_the_depth_follows_the_image_aspect_ratio(void **state)
{
        static const struct { uint32_t w, h; int max_side; double depth; uint32_t grid_w, grid_h; } cases[] = {
                { 2, 1, 256, 50, 2, 2 },             /* landscape: not square */
                { 1, 5, 256, 500, 2, 5 },
                { 7, 1, 256, 100.0 / 7, 7, 2 },
                { 3, 2, 256, 100.0 * 2 / 3, 3, 2 },
                { 9, 6, 2, 100.0 * 6 / 9, 2, 2 },    /* shrunk to 2 x 1 */
                { 157, 103, 3, 100.0 * 103 / 157, 3, 2 },
                { 256, 192, 256, 75, 256, 192 },
        };
        struct relief_params p = test_params(RELIEF_STL, 0);
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
                struct relief_image_info info = { .width = cases[k].w, .height = cases[k].h, .orientation = 1 };
                struct relief_dims d;
                p.max_side_px = cases[k].max_side;
                assert_int_equal(relief_dims_get(&info, &p, &d), 0);
                assert_int_equal(d.grid_w, cases[k].grid_w);
                assert_int_equal(d.grid_h, cases[k].grid_h);
                assert_near(d.width_mm, 100, 1e-9);
                assert_near(d.depth_mm, cases[k].depth, 1e-9);
        }
        /* Rotated by its EXIF orientation: the displayed aspect. */
        struct relief_image_info info = { .width = 2, .height = 1, .orientation = 6 };
        struct relief_dims d;
        p.max_side_px = 256;
        assert_int_equal(relief_dims_get(&info, &p, &d), 0);
        assert_near(d.depth_mm, 200, 1e-9);
}

static void test_small_images_are_never_enlarged_and_invert_flips(void **state)
{
        uint8_t px[] = { 0, 255, 255, 0 };
        uint8_t *img;
        size_t n;
        struct relief_params p = test_params(RELIEF_STL, 0);
        p.invert = true;
        test_png(2, 2, 0, 8, false, px, NULL, 0, NULL, &img, &n);
        struct relief_grid g = grid_of(img, n, &p);
        assert_int_equal(g.dims.grid_w, 2);
        assert_int_equal(g.dims.grid_h, 2);
        assert_true(g.h[0] == 4.0 && g.h[1] == 1.0 && g.h[2] == 1.0 && g.h[3] == 4.0);
        assert_near(g.dims.width_mm, 100, 1e-12);
        assert_near(g.dims.depth_mm, 100, 1e-12);
        free(g.h);
        free(img);
}

/* Hundreds of damaged copies of a PNG and a JPEG (flipped bytes, cuts, spliced
 * junk): each is refused by the check, or decodes, or fails its decode with
 * -EBADMSG; none crashes or reads out of bounds (make test runs this under ASan). */
static void test_mutated_images_are_refused_or_decoded_never_crash(void **state)
{
        uint8_t px[40 * 30 * 3];
        for (size_t k = 0; k < sizeof(px); k++)
                px[k] = (uint8_t)(k * 13 + (k / 120) * 7);
        uint8_t *files[2];
        size_t lens[2];
        test_png(40, 30, 2, 8, true, px, NULL, 0, NULL, &files[0], &lens[0]);
        test_jpeg(40, 30, 3, px, 6, false, &files[1], &lens[1]);
        uint32_t x = 99;
        int refused = 0, decoded = 0, failed = 0;
        struct relief_params p = test_params(RELIEF_STL, 0.05);
        for (int f = 0; f < 2; f++) {
                uint8_t *copy = malloc(lens[f] + 64);
                assert_non_null(copy);
                for (int round = 0; round < 300; round++) {
                        size_t n = lens[f];
                        memcpy(copy, files[f], n);
                        x = x * 1103515245u + 12345u;
                        int what = (int)(x >> 16) % 3, flips = 1 + (int)((x >> 8) % 4);
                        for (int k = 0; k < flips; k++) {
                                x = x * 1103515245u + 12345u;
                                size_t at = (x >> 8) % n;
                                if (what == 0)
                                        copy[at] ^= (uint8_t)(1u << (x % 8));
                                else if (what == 1)
                                        n = at > 2 ? at : n;
                                else
                                        copy[at] = (uint8_t)(x >> 3);
                        }
                        struct kiln_result r = { 0 };
                        struct kiln_error err;
                        int rc = test_run(&p, copy, n, &r, &err);
                        if (rc == -EINVAL || rc == -EFBIG)
                                refused++;
                        else if (rc == -EBADMSG)
                                failed++;
                        else if (rc == 0)
                                decoded++;
                        else
                                fail_msg("file %d round %d: %d", f, round, rc);
                        kiln_result_clear(&r);
                }
                free(copy);
                free(files[f]);
        }
        /* The PNG's CRCs catch every change: most damage is refused at submit. */
        assert_true(refused > 300);
        print_message("%d refused, %d decoded, %d failed to decode\n", refused, decoded, failed);
}

static void test_orientation_maps_are_permutations(void **state)
{
        for (int o = 1; o <= 8; o++) {
                uint32_t w = 5, h = 3, ow = relief_orient_swaps(o) ? h : w, oh = relief_orient_swaps(o) ? w : h;
                bool seen[15] = { false };
                for (uint32_t r = 0; r < h; r++)
                        for (uint32_t c = 0; c < w; c++) {
                                uint32_t x, y;
                                relief_orient(o, w, h, c, r, &x, &y);
                                assert_true(x < ow && y < oh);
                                assert_false(seen[y * ow + x]);
                                seen[y * ow + x] = true;
                        }
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_png_header_gives_size_and_format),
                cmocka_unit_test(test_jpeg_header_gives_size_and_exif_orientation),
                cmocka_unit_test(test_huge_claimed_png_is_too_large_before_decoding),
                cmocka_unit_test(test_huge_claimed_jpeg_is_too_large_before_decoding),
                cmocka_unit_test(test_truncated_and_damaged_files_are_refused),
                cmocka_unit_test(test_random_bytes_and_tiny_inputs_are_refused),
                cmocka_unit_test(test_cmyk_and_12_bit_jpeg_are_refused_by_name),
                cmocka_unit_test(test_brightness_is_rec709_luma_of_srgb_values),
                cmocka_unit_test(test_alpha_is_composited_over_white),
                cmocka_unit_test(test_sixteen_bit_grey_keeps_its_precision),
                cmocka_unit_test(test_palette_with_transparency_and_low_bit_depths),
                cmocka_unit_test(test_interlaced_png_gives_the_same_heights),
                cmocka_unit_test(test_exif_orientation_turns_the_image_as_shown),
                cmocka_unit_test(test_shrink_averages_by_area),
                cmocka_unit_test(test_the_depth_follows_the_image_aspect_ratio),
                cmocka_unit_test(test_small_images_are_never_enlarged_and_invert_flips),
                cmocka_unit_test(test_mutated_images_are_refused_or_decoded_never_crash),
                cmocka_unit_test(test_orientation_maps_are_permutations),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
