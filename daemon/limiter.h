/* Per-client limits (SPEC §7, STYLE habit 9): the token bucket behind
 * limits.rate_per_s / limits.burst, and a small string-keyed table of counters used
 * for per-token buckets and per-tenant job counts. No libwebsockets, no store: the
 * module is pure so its unit test (tests/unit/daemon/test_limits.c) links it alone.
 * The daemon uses it on the loop thread only; nothing here locks. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A token bucket: `tokens` refill at `rate` per second up to `burst`; each message
 * takes one. */
struct token_bucket {
        double tokens;
        int64_t last_us;   /* time of the last refill; 0 = never used (starts full) */
};

/* Takes one token at time now_us (monotonic microseconds). Returns true when the
 * message may pass. rate <= 0 means unlimited (always true, the bucket untouched).
 * A bucket never used starts full (burst tokens); a clock that goes backwards adds
 * nothing. */
bool token_bucket_take(struct token_bucket *b, double rate, double burst, int64_t now_us);

/* One entry of a limits_map: a name (a token's name, or a tenant) and its counters. */
struct limits_entry {
        struct limits_entry *next;
        struct token_bucket bucket; /* per-token rate limit */
        uint32_t active;            /* tenant: jobs submitted and not finished */
        uint64_t finished[6];       /* tenant: finished jobs by enum kiln_job_state */
        char name[64];
};

struct limits_map;

struct limits_map *limits_map_new(void);
/* Frees the map and every entry. Accepts NULL. */
void limits_map_free(struct limits_map *m);
/* The entry for name (truncated to 63 bytes), created zeroed when absent. Returns a
 * pointer valid until limits_map_free, or NULL on ENOMEM. The set of names is
 * bounded by the tokens file (token names, tenants), so entries are never dropped. */
struct limits_entry *limits_map_get(struct limits_map *m, const char *name);
/* The entry for name, or NULL when there is none (never creates). */
struct limits_entry *limits_map_find(const struct limits_map *m, const char *name);
size_t limits_map_count(const struct limits_map *m);
