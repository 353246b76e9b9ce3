/* image.relief: parameter schema, input, checks and the kind descriptor. */
#include <errno.h>
#include <stddef.h>

#include "image_relief.h"
#include "kind.h"

static const char *const formats[] = { "stl", "glb", NULL };

static const struct kiln_param relief_schema[] = {
        { .name = "width_mm", .type = KILN_PARAM_NUMBER, .min = 1, .max = 10000, .def = "100",
          .doc = "width of the model along +x, mm (the depth follows the image's aspect ratio)",
          KILN_PARAM_AT(struct relief_params, width_mm) },
        /* At least 0.01: the mesh is float32 (STL, glTF), and a base thinner than it
         * resolves collapses the walls' triangles (1e-40 gave a mesh not closed). */
        { .name = "base_mm", .type = KILN_PARAM_NUMBER, .min = 0.01, .max = 1000, .def = "1",
          .doc = "thickness of the solid base under the relief, mm", KILN_PARAM_AT(struct relief_params, base_mm) },
        { .name = "max_height_mm", .type = KILN_PARAM_NUMBER, .min = 0, .max = 1000, .def = "3",
          .doc = "height of the relief above the base for white (black when inverted), mm",
          KILN_PARAM_AT(struct relief_params, max_height_mm) },
        { .name = "invert", .type = KILN_PARAM_BOOL, .def = "false",
          .doc = "lithophane: dark pixels thick, light ones thin", KILN_PARAM_AT(struct relief_params, invert) },
        { .name = "max_side_px", .type = KILN_PARAM_INTEGER, .min = 1, .max = RELIEF_MAX_SIDE_PX, .def = "256",
          .doc = "longer side of the height grid at most this many pixels (area-averaged shrink, never enlarged)",
          KILN_PARAM_AT(struct relief_params, max_side_px) },
        { .name = "tolerance_mm", .type = KILN_PARAM_NUMBER, .min = 0, .max = 1000, .def = "0",
          .doc = "0: one vertex per pixel; above 0 the top surface is simplified while every pixel stays "
                 "within this height of it, mm",
          KILN_PARAM_AT(struct relief_params, tolerance_mm) },
        { .name = "format", .type = KILN_PARAM_STRING, .choices = formats, .def = "\"stl\"",
          .doc = "mesh file: binary STL (mm) or glTF 2.0 binary .glb (metres)",
          KILN_PARAM_AT(struct relief_params, format) },
        { .name = NULL },
};

static const struct kiln_input_spec relief_inputs[] = {
        { .name = "image", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_BYTES) | KILN_DTYPE_BIT(KILN_DTYPE_U8), .ndim = 1,
          .required = true, .doc = "the PNG or JPEG file's bytes (up to 50 megapixels)" },
        { .name = NULL },
};

/* The image is checked when the job is submitted: its header (a claimed size over
 * the limit is refused before anything else is read) and its structure. */
static int check(const void *params, const struct kiln_array *in, size_t n_in, const struct kiln_object *obj,
                 struct kiln_error *err)
{
        const struct kiln_array *img = kiln_inputs_find(in, n_in, "image");
        struct relief_image_info info;
        struct relief_dims d;

        if (!img)
                return kiln_error_set(err, "inputs.image", "inputs.image is required: send it as a binary part");
        int r = relief_image_probe(img->data, img->bytes, true, &info, err);
        if (r < 0)
                return r;
        if (relief_dims_get(&info, params, &d) < 0)
                return kiln_error_set(err, "params", "these params make no grid");
        return 0;
}

/* The full grid's file: the simplified mesh of the same grid is never larger. */
static uint64_t result_size(const void *params, const struct kiln_array *in, size_t n_in,
                            const struct kiln_object *obj)
{
        const struct relief_params *p = params;
        const struct kiln_array *img = kiln_inputs_find(in, n_in, "image");
        struct relief_image_info info;
        struct relief_dims d;

        if (!img || relief_image_probe(img->data, img->bytes, false, &info, NULL) < 0 ||
            relief_dims_get(&info, p, &d) < 0)
                return 0;
        uint64_t gw = d.grid_w, gh = d.grid_h, ring = 2 * (gw - 1) + 2 * (gh - 1);
        uint64_t t = 2 * (gw - 1) * (gh - 1) + 3 * ring, v = gw * gh + ring + 1;
        if (p->format == RELIEF_STL)
                return 84 + 50 * t;
        return 12 + 8 + RELIEF_GLB_JSON_MAX + 8 + 12 * v + 12 * t;
}

const struct kiln_kind kiln_kind_image_relief = {
        .name = "image.relief",
        /* 2: volume_mm3 summed in 64 fixed chunks (mesh.c), which moved its last bits:
         * results of version 1 are not served for it from the cache.
         * 3: the depth follows the image's aspect ratio (heightfield.c). */
        .version = 3,
        .doc = "a closed relief or lithophane mesh (STL or GLB) from a PNG or JPEG image",
        .params = relief_schema,
        .params_size = sizeof(struct relief_params),
        .inputs = relief_inputs,
        /* The CUDA path makes the same bytes (relief_math.h); the scalars come from
         * them by the same host code. */
        .rtol = 0,
        .atol = 0,
        .check = check,
        .result_size = result_size,
        .run_cpu = relief_run_cpu,
};
