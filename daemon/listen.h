/* Listening and accepting. libwebsockets 4.1 cannot take over a listening socket
 * (that came in 4.4), so kilnd makes or is given its listening sockets and adopts
 * each as a raw descriptor: when one becomes readable, listen_callback accepts its
 * connections and hands each to the vhost as if its own listener had accepted it
 * (HTTP, WebSocket upgrade and TLS then work as usual). The same path serves the
 * socket kilnd opens on server.listen and those systemd passes (kiln.socket).
 *
 * libwebsockets' own listener logged a failed bind (an address not on this host, a
 * port in use) and went on listening on nothing while kilnd reported itself ready;
 * out of descriptors, its accept (and ours) spun on a socket that stayed readable,
 * logging each failure. Here a failed bind is an error, and a listener whose accept
 * finds no descriptor is not polled for a while. Loop thread. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <libwebsockets.h>

struct kilnd;

/* The address kilnd listens on for `host` and `port`: the host's first address,
 * IPv4 before IPv6 (a name, "localhost" too, is resolved). Returns 0, or
 * -EADDRNOTAVAIL with why naming server.listen. --check-config calls it too. */
int listen_resolve(const char *host, uint16_t port, struct sockaddr_storage *ret, socklen_t *ret_len,
                   char *why, size_t size);
/* A non-blocking listening socket on the first address of `host` (IPv4 before
 * IPv6; a name, "localhost" too, is resolved) at `port`, its family in
 * *ret_family; or -errno after logging why, naming server.listen. */
int listen_open(struct kilnd *d, const char *host, uint16_t port, int *ret_family);
/* Hands listening socket fd (non-blocking) to the loop: listen_callback accepts on
 * it. Returns 0 or -ENOMEM. */
int listen_adopt(struct kilnd *d, int fd);
/* Adopts the n listening sockets systemd passed (fds 3, 4, ...), noting in
 * d->public_listener the first that is not on a loopback address; with auth off and
 * such a socket, refuses (-EPERM, logged). Returns 0 or -errno. */
int listen_adopt_systemd(struct kilnd *d, int n);
/* The callback of the "kiln-listen" protocol the sockets are adopted with. */
int listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
