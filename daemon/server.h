/* libwebsockets: the vhost, the WebSocket protocol, static files of the web UI, the
 * HTTP endpoints, and the loop's timers. */
#pragma once

struct kilnd;

/* Creates the context and the listening vhost from d->cfg. Returns >= 0 or -errno. */
int server_start(struct kilnd *d);
/* Serves until d->quit; handles signals (via d->sig_*), draining and reloads. */
void server_run(struct kilnd *d);
/* Destroys the context (closing every connection). Accepts a never-started server. */
void server_stop(struct kilnd *d);
/* Makes sure the deadline timer fires for the earliest armed deadline. */
void server_arm_deadlines(struct kilnd *d);
