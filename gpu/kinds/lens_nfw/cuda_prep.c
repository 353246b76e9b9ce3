/* lens.nfw's host half of the CUDA path: scalars and parts, and the kernel's
 * descriptor (see gpu/cuda/cuda_kind.h). Linked into the plugin only. */
#include <errno.h>
#include <math.h>

#include "../../cuda/cuda_kind.h"
#include "cosmo.h"
#include "lens_nfw.h"

int64_t lens_nfw_cuda_prepare(const void *params, struct kiln_result *ret, struct kiln_cuda_desc *ret_desc)
{
        const struct lens_nfw_params *p = params;
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
        int64_t floats = 0;
        for (int m = 0; m < LENS_NFW_N_MAPS; m++) {
                if (!(p->maps & (1u << m)))
                        continue;
                if (!kiln_result_add_part(ret, lens_nfw_map_names[m], KILN_DTYPE_F32, 2, shape))
                        return -ENOMEM;
                floats += (int64_t)shape[0] * (int64_t)shape[1];
        }
        *ret_desc = (struct kiln_cuda_desc){
                .n = (uint32_t)p->grid_size,
                .flags = p->maps,
                .delta = p->fov_arcsec / p->grid_size,
                .theta_s = s.theta_s_arcsec,
                .kappa_s = s.kappa_s,
        };
        return floats;
}
