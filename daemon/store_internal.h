/* Test hooks into the store. Not part of the store's interface: only the store's own
 * files (through store_impl.h) and its unit tests include this file. They expose the
 * record codec so that its versioning and its robustness against truncated or corrupt
 * records can be checked directly. No LMDB type appears here. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The first byte of every record written to "jobs". Records of version 1 (before
 * attempts, input_size and object) still decode; any other first byte is -EIO. */
#define STORE_RECORD_VERSION 3

/* Encodes `job` as a record (malloc'd, caller frees) without the id, which is the key.
 * Returns >= 0, -EINVAL for an invalid job (state, priority, unterminated fixed string)
 * or -E2BIG for a string longer than the format allows. */
int store_record_encode(const struct store_job *job, uint8_t **ret_buf, size_t *ret_size);

/* Decodes a record stored under key `id` as a new job (caller frees). Never reads past
 * buf + size. Returns >= 0, -EIO for a truncated, oversized or otherwise corrupt record,
 * or -ENOMEM. */
int store_record_decode(const uint8_t id[16], const uint8_t *buf, size_t size, struct store_job **ret);

/* Sets the size of the pieces results, inputs and object blobs are stored in (0 restores
 * the store's own, 16 pages), so tests can store many-piece values cheaply. */
void store_set_result_chunk(size_t bytes);

/* Writes `size` raw bytes as the record of `id` in "jobs", bypassing the encoder (to
 * plant corrupt records). Returns >= 0 or -errno. */
int store_record_put_raw(struct store_txn *t, const uint8_t id[16], const void *buf, size_t size);

/* Deletes piece n of the result blob `blob` (to plant a blob with a piece missing).
 * Returns >= 0, -ENOENT when there is no such piece, or -errno. */
int store_result_piece_delete_raw(struct store_txn *t, const uint8_t blob[16], uint32_t n);

/* Sets the slice above which the writer writes a result or input across several
 * transactions (0 restores its own, 8 MiB), so tests can slice small values. */
void store_set_write_slice(size_t bytes);

/* Sets how long the writer keeps a batch of only cache-answer records aside before
 * committing it on its own (0 restores its own, 12 ms), so tests can make either
 * outcome certain. */
void store_set_lazy_wait(int64_t ms);

/* Calls hook(arg) on the writer thread each time it sets such a batch aside (NULL:
 * none), so tests can wait for that rather than sleep. */
void store_set_lazy_hook(void (*hook)(void *arg), void *arg);

/* Calls hook(arg) on the writer thread after each committed slice of a big operation
 * that is not its last (NULL: none), so tests can look at the store in between. */
void store_set_slice_hook(void (*hook)(void *arg), void *arg);

/* Sets how many recent cache entries start a merge into "cache" (0 restores the
 * store's own, 262,144), so tests can merge a few. */
void store_set_cache_merge_at(size_t n);
/* Sets the most slots of the recent entries' index, a power of two from 4 (anything
 * else, 0 too, means the store's own, 2^20), for stores opened after: tests fill it
 * with a few entries. */
void store_set_cache_recent_slots(size_t n);
/* Whether a merge of recent cache entries is due or under way. */
bool store_cache_merge_due(struct store *s);
/* One transaction's share of that merge, in write transaction t: > 0 when it did
 * some (commit t), 0 when none is due, -ENOSPC when the store has too little room
 * left to start one (try again later), or -errno. */
int store_cache_merge_step(struct store_txn *t);

/* store_syncer.c: store.sync=batch's flushes off the writer's thread. The writer is
 * its only user; it is here so that its tests can drive it directly. */

struct store_syncer;
/* Starts the thread (all signals blocked). Returns >= 0 or -errno. */
int store_syncer_start(struct store *s, struct store_syncer **ret);
/* Asks for a flush (store_sync) of everything committed so far. Returns false, asking
 * nothing, while one is asked or under way: the caller asks again later, since that
 * one may not take its latest commits. A flush that fails is tried again by the
 * syncer every 100 ms until one succeeds. */
bool store_syncer_request(struct store_syncer *y);
/* Waits until no flush is asked or under way (a retry that is only due does not
 * count). */
void store_syncer_idle(struct store_syncer *y);
/* Flushes completed (failed ones too) since start; waits until there are n, at most
 * timeout_ms (false when there are fewer then: a test fails rather than hangs). */
uint64_t store_syncer_flushes(struct store_syncer *y);
bool store_syncer_wait_flushes(struct store_syncer *y, uint64_t n, int64_t timeout_ms);
/* Test hook: the next n flushes fail (-EIO) without flushing. */
void store_syncer_fail_next(struct store_syncer *y, unsigned n);
/* Finishes a flush asked or under way, stops and joins the thread. Accepts NULL. */
void store_syncer_stop(struct store_syncer *y);
