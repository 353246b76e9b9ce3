/* vec.search: parameter schema, checks against the collection, the result, and
 * the CPU entry points (one job, or a batch of jobs grouped by collection version
 * into one search).
 *
 * A job's queries are either vectors (inputs.queries) or one stored item
 * (params.query_id). The queries' dim and rows are checked at submission against
 * the metric and dim the collection's meta records (check_meta); whether an id is
 * in the collection is known only against the items of the version the job is
 * bound to, so it is checked when the job runs (kiln_kind_check with the object),
 * where everything else is checked again. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtext.h"
#include "vec_search.h"

static const struct kiln_param vec_search_schema[] = {
        { .name = "collection", .type = KILN_PARAM_STRING, .required = true,
          .doc = "the stored collection (vec.put) to search",
          KILN_PARAM_AT(struct vec_search_params, collection) },
        { .name = "k", .type = KILN_PARAM_INTEGER, .min = 1, .max = VEC_K_MAX, .def = "10",
          .doc = "neighbours per query (more than the collection holds returns all of it)",
          KILN_PARAM_AT(struct vec_search_params, k) },
        { .name = "query_id", .type = KILN_PARAM_STRING,
          .doc = "a stored id (1 to 256 bytes) whose vector is the query, instead of inputs.queries",
          KILN_PARAM_AT(struct vec_search_params, query_id) },
        { .name = NULL },
};

static const struct kiln_input_spec vec_search_inputs[] = {
        /* Not required: params.query_id may stand for it (check). */
        { .name = "queries", .dtypes = KILN_DTYPE_BIT(KILN_DTYPE_F32), .ndim = 2,
          .json_param = "queries",
          .doc = "query vectors f32[q][dim], q 1..10000, dim the collection's (or params.query_id)" },
        { .name = NULL },
};

/* The queries of a job checked against the collection's metric and dim: their
 * count and dim, and each row finite (and non-zero for cosine, bounded for ip and
 * l2). metric 0 and dim 0 (the collection not known): only the shape and
 * finiteness. */
static int check_queries(const struct kiln_array *in, size_t n_in, enum kiln_metric metric, uint32_t cdim,
                         const char *name, struct kiln_error *err)
{
        const struct kiln_array *a = kiln_inputs_find(in, n_in, "queries");
        uint64_t q, dim;

        if (!a || a->dtype != KILN_DTYPE_F32 || a->ndim != 2)
                return kiln_error_set(err, "inputs.queries", "inputs.queries must be f32[q][dim]");
        q = a->shape[0];
        dim = a->shape[1];
        if (q < 1 || q > VEC_Q_MAX)
                return kiln_error_set(err, "inputs.queries", "inputs.queries holds %llu queries; 1 to %u are allowed",
                                      (unsigned long long)q, VEC_Q_MAX);
        if (cdim && dim != cdim)
                return kiln_error_set(err, "inputs.queries",
                                      "inputs.queries has dim %llu, but collection \"%s\" holds vectors of dim %u",
                                      (unsigned long long)dim, name, cdim);
        if (dim < 1 || dim > KILN_VEC_DIM_MAX)
                return kiln_error_set(err, "inputs.queries", "inputs.queries has dim %llu; 1 to %u are allowed",
                                      (unsigned long long)dim, KILN_VEC_DIM_MAX);
        for (uint64_t i = 0; i < q; i++) {
                /* Without the collection, ip's rule (finite, bounded) is the common part. */
                int r = vec_row_check(metric ? metric : KILN_METRIC_IP, (const float *)a->data + i * dim,
                                      (uint32_t)dim);
                if (r < 0) {
                        char field[48];
                        snprintf(field, sizeof(field), "inputs.queries[%llu]", (unsigned long long)i);
                        return kiln_error_set(err, field, "%s %s", field, vec_row_problem(r));
                }
        }
        return 0;
}

