/* The result cache as the daemon sees it (SPEC §2.2): cache keys, coalescing of
 * identical live jobs, and the limits handed to the store writer. The entries
 * themselves live in the store (store.h, "the result cache").
 *
 * Key: SHA-256, truncated to 128 bits, of the kind's name, the kind's implementation
 * version, the model or collection version the job reads ("" for kinds that read
 * none; a kind that gains one passes it here and a new version is a new key) and the
 * canonical parameters (defaults filled, keys sorted), each field delimited so no two
 * inputs frame alike. The store keeps the fields themselves and compares them on a
 * hit, so a hash collision is a miss, never a wrong result.
 *
 * Tenants: cached results are shared between tenants (same canonical params, same
 * result), but every hit makes a new job owned by the submitting tenant, so no job id
 * or idempotency key crosses tenants. Coalescing attaches only to a live job of the
 * same tenant, since the submitter is given that job's id.
 *
 * Everything here but cache_key_compute runs on the loop thread. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct kilnd;
struct job;

/* Writes the 128-bit key of (kind, version, model, params) into ret. */
void cache_key_compute(const char *kind, uint32_t version, const char *model, const char *params,
                       uint8_t ret[16]);
/* Fills j->cache_key from the job's kind and canonical params. */
void cache_key_init(struct job *j);

/* The live job (queued, running, or being stored) of `tenant` whose key is `hash`,
 * that identical submissions attach to; NULL when none. Borrowed. */
struct job *coalesce_find(const char *tenant, const uint8_t hash[16]);
/* Makes j findable by coalesce_find unless another job already is for its key. */
void coalesce_add(struct job *j);
/* Makes j unfindable (no-op when it is not in the map). */
void coalesce_remove(struct job *j);
/* Counts a submission that attached to a live job; the total is in stats. */
void coalesce_count_hit(void);
uint64_t coalesce_hits(void);

/* Hands the store writer the limits of the current configuration ([cache] and
 * jobs.retain_s); cheap when nothing changed. Called at start and every second. */
void cache_policy_refresh(struct kilnd *d);
