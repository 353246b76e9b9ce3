/* libFuzzer target: one JSON document as the parameters of every kind, through the
 * schema validation and each kind's own checks; accepted parameters must be
 * canonical (validating the canonical form gives the same text), and their text
 * (kiln_params_text) is what jansson writes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kind.h"
#include "params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_t *in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
        if (!in)
                return 0;
        for (int k = 0; kiln_kinds[k]; k++) {
                const struct kiln_kind *kind = kiln_kinds[k];
                void *params = calloc(1, kind->params_size ? kind->params_size : 1);
                struct kiln_error err;
                json_t *canonical = NULL;
                if (params && kiln_params_validate(kind, in, &canonical, params, &err) >= 0) {
                        char *a = json_dumps(canonical, JSON_COMPACT | JSON_SORT_KEYS);
                        json_t *again = NULL;
                        if (kiln_params_validate(kind, canonical, &again, params, &err) < 0)
                                abort(); /* a canonical form that does not validate */
                        char *b = json_dumps(again, JSON_COMPACT | JSON_SORT_KEYS);
                        if (!a || !b || strcmp(a, b))
                                abort(); /* canonicalisation is not idempotent */
                        char *c = kiln_params_text(canonical);
                        if (!c || strcmp(a, c))
                                abort(); /* the fast text is not jansson's */
                        free(c);
                        if (kind->result_bytes)
                                (void)kind->result_bytes(params);
                        free(a);
                        free(b);
                        json_decref(again);
                        json_decref(canonical);
                }
                free(params);
        }
        json_decref(in);
        return 0;
}
