/* The fixture of the store's unit tests: a store (sync=full, 256 MiB map) opened in
 * a fresh scratch directory, removed with everything in it afterwards. Include
 * after <cmocka.h>. */
#pragma once

#include <limits.h>
#include <stdlib.h>

#include "store.h"
#include "unit_tmpdir.h"

#define MAP_SIZE (256ull << 20)

struct fixture {
        char dir[PATH_MAX];
        struct store *s;
};

/* Opens a store in a new directory PREFIX-XXXXXX; *state becomes the fixture. */
static inline int store_fixture_setup(void **state, const char *prefix)
{
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        unit_tmpdir_make(prefix, f->dir, sizeof(f->dir));
        assert_int_equal(store_open(f->dir, MAP_SIZE, STORE_SYNC_FULL, &f->s), 0);
        *state = f;
        return 0;
}

static inline int store_fixture_teardown(void **state)
{
        struct fixture *f = *state;

        store_close(f->s);
        unit_tmpdir_remove(f->dir);
        free(f);
        return 0;
}
