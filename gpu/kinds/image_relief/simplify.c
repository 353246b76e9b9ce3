/* image.relief's simplification: greedy insertion into a Delaunay triangulation of
 * grid points (Garland and Heckbert, "Fast Polygonal Approximation of Terrains and
 * Height Fields", 1995, algorithm III).
 *
 * Every triangle knows its worst grid point (the largest vertical distance from its
 * plane) and sits in a max-heap by that error; the worst point of all is inserted
 * (splitting its triangle, or the edge it lies on), Lawson flips restore the
 * Delaunay property around it, and the triangles that changed are scanned again,
 * until no point is farther than the tolerance. Points are integer grid positions,
 * so the orientation and in-circle tests are exact in 64-bit integers: no
 * degenerate or inverted triangle can arise. Border points are inserted like any
 * other, so the boundary is approximated within the tolerance too and the walls
 * (mesh.c) are built on exactly the boundary edges that remain.
 *
 * Triangles are stored with a positive orientation in grid coordinates (x = column,
 * y = row, y down), which is clockwise seen from above; they are reversed on output. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_relief.h"
#include "relief_math.h"

struct tri {
        uint32_t v[3];          /* vertex ids */
        int32_t nb[3];          /* the triangle across the edge opposite v[k], -1 on the boundary */
        uint32_t cand;          /* grid index of its worst point */
        int32_t heap;           /* position in the heap, -1 when not there */
        double err;             /* that point's distance from the plane; < 0: no point */
        uint32_t stamp;         /* the insertion that last queued it for a scan */
};

struct heap_entry {
        double err;
        uint32_t t;
};

/* A vertex: its grid index and, beside it (one cache line, not two), its column
 * and row, so that the geometric tests need no division by the grid's width. */
struct vtx {
        uint32_t g;
        uint16_t x, y;          /* grids are at most RELIEF_MAX_SIDE_PX a side */
};

struct simp {
        const double *h;
        int64_t w, hgt;
        double tol;
        struct vtx *verts;
        uint32_t n_verts, cap_verts;
        struct tri *t;
        uint32_t n_t, cap_t;
        struct heap_entry *heap;/* as long as t */
        uint32_t n_heap, cap_heap;
        uint32_t *dirty;        /* triangles to scan after this insertion */
        uint32_t n_dirty, cap_dirty;
        uint32_t *stack;        /* (triangle, index of the new point) pairs to legalise */
        uint32_t n_stack, cap_stack;
        uint32_t stamp;
};

static int64_t px(const struct simp *s, uint32_t v)
{
        return s->verts[v].x;
}

static int64_t py(const struct simp *s, uint32_t v)
{
        return s->verts[v].y;
}

static int64_t orient(int64_t ax, int64_t ay, int64_t bx, int64_t by, int64_t cx, int64_t cy)
{
        return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
}

static int64_t orient_v(const struct simp *s, uint32_t a, uint32_t b, uint32_t c)
{
        return orient(px(s, a), py(s, a), px(s, b), py(s, b), px(s, c), py(s, c));
}

/* > 0 when d lies strictly inside the circumcircle of (a, b, c), positively oriented.
 * Coordinates below 4096: every term stays far below 2^63. */
static int64_t incircle(const struct simp *s, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
        int64_t dx = px(s, d), dy = py(s, d);
        int64_t ax = px(s, a) - dx, ay = py(s, a) - dy, bx = px(s, b) - dx, by = py(s, b) - dy;
        int64_t cx = px(s, c) - dx, cy = py(s, c) - dy;
        int64_t a2 = ax * ax + ay * ay, b2 = bx * bx + by * by, c2 = cx * cx + cy * cy;
        return ax * (by * c2 - b2 * cy) - ay * (bx * c2 - b2 * cx) + a2 * (bx * cy - by * cx);
}

