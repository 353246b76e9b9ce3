/* lens.nfw's host half of the CUDA path: scalars and parts, and the kernel's
 * descriptor (see gpu/cuda/cuda_kind.h). Linked into the plugin only. */

#include "../../cuda/cuda_kind.h"
#include "cosmo.h"
#include "lens_nfw.h"

int64_t lens_nfw_cuda_prepare(const void *params, struct kiln_result *ret, struct kiln_cuda_desc *ret_desc)
{
        const struct lens_nfw_params *p = params;
        struct nfw_lens_scalars s;
        float *maps[LENS_NFW_N_MAPS];
        int r = lens_nfw_begin(p, ret, &s, maps);

        if (r < 0)
                return r;
        int64_t floats = 0;
        for (int m = 0; m < LENS_NFW_N_MAPS; m++)
                if (maps[m])
                        floats += (int64_t)p->grid_size * p->grid_size;
        *ret_desc = (struct kiln_cuda_desc){
                .n = (uint32_t)p->grid_size,
                .flags = p->maps,
                .delta = p->fov_arcsec / p->grid_size,
                .theta_s = s.theta_s_arcsec,
                .kappa_s = s.kappa_s,
        };
        return floats;
}
