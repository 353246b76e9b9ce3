/* image.relief on the CPU: decode and heightfield (heightfield.c), the full grid or
 * its simplification (simplify.c), the file and its values (mesh.c). */
#include <errno.h>
#include <stdlib.h>

#include "image_relief.h"

int relief_result_values(struct kiln_result *ret, const struct kiln_part *part, int format, uint64_t triangles,
                         uint64_t vertices, const struct relief_dims *d)
{
        double volume;
        int r = relief_mesh_volume(part->data, part->bytes, format, &volume);
        if (r < 0)
                return r;
        if ((r = kiln_result_add_int(ret, "triangles", (int64_t)triangles)) < 0 ||
            (r = kiln_result_add_int(ret, "vertices", (int64_t)vertices)) < 0 ||
            (r = kiln_result_add_scalar(ret, "volume_mm3", volume)) < 0 ||
            (r = kiln_result_add_scalar(ret, "width_mm", d->width_mm)) < 0 ||
            (r = kiln_result_add_scalar(ret, "depth_mm", d->depth_mm)) < 0)
                return r;
        return 0;
}

int relief_result_add(const struct relief_mesh *m, const struct relief_params *p, struct kiln_result *ret,
                      struct kiln_exec *ex)
{
        uint64_t shape[1] = { relief_mesh_bytes(m, p->format) };
        struct kiln_part *part = kiln_result_add_part(ret, "mesh", KILN_DTYPE_BYTES, 1, shape);
        if (!part)
                return -ENOMEM;
        int r = relief_mesh_write(m, p->format, part->data, ex);
        if (r >= 0)
                r = relief_result_values(ret, part, p->format, relief_mesh_triangles(m), relief_mesh_vertices(m),
                                         &m->grid->dims);
        if (r >= 0)
                kiln_exec_progress(ex, 1.0);
        return r;
}

int relief_run_cpu(struct kiln_task *t)
{
        const struct relief_params *p = t->params;
        const struct kiln_array *img = kiln_inputs_find(t->inputs, t->n_inputs, "image");
        struct relief_image_info info;
        struct relief_grid g = { 0 };
        struct relief_mesh m = { 0 };

        if (!img || relief_image_probe(img->data, img->bytes, false, &info, NULL) < 0)
                return kiln_error_set(&t->error, "inputs.image", "inputs.image is not a PNG or JPEG image kilnd reads");
        int r = relief_heightfield(img->data, img->bytes, &info, p, &g, t->exec);
        if (r == -EBADMSG) /* damage the header checks could not see (a JPEG's coded data) */
                return kiln_error_set(&t->error, "inputs.image", "inputs.image is corrupt: its pixel data do not decode");
        if (r < 0)
                return r;
        if (p->tolerance_mm > 0)
                r = relief_simplify(&g, p->tolerance_mm, &m, t->exec);
        else
                relief_mesh_full(&g, &m);
        if (r >= 0)
                r = relief_result_add(&m, p, t->result, t->exec);
        relief_mesh_release(&m);
        free(g.h);
        return r;
}
