/* The configuration schema: one table of every key of SPEC §4 with its type, default,
 * range and documentation, and the codecs that turn a key's text into its typed field
 * and back. Private to firmware_cfg/ (and its unit tests). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

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
