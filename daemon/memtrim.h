/* Giving freed heap memory back to the system.
 *
 * glibc keeps what kilnd frees in its arenas for reuse: after a burst of big
 * results or inputs, the process would go on holding its peak in RSS although
 * memory.max_bytes counts it as free. From the once-a-second tick, at most every
 * MEMTRIM_EVERY_US, the loop thread hands it back (malloc_trim) when the arenas
 * hold MEMTRIM_FREE_BYTES or more free and as much of the process's resident
 * memory is not in use by malloc: the free chunks stay free to malloc after a
 * trim, so their figure alone would ask for a trim every time. What a trim cannot
 * give back (pages shared with small live allocations) is tried again at the next
 * look, when those may have gone. */
#pragma once

#include <stdint.h>

#define MEMTRIM_FREE_BYTES (16ull << 20)
#define MEMTRIM_EVERY_US 5000000

/* Loop thread, from the once-a-second tick. Returns the bytes the arenas held
 * free when it trimmed them, 0 when it did not. */
uint64_t memtrim_tick(void);
