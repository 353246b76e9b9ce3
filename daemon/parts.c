/* Binary parts waiting for their message (see parts.h). */
#include "parts.h"

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kind.h"
#include "membudget.h"
#include "util.h"

/* A byte range of a part already received. */
struct range {
        uint64_t start, end;
};

struct pending {
        struct pending *next;
        char *ref;                 /* the frames' "ref", as compact JSON */
        struct part p;
        uint64_t received;         /* bytes so far (the ranges never overlap): taken from the budget */
        int64_t last_ms;           /* kiln_mono_ms of its last frame */
        struct range *ranges;      /* received, sorted by start */
        size_t n_ranges, cap_ranges;
};

struct parts {
        struct pending *head;
        size_t n;                  /* parts waiting */
        uint64_t bytes, max_bytes; /* their sizes as their frames say */
        uint64_t held;             /* what has arrived of them, held as MEM_INPUTS */
        struct membudget *mem;     /* or NULL */
};

void part_free(struct part *p)
{
        if (!p)
                return;
        free(p->data);
        free(p);
}

struct parts *parts_new(uint64_t max_bytes, struct membudget *mem)
{
        struct parts *ps = calloc(1, sizeof(*ps));
        if (ps) {
                ps->max_bytes = max_bytes;
                ps->mem = mem;
        }
        return ps;
}

static void pending_free(struct pending *x)
{
        free(x->ranges);
        free(x->ref);
        free(x->p.data);
        free(x);
}

void parts_free(struct parts *ps)
{
        if (!ps)
                return;
        while (ps->head) {
                struct pending *x = ps->head;
                ps->head = x->next;
                pending_free(x);
        }
        if (ps->mem)
                membudget_give(ps->mem, MEM_INPUTS, ps->held);
        free(ps);
}

void parts_set_limit(struct parts *ps, uint64_t max_bytes)
{
        ps->max_bytes = max_bytes;
}

uint64_t parts_bytes(const struct parts *ps)
{
        return ps->bytes;
}

static char *ref_text(json_t *ref)
{
        return ref ? json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS) : NULL;
}

static struct pending **find(struct parts *ps, const char *ref, const char *name)
{
        struct pending **pp = &ps->head;
        for (; *pp; pp = &(*pp)->next)
                if (!strcmp((*pp)->ref, ref) && (!name || !strcmp((*pp)->p.name, name)))
                        break;
        return pp;
}

/* Unlinks and frees a pending part; its bytes go back to the budget unless `keep`
 * (parts_take handing them over). */
static void unlink_keep(struct parts *ps, struct pending **pp, bool keep)
{
        struct pending *x = *pp;
        *pp = x->next;
        ps->n--;
        ps->bytes -= x->p.bytes;
        ps->held -= x->received;
        if (ps->mem && !keep)
                membudget_give(ps->mem, MEM_INPUTS, x->received);
        pending_free(x);
}

static void unlink_free(struct parts *ps, struct pending **pp)
{
        unlink_keep(ps, pp, false);
}

static int fail(struct proto_error *err, enum kiln_err code, const char *field, const char *msg, ...)
        __attribute__((format(printf, 4, 5)));

static int fail(struct proto_error *err, enum kiln_err code, const char *field, const char *msg, ...)
{
        va_list ap;
        err->code = code;
        snprintf(err->field, sizeof(err->field), "%s", field);
        va_start(ap, msg);
        vsnprintf(err->message, sizeof(err->message), msg, ap);
        va_end(ap);
        return code == KERR_TOO_LARGE ? -EFBIG : -EINVAL;
}

static bool same_layout(const struct part *p, const struct proto_frame *f)
{
        if (p->dtype != f->dtype || p->ndim != f->ndim)
                return false;
        for (int i = 0; i < p->ndim; i++)
                if (p->shape[i] != f->shape[i])
                        return false;
        return true;
}

