/* lens.raytrace: parameter schema, the kind-specific check and the kind descriptor. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "kind.h"
#include "lens_raytrace.h"
#include "lens_nfw/lens_schema.h"

static const struct kiln_param source_fields[] = {
        { .name = "x_arcsec", .type = KILN_PARAM_NUMBER, .min = -1e6, .max = 1e6, .def = "0",
          .doc = "source centre, x, arcsec from the halo centre" },
        { .name = "y_arcsec", .type = KILN_PARAM_NUMBER, .min = -1e6, .max = 1e6, .def = "0",
          .doc = "source centre, y, arcsec from the halo centre" },
        { .name = "sigma_arcsec", .type = KILN_PARAM_NUMBER, .min = 0, .min_exclusive = true, .max = 1e6,
          .def = "0.5", .doc = "width of the circular Gaussian source (peak 1), arcsec" },
        { .name = NULL },
};

/* The lens.nfw lens parameters (SPEC 1.1, without `maps`), then the source. */
static const struct kiln_param lens_raytrace_schema[] = {
        LENS_SCHEMA_HALO,
        LENS_SCHEMA_FIELD,
        LENS_SCHEMA_COSMOLOGY,
        { .name = "source", .type = KILN_PARAM_OBJECT, .def = "{}", .fields = source_fields,
          .doc = "the circular Gaussian source on the source plane" },
        { .name = "supersample", .type = KILN_PARAM_INTEGER, .min = 1, .max = 8, .def = "2",
          .doc = "rays per pixel side (ss x ss rays per pixel)" },
        { .name = NULL },
};

static int finish(const void *canonical_json, void *ret_params, char *field, char *msg)
{
        const json_t *o = canonical_json;
        const json_t *src = json_object_get(o, "source");
        struct lens_common c;
        double ss;

        if (lens_common_read(o, "lens.raytrace", &c, field, msg) < 0)
                return -EINVAL;
        struct lens_raytrace_params p = {
                .mass = c.mass, .concentration = c.concentration, .z_lens = c.z_lens, .z_source = c.z_source,
                .grid_size = c.grid_size, .fov_arcsec = c.fov_arcsec, .h = c.h, .omega_m = c.omega_m,
        };
        if (!lens_get_number(o, "supersample", &ss) || !lens_get_number(src, "x_arcsec", &p.src_x) ||
            !lens_get_number(src, "y_arcsec", &p.src_y) || !lens_get_number(src, "sigma_arcsec", &p.src_sigma)) {
                snprintf(field, 128, "params");
                snprintf(msg, 128, "params is missing a field of lens.raytrace");
                return -EINVAL;
        }
        p.supersample = (int)ss;
        memcpy(ret_params, &p, sizeof(p));
        return 0;
}

static uint64_t result_bytes(const void *params)
{
        const struct lens_raytrace_params *p = params;
        uint64_t n = (uint64_t)(p->grid_size > 0 ? p->grid_size : 0);

        return n * n * sizeof(float);
}

const struct kiln_kind kiln_kind_lens_raytrace = {
        .name = "lens.raytrace",
        .version = 1,
        .doc = "a Gaussian source lensed by an NFW halo (ray shooting with supersampling)",
        .params = lens_raytrace_schema,
        .params_size = sizeof(struct lens_raytrace_params),
        .finish = finish,
        .result_bytes = result_bytes,
        .run_cpu = lens_raytrace_run_cpu,
};
