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

/* Writes the requested maps of pixel (i, j) from v. */
static inline void put_pixel(const struct nfw_grid *g, int i, int j, const double *v)
{
        size_t k = (size_t)i * (size_t)g->n + (size_t)j;
        for (int m = 0; m < LENS_NFW_N_MAPS; m++)
                if (g->out[m])
                        g->out[m][k] = (float)v[m];
}

/* Fills row i and its mirror row n-1-i (i <= n-1-i) of every requested map.
 *
 * The pixel centres are symmetric about the halo: the offsets (j + 0.5 - n/2) of
 * columns j and n-1-j are exact negatives of each other in floating point, and so
 * are those of the two rows, so the four pixels (i or n-1-i, j or n-1-j) have the
 * same radius to the last bit. The costly part (nfw_terms_at: logs, atan, sqrt) is
 * evaluated once for the four; each pixel then gets its own directional part
 * (nfw_pixel_at). The maps are bit-for-bit those of nfw_pixel at every pixel. */
static void nfw_row_pair(const struct nfw_grid *g, int i)
{
        double half = 0.5 * g->n;
        int i2 = g->n - 1 - i;
        double ty = (i + 0.5 - half) * g->delta;
        double ty2 = (i2 + 0.5 - half) * g->delta;
        double v[NFW_N_MAPS];

        for (int j = 0; j <= g->n - 1 - j; j++) {
                int j2 = g->n - 1 - j;
                double tx = (j + 0.5 - half) * g->delta;
                double tx2 = (j2 + 0.5 - half) * g->delta;
                double r = hypot(tx, ty);
                if (r == 0.0) { /* only with an odd grid, at its centre */
                        nfw_pixel_centre(g->kappa_s, v);
                        put_pixel(g, i, j, v);
                        continue;
                }
                struct nfw_terms t = nfw_terms_at(r / g->theta_s);
                nfw_pixel_at(tx, ty, r, &t, g->theta_s, g->kappa_s, v);
                put_pixel(g, i, j, v);
                nfw_pixel_at(tx2, ty, r, &t, g->theta_s, g->kappa_s, v);
                put_pixel(g, i, j2, v);
                nfw_pixel_at(tx, ty2, r, &t, g->theta_s, g->kappa_s, v);
                put_pixel(g, i2, j, v);
                nfw_pixel_at(tx2, ty2, r, &t, g->theta_s, g->kappa_s, v);
                put_pixel(g, i2, j2, v);
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

        int pairs = (g.n + 1) / 2;
        for (int i = 0; i < pairs; i++) {
                if (kiln_exec_stopped(ex))
                        return -ECANCELED;
                nfw_row_pair(&g, i);
                kiln_exec_progress(ex, (double)(i + 1) / pairs);
        }
        return 0;
}
