/* lens.raytrace's host half of the CUDA path (see gpu/cuda/cuda_kind.h). Linked into
 * the plugin only. */
#include "../../cuda/cuda_kind.h"
#include "../lens_nfw/cosmo.h"
#include "lens_raytrace.h"

int64_t lens_raytrace_cuda_prepare(const void *params, struct kiln_result *ret, struct kiln_cuda_desc *ret_desc)
{
        const struct lens_raytrace_params *p = params;
        struct nfw_lens_scalars s;
        float *img;
        int r = lens_raytrace_begin(p, ret, &s, &img);
        if (r < 0)
                return r;
        *ret_desc = (struct kiln_cuda_desc){
                .n = (uint32_t)p->grid_size,
                .flags = (uint32_t)p->supersample,
                .delta = p->fov_arcsec / p->grid_size,
                .theta_s = s.theta_s_arcsec,
                .kappa_s = s.kappa_s,
                .src_x = p->src_x,
                .src_y = p->src_y,
                .src_sigma = p->src_sigma,
        };
        return (int64_t)p->grid_size * p->grid_size;
}
