/* risk.score on the CPU: Altman's scores row by row, stored models through the
 * blocked forest scorer (forest.c), and batches of jobs whose rows go through it
 * together, so that a thousand one-row jobs of one model cost about as much as one
 * job of a thousand rows. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "risk_score/risk_score.h"

/* Rows between checks of the stop flag and progress reports (a few ms of work). */
#define CHUNK_ROWS 16384u
/* Nodes a stored model's scoring may visit between two checks of the stop flag
 * (some 10 ms): a model of very deep trees is checked every few rows, down to every
 * row, so cancel and timeouts still end its jobs. */
#define CHECK_NODES ((uint64_t)1 << 22)
/* A job of more rows than this runs on its own even within a batch. */
#define BATCH_ROWS_MAX 4096u

/* Rows of forest f scored between two checks: CHECK_NODES over the most nodes one
 * row can visit (each tree's longest path, or all nodes when fewer). */
static uint64_t chunk_rows(const struct risk_forest *f)
{
        uint64_t per_row = (uint64_t)f->n_trees * ((uint64_t)f->max_depth + 1);

        if (per_row > f->n_nodes)
                per_row = f->n_nodes;
        uint64_t n = CHECK_NODES / (per_row ? per_row : 1);
        return n < 1 ? 1 : n > CHUNK_ROWS ? CHUNK_ROWS : n;
}

int risk_result_begin(const struct kiln_task *t, enum risk_model_id m, uint64_t n_rows, void *ret_out[2])
{
        const struct risk_params *p = t->params;
        struct kiln_result *r = t->result;
        const uint64_t shape[1] = { n_rows };
        struct kiln_part *a, *b = NULL;

        if (m == RISK_MODEL_STORED) {
                a = kiln_result_add_part(r, "pd", KILN_DTYPE_F32, 1, shape);
                if (a && p->margin)
                        b = kiln_result_add_part(r, "margin", KILN_DTYPE_F32, 1, shape);
        } else {
                a = kiln_result_add_part(r, "z", KILN_DTYPE_F32, 1, shape);
                if (a)
                        b = kiln_result_add_part(r, "zone", KILN_DTYPE_U8, 1, shape);
        }
        if (!a || ((m != RISK_MODEL_STORED || p->margin) && !b))
                return -ENOMEM;
        if (kiln_result_add_int(r, "rows", (int64_t)n_rows) < 0 ||
            (m == RISK_MODEL_STORED ? kiln_result_add_int(r, "model_version", (int64_t)t->object->version)
                                    : kiln_result_add_null(r, "model_version")) < 0)
                return -ENOMEM;
        ret_out[0] = a->data;
        ret_out[1] = b ? b->data : NULL;
        return 0;
}

/* pd (and margin) from margins computed into pd. */
static void finish_margins(float *pd, float *margin, size_t n)
{
        if (margin)
                memcpy(margin, pd, n * sizeof(*pd));
        for (size_t i = 0; i < n; i++)
                pd[i] = risk_sigmoid(pd[i]);
}

static int run_altman(struct kiln_task *t, enum risk_model_id m, const struct kiln_array *a)
{
        uint64_t n = a->shape[0], cols = a->shape[1];
        const float *x = a->data;
        void *out[2];
        int r;

        if (cols != risk_altman_columns(m))
                return -EINVAL;
        if ((r = risk_result_begin(t, m, n, out)) < 0)
                return r;
        float *z = out[0];
        uint8_t *zone = out[1];
        for (uint64_t i = 0; i < n; i++) {
                if (i % CHUNK_ROWS == 0 && i) {
                        if (kiln_exec_stopped(t->exec))
                                return -ECANCELED;
                        kiln_exec_progress(t->exec, (double)i / (double)n);
                }
                z[i] = risk_altman_z(m, x + i * cols);
                zone[i] = risk_altman_zone(m, z[i]);
        }
        return 0;
}

static const struct risk_forest *forest_of(const struct kiln_task *t)
{
        return t->object && t->object->cls == &risk_model_class ? t->object->snapshot : NULL;
}

