/* What a scenario asks the server before the load starts (vec_setup.c: a
 * collection's dim; model_setup.c: a model's feature count): one connection with
 * kilnctl's synchronous client (daemon/ctl/ws.c), hello, one request, its reply.
 * The load itself runs on load.c's connections. */
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

const char *bench_reply_op(const json_t *m)
{
        const char *op = json_string_value(json_object_get(m, "op"));
        return op ? op : "";
}

json_t *bench_setup_ask(const struct bench_opts *o, json_t *request, char *err, size_t size)
{
        struct ctl_ws *c = NULL;
        json_t *reply = NULL;

        if (!request) {
                snprintf(err, size, "out of memory");
                return NULL;
        }
        char why[256];
        if (ctl_ws_connect(o->url, "kiln.v1", SETUP_TIMEOUT_MS, &c, why, sizeof(why)) < 0) {
                snprintf(err, size, "cannot connect to %s: %s", o->url, why);
                json_decref(request);
                return NULL;
        }
        json_t *hello = json_pack("{s:s, s:s}", "op", "hello", "client", "kiln-bench/1");
        if (hello && o->token)
                json_object_set_new(hello, "token", json_string(o->token));
        reply = hello ? call(c, hello, 1, err, size) : NULL;
        if (reply && strcmp(bench_reply_op(reply), "welcome") != 0) {
                snprintf(err, size, "hello refused: %s",
                         json_string_value(json_object_get(reply, "message")) ?: bench_reply_op(reply));
                json_decref(reply);
                reply = NULL;
        }
        if (reply) {
                json_decref(reply);
                reply = call(c, request, 2, err, size);
        } else {
                json_decref(request);
        }
        ctl_ws_free(c);
        return reply;
}
