/* Cache keys and the cache policy (see cache.h). */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "config.h"
#include "store.h"

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
