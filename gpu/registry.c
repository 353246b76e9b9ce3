/* The backend list: the CUDA plugin (dlopen'ed, when present and usable), then the
 * built-in CPU backend. kilnd never links the CUDA runtime; only the plugin does. */
#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

#define PLUGIN_NAME "libkiln-cuda.so"

#ifndef KILN_PLUGIN_LIBDIR
#define KILN_PLUGIN_LIBDIR "/usr/lib/kiln"
#endif

/* Candidate directories, in order: the explicit one, $KILN_PLUGIN_DIR, the build
 * tree next to the executable (build/daemon/kilnd -> build/gpu/cuda), the libdir.
 * An explicit directory or $KILN_PLUGIN_DIR is the only place looked at when set, so
 * a test can point at an empty directory to run without the plugin. */
static size_t plugin_dirs(const char *explicit_dir, char dirs[][512], size_t max)
{
        size_t n = 0;
        const char *env = getenv("KILN_PLUGIN_DIR");

        if (explicit_dir && *explicit_dir) {
                snprintf(dirs[n++], 512, "%.500s", explicit_dir);
                return n;
        }
        if (env && *env) {
                snprintf(dirs[n++], 512, "%.500s", env);
                return n;
        }
        char exe[256];
        ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (len > 0 && n < max) {
                exe[len] = '\0';
                snprintf(dirs[n++], 512, "%s/../gpu/cuda", dirname(exe));
        }
        if (n < max)
                snprintf(dirs[n++], 512, "%s", KILN_PLUGIN_LIBDIR);
        return n;
}

static void load_plugin(const struct kiln_backends_config *cfg, struct kiln_backends *b)
{
        char dirs[4][512];
        size_t n_dirs = plugin_dirs(cfg->plugin_dir, dirs, 4);

        snprintf(b->plugin_status, sizeof(b->plugin_status), "not found");
        for (size_t i = 0; i < n_dirs; i++) {
                char path[1100];
                snprintf(path, sizeof(path), "%.500s/%s", dirs[i], PLUGIN_NAME);
                if (access(path, R_OK) != 0)
                        continue;
                void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
                snprintf(b->plugin_path, sizeof(b->plugin_path), "%.*s", (int)sizeof(b->plugin_path) - 1, path);
                if (!h) {
                        snprintf(b->plugin_status, sizeof(b->plugin_status), "cannot load: %.100s", dlerror());
                        return;
                }
                kiln_backend_plugin_init_fn *init = (kiln_backend_plugin_init_fn *)dlsym(h, KILN_BACKEND_PLUGIN_INIT);
                if (!init) {
                        snprintf(b->plugin_status, sizeof(b->plugin_status), "no %s symbol", KILN_BACKEND_PLUGIN_INIT);
                        dlclose(h);
                        return;
                }
                struct kiln_backend_host host = {
                        .api_version = KILN_BACKEND_API_VERSION,
                        .devices = cfg->devices ? cfg->devices : "all",
                        .memory_fraction = cfg->memory_fraction > 0.0 ? cfg->memory_fraction : 0.9,
                };
                struct kiln_backend *be = NULL;
                int r = init(&host, &be);
                if (r >= 0 && (!be || be->api_version != KILN_BACKEND_API_VERSION))
                        r = -EPROTO;
                if (r < 0) {
                        if (r == -ENODEV)
                                snprintf(b->plugin_status, sizeof(b->plugin_status), "no devices");
                        else
                                snprintf(b->plugin_status, sizeof(b->plugin_status), "init failed: %s", strerror(-r));
                        if (be && be->destroy && r != -EPROTO)
                                be->destroy(be->ctx);
                        dlclose(h);
                        return;
                }
                b->plugin_handle = h;
                b->list[b->n++] = be;
                snprintf(b->plugin_status, sizeof(b->plugin_status), "loaded");
                return;
        }
}

int kiln_backends_open(const struct kiln_backends_config *cfg, struct kiln_backends **ret)
{
        struct kiln_backends *b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        if (cfg->mode == KILN_BACKENDS_CPU)
                snprintf(b->plugin_status, sizeof(b->plugin_status), "disabled (gpu.backend = cpu)");
        else
                load_plugin(cfg, b);
        if (cfg->mode != KILN_BACKENDS_CUDA)
                b->list[b->n++] = kiln_backend_cpu();
        *ret = b;
        return 0;
}

void kiln_backends_free(struct kiln_backends *b)
{
        if (!b)
                return;
        for (size_t i = 0; i < b->n; i++)
                if (b->list[i] != kiln_backend_cpu() && b->list[i]->destroy)
                        b->list[i]->destroy(b->list[i]->ctx);
        if (b->plugin_handle)
                dlclose(b->plugin_handle);
        free(b);
}
