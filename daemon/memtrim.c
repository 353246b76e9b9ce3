/* Giving freed heap memory back (memtrim.h). */
#include "memtrim.h"

#include "log.h"
#include "util.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

uint64_t memtrim_tick(void)
{
#ifdef __GLIBC__
        static int64_t last_us;
        int64_t t0 = kiln_mono_us();
        if (last_us && t0 - last_us < MEMTRIM_EVERY_US)
                return 0;
        struct mallinfo2 mi = mallinfo2();
        /* fordblks: free bytes in the arenas' chunks (not in mmapped ones, which
         * go back when freed). */
        if (mi.fordblks < MEMTRIM_FREE_BYTES)
                return 0;
        last_us = t0;
        malloc_trim(0);
        log_debug("heap: %zu MiB held free in the arenas given back in %lld us", mi.fordblks >> 20,
                  (long long)(kiln_mono_us() - t0));
        return mi.fordblks;
#else
        return 0;
#endif
}
