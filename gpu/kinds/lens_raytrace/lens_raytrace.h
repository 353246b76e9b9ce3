/* The `lens.raytrace` job kind: a Gaussian source lensed by an NFW halo, by ray
 * shooting with supersampling (SPEC section 1.2). Shared by the kind descriptor
 * (kind.c), the CPU implementation (cpu.c) and the CUDA preparation; no jansson. */
#pragma once

#include "kind.h"

/* The typed, validated parameters of one lens.raytrace job. */
struct lens_raytrace_params {
        double mass;          /* M200, solar masses */
        double concentration; /* c200 */
        double z_lens;
        double z_source;      /* > z_lens */
        int grid_size;        /* N: the image is N x N */
        double fov_arcsec;    /* side of the square field */
        double h;             /* H0 / (100 km/s/Mpc) */
        double omega_m;       /* flat Lambda-CDM */
        double src_x;         /* source centre, arcsec */
        double src_y;
        double src_sigma;     /* Gaussian width, arcsec, > 0 */
        int supersample;      /* sub-rays per pixel side, 1..8 */
};

/* The kind descriptor (kind.c). */
extern const struct kiln_kind kiln_kind_lens_raytrace;

/* The CPU implementation (cpu.c), as described by kiln_kind.run_cpu: adds the
 * lens.nfw scalars and the part `image` f32[N][N] to `ret`. Returns >= 0,
 * -ECANCELED when ex->stop was raised, -ENOMEM, or -EINVAL for unusable params. */
int lens_raytrace_run_cpu(const void *params, struct kiln_result *ret, struct kiln_exec *ex);

struct nfw_lens_scalars;
/* Checks the params, computes the lens scalars into *ret_s and adds them and the
 * (zeroed) `image` part to `ret`; returns the image's floats through *ret_image.
 * Shared by the CPU and CUDA paths. Returns >= 0 or -EINVAL / -ENOMEM / -ENOSPC. */
int lens_raytrace_begin(const struct lens_raytrace_params *p, struct kiln_result *ret,
                        struct nfw_lens_scalars *ret_s, float **ret_image);
