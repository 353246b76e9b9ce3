/* The score-model scenario's set-up: before the load starts, one connection asks
 * the server for its models (model.list) so that the random rows have the named
 * model's feature count. The request goes through setup.c; the load itself runs
 * on load.c's connections. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench.h"

/* The features of model `name` in a `models` reply, or 0. */
static json_int_t features_of(const json_t *reply, const char *name)
{
        const json_t *models = json_object_get(reply, "models"), *m;
        size_t i;

        json_array_foreach(models, i, m) {
                const char *n = json_string_value(json_object_get(m, "name"));
                if (n && !strcmp(n, name))
                        return json_integer_value(json_object_get(m, "features"));
        }
        return 0;
}

int bench_model_setup(const struct bench_opts *o, char *err, size_t size)
{
        json_t *reply = bench_setup_ask(o, json_pack("{s:s}", "op", "model.list"), err, size);
        int r = -ECONNREFUSED;

        if (reply && strcmp(bench_reply_op(reply), "models") == 0) {
                json_int_t features = features_of(reply, o->model);
                if (!features) {
                        snprintf(err, size, "the server has no model \"%s\" (model.list); upload it with kilnctl "
                                 "model put", o->model);
                        r = -ENOENT;
                } else if ((r = bench_model_target(o->model, features > 0 && features <= 4096 ? (uint32_t)features
                                                                                              : 0)) < 0) {
                        snprintf(err, size, "model \"%s\" has %lld features, more than a job of kiln-bench sends",
                                 o->model, (long long)features);
                }
        } else if (reply) {
                snprintf(err, size, "model.list: %s",
                         json_string_value(json_object_get(reply, "message")) ?: bench_reply_op(reply));
                r = -EACCES;
        }
        json_decref(reply);
        return r;
}
