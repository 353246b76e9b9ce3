/* The lens parameters shared by lens.nfw and lens.raytrace (SPEC §1.1): their schema
 * entries, stored in the members of the same names of either kind's typed struct
 * `T` (struct lens_nfw_params or struct lens_raytrace_params). Plain data: no JSON. */
#pragma once

#include <math.h>
#include <stdio.h>

#include "kind.h"

/* The halo and redshifts, then the field, then the cosmology; a kind puts its own
 * entries between or after them. */
#define LENS_SCHEMA_HALO(T)                                                                                     \
        { .name = "mass", .type = KILN_PARAM_NUMBER, .required = true, .min = 1e8, .max = 1e17,                 \
          .doc = "M200 of the halo in solar masses", KILN_PARAM_AT(T, mass) },                                  \
        { .name = "concentration", .type = KILN_PARAM_NUMBER, .required = true, .min = 1, .max = 50,            \
          .doc = "concentration c200 = r200 / r_s", KILN_PARAM_AT(T, concentration) },                          \
        { .name = "z_lens", .type = KILN_PARAM_NUMBER, .min = 0.001, .max = 5, .def = "0.3",                    \
          .doc = "redshift of the halo", KILN_PARAM_AT(T, z_lens) },                                            \
        { .name = "z_source", .type = KILN_PARAM_NUMBER, .min = 0.001, .min_exclusive = true, .max = 20,        \
          .def = "1.0", .doc = "redshift of the source plane, greater than z_lens", KILN_PARAM_AT(T, z_source) }

#define LENS_SCHEMA_FIELD(T)                                                                                    \
        { .name = "grid_size", .type = KILN_PARAM_INTEGER, .min = 8, .max = 8192, .def = "64",                  \
          .doc = "N: the output is N x N pixels", KILN_PARAM_AT(T, grid_size) },                                \
        { .name = "fov_arcsec", .type = KILN_PARAM_NUMBER, .min = 0, .min_exclusive = true, .max = 1e6,         \
          .def = "60", .doc = "side of the square field of view in arcsec, centred on the halo",                \
          KILN_PARAM_AT(T, fov_arcsec) }

#define LENS_SCHEMA_COSMOLOGY(T)                                                                                \
        { .name = "h", .type = KILN_PARAM_NUMBER, .min = 0.4, .max = 1.0, .def = "0.7",                         \
          .doc = "Hubble constant H0 / (100 km/s/Mpc), flat Lambda-CDM", KILN_PARAM_AT(T, h) },                 \
        { .name = "omega_m", .type = KILN_PARAM_NUMBER, .min = 0.01, .max = 1.0, .def = "0.3",                  \
          .doc = "matter density parameter, flat Lambda-CDM", KILN_PARAM_AT(T, omega_m) }

/* The check the schema's bounds cannot express: the source lies behind the lens. */
static inline int lens_check_redshifts(double z_lens, double z_source, struct kiln_error *err)
{
        if (z_source > z_lens)
                return 0;
        return kiln_error_set(err, "params.z_source", "params.z_source must be greater than z_lens (%g)", z_lens);
}

/* N x N f32 maps, n_maps of them. */
static inline uint64_t lens_maps_bytes(int grid_size, unsigned n_maps)
{
        uint64_t n = (uint64_t)(grid_size > 0 ? grid_size : 0);
        return (uint64_t)n_maps * n * n * sizeof(float);
}
