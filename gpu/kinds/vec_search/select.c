/* vec.search's candidate lists (select.h): bounded per-query top-k selection
 * over screening values, with an exact finish. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vec_search/select.h"
#include "vec_search/vec_math.h"

static inline void swap_pair(float *val, uint64_t *row, uint32_t a, uint32_t b)
{
        float v = val[a];
        uint64_t r = row[a];

        val[a] = val[b];
        row[a] = row[b];
        val[b] = v;
        row[b] = r;
}

static inline float median3(float a, float b, float c)
{
        if (a > b) {
                float t = a;
                a = b;
                b = t;
        }
        return c <= a ? a : c >= b ? b : c;
}

/* Reorders val/row[0..n) so that the k largest values come first (1 <= k <= n)
 * and returns the k-th largest. Three-way partitions, so runs of equal values
 * (duplicates) cost no more than distinct ones. */
static float select_kth(float *val, uint64_t *row, uint32_t n, uint32_t k)
{
        uint32_t lo = 0, hi = n, want = k - 1;

        while (hi - lo > 1) {
                float p = median3(val[lo], val[lo + (hi - lo) / 2], val[hi - 1]);
                uint32_t lt = lo, i = lo, gt = hi;
                while (i < gt) {
                        if (val[i] > p)
                                swap_pair(val, row, lt++, i++);
                        else if (val[i] < p)
                                swap_pair(val, row, i, --gt);
                        else
                                i++;
                }
                if (want < lt)
                        hi = lt;
                else if (want >= gt)
                        lo = gt;
                else
                        return p;
        }
        return val[want];
}

int vec_cands_init(struct vec_cands *l, const struct vec_sel *s, const float *q, double margin)
{
        memset(l, 0, sizeof(*l));
        l->val = malloc(s->first_cap * sizeof(*l->val));
        l->row = malloc(s->first_cap * sizeof(*l->row));
        if (!l->val || !l->row) {
                vec_cands_free(l);
                return -ENOMEM;
        }
        l->q = q;
        l->margin = margin;
        l->cap = s->first_cap;
        l->floor = -INFINITY;
        l->lim = -INFINITY;
        return 0;
}

void vec_cands_free(struct vec_cands *l)
{
        free(l->val);
        free(l->row);
        l->val = NULL;
        l->row = NULL;
        l->n = l->cap = 0;
}

/* One exactly scored candidate. */
struct scored {
        float score;
        float val;
        uint64_t row;
};

static int cmp_scored(const void *a, const void *b, void *metric)
{
        const struct scored *x = a, *y = b;
        enum kiln_metric m = *(const enum kiln_metric *)metric;

        if (vec_ranks_before(m, x->score, x->row, y->score, y->row))
                return -1;
        return vec_ranks_before(m, y->score, y->row, x->score, x->row) ? 1 : 0;
}

/* Scores entries [0, n) exactly and sorts them best first. NULL when out of memory. */
static struct scored *score_sorted(const struct vec_collection *c, const float *q, const float *val,
                                   const uint64_t *row, uint32_t n)
{
        struct scored *sc = malloc((n ? n : 1) * sizeof(*sc));
        enum kiln_metric m = c->metric;

        if (!sc)
                return NULL;
        for (uint32_t i = 0; i < n; i++)
                sc[i] = (struct scored){ vec_score(m, q, c->rows + row[i] * c->dim, c->dim), val[i], row[i] };
        qsort_r(sc, n, sizeof(*sc), cmp_scored, &m);
        return sc;
}

/* Keeps only the list's exact top k: its rows scored exactly. A row dropped here
 * has k rows of this list ranking before it, so it is in no query's answer. */
static int prune_exact(struct vec_cands *l, const struct vec_sel *s)
{
        struct scored *sc = score_sorted(s->c, l->q, l->val, l->row, l->n);

        if (!sc)
                return -ENOMEM;
        l->n = l->n < s->k ? l->n : s->k;
        for (uint32_t i = 0; i < l->n; i++) {
                l->val[i] = sc[i].val;
                l->row[i] = sc[i].row;
        }
        free(sc);
        return 0;
}

int vec_cands_compact(struct vec_cands *l, const struct vec_sel *s)
{
        uint32_t kept = 0;

        if (l->n >= s->k) {
                float kth = select_kth(l->val, l->row, l->n, s->k);
                if (kth > l->floor) {
                        l->floor = kth;
                        l->lim = vec_lim_of(kth, l->margin);
                }
        }
        for (uint32_t i = 0; i < l->n; i++)
                if (l->val[i] >= l->lim) {
                        l->val[kept] = l->val[i];
                        l->row[kept] = l->row[i];
                        kept++;
                }
        l->n = kept;
        if (l->n <= l->cap / 2)
                return 0;
        if (l->cap < s->max_cap) {
                uint32_t cap = l->cap * 2 < s->max_cap ? l->cap * 2 : s->max_cap;
                float *val = realloc(l->val, cap * sizeof(*val));
                if (val)
                        l->val = val;
                uint64_t *row = val ? realloc(l->row, cap * sizeof(*row)) : NULL;
                if (row) {
                        l->row = row;
                        l->cap = cap;
                        return 0;
                }
        }
        /* Too many near-ties to keep: settle them. */
        return prune_exact(l, s);
}

int vec_cands_finish(struct vec_cands *lists, size_t n, const struct vec_sel *s, uint64_t *ret_index,
                     float *ret_score)
{
        const struct vec_collection *c = s->c;
        uint64_t total = 0;
        uint32_t n_out = c->count < s->k ? (uint32_t)c->count : s->k, m = 0;
        float *val;
        uint64_t *row;
        struct scored *sc;

        for (size_t t = 0; t < n; t++)
                total += lists[t].n;
        if (total > UINT32_MAX)
                return -ENOMEM;
        val = malloc((total ? total : 1) * sizeof(*val));
        row = malloc((total ? total : 1) * sizeof(*row));
        if (!val || !row) {
                free(val);
                free(row);
                return -ENOMEM;
        }
        for (size_t t = 0; t < n; t++) {
                memcpy(val + m, lists[t].val, lists[t].n * sizeof(*val));
                memcpy(row + m, lists[t].row, lists[t].n * sizeof(*row));
                m += lists[t].n;
        }
        /* The k-th best screening value of all the candidates is reached by k rows:
         * whatever is more than the margin below it is out. */
        if (m >= s->k) {
                float lim = vec_lim_of(select_kth(val, row, m, s->k), lists[0].margin);
                uint32_t kept = 0;
                for (uint32_t i = 0; i < m; i++)
                        if (val[i] >= lim) {
                                val[kept] = val[i];
                                row[kept] = row[i];
                                kept++;
                        }
                m = kept;
        }
        sc = m >= n_out ? score_sorted(c, lists[0].q, val, row, m) : NULL;
        free(val);
        free(row);
        if (!sc)
                return m >= n_out ? -ENOMEM : -EIO; /* -EIO: a candidate went missing (a bug) */
        for (uint32_t i = 0; i < n_out; i++) {
                ret_index[i] = sc[i].row;
                ret_score[i] = sc[i].score;
        }
        free(sc);
        return 0;
}
