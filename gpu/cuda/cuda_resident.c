/* Objects kept resident on the CUDA devices (kiln_backend.object_upload).
 *
 * A kind with an object class gives the flat image its kernel reads
 * (kiln_cuda_kind.object_image); each device keeps up to MAX_RESIDENT images, keyed
 * by (class, snapshot, version), within its memory budget, evicting the least
 * recently used one that no launch is using. A batch against an object that is not
 * resident uploads it first, so the upload hook only saves the first batch's copy. */
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

/* A slot for `bytes` more: a free one, after evicting unused entries as the budget
 * needs. NULL with *ret_err when none can be had. d->mem held, device current. */
static struct resident *make_room(struct device *d, uint64_t bytes, int *ret_err)
{
        for (;;) {
                struct resident *free_slot = NULL, *victim = NULL;
                for (unsigned i = 0; i < MAX_RESIDENT; i++) {
                        struct resident *r = &d->res[i];
                        if (!r->cls)
                                free_slot = free_slot ? free_slot : r;
                        else if (r->users == 0 && (!victim || r->last_use < victim->last_use))
                                victim = r;
                }
                if (free_slot && d->used + bytes <= d->budget)
                        return free_slot;
                if (!victim) {
                        *ret_err = free_slot ? -E2BIG : -ENOSPC;
                        return NULL;
                }
                drop(d, victim);
        }
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
