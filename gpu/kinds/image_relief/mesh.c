/* image.relief's meshes: the closed solid around a top surface (walls under its
 * boundary loop, a base fanned from its centre over the same boundary vertices),
 * written as binary STL or glTF 2.0 binary, and the volume of what was written.
 *
 * Vertex ids: the top vertices 0..n_top-1, then the bottom copy of each boundary
 * vertex (n_top + b for ring position b), then the base's centre. Triangles: the top
 * surface, then three per boundary edge b -> b+1 (relief_edge_tri: two for the wall,
 * one for the base). Every edge is then shared by exactly two triangles in opposite
 * directions, and every triangle faces outwards.
 *
 * The two passes over a big file, writing a full grid's top surface and summing a
 * file's volume, run on threads of their own (par_run): a 1024 x 1024 grid's 105 MB
 * STL is otherwise most of the job's time on the CPU. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_relief.h"
#include "relief_math.h"

/* A full grid's file and a file's volume are cut into parts that threads of their
 * own work on: at most this many, */
#define PAR_MAX_THREADS 8
/* and one per this many grid rows (or triangles) at least, below which a thread
 * costs more than it saves. */
#define PAR_GRID_ROWS 128
#define PAR_TRIANGLES 262144
/* The volume is summed in this many chunks of triangles, each in order, then the
 * chunks in order: the same sum however many threads there are. */
#define VOLUME_CHUNKS 64

/* How many parts `work` items make, `per` items per part at least. */
static unsigned par_parts(uint64_t work, uint64_t per)
{
        unsigned n = kiln_cpus();
        if (n > PAR_MAX_THREADS)
                n = PAR_MAX_THREADS;
        if ((uint64_t)n > work / per)
                n = (unsigned)(work / per);
        return n ? n : 1;
}

struct par_part {
        void (*fn)(void *arg, unsigned part, unsigned n_parts);
        void *arg;
        unsigned part, n_parts;
};

static void *par_main(void *p)
{
        struct par_part *x = p;
        x->fn(x->arg, x->part, x->n_parts);
        return NULL;
}

/* Calls fn(arg, i, n) for every part i < n: part 0 here, the others on threads of
 * their own (here too, after the others, when a thread cannot be started). */
static void par_run(unsigned n, void (*fn)(void *arg, unsigned part, unsigned n_parts), void *arg)
{
        pthread_t th[PAR_MAX_THREADS];
        struct par_part parts[PAR_MAX_THREADS];
        bool started[PAR_MAX_THREADS] = { false };

        for (unsigned i = 1; i < n; i++) {
                parts[i] = (struct par_part){ .fn = fn, .arg = arg, .part = i, .n_parts = n };
                started[i] = pthread_create(&th[i], NULL, par_main, &parts[i]) == 0;
        }
        fn(arg, 0, n);
        for (unsigned i = 1; i < n; i++) {
                if (started[i])
                        pthread_join(th[i], NULL);
                else
                        fn(arg, i, n);
        }
}


void relief_mesh_full(const struct relief_grid *g, struct relief_mesh *ret)
{
        uint32_t gw = g->dims.grid_w, gh = g->dims.grid_h;
        *ret = (struct relief_mesh){
                .grid = g,
                .n_top = gw * gh,
                .n_top_tris = 2ull * (gw - 1) * (gh - 1),
                .n_ring = relief_ring_len(gw, gh),
        };
}

uint64_t relief_mesh_triangles(const struct relief_mesh *m)
{
        return m->n_top_tris + 3ull * m->n_ring;
}

uint64_t relief_mesh_vertices(const struct relief_mesh *m)
{
        return (uint64_t)m->n_top + m->n_ring + 1;
}

/* The grid index of top vertex v. */
static uint32_t top_point(const struct relief_mesh *m, uint32_t v)
{
        return m->top ? m->top[v] : v;
}

