/* lens.raytrace's host half of the CUDA path (see gpu/cuda/cuda_kind.h). Linked into
 * the plugin only. */
#include "../../cuda/cuda_kind.h"
#include "../lens_nfw/cosmo.h"
#include "lens_raytrace.h"
#include "lens_raytrace_cuda.h"

static int prepare(const struct kiln_task *t, const uint64_t *in_offsets, struct kiln_cuda_desc *ret_desc,
                   uint64_t *ret_work)
{
        const struct lens_raytrace_params *p = t->params;
        struct nfw_lens_scalars s;
        float *img;
        int r = lens_raytrace_begin(p, t->result, &s, &img);

        if (r < 0)
                return r;
        uint32_t *w = ret_desc->params;
        w[LENS_RAY_W_N] = (uint32_t)p->grid_size;
        w[LENS_RAY_W_SS] = (uint32_t)p->supersample;
        kiln_cuda_put_f64(w, LENS_RAY_W_DELTA, p->fov_arcsec / p->grid_size);
        kiln_cuda_put_f64(w, LENS_RAY_W_THETA_S, s.theta_s_arcsec);
        kiln_cuda_put_f64(w, LENS_RAY_W_KAPPA_S, s.kappa_s);
        kiln_cuda_put_f64(w, LENS_RAY_W_SRC_X, p->src_x);
        kiln_cuda_put_f64(w, LENS_RAY_W_SRC_Y, p->src_y);
        kiln_cuda_put_f64(w, LENS_RAY_W_SRC_SIGMA, p->src_sigma);
        *ret_work = (uint64_t)p->grid_size * (uint64_t)p->grid_size;
        return 0;
}

const struct kiln_cuda_kind kiln_cuda_kind_lens_raytrace = {
        .name = "lens.raytrace",
        .prepare = prepare,
        .launch = lens_raytrace_cuda_launch,
};
