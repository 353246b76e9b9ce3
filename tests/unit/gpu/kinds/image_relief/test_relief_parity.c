/* image.relief's CUDA path, checked without a GPU: the kernels are one call per
 * grid point (relief_point_height), per triangle (relief_full_tri, relief_full_vertex,
 * relief_stl_record) and per GLB vertex, all in relief_math.h. Run here over every
 * point and triangle of the kind's own parity cases (tests.c), in the kernels'
 * order, they must give the CPU path's heights and files byte for byte: that is
 * the parity test_backend_ops asks of a GPU, by construction. The device itself is
 * checked by tests/gpu/test_backend_ops where one is present. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "image_relief/relief_math.h"
#include "kind_tests.h"
#include "relief_test.h"

extern const struct kiln_kind_tests kiln_kind_tests_image_relief;

/* Every decoded row of the image, in file order (what prepare sends the device). */
static uint8_t *decode_all(const struct kiln_array *img, const struct relief_image_info *info)
{
        size_t row = (size_t)info->width * (size_t)info->channels * (size_t)(info->depth / 8);
        uint8_t *px = malloc(row * info->height);
        struct relief_rows *rows;
        assert_non_null(px);
        assert_int_equal(relief_rows_open(img->data, img->bytes, info, &rows), 0);
        for (uint32_t y = 0; y < info->height; y++) {
                const void *p;
                assert_int_equal(relief_rows_next(rows, &p), 0);
                memcpy(px + y * row, p, row);
        }
        relief_rows_free(rows);
        return px;
}

static struct relief_spec spec_of(const struct relief_dims *d, const struct relief_image_info *info,
                                  const struct relief_params *p)
{
        return (struct relief_spec){ .src_w = d->src_w, .src_h = d->src_h, .ori_w = d->ori_w, .ori_h = d->ori_h,
                                     .res_w = d->res_w, .res_h = d->res_h, .grid_w = d->grid_w, .grid_h = d->grid_h,
                                     .orientation = d->orientation, .channels = info->channels, .depth = info->depth,
                                     .invert = p->invert, .pitch_x = d->pitch_x_mm, .pitch_y = d->pitch_y_mm,
                                     .base = p->base_mm, .max_h = p->max_height_mm };
}

/* The kernels' output for a full grid: the STL, or the GLB built around the
 * kernels' binary chunk as complete() does. */
static uint8_t *kernel_mesh(const struct relief_spec *s, const double *h, int format, size_t *ret_len)
{
        uint32_t gw = s->grid_w, gh = s->grid_h, ring = relief_ring_len(gw, gh);
        uint64_t nt = 2ull * (gw - 1) * (gh - 1) + 3ull * ring, nv = (uint64_t)gw * gh + ring + 1;
        if (format == RELIEF_STL) {
                uint8_t *out = malloc(84 + 50 * nt);
                assert_non_null(out);
                memset(out, ' ', 80);
                memcpy(out, RELIEF_STL_HEADER, sizeof(RELIEF_STL_HEADER) - 1);
                uint32_t n32 = (uint32_t)nt;
                memcpy(out + 80, &n32, 4);
                for (uint64_t k = 0; k < nt; k++) {
                        uint32_t v[3];
                        float p[3][3];
                        relief_full_tri(k, gw, gh, v);
                        for (int c = 0; c < 3; c++)
                                relief_full_vertex(v[c], gw, gh, h, s->pitch_x, s->pitch_y, p[c]);
                        relief_stl_record(p[0], p[1], p[2], out + 84 + 50 * k);
                }
                *ret_len = 84 + 50 * nt;
                return out;
        }
        uint8_t *bin = malloc(12 * nv + 12 * nt);
        assert_non_null(bin);
        float min[3], max[3];
        for (uint64_t k = 0; k < nv; k++) {
                float mm[3], g[3];
                relief_full_vertex(k, gw, gh, h, s->pitch_x, s->pitch_y, mm);
                relief_to_gltf(mm, g);
                memcpy(bin + 12 * k, g, 12);
                for (int c = 0; c < 3; c++) {
                        min[c] = k == 0 || g[c] < min[c] ? g[c] : min[c];
                        max[c] = k == 0 || g[c] > max[c] ? g[c] : max[c];
                }
        }
        for (uint64_t k = 0; k < nt; k++)
                relief_full_tri(k, gw, gh, (uint32_t *)(bin + 12 * nv) + 3 * k);
        uint8_t *out = malloc(28 + RELIEF_GLB_JSON_MAX + 12 * nv + 12 * nt);
        assert_non_null(out);
        int hl = relief_glb_head(nv, nt, min, max, out);
        assert_true(hl > 0);
        memcpy(out + hl, bin, 12 * nv + 12 * nt);
        free(bin);
        *ret_len = (size_t)hl + 12 * nv + 12 * nt;
        return out;
}

