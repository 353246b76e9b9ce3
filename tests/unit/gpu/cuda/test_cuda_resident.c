/* Unit tests for the CUDA plugin's device memory budget (gpu/cuda/cuda_resident.c):
 * which resident objects are evicted for an upload or for a lane's memory, and
 * that a failed allocation leaves no error behind for the next launch. The CUDA
 * runtime's allocation calls are replaced by a ledger of allocations, so the
 * policy is checked without a GPU; the plugin itself runs on a GPU in tests/gpu. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

/* ---- the runtime calls cuda_resident.c makes ---- */

static uint64_t dev_allocated;       /* bytes cudaMalloc handed out and not freed */
static uint64_t dev_physical;        /* what the "device" has; past it cudaMalloc fails */
static cudaError_t pending;          /* the runtime's last error */

cudaError_t cudaMalloc(void **p, size_t n)
{
        if (dev_allocated + n > dev_physical) {
                pending = cudaErrorMemoryAllocation;
                return pending;
        }
        uint64_t *b = malloc(sizeof(uint64_t) + 1);
        *b = n;
        dev_allocated += n;
        *p = b;
        return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
        if (p) {
                dev_allocated -= *(uint64_t *)p;
                free(p);
        }
        return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
        return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
        cudaError_t e = pending;
        pending = cudaSuccess;
        return e;
}

cudaError_t cudaSetDevice(int device)
{
        return cudaSuccess;
}

int cuda_err(cudaError_t e)
{
        return e == cudaSuccess ? 0 : e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
}

/* ---- a kind whose objects' images are just a size ---- */

static const struct kiln_object_class cls = { .name = "test.blob" };

static int image(const struct kiln_object *obj, const void **data, uint64_t *bytes)
{
        *data = NULL;
        *bytes = *(const uint64_t *)obj->snapshot;
        return 0;
}

static const struct kiln_cuda_kind kind = { .name = "test.kind", .object_class = "test.blob", .object_image = image };
const struct kiln_cuda_kind *const kiln_cuda_kinds[] = { &kind, NULL };

struct blob {
        uint64_t bytes;
        struct kiln_object obj;
};

static void blob_init(struct blob *b, uint64_t bytes)
{
        b->bytes = bytes;
        b->obj = (struct kiln_object){ .cls = &cls, .snapshot = &b->bytes, .version = 1 };
}

static struct device dev;

static int setup(void **state)
{
        memset(&dev, 0, sizeof(dev));
        pthread_mutex_init(&dev.mem, NULL);
        dev.budget = 100;
        dev_physical = 1000;
        dev_allocated = 0;
        pending = cudaSuccess;
        return 0;
}

static int teardown(void **state)
{
        cuda_resident_drop_all(&dev, true);
        pthread_mutex_destroy(&dev.mem);
        assert_int_equal(dev_allocated, 0);
        return 0;
}

/* Puts b on the device and leaves it unused (resident, evictable). */
static void upload(struct blob *b)
{
        struct resident *r = NULL;

        assert_int_equal(cuda_resident_get(&dev, &kind, &b->obj, &r), 0);
        cuda_resident_put(&dev, r);
}

static bool resident(const struct blob *b)
{
        for (unsigned i = 0; i < MAX_RESIDENT; i++)
                if (dev.res[i].cls && dev.res[i].snapshot == &b->bytes)
                        return true;
        return false;
}

static void test_an_upload_evicts_the_least_recently_used(void **state)
{
        struct blob a, b, c;

        blob_init(&a, 40);
        blob_init(&b, 40);
        blob_init(&c, 50);
        upload(&a);
        upload(&b);
        upload(&c); /* 130 > 100: a goes, b stays */
        assert_false(resident(&a));
        assert_true(resident(&b));
        assert_true(resident(&c));
        assert_int_equal(dev.used, 90);
        assert_int_equal(dev_allocated, 90);
}