/* The first bytes of a UTF-8 string, at most `max`, cut between characters. */
static void utf8_prefix(const char *s, char *ret, size_t max)
{
        size_t n = strlen(s);

        if (n > max) {
                n = max;
                while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                        n--;
        }
        memcpy(ret, s, n);
        ret[n] = '\0';
}

/* params.query_id against the collection (c NULL: not known yet, nothing to
 * check): its row in *ret_row. */
static int check_query_id(const char *id, const struct vec_collection *c, uint64_t version, uint64_t *ret_row,
                          struct kiln_error *err)
{
        uint64_t row = 0;
        char shown[65];

        if (c && vec_collection_find(c, id, strlen(id), &row) < 0) {
                utf8_prefix(id, shown, sizeof(shown) - 1);
                return kiln_error_set(err, "params.query_id",
                                      "params.query_id \"%s%s\" is not an id of the collection (version %llu)", shown,
                                      strlen(shown) < strlen(id) ? "..." : "", (unsigned long long)version);
        }
        if (ret_row)
                *ret_row = row;
        return 0;
}

/* Exactly one of inputs.queries and params.query_id: 1 for the queries, 0 for
 * an id, or -EINVAL. */
static int check_one_of(const struct vec_search_params *p, const struct kiln_array *in, size_t n_in,
                        struct kiln_error *err)
{
        bool vectors = kiln_inputs_find(in, n_in, "queries") != NULL;

        if (p->query_id[0] && vectors)
                return kiln_error_set(err, "params.query_id",
                                      "params.query_id and inputs.queries are both given: a search takes one or the "
                                      "other");
        if (!p->query_id[0] && !vectors)
                return kiln_error_set(err, "inputs.queries",
                                      "inputs.queries is required unless params.query_id names a stored id: send the "
                                      "vectors as a binary part or as params.queries");
        return vectors ? 1 : 0;
}

/* A job's queries: exactly one of inputs.queries and params.query_id, checked
 * against the collection when obj is known. For a query_id, its row in *ret_row. */
static int check_job(const struct vec_search_params *p, const struct kiln_array *in, size_t n_in,
                     const struct kiln_object *obj, uint64_t *ret_row, struct kiln_error *err)
{
        const struct vec_collection *c = obj ? obj->snapshot : NULL;
        int vectors = check_one_of(p, in, n_in, err);

        if (vectors < 0)
                return vectors;
        if (!vectors)
                return check_query_id(p->query_id, c, obj ? obj->version : 0, ret_row, err);
        return check_queries(in, n_in, c ? c->metric : 0, c ? c->dim : 0, p->collection, err);
}

static int check(const void *params, const struct kiln_array *in, size_t n_in, const struct kiln_object *obj,
                 struct kiln_error *err)
{
        return check_job(params, in, n_in, obj, NULL, err);
}

/* At submission: the queries against the metric and dim of the collection's meta
 * (kiln_vec_meta_encode), or, without a meta it can read, their shape and
 * finiteness alone. A query_id waits for the items, when the job runs. */
static int check_meta(const void *params, const struct kiln_array *in, size_t n_in, uint64_t version,
                      const void *meta, size_t meta_len, struct kiln_error *err)
{
        const struct vec_search_params *p = params;
        enum kiln_metric metric = 0;
        uint32_t dim = 0;
        int vectors = check_one_of(p, in, n_in, err);

        (void)version;
        if (vectors <= 0)
                return vectors;
        if (kiln_vec_meta_decode(meta, meta_len, &metric, &dim) < 0) {
                metric = 0;
                dim = 0;
        }
        return check_queries(in, n_in, metric, dim, p->collection, err);
}

/* The queries and answers a job asks for (k cut to the collection's count, when
 * it is known). */
