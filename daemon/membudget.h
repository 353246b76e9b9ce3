/* The memory budget (SPEC §4 [memory] max_bytes, §7 "bounded memory"): one count
 * of the bytes kilnd holds for job inputs, results and output buffers, against
 * one limit. Whoever holds such memory takes it from the budget first and gives it
 * back when it is freed; work that cannot take what it needs waits (the scheduler
 * leaves a job queued) instead of allocating.
 *
 * A leaf: it includes nothing of the daemon. Every function is thread-safe (the
 * loop thread, scheduler workers and the store writer all use one budget). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mem_use {
        MEM_INPUTS,  /* a job's input arrays and params, from submit until it ends */
        MEM_RESULTS, /* a job's result, from the start of its run until it is freed */
        MEM_OUTPUT,  /* bytes queued for a connection, until written to its socket */
        MEM_USES,
};

struct membudget;

/* A budget of max_bytes (0 is taken as 1: nothing but zero-byte takes fits).
 * Returns >= 0 or -ENOMEM. Free with membudget_free. */
int membudget_new(uint64_t max_bytes, struct membudget **ret);
/* Accepts NULL. No hook call may be in progress (unset the hook first). */
void membudget_free(struct membudget *mb);

/* A new limit (SIGHUP). Lowering it below what is held takes nothing back: takes
 * fail until enough is given back. Raising it calls the hook, as room appeared. */
void membudget_set_max(struct membudget *mb, uint64_t max_bytes);

/* Takes n bytes for `use` when used + n <= max (inputs and results: max less the
 * 1/64 of it kept for output buffers; inputs, held while their jobs wait, also at
 * most half of that in all); returns true when taken. n = 0 is always taken. */
bool membudget_try_take(struct membudget *mb, enum mem_use use, uint64_t n);
/* Takes n bytes whatever the limit: memory that is held already (an output buffer
 * being filled, a result bigger than its estimate). `used` may then exceed max
 * until it is given back. */
void membudget_charge(struct membudget *mb, enum mem_use use, uint64_t n);
/* Gives back n bytes taken or charged for `use` (never more than that use holds:
 * an excess is ignored), then, when n > 0, calls the hook. */
void membudget_give(struct membudget *mb, enum mem_use use, uint64_t n);

/* Grows *buf, *cap bytes held for `use`, to at least `need` bytes: doubling from
 * 4 KiB, at most `limit` (>= need); the growth is taken from the budget first.
 * Returns false, with nothing changed, when there is no room or no memory. mb may
 * be NULL: nothing is counted. (A message or request body being received.) */
bool membudget_grow(struct membudget *mb, enum mem_use use, uint8_t **buf, size_t *cap, size_t need, size_t limit);

/* Counts one piece of work that had to wait for room (the scheduler calls it once
 * per job it leaves queued for lack of memory), for `waits` below. */
void membudget_count_wait(struct membudget *mb);
/* Whether an input or a result was refused room (membudget_try_take), or a taker
 * that looked at the figures found none and waits (membudget_wanted), since
 * memory was last given back: work waits for room now (a waiter refused again
 * after a give says so again). */
void membudget_wanted(struct membudget *mb);
bool membudget_pressed(struct membudget *mb);

/* The hooks called after bytes are given back (and after membudget_set_max raised
 * the limit), on the thread that gave them, with no lock of the budget held: one
 * slot for each kind of work that waits for room (the scheduler wakes its workers
 * from the first; kilnd's stored results waiting to be read back are retried from
 * the second). fn NULL empties the slot. Setting a hook waits for the hook calls
 * in progress to return, so once a slot has been set to NULL, its old ctx is never
 * used again; never set one from a hook. */
enum membudget_hook { MEMBUDGET_HOOK_WORKERS, MEMBUDGET_HOOK_LOADS, MEMBUDGET_HOOKS };
void membudget_on_give(struct membudget *mb, enum membudget_hook slot, void (*fn)(void *ctx), void *ctx);

struct membudget_view {
        uint64_t max, used;
        uint64_t take_max; /* the most inputs and results may hold: max less output's 1/64 */
        uint64_t by_use[MEM_USES];
        uint64_t peak;  /* the most `used` has been since start */
        uint64_t waits; /* membudget_count_wait calls */
};
/* A consistent snapshot of the figures, for stats and /metrics. */
void membudget_view(const struct membudget *mb, struct membudget_view *ret);
