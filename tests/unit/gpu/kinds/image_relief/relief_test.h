/* What image.relief's unit tests share: test images made with the same libraries
 * the kind decodes with (libspng's encoder, libjpeg-turbo's compressor), a run of the
 * kind through its descriptor, and a mesh checker that does not trust the writer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image_relief/image_relief.h"

/* |a - b| <= eps, or the test fails naming both (cmocka 1.1.5 has no
 * assert_double_equal). */
#define assert_near(a, b, eps) test_near((double)(a), (double)(b), (double)(eps), #a, __FILE__, __LINE__)
void test_near(double a, double b, double eps, const char *what, const char *file, int line);

/* A PNG of w x h pixels: colour type 0 (grey), 2 (RGB), 3 (palette: `palette` of
 * n_palette RGB triples, `trns` alpha per entry or NULL), 4 (grey+alpha), 6 (RGBA);
 * `pixels` in PNG sample order with 16-bit samples in host order. Returns the
 * malloc'd file in *ret; aborts the test on failure. */
void test_png(uint32_t w, uint32_t h, int colour, int depth, bool interlace, const void *pixels,
              const uint8_t *palette, int n_palette, const uint8_t *trns, uint8_t **ret, size_t *ret_len);

/* A baseline JPEG (quality 100, no chroma subsampling) of w x h pixels of 1 (grey)
 * or 3 (RGB) components, with an APP1 Exif orientation tag when orientation > 0
 * (big-endian TIFF when `motorola`). */
void test_jpeg(uint32_t w, uint32_t h, int comps, const uint8_t *pixels, int orientation, bool motorola,
               uint8_t **ret, size_t *ret_len);

/* Runs image.relief on the CPU through its descriptor: check, then run_cpu. Returns
 * what they return; the result in *ret (cleared first). `err` may be NULL. */
int test_run(const struct relief_params *p, const uint8_t *img, size_t n, struct kiln_result *ret,
             struct kiln_error *err);

/* The params' defaults (SPEC 1.6) with the given format and tolerance. */
struct relief_params test_params(int format, double tolerance_mm);

/* What the checker found in a mesh file. */
struct mesh_report {
        uint64_t triangles, vertices, edges;
        double volume;           /* from the triangles, mm^3 */
        double min[3], max[3];   /* bounds, mm */
};

/* Checks a binary STL or a GLB made by the kind, independently of mesh.c: every
 * edge used exactly once in each direction (closed, manifold, consistently
 * oriented), no triangle with repeated vertices or zero area, every STL normal
 * pointing the way its vertices turn, V - E + F = 2, positive volume; for GLB also
 * the header, the 4-byte chunk alignment, POSITION's min/max and the indices.
 * Fails the test with a message on the first problem. */
void check_mesh(const uint8_t *data, size_t n, int format, struct mesh_report *ret);
