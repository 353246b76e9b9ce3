/* lens.raytrace on the CPU: scalars from lens_nfw's cosmo.c, pixels from
 * raytrace_math.h. */
#include <errno.h>
#include <math.h>
#include <stddef.h>

#include "../lens_nfw/cosmo.h"
#include "../lens_nfw/lens_nfw.h"
#include "lens_raytrace.h"
#include "raytrace_math.h"

int lens_raytrace_begin(const struct lens_raytrace_params *p, struct kiln_result *ret,
                        struct nfw_lens_scalars *ret_s, float **ret_image)
{
        struct nfw_lens_scalars s;
        int r;

        if (!p || !ret || p->grid_size <= 0 || !(p->fov_arcsec > 0.0) || !isfinite(p->fov_arcsec) ||
            !(p->src_sigma > 0.0) || !isfinite(p->src_x) || !isfinite(p->src_y) || p->supersample < 1 ||
            p->supersample > 8)
                return -EINVAL;
        r = kiln_nfw_lens_scalars(p->mass, p->concentration, p->z_lens, p->z_source, p->h, p->omega_m, &s);
        if (r < 0)
                return r;
        r = lens_nfw_add_scalars(ret, &s);
        if (r < 0)
                return r;
        uint64_t shape[2] = { (uint64_t)p->grid_size, (uint64_t)p->grid_size };
        struct kiln_part *part = kiln_result_add_part(ret, "image", KILN_DTYPE_F32, 2, shape);
        if (!part)
                return -ENOMEM;
        *ret_s = s;
        *ret_image = part->data;
        return 0;
}

int lens_raytrace_run_cpu(const void *params, struct kiln_result *ret, struct kiln_exec *ex)
{
        const struct lens_raytrace_params *p = params;
        struct nfw_lens_scalars s;
        float *img;
        int r = lens_raytrace_begin(p, ret, &s, &img);
        if (r < 0)
                return r;

        int n = p->grid_size;
        double delta = p->fov_arcsec / n, half = 0.5 * n;
        for (int i = 0; i < n; i++) {
                if (kiln_exec_stopped(ex))
                        return -ECANCELED;
                double ty = (i + 0.5 - half) * delta;
                for (int j = 0; j < n; j++) {
                        double tx = (j + 0.5 - half) * delta;
                        img[(size_t)i * (size_t)n + (size_t)j] =
                                (float)raytrace_pixel(tx, ty, delta, p->supersample, s.theta_s_arcsec, s.kappa_s,
                                                      p->src_x, p->src_y, p->src_sigma);
                }
                kiln_exec_progress(ex, (double)(i + 1) / n);
        }
        return 0;
}
