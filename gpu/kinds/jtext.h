/* A small writer of compact JSON text for result values (KILN_V_JSON), such as the
 * ids of a vector search (one array of strings per query) or the start times of a
 * schedule (one array per job). The compute half has no JSON library; this is the
 * one place that knows JSON's escaping rules.
 *
 *   struct kiln_jtext j;
 *   kiln_jtext_init(&j);
 *   kiln_jtext_open(&j);                  [
 *   kiln_jtext_str(&j, "a\"b");             "a\"b",
 *   kiln_jtext_num(&j, NAN);                null
 *   kiln_jtext_close(&j);                 ]
 *   r = kiln_result_take_jtext(res, "ids", &j);
 *
 * Errors (out of memory, a close without an open) are sticky: the calls after one
 * do nothing and kiln_jtext_finish reports it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kind.h"

#define KILN_JTEXT_MAX_DEPTH 32

struct kiln_jtext {
        char *buf;
        size_t len, cap;
        int err;                 /* 0, -ENOMEM, or -EINVAL for misuse */
        int depth;
        bool need_comma;
        char closer[KILN_JTEXT_MAX_DEPTH];
};

void kiln_jtext_init(struct kiln_jtext *j);
/* Frees the buffer (not needed after kiln_jtext_finish or kiln_result_take_jtext). */
void kiln_jtext_free(struct kiln_jtext *j);

void kiln_jtext_open(struct kiln_jtext *j);        /* [ */
void kiln_jtext_open_object(struct kiln_jtext *j); /* { */
void kiln_jtext_close(struct kiln_jtext *j);       /* ] or }, whichever is open */
/* An object member's key; the value follows with the next call. */
void kiln_jtext_key(struct kiln_jtext *j, const char *key);
/* A double to 17 significant digits; NaN and infinities are written as null. */
void kiln_jtext_num(struct kiln_jtext *j, double v);
/* A float to 9 significant digits (enough to read back the same float). */
void kiln_jtext_f32(struct kiln_jtext *j, float v);
void kiln_jtext_int(struct kiln_jtext *j, int64_t v);
void kiln_jtext_bool(struct kiln_jtext *j, bool v);
void kiln_jtext_null(struct kiln_jtext *j);
/* A string, escaped; NULL is written as null. Bytes >= 0x80 pass through (UTF-8). */
void kiln_jtext_str(struct kiln_jtext *j, const char *s);
/* The bytes kiln_jtext_str writes for the n bytes at s (no NUL among them), the
 * quotes included. */
size_t kiln_jtext_str_bytes(const void *s, size_t n);

/* Ends the text: returns >= 0 and the malloc'd text in *ret (the writer is then
 * empty), or the sticky error (-ENOMEM, or -EINVAL when nothing or an unclosed
 * value was written), freeing the buffer. */
int kiln_jtext_finish(struct kiln_jtext *j, char **ret);
/* kiln_jtext_finish, then kiln_result_take_json. */
int kiln_result_take_jtext(struct kiln_result *r, const char *name, struct kiln_jtext *j);
