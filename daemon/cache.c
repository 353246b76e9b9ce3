/* Cache keys, coalescing and the cache policy (see cache.h). */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "daemon.h"
#include "jobs.h"
#include "store.h"

#define COALESCE_BUCKETS 16384 /* a power of two */

static const char key_magic[] = "kiln.cache.1";

void cache_key_compute(const char *kind, uint32_t version, const char *model, const char *params,
                       uint8_t ret[16])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        uint8_t v[4] = { (uint8_t)version, (uint8_t)(version >> 8), (uint8_t)(version >> 16),
                         (uint8_t)(version >> 24) };
        EVP_MD_CTX *c = EVP_MD_CTX_new();

        if (!model)
                model = "";
        /* Each string ends with its NUL, which none contains: the framing is unambiguous. */
        if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL) ||
            !EVP_DigestUpdate(c, key_magic, sizeof(key_magic)) || !EVP_DigestUpdate(c, kind, strlen(kind) + 1) ||
            !EVP_DigestUpdate(c, v, sizeof(v)) || !EVP_DigestUpdate(c, model, strlen(model) + 1) ||
            !EVP_DigestUpdate(c, params, strlen(params) + 1) || !EVP_DigestFinal_ex(c, md, &len) || len < 16) {
                /* Out of memory in OpenSSL: an all-zero hash is still correct (the
                 * store compares the identity), it only makes such keys collide. */
                memset(md, 0, 16);
        }
        EVP_MD_CTX_free(c);
        memcpy(ret, md, 16);
}

void cache_key_init(struct job *j)
{
        struct store_cache_key *k = &j->cache_key;

        k->kind = j->kind->name;
        k->version = j->kind->version;
        k->model = ""; /* no kind reads a model or collection yet */
        k->params = j->params_json;
        cache_key_compute(k->kind, k->version, k->model, k->params, k->hash);
}

/* ---- coalescing: (tenant, key) -> live job, loop thread only ---- */

static struct job **buckets;
static uint64_t hits;

static size_t bucket_of(const uint8_t hash[16])
{
        uint64_t h;

        memcpy(&h, hash, 8);
        return (size_t)h & (COALESCE_BUCKETS - 1);
}

struct job *coalesce_find(const char *tenant, const uint8_t hash[16])
{
        if (!buckets)
                return NULL;
        for (struct job *j = buckets[bucket_of(hash)]; j; j = j->coalesce_next)
                if (!memcmp(j->cache_key.hash, hash, 16) && !strcmp(j->tenant, tenant))
                        return j;
        return NULL;
}

void coalesce_add(struct job *j)
{
        if (j->in_coalesce || coalesce_find(j->tenant, j->cache_key.hash))
                return;
        if (!buckets && !(buckets = calloc(COALESCE_BUCKETS, sizeof(*buckets))))
                return; /* out of memory: identical jobs run twice, nothing worse */
        size_t b = bucket_of(j->cache_key.hash);
        j->coalesce_next = buckets[b];
        buckets[b] = job_ref(j);
        j->in_coalesce = true;
}

void coalesce_remove(struct job *j)
{
        if (!j->in_coalesce)
                return;
        for (struct job **pp = &buckets[bucket_of(j->cache_key.hash)]; *pp; pp = &(*pp)->coalesce_next)
                if (*pp == j) {
                        *pp = j->coalesce_next;
                        j->coalesce_next = NULL;
                        j->in_coalesce = false;
                        job_unref(j);
                        return;
                }
}

void coalesce_count_hit(void)
{
        hits++;
}

uint64_t coalesce_hits(void)
{
        return hits;
}

/* ---- policy ---- */

void cache_policy_refresh(struct kilnd *d)
{
        struct store_policy p = {
                /* A disabled cache stores nothing new and lets the old entries go. */
                .cache_max_bytes = d->cfg->cache.enabled ? d->cfg->cache.max_bytes : 0,
                .cache_ttl_s = d->cfg->cache.ttl_s,
                .retain_s = d->cfg->jobs.retain_s,
        };

        if (d->writer)
                store_writer_set_policy(d->writer, &p);
}
