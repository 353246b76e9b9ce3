/* The "vec.collection" object class: checking puts and building snapshots
 * (collection.h). No JSON: the daemon hands ids and rows over as arrays. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtext.h"
#include "vec_search/collection.h"

static int fail_nomem(struct kiln_error *err, const char *field)
{
        if (err) {
                snprintf(err->field, sizeof(err->field), "%s", field);
                snprintf(err->message, sizeof(err->message), "out of memory while reading the collection");
        }
        return -ENOMEM;
}

int vec_row_check(enum kiln_metric metric, const float *row, uint32_t dim)
{
        double ss = 0.0;

        for (uint32_t j = 0; j < dim; j++) {
                if (!isfinite(row[j]))
                        return -EINVAL;
                ss += (double)row[j] * row[j];
        }
        if (metric == KILN_METRIC_COSINE && ss == 0.0)
                return -EDOM;
        if (metric != KILN_METRIC_COSINE && ss > VEC_NORM_MAX * VEC_NORM_MAX)
                return -ERANGE;
        return 0;
}

int vec_row_prepare(enum kiln_metric metric, float *row, uint32_t dim)
{
        int rc = vec_row_check(metric, row, dim);
        double ss = 0.0, norm;

        if (rc < 0 || metric != KILN_METRIC_COSINE)
                return rc;
        for (uint32_t j = 0; j < dim; j++)
                ss += (double)row[j] * row[j];
        norm = sqrt(ss);
        for (uint32_t j = 0; j < dim; j++)
                row[j] = (float)(row[j] / norm);
        return 0;
}

const char *vec_row_problem(int code)
{
        switch (code) {
        case -EINVAL: return "holds NaN or infinity";
        case -EDOM: return "is all zeros, which has no direction for cosine";
        case -ERANGE: return "has a norm above 2^62";
        }
        return "cannot be used";
}

/* The metric and dim of a meta, with an error naming what is wrong. */
static int read_meta(const void *meta, size_t len, const char *field, enum kiln_metric *ret_metric, uint32_t *ret_dim,
                     struct kiln_error *err)
{
        const uint8_t *b = meta;

        if (!b || len != KILN_VEC_META_BYTES || b[0] != KILN_VEC_META_FORMAT || b[2] || b[3])
                return kiln_error_set(err, field, "%s is not a vec.collection meta (kiln_vec_meta_encode)", field);
        if (!kiln_metric_name((enum kiln_metric)b[1]))
                return kiln_error_set(err, "metric", "metric must be cosine, ip or l2");
        if (kiln_vec_meta_decode(meta, len, ret_metric, ret_dim) < 0)
                return kiln_error_set(err, "vectors", "vectors must have 1 to %u columns (the dim)", KILN_VEC_DIM_MAX);
        return 0;
}

/* Sorting an index permutation by id: qsort_r's comparator context. */
struct id_view {
        const void *(*get)(const void *ctx, size_t i, size_t *ret_len);
        const void *ctx;
};

static int cmp_perm(const void *a, const void *b, void *arg)
{
        const struct id_view *v = arg;
        size_t ia = *(const size_t *)a, ib = *(const size_t *)b, la, lb;
        const void *pa = v->get(v->ctx, ia, &la), *pb = v->get(v->ctx, ib, &lb);
        int c = vec_id_cmp(pa, la, pb, lb);

        /* Equal ids keep their input order, so the later one is the one reported. */
        return c ? c : (ia < ib ? -1 : ia > ib ? 1 : 0);
}

/* A new permutation of 0..n-1 that sorts the ids, or NULL when out of memory. */
static size_t *sort_ids(const struct id_view *v, size_t n)
{
        size_t *perm = malloc((n ? n : 1) * sizeof(*perm));

        if (!perm)
                return NULL;
        for (size_t i = 0; i < n; i++)
                perm[i] = i;
        qsort_r(perm, n, sizeof(*perm), cmp_perm, (void *)v);
        return perm;
}

static const void *put_id(const void *ctx, size_t i, size_t *ret_len)
{
        const struct kiln_object_id *ids = ctx;

        *ret_len = ids[i].len;
        return ids[i].data;
}

