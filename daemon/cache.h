/* Cache keys and the cache policy (SPEC §2.2, §4 [cache]). The entries themselves
 * live in the store (store.h); hot copies of popular ones in hotcache.h. */
#pragma once

#include <stdint.h>

struct kiln_config;
struct store_policy;

/* A result's identity: SHA-256 over the kind, its version, the model or collection
 * version ("" when none) and the canonical params. Returns -ENOMEM when the digest
 * cannot be made (the store and the hot cache trust it: no key may stand in). */
int cache_key_compute(const char *kind, uint32_t version, const char *model, const char *params,
                      uint8_t ret[32]);

/* The cache and retention limits of a configuration, for store_writer_set_policy
 * (at start, and after SIGHUP). */
void cache_policy(const struct kiln_config *cfg, struct store_policy *ret);
