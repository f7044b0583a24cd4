/*
 * Sockets: TCP and Unix listeners, accepting, connecting, and the name
 * lookup behind them.  Every socket is made non-blocking and close-on-exec
 * at birth (SOCK_NONBLOCK | SOCK_CLOEXEC), so no fd rill hands out can
 * stall the thread or leak into a child program.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define SOCK_FLAGS (SOCK_NONBLOCK | SOCK_CLOEXEC)

/* Small writes leave at once, as asyncio does for every TCP transport:
 * without it, a request written in two parts waits for the peer's delayed
 * ACK (40 ms). */
static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Give up a socket of rill's making: rill_close, so that its fd's slot
 * forgets it (fd.c). */
static int close_keeping_errno(int fd, int err) {
    rill_close(fd);
    return err;
}

/* ---- name lookup ------------------------------------------------------------ */

typedef struct lookup {
    struct addrinfo hints;
    struct addrinfo *res;
    char service[8];
    char host[];               /* copied: the caller may be gone when it ends */
} lookup;

/* getaddrinfo's failures as errno values: rill_strerror describes ENXIO as
 * a name not found. */
static int gai_errno(int gai) {
    switch (gai) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENXIO;
    case EAI_AGAIN: return -EAGAIN;
    case EAI_MEMORY: return -ENOMEM;
    case EAI_SYSTEM: return errno ? -errno : -EIO;
    default: return -EINVAL;
    }
}

static int lookup_run(void *arg) {
    lookup *l = arg;
    int gai = getaddrinfo(l->host, l->service, &l->hints, &l->res);
    return gai ? gai_errno(gai) : 0;
}

static void lookup_free(void *arg) {
    lookup *l = arg;
    if (l->res) freeaddrinfo(l->res);
    free(l);
}

/* The addresses of host:port for a stream socket into *res (free with
 * freeaddrinfo).  A numeric address is converted here; a name is looked
 * up on the thread pool (getaddrinfo may read files and ask DNS servers),
 * and a cancelled caller leaves the lookup to finish there.  0 or a
 * negative errno. */
RILL__INLINE int resolve(const char *host, int port, bool passive, struct addrinfo **res) {
    size_t len = strlen(host);
    lookup *l = rill__calloc(1, sizeof *l + len + 1);
    if (!l) return -ENOMEM;
    memcpy(l->host, host, len + 1);
    snprintf(l->service, sizeof l->service, "%d", port);
    l->hints.ai_socktype = SOCK_STREAM;
    l->hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int gai = getaddrinfo(l->host, l->service, &l->hints, &l->res);
    int rc;
    if (gai != EAI_NONAME) {
        rc = gai ? gai_errno(gai) : 0;
    } else {
        l->hints.ai_flags &= ~AI_NUMERICHOST;
        l->res = NULL;
        rc = rill_to_thread_detached(lookup_run, l, lookup_free);
        if (rc == -ECANCELED) return rc; /* l is rill's now */
    }
    *res = rc ? NULL : l->res;
    l->res = NULL;
    lookup_free(l);
    return rc;
}

/* ---- TCP ------------------------------------------------------------------- */

static int listen_on(int family, int socktype, int protocol, const struct sockaddr *addr,
                     socklen_t addrlen, int backlog) {
    int fd = socket(family, socktype | SOCK_FLAGS, protocol);
    if (fd < 0) return -errno;
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* "::" then takes IPv4 connections too, whatever the system default. */
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, addr, addrlen) != 0 || listen(fd, backlog) != 0)
        return close_keeping_errno(fd, -errno);
    rill__fd_created(fd);
    return fd;
}

static int listen_any(int port, int backlog) {
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                              .sin6_addr = IN6ADDR_ANY_INIT};
    int fd = listen_on(AF_INET6, SOCK_STREAM, 0, (struct sockaddr *)&a6, sizeof a6, backlog);
    /* No IPv6 in this kernel or namespace: IPv4 alone. */
    if (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL) return fd;
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr = {htonl(INADDR_ANY)}};
    return listen_on(AF_INET, SOCK_STREAM, 0, (struct sockaddr *)&a4, sizeof a4, backlog);
}

int rill_tcp_listen(const char *host, int port, int backlog) {
    if (port < 0 || port > 65535) return -EINVAL;
    if (backlog <= 0) backlog = SOMAXCONN;
    if (!host) return listen_any(port, backlog);
    struct addrinfo *res;
    int rc = resolve(host, port, true, &res);
    if (rc) return rc;
    rc = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = listen_on(ai->ai_family, ai->ai_socktype, ai->ai_protocol, ai->ai_addr,
                       ai->ai_addrlen, backlog);
        if (rc >= 0) break;
    }
    freeaddrinfo(res);
    return rc;
}

/* Errors of a connection that died in the backlog, which accept() reports
 * in its place (accept(2), "Error handling"): the next one is tried. */
