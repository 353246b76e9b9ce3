/* The configuration schema (SPEC §4): every key, its type, default, range and doc, and
 * the value codecs, listen addresses included. This table is the single source of
 * truth: defaults, the loader, --print-config, config.get, the manual page
 * kiln.conf(5) and the tests all read it. It does not know the loader (config.c). */
#include "schema.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

_Static_assert(sizeof(enum kiln_store_sync) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(enum kiln_gpu_backend) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(enum kiln_log_level) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(enum kiln_log_target) == sizeof(int), "enums are int-sized");

#define KIB UINT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define TIB (GIB * 1024)

/* Highest device index accepted in gpu.devices. */
#define MAX_DEVICE_INDEX 255

#define FIELD(type, member) \
        .offset = offsetof(type, member), .size = sizeof(((type *)0)->member)
#define CFG(member) FIELD(struct kiln_config, member)
#define BATCH(member) FIELD(struct kiln_batch_config, member)

static const char *const sync_choices[] = { "full", "batch", "off", NULL };
static const char *const backend_choices[] = { "auto", "cuda", "cpu", NULL };
static const char *const level_choices[] = { "err", "warning", "notice", "info", "debug", NULL };
static const char *const target_choices[] = { "auto", "journal", "stderr", NULL };

const char *const kiln_cfg_sections[] = {
        "server", "auth", "store", "cache", "jobs", "gpu", "cpu", "limits", "memory", "log", NULL,
};

