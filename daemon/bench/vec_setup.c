/* The vec scenario's set-up: before the load starts, one connection asks the
 * server for the collection (vec.info) so that the random queries have its dim.
 * The request goes through setup.c; the load itself runs on load.c's
 * connections. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench.h"

int bench_vec_setup(const struct bench_opts *o, char *err, size_t size)
{
        json_t *reply = bench_setup_ask(o, json_pack("{s:s, s:s}", "op", "vec.info", "collection", o->collection),
                                        err, size);
        int r = -ECONNREFUSED;

        if (reply && strcmp(bench_reply_op(reply), "vec") == 0) {
                json_int_t dim = json_integer_value(json_object_get(reply, "dim"));
                r = bench_vec_target(o->collection, dim > 0 && dim <= 4096 ? (uint32_t)dim : 0);
                if (r < 0)
                        snprintf(err, size, "collection \"%s\" has no usable dim", o->collection);
        } else if (reply) {
                snprintf(err, size, "vec.info of \"%s\": %s", o->collection,
                         json_string_value(json_object_get(reply, "message")) ?: bench_reply_op(reply));
                r = -ENOENT;
        }
        json_decref(reply);
        return r;
}
