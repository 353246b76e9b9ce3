/* kiln-bench's reading of the server's routine replies (`accepted`, `progress`, a
 * successful `done`) without building a JSON tree.
 *
 * A job's replies are most of what kiln-bench reads, and it acts on a few top-level
 * fields of them. Parsing each one whole with jansson cost about 5.5 µs of client
 * CPU per single-row risk.score job (measured with perf: 70 % of kiln-bench's
 * time), as much as a fifth of what the server spent on it, so the client measured
 * itself. reply_scan walks the message once, checking its structure, and keeps
 * only those fields. What it does not take is left to jansson: escapes in a field
 * it keeps, text past ASCII or with \u escapes, a `ref` that is not a plain
 * integer, very long numbers, malformed text.
 *
 * The header of each binary part that follows a `done` is read the same way, to
 * check the part against what the `done` announced. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parts of a `done` whose names and sizes are kept (kiln's kinds give at most 8). */
#define REPLY_MAX_PARTS 16

/* One element of a `done`'s "parts", as the part frames that follow are checked
 * against it. */
struct reply_part {
        char name[32];
        bool has_bytes;
        uint64_t bytes;
};

struct reply {
        char op[16];     /* "" when absent */
        char job[48];
        char state[16];
        bool has_ref;
        uint64_t ref;
        size_t n_parts;  /* elements of "parts" (0 when absent) */
        bool result_is_object;
        bool parts_is_array;
        /* NULL, or what makes "parts" unfit to check the frames against (an element
         * that is not an object with a "name", more than REPLY_MAX_PARTS). */
        const char *parts_fault;
        /* The first min(n_parts, REPLY_MAX_PARTS) elements of "parts". Last:
         * reply_scan clears only the fields above (most replies have no parts). */
        struct reply_part parts[REPLY_MAX_PARTS];
};

/* Reads the top-level object in text[0..len). Returns 0 with *r filled, or -1 when
 * the message is not one it takes (see above): parse it whole then. */
int reply_scan(const char *text, size_t len, struct reply *r);

/* The header of a part the server sends (a KLNB frame's JSON):
 * {"job":ID,"part":NAME,"dtype":T,"shape":[...]}. */
struct part_head {
        char job[48];    /* "" when absent */
        char part[32];
        uint64_t bytes;  /* the payload its dtype and shape call for */
};

/* Reads a part header in text[0..len) in place. Returns 0 with *h filled, or -1
 * when it is not one it takes (also: no part, an unknown dtype, a shape that is
 * not 1 to 4 plain integers or whose size overflows): decode it whole then. */
int part_head_scan(const char *text, size_t len, struct part_head *h);
