/* image.relief's per-pixel and per-triangle math, compiled by the C compiler and by
 * nvcc, so that the CPU path and the CUDA kernels make the same heightfield and the
 * same full-grid mesh byte for byte.
 *
 * Byte-identical results need the same IEEE operations in the same order on both
 * sides: luma is integer arithmetic and one division; the sums of the area-averaged
 * shrink and the normals go through relief_mul/relief_add, which round every step
 * (nvcc would otherwise contract a*b+c into one fused multiply-add; the C files of
 * this kind are compiled with -ffp-contract=off for the same reason). */
#pragma once

#include <stdint.h>
#include <string.h>

#ifndef KILN_HD
#ifdef __CUDACC__
#define KILN_HD __host__ __device__
#else
#define KILN_HD
#endif
#endif

#ifdef __CUDA_ARCH__
#define RELIEF_SQRT(x) sqrt(x)
#else
#include <math.h>
#define RELIEF_SQRT(x) sqrt(x)
#endif

KILN_HD static inline double relief_mul(double a, double b)
{
#ifdef __CUDA_ARCH__
        return __dmul_rn(a, b);
#else
        return a * b;
#endif
}

KILN_HD static inline double relief_add(double a, double b)
{
#ifdef __CUDA_ARCH__
        return __dadd_rn(a, b);
#else
        return a + b;
#endif
}

/* ---- pixels ---- */

/* Brightness in [0, 1] of pixel x of a decoded row: the Rec. 709 luma (0.2126 R +
 * 0.7152 G + 0.0722 B) of the sRGB-encoded values, each composited over white by
 * its alpha first. The numerator is an exact integer (at most 10000 * 65535^2 <
 * 2^53), so the result is one correctly rounded division everywhere. */
KILN_HD static inline double relief_luma(const void *row, uint32_t x, int channels, int depth)
{
        uint64_t c[4] = { 0, 0, 0, 0 };
        uint64_t m = depth == 16 ? 65535u : 255u;

        for (int k = 0; k < channels; k++)
                c[k] = depth == 16 ? ((const uint16_t *)row)[(uint64_t)x * channels + k]
                                   : ((const uint8_t *)row)[(uint64_t)x * channels + k];
        uint64_t a = channels == 4 ? c[3] : m;
        if (channels == 1)
                c[1] = c[2] = c[0];
        /* Over white: v * a + m * (m - a), in units of 1/m^2. */
        uint64_t r = c[0] * a + m * (m - a), g = c[1] * a + m * (m - a), b = c[2] * a + m * (m - a);
        uint64_t y = r == g && g == b ? 10000u * r : 2126u * r + 7152u * g + 722u * b;
        return (double)y / (double)(10000u * m * m);
}

/* EXIF orientation: where stored pixel (c, r) of a w x h image is displayed. */
KILN_HD static inline void relief_orient(int orientation, uint32_t w, uint32_t h, uint32_t c, uint32_t r,
                                         uint32_t *ret_x, uint32_t *ret_y)
{
        uint32_t x, y;
        switch (orientation) {
        case 2: x = w - 1 - c; y = r; break;
        case 3: x = w - 1 - c; y = h - 1 - r; break;
        case 4: x = c; y = h - 1 - r; break;
        case 5: x = r; y = c; break;
        case 6: x = h - 1 - r; y = c; break;
        case 7: x = h - 1 - r; y = w - 1 - c; break;
        case 8: x = r; y = w - 1 - c; break;
        default: x = c; y = r; break;
        }
        *ret_x = x;
        *ret_y = y;
}

/* Orientations 5..8 swap the sides. */
KILN_HD static inline int relief_orient_swaps(int orientation)
{
        return orientation >= 5 && orientation <= 8;
}

/* The area-averaged shrink from n source pixels to m <= n cells along one axis, in
 * integer units of 1/m source pixel: source pixel s spans [s*m, (s+1)*m), cell u
 * spans [u*n, (u+1)*n). The first cell source pixel s overlaps: */
