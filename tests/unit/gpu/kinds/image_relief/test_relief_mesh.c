/* image.relief's meshes: closed and manifold (checked edge by edge by relief_test.c,
 * not by the writer), the right counts, the image read the right way round from
 * above, the volume equal to the heightfield's, GLB's structure, 1 x 1 and 1 x N
 * images, and the simplification: every pixel within the tolerance, far fewer
 * triangles on smooth images, the walls on the simplified boundary. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "relief_test.h"

static int64_t int_value(const struct kiln_result *r, const char *name)
{
        const struct kiln_value *v = kiln_result_find(r, name);
        if (!v || v->type != KILN_V_INT)
                fail_msg("no integer %s", name);
        return v->i;
}

static double num_value(const struct kiln_result *r, const char *name)
{
        const struct kiln_value *v = kiln_result_find(r, name);
        if (!v || v->type != KILN_V_NUM)
                fail_msg("no number %s", name);
        return v->num;
}

/* A w x h 8-bit grey image from a function of (x, y) in [0, 1). */
static void grey_png(uint32_t w, uint32_t h, double (*f)(double, double), uint8_t **ret, size_t *ret_len)
{
        uint8_t *px = malloc((size_t)w * h);
        assert_non_null(px);
        for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++)
                        px[(size_t)y * w + x] = (uint8_t)lround(255.0 * f((double)x / w, (double)y / h));
        test_png(w, h, 0, 8, false, px, NULL, 0, NULL, ret, ret_len);
        free(px);
}

static double smooth(double x, double y)
{
        double r = hypot(x - 0.4, y - 0.55);
        return 0.5 + 0.3 * cos(6.0 * r) * exp(-2.0 * r) + 0.15 * x;
}

static double noise(double x, double y)
{
        uint32_t k = (uint32_t)(x * 7919.0 * 1000.0) * 2654435761u ^ (uint32_t)(y * 104729.0 * 1000.0);
        k ^= k >> 13;
        k *= 0x5bd1e995u;
        return (double)((k >> 8) & 0xff) / 255.0;
}

static double ramp(double x, double y)
{
        return x;
}

/* Runs the kind and checks its file; returns the checker's report. */
static struct mesh_report run_checked(const struct relief_params *p, const uint8_t *img, size_t n,
                                      struct kiln_result *r)
{
        struct kiln_error err;
        struct mesh_report rep;
        if (test_run(p, img, n, r, &err) < 0)
                fail_msg("run: %s %s", err.field, err.message);
        const struct kiln_part *mesh = kiln_result_find_part(r, "mesh");
        assert_non_null(mesh);
        assert_int_equal(mesh->dtype, KILN_DTYPE_BYTES);
        check_mesh(mesh->data, mesh->bytes, p->format, &rep);
        assert_int_equal(int_value(r, "triangles"), rep.triangles);
        assert_int_equal(int_value(r, "vertices"), rep.vertices);
        /* The checker reads GLB positions back into mm as floats: 1e-7 apart. */
        assert_near(num_value(r, "volume_mm3"), rep.volume, (p->format == RELIEF_STL ? 1e-9 : 1e-6) * rep.volume);
        return rep;
}

/* The volume of the full-grid surface over z = 0, from the heights alone: each
 * cell's two triangles (a, c, d) and (a, d, b) are prisms of area px * py / 2. */
static double heightfield_volume(const struct relief_grid *g)
{
        uint32_t w = g->dims.grid_w, h = g->dims.grid_h;
        double px = g->dims.pitch_x_mm, py = g->dims.pitch_y_mm, sum = 0;
        for (uint32_t i = 0; i + 1 < h; i++)
                for (uint32_t j = 0; j + 1 < w; j++) {
                        const double *a = g->h + (size_t)i * w + j, *c = a + w;
                        sum += (a[0] + c[0] + c[1]) / 3 + (a[0] + c[1] + a[1]) / 3;
                }
        return sum * px * py / 2;
}

