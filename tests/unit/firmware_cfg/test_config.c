/* Tests for firmware_cfg/: the schema, the INI loader, drop-ins, environment overrides,
 * cross-key validation, --print-config output and the packaged kiln.conf. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "schema.h"
#include "sysmem.h"
#include "unit_tmpdir.h"

#define DATA KILN_TEST_DATA
#define SHIPPED_CONF KILN_TEST_DATA "/../../../../firmware_cfg/kiln.conf"

static const char *const kinds[] = {
        "lens.nfw", "lens.raytrace", "risk.score", "vec.search", "sched.jobshop", "image.relief",
        NULL,
};

/* Loads `path` (required) with `envp`, expecting success. */
static struct kiln_config *load_ok(const char *path, char *const *envp)
{
        struct kiln_config_error err;
        struct kiln_config *c = NULL;
        char line[5000];
        int r = kiln_config_load(path, false, envp, kinds, &c, &err);

        if (r < 0)
                print_error("unexpected error: %s\n", kiln_config_error_format(&err, line, sizeof(line)));
        assert_int_equal(r, 0);
        assert_non_null(c);
        return c;
}

/* Loads `path`, expecting -EINVAL; returns the error. */
static struct kiln_config_error load_fail(const char *path, char *const *envp)
{
        struct kiln_config_error err;
        struct kiln_config *c = NULL;

        memset(&err, 0, sizeof(err));
        assert_int_equal(kiln_config_load(path, false, envp, kinds, &c, &err), -EINVAL);
        assert_null(c);
        return err;
}

static void assert_contains(const char *haystack, const char *needle)
{
        if (!strstr(haystack, needle))
                fail_msg("'%s' does not contain '%s'", haystack, needle);
}

static char *print_to_string(const struct kiln_config *c)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        assert_non_null(f);
        kiln_config_print(c, f);
        assert_int_equal(fclose(f), 0);
        return buf;
}

/* The line that --print-config writes for `key` ("key = ..."), without its newline. */
static void printed_line(const char *printed, const char *section, const char *key, char *out,
                         size_t size)
{
        char header[128], prefix[128];
        const char *sec, *p, *end;

        snprintf(header, sizeof(header), "\n[%s]\n", section);
        snprintf(prefix, sizeof(prefix), "\n%s = ", key);
        sec = strstr(printed, header);
        assert_non_null(sec);
        p = strstr(sec + 1, prefix);
        assert_non_null(p);
        p++;
        end = strchr(p, '\n');
        assert_non_null(end);
        snprintf(out, size, "%.*s", (int)(end - p), p);
}

/* The line --print-config writes for [memory] `key` of c. */
static void memory_line(const struct kiln_config *c, const char *key, char *out, size_t size)
{
        char *printed = print_to_string(c);

        printed_line(printed, "memory", key, out, size);
        free(printed);
}


static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

/* Field-by-field equality through the schema (strings up to their NUL only). */
static void assert_same_values(const struct kiln_config *a, const struct kiln_config *b)
{
        for (size_t i = 0; i < kiln_cfg_n_keys; i++) {
                const struct kiln_cfg_key *k = &kiln_cfg_keys[i];
                const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
                bool is_string = k->type == KILN_CFG_STRING || k->type == KILN_CFG_PATH ||
                                 k->type == KILN_CFG_LISTEN || k->type == KILN_CFG_DEVICES;

                if (is_string ? strcmp(fa, fb) != 0 : memcmp(fa, fb, k->size) != 0)
                        fail_msg("%s.%s differs", k->section, k->key);
        }
        assert_int_equal(a->n_batch, b->n_batch);
        for (size_t i = 0; i < a->n_batch; i++) {
                assert_string_equal(a->batch[i].kind, b->batch[i].kind);
                assert_int_equal(a->batch[i].max_batch, b->batch[i].max_batch);
                assert_int_equal(a->batch[i].max_delay_us, b->batch[i].max_delay_us);
        }
}

/* ---- defaults and schema ---- */

static void test_defaults_are_spec_values(void **state)
{
        struct kiln_config *c = kiln_config_new_defaults();

        assert_non_null(c);
        assert_string_equal(c->server.listen, "127.0.0.1:8080");
        assert_string_equal(c->server.tls_cert, "");
        assert_string_equal(c->server.tls_key, "");
        assert_string_equal(c->server.web_root, "/usr/share/kiln/web_ui");
        assert_int_equal(c->server.max_message_bytes, 64u << 20);
        assert_int_equal(c->server.max_connections, 10000);
        assert_int_equal(c->server.idle_timeout_s, 300);
        assert_int_equal(c->server.handshake_timeout_s, 10);
        assert_string_equal(c->auth.tokens_file, "/etc/kiln/tokens");
        assert_true(c->auth.required);
        assert_string_equal(c->store.path, "/var/lib/kiln");
        assert_int_equal(c->store.map_size_gb, 64);
        assert_int_equal(c->store.sync, KILN_SYNC_FULL);
        assert_true(c->cache.enabled);
        assert_int_equal(c->cache.max_bytes, UINT64_C(8) << 30);
        assert_int_equal(c->cache.ttl_s, 86400);
        assert_int_equal(c->jobs.max_queued, 100000);
        assert_int_equal(c->jobs.default_timeout_ms, 600000);
        assert_int_equal(c->jobs.max_retries, 2);
        assert_int_equal(c->jobs.retain_s, 604800);
        assert_int_equal(c->gpu.backend, KILN_GPU_AUTO);
        assert_string_equal(c->gpu.devices, "all");
        assert_true(c->gpu.memory_fraction == 0.9);
        assert_int_equal(c->cpu.threads, 0);
        assert_true(c->limits.rate_per_s == 20000.0);
        assert_int_equal(c->limits.burst, 40000);
        assert_int_equal(c->limits.max_inflight_per_conn, 10000);
        assert_int_equal(c->limits.max_queued_per_tenant, 50000);
        assert_int_equal(c->limits.max_result_bytes, UINT64_C(2) << 30);
        assert_int_equal(c->limits.max_input_bytes, UINT64_C(1) << 30);
        assert_int_equal(c->limits.max_object_bytes, UINT64_C(8) << 30);
        assert_int_equal(c->limits.max_objects_per_tenant, 1000);
        assert_int_equal(c->limits.max_tenant_bytes, UINT64_C(32) << 30);
        assert_int_equal(c->memory.max_output_buffer_bytes, 256u << 20);
        assert_true(c->memory.max_bytes >= UINT64_C(64) << 20); /* 0 worked out: see below */
        assert_int_equal(c->log.level, KILN_LOG_INFO);
        assert_int_equal(c->log.target, KILN_LOG_AUTO);
        assert_int_equal(c->n_batch, 0);
        assert_int_equal(kiln_config_validate(c, NULL), 0);
        kiln_config_free(c);
}

static void test_load_without_file_gives_defaults_from_default_source(void **state)
{
        struct kiln_config_error err;
        struct kiln_config *c = NULL, *d = kiln_config_new_defaults();
        char *printed;

        assert_int_equal(kiln_config_load(DATA "/does-not-exist.conf", true, NULL, kinds, &c, &err), 0);
        assert_same_values(c, d);
        printed = print_to_string(c);
        for (size_t i = 0; i < kiln_cfg_n_keys; i++) {
                char line[512];
                printed_line(printed, kiln_cfg_keys[i].section, kiln_cfg_keys[i].key, line,
                             sizeof(line));
                assert_contains(line, "  # default");
        }
        free(printed);
        kiln_config_free(c);
        kiln_config_free(d);
}

static void test_missing_required_file_is_enoent_naming_file(void **state)
{
        struct kiln_config_error err;
        struct kiln_config *c = NULL;

        assert_int_equal(kiln_config_load(DATA "/does-not-exist.conf", false, NULL, kinds, &c, &err),
                         -ENOENT);
        assert_null(c);
        assert_string_equal(err.file, DATA "/does-not-exist.conf");
}

