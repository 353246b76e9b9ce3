/* The HTTP API (SPEC §3): /api/v1/jobs. Loop thread only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct kilnd;
struct lws;
struct http_api_req;

/* Starts a request for `uri` (GET, or POST when `post`). Always returns >= 0 with a
 * request in *ret (it may already hold an error response), or -ENOMEM. */
int http_api_begin(struct kilnd *d, struct lws *wsi, const char *uri, bool post, struct http_api_req **ret);
/* A piece of a POST body, and its end (which runs the submit). */
void http_api_body(struct http_api_req *r, const void *in, size_t len);
void http_api_body_done(struct http_api_req *r);
/* Writes the next piece of the response when it is ready: returns 0 to go on, 1
 * when the response is complete and the connection stays, -1 to close. */
int http_api_write(struct http_api_req *r, struct lws *wsi);
/* The client is gone or the response was sent: frees the request (replies still in
 * flight are dropped). Accepts NULL. */
void http_api_end(struct http_api_req *r);