static void test_full_grid_is_closed_with_the_counts_it_should_have(void **state)
{
        uint8_t *img;
        size_t n;
        grey_png(37, 23, smooth, &img, &n);
        for (int format = RELIEF_STL; format <= RELIEF_GLB; format++) {
                struct relief_params p = test_params(format, 0);
                struct kiln_result r = { 0 };
                struct mesh_report rep = run_checked(&p, img, n, &r);
                uint64_t ring = 2 * 36 + 2 * 22;
                assert_int_equal(rep.triangles, 2 * 36 * 22 + 3 * ring);
                assert_int_equal(rep.vertices, 37 * 23 + ring + 1);
                assert_near(num_value(&r, "width_mm"), 100.0, 1e-9);
                assert_near(num_value(&r, "depth_mm"), 100.0 * 23 / 37, 1e-9); /* the image's aspect */
                /* Bounds: x over the width, y down to minus the depth, z from 0. */
                assert_near(rep.min[0], 0, 1e-4);
                assert_near(rep.max[0], 100, 1e-4);
                assert_near(rep.max[1], 0, 1e-4);
                assert_near(rep.min[1], -100.0 * 23 / 37, 1e-4);
                assert_near(rep.min[2], 0, 0);
                kiln_result_clear(&r);
        }
        free(img);
}

static void test_volume_is_the_heightfield_sum(void **state)
{
        uint8_t *img;
        size_t n;
        struct relief_image_info info;
        struct relief_grid g;
        struct relief_params p = test_params(RELIEF_STL, 0);
        struct kiln_result r = { 0 };
        grey_png(64, 48, smooth, &img, &n);
        assert_int_equal(relief_image_probe(img, n, true, &info, NULL), 0);
        assert_int_equal(relief_heightfield(img, n, &info, &p, &g, NULL), 0);
        double want = heightfield_volume(&g);
        run_checked(&p, img, n, &r);
        /* float32 vertices: a relative difference of a few 1e-7 at most. */
        assert_near(num_value(&r, "volume_mm3"), want, 2e-6 * want);
        kiln_result_clear(&r);
        p.format = RELIEF_GLB;
        run_checked(&p, img, n, &r);
        assert_near(num_value(&r, "volume_mm3"), want, 2e-6 * want);
        kiln_result_clear(&r);
        free(g.h);
        free(img);
}

/* A grid tall enough that its top surface is written in bands of rows on threads of
 * their own (one per CPU, 128 rows each at least) and its volume summed in chunks:
 * the bands meet edge to edge (the checker finds every edge twice, no triangle
 * missing or degenerate) and the volume is still the heightfield's. */
static void test_a_tall_full_grid_written_in_bands_is_whole(void **state)
{
        uint8_t *img;
        size_t n;
        struct relief_image_info info;
        struct relief_grid g;
        grey_png(96, 1100, smooth, &img, &n);
        for (int format = RELIEF_STL; format <= RELIEF_GLB; format++) {
                struct relief_params p = test_params(format, 0);
                p.max_side_px = 1100;
                assert_int_equal(relief_image_probe(img, n, true, &info, NULL), 0);
                assert_int_equal(relief_heightfield(img, n, &info, &p, &g, NULL), 0);
                assert_int_equal(g.dims.grid_h, 1100);
                struct kiln_result r = { 0 };
                struct mesh_report rep = run_checked(&p, img, n, &r);
                uint64_t ring = 2 * 95 + 2 * 1099;
                assert_int_equal(rep.triangles, 2 * 95 * 1099 + 3 * ring);
                double want = heightfield_volume(&g);
                assert_near(num_value(&r, "volume_mm3"), want, 2e-6 * want);
                kiln_result_clear(&r);
                free(g.h);
        }
        free(img);
}

/* One white pixel at the image's top right: seen from above it is the highest
 * point, at x = width and y = 0 (columns along +x, rows from the top along -y). */
static void test_the_relief_reads_like_the_image_from_above(void **state)
{
        uint8_t px[4 * 3] = { 0 };
        px[3] = 255;
        uint8_t *img;
        size_t n;
        struct relief_params p = test_params(RELIEF_STL, 0);
        struct kiln_result r = { 0 };
        test_png(4, 3, 0, 8, false, px, NULL, 0, NULL, &img, &n);
        run_checked(&p, img, n, &r);
        const struct kiln_part *mesh = kiln_result_find_part(&r, "mesh");
        uint32_t nt;
        memcpy(&nt, (const uint8_t *)mesh->data + 80, 4);
        float top[3] = { 0, 0, -1 };
        for (uint32_t t = 0; t < nt; t++)
                for (int k = 0; k < 3; k++) {
                        float v[3];
                        memcpy(v, (const uint8_t *)mesh->data + 84 + 50 * (size_t)t + 12 + 12 * k, 12);
                        if (v[2] > top[2])
                                memcpy(top, v, sizeof(top));
                }
        assert_near(top[0], 100.0, 1e-4);
        assert_near(top[1], 0.0, 1e-4);
        assert_near(top[2], 4.0, 1e-6);
        kiln_result_clear(&r);
        free(img);
}