/* The top vertex id at ring position b. */
static uint32_t ring_vertex(const struct relief_mesh *m, uint32_t b)
{
        if (m->ring)
                return m->ring[b];
        uint32_t i, j;
        relief_ring_point(b, m->grid->dims.grid_w, m->grid->dims.grid_h, &i, &j);
        return i * m->grid->dims.grid_w + j;
}

/* The position (mm) of vertex v. */
static void vertex_mm(const struct relief_mesh *m, uint32_t v, float ret[3])
{
        const struct relief_dims *d = &m->grid->dims;
        if (!m->top) {
                relief_full_vertex(v, d->grid_w, d->grid_h, m->grid->h, d->pitch_x_mm, d->pitch_y_mm, ret);
                return;
        }
        if (v >= m->n_top + m->n_ring) {
                relief_centre_mm(d->grid_w, d->grid_h, d->pitch_x_mm, d->pitch_y_mm, ret);
                return;
        }
        bool bottom = v >= m->n_top;
        uint32_t g = top_point(m, bottom ? ring_vertex(m, v - m->n_top) : v);
        relief_point_mm(g / d->grid_w, g % d->grid_w, bottom ? 0.0 : m->grid->h[g], d->pitch_x_mm, d->pitch_y_mm, ret);
}

/* The vertex ids of triangle t. */
static void triangle(const struct relief_mesh *m, uint64_t t, uint32_t ret[3])
{
        if (!m->tris) {
                relief_full_tri(t, m->grid->dims.grid_w, m->grid->dims.grid_h, ret);
                return;
        }
        if (t < m->n_top_tris) {
                memcpy(ret, m->tris + 3 * t, 3 * sizeof(uint32_t));
                return;
        }
        uint64_t e = t - m->n_top_tris;
        uint32_t b = (uint32_t)(e / 3), b1 = b + 1 == m->n_ring ? 0 : b + 1;
        relief_edge_tri((int)(e % 3), ring_vertex(m, b), ring_vertex(m, b1), m->n_top + b, m->n_top + b1,
                        m->n_top + m->n_ring, ret);
}

int relief_glb_json(uint64_t v, uint64_t t, const float min[3], const float max[3], char *out)
{
        uint64_t pos_bytes = 12 * v, idx_bytes = 12 * t;
        int n = snprintf(out, RELIEF_GLB_JSON_MAX,
                         "{\"asset\":{\"version\":\"2.0\",\"generator\":\"kiln image.relief\"},\"scene\":0,"
                         "\"scenes\":[{\"nodes\":[0]}],\"nodes\":[{\"mesh\":0}],"
                         "\"meshes\":[{\"primitives\":[{\"attributes\":{\"POSITION\":0},\"indices\":1,\"mode\":4}]}],"
                         "\"accessors\":[{\"bufferView\":0,\"componentType\":5126,\"count\":%llu,\"type\":\"VEC3\","
                         "\"min\":[%.9g,%.9g,%.9g],\"max\":[%.9g,%.9g,%.9g]},"
                         "{\"bufferView\":1,\"componentType\":5125,\"count\":%llu,\"type\":\"SCALAR\"}],"
                         "\"bufferViews\":[{\"buffer\":0,\"byteOffset\":0,\"byteLength\":%llu,\"target\":34962},"
                         "{\"buffer\":0,\"byteOffset\":%llu,\"byteLength\":%llu,\"target\":34963}],"
                         "\"buffers\":[{\"byteLength\":%llu}]}",
                         (unsigned long long)v, min[0], min[1], min[2], max[0], max[1], max[2],
                         (unsigned long long)(3 * t), (unsigned long long)pos_bytes, (unsigned long long)pos_bytes,
                         (unsigned long long)idx_bytes, (unsigned long long)(pos_bytes + idx_bytes));
        if (n < 0 || n + 3 >= RELIEF_GLB_JSON_MAX)
                return -ENOSPC;
        while (n % 4)
                out[n++] = ' ';
        out[n] = '\0';
        return n;
}

