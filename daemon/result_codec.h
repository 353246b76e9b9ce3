/* The result codec: a finished job's result as the stored blob, and its `done`
 * message. Pure functions of their arguments (no job, no store, no threads), so
 * the same bytes come out for the writer, the cache and the tests.
 *
 * The blob stored with a finished job (version 2; version 1 blobs are read too):
 *   "KLNR" u32 version | u32 len | scalars JSON | u32 n_parts |
 *   n x (u32 len | part header JSON | u64 bytes | zero pad to 8 from the blob start | data)
 * All integers little-endian. A `struct result_blob` describes it without copying
 * the part data; the store writes it piece by piece (result_blob_write_range). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "kind.h"

/* The result's named values as one compact JSON object text (malloc'd), each with
 * its type: numbers (non-finite ones are null), integers, booleans, strings, null,
 * and JSON values (KILN_V_JSON: checked and copied without white space in one pass,
 * never parsed into a tree, since a search's ids can be hundreds of megabytes; one
 * that is not valid JSON is null). NULL on ENOMEM. Formatting doubles to 17 digits
 * is most of a small job's encoding cost: a finished job formats its values once,
 * into its `done` (result_done_text_at), and its blob borrows them there. */
char *result_scalars_text(const struct kiln_result *r);

struct result_blob;

/* Describes the blob of `r` whose scalars were formatted as `scalars` (malloc'd,
 * from result_scalars_text; taken over, freed with the blob or on failure, and
 * NULL fails with -ENOMEM). The blob borrows r's part data: r must outlive it.
 * Returns >= 0 or -ENOMEM. */
int result_blob_new(const struct kiln_result *r, char *scalars, struct result_blob **ret);
/* The same with the scalars text borrowed, len bytes (the one in a `done` text:
 * result_done_text_at), which must outlive the blob as r must. */
int result_blob_new_shared(const struct kiln_result *r, const char *scalars, size_t len, struct result_blob **ret);
/* The bytes the blob holds of its own (its headers, and a scalars text it took
 * over), besides what it borrows. */
size_t result_blob_owned_bytes(const struct result_blob *b);
/* Accepts NULL. */
void result_blob_free(struct result_blob *b);
size_t result_blob_size(const struct result_blob *b);
/* Writes bytes [offset, offset + len) of the blob into dst (len within the size). */
void result_blob_write_range(const struct result_blob *b, uint8_t *dst, size_t offset, size_t len);

/* Where part i's data begins in the blob (i < the result's n_parts). */
size_t result_blob_part_offset(const struct result_blob *b, int i);

/* Copies [offset, offset + len) of a blob into dst; returns >= 0 or -errno. */
typedef int (*result_read_fn)(void *opaque, uint64_t offset, void *dst, size_t len);

/* Parses a blob of `size` bytes that is read through `read` (a stored result read
 * piece by piece): the values as result_blob_parse, the parts' names, types, shapes
 * and sizes with no data (data NULL), and where each part's data begins in
 * ret_offsets. Only the headers are read, never the part data. Returns >= 0, -EIO for
 * a malformed or unreadable blob, or -ENOMEM (ret is then empty). */
int result_blob_parse_with(result_read_fn read, void *opaque, uint64_t size, struct kiln_result *ret,
                           uint64_t ret_offsets[KILN_MAX_PARTS]);

/* Parses a blob into *ret (which must be empty): the values are copied with the
 * types JSON gives them (an integer is KILN_V_INT, a number with a fraction or
 * exponent KILN_V_NUM, an array or object KILN_V_JSON), the parts point into
 * `blob` (marked borrowed), which must outlive the result. Free the result with
 * kiln_result_clear before or after the blob: it frees the values' strings and
 * leaves the parts' data alone. Returns >= 0, or -EIO for a malformed blob (ret is
 * then empty). */
int result_blob_parse(const uint8_t *blob, size_t size, struct kiln_result *ret);

/* What a `done` message says (SPEC §2.2). Strings are borrowed. */
struct done_info {
        const char *job;           /* the job id text */
        const char *state;         /* "done", "failed", "cancelled", "expired" */
        int64_t queue_ms, run_ms;
        /* state "done": */
        const struct kiln_result *result;
        const char *scalars;       /* result_scalars_text(result), or NULL to format here */
        const char *backend;       /* "cpu", "cuda:0"; NULL or "" means "cpu" */
        uint32_t batch;
        bool not_kept;             /* the store kept no result: "stored": false */
        /* other states: */
        const char *error_code;    /* protocol error code, e.g. "timeout" */
        const char *error_message;
        const char *error_field;   /* the input at fault ("params.collection"); NULL or "" for none */
};

/* Where the result's scalars text lies in a `done` text, [at, at + len): byte for
 * byte what result_scalars_text makes of the result, so that the stored blob can
 * borrow it (result_blob_new_shared) rather than hold a copy; a search's ids are
 * most of both. len 0: not there as such (not done, or a done built by jansson). */
struct done_scalars {
        size_t at, len;
};
/* The `done` message (without "ref") as compact JSON text in *ret (malloc'd), and
 * where its scalars text lies (ret_where may be NULL). Without in->scalars the
 * values are written into the done text directly. Returns >= 0 or -ENOMEM. */
int result_done_text_at(const struct done_info *in, char **ret, struct done_scalars *ret_where);
