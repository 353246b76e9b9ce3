/* lens.nfw: parameter schema, the kind-specific check and the kind descriptor. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "kind.h"
#include "lens_nfw.h"
#include "lens_schema.h"

static const char *const map_choices[] = {
        "kappa", "gamma1", "gamma2", "alpha_x", "alpha_y", "mu", "psi", NULL,
};

static const struct kiln_param lens_nfw_schema[] = {
        LENS_SCHEMA_HALO,
        LENS_SCHEMA_FIELD,
        { .name = "maps", .type = KILN_PARAM_STRING_SET, .def = "[\"kappa\"]", .choices = map_choices,
          .doc = "which maps to compute" },
        LENS_SCHEMA_COSMOLOGY,
        { .name = NULL },
};

static int finish(const void *canonical_json, void *ret_params, char *field, char *msg)
{
        const json_t *o = canonical_json;
        struct lens_common c;
        size_t i;
        json_t *e;

        if (lens_common_read(o, "lens.nfw", &c, field, msg) < 0)
                return -EINVAL;
        struct lens_nfw_params p = {
                .mass = c.mass, .concentration = c.concentration, .z_lens = c.z_lens, .z_source = c.z_source,
                .grid_size = c.grid_size, .fov_arcsec = c.fov_arcsec, .h = c.h, .omega_m = c.omega_m,
        };
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