/* An object that cannot fit even with every unused one evicted evicts none. */
static void test_an_object_that_cannot_fit_evicts_nothing(void **state)
{
        struct blob a, b, big;
        struct resident *rb = NULL, *r = NULL;

        blob_init(&a, 30);
        blob_init(&b, 40);
        blob_init(&big, 70);
        upload(&a);
        assert_int_equal(cuda_resident_get(&dev, &kind, &b.obj, &rb), 0); /* in use */
        assert_int_equal(cuda_resident_get(&dev, &kind, &big.obj, &r), -E2BIG);
        assert_true(resident(&a));
        assert_int_equal(dev.used, 70);
        big.bytes = 101; /* more than the whole budget */
        cuda_resident_put(&dev, rb);
        assert_int_equal(cuda_resident_get(&dev, &kind, &big.obj, &r), -E2BIG);
        assert_true(resident(&a));
        assert_true(resident(&b));
}

/* A lane's buffers and scratch take the budget as objects do. */
static void test_lane_memory_evicts_unused_objects_only(void **state)
{
        struct blob a, b;
        struct resident *rb = NULL;

        blob_init(&a, 60);
        blob_init(&b, 30);
        upload(&a);
        assert_int_equal(cuda_mem_take(&dev, 50), 0); /* 110: a goes */
        assert_false(resident(&a));
        assert_int_equal(dev.used, 50);
        assert_int_equal(cuda_resident_get(&dev, &kind, &b.obj, &rb), 0);
        assert_int_equal(cuda_mem_take(&dev, 30), -E2BIG); /* b is in use */
        assert_true(resident(&b));
        assert_int_equal(dev.used, 80);
        cuda_resident_put(&dev, rb);
        assert_int_equal(cuda_mem_take(&dev, 30), 0);
        assert_false(resident(&b));
        cuda_mem_give(&dev, 80);
        assert_int_equal(dev.used, 0);
}

/* A device that has less than the budget says: the upload is too big for it
 * (the batch goes to another device or the CPU), and the runtime's error is
 * cleared, not left for the next launch on this thread to be taken for its own. */
static void test_a_failed_upload_leaves_no_error_behind(void **state)
{
        struct blob a;
        struct resident *r = NULL;

        blob_init(&a, 80);
        dev_physical = 50;
        assert_int_equal(cuda_resident_get(&dev, &kind, &a.obj, &r), -E2BIG);
        assert_int_equal(pending, cudaSuccess);
        assert_int_equal(dev.used, 0);
        assert_false(resident(&a));
}

static void test_every_slot_in_use_is_enospc(void **state)
{
        struct blob b[MAX_RESIDENT + 1];
        struct resident *r[MAX_RESIDENT + 1];

        for (unsigned i = 0; i <= MAX_RESIDENT; i++)
                blob_init(&b[i], 1);
        for (unsigned i = 0; i < MAX_RESIDENT; i++)
                assert_int_equal(cuda_resident_get(&dev, &kind, &b[i].obj, &r[i]), 0);
        assert_int_equal(cuda_resident_get(&dev, &kind, &b[MAX_RESIDENT].obj, &r[MAX_RESIDENT]), -ENOSPC);
        cuda_resident_put(&dev, r[3]);
        assert_int_equal(cuda_resident_get(&dev, &kind, &b[MAX_RESIDENT].obj, &r[MAX_RESIDENT]), 0);
        assert_false(resident(&b[3]));
        for (unsigned i = 0; i <= MAX_RESIDENT; i++)
                if (i != 3)
                        cuda_resident_put(&dev, r[i]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_an_upload_evicts_the_least_recently_used, setup, teardown),
                cmocka_unit_test_setup_teardown(test_an_object_that_cannot_fit_evicts_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lane_memory_evicts_unused_objects_only, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_failed_upload_leaves_no_error_behind, setup, teardown),
                cmocka_unit_test_setup_teardown(test_every_slot_in_use_is_enospc, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
