/* risk.score's host half of the CUDA path: the result's values and parts (the CPU
 * path's layout, risk_result_begin), the kernel's parameter words, and the forest's
 * image kept resident on each device (see gpu/cuda/cuda_kind.h). Linked into the
 * plugin only. */
#include <errno.h>

#include "risk_score/risk_cuda.h"
#include "risk_score/risk_score.h"

static int prepare(const struct kiln_task *t, const uint64_t *in_offsets, struct kiln_cuda_desc *ret_desc,
                   uint64_t *ret_work)
{
        const struct risk_params *p = t->params;
        const struct kiln_array *a = risk_rows(t->inputs, t->n_inputs);
        enum risk_model_id m = risk_model_of(p);
        void *out[2];
        int r;

        /* The rows are the kind's first (only) input spec. */
        if (!a || a->shape[0] < 1 || a->shape[0] > RISK_MAX_ROWS || in_offsets[0] == UINT64_MAX)
                return -EINVAL;
        if (m == RISK_MODEL_STORED) {
                /* The plugin has its own copy of the class: the core matched it by
                 * name (kiln_cuda_kind.object_class), so no pointer is compared. */
                const struct risk_forest *f = t->object ? t->object->snapshot : NULL;
                if (!f || a->shape[1] != f->n_features)
                        return -EINVAL;
        } else if (a->shape[1] != risk_altman_columns(m)) {
                return -EINVAL;
        }
        if ((r = risk_result_begin(t, m, a->shape[0], out)) < 0)
                return r;
        uint32_t *w = ret_desc->params;
        w[RISK_W_MODEL] = (uint32_t)m;
        w[RISK_W_ROWS] = (uint32_t)a->shape[0];
        w[RISK_W_COLS] = (uint32_t)a->shape[1];
        w[RISK_W_MARGIN] = m == RISK_MODEL_STORED && p->margin;
        w[RISK_W_IN] = (uint32_t)in_offsets[0];
        w[RISK_W_IN + 1] = (uint32_t)(in_offsets[0] >> 32);
        *ret_work = a->shape[0];
        return 0;
}

/* The forest's whole block: the kernel finds its arrays by the header's offsets. */
static int object_image(const struct kiln_object *obj, const void **ret_data, uint64_t *ret_bytes)
{
        const struct risk_forest *f = obj ? obj->snapshot : NULL;

        if (!f)
                return -EINVAL;
        *ret_data = f;
        *ret_bytes = f->bytes;
        return 0;
}

const struct kiln_cuda_kind kiln_cuda_kind_risk_score = {
        .name = "risk.score",
        .object_class = "risk.model",
        .prepare = prepare,
        .launch = risk_score_cuda_launch,
        .object_image = object_image,
};