static void test_schema_has_every_section_key_and_valid_defaults(void **state)
{
        char msg[512];
        struct kiln_config scratch;
        struct kiln_batch_config b;

        for (size_t s = 0; kiln_cfg_sections[s]; s++) {
                bool any = false;
                for (size_t i = 0; i < kiln_cfg_n_keys; i++)
                        any |= strcmp(kiln_cfg_keys[i].section, kiln_cfg_sections[s]) == 0;
                if (!any)
                        fail_msg("section [%s] has no keys", kiln_cfg_sections[s]);
        }
        assert_int_equal(kiln_cfg_n_keys, 38);
        for (size_t i = 0; i < kiln_cfg_n_keys; i++) {
                const struct kiln_cfg_key *k = &kiln_cfg_keys[i];
                assert_true(kiln_cfg_section_known(k->section));
                assert_non_null(k->doc);
                /* One line each: kiln.conf(5) and --help texts are built from them. */
                assert_null(strchr(k->doc, '\n'));
                assert_true(k->offset + k->size <= offsetof(struct kiln_config, batch));
                if (kiln_cfg_parse_value(k, k->def, &scratch, msg, sizeof(msg)) < 0)
                        fail_msg("default of %s.%s: %s", k->section, k->key, msg);
        }
        for (size_t i = 0; i < kiln_cfg_n_batch_keys; i++)
                assert_int_equal(kiln_cfg_parse_value(&kiln_cfg_batch_keys[i],
                                                      kiln_cfg_batch_keys[i].def, &b, msg,
                                                      sizeof(msg)), 0);
}

static void test_object_and_input_limits_have_spec_ranges(void **state)
{
        static const struct {
                const char *section, *key, *good, *too_big, *too_small;
        } cases[] = {
                { "limits", "max_input_bytes", "64GiB", "65GiB", "1023" },
                { "limits", "max_object_bytes", "1TiB", "1025GiB", "1000B" },
                { "limits", "max_objects_per_tenant", "1000000", "1000001", "0" },
                { "limits", "max_tenant_bytes", "16TiB", "17T", "512" },
                { "memory", "max_bytes", "1TiB", "1025GiB", "63MiB" },
                { "memory", "max_output_buffer_bytes", "16GiB", "17GiB", "65535" },
        };
        struct kiln_config c;
        char msg[512];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct kiln_cfg_key *k = kiln_cfg_find(cases[i].section, cases[i].key);
                if (!k)
                        fail_msg("no key %s.%s", cases[i].section, cases[i].key);
                assert_int_equal(kiln_cfg_parse_value(k, cases[i].good, &c, msg, sizeof(msg)), 0);
                assert_int_equal(kiln_cfg_parse_value(k, cases[i].too_big, &c, msg, sizeof(msg)), -ERANGE);
                assert_contains(msg, "out of range");
                assert_int_equal(kiln_cfg_parse_value(k, cases[i].too_small, &c, msg, sizeof(msg)), -ERANGE);
                assert_int_equal(kiln_cfg_parse_value(k, "lots", &c, msg, sizeof(msg)), -EINVAL);
        }
}

static void test_object_limits_from_env_and_their_errors_name_the_key(void **state)
{
        char *env[] = { "KILN_LIMITS_MAX_OBJECTS_PER_TENANT=7", "KILN_LIMITS_MAX_TENANT_BYTES=1TiB", NULL };
        char *bad[] = { "KILN_LIMITS_MAX_OBJECT_BYTES=2TiB", NULL };
        struct kiln_config *c = load_ok(DATA "/full.conf", env);
        struct kiln_config_error err;

        assert_int_equal(c->limits.max_objects_per_tenant, 7);
        assert_int_equal(c->limits.max_tenant_bytes, UINT64_C(1) << 40);
        assert_int_equal(c->limits.max_object_bytes, UINT64_C(2) << 30); /* from the file */
        kiln_config_free(c);
        err = load_fail(DATA "/full.conf", bad);
        assert_string_equal(err.key, "KILN_LIMITS_MAX_OBJECT_BYTES");
        assert_contains(err.message, "out of range 1KiB..1TiB (limits.max_object_bytes)");
}

static void test_range_text_in_each_key_syntax(void **state)
{
        static const struct {
                const char *section, *key, *range;
        } cases[] = {
                { "jobs", "max_retries", "0..100" },
                { "server", "max_message_bytes", "1KiB..1GiB" },
                { "cache", "max_bytes", "1MiB..64TiB" },
                { "memory", "max_bytes", "64MiB..1TiB" },
                { "memory", "max_output_buffer_bytes", "64KiB..16GiB" },
                { "gpu", "memory_fraction", "0.05..1" },
                { "limits", "rate_per_s", "0..1000000" },
                { "store", "sync", "full, batch, off" },
                { "log", "level", "err, warning, notice, info, debug" },
                { "auth", "required", "" },
                { "server", "listen", "" },
                { "store", "path", "" },
        };
        char buf[256];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                kiln_cfg_range_text(kiln_cfg_find(cases[i].section, cases[i].key), buf, sizeof(buf));
                assert_string_equal(buf, cases[i].range);
        }
        kiln_cfg_range_text(kiln_cfg_find_batch("max_delay_us"), buf, sizeof(buf));
        assert_string_equal(buf, "0..1000000");
}

/* ---- [memory] max_bytes = 0: worked out from the machine ---- */

/* What "auto" must come to on this machine: half of min(RAM, cgroup limit), kept
 * within the key's range. */
static uint64_t expected_auto(void)
{
        const struct kiln_cfg_key *k = kiln_cfg_find("memory", "max_bytes");
        struct kiln_sysmem m;
        uint64_t v;

        assert_int_equal(kiln_sysmem_probe("", &m), 0);
        v = kiln_sysmem_half(&m, NULL, 0);
        return v < k->min ? k->min : v > k->max ? k->max : v;
}

static void test_memory_max_bytes_zero_is_half_of_the_machine_or_cgroup(void **state)
{
        char *zero[] = { "KILN_MEMORY_MAX_BYTES=0", NULL };
        char *set[] = { "KILN_MEMORY_MAX_BYTES=2GiB", NULL };
        struct kiln_config *c = load_ok(DATA "/full.conf", zero), *d = kiln_config_new_defaults();
        struct kiln_sysmem m;
        char *printed, line[2048];

        assert_int_equal(kiln_sysmem_probe("", &m), 0);
        assert_true(c->memory.max_bytes > 0);
        assert_int_equal(c->memory.max_bytes, expected_auto());
        assert_true(c->memory.max_bytes <= m.physical / 2 || c->memory.max_bytes == UINT64_C(64) << 20);
        assert_int_equal(c->memory.max_bytes % (1u << 20), 0);
        printed = print_to_string(c);
        printed_line(printed, "memory", "max_bytes", line, sizeof(line));
        assert_contains(line, "  # env KILN_MEMORY_MAX_BYTES; auto: half of the ");
        free(printed);
        kiln_config_free(c);

        /* The built-in default is the same figure, said to be the default. */
        assert_int_equal(d->memory.max_bytes, expected_auto());
        printed = print_to_string(d);
        printed_line(printed, "memory", "max_bytes", line, sizeof(line));
        assert_contains(line, "  # default; auto: half of the ");
        free(printed);
        kiln_config_free(d);

        /* A figure that is set is kept, with no word of auto. */
        c = load_ok(DATA "/full.conf", set);
        assert_int_equal(c->memory.max_bytes, UINT64_C(2) << 30);
        printed = print_to_string(c);
        printed_line(printed, "memory", "max_bytes", line, sizeof(line));
        assert_string_equal(line, "max_bytes = 2GiB  # env KILN_MEMORY_MAX_BYTES");
        free(printed);
        kiln_config_free(c);
}