static int put_validate(struct kiln_object_put *put, struct kiln_object_info *ret_info, struct kiln_error *err)
{
        enum kiln_metric metric = 0, current_metric;
        uint32_t dim = 0, current_dim;
        struct id_view view = { put_id, put->ids };
        size_t *perm;
        int rc;

        rc = read_meta(put->meta, put->meta_len, "meta", &metric, &dim, err);
        if (rc < 0)
                return rc;
        if (put->current_meta) {
                rc = read_meta(put->current_meta, put->current_meta_len, "collection", &current_metric, &current_dim,
                               err);
                if (rc < 0)
                        return kiln_error_set(err, "collection", "the stored collection's meta cannot be read");
                if (current_metric != metric)
                        return kiln_error_set(err, "metric", "the collection's metric is %s; this put names %s",
                                              kiln_metric_name(current_metric), kiln_metric_name(metric));
                if (current_dim != dim)
                        return kiln_error_set(err, "vectors", "the collection's vectors have dim %u; these have %u",
                                              current_dim, dim);
        }
        if (put->n == 0 || !put->ids)
                return kiln_error_set(err, "ids", "ids must hold at least one id");
        if (!put->rows || put->rows_bytes / sizeof(float) / dim != put->n ||
            put->rows_bytes != put->n * dim * sizeof(float))
                return kiln_error_set(err, "vectors", "vectors must be f32[%zu][%u] (one row per id), not %zu bytes",
                                      put->n, dim, put->rows_bytes);
        for (size_t i = 0; i < put->n; i++)
                if (put->ids[i].len < 1 || put->ids[i].len > KILN_VEC_ID_MAX || !put->ids[i].data) {
                        char field[32];
                        snprintf(field, sizeof(field), "ids[%zu]", i);
                        return kiln_error_set(err, field, "%s must be 1 to %u bytes long, not %zu", field,
                                              KILN_VEC_ID_MAX, put->ids[i].len);
                } else if (memchr(put->ids[i].data, 0, put->ids[i].len)) {
                        /* A search answers ids as C strings in JSON text. */
                        char field[32];
                        snprintf(field, sizeof(field), "ids[%zu]", i);
                        return kiln_error_set(err, field, "%s holds a NUL character, which an id cannot hold", field);
                }
        perm = sort_ids(&view, put->n);
        if (!perm)
                return fail_nomem(err, "ids");
        for (size_t i = 1; i < put->n; i++) {
                const struct kiln_object_id *a = &put->ids[perm[i - 1]], *b = &put->ids[perm[i]];
                if (vec_id_cmp(a->data, a->len, b->data, b->len) == 0) {
                        char field[32];
                        snprintf(field, sizeof(field), "ids[%zu]", perm[i]);
                        rc = kiln_error_set(err, field, "%s repeats ids[%zu]", field, perm[i - 1]);
                        break;
                }
        }
        free(perm);
        if (rc < 0)
                return rc;
        /* Every row is checked before any is changed: a refused put leaves rows as given. */
        for (size_t i = 0; i < put->n; i++) {
                rc = vec_row_check(metric, put->rows + i * dim, dim);
                if (rc < 0) {
                        char field[32];
                        snprintf(field, sizeof(field), "vectors[%zu]", i);
                        return kiln_error_set(err, field, "%s %s", field, vec_row_problem(rc));
                }
        }
        for (size_t i = 0; i < put->n; i++)
                vec_row_prepare(metric, put->rows + i * dim, dim);
        *ret_info = (struct kiln_object_info){ .count = put->n, .dim = dim, .metric = metric };
        return 0;
}

/* Collects items as the source gives them. */
struct builder {
        uint32_t dim;
        uint64_t n, cap;           /* items held, items there is room for */
        float *rows;
        uint64_t *offs;            /* n + 1 used */
        uint8_t *ids;
        size_t ids_len, ids_cap;
        bool sorted;
        bool failed;               /* add_item refused an item (err is filled) */
        struct kiln_error *err;
};

/* Room for `need` items: rows for need, id offsets for need + 1. */
static int reserve(struct builder *b, uint64_t need)
{
        size_t row_bytes = (size_t)b->dim * sizeof(float);
        uint64_t c = b->cap ? b->cap : need;
        float *rows;
        uint64_t *offs;

        if (need <= b->cap)
                return 0;
        while (c < need)
                c *= 2;
        if (c > (SIZE_MAX - 1) / row_bytes)
                return -ENOMEM;
        rows = realloc(b->rows, (size_t)c * row_bytes);
        if (!rows)
                return -ENOMEM;
        b->rows = rows;
        offs = realloc(b->offs, ((size_t)c + 1) * sizeof(*offs));
        if (!offs)
                return -ENOMEM;
        b->offs = offs;
        b->cap = c;
        return 0;
}

/* Room for `extra` more id bytes. */
static int reserve_ids(struct builder *b, size_t extra)
{
        size_t c = b->ids_cap ? b->ids_cap : 4096;
        uint8_t *ids;

        if (b->ids_len + extra <= b->ids_cap)
                return 0;
        while (c < b->ids_len + extra)
                c *= 2;
        ids = realloc(b->ids, c);
        if (!ids)
                return -ENOMEM;
        b->ids = ids;
        b->ids_cap = c;
        return 0;
}

