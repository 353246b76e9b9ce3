/* vec.search's screening products by cuBLAS, where the machine has it.
 *
 * The CUDA toolkit ships no static cuBLAS, so the plugin loads libcublas.so at run
 * time (NOTES: the GPU machines have it) and works without it: kernel.cu then runs
 * its own tiled product. cuBLAS's SGEMM is used only in float32 arithmetic
 * (CUBLAS_DEFAULT_MATH: no TF32 for float32 operands), whose rounding, in whatever
 * order cuBLAS sums, is what vec_margin_of bounds (vec_math.h). That is not taken on
 * trust: before the first product on a device, a product of known values is
 * computed and every value compared with float64 sums against the bound. A library
 * that gives a wrong value leaves the device on the own kernel for the life of the
 * process; one that cannot run (no memory for a handle, a failed call) is tried
 * again at later launches, CHECK_TRIES times at most. cuBLAS's float32 emulation
 * (CUBLAS_EMULATE_SINGLE_PRECISION, newer GPUs) is outside the bound: when its
 * variables are set, cuBLAS is not used at all.
 *
 * One cuBLAS handle per (device, stream): a stream is one lane of the plugin core,
 * which runs one batch at a time, so a handle and its workspace are never shared
 * between streams or used by two threads at once. A stream is known by its id
 * (cudaStreamGetId), which the runtime never reuses: after a device reset the
 * lanes' new streams get new handles; vec_cublas_device_release destroys a
 * device's handles before its reset.
 *
 * Why the own kernel runs where cuBLAS does not (not found, a symbol missing, a
 * call that failed, a value outside the bound) is kept as a sentence for the GPU
 * check's report (kiln_cuda_vec_cublas_why). */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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
        int (*destroy)(cublas_handle h);
        int (*set_stream)(cublas_handle h, cudaStream_t s);
        int (*set_math_mode)(cublas_handle h, int mode);
        /* The 64-bit sizes: a collection's n * d floats may pass 2^31. */
        int (*sgemm)(cublas_handle h, int transa, int transb, int64_t m, int64_t n, int64_t k, const float *alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, const float *beta, float *c,
                     int64_t ldc);
};

#define MAX_DEVICES 64
#define MAX_HANDLES 256
#define CHECK_TRIES 3

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct cublas_api api;
static bool api_ok;

enum vec_cublas_state { VEC_CUBLAS_UNCHECKED = 0, VEC_CUBLAS_USED = 1, VEC_CUBLAS_OWN = -1 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
        int state;              /* enum vec_cublas_state */
        unsigned failures;      /* attempts that could not run */
        char why[320];          /* the last reason it was not used on this device, "" once used */
} devices[MAX_DEVICES];
static struct {
        int device;
        unsigned long long stream;  /* cudaStreamGetId */
        cublas_handle h;
} handles[MAX_HANDLES];
static unsigned n_handles;
/* Why cuBLAS is not used anywhere (not loaded), or "". Under lock. */
static char load_why[320];

/* The reason a try on `device` failed, kept for the report. Under lock. */
#define SET_WHY(device, ...) snprintf(devices[device].why, sizeof(devices[device].why), __VA_ARGS__)

static bool emulation_asked(void)
{
        const char *a = getenv("CUBLAS_EMULATE_SINGLE_PRECISION"), *b = getenv("CUBLAS_EMULATION_STRATEGY");

        return (a && *a && strcmp(a, "0")) || (b && *b);
}

static void load(void)
{
        char why[sizeof(load_why)] = "";

        if (emulation_asked()) {
                snprintf(why, sizeof(why), "not used: CUBLAS_EMULATE_SINGLE_PRECISION or CUBLAS_EMULATION_STRATEGY "
                                           "is set");
                goto out;
        }
        /* The loader's path first, then the toolkit's default place. */
        static const char *const names[] = { "libcublas.so.13", "libcublas.so.12", "libcublas.so",
                                             "/usr/local/cuda/lib64/libcublas.so.13",
                                             "/usr/local/cuda/lib64/libcublas.so.12" };

        const char *err = NULL;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !api.lib; i++)
                if (!(api.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL)))
                        err = dlerror();
        if (!api.lib) {
                snprintf(why, sizeof(why), "not loaded: %s", err ? err : "dlopen failed");
                goto out;
        }
        *(void **)&api.create = dlsym(api.lib, "cublasCreate_v2");
        *(void **)&api.destroy = dlsym(api.lib, "cublasDestroy_v2");
        *(void **)&api.set_stream = dlsym(api.lib, "cublasSetStream_v2");
        *(void **)&api.set_math_mode = dlsym(api.lib, "cublasSetMathMode");
        *(void **)&api.sgemm = dlsym(api.lib, "cublasSgemm_v2_64");
        api_ok = api.create && api.destroy && api.set_stream && api.set_math_mode && api.sgemm;
        if (!api_ok)
                snprintf(why, sizeof(why), "not used: the library lacks one of cublasCreate_v2, cublasDestroy_v2, "
                                           "cublasSetStream_v2, cublasSetMathMode, cublasSgemm_v2_64");
