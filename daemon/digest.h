/* SHA-256 of a few pieces of memory, for cache keys and input digests. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct digest_piece {
        const void *p;
        size_t n;
};

/* The SHA-256 of the pieces one after another into ret; false (and all zeroes) when
 * OpenSSL fails (out of memory). */
bool digest_sha256(const struct digest_piece *pieces, size_t n, uint8_t ret[32]);