/* Appends one item, noting whether ids still come in order. */
static int add_item_checked(struct builder *b, const uint8_t *id, size_t id_len, const uint8_t *data, size_t size)
{
        size_t row_bytes = (size_t)b->dim * sizeof(float);

        if (id_len < 1 || id_len > KILN_VEC_ID_MAX)
                return kiln_error_set(b->err, "items", "item %llu has an id of %zu bytes; ids are 1 to %u bytes",
                                      (unsigned long long)b->n, id_len, KILN_VEC_ID_MAX);
        if (size != row_bytes)
                return kiln_error_set(b->err, "items", "item %llu holds %zu bytes, not %u float32 values",
                                      (unsigned long long)b->n, size, b->dim);
        if (reserve(b, b->n + 1) < 0 || reserve_ids(b, id_len) < 0)
                return fail_nomem(b->err, "items");
        if (b->n > 0) {
                const uint8_t *prev = b->ids + b->offs[b->n - 1];
                int c = vec_id_cmp(prev, (size_t)(b->offs[b->n] - b->offs[b->n - 1]), id, id_len);
                if (c == 0)
                        return kiln_error_set(b->err, "items", "item %llu repeats the id of the item before it",
                                              (unsigned long long)b->n);
                if (c > 0)
                        b->sorted = false;
        }
        memcpy(b->rows + b->n * b->dim, data, row_bytes);
        memcpy(b->ids + b->ids_len, id, id_len);
        b->ids_len += id_len;
        b->n++;
        b->offs[b->n] = b->ids_len;
        return 0;
}

/* The source's callback (kiln_object_item_cb). */
static int add_item(const uint8_t *id, size_t id_len, const uint8_t *data, size_t size, void *userdata)
{
        struct builder *b = userdata;
        int rc = add_item_checked(b, id, id_len, data, size);

        if (rc < 0)
                b->failed = true;
        return rc;
}

static const void *built_id(const void *ctx, size_t i, size_t *ret_len)
{
        const struct builder *b = ctx;

        *ret_len = (size_t)(b->offs[i + 1] - b->offs[i]);
        return b->ids + b->offs[i];
}

/* Puts items that came out of order into id order (and refuses repeated ids). */
static int sort_builder(struct builder *b)
{
        struct id_view view = { built_id, b };
        size_t *perm = sort_ids(&view, b->n);
        float *rows = malloc((b->n ? b->n : 1) * (size_t)b->dim * sizeof(float));
        uint64_t *offs = malloc((b->n + 1) * sizeof(*offs));
        uint8_t *ids = malloc(b->ids_len ? b->ids_len : 1);
        int rc = 0;

        if (!perm || !rows || !offs || !ids) {
                rc = fail_nomem(b->err, "items");
                goto out;
        }
        offs[0] = 0;
        for (uint64_t i = 0; i < b->n; i++) {
                size_t len;
                const void *id = built_id(b, perm[i], &len);
                if (i > 0 && vec_id_cmp(ids + offs[i - 1], (size_t)(offs[i] - offs[i - 1]), id, len) == 0) {
                        rc = kiln_error_set(b->err, "items", "items %zu and %zu have the same id", perm[i - 1],
                                            perm[i]);
                        goto out;
                }
                memcpy(ids + offs[i], id, len);
                offs[i + 1] = offs[i] + len;
                memcpy(rows + i * b->dim, b->rows + perm[i] * b->dim, (size_t)b->dim * sizeof(float));
        }
        free(b->rows);
        free(b->offs);
        free(b->ids);
        b->rows = rows;
        b->offs = offs;
        b->ids = ids;
        b->cap = b->n;
        rows = NULL;
        offs = NULL;
        ids = NULL;
out:
        free(perm);
        free(rows);
        free(offs);
        free(ids);
        return rc;
}

int vec_collection_compile(const struct kiln_object_source *src, struct vec_collection **ret_collection,
                           struct kiln_error *err)
{
        struct builder b = { .sorted = true, .err = err };
        struct vec_collection *c = NULL;
        enum kiln_metric metric;
        float *sqnorms = NULL;
        double max_sq = 0.0;
        size_t id_text_max = 0;
        uint64_t hint;
        int rc;

