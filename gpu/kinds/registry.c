/* Looking kinds up. The list itself, kiln_kinds[], is generated from gpu/kinds/KINDS
 * (kinds.cmake): adding a kind means adding its folder and one line there. */
#include <string.h>

#include "kind.h"

const struct kiln_kind *kiln_kind_find(const char *name)
{
        if (!name)
                return NULL;
        for (size_t i = 0; kiln_kinds[i]; i++)
                if (strcmp(kiln_kinds[i]->name, name) == 0)
                        return kiln_kinds[i];
        return NULL;
}
