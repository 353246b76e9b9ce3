/* Helpers of the cache's unit tests (test_cache.c, test_store_cache_recent.c):
 * finished jobs with results, cached under keys whose hash is one byte repeated.
 * Include after store_fixture.h. */
#pragma once

#include <stdio.h>

#define NOW 1800000000000ll

static inline void make_id(uint8_t id[16], uint32_t n)
{
        memset(id, 0, 16);
        id[0] = 0x01;
        id[6] = 0x70;
        id[8] = 0x80;
        for (int i = 0; i < 4; i++)
                id[12 + i] = (uint8_t)(n >> (8 * (3 - i)));
}

static inline void init_job(struct store_job *j, uint32_t n, const char *tenant, enum kiln_job_state st, int64_t finished)
{
        memset(j, 0, sizeof(*j));
        make_id(j->id, n);
        snprintf(j->tenant, sizeof(j->tenant), "%s", tenant);
        snprintf(j->kind, sizeof(j->kind), "lens.nfw");
        snprintf(j->backend, sizeof(j->backend), "cpu");
        j->state = (uint8_t)st;
        j->priority = 2;
        j->submitted_ms = finished ? finished - 10 : NOW;
        j->finished_ms = kiln_job_state_is_final(st) ? finished : 0;
        j->params = "{\"mass\":1}";
}

static inline void fill(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        uint8_t seed = *(uint8_t *)opaque;

        for (size_t i = 0; i < len; i++)
                dst[i] = (uint8_t)(seed + offset + i);
}

/* The digest's second half from the params (FNV-1a), as a real digest differs with
 * them; its first half, which indexes the entry, is `hash_byte` repeated. */
static inline void set_check(struct store_cache_key *k)
{
        uint64_t h = 14695981039346656037ull;

        for (const char *p = k->params; *p; p++)
                h = (h ^ (uint8_t)*p) * 1099511628211ull;
        for (const char *p = k->model; *p; p++)
                h = (h ^ (uint8_t)*p) * 1099511628211ull;
        memcpy(k->hash + 16, &h, 8);
        memcpy(k->hash + 24, &h, 8);
}

static inline struct store_cache_key key_of_params(const char *params, uint8_t hash_byte)
{
        struct store_cache_key k = { .kind = "lens.nfw", .version = 1, .model = "", .params = params };

        memset(k.hash, hash_byte, 16);
        set_check(&k);
        return k;
}

static inline struct store_txn *wtxn(struct fixture *f)
{
        struct store_txn *t;

        assert_int_equal(store_txn_begin(f->s, true, &t), 0);
        return t;
}

/* A finished job with a result of `size` bytes, cached under `k`. */
static inline void put_done_cached(struct fixture *f, uint32_t n, size_t size, uint8_t seed, const struct store_cache_key *k,
                            uint64_t max_bytes, int64_t now)
{
        struct store_txn *t = wtxn(f);
        struct store_job j;

        init_job(&j, n, "acme", KILN_JOB_DONE, now);
        assert_int_equal(store_job_put(t, &j), 0);
        assert_int_equal(store_result_put(t, j.id, size, fill, &seed), 0);
        assert_int_equal(store_cache_put(t, k, j.id, size, "cpu", now, max_bytes), 0);
        assert_int_equal(store_txn_commit(t), 0);
}

static inline int lookup(struct fixture *f, const struct store_cache_key *k, int64_t now, uint32_t ttl,
                  struct store_cache_hit *hit)
{
        struct store_txn *t = wtxn(f);
        int r = store_cache_lookup(t, k, now, ttl, hit);

        assert_int_equal(store_txn_commit(t), 0);
        return r;
}

