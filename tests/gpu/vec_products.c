/* See vec_products.h. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "jtext.h"
#include "vec_products.h"

static const char *vec_products(void *plugin, int ordinal, char *lib, size_t lib_cap, char *why, size_t why_cap)
{
        int (*state)(int) = NULL;
        void (*reason)(int, char *, size_t) = NULL;
        FILE *f = fopen("/proc/self/maps", "r");
        char line[1024];

        lib[0] = '\0';
        why[0] = '\0';
        while (f && fgets(line, sizeof(line), f)) {
                char *p = strchr(line, '/');
                if (p && strstr(p, "libcublas.so")) {
                        p[strcspn(p, "\n")] = '\0';
                        snprintf(lib, lib_cap, "%s", p);
                        break;
                }
        }
        if (f)
                fclose(f);
        if (plugin) {
                *(void **)&state = dlsym(plugin, "kiln_cuda_vec_cublas_state");
                *(void **)&reason = dlsym(plugin, "kiln_cuda_vec_cublas_why");
        }
        if (reason)
                reason(ordinal, why, why_cap);
        int st = state ? state(ordinal) : 0;
        return st > 0 ? "cuBLAS" : st < 0 ? "own kernel" : "not tried";
}

void vec_products_report(void *plugin, struct kiln_jtext *j, FILE *out, const char *prefix)
{
        char lib[512], why[512];
        const char *products = vec_products(plugin, 0, lib, sizeof(lib), why, sizeof(why));

        if (j) {
                kiln_jtext_key(j, "vec_products");
                kiln_jtext_str(j, products);
                kiln_jtext_key(j, "vec_products_why");
                kiln_jtext_str(j, why);
                kiln_jtext_key(j, "libcublas");
                if (lib[0])
                        kiln_jtext_str(j, lib);
                else
                        kiln_jtext_null(j);
        }
        if (out)
                fprintf(out, "%svec.search products on the first CUDA device: %s (libcublas: %s)%s%s\n", prefix,
                        products, lib[0] ? lib : "not loaded", why[0] ? "; cuBLAS " : "", why);
}
