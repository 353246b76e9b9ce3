/* lens.raytrace: parameter schema, checks and the kind descriptor. */
#include <errno.h>
#include <stddef.h>

#include "kind.h"
#include "lens_nfw/lens_schema.h"
#include "lens_raytrace.h"

static const struct kiln_param source_fields[] = {
        { .name = "x_arcsec", .type = KILN_PARAM_NUMBER, .min = -1e6, .max = 1e6, .def = "0",
          .doc = "source centre, x, arcsec from the halo centre", KILN_PARAM_AT(struct lens_raytrace_params, src_x) },
        { .name = "y_arcsec", .type = KILN_PARAM_NUMBER, .min = -1e6, .max = 1e6, .def = "0",
          .doc = "source centre, y, arcsec from the halo centre", KILN_PARAM_AT(struct lens_raytrace_params, src_y) },
        /* At least 1e-6: the Gaussian divides by 2 sigma^2, which below about 1e-154
         * is 0 (the centre ray would be 0/0). */
        { .name = "sigma_arcsec", .type = KILN_PARAM_NUMBER, .min = 1e-6, .max = 1e6,
          .def = "0.5", .doc = "width of the circular Gaussian source (peak 1), arcsec",
          KILN_PARAM_AT(struct lens_raytrace_params, src_sigma) },
        { .name = NULL },
};

/* The lens.nfw lens parameters (SPEC 1.1, without `maps`), then the source. */
static const struct kiln_param lens_raytrace_schema[] = {
        LENS_SCHEMA_HALO(struct lens_raytrace_params),
        LENS_SCHEMA_FIELD(struct lens_raytrace_params),
        LENS_SCHEMA_COSMOLOGY(struct lens_raytrace_params),
        { .name = "source", .type = KILN_PARAM_OBJECT, .def = "{}", .fields = source_fields,
          .doc = "the circular Gaussian source on the source plane" },
        { .name = "supersample", .type = KILN_PARAM_INTEGER, .min = 1, .max = 8, .def = "2",
          .doc = "rays per pixel side (ss x ss rays per pixel)",
          KILN_PARAM_AT(struct lens_raytrace_params, supersample) },
        { .name = NULL },
};

static int finish(void *params, struct kiln_error *err)
{
        const struct lens_raytrace_params *p = params;

        return lens_check_redshifts(p->z_lens, p->z_source, err);
}

static uint64_t result_bytes(const void *params)
{
        const struct lens_raytrace_params *p = params;

        return lens_maps_bytes(p->grid_size, 1);
}

static uint64_t result_size(const void *params, const struct kiln_array *in, size_t n_in,
                            const struct kiln_object *obj)
{
        return result_bytes(params);
}

static int run(struct kiln_task *t)
{
        return lens_raytrace_run_cpu(t->params, t->result, t->exec);
}

const struct kiln_kind kiln_kind_lens_raytrace = {
        .name = "lens.raytrace",
        .version = 1,
        .doc = "a Gaussian source lensed by an NFW halo (ray shooting with supersampling)",
        .params = lens_raytrace_schema,
        .params_size = sizeof(struct lens_raytrace_params),
        /* A pixel sums up to 64 exponentials of the deflected rays; near the
         * critical curves a last-bit difference in the deflection moves a ray by
         * more, so the tolerance is wider than lens.nfw's. */
        .rtol = 1e-4,
        .atol = 1e-5,
        .finish = finish,
        .result_size = result_size,
        .result_bytes = result_bytes,
        .run_cpu = run,
};
