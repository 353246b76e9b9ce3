/* Scratch directories for unit tests: under $KILN_TEST_TMPDIR (CTest sets it to
 * the build tree, tests/CMakeLists.txt), else /tmp/kiln-test. Include after
 * <cmocka.h>. */
#pragma once

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Creates a fresh directory named PREFIX-XXXXXX (mkdir -p of the base first) and
 * writes its path into buf. */
static inline void unit_tmpdir_make(const char *prefix, char *buf, size_t size)
{
        const char *base = getenv("KILN_TEST_TMPDIR");
        char path[PATH_MAX];

        if (!base || !*base)
                base = "/tmp/kiln-test";
        snprintf(path, sizeof(path), "%s", base);
        for (char *p = path + 1; *p; p++) {
                if (*p == '/') {
                        *p = '\0';
                        mkdir(path, 0700);
                        *p = '/';
                }
        }
        mkdir(path, 0700);
        snprintf(buf, size, "%s/%s-XXXXXX", base, prefix);
        assert_non_null(mkdtemp(buf));
}

static inline int unit_tmpdir_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

/* Removes a directory made by unit_tmpdir_make with everything in it. */
static inline void unit_tmpdir_remove(const char *dir)
{
        assert_int_equal(nftw(dir, unit_tmpdir_remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}