/* The glTF positions' bounds. */
static void gltf_bounds(const struct relief_mesh *m, float min[3], float max[3])
{
        uint64_t nv = relief_mesh_vertices(m);
        for (uint64_t v = 0; v < nv; v++) {
                float mm[3], p[3];
                vertex_mm(m, (uint32_t)v, mm);
                relief_to_gltf(mm, p);
                for (int k = 0; k < 3; k++) {
                        if (v == 0 || p[k] < min[k])
                                min[k] = p[k];
                        if (v == 0 || p[k] > max[k])
                                max[k] = p[k];
                }
        }
}

static uint64_t glb_bytes(uint64_t json_len, uint64_t v, uint64_t t)
{
        return 12 + 8 + json_len + 8 + 12 * v + 12 * t;
}

uint64_t relief_mesh_bytes(const struct relief_mesh *m, int format)
{
        uint64_t t = relief_mesh_triangles(m), v = relief_mesh_vertices(m);
        if (format == RELIEF_STL)
                return 84 + 50 * t;
        float min[3], max[3];
        char json[RELIEF_GLB_JSON_MAX];
        gltf_bounds(m, min, max);
        int n = relief_glb_json(v, t, min, max, json);
        return glb_bytes(n < 0 ? RELIEF_GLB_JSON_MAX : (uint64_t)n, v, t);
}

static void put32(uint8_t *p, uint32_t v)
{
        memcpy(p, &v, 4); /* little-endian hosts only, as the STL and GLB floats */
}

struct grid_job {
        const struct relief_mesh *m;
        const float *xs;     /* the x (mm) of each column */
        uint8_t *out;        /* the file */
        struct kiln_exec *ex;
};

/* Rows [i0, i1) of the full grid's top surface: the same records as write_stl
 * makes through triangle() and vertex_mm(), without a division per vertex. */
static void grid_rows(const struct grid_job *g, uint32_t i0, uint32_t i1)
{
        const struct relief_dims *d = &g->m->grid->dims;
        uint32_t gw = d->grid_w;
        uint8_t *rec = g->out + 84 + (uint64_t)i0 * (gw - 1) * 100;

        for (uint32_t i = i0; i < i1; i++) {
                if ((i & 63) == 0 && kiln_exec_stopped(g->ex))
                        return;
                float top[3], bot[3];
                relief_point_mm(i, 0, 0.0, d->pitch_x_mm, d->pitch_y_mm, top);
                relief_point_mm(i + 1, 0, 0.0, d->pitch_x_mm, d->pitch_y_mm, bot);
                const double *h0 = g->m->grid->h + (size_t)i * gw, *h1 = h0 + gw;
                for (uint32_t j = 0; j + 1 < gw; j++) {
                        float a[3] = { g->xs[j], top[1], (float)h0[j] }, b[3] = { g->xs[j + 1], top[1], (float)h0[j + 1] };
                        float c[3] = { g->xs[j], bot[1], (float)h1[j] }, e[3] = { g->xs[j + 1], bot[1], (float)h1[j + 1] };
                        relief_stl_record(a, c, e, rec);
                        relief_stl_record(a, e, b, rec + 50);
                        rec += 100;
                }
        }
}

static void grid_part(void *arg, unsigned part, unsigned n_parts)
{
        const struct grid_job *g = arg;
        uint64_t rows = g->m->grid->dims.grid_h - 1;
        grid_rows(g, (uint32_t)(rows * part / n_parts), (uint32_t)(rows * (part + 1) / n_parts));
}

/* The full grid's top surface as STL, in bands of rows on threads of their own. */
static int write_stl_grid(const struct relief_mesh *m, uint8_t *out, struct kiln_exec *ex)
{
        const struct relief_dims *d = &m->grid->dims;
        uint32_t gw = d->grid_w;
        float *xs = malloc(gw * sizeof(float));
        if (!xs)
                return -ENOMEM;
        for (uint32_t j = 0; j < gw; j++) {
                float p[3];
                relief_point_mm(0, j, 0.0, d->pitch_x_mm, d->pitch_y_mm, p);
                xs[j] = p[0];
        }
        struct grid_job g = { .m = m, .xs = xs, .out = out, .ex = ex };
        par_run(par_parts(d->grid_h - 1, PAR_GRID_ROWS), grid_part, &g);
        free(xs);
        return kiln_exec_stopped(ex) ? -ECANCELED : 0;
}