static void answer_shape(const void *params, const struct kiln_array *in, size_t n_in,
                         const struct kiln_object *obj, uint64_t *ret_q, uint64_t *ret_k)
{
        const struct vec_search_params *p = params;
        const struct kiln_array *a = kiln_inputs_find(in, n_in, "queries");
        const struct vec_collection *c = obj ? obj->snapshot : NULL;
        uint64_t k = (uint64_t)p->k, q = VEC_Q_MAX;

        if (c && c->count < k)
                k = c->count;
        if (a && a->ndim == 2)
                q = a->shape[0];
        else if (p->query_id[0])
                q = 1;
        *ret_q = q;
        *ret_k = k;
}

/* The ids' text, with the collection: q arrays of k strings, none longer than its
 * longest id, and the NUL. Without it, unknown (0). */
static uint64_t values_text_size(const void *params, const struct kiln_array *in, size_t n_in,
                                 const struct kiln_object *obj)
{
        const struct vec_collection *c = obj ? obj->snapshot : NULL;
        uint64_t q, k;

        if (!c)
                return 0;
        answer_shape(params, in, n_in, obj, &q, &k);
        return q * (k * (c->id_text_max + 1) + 2) + 3;
}

/* The scores, and with the collection the ids' text (kind.h). */
static uint64_t result_size(const void *params, const struct kiln_array *in, size_t n_in,
                            const struct kiln_object *obj)
{
        uint64_t q, k;

        answer_shape(params, in, n_in, obj, &q, &k);
        return q * k * sizeof(float) + values_text_size(params, in, n_in, obj);
}

uint64_t vec_task_query_count(const struct kiln_task *t)
{
        const struct vec_search_params *p = t->params;
        const struct kiln_array *a = kiln_inputs_find(t->inputs, t->n_inputs, "queries");

        if (a)
                return a->ndim == 2 ? a->shape[0] : 0;
        return p->query_id[0] ? 1 : 0;
}

int vec_task_queries(const struct kiln_task *t, const struct vec_collection **ret_c, float **ret_q, size_t *ret_m,
                     struct kiln_error *err)
{
        const struct vec_search_params *p = t->params;
        const struct vec_collection *c = t->object && t->object->snapshot ? t->object->snapshot : NULL;
        const struct kiln_array *a;
        uint64_t row = 0;
        float *q;
        int r;

        if (!c)
                return kiln_error_set(err, "params.collection", "params.collection names no loaded collection");
        r = check_job(p, t->inputs, t->n_inputs, t->object, &row, err);
        if (r < 0)
                return r;
        if (p->query_id[0]) {
                /* The row as stored. A put stored it as vec_row_prepare made it, so it
                 * is already the query the put's vector becomes, bit for bit, and is
                 * not prepared again (under cosine that could move a last bit). */
                q = malloc((size_t)c->dim * sizeof(float));
                if (!q)
                        return -ENOMEM;
                memcpy(q, c->rows + row * c->dim, (size_t)c->dim * sizeof(float));
                *ret_c = c;
                *ret_q = q;
                *ret_m = 1;
                return 0;
        }
        a = kiln_inputs_find(t->inputs, t->n_inputs, "queries");
        q = malloc(a->bytes ? a->bytes : 1);
        if (!q)
                return -ENOMEM;
        memcpy(q, a->data, a->bytes);
        for (uint64_t i = 0; i < a->shape[0]; i++)
                vec_row_prepare(c->metric, q + i * c->dim, c->dim); /* checked above */
        *ret_c = c;
        *ret_q = q;
        *ret_m = (size_t)a->shape[0];
        return 0;
}