out:
        pthread_mutex_lock(&lock);
        memcpy(load_why, why, sizeof(load_why));
        pthread_mutex_unlock(&lock);
}

/* The handle of (device, stream), made on first use; NULL when cuBLAS cannot make
 * one now. Under lock. */
static cublas_handle handle_of(int device, cudaStream_t stream)
{
        unsigned long long id = 0;
        cublas_handle h = NULL;

        cudaError_t e = cudaStreamGetId(stream, &id);
        if (e != cudaSuccess) {
                (void)cudaGetLastError(); /* not an error of the launch */
                SET_WHY(device, "a try failed: cudaStreamGetId: %s", cudaGetErrorString(e));
                return NULL;
        }
        for (unsigned i = 0; i < n_handles; i++)
                if (handles[i].device == device && handles[i].stream == id)
                        return handles[i].h;
        int st = n_handles == MAX_HANDLES ? -1 : api.create(&h);
        if (st != CUBLAS_OK || !h) {
                if (st < 0)
                        SET_WHY(device, "a try failed: cublasCreate_v2: no room for another handle");
                else
                        SET_WHY(device, "a try failed: cublasCreate_v2: status %d", st);
                return NULL;
        }
        int sm = api.set_math_mode(h, CUBLAS_DEFAULT_MATH_), ss = sm == CUBLAS_OK ? api.set_stream(h, stream) : 0;
        if (sm != CUBLAS_OK || ss != CUBLAS_OK) {
                SET_WHY(device, "a try failed: %s: status %d",
                        sm != CUBLAS_OK ? "cublasSetMathMode" : "cublasSetStream_v2",
                        sm != CUBLAS_OK ? sm : ss);
                api.destroy(h);
                return NULL;
        }
        handles[n_handles].device = device;
        handles[n_handles].stream = id;
        handles[n_handles].h = h;
        n_handles++;
        return h;
}

/* v[g * n + r] = q_g . x_r, enqueued on the handle's stream: cuBLAS's status. */
static int sgemm(cublas_handle h, const float *q, uint32_t qc, const float *x, uint64_t n, uint32_t d, float *v)
{
        const float one = 1.0f, zero = 0.0f;

        /* Column-major: x is d x n (its rows are the columns), q is d x qc; v, n x qc,
         * is x^T q. */
        return api.sgemm(h, CUBLAS_OP_T_, CUBLAS_OP_N_, (int64_t)n, qc, d, &one, x, d, q, d, &zero, v, (int64_t)n);
}

/* A deterministic value in [-1, 1) (xorshift), for the check's operands. */
static float check_value(uint32_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 17;
        *s ^= *s << 5;
        return (float)((double)(*s >> 8) / (double)(1u << 23) - 1.0);
}

/* cuBLAS's product of known operands, on this stream, against float64 sums: 1 when
 * every value is within the rounding bound (the screening's premise), 0 when one
 * is not, -1 when it could not be computed (memory, a failed call). The sizes are
 * odd on purpose: no dimension a multiple of a tile. Synchronous; once per device. */
static int check_device(int device, cublas_handle h, cudaStream_t st)
{
        enum { QC = 37, N = 1031, D = 133 };
        const size_t qb = (size_t)QC * D * sizeof(float), xb = (size_t)N * D * sizeof(float);
        const size_t vb = (size_t)QC * N * sizeof(float);
        float *hq = malloc(qb), *hx = malloc(xb), *hv = malloc(vb), *dq = NULL, *dx = NULL, *dv = NULL;
        bool ran = hq && hx && hv, within = true;
        int status = CUBLAS_OK;
        uint32_t s = 0x9e3779b9u;

        for (size_t i = 0; ran && i < (size_t)QC * D; i++)
                hq[i] = check_value(&s);
        for (size_t i = 0; ran && i < (size_t)N * D; i++)
                hx[i] = check_value(&s);
        ran = ran && cudaMalloc((void **)&dq, qb) == cudaSuccess && cudaMalloc((void **)&dx, xb) == cudaSuccess &&
              cudaMalloc((void **)&dv, vb) == cudaSuccess &&
              cudaMemcpyAsync(dq, hq, qb, cudaMemcpyHostToDevice, st) == cudaSuccess &&
              cudaMemcpyAsync(dx, hx, xb, cudaMemcpyHostToDevice, st) == cudaSuccess &&
              (status = sgemm(h, dq, QC, dx, N, D, dv)) == CUBLAS_OK &&
              cudaMemcpyAsync(hv, dv, vb, cudaMemcpyDeviceToHost, st) == cudaSuccess &&
              cudaStreamSynchronize(st) == cudaSuccess;
        const double u = 0x1p-24, nd = D + 2.0, gamma = nd * u / (1.0 - nd * u);
        for (uint32_t g = 0; ran && within && g < QC; g++)
                for (uint32_t r = 0; within && r < N; r++) {
                        double exact = 0.0, abs_sum = 0.0;
                        for (uint32_t j = 0; j < D; j++) {
                                double p = (double)hq[(size_t)g * D + j] * (double)hx[(size_t)r * D + j];
                                exact += p;
                                abs_sum += fabs(p);
                        }
                        within = fabs((double)hv[(size_t)g * N + r] - exact) <= gamma * abs_sum;
                        if (!within)
                                SET_WHY(device, "never used: its check's value (%u, %u) is %.9g, %.3g from the float64 sum, "
                                        "past the bound %.3g", g, r, (double)hv[(size_t)g * N + r],
                                        fabs((double)hv[(size_t)g * N + r] - exact), gamma * abs_sum);
                }
        if (!ran && status != CUBLAS_OK)
                SET_WHY(device, "a try failed: its check's product failed (cuBLAS status %d)", status);
        else if (!ran)
                SET_WHY(device, "a try failed: its check %s",
                        !(hq && hx && hv) ? "had no host memory" : "could not allocate or copy");
        /* The stream is idle here (synchronised, or failed): plain frees. */
        cudaFree(dq);
        cudaFree(dx);
        cudaFree(dv);
        free(hq);
        free(hx);
        free(hv);
        return !ran ? -1 : within ? 1 : 0;
}