/* Records [start, end) as received: -EEXIST when it overlaps a range already
 * there, -ENOMEM. Adjacent ranges are merged, so a part sent in order keeps one. */
static int range_add(struct pending *x, uint64_t start, uint64_t end)
{
        size_t i = 0;
        while (i < x->n_ranges && x->ranges[i].start < start)
                i++;
        if ((i > 0 && x->ranges[i - 1].end > start) || (i < x->n_ranges && x->ranges[i].start < end))
                return -EEXIST;
        if (start == end)
                return 0;
        bool join_prev = i > 0 && x->ranges[i - 1].end == start;
        bool join_next = i < x->n_ranges && x->ranges[i].start == end;
        if (join_prev && join_next) {
                x->ranges[i - 1].end = x->ranges[i].end;
                memmove(&x->ranges[i], &x->ranges[i + 1], (x->n_ranges - i - 1) * sizeof(*x->ranges));
                x->n_ranges--;
        } else if (join_prev) {
                x->ranges[i - 1].end = end;
        } else if (join_next) {
                x->ranges[i].start = start;
        } else {
                if (x->n_ranges == x->cap_ranges) {
                        size_t cap = x->cap_ranges ? x->cap_ranges * 2 : 4;
                        struct range *r = realloc(x->ranges, cap * sizeof(*r));
                        if (!r)
                                return -ENOMEM;
                        x->ranges = r;
                        x->cap_ranges = cap;
                }
                memmove(&x->ranges[i + 1], &x->ranges[i], (x->n_ranges - i) * sizeof(*x->ranges));
                x->ranges[i] = (struct range){ start, end };
                x->n_ranges++;
        }
        return 0;
}

int parts_add(struct parts *ps, const struct proto_frame *f, struct proto_error *err)
{
        char *ref = ref_text(f->ref);
        if (!ref)
                return fail(err, f->ref ? KERR_INTERNAL : KERR_BAD_REQUEST, "frame.ref",
                            f->ref ? "out of memory" : "a binary part needs the \"ref\" of the message that uses it");
        struct pending **pp = find(ps, ref, f->part);
        struct pending *x = *pp;
        uint64_t offset = f->has_offset ? f->offset : 0;
        int r = 0;

        if (!x) {
                if (f->part_bytes > ps->max_bytes || ps->bytes > ps->max_bytes - f->part_bytes) {
                        r = fail(err, KERR_TOO_LARGE, "frame",
                                 "part \"%s\" of %llu bytes would take the parts waiting for their message past "
                                 "%llu bytes (limits.max_input_bytes, limits.max_object_bytes)",
                                 f->part, (unsigned long long)f->part_bytes, (unsigned long long)ps->max_bytes);
                        goto out;
                }
                if (ps->n >= PARTS_MAX_PENDING) {
                        r = fail(err, KERR_TOO_LARGE, "frame",
                                 "part \"%s\": %d parts are waiting for their messages on this connection, the "
                                 "most there may be",
                                 f->part, PARTS_MAX_PENDING);
                        goto out;
                }
                /* Its memory is taken from the budget as its bytes arrive, not as
                 * its header claims them: until written, the pages of a large
                 * allocation are not there (a 1-byte frame claiming 6 GB held
                 * the inputs' whole share). */
                x = calloc(1, sizeof(*x));
                if (!x || !(x->p.data = malloc(f->part_bytes ? f->part_bytes : 1))) {
                        free(x);
                        r = fail(err, KERR_INTERNAL, "frame", "out of memory for part \"%s\"", f->part);
                        goto out;
                }
                x->ref = ref;
                ref = NULL;
                snprintf(x->p.name, sizeof(x->p.name), "%s", f->part);
                x->p.dtype = f->dtype;
                x->p.ndim = f->ndim;
                memcpy(x->p.shape, f->shape, sizeof(x->p.shape));
                x->p.bytes = f->part_bytes;
                x->next = ps->head;
                ps->head = x;
                ps->n++;
                ps->bytes += x->p.bytes;
                pp = &ps->head;
        } else if (!same_layout(&x->p, f)) {
                r = fail(err, KERR_BAD_REQUEST, "frame.shape",
                         "part \"%s\": every frame of a part needs the same dtype and shape", f->part);
                unlink_free(ps, pp);
                goto out;
        }
        /* Pieces may come in any order; none may cover bytes already received. */
        if (x->received == x->p.bytes && x->p.bytes > 0) {
                r = fail(err, KERR_BAD_REQUEST, "frame.part",
                         "part \"%s\" of this ref was already received whole: both copies are dropped; send each "
                         "part once",
                         f->part);
                unlink_free(ps, pp);
                goto out;
        }
        x->last_ms = kiln_mono_ms();
        int k = range_add(x, offset, offset + f->payload_len);
        if (k < 0) {
                r = fail(err, k == -ENOMEM ? KERR_INTERNAL : KERR_BAD_REQUEST, "frame.offset",
                         k == -ENOMEM ? "out of memory for part \"%s\""
                                      : "part \"%s\": a frame at offset %llu overlaps bytes already received",
                         f->part, (unsigned long long)offset);
                unlink_free(ps, pp);
                goto out;
        }
        if (ps->mem && !membudget_try_take(ps->mem, MEM_INPUTS, f->payload_len)) {
                r = fail(err, KERR_UNAVAILABLE, "frame",
                         "kilnd's memory budget (memory.max_bytes) has no room for %zu more bytes of part \"%s\" "
                         "now: the part is dropped; retry later",
                         f->payload_len, f->part);
                unlink_free(ps, pp);
                goto out;
        }
        memcpy(x->p.data + offset, f->payload, f->payload_len);
        x->received += f->payload_len;
        ps->held += f->payload_len;
out:
        free(ref);
        return r;
}

