/* Cache keys and the cache policy (see cache.h). */
#include "cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "digest.h"
#include "store.h"

static const char key_magic[] = "kiln.cache.1";

int cache_key_compute(const char *kind, uint32_t version, const char *model, const char *params,
                      uint8_t ret[32])
{
        uint8_t v[4] = { (uint8_t)version, (uint8_t)(version >> 8), (uint8_t)(version >> 16),
                         (uint8_t)(version >> 24) };

        if (!model)
                model = "";
        /* Each string ends with its NUL, which none contains: the framing is unambiguous. */
        struct digest_piece p[] = {
                { key_magic, sizeof(key_magic) }, { kind, strlen(kind) + 1 },     { v, sizeof(v) },
                { model, strlen(model) + 1 },     { params, strlen(params) + 1 },
        };
        return digest_sha256(p, sizeof(p) / sizeof(p[0]), ret) ? 0 : -ENOMEM;
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