KILN_HD static inline uint32_t relief_cell_first(uint32_t s, uint32_t n, uint32_t m)
{
        return (uint32_t)((uint64_t)s * m / n);
}

/* ... and its overlap with cell u (0 when none). */
KILN_HD static inline uint64_t relief_overlap(uint32_t s, uint32_t u, uint32_t n, uint32_t m)
{
        uint64_t lo_s = (uint64_t)s * m, hi_s = lo_s + m, lo_u = (uint64_t)u * n, hi_u = lo_u + n;
        uint64_t lo = lo_s > lo_u ? lo_s : lo_u, hi = hi_s < hi_u ? hi_s : hi_u;
        return hi > lo ? hi - lo : 0;
}

/* One source pixel's term of a cell's sum: acc + (ox * oy) * luma. */
KILN_HD static inline double relief_accumulate(double acc, uint64_t ox, uint64_t oy, double luma)
{
        return relief_add(acc, relief_mul((double)(ox * oy), luma));
}

/* A cell's brightness from its sum over an n_w x n_h source shrunk to m_w x m_h
 * (the weights of a cell add up to n_w * n_h). */
KILN_HD static inline double relief_cell_value(double acc, uint32_t n_w, uint32_t n_h)
{
        double v = acc / ((double)n_w * (double)n_h);
        return v > 1.0 ? 1.0 : v;
}

/* Height in mm of a grid point of brightness v. */
KILN_HD static inline double relief_height(double v, double base_mm, double max_height_mm, int invert)
{
        return relief_add(base_mm, relief_mul(max_height_mm, invert ? 1.0 - v : v));
}

/* ---- the full-grid mesh ---- */

/* Boundary vertices of a gw x gh grid (gw, gh >= 2). */
KILN_HD static inline uint32_t relief_ring_len(uint32_t gw, uint32_t gh)
{
        return 2 * (gw - 1) + 2 * (gh - 1);
}

/* The grid point (row i, column j) at position b of the boundary loop, which runs
 * counter-clockwise seen from above (+z), i.e. with rows along -y: from the top-left
 * corner down the left side, right along the bottom row, up the right side and left
 * along the top row. */
KILN_HD static inline void relief_ring_point(uint32_t b, uint32_t gw, uint32_t gh, uint32_t *ret_i, uint32_t *ret_j)
{
        uint32_t i, j;
        if (b < gh - 1) {
                i = b;
                j = 0;
        } else if ((b -= gh - 1) < gw - 1) {
                i = gh - 1;
                j = b;
        } else if ((b -= gw - 1) < gh - 1) {
                i = gh - 1 - b;
                j = gw - 1;
        } else {
                b -= gh - 1;
                i = 0;
                j = gw - 1 - b;
        }
        *ret_i = i;
        *ret_j = j;
}

/* The inverse: the loop position of border point (i, j). */
KILN_HD static inline uint32_t relief_ring_pos(uint32_t i, uint32_t j, uint32_t gw, uint32_t gh)
{
        if (j == 0 && i < gh - 1)
                return i;
        if (i == gh - 1 && j < gw - 1)
                return (gh - 1) + j;
        if (j == gw - 1 && i > 0)
                return (gh - 1) + (gw - 1) + (gh - 1 - i);
        return 2 * (gh - 1) + (gw - 1) + (gw - 1 - j);
}

/* Top triangle k of the full grid, as grid indices, counter-clockwise from above:
 * cell k / 2 at (i, j) with corners a (i, j), b (i, j+1), c (i+1, j), d (i+1, j+1)
 * makes (a, c, d) and (a, d, b). */