const struct kiln_cfg_key kiln_cfg_keys[] = {
        /* [server] */
        { "server", "listen", KILN_CFG_LISTEN, CFG(server.listen), .def = "127.0.0.1:8080",
          .doc = "Address and port to listen on: HOST:PORT, IPv6 as [ADDR]:PORT." },
        { "server", "tls_cert", KILN_CFG_PATH, CFG(server.tls_cert), .def = "",
          .may_be_empty = true,
          .doc = "PEM certificate chain for TLS; empty serves plain HTTP (set with tls_key)." },
        { "server", "tls_key", KILN_CFG_PATH, CFG(server.tls_key), .def = "",
          .may_be_empty = true,
          .doc = "PEM private key for tls_cert; empty when tls_cert is empty." },
        { "server", "web_root", KILN_CFG_PATH, CFG(server.web_root),
          .def = "/usr/share/kiln/web_ui",
          .doc = "Directory of the web UI's static files, served at /." },
        { "server", "max_message_bytes", KILN_CFG_SIZE, CFG(server.max_message_bytes),
          .def = "64MiB", .min = KIB, .max = GIB,
          .doc = "Largest WebSocket message accepted; larger ones close the connection (1009)." },
        { "server", "max_connections", KILN_CFG_U32, CFG(server.max_connections),
          .def = "10000", .min = 1, .max = 1000000,
          .doc = "Most WebSocket connections and /api/ requests at once; past it an upgrade is refused and a "
                 "request answered 503 (probes and the web UI are always served)." },
        { "server", "idle_timeout_s", KILN_CFG_U32, CFG(server.idle_timeout_s),
          .def = "300", .min = 1, .max = 86400,
          .doc = "Seconds without traffic or pong before a connection is closed." },
        { "server", "handshake_timeout_s", KILN_CFG_U32, CFG(server.handshake_timeout_s),
          .def = "10", .min = 1, .max = 300,
          .doc = "Seconds a connection may take to send its HTTP request or finish TLS and the WebSocket upgrade, "
                 "and then again to sign in with a valid hello (auth.required)." },
        /* [auth] */
        { "auth", "tokens_file", KILN_CFG_PATH, CFG(auth.tokens_file),
          .def = "/etc/kiln/tokens",
          .doc = "Token file, lines NAME TENANT ROLE SHA256-OF-TOKEN; each name and each token on one line only." },
        { "auth", "required", KILN_CFG_BOOL, CFG(auth.required), .def = "true",
          .doc = "Require a token; false is only allowed with a loopback listen address." },
        /* [store] */
        { "store", "path", KILN_CFG_PATH, CFG(store.path), .def = "/var/lib/kiln",
          .doc = "Directory of the LMDB job and result store." },
        { "store", "map_size_gb", KILN_CFG_U32, CFG(store.map_size_gb),
          .def = "64", .min = 1, .max = 16384,
          .doc = "LMDB map size in GiB (address space reserved, not disk used): the most the store may hold; "
                 "kilnd will not start with less than the store already holds." },
        { "store", "sync", KILN_CFG_ENUM, CFG(store.sync), .def = "full",
          .choices = sync_choices,
          .doc = "Durability: full (every commit fsynced before it is answered: survives a power loss), "
                 "batch (fsync every 100 ms on a thread of its own, so commits never wait for the disk: a power loss can lose the last commits and, unless the file "
                 "system keeps write order, leave a store LMDB cannot read), off (no fsync)." },
        /* [cache] */
        { "cache", "enabled", KILN_CFG_BOOL, CFG(cache.enabled), .def = "true",
          .doc = "Keep finished results and answer identical jobs from the cache." },
        { "cache", "max_bytes", KILN_CFG_SIZE, CFG(cache.max_bytes),
          .def = "8GiB", .min = MIB, .max = 64 * TIB,
          .doc = "Most bytes of cached results; the oldest are evicted beyond it." },
        { "cache", "ttl_s", KILN_CFG_U32, CFG(cache.ttl_s),
          .def = "86400", .min = 1, .max = 315360000,
          .doc = "Seconds a cached result is kept." },
        /* [jobs] */
        { "jobs", "max_queued", KILN_CFG_U32, CFG(jobs.max_queued),
          .def = "100000", .min = 1, .max = 10000000,
          .doc = "Most jobs waiting to run; more are refused with an error." },
        { "jobs", "default_timeout_ms", KILN_CFG_U32, CFG(jobs.default_timeout_ms),
          .def = "600000", .min = 1, .max = 86400000,
          .doc = "Time limit of a job that names none, in milliseconds." },
        { "jobs", "max_retries", KILN_CFG_U32, CFG(jobs.max_retries),
          .def = "2", .min = 0, .max = 100,
          .doc = "Times a job is run again after a device failure before it fails." },
        { "jobs", "retain_s", KILN_CFG_U32, CFG(jobs.retain_s),
          .def = "604800", .min = 1, .max = 31536000,
          .doc = "Seconds a finished job's record is kept." },
        /* [gpu] */
        { "gpu", "backend", KILN_CFG_ENUM, CFG(gpu.backend), .def = "auto",
          .choices = backend_choices,
          .doc = "auto (CUDA when usable, else CPU), cuda (CUDA first, CPU fallback) or cpu." },
        { "gpu", "devices", KILN_CFG_DEVICES, CFG(gpu.devices), .def = "all",
          .doc = "GPUs to use: all, or comma-separated device indices such as 0,2." },
        { "gpu", "memory_fraction", KILN_CFG_DOUBLE, CFG(gpu.memory_fraction),
          .def = "0.9", .dmin = 0.05, .dmax = 1.0,
          .doc = "Fraction of each GPU's memory kiln may allocate." },
        /* [cpu] */
        { "cpu", "threads", KILN_CFG_U32, CFG(cpu.threads),
          .def = "0", .min = 0, .max = 1024,
          .doc = "CPU worker threads; 0 means one per core." },
        /* [limits] */
        { "limits", "rate_per_s", KILN_CFG_DOUBLE, CFG(limits.rate_per_s),
          .def = "20000", .dmin = 0.0, .dmax = 1e6,
          .doc = "Messages per second per token, per connection without auth (token bucket); 0 means unlimited." },
        { "limits", "burst", KILN_CFG_U32, CFG(limits.burst),
          .def = "40000", .min = 1, .max = 1000000,
          .doc = "Token bucket size: messages allowed at once above rate_per_s." },
        { "limits", "max_inflight_per_conn", KILN_CFG_U32, CFG(limits.max_inflight_per_conn),
          .def = "10000", .min = 1, .max = 1000000,
          .doc = "Most unfinished jobs one connection may have submitted; more are rate_limited." },
        { "limits", "max_queued_per_tenant", KILN_CFG_U32, CFG(limits.max_queued_per_tenant),
          .def = "50000", .min = 1, .max = 10000000,
          .doc = "Most unfinished jobs (queued or running) one tenant may have; more are queue_full." },
        { "limits", "max_result_bytes", KILN_CFG_SIZE, CFG(limits.max_result_bytes),
          .def = "2GiB", .min = KIB, .max = 64 * GIB,
          .doc = "Largest result (all parts) a job may ask for; larger ones are too_large at submit." },
        { "limits", "max_input_bytes", KILN_CFG_SIZE, CFG(limits.max_input_bytes),
          .def = "1GiB", .min = KIB, .max = 64 * GIB,
          .doc = "Largest input of one job, its binary parts and params together; larger ones are too_large." },
        { "limits", "max_object_bytes", KILN_CFG_SIZE, CFG(limits.max_object_bytes),
          .def = "8GiB", .min = KIB, .max = TIB,
          .doc = "Largest stored object (a model, a vector collection); a change that makes one larger is too_large." },
        { "limits", "max_objects_per_tenant", KILN_CFG_U32, CFG(limits.max_objects_per_tenant),
          .def = "1000", .min = 1, .max = 1000000,
          .doc = "Most stored objects (models and vector collections together) one tenant may have." },
        { "limits", "max_tenant_bytes", KILN_CFG_SIZE, CFG(limits.max_tenant_bytes),
          .def = "32GiB", .min = KIB, .max = 16 * TIB,
          .doc = "Most bytes of stored objects one tenant may have, all its models and collections together." },
        /* [memory] */
        { "memory", "max_bytes", KILN_CFG_SIZE, CFG(memory.max_bytes),
          .def = "0", .min = 64 * MIB, .max = TIB, .auto_means = "half of the machine's or the cgroup's memory",
          .doc = "Most bytes kilnd holds for job inputs, results, output buffers and model checks; jobs that do not "
                 "fit wait queued, uploads that do not fit are refused. "
                 "0 means half of the machine's memory or of its cgroup's limit, whichever is smaller." },
        { "memory", "max_output_buffer_bytes", KILN_CFG_SIZE, CFG(memory.max_output_buffer_bytes),
          .def = "256MiB", .min = 64 * KIB, .max = 16 * GIB,
          .doc = "Most bytes waiting to be sent to one connection; a client that reads slower is disconnected, its jobs go on." },
        { "memory", "objects_cache_bytes", KILN_CFG_SIZE, CFG(memory.objects_cache_bytes),
          .def = "0", .min = MIB, .max = TIB, .auto_means = "half of memory.max_bytes",
          .doc = "Most bytes of loaded models and vector collections kept in memory while no job uses them, so that "
                 "the next job of the same version need not load it again; the least recently used go first, and a "
                 "version a newer put replaced goes as soon as no job uses it. 0 means half of memory.max_bytes." },
        /* [log] */
        { "log", "level", KILN_CFG_ENUM, CFG(log.level), .def = "info",
          .choices = level_choices,
          .doc = "Least severe level logged: err, warning, notice, info or debug." },
        { "log", "target", KILN_CFG_ENUM, CFG(log.target), .def = "auto",
          .choices = target_choices,
          .doc = "auto (journal under systemd, else stderr), journal or stderr." },
};

