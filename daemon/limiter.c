/* Token buckets and the string-keyed counter table of limiter.h. */
#include "limiter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct limits_map {
        struct limits_entry **buckets;
        size_t n_buckets, count;
};

bool token_bucket_take(struct token_bucket *b, double rate, double burst, int64_t now_us)
{
        if (rate <= 0)
                return true;
        if (burst < 1)
                burst = 1;
        if (b->last_us == 0) {
                b->tokens = burst;
                b->last_us = now_us;
        } else if (now_us > b->last_us) {
                b->tokens += (double)(now_us - b->last_us) * rate / 1e6;
                if (b->tokens > burst)
                        b->tokens = burst;
                b->last_us = now_us;
        }
        if (b->tokens < 1.0)
                return false;
        b->tokens -= 1.0;
        return true;
}

static uint64_t hash_name(const char *s)
{
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

struct limits_map *limits_map_new(void)
{
        struct limits_map *m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->n_buckets = 16;
        m->buckets = calloc(m->n_buckets, sizeof(*m->buckets));
        if (!m->buckets) {
                free(m);
                return NULL;
        }
        return m;
}

void limits_map_free(struct limits_map *m)
{
        if (!m)
                return;
        for (size_t b = 0; b < m->n_buckets; b++)
                for (struct limits_entry *e = m->buckets[b], *next; e; e = next) {
                        next = e->next;
                        free(e);
                }
        free(m->buckets);
        free(m);
}

struct limits_entry *limits_map_find(const struct limits_map *m, const char *name)
{
        char key[64];
        kiln_str_copy(key, sizeof(key), name);
        for (struct limits_entry *e = m->buckets[hash_name(key) & (m->n_buckets - 1)]; e; e = e->next)
                if (!strcmp(e->name, key))
                        return e;
        return NULL;
}

static void grow(struct limits_map *m)
{
        size_t n = m->n_buckets * 2;
        struct limits_entry **t = calloc(n, sizeof(*t));
        if (!t)
                return; /* longer chains, still correct */
        for (size_t b = 0; b < m->n_buckets; b++)
                for (struct limits_entry *e = m->buckets[b], *next; e; e = next) {
                        next = e->next;
                        size_t h = hash_name(e->name) & (n - 1);
                        e->next = t[h];
                        t[h] = e;
                }
        free(m->buckets);
        m->buckets = t;
        m->n_buckets = n;
}

struct limits_entry *limits_map_get(struct limits_map *m, const char *name)
{
        struct limits_entry *e = limits_map_find(m, name);
        if (e)
                return e;
        if (m->count >= m->n_buckets)
                grow(m);
        e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        snprintf(e->name, sizeof(e->name), "%s", name);
        size_t h = hash_name(e->name) & (m->n_buckets - 1);
        e->next = m->buckets[h];
        m->buckets[h] = e;
        m->count++;
        return e;
}

size_t limits_map_count(const struct limits_map *m)
{
        return m ? m->count : 0;
}