static int write_stl(const struct relief_mesh *m, uint8_t *out, struct kiln_exec *ex)
{
        uint64_t nt = relief_mesh_triangles(m);
        memset(out, ' ', 80);
        memcpy(out, RELIEF_STL_HEADER, sizeof(RELIEF_STL_HEADER) - 1);
        put32(out + 80, (uint32_t)nt);
        uint64_t t = 0;
        if (!m->tris) {
                int r = write_stl_grid(m, out, ex);
                if (r < 0)
                        return r;
                t = m->n_top_tris;
        }
        for (; t < nt; t++) {
                if ((t & 0xfffff) == 0 && kiln_exec_stopped(ex))
                        return -ECANCELED;
                uint32_t v[3];
                float p[3][3];
                triangle(m, t, v);
                for (int k = 0; k < 3; k++)
                        vertex_mm(m, v[k], p[k]);
                relief_stl_record(p[0], p[1], p[2], out + 84 + 50 * t);
        }
        return 0;
}

int relief_glb_head(uint64_t nv, uint64_t nt, const float min[3], const float max[3], uint8_t *out)
{
        char json[RELIEF_GLB_JSON_MAX];
        int jn = relief_glb_json(nv, nt, min, max, json);
        if (jn < 0)
                return jn;
        memcpy(out, "glTF", 4);
        put32(out + 4, 2);
        put32(out + 8, (uint32_t)glb_bytes((uint64_t)jn, nv, nt));
        put32(out + 12, (uint32_t)jn);
        memcpy(out + 16, "JSON", 4);
        memcpy(out + 20, json, (size_t)jn);
        put32(out + 20 + jn, (uint32_t)(12 * nv + 12 * nt));
        memcpy(out + 24 + jn, "BIN\0", 4);
        return 28 + jn;
}

static int write_glb(const struct relief_mesh *m, uint8_t *out, struct kiln_exec *ex)
{
        uint64_t nt = relief_mesh_triangles(m), nv = relief_mesh_vertices(m);
        float min[3], max[3];
        gltf_bounds(m, min, max);
        int head = relief_glb_head(nv, nt, min, max, out);
        if (head < 0)
                return head;
        uint8_t *pos = out + head, *idx = pos + 12 * nv;
        for (uint64_t v = 0; v < nv; v++) {
                float mm[3], p[3];
                vertex_mm(m, (uint32_t)v, mm);
                relief_to_gltf(mm, p);
                memcpy(pos + 12 * v, p, 12);
        }
        for (uint64_t t = 0; t < nt; t++) {
                if ((t & 0xfffff) == 0 && kiln_exec_stopped(ex))
                        return -ECANCELED;
                uint32_t v[3];
                triangle(m, t, v);
                memcpy(idx + 12 * t, v, 12);
        }
        return 0;
}

int relief_mesh_write(const struct relief_mesh *m, int format, uint8_t *out, struct kiln_exec *ex)
{
        return format == RELIEF_STL ? write_stl(m, out, ex) : write_glb(m, out, ex);
}

/* p0 . (p1 x p2): six times the signed volume of the tetrahedron with the origin. */
static double tet6(const float *p0, const float *p1, const float *p2)
{
        double a[3] = { p0[0], p0[1], p0[2] }, b[3] = { p1[0], p1[1], p1[2] }, c[3] = { p2[0], p2[1], p2[2] };
        return a[0] * (b[1] * c[2] - b[2] * c[1]) + a[1] * (b[2] * c[0] - b[0] * c[2]) +
               a[2] * (b[0] * c[1] - b[1] * c[0]);
}

