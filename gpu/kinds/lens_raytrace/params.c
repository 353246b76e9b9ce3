/* lens.raytrace: parameter schema, the kind-specific check and the kind descriptor. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "kind.h"
#include "lens_raytrace.h"

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
        { .name = "mass", .type = KILN_PARAM_NUMBER, .required = true, .min = 1e8, .max = 1e17,
          .doc = "M200 of the halo in solar masses" },
        { .name = "concentration", .type = KILN_PARAM_NUMBER, .required = true, .min = 1, .max = 50,
          .doc = "concentration c200 = r200 / r_s" },
        { .name = "z_lens", .type = KILN_PARAM_NUMBER, .min = 0.001, .max = 5, .def = "0.3",
          .doc = "redshift of the halo" },
        { .name = "z_source", .type = KILN_PARAM_NUMBER, .min = 0.001, .min_exclusive = true, .max = 20,
          .def = "1.0", .doc = "redshift of the source plane, greater than z_lens" },
        { .name = "grid_size", .type = KILN_PARAM_INTEGER, .min = 8, .max = 8192, .def = "64",
          .doc = "N: the image is N x N pixels" },
        { .name = "fov_arcsec", .type = KILN_PARAM_NUMBER, .min = 0, .min_exclusive = true, .max = 1e6,
          .def = "60", .doc = "side of the square field of view in arcsec, centred on the halo" },
        { .name = "h", .type = KILN_PARAM_NUMBER, .min = 0.4, .max = 1.0, .def = "0.7",
          .doc = "Hubble constant H0 / (100 km/s/Mpc), flat Lambda-CDM" },
        { .name = "omega_m", .type = KILN_PARAM_NUMBER, .min = 0.01, .max = 1.0, .def = "0.3",
          .doc = "matter density parameter, flat Lambda-CDM" },
        { .name = "source", .type = KILN_PARAM_OBJECT, .def = "{}", .fields = source_fields,
          .doc = "the circular Gaussian source on the source plane" },
        { .name = "supersample", .type = KILN_PARAM_INTEGER, .min = 1, .max = 8, .def = "2",
          .doc = "rays per pixel side (ss x ss rays per pixel)" },
        { .name = NULL },
};

static bool get_number(const json_t *o, const char *name, double *ret)
{
        json_t *v = json_object_get(o, name);

        if (!json_is_number(v))
                return false;
        *ret = json_number_value(v);
        return true;
}

static int finish(const void *canonical_json, void *ret_params, char *field, char *msg)
{
        const json_t *o = canonical_json;
        const json_t *src = json_object_get(o, "source");
        struct lens_raytrace_params p = { 0 };
        double grid, ss;

        if (!get_number(o, "mass", &p.mass) || !get_number(o, "concentration", &p.concentration) ||
            !get_number(o, "z_lens", &p.z_lens) || !get_number(o, "z_source", &p.z_source) ||
            !get_number(o, "grid_size", &grid) || !get_number(o, "fov_arcsec", &p.fov_arcsec) ||
            !get_number(o, "h", &p.h) || !get_number(o, "omega_m", &p.omega_m) ||
            !get_number(o, "supersample", &ss) || !get_number(src, "x_arcsec", &p.src_x) ||
            !get_number(src, "y_arcsec", &p.src_y) || !get_number(src, "sigma_arcsec", &p.src_sigma)) {
                snprintf(field, 128, "params");
                snprintf(msg, 128, "params is missing a field of lens.raytrace");
                return -EINVAL;
        }
        p.grid_size = (int)grid;
        p.supersample = (int)ss;
        if (!(p.z_source > p.z_lens)) {
                snprintf(field, 128, "params.z_source");
                snprintf(msg, 128, "params.z_source must be greater than z_lens (%g)", p.z_lens);
                return -EINVAL;
        }
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
