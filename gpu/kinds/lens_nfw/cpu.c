/* lens.nfw on the CPU: scalars from cosmo.c, maps from nfw_math.h. */
#include <errno.h>
#include <math.h>
#include <stddef.h>

#include "cosmo.h"
#include "lens_nfw.h"
#include "nfw_math.h"

const char *const lens_nfw_map_names[LENS_NFW_N_MAPS] = {
        "kappa", "gamma1", "gamma2", "alpha_x", "alpha_y", "mu", "psi",
};

/* What the row loop needs: the halo and one output array per map (NULL when the map
 * was not requested). */
struct nfw_grid {
        int n;
        double delta;
        double theta_s;
        double kappa_s;
        float *out[LENS_NFW_N_MAPS];
};

/* Writes the requested maps of pixel (i, j) from v (the centre pixel). */
static void put_values(const struct nfw_grid *g, int i, int j, const double *v)
{
        size_t k = (size_t)i * (size_t)g->n + (size_t)j;
        for (int m = 0; m < LENS_NFW_N_MAPS; m++)
                if (g->out[m])
                        g->out[m][k] = (float)v[m];
}

/* Writes the requested maps of pixel (i, j) at (tx, ty), radius r, from the radial
 * part q: what nfw_pixel_at computes, but only what was asked for. */
static inline void put_pixel(const struct nfw_grid *g, int i, int j, double tx, double ty, double r,
                             const struct nfw_radial *q)
{
        float *const *o = g->out;
        size_t k = (size_t)i * (size_t)g->n + (size_t)j;

        if (o[NFW_MAP_KAPPA])
                o[NFW_MAP_KAPPA][k] = (float)q->kappa;
        if (o[NFW_MAP_GAMMA1] || o[NFW_MAP_GAMMA2]) {
                double g1, g2;
                nfw_shear_at(tx, ty, r, q, &g1, &g2);
                if (o[NFW_MAP_GAMMA1])
                        o[NFW_MAP_GAMMA1][k] = (float)g1;
                if (o[NFW_MAP_GAMMA2])
                        o[NFW_MAP_GAMMA2][k] = (float)g2;
        }
        if (o[NFW_MAP_ALPHA_X])
                o[NFW_MAP_ALPHA_X][k] = (float)(q->kbar * tx);
        if (o[NFW_MAP_ALPHA_Y])
                o[NFW_MAP_ALPHA_Y][k] = (float)(q->kbar * ty);
        if (o[NFW_MAP_MU])
                o[NFW_MAP_MU][k] = (float)q->mu;
        if (o[NFW_MAP_PSI])
                o[NFW_MAP_PSI][k] = (float)q->psi;
}

/* Fills the pixels of the top-left quadrant's row i from its diagonal on (columns
 * j >= i), with their mirrors in the other three quadrants and their transposes
 * (row j, column i): eight pixels per evaluation of the radial terms.
 *
 * The pixel centres are symmetric about the halo: the offsets (j + 0.5 - n/2) of
 * columns j and n-1-j are exact negatives of each other in floating point, and so
 * are those of rows i and n-1-i; row and column offsets are the same numbers, and
 * hypot ignores signs and order. So the eight pixels have the same radius to the
 * last bit. The costly part (nfw_terms_at: logs, atan, sqrt; nfw_radial_at) is
 * evaluated once for the eight; each pixel then gets its own directional part
 * (shear, deflection). The maps are bit-for-bit those of nfw_pixel at every pixel. */
