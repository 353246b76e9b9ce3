/* Listening and accepting (listen.h). */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "util.h"

static struct kilnd *listen_daemon; /* the callback has no user pointer of ours */

int listen_resolve(const char *host, uint16_t port, struct sockaddr_storage *ret, socklen_t *ret_len,
                   char *why, size_t size)
{
        /* The host's first address, IPv4 before IPv6. */
        struct addrinfo hints = { .ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM }, *all = NULL, *ai = NULL;
        int gai = getaddrinfo(host, NULL, &hints, &all);
        if (gai) {
                snprintf(why, size, "server.listen: cannot resolve the host '%.200s': %s", host, gai_strerror(gai));
                return -EADDRNOTAVAIL;
        }
        for (struct addrinfo *p = all; p; p = p->ai_next)
                if (!ai || (ai->ai_family != AF_INET && p->ai_family == AF_INET))
                        ai = p;
        memcpy(ret, ai->ai_addr, ai->ai_addrlen);
        *ret_len = ai->ai_addrlen;
        if (ai->ai_family == AF_INET)
                ((struct sockaddr_in *)ret)->sin_port = htons(port);
        else
                ((struct sockaddr_in6 *)ret)->sin6_port = htons(port);
        freeaddrinfo(all);
        return 0;
}

int listen_open(struct kilnd *d, const char *host, uint16_t port, int *ret_family)
{
        struct sockaddr_storage sa;
        socklen_t sa_len;
        char why[320];
        if (listen_resolve(host, port, &sa, &sa_len, why, sizeof(why)) < 0) {
                log_error("%s", why);
                return -EADDRNOTAVAIL;
        }
        int one = 1;
        int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int r = fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                                bind(fd, (struct sockaddr *)&sa, sa_len) < 0 || listen(fd, SOMAXCONN) < 0
                        ? -errno
                        : 0;
        *ret_family = sa.ss_family;
        if (r < 0) {
                log_error("server.listen: cannot listen on %s: %s", d->cfg->server.listen, strerror(-r));
                if (fd >= 0)
                        close(fd);
                return r;
        }
        return fd;
}

/* Listening sockets not polled for a while after accept found no descriptor (or
 * no memory) for a connection: it waits in the listen backlog meanwhile, instead of
 * the loop spinning on a socket that stays readable. A line is logged at most every
 * 10 s, with how many failures it stands for. */
#define ACCEPT_PAUSE_MS 100
static struct {
        lws_sorted_usec_list_t sul;
        struct lws *wsi[8];
        unsigned n;
        struct log_every failures;
} accept_pause;

static void resume_accepts(lws_sorted_usec_list_t *sul)
{
        for (unsigned i = 0; i < accept_pause.n; i++)
                lws_rx_flow_control(accept_pause.wsi[i], 1);
        accept_pause.n = 0;
}

static void accept_failed(struct kilnd *d, struct lws *wsi, int err)
{
        uint64_t failed;
        if (log_every_due(&accept_pause.failures, 10000, &failed))
                log_warning("accept: %s: new connections wait in the listen backlog (%llu failures since the last "
                            "such line)",
                            strerror(err), (unsigned long long)failed);
        if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
                return;
        bool paused = false;
        for (unsigned i = 0; i < accept_pause.n; i++)
                paused |= accept_pause.wsi[i] == wsi;
        if (!paused && accept_pause.n < sizeof(accept_pause.wsi) / sizeof(accept_pause.wsi[0])) {
                accept_pause.wsi[accept_pause.n++] = wsi;
                lws_rx_flow_control(wsi, 0);
        }
        lws_sul_schedule(d->lws, 0, &accept_pause.sul, resume_accepts, ACCEPT_PAUSE_MS * LWS_US_PER_MS);
}

int listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct kilnd *d = listen_daemon;

        switch (reason) {
        case LWS_CALLBACK_RAW_RX_FILE: {
                int lfd = lws_get_socket_fd(wsi);
                for (;;) {
                        int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                        if (c < 0) {
                                if (errno == EINTR || errno == ECONNABORTED)
                                        continue;
                                if (errno != EAGAIN && errno != EWOULDBLOCK)
                                        accept_failed(d, wsi, errno);
                                break;
                        }
                        if (d->draining) { /* no new connections */
                                close(c);
                                continue;
                        }
                        /* As libwebsockets' own listener set it: a reply is sent at
                         * once, not held back for the client's ACK (Nagle with
                         * delayed ACKs added tens of ms to each small answer). Not
                         * a TCP socket (AF_UNIX): nothing to set. */
                        int one = 1;
                        (void)setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                        /* On failure lws closes c itself. */
                        lws_adopt_socket_vhost(d->vhost, c);
                }
                return 0;
        }
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
                /* Not a WebSocket subprotocol a client may ask for. */
                return -1;
        default:
                return 0;
        }
}

/* Whether listening socket fd is bound to a loopback address (127.0.0.0/8, ::1,
 * ::ffff:127.0.0.0/104) or is a local (AF_UNIX) socket; when not, its address goes
 * into addr (n bytes). */
static bool socket_is_loopback(int fd, char *addr, size_t n)
{
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char host[INET6_ADDRSTRLEN] = "?";

        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
                snprintf(addr, n, "fd %d (%s)", fd, strerror(errno));
                return false;
        }
        if (ss.ss_family == AF_UNIX)
                return true;
        if (ss.ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
                if ((ntohl(in->sin_addr.s_addr) >> 24) == 127)
                        return true;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                snprintf(addr, n, "%s:%u", host, ntohs(in->sin_port));
                return false;
        }
        if (ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
                const uint8_t *b = in6->sin6_addr.s6_addr;
                if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) || (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && b[12] == 127))
                        return true;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                snprintf(addr, n, "[%s]:%u", host, ntohs(in6->sin6_port));
                return false;
        }
        snprintf(addr, n, "fd %d (address family %d)", fd, ss.ss_family);
        return false;
}

int listen_adopt(struct kilnd *d, int fd)
{
        listen_daemon = d;
        lws_sock_file_fd_type u = { .filefd = fd };
        if (!lws_adopt_descriptor_vhost(d->vhost, LWS_ADOPT_RAW_FILE_DESC, u, "kiln-listen", NULL)) {
                log_error("libwebsockets could not adopt the listening socket (fd %d)", fd);
                return -ENOMEM;
        }
        return 0;
}

int listen_adopt_systemd(struct kilnd *d, int n)
{
        d->public_listener[0] = '\0';
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
                        log_error("socket activation: fd %d is not a listening stream socket", fd);
                        return -ENOTSOCK;
                }
                char addr[sizeof(d->public_listener)];
                if (!socket_is_loopback(fd, addr, sizeof(addr)) && !d->public_listener[0])
                        snprintf(d->public_listener, sizeof(d->public_listener), "%s", addr);
                int fl = fcntl(fd, F_GETFL);
                if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                        return -errno;
                int r = listen_adopt(d, fd);
                if (r < 0)
                        return r;
        }
        /* server.listen was checked against auth.required (kiln_config_validate);
         * what systemd passed instead is checked here. */
        if (!d->cfg->auth.required && d->public_listener[0]) {
                log_error("auth.required = false is allowed only when kilnd listens on loopback addresses, but "
                          "systemd passed a socket on %s: set auth.required = true, or ListenStream= to a "
                          "loopback address",
                          d->public_listener);
                return -EPERM;
        }
        return 0;
}