static void test_the_kernels_functions_give_the_cpu_bytes(void **state)
{
        struct kiln_cases *cs = NULL;
        assert_int_equal(kiln_kind_tests_image_relief.parity(&cs), 0);
        assert_true(cs->n >= 8);
        for (size_t k = 0; k < cs->n; k++) {
                const struct kiln_case *c = &cs->cases[k];
                const struct relief_params *p = c->params;
                struct relief_image_info info;
                struct relief_grid g;
                struct kiln_result want = { 0 };
                struct kiln_error err;
                if (test_run(p, c->inputs[0].data, c->inputs[0].bytes, &want, &err) < 0)
                        fail_msg("case %s: %s", c->label, err.message);
                assert_int_equal(relief_image_probe(c->inputs[0].data, c->inputs[0].bytes, false, &info, NULL), 0);
                assert_int_equal(relief_heightfield(c->inputs[0].data, c->inputs[0].bytes, &info, p, &g, NULL), 0);

                /* The heights: every grid point on its own, as the kernel computes them. */
                uint8_t *px = decode_all(&c->inputs[0], &info);
                struct relief_spec s = spec_of(&g.dims, &info, p);
                uint64_t cells = (uint64_t)g.dims.grid_w * g.dims.grid_h;
                double *h = malloc(cells * sizeof(double));
                assert_non_null(h);
                for (uint64_t i = 0; i < cells; i++)
                        h[i] = relief_point_height(&s, px, i);
                if (memcmp(h, g.h, cells * sizeof(double)))
                        fail_msg("case %s: the kernel's heights differ from the CPU's", c->label);

                const struct kiln_part *mesh = kiln_result_find_part(&want, "mesh");
                struct kiln_result got = { 0 };
                uint8_t *bytes;
                size_t n;
                if (p->tolerance_mm > 0) {
                        /* The heights come back and the host simplifies them. */
                        struct relief_grid back = { .dims = g.dims, .h = h };
                        struct relief_mesh m;
                        assert_int_equal(relief_simplify(&back, p->tolerance_mm, &m, NULL), 0);
                        assert_int_equal(relief_result_add(&m, p, &got, NULL), 0);
                        relief_mesh_release(&m);
                        bytes = NULL;
                        n = kiln_result_find_part(&got, "mesh")->bytes;
                        assert_int_equal(n, mesh->bytes);
                        assert_memory_equal(kiln_result_find_part(&got, "mesh")->data, mesh->data, n);
                } else {
                        bytes = kernel_mesh(&s, h, p->format, &n);
                        assert_int_equal(n, mesh->bytes);
                        if (memcmp(bytes, mesh->data, n))
                                fail_msg("case %s: the kernels' %s differs from the CPU's", c->label,
                                         p->format == RELIEF_STL ? "STL" : "GLB");
                }
                free(bytes);
                kiln_result_clear(&got);
                kiln_result_clear(&want);
                free(h);
                free(px);
                free(g.h);
        }
        kiln_cases_free(cs);
}

/* The inverse orientation the kernel uses to find a shown point's stored pixel. */
static void test_unorient_inverts_orient(void **state)
{
        for (int o = 1; o <= 8; o++)
                for (uint32_t r = 0; r < 4; r++)
                        for (uint32_t c = 0; c < 7; c++) {
                                uint32_t x, y, c2, r2;
                                relief_orient(o, 7, 4, c, r, &x, &y);
                                relief_unorient(o, 7, 4, x, y, &c2, &r2);
                                assert_int_equal(c2, c);
                                assert_int_equal(r2, r);
                        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_the_kernels_functions_give_the_cpu_bytes),
                cmocka_unit_test(test_unorient_inverts_orient),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
