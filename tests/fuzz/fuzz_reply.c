/* libFuzzer target: one server reply through kiln-bench's in-place reader
 * (daemon/bench/reply_scan.c); whenever it takes a reply, jansson must read the
 * same reply, with the same fields. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "reply_scan.h"

static bool same_string(const char *kept, json_t *v)
{
        return !strcmp(kept, json_string_value(v) ? json_string_value(v) : "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct reply r;

        if (reply_scan((const char *)data, size, &r) < 0)
                return 0;
        json_error_t err;
        json_t *m = json_loadb((const char *)data, size, 0, &err);
        if (!json_is_object(m))
                abort(); /* taken, but not a JSON object */
        json_t *ref = json_object_get(m, "ref");
        if (!same_string(r.op, json_object_get(m, "op")) || !same_string(r.job, json_object_get(m, "job")) ||
            !same_string(r.state, json_object_get(m, "state")) || r.has_ref != json_is_integer(ref) ||
            (r.has_ref && r.ref != (uint64_t)json_integer_value(ref)) ||
            r.n_parts != json_array_size(json_object_get(m, "parts")))
                abort(); /* the two readers disagree */
        json_decref(m);
        return 0;
}
