/* Test images, a descriptor run and an independent mesh checker for image.relief's
 * unit tests (relief_test.h). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jpeglib.h>
#include <spng.h>

#include "relief_test.h"

void test_near(double a, double b, double eps, const char *what, const char *file, int line)
{
        if (!(fabs(a - b) <= eps)) {
                print_error("%s is %.17g, not %.17g (within %g)\n", what, a, b, eps);
                _fail(file, line);
        }
}

void test_png(uint32_t w, uint32_t h, int colour, int depth, bool interlace, const void *pixels,
              const uint8_t *palette, int n_palette, const uint8_t *trns, uint8_t **ret, size_t *ret_len)
{
        static const int channels[] = { 1, 0, 3, 1, 2, 0, 4 };
        spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
        assert_non_null(ctx);
        assert_int_equal(spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1), 0);
        struct spng_ihdr ihdr = { .width = w, .height = h, .bit_depth = (uint8_t)depth, .color_type = (uint8_t)colour,
                                  .interlace_method = interlace ? 1 : 0 };
        assert_int_equal(spng_set_ihdr(ctx, &ihdr), 0);
        if (palette) {
                struct spng_plte plte = { .n_entries = (uint32_t)n_palette };
                for (int k = 0; k < n_palette; k++)
                        plte.entries[k] = (struct spng_plte_entry){ palette[3 * k], palette[3 * k + 1],
                                                                    palette[3 * k + 2], 255 };
                assert_int_equal(spng_set_plte(ctx, &plte), 0);
                if (trns) {
                        struct spng_trns t = { .n_type3_entries = (uint32_t)n_palette };
                        memcpy(t.type3_alpha, trns, (size_t)n_palette);
                        assert_int_equal(spng_set_trns(ctx, &t), 0);
                }
        }
        size_t bits = (size_t)w * (size_t)channels[colour] * (size_t)depth;
        size_t len = (bits + 7) / 8 * h;
        int e = spng_encode_image(ctx, pixels, len, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
        if (e)
                fail_msg("spng_encode_image: %s", spng_strerror(e));
        *ret = spng_get_png_buffer(ctx, ret_len, &e);
        assert_non_null(*ret);
        spng_ctx_free(ctx);
}

void test_jpeg(uint32_t w, uint32_t h, int comps, const uint8_t *pixels, int orientation, bool motorola,
               uint8_t **ret, size_t *ret_len)
{
        struct jpeg_compress_struct c;
        struct jpeg_error_mgr jerr;
        unsigned char *buf = NULL;
        unsigned long n = 0;

        c.err = jpeg_std_error(&jerr);
        jpeg_create_compress(&c);
        jpeg_mem_dest(&c, &buf, &n);
        c.image_width = w;
        c.image_height = h;
        c.input_components = comps;
        c.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
        jpeg_set_defaults(&c);
        jpeg_set_quality(&c, 100, TRUE);
        for (int k = 0; k < c.num_components; k++)
                c.comp_info[k].h_samp_factor = c.comp_info[k].v_samp_factor = 1;
        jpeg_start_compress(&c, TRUE);
        if (orientation > 0) {
                /* Exif\0\0, a TIFF header, IFD0 with the one tag 0x0112 SHORT = o. */
                uint8_t le[] = { 'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0,
                                 0x12, 0x01, 3, 0, 1, 0, 0, 0, (uint8_t)orientation, 0, 0, 0, 0, 0, 0, 0 };
                uint8_t be[] = { 'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1,
                                 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (uint8_t)orientation, 0, 0, 0, 0, 0, 0 };
                jpeg_write_marker(&c, JPEG_APP0 + 1, motorola ? be : le, sizeof(le));
        }
        while (c.next_scanline < h) {
                JSAMPROW row = (JSAMPROW)(pixels + (size_t)c.next_scanline * w * (size_t)comps);
                jpeg_write_scanlines(&c, &row, 1);
        }
        jpeg_finish_compress(&c);
        jpeg_destroy_compress(&c);
        *ret = buf;
        *ret_len = n;
}

int test_run(const struct relief_params *p, const uint8_t *img, size_t n, struct kiln_result *ret,
             struct kiln_error *err)
{
        struct kiln_error local;
        struct kiln_array a;
        uint64_t shape[1] = { n };
        err = err ? err : &local;
        kiln_result_clear(ret);
        int r = kiln_array_init(&a, "image", KILN_DTYPE_BYTES, 1, shape, img, n, err);
        if (r >= 0)
                r = kiln_kind_check(&kiln_kind_image_relief, p, &a, 1, NULL, err);
        if (r < 0)
                return r;
        struct kiln_task t = { .params = p, .inputs = &a, .n_inputs = 1, .result = ret };
        return kiln_kind_image_relief.run_cpu(&t);
}