const size_t kiln_cfg_n_keys = sizeof(kiln_cfg_keys) / sizeof(kiln_cfg_keys[0]);

const struct kiln_cfg_key kiln_cfg_batch_keys[] = {
        { "batch", "max_batch", KILN_CFG_U32, BATCH(max_batch),
          .def = "64", .min = 1, .max = 4096,
          .doc = "Most jobs of this kind run together in one batch." },
        { "batch", "max_delay_us", KILN_CFG_U32, BATCH(max_delay_us),
          .def = "2000", .min = 0, .max = 1000000,
          .doc = "Microseconds the first job of a batch may wait for others to join it." },
};

const size_t kiln_cfg_n_batch_keys = sizeof(kiln_cfg_batch_keys) / sizeof(kiln_cfg_batch_keys[0]);

/* Looks up a key of a fixed section. */
const struct kiln_cfg_key *kiln_cfg_find(const char *section, const char *key)
{
        for (size_t i = 0; i < kiln_cfg_n_keys; i++)
                if (strcmp(kiln_cfg_keys[i].section, section) == 0 &&
                    strcmp(kiln_cfg_keys[i].key, key) == 0)
                        return &kiln_cfg_keys[i];
        return NULL;
}

/* Looks up a key of the [batch.KIND] sections. */
const struct kiln_cfg_key *kiln_cfg_find_batch(const char *key)
{
        for (size_t i = 0; i < kiln_cfg_n_batch_keys; i++)
                if (strcmp(kiln_cfg_batch_keys[i].key, key) == 0)
                        return &kiln_cfg_batch_keys[i];
        return NULL;
}

