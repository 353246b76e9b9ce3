/* The vec scenario's set-up: before the load starts, one connection asks the
 * server for the collection (vec.info) so that the random queries have its dim.
 * It uses kilnctl's synchronous client (daemon/ctl/ws.c); the load itself runs
 * on load.c's connections. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench.h"
#include "ws.h"

#define SETUP_TIMEOUT_MS 10000

/* Sends one message (a new reference, stolen) and returns the first text reply
 * carrying ref 1, or NULL with err filled. */
static json_t *call(struct ctl_ws *c, json_t *msg, char *err, size_t size)
{
        char *text;
        int r;

        json_object_set_new(msg, "ref", json_integer(1));
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
                if (reply && json_integer_value(json_object_get(reply, "ref")) == 1)
                        return reply;
                json_decref(reply);
        }
}

static const char *op_of(const json_t *m)
{
        const char *op = json_string_value(json_object_get(m, "op"));
        return op ? op : "";
}

int bench_vec_setup(const struct bench_opts *o, char *err, size_t size)
{
        struct ctl_ws *c = NULL;
        json_t *reply;
        int r = ctl_ws_connect(o->url, "kiln.v1", SETUP_TIMEOUT_MS, &c, err, size);

        if (r < 0)
                return r;
        json_t *hello = json_pack("{s:s, s:s}", "op", "hello", "client", "kiln-bench/1");
        if (hello && o->token)
                json_object_set_new(hello, "token", json_string(o->token));
        reply = hello ? call(c, hello, err, size) : NULL;
        if (reply && strcmp(op_of(reply), "welcome") != 0) {
                snprintf(err, size, "hello refused: %s",
                         json_string_value(json_object_get(reply, "message")) ?: op_of(reply));
                json_decref(reply);
                reply = NULL;
        }
        if (reply) {
                json_decref(reply);
                json_t *info = json_pack("{s:s, s:s}", "op", "vec.info", "collection", o->collection);
                reply = info ? call(c, info, err, size) : NULL;
        }
        r = -ECONNREFUSED;
        if (reply && strcmp(op_of(reply), "vec") == 0) {
                json_int_t dim = json_integer_value(json_object_get(reply, "dim"));
                r = bench_vec_target(o->collection, dim > 0 && dim <= 4096 ? (uint32_t)dim : 0);
                if (r < 0)
                        snprintf(err, size, "collection \"%s\" has no usable dim", o->collection);
        } else if (reply) {
                snprintf(err, size, "vec.info of \"%s\": %s", o->collection,
                         json_string_value(json_object_get(reply, "message")) ?: op_of(reply));
                r = -ENOENT;
        }
        json_decref(reply);
        ctl_ws_free(c);
        return r;
}
