/* Giving freed heap memory back (memtrim.h). */
#include "memtrim.h"

#include <stdio.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

/* The process's anonymous resident bytes (resident less file-backed and shared
 * pages: the store's mapped file is not counted); 0 when unknown. */
static uint64_t anon_bytes(void)
{
        unsigned long long size, resident, shared;
        FILE *f = fopen("/proc/self/statm", "re");
        int n = f ? fscanf(f, "%llu %llu %llu", &size, &resident, &shared) : 0;

        if (f)
                fclose(f);
        if (n != 3 || resident < shared)
                return 0;
        return (uint64_t)(resident - shared) * (uint64_t)sysconf(_SC_PAGESIZE);
}

uint64_t memtrim_tick(void)
{
#ifdef __GLIBC__
        static int64_t last_us;
        static uint64_t anon_after; /* anon_bytes() after the last trim */
        int64_t t0 = kiln_mono_us();
        if (last_us && t0 - last_us < MEMTRIM_EVERY_US)
                return 0;
        last_us = t0;
        /* fordblks: free bytes in the arenas' chunks (not in mmapped ones, which
         * go back when freed). */
        struct mallinfo2 mi = mallinfo2();
        if (mi.fordblks < MEMTRIM_FREE_BYTES)
                return 0;
        uint64_t anon = anon_bytes();
        if (anon && anon < anon_after + MEMTRIM_FREE_BYTES)
                return 0; /* what is free now was given back at the last trim */
        malloc_trim(0);
        anon_after = anon_bytes();
        log_debug("heap: %zu MiB held free in the arenas, RSS %llu -> %llu MiB, in %lld us", mi.fordblks >> 20,
                  (unsigned long long)(anon >> 20), (unsigned long long)(anon_after >> 20),
                  (long long)(kiln_mono_us() - t0));
        return mi.fordblks;
#else
        return 0;
#endif
}
