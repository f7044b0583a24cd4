/*
 * Reading and writing streams: try the call without blocking, and wait for
 * the fd with the reactor only when the kernel says it would block.
 *
 * No fd's flags are kept between calls: a number may be closed and reused
 * by anyone at any time, and a blocking fd taken for a non-blocking one
 * would stall the whole thread.  Sockets get MSG_DONTWAIT per call (their
 * flags untouched); anything else is made O_NONBLOCK at each call that
 * finds it blocking (one fcntl, after recv/send said ENOTSOCK).
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

static int make_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    if (flags & O_NONBLOCK) return 0;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

/* A pipe has no MSG_NOSIGNAL: the process would die of a write to one whose
 * reader is gone.  Only the default action is replaced; a handler of the
 * program's own keeps running (and the write still fails with EPIPE). */
static void ignore_sigpipe(void) {
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) != 0 || old.sa_handler != SIG_DFL) return;
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, NULL);
}

/* One attempt: bytes moved, or -1 with errno (EAGAIN: would block). */
static ssize_t try_read(int fd, void *buf, size_t n) {
    ssize_t got = recv(fd, buf, n, MSG_DONTWAIT);
    if (got >= 0 || errno != ENOTSOCK) return got;
    if (make_nonblocking(fd) != 0) return -1;
    return read(fd, buf, n);
}

static ssize_t try_write(int fd, const void *buf, size_t n) {
    ssize_t put = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (put >= 0 || errno != ENOTSOCK) return put;
    pthread_once(&sigpipe_once, ignore_sigpipe);
    if (make_nonblocking(fd) != 0) return -1;
    return write(fd, buf, n);
}

ssize_t rill_read(int fd, void *buf, size_t n) {
    if (fd < 0) return -EBADF;
    if (!buf && n) return -EINVAL;
    int rc = rill__scope_checkpoint();
    if (rc) return rc;
    /* An empty socket says EAGAIN even to a read of nothing. */
    if (n == 0) return fcntl(fd, F_GETFD) < 0 ? -errno : 0;
    if (rill__fd_drained(fd)) {
        rill__fd_set_drained(fd, false);
        rc = rill__fd_block(fd, RILL_READ);
        if (rc < 0) return rc;
    }
    for (bool checked = true;; checked = false) {
        ssize_t got = try_read(fd, buf, n);
        if (got >= 0) {
            if ((size_t)got < n && got > 0) rill__fd_set_drained(fd, true);
            return got;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        /* After a wake the fiber may have been cancelled while ready: check
         * again before waiting again.  Nothing was read either way. */
        rc = checked ? rill__fd_block(fd, RILL_READ) : rill__fd_wait(fd, RILL_READ);
        if (rc < 0) return rc;
    }
}

ssize_t rill_write(int fd, const void *buf, size_t n) {
    if (fd < 0) return -EBADF;
    if (!buf && n) return -EINVAL;
    if (n > SSIZE_MAX) return -EINVAL;
    int rc = rill__scope_checkpoint();
    if (rc) return rc;
    const char *p = buf;
    size_t done = 0;
    bool checked = true;
    do {
        ssize_t put = try_write(fd, p + done, n - done);
        if (put > 0 || (put == 0 && n == 0)) {
            done += (size_t)put;
            continue;
        }
        if (put < 0 && errno == EINTR) continue;
        if (put < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        rc = checked ? rill__fd_block(fd, RILL_WRITE) : rill__fd_wait(fd, RILL_WRITE);
        checked = false;
        if (rc < 0) return rc;
    } while (done < n);
    return (ssize_t)n;
}
