/* Cache keys and the cache policy (see cache.h). */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "digest.h"
#include "store.h"

static const char key_magic[] = "kiln.cache.1";

void cache_key_compute(const char *kind, uint32_t version, const char *model, const char *params,
                       uint8_t ret[16])
{
        uint8_t v[4] = { (uint8_t)version, (uint8_t)(version >> 8), (uint8_t)(version >> 16),
                         (uint8_t)(version >> 24) };
        uint8_t md[32];

        if (!model)
                model = "";
        /* Each string ends with its NUL, which none contains: the framing is unambiguous.
         * A failed digest (all zeroes) is still correct, as the store and the hot
         * cache compare the identity (kind, version, model, params): such keys only
         * collide. */
        struct digest_piece p[] = {
                { key_magic, sizeof(key_magic) }, { kind, strlen(kind) + 1 },     { v, sizeof(v) },
                { model, strlen(model) + 1 },     { params, strlen(params) + 1 },
        };
        digest_sha256(p, sizeof(p) / sizeof(p[0]), md);
        memcpy(ret, md, 16);
}

/* ---- policy ---- */

void cache_policy(const struct kiln_config *cfg, struct store_policy *ret)
{
        *ret = (struct store_policy){
                /* A disabled cache stores nothing new and lets the old entries go. */
                .cache_max_bytes = cfg->cache.enabled ? cfg->cache.max_bytes : 0,
                .cache_ttl_s = cfg->cache.ttl_s,
                .retain_s = cfg->jobs.retain_s,
        };
}