static void test_one_pixel_and_one_row_images_make_closed_solids(void **state)
{
        uint8_t px[300];
        for (int k = 0; k < 300; k++)
                px[k] = (uint8_t)(k * 13);
        uint8_t *img;
        size_t n;
        struct kiln_result r = { 0 };
        for (int format = RELIEF_STL; format <= RELIEF_GLB; format++) {
                struct relief_params p = test_params(format, 0);
                test_png(1, 1, 0, 8, false, px + 20, NULL, 0, NULL, &img, &n);
                struct mesh_report rep = run_checked(&p, img, n, &r);
                double z = 1 + 3 * px[20] / 255.0;
                assert_near(rep.volume, 100 * 100 * z, 1e-6 * 100 * 100 * z);
                assert_near(num_value(&r, "depth_mm"), 100, 1e-9);
                free(img);
                test_png(1, 300, 0, 8, false, px, NULL, 0, NULL, &img, &n); /* shrunk to 1 x 256 */
                run_checked(&p, img, n, &r);
                free(img);
                test_png(300, 1, 0, 8, false, px, NULL, 0, NULL, &img, &n);
                p.tolerance_mm = 0.01;
                run_checked(&p, img, n, &r);
                free(img);
                kiln_result_clear(&r);
        }
}

/* The grid index of corner k of top triangle t, simplified or full grid. */
static uint32_t corner(const struct relief_mesh *m, uint64_t t, int k)
{
        if (m->tris)
                return m->top[m->tris[3 * t + k]];
        /* The full grid: cell t / 2 at (i, j) makes (a, c, d) and (a, d, b). */
        uint32_t w = m->grid->dims.grid_w;
        uint64_t cell = t / 2;
        uint32_t a = (uint32_t)(cell / (w - 1) * w + cell % (w - 1));
        const uint32_t tri[2][3] = { { a, a + w, a + w + 1 }, { a, a + w + 1, a + 1 } };
        return tri[t % 2][k];
}

/* Every grid point lies within tol of the top surface, and every one is covered
 * (checked from the mesh's arrays, independently of the simplifier's scans: each
 * triangle's bounding box, point by point). */
static void check_within(const struct relief_mesh *m, double tol)
{
        const struct relief_grid *g = m->grid;
        int64_t w = g->dims.grid_w, h = g->dims.grid_h;
        uint8_t *covered = calloc((size_t)(w * h), 1);
        assert_non_null(covered);
        for (uint64_t t = 0; t < m->n_top_tris; t++) {
                int64_t x[3], y[3];
                double z[3];
                for (int k = 0; k < 3; k++) {
                        uint32_t gi = corner(m, t, k);
                        x[k] = gi % w;
                        y[k] = gi / w;
                        z[k] = g->h[gi];
                }
                int64_t d = (x[1] - x[0]) * (y[2] - y[0]) - (y[1] - y[0]) * (x[2] - x[0]);
                assert_true(d != 0);
                int64_t x0 = x[0] < x[1] ? (x[0] < x[2] ? x[0] : x[2]) : (x[1] < x[2] ? x[1] : x[2]);
                int64_t x1 = x[0] > x[1] ? (x[0] > x[2] ? x[0] : x[2]) : (x[1] > x[2] ? x[1] : x[2]);
                int64_t y0 = y[0] < y[1] ? (y[0] < y[2] ? y[0] : y[2]) : (y[1] < y[2] ? y[1] : y[2]);
                int64_t y1 = y[0] > y[1] ? (y[0] > y[2] ? y[0] : y[2]) : (y[1] > y[2] ? y[1] : y[2]);
                for (int64_t py = y0; py <= y1; py++)
                        for (int64_t pxx = x0; pxx <= x1; pxx++) {
                                int64_t b0 = (x[1] - pxx) * (y[2] - py) - (y[1] - py) * (x[2] - pxx);
                                int64_t b1 = (x[2] - pxx) * (y[0] - py) - (y[2] - py) * (x[0] - pxx);
                                int64_t b2 = d - b0 - b1;
                                if ((d > 0 && (b0 < 0 || b1 < 0 || b2 < 0)) || (d < 0 && (b0 > 0 || b1 > 0 || b2 > 0)))
                                        continue;
                                double zi = (b0 * z[0] + b1 * z[1] + b2 * z[2]) / (double)d;
                                double e = fabs(g->h[py * w + pxx] - zi);
                                if (e > tol + 1e-9)
                                        fail_msg("grid point (%lld, %lld) is %g mm off the surface (tolerance %g)",
                                                 (long long)pxx, (long long)py, e, tol);
                                covered[py * w + pxx] = 1;
                        }
        }
        for (int64_t k = 0; k < w * h; k++)
                if (!covered[k])
                        fail_msg("grid point %lld is under no triangle", (long long)k);
        free(covered);
}

