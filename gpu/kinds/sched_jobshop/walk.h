/* One tabu-search walk over job-shop schedules: the data and the moves. Shared by
 * the CPU search (cpu.c) and the CUDA kernel (kernel.cu), so both walk the same
 * way from the same seed.
 *
 * A schedule is one permutation of the operations per machine (all of them in
 * `seq`, machine k at mach_start[k]..mach_start[k+1]-1; `pos` is the inverse).
 * With the job orders it makes the disjunctive graph, evaluated by heads (longest
 * path to an operation's start) and tails (longest path from its end to the end);
 * the makespan is the longest path. A critical path splits into blocks: runs of
 * operations on one machine. Only moves that change the first or last operation of
 * a block can shorten the makespan (Nowicki and Smutnicki 1996), so the
 * neighbourhood is, per block, every operation moved to just before the block's
 * first or just after its last one, and the first (last) operation moved inwards:
 * the swaps of N5 at the block ends and the insertions of N6 (Balas and Vazacopoulos
 * 1998). A move is kept only when a test on heads and tails proves it leaves the
 * graph acyclic, and is judged by the longest path through the machine segment it
 * reorders, from the current heads and tails of the job neighbours (their
 * approximation), in one pass with no scratch memory.
 *
 * Every function is `static inline` on plain integers and pointers so nvcc builds it
 * too; search.h drives the walk. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "parse.h"

typedef int64_t js_time;

/* An instance as the walk reads it (arrays shared by every walk of a job). */
struct js_inst {
        int32_t n_jobs, n_mach, n_ops;
        const int32_t *job_start;  /* n_jobs + 1 */
        const int32_t *mach;       /* n_ops */
        const int32_t *dur;        /* n_ops */
        const int32_t *job;        /* n_ops: the job of each operation */
        const int32_t *jprev;      /* n_ops: the job's previous operation, or -1 */
        const int32_t *jnext;      /* n_ops: the job's next operation, or -1 */
        const int32_t *mach_start; /* n_mach + 1: machine k's slice of seq */
};

/* The int32 count of what js_inst_derive writes. */
KILN_HD static inline size_t js_derived_ints(int32_t n_mach, int32_t n_ops)
{
        return 3 * (size_t)n_ops + (size_t)n_mach + 1;
}

/* Fills `out` (js_derived_ints long) with job[], jprev[], jnext[] and mach_start[]
 * from the parsed arrays and points v at everything. */
KILN_HD static inline void js_inst_derive(struct js_inst *v, int32_t n_jobs, int32_t n_mach, int32_t n_ops,
                                          const int32_t *job_start, const int32_t *mach, const int32_t *dur,
                                          int32_t *out)
{
        int32_t *job = out, *jprev = out + n_ops, *jnext = out + 2 * (size_t)n_ops;
        int32_t *mach_start = out + 3 * (size_t)n_ops;
        for (int32_t j = 0; j < n_jobs; j++)
                for (int32_t o = job_start[j]; o < job_start[j + 1]; o++) {
                        job[o] = j;
                        jprev[o] = o > job_start[j] ? o - 1 : -1;
                        jnext[o] = o + 1 < job_start[j + 1] ? o + 1 : -1;
                }
        for (int32_t k = 0; k <= n_mach; k++)
                mach_start[k] = 0;
        for (int32_t o = 0; o < n_ops; o++)
                mach_start[mach[o] + 1]++;
        for (int32_t k = 0; k < n_mach; k++)
                mach_start[k + 1] += mach_start[k];
        v->n_jobs = n_jobs;
        v->n_mach = n_mach;
        v->n_ops = n_ops;
        v->job_start = job_start;
        v->mach = mach;
        v->dur = dur;
        v->job = job;
        v->jprev = jprev;
        v->jnext = jnext;
        v->mach_start = mach_start;
}

/* One candidate move: the segment seq[a..b] of one machine, reordered. */
struct js_cand {
        int32_t a, b;
        int32_t dir;       /* 0: seq[a] moves right after seq[b]; 1: seq[b] moves right before seq[a] */
        int32_t cls;       /* 0 allowed, 1 tabu, 3 infeasible */
        js_time est;       /* the estimated makespan after the move */
        uint64_t key;      /* the selection order: the smallest wins */
};

