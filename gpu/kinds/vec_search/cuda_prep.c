/* vec.search's host half of the CUDA path (see gpu/cuda/cuda_kind.h): the task's
 * parameter words, the collection's image kept on each device (its rows and their
 * squared norms, one block of the snapshot), and the result made from the device's
 * answer. A query the device could not settle (more near-ties than it keeps, or a
 * collection of 2^32 rows or more) is answered here by the CPU search, exactly the
 * same way, so the answer never depends on where it ran. So is a job whose query is
 * a stored item (params.query_id): the core stages only a task's own inputs for
 * the kernel, and such a task has none; complete() gathers the row from the
 * snapshot as the CPU path does (vec_task_queries). Linked into the plugin only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vec_search/vec_search.h"
#include "vec_search/vec_search_cuda.h"

static int prepare(const struct kiln_task *t, const uint64_t *in_offsets, struct kiln_cuda_desc *ret_desc,
                   uint64_t *ret_work)
{
        const struct vec_search_params *p = t->params;
        const struct vec_collection *c = t->object ? t->object->snapshot : NULL;
        const struct kiln_array *a = kiln_inputs_find(t->inputs, t->n_inputs, "queries");
        bool stored = p->query_id[0] != '\0';
        uint64_t kk, q = vec_task_query_count(t);
        uint32_t *w = ret_desc->params;

        /* The queries are the kind's first (only) input spec, or a stored id (never
         * both); the worker checked them against the collection (kiln_kind_check)
         * before the batch. */
        if (!c || q < 1 || q > VEC_Q_MAX || p->k < 1 || (stored && a) ||
            (!stored && (a->ndim != 2 || a->shape[1] != c->dim || in_offsets[0] == UINT64_MAX)))
                return -EINVAL;
        kk = c->count < (uint64_t)p->k ? c->count : (uint64_t)p->k;
        w[VEC_W_Q] = (uint32_t)q;
        w[VEC_W_K] = (uint32_t)p->k;
        w[VEC_W_DIM] = c->dim;
        w[VEC_W_METRIC] = (uint32_t)c->metric;
        w[VEC_W_COUNT] = (uint32_t)c->count;
        w[VEC_W_COUNT + 1] = (uint32_t)(c->count >> 32);
        w[VEC_W_KK] = (uint32_t)kk;
        /* Rows are 32-bit on the device; a stored id's row is not in the inputs. */
        w[VEC_W_HOST] = c->count >= UINT32_MAX || stored;
        w[VEC_W_IN] = stored ? 0 : (uint32_t)in_offsets[0];
        w[VEC_W_IN + 1] = stored ? 0 : (uint32_t)(in_offsets[0] >> 32);
        kiln_cuda_put_f64(w, VEC_W_MAX_NORM, c->max_norm);
        ret_desc->out_bytes = vec_cuda_out_bytes(q, kk);
        *ret_work = q;
        return 0;
}

/* The rows and their squared norms: one block of the snapshot (collection.c). */
static int object_image(const struct kiln_object *obj, const void **ret_data, uint64_t *ret_bytes)
{
        const struct vec_collection *c = obj ? obj->snapshot : NULL;

        if (!c)
                return -EINVAL;
        *ret_data = c->rows;
        *ret_bytes = c->count * ((uint64_t)c->dim + 1) * sizeof(float);
        return 0;
}

/* The task's result from its output region; flagged queries (and every query of a
 * task the device skipped) searched on the CPU. */
static int complete(struct kiln_task *t, const void *out, uint64_t bytes)
{
        const struct vec_search_params *p = t->params;
        const struct vec_collection *c = t->object->snapshot;
        uint64_t q = vec_task_query_count(t), kk = c->count < (uint64_t)p->k ? c->count : (uint64_t)p->k;
        const unsigned char *base = out;
        size_t cells = q * kk > 0 ? q * kk : 1;
        uint64_t *index = malloc(cells * sizeof(*index));
        float *score = malloc(cells * sizeof(*score));
        float *prepared = NULL;
        bool host = c->count >= UINT32_MAX || p->query_id[0] != '\0';
        int r = index && score ? 0 : -ENOMEM;

        if (r >= 0 && bytes < vec_cuda_out_bytes(q, kk))
                r = -EIO;
        for (uint64_t i = 0; r >= 0 && i < q; i++) {
                int32_t flag;
                bool rows_ok = true;
                memcpy(&flag, base + i * 4, sizeof(flag));
                if (flag == 0 && !host) {
                        for (uint64_t h = 0; h < kk; h++) {
                                uint32_t row;
                                memcpy(&row, base + vec_cuda_rows_at(q) + (i * kk + h) * 4, sizeof(row));
                                index[i * kk + h] = row;
                                rows_ok = rows_ok && row < c->count;
                        }
                        memcpy(score + i * kk, base + vec_cuda_scores_at(q, kk) + i * kk * 4, kk * sizeof(float));
                        /* A row past the collection is no answer (vec_result_build
                         * would read past its ids): the host answers the query. */
                        if (rows_ok)
                                continue;
                }
                if (!prepared) {
                        const struct vec_collection *cc;
                        size_t m;
                        r = vec_task_queries(t, &cc, &prepared, &m, &t->error);
                        if (r < 0)
                                break;
                }
                r = vec_search_cpu(c, prepared + i * c->dim, 1, (uint32_t)p->k, NULL, index + i * kk, score + i * kk);
        }
        if (r >= 0)
                r = vec_result_build(t->result, c, t->object->version, q, (uint32_t)p->k, index, score, (uint32_t)kk);
        free(prepared);
        free(index);
        free(score);
        return r;
}

/* What the launch allocates on the device (kernel.cu, vec_cuda_plan_of). */
static uint64_t scratch_bytes(const struct kiln_cuda_desc *desc, unsigned n_tasks, uint64_t object_bytes)
{
        struct vec_cuda_plan p = vec_cuda_plan_of(desc, n_tasks);

        (void)object_bytes;
        return vec_cuda_plan_bytes(&p);
}

const struct kiln_cuda_kind kiln_cuda_kind_vec_search = {
        .name = "vec.search",
        .object_class = "vec.collection",
        .prepare = prepare,
        .launch = vec_search_cuda_launch,
        .scratch_bytes = scratch_bytes,
        .complete = complete,
        .object_image = object_image,
        .device_release = vec_cublas_device_release,
};
