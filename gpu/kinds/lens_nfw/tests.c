/* lens.nfw's parity and benchmark cases (see kind_tests.h). */
#include <errno.h>
#include <stdio.h>

#include "kind_tests.h"
#include "lens_nfw.h"

static struct lens_nfw_params halo(int n, double mass, uint32_t maps)
{
        return (struct lens_nfw_params){ .mass = mass, .concentration = 5, .z_lens = 0.3, .z_source = 1.0,
                                         .grid_size = n, .fov_arcsec = 60, .maps = maps, .h = 0.7,
                                         .omega_m = 0.3 };
}

static void put(struct kiln_case *c, const struct lens_nfw_params *p, const char *what)
{
        snprintf(c->label, sizeof(c->label), "grid %d, mass %.0e, %s", p->grid_size, p->mass, what);
        c->params = p;
        c->work = (uint64_t)p->grid_size * (uint64_t)p->grid_size;
}

static int parity(struct kiln_cases **ret)
{
        struct kiln_cases *cs = kiln_cases_new(5, 5 * sizeof(struct lens_nfw_params));
        if (!cs)
                return -ENOMEM;
        struct lens_nfw_params *p = cs->storage;
        p[0] = halo(8, 1e14, LENS_NFW_ALL_MAPS);
        p[1] = halo(33, 1e15, LENS_NFW_ALL_MAPS); /* odd: a pixel on the cusp */
        p[2] = halo(256, 3e14, LENS_NFW_ALL_MAPS);
        p[3] = halo(64, 1e9, LENS_NFW_KAPPA | LENS_NFW_PSI);
        p[4] = halo(100, 1e16, LENS_NFW_MU | LENS_NFW_GAMMA2);
        static const char *const what[] = { "all maps", "all maps, odd", "all maps", "kappa+psi", "mu+gamma2" };
        for (size_t i = 0; i < cs->n; i++)
                put(&cs->cases[i], &p[i], what[i]);
        *ret = cs;
        return 0;
}

/* Grid 64 << size (up to 8192), the kappa map, masses a little apart. */
static int bench(unsigned size, size_t n, struct kiln_cases **ret)
{
        if (size > 7)
                return -ERANGE;
        struct kiln_cases *cs = kiln_cases_new(n, n * sizeof(struct lens_nfw_params));
        if (!cs)
                return -ENOMEM;
        struct lens_nfw_params *p = cs->storage;
        for (size_t i = 0; i < n; i++) {
                p[i] = halo(64 << size, 1e14 * (1 + 1e-3 * (double)i), LENS_NFW_KAPPA);
                put(&cs->cases[i], &p[i], "kappa");
        }
        *ret = cs;
        return 0;
}

const struct kiln_kind_tests kiln_kind_tests_lens_nfw = {
        .kind = &kiln_kind_lens_nfw,
        .parity = parity,
        .bench = bench,
        .work_unit = "pixels",
};