static bool pending_error(int err) {
    switch (err) {
    case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN:
    case ENONET: case EHOSTUNREACH: case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

int rill_accept(int lfd, struct sockaddr *addr, socklen_t *len) {
    if (lfd < 0) return -EBADF;
    if (addr && !len) return -EINVAL;
    int rc = rill__scope_checkpoint();
    if (rc) return rc;
    /* accept4 has no MSG_DONTWAIT: a blocking listener of the caller's (one
     * inherited from systemd or inetd, say) would stall the thread. */
    int flags = fcntl(lfd, F_GETFL);
    if (flags < 0) return -errno;
    if (!(flags & O_NONBLOCK) && fcntl(lfd, F_SETFL, flags | O_NONBLOCK) != 0) return -errno;
    for (bool checked = true;; checked = false) {
        int fd = accept4(lfd, addr, len, SOCK_FLAGS);
        if (fd >= 0) {
            if (!addr || addr->sa_family == AF_INET || addr->sa_family == AF_INET6)
                set_nodelay(fd); /* fails harmlessly on a Unix socket */
            rill__fd_created(fd);
            return fd;
        }
        if (errno == EINTR || pending_error(errno)) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        rc = checked ? rill__fd_block(lfd, RILL_READ) : rill__fd_wait(lfd, RILL_READ);
        if (rc < 0) return rc;
    }
}

/* Connect a new socket to one address: the fd, or a negative errno (the
 * socket closed). */
RILL__INLINE int connect_to(int family, int socktype, int protocol, const struct sockaddr *addr,
                            socklen_t addrlen) {
    int fd = socket(family, socktype | SOCK_FLAGS, protocol);
    if (fd < 0) return -errno;
    rill__fd_created(fd);
    if (connect(fd, addr, addrlen) != 0) {
        if (errno != EINPROGRESS && errno != EINTR) return close_keeping_errno(fd, -errno);
        int rc = rill__fd_wait(fd, RILL_WRITE);
        if (rc < 0) return close_keeping_errno(fd, rc);
        int err = 0;
        socklen_t errlen = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) != 0) err = errno;
        if (err) return close_keeping_errno(fd, -err);
    }
    if (family == AF_INET || family == AF_INET6) set_nodelay(fd);
    return fd;
}

int rill_tcp_connect(const char *host, int port) {
    if (!host || port < 1 || port > 65535) return -EINVAL;
    int rc = rill__scope_checkpoint();
    if (rc) return rc;
    struct addrinfo *res;
    rc = resolve(host, port, false, &res);
    if (rc) return rc;
    rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = connect_to(ai->ai_family, ai->ai_socktype, ai->ai_protocol, ai->ai_addr,
                        ai->ai_addrlen);
        if (rc >= 0 || rc == -ECANCELED) break;
    }
    freeaddrinfo(res);
    return rc;
}

int rill_local_port(int fd) {
    if (fd < 0) return -EBADF;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -errno;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

/* ---- Unix sockets ------------------------------------------------------------- */

/* path as an address: a file, or with '@' a name in the abstract namespace.
 * Its length into *len; 0 or -EINVAL, -ENAMETOOLONG. */
static int unix_address(const char *path, struct sockaddr_un *sun, socklen_t *len) {
    if (!path || !*path) return -EINVAL;
    size_t n = strlen(path);
    if (n >= sizeof sun->sun_path) return -ENAMETOOLONG;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    if (path[0] == '@') sun->sun_path[0] = 0; /* the name is the bytes after it */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] != '@'));
    return 0;
}

/* Whether the socket file at sun is left by a listener that is gone: a
 * connection to it is refused.  (One that still accepts sees a connection
 * close at once.) */
static bool stale(const struct sockaddr_un *sun, socklen_t len) {
    struct stat st;
    if (lstat(sun->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_FLAGS, 0);
    if (fd < 0) return false;
    bool refused = connect(fd, (const struct sockaddr *)sun, len) != 0 && errno == ECONNREFUSED;
    close(fd);
    return refused;
}

int rill_unix_listen(const char *path, int backlog) {
    struct sockaddr_un sun;
    socklen_t len;
    int rc = unix_address(path, &sun, &len);
    if (rc) return rc;
    if (backlog <= 0) backlog = SOMAXCONN;
    rc = listen_on(AF_UNIX, SOCK_STREAM, 0, (struct sockaddr *)&sun, len, backlog);
    if (rc == -EADDRINUSE && path[0] != '@' && stale(&sun, len) && unlink(path) == 0)
        rc = listen_on(AF_UNIX, SOCK_STREAM, 0, (struct sockaddr *)&sun, len, backlog);
    return rc;
}

int rill_unix_connect(const char *path) {
    struct sockaddr_un sun;
    socklen_t len;
    int rc = unix_address(path, &sun, &len);
    if (rc) return rc;
    rc = rill__scope_checkpoint();
    if (rc) return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_FLAGS, 0);
    if (fd < 0) return -errno;
    rill__fd_created(fd);
    /* A full backlog makes a Unix connect fail with EAGAIN at once, and
     * nothing can be polled for its end: try again, a little later each
     * time. */
    for (double pause = 0.001;; pause = pause < 0.1 ? pause * 2 : pause) {
        if (connect(fd, (struct sockaddr *)&sun, len) == 0) return fd;
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return close_keeping_errno(fd, -errno);
        rc = rill_sleep(pause);
        if (rc < 0) return close_keeping_errno(fd, rc);
    }
}
