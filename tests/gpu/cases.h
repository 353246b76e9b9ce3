/* Parameter cases shared by the parity test and the kernel benchmark: typed params
 * built without JSON, so both programs link only gpu/'s compute libraries. */
#pragma once

#include "lens_nfw/lens_nfw.h"
#include "lens_raytrace/lens_raytrace.h"

static inline struct lens_nfw_params case_nfw(int n, double mass, uint32_t maps)
{
        return (struct lens_nfw_params){ .mass = mass, .concentration = 5, .z_lens = 0.3, .z_source = 1.0,
                                         .grid_size = n, .fov_arcsec = 60, .maps = maps, .h = 0.7,
                                         .omega_m = 0.3 };
}

static inline struct lens_raytrace_params case_ray(int n, double mass, double sx, double sigma, int ss)
{
        return (struct lens_raytrace_params){ .mass = mass, .concentration = 5, .z_lens = 0.3, .z_source = 1.0,
                                              .grid_size = n, .fov_arcsec = 120, .h = 0.7, .omega_m = 0.3,
                                              .src_x = sx, .src_y = 0.5, .src_sigma = sigma, .supersample = ss };
}
