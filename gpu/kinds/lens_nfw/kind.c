/* lens.nfw: parameter schema, checks and the kind descriptor. */
#include <errno.h>
#include <float.h>
#include <stddef.h>

#include "kind.h"
#include "lens_nfw.h"
#include "lens_schema.h"

static const char *const map_choices[] = {
        "kappa", "gamma1", "gamma2", "alpha_x", "alpha_y", "mu", "psi", NULL,
};

/* map_choices are in the order of the LENS_NFW_* bits: the stored set is the mask. */
static const struct kiln_param lens_nfw_schema[] = {
        LENS_SCHEMA_HALO(struct lens_nfw_params),
        LENS_SCHEMA_FIELD(struct lens_nfw_params),
        { .name = "maps", .type = KILN_PARAM_STRING_SET, .def = "[\"kappa\"]", .choices = map_choices,
          .doc = "which maps to compute", KILN_PARAM_AT(struct lens_nfw_params, maps) },
        LENS_SCHEMA_COSMOLOGY(struct lens_nfw_params),
        { .name = NULL },
};

static int finish(void *params, struct kiln_error *err)
{
        const struct lens_nfw_params *p = params;

        if (!(p->maps & LENS_NFW_ALL_MAPS))
                return kiln_error_set(err, "params.maps", "params.maps must name at least one map");
        /* A pixel side that underflows (fov_arcsec 5e-324) would put every pixel at
         * the halo's centre, and make them all Inf. */
        if (!(p->fov_arcsec / p->grid_size >= DBL_MIN))
                return kiln_error_set(err, "params.fov_arcsec",
                                      "params.fov_arcsec %g is too small for grid_size %d: a pixel "
                                      "(fov_arcsec / grid_size) must be at least %g arcsec",
                                      p->fov_arcsec, p->grid_size, DBL_MIN);
        return lens_check_redshifts(p->z_lens, p->z_source, err);
}

static uint64_t result_bytes(const void *params)
{
        const struct lens_nfw_params *p = params;

        return lens_maps_bytes(p->grid_size, (unsigned)__builtin_popcount(p->maps & LENS_NFW_ALL_MAPS));
}

static uint64_t result_size(const void *params, const struct kiln_array *in, size_t n_in,
                            const struct kiln_object *obj)
{
        return result_bytes(params);
}

static int run(struct kiln_task *t)
{
        return lens_nfw_run_cpu(t->params, t->result, t->exec);
}

const struct kiln_kind kiln_kind_lens_nfw = {
        .name = "lens.nfw",
        .version = 1,
        .doc = "gravitational-lensing maps of an NFW dark-matter halo",
        .params = lens_nfw_schema,
        .params_size = sizeof(struct lens_nfw_params),
        /* The CUDA kernel evaluates the same double formulas; only the order of
         * operations the compilers choose differs before the cast to float. */
        .rtol = 1e-5,
        .atol = 1e-6,
        .finish = finish,
        .result_size = result_size,
        .result_bytes = result_bytes,
        .run_cpu = run,
};