int vec_result_build(struct kiln_result *res, const struct vec_collection *c, uint64_t version, size_t m,
                     uint32_t k, const uint64_t *index, const float *score, uint32_t stride)
{
        uint32_t n_out = c->count < k ? (uint32_t)c->count : k;
        uint64_t shape[2] = { m, n_out };
        struct kiln_jtext j;
        struct kiln_part *part;
        char id[KILN_VEC_ID_MAX + 1];
        int r;

        kiln_jtext_init(&j);
        kiln_jtext_open(&j);
        for (size_t i = 0; i < m; i++) {
                kiln_jtext_open(&j);
                for (uint32_t h = 0; h < n_out; h++) {
                        size_t len;
                        const uint8_t *b = vec_collection_id(c, index[i * stride + h], &len);
                        memcpy(id, b, len);
                        id[len] = '\0';
                        kiln_jtext_str(&j, id);
                }
                kiln_jtext_close(&j);
        }
        kiln_jtext_close(&j);
        if ((r = kiln_result_take_jtext(res, "ids", &j)) < 0)
                return r;
        if ((r = kiln_result_add_int(res, "count", (int64_t)c->count)) < 0 ||
            (r = kiln_result_add_int(res, "collection_version", (int64_t)version)) < 0)
                return r;
        part = kiln_result_add_part(res, "scores", KILN_DTYPE_F32, 2, shape);
        if (!part)
                return -ENOMEM;
        for (size_t i = 0; i < m; i++)
                memcpy((float *)part->data + i * n_out, score + i * stride, n_out * sizeof(float));
        return 0;
}

/* ---- running on the CPU ---- */

/* The tasks of one search: a batch's jobs on one collection version. */
struct group {
        struct kiln_task **t;
        size_t n;
};

/* Abandoned when every job of the group is. */
static bool group_stopped(void *ctx)
{
        const struct group *g = ctx;

        for (size_t i = 0; i < g->n; i++)
                if (!kiln_exec_stopped(g->t[i]->exec))
                        return false;
        return true;
}

static void group_progress(void *ctx, double fraction)
{
        const struct group *g = ctx;

        for (size_t i = 0; i < g->n; i++)
                kiln_exec_progress(g->t[i]->exec, fraction);
}

static bool same_version(const struct kiln_task *a, const struct kiln_task *b)
{
        return a->object && b->object && a->object->snapshot == b->object->snapshot &&
               a->object->version == b->object->version;
}

/* Runs the group's jobs (all checked, queries prepared) as one search with the
 * largest k, and cuts each job's answer out of it: the top k' of a ranking are
 * the first k' of its top k. Sets every task's status. */
static void run_group(struct group *g, float *const *qs, const size_t *ms)
{
        const struct vec_collection *c = g->t[0]->object->snapshot;
        uint32_t kmax = 0;
        size_t m = 0, at = 0;
        float *q = NULL, *score = NULL;
        uint64_t *index = NULL;
        int r;

        for (size_t i = 0; i < g->n; i++) {
                const struct vec_search_params *p = g->t[i]->params;
                kmax = (uint32_t)p->k > kmax ? (uint32_t)p->k : kmax;
                m += ms[i];
        }
        uint32_t n_out = c->count < kmax ? (uint32_t)c->count : kmax;
        q = g->n == 1 ? qs[0] : malloc(m * c->dim * sizeof(float));
        size_t cells = m * n_out > 0 ? m * n_out : 1;
        index = malloc(cells * sizeof(*index));
        score = malloc(cells * sizeof(*score));
        r = q && index && score ? 0 : -ENOMEM;
        for (size_t i = 0; r >= 0 && g->n > 1 && i < g->n; i++) {
                memcpy(q + at * c->dim, qs[i], ms[i] * c->dim * sizeof(float));
                at += ms[i];
        }
        if (r >= 0) {
                struct vec_search_opts opts = { .stopped = group_stopped, .progress = group_progress, .ctx = g };
                r = vec_search_cpu(c, q, m, kmax, &opts, index, score);
        }
        at = 0;
        for (size_t i = 0; i < g->n; i++) {
                struct kiln_task *t = g->t[i];
                const struct vec_search_params *p = t->params;
                if (r >= 0)
                        t->status = vec_result_build(t->result, c, t->object->version, ms[i], (uint32_t)p->k,
                                                     index + at * n_out, score + at * n_out, n_out);
                else
                        t->status = r == -ECANCELED && !kiln_exec_stopped(t->exec) ? -EIO : r;
                at += ms[i];
        }
        if (g->n > 1)
                free(q);
        free(index);
        free(score);
}