KILN_HD static inline void relief_grid_tri(uint64_t k, uint32_t gw, uint32_t ret[3])
{
        uint64_t cell = k / 2;
        uint32_t i = (uint32_t)(cell / (gw - 1)), j = (uint32_t)(cell % (gw - 1));
        uint32_t a = i * gw + j, b = a + 1, c = a + gw, d = c + 1;
        ret[0] = a;
        if (k % 2 == 0) {
                ret[1] = c;
                ret[2] = d;
        } else {
                ret[1] = d;
                ret[2] = b;
        }
}

/* Triangle m (0..2) of boundary edge b, from ring vertex b to b + 1 (wrapping):
 * two wall triangles and one of the base. Vertex ids: top ring vertices t0, t1,
 * their bottom copies b0, b1, the base centre c. Outward normals. */
KILN_HD static inline void relief_edge_tri(int m, uint32_t t0, uint32_t t1, uint32_t b0, uint32_t b1, uint32_t c,
                                           uint32_t ret[3])
{
        if (m == 0) {
                ret[0] = t0;
                ret[1] = b0;
                ret[2] = b1;
        } else if (m == 1) {
                ret[0] = t0;
                ret[1] = b1;
                ret[2] = t1;
        } else {
                ret[0] = c;
                ret[1] = b1;
                ret[2] = b0;
        }
}

/* Position (mm) of grid point (i, j) at height z: columns along +x, rows along -y. */
KILN_HD static inline void relief_point_mm(uint32_t i, uint32_t j, double z, double pitch, float ret[3])
{
        ret[0] = (float)relief_mul((double)j, pitch);
        ret[1] = (float)-relief_mul((double)i, pitch);
        ret[2] = (float)z;
}

/* The centre of the base (mm). */
KILN_HD static inline void relief_centre_mm(uint32_t gw, uint32_t gh, double pitch, float ret[3])
{
        ret[0] = (float)(relief_mul((double)(gw - 1), pitch) / 2.0);
        ret[1] = (float)-(relief_mul((double)(gh - 1), pitch) / 2.0);
        ret[2] = 0.0f;
}

/* A position in mm as glTF wants it: metres, +y up (x, z, -y). */
KILN_HD static inline void relief_to_gltf(const float mm[3], float ret[3])
{
        ret[0] = (float)((double)mm[0] / 1000.0);
        ret[1] = (float)((double)mm[2] / 1000.0);
        ret[2] = (float)(-(double)mm[1] / 1000.0);
}

/* One binary STL record (50 bytes, little-endian) of triangle p0 p1 p2: the unit
 * normal, the three vertices, a zero attribute word. Written byte by byte: records
 * start at 84 + 50 k, so their floats are not 4-byte aligned. */
KILN_HD static inline void relief_stl_record(const float p0[3], const float p1[3], const float p2[3], uint8_t *out)
{
        double u[3], v[3], n[3];
        for (int k = 0; k < 3; k++) {
                u[k] = relief_add((double)p1[k], -(double)p0[k]);
                v[k] = relief_add((double)p2[k], -(double)p0[k]);
        }
        n[0] = relief_add(relief_mul(u[1], v[2]), -relief_mul(u[2], v[1]));
        n[1] = relief_add(relief_mul(u[2], v[0]), -relief_mul(u[0], v[2]));
        n[2] = relief_add(relief_mul(u[0], v[1]), -relief_mul(u[1], v[0]));
        double len = RELIEF_SQRT(relief_add(relief_add(relief_mul(n[0], n[0]), relief_mul(n[1], n[1])),
                                            relief_mul(n[2], n[2])));
        double inv = len > 0 ? 1.0 / len : 0.0;
        float f[12];
        for (int k = 0; k < 3; k++) {
                f[k] = (float)relief_mul(n[k], inv);
                f[3 + k] = p0[k];
                f[6 + k] = p1[k];
                f[9 + k] = p2[k];
        }
        memcpy(out, f, sizeof(f)); /* little-endian hosts and devices only */
        out[48] = 0;
        out[49] = 0;
}