static void nfw_row_pair(const struct nfw_grid *g, int i)
{
        double half = 0.5 * g->n;
        int i2 = g->n - 1 - i;
        double ty = (i + 0.5 - half) * g->delta;
        double ty2 = (i2 + 0.5 - half) * g->delta;

        for (int j = i; j <= g->n - 1 - j; j++) {
                int j2 = g->n - 1 - j;
                double tx = (j + 0.5 - half) * g->delta;
                double tx2 = (j2 + 0.5 - half) * g->delta;
                double r = hypot(tx, ty);
                if (r == 0.0) { /* only with an odd grid, at its centre */
                        double v[NFW_N_MAPS];
                        nfw_pixel_centre(g->kappa_s, v);
                        put_values(g, i, j, v);
                        continue;
                }
                struct nfw_terms t = nfw_terms_at(r / g->theta_s);
                struct nfw_radial q = nfw_radial_at(&t, g->theta_s, g->kappa_s);
                put_pixel(g, i, j, tx, ty, r, &q);
                put_pixel(g, i, j2, tx2, ty, r, &q);
                put_pixel(g, i2, j, tx, ty2, r, &q);
                put_pixel(g, i2, j2, tx2, ty2, r, &q);
                if (j == i)
                        continue;
                put_pixel(g, j, i, ty, tx, r, &q);
                put_pixel(g, j, i2, ty2, tx, r, &q);
                put_pixel(g, j2, i, ty, tx2, r, &q);
                put_pixel(g, j2, i2, ty2, tx2, r, &q);
        }
}

int lens_nfw_add_scalars(struct kiln_result *ret, const struct nfw_lens_scalars *s)
{
        const struct {
                const char *name;
                double value;
        } all[] = {
                { "r200_kpc", s->r200_kpc },
                { "r_s_kpc", s->r_s_kpc },
                { "rho_s_msun_kpc3", s->rho_s_msun_kpc3 },
                { "sigma_cr_msun_kpc2", s->sigma_cr_msun_kpc2 },
                { "kappa_s", s->kappa_s },
                { "theta_s_arcsec", s->theta_s_arcsec },
                { "d_l_mpc", s->d_l_mpc },
                { "d_s_mpc", s->d_s_mpc },
                { "d_ls_mpc", s->d_ls_mpc },
                { "theta_e_arcsec", s->theta_e_arcsec },
        };

        for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++) {
                int r = kiln_result_add_scalar(ret, all[k].name, all[k].value);
                if (r < 0)
                        return r;
        }
        return 0;
}

int lens_nfw_begin(const struct lens_nfw_params *p, struct kiln_result *ret, struct nfw_lens_scalars *ret_s,
                   float *ret_maps[LENS_NFW_N_MAPS])
{
        struct nfw_lens_scalars s;
        int r;

        if (!p || !ret || p->grid_size <= 0 || !(p->fov_arcsec > 0.0) || !isfinite(p->fov_arcsec) ||
            (p->maps & ~LENS_NFW_ALL_MAPS) || !p->maps)
                return -EINVAL;
        r = kiln_nfw_lens_scalars(p->mass, p->concentration, p->z_lens, p->z_source, p->h, p->omega_m, &s);
        if (r < 0)
                return r;
        r = lens_nfw_add_scalars(ret, &s);
        if (r < 0)
                return r;
        uint64_t shape[2] = { (uint64_t)p->grid_size, (uint64_t)p->grid_size };
        for (int m = 0; m < LENS_NFW_N_MAPS; m++) {
                ret_maps[m] = NULL;
                if (!(p->maps & (1u << m)))
                        continue;
                struct kiln_part *part = kiln_result_add_part(ret, lens_nfw_map_names[m], KILN_DTYPE_F32, 2, shape);
                if (!part)
                        return -ENOMEM;
                ret_maps[m] = part->data;
        }
        *ret_s = s;
        return 0;
}

int lens_nfw_run_cpu(const void *params, struct kiln_result *ret, struct kiln_exec *ex)
{
        const struct lens_nfw_params *p = params;
        struct nfw_lens_scalars s;
        struct nfw_grid g = { 0 };
        int r = lens_nfw_begin(p, ret, &s, g.out);

        if (r < 0)
                return r;
        g.n = p->grid_size;
        g.delta = p->fov_arcsec / p->grid_size;
        g.theta_s = s.theta_s_arcsec;
        g.kappa_s = s.kappa_s;

        /* Row i covers pairs - i radii: progress counts radii done. */
        int pairs = (g.n + 1) / 2;
        double total = 0.5 * pairs * (pairs + 1.0), done = 0.0;
        for (int i = 0; i < pairs; i++) {
                if (kiln_exec_stopped(ex))
                        return -ECANCELED;
                nfw_row_pair(&g, i);
                done += pairs - i;
                kiln_exec_progress(ex, done / total);
        }
        return 0;
}
