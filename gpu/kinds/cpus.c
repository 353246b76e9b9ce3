/* How many CPUs a kind's own threads may use (see kind.h). */
#include <sched.h>
#include <unistd.h>

#include "kind.h"

unsigned kiln_cpus(void)
{
        cpu_set_t set;

        if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
                return (unsigned)CPU_COUNT(&set);
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (unsigned)n : 1;
}