/* How a walk searches (search.h's js_config_for picks it from the size). */
struct js_config {
        int32_t tenure_min, tenure_span; /* a reversed order stays tabu tenure_min + rand(span) moves */
        int32_t max_stall;               /* moves without a new best before a back-jump */
        int32_t elite;                   /* elite solutions kept for back-jumps, <= JS_MAX_ELITE */
        int32_t elite_tries;             /* back-jumps to one elite solution */
        int32_t perturb;                 /* random moves of a restart */
};

#define JS_MAX_ELITE 8
#define JS_TABU_PROBES 4

struct js_walk {
        struct js_inst in;
        struct js_config cfg;
        int32_t *seq, *pos;        /* n_ops each */
        int32_t *mprev, *mnext;    /* n_ops each: the machine neighbours in seq, or -1 */
        js_time *head, *tail;      /* n_ops each */
        int32_t *order, *deg;      /* n_ops each: topological order; scratch, then the ends */
        int32_t *place;            /* n_ops: each operation's index in order */
        int32_t n_ends;            /* operations ending at the makespan (in deg[]) */
        int32_t *path;             /* n_ops: the critical path */
        struct js_cand *cand;      /* cap_cand */
        int32_t n_cand, cap_cand;
        uint32_t *tabu_key;        /* tabu_mask + 1 slots: (x, y) = "x before y" is tabu */
        int64_t *tabu_until;
        uint32_t tabu_mask;
        int32_t *best_seq;         /* n_ops */
        int32_t *elite_seq;        /* JS_MAX_ELITE * n_ops */
        js_time elite_mk[JS_MAX_ELITE];
        int32_t elite_tries[JS_MAX_ELITE];
        int32_t n_elite;
        /* Construction scratch. */
        int32_t *g_next;           /* n_jobs */
        js_time *g_jr, *g_rem;     /* n_jobs */
        js_time *g_mr;             /* n_mach */
        int32_t *g_fill;           /* n_mach */

        js_time mk, best_mk;
        js_time stop_at;           /* the walk is done once best_mk <= stop_at (bound or target) */
        uint64_t rng;
        uint64_t salt;             /* this move's tie-breaking */
        int64_t iter, stall, moves, best_iter;
        int32_t rank;              /* the move to take: 0 the best, r the r+1-th (a back-jump) */
        int32_t jumps, restarts;
        int32_t fails;             /* restarts since the last new best */
        int32_t done;              /* 1: reached stop_at; 2: no move left (the schedule is optimal) */
};

/* ---- random numbers: splitmix64 seeding, xorshift64* stream ---- */

KILN_HD static inline uint64_t js_mix64(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ull;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
}

