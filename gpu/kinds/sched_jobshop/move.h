/* Making a move (walk.h's candidates): the segment reordered, and heads and tails
 * brought up to date without sorting the whole graph again.
 *
 * The walk keeps a topological order (order[], place[]). A move reorders a machine
 * segment whose operations lie at places lo..hi of the order and changes no other
 * arc, so every arc between an operation inside the window lo..hi and one outside
 * it still goes forwards; sorting the window alone (Kahn's algorithm on its
 * operations) gives a topological order of the new graph, in the window's old
 * places (the local reordering of Pearce and Kelly's dynamic topological sort).
 * Heads before place lo and tails after place hi cannot change; the others are recomputed in
 * order. A cycle shows as a window that does not sort. Shared by the CPU and the
 * kernel, like walk.h. */
#pragma once

#include "walk.h"

/* Reorders the segment of move c in seq and pos; with `tenure` > 0 makes the orders
 * it destroys tabu for that many moves. */
KILN_HD static inline void js_shift(struct js_walk *w, const struct js_cand *c, int64_t tenure)
{
        int32_t a = c->a, b = c->b;
        if (c->dir == 0) {
                int32_t u = w->seq[a];
                for (int32_t t = a; t < b; t++) {
                        w->seq[t] = w->seq[t + 1];
                        if (tenure > 0)
                                js_tabu_add(w, u, w->seq[t], w->iter + tenure);
                }
                w->seq[b] = u;
        } else {
                int32_t v = w->seq[b];
                for (int32_t t = b; t > a; t--) {
                        w->seq[t] = w->seq[t - 1];
                        if (tenure > 0)
                                js_tabu_add(w, w->seq[t], v, w->iter + tenure);
                }
                w->seq[a] = v;
        }
        js_link(w, w->in.mach[w->seq[a]], a - 1, b + 1);
}

/* After a move whose segment held places lo..hi: re-sorts that window, then heads
 * from lo on and tails up to hi, then the makespan and the operations ending at
 * it. Returns the makespan, or -1 when the window does not sort (a cycle). */
KILN_HD static inline js_time js_evaluate_window(struct js_walk *w, int32_t lo, int32_t hi)
{
        const struct js_inst *in = &w->in;
        const int32_t *jprev = in->jprev, *jnext = in->jnext, *dur = in->dur;
        const int32_t *mprev = w->mprev, *mnext = w->mnext;
        int32_t *order = w->order, *place = w->place, *deg = w->deg, *win = w->path;
        js_time *head = w->head, *tail = w->tail, mk = 0;
        int32_t n = in->n_ops, size = hi - lo + 1, qt = lo, x;

        /* The window's operations (path[] is free until the neighbourhood), with
         * their predecessors inside the window counted; places are still the old. */
        for (int32_t i = 0; i < size; i++) {
                int32_t o = order[lo + i];
                win[i] = o;
                int32_t jp = jprev[o], mp = mprev[o];
                deg[o] = (jp >= 0 && place[jp] >= lo) + (mp >= 0 && place[mp] >= lo);
        }
        for (int32_t i = 0; i < size; i++)
                if (deg[win[i]] == 0)
                        order[qt++] = win[i];
        for (int32_t qh = lo; qh < qt; qh++) {
                int32_t o = order[qh];
                if ((x = jnext[o]) >= 0 && place[x] >= lo && place[x] <= hi && --deg[x] == 0)
                        order[qt++] = x;
                if ((x = mnext[o]) >= 0 && place[x] >= lo && place[x] <= hi && --deg[x] == 0)
                        order[qt++] = x;
        }
        if (qt != hi + 1) {
                for (int32_t i = 0; i < size; i++) /* the old order, for the undo */
                        order[lo + i] = win[i];
                return -1;
        }
        for (int32_t i = lo; i <= hi; i++)
                place[order[i]] = i;
        for (int32_t i = lo; i < n; i++) {
                int32_t o = order[i];
                js_time h = 0;
                if ((x = jprev[o]) >= 0)
                        h = head[x] + dur[x];
                if ((x = mprev[o]) >= 0 && head[x] + dur[x] > h)
                        h = head[x] + dur[x];
                head[o] = h;
        }
        for (int32_t i = hi; i >= 0; i--) {
                int32_t o = order[i];
                js_time t = 0;
                if ((x = jnext[o]) >= 0)
                        t = dur[x] + tail[x];
                if ((x = mnext[o]) >= 0 && dur[x] + tail[x] > t)
                        t = dur[x] + tail[x];
                tail[o] = t;
        }
        for (int32_t o = 0; o < n; o++)
                if (head[o] + dur[o] > mk)
                        mk = head[o] + dur[o];
        w->n_ends = 0;
        for (int32_t i = n - 1; i >= 0; i--) {
                int32_t o = order[i];
                if (tail[o] == 0 && head[o] + dur[o] == mk)
                        deg[w->n_ends++] = o;
        }
        return mk;
}

/* Applies move c and evaluates the new schedule. A move that would close a cycle
 * (the tests in js_judge rule it out; this is the safety net) is undone. Returns
 * the new makespan, or -1 when the move was undone. */
KILN_HD static inline js_time js_apply(struct js_walk *w, const struct js_cand *c, int64_t tenure)
{
        int32_t lo = w->place[w->seq[c->a]], hi = w->place[w->seq[c->b]];
        js_shift(w, c, tenure);
        js_time mk = js_evaluate_window(w, lo, hi);
        if (mk >= 0)
                return mk;
        struct js_cand back = *c;
        back.dir = 1 - c->dir;
        js_shift(w, &back, 0);
        js_evaluate(w);
        return -1;
}