struct relief_params test_params(int format, double tolerance_mm)
{
        return (struct relief_params){ .width_mm = 100, .base_mm = 1, .max_height_mm = 3, .invert = false,
                                       .max_side_px = 256, .tolerance_mm = tolerance_mm, .format = format };
}

/* ---- the checker ---- */

struct corner {
        float p[3];
        uint32_t at;       /* 3 * triangle + k */
};

static int cmp_corner(const void *a, const void *b)
{
        const struct corner *x = a, *y = b;
        for (int k = 0; k < 3; k++)
                if (x->p[k] != y->p[k])
                        return x->p[k] < y->p[k] ? -1 : 1;
        return 0;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* The common part: corners (3 per triangle, positions in mm) and, for STL, the
 * stored normals. */
static void check_corners(struct corner *c, uint64_t nt, const float *normals, struct mesh_report *ret)
{
        uint32_t *id = malloc(3 * nt * sizeof(uint32_t));
        uint64_t *edges = malloc(3 * nt * sizeof(uint64_t));
        assert_true(id && edges);
        float (*pos)[3] = malloc(3 * nt * sizeof(*pos));
        assert_non_null(pos);
        for (uint64_t k = 0; k < 3 * nt; k++)
                memcpy(pos[k], c[k].p, sizeof(pos[k]));
        qsort(c, 3 * nt, sizeof(*c), cmp_corner);
        uint32_t nv = 0;
        for (uint64_t k = 0; k < 3 * nt; k++) {
                if (k && cmp_corner(&c[k - 1], &c[k]))
                        nv++;
                id[c[k].at] = nv;
        }
        nv++;
        double vol = 0;
        for (int k = 0; k < 3; k++) {
                ret->min[k] = INFINITY;
                ret->max[k] = -INFINITY;
        }
        for (uint64_t t = 0; t < nt; t++) {
                uint32_t a = id[3 * t], b = id[3 * t + 1], d = id[3 * t + 2];
                if (a == b || b == d || a == d)
                        fail_msg("triangle %llu repeats a vertex", (unsigned long long)t);
                double p[3][3], u[3], v[3], n[3];
                for (int k = 0; k < 3; k++)
                        for (int q = 0; q < 3; q++) {
                                p[k][q] = pos[3 * t + k][q];
                                ret->min[q] = fmin(ret->min[q], p[k][q]);
                                ret->max[q] = fmax(ret->max[q], p[k][q]);
                        }
                for (int q = 0; q < 3; q++) {
                        u[q] = p[1][q] - p[0][q];
                        v[q] = p[2][q] - p[0][q];
                }
                n[0] = u[1] * v[2] - u[2] * v[1];
                n[1] = u[2] * v[0] - u[0] * v[2];
                n[2] = u[0] * v[1] - u[1] * v[0];
                double area2 = sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
                if (!(area2 > 0))
                        fail_msg("triangle %llu has zero area", (unsigned long long)t);
                if (normals) {
                        const float *sn = normals + 3 * t;
                        double dot = (sn[0] * n[0] + sn[1] * n[1] + sn[2] * n[2]) / area2;
                        if (!(dot > 0.999))
                                fail_msg("triangle %llu: its normal does not match its vertices (cos %g)",
                                         (unsigned long long)t, dot);
                }
                vol += p[0][0] * (p[1][1] * p[2][2] - p[1][2] * p[2][1]) +
                       p[0][1] * (p[1][2] * p[2][0] - p[1][0] * p[2][2]) +
                       p[0][2] * (p[1][0] * p[2][1] - p[1][1] * p[2][0]);
                edges[3 * t] = (uint64_t)a << 32 | b;
                edges[3 * t + 1] = (uint64_t)b << 32 | d;
                edges[3 * t + 2] = (uint64_t)d << 32 | a;
        }
        qsort(edges, 3 * nt, sizeof(uint64_t), cmp_u64);
        for (uint64_t k = 0; k < 3 * nt; k++) {
                if (k && edges[k] == edges[k - 1])
                        fail_msg("edge %u -> %u is used twice in the same direction", (unsigned)(edges[k] >> 32),
                                 (unsigned)edges[k]);
                uint64_t rev = edges[k] << 32 | edges[k] >> 32;
                if (!bsearch(&rev, edges, 3 * nt, sizeof(uint64_t), cmp_u64))
                        fail_msg("edge %u -> %u has no opposite: the mesh is open there", (unsigned)(edges[k] >> 32),
                                 (unsigned)edges[k]);
        }
        ret->triangles = nt;
        ret->vertices = nv;
        ret->edges = 3 * nt / 2;
        ret->volume = vol / 6.0;
        if ((int64_t)nv - (int64_t)ret->edges + (int64_t)nt != 2)
                fail_msg("V - E + F = %lld, not 2", (long long)nv - (long long)ret->edges + (long long)nt);
        if (!(ret->volume > 0))
                fail_msg("the volume is %g: the triangles face inwards", ret->volume);
        free(id);
        free(edges);
        free(pos);
}

static void check_stl(const uint8_t *d, size_t n, struct mesh_report *ret)
{
        uint32_t nt;
        assert_true(n >= 84);
        assert_true(memcmp(d, "solid", 5) != 0);
        memcpy(&nt, d + 80, 4);
        assert_int_equal(n, 84 + 50 * (uint64_t)nt);
        struct corner *c = malloc(3 * (size_t)nt * sizeof(*c));
        float *normals = malloc(3 * (size_t)nt * sizeof(float));
        assert_true(c && normals);
        for (uint32_t t = 0; t < nt; t++) {
                const uint8_t *r = d + 84 + 50 * (size_t)t;
                memcpy(normals + 3 * t, r, 12);
                for (int k = 0; k < 3; k++) {
                        memcpy(c[3 * t + k].p, r + 12 + 12 * k, 12);
                        c[3 * t + k].at = 3 * t + (uint32_t)k;
                }
        }
        check_corners(c, nt, normals, ret);
        free(c);
        free(normals);
}

static uint32_t le32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
}

