/* How vec.search computed its products on a CUDA device, as the plugin says: for
 * the GPU check's report (bench_kernels, test_backend_ops). */
#pragma once

#include <stddef.h>
#include <stdio.h>

struct kiln_jtext;

/* "cuBLAS" (it passed its check and is used), "own kernel" (cuBLAS is not used:
 * `why` says why) or "not tried" (no vec.search launch has reached the product
 * yet, or no plugin); `lib`: the libcublas mapped into this process, or "". */
const char *vec_products(void *plugin, int ordinal, char *lib, size_t lib_cap, char *why, size_t why_cap);
/* The same for the first CUDA device, as the keys vec_products, vec_products_why
 * and libcublas of the open object j (when not NULL), and as a line to out (when not
 * NULL) after `prefix`. */
void vec_products_report(void *plugin, struct kiln_jtext *j, FILE *out, const char *prefix);
