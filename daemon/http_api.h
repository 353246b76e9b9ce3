/* The HTTP API (SPEC §3): /api/v1/jobs. Loop thread only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct kilnd;
struct lws;
struct http_api_req;

/* Writes a whole response of kilnd's own: status, type, length, no caching and
 * `Connection: close` (one response per connection; see server.c), then `len`
 * bytes of body (none for len 0). 0, or -1 when lws cannot write it. */
int http_write_response(struct lws *wsi, unsigned status, const char *type, const void *body, size_t len);

/* Why a connection or request past server.max_connections is turned away, in buf. */
const char *http_api_full_message(const struct kilnd *d, char *buf, size_t size);

/* The protocol's error object for `code` (a kiln error name), naming `field`
 * (or none), as a malloc'd JSON text; NULL when out of memory. */
char *http_api_error_json(const char *code, const char *field, const char *message);

/* Told when a request's response is ready to be written: within http_api_begin or
 * http_api_body_done when it is known at once, or later (a submit's `accepted`
 * once the job is stored, a part once it is read). */
typedef void (*http_api_ready_fn)(struct lws *wsi);

/* Starts a request for `uri` (GET, or POST when `post`). Always returns >= 0 with a
 * request in *ret (it may already hold an error response), or -ENOMEM. *ret is
 * set before on_ready can be called. */
int http_api_begin(struct kilnd *d, struct lws *wsi, const char *uri, bool post, http_api_ready_fn on_ready,
                   struct http_api_req **ret);
/* A piece of a POST body, and its end (which runs the submit). */
void http_api_body(struct http_api_req *r, const void *in, size_t len);
void http_api_body_done(struct http_api_req *r);
/* Whether the response is ready (http_api_ready_fn has been called). */
bool http_api_ready(const struct http_api_req *r);
/* Writes a response that is already known and has no payload to stream (an
 * error, a status, an `accepted` answered from memory) whole, at once: returns 1
 * when it is written, 0 when it must wait for http_api_write, -1 to close. */
int http_api_write_now(struct http_api_req *r, struct lws *wsi);
/* Writes the next piece of the response when it is ready: returns 0 to go on, 1
 * when the response is complete, -1 when it cannot be written. */
int http_api_write(struct http_api_req *r, struct lws *wsi);
/* The client is gone or the response was sent: frees the request (replies still in
 * flight are dropped). Accepts NULL. */
void http_api_end(struct http_api_req *r);