static void test_memory_objects_cache_bytes_zero_is_half_of_max_bytes(void **state)
{
        char *zero[] = { "KILN_MEMORY_MAX_BYTES=3GiB", NULL };
        char *set[] = { "KILN_MEMORY_MAX_BYTES=3GiB", "KILN_MEMORY_OBJECTS_CACHE_BYTES=5GiB", NULL };
        char *small[] = { "KILN_MEMORY_OBJECTS_CACHE_BYTES=1KiB", NULL };
        struct kiln_config *c = load_ok(DATA "/full.conf", zero), *d = kiln_config_new_defaults();
        char line[2048];

        assert_int_equal(c->memory.objects_cache_bytes, UINT64_C(1536) << 20);
        memory_line(c, "objects_cache_bytes", line, sizeof(line));
        assert_string_equal(line, "objects_cache_bytes = 1536MiB  # default; auto: half of memory.max_bytes");
        kiln_config_free(c);
        assert_int_equal(d->memory.objects_cache_bytes, d->memory.max_bytes / 2);
        kiln_config_free(d);

        /* A figure that is set is kept, even above max_bytes: it is a bound of its own. */
        c = load_ok(DATA "/full.conf", set);
        assert_int_equal(c->memory.objects_cache_bytes, UINT64_C(5) << 30);
        memory_line(c, "objects_cache_bytes", line, sizeof(line));
        assert_string_equal(line, "objects_cache_bytes = 5GiB  # env KILN_MEMORY_OBJECTS_CACHE_BYTES");
        kiln_config_free(c);

        struct kiln_config_error err = load_fail(DATA "/full.conf", small);
        assert_string_equal(err.key, "KILN_MEMORY_OBJECTS_CACHE_BYTES");
        assert_contains(err.message, "out of range 1MiB..1TiB (or 0: half of memory.max_bytes)");
}

static void test_memory_max_bytes_below_its_range_is_refused_naming_auto(void **state)
{
        char *small[] = { "KILN_MEMORY_MAX_BYTES=1MiB", NULL };
        struct kiln_config_error err = load_fail(DATA "/full.conf", small);
        struct kiln_config c;
        char msg[512];

        assert_string_equal(err.key, "KILN_MEMORY_MAX_BYTES");
        assert_contains(err.message, "out of range 64MiB..1TiB (or 0: half of the machine's or the cgroup's memory)");
        /* Only max_bytes takes 0. */
        assert_int_equal(kiln_cfg_parse_value(kiln_cfg_find("memory", "max_bytes"), "0", &c, msg, sizeof(msg)), 0);
        assert_int_equal(c.memory.max_bytes, 0);
        assert_int_equal(kiln_cfg_parse_value(kiln_cfg_find("memory", "max_output_buffer_bytes"), "0", &c, msg,
                                              sizeof(msg)),
                         -ERANGE);
}

/* Writes `text` to root/rel, making the directories on the way. */
static void write_tree_file(const char *root, const char *rel, const char *text)
{
        char path[1024];

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        for (char *p = path + strlen(root) + 1; *p; p++) {
                if (*p == '/') {
                        *p = '\0';
                        mkdir(path, 0700);
                        *p = '/';
                }
        }
        write_file(path, text);
}

static void test_sysmem_takes_the_tightest_cgroup_v2_limit_up_the_tree(void **state)
{
        char root[512], why[1200];
        struct kiln_sysmem m;

        unit_tmpdir_make("test_sysmem", root, sizeof(root));
        write_tree_file(root, "proc/self/cgroup", "0::/system.slice/kiln.service\n");
        write_tree_file(root, "sys/fs/cgroup/system.slice/kiln.service/memory.max", "max\n");
        write_tree_file(root, "sys/fs/cgroup/system.slice/memory.max", "134217728\n");
        assert_int_equal(kiln_sysmem_probe(root, &m), 0);
        assert_true(m.physical > (UINT64_C(128) << 20));
        assert_int_equal(m.cgroup, UINT64_C(128) << 20);
        assert_contains(m.cgroup_file, "/sys/fs/cgroup/system.slice/memory.max");
        assert_int_equal(kiln_sysmem_half(&m, why, sizeof(why)), UINT64_C(64) << 20);
        assert_contains(why, "half of the cgroup's limit, 128 MiB (");
        /* A tighter limit on the service itself wins. */
        write_tree_file(root, "sys/fs/cgroup/system.slice/kiln.service/memory.max", "100000000\n");
        assert_int_equal(kiln_sysmem_probe(root, &m), 0);
        assert_int_equal(m.cgroup, 100000000);
        assert_int_equal(kiln_sysmem_half(&m, NULL, 0), UINT64_C(47) << 20); /* 47.68 MiB, whole MiB */
        unit_tmpdir_remove(root);
}

static void test_sysmem_reads_cgroup_v1_and_ignores_unlimited(void **state)
{
        char root[512], why[1200];
        struct kiln_sysmem m;

        unit_tmpdir_make("test_sysmem", root, sizeof(root));
        write_tree_file(root, "proc/self/cgroup",
                        "12:cpu,cpuacct:/docker/abc\n5:blkio,memory:/docker/abc\n1:name=systemd:/docker/abc\n");
        /* v1's "no limit" is a huge figure: not a limit. */
        write_tree_file(root, "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n");
        assert_int_equal(kiln_sysmem_probe(root, &m), 0);
        assert_int_equal(m.cgroup, 0);
        assert_string_equal(m.cgroup_file, "");
        assert_int_equal(kiln_sysmem_half(&m, why, sizeof(why)), m.physical / 2 / (1u << 20) * (1u << 20));
        assert_contains(why, "half of the machine's memory");
        write_tree_file(root, "sys/fs/cgroup/memory/docker/memory.limit_in_bytes", "1073741824\n");
        assert_int_equal(kiln_sysmem_probe(root, &m), 0);
        assert_int_equal(m.cgroup, UINT64_C(1) << 30);
        assert_int_equal(kiln_sysmem_half(&m, NULL, 0), UINT64_C(512) << 20);
        unit_tmpdir_remove(root);
}

static void test_sysmem_without_cgroups_is_the_machine(void **state)
{
        char root[512];
        struct kiln_sysmem m;

        unit_tmpdir_make("test_sysmem", root, sizeof(root)); /* no proc/, no sys/ */
        assert_int_equal(kiln_sysmem_probe(root, &m), 0);
        assert_true(m.physical > 0);
        assert_int_equal(m.cgroup, 0);
        assert_true(kiln_sysmem_half(&m, NULL, 0) <= m.physical / 2);
        unit_tmpdir_remove(root);
}

/* ---- a full file ---- */

