/* Case sets of the kinds' tests (see kind_tests.h). */
#include <stdlib.h>

#include "kind_tests.h"

struct kiln_cases *kiln_cases_new(size_t n, size_t storage_bytes)
{
        struct kiln_cases *cs = calloc(1, sizeof(*cs));

        if (!cs)
                return NULL;
        cs->cases = calloc(n ? n : 1, sizeof(*cs->cases));
        cs->storage = calloc(1, storage_bytes ? storage_bytes : 1);
        if (!cs->cases || !cs->storage) {
                free(cs->cases);
                free(cs->storage);
                free(cs);
                return NULL;
        }
        cs->n = n;
        return cs;
}

void kiln_cases_free(struct kiln_cases *cs)
{
        if (!cs)
                return;
        if (cs->release)
                cs->release(cs);
        else
                free(cs->storage);
        free(cs->cases);
        free(cs);
}
