/* The memory this process may use: physical memory and cgroup limits (sysmem.h). */
#include "sysmem.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (UINT64_C(1) << 20)

/* Reads a limit file: a decimal figure, or "max" (none). Returns true with
 * *ret set for a figure. */
static bool read_limit(const char *path, uint64_t *ret)
{
        char buf[64];
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        if (buf[0] < '0' || buf[0] > '9')
                return false; /* "max", or nothing */
        char *end;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno || *end)
                return false;
        *ret = v;
        return true;
}

/* Reads `file` in dir/PATH and each ancestor of PATH up to dir itself, keeping
 * the tightest limit below the physical memory in m. */
static void walk_limits(struct kiln_sysmem *m, const char *dir, const char *cg_path, const char *file)
{
        char path[1024], p[512];
        snprintf(p, sizeof(p), "%s", cg_path);
        for (;;) {
                size_t len = strlen(p);
                while (len > 0 && p[len - 1] == '/')
                        p[--len] = '\0';
                snprintf(path, sizeof(path), "%s%s/%s", dir, p, file);
                uint64_t v;
                if (read_limit(path, &v) && v > 0 && v < m->physical && (!m->cgroup || v < m->cgroup)) {
                        m->cgroup = v;
                        snprintf(m->cgroup_file, sizeof(m->cgroup_file), "%s", path);
                }
                char *slash = strrchr(p, '/');
                if (!len || !slash)
                        return;
                *slash = '\0';
        }
}

/* True when the comma-separated list holds `name`. */
static bool has_controller(const char *list, const char *name)
{
        size_t n = strlen(name);
        for (const char *c = list; c && *c; c = strchr(c, ',') ? strchr(c, ',') + 1 : NULL)
                if (!strncmp(c, name, n) && (c[n] == ',' || c[n] == '\0'))
                        return true;
        return false;
}

int kiln_sysmem_probe(const char *root, struct kiln_sysmem *ret)
{
        struct kiln_sysmem m = { 0 };
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
        if (pages <= 0 || page <= 0)
                return errno ? -errno : -ENOSYS;
        m.physical = (uint64_t)pages * (uint64_t)page;

        char path[1024], dir[1024];
        snprintf(path, sizeof(path), "%s/proc/self/cgroup", root ? root : "");
        FILE *f = fopen(path, "re");
        if (f) {
                char *line = NULL;
                size_t cap = 0;
                while (getline(&line, &cap, f) > 0) {
                        line[strcspn(line, "\n")] = '\0';
                        /* "ID:CONTROLLERS:PATH": v2 is "0::PATH". */
                        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                        if (!c2)
                                continue;
                        *c1 = *c2 = '\0';
                        const char *controllers = c1 + 1, *cg = c2 + 1;
                        if (!strcmp(line, "0") && !*controllers) {
                                snprintf(dir, sizeof(dir), "%s/sys/fs/cgroup", root ? root : "");
                                walk_limits(&m, dir, cg, "memory.max");
                        } else if (has_controller(controllers, "memory")) {
                                snprintf(dir, sizeof(dir), "%s/sys/fs/cgroup/memory", root ? root : "");
                                walk_limits(&m, dir, cg, "memory.limit_in_bytes");
                        }
                }
                free(line);
                fclose(f);
        }
        *ret = m;
        return 0;
}

uint64_t kiln_sysmem_half(const struct kiln_sysmem *m, char *why, size_t why_size)
{
        bool cg = m->cgroup && m->cgroup < m->physical;
        uint64_t limit = cg ? m->cgroup : m->physical;
        uint64_t half = limit / 2 / MIB * MIB;
        if (why && why_size) {
                if (cg)
                        snprintf(why, why_size, "half of the cgroup's limit, %" PRIu64 " MiB (%s)", limit / MIB,
                                 m->cgroup_file);
                else
                        snprintf(why, why_size, "half of the machine's memory, %" PRIu64 " MiB", limit / MIB);
        }
        return half;
}
