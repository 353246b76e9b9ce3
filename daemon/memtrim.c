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

#ifdef __GLIBC__
/* Resident anonymous bytes malloc does not count as in use: its free chunks still
 * in memory, and what is not malloc's (thread stacks, ...); 0 when unknown. */
static uint64_t slack_bytes(const struct mallinfo2 *mi)
{
        uint64_t anon = anon_bytes(), used = mi->uordblks + mi->hblkhd;
        return anon > used ? anon - used : 0;
}
#endif

uint64_t memtrim_tick(void)
{
#ifdef __GLIBC__
        static int64_t last_us;
        int64_t t0 = kiln_mono_us();
        if (last_us && t0 - last_us < MEMTRIM_EVERY_US)
                return 0;
        last_us = t0;
        /* fordblks: free bytes in the arenas' chunks (not in mmapped ones, which
         * go back when freed). */
        struct mallinfo2 mi = mallinfo2();
        if (mi.fordblks < MEMTRIM_FREE_BYTES)
                return 0;
        uint64_t slack = slack_bytes(&mi);
        if (slack < MEMTRIM_FREE_BYTES)
                return 0; /* the free chunks are not in memory: a trim gave them back */
        malloc_trim(0);
        struct mallinfo2 after = mallinfo2();
        uint64_t slack_after = slack_bytes(&after);
        log_debug("heap: %zu MiB free in the arenas, %llu MiB of it resident given back in %lld us",
                  mi.fordblks >> 20, (unsigned long long)((slack > slack_after ? slack - slack_after : 0) >> 20),
                  (long long)(kiln_mono_us() - t0));
        return mi.fordblks;
#else
        return 0;
#endif
}
