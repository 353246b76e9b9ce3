/* The `lens.nfw` job kind: lensing maps of an NFW halo (SPEC section 1.1).
 *
 * This header is shared by the kind descriptor (kind.c), the CPU
 * implementation (cpu.c) and the CUDA kernel; it does not include jansson. */
#pragma once

#include <stdint.h>

#include "kind.h"

/* Bits of lens_nfw_params.maps, in SPEC order (the same order as enum nfw_map in
 * nfw_math.h and the parts of a result). */
enum lens_nfw_map_bit {
        LENS_NFW_KAPPA = 1u << 0,
        LENS_NFW_GAMMA1 = 1u << 1,
        LENS_NFW_GAMMA2 = 1u << 2,
        LENS_NFW_ALPHA_X = 1u << 3,
        LENS_NFW_ALPHA_Y = 1u << 4,
        LENS_NFW_MU = 1u << 5,
        LENS_NFW_PSI = 1u << 6,
};

#define LENS_NFW_N_MAPS 7
#define LENS_NFW_ALL_MAPS ((1u << LENS_NFW_N_MAPS) - 1u)

/* Map names in SPEC order, indexed by bit position: "kappa", "gamma1", "gamma2",
 * "alpha_x", "alpha_y", "mu", "psi". */
extern const char *const lens_nfw_map_names[LENS_NFW_N_MAPS];

/* The typed, validated parameters of one lens.nfw job. */
struct lens_nfw_params {
        double mass;          /* M200, solar masses */
        double concentration; /* c200 */
        double z_lens;
        double z_source;      /* > z_lens */
        int grid_size;        /* N: the maps are N x N */
        double fov_arcsec;    /* side of the square field */
        uint32_t maps;        /* LENS_NFW_* bits, at least one */
        double h;             /* H0 / (100 km/s/Mpc) */
        double omega_m;       /* flat Lambda-CDM */
};

/* The kind descriptor (kind.c). */
extern const struct kiln_kind kiln_kind_lens_nfw;

/* The CPU implementation of lens.nfw (cpu.c), as described by kiln_kind.run_cpu:
 * `params` is a struct lens_nfw_params. Adds the result scalars and one f32[N][N]
 * part per requested map (SPEC order) to `ret`. Returns >= 0, -ECANCELED when
 * ex->stop was raised, -ENOMEM, or -EINVAL for parameters the math cannot use. */
int lens_nfw_run_cpu(const void *params, struct kiln_result *ret, struct kiln_exec *ex);

struct nfw_lens_scalars;
/* Adds the ten lens.nfw result scalars (SPEC order) to `ret`; shared by every kind
 * and backend that reports them. Returns >= 0 or -ENOSPC. */
int lens_nfw_add_scalars(struct kiln_result *ret, const struct nfw_lens_scalars *s);

/* What every backend does first: checks the params, computes the scalars and adds
 * them to `ret`, and adds one zeroed f32[N][N] part per requested map. Writes the
 * scalars and each map's data (NULL for a map not asked for). Returns >= 0,
 * -EINVAL or -ENOMEM. */
int lens_nfw_begin(const struct lens_nfw_params *p, struct kiln_result *ret, struct nfw_lens_scalars *ret_s,
                   float *ret_maps[LENS_NFW_N_MAPS]);
