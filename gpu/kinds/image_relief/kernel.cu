// image.relief on the GPU: the per-pixel stages (brightness, orientation, the
// area-averaged shrink into the heightfield) and, at tolerance 0, the whole
// full-grid mesh, each thread one grid point, triangle or vertex, with the
// functions of relief_math.h that the CPU path uses, in the same order: the bytes
// are the CPU's (relief_cuda.h).
#include <stdlib.h>

#include "relief_cuda.h"
#include "relief_math.h"

namespace {

struct task {
        relief_spec s;
        uint32_t mode;
};

__host__ __device__ task unpack(const uint32_t *w)
{
        task t;
        t.s.src_w = w[RELIEF_W_SRC_W];
        t.s.src_h = w[RELIEF_W_SRC_H];
        t.s.orientation = (int)w[RELIEF_W_ORIENT];
        t.s.channels = (int)w[RELIEF_W_CHANNELS];
        t.s.depth = (int)w[RELIEF_W_DEPTH];
        t.s.ori_w = w[RELIEF_W_ORI_W];
        t.s.ori_h = w[RELIEF_W_ORI_H];
        t.s.res_w = w[RELIEF_W_RES_W];
        t.s.res_h = w[RELIEF_W_RES_H];
        t.s.grid_w = w[RELIEF_W_GRID_W];
        t.s.grid_h = w[RELIEF_W_GRID_H];
        t.s.invert = (int)w[RELIEF_W_INVERT];
        t.s.pitch_x = kiln_cuda_get_f64(w, RELIEF_W_PITCH_X);
        t.s.pitch_y = kiln_cuda_get_f64(w, RELIEF_W_PITCH_Y);
        t.s.base = kiln_cuda_get_f64(w, RELIEF_W_BASE);
        t.s.max_h = kiln_cuda_get_f64(w, RELIEF_W_MAX_H);
        t.mode = w[RELIEF_W_MODE];
        return t;
}

uint64_t get_u64(const uint32_t *w, unsigned slot)
{
        return (uint64_t)w[slot] | (uint64_t)w[slot + 1] << 32;
}

__host__ __device__ uint64_t tri_count(const relief_spec &s)
{
        return 2ull * (s.grid_w - 1) * (s.grid_h - 1) + 3ull * relief_ring_len(s.grid_w, s.grid_h);
}

__host__ __device__ uint64_t vertex_count(const relief_spec &s)
{
        return (uint64_t)s.grid_w * s.grid_h + relief_ring_len(s.grid_w, s.grid_h) + 1;
}

__global__ void heights_kernel(const kiln_cuda_desc *desc, const uint8_t *pixels, double *h)
{
        const task t = unpack(desc->params);
        uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
        if (k < (uint64_t)t.s.grid_w * t.s.grid_h)
                h[k] = relief_point_height(&t.s, pixels, k);
}

__global__ void stl_kernel(const kiln_cuda_desc *desc, const double *h, uint8_t *out)
{
        const relief_spec s = unpack(desc->params).s;
        uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x, n = tri_count(s);
        if (k == 0) {
                const char text[] = RELIEF_STL_HEADER;
                for (int b = 0; b < 80; b++)
                        out[b] = b < (int)sizeof(text) - 1 ? (uint8_t)text[b] : (uint8_t)' ';
                *(uint32_t *)(out + 80) = (uint32_t)n;
        }
        if (k >= n)
                return;
        uint32_t v[3];
        float p[3][3];
        relief_full_tri(k, s.grid_w, s.grid_h, v);
        for (int c = 0; c < 3; c++)
                relief_full_vertex(v[c], s.grid_w, s.grid_h, h, s.pitch_x, s.pitch_y, p[c]);
        relief_stl_record(p[0], p[1], p[2], out + 84 + 50 * k);
}

__global__ void glb_positions_kernel(const kiln_cuda_desc *desc, const double *h, float *out)
{
        const relief_spec s = unpack(desc->params).s;
        uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
        if (k >= vertex_count(s))
                return;
        float mm[3];
        relief_full_vertex(k, s.grid_w, s.grid_h, h, s.pitch_x, s.pitch_y, mm);
        relief_to_gltf(mm, out + 3 * k);
}

__global__ void glb_indices_kernel(const kiln_cuda_desc *desc, uint32_t *out)
{
        const relief_spec s = unpack(desc->params).s;
        uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
        if (k >= tri_count(s))
                return;
        relief_full_tri(k, s.grid_w, s.grid_h, out + 3 * k);
}

unsigned blocks(uint64_t n)
{
        return (unsigned)((n + 255) / 256);
}

// A launch that fails: how a host-side failure reaches the core (cudaGetLastError).
__global__ void fail_kernel() {}

} // namespace

// The core copied the descriptors to the device; the host addresses of the decoded
// rows are in them, so they come back first (a few hundred bytes). Each task's rows
// then go to the device, its heights are computed, and its output region filled.
// Device memory comes from the stream-ordered pool and goes back to it in order.
extern "C" void relief_cuda_launch(const kiln_cuda_launch *l)
{
        cudaStream_t s = (cudaStream_t)l->stream;
        kiln_cuda_desc *descs = (kiln_cuda_desc *)malloc(l->n_tasks * sizeof(*descs));
        if (!descs) {
                fail_kernel<<<0, 1, 0, s>>>();
                return;
        }
        if (cudaMemcpyAsync(descs, l->desc, l->n_tasks * sizeof(*descs), cudaMemcpyDeviceToHost, s) != cudaSuccess ||
            cudaStreamSynchronize(s) != cudaSuccess) {
                free(descs);
                return;
        }
        for (unsigned c = 0; c < l->n_tasks; c++) {
                const task t = unpack(descs[c].params);
                const void *host_pixels = (const void *)(uintptr_t)get_u64(descs[c].params, RELIEF_W_PIXELS);
                uint64_t pixel_bytes = get_u64(descs[c].params, RELIEF_W_PIXEL_BYTES);
                uint64_t cells = (uint64_t)t.s.grid_w * t.s.grid_h;
                uint8_t *d_pixels = NULL;
                double *d_h = NULL;
                if (cudaMallocAsync((void **)&d_pixels, pixel_bytes, s) != cudaSuccess)
                        break;
                if (cudaMallocAsync((void **)&d_h, cells * sizeof(double), s) != cudaSuccess) {
                        cudaFreeAsync(d_pixels, s);
                        break;
                }
                uint8_t *out = (uint8_t *)l->out + descs[c].out_offset;
                const kiln_cuda_desc *d = l->desc + c;
                if (cudaMemcpyAsync(d_pixels, host_pixels, pixel_bytes, cudaMemcpyHostToDevice, s) == cudaSuccess) {
                        heights_kernel<<<blocks(cells), 256, 0, s>>>(d, d_pixels, d_h);
                        if (t.mode == RELIEF_OUT_HEIGHTS) {
                                cudaMemcpyAsync(out, d_h, cells * sizeof(double), cudaMemcpyDeviceToDevice, s);
                        } else if (t.mode == RELIEF_OUT_STL) {
                                stl_kernel<<<blocks(tri_count(t.s)), 256, 0, s>>>(d, d_h, out);
                        } else {
                                glb_positions_kernel<<<blocks(vertex_count(t.s)), 256, 0, s>>>(d, d_h, (float *)out);
                                glb_indices_kernel<<<blocks(tri_count(t.s)), 256, 0, s>>>(
                                        d, (uint32_t *)(out + 12 * vertex_count(t.s)));
                        }
                }
                cudaFreeAsync(d_pixels, s);
                cudaFreeAsync(d_h, s);
        }
        free(descs);
}
