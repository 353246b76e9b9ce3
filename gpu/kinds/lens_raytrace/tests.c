/* lens.raytrace's parity and benchmark cases (see kind_tests.h). */
#include <errno.h>
#include <stdio.h>

#include "kind_tests.h"
#include "lens_raytrace.h"

static struct lens_raytrace_params scene(int n, double mass, double sx, double sigma, int ss)
{
        return (struct lens_raytrace_params){ .mass = mass, .concentration = 5, .z_lens = 0.3, .z_source = 1.0,
                                              .grid_size = n, .fov_arcsec = 120, .h = 0.7, .omega_m = 0.3,
                                              .src_x = sx, .src_y = 0.5, .src_sigma = sigma, .supersample = ss };
}

static void put(struct kiln_case *c, const struct lens_raytrace_params *p)
{
        snprintf(c->label, sizeof(c->label), "grid %d, ss %d, source x %g sigma %g", p->grid_size, p->supersample,
                 p->src_x, p->src_sigma);
        c->params = p;
        c->work = (uint64_t)p->grid_size * (uint64_t)p->grid_size;
}

static int parity(struct kiln_cases **ret)
{
        struct kiln_cases *cs = kiln_cases_new(5, 5 * sizeof(struct lens_raytrace_params));
        if (!cs)
                return -ENOMEM;
        struct lens_raytrace_params *p = cs->storage;
        p[0] = scene(16, 1e15, 0, 0.3, 1);
        p[1] = scene(65, 1e15, 1.0, 0.5, 3);
        p[2] = scene(128, 5e14, -2.0, 2.0, 2);
        p[3] = scene(31, 1e13, 0.1, 0.05, 8);
        p[4] = scene(200, 1e15, 0, 0.2, 4);
        for (size_t i = 0; i < cs->n; i++)
                put(&cs->cases[i], &p[i]);
        *ret = cs;
        return 0;
}

/* Grid 64 << size (up to 8192), supersample 2, masses a little apart. */
static int bench(unsigned size, size_t n, struct kiln_cases **ret)
{
        if (size > 7)
                return -ERANGE;
        struct kiln_cases *cs = kiln_cases_new(n, n * sizeof(struct lens_raytrace_params));
        if (!cs)
                return -ENOMEM;
        struct lens_raytrace_params *p = cs->storage;
        for (size_t i = 0; i < n; i++) {
                p[i] = scene(64 << size, 1e15 * (1 + 1e-3 * (double)i), 0.5, 0.5, 2);
                put(&cs->cases[i], &p[i]);
        }
        *ret = cs;
        return 0;
}

const struct kiln_kind_tests kiln_kind_tests_lens_raytrace = {
        .kind = &kiln_kind_lens_raytrace,
        .parity = parity,
        .bench = bench,
        .work_unit = "pixels",
};