        rc = read_meta(src->meta, src->meta_len, "meta", &metric, &b.dim, err);
        if (rc < 0)
                return rc;
        /* The store's count sizes the matrix at once; an implausible one (more than
         * 16 GiB of rows) only starts it. */
        hint = src->count <= (1ull << 34) / (b.dim * sizeof(float)) ? src->count : (1u << 20);
        if (reserve(&b, hint ? hint : 1) < 0) {
                rc = fail_nomem(err, "items");
                goto out;
        }
        b.offs[0] = 0;
        if (src->foreach_items) {
                rc = src->foreach_items(src->ctx, add_item, &b);
                if (rc < 0 && !b.failed && err) {
                        snprintf(err->field, sizeof(err->field), "items");
                        snprintf(err->message, sizeof(err->message), "reading the collection's items failed: %s",
                                 strerror(-rc));
                }
                if (rc < 0)
                        goto out;
        }
        if (!b.sorted) {
                rc = sort_builder(&b);
                if (rc < 0)
                        goto out;
        }
        /* One block: the rows, then their squared norms (what a device keeps, in
         * one piece: kiln_cuda_kind.object_image). The doubling's excess goes back. */
        c = malloc(sizeof(*c));
        {
                float *block = realloc(b.rows, ((size_t)b.n * b.dim + b.n + 1) * sizeof(float));
                if (block)
                        b.rows = block; /* freed at `out` either way */
                if (!c || !block) {
                        free(c);
                        rc = fail_nomem(err, "items");
                        goto out;
                }
                sqnorms = block + (size_t)b.n * b.dim;
        }
        for (uint64_t i = 0; i < b.n; i++) {
                const float *x = b.rows + i * b.dim;
                double ss = 0.0;
                for (uint32_t j = 0; j < b.dim; j++)
                        ss += (double)x[j] * x[j];
                sqnorms[i] = (float)ss;
                max_sq = ss > max_sq ? ss : max_sq;
                size_t t = kiln_jtext_str_bytes(b.ids + b.offs[i], (size_t)(b.offs[i + 1] - b.offs[i]));
                id_text_max = t > id_text_max ? t : id_text_max;
        }
        if (b.n > 0) {
                uint8_t *ids = realloc(b.ids, b.ids_len);
                b.ids = ids ? ids : b.ids;
        }
        {
                uint64_t *offs = realloc(b.offs, (b.n + 1) * sizeof(*b.offs));
                b.offs = offs ? offs : b.offs;
        }
        *c = (struct vec_collection){
                .metric = metric,
                .dim = b.dim,
                .count = b.n,
                .rows = b.rows,
                .id_offsets = b.offs,
                .id_bytes = b.ids,
                .sqnorms = sqnorms,
                .max_norm = sqrt(max_sq),
                .id_text_max = id_text_max,
                .bytes = sizeof(*c) + b.n * ((size_t)b.dim + 1) * sizeof(float) + (b.n + 1) * sizeof(uint64_t) +
                         b.ids_len,
        };
        *ret_collection = c;
        return 0;
out:
        free(b.rows);
        free(b.offs);
        free(b.ids);
        return rc;
}

int vec_collection_find(const struct vec_collection *c, const void *id, size_t len, uint64_t *ret_row)
{
        uint64_t lo = 0, hi = c->count;

        while (lo < hi) {
                uint64_t mid = lo + (hi - lo) / 2;
                size_t mlen;
                const uint8_t *m = vec_collection_id(c, mid, &mlen);
                int cmp = vec_id_cmp(m, mlen, id, len);
                if (cmp == 0) {
                        *ret_row = mid;
                        return 0;
                }
                if (cmp < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return -ENOENT;
}

void vec_collection_free(struct vec_collection *c)
{
        if (!c)
                return;
        free((void *)c->rows);
        free((void *)c->id_offsets);
        free((void *)c->id_bytes);
        free(c);
}

static int collection_compile(const struct kiln_object_source *src, void **ret_snapshot,
                              struct kiln_error *err)
{
        struct vec_collection *c;
        int rc = vec_collection_compile(src, &c, err);

        if (rc >= 0)
                *ret_snapshot = c;
        return rc;
}

static void collection_release(void *snapshot)
{
        vec_collection_free(snapshot);
}

static size_t collection_bytes(const void *snapshot)
{
        return ((const struct vec_collection *)snapshot)->bytes;
}

static void collection_describe(const void *snapshot, struct kiln_object_info *ret_info)
{
        const struct vec_collection *c = snapshot;

        *ret_info = (struct kiln_object_info){ .count = c->count, .dim = c->dim, .metric = c->metric };
}

const struct kiln_object_class vec_collection_class = {
        .name = "vec.collection",
        .validate = put_validate,
        .compile = collection_compile,
        .release = collection_release,
        .snapshot_bytes = collection_bytes,
        .describe = collection_describe,
};
