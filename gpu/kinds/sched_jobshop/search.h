/* The tabu search that drives one walk (walk.h), shared by the CPU and the kernel.
 *
 * Each move takes the best allowed candidate of the neighbourhood (a tabu one only
 * when it would give a new best: aspiration) and forbids the orders it destroyed
 * for a random tenure. New best schedules go on a short elite list; after
 * max_stall moves without a new best the walk jumps back to the newest elite
 * schedule and leaves it by its next-best move instead (the back-jump tracking of
 * Nowicki and Smutnicki's TSAB), each elite schedule a few times; once the list is
 * spent it restarts from its best schedule shaken by a few random moves, more of
 * them after each restart that found nothing better.
 *
 * One move is four phases so that the kernel can judge the candidates with every
 * thread of a block: js_prepare (one thread), js_judge_range (all), js_pick (one,
 * or a reduction giving the same index), js_finish (one). js_step runs them in a
 * row on the CPU. */
#pragma once

#include "move.h"

/* The search settings for an instance, from its shape alone: the tabu tenure grows
 * with the jobs (the orders a machine can hold), its spread with jobs per machine
 * (Zhang et al. 2007), the patience with the size. Chosen by the mean gap over
 * Taillard's ta01-ta20 at a fixed number of moves, checked on ta41-ta43 and
 * ta51-ta55 (tests/bench/jobshop/taillard.py makes them). */
KILN_HD static inline struct js_config js_config_for(const struct js_inst *in)
{
        struct js_config c;
        int32_t m = in->n_mach > 0 ? in->n_mach : 1, n = in->n_jobs;
        int32_t l = 2 + (n < 96 ? n : 96) / 2;
        c.tenure_min = l;
        c.tenure_span = n <= 2 * m ? (4 * l) / 10 : l / 2;
        c.max_stall = 2000 + 20 * in->n_ops;
        c.elite = 5;
        c.elite_tries = 3;
        c.perturb = 4 + in->n_ops / 100;
        return c;
}

/* The seed of walk i of a job seeded `seed`: walk 0 takes the job's seed, so one
 * walk goes the same way on every backend. */
KILN_HD static inline uint64_t js_walk_seed(uint64_t seed, uint32_t i)
{
        return seed ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull);
}

KILN_HD static inline void js_copy(int32_t *dst, const int32_t *src, int32_t n)
{
        for (int32_t i = 0; i < n; i++)
                dst[i] = src[i];
}

/* Puts the current schedule on the elite list (the oldest goes when full). */
KILN_HD static inline void js_elite_push(struct js_walk *w)
{
        int32_t n = w->in.n_ops, e = w->cfg.elite < JS_MAX_ELITE ? w->cfg.elite : JS_MAX_ELITE;
        if (e <= 0)
                return;
        if (w->n_elite == e) {
                for (int32_t i = 1; i < e; i++) {
                        js_copy(w->elite_seq + (size_t)(i - 1) * n, w->elite_seq + (size_t)i * n, n);
                        w->elite_mk[i - 1] = w->elite_mk[i];
                        w->elite_tries[i - 1] = w->elite_tries[i];
                }
                w->n_elite--;
        }
        js_copy(w->elite_seq + (size_t)w->n_elite * n, w->seq, n);
        w->elite_mk[w->n_elite] = w->mk;
        w->elite_tries[w->n_elite] = 0;
        w->n_elite++;
}

/* Takes the current schedule as the best when it is better. Returns 1 if so. */
KILN_HD static inline int js_record(struct js_walk *w)
{
        if (w->mk >= w->best_mk)
                return 0;
        w->best_mk = w->mk;
        w->best_iter = w->iter;
        w->fails = 0;
        js_copy(w->best_seq, w->seq, w->in.n_ops);
        if (w->best_mk <= w->stop_at)
                w->done = 1;
        return 1;
}

/* Starts the walk: a first schedule from the seed. stop_at is the lower bound (or
 * a target above it): the walk is done once its best reaches it. */
KILN_HD static inline void js_walk_start(struct js_walk *w, const struct js_config *cfg, uint64_t seed,
                                         js_time stop_at)
{
        w->cfg = *cfg;
        w->rng = js_mix64(seed) | 1u;
        w->stop_at = stop_at;
        w->iter = w->stall = w->moves = w->best_iter = 0;
        w->rank = w->jumps = w->restarts = w->fails = w->done = 0;
        w->n_elite = 0;
        w->n_cand = 0;
        js_tabu_clear(w);
        js_construct(w);
        w->mk = js_evaluate(w);
        w->best_mk = w->mk;
        js_copy(w->best_seq, w->seq, w->in.n_ops);
        js_elite_push(w);
        if (w->best_mk <= stop_at)
                w->done = 1;
}

