/* The built-in job kinds. Adding a kind means adding one line here. */
#include <string.h>

#include "kind.h"
#include "lens_nfw/lens_nfw.h"
#include "lens_raytrace/lens_raytrace.h"

const struct kiln_kind *const kiln_kinds[] = {
        &kiln_kind_lens_nfw,
        &kiln_kind_lens_raytrace,
        NULL,
};

const struct kiln_kind *kiln_kind_find(const char *name)
{
        if (!name)
                return NULL;
        for (size_t i = 0; kiln_kinds[i]; i++)
                if (strcmp(kiln_kinds[i]->name, name) == 0)
                        return kiln_kinds[i];
        return NULL;
}
