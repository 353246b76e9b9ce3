/* KILN_HD marks a function that both the C compiler and nvcc compile: the math
 * headers of the kinds are one source of truth for the CPU and the GPU (STYLE habit
 * 6). Plain C sees nothing; nvcc sees __host__ __device__. */
#pragma once

#ifndef KILN_HD
#ifdef __CUDACC__
#define KILN_HD __host__ __device__
#else
#define KILN_HD
#endif
#endif