int parts_take(struct parts *ps, json_t *ref, const char *name, struct part **ret, uint64_t *ret_held,
               struct proto_error *err)
{
        char *rt = ref_text(ref);
        if (!rt)
                return -ENOENT;
        struct pending **pp = find(ps, rt, name);
        free(rt);
        struct pending *x = *pp;
        if (!x)
                return -ENOENT;
        if (x->received != x->p.bytes) {
                fail(err, KERR_BAD_REQUEST, "parts", "part \"%s\" is incomplete: %llu of its %llu bytes arrived", name,
                     (unsigned long long)x->received, (unsigned long long)x->p.bytes);
                unlink_free(ps, pp);
                return -EAGAIN;
        }
        struct part *p = malloc(sizeof(*p));
        if (!p) {
                fail(err, KERR_INTERNAL, "parts", "out of memory");
                unlink_free(ps, pp);
                return -ENOMEM;
        }
        *p = x->p;
        x->p.data = NULL;
        if (ret_held) /* its bytes stay taken: the caller's to give back */
                *ret_held = ps->mem ? p->bytes : 0;
        unlink_keep(ps, pp, ret_held != NULL);
        *ret = p;
        return 0;
}

const char *parts_left(struct parts *ps, json_t *ref)
{
        char *rt = ref_text(ref);
        if (!rt)
                return NULL;
        struct pending *x = *find(ps, rt, NULL);
        free(rt);
        return x ? x->p.name : NULL;
}

size_t parts_expire(struct parts *ps, int64_t before_ms)
{
        size_t n = 0;
        for (struct pending **pp = &ps->head; *pp;) {
                if ((*pp)->last_ms < before_ms) {
                        unlink_free(ps, pp);
                        n++;
                } else {
                        pp = &(*pp)->next;
                }
        }
        return n;
}

void parts_drop(struct parts *ps, json_t *ref)
{
        char *rt = ref_text(ref);
        if (!rt)
                return;
        struct pending **pp;
        while (*(pp = find(ps, rt, NULL)))
                unlink_free(ps, pp);
        free(rt);
}
