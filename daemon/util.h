/* Small things every part of the daemon uses: clocks, container_of, a string copy. */
#pragma once

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The struct that holds `member` at `ptr` (an embedded store_op, mail, item). */
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Wall-clock milliseconds since the Unix epoch: for times that are stored or shown
 * (submitted, finished, cache entry ages) and for job deadlines, which are absolute
 * and survive a restart. Never for measuring a duration: it can jump. */
static inline int64_t kiln_wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* After a program's last output: 0 when standard output took all of it, else -1
 * having said so on stderr as `prog`. A full disk or a closed pipe is a failure to
 * report, not a success. */
static inline int kiln_stdout_written(const char *prog)
{
        errno = 0;
        if (fflush(stdout) == 0 && !ferror(stdout))
                return 0;
        /* A reader that stopped (| head) needs no message: EPIPE now, or, failed at
         * an earlier flush, a pipe whose other end is gone (POLLERR). */
        struct pollfd p = { .fd = STDOUT_FILENO, .events = POLLOUT };
        int e = errno;
        if (e != EPIPE && !(e == 0 && poll(&p, 1, 0) == 1 && (p.revents & POLLERR)))
                fprintf(stderr, "%s: cannot write to standard output: %s\n", prog, strerror(e ? e : EIO));
        return -1;
}

/* Monotonic microseconds: for durations, rates, throttles and timers. */
static inline int64_t kiln_mono_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t kiln_mono_ms(void)
{
        return kiln_mono_us() / 1000;
}

/* Copies src into dst of `size` bytes (> 0), cut to fit and NUL-terminated: what
 * snprintf(dst, size, "%s", src) does, without parsing a format on the paths every
 * job takes. */
static inline void kiln_str_copy(char *dst, size_t size, const char *src)
{
        size_t n = strnlen(src, size - 1);

        memcpy(dst, src, n);
        dst[n] = '\0';
}
