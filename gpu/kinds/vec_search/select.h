/* vec.search's per-query candidate lists (select.c): the fused top-k of the CPU
 * search. Internal to gpu/kinds/vec_search/.
 *
 * A list holds (screening value, row) pairs of rows that may still belong to the
 * query's exact top-k. Its `floor` is a value that at least k rows seen so far
 * reach (the k-th best screening value kept when it last compacted); rows below
 * floor - margin can never rank in the top k (vec_margin's proof), so they are
 * dropped at once (`lim`) and the list stays a few times k long. When near-ties
 * keep more than that (duplicates, a zero query), the list scores its rows
 * exactly and keeps the exact top k, so its memory stays bounded whatever the
 * data. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vec_search/collection.h"

/* What every list of one search shares. */
struct vec_sel {
        const struct vec_collection *c;
        uint32_t k;                /* results wanted per query (>= 1) */
        uint32_t first_cap;        /* a list's first capacity (>= 2k) */
        uint32_t max_cap;          /* beyond this a list prunes exactly instead of growing */
};

/* One query's list on one thread. */
struct vec_cands {
        const float *q;            /* the prepared query, for exact scores */
        double margin;             /* vec_margin for this query */
        float *val;
        uint64_t *row;
        uint32_t n, cap;
        float floor;               /* -INFINITY until k rows were seen */
        float lim;                 /* the largest float32 <= floor - margin */
};

/* An empty list for query q. Returns >= 0 or -ENOMEM. */
int vec_cands_init(struct vec_cands *l, const struct vec_sel *s, const float *q, double margin);
/* Frees the arrays. Accepts a zeroed list. */
void vec_cands_free(struct vec_cands *l);

/* Makes room: drops what is below lim, grows, or prunes to the exact top k.
 * Returns >= 0 or -ENOMEM. Called by vec_cands_add when the list is full. */
int vec_cands_compact(struct vec_cands *l, const struct vec_sel *s);

/* Adds row `row` with screening value `val` unless it is below the list's lim. */
static inline int vec_cands_add(struct vec_cands *l, const struct vec_sel *s, float val, uint64_t row)
{
        int r;

        if (!(val >= l->lim))
                return 0;
        if (l->n == l->cap && (r = vec_cands_compact(l, s)) < 0)
                return r;
        if (!(val >= l->lim))
                return 0;
        l->val[l->n] = val;
        l->row[l->n] = row;
        l->n++;
        return 0;
}

/* The exact top min(k, count) of one query from its lists on every thread (n of
 * them, all for the same query): best first, equal scores by row. Writes
 * n_out = min(k, c->count) rows and scores. The lists are consumed (their contents
 * reordered). Returns >= 0 or -ENOMEM. */
int vec_cands_finish(struct vec_cands *lists, size_t n, const struct vec_sel *s, uint64_t *ret_index,
                     float *ret_score);
