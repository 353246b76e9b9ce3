/* kiln's configuration: the typed view of every key in SPEC §4.
 *
 * Values come, in increasing precedence, from the built-in defaults (schema.c), the
 * main INI file, the drop-ins `<main>.d/ *.conf` in lexical order (later wins) and
 * `KILN_SECTION_KEY` environment variables (section and key upper-cased, '.' and '-'
 * turned into '_', e.g. KILN_SERVER_LISTEN, KILN_BATCH_LENS_NFW_MAX_BATCH). Every value
 * remembers its source for --print-config. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KILN_CONFIG_DEFAULT_PATH "/etc/kiln/kiln.conf"
#define KILN_CONFIG_MAX_BATCH_KINDS 16

enum kiln_store_sync { KILN_SYNC_FULL, KILN_SYNC_BATCH, KILN_SYNC_OFF };
enum kiln_gpu_backend { KILN_GPU_AUTO, KILN_GPU_CUDA, KILN_GPU_CPU };
enum kiln_log_level { KILN_LOG_ERR, KILN_LOG_WARNING, KILN_LOG_NOTICE, KILN_LOG_INFO, KILN_LOG_DEBUG };
enum kiln_log_target { KILN_LOG_AUTO, KILN_LOG_JOURNAL, KILN_LOG_STDERR };

struct kiln_batch_config {
        char kind[32];            /* e.g. "lens.nfw" (section "batch.lens.nfw") */
        uint32_t max_batch;       /* 1..4096, default 64 */
        uint32_t max_delay_us;    /* 0..1000000, default 2000 */
};

struct kiln_config {
        struct {
                char listen[128];          /* "HOST:PORT", IPv6 as "[::1]:8080" */
                char tls_cert[4096];       /* "" = none */
                char tls_key[4096];
                char web_root[4096];
                uint64_t max_message_bytes;
                uint32_t max_connections;
                uint32_t idle_timeout_s;
                uint32_t handshake_timeout_s;
        } server;
        struct {
                char tokens_file[4096];
                bool required;
        } auth;
        struct {
                char path[4096];
                uint32_t map_size_gb;
                enum kiln_store_sync sync;
        } store;
        struct {
                bool enabled;
                uint64_t max_bytes;
                uint32_t ttl_s;
        } cache;
        struct {
                uint32_t max_queued;
                uint32_t default_timeout_ms;
                uint32_t max_retries;
                uint32_t retain_s;
        } jobs;
        struct {
                enum kiln_gpu_backend backend;
                char devices[256];         /* "all" or a comma-separated list of indices */
                double memory_fraction;
        } gpu;
        struct {
                uint32_t threads;          /* 0 = number of cores */
        } cpu;
        struct {
                double rate_per_s;         /* per token (per connection without auth); 0 = unlimited */
                uint32_t burst;
                uint32_t max_inflight_per_conn;
                uint32_t max_queued_per_tenant;
                uint64_t max_result_bytes;
        } limits;
        struct {
                enum kiln_log_level level;
                enum kiln_log_target target;
        } log;
        struct kiln_batch_config batch[KILN_CONFIG_MAX_BATCH_KINDS];
        size_t n_batch;
        /* Private to firmware_cfg/: where each value came from (--print-config). */
        struct kiln_config_sources *sources;
};

/* Where a configuration error was found. */
struct kiln_config_error {
        char file[4096];  /* file path, or "environment" for KILN_* variables, or "" */
        unsigned line;    /* 1-based, 0 when not from a file */
        char key[128];    /* "section.key" or the variable name, "" when not about a key */
        char message[512];/* human sentence; kiln_config_error_format() builds the full line */
};

struct kiln_config_loader;

/* Creates the defaults (all keys at their schema default). Never fails except ENOMEM:
 * returns NULL then. Free with kiln_config_free(). */
struct kiln_config *kiln_config_new_defaults(void);
void kiln_config_free(struct kiln_config *c);

/* Loads the configuration: defaults, then `path` (which must exist unless
 * `path_optional`), its drop-in directory `path.d/ *.conf`, then the environment `envp`
 * (NULL-terminated "NAME=value" list; NULL means no environment). `known_kinds` is a
 * NULL-terminated list of job-kind names allowed in [batch.KIND] sections.
 * Returns >= 0 and a new config in *ret, or -EINVAL (bad content) / -errno (I/O) with
 * `err` filled. Validates cross-key rules too (kiln_config_validate). */
int kiln_config_load(const char *path, bool path_optional, char *const *envp,
                     const char *const *known_kinds, struct kiln_config **ret,
                     struct kiln_config_error *err);

/* Cross-key rules: auth.required=false only with a loopback listen address; a
 * listen address that parses; tls_cert and tls_key both set or both empty.
 * Returns >= 0 or -EINVAL with err (key named). */
int kiln_config_validate(const struct kiln_config *c, struct kiln_config_error *err);

/* "FILE:LINE: KEY: MESSAGE" (parts omitted when empty) into buf. Returns buf. */
const char *kiln_config_error_format(const struct kiln_config_error *err, char *buf, size_t size);

/* Writes the effective configuration as INI to `f`, each value followed by a comment
 * naming its source ("# default", "# /etc/kiln/kiln.conf:12", "# env KILN_STORE_PATH"). */
void kiln_config_print(const struct kiln_config *c, FILE *f);

/* Splits server.listen into host and port. Returns >= 0 or -EINVAL. */
int kiln_config_listen_split(const char *listen, char *host, size_t host_size, uint16_t *ret_port);
/* True when the host is 127.0.0.0/8, ::1 or "localhost". */
bool kiln_config_listen_is_loopback(const char *listen);

/* The batch settings for a kind (schema defaults when no section names it). */
struct kiln_batch_config kiln_config_batch(const struct kiln_config *c, const char *kind);
