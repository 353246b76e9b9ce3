/* Giving freed heap memory back to the system.
 *
 * glibc keeps what kilnd frees in its arenas for reuse: after a burst of big
 * results or inputs, the process would go on holding its peak in RSS although
 * memory.max_bytes counts it as free. Once a second the loop thread looks at how
 * much the arenas hold free, and past MEMTRIM_FREE_BYTES hands it back
 * (malloc_trim), at most every MEMTRIM_EVERY_US (the free chunks stay free to
 * malloc, so the figure does not fall after a trim). */
#pragma once

#include <stdint.h>

#define MEMTRIM_FREE_BYTES (16ull << 20)
#define MEMTRIM_EVERY_US 5000000

/* Loop thread, from the once-a-second tick. Returns the bytes the arenas held
 * free when it trimmed them, 0 when it did not. */
uint64_t memtrim_tick(void);