static void test_full_file_sets_every_key(void **state)
{
        struct kiln_config *c = load_ok(DATA "/full.conf", NULL);
        struct kiln_batch_config b;

        assert_string_equal(c->server.listen, "[::1]:9443");
        assert_string_equal(c->server.tls_cert, "/etc/kiln/tls/cert.pem");
        assert_string_equal(c->server.tls_key, "/etc/kiln/tls/key.pem");
        assert_string_equal(c->server.web_root, "/srv/kiln/web#ui");
        assert_int_equal(c->server.max_message_bytes, 2u << 20);
        assert_int_equal(c->server.max_connections, 500);
        assert_int_equal(c->server.idle_timeout_s, 60);
        assert_int_equal(c->server.handshake_timeout_s, 5);
        assert_string_equal(c->auth.tokens_file, "/srv/kiln/tokens");
        assert_false(c->auth.required);
        assert_string_equal(c->store.path, "/srv/kiln/state with spaces");
        assert_int_equal(c->store.map_size_gb, 128);
        assert_int_equal(c->store.sync, KILN_SYNC_BATCH);
        assert_false(c->cache.enabled);
        assert_int_equal(c->cache.max_bytes, 512u << 20);
        assert_int_equal(c->cache.ttl_s, 3600);
        assert_int_equal(c->jobs.max_queued, 5000);
        assert_int_equal(c->jobs.default_timeout_ms, 30000);
        assert_int_equal(c->jobs.max_retries, 0);
        assert_int_equal(c->jobs.retain_s, 3600);
        assert_int_equal(c->gpu.backend, KILN_GPU_CUDA);
        assert_string_equal(c->gpu.devices, "0,2,3");
        assert_true(c->gpu.memory_fraction == 0.5);
        assert_int_equal(c->cpu.threads, 8);
        assert_true(c->limits.rate_per_s == 12.5);
        assert_int_equal(c->limits.burst, 20);
        assert_int_equal(c->limits.max_inflight_per_conn, 64);
        assert_int_equal(c->limits.max_queued_per_tenant, 99);
        assert_int_equal(c->limits.max_result_bytes, UINT64_C(3) << 30);
        assert_int_equal(c->limits.max_input_bytes, 256u << 20);
        assert_int_equal(c->limits.max_object_bytes, UINT64_C(2) << 30);
        assert_int_equal(c->limits.max_objects_per_tenant, 12);
        assert_int_equal(c->limits.max_tenant_bytes, UINT64_C(100) * 1000 * 1000 * 1000);
        assert_int_equal(c->memory.max_bytes, UINT64_C(3) << 30);
        assert_int_equal(c->memory.max_output_buffer_bytes, 1u << 20);
        assert_int_equal(c->log.level, KILN_LOG_DEBUG);
        assert_int_equal(c->log.target, KILN_LOG_STDERR);
        b = kiln_config_batch(c, "lens.nfw");
        assert_int_equal(b.max_batch, 256);
        assert_int_equal(b.max_delay_us, 0);
        kiln_config_free(c);
}

static void test_print_names_file_and_line_as_source(void **state)
{
        struct kiln_config *c = load_ok(DATA "/full.conf", NULL);
        char *printed = print_to_string(c);
        char line[512];

        printed_line(printed, "store", "sync", line, sizeof(line));
        assert_string_equal(line, "sync = batch  # " DATA "/full.conf:21");
        printed_line(printed, "server", "listen", line, sizeof(line));
        assert_string_equal(line, "listen = [::1]:9443  # " DATA "/full.conf:5");
        printed_line(printed, "batch.lens.nfw", "max_delay_us", line, sizeof(line));
        assert_string_equal(line, "max_delay_us = 0  # " DATA "/full.conf:63");
        free(printed);
        kiln_config_free(c);
}

static void test_same_key_twice_in_a_file_later_wins(void **state)
{
        struct kiln_config *c = load_ok(DATA "/duplicate.conf", NULL);

        assert_int_equal(c->store.sync, KILN_SYNC_BATCH);
        assert_int_equal(c->store.map_size_gb, 2);
        assert_int_equal(c->server.max_connections, 7);
        kiln_config_free(c);
}

static void test_unset_batch_kind_gets_schema_defaults(void **state)
{
        struct kiln_config *c = load_ok(DATA "/full.conf", NULL);
        struct kiln_batch_config b = kiln_config_batch(c, "risk.score");

        assert_string_equal(b.kind, "risk.score");
        assert_int_equal(b.max_batch, 64);
        assert_int_equal(b.max_delay_us, 2000);
        kiln_config_free(c);
}

