/* Collections for vec.search's unit tests: built the way the daemon builds them
 * (the class's validate, then compile from items in id order). */
#pragma once

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vec_search/collection.h"

/* Ids "r000000", "r000001", ...: byte order is row order. */
struct vt_items {
        const float *rows;
        uint32_t dim;
        size_t n;
};

static inline int vt_foreach(void *ctx, kiln_object_item_cb cb, void *userdata)
{
        const struct vt_items *it = ctx;
        char id[16];

        for (size_t i = 0; i < it->n; i++) {
                int len = snprintf(id, sizeof(id), "r%06zu", i);
                int rc = cb((const uint8_t *)id, (size_t)len, (const uint8_t *)(it->rows + i * it->dim),
                            it->dim * sizeof(float), userdata);
                if (rc < 0)
                        return rc;
        }
        return 0;
}

/* A compiled collection of n rows (copied; normalised for cosine as a put is), or
 * NULL when a row is refused. */
static inline struct vec_collection *vt_collection(enum kiln_metric metric, const float *rows, size_t n,
                                                   uint32_t dim)
{
        float *copy = malloc((n ? n : 1) * dim * sizeof(float));
        uint8_t meta[KILN_VEC_META_BYTES];
        struct vt_items it = { copy, dim, n };
        struct kiln_object_source src = { .meta = meta, .meta_len = sizeof(meta), .count = n,
                                          .foreach_items = vt_foreach, .ctx = &it };
        struct vec_collection *c = NULL;

        if (!copy)
                return NULL;
        memcpy(copy, rows, n * dim * sizeof(float));
        for (size_t i = 0; i < n; i++)
                if (vec_row_prepare(metric, copy + i * dim, dim) < 0) {
                        free(copy);
                        return NULL;
                }
        kiln_vec_meta_encode(metric, dim, meta);
        if (vec_collection_compile(&src, &c, NULL) < 0)
                c = NULL;
        free(copy);
        return c;
}

/* A deterministic generator (xorshift64*) and standard normal values. */
static inline uint64_t vt_next(uint64_t *s)
{
        uint64_t x = *s;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * 0x2545F4914F6CDD1Dull;
}

static inline double vt_uniform(uint64_t *s)
{
        return ((double)(vt_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static inline float vt_gauss(uint64_t *s)
{
        double u = vt_uniform(s), v = vt_uniform(s);
        return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static inline float *vt_gauss_rows(uint64_t *s, size_t n, uint32_t dim)
{
        float *r = malloc((n ? n : 1) * dim * sizeof(float));

        for (size_t i = 0; r && i < n * dim; i++)
                r[i] = vt_gauss(s);
        return r;
}
