/* kilnctl's session with the server: connecting, saying hello, sending messages
 * and waiting for the replies to them (kilnctl.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ctl.h"
#include "kilnctl.h"
#include "proto.h"
#include "ws.h"

#define DEFAULT_MAX_MESSAGE (64u << 20) /* server.max_message_bytes when the welcome names none */

int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int conn_recv(struct conn *c, int64_t default_ms, const char *what, struct ctl_msg **ret)
{
        int64_t timeout = default_ms;

        int r = 0;
        if (c->deadline >= 0) {
                /* Checked here too: a steady stream of messages must not defer it. */
                timeout = c->deadline - now_ms();
                if (timeout <= 0)
                        r = -ETIMEDOUT;
        }
        if (r == 0)
                r = ctl_ws_recv(c->ws, timeout, ret);
        if (r == -ETIMEDOUT)
                fprintf(stderr, "kilnctl: timed out waiting for %s (%s)\n", what, c->url);
        else if (r < 0)
                fprintf(stderr, "kilnctl: connection to %s lost while waiting for %s: %s\n", c->url, what,
                        ctl_ws_error(c->ws));
        return r;
}

int conn_send(struct conn *c, json_t *msg)
{
        char *text = json_dumps(msg, JSON_COMPACT);
        int r = text ? ctl_ws_send_text(c->ws, text, strlen(text)) : -ENOMEM;

        free(text);
        if (r < 0)
                fprintf(stderr, "kilnctl: cannot send to %s: %s\n", c->url, r == -ENOMEM ? "out of memory" :
                        ctl_ws_error(c->ws));
        return r;
}

static bool errors_as_json;

void print_errors_as_json(bool on)
{
        errors_as_json = on;
}

void print_error(const json_t *e)
{
        if (errors_as_json && json_is_object(e)) {
                json_t *copy = json_copy((json_t *)e);
                json_object_del(copy, "ref"); /* kilnctl's own numbering, as in its other output */
                print_json(copy, JSON_COMPACT);
                json_decref(copy);
                fflush(stdout);
        }
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *field = json_string_value(json_object_get(e, "field"));
        const char *msg = json_string_value(json_object_get(e, "message"));

        fprintf(stderr, "kilnctl: error %s%s%s%s: %s\n", code ? code : "(no code)", field ? " (field " : "",
                field ? field : "", field ? ")" : "", msg ? msg : "(no message)");
}

int conn_send_ref(struct conn *c, json_t *msg, int ref)
{
        if (!msg || json_object_set_new(msg, "ref", json_integer(ref)) < 0) {
                json_decref(msg);
                fprintf(stderr, "kilnctl: out of memory\n");
                return -ENOMEM;
        }
        int r = conn_send(c, msg);
        json_decref(msg);
        return r;
}

int conn_await(struct conn *c, int ref, int64_t default_ms, const char *what, json_t **ret)
{
        for (;;) {
                struct ctl_msg *m;
                int r = conn_recv(c, default_ms, what, &m);
                if (r < 0)
                        return r;
                json_t *j = m->binary ? NULL : json_loadb((const char *)m->data, m->len, 0, NULL);
                ctl_msg_free(m);
                if (json_integer_value(json_object_get(j, "ref")) == ref && json_is_integer(json_object_get(j, "ref"))) {
                        *ret = j;
                        return 0;
                }
                json_decref(j);
        }
}

int conn_call(struct conn *c, json_t *msg, const char *what, json_t **ret, int *ret_ref)
{
        int ref = ++c->next_ref;
        int r = conn_send_ref(c, msg, ref);

        if (r < 0)
                return r;
        if (ret_ref)
                *ret_ref = ref;
        return conn_await(c, ref, REPLY_TIMEOUT_MS, what, ret);
}

bool is_op(const json_t *j, const char *op)
{
        const char *o = json_string_value(json_object_get(j, "op"));
        return o && !strcmp(o, op);
}


/* ctl_ws's sink: the bytes of a result part, written to its file as they arrive;
 * the part file travels with its message (ctl_msg.sunk). */
static int on_part_bytes(void *ctx, const uint8_t *p, size_t len, bool last, void **ret_sunk)
{
        struct conn *c = ctx;

        if (!c->rx_part && ctl_part_file_new(c->out_dir, &c->rx_part) < 0)
                return -ENOMEM;
        ctl_part_file_feed(c->rx_part, p, len);
        if (!last)
                return 0;
        ctl_part_file_finish(c->rx_part);  /* a failure is the taker's to report */
        *ret_sunk = c->rx_part;
        c->rx_part = NULL;
        return 0;
}

static void release_part(void *sunk)
{
        ctl_part_file_free(sunk);
}

void conn_close(struct conn *c)
{
        ctl_ws_free(c->ws);   /* with the parts received but never taken */
        c->ws = NULL;
        ctl_part_file_free(c->rx_part);
        c->rx_part = NULL;
}

int conn_open(struct ctx *x)
{
        struct conn *c = &x->c;
        const char *url = x->a->val[OPT_URL], *token = x->a->val[OPT_TOKEN];
        char err[320];

        memset(c, 0, sizeof(*c));
        c->url = url;
        c->out_dir = x->a->val[OPT_OUT];
        c->json = x->a->val[OPT_JSON] != NULL;
        print_errors_as_json(c->json);
        c->deadline = x->timeout_s > 0 ? now_ms() + (int64_t)(x->timeout_s * 1000) : -1;
        /* --timeout-s bounds the whole command, the connection included. */
        int connect_ms = x->timeout_s > 0 && x->timeout_s * 1000 < CONNECT_TIMEOUT_MS
                                 ? (int)(x->timeout_s * 1000)
                                 : CONNECT_TIMEOUT_MS;
        connect_ms = connect_ms < 1 ? 1 : connect_ms;
        int r = ctl_ws_connect(url, "kiln.v1", connect_ms, &c->ws, err, sizeof(err));
        if (r == -EINVAL)
                return usage_error("bad --url \"%s\": expected ws://HOST:PORT/PATH or wss://...", url);
        if (r < 0) {
                fprintf(stderr, "kilnctl: cannot connect to %s: %s\n", url, err);
                return 1;
        }
        ctl_ws_set_sink(c->ws, on_part_bytes, release_part, c);
        json_t *hello = json_pack("{s:s, s:s}", "op", "hello", "client", "kilnctl/" KILN_VERSION);
        if (hello && token)
                json_object_set_new(hello, "token", json_string(token));
        json_t *reply;
        if (conn_call(c, hello, "the welcome", &reply, NULL) < 0)
                return 1;
        if (!is_op(reply, "welcome")) {
                print_error(reply);
                json_decref(reply);
                return 1;
        }
        json_int_t max = json_integer_value(json_object_get(json_object_get(reply, "limits"), "max_message_bytes"));
        c->max_message = max > 0 ? (size_t)max : DEFAULT_MAX_MESSAGE;
        json_decref(reply);
        return 0;
}

