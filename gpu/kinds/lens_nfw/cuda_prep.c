/* lens.nfw's host half of the CUDA path: scalars and parts, and the kernel's
 * parameter words (see gpu/cuda/cuda_kind.h). Linked into the plugin only. */

#include "../../cuda/cuda_kind.h"
#include "cosmo.h"
#include "lens_nfw.h"
#include "lens_nfw_cuda.h"

static int prepare(const struct kiln_task *t, const uint64_t *in_offsets, struct kiln_cuda_desc *ret_desc,
                   uint64_t *ret_work)
{
        const struct lens_nfw_params *p = t->params;
        struct nfw_lens_scalars s;
        float *maps[LENS_NFW_N_MAPS];
        int r = lens_nfw_begin(p, t->result, &s, maps);

        if (r < 0)
                return r;
        uint32_t *w = ret_desc->params;
        w[LENS_NFW_W_N] = (uint32_t)p->grid_size;
        w[LENS_NFW_W_MAPS] = p->maps & LENS_NFW_ALL_MAPS;
        kiln_cuda_put_f64(w, LENS_NFW_W_DELTA, p->fov_arcsec / p->grid_size);
        kiln_cuda_put_f64(w, LENS_NFW_W_THETA_S, s.theta_s_arcsec);
        kiln_cuda_put_f64(w, LENS_NFW_W_KAPPA_S, s.kappa_s);
        *ret_work = (uint64_t)p->grid_size * (uint64_t)p->grid_size;
        return 0;
}

const struct kiln_cuda_kind kiln_cuda_kind_lens_nfw = {
        .name = "lens.nfw",
        .prepare = prepare,
        .launch = lens_nfw_cuda_launch,
};