static void test_simplified_surface_stays_within_the_tolerance(void **state)
{
        uint8_t *img;
        size_t n;
        struct relief_image_info info;
        struct relief_grid g;
        struct relief_params p = test_params(RELIEF_STL, 3.0 / 255);
        grey_png(96, 80, smooth, &img, &n);
        assert_int_equal(relief_image_probe(img, n, true, &info, NULL), 0);
        assert_int_equal(relief_heightfield(img, n, &info, &p, &g, NULL), 0);
        const double tols[] = { 3.0 / 255, 0.05, 0.5, 10 };
        for (size_t k = 0; k < sizeof(tols) / sizeof(tols[0]); k++) {
                struct relief_mesh m;
                assert_int_equal(relief_simplify(&g, tols[k], &m, NULL), 0);
                assert_non_null(m.tris);
                check_within(&m, tols[k]);
                /* The boundary loop: border vertices only, corners included. */
                assert_true(m.n_ring >= 4);
                relief_mesh_release(&m);
        }
        free(g.h);
        free(img);
}

static void test_simplified_meshes_are_closed_and_much_smaller(void **state)
{
        uint8_t *img;
        size_t n;
        grey_png(200, 150, smooth, &img, &n);
        for (int format = RELIEF_STL; format <= RELIEF_GLB; format++) {
                struct relief_params p = test_params(format, 0);
                struct kiln_result r = { 0 };
                struct mesh_report full = run_checked(&p, img, n, &r);
                double full_volume = full.volume;
                kiln_result_clear(&r);
                p.tolerance_mm = 3.0 / 255; /* one grey level */
                struct mesh_report simple = run_checked(&p, img, n, &r);
                if (simple.triangles * 10 > full.triangles)
                        fail_msg("%llu triangles simplified to %llu: not 10 times fewer",
                                 (unsigned long long)full.triangles, (unsigned long long)simple.triangles);
                /* Within a grey level everywhere: the volumes differ by less than that
                 * over the area. */
                assert_near(simple.volume, full_volume, 100.0 * 100 * 149 / 199 * 3.0 / 255);
                kiln_result_clear(&r);
        }
        free(img);
}

static void test_flat_and_planar_images_simplify_to_their_corners(void **state)
{
        uint8_t *img;
        size_t n;
        struct relief_image_info info;
        struct relief_grid g;
        struct relief_params p = test_params(RELIEF_STL, 1e-6);
        /* A ramp along x is planar in x but quantised to 8 bits: within 1.5 grey
         * levels it is two triangles. */
        grey_png(255, 40, ramp, &img, &n);
        assert_int_equal(relief_image_probe(img, n, true, &info, NULL), 0);
        assert_int_equal(relief_heightfield(img, n, &info, &p, &g, NULL), 0);
        struct relief_mesh m;
        assert_int_equal(relief_simplify(&g, 1.5 * 3.0 / 255, &m, NULL), 0);
        assert_int_equal(m.n_top_tris, 2);
        assert_int_equal(m.n_ring, 4);
        check_within(&m, 1.5 * 3.0 / 255);
        relief_mesh_release(&m);
        free(g.h);
        free(img);
}

/* Noise needs nearly every point: the full grid is used, closed like any other,
 * and no larger than the mesh at tolerance 0. */
static void test_noise_falls_back_to_the_full_grid(void **state)
{
        uint8_t *img;
        size_t n;
        struct relief_params p = test_params(RELIEF_STL, 0);
        struct kiln_result r = { 0 };
        grey_png(60, 50, noise, &img, &n);
        struct mesh_report full = run_checked(&p, img, n, &r);
        kiln_result_clear(&r);
        p.tolerance_mm = 1e-4;
        struct mesh_report rep = run_checked(&p, img, n, &r);
        assert_int_equal(rep.triangles, 2 * 59 * 49 + 3 * (2 * 59 + 2 * 49));
        assert_true(rep.triangles <= full.triangles);
        kiln_result_clear(&r);
        free(img);
}

