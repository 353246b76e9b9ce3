/* Job ids: UUIDv7 (RFC 9562 §5.7), monotonic within the process.
 *
 * Layout of the 128 bits:
 *   48 unix_ts_ms (big-endian) | 4 version (0111) | 12 counter high bits (rand_a)
 *   | 2 variant (10) | 30 counter low bits | 32 random bits
 *
 * The 42-bit counter is RFC 9562 §6.2 method 1 ("fixed bit-length dedicated
 * counter"): it is reseeded with random bits (top bit clear, leaving at least 2^41
 * increments of room) whenever the millisecond advances, and incremented otherwise.
 * If it ever overflows, or the clock steps back, the timestamp field is advanced
 * past the last one used so ids keep sorting strictly increasing.
 *
 * Random bits come from getrandom() through a pool refilled a page at a time, so
 * an id costs one lock and no system call in the common case. The generator state
 * lives in a page marked MADV_WIPEONFORK: a fork child starts from zeroes (an empty
 * pool, a fresh counter) instead of replaying its parent's random bytes; where the
 * kernel lacks it, a change of pid does the same.
 *
 * C11 <threads.h> rather than <pthread.h>: the latter includes <sched.h>, which the
 * daemon's include path shadows with daemon/sched.h. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define POOL_SIZE 4000
#define COUNTER_BITS 42
#define TS_MASK ((UINT64_C(1) << 48) - 1)

struct gen {
        uint64_t last_ms;     /* timestamp field of the last id */
        uint64_t counter;     /* counter of the last id */
        size_t avail;         /* unused bytes at the end of pool */
        pid_t pid;            /* owner, when fork is detected by pid (no WIPEONFORK) */
        uint8_t pool[POOL_SIZE];
};

static once_flag once = ONCE_FLAG_INIT;
static mtx_t lock;
static struct gen fallback_gen;
static struct gen *gen = &fallback_gen;
static bool check_pid;        /* WIPEONFORK unavailable: compare getpid() instead */

static void gen_init(void)
{
        void *p;

        mtx_init(&lock, mtx_plain);
        p = mmap(NULL, sizeof(struct gen), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED && madvise(p, sizeof(struct gen), MADV_WIPEONFORK) == 0) {
                gen = p;
                return;
        }
        /* Linux < 4.14: notice a fork by the pid changing (a system call per id). */
        if (p != MAP_FAILED)
                munmap(p, sizeof(struct gen));
        check_pid = true;
        fallback_gen.pid = getpid();
}

/* Last resort when getrandom() is unavailable: splitmix64 seeded from the clock,
 * the pid and an address. Ids stay unique and ordered (the counter does that);
 * only their unpredictability suffers. */
static void fill_fallback(uint8_t *p, size_t n)
{
        struct timespec ts;
        uint64_t x;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)p;
        for (size_t i = 0; i < n; i++) {
                uint64_t z;

                x += UINT64_C(0x9E3779B97F4A7C15);
                z = x;
                z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
                z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
                p[i] = (uint8_t)(z ^ (z >> 31));
        }
}

static void pool_refill(struct gen *g)
{
        size_t got = 0;

        while (got < POOL_SIZE) {
                ssize_t n = getrandom(g->pool + got, POOL_SIZE - got, 0);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        fill_fallback(g->pool + got, POOL_SIZE - got);
                        break;
                }
                got += (size_t)n;
        }
        g->avail = POOL_SIZE;
}

/* n (<= 8) random bytes as an integer. Called with the lock held. */
static uint64_t take_random(struct gen *g, size_t n)
{
        uint64_t v = 0;

        if (g->avail < n)
                pool_refill(g);
        for (size_t i = 0; i < n; i++)
                v = v << 8 | g->pool[POOL_SIZE - g->avail--];
        return v;
}

static uint64_t counter_seed(struct gen *g)
{
        return take_random(g, 6) & ((UINT64_C(1) << (COUNTER_BITS - 1)) - 1);
}

/* Makes a new UUIDv7, strictly greater (as 16 big-endian bytes) than every id this
 * process made before. Thread-safe. */
void kiln_uuid7_new(uint8_t ret[16])
{
        struct timespec ts;
        struct gen *g;
        uint64_t now, ms, c, tail;

        clock_gettime(CLOCK_REALTIME, &ts);
        now = ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) & TS_MASK;

        call_once(&once, gen_init);
        mtx_lock(&lock);
        g = gen;
        if (check_pid && g->pid != getpid()) {
                memset(g, 0, sizeof(*g));
                g->pid = getpid();
        }
        if (now > g->last_ms) {
                g->last_ms = now;
                g->counter = counter_seed(g);
        } else if (++g->counter >> COUNTER_BITS) {
                g->last_ms = (g->last_ms + 1) & TS_MASK;
                g->counter = counter_seed(g);
        }
        ms = g->last_ms;
        c = g->counter;
        tail = take_random(g, 4);
        mtx_unlock(&lock);

        for (int i = 0; i < 6; i++)
                ret[i] = (uint8_t)(ms >> (40 - 8 * i));
        ret[6] = (uint8_t)(0x70 | ((c >> 38) & 0x0F));
        ret[7] = (uint8_t)(c >> 30);
        ret[8] = (uint8_t)(0x80 | ((c >> 24) & 0x3F));
        ret[9] = (uint8_t)(c >> 16);
        ret[10] = (uint8_t)(c >> 8);
        ret[11] = (uint8_t)c;
        ret[12] = (uint8_t)(tail >> 24);
        ret[13] = (uint8_t)(tail >> 16);
        ret[14] = (uint8_t)(tail >> 8);
        ret[15] = (uint8_t)tail;
}

/* Writes the lowercase 8-4-4-4-12 form and a terminating NUL (37 bytes). */
void kiln_uuid_format(const uint8_t id[16], char ret[37])
{
        static const char hex[] = "0123456789abcdef";
        char *p = ret;

        for (int i = 0; i < 16; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        *p++ = '-';
                *p++ = hex[id[i] >> 4];
                *p++ = hex[id[i] & 0x0F];
        }
        *p = '\0';
}

static int hex_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Parses the 36-character 8-4-4-4-12 form in either case (any version). Reads no
 * further than the first character that does not fit, so a short string is safe. */
int kiln_uuid_parse(const char *text, uint8_t ret[16])
{
        uint8_t id[16];
        int n = 0;

        if (!text)
                return -EINVAL;
        for (int i = 0; i < 36; i++) {
                int hi, lo;

                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (text[i] != '-')
                                return -EINVAL;
                        continue;
                }
                hi = hex_value(text[i]);
                if (hi < 0)
                        return -EINVAL;
                lo = hex_value(text[++i]);
                if (lo < 0)
                        return -EINVAL;
                id[n++] = (uint8_t)(hi << 4 | lo);
        }
        if (text[36] != '\0')
                return -EINVAL;
        memcpy(ret, id, sizeof(id));
        return 0;
}
