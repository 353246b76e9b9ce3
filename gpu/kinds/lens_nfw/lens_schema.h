/* The lens parameters shared by lens.nfw and lens.raytrace (SPEC §1.1): their schema
 * entries and their reading from the canonical JSON. Included by the kinds'
 * params.c only (it needs jansson; the compute half does not). */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "kind.h"

/* The halo and redshifts, then the field, then the cosmology; a kind puts its own
 * entries between or after them. */
#define LENS_SCHEMA_HALO                                                                                        \
        { .name = "mass", .type = KILN_PARAM_NUMBER, .required = true, .min = 1e8, .max = 1e17,                 \
          .doc = "M200 of the halo in solar masses" },                                                          \
        { .name = "concentration", .type = KILN_PARAM_NUMBER, .required = true, .min = 1, .max = 50,            \
          .doc = "concentration c200 = r200 / r_s" },                                                           \
        { .name = "z_lens", .type = KILN_PARAM_NUMBER, .min = 0.001, .max = 5, .def = "0.3",                    \
          .doc = "redshift of the halo" },                                                                      \
        { .name = "z_source", .type = KILN_PARAM_NUMBER, .min = 0.001, .min_exclusive = true, .max = 20,        \
          .def = "1.0", .doc = "redshift of the source plane, greater than z_lens" }

#define LENS_SCHEMA_FIELD                                                                                       \
        { .name = "grid_size", .type = KILN_PARAM_INTEGER, .min = 8, .max = 8192, .def = "64",                  \
          .doc = "N: the output is N x N pixels" },                                                             \
        { .name = "fov_arcsec", .type = KILN_PARAM_NUMBER, .min = 0, .min_exclusive = true, .max = 1e6,         \
          .def = "60", .doc = "side of the square field of view in arcsec, centred on the halo" }

#define LENS_SCHEMA_COSMOLOGY                                                                                   \
        { .name = "h", .type = KILN_PARAM_NUMBER, .min = 0.4, .max = 1.0, .def = "0.7",                         \
          .doc = "Hubble constant H0 / (100 km/s/Mpc), flat Lambda-CDM" },                                      \
        { .name = "omega_m", .type = KILN_PARAM_NUMBER, .min = 0.01, .max = 1.0, .def = "0.3",                  \
          .doc = "matter density parameter, flat Lambda-CDM" }

/* The shared lens parameters as read from a canonical object. */
struct lens_common {
        double mass, concentration, z_lens, z_source;
        int grid_size;
        double fov_arcsec, h, omega_m;
};

/* Reads a number member; false when absent or not a number. */
static inline bool lens_get_number(const json_t *o, const char *name, double *ret)
{
        json_t *v = json_object_get(o, name);
        if (!json_is_number(v))
                return false;
        *ret = json_number_value(v);
        return true;
}

/* Reads the shared parameters and checks z_source > z_lens. Returns 0, or -22
 * (EINVAL) with the field and a sentence written into field/msg (128 bytes each). */
static inline int lens_common_read(const json_t *o, const char *kind, struct lens_common *ret, char *field, char *msg)
{
        double grid;
        if (!lens_get_number(o, "mass", &ret->mass) || !lens_get_number(o, "concentration", &ret->concentration) ||
            !lens_get_number(o, "z_lens", &ret->z_lens) || !lens_get_number(o, "z_source", &ret->z_source) ||
            !lens_get_number(o, "grid_size", &grid) || !lens_get_number(o, "fov_arcsec", &ret->fov_arcsec) ||
            !lens_get_number(o, "h", &ret->h) || !lens_get_number(o, "omega_m", &ret->omega_m)) {
                snprintf(field, 128, "params");
                snprintf(msg, 128, "params is missing a field of %s", kind);
                return -22;
        }
        ret->grid_size = (int)grid;
        if (!(ret->z_source > ret->z_lens)) {
                snprintf(field, 128, "params.z_source");
                snprintf(msg, 128, "params.z_source must be greater than z_lens (%g)", ret->z_lens);
                return -22;
        }
        return 0;
}