/* The numbers of the JSON array after `key` (e.g. "\"min\":["). */
static void json_floats(const char *json, const char *key, float ret[3])
{
        const char *s = strstr(json, key);
        if (!s)
                fail_msg("the GLB's JSON has no %s", key);
        s += strlen(key);
        for (int k = 0; k < 3; k++) {
                char *end;
                ret[k] = strtof(s, &end);
                assert_true(end != s);
                s = end + 1;
        }
}

static void check_glb(const uint8_t *d, size_t n, struct mesh_report *ret)
{
        assert_true(n >= 28);
        assert_memory_equal(d, "glTF", 4);
        assert_int_equal(le32(d + 4), 2);
        assert_int_equal(le32(d + 8), n);
        uint32_t jl = le32(d + 12);
        assert_memory_equal(d + 16, "JSON", 4);
        assert_int_equal(jl % 4, 0);
        assert_true(20 + (uint64_t)jl + 8 <= n);
        char *json = strndup((const char *)d + 20, jl);
        const uint8_t *bin = d + 20 + jl;
        uint32_t bl = le32(bin);
        assert_memory_equal(bin + 4, "BIN\0", 4);
        assert_int_equal(bl % 4, 0);
        assert_int_equal(20 + (uint64_t)jl + 8 + bl, n);
        const char *s = strstr(json, "\"count\":");
        assert_non_null(s);
        uint64_t nv = strtoull(s + 8, NULL, 10);
        s = strstr(s + 8, "\"count\":");
        assert_non_null(s);
        uint64_t ni = strtoull(s + 8, NULL, 10);
        assert_int_equal(ni % 3, 0);
        assert_true(strstr(json, "\"componentType\":5125") != NULL); /* uint32 indices */
        assert_int_equal(bl, 12 * nv + 4 * ni);
        float jmin[3], jmax[3], min[3], max[3];
        json_floats(json, "\"min\":[", jmin);
        json_floats(json, "\"max\":[", jmax);
        const uint8_t *pos = bin + 8, *idx = pos + 12 * nv;
        struct corner *c = malloc(ni * sizeof(*c));
        assert_non_null(c);
        for (uint64_t v = 0; v < nv; v++)
                for (int k = 0; k < 3; k++) {
                        float f;
                        memcpy(&f, pos + 12 * v + 4 * (uint64_t)k, 4);
                        min[k] = v == 0 || f < min[k] ? f : min[k];
                        max[k] = v == 0 || f > max[k] ? f : max[k];
                }
        for (int k = 0; k < 3; k++) {
                assert_true(jmin[k] == min[k]);
                assert_true(jmax[k] == max[k]);
        }
        for (uint64_t k = 0; k < ni; k++) {
                uint32_t v = le32(idx + 4 * k);
                assert_true(v < nv);
                float g[3];
                memcpy(g, pos + 12 * (uint64_t)v, 12);
                /* glTF (metres, +y up) back to the relief's mm with +z up. */
                c[k].p[0] = (float)(g[0] * 1000.0);
                c[k].p[1] = (float)(-g[2] * 1000.0);
                c[k].p[2] = (float)(g[1] * 1000.0);
                c[k].at = (uint32_t)k;
        }
        check_corners(c, ni / 3, NULL, ret);
        assert_int_equal(ret->vertices, nv);
        free(c);
        free(json);
}

void check_mesh(const uint8_t *data, size_t n, int format, struct mesh_report *ret)
{
        memset(ret, 0, sizeof(*ret));
        if (format == RELIEF_STL)
                check_stl(data, n, ret);
        else
                check_glb(data, n, ret);
}
