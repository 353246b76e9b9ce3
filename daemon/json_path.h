/* The path of the JSON value at a byte offset of a message, to name the field
 * when a parser refused the message there: jansson refuses an integer past int64
 * ("too big integer"), a real past double ("real number overflow") and a repeated
 * key, and says only at which byte.
 *
 *   json_error_t e;
 *   if (!json_loadb(text, len, JSON_REJECT_DUPLICATES, &e) &&
 *       json_path_at(text, len, e.position, path, sizeof(path)) == 0)
 *           ... path is "params.k" or "rows[3][0]"
 *
 * A key is written as it is in the text, escapes included. */
#pragma once

#include <stddef.h>

/* Writes into buf (NUL-terminated, cut at cap) the path of the last key or value
 * that ends at or before `end` (a byte offset into text) and starts before it.
 * Returns 0, or -1 when there is none, it lies deeper than JSON_PATH_MAX_DEPTH
 * or the text before `end` is not a JSON prefix. */
#define JSON_PATH_MAX_DEPTH 64
int json_path_at(const char *text, size_t len, size_t end, char *buf, size_t cap);
