/* Logging sinks: the systemd journal or stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <libwebsockets.h>

#include "util.h"
#include <systemd/sd-journal.h>

static atomic_int log_level = KILN_LOG_INFO;
static bool log_to_journal;

static const int syslog_priority[] = {
        [KILN_LOG_ERR] = LOG_ERR,
        [KILN_LOG_WARNING] = LOG_WARNING,
        [KILN_LOG_NOTICE] = LOG_NOTICE,
        [KILN_LOG_INFO] = LOG_INFO,
        [KILN_LOG_DEBUG] = LOG_DEBUG,
};

static const char *const level_tag[] = {
        [KILN_LOG_ERR] = "error",
        [KILN_LOG_WARNING] = "warning",
        [KILN_LOG_NOTICE] = "notice",
        [KILN_LOG_INFO] = "info",
        [KILN_LOG_DEBUG] = "debug",
};

static void vlog(enum kiln_log_level level, const char *fmt, va_list ap)
{
        if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
                return;
        if (log_to_journal) {
                sd_journal_printv(syslog_priority[level], fmt, ap);
                return;
        }
        char line[2048];
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ kilnd %s: ", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                         level_tag[level]);
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        /* One write per line keeps lines from different threads whole. */
        fprintf(stderr, "%s\n", line);
}

void kiln_log(enum kiln_log_level level, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vlog(level, fmt, ap);
        va_end(ap);
}

static void lws_emit(int level, const char *line)
{
        char buf[1024];
        size_t n = strlen(line);
        /* lws lines carry their own timestamp prefix and a newline. */
        const char *p = strchr(line, ']');
        if (p && p[1] == ' ')
                line = p + 2;
        n = strlen(line);
        if (n >= sizeof(buf))
                n = sizeof(buf) - 1;
        memcpy(buf, line, n);
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                n--;
        buf[n] = 0;
        kiln_log(level == LLL_ERR ? KILN_LOG_ERR : KILN_LOG_WARNING, "lws: %s", buf);
}

void kiln_log_init(enum kiln_log_target target, enum kiln_log_level level)
{
        if (target == KILN_LOG_AUTO)
                log_to_journal = getenv("JOURNAL_STREAM") || getenv("INVOCATION_ID");
        else
                log_to_journal = target == KILN_LOG_JOURNAL;
        kiln_log_set_level(level);
        lws_set_log_level(LLL_ERR | LLL_WARN, lws_emit);
}

void kiln_log_set_level(enum kiln_log_level level)
{
        atomic_store(&log_level, (int)level);
}

bool log_every_due(struct log_every *e, int64_t every_ms, uint64_t *ret_count)
{
        int64_t now = kiln_mono_ms();
        e->count++;
        if (e->last_ms && now - e->last_ms < every_ms)
                return false;
        e->last_ms = now;
        *ret_count = e->count;
        e->count = 0;
        return true;
}
