/* lens.nfw: parameter schema, the kind-specific check and the kind descriptor. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "kind.h"
#include "lens_nfw.h"

static const char *const map_choices[] = {
        "kappa", "gamma1", "gamma2", "alpha_x", "alpha_y", "mu", "psi", NULL,
};

static const struct kiln_param lens_nfw_schema[] = {
        { .name = "mass", .type = KILN_PARAM_NUMBER, .required = true, .min = 1e8, .max = 1e17,
          .doc = "M200 of the halo in solar masses" },
        { .name = "concentration", .type = KILN_PARAM_NUMBER, .required = true, .min = 1, .max = 50,
          .doc = "concentration c200 = r200 / r_s" },
        { .name = "z_lens", .type = KILN_PARAM_NUMBER, .min = 0.001, .max = 5, .def = "0.3",
          .doc = "redshift of the halo" },
        { .name = "z_source", .type = KILN_PARAM_NUMBER, .min = 0.001, .min_exclusive = true, .max = 20,
          .def = "1.0", .doc = "redshift of the source plane, greater than z_lens" },
        { .name = "grid_size", .type = KILN_PARAM_INTEGER, .min = 8, .max = 8192, .def = "64",
          .doc = "N: the maps are N x N pixels" },
        { .name = "fov_arcsec", .type = KILN_PARAM_NUMBER, .min = 0, .min_exclusive = true, .max = 1e6,
          .def = "60", .doc = "side of the square field of view in arcsec, centred on the halo" },
        { .name = "maps", .type = KILN_PARAM_STRING_SET, .def = "[\"kappa\"]", .choices = map_choices,
          .doc = "which maps to compute" },
        { .name = "h", .type = KILN_PARAM_NUMBER, .min = 0.4, .max = 1.0, .def = "0.7",
          .doc = "Hubble constant H0 / (100 km/s/Mpc), flat Lambda-CDM" },
        { .name = "omega_m", .type = KILN_PARAM_NUMBER, .min = 0.01, .max = 1.0, .def = "0.3",
          .doc = "matter density parameter, flat Lambda-CDM" },
        { .name = NULL },
};

/* Reads a number member of the canonical object; false when absent or not a number. */
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
        struct lens_nfw_params p = { 0 };
        double grid;
        size_t i;
        json_t *e;

        if (!get_number(o, "mass", &p.mass) || !get_number(o, "concentration", &p.concentration) ||
            !get_number(o, "z_lens", &p.z_lens) || !get_number(o, "z_source", &p.z_source) ||
            !get_number(o, "grid_size", &grid) || !get_number(o, "fov_arcsec", &p.fov_arcsec) ||
            !get_number(o, "h", &p.h) || !get_number(o, "omega_m", &p.omega_m)) {
                snprintf(field, 128, "params");
                snprintf(msg, 128, "params is missing a field of lens.nfw");
                return -EINVAL;
        }
        p.grid_size = (int)grid;
        json_array_foreach(json_object_get(o, "maps"), i, e) {
                for (int m = 0; m < LENS_NFW_N_MAPS; m++)
                        if (json_is_string(e) && strcmp(json_string_value(e), lens_nfw_map_names[m]) == 0)
                                p.maps |= 1u << m;
        }
        if (!p.maps) {
                snprintf(field, 128, "params.maps");
                snprintf(msg, 128, "params.maps must name at least one map");
                return -EINVAL;
        }
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
        const struct lens_nfw_params *p = params;
        uint64_t n = (uint64_t)(p->grid_size > 0 ? p->grid_size : 0);

        return (uint64_t)__builtin_popcount(p->maps & LENS_NFW_ALL_MAPS) * n * n * sizeof(float);
}

const struct kiln_kind kiln_kind_lens_nfw = {
        .name = "lens.nfw",
        .version = 1,
        .doc = "gravitational-lensing maps of an NFW dark-matter halo",
        .params = lens_nfw_schema,
        .params_size = sizeof(struct lens_nfw_params),
        .finish = finish,
        .result_bytes = result_bytes,
        .run_cpu = lens_nfw_run_cpu,
};
