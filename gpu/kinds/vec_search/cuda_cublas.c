/* vec.search's screening products by cuBLAS, where the machine has it.
 *
 * The CUDA toolkit ships no static cuBLAS, so the plugin loads libcublas.so at run
 * time (NOTES: the GPU machines have it) and works without it: kernel.cu then runs
 * its own tiled product. cuBLAS's SGEMM is used only in float32 arithmetic
 * (CUBLAS_DEFAULT_MATH: no TF32 for float32 operands), whose rounding, in whatever
 * order cuBLAS sums, is what vec_margin_of bounds (vec_math.h). That is not taken on
 * trust: before the first product on a device, a product of known values is
 * computed and every value compared with float64 sums against the bound. A library
 * that fails the check, or any call that fails, leaves the device on the own kernel
 * for the life of the process.
 *
 * One cuBLAS handle per (device, stream): a stream is one lane of the plugin core,
 * which runs one batch at a time, so a handle and its workspace are never shared
 * between streams or used by two threads at once. */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "vec_search/vec_search_cuda.h"

/* The few cuBLAS v2 entry points used, declared here: the plugin builds without
 * cuBLAS's headers or libraries. Values from cublas_api.h (stable since CUDA 11). */
typedef void *cublas_handle;
enum { CUBLAS_OK = 0, CUBLAS_OP_N_ = 0, CUBLAS_OP_T_ = 1, CUBLAS_DEFAULT_MATH_ = 0 };

struct cublas_api {
        void *lib;
        int (*create)(cublas_handle *h);
        int (*set_stream)(cublas_handle h, cudaStream_t s);
        int (*set_math_mode)(cublas_handle h, int mode);
        int (*sgemm)(cublas_handle h, int transa, int transb, int m, int n, int k, const float *alpha,
                     const float *a, int lda, const float *b, int ldb, const float *beta, float *c, int ldc);
};

#define MAX_DEVICES 64
#define MAX_HANDLES 256

enum device_state { DEV_UNCHECKED = 0, DEV_CUBLAS, DEV_OWN };

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct cublas_api api;
static bool api_ok;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static enum device_state devices[MAX_DEVICES];
static struct {
        int device;
        cudaStream_t stream;
        cublas_handle h;
} handles[MAX_HANDLES];
static unsigned n_handles;

static void load(void)
{
        /* The loader's path first, then the toolkit's default place. */
        static const char *const names[] = { "libcublas.so.13", "libcublas.so.12", "libcublas.so",
                                             "/usr/local/cuda/lib64/libcublas.so.13",
                                             "/usr/local/cuda/lib64/libcublas.so.12" };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !api.lib; i++)
                api.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!api.lib)
                return;
        *(void **)&api.create = dlsym(api.lib, "cublasCreate_v2");
        *(void **)&api.set_stream = dlsym(api.lib, "cublasSetStream_v2");
        *(void **)&api.set_math_mode = dlsym(api.lib, "cublasSetMathMode");
        *(void **)&api.sgemm = dlsym(api.lib, "cublasSgemm_v2");
        api_ok = api.create && api.set_stream && api.set_math_mode && api.sgemm;
}

/* The handle of (device, stream), made on first use; NULL when cuBLAS cannot make
 * one. Under lock. */
static cublas_handle handle_of(int device, cudaStream_t stream)
{
        cublas_handle h = NULL;

        for (unsigned i = 0; i < n_handles; i++)
                if (handles[i].device == device && handles[i].stream == stream)
                        return handles[i].h;
        if (n_handles == MAX_HANDLES || api.create(&h) != CUBLAS_OK || !h)
                return NULL;
        if (api.set_math_mode(h, CUBLAS_DEFAULT_MATH_) != CUBLAS_OK || api.set_stream(h, stream) != CUBLAS_OK)
                return NULL; /* a handle that cannot be set up is not used (nor freed: rare) */
        handles[n_handles].device = device;
        handles[n_handles].stream = stream;
        handles[n_handles].h = h;
        n_handles++;
        return h;
}

/* v[g * n + r] = q_g . x_r, enqueued on the handle's stream. */
static bool sgemm(cublas_handle h, const float *q, uint32_t qc, const float *x, uint64_t n, uint32_t d, float *v)
{
        const float one = 1.0f, zero = 0.0f;

        /* Column-major: x is d x n (its rows are the columns), q is d x qc; v, n x qc,
         * is x^T q. */
        return api.sgemm(h, CUBLAS_OP_T_, CUBLAS_OP_N_, (int)n, (int)qc, (int)d, &one, x, (int)d, q, (int)d, &zero,
                         v, (int)n) == CUBLAS_OK;
}

