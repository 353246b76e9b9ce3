/* Logging: to the journal under systemd, to stderr otherwise (log.target).
 * Only the daemon layer logs; libraries return errors (STYLE.md habit 3). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* Chooses the sink (auto: the journal when started by systemd, i.e. when
 * JOURNAL_STREAM or INVOCATION_ID is set; else stderr) and the level. Also routes
 * libwebsockets' own errors and warnings through kiln_log. Call once, early. */
void kiln_log_init(enum kiln_log_target target, enum kiln_log_level level);
/* Changes the level (SIGHUP reload). Thread-safe. */
void kiln_log_set_level(enum kiln_log_level level);
/* Logs one line at `level`. Thread-safe. */
void kiln_log(enum kiln_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line logged at most once per every_ms for something that may repeat fast (a
 * refused sign-in, a failed accept), saying how often it happened meanwhile. */
struct log_every {
        int64_t last_ms; /* monotonic; 0: never logged */
        uint64_t count;
};
/* Counts one occurrence; true when a line is due now, with *ret_count the
 * occurrences it stands for (counting starts again). */
bool log_every_due(struct log_every *e, int64_t every_ms, uint64_t *ret_count);

#define log_error(...) kiln_log(KILN_LOG_ERR, __VA_ARGS__)
#define log_warning(...) kiln_log(KILN_LOG_WARNING, __VA_ARGS__)
#define log_notice(...) kiln_log(KILN_LOG_NOTICE, __VA_ARGS__)
#define log_info(...) kiln_log(KILN_LOG_INFO, __VA_ARGS__)
#define log_debug(...) kiln_log(KILN_LOG_DEBUG, __VA_ARGS__)