/* Uniform noise in [-1, 1] from a hash of the grid point. */
static double hash_noise(uint32_t i, uint32_t j)
{
        uint32_t k = i * 2654435761u ^ (j * 40503u + 0x9e3779b9u);
        k ^= k >> 15;
        k *= 0x2c1b3c6du;
        k ^= k >> 12;
        k *= 0x297a2d39u;
        k ^= k >> 15;
        return (double)(k >> 8) / 16777216.0 * 2 - 1;
}

/* A 120 x 100 grid of the smooth surface (1 + 3 * smooth, mm) with noise of
 * +-0.01 mm, built directly: heights finer than 8-bit grey levels. */
static void noisy_grid(struct relief_grid *g)
{
        uint32_t w = 120, h = 100;
        *g = (struct relief_grid){ .dims = { .grid_w = w, .grid_h = h, .pitch_x_mm = 1, .pitch_y_mm = 1,
                                             .width_mm = 119, .depth_mm = 99 } };
        g->h = malloc(sizeof(double) * w * h);
        assert_non_null(g->h);
        for (uint32_t i = 0; i < h; i++)
                for (uint32_t j = 0; j < w; j++)
                        g->h[i * w + j] = 1 + 3 * smooth((double)j / w, (double)i / h) + 0.01 * hash_noise(i, j);
}

/* Counts the progress calls (ex->opaque: an int) that the insertion makes, one
 * every 1024 vertices. */
static void count_progress(struct kiln_exec *ex, double fraction)
{
        (void)fraction;
        (*(int *)ex->opaque)++;
}

/* The fallback paths: a grid too rough to try (tolerance 0.001 mm, decided
 * before any insertion: no insertion progress at all), one that looks
 * simplifiable but needs over half its points (0.0065 mm: the insertion gives up
 * at half, past 1024 vertices), and one that simplifies (0.01 mm). Each within
 * its tolerance at every point, never more triangles than the full grid. */
static void test_rough_grids_fall_back_within_the_tolerance(void **state)
{
        struct relief_grid g;
        noisy_grid(&g);
        struct relief_mesh full;
        relief_mesh_full(&g, &full);
        const struct {
                double tol;
                bool rough, simplified;
        } cases[] = { { 0.001, true, false }, { 0.0065, false, false }, { 0.01, false, true } };
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
                struct relief_mesh m;
                int progress = 0;
                struct kiln_exec ex = { .progress = count_progress, .opaque = &progress };
                double rough = relief_grid_rough(&g, cases[k].tol);
                if ((rough >= RELIEF_ROUGH_FULL) != cases[k].rough)
                        fail_msg("tolerance %g: %.3f of the points rough", cases[k].tol, rough);
                assert_int_equal(relief_simplify(&g, cases[k].tol, &m, &ex), 0);
                if ((progress == 0) != cases[k].rough)
                        fail_msg("tolerance %g: %d progress calls of the insertion", cases[k].tol, progress);
                assert_int_equal(m.tris != NULL, cases[k].simplified);
                assert_true(relief_mesh_triangles(&m) <= relief_mesh_triangles(&full));
                assert_true(relief_mesh_vertices(&m) <= relief_mesh_vertices(&full));
                if (cases[k].simplified)
                        assert_true(relief_mesh_triangles(&m) < relief_mesh_triangles(&full));
                check_within(&m, cases[k].tol);
                relief_mesh_release(&m);
        }
        free(g.h);
}

static void test_roughness_counts_points_off_their_neighbours_mean(void **state)
{
        /* 5 x 4 heights on a plane, but inner point (1, 2) 0.3 mm up: it is 0.3
         * off the mean of its row neighbours and of its column neighbours; its row
         * neighbours (1, 1), (1, 3) and the point below it, (2, 2), are 0.15 off
         * (along the row, the row, the column); (2, 1) and (2, 3) lie on the plane. */
        double h[20];
        for (int k = 0; k < 20; k++)
                h[k] = 1.0 + 0.1 * (k % 5) + 0.2 * (k / 5);
        h[1 * 5 + 2] += 0.3;
        struct relief_grid g = { .dims = { .grid_w = 5, .grid_h = 4, .pitch_x_mm = 1, .pitch_y_mm = 1 }, .h = h };
        assert_near(relief_grid_rough(&g, 0.31), 0.0, 0);
        assert_near(relief_grid_rough(&g, 0.29), 1.0 / 6, 1e-12);
        assert_near(relief_grid_rough(&g, 0.16), 1.0 / 6, 1e-12);
        assert_near(relief_grid_rough(&g, 0.14), 4.0 / 6, 1e-12);
        /* 8-bit grey levels: a point exactly one level off at a tolerance of one
         * level is a tie, not rough, whatever the heights' last bit says. */
        for (int k = 0; k < 20; k++)
                h[k] = 1.0 + 3.0 * ((k % 5) == 2 && k / 5 == 1 ? 101 : 100) / 255;
        assert_near(relief_grid_rough(&g, 3.0 / 255), 0.0, 0);
        assert_near(relief_grid_rough(&g, 0.99 * 3.0 / 255), 1.0 / 6, 1e-12);
        /* Under three points a side there is no inner point. */
        g.dims.grid_h = 2;
        assert_near(relief_grid_rough(&g, 0.0), 0.0, 0);
}

