/* What proto.c and proto_refused.c share; not part of the codec's interface. */
#pragma once

#include <stddef.h>

#include "proto.h"

/* Bytes of client text quoted in a message. */
#define PROTO_ECHO_MAX 64

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Fills err (when non-NULL) and returns -EINVAL. */
__attribute__((format(printf, 4, 5)))
int proto_fail(struct proto_error *err, enum kiln_err code, const char *field, const char *fmt, ...);
/* How many bytes of the valid UTF-8 string s (len bytes) to quote in a message:
 * at most PROTO_ECHO_MAX, never splitting a multi-byte sequence. */
int proto_echo_len(const char *s, size_t len);
/* A field of the decoded message r that its op does not take: -EINVAL with err
 * naming it; else 0 (proto_refused.c). */
int proto_check_fields(const struct proto_req *r, struct proto_error *err);
/* The "ref" of a message the strict parse refused (text, len), read as leniently
 * as it can be to echo it as written; NULL when there is none (proto_refused.c). */
json_t *proto_lenient_ref(const char *text, size_t len);
