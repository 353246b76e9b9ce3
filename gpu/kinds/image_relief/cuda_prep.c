/* image.relief's host half of the CUDA path (see relief_cuda.h and
 * gpu/cuda/cuda_kind.h). Linked into the plugin only.
 *
 * prepare decodes the image (the one stage a GPU does not do) into a temporary
 * part of the task's result, so that whatever happens to the batch the rows are
 * freed with the result; the launch copies them to the device. complete turns the
 * output region into the `mesh` part and the values, with the CPU path's code. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../cuda/cuda_kind.h"
#include "image_relief.h"
#include "relief_cuda.h"
#include "relief_math.h"

static void put_u64(uint32_t *w, unsigned slot, uint64_t v)
{
        w[slot] = (uint32_t)v;
        w[slot + 1] = (uint32_t)(v >> 32);
}

/* The task's image header and grid (prepare checked them already). */
static int task_dims(const struct kiln_task *t, struct relief_image_info *info, struct relief_dims *d)
{
        const struct kiln_array *img = kiln_inputs_find(t->inputs, t->n_inputs, "image");
        if (!img || relief_image_probe(img->data, img->bytes, false, info, NULL) < 0)
                return -EINVAL;
        return relief_dims_get(info, t->params, d);
}

/* Decodes every row into the temporary part, in file order. */
static int decode_all(const struct kiln_task *t, const struct relief_image_info *info, struct kiln_part **ret)
{
        const struct kiln_array *img = kiln_inputs_find(t->inputs, t->n_inputs, "image");
        size_t row = (size_t)info->width * (size_t)info->channels * (size_t)(info->depth / 8);
        uint64_t shape[1] = { (uint64_t)row * info->height };
        struct kiln_part *part = kiln_result_add_part(t->result, RELIEF_PIXELS_PART, KILN_DTYPE_U8, 1, shape);
        struct relief_rows *rows = NULL;
        if (!part)
                return -ENOMEM;
        int r = relief_rows_open(img->data, img->bytes, info, &rows);
        for (uint32_t y = 0; r >= 0 && y < info->height; y++) {
                const void *p;
                if ((r = relief_rows_next(rows, &p)) >= 0)
                        memcpy((uint8_t *)part->data + (size_t)y * row, p, row);
        }
        relief_rows_free(rows);
        if (r < 0)
                return r;
        *ret = part;
        return 0;
}

static int prepare(const struct kiln_task *t, const uint64_t *in_offsets, struct kiln_cuda_desc *ret_desc,
                   uint64_t *ret_work)
{
        const struct relief_params *p = t->params;
        struct relief_image_info info;
        struct relief_dims d;
        struct kiln_part *pixels;
        int r = task_dims(t, &info, &d);
        if (r < 0 || (r = decode_all(t, &info, &pixels)) < 0)
                return r;
        uint32_t *w = ret_desc->params;
        w[RELIEF_W_SRC_W] = d.src_w;
        w[RELIEF_W_SRC_H] = d.src_h;
        w[RELIEF_W_ORIENT] = (uint32_t)d.orientation;
        w[RELIEF_W_CHANNELS] = (uint32_t)info.channels;
        w[RELIEF_W_DEPTH] = (uint32_t)info.depth;
        w[RELIEF_W_ORI_W] = d.ori_w;
        w[RELIEF_W_ORI_H] = d.ori_h;
        w[RELIEF_W_RES_W] = d.res_w;
        w[RELIEF_W_RES_H] = d.res_h;
        w[RELIEF_W_GRID_W] = d.grid_w;
        w[RELIEF_W_GRID_H] = d.grid_h;
        w[RELIEF_W_INVERT] = p->invert;
        kiln_cuda_put_f64(w, RELIEF_W_PITCH_X, d.pitch_x_mm);
        kiln_cuda_put_f64(w, RELIEF_W_PITCH_Y, d.pitch_y_mm);
        kiln_cuda_put_f64(w, RELIEF_W_BASE, p->base_mm);
        kiln_cuda_put_f64(w, RELIEF_W_MAX_H, p->max_height_mm);
        put_u64(w, RELIEF_W_PIXELS, (uint64_t)(uintptr_t)pixels->data);
        put_u64(w, RELIEF_W_PIXEL_BYTES, pixels->bytes);

        uint64_t gw = d.grid_w, gh = d.grid_h, ring = relief_ring_len(d.grid_w, d.grid_h);
        uint64_t tris = 2 * (gw - 1) * (gh - 1) + 3 * ring, verts = gw * gh + ring + 1;
        uint64_t work = gw * gh;
        if (p->tolerance_mm > 0) {
                w[RELIEF_W_MODE] = RELIEF_OUT_HEIGHTS;
                ret_desc->out_bytes = gw * gh * sizeof(double);
        } else if (p->format == RELIEF_STL) {
                w[RELIEF_W_MODE] = RELIEF_OUT_STL;
                ret_desc->out_bytes = 84 + 50 * tris;
                work = tris;
        } else {
                w[RELIEF_W_MODE] = RELIEF_OUT_GLB_BIN;
                ret_desc->out_bytes = 12 * verts + 12 * tris;
                work = tris > verts ? tris : verts;
        }
        *ret_work = work;
        return 0;
}