/* True when `section` is one of kiln_cfg_sections. */
bool kiln_cfg_section_known(const char *section)
{
        for (size_t i = 0; kiln_cfg_sections[i]; i++)
                if (strcmp(kiln_cfg_sections[i], section) == 0)
                        return true;
        return false;
}

static int parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = { "true", "yes", "on", "1" };
        static const char *const no[] = { "false", "no", "off", "0" };

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

/* Decimal digits only (no sign, no space, no hex): -EINVAL when not a number,
 * -ERANGE when it does not fit in 64 bits. Parses the leading digits; *ret_end
 * points after them. */
static int parse_digits(const char *s, uint64_t *ret, const char **ret_end)
{
        uint64_t v = 0;
        const char *p = s;

        if (*p < '0' || *p > '9')
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
                unsigned d = (unsigned)(*p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        *ret_end = p;
        return 0;
}

static int parse_u64(const char *s, uint64_t *ret)
{
        const char *end;
        uint64_t v;
        int r = parse_digits(s, &v, &end);

        if (r == -EINVAL || (r == 0 && *end != '\0'))
                return -EINVAL;
        if (r < 0) {
                /* Only digits can overflow; anything after them is still a type error. */
                while (*s >= '0' && *s <= '9')
                        s++;
                return *s ? -EINVAL : -ERANGE;
        }
        *ret = v;
        return 0;
}

static const struct {
        const char *suffix;
        uint64_t factor;
} size_suffixes[] = {
        { "", 1 },          { "B", 1 },
        { "K", KIB },       { "KiB", KIB },         { "KB", 1000 },
        { "M", MIB },       { "MiB", MIB },         { "MB", 1000 * 1000 },
        { "G", GIB },       { "GiB", GIB },         { "GB", 1000 * 1000 * 1000 },
        { "T", TIB },       { "TiB", TIB },         { "TB", UINT64_C(1000) * 1000 * 1000 * 1000 },
};

static int parse_size(const char *s, uint64_t *ret)
{
        const char *end;
        uint64_t v;
        int r = parse_digits(s, &v, &end);

        if (r == -EINVAL)
                return -EINVAL;
        if (r < 0) {
                for (end = s; *end >= '0' && *end <= '9'; end++)
                        ;
        }
        while (*end == ' ')
                end++;
        for (size_t i = 0; i < sizeof(size_suffixes) / sizeof(size_suffixes[0]); i++) {
                if (strcmp(end, size_suffixes[i].suffix) != 0)
                        continue;
                if (r < 0 || v > UINT64_MAX / size_suffixes[i].factor)
                        return -ERANGE;
                *ret = v * size_suffixes[i].factor;
                return 0;
        }
        return -EINVAL;
}

/* Formats bytes with the largest binary suffix that divides it exactly. */
static void format_size(uint64_t v, char *buf, size_t size)
{
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = { { "TiB", TIB }, { "GiB", GIB }, { "MiB", MIB }, { "KiB", KIB } };

        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (v != 0 && v % units[i].factor == 0) {
                        snprintf(buf, size, "%" PRIu64 "%s", v / units[i].factor, units[i].suffix);
                        return;
                }
        }
        snprintf(buf, size, "%" PRIu64, v);
}

static int parse_double(const char *s, double *ret)
{
        char *end;
        double v;

        /* strtod also takes hex, inf and nan, and skips leading space: refuse those. */
        if (!((*s >= '0' && *s <= '9') || *s == '.' || *s == '-' || *s == '+'))
                return -EINVAL;
        if (strpbrk(s, "xXnN"))
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (end == s || *end != '\0')
                return -EINVAL;
        if (errno == ERANGE || !isfinite(v))
                return -ERANGE;
        *ret = v;
        return 0;
}

/* Shortest "%.Ng" text that reads back to exactly v; whole numbers below 1e15 in plain
 * digits ("1000000", not "1e+06"), as people write them in kiln.conf. */
