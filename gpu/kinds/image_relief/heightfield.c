/* image.relief's heightfield on the CPU: the image decoded row by row, each pixel's
 * brightness put where the EXIF orientation shows it and, when the image is larger
 * than max_side_px, added into the cells it overlaps (area-averaged shrink). Only
 * the grid and one row are held, whatever the image's size.
 *
 * Every cell receives its terms in file order (row by row, left to right), the
 * order in which the CUDA kernel sums them too (relief_math.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_relief.h"
#include "relief_math.h"

int relief_dims_get(const struct relief_image_info *info, const struct relief_params *p, struct relief_dims *ret)
{
        if (!info->width || !info->height || p->max_side_px < 1 || !(p->width_mm > 0))
                return -EINVAL;
        struct relief_dims d = { .src_w = info->width, .src_h = info->height, .orientation = info->orientation };
        bool swap = relief_orient_swaps(info->orientation);
        d.ori_w = swap ? info->height : info->width;
        d.ori_h = swap ? info->width : info->height;
        uint64_t n = d.ori_w > d.ori_h ? d.ori_w : d.ori_h, m = (uint64_t)p->max_side_px;
        if (n > m) {
                d.res_w = (uint32_t)((d.ori_w * m + n / 2) / n);
                d.res_h = (uint32_t)((d.ori_h * m + n / 2) / n);
                d.res_w = d.res_w ? d.res_w : 1;
                d.res_h = d.res_h ? d.res_h : 1;
        } else {
                d.res_w = d.ori_w;
                d.res_h = d.ori_h;
        }
        d.grid_w = d.res_w < 2 ? 2 : d.res_w;
        d.grid_h = d.res_h < 2 ? 2 : d.res_h;
        double depth = p->width_mm * (double)d.ori_h / (double)d.ori_w;
        d.pitch_x_mm = p->width_mm / (double)(d.grid_w - 1);
        d.pitch_y_mm = depth / (double)(d.grid_h - 1);
        d.width_mm = relief_mul((double)(d.grid_w - 1), d.pitch_x_mm);
        d.depth_mm = relief_mul((double)(d.grid_h - 1), d.pitch_y_mm);
        *ret = d;
        return 0;
}

/* Adds one source row's brightness to the cells it overlaps. */
static void accumulate_row(const struct relief_dims *d, const struct relief_image_info *info, const void *row,
                           uint32_t r, double *acc)
{
        for (uint32_t c = 0; c < d->src_w; c++) {
                double l = relief_luma(row, c, info->channels, info->depth);
                uint32_t x, y;
                relief_orient(d->orientation, d->src_w, d->src_h, c, r, &x, &y);
                uint32_t u0 = relief_cell_first(x, d->ori_w, d->res_w), v0 = relief_cell_first(y, d->ori_h, d->res_h);
                uint64_t ox[2] = { relief_overlap(x, u0, d->ori_w, d->res_w),
                                   u0 + 1 < d->res_w ? relief_overlap(x, u0 + 1, d->ori_w, d->res_w) : 0 };
                uint64_t oy[2] = { relief_overlap(y, v0, d->ori_h, d->res_h),
                                   v0 + 1 < d->res_h ? relief_overlap(y, v0 + 1, d->ori_h, d->res_h) : 0 };
                for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++)
                                if (oy[a] && ox[b]) {
                                        double *cell = &acc[(size_t)(v0 + a) * d->res_w + u0 + b];
                                        *cell = relief_accumulate(*cell, ox[b], oy[a], l);
                                }
        }
}

/* Stores one source row's brightness where it is shown (no shrink). */
static void place_row(const struct relief_dims *d, const struct relief_image_info *info, const void *row, uint32_t r,
                      double *val)
{
        for (uint32_t c = 0; c < d->src_w; c++) {
                uint32_t x, y;
                relief_orient(d->orientation, d->src_w, d->src_h, c, r, &x, &y);
                val[(size_t)y * d->res_w + x] = relief_luma(row, c, info->channels, info->depth);
        }
}

int relief_heightfield(const void *data, size_t n, const struct relief_image_info *info, const struct relief_params *p,
                       struct relief_grid *ret, struct kiln_exec *ex)
{
        struct relief_dims d;
        struct relief_rows *rows = NULL;
        int r = relief_dims_get(info, p, &d);
        if (r < 0)
                return r;
        bool shrink = d.res_w != d.ori_w || d.res_h != d.ori_h;
        double *h = calloc((size_t)d.grid_w * d.grid_h, sizeof(double));
        double *val = h;
        if (!h)
                return -ENOMEM;
        if ((r = relief_rows_open(data, n, info, &rows)) < 0)
                goto fail;
        for (uint32_t y = 0; y < d.src_h; y++) {
                const void *row;
                if ((y & 63) == 0 && kiln_exec_stopped(ex)) {
                        r = -ECANCELED;
                        goto fail;
                }
                if ((r = relief_rows_next(rows, &row)) < 0)
                        goto fail;
                if (shrink)
                        accumulate_row(&d, info, row, y, val);
                else
                        place_row(&d, info, row, y, val);
                if ((y & 63) == 63)
                        kiln_exec_progress(ex, 0.5 * (y + 1) / d.src_h);
        }
        relief_rows_free(rows);
        rows = NULL;

        /* In place, from the last cell back: the grid (grid_w >= res_w) is at least
         * as long a stride as the cells. */
        for (size_t k = (size_t)d.res_w * d.res_h; k-- > 0;) {
                size_t i = k / d.res_w, j = k % d.res_w;
                double v = shrink ? relief_cell_value(val[k], d.ori_w, d.ori_h) : val[k];
                h[i * d.grid_w + j] = relief_height(v, p->base_mm, p->max_height_mm, p->invert);
        }
        /* A side of one pixel becomes two identical grid points. */
        if (d.res_w == 1)
                for (uint32_t i = 0; i < d.res_h; i++)
                        h[(size_t)i * d.grid_w + 1] = h[(size_t)i * d.grid_w];
        if (d.res_h == 1)
                memcpy(h + d.grid_w, h, d.grid_w * sizeof(double));
        ret->dims = d;
        ret->h = h;
        return 0;
fail:
        relief_rows_free(rows);
        free(h);
        return r;
}

double relief_grid_rough(const struct relief_grid *g, double tol_mm)
{
        uint32_t w = g->dims.grid_w, gh = g->dims.grid_h;
        if (w < 3 || gh < 3)
                return 0.0;
        /* 8-bit images at a whole number of grey levels tie often: a tie is not
         * rough, whatever the last bit of the heights' rounding says. */
        double lim = 2.0 * tol_mm * (1.0 + 1e-9);
        uint64_t n = 0;
        for (uint32_t i = 1; i + 1 < gh; i++) {
                const double *up = g->h + (size_t)(i - 1) * w, *row = up + w, *down = row + w;
                for (uint32_t j = 1; j + 1 < w; j++) {
                        double c = 2.0 * row[j];
                        n += (uint64_t)((fabs(c - row[j - 1] - row[j + 1]) > lim) | (fabs(c - up[j] - down[j]) > lim));
                }
        }
        return (double)n / ((double)(w - 2) * (double)(gh - 2));
}
