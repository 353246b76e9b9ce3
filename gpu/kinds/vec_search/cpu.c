/* vec.search on the CPU: blocked float32 products fused with per-query candidate
 * lists, then exact scores for the few candidates (vec_search.h).
 *
 * The collection is cut into tiles of rows that the threads claim one by one (a
 * busy core simply claims fewer). For each tile a thread multiplies the queries,
 * QB at a time, by the tile's rows (the tile stays in cache across query blocks),
 * scans each query's row of products for values at or above that query's current
 * limit and adds those to its own list for the query (select.h). No query ever
 * holds a full row of scores. When every tile is done, the threads share out the
 * queries and each query's lists are merged, scored exactly and sorted.
 *
 * Many queries at once are one product per tile; jobs of one query each are
 * gathered into such a batch by the kind (kind.c, run_cpu_batch). */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "vec_search.h"
#include "vec_search/select.h"
#include "vec_search/vec_math.h"

#define QB 256u                      /* queries per product */
#define TILE_BYTES (1u << 20)        /* rows per tile: about this many bytes of them */
#define TILE_MIN 64u
#define TILE_MAX 2048u
#define WORK_PER_THREAD (1ull << 24) /* multiply-adds that make another thread worth starting */
#define MAX_THREADS 64u
#define LIST_BYTES (64ull << 20)     /* candidate lists of one pass over the collection, at first */

double vec_margin(enum kiln_metric metric, uint32_t dim, double qnorm, double max_norm)
{
        return vec_margin_of(metric, dim, qnorm, max_norm);
}

/* One search pass (a block of queries over the whole collection), shared by its
 * threads. */
struct pass {
        const struct vec_collection *c;
        const struct vec_search_opts *opts;
        struct vec_sel sel;
        const float *q;              /* [m][dim] */
        size_t m;
        unsigned n_threads;
        uint32_t tile_rows;
        uint64_t n_tiles;
        struct vec_cands *lists;     /* [m][n_threads] */
        uint32_t n_out;
        uint64_t *ret_index;         /* [m][n_out] */
        float *ret_score;
        double progress0, progress_span;
        atomic_uint_fast64_t next_tile, tiles_done;
        atomic_size_t next_query;
        atomic_int error;
};

struct worker {
        struct pass *p;
        unsigned t;
        pthread_t th;
        bool started;
};

static void fail(struct pass *p, int err)
{
        int none = 0;

        atomic_compare_exchange_strong(&p->error, &none, err);
}

/* Products and scans of the tiles this thread claims. */
static void scan_tiles(struct pass *p, unsigned t)
{
        const struct vec_collection *c = p->c;
        const float *sqn = c->metric == KILN_METRIC_L2 ? c->sqnorms : NULL;
        size_t qb = p->m < QB ? p->m : QB;
        float *prod = malloc(qb * p->tile_rows * sizeof(*prod));
        float *vals = malloc(p->tile_rows * sizeof(*vals));
        uint32_t *cols = malloc(p->tile_rows * sizeof(*cols));
        uint64_t tile;

        if (!prod || !vals || !cols) {
                fail(p, -ENOMEM);
                goto out;
        }
        while (!atomic_load(&p->error) && (tile = atomic_fetch_add(&p->next_tile, 1)) < p->n_tiles) {
                uint64_t r0 = tile * p->tile_rows;
                size_t r = c->count - r0 < p->tile_rows ? (size_t)(c->count - r0) : p->tile_rows;
                if (p->opts->stopped && p->opts->stopped(p->opts->ctx)) {
                        fail(p, -ECANCELED);
                        break;
                }
                for (size_t i0 = 0; i0 < p->m; i0 += qb) {
                        size_t mi = p->m - i0 < qb ? p->m - i0 : qb;
                        vec_gemm_nt(mi, r, c->dim, p->q + i0 * c->dim, c->rows + r0 * c->dim, prod, r,
                                    p->opts->portable);
                        for (size_t i = 0; i < mi; i++) {
                                struct vec_cands *l = &p->lists[(i0 + i) * p->n_threads + t];
                                size_t n = vec_scan(prod + i * r, sqn ? sqn + r0 : NULL, r, l->lim, cols, vals);
                                for (size_t h = 0; h < n; h++) {
                                        int e = vec_cands_add(l, &p->sel, vals[h], r0 + cols[h]);
                                        if (e < 0) {
                                                fail(p, e);
                                                goto out;
                                        }
                                }
                        }
                }
                uint64_t done = atomic_fetch_add(&p->tiles_done, 1) + 1;
                if (t == 0 && p->opts->progress)
                        p->opts->progress(p->opts->ctx, p->progress0 + p->progress_span * (double)done / p->n_tiles);
        }
out:
        free(prod);
        free(vals);
        free(cols);
}

/* The exact finish of the queries this thread claims. */
static void finish_queries(struct pass *p)
{
        size_t i;

        while (!atomic_load(&p->error) && (i = atomic_fetch_add(&p->next_query, 1)) < p->m) {
                int e = vec_cands_finish(&p->lists[i * p->n_threads], p->n_threads, &p->sel,
                                         p->ret_index + i * p->n_out, p->ret_score + i * p->n_out);
                if (e < 0)
                        fail(p, e);
        }
}