/* An attempt that could not run: the device stays unchecked, up to CHECK_TRIES
 * times. Under lock. */
static void failed_try(int device)
{
        if (++devices[device].failures >= CHECK_TRIES)
                devices[device].state = VEC_CUBLAS_OWN;
}

bool vec_cublas_product(void *stream, const float *q, uint32_t qc, const float *x, uint64_t n, uint32_t d, float *v)
{
        cudaStream_t st = (cudaStream_t)stream;
        int device = -1;
        bool done = false;

        if (n == 0 || qc == 0 || d == 0)
                return false;
        pthread_once(&load_once, load);
        /* Only on a clean runtime state: the errors of what is tried here are cleared
         * (the own kernel runs instead), and must never be taken for one of the
         * launch's earlier kernels, nor hide one. */
        if (!api_ok || cudaPeekAtLastError() != cudaSuccess || cudaGetDevice(&device) != cudaSuccess ||
            device < 0 || device >= MAX_DEVICES)
                return false;
        pthread_mutex_lock(&lock);
        if (devices[device].state != VEC_CUBLAS_OWN) {
                cublas_handle h = handle_of(device, st);
                if (!h) {
                        failed_try(device);
                } else if (devices[device].state == VEC_CUBLAS_UNCHECKED) {
                        int c = check_device(device, h, st);
                        if (c == 1) {
                                devices[device].state = VEC_CUBLAS_USED;
                                devices[device].why[0] = '\0';
                        } else if (c == 0) {
                                devices[device].state = VEC_CUBLAS_OWN; /* a wrong value: never again */
                        } else {
                                failed_try(device);
                        }
                }
                /* Enqueued only: the handle is this stream's alone, so the lock is not
                 * needed past the call. */
                if (h && devices[device].state == VEC_CUBLAS_USED) {
                        pthread_mutex_unlock(&lock);
                        int status = sgemm(h, q, qc, x, n, d, v);
                        done = status == CUBLAS_OK;
                        pthread_mutex_lock(&lock);
                        if (!done) {
                                SET_WHY(device, "a try failed: cublasSgemm_v2_64 of %u x %llu x %u: status %d", qc,
                                        (unsigned long long)n, d, status);
                                failed_try(device);
                        }
                }
        }
        pthread_mutex_unlock(&lock);
        if (!done)
                (void)cudaGetLastError(); /* clean before: any error now is of what failed here */
        return done;
}

void vec_cublas_device_release(int device)
{
        unsigned kept = 0;

        pthread_mutex_lock(&lock);
        for (unsigned i = 0; i < n_handles; i++) {
                if (handles[i].device == device)
                        api.destroy(handles[i].h); /* on a failed context it may fail: it is gone all the same */
                else
                        handles[kept++] = handles[i];
        }
        n_handles = kept;
        pthread_mutex_unlock(&lock);
        (void)cudaGetLastError();
}

/* For tests/gpu's report only (with kiln_cuda_vec_cublas_why, the plugin's other
 * exported symbols): whether vec.search's products on `device` go through cuBLAS. */
__attribute__((visibility("default"))) int kiln_cuda_vec_cublas_state(int device)
{
        if (device < 0 || device >= MAX_DEVICES)
                return VEC_CUBLAS_UNCHECKED;
        pthread_mutex_lock(&lock);
        int r = devices[device].state;
        pthread_mutex_unlock(&lock);
        return r;
}

/* For tests/gpu's report only: why vec.search's products on `device` do not go
 * through cuBLAS (a sentence: not loaded, or the device's last failed try), "" when
 * they do or nothing failed, into buf. */
__attribute__((visibility("default"))) void kiln_cuda_vec_cublas_why(int device, char *buf, size_t cap)
{
        if (!cap)
                return;
        pthread_mutex_lock(&lock);
        snprintf(buf, cap, "%s", load_why[0] || device < 0 || device >= MAX_DEVICES ? load_why : devices[device].why);
        pthread_mutex_unlock(&lock);
}
