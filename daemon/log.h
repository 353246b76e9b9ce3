/* Logging: to the journal under systemd, to stderr otherwise (log.target).
 * Only the daemon layer logs; libraries return errors (STYLE.md habit 3). */
#pragma once

#include "config.h"

/* Chooses the sink (auto: the journal when started by systemd, i.e. when
 * JOURNAL_STREAM or INVOCATION_ID is set; else stderr) and the level. Also routes
 * libwebsockets' own errors and warnings through kiln_log. Call once, early. */
void kiln_log_init(enum kiln_log_target target, enum kiln_log_level level);
/* Changes the level (SIGHUP reload). Thread-safe. */
void kiln_log_set_level(enum kiln_log_level level);
/* Logs one line at `level`. Thread-safe. */
void kiln_log(enum kiln_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) kiln_log(KILN_LOG_ERR, __VA_ARGS__)
#define log_warning(...) kiln_log(KILN_LOG_WARNING, __VA_ARGS__)
#define log_notice(...) kiln_log(KILN_LOG_NOTICE, __VA_ARGS__)
#define log_info(...) kiln_log(KILN_LOG_INFO, __VA_ARGS__)
#define log_debug(...) kiln_log(KILN_LOG_DEBUG, __VA_ARGS__)