/* The unsigned decimal after the first `key` at or after `from` in s[0..n). */
static int json_count(const char *s, size_t n, size_t *from, uint64_t *ret)
{
        static const char key[] = "\"count\":";
        for (size_t k = *from; k + sizeof(key) - 1 < n; k++) {
                if (memcmp(s + k, key, sizeof(key) - 1))
                        continue;
                uint64_t v = 0;
                size_t at = k + sizeof(key) - 1;
                if (at >= n || s[at] < '0' || s[at] > '9')
                        return -EINVAL;
                while (at < n && s[at] >= '0' && s[at] <= '9' && v < (1ull << 40))
                        v = v * 10 + (uint64_t)(s[at++] - '0');
                *from = at;
                *ret = v;
                return 0;
        }
        return -EINVAL;
}

struct volume_job {
        const uint8_t *tris;  /* STL: the first record; GLB: the indices */
        const uint8_t *pos;   /* GLB: the positions */
        uint64_t n_tris, n_verts;
        bool glb;
        double sums[VOLUME_CHUNKS];
        bool bad[VOLUME_CHUNKS];  /* GLB: an index past the positions */
};

static void volume_chunk(struct volume_job *v, unsigned c)
{
        uint64_t t0 = v->n_tris * c / VOLUME_CHUNKS, t1 = v->n_tris * (c + 1) / VOLUME_CHUNKS;
        double sum = 0.0;

        for (uint64_t t = t0; t < t1; t++) {
                float p[3][3];
                if (!v->glb) {
                        memcpy(p, v->tris + 50 * t + 12, sizeof(p));
                } else {
                        uint32_t i[3];
                        memcpy(i, v->tris + 12 * t, 12);
                        for (int k = 0; k < 3; k++) {
                                if (i[k] >= v->n_verts) {
                                        v->bad[c] = true;
                                        return;
                                }
                                memcpy(p[k], v->pos + 12 * (uint64_t)i[k], 12);
                        }
                }
                sum += tet6(p[0], p[1], p[2]);
        }
        v->sums[c] = sum;
}

static void volume_part(void *arg, unsigned part, unsigned n_parts)
{
        for (unsigned c = part; c < VOLUME_CHUNKS; c += n_parts)
                volume_chunk(arg, c);
}

/* Six times the volume: the chunks' sums, in order. Returns >= 0 or -EINVAL. */
static int volume_sum(struct volume_job *v, double *ret)
{
        double sum = 0.0;

        par_run(par_parts(v->n_tris, PAR_TRIANGLES), volume_part, v);
        for (unsigned c = 0; c < VOLUME_CHUNKS; c++) {
                if (v->bad[c])
                        return -EINVAL;
                sum += v->sums[c];
        }
        *ret = sum;
        return 0;
}

int relief_mesh_volume(const uint8_t *d, size_t n, int format, double *ret)
{
        struct volume_job v = { 0 };
        double sum;
        uint32_t u;

        if (format == RELIEF_STL) {
                if (n < 84)
                        return -EINVAL;
                memcpy(&u, d + 80, 4);
                if (n != 84 + 50 * (uint64_t)u)
                        return -EINVAL;
                v.tris = d + 84;
                v.n_tris = u;
                volume_sum(&v, &sum);
                *ret = sum / 6.0;
                return 0;
        }
        if (n < 28 || memcmp(d, "glTF", 4))
                return -EINVAL;
        memcpy(&u, d + 12, 4);
        size_t from = 0;
        uint64_t nv, ni;
        if ((uint64_t)u + 28 > n || json_count((const char *)d + 20, u, &from, &nv) < 0 ||
            json_count((const char *)d + 20, u, &from, &ni) < 0 || ni % 3)
                return -EINVAL;
        const uint8_t *pos = d + 20 + u + 8, *idx = pos + 12 * nv;
        if ((uint64_t)(idx - d) + 4 * ni != n)
                return -EINVAL;
        v = (struct volume_job){ .tris = idx, .pos = pos, .n_tris = ni / 3, .n_verts = nv, .glb = true };
        if (volume_sum(&v, &sum) < 0)
                return -EINVAL;
        *ret = sum / 6.0 * 1e9; /* m^3 -> mm^3 */
        return 0;
}
