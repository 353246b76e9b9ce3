/* Objects kept resident on the CUDA devices (kiln_backend.object_upload).
 *
 * A kind with an object class gives the flat image its kernel reads
 * (kiln_cuda_kind.object_image); each device keeps up to MAX_RESIDENT images, keyed
 * by (class, snapshot, version), within its memory budget, evicting the least
 * recently used one that no launch is using. A batch against an object that is not
 * resident uploads it first, so the upload hook only saves the first batch's copy.
 * The lanes' buffers and the kinds' scratch (cuda_mem_take) come out of the same
 * budget, evicting unused residents as they must. */
#include <errno.h>
#include <string.h>

#include "cuda_internal.h"

static bool same(const struct resident *r, const struct kiln_object *o)
{
        return r->cls && r->cls == o->cls && r->snapshot == o->snapshot && r->version == o->version;
}

/* Frees one entry. d->mem held, device current. */
static void drop(struct device *d, struct resident *r)
{
        cudaFree(r->d_data);
        d->used -= r->bytes;
        memset(r, 0, sizeof(*r));
}

/* The bytes of d's residents that no launch is using: what eviction can free.
 * d->mem held. */
static uint64_t idle_bytes(const struct device *d)
{
        uint64_t idle = 0;

        for (unsigned i = 0; i < MAX_RESIDENT; i++)
                if (d->res[i].cls && d->res[i].users == 0)
                        idle += d->res[i].bytes;
        return idle;
}

/* The unused resident used least recently, or NULL. d->mem held. */
static struct resident *lru_idle(struct device *d)
{
        struct resident *victim = NULL;

        for (unsigned i = 0; i < MAX_RESIDENT; i++) {
                struct resident *r = &d->res[i];
                if (r->cls && r->users == 0 && (!victim || r->last_use < victim->last_use))
                        victim = r;
        }
        return victim;
}

/* Whether `bytes` more can fit in d's budget once every unused resident is
 * evicted. d->mem held. */
static bool can_fit(const struct device *d, uint64_t bytes)
{
        return bytes <= d->budget && d->used - idle_bytes(d) <= d->budget - bytes;
}

/* Evicts unused residents, least recently used first, until `bytes` more fit.
 * Only after can_fit. d->mem held, device current. */
static void evict_for(struct device *d, uint64_t bytes)
{
        struct resident *victim;

        while (d->used + bytes > d->budget && (victim = lru_idle(d)))
                drop(d, victim);
}

/* A slot for `bytes` more: a free one, after evicting unused entries as the budget
 * needs. NULL with *ret_err when none can be had: -E2BIG when the bytes would not
 * fit even with every unused entry evicted (then none is: an object too big for
 * the device must not empty it of the others on every batch), -ENOSPC when every
 * slot is in use. d->mem held, device current. */
static struct resident *make_room(struct device *d, uint64_t bytes, int *ret_err)
{
        struct resident *slot = NULL;

        if (!can_fit(d, bytes)) {
                *ret_err = -E2BIG;
                return NULL;
        }
        for (unsigned i = 0; i < MAX_RESIDENT && !slot; i++)
                if (!d->res[i].cls)
                        slot = &d->res[i];
        if (!slot) {
                slot = lru_idle(d);
                if (!slot) {
                        *ret_err = -ENOSPC;
                        return NULL;
                }
                drop(d, slot);
        }
        evict_for(d, bytes);
        return slot;
}

int cuda_mem_take(struct device *d, uint64_t bytes)
{
        int r = 0;

        pthread_mutex_lock(&d->mem);
        if (can_fit(d, bytes)) {
                evict_for(d, bytes);
                d->used += bytes;
        } else {
                r = -E2BIG;
        }
        pthread_mutex_unlock(&d->mem);
        return r;
}

void cuda_mem_give(struct device *d, uint64_t bytes)
{
        pthread_mutex_lock(&d->mem);
        d->used -= bytes;
        pthread_mutex_unlock(&d->mem);
}

int cuda_resident_get(struct device *d, const struct kiln_cuda_kind *ck, const struct kiln_object *obj,
                      struct resident **ret)
{
        const void *data = NULL;
        uint64_t bytes = 0;
        int r = 0;