/* Drops the decoded rows from the result (the last part, as prepare added it). */
static void drop_pixels(struct kiln_result *r)
{
        for (int k = 0; k < r->n_parts; k++) {
                if (strcmp(r->parts[k].name, RELIEF_PIXELS_PART))
                        continue;
                free(r->parts[k].data);
                memmove(&r->parts[k], &r->parts[k + 1], (size_t)(r->n_parts - k - 1) * sizeof(r->parts[0]));
                r->n_parts--;
                return;
        }
}

/* The GLB around the kernels' binary chunk. */
static int glb_complete(struct kiln_task *t, const struct relief_dims *d, const uint8_t *bin, uint64_t bytes)
{
        uint64_t gw = d->grid_w, gh = d->grid_h, ring = relief_ring_len(d->grid_w, d->grid_h);
        uint64_t nt = 2 * (gw - 1) * (gh - 1) + 3 * ring, nv = gw * gh + ring + 1;
        float min[3], max[3];
        if (bytes != 12 * nv + 12 * nt)
                return -EINVAL;
        for (uint64_t v = 0; v < nv; v++)
                for (int k = 0; k < 3; k++) {
                        float f;
                        memcpy(&f, bin + 12 * v + 4 * (uint64_t)k, 4);
                        min[k] = v == 0 || f < min[k] ? f : min[k];
                        max[k] = v == 0 || f > max[k] ? f : max[k];
                }
        uint8_t head[28 + RELIEF_GLB_JSON_MAX];
        int hl = relief_glb_head(nv, nt, min, max, head);
        if (hl < 0)
                return hl;
        uint64_t shape[1] = { (uint64_t)hl + bytes };
        struct kiln_part *part = kiln_result_add_part(t->result, "mesh", KILN_DTYPE_BYTES, 1, shape);
        if (!part)
                return -ENOMEM;
        memcpy(part->data, head, (size_t)hl);
        memcpy((uint8_t *)part->data + hl, bin, bytes);
        return relief_result_values(t->result, part, RELIEF_GLB, nt, nv, d);
}

static int complete(struct kiln_task *t, const void *out, uint64_t bytes)
{
        const struct relief_params *p = t->params;
        struct relief_image_info info;
        struct relief_grid g = { 0 };
        struct relief_mesh m = { 0 };
        int r;

        drop_pixels(t->result);
        if ((r = task_dims(t, &info, &g.dims)) < 0)
                return r;
        uint64_t gw = g.dims.grid_w, gh = g.dims.grid_h, ring = relief_ring_len(g.dims.grid_w, g.dims.grid_h);
        if (p->tolerance_mm > 0) {
                if (bytes != gw * gh * sizeof(double) || !(g.h = malloc(bytes)))
                        return bytes != gw * gh * sizeof(double) ? -EINVAL : -ENOMEM;
                memcpy(g.h, out, bytes);
                r = relief_simplify(&g, p->tolerance_mm, &m, t->exec);
                if (r >= 0)
                        r = relief_result_add(&m, p, t->result, t->exec);
                relief_mesh_release(&m);
                free(g.h);
                return r;
        }
        if (p->format == RELIEF_GLB)
                return glb_complete(t, &g.dims, out, bytes);
        uint64_t shape[1] = { bytes };
        struct kiln_part *part = kiln_result_add_part(t->result, "mesh", KILN_DTYPE_BYTES, 1, shape);
        if (!part)
                return -ENOMEM;
        memcpy(part->data, out, bytes);
        return relief_result_values(t->result, part, RELIEF_STL, 2 * (gw - 1) * (gh - 1) + 3 * ring,
                                    gw * gh + ring + 1, &g.dims);
}

const struct kiln_cuda_kind kiln_cuda_kind_image_relief = {
        .name = "image.relief",
        .prepare = prepare,
        .launch = relief_cuda_launch,
        .complete = complete,
};
