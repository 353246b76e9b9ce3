/* One JSON value checked and copied without its insignificant white space, in one
 * pass and without building a tree: a result's JSON values (a vector search's ids,
 * q x k strings, can be hundreds of megabytes) are embedded into blobs and `done`
 * messages this way, and read back from a blob member by member.
 *
 *   size_t pos = 0, n;
 *   if (json_value_compact(text, len, &pos, out, &n) == 0 && pos == len)
 *           ... out[0..n) is the value, compact
 *
 * Checked: the grammar of RFC 8259 (strings with their escapes and no control
 * bytes, numbers, literals, arrays and objects nested at most JSON_COMPACT_MAX_DEPTH
 * deep) and that strings are well-formed UTF-8. Not checked: repeated keys. */
#pragma once

#include <stddef.h>

#define JSON_COMPACT_MAX_DEPTH 64

/* Reads the value that starts at text[*pos] (after white space), sets *pos past it
 * and past the white space that follows. When out is not NULL, writes the value
 * there without white space outside strings (at most as many bytes as it took in
 * the text) and its length into *ret_len; with out NULL, *ret_len (when not NULL)
 * gets the length it would have. Returns 0, or -1 when text[*pos..len) does not
 * begin with a value (*pos and out are then unspecified). */
int json_value_compact(const char *text, size_t len, size_t *pos, char *out, size_t *ret_len);

/* One member of a JSON object text: where its key (quotes included) and its value
 * lie in the text. */
struct json_member {
        size_t key_at, key_len, value_at, value_len;
};

/* The members of the JSON object text[0..len), one a call, starting with *pos 0
 * (*pos moves on): 1 with *ret set, 0 after the last one (the object closed, only
 * white space after it), -1 when the text is not such an object. Values are
 * skipped as json_value_compact reads them, one more level deep allowed, never
 * read into anything. */
int json_object_next(const char *text, size_t len, size_t *pos, struct json_member *ret);

/* Where the value of the member `key` of the JSON object text[0..len) lies: its
 * offset and length, found without reading the other members' values into
 * anything (a `done` message's result can be hundreds of megabytes), each as deep
 * as json_value_compact takes inside one more level. Keys are
 * compared as they are written (one with escapes matches only itself), and the
 * first member of that name is the one found. Returns 0, or -1 when the text does
 * not begin with an object holding such a member. */
int json_object_member(const char *text, size_t len, const char *key, size_t *ret_at, size_t *ret_len);