size_t vec_plan_groups(struct kiln_task *const *tasks, size_t n, const size_t *m, const bool *skip, size_t *group)
{
        size_t groups = 0;

        for (size_t i = 0; i < n; i++)
                group[i] = SIZE_MAX;
        for (size_t i = 0; i < n; i++) {
                if (skip[i] || group[i] != SIZE_MAX)
                        continue;
                const struct vec_collection *c = tasks[i]->object->snapshot;
                uint64_t queries = 0, kmax = 0;
                for (size_t j = i; j < n; j++) {
                        if (skip[j] || group[j] != SIZE_MAX || !same_version(tasks[i], tasks[j]))
                                continue;
                        const struct vec_search_params *p = tasks[j]->params;
                        uint64_t k = (uint64_t)p->k > kmax ? (uint64_t)p->k : kmax;
                        uint64_t kk = k < c->count ? k : c->count;
                        if (j > i && (queries + m[j]) * kk > VEC_GROUP_ANSWERS_MAX)
                                continue;
                        queries += m[j];
                        kmax = k;
                        group[j] = groups;
                }
                groups++;
        }
        return groups;
}

static int run_batch(struct kiln_task *const *tasks, size_t n)
{
        size_t slots = n ? n : 1;
        struct kiln_task **members = malloc(slots * sizeof(*members));
        float **qs = calloc(slots, sizeof(*qs)), **gqs = malloc(slots * sizeof(*gqs));
        size_t *ms = calloc(slots, sizeof(*ms)), *gms = malloc(slots * sizeof(*gms));
        size_t *group = malloc(slots * sizeof(*group));
        bool *skip = calloc(slots, sizeof(*skip));
        int r = members && qs && gqs && ms && gms && group && skip ? 0 : -ENOMEM;

        for (size_t i = 0; r >= 0 && i < n; i++) {
                const struct vec_collection *c;
                tasks[i]->status = vec_task_queries(tasks[i], &c, &qs[i], &ms[i], &tasks[i]->error);
                skip[i] = tasks[i]->status < 0;
        }
        size_t groups = r >= 0 ? vec_plan_groups(tasks, n, ms, skip, group) : 0;
        for (size_t gi = 0; gi < groups; gi++) {
                struct group g = { .t = members };
                for (size_t j = 0; j < n; j++)
                        if (group[j] == gi) {
                                members[g.n] = tasks[j];
                                gqs[g.n] = qs[j];
                                gms[g.n] = ms[j];
                                g.n++;
                        }
                run_group(&g, gqs, gms);
        }
        for (size_t i = 0; qs && i < n; i++)
                free(qs[i]);
        free(members);
        free(qs);
        free(gqs);
        free(ms);
        free(gms);
        free(group);
        free(skip);
        return r;
}

static int run(struct kiln_task *t)
{
        struct kiln_task *one[1] = { t };
        int r = run_batch(one, 1);

        return r < 0 ? r : t->status;
}

const struct kiln_kind kiln_kind_vec_search = {
        .name = "vec.search",
        .version = 1,
        .doc = "exact top-k nearest neighbours in a stored embedding collection",
        .params = vec_search_schema,
        .params_size = sizeof(struct vec_search_params),
        .inputs = vec_search_inputs,
        .object = &vec_collection_class,
        .object_param = "collection",
        /* Every backend reports vec_score's float64 sums rounded once: bit-equal. */
        .rtol = 0,
        .atol = 0,
        .check = check,
        .check_meta = check_meta,
        .values_text_size = values_text_size,
        .result_size = result_size,
        .run_cpu = run,
        .run_cpu_batch = run_batch,
};
