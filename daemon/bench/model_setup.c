/* The score-model scenario's set-up: before the load starts, one connection asks
 * the server for its models (model.list) so that the random rows have the named
 * model's feature count. Like vec_setup.c it uses kilnctl's synchronous client
 * (daemon/ctl/ws.c); the load itself runs on load.c's connections. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench.h"
#include "ws.h"

#define SETUP_TIMEOUT_MS 10000

/* Sends one message (a new reference, stolen) with ref `ref` and returns the first
 * text reply carrying it, or NULL with err filled. */
static json_t *call(struct ctl_ws *c, json_t *msg, int ref, char *err, size_t size)
{
        char *text;
        int r;

        json_object_set_new(msg, "ref", json_integer(ref));
        text = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        if (!text || ctl_ws_send_text(c, text, strlen(text)) < 0) {
                free(text);
                snprintf(err, size, "cannot send: %s", ctl_ws_error(c));
                return NULL;
        }
        free(text);
        for (;;) {
                struct ctl_msg *m;
                if ((r = ctl_ws_recv(c, SETUP_TIMEOUT_MS, &m)) < 0) {
                        snprintf(err, size, "no reply: %s", r == -ETIMEDOUT ? "timed out" : ctl_ws_error(c));
                        return NULL;
                }
                json_t *reply = m->binary ? NULL : json_loads((const char *)m->data, 0, NULL);
                ctl_msg_free(m);
                if (reply && json_integer_value(json_object_get(reply, "ref")) == ref)
                        return reply;
                json_decref(reply);
        }
}

static const char *op_of(const json_t *m)
{
        const char *op = json_string_value(json_object_get(m, "op"));
        return op ? op : "";
}

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
        struct ctl_ws *c = NULL;
        int r = ctl_ws_connect(o->url, "kiln.v1", SETUP_TIMEOUT_MS, &c, err, size);

        if (r < 0)
                return r;
        json_t *hello = json_pack("{s:s, s:s}", "op", "hello", "client", "kiln-bench/1");
        if (hello && o->token)
                json_object_set_new(hello, "token", json_string(o->token));
        json_t *reply = hello ? call(c, hello, 1, err, size) : NULL;
        if (reply && strcmp(op_of(reply), "welcome") != 0) {
                snprintf(err, size, "hello refused: %s",
                         json_string_value(json_object_get(reply, "message")) ?: op_of(reply));
                json_decref(reply);
                reply = NULL;
        }
        if (reply) {
                json_decref(reply);
                json_t *list = json_pack("{s:s}", "op", "model.list");
                reply = list ? call(c, list, 2, err, size) : NULL;
        }
        r = -ECONNREFUSED;
        if (reply && strcmp(op_of(reply), "models") == 0) {
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
                         json_string_value(json_object_get(reply, "message")) ?: op_of(reply));
                r = -EACCES;
        }
        json_decref(reply);
        ctl_ws_free(c);
        return r;
}