static void test_crlf_and_bom_keep_line_numbers(void **state)
{
        char dir[512], path[600];
        struct kiln_config_error err;

        unit_tmpdir_make("test_config", dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/crlf.conf", dir);
        write_file(path, "\xEF\xBB\xBF[server]\r\nmax_connections = 5\r\n\r\nbogus = 1\r\n");
        err = load_fail(path, NULL);
        assert_int_equal(err.line, 4);
        assert_string_equal(err.key, "server.bogus");
        write_file(path, "\xEF\xBB\xBF[server]\r\nmax_connections = 5\r\n");
        struct kiln_config *c = load_ok(path, NULL);
        assert_int_equal(c->server.max_connections, 5);
        kiln_config_free(c);
        unit_tmpdir_remove(dir);
}

/* ---- drop-ins and environment ---- */

static void test_dropins_apply_in_lexical_order_later_wins(void **state)
{
        struct kiln_config *c = load_ok(DATA "/dropin.conf", NULL);
        char *printed = print_to_string(c);
        char line[512];

        assert_int_equal(c->server.max_connections, 300);  /* 20-second.conf */
        assert_int_equal(c->server.idle_timeout_s, 200);   /* 10-first.conf */
        assert_int_equal(c->jobs.max_retries, 5);          /* dropin.conf */
        printed_line(printed, "server", "max_connections", line, sizeof(line));
        assert_string_equal(line, "max_connections = 300  # " DATA "/dropin.conf.d/20-second.conf:3");
        free(printed);
        kiln_config_free(c);
}

static void test_dropins_are_read_when_main_file_is_optional_and_missing(void **state)
{
        char dir[512], path[600], dropdir[700], drop[800];
        struct kiln_config_error err;
        struct kiln_config *c = NULL;

        unit_tmpdir_make("test_config", dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/kiln.conf", dir);
        snprintf(dropdir, sizeof(dropdir), "%s.d", path);
        assert_int_equal(mkdir(dropdir, 0700), 0);
        snprintf(drop, sizeof(drop), "%s/50-local.conf", dropdir);
        write_file(drop, "[cpu]\nthreads = 3\n");
        assert_int_equal(kiln_config_load(path, true, NULL, kinds, &c, &err), 0);
        assert_int_equal(c->cpu.threads, 3);
        kiln_config_free(c);
        unit_tmpdir_remove(dir);
}

static void test_env_overrides_files_and_records_env_source(void **state)
{
        char *env[] = { "HOME=/root", "KILN_STORE_SYNC=off", "KILN_SERVER_MAX_CONNECTIONS=42", NULL };
        struct kiln_config *c = load_ok(DATA "/dropin.conf", env);
        char *printed = print_to_string(c);
        char line[512];

        assert_int_equal(c->store.sync, KILN_SYNC_OFF);
        assert_int_equal(c->server.max_connections, 42);
        printed_line(printed, "store", "sync", line, sizeof(line));
        assert_string_equal(line, "sync = off  # env KILN_STORE_SYNC");
        printed_line(printed, "server", "max_connections", line, sizeof(line));
        assert_string_equal(line, "max_connections = 42  # env KILN_SERVER_MAX_CONNECTIONS");
        free(printed);
        kiln_config_free(c);
}

static void test_env_sets_batch_kind_with_dots_as_underscores(void **state)
{
        char *env[] = { "KILN_BATCH_LENS_NFW_MAX_BATCH=128", "KILN_BATCH_RISK_SCORE_MAX_DELAY_US=7",
                        NULL };
        struct kiln_config *c = load_ok(DATA "/full.conf", env);

        assert_int_equal(kiln_config_batch(c, "lens.nfw").max_batch, 128);
        assert_int_equal(kiln_config_batch(c, "lens.nfw").max_delay_us, 0); /* from the file */
        assert_int_equal(kiln_config_batch(c, "risk.score").max_delay_us, 7);
        assert_int_equal(kiln_config_batch(c, "risk.score").max_batch, 64);
        kiln_config_free(c);
}

static void test_env_unknown_kiln_variable_is_error_naming_it(void **state)
{
        char *env[] = { "KILN_SERVER_LISTN=0.0.0.0:1", NULL };
        struct kiln_config_error err = load_fail(DATA "/full.conf", env);
        char line[5000];

        assert_string_equal(err.key, "KILN_SERVER_LISTN");
        assert_string_equal(err.file, "environment");
        assert_int_equal(err.line, 0);
        assert_contains(kiln_config_error_format(&err, line, sizeof(line)), "KILN_SERVER_LISTN");
}

static void test_env_non_config_kiln_variables_are_ignored(void **state)
{
        char *env[] = { "KILN_CUDA_FAULT=oom", "KILN_PLUGIN_DIR=/tmp", "KILN_TEST_TMPDIR=/tmp",
                        "KILN_CUDA_ANYTHING=1", "OTHER_SERVER_LISTEN=x", "KILN_URL=ws://h:1/ws",
                        "KILN_TOKEN=secret", "KILN_POLL_LOOP=1", "KILN_SERVERLESS=1", NULL };
        struct kiln_config *c = load_ok(DATA "/full.conf", env);

        assert_string_equal(c->server.listen, "[::1]:9443");
        kiln_config_free(c);
}

static void test_env_unknown_key_of_a_real_section_is_an_error(void **state)
{
        static const char *const names[] = { "KILN_LIMITS_MAX_OBJECTS=3", "KILN_LOG_LEVELS=info",
                                             "KILN_BATCH_NO_SUCH_KIND_MAX_BATCH=2", "KILN_CPU_=1" };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char *env[] = { (char *)names[i], NULL };
                struct kiln_config_error err = load_fail(NULL, env);
                assert_string_equal(err.file, "environment");
                assert_int_equal(strncmp(names[i], err.key, strlen(err.key)), 0);
                assert_contains(err.message, "unknown variable");
        }
}

static void test_env_bad_value_names_variable_and_key(void **state)
{
        char *env[] = { "KILN_GPU_MEMORY_FRACTION=2", NULL };
        struct kiln_config_error err = load_fail(NULL, env);

        assert_string_equal(err.key, "KILN_GPU_MEMORY_FRACTION");
        assert_contains(err.message, "out of range");
        assert_contains(err.message, "gpu.memory_fraction");
}

/* ---- bad input: each class names file, line and key ---- */

static void test_unknown_key_names_file_line_and_key(void **state)
{
        struct kiln_config_error err = load_fail(DATA "/bad_unknown_key.conf", NULL);
        char line[5000];

        assert_string_equal(err.file, DATA "/bad_unknown_key.conf");
        assert_int_equal(err.line, 5);
        assert_string_equal(err.key, "server.max_conections");
        assert_contains(err.message, "unknown key");
        assert_string_equal(kiln_config_error_format(&err, line, sizeof(line)),
                            DATA "/bad_unknown_key.conf:5: server.max_conections: "
                            "unknown key 'max_conections' in [server]");
}

static void test_unknown_section_names_file_line_and_section(void **state)
{
        struct kiln_config_error err = load_fail(DATA "/bad_unknown_section.conf", NULL);

        assert_string_equal(err.file, DATA "/bad_unknown_section.conf");
        assert_int_equal(err.line, 5);
        assert_string_equal(err.key, "servr");
        assert_contains(err.message, "unknown section");
}

static void test_bad_type_names_file_line_and_key(void **state)
{
        struct kiln_config_error err = load_fail(DATA "/bad_type.conf", NULL);

        assert_int_equal(err.line, 3);
        assert_string_equal(err.key, "jobs.max_retries");
        assert_contains(err.message, "'three' is not an unsigned integer");
}

static void test_out_of_range_names_file_line_and_key(void **state)
{
        struct kiln_config_error err = load_fail(DATA "/bad_range.conf", NULL);

        assert_string_equal(err.file, DATA "/bad_range.conf");
        assert_int_equal(err.line, 3);
        assert_string_equal(err.key, "server.max_message_bytes");
        assert_contains(err.message, "out of range 1KiB..1GiB");
}

static void test_malformed_line_names_file_and_line(void **state)
{
        struct kiln_config_error err = load_fail(DATA "/bad_malformed.conf", NULL);

        assert_string_equal(err.file, DATA "/bad_malformed.conf");
        assert_int_equal(err.line, 3);
        assert_string_equal(err.key, "");
        assert_contains(err.message, "not key = value");
}

static void test_bad_enum_lists_choices(void **state)
{
        struct kiln_config_error err = load_fail(DATA "/bad_enum.conf", NULL);

        assert_int_equal(err.line, 4);
        assert_string_equal(err.key, "store.sync");
        assert_contains(err.message, "'sometimes' is not one of full, batch, off");
}

static void test_unknown_batch_kind_names_section(void **state)
{
        struct kiln_config_error err = load_fail(DATA "/bad_batch_kind.conf", NULL);

        assert_string_equal(err.file, DATA "/bad_batch_kind.conf");
        assert_int_equal(err.line, 4);
        assert_string_equal(err.key, "batch.no.such.kind");
        assert_contains(err.message, "unknown job kind 'no.such.kind'");
}

static void test_error_in_dropin_names_the_dropin(void **state)
{
        char dir[512], path[600], dropdir[700], drop[800];
        struct kiln_config_error err;

        unit_tmpdir_make("test_config", dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/kiln.conf", dir);
        write_file(path, "[server]\nmax_connections = 5\n");
        snprintf(dropdir, sizeof(dropdir), "%s.d", path);
        assert_int_equal(mkdir(dropdir, 0700), 0);
        snprintf(drop, sizeof(drop), "%s/10-x.conf", dropdir);
        write_file(drop, "\n[log]\nlevel = loud\n");
        err = load_fail(path, NULL);
        assert_string_equal(err.file, drop);
        assert_int_equal(err.line, 3);
        assert_string_equal(err.key, "log.level");
        unit_tmpdir_remove(dir);
}

static void test_malformed_variants_are_refused(void **state)
{
        static const char *const bad[] = {
                "[server\n", "[server] junk\n", "[]\n", " = 5\n", "max_connections = 5\n",
                "[server]\nlisten = \"127.0.0.1:80\n", "[server]\nlisten = \"127.0.0.1:80\" x\n",
                "[server]\nmax_connections 5\n",
        };
        char dir[512], path[600];

        unit_tmpdir_make("test_config", dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/bad.conf", dir);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct kiln_config_error err;
                write_file(path, bad[i]);
                err = load_fail(path, NULL);
                assert_true(err.line >= 1);
        }
        unit_tmpdir_remove(dir);
}

/* ---- value types ---- */

static void test_size_suffixes(void **state)
{
        const struct kiln_cfg_key *k = kiln_cfg_find("server", "max_message_bytes");
        static const struct {
                const char *text;
                uint64_t bytes;
        } good[] = {
                { "65536", 65536 },         { "64K", 64 << 10 },      { "64KiB", 64 << 10 },
                { "64KB", 64000 },          { "64MiB", 64u << 20 },   { "64 MiB", 64u << 20 },
                { "3M", 3u << 20 },         { "5MB", 5000000 },       { "1G", 1u << 30 },
                { "1GiB", 1u << 30 },       { "1024B", 1024 },
        };
        static const char *const not_sizes[] = { "", "MiB", "64XB", "64mib", "-1", "1.5GiB", "0x10" };
        struct kiln_config c;
        char msg[512];

        assert_non_null(k);
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                c.server.max_message_bytes = 0;
                if (kiln_cfg_parse_value(k, good[i].text, &c, msg, sizeof(msg)) < 0)
                        fail_msg("%s: %s", good[i].text, msg);
                assert_int_equal(c.server.max_message_bytes, good[i].bytes);
        }
        for (size_t i = 0; i < sizeof(not_sizes) / sizeof(not_sizes[0]); i++)
                assert_int_equal(kiln_cfg_parse_value(k, not_sizes[i], &c, msg, sizeof(msg)), -EINVAL);
        assert_int_equal(kiln_cfg_parse_value(k, "1023", &c, msg, sizeof(msg)), -ERANGE);
        assert_int_equal(kiln_cfg_parse_value(k, "2G", &c, msg, sizeof(msg)), -ERANGE);
        assert_int_equal(kiln_cfg_parse_value(k, "99999999999999999999", &c, msg, sizeof(msg)), -ERANGE);
        assert_int_equal(kiln_cfg_parse_value(k, "20000000000T", &c, msg, sizeof(msg)), -ERANGE);
}

static void test_cache_size_in_gib_from_env(void **state)
{
        char *env[] = { "KILN_CACHE_MAX_BYTES=16GiB", NULL };
        struct kiln_config *c = load_ok(DATA "/full.conf", env);

        assert_int_equal(c->cache.max_bytes, UINT64_C(16) << 30);
        kiln_config_free(c);
}

static void test_integer_type_and_range(void **state)
{
        const struct kiln_cfg_key *k = kiln_cfg_find("jobs", "max_retries");
        struct kiln_config c;
        char msg[512];

        c.jobs.max_retries = 77;
        assert_int_equal(kiln_cfg_parse_value(k, "100", &c, msg, sizeof(msg)), 0);
        assert_int_equal(c.jobs.max_retries, 100);
        assert_int_equal(kiln_cfg_parse_value(k, "101", &c, msg, sizeof(msg)), -ERANGE);
        assert_int_equal(c.jobs.max_retries, 100); /* untouched on error */
        assert_int_equal(kiln_cfg_parse_value(k, "-1", &c, msg, sizeof(msg)), -EINVAL);
        assert_int_equal(kiln_cfg_parse_value(k, "1K", &c, msg, sizeof(msg)), -EINVAL);
        assert_int_equal(kiln_cfg_parse_value(k, " 1", &c, msg, sizeof(msg)), -EINVAL);
        assert_int_equal(kiln_cfg_parse_value(k, "4294967296", &c, msg, sizeof(msg)), -ERANGE);
}

static void test_booleans_accept_all_spellings(void **state)
{
        const struct kiln_cfg_key *k = kiln_cfg_find("cache", "enabled");
        static const char *const yes[] = { "true", "yes", "on", "1", "TRUE", "Yes" };
        static const char *const no[] = { "false", "no", "off", "0", "False", "OFF" };
        struct kiln_config c;
        char msg[512];

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                c.cache.enabled = false;
                assert_int_equal(kiln_cfg_parse_value(k, yes[i], &c, msg, sizeof(msg)), 0);
                assert_true(c.cache.enabled);
                assert_int_equal(kiln_cfg_parse_value(k, no[i], &c, msg, sizeof(msg)), 0);
                assert_false(c.cache.enabled);
        }
        assert_int_equal(kiln_cfg_parse_value(k, "maybe", &c, msg, sizeof(msg)), -EINVAL);
        assert_int_equal(kiln_cfg_parse_value(k, "", &c, msg, sizeof(msg)), -EINVAL);
}

