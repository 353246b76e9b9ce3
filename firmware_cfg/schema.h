/* The configuration schema: the typed configuration (struct kiln_config, every key
 * of SPEC §4 as a field), one table of every key with its type, default, range and
 * documentation, and the codecs that turn a key's text into its typed field and back.
 *
 * This is the lower layer of firmware_cfg/: it knows nothing of files, drop-ins or
 * the environment. config.h (the loader) includes it, so code that includes
 * "config.h" sees these types too. The daemon reads the table directly where it
 * shows the configuration (config.get), and the manual page kiln.conf(5) is
 * generated from it (docs/). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Defined in config.c: where each value came from. */
struct kiln_config_sources;

/* The typed configuration. Every field of the fixed sections has one entry in
 * kiln_cfg_keys (located by its offset); the ranges in comments are the table's. */
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
                uint64_t max_input_bytes;        /* one job's inputs: binary parts and params */
                uint64_t max_object_bytes;       /* one stored model or vector collection */
                uint32_t max_objects_per_tenant; /* models and collections together */
                uint64_t max_tenant_bytes;       /* all of one tenant's stored objects */
        } limits;
        struct {
                /* What kilnd may hold for job inputs, results and output buffers. 0 in a
                 * file or the environment means "auto": the loader replaces it with half
                 * of the machine's or the cgroup's memory (sysmem.h), so a loaded
                 * configuration never holds 0 here. */
                uint64_t max_bytes;
                uint64_t max_output_buffer_bytes; /* per connection */
                /* Loaded objects (compiled models, collection matrices) kept while no job
                 * uses them. 0 in a file or the environment means "auto": half of
                 * max_bytes, worked out by the loader as max_bytes is. */
                uint64_t objects_cache_bytes;
        } memory;
        struct {
                enum kiln_log_level level;
                enum kiln_log_target target;
        } log;
        struct kiln_batch_config batch[KILN_CONFIG_MAX_BATCH_KINDS];
        size_t n_batch;
        /* Private to firmware_cfg/config.c: where each value came from (--print-config). */
        struct kiln_config_sources *sources;
};

enum kiln_cfg_type {
        KILN_CFG_BOOL,    /* bool: true/false, yes/no, on/off, 1/0 */
        KILN_CFG_U32,     /* uint32_t, decimal */
        KILN_CFG_SIZE,    /* uint64_t bytes, decimal with an optional K/KiB/KB/M/... suffix */
        KILN_CFG_DOUBLE,  /* double, finite */
        KILN_CFG_STRING,  /* char[size] */
        KILN_CFG_PATH,    /* char[size], a file or directory path */
        KILN_CFG_ENUM,    /* int-sized enum, the index into choices */
        KILN_CFG_LISTEN,  /* char[size], "HOST:PORT" or "[V6]:PORT" */
        KILN_CFG_DEVICES, /* char[size], "all" or comma-separated device indices */
};

/* One key. Fields are located by `offset` from the start of struct kiln_config (for
 * the main table) or of struct kiln_batch_config (for the [batch.KIND] table). */
struct kiln_cfg_key {
        const char *section;          /* "server"; "batch" for the [batch.KIND] keys */
        const char *key;              /* "listen" */
        enum kiln_cfg_type type;
        size_t offset;
        size_t size;                  /* sizeof the field (the buffer size for strings) */
        const char *def;              /* the default, as text in the key's own syntax */
        uint64_t min, max;            /* range for U32 and SIZE */
        double dmin, dmax;            /* range for DOUBLE */
        bool may_be_empty;            /* for string types: "" is allowed */
        const char *auto_means;       /* SIZE, non-NULL: 0 is accepted besides the range and
                                       * means "worked out at load" (config.c), this */
        const char *const *choices;   /* ENUM: NULL-terminated, in enum order */
        const char *doc;              /* one line */
};

/* The sections of the main table, in print order, NULL-terminated. */
extern const char *const kiln_cfg_sections[];

/* Every key of the fixed sections, grouped by section in kiln_cfg_sections order. */
extern const struct kiln_cfg_key kiln_cfg_keys[];
extern const size_t kiln_cfg_n_keys;

/* The keys of each [batch.KIND] section (offsets into struct kiln_batch_config). */
extern const struct kiln_cfg_key kiln_cfg_batch_keys[];
extern const size_t kiln_cfg_n_batch_keys;

/* Returns the main-table entry for section/key, or NULL when there is none. */
const struct kiln_cfg_key *kiln_cfg_find(const char *section, const char *key);

/* Returns the [batch.KIND] entry named key, or NULL when there is none. */
const struct kiln_cfg_key *kiln_cfg_find_batch(const char *key);

/* True when `section` names a fixed section (not a [batch.KIND] one). */
bool kiln_cfg_section_known(const char *section);

/* Parses `text` according to k and stores it in the field at base + k->offset; the
 * field is written only on success. Returns >= 0, or -EINVAL when the text is not of
 * the key's type, -ERANGE when it is but lies outside the key's range (the field is
 * then untouched); in both cases a sentence for the user is written to msg. */
int kiln_cfg_parse_value(const struct kiln_cfg_key *k, const char *text, void *base,
                         char *msg, size_t msg_size);

/* Writes the field at base + k->offset as text that kiln_cfg_parse_value() reads back
 * to the same value (no quoting; see config.c for that). */
void kiln_cfg_format_value(const struct kiln_cfg_key *k, const void *base, char *buf,
                           size_t size);

/* Writes the values k accepts, in the key's own syntax, to buf: "1..1000000",
 * "1KiB..1GiB", "0.05..1" for numbers and sizes, "full, batch, off" for an enum;
 * "" for the types without a range (booleans, strings, addresses, device lists).
 * The same text the range errors of kiln_cfg_parse_value() quote. */
void kiln_cfg_range_text(const struct kiln_cfg_key *k, char *buf, size_t size);

/* Splits a server.listen value, "HOST:PORT" or "[V6]:PORT", into the host (without
 * brackets) and the port. Returns >= 0, or -EINVAL for anything else: no port, a
 * port outside 1..65535, an invalid IPv4/IPv6 address or host name, a host longer
 * than host_size - 1. Nothing is written on failure. */
int kiln_config_listen_split(const char *listen, char *host, size_t host_size, uint16_t *ret_port);

/* True when the host of a server.listen value is 127.0.0.0/8, ::1 (also
 * ::ffff:127.x.y.z) or "localhost"; false for anything else, unparsable included. */
bool kiln_config_listen_is_loopback(const char *listen);
