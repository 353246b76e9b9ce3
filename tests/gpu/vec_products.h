/* How vec.search computed its products on a CUDA device, as the plugin says: for
 * the GPU check's report (bench_kernels, test_backend_ops). */
#pragma once

#include <stdio.h>

struct kiln_jtext;

/* For the first CUDA device: "cuBLAS" (it passed its check and is used), "own
 * kernel" (cuBLAS is not used, and why) or "not tried" (no vec.search launch has
 * reached the product yet, or no plugin), with the libcublas mapped into this
 * process: as the keys vec_products, vec_products_why and libcublas of the open
 * object j (when not NULL), and as a line to out (when not NULL) after `prefix`. */
void vec_products_report(void *plugin, struct kiln_jtext *j, FILE *out, const char *prefix);