static void test_double_type_and_range(void **state)
{
        const struct kiln_cfg_key *k = kiln_cfg_find("gpu", "memory_fraction");
        struct kiln_config c;
        char msg[512];

        assert_int_equal(kiln_cfg_parse_value(k, "0.05", &c, msg, sizeof(msg)), 0);
        assert_true(c.gpu.memory_fraction == 0.05);
        assert_int_equal(kiln_cfg_parse_value(k, "1", &c, msg, sizeof(msg)), 0);
        assert_int_equal(kiln_cfg_parse_value(k, "0.01", &c, msg, sizeof(msg)), -ERANGE);
        assert_int_equal(kiln_cfg_parse_value(k, "1.5", &c, msg, sizeof(msg)), -ERANGE);
        assert_int_equal(kiln_cfg_parse_value(k, "nan", &c, msg, sizeof(msg)), -EINVAL);
        assert_int_equal(kiln_cfg_parse_value(k, "0.5x", &c, msg, sizeof(msg)), -EINVAL);
        assert_int_equal(kiln_cfg_parse_value(k, "", &c, msg, sizeof(msg)), -EINVAL);
}

static void test_gpu_devices_all_or_distinct_indices(void **state)
{
        const struct kiln_cfg_key *k = kiln_cfg_find("gpu", "devices");
        static const char *const bad[] = { "", "none", "0,,1", "0,", ",0", "0,0", "256", "-1",
                                           "1 2", "all,0" };
        struct kiln_config c;
        char msg[512];

        assert_int_equal(kiln_cfg_parse_value(k, "all", &c, msg, sizeof(msg)), 0);
        assert_string_equal(c.gpu.devices, "all");
        assert_int_equal(kiln_cfg_parse_value(k, "3, 0 ,255", &c, msg, sizeof(msg)), 0);
        assert_string_equal(c.gpu.devices, "3,0,255");
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (kiln_cfg_parse_value(k, bad[i], &c, msg, sizeof(msg)) != -EINVAL)
                        fail_msg("devices '%s' was accepted", bad[i]);
}