        pthread_mutex_lock(&d->mem);
        d->tick++;
        for (unsigned i = 0; i < MAX_RESIDENT; i++) {
                struct resident *e = &d->res[i];
                if (same(e, obj) && !e->doomed) {
                        e->users++;
                        e->last_use = d->tick;
                        *ret = e;
                        pthread_mutex_unlock(&d->mem);
                        return 0;
                }
        }
        if (!ck || !ck->object_image)
                r = -ENOTSUP;
        else
                r = ck->object_image(obj, &data, &bytes);
        struct resident *e = r >= 0 ? make_room(d, bytes, &r) : NULL;
        if (e) {
                void *p = NULL;
                r = cuda_err(cudaMalloc(&p, bytes ? bytes : 1));
                if (r >= 0 && bytes)
                        r = cuda_err(cudaMemcpy(p, data, bytes, cudaMemcpyHostToDevice));
                if (r >= 0) {
                        *e = (struct resident){ .cls = obj->cls, .snapshot = obj->snapshot, .version = obj->version,
                                                .d_data = p, .bytes = bytes, .users = 1, .last_use = d->tick };
                        d->used += bytes;
                        *ret = e;
                } else {
                        cudaFree(p);
                        /* Handled here: the error must not be taken for that of the
                         * next launch on this thread. */
                        (void)cudaGetLastError();
                        if (r == -ENOMEM)
                                r = -E2BIG;
                }
        }
        pthread_mutex_unlock(&d->mem);
        return r;
}

void cuda_resident_put(struct device *d, struct resident *e)
{
        if (!e)
                return;
        pthread_mutex_lock(&d->mem);
        if (--e->users == 0 && e->doomed)
                drop(d, e);
        pthread_mutex_unlock(&d->mem);
}

void cuda_resident_drop_all(struct device *d, bool free_memory)
{
        pthread_mutex_lock(&d->mem);
        for (unsigned i = 0; i < MAX_RESIDENT; i++) {
                struct resident *e = &d->res[i];
                if (!e->cls)
                        continue;
                if (free_memory)
                        cudaFree(e->d_data);
                d->used -= e->bytes;
                memset(e, 0, sizeof(*e));
        }
        pthread_mutex_unlock(&d->mem);
}

/* The CUDA kind that can image objects of obj's class, or NULL. */
static const struct kiln_cuda_kind *imaging_kind(const struct kiln_object *obj)
{
        for (size_t i = 0; obj && kiln_cuda_kinds[i]; i++) {
                const struct kiln_cuda_kind *ck = kiln_cuda_kinds[i];
                if (ck->object_image && ck->object_class && obj->cls && obj->cls->name &&
                    strcmp(ck->object_class, obj->cls->name) == 0)
                        return ck;
        }
        return NULL;
}

int cuda_object_upload(void *ctx, const struct kiln_object *obj)
{
        struct cuda_backend *b = ctx;
        const struct kiln_cuda_kind *ck = imaging_kind(obj);
        int r = -ENODEV, held = 0;

        if (!ck)
                return -ENOTSUP;
        for (unsigned i = 0; i < b->n_dev; i++) {
                struct device *d = &b->dev[i];
                pthread_mutex_lock(&b->lock);
                bool usable = d->in_service && d->ordinal >= 0;
                pthread_mutex_unlock(&b->lock);
                if (!usable)
                        continue;
                struct resident *e = NULL;
                r = cuda_err(cudaSetDevice(d->ordinal));
                if (r >= 0)
                        r = cuda_resident_get(d, ck, obj, &e);
                if (r >= 0) {
                        cuda_resident_put(d, e);
                        held++;
                }
        }
        return held ? 0 : r;
}

void cuda_object_release(void *ctx, const struct kiln_object *obj)
{
        struct cuda_backend *b = ctx;

        for (unsigned i = 0; obj && i < b->n_dev; i++) {
                struct device *d = &b->dev[i];
                if (d->ordinal < 0)
                        continue;
                pthread_mutex_lock(&d->mem);
                for (unsigned k = 0; k < MAX_RESIDENT; k++) {
                        struct resident *e = &d->res[k];
                        if (!same(e, obj))
                                continue;
                        if (e->users) {
                                e->doomed = true;
                        } else if (cudaSetDevice(d->ordinal) == cudaSuccess) {
                                drop(d, e);
                        }
                }
                pthread_mutex_unlock(&d->mem);
        }
}
