/* Binary parts a client sends ahead of the message that uses them (SPEC §2): KLNB
 * frames naming a "ref" and a part, a large part in several frames with offsets.
 * One `struct parts` per connection gathers them into whole arrays until the
 * message with that ref takes them. Pure bookkeeping (no sockets, no JSON
 * encoding), so its unit test links it alone. Loop thread.
 *
 * What waits is bounded four ways: its bytes (max_bytes, per connection, as the
 * frames' headers give the parts' sizes), the memory budget shared by every
 * connection and job (the bytes of each waiting part are taken from it as they
 * arrive, until the part is taken or dropped), the number of parts
 * (PARTS_MAX_PENDING: zero-byte parts cost nothing in bytes, and each frame is
 * matched against those waiting), and time (parts_expire: a part whose message
 * never comes). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* One whole part, taken over by whoever uses it. */
struct part {
        char name[32];
        int dtype;                 /* enum kiln_dtype */
        int ndim;
        uint64_t shape[4];
        size_t bytes;
        uint8_t *data;             /* malloc'd, `bytes` long */
};

void part_free(struct part *p);

struct parts;
struct membudget;

/* Parts that may wait at once on one connection: a message takes at most 8, and
 * a client sends ahead the parts of the messages it pipelines. */
#define PARTS_MAX_PENDING 256

/* `max_bytes`: what the parts waiting for their message may hold in all
 * (limits.max_input_bytes); `mem`: the memory budget their bytes are taken from
 * (MEM_INPUTS), or NULL for none. Returns NULL on ENOMEM. */
struct parts *parts_new(uint64_t max_bytes, struct membudget *mem);
/* Frees every waiting part. Accepts NULL. */
void parts_free(struct parts *ps);
void parts_set_limit(struct parts *ps, uint64_t max_bytes);

/* Adds one decoded frame (with a "ref") of a part. A part's frames carry the same
 * dtype and shape, each its "offset" in the part, in any order; a part sent in one
 * frame has none. Returns >= 0, or < 0 with *err filled (too_large past the limit
 * or PARTS_MAX_PENDING, unavailable when the memory budget has no room now,
 * bad_request for a frame of another layout or overlapping bytes already
 * received); a part that errs is dropped whole. */
int parts_add(struct parts *ps, const struct proto_frame *f, struct proto_error *err);

/* Drops the parts whose last frame came before `before_ms` (kiln_mono_ms).
 * Returns how many. */
size_t parts_expire(struct parts *ps, int64_t before_ms);

/* Takes the part `name` sent with `ref` (a message's "ref", any JSON value; NULL
 * takes nothing). Returns >= 0 and the part in *ret (the caller owns it), -ENOENT
 * when there is none, or -EAGAIN with *err filled when frames of it are still
 * missing (it is dropped). Its bytes are given back to the memory budget, or, with
 * ret_held, stay taken (MEM_INPUTS) and *ret_held says how many the caller now
 * gives back. */
int parts_take(struct parts *ps, json_t *ref, const char *name, struct part **ret, uint64_t *ret_held,
               struct proto_error *err);

/* The name of a part still waiting under `ref` (one the message did not take), or
 * NULL. Borrowed until the next call. */
const char *parts_left(struct parts *ps, json_t *ref);
/* Drops every part sent with `ref`. */
void parts_drop(struct parts *ps, json_t *ref);

/* Bytes the waiting parts hold. */
uint64_t parts_bytes(const struct parts *ps);