/* Loads a stored schedule as the current one. */
KILN_HD static inline void js_load(struct js_walk *w, const int32_t *seq)
{
        js_copy(w->seq, seq, w->in.n_ops);
        js_index(w);
        w->mk = js_evaluate(w);
}

/* `steps` random feasible moves from the current schedule. */
KILN_HD static inline void js_perturb(struct js_walk *w, int32_t steps)
{
        for (int32_t step = 0; step < steps; step++) {
                if (js_neighbours(w) == 0)
                        return;
                w->salt = js_rand(w);
                js_judge_range(w, 0, 1);
                int32_t feasible = 0;
                for (int32_t i = 0; i < w->n_cand; i++)
                        feasible += w->cand[i].cls != 3;
                if (feasible == 0)
                        return;
                int32_t k = (int32_t)js_below(w, (uint32_t)feasible), i = 0;
                for (; i < w->n_cand; i++)
                        if (w->cand[i].cls != 3 && k-- == 0)
                                break;
                js_time mk = js_apply(w, &w->cand[i], 0);
                if (mk >= 0) {
                        w->mk = mk;
                        js_record(w);
                }
        }
}

/* The back-jump (or, with the elite list spent, the restart). */
KILN_HD static inline void js_jump(struct js_walk *w)
{
        while (w->n_elite > 0 && w->elite_tries[w->n_elite - 1] >= w->cfg.elite_tries)
                w->n_elite--;
        if (w->n_elite > 0) {
                int32_t e = w->n_elite - 1;
                js_load(w, w->elite_seq + (size_t)e * w->in.n_ops);
                w->rank = ++w->elite_tries[e];
                w->jumps++;
        } else {
                /* Each restart in a row without a new best shakes harder. */
                int32_t steps = w->cfg.perturb + w->fails;
                js_load(w, w->best_seq);
                js_perturb(w, steps < 3 * w->cfg.perturb ? steps : 3 * w->cfg.perturb);
                w->restarts++;
                w->fails++;
        }
        js_tabu_clear(w);
        w->stall = 0;
}

/* Phase 1: the back-jump when due, then the neighbourhood. Returns the number of
 * candidates to judge. */
KILN_HD static inline int32_t js_prepare(struct js_walk *w)
{
        w->rank = 0;
        if (w->stall >= w->cfg.max_stall)
                js_jump(w);
        w->salt = js_rand(w);
        return js_neighbours(w);
}

/* Phase 3: the index of the move to take (the best, or after a back-jump the
 * rank+1-th best), -1 when no candidate is feasible. */
KILN_HD static inline int32_t js_pick(const struct js_walk *w)
{
        int32_t prev = -1, best = -1;
        for (int32_t r = 0; r <= w->rank; r++) {
                int32_t next = -1;
                for (int32_t i = 0; i < w->n_cand; i++) {
                        if (w->cand[i].cls == 3 || (prev >= 0 && !js_before(w, prev, i)))
                                continue;
                        if (next < 0 || js_before(w, i, next))
                                next = i;
                }
                if (next < 0)
                        break;
                best = prev = next;
        }
        return best;
}

/* Phase 4: takes move idx (-1: none) and keeps the books. Returns 1 when the walk
 * found a new best schedule. */
KILN_HD static inline int js_finish(struct js_walk *w, int32_t idx)
{
        w->iter++;
        w->moves += w->n_cand;
        if (idx < 0) {
                if (w->n_cand == 0) {
                        /* A critical path without a machine block is one job's chain:
                         * no schedule is shorter. */
                        int better = js_record(w);
                        if (w->mk <= w->best_mk)
                                w->done = w->done ? w->done : 2;
                        else
                                w->stall = w->cfg.max_stall;
                        return better;
                }
                w->stall = w->cfg.max_stall; /* nothing feasible: jump next time */
                return 0;
        }
        int64_t tenure = w->cfg.tenure_min + (int64_t)js_below(w, (uint32_t)w->cfg.tenure_span + 1u);
        js_time mk = js_apply(w, &w->cand[idx], tenure);
        if (mk < 0) {
                w->stall = w->cfg.max_stall;
                return 0;
        }
        w->mk = mk;
        if (js_record(w)) {
                w->stall = 0;
                js_elite_push(w);
                return 1;
        }
        w->stall++;
        return 0;
}

/* One move, all four phases in a row (the CPU). */
KILN_HD static inline int js_step(struct js_walk *w)
{
        int32_t n = js_prepare(w);
        js_judge_range(w, 0, 1);
        return js_finish(w, n ? js_pick(w) : -1);
}
