/* The scenarios of SPEC §5: what each submitted job asks for. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

static const char *const names[_SCEN_MAX] = {
        [SCEN_CACHED] = "cached",
        [SCEN_SMALL] = "small",
        [SCEN_MIXED] = "mixed",
        [SCEN_HEAVY] = "heavy",
        [SCEN_SCORE] = "score",
        [SCEN_RELIEF] = "relief",
        [SCEN_JOBSHOP] = "jobshop",
        [SCEN_VEC] = "vec",
        [SCEN_SCORE_MODEL] = "score-model",
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

/* ---- vec and score-model: the stored object used, set before the run ---- */

#define JSON_NAME_MAX 208

/* Writes `name` (1..128 bytes) as a JSON string into out (JSON_NAME_MAX bytes).
 * Returns >= 0, or -EINVAL when it does not fit a submit message. */
static int quote_name(const char *name, char *out)
{
        char *p = out;
        size_t len = name ? strlen(name) : 0;

        if (len < 1 || len > 128)
                return -EINVAL;
        *p++ = '"';
        for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
                if (p - out > JSON_NAME_MAX - 9)
                        return -EINVAL; /* too long once escaped for a submit message */
                if (*c == '"' || *c == '\\') {
                        *p++ = '\\';
                        *p++ = (char)*c;
                } else if (*c < 0x20) {
                        p += sprintf(p, "\\u%04x", *c);
                } else {
                        *p++ = (char)*c;
                }
        }
        *p++ = '"';
        *p = '\0';
        return 0;
}

static struct {
        char json_name[JSON_NAME_MAX]; /* the name as a JSON string, escaped */
        uint32_t dim;
} vec_target, model_target;        /* model_target.dim: the model's features */

int bench_vec_target(const char *collection, uint32_t dim)
{
        if (dim < 1 || dim > 4096 || quote_name(collection, vec_target.json_name) < 0)
                return -EINVAL;
        vec_target.dim = dim;
        return 0;
}

int bench_model_target(const char *model, uint32_t features)
{
        if (features < 1 || features > BENCH_MAX_PART / 8 || quote_name(model, model_target.json_name) < 0)
                return -EINVAL;
        model_target.dim = features;
        return 0;
}

/* One standard normal value (Box-Muller). */
static float gauss(uint64_t *rng)
{
        double u = uniform(rng, 1e-300, 1), v = uniform(rng, 0, 1);
        return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
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
        case SCEN_RELIEF: /* the image goes first, as bench_submit_part's part */
                kind = "image.relief";
                snprintf(params, sizeof(params), "{}");
                break;
        case SCEN_SCORE_MODEL: /* the row goes first, as bench_submit_part's part */
                kind = "risk.score";
                snprintf(params, sizeof(params), "{\"model\":%.208s}", model_target.json_name);
                break;
        case SCEN_VEC: /* the query goes first, as bench_submit_part's part */
                kind = "vec.search";
                snprintf(params, sizeof(params), "{\"collection\":%.208s,\"k\":10}", vec_target.json_name);
                break;
        case SCEN_JOBSHOP: /* ft06 goes first, as bench_submit_part's part */
                kind = "sched.jobshop";
                snprintf(params, sizeof(params), "{\"seed\":%llu,\"target\":55}",
                         (unsigned long long)(next_u64(rng) % 1000000000000000ull));
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

/* ---- relief: a random 64 x 64 RGB PNG ---- */

#define RELIEF_SIDE 64

/* CRC-32 as PNG and zlib define it (reflected, polynomial 0xEDB88320). */
static uint32_t crc32_of(uint32_t crc, const uint8_t *p, size_t n)
{
        static uint32_t table[256];
        if (!table[1])
                for (uint32_t i = 0; i < 256; i++) {
                        uint32_t c = i;
                        for (int k = 0; k < 8; k++)
                                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
                        table[i] = c;
                }
        crc = ~crc;
        for (size_t i = 0; i < n; i++)
                crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
        return ~crc;
}

static uint8_t *put_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
        return p + 4;
}

/* Closes the chunk whose length field is at `start` and whose data ends at `end`:
 * writes the length and the CRC; returns the end of the chunk. */
static uint8_t *end_chunk(uint8_t *start, uint8_t *end)
{
        put_be32(start, (uint32_t)(end - start - 8));
        return put_be32(end, crc32_of(0, start + 4, (size_t)(end - start - 4)));
}

/* A PNG of random RGB pixels; the zlib stream holds them in one stored block (the
 * server decodes it like any other). Returns its length. */
