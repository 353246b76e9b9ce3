/* The scenarios of SPEC §5: what each submitted job asks for. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

static const char *const names[_SCEN_MAX] = {
        [SCEN_CACHED] = "cached",
        [SCEN_SMALL] = "small",
        [SCEN_MIXED] = "mixed",
        [SCEN_HEAVY] = "heavy",
        [SCEN_SCORE] = "score",
};

const char *bench_scenario_name(enum bench_scenario s)
{
        return (unsigned)s < _SCEN_MAX ? names[s] : NULL;
}

int bench_scenario_from_name(const char *name, enum bench_scenario *ret)
{
        for (unsigned i = 0; i < _SCEN_MAX; i++)
                if (!strcmp(name, names[i])) {
                        *ret = (enum bench_scenario)i;
                        return 0;
                }
        return -EINVAL;
}

/* xorshift64*: fast, and good enough for parameters. */
static uint64_t next_u64(uint64_t *s)
{
        uint64_t x = *s;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [lo, hi). */
static double uniform(uint64_t *s, double lo, double hi)
{
        return lo + (hi - lo) * (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}

int bench_submit_text(enum bench_scenario s, uint64_t ref, bool watch, uint64_t *rng, char *buf, size_t size)
{
        char params[256];
        const char *kind = "lens.nfw";

        if (s == SCEN_MIXED) {
                double u = uniform(rng, 0, 1);
                s = u < 0.80 ? SCEN_CACHED : u < 0.95 ? SCEN_SMALL : _SCEN_MAX; /* _SCEN_MAX: grid 512 */
        }
        switch (s) {
        case SCEN_CACHED:
                snprintf(params, sizeof(params), "{\"mass\":1e14,\"concentration\":5,\"grid_size\":64}");
                break;
        case SCEN_SMALL:
                snprintf(params, sizeof(params), "{\"mass\":%.17g,\"concentration\":5,\"grid_size\":16}",
                         uniform(rng, 1e13, 1e15));
                break;
        case SCEN_HEAVY:
                snprintf(params, sizeof(params),
                         "{\"mass\":%.17g,\"concentration\":5,\"grid_size\":2048,"
                         "\"maps\":[\"kappa\",\"alpha_x\",\"alpha_y\"]}",
                         uniform(rng, 1e13, 1e15));
                break;
        case SCEN_SCORE:
                kind = "risk.score";
                snprintf(params, sizeof(params), "{\"model\":\"altman-z2\",\"rows\":[[%.6f,%.6f,%.6f,%.6f]]}",
                         uniform(rng, -0.5, 1), uniform(rng, -0.5, 1), uniform(rng, -0.5, 1),
                         uniform(rng, 0, 3));
                break;
        default: /* mixed's 5 %: a 512 x 512 map */
                snprintf(params, sizeof(params), "{\"mass\":%.17g,\"concentration\":5,\"grid_size\":512}",
                         uniform(rng, 1e13, 1e15));
                break;
        }
        int n = snprintf(buf, size, "{\"op\":\"submit\",\"ref\":%llu,\"kind\":\"%s\",\"params\":%s,\"watch\":%s}",
                         (unsigned long long)ref, kind, params, watch ? "true" : "false");
        if (n < 0 || (size_t)n >= size)
                return -ENOBUFS;
        return n;
}
