/* How much memory this process may use: the machine's physical memory and the
 * tightest memory limit of the cgroups it runs in (v2 memory.max, v1
 * memory.limit_in_bytes). memory.max_bytes = 0 ("auto") resolves to half of the
 * smaller of the two (SPEC §4 [memory]). A leaf: it reads /proc and /sys only. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct kiln_sysmem {
        uint64_t physical;   /* bytes of RAM (sysconf), never 0 */
        uint64_t cgroup;     /* the tightest cgroup limit in bytes, 0 when none is set */
        char cgroup_file[1024]; /* the file that limit was read from, "" when none */
};

/* Fills *ret with the machine's memory and the cgroup limits found under `root`
 * ("" for the real /proc and /sys; a test passes a directory laid out alike):
 * root/proc/self/cgroup names this process's cgroups; for the v2 one,
 * root/sys/fs/cgroup/PATH/memory.max and that of each ancestor are read; for a v1
 * memory controller, root/sys/fs/cgroup/memory/PATH/memory.limit_in_bytes and its
 * ancestors'. A limit of "max", an unreadable file or a figure at or above the
 * physical memory counts as no limit. Returns >= 0, or -errno when the physical
 * memory cannot be known. */
int kiln_sysmem_probe(const char *root, struct kiln_sysmem *ret);

/* Half of min(physical, cgroup limit), rounded down to a whole MiB: the automatic
 * memory.max_bytes. Writes a sentence saying where it came from to why (may be
 * NULL). */
uint64_t kiln_sysmem_half(const struct kiln_sysmem *m, char *why, size_t why_size);
