/* libFuzzer target: one configuration file through the INI loader and the
 * validation rules; a file that loads is printed and must load again. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static const char *const kinds[] = { "lens.nfw", "lens.raytrace", NULL };

static int load(const void *data, size_t size, struct kiln_config **ret)
{
        struct kiln_config_error err;
        char path[64];
        int fd = memfd_create("kiln-fuzz.conf", MFD_CLOEXEC);
        if (fd < 0)
                return -1;
        if (size && write(fd, data, size) != (ssize_t)size) {
                close(fd);
                return -1;
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        int r = kiln_config_load(path, false, NULL, kinds, ret, &err);
        if (r < 0) {
                char line[1024];
                kiln_config_error_format(&err, line, sizeof(line));
        }
        close(fd);
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kiln_config *c = NULL;

        if (load(data, size, &c) < 0)
                return 0;
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (f) {
                kiln_config_print(c, f);
                fclose(f);
                struct kiln_config *again = NULL;
                if (load(text, len, &again) < 0)
                        abort(); /* --print-config wrote something it cannot read back */
                kiln_config_free(again);
                free(text);
        }
        kiln_config_free(c);
        return 0;
}
