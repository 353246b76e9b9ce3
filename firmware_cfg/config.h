/* Loading kiln's configuration (SPEC §4) into the typed struct kiln_config that
 * schema.h defines (included here: "config.h" gives both).
 *
 * Values come, in increasing precedence, from the built-in defaults (schema.c), the
 * main INI file, the drop-ins `<main>.d/ *.conf` in lexical order (later wins) and
 * `KILN_SECTION_KEY` environment variables (section and key upper-cased, '.' and '-'
 * turned into '_', e.g. KILN_SERVER_LISTEN, KILN_BATCH_LENS_NFW_MAX_BATCH); variables
 * that do not start with KILN_ and a section name (KILN_URL, KILN_PLUGIN_DIR) are not
 * configuration and are ignored. Every value remembers its source for --print-config. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "schema.h"

#define KILN_CONFIG_DEFAULT_PATH "/etc/kiln/kiln.conf"

/* Where a configuration error was found. */
struct kiln_config_error {
        char file[4096];  /* file path, or "environment" for KILN_* variables, or "" */
        unsigned line;    /* 1-based, 0 when not from a file */
        char key[128];    /* "section.key" or the variable name, "" when not about a key */
        char message[512];/* human sentence; kiln_config_error_format() builds the full line */
};

/* Creates the defaults (all keys at their schema default; memory.max_bytes, whose
 * default 0 means "auto", worked out for this machine as the loader does). Never
 * fails except ENOMEM: returns NULL then. Free with kiln_config_free(). */
struct kiln_config *kiln_config_new_defaults(void);
void kiln_config_free(struct kiln_config *c);

/* Loads the configuration: defaults, then `path` (which must exist unless
 * `path_optional`), its drop-in directory `path.d/ *.conf`, then the environment `envp`
 * (NULL-terminated "NAME=value" list; NULL means no environment). `known_kinds` is a
 * NULL-terminated list of job-kind names allowed in [batch.KIND] sections.
 * Returns >= 0 and a new config in *ret, or -EINVAL (bad content) / -errno (I/O) with
 * `err` filled. Validates cross-key rules too (kiln_config_validate). A
 * memory.max_bytes of 0, from any source, is replaced by half of the machine's memory
 * or of its cgroup's limit (sysmem.h), within the key's range; --print-config names
 * both the source and that reason. */
int kiln_config_load(const char *path, bool path_optional, char *const *envp,
                     const char *const *known_kinds, struct kiln_config **ret,
                     struct kiln_config_error *err);

/* Cross-key rules: auth.required=false only with a loopback listen address; a
 * listen address that parses; tls_cert and tls_key both set or both empty.
 * Returns >= 0 or -EINVAL with err (key named). */
int kiln_config_validate(const struct kiln_config *c, struct kiln_config_error *err);

/* "FILE:LINE: KEY: MESSAGE" (parts omitted when empty) into buf. Returns buf. */
const char *kiln_config_error_format(const struct kiln_config_error *err, char *buf, size_t size);

/* Opens a configuration file (kiln.conf, a drop-in, the tokens file) for reading:
 * a regular file only, and without waiting on a FIFO for a writer. Returns >= 0
 * and *ret, -EISDIR (a directory), -ENODEV (another kind of file) or -errno. */
int kiln_config_open_file(const char *path, FILE **ret);

/* Writes the effective configuration as INI to `f`, each value followed by a comment
 * naming its source ("# default", "# /etc/kiln/kiln.conf:12", "# env KILN_STORE_PATH"). */
void kiln_config_print(const struct kiln_config *c, FILE *f);

/* The batch settings for a kind (schema defaults when no section names it). */
struct kiln_batch_config kiln_config_batch(const struct kiln_config *c, const char *kind);