static void format_double(double v, char *buf, size_t size)
{
        if (v == floor(v) && fabs(v) < 1e15) {
                snprintf(buf, size, "%.0f", v);
                return;
        }
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, size, "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        return;
        }
}

static int parse_enum(const char *const *choices, const char *s, int *ret)
{
        for (int i = 0; choices[i]; i++) {
                if (strcmp(choices[i], s) == 0) {
                        *ret = i;
                        return 0;
                }
        }
        return -EINVAL;
}

/* Normalises "all" or "0, 2,3" to "all" / "0,2,3": indices 0..MAX_DEVICE_INDEX, no
 * duplicates, no empty items. */
static int parse_devices(const char *s, char *out, size_t out_size)
{
        bool seen[MAX_DEVICE_INDEX + 1] = { false };
        size_t len = 0;
        const char *p = s;

        if (strcmp(s, "all") == 0) {
                if (out_size < 4)
                        return -ERANGE;
                memcpy(out, "all", 4);
                return 0;
        }
        for (;;) {
                const char *end;
                uint64_t idx;
                int n;

                while (*p == ' ' || *p == '\t')
                        p++;
                if (parse_digits(p, &idx, &end) < 0 || idx > MAX_DEVICE_INDEX || seen[idx])
                        return -EINVAL;
                seen[idx] = true;
                n = snprintf(out + len, out_size - len, "%s%" PRIu64, len ? "," : "", idx);
                if (n < 0 || (size_t)n >= out_size - len)
                        return -ERANGE;
                len += (size_t)n;
                p = end;
                while (*p == ' ' || *p == '\t')
                        p++;
                if (*p == '\0')
                        return 0;
                if (*p != ',')
                        return -EINVAL;
                p++;
        }
}

/* ---- listen addresses (the KILN_CFG_LISTEN type) ---- */

static bool valid_hostname(const char *h, size_t n)
{
        bool dotted_digits = true;
        char copy[64];
        struct in_addr a4;

        size_t label = 0; /* length of the label so far */

        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)h[i];
                if (!isalnum(ch) && ch != '.' && ch != '-')
                        return false;
                if (!isdigit(ch) && ch != '.')
                        dotted_digits = false;
                /* RFC 1123 labels: 1 to 63 letters, digits and hyphens, not
                 * beginning or ending with a hyphen. */
                if (ch == '.') {
                        if (label == 0 || h[i - 1] == '-')
                                return false;
                        label = 0;
                } else if (ch == '-' && label == 0) {
                        return false;
                } else if (++label > 63) {
                        return false;
                }
        }
        if (label == 0 || h[n - 1] == '-')
                return false;
        if (!dotted_digits)
                return true;
        /* All digits and dots: it must be a real IPv4 address. */
        if (n >= sizeof(copy))
                return false;
        memcpy(copy, h, n);
        copy[n] = '\0';
        return inet_pton(AF_INET, copy, &a4) == 1;
}

/* Splits "HOST:PORT" or "[V6]:PORT" (host returned without brackets); see schema.h. */
int kiln_config_listen_split(const char *listen, char *host, size_t host_size, uint16_t *ret_port)
{
        const char *h, *port_text;
        size_t hlen;
        unsigned long port = 0;

        if (!listen)
                return -EINVAL;
        if (listen[0] == '[') {
                const char *close = strchr(listen, ']');
                char copy[INET6_ADDRSTRLEN + 1];
                struct in6_addr a6;

                if (!close || close[1] != ':')
                        return -EINVAL;
                h = listen + 1;
                hlen = (size_t)(close - h);
                if (hlen == 0 || hlen >= sizeof(copy))
                        return -EINVAL;
                memcpy(copy, h, hlen);
                copy[hlen] = '\0';
                if (inet_pton(AF_INET6, copy, &a6) != 1)
                        return -EINVAL;
                port_text = close + 2;
        } else {
                const char *colon = strrchr(listen, ':');

                if (!colon)
                        return -EINVAL;
                h = listen;
                hlen = (size_t)(colon - listen);
                if (hlen == 0 || !valid_hostname(h, hlen))
                        return -EINVAL;
                port_text = colon + 1;
        }
        if (port_text[0] == '\0' || strlen(port_text) > 5)
                return -EINVAL;
        for (const char *p = port_text; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                port = port * 10 + (unsigned long)(*p - '0');
        }
        if (port < 1 || port > 65535 || hlen >= host_size)
                return -EINVAL;
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        *ret_port = (uint16_t)port;
        return 0;
}