KILN_HD static inline uint64_t js_rand(struct js_walk *w)
{
        uint64_t x = w->rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        w->rng = x;
        return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in 0..n-1 (n >= 1). */
KILN_HD static inline uint32_t js_below(struct js_walk *w, uint32_t n)
{
        return (uint32_t)(((js_rand(w) >> 32) * (uint64_t)n) >> 32);
}

/* ---- layout of a walk's memory ---- */

KILN_HD static inline size_t js_align8(size_t x)
{
        return (x + 7u) & ~(size_t)7u;
}

/* Takes `bytes` at *at of base (NULL: only counts). */
KILN_HD static inline void *js_take(unsigned char *base, size_t *at, size_t bytes)
{
        void *p = base ? (void *)(base + *at) : NULL;
        *at = js_align8(*at + bytes);
        return p;
}

KILN_HD static inline uint32_t js_tabu_slots(int32_t n_ops)
{
        uint32_t n = 2048;
        while (n < 2u * (uint32_t)n_ops && n < 65536u)
                n <<= 1;
        return n;
}

/* Points w's arrays into `mem` (NULL: nothing is written) and returns the bytes
 * the walk needs. The instance arrays are not part of it. */
KILN_HD static inline size_t js_walk_bind(struct js_walk *w, void *mem, const struct js_inst *in)
{
        unsigned char *b = (unsigned char *)mem;
        size_t at = 0, n = (size_t)in->n_ops, nj = (size_t)in->n_jobs, nm = (size_t)in->n_mach;
        uint32_t slots = js_tabu_slots(in->n_ops);
        int32_t cap = 4 * in->n_ops + 8;

        int32_t *seq = (int32_t *)js_take(b, &at, n * 4), *pos = (int32_t *)js_take(b, &at, n * 4);
        int32_t *mprev = (int32_t *)js_take(b, &at, n * 4), *mnext = (int32_t *)js_take(b, &at, n * 4);
        js_time *head = (js_time *)js_take(b, &at, n * 8), *tail = (js_time *)js_take(b, &at, n * 8);
        int32_t *order = (int32_t *)js_take(b, &at, n * 4), *deg = (int32_t *)js_take(b, &at, n * 4);
        int32_t *place = (int32_t *)js_take(b, &at, n * 4);
        int32_t *path = (int32_t *)js_take(b, &at, n * 4);
        struct js_cand *cand = (struct js_cand *)js_take(b, &at, (size_t)cap * sizeof(struct js_cand));
        uint32_t *tkey = (uint32_t *)js_take(b, &at, slots * 4u);
        int64_t *tuntil = (int64_t *)js_take(b, &at, slots * 8u);
        int32_t *best = (int32_t *)js_take(b, &at, n * 4);
        int32_t *elite = (int32_t *)js_take(b, &at, (size_t)JS_MAX_ELITE * n * 4);
        int32_t *g_next = (int32_t *)js_take(b, &at, nj * 4);
        js_time *g_jr = (js_time *)js_take(b, &at, nj * 8), *g_rem = (js_time *)js_take(b, &at, nj * 8);
        js_time *g_mr = (js_time *)js_take(b, &at, nm * 8);
        int32_t *g_fill = (int32_t *)js_take(b, &at, nm * 4);
        if (w && b) {
                w->in = *in;
                w->seq = seq;
                w->pos = pos;
                w->mprev = mprev;
                w->mnext = mnext;
                w->head = head;
                w->tail = tail;
                w->order = order;
                w->place = place;
                w->deg = deg;
                w->path = path;
                w->cand = cand;
                w->cap_cand = cap;
                w->tabu_key = tkey;
                w->tabu_until = tuntil;
                w->tabu_mask = slots - 1;
                w->best_seq = best;
                w->elite_seq = elite;
                w->g_next = g_next;
                w->g_jr = g_jr;
                w->g_rem = g_rem;
                w->g_mr = g_mr;
                w->g_fill = g_fill;
        }
        return at;
}

/* ---- neighbours in the graph ---- */

KILN_HD static inline int32_t js_jp(const struct js_walk *w, int32_t o)
{
        return w->in.jprev[o];
}

KILN_HD static inline int32_t js_js(const struct js_walk *w, int32_t o)
{
        return w->in.jnext[o];
}

KILN_HD static inline int32_t js_mp(const struct js_walk *w, int32_t o)
{
        return w->mprev[o];
}

KILN_HD static inline int32_t js_ms(const struct js_walk *w, int32_t o)
{
        return w->mnext[o];
}

/* Sets pos and the machine neighbours of the operations at seq positions
 * from..to of machine k (clipped to its slice). */
KILN_HD static inline void js_link(struct js_walk *w, int32_t k, int32_t from, int32_t to)
{
        int32_t lo = w->in.mach_start[k], hi = w->in.mach_start[k + 1];
        if (from < lo)
                from = lo;
        if (to >= hi)
                to = hi - 1;
        for (int32_t p = from; p <= to; p++) {
                int32_t o = w->seq[p];
                w->pos[o] = p;
                w->mprev[o] = p > lo ? w->seq[p - 1] : -1;
                w->mnext[o] = p + 1 < hi ? w->seq[p + 1] : -1;
        }
}

/* ---- heads, tails, makespan ---- */

/* Heads and tails of the whole graph (Kahn's topological order); returns the
 * makespan, or -1 when the graph has a cycle (the orders are no schedule). */
KILN_HD static inline js_time js_evaluate(struct js_walk *w)
{
        const struct js_inst *in = &w->in;
        int32_t n = in->n_ops, qh = 0, qt = 0;
        int32_t *order = w->order, *deg = w->deg;
        js_time *head = w->head, *tail = w->tail, mk = 0;

        const int32_t *jprev = in->jprev, *jnext = in->jnext, *dur = in->dur;
        const int32_t *mprev = w->mprev, *mnext = w->mnext;

        for (int32_t o = 0; o < n; o++) {
                deg[o] = (jprev[o] >= 0) + (mprev[o] >= 0);
                if (deg[o] == 0)
                        order[qt++] = o;
        }
        while (qh < qt) {
                int32_t o = order[qh++], x;
                js_time h = 0;
                if ((x = jprev[o]) >= 0)
                        h = head[x] + dur[x];
                if ((x = mprev[o]) >= 0 && head[x] + dur[x] > h)
                        h = head[x] + dur[x];
                head[o] = h;
                if (h + dur[o] > mk)
                        mk = h + dur[o];
                if ((x = jnext[o]) >= 0 && --deg[x] == 0)
                        order[qt++] = x;
                if ((x = mnext[o]) >= 0 && --deg[x] == 0)
                        order[qt++] = x;
        }
        if (qt < n)
                return -1;
        for (int32_t i = 0; i < n; i++)
                w->place[order[i]] = i;
        /* Tails backwards; the operations ending at the makespan go to deg[]. */
        w->n_ends = 0;
        for (int32_t i = n - 1; i >= 0; i--) {
                int32_t o = order[i], x;
                js_time t = 0;
                if ((x = jnext[o]) >= 0)
                        t = dur[x] + tail[x];
                if ((x = mnext[o]) >= 0 && dur[x] + tail[x] > t)
                        t = dur[x] + tail[x];
                tail[o] = t;
                if (t == 0 && head[o] + dur[o] == mk)
                        deg[w->n_ends++] = o;
        }
        return mk;
}

/* Rebuilds pos and the machine neighbours from seq. */
KILN_HD static inline void js_index(struct js_walk *w)
{
        for (int32_t k = 0; k < w->in.n_mach; k++)
                if (w->in.mach_start[k] < w->in.mach_start[k + 1])
                        js_link(w, k, w->in.mach_start[k], w->in.mach_start[k + 1] - 1);
}

/* ---- the first schedule ---- */

/* Whether operation x goes before y on a machine in the release-order schedule:
 * by release (the work of its job before it), then place in its job, then id.
 * Every job arc increases this key, so the orders close no cycle. */
KILN_HD static inline int js_release_before(const struct js_walk *w, int32_t x, int32_t y)
{
        const js_time *r = w->head;
        int32_t kx = x - w->in.job_start[w->in.job[x]], ky = y - w->in.job_start[w->in.job[y]];
        return r[x] < r[y] || (r[x] == r[y] && (kx < ky || (kx == ky && x < y)));
}

/* Heapsort of seq[lo..hi) by js_release_before. */
KILN_HD static inline void js_sift(struct js_walk *w, int32_t *a, int32_t i, int32_t n)
{
        for (;;) {
                int32_t c = 2 * i + 1, t;
                if (c >= n)
                        return;
                if (c + 1 < n && js_release_before(w, a[c], a[c + 1]))
                        c++;
                if (!js_release_before(w, a[i], a[c]))
                        return;
                t = a[i];
                a[i] = a[c];
                a[c] = t;
                i = c;
        }
}

/* The first schedule of a large instance, in O(n log n): each machine takes its
 * operations by release time (js_release_before). Uses head[] as scratch. */
KILN_HD static inline void js_construct_release(struct js_walk *w)
{
        const struct js_inst *in = &w->in;
        for (int32_t j = 0; j < in->n_jobs; j++) {
                js_time r = 0;
                for (int32_t o = in->job_start[j]; o < in->job_start[j + 1]; o++) {
                        w->head[o] = r;
                        r += in->dur[o];
                }
        }
        for (int32_t k = 0; k < in->n_mach; k++)
                w->g_fill[k] = in->mach_start[k];
        for (int32_t o = 0; o < in->n_ops; o++)
                w->seq[w->g_fill[in->mach[o]]++] = o;
        for (int32_t k = 0; k < in->n_mach; k++) {
                int32_t *a = w->seq + in->mach_start[k], n = in->mach_start[k + 1] - in->mach_start[k], t;
                for (int32_t i = n / 2 - 1; i >= 0; i--)
                        js_sift(w, a, i, n);
                for (int32_t e = n - 1; e > 0; e--) {
                        t = a[0];
                        a[0] = a[e];
                        a[e] = t;
                        js_sift(w, a, 0, e);
                }
        }
        js_index(w);
}

/* Giffler and Thompson's construction costs operations x jobs steps; beyond this
 * the release-order schedule starts the walk instead. */
#define JS_GT_MAX_STEPS 20000000

/* ---- Giffler and Thompson's active schedule ----
 * At each step the operation that could finish first fixes a machine; among the
 * operations that could start on it before then, the job with the most work left
 * goes first (ties and near-ties broken at random, so that walks start apart). */
KILN_HD static inline void js_construct(struct js_walk *w)
{
        const struct js_inst *in = &w->in;
        if ((int64_t)in->n_ops * in->n_jobs > JS_GT_MAX_STEPS) {
                js_construct_release(w);
                return;
        }
        for (int32_t j = 0; j < in->n_jobs; j++) {
                js_time rem = 0;
                for (int32_t o = in->job_start[j]; o < in->job_start[j + 1]; o++)
                        rem += in->dur[o];
                w->g_next[j] = in->job_start[j];
                w->g_jr[j] = 0;
                w->g_rem[j] = rem;
        }
        for (int32_t k = 0; k < in->n_mach; k++) {
                w->g_mr[k] = 0;
                w->g_fill[k] = in->mach_start[k];
        }
        for (int32_t step = 0; step < in->n_ops; step++) {
                js_time best_end = -1;
                int32_t best_k = -1;
                for (int32_t j = 0; j < in->n_jobs; j++) {
                        int32_t o = w->g_next[j];
                        if (o >= in->job_start[j + 1])
                                continue;
                        int32_t k = in->mach[o];
                        js_time s = w->g_jr[j] > w->g_mr[k] ? w->g_jr[j] : w->g_mr[k];
                        if (best_k < 0 || s + in->dur[o] < best_end) {
                                best_end = s + in->dur[o];
                                best_k = k;
                        }
                }
                int32_t pick = -1;
                uint64_t pick_key = 0;
                for (int32_t j = 0; j < in->n_jobs; j++) {
                        int32_t o = w->g_next[j];
                        if (o >= in->job_start[j + 1] || in->mach[o] != best_k)
                                continue;
                        js_time s = w->g_jr[j] > w->g_mr[best_k] ? w->g_jr[j] : w->g_mr[best_k];
                        if (s >= best_end && !(s == best_end && in->dur[o] == 0))
                                continue;
                        /* Most work remaining, with up to 1/8 of noise. */
                        uint64_t key = (uint64_t)w->g_rem[j] * 8u + js_below(w, 8u) * (uint64_t)(w->g_rem[j] / 8 + 1);
                        if (pick < 0 || key > pick_key) {
                                pick = j;
                                pick_key = key;
                        }
                }
                int32_t o = w->g_next[pick];
                js_time s = w->g_jr[pick] > w->g_mr[best_k] ? w->g_jr[pick] : w->g_mr[best_k];
                w->g_jr[pick] = w->g_mr[best_k] = s + in->dur[o];
                w->g_rem[pick] -= in->dur[o];
                w->g_next[pick]++;
                w->seq[w->g_fill[best_k]++] = o;
        }
        js_index(w);
}

/* ---- tabu memory: orders "x before y" recently destroyed ---- */

KILN_HD static inline uint32_t js_tabu_hash(uint32_t key)
{
        key ^= key >> 16;
        key *= 0x7feb352du;
        key ^= key >> 15;
        key *= 0x846ca68bu;
        return key ^ (key >> 16);
}

KILN_HD static inline int js_tabu_is(const struct js_walk *w, int32_t x, int32_t y)
{
        uint32_t key = (uint32_t)x * (uint32_t)w->in.n_ops + (uint32_t)y + 1u, h = js_tabu_hash(key);
        for (uint32_t p = 0; p < JS_TABU_PROBES; p++) {
                uint32_t s = (h + p) & w->tabu_mask;
                if (w->tabu_key[s] == key)
                        return w->tabu_until[s] > w->iter;
        }
        return 0;
}

KILN_HD static inline void js_tabu_add(struct js_walk *w, int32_t x, int32_t y, int64_t until)
{
        uint32_t key = (uint32_t)x * (uint32_t)w->in.n_ops + (uint32_t)y + 1u, h = js_tabu_hash(key);
        uint32_t victim = h & w->tabu_mask;
        for (uint32_t p = 0; p < JS_TABU_PROBES; p++) {
                uint32_t s = (h + p) & w->tabu_mask;
                if (w->tabu_key[s] == key || w->tabu_until[s] <= w->iter) {
                        victim = s;
                        break;
                }
                if (w->tabu_until[s] < w->tabu_until[victim])
                        victim = s;
        }
        w->tabu_key[victim] = key;
        w->tabu_until[victim] = until;
}

KILN_HD static inline void js_tabu_clear(struct js_walk *w)
{
        for (uint32_t s = 0; s <= w->tabu_mask; s++) {
                w->tabu_key[s] = 0;
                w->tabu_until[s] = 0;
        }
}

/* ---- the neighbourhood ---- */

KILN_HD static inline void js_add_cand(struct js_walk *w, int32_t a, int32_t b, int32_t dir)
{
        if (w->n_cand < w->cap_cand) {
                struct js_cand *c = &w->cand[w->n_cand++];
                c->a = a;
                c->b = b;
                c->dir = dir;
                c->cls = 3;
                c->est = 0;
                c->key = ~(uint64_t)0;
        }
}

/* Finds a critical path (a random one where there is a choice) and lists the
 * moves of its blocks in w->cand. Returns their number. */
KILN_HD static inline int32_t js_neighbours(struct js_walk *w)
{
        const struct js_inst *in = &w->in;
        int32_t n = in->n_ops, ends = 0, len = 0;

        w->n_cand = 0;
        ends = w->n_ends;
        if (ends == 0)
                return 0;
        int32_t v = w->deg[js_below(w, (uint32_t)ends)];
        while (v >= 0 && len < n) {
                w->path[len++] = v;
                js_time h = w->head[v];
                int32_t jp = js_jp(w, v), mp = js_mp(w, v);
                int cj = jp >= 0 && w->head[jp] + in->dur[jp] == h;
                int cm = mp >= 0 && w->head[mp] + in->dur[mp] == h;
                if (cj && cm)
                        v = (js_rand(w) >> 63) ? jp : mp;
                else
                        v = cj ? jp : cm ? mp : -1;
        }
        /* The path runs backwards; blocks are runs of one machine in it. */
        for (int32_t e = len - 1; e >= 0;) {
                int32_t s = e;
                while (s > 0 && in->mach[w->path[s - 1]] == in->mach[w->path[e]])
                        s--;
                /* Block: path[e] (first) .. path[s] (last), k operations. */
                int32_t k = e - s + 1, p = w->pos[w->path[e]];
                if (k >= 2) {
                        for (int32_t i = 2; i <= k; i++)          /* b_i to the front */
                                js_add_cand(w, p, p + i - 1, 1);
                        for (int32_t i = (k == 2 ? 2 : 1); i < k; i++) /* b_i to the back */
                                js_add_cand(w, p + i - 1, p + k - 1, 0);
                        for (int32_t i = 3; i < k; i++)           /* b_1 inwards, after b_i */
                                js_add_cand(w, p, p + i - 1, 0);
                        for (int32_t i = 2; i < k - 1; i++)       /* b_k inwards, before b_i */
                                js_add_cand(w, p + i - 1, p + k - 1, 1);
                }
                e = s - 1;
        }
        return w->n_cand;
}

/* The operation at place t (0..b-a) of the segment a..b after move c. */
KILN_HD static inline int32_t js_after(const struct js_walk *w, const struct js_cand *c, int32_t t)
{
        int32_t len = c->b - c->a + 1;
        if (c->dir == 0)
                return t < len - 1 ? w->seq[c->a + 1 + t] : w->seq[c->a];
        return t == 0 ? w->seq[c->b] : w->seq[c->a + t - 1];
}

/* Judges candidate i: feasibility, tabu status, estimated makespan, key. */
KILN_HD static inline void js_judge(struct js_walk *w, int32_t i)
{
        const struct js_inst *in = &w->in;
        struct js_cand *c = &w->cand[i];
        const int32_t *seq = w->seq;
        int32_t a = c->a, b = c->b, k = in->mach[seq[a]], len = b - a + 1;

        if (c->dir == 0) {
                int32_t u = seq[a], v = seq[b], x = js_js(w, u);
                /* A path from u's job successor back into the segment would close a
                 * cycle; it would make tail(js(u)) >= dur(v) + tail(v). */
                if (x >= 0 && w->tail[x] >= in->dur[v] + w->tail[v]) {
                        c->cls = 3;
                        c->key = ~(uint64_t)0;
                        return;
                }
        } else {
                int32_t u = seq[a], v = seq[b], x = js_jp(w, v);
                if (x >= 0 && w->head[x] >= w->head[u] + in->dur[u]) {
                        c->cls = 3;
                        c->key = ~(uint64_t)0;
                        return;
                }
        }
        int tabu = 0;
        if (c->dir == 0) {
                int32_t u = seq[a];
                for (int32_t t = a + 1; t <= b && !tabu; t++)
                        tabu = js_tabu_is(w, seq[t], u);
        } else {
                int32_t v = seq[b];
                for (int32_t t = a; t < b && !tabu; t++)
                        tabu = js_tabu_is(w, v, seq[t]);
        }
        /* The longest path through the reordered segment: enter at t1, run to t2,
         * leave; max over t1 <= t2 of in(t1) + sum dur(t1..t2) + out(t2). */
        int32_t xo = a > in->mach_start[k] ? seq[a - 1] : -1;
        int32_t yo = b + 1 < in->mach_start[k + 1] ? seq[b + 1] : -1;
        js_time best_in = 0, sum = 0, est = 0;
        for (int32_t t = 0; t < len; t++) {
                int32_t o = js_after(w, c, t), x;
                js_time e_in = 0, e_out = 0;
                if ((x = js_jp(w, o)) >= 0)
                        e_in = w->head[x] + in->dur[x];
                if (t == 0 && xo >= 0 && w->head[xo] + in->dur[xo] > e_in)
                        e_in = w->head[xo] + in->dur[xo];
                if (t == 0 || e_in - sum > best_in)
                        best_in = e_in - sum;
                sum += in->dur[o];
                if ((x = js_js(w, o)) >= 0)
                        e_out = in->dur[x] + w->tail[x];
                if (t == len - 1 && yo >= 0 && in->dur[yo] + w->tail[yo] > e_out)
                        e_out = in->dur[yo] + w->tail[yo];
                if (best_in + sum + e_out > est)
                        est = best_in + sum + e_out;
        }
        c->est = est;
        c->cls = tabu && est >= w->best_mk ? 1 : 0; /* aspiration: a tabu move to a new best is allowed */
        uint64_t e = (uint64_t)est < ((uint64_t)1 << 38) ? (uint64_t)est : ((uint64_t)1 << 38) - 1;
        c->key = (uint64_t)c->cls << 62 | e << 24 | (js_mix64(w->salt ^ (uint64_t)i) & 0xffffffu);
}

/* Judges candidates first, first + step, ... (one lane of several). */
KILN_HD static inline void js_judge_range(struct js_walk *w, int32_t first, int32_t step)
{
        for (int32_t i = first; i < w->n_cand; i += step)
                js_judge(w, i);
}

/* Whether candidate i comes before candidate j (key, then index). */
KILN_HD static inline int js_before(const struct js_walk *w, int32_t i, int32_t j)
{
        return w->cand[i].key < w->cand[j].key || (w->cand[i].key == w->cand[j].key && i < j);
}