static int grow(void **p, uint32_t *cap, uint32_t need, size_t size)
{
        if (need <= *cap)
                return 0;
        uint64_t n = *cap ? *cap : 64;
        while (n < need)
                n *= 2;
        if (n > UINT32_MAX)
                return -ENOMEM;
        void *q = realloc(*p, n * size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *cap = (uint32_t)n;
        return 0;
}

/* ---- the heap of triangles by error ---- */

/* Entries carry their key, so sifting reads the heap array alone. */
static void heap_set(struct simp *s, uint32_t pos, struct heap_entry e)
{
        s->heap[pos] = e;
        s->t[e.t].heap = (int32_t)pos;
}

static void heap_up(struct simp *s, uint32_t pos)
{
        struct heap_entry e = s->heap[pos];
        while (pos > 0) {
                uint32_t parent = (pos - 1) / 2;
                if (s->heap[parent].err >= e.err)
                        break;
                heap_set(s, pos, s->heap[parent]);
                pos = parent;
        }
        heap_set(s, pos, e);
}

static void heap_down(struct simp *s, uint32_t pos)
{
        struct heap_entry e = s->heap[pos];
        for (;;) {
                uint32_t c = 2 * pos + 1;
                if (c >= s->n_heap)
                        break;
                if (c + 1 < s->n_heap && s->heap[c + 1].err > s->heap[c].err)
                        c++;
                if (s->heap[c].err <= e.err)
                        break;
                heap_set(s, pos, s->heap[c]);
                pos = c;
        }
        heap_set(s, pos, e);
}

static void heap_remove(struct simp *s, uint32_t t)
{
        int32_t pos = s->t[t].heap;
        if (pos < 0)
                return;
        s->t[t].heap = -1;
        struct heap_entry last = s->heap[--s->n_heap];
        if ((uint32_t)pos == s->n_heap)
                return;
        heap_set(s, (uint32_t)pos, last);
        heap_up(s, (uint32_t)pos);
        heap_down(s, (uint32_t)s->t[last.t].heap);
}

static void heap_push(struct simp *s, uint32_t t)
{
        s->heap[s->n_heap] = (struct heap_entry){ .err = s->t[t].err, .t = t };
        heap_up(s, s->n_heap++);
}

/* ---- scanning a triangle for its worst point ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
        int64_t q = a / b;
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* One edge P -> Q of a triangle being scanned, walked row by row: on row y the
 * points with orient(P, Q, (x, y)) >= 0 are those with x <= P.x + q (Q below P) or
 * x >= P.x - q (Q above P), q = floor(dx * (y - P.y) / |dy|), kept exactly as a
 * quotient and remainder: one division per edge, not one per row. */
struct edge_walk {
        int64_t px, dx, den;    /* den = |dy|; 0 for a horizontal edge */
        int sign;               /* +1: an upper bound on x, -1: a lower bound */
        int64_t q, r;           /* dx * (y - py) = q * den + r, 0 <= r < den */
        int64_t dq, dr;         /* dx = dq * den + dr, 0 <= dr < den */
};

static void edge_start(struct edge_walk *e, int64_t ppx, int64_t ppy, int64_t qx, int64_t qy, int64_t y)
{
        int64_t dy = qy - ppy;
        e->px = ppx;
        e->dx = qx - ppx;
        e->den = dy < 0 ? -dy : dy;
        e->sign = dy > 0 ? 1 : -1;
        if (!e->den)
                return;
        e->q = floor_div(e->dx * (y - ppy), e->den);
        e->r = e->dx * (y - ppy) - e->q * e->den;
        e->dq = floor_div(e->dx, e->den);
        e->dr = e->dx - e->dq * e->den;
}

/* Narrows [*lo, *hi] to this row's points, then steps to the next row. */
static void edge_row(struct edge_walk *e, int64_t *lo, int64_t *hi)
{
        if (!e->den)
                return; /* horizontal: the triangle lies on its inner side on every row */
        if (e->sign > 0) {
                if (e->px + e->q < *hi)
                        *hi = e->px + e->q;
        } else if (e->px - e->q > *lo) {
                *lo = e->px - e->q;
        }
        e->q += e->dq;
        e->r += e->dr;
        if (e->r >= e->den) {
                e->r -= e->den;
                e->q++;
        }
}

/* A grid point's distance from the plane, on a row whose plane is base + gx * col. */
static inline double row_err(const double *hr, double base, double gx, int64_t col)
{
        return fabs(hr[col] - (base + gx * (double)col));
}

/* Two doubles side by side (GCC's and Clang's vector extension: SSE2 or NEON, no
 * intrinsics), and the integer lanes of their compares and bit masks. */
typedef double v2d __attribute__((vector_size(16)));
typedef int64_t v2i __attribute__((vector_size(16)));

/* The larger of a and b in each lane (no NaN reaches here: heights are finite). */
static inline v2d v2_max(v2d a, v2d b)
{
        v2i gt = a > b;
        return (v2d)(((v2i)a & gt) | ((v2i)b & ~gt));
}

/* row_err at columns col and col + 1 (cols holds them as doubles): the same
 * operations in the same order, so each lane equals row_err bit for bit. */
static inline v2d row_err2(const double *hr, v2d base, v2d gx, v2d cols, int64_t col)
{
        v2d h;
        memcpy(&h, hr + col, sizeof(h));
        v2d e = h - (base + gx * cols);
        return (v2d)((v2i)e & (v2i){ INT64_MAX, INT64_MAX });
}

/* The largest row_err over columns [lo, hi], two lanes by two. */
static double row_max(const double *hr, double base, double gx, int64_t lo, int64_t hi)
{
        v2d vb = { base, base }, vg = { gx, gx }, m0 = { -1.0, -1.0 }, m1 = m0;
        v2d c0 = { (double)lo, (double)lo + 1 }, c1 = c0 + 2.0;
        int64_t col = lo;
        for (; col + 3 <= hi; col += 4) {
                m0 = v2_max(row_err2(hr, vb, vg, c0, col), m0);
                m1 = v2_max(row_err2(hr, vb, vg, c1, col + 2), m1);
                c0 += 4.0;
                c1 += 4.0;
        }
        m0 = v2_max(m0, m1);
        double m = m0[0] > m0[1] ? m0[0] : m0[1];
        for (; col <= hi; col++) {
                double e = row_err(hr, base, gx, col);
                m = e > m ? e : m;
        }
        return m;
}

/* A triangle being scanned: its corners, its plane z = base + gx * col on each
 * row (base0 + gy * row), and the best point found so far. */
struct scan_tri {
        int64_t x[3], y[3];
        uint32_t g[3];          /* grid indices of the corners */
        double z0, gx, gy;
        double best;
        uint32_t cand;
};

static double row_base(const struct scan_tri *c, int64_t row)
{
        return c->z0 + c->gy * (double)(row - c->y[0]) - c->gx * (double)c->x[0];
}

/* The points of columns [lo, hi] of one row, in order: the first that is farther
 * than the best so far becomes it (the corners are never candidates). */
static void scan_span(const struct simp *s, struct scan_tri *c, int64_t row, int64_t lo, int64_t hi)
{
        const double *hr = s->h + row * s->w;
        double base = row_base(c, row);
        if (row != c->y[0] && row != c->y[1] && row != c->y[2]) {
                /* No corner on this row: its maximum first, and only when that
                 * beats the best so far, the first column that has it (the point
                 * the loop below would pick). */
                double m = row_max(hr, base, c->gx, lo, hi);
                if (m > c->best) {
                        int64_t col = lo;
                        /* row_max is row_err's maximum bit for bit (-ffp-contract=off);
                                 * the bound only keeps a broken build from running away */
                        while (col < hi && row_err(hr, base, c->gx, col) != m)
                                col++;
                        c->best = m;
                        c->cand = (uint32_t)(row * s->w + col);
                }
                return;
        }
        for (int64_t col = lo; col <= hi; col++) {
                double err = row_err(hr, base, c->gx, col);
                if (err > c->best) {
                        uint32_t g = (uint32_t)(row * s->w + col);
                        if (g == c->g[0] || g == c->g[1] || g == c->g[2])
                                continue;
                        c->best = err;
                        c->cand = g;
                }
        }
}

static void scan(struct simp *s, uint32_t ti)
{
        struct tri *t = &s->t[ti];
        struct scan_tri c = { .best = -1.0 };
        double z[3];
        for (int k = 0; k < 3; k++) {
                c.x[k] = px(s, t->v[k]);
                c.y[k] = py(s, t->v[k]);
                c.g[k] = s->verts[t->v[k]].g;
                z[k] = s->h[c.g[k]];
        }
        const int64_t *x = c.x, *y = c.y;
        double d = (double)orient(x[0], y[0], x[1], y[1], x[2], y[2]);
        c.z0 = z[0];
        c.gx = ((z[1] - z[0]) * (double)(y[2] - y[0]) - (z[2] - z[0]) * (double)(y[1] - y[0])) / d;
        c.gy = ((z[2] - z[0]) * (double)(x[1] - x[0]) - (z[1] - z[0]) * (double)(x[2] - x[0])) / d;
        int64_t y0 = y[0] < y[1] ? (y[0] < y[2] ? y[0] : y[2]) : (y[1] < y[2] ? y[1] : y[2]);
        int64_t y1 = y[0] > y[1] ? (y[0] > y[2] ? y[0] : y[2]) : (y[1] > y[2] ? y[1] : y[2]);
        struct edge_walk e[3];
        for (int k = 0; k < 3; k++)
                edge_start(&e[k], x[k], y[k], x[(k + 1) % 3], y[(k + 1) % 3], y0);
        for (int64_t row = y0; row <= y1; row++) {
                int64_t lo = 0, hi = s->w - 1;
                for (int k = 0; k < 3; k++)
                        edge_row(&e[k], &lo, &hi);
                scan_span(s, &c, row, lo, hi);
        }
        t->err = c.best;
        t->cand = c.cand;
}

/* ---- building the triangulation ---- */

static int add_tri(struct simp *s, uint32_t *ret)
{
        if (grow((void **)&s->t, &s->cap_t, s->n_t + 1, sizeof(struct tri)) < 0 ||
            grow((void **)&s->heap, &s->cap_heap, s->cap_t, sizeof(struct heap_entry)) < 0)
                return -ENOMEM;
        memset(&s->t[s->n_t], 0, sizeof(struct tri));
        s->t[s->n_t].heap = -1;
        *ret = s->n_t++;
        return 0;
}

static void set_tri(struct simp *s, uint32_t ti, uint32_t a, uint32_t b, uint32_t c, int32_t na, int32_t nb,
                    int32_t nc)
{
        struct tri *t = &s->t[ti];
        t->v[0] = a;
        t->v[1] = b;
        t->v[2] = c;
        t->nb[0] = na;
        t->nb[1] = nb;
        t->nb[2] = nc;
}

/* In triangle `n` (may be -1), the neighbour link that pointed at `from` now points
 * at `to`. */
static void relink(struct simp *s, int32_t n, uint32_t from, uint32_t to)
{
        if (n < 0)
                return;
        for (int k = 0; k < 3; k++)
                if (s->t[n].nb[k] == (int32_t)from)
                        s->t[n].nb[k] = (int32_t)to;
}

static int mark(struct simp *s, uint32_t ti)
{
        if (s->t[ti].stamp == s->stamp)
                return 0;
        if (grow((void **)&s->dirty, &s->cap_dirty, s->n_dirty + 1, sizeof(uint32_t)) < 0)
                return -ENOMEM;
        s->t[ti].stamp = s->stamp;
        s->dirty[s->n_dirty++] = ti;
        return 0;
}

/* Queues triangle ti, whose vertex k is the new point, for legalising. */
static int push(struct simp *s, uint32_t ti, uint32_t k)
{
        if (grow((void **)&s->stack, &s->cap_stack, s->n_stack + 2, sizeof(uint32_t)) < 0)
                return -ENOMEM;
        s->stack[s->n_stack++] = ti;
        s->stack[s->n_stack++] = k;
        return mark(s, ti);
}

/* Rotates triangle ti so that vertex k comes first. */
static void rotate(struct simp *s, uint32_t ti, int k)
{
        struct tri *t = &s->t[ti];
        uint32_t v[3] = { t->v[0], t->v[1], t->v[2] };
        int32_t n[3] = { t->nb[0], t->nb[1], t->nb[2] };
        for (int i = 0; i < 3; i++) {
                t->v[i] = v[(i + k) % 3];
                t->nb[i] = n[(i + k) % 3];
        }
}

/* Lawson flips around the new point until every edge opposite it is Delaunay. */
static int legalise(struct simp *s)
{
        while (s->n_stack) {
                uint32_t k = s->stack[--s->n_stack], ti = s->stack[--s->n_stack];
                rotate(s, ti, (int)k); /* ti = (p, x, y) */
                int32_t ni = s->t[ti].nb[0];
                if (ni < 0)
                        continue;
                int kn = 0;
                while (kn < 3 && s->t[ni].nb[kn] != (int32_t)ti)
                        kn++;
                if (kn == 3)
                        return -EINVAL; /* broken links: a bug, never bad input */
                rotate(s, (uint32_t)ni, kn); /* ni = (q, y, x) */
                struct tri *t = &s->t[ti], *n = &s->t[ni];
                uint32_t p = t->v[0], x = t->v[1], y = t->v[2], q = n->v[0];
                if (incircle(s, p, x, y, q) <= 0 || orient_v(s, p, x, q) <= 0 || orient_v(s, p, q, y) <= 0)
                        continue;
                int32_t a = t->nb[1], b = t->nb[2], c = n->nb[1], d = n->nb[2];
                set_tri(s, ti, p, x, q, c, ni, b);
                set_tri(s, (uint32_t)ni, p, q, y, d, a, (int32_t)ti);
                relink(s, c, (uint32_t)ni, ti);
                relink(s, a, ti, (uint32_t)ni);
                int r;
                if ((r = push(s, ti, 0)) < 0 || (r = push(s, (uint32_t)ni, 0)) < 0)
                        return r;
        }
        return 0;
}

static int add_vertex(struct simp *s, uint32_t g, uint32_t *ret)
{
        if (grow((void **)&s->verts, &s->cap_verts, s->n_verts + 1, sizeof(struct vtx)) < 0)
                return -ENOMEM;
        s->verts[s->n_verts] = (struct vtx){ .g = g, .x = (uint16_t)(g % (uint64_t)s->w), .y = (uint16_t)(g / (uint64_t)s->w) };
        *ret = s->n_verts++;
        return 0;
}

/* Inserts grid point g, found in triangle ti (inside it or on one of its edges). */
static int insert(struct simp *s, uint32_t ti, uint32_t g)
{
        uint32_t p, t1, t2;
        int r;

        if ((r = add_vertex(s, g, &p)) < 0 || (r = add_tri(s, &t1)) < 0 || (r = add_tri(s, &t2)) < 0)
                return r;
        int64_t o[3];
        for (int k = 0; k < 3; k++)
                o[k] = orient_v(s, s->t[ti].v[(k + 1) % 3], s->t[ti].v[(k + 2) % 3], p);
        int edge = o[0] == 0 ? 0 : o[1] == 0 ? 1 : o[2] == 0 ? 2 : -1;

        if (edge < 0) {
                /* Inside: (a, b, c) becomes (p, b, c), (a, p, c), (a, b, p). */
                struct tri old = s->t[ti];
                uint32_t id[3] = { ti, t1, t2 };
                for (int k = 0; k < 3; k++) {
                        uint32_t v[3] = { old.v[0], old.v[1], old.v[2] };
                        int32_t nb[3];
                        v[k] = p;
                        nb[k] = old.nb[k];
                        nb[(k + 1) % 3] = (int32_t)id[(k + 1) % 3];
                        nb[(k + 2) % 3] = (int32_t)id[(k + 2) % 3];
                        set_tri(s, id[k], v[0], v[1], v[2], nb[0], nb[1], nb[2]);
                        relink(s, old.nb[k], ti, id[k]);
                        if ((r = push(s, id[k], (uint32_t)k)) < 0)
                                return r;
                }
                return legalise(s);
        }

        /* On the edge opposite vertex `edge`: ti = (a, b, c) with p on b-c becomes
         * (a, b, p) and (a, p, c); the neighbour u = (d, c, b), if any, becomes
         * (d, c, p) and (d, p, b). */
        rotate(s, ti, edge);
        struct tri t = s->t[ti];
        uint32_t a = t.v[0], b = t.v[1], c = t.v[2];
        int32_t ui = t.nb[0], u1 = -1;
        if (ui >= 0) {
                int ku = 0;
                while (ku < 3 && s->t[ui].nb[ku] != (int32_t)ti)
                        ku++;
                if (ku == 3)
                        return -EINVAL;
                rotate(s, (uint32_t)ui, ku);
                struct tri u = s->t[ui];
                uint32_t d = u.v[0];
                u1 = (int32_t)t2;
                set_tri(s, (uint32_t)ui, d, c, p, (int32_t)t1, u1, u.nb[2]);
                set_tri(s, t2, d, p, b, (int32_t)ti, u.nb[1], ui);
                relink(s, u.nb[1], (uint32_t)ui, t2);
                if ((r = push(s, (uint32_t)ui, 2)) < 0 || (r = push(s, t2, 1)) < 0)
                        return r;
        } else {
                s->n_t--; /* t2 is not needed */
        }
        set_tri(s, ti, a, b, p, u1, (int32_t)t1, t.nb[2]);
        set_tri(s, t1, a, p, c, ui, t.nb[1], (int32_t)ti);
        relink(s, t.nb[1], ti, t1);
        if ((r = push(s, ti, 2)) < 0 || (r = push(s, t1, 1)) < 0)
                return r;
        return legalise(s);
}

static void rescan(struct simp *s, uint32_t ti)
{
        heap_remove(s, ti);
        scan(s, ti);
        if (s->t[ti].err > s->tol)
                heap_push(s, ti);
}

static void simp_free(struct simp *s)
{
        free(s->verts);
        free(s->t);
        free(s->heap);
        free(s->dirty);
        free(s->stack);
}

/* Turns the triangulation into the mesh's arrays. */
static int to_mesh(struct simp *s, const struct relief_grid *g, struct relief_mesh *ret)
{
        uint32_t gw = g->dims.grid_w, gh = g->dims.grid_h, len = relief_ring_len(gw, gh);
        uint32_t *tris = malloc((size_t)s->n_t * 3 * sizeof(uint32_t));
        int32_t *at = malloc((size_t)len * sizeof(int32_t));
        uint32_t *ring = malloc((size_t)len * sizeof(uint32_t));
        uint32_t *top = malloc((size_t)s->n_verts * sizeof(uint32_t));
        if (!tris || !at || !ring || !top) {
                free(tris);
                free(at);
                free(ring);
                free(top);
                return -ENOMEM;
        }
        for (uint32_t k = 0; k < s->n_t; k++) {
                /* Clockwise from above as stored: reversed. */
                tris[3 * k] = s->t[k].v[0];
                tris[3 * k + 1] = s->t[k].v[2];
                tris[3 * k + 2] = s->t[k].v[1];
        }
        for (uint32_t b = 0; b < len; b++)
                at[b] = -1;
        for (uint32_t v = 0; v < s->n_verts; v++) {
                uint32_t i = s->verts[v].y, j = s->verts[v].x;
                top[v] = s->verts[v].g;
                if (i == 0 || j == 0 || i == gh - 1 || j == gw - 1)
                        at[relief_ring_pos(i, j, gw, gh)] = (int32_t)v;
        }
        uint32_t n_ring = 0;
        for (uint32_t b = 0; b < len; b++)
                if (at[b] >= 0)
                        ring[n_ring++] = (uint32_t)at[b];
        free(at);
        *ret = (struct relief_mesh){
                .grid = g,
                .n_top = s->n_verts,
                .top = top,
                .n_top_tris = s->n_t,
                .tris = tris,
                .n_ring = n_ring,
                .ring = ring,
        };
        return 0;
}

int relief_simplify(const struct relief_grid *g, double tol_mm, struct relief_mesh *ret, struct kiln_exec *ex)
{
        struct simp s = { .h = g->h, .w = g->dims.grid_w, .hgt = g->dims.grid_h, .tol = tol_mm };
        uint64_t limit = (uint64_t)s.w * (uint64_t)s.hgt / 2;
        uint32_t c[4], t0, t1;
        int r = 0;

        /* Noise finer than the tolerance: most points would be inserted, one by one,
         * before the limit below gave up (1.4 s for a 1024 x 1024 photo-like image
         * at one grey level). Where over a third of the points were rough, the
         * insertion needed 0.78 to 1.3 times that share as vertices (a JPEG photo,
         * noisy renders, 0.5 to 4 grey levels): from 0.65 on, over half. */
        if (relief_grid_rough(g, tol_mm) >= RELIEF_ROUGH_FULL) {
                relief_mesh_full(g, ret);
                return 0;
        }
        /* The four corners, (0,0) (w-1,0) (w-1,h-1) (0,h-1), in two triangles. */
        uint32_t corner[4] = { 0, (uint32_t)(s.w - 1), (uint32_t)(s.hgt * s.w - 1), (uint32_t)((s.hgt - 1) * s.w) };
        for (int k = 0; k < 4 && r >= 0; k++)
                r = add_vertex(&s, corner[k], &c[k]);
        if (r < 0 || (r = add_tri(&s, &t0)) < 0 || (r = add_tri(&s, &t1)) < 0)
                goto out;
        set_tri(&s, t0, c[0], c[1], c[2], -1, (int32_t)t1, -1);
        set_tri(&s, t1, c[0], c[2], c[3], -1, -1, (int32_t)t0);
        rescan(&s, t0);
        rescan(&s, t1);
        double first = s.n_heap ? s.heap[0].err : 0.0;

        while (s.n_heap) {
                uint32_t ti = s.heap[0].t;
                if ((s.n_verts & 1023) == 0) {
                        if (kiln_exec_stopped(ex)) {
                                r = -ECANCELED;
                                goto out;
                        }
                        kiln_exec_progress(ex, 0.5 + 0.3 * (1.0 - s.t[ti].err / first));
                }
                if (s.n_verts >= limit) {
                        /* Over half the points: the full grid is as good and cheaper. */
                        simp_free(&s);
                        relief_mesh_full(g, ret);
                        return 0;
                }
                s.stamp++;
                s.n_dirty = 0;
                if ((r = insert(&s, ti, s.t[ti].cand)) < 0)
                        goto out;
                for (uint32_t k = 0; k < s.n_dirty; k++)
                        rescan(&s, s.dirty[k]);
        }
        r = to_mesh(&s, g, ret);
out:
        simp_free(&s);
        return r;
}

void relief_mesh_release(struct relief_mesh *m)
{
        if (!m)
                return;
        free((void *)m->top);
        free((void *)m->tris);
        free((void *)m->ring);
        m->top = m->tris = m->ring = NULL;
}