/* A deterministic value in [-1, 1) (xorshift), for the check's operands. */
static float check_value(uint32_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 17;
        *s ^= *s << 5;
        return (float)((double)(*s >> 8) / (double)(1u << 23) - 1.0);
}

/* Whether cuBLAS's product of known operands, on this stream, is within the
 * rounding bound of float64 sums everywhere (the screening's premise). The sizes
 * are odd on purpose: no dimension a multiple of a tile. Synchronous; once per
 * device. */
static bool check_device(cublas_handle h, cudaStream_t st)
{
        enum { QC = 37, N = 1031, D = 133 };
        const size_t qb = (size_t)QC * D * sizeof(float), xb = (size_t)N * D * sizeof(float);
        const size_t vb = (size_t)QC * N * sizeof(float);
        float *hq = malloc(qb), *hx = malloc(xb), *hv = malloc(vb), *dq = NULL, *dx = NULL, *dv = NULL;
        bool ok = hq && hx && hv;
        uint32_t s = 0x9e3779b9u;

        for (size_t i = 0; ok && i < (size_t)QC * D; i++)
                hq[i] = check_value(&s);
        for (size_t i = 0; ok && i < (size_t)N * D; i++)
                hx[i] = check_value(&s);
        ok = ok && cudaMalloc((void **)&dq, qb) == cudaSuccess && cudaMalloc((void **)&dx, xb) == cudaSuccess &&
             cudaMalloc((void **)&dv, vb) == cudaSuccess &&
             cudaMemcpyAsync(dq, hq, qb, cudaMemcpyHostToDevice, st) == cudaSuccess &&
             cudaMemcpyAsync(dx, hx, xb, cudaMemcpyHostToDevice, st) == cudaSuccess &&
             sgemm(h, dq, QC, dx, N, D, dv) &&
             cudaMemcpyAsync(hv, dv, vb, cudaMemcpyDeviceToHost, st) == cudaSuccess &&
             cudaStreamSynchronize(st) == cudaSuccess;
        const double u = 0x1p-24, nd = D + 2.0, gamma = nd * u / (1.0 - nd * u);
        for (uint32_t g = 0; ok && g < QC; g++)
                for (uint32_t r = 0; ok && r < N; r++) {
                        double exact = 0.0, abs_sum = 0.0;
                        for (uint32_t j = 0; j < D; j++) {
                                double p = (double)hq[(size_t)g * D + j] * (double)hx[(size_t)r * D + j];
                                exact += p;
                                abs_sum += fabs(p);
                        }
                        ok = fabs((double)hv[(size_t)g * N + r] - exact) <= gamma * abs_sum;
                }
        /* The stream is idle here (synchronised, or failed): plain frees. */
        cudaFree(dq);
        cudaFree(dx);
        cudaFree(dv);
        free(hq);
        free(hx);
        free(hv);
        return ok;
}

bool vec_cublas_product(void *stream, const float *q, uint32_t qc, const float *x, uint64_t n, uint32_t d, float *v)
{
        cudaStream_t st = (cudaStream_t)stream;
        int device = -1;
        bool done = false;

        if (n == 0 || n > INT32_MAX || qc == 0 || d == 0 || d > INT32_MAX)
                return false;
        pthread_once(&load_once, load);
        if (!api_ok || cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= MAX_DEVICES)
                return false;
        pthread_mutex_lock(&lock);
        if (devices[device] != DEV_OWN) {
                cublas_handle h = handle_of(device, st);
                /* Checked only on a clean runtime state, so that an error of the check
                 * (cleared: the own kernel runs instead) is never taken for one of the
                 * launch's earlier kernels, or the reverse. */
                if (h && devices[device] == DEV_UNCHECKED && cudaPeekAtLastError() == cudaSuccess) {
                        devices[device] = check_device(h, st) ? DEV_CUBLAS : DEV_OWN;
                        if (devices[device] == DEV_OWN)
                                (void)cudaGetLastError();
                }
                /* Enqueued only: the handle is this stream's alone, so the lock is not
                 * needed past the call. */
                if (h && devices[device] == DEV_CUBLAS) {
                        pthread_mutex_unlock(&lock);
                        done = sgemm(h, q, qc, x, n, d, v);
                        pthread_mutex_lock(&lock);
                        if (!done)
                                devices[device] = DEV_OWN;
                } else if (!h) {
                        devices[device] = DEV_OWN;
                }
        }
        pthread_mutex_unlock(&lock);
        return done;
}