static void *scan_main(void *arg)
{
        struct worker *w = arg;

        scan_tiles(w->p, w->t);
        return NULL;
}

static void *finish_main(void *arg)
{
        struct worker *w = arg;

        finish_queries(w->p);
        return NULL;
}

/* Runs fn on the calling thread (as thread 0) and n - 1 more; a thread that cannot
 * be started leaves its share to the others, who claim work until none is left. */
static void run_threads(struct worker *w, unsigned n, void *(*fn)(void *))
{
        for (unsigned t = 1; t < n; t++)
                w[t].started = pthread_create(&w[t].th, NULL, fn, &w[t]) == 0;
        fn(&w[0]);
        for (unsigned t = 1; t < n; t++)
                if (w[t].started)
                        pthread_join(w[t].th, NULL);
}

static double norm64(const float *q, uint32_t dim)
{
        double s = 0.0;

        for (uint32_t j = 0; j < dim; j++)
                s += (double)q[j] * q[j];
        return sqrt(s);
}

/* One pass: queries q[0..m) over the whole collection. */
static int run_pass(struct pass *p, struct worker *w)
{
        const struct vec_collection *c = p->c;
        size_t made = 0;
        int r = 0;

        p->lists = calloc(p->m * p->n_threads, sizeof(*p->lists));
        if (!p->lists)
                return -ENOMEM;
        for (size_t i = 0; i < p->m && r >= 0; i++) {
                const float *qi = p->q + i * c->dim;
                double margin = vec_margin(c->metric, c->dim, norm64(qi, c->dim), c->max_norm);
                for (unsigned t = 0; t < p->n_threads && r >= 0; t++, made++)
                        r = vec_cands_init(&p->lists[i * p->n_threads + t], &p->sel, qi, margin);
        }
        if (r >= 0) {
                atomic_store(&p->next_tile, 0);
                atomic_store(&p->tiles_done, 0);
                atomic_store(&p->next_query, 0);
                atomic_store(&p->error, 0);
                for (unsigned t = 0; t < p->n_threads; t++)
                        w[t] = (struct worker){ .p = p, .t = t };
                run_threads(w, p->n_threads, scan_main);
                if (!atomic_load(&p->error))
                        run_threads(w, p->n_threads, finish_main);
                r = atomic_load(&p->error);
        }
        for (size_t i = 0; i < made; i++)
                vec_cands_free(&p->lists[i]);
        free(p->lists);
        p->lists = NULL;
        return r;
}

int vec_search_cpu(const struct vec_collection *c, const float *queries, size_t m, uint32_t k,
                   const struct vec_search_opts *opts, uint64_t *ret_index, float *ret_score)
{
        static const struct vec_search_opts defaults = { 0 };
        struct pass p = { .c = c, .opts = opts ? opts : &defaults };
        struct worker w[MAX_THREADS];
        uint64_t work, per_list;
        size_t chunk;
        unsigned n_threads;

        if (k == 0)
                return -EINVAL;
        p.n_out = c->count < k ? (uint32_t)c->count : k;
        if (m == 0 || p.n_out == 0)
                return 0;
        p.sel = (struct vec_sel){ .c = c, .k = k };
        p.sel.first_cap = p.opts->cand_cap ? p.opts->cand_cap : 64;
        if (p.sel.first_cap < 2 * k)
                p.sel.first_cap = 2 * k;
        p.sel.max_cap = 8 * k > 4096 ? 8 * k : 4096;
        if (p.sel.max_cap < p.sel.first_cap)
                p.sel.max_cap = p.sel.first_cap;

        p.tile_rows = p.opts->tile_rows;
        if (!p.tile_rows) {
                uint64_t t = TILE_BYTES / ((uint64_t)c->dim * sizeof(float));
                p.tile_rows = t < TILE_MIN ? TILE_MIN : t > TILE_MAX ? TILE_MAX : (uint32_t)t & ~15u;
        }
        p.n_tiles = (c->count + p.tile_rows - 1) / p.tile_rows;

        n_threads = p.opts->threads ? p.opts->threads : kiln_cpus();
        work = c->count * (uint64_t)c->dim * m;
        if (n_threads > MAX_THREADS)
                n_threads = MAX_THREADS;
        if ((uint64_t)n_threads > work / WORK_PER_THREAD + 1)
                n_threads = (unsigned)(work / WORK_PER_THREAD + 1);
        if (n_threads > p.n_tiles)
                n_threads = (unsigned)p.n_tiles;
        p.n_threads = n_threads ? n_threads : 1;

        /* Passes of as many queries as their lists' first allocation allows. */
        per_list = (uint64_t)p.sel.first_cap * (sizeof(float) + sizeof(uint64_t)) + sizeof(struct vec_cands);
        chunk = (size_t)(LIST_BYTES / (per_list * p.n_threads));
        chunk = chunk < 1 ? 1 : chunk;
        for (size_t q0 = 0; q0 < m; q0 += chunk) {
                p.q = queries + q0 * c->dim;
                p.m = m - q0 < chunk ? m - q0 : chunk;
                p.ret_index = ret_index + q0 * p.n_out;
                p.ret_score = ret_score + q0 * p.n_out;
                p.progress0 = (double)q0 / m;
                p.progress_span = (double)p.m / m;
                int r = run_pass(&p, w);
                if (r < 0)
                        return r;
        }
        return 0;
}