static void test_a_raised_stop_flag_cancels(void **state)
{
        uint8_t *img;
        size_t n;
        atomic_int stop = 1;
        struct kiln_exec ex = { .stop = &stop };
        struct relief_params p = test_params(RELIEF_STL, 0.01);
        struct kiln_result r = { 0 };
        struct kiln_array a;
        grey_png(300, 300, smooth, &img, &n);
        uint64_t shape[1] = { n };
        assert_int_equal(kiln_array_init(&a, "image", KILN_DTYPE_BYTES, 1, shape, img, n, NULL), 0);
        struct kiln_task t = { .params = &p, .inputs = &a, .n_inputs = 1, .result = &r, .exec = &ex };
        assert_int_equal(kiln_kind_image_relief.run_cpu(&t), -ECANCELED);
        kiln_result_clear(&r);
        free(img);
}

static void test_the_kind_checks_its_input_and_bounds_its_result(void **state)
{
        const struct kiln_kind *k = &kiln_kind_image_relief;
        struct relief_params p = test_params(RELIEF_GLB, 0);
        struct kiln_error err;
        uint8_t *img;
        size_t n;
        assert_int_equal(kiln_kind_check(k, &p, NULL, 0, NULL, &err), -EINVAL);
        assert_string_equal(err.field, "inputs.image");
        float f[4] = { 0 };
        struct kiln_array a;
        uint64_t shape[1] = { 4 };
        assert_int_equal(kiln_array_init(&a, "image", KILN_DTYPE_F32, 1, shape, f, sizeof(f), NULL), 0);
        assert_int_equal(kiln_kind_check(k, &p, &a, 1, NULL, &err), -EINVAL);
        assert_string_equal(err.field, "inputs.image");

        grey_png(50, 30, smooth, &img, &n);
        shape[0] = n;
        assert_int_equal(kiln_array_init(&a, "image", KILN_DTYPE_U8, 1, shape, img, n, NULL), 0);
        for (int format = RELIEF_STL; format <= RELIEF_GLB; format++)
                for (int simplified = 0; simplified < 2; simplified++) {
                        struct kiln_result r = { 0 };
                        p.format = format;
                        p.tolerance_mm = simplified ? 0.02 : 0;
                        run_checked(&p, img, n, &r);
                        uint64_t bound = kiln_kind_result_bytes(k, &p, &a, 1, NULL);
                        assert_true(kiln_result_bytes(&r) <= bound);
                        if (!simplified && format == RELIEF_STL)
                                assert_int_equal(kiln_result_bytes(&r), bound);
                        kiln_result_clear(&r);
                }
        free(img);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full_grid_is_closed_with_the_counts_it_should_have),
                cmocka_unit_test(test_volume_is_the_heightfield_sum),
                cmocka_unit_test(test_a_tall_full_grid_written_in_bands_is_whole),
                cmocka_unit_test(test_the_relief_reads_like_the_image_from_above),
                cmocka_unit_test(test_one_pixel_and_one_row_images_make_closed_solids),
                cmocka_unit_test(test_simplified_surface_stays_within_the_tolerance),
                cmocka_unit_test(test_simplified_meshes_are_closed_and_much_smaller),
                cmocka_unit_test(test_flat_and_planar_images_simplify_to_their_corners),
                cmocka_unit_test(test_noise_falls_back_to_the_full_grid),
                cmocka_unit_test(test_rough_grids_fall_back_within_the_tolerance),
                cmocka_unit_test(test_roughness_counts_points_off_their_neighbours_mean),
                cmocka_unit_test(test_a_raised_stop_flag_cancels),
                cmocka_unit_test(test_the_kind_checks_its_input_and_bounds_its_result),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
