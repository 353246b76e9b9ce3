/* The lower bound of the makespan.
 *
 * Two relaxations, the larger wins:
 *  - a job alone: the sum of its durations;
 *  - a machine alone, with every operation's head (the work of its job before it)
 *    and tail (the work after it): the one-machine problem with heads and tails,
 *    relaxed to allow preemption, which Jackson's rule solves exactly (Carlier
 *    1982): at every moment run the available operation with the longest tail. Its
 *    value max(C_i + q_i) is a lower bound of the whole problem, and at least the
 *    simple machine bound min r + sum p + min q. */
#include <errno.h>
#include <stdlib.h>

#include "jobshop.h"

struct item {
        int64_t r, p, q;
};

static int by_release(const void *a, const void *b)
{
        const struct item *x = a, *y = b;
        return (x->r > y->r) - (x->r < y->r);
}

/* A max-heap of indices into items, by tail. */
static void heap_push(int32_t *h, int *n, const struct item *it, int32_t v)
{
        int i = (*n)++;
        h[i] = v;
        while (i > 0) {
                int parent = (i - 1) / 2;
                if (it[h[parent]].q >= it[h[i]].q)
                        break;
                int32_t t = h[parent];
                h[parent] = h[i];
                h[i] = t;
                i = parent;
        }
}

static int32_t heap_pop(int32_t *h, int *n, const struct item *it)
{
        int32_t top = h[0];
        h[0] = h[--(*n)];
        for (int i = 0;;) {
                int l = 2 * i + 1, r = l + 1, big = i;
                if (l < *n && it[h[l]].q > it[h[big]].q)
                        big = l;
                if (r < *n && it[h[r]].q > it[h[big]].q)
                        big = r;
                if (big == i)
                        break;
                int32_t t = h[big];
                h[big] = h[i];
                h[i] = t;
                i = big;
        }
        return top;
}

/* Jackson's preemptive schedule of items[0..k) (sorted by release here): the
 * largest completion plus tail. `heap` has room for k. */
static int64_t jackson(struct item *items, int k, int32_t *heap)
{
        int64_t t = 0, best = 0;
        int next = 0, n = 0;

        qsort(items, (size_t)k, sizeof(*items), by_release);
        while (next < k || n > 0) {
                if (n == 0 && t < items[next].r)
                        t = items[next].r;
                while (next < k && items[next].r <= t)
                        heap_push(heap, &n, items, next++);
                int32_t j = heap_pop(heap, &n, items);
                int64_t release = next < k ? items[next].r : INT64_MAX;
                if (t + items[j].p <= release) {
                        t += items[j].p;
                        if (t + items[j].q > best)
                                best = t + items[j].q;
                } else {
                        /* Runs until the next release, then competes again. */
                        items[j].p -= release - t;
                        t = release;
                        heap_push(heap, &n, items, j);
                }
        }
        return best;
}

int64_t js_lower_bound(const struct js_instance *in)
{
        int64_t lb = 0;
        int32_t n_ops = in->n_ops;
        struct item *all = malloc((size_t)(n_ops ? n_ops : 1) * sizeof(*all));
        struct item *items = malloc((size_t)(n_ops ? n_ops : 1) * sizeof(*items));
        /* Scratch for the counting sort (n_mach) first, then the heap (n_ops). */
        size_t heap_n = (size_t)(n_ops > in->n_mach ? n_ops : in->n_mach) + 1;
        int32_t *heap = malloc(heap_n * sizeof(*heap));
        int32_t *count = calloc((size_t)in->n_mach + 1, sizeof(*count));

        if (!all || !items || !heap || !count) {
                free(all);
                free(items);
                free(heap);
                free(count);
                return -ENOMEM;
        }
        for (int32_t j = 0; j < in->n_jobs; j++) {
                int64_t total = 0, before = 0;
                for (int32_t o = in->job_start[j]; o < in->job_start[j + 1]; o++)
                        total += in->dur[o];
                for (int32_t o = in->job_start[j]; o < in->job_start[j + 1]; o++) {
                        all[o] = (struct item){ before, in->dur[o], total - before - in->dur[o] };
                        before += in->dur[o];
                }
                if (total > lb)
                        lb = total;
        }
        /* Group the operations by machine: counting sort into items. */
        for (int32_t o = 0; o < n_ops; o++)
                count[in->mach[o] + 1]++;
        for (int32_t k = 0; k < in->n_mach; k++)
                count[k + 1] += count[k];
        int32_t *fill = heap; /* scratch until the heap is needed */
        for (int32_t k = 0; k < in->n_mach; k++)
                fill[k] = count[k];
        for (int32_t o = 0; o < n_ops; o++)
                items[fill[in->mach[o]]++] = all[o];
        for (int32_t k = 0; k < in->n_mach; k++) {
                int n = count[k + 1] - count[k];
                if (n == 0)
                        continue;
                int64_t v = jackson(items + count[k], n, heap);
                if (v > lb)
                        lb = v;
        }
        free(all);
        free(items);
        free(heap);
        free(count);
        return lb;
}