/* True for 127.0.0.0/8, ::1 (also ::ffff:127.x.y.z) and "localhost"; see schema.h. */
bool kiln_config_listen_is_loopback(const char *listen)
{
        char host[256];
        struct in6_addr a6;
        struct in_addr a4;
        uint16_t port;

        if (kiln_config_listen_split(listen, host, sizeof(host), &port) < 0)
                return false;
        if (strcasecmp(host, "localhost") == 0)
                return true;
        if (inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (inet_pton(AF_INET6, host, &a6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&a6) ||
                       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
        return false;
}

/* A HOST:PORT check through the same code the daemon uses. */
static int check_listen(const char *s)
{
        char host[256];
        uint16_t port;

        return kiln_config_listen_split(s, host, sizeof(host), &port);
}

static void choices_text(const char *const *choices, char *buf, size_t size)
{
        size_t len = 0;

        buf[0] = '\0';
        for (size_t i = 0; choices[i] && len < size; i++) {
                int n = snprintf(buf + len, size - len, "%s%s", i ? ", " : "", choices[i]);
                if (n < 0)
                        return;
                len += (size_t)n;
        }
}

/* The accepted values of k as text; see schema.h. */
void kiln_cfg_range_text(const struct kiln_cfg_key *k, char *buf, size_t size)
{
        char lo[32], hi[32];

        if (size == 0)
                return;
        buf[0] = '\0';
        switch (k->type) {
        case KILN_CFG_U32:
                snprintf(buf, size, "%" PRIu64 "..%" PRIu64, k->min, k->max);
                break;
        case KILN_CFG_SIZE:
                format_size(k->min, lo, sizeof(lo));
                format_size(k->max, hi, sizeof(hi));
                snprintf(buf, size, "%s..%s", lo, hi);
                break;
        case KILN_CFG_DOUBLE:
                format_double(k->dmin, lo, sizeof(lo));
                format_double(k->dmax, hi, sizeof(hi));
                snprintf(buf, size, "%s..%s", lo, hi);
                break;
        case KILN_CFG_ENUM:
                choices_text(k->choices, buf, size);
                break;
        case KILN_CFG_BOOL:
        case KILN_CFG_STRING:
        case KILN_CFG_PATH:
        case KILN_CFG_LISTEN:
        case KILN_CFG_DEVICES:
                break;
        }
}

static int parse_string(const struct kiln_cfg_key *k, const char *text, void *field,
                        char *msg, size_t msg_size)
{
        size_t len = strlen(text);

        for (const char *p = text; *p; p++) {
                if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '"') {
                        snprintf(msg, msg_size,
                                 "must not contain control characters or double quotes");
                        return -EINVAL;
                }
        }
        if (len == 0 && !k->may_be_empty) {
                snprintf(msg, msg_size, "must not be empty");
                return -EINVAL;
        }
        if (len >= k->size) {
                snprintf(msg, msg_size, "is %zu bytes long; at most %zu allowed", len, k->size - 1);
                return -ERANGE;
        }
        if (k->type == KILN_CFG_LISTEN && check_listen(text) < 0) {
                snprintf(msg, msg_size,
                         "'%s' is not HOST:PORT (port 1..65535, IPv6 in brackets as [::1]:8080)",
                         text);
                return -EINVAL;
        }
        memcpy(field, text, len + 1);
        return 0;
}

/* Parses `text` for k into base + k->offset; see schema.h. */
int kiln_cfg_parse_value(const struct kiln_cfg_key *k, const char *text, void *base,
                         char *msg, size_t msg_size)
{
        void *field = (char *)base + k->offset;
        char range[160];
        uint64_t u;
        double d;
        bool b;
        int e, r;

        switch (k->type) {
        case KILN_CFG_BOOL:
                if (parse_bool(text, &b) < 0) {
                        snprintf(msg, msg_size,
                                 "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", text);
                        return -EINVAL;
                }
                memcpy(field, &b, sizeof(b));
                return 0;
        case KILN_CFG_U32:
        case KILN_CFG_SIZE:
                r = k->type == KILN_CFG_SIZE ? parse_size(text, &u) : parse_u64(text, &u);
                if (r == -EINVAL) {
                        if (k->type == KILN_CFG_SIZE)
                                snprintf(msg, msg_size,
                                         "'%s' is not a size (bytes, optionally with a suffix "
                                         "K, KiB, KB, M, MiB, MB, G, GiB, GB, T, TiB, TB)", text);
                        else
                                snprintf(msg, msg_size, "'%s' is not an unsigned integer", text);
                        return -EINVAL;
                }
                if (r < 0 || ((u < k->min || u > k->max) && !(u == 0 && k->auto_means))) {
                        kiln_cfg_range_text(k, range, sizeof(range));
                        snprintf(msg, msg_size, "'%s' is out of range %s%s%s%s", text, range,
                                 k->auto_means ? " (or 0: " : "", k->auto_means ? k->auto_means : "",
                                 k->auto_means ? ")" : "");
                        return -ERANGE;
                }
                if (k->type == KILN_CFG_SIZE) {
                        memcpy(field, &u, sizeof(u));
                } else {
                        uint32_t v = (uint32_t)u;
                        memcpy(field, &v, sizeof(v));
                }
                return 0;
        case KILN_CFG_DOUBLE:
                r = parse_double(text, &d);
                if (r == -EINVAL) {
                        snprintf(msg, msg_size, "'%s' is not a number", text);
                        return -EINVAL;
                }
                if (r < 0 || d < k->dmin || d > k->dmax) {
                        kiln_cfg_range_text(k, range, sizeof(range));
                        snprintf(msg, msg_size, "'%s' is out of range %s", text, range);
                        return -ERANGE;
                }
                memcpy(field, &d, sizeof(d));
                return 0;
        case KILN_CFG_ENUM:
                if (parse_enum(k->choices, text, &e) < 0) {
                        kiln_cfg_range_text(k, range, sizeof(range));
                        snprintf(msg, msg_size, "'%s' is not one of %s", text, range);
                        return -EINVAL;
                }
                memcpy(field, &e, sizeof(e));
                return 0;
        case KILN_CFG_DEVICES: {
                char norm[256];
                if (k->size > sizeof(norm) ||
                    parse_devices(text, norm, k->size) < 0) {
                        snprintf(msg, msg_size,
                                 "'%s' is not \"all\" or a comma-separated list of distinct "
                                 "device indices 0..%d", text, MAX_DEVICE_INDEX);
                        return -EINVAL;
                }
                memcpy(field, norm, strlen(norm) + 1);
                return 0;
        }
        case KILN_CFG_STRING:
        case KILN_CFG_PATH:
        case KILN_CFG_LISTEN:
                return parse_string(k, text, field, msg, msg_size);
        }
        snprintf(msg, msg_size, "key has an unknown type");
        return -EINVAL;
}

/* Formats the field at base + k->offset; see schema.h. */
void kiln_cfg_format_value(const struct kiln_cfg_key *k, const void *base, char *buf,
                           size_t size)
{
        const void *field = (const char *)base + k->offset;
        uint64_t u64;
        uint32_t u32;
        double d;
        bool b;
        int e;

        if (size == 0)
                return;
        buf[0] = '\0';
        switch (k->type) {
        case KILN_CFG_BOOL:
                memcpy(&b, field, sizeof(b));
                snprintf(buf, size, "%s", b ? "true" : "false");
                break;
        case KILN_CFG_U32:
                memcpy(&u32, field, sizeof(u32));
                snprintf(buf, size, "%" PRIu32, u32);
                break;
        case KILN_CFG_SIZE:
                memcpy(&u64, field, sizeof(u64));
                format_size(u64, buf, size);
                break;
        case KILN_CFG_DOUBLE:
                memcpy(&d, field, sizeof(d));
                format_double(d, buf, size);
                break;
        case KILN_CFG_ENUM: {
                int n = 0;
                memcpy(&e, field, sizeof(e));
                while (k->choices[n])
                        n++;
                snprintf(buf, size, "%s", e >= 0 && e < n ? k->choices[e] : "?");
                break;
        }
        case KILN_CFG_STRING:
        case KILN_CFG_PATH:
        case KILN_CFG_LISTEN:
        case KILN_CFG_DEVICES:
                snprintf(buf, size, "%.*s", (int)strnlen(field, k->size), (const char *)field);
                break;
        }
}