static size_t random_png(uint64_t *rng, uint8_t *out)
{
        static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
        const uint32_t raw_len = RELIEF_SIDE * (1 + 3 * RELIEF_SIDE);
        uint8_t *p = out, *c;

        memcpy(p, sig, 8);
        p += 8;
        c = p;
        memcpy(p + 4, "IHDR", 4);
        p = put_be32(put_be32(p + 8, RELIEF_SIDE), RELIEF_SIDE);
        *p++ = 8;   /* bit depth */
        *p++ = 2;   /* RGB */
        *p++ = 0;
        *p++ = 0;
        *p++ = 0;
        p = end_chunk(c, p);

        c = p;
        memcpy(p + 4, "IDAT", 4);
        p += 8;
        *p++ = 0x78; /* zlib: deflate, 32 KiB window, no dictionary */
        *p++ = 0x01;
        *p++ = 1;    /* the last block, stored */
        *p++ = (uint8_t)raw_len;
        *p++ = (uint8_t)(raw_len >> 8);
        *p++ = (uint8_t)~raw_len;
        *p++ = (uint8_t)(~raw_len >> 8);
        uint8_t *raw = p;
        for (int y = 0; y < RELIEF_SIDE; y++) {
                *p++ = 0; /* filter: none */
                for (int x = 0; x < 3 * RELIEF_SIDE; x += 8) {
                        uint64_t v = next_u64(rng);
                        memcpy(p, &v, 8);
                        p += 8;
                }
        }
        uint32_t a = 1, b = 0;
        for (uint32_t i = 0; i < raw_len; i++) {
                a = (a + raw[i]) % 65521;
                b = (b + a) % 65521;
        }
        p = put_be32(p, b << 16 | a);
        p = end_chunk(c, p);

        c = p;
        memcpy(p + 4, "IEND", 4);
        p = end_chunk(c, p + 8);
        return (size_t)(p - out);
}

/* ---- jobshop: Fisher and Thompson's 6 x 6 instance, optimum 55 ---- */

static const char ft06[] = "6 6\n"
                           "2 1 0 3 1 6 3 7 5 3 4 6\n"
                           "1 8 2 5 4 10 5 10 0 10 3 4\n"
                           "2 5 3 4 5 8 0 9 1 1 4 7\n"
                           "1 5 0 5 2 5 3 3 4 8 5 9\n"
                           "2 9 1 3 4 5 5 4 0 3 3 1\n"
                           "1 3 3 3 5 9 0 10 4 4 2 1\n";

int bench_submit_part(enum bench_scenario s, uint64_t ref, uint64_t *rng, uint8_t *buf, size_t size)
{
        static uint8_t png[RELIEF_SIDE * (1 + 3 * RELIEF_SIDE) + 128];
        char header[160];
        const uint8_t *data;
        const char *part;
        size_t n;

        if (s == SCEN_RELIEF) {
                n = random_png(rng, png);
                data = png;
                part = "image";
        } else if (s == SCEN_JOBSHOP) {
                n = sizeof(ft06) - 1;
                data = (const uint8_t *)ft06;
                part = "instance";
        } else if (s == SCEN_VEC || s == SCEN_SCORE_MODEL) {
                static float values[4096];
                uint32_t dim = s == SCEN_VEC ? vec_target.dim : model_target.dim;
                for (uint32_t j = 0; j < dim; j++)
                        values[j] = gauss(rng);
                n = dim * sizeof(float);
                data = (const uint8_t *)values;
                part = s == SCEN_VEC ? "queries" : "rows";
        } else {
                return 0;
        }
        int hl = s == SCEN_VEC || s == SCEN_SCORE_MODEL
                         ? snprintf(header, sizeof(header),
                                    "{\"ref\":%llu,\"part\":\"%s\",\"dtype\":\"f32\",\"shape\":[1,%zu]}",
                                    (unsigned long long)ref, part, n / sizeof(float))
                         : snprintf(header, sizeof(header),
                                          "{\"ref\":%llu,\"part\":\"%s\",\"dtype\":\"bytes\",\"shape\":[%zu]}",
                                          (unsigned long long)ref, part, n);
        if (hl < 0 || (size_t)hl >= sizeof(header) || 8 + (size_t)hl + n > size)
                return -ENOBUFS;
        memcpy(buf, "KLNB", 4);
        buf[4] = (uint8_t)hl;
        buf[5] = (uint8_t)(hl >> 8);
        buf[6] = 0;
        buf[7] = 0;
        memcpy(buf + 8, header, (size_t)hl);
        memcpy(buf + 8 + hl, data, n);
        return (int)(8 + (size_t)hl + n);
}