static void test_strings_length_emptiness_and_quotes(void **state)
{
        const struct kiln_cfg_key *path = kiln_cfg_find("store", "path");
        const struct kiln_cfg_key *cert = kiln_cfg_find("server", "tls_cert");
        struct kiln_config c;
        char msg[512], longer[5000];

        assert_int_equal(kiln_cfg_parse_value(path, "", &c, msg, sizeof(msg)), -EINVAL);
        assert_int_equal(kiln_cfg_parse_value(cert, "", &c, msg, sizeof(msg)), 0);
        assert_int_equal(kiln_cfg_parse_value(path, "/a\"b", &c, msg, sizeof(msg)), -EINVAL);
        memset(longer, 'a', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = '\0';
        assert_int_equal(kiln_cfg_parse_value(path, longer, &c, msg, sizeof(msg)), -ERANGE);
        longer[sizeof(c.store.path) - 1] = '\0';
        assert_int_equal(kiln_cfg_parse_value(path, longer, &c, msg, sizeof(msg)), 0);
        assert_int_equal(strlen(c.store.path), sizeof(c.store.path) - 1);
}

/* ---- listen address and cross-key rules ---- */

static void test_listen_split_ipv4(void **state)
{
        char host[64];
        uint16_t port = 0;

        assert_int_equal(kiln_config_listen_split("0.0.0.0:8080", host, sizeof(host), &port), 0);
        assert_string_equal(host, "0.0.0.0");
        assert_int_equal(port, 8080);
        assert_int_equal(kiln_config_listen_split("kiln-1.example.org:8080", host, sizeof(host), &port), 0);
        assert_int_equal(kiln_config_listen_split("localhost:1", host, sizeof(host), &port), 0);
        assert_string_equal(host, "localhost");
        assert_int_equal(port, 1);
}

static void test_listen_split_ipv6_in_brackets(void **state)
{
        char host[64];
        uint16_t port = 0;

        assert_int_equal(kiln_config_listen_split("[::1]:8080", host, sizeof(host), &port), 0);
        assert_string_equal(host, "::1");
        assert_int_equal(port, 8080);
        assert_int_equal(kiln_config_listen_split("[fe80::1:2]:65535", host, sizeof(host), &port), 0);
        assert_string_equal(host, "fe80::1:2");
        assert_int_equal(port, 65535);
}

static void test_listen_split_refuses_bad_addresses_and_ports(void **state)
{
        static const char *const bad[] = {
                "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http",
                "127.0.0.1:80x", ":8080", "::1:8080", "[::1]8080", "[::1]:", "[]:80", "[zz]:80",
                "999.0.0.1:80", "ho st:80", "127.0.0.1:-80", "127.0.0.1:008080",
                /* Host names as RFC 1123 has them: no empty label, no hyphen at a
                 * label's ends, labels of at most 63. */
                "-bad-:80", "bad-:80", "a..b:80", ".a:80", "a.:80", "a.-b:80",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:80",
        };
        char host[64] = "unchanged";
        uint16_t port = 7;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (kiln_config_listen_split(bad[i], host, sizeof(host), &port) != -EINVAL)
                        fail_msg("'%s' was accepted", bad[i]);
        assert_string_equal(host, "unchanged");
        assert_int_equal(port, 7);
        assert_int_equal(kiln_config_listen_split("example.org:80", host, 4, &port), -EINVAL);
}

static void test_listen_loopback_detection(void **state)
{
        assert_true(kiln_config_listen_is_loopback("127.0.0.1:8080"));
        assert_true(kiln_config_listen_is_loopback("127.9.8.7:8080"));
        assert_true(kiln_config_listen_is_loopback("[::1]:8080"));
        assert_true(kiln_config_listen_is_loopback("localhost:8080"));
        assert_false(kiln_config_listen_is_loopback("0.0.0.0:8080"));
        assert_false(kiln_config_listen_is_loopback("[::]:8080"));
        assert_false(kiln_config_listen_is_loopback("128.0.0.1:8080"));
        assert_false(kiln_config_listen_is_loopback("example.org:8080"));
        assert_false(kiln_config_listen_is_loopback("garbage"));
}

static void test_auth_not_required_refused_on_public_listen(void **state)
{
        struct kiln_config_error err = load_fail(DATA "/noauth_public.conf", NULL);

        assert_string_equal(err.key, "auth.required");
        assert_string_equal(err.file, DATA "/noauth_public.conf");
        assert_int_equal(err.line, 5);
        assert_contains(err.message, "loopback");
}

static void test_auth_not_required_accepted_on_loopback(void **state)
{
        struct kiln_config *c = load_ok(DATA "/noauth_loopback.conf", NULL);

        assert_false(c->auth.required);
        kiln_config_free(c);
}

static void test_auth_not_required_refused_when_env_opens_listen(void **state)
{
        char *env[] = { "KILN_SERVER_LISTEN=0.0.0.0:8080", NULL };
        struct kiln_config_error err = load_fail(DATA "/noauth_loopback.conf", env);

        assert_string_equal(err.file, DATA "/noauth_loopback.conf");
        assert_int_equal(err.line, 5);
        assert_contains(err.message, "loopback");
        assert_string_equal(err.key, "auth.required");
}

static void test_validate_tls_cert_and_key_together(void **state)
{
        struct kiln_config *c = kiln_config_new_defaults();
        struct kiln_config_error err;

        /* Named by the key given alone, where it was given. */
        strcpy(c->server.tls_cert, "/etc/kiln/cert.pem");
        assert_int_equal(kiln_config_validate(c, &err), -EINVAL);
        assert_string_equal(err.key, "server.tls_cert");
        c->server.tls_cert[0] = '\0';
        strcpy(c->server.tls_key, "/etc/kiln/key.pem");
        assert_int_equal(kiln_config_validate(c, &err), -EINVAL);
        assert_string_equal(err.key, "server.tls_key");
        strcpy(c->server.tls_cert, "/etc/kiln/cert.pem");
        assert_int_equal(kiln_config_validate(c, &err), 0);
        kiln_config_free(c);
}

static void test_validate_refuses_unparsable_listen(void **state)
{
        struct kiln_config *c = kiln_config_new_defaults();
        struct kiln_config_error err;

        strcpy(c->server.listen, "127.0.0.1:99999");
        assert_int_equal(kiln_config_validate(c, &err), -EINVAL);
        assert_string_equal(err.key, "server.listen");
        kiln_config_free(c);
}

static void test_bad_listen_in_file_names_line(void **state)
{
        char dir[512], path[600];
        struct kiln_config_error err;

        unit_tmpdir_make("test_config", dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/listen.conf", dir);
        write_file(path, "[server]\n\nlisten = 0.0.0.0:0\n");
        err = load_fail(path, NULL);
        assert_int_equal(err.line, 3);
        assert_string_equal(err.key, "server.listen");
        unit_tmpdir_remove(dir);
}

/* ---- print round trip and formatting ---- */

static void test_print_round_trips_to_same_values(void **state)
{
        char *env[] = { "KILN_LIMITS_RATE_PER_S=0.1", "KILN_BATCH_VEC_SEARCH_MAX_BATCH=9",
                        "KILN_SERVER_TLS_CERT=/x;y/cert.pem", NULL };
        struct kiln_config *a = load_ok(DATA "/full.conf", env), *b;
        char dir[512], path[600], line[512];
        char *printed = print_to_string(a), *reprinted;

        unit_tmpdir_make("test_config", dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/printed.conf", dir);
        write_file(path, printed);
        b = load_ok(path, NULL);
        assert_same_values(a, b);
        assert_true(b->limits.rate_per_s == 0.1);
        assert_string_equal(b->server.tls_cert, "/x;y/cert.pem");
        assert_string_equal(b->server.web_root, "/srv/kiln/web#ui");
        reprinted = print_to_string(b);
        printed_line(reprinted, "server", "web_root", line, sizeof(line));
        assert_contains(line, "web_root = \"/srv/kiln/web#ui\"  # ");
        assert_contains(line, "/printed.conf:");
        free(reprinted);
        free(printed);
        kiln_config_free(a);
        kiln_config_free(b);
        unit_tmpdir_remove(dir);
}

static void test_defaults_print_round_trips(void **state)
{
        struct kiln_config *a = kiln_config_new_defaults(), *b;
        char dir[512], path[600];
        char *printed = print_to_string(a);

        unit_tmpdir_make("test_config", dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/defaults.conf", dir);
        write_file(path, printed);
        b = load_ok(path, NULL);
        assert_same_values(a, b);
        free(printed);
        kiln_config_free(a);
        kiln_config_free(b);
        unit_tmpdir_remove(dir);
}

static void test_error_format_omits_empty_parts(void **state)
{
        struct kiln_config_error err = { .file = "f.conf", .line = 3, .key = "a.b", .message = "m" };
        char buf[5000];

        assert_string_equal(kiln_config_error_format(&err, buf, sizeof(buf)), "f.conf:3: a.b: m");
        err.line = 0;
        assert_string_equal(kiln_config_error_format(&err, buf, sizeof(buf)), "f.conf: a.b: m");
        err.key[0] = '\0';
        assert_string_equal(kiln_config_error_format(&err, buf, sizeof(buf)), "f.conf: m");
        err.file[0] = '\0';
        strcpy(err.key, "KILN_X");
        assert_string_equal(kiln_config_error_format(&err, buf, sizeof(buf)), "KILN_X: m");
}

/* ---- the packaged kiln.conf ---- */

static void test_shipped_kiln_conf_loads(void **state)
{
        struct kiln_config *c = load_ok(SHIPPED_CONF, NULL);
        struct kiln_config *d = kiln_config_new_defaults();

        assert_string_equal(c->server.listen, "0.0.0.0:8080");
        assert_true(c->auth.required);
        /* Everything else stays at the built-in default. */
        strcpy(d->server.listen, "0.0.0.0:8080");
        assert_same_values(c, d);
        kiln_config_free(c);
        kiln_config_free(d);
}

/* Every key appears in kiln.conf (as "key = " or "#key = ") in its section, and a
 * commented-out value equals the schema default. */
static void test_shipped_kiln_conf_documents_every_key_with_its_default(void **state)
{
        FILE *f = fopen(SHIPPED_CONF, "r");
        bool seen[64] = { false }, seen_batch[8] = { false };
        struct kiln_config *defaults = kiln_config_new_defaults();
        struct kiln_batch_config bdef = kiln_config_batch(defaults, "lens.nfw");
        char section[128] = "", line[1024], msg[512];

        assert_non_null(f);
        assert_true(kiln_cfg_n_keys <= 64 && kiln_cfg_n_batch_keys <= 8);
        while (fgets(line, sizeof(line), f)) {
                char *s = line, *eq, *key, *value;
                line[strcspn(line, "\n")] = '\0';
                if (s[0] == '#' && (s[1] == '[' || (s[1] >= 'a' && s[1] <= 'z')))
                        s++;
                if (s[0] == '[') {
                        snprintf(section, sizeof(section), "%.*s", (int)strcspn(s + 1, "]"), s + 1);
                        continue;
                }
                if (s == line && s[0] == '#')
                        continue;
                eq = strstr(s, " =");
                if (!eq)
                        continue;
                *eq = '\0';
                key = s;
                value = eq + 2;
                while (*value == ' ')
                        value++;
                if (strncmp(section, "batch.", 6) == 0) {
                        const struct kiln_cfg_key *k = kiln_cfg_find_batch(key);
                        struct kiln_batch_config b;
                        assert_non_null(k);
                        seen_batch[k - kiln_cfg_batch_keys] = true;
                        assert_int_equal(kiln_cfg_parse_value(k, value, &b, msg, sizeof(msg)), 0);
                        assert_memory_equal((char *)&b + k->offset, (char *)&bdef + k->offset, k->size);
                        continue;
                }
                const struct kiln_cfg_key *k = kiln_cfg_find(section, key);
                if (!k)
                        fail_msg("kiln.conf: unknown %s.%s", section, key);
                seen[k - kiln_cfg_keys] = true;
                if (s != line) { /* commented out: must show the schema's default */
                        struct kiln_config *shown = kiln_config_new_defaults(), *def = kiln_config_new_defaults();
                        assert_int_equal(kiln_cfg_parse_value(k, value, shown, msg, sizeof(msg)), 0);
                        assert_int_equal(kiln_cfg_parse_value(k, k->def, def, msg, sizeof(msg)), 0);
                        assert_same_values(shown, def);
                        kiln_config_free(shown);
                        kiln_config_free(def);
                }
        }
        fclose(f);
        for (size_t i = 0; i < kiln_cfg_n_keys; i++)
                if (!seen[i])
                        fail_msg("kiln.conf lacks %s.%s", kiln_cfg_keys[i].section, kiln_cfg_keys[i].key);
        for (size_t i = 0; i < kiln_cfg_n_batch_keys; i++)
                if (!seen_batch[i])
                        fail_msg("kiln.conf lacks batch.KIND.%s", kiln_cfg_batch_keys[i].key);
        kiln_config_free(defaults);
}

/* The comments above each number or size key in kiln.conf quote its range exactly as
 * the schema has it ("(1..1000000)"), so the file cannot drift from the table. */
static void test_shipped_kiln_conf_states_each_range(void **state)
{
        FILE *f = fopen(SHIPPED_CONF, "r");
        char section[128] = "", line[1024], comments[4096] = "", range[160], want[200];
        size_t checked = 0;

        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
                char *s = line;
                size_t n;
                line[strcspn(line, "\n")] = '\0';
                if (s[0] == '#' && (s[1] == '[' || (s[1] >= 'a' && s[1] <= 'z')))
                        s++;
                if (s[0] == '[') {
                        snprintf(section, sizeof(section), "%.*s", (int)strcspn(s + 1, "]"), s + 1);
                        comments[0] = '\0';
                        continue;
                }
                if (s == line && s[0] == '#') {
                        n = strlen(comments);
                        snprintf(comments + n, sizeof(comments) - n, "%s ", line + 1);
                        continue;
                }
                if (!strstr(s, " =")) {
                        comments[0] = '\0';
                        continue;
                }
                *strstr(s, " =") = '\0';
                const struct kiln_cfg_key *k = strncmp(section, "batch.", 6) == 0 ? kiln_cfg_find_batch(s)
                                                                                   : kiln_cfg_find(section, s);
                assert_non_null(k);
                if (k->type == KILN_CFG_U32 || k->type == KILN_CFG_SIZE || k->type == KILN_CFG_DOUBLE) {
                        kiln_cfg_range_text(k, range, sizeof(range));
                        snprintf(want, sizeof(want), "%s)", range);
                        /* A range may be wrapped onto the next comment line after "(". */
                        if (!strstr(comments, want))
                                fail_msg("kiln.conf: the comment of %s.%s does not give its range %s: %s",
                                         section, s, range, comments);
                        checked++;
                }
                comments[0] = '\0';
        }
        fclose(f);
        assert_true(checked >= 20);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults_are_spec_values),
                cmocka_unit_test(test_load_without_file_gives_defaults_from_default_source),
                cmocka_unit_test(test_missing_required_file_is_enoent_naming_file),
                cmocka_unit_test(test_schema_has_every_section_key_and_valid_defaults),
                cmocka_unit_test(test_object_and_input_limits_have_spec_ranges),
                cmocka_unit_test(test_object_limits_from_env_and_their_errors_name_the_key),
                cmocka_unit_test(test_range_text_in_each_key_syntax),
                cmocka_unit_test(test_memory_max_bytes_zero_is_half_of_the_machine_or_cgroup),
                cmocka_unit_test(test_memory_max_bytes_below_its_range_is_refused_naming_auto),
                cmocka_unit_test(test_memory_objects_cache_bytes_zero_is_half_of_max_bytes),
                cmocka_unit_test(test_sysmem_takes_the_tightest_cgroup_v2_limit_up_the_tree),
                cmocka_unit_test(test_sysmem_reads_cgroup_v1_and_ignores_unlimited),
                cmocka_unit_test(test_sysmem_without_cgroups_is_the_machine),
                cmocka_unit_test(test_full_file_sets_every_key),
                cmocka_unit_test(test_print_names_file_and_line_as_source),
                cmocka_unit_test(test_same_key_twice_in_a_file_later_wins),
                cmocka_unit_test(test_unset_batch_kind_gets_schema_defaults),
                cmocka_unit_test(test_crlf_and_bom_keep_line_numbers),
                cmocka_unit_test(test_dropins_apply_in_lexical_order_later_wins),
                cmocka_unit_test(test_dropins_are_read_when_main_file_is_optional_and_missing),
                cmocka_unit_test(test_env_overrides_files_and_records_env_source),
                cmocka_unit_test(test_env_sets_batch_kind_with_dots_as_underscores),
                cmocka_unit_test(test_env_unknown_kiln_variable_is_error_naming_it),
                cmocka_unit_test(test_env_non_config_kiln_variables_are_ignored),
                cmocka_unit_test(test_env_unknown_key_of_a_real_section_is_an_error),
                cmocka_unit_test(test_env_bad_value_names_variable_and_key),
                cmocka_unit_test(test_unknown_key_names_file_line_and_key),
                cmocka_unit_test(test_unknown_section_names_file_line_and_section),
                cmocka_unit_test(test_bad_type_names_file_line_and_key),
                cmocka_unit_test(test_out_of_range_names_file_line_and_key),
                cmocka_unit_test(test_malformed_line_names_file_and_line),
                cmocka_unit_test(test_bad_enum_lists_choices),
                cmocka_unit_test(test_unknown_batch_kind_names_section),
                cmocka_unit_test(test_error_in_dropin_names_the_dropin),
                cmocka_unit_test(test_malformed_variants_are_refused),
                cmocka_unit_test(test_size_suffixes),
                cmocka_unit_test(test_cache_size_in_gib_from_env),
                cmocka_unit_test(test_integer_type_and_range),
                cmocka_unit_test(test_booleans_accept_all_spellings),
                cmocka_unit_test(test_double_type_and_range),
                cmocka_unit_test(test_gpu_devices_all_or_distinct_indices),
                cmocka_unit_test(test_strings_length_emptiness_and_quotes),
                cmocka_unit_test(test_listen_split_ipv4),
                cmocka_unit_test(test_listen_split_ipv6_in_brackets),
                cmocka_unit_test(test_listen_split_refuses_bad_addresses_and_ports),
                cmocka_unit_test(test_listen_loopback_detection),
                cmocka_unit_test(test_auth_not_required_refused_on_public_listen),
                cmocka_unit_test(test_auth_not_required_accepted_on_loopback),
                cmocka_unit_test(test_auth_not_required_refused_when_env_opens_listen),
                cmocka_unit_test(test_validate_tls_cert_and_key_together),
                cmocka_unit_test(test_validate_refuses_unparsable_listen),
                cmocka_unit_test(test_bad_listen_in_file_names_line),
                cmocka_unit_test(test_print_round_trips_to_same_values),
                cmocka_unit_test(test_defaults_print_round_trips),
                cmocka_unit_test(test_error_format_omits_empty_parts),
                cmocka_unit_test(test_shipped_kiln_conf_loads),
                cmocka_unit_test(test_shipped_kiln_conf_documents_every_key_with_its_default),
                cmocka_unit_test(test_shipped_kiln_conf_states_each_range),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