static int run_forest(struct kiln_task *t, const struct kiln_array *a)
{
        const struct risk_forest *f = forest_of(t);
        uint64_t n = a->shape[0];
        void *out[2];
        int r;

        if (!f || a->shape[1] != f->n_features)
                return -EINVAL;
        if ((r = risk_result_begin(t, RISK_MODEL_STORED, n, out)) < 0)
                return r;
        uint64_t chunk = chunk_rows(f);
        for (uint64_t i = 0; i < n; i += chunk) {
                size_t m = n - i < chunk ? (size_t)(n - i) : (size_t)chunk;
                if (kiln_exec_stopped(t->exec))
                        return -ECANCELED;
                risk_forest_margins(f, (const float *)a->data + i * f->n_features, m, (float *)out[0] + i);
                kiln_exec_progress(t->exec, (double)(i + m) / (double)n);
        }
        finish_margins(out[0], out[1], n);
        return 0;
}

int risk_run_cpu(struct kiln_task *t)
{
        const struct kiln_array *a = risk_rows(t->inputs, t->n_inputs);
        enum risk_model_id m = risk_model_of(t->params);

        if (!a || a->shape[0] < 1)
                return -EINVAL;
        return m == RISK_MODEL_STORED ? run_forest(t, a) : run_altman(t, m, a);
}

/* Scores tasks g[0..n) (same forest, checked shapes, small) as one block of rows:
 * their rows are copied together, scored once, and the margins handed back. */
static void run_group(const struct risk_forest *f, struct kiln_task **g, size_t n, uint64_t total)
{
        size_t nf = f->n_features;
        float *rows = malloc(total * nf * sizeof(float)), *margins = malloc(total * sizeof(float));
        uint64_t at = 0;

        for (size_t i = 0; i < n && rows && margins; i++) {
                const struct kiln_array *a = risk_rows(g[i]->inputs, g[i]->n_inputs);
                memcpy(rows + at * nf, a->data, a->bytes);
                at += a->shape[0];
        }
        if (rows && margins)
                risk_forest_margins(f, rows, total, margins);
        at = 0;
        for (size_t i = 0; i < n; i++) {
                const struct kiln_array *a = risk_rows(g[i]->inputs, g[i]->n_inputs);
                uint64_t k = a->shape[0];
                void *out[2];
                int r = rows && margins ? risk_result_begin(g[i], RISK_MODEL_STORED, k, out) : -ENOMEM;
                if (r >= 0) {
                        memcpy(out[0], margins + at, k * sizeof(float));
                        finish_margins(out[0], out[1], k);
                        kiln_exec_progress(g[i]->exec, 1.0);
                }
                g[i]->status = r;
                at += k;
        }
        free(rows);
        free(margins);
}

int risk_run_cpu_batch(struct kiln_task *const *t, size_t n)
{
        struct kiln_task **g = malloc(n * sizeof(*g));
        bool *done = calloc(n, sizeof(*done));

        if (!g || !done) {
                free(g);
                free(done);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                if (done[i])
                        continue;
                const struct risk_forest *f = forest_of(t[i]);
                const struct kiln_array *a = risk_rows(t[i]->inputs, t[i]->n_inputs);
                /* A group is scored without a check of the stop flag: at most a chunk. */
                uint64_t limit = f ? chunk_rows(f) : 0;
                if (limit > BATCH_ROWS_MAX)
                        limit = BATCH_ROWS_MAX;
                bool alone = !f || !a || a->shape[1] != f->n_features || a->shape[0] > limit ||
                             risk_model_of(t[i]->params) != RISK_MODEL_STORED;
                if (alone) {
                        t[i]->status = risk_run_cpu(t[i]);
                        done[i] = true;
                        continue;
                }
                /* Every later task against the same compiled version joins. */
                size_t m = 0;
                uint64_t total = 0;
                for (size_t k = i; k < n; k++) {
                        if (done[k] || forest_of(t[k]) != f || risk_model_of(t[k]->params) != RISK_MODEL_STORED)
                                continue;
                        const struct kiln_array *b = risk_rows(t[k]->inputs, t[k]->n_inputs);
                        if (!b || b->shape[1] != f->n_features || total + b->shape[0] > limit)
                                continue; /* alone, or in a later group */
                        g[m++] = t[k];
                        total += b->shape[0];
                        done[k] = true;
                }
                run_group(f, g, m, total);
        }
        free(g);
        free(done);
        return 0;
}
