/* kiln-bench's reading of the server's routine replies (`accepted`, `progress`, a
 * successful `done`) without building a JSON tree.
 *
 * A job's replies are most of what kiln-bench reads, and it acts on five top-level
 * fields of them. Parsing each one whole with jansson cost about 5.5 µs of client
 * CPU per single-row risk.score job (measured with perf: 70 % of kiln-bench's
 * time), as much as a fifth of what the server spent on it, so the client measured
 * itself. reply_scan walks the message once, checking its structure, and keeps
 * only those fields. What it does not take is left to jansson: escapes in a field
 * it keeps, text past ASCII or with \u escapes, a `ref` that is not a plain
 * integer, very long numbers, malformed text. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reply {
        char op[16];     /* "" when absent */
        char job[48];
        char state[16];
        bool has_ref;
        uint64_t ref;
        size_t n_parts;  /* elements of "parts" (0 when absent) */
};

/* Reads the top-level object in text[0..len). Returns 0 with *r filled, or -1 when
 * the message is not one it takes (see above): parse it whole then. */
int reply_scan(const char *text, size_t len, struct reply *r);
