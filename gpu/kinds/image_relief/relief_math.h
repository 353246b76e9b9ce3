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

#include "hostdev.h"

#ifndef __CUDA_ARCH__
#include <math.h>
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

/* The inverse: the stored pixel (column, row) of a w x h image (stored size)
 * shown at (x, y). */
KILN_HD static inline void relief_unorient(int orientation, uint32_t w, uint32_t h, uint32_t x, uint32_t y,
                                           uint32_t *ret_c, uint32_t *ret_r)
{
        uint32_t c, r;
        switch (orientation) {
        case 2: c = w - 1 - x; r = y; break;
        case 3: c = w - 1 - x; r = h - 1 - y; break;
        case 4: c = x; r = h - 1 - y; break;
        case 5: c = y; r = x; break;
        case 6: c = y; r = h - 1 - x; break;
        case 7: c = w - 1 - y; r = h - 1 - x; break;
        case 8: c = w - 1 - y; r = x; break;
        default: c = x; r = y; break;
        }
        *ret_c = c;
        *ret_r = r;
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

/* The source pixels (along one axis) that overlap cell u: [*ret_lo, *ret_hi]. */
KILN_HD static inline void relief_cell_span(uint32_t u, uint32_t n, uint32_t m, uint32_t *ret_lo, uint32_t *ret_hi)
{
        *ret_lo = (uint32_t)((uint64_t)u * n / m);
        *ret_hi = (uint32_t)((((uint64_t)u + 1) * n - 1) / m);
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

/* What the per-pixel stages of one job need to know (the CUDA path packs it in its
 * descriptor's words). */
struct relief_spec {
        uint32_t src_w, src_h;   /* stored */
        uint32_t ori_w, ori_h;   /* displayed */
        uint32_t res_w, res_h;   /* after the shrink */
        uint32_t grid_w, grid_h; /* grid points */
        int orientation, channels, depth, invert;
        double pitch_x, pitch_y, base, max_h;
};

/* The height of grid point k (row-major) computed on its own from all the decoded
 * rows (`pixels`, file order): what the CUDA kernel does for each point. A cell's
 * terms are summed in file order, row by row, left to right, the order in which
 * heightfield.c adds them as the rows are decoded, so the two agree bit for bit. */
KILN_HD static inline double relief_point_height(const struct relief_spec *s, const uint8_t *pixels, uint64_t k)
{
        uint32_t i = (uint32_t)(k / s->grid_w), j = (uint32_t)(k % s->grid_w);
        uint32_t v = i < s->res_h ? i : s->res_h - 1, u = j < s->res_w ? j : s->res_w - 1; /* a doubled side */
        uint64_t row = (uint64_t)s->src_w * (uint64_t)s->channels * (uint64_t)(s->depth / 8);
        double value;
        if (s->res_w == s->ori_w && s->res_h == s->ori_h) {
                uint32_t c, r;
                relief_unorient(s->orientation, s->src_w, s->src_h, u, v, &c, &r);
                value = relief_luma(pixels + r * row, c, s->channels, s->depth);
        } else {
                uint32_t x0, x1, y0, y1, c0, r0, c1, r1;
                relief_cell_span(u, s->ori_w, s->res_w, &x0, &x1);
                relief_cell_span(v, s->ori_h, s->res_h, &y0, &y1);
                relief_unorient(s->orientation, s->src_w, s->src_h, x0, y0, &c0, &r0);
                relief_unorient(s->orientation, s->src_w, s->src_h, x1, y1, &c1, &r1);
                uint32_t ca = c0 < c1 ? c0 : c1, cb = c0 < c1 ? c1 : c0, ra = r0 < r1 ? r0 : r1, rb = r0 < r1 ? r1 : r0;
                double acc = 0.0;
                for (uint32_t r = ra; r <= rb; r++)
                        for (uint32_t c = ca; c <= cb; c++) {
                                uint32_t x, y;
                                relief_orient(s->orientation, s->src_w, s->src_h, c, r, &x, &y);
                                uint64_t ox = relief_overlap(x, u, s->ori_w, s->res_w);
                                uint64_t oy = relief_overlap(y, v, s->ori_h, s->res_h);
                                if (ox && oy)
                                        acc = relief_accumulate(acc, ox, oy,
                                                                relief_luma(pixels + r * row, c, s->channels, s->depth));
                        }
                value = relief_cell_value(acc, s->ori_w, s->ori_h);
        }
        return relief_height(value, s->base, s->max_h, s->invert);
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

/* Position (mm) of grid point (i, j) at height z: columns along +x, rows along -y,
 * px and py apart. */
KILN_HD static inline void relief_point_mm(uint32_t i, uint32_t j, double z, double px, double py, float ret[3])
{
        ret[0] = (float)relief_mul((double)j, px);
        ret[1] = (float)-relief_mul((double)i, py);
        ret[2] = (float)z;
}

/* The centre of the base (mm). */
KILN_HD static inline void relief_centre_mm(uint32_t gw, uint32_t gh, double px, double py, float ret[3])
{
        ret[0] = (float)(relief_mul((double)(gw - 1), px) / 2.0);
        ret[1] = (float)-(relief_mul((double)(gh - 1), py) / 2.0);
        ret[2] = 0.0f;
}

/* A position in mm as glTF wants it: metres, +y up (x, z, -y). */
KILN_HD static inline void relief_to_gltf(const float mm[3], float ret[3])
{
        ret[0] = (float)((double)mm[0] / 1000.0);
        ret[1] = (float)((double)mm[2] / 1000.0);
        ret[2] = (float)(-(double)mm[1] / 1000.0);
}

/* ---- the full-grid mesh as one function of its index (CPU writer and kernels) ---- */

/* The STL header: 80 bytes, this text padded with spaces (never "solid..."). */
#define RELIEF_STL_HEADER "binary STL from kiln image.relief, millimetres"

/* Vertex v (mm) of the full-grid mesh of a gw x gh grid of heights h: the grid
 * points (v = i * gw + j), then the bottom copy of each boundary point in ring
 * order, then the base's centre. */
KILN_HD static inline void relief_full_vertex(uint64_t v, uint32_t gw, uint32_t gh, const double *h, double px,
                                              double py, float ret[3])
{
        uint64_t n_top = (uint64_t)gw * gh;
        uint32_t ring = relief_ring_len(gw, gh), i, j;
        if (v >= n_top + ring) {
                relief_centre_mm(gw, gh, px, py, ret);
        } else if (v >= n_top) {
                relief_ring_point((uint32_t)(v - n_top), gw, gh, &i, &j);
                relief_point_mm(i, j, 0.0, px, py, ret);
        } else {
                relief_point_mm((uint32_t)(v / gw), (uint32_t)(v % gw), h[v], px, py, ret);
        }
}

/* Triangle t of the full-grid mesh: the top surface (relief_grid_tri), then three
 * per boundary edge (relief_edge_tri), as vertex ids of relief_full_vertex. */
KILN_HD static inline void relief_full_tri(uint64_t t, uint32_t gw, uint32_t gh, uint32_t ret[3])
{
        uint64_t n_top_tris = 2ull * (gw - 1) * (gh - 1);
        if (t < n_top_tris) {
                relief_grid_tri(t, gw, ret);
                return;
        }
        uint64_t e = t - n_top_tris;
        uint32_t ring = relief_ring_len(gw, gh), b = (uint32_t)(e / 3), b1 = b + 1 == ring ? 0 : b + 1;
        uint32_t i0, j0, i1, j1, n_top = gw * gh;
        relief_ring_point(b, gw, gh, &i0, &j0);
        relief_ring_point(b1, gw, gh, &i1, &j1);
        relief_edge_tri((int)(e % 3), i0 * gw + j0, i1 * gw + j1, n_top + b, n_top + b1, n_top + ring, ret);
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
        double len = sqrt(relief_add(relief_add(relief_mul(n[0], n[0]), relief_mul(n[1], n[1])),
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
