/*
 * sse_clients: hold K concurrent Server-Sent Events streams open against
 * an HTTP server, to see how many it keeps (bench/sse-load.sh runs it).
 *
 * Plain C, one thread, epoll; no rill.  It opens K connections (at most
 * --batch of them connecting or waiting for their first event at a time),
 * sends `GET PATH HTTP/1.1` on each, and counts a stream as held once the
 * response is "HTTP/1.x 200" and the first event has arrived (a blank line
 * after the headers: "\n\n" inside the chunked body), or with
 * --headers-only once the headers have.  Then it prints
 *
 *     ready HELD FAILED SECONDS
 *
 * and keeps every stream open for --hold seconds, reading and dropping
 * whatever comes, and ends with "closed-by-server N" (streams that ended
 * during the hold).  Exits 0 if every stream was held, 1 otherwise.
 *
 * Usage: sse_clients --port P [--host 127.0.0.1] [--path /stream]
 *                    --clients K [--hold S] [--batch N] [--timeout S]
 *                    [--headers-only]
 * Raise the fd limit first (ulimit -n) for K in the thousands.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INBUF 2048

enum state { IDLE, CONNECTING, WAITING, HELD, FAILED, CLOSED };

typedef struct stream {
    int fd;
    enum state st;
    size_t got;
    char *in; /* the response so far, until held */
} stream;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *host = "127.0.0.1", *path = "/stream";
static int port, nclients, batch = 256;
static double hold = 5, timeout = 60;
static bool headers_only;
static char request[512];
static size_t request_len;
static struct sockaddr_in addr;
static int ep;
static long failed_connect, failed_status, failed_closed;

static void fail(stream *s, long *why) {
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    s->st = FAILED;
    free(s->in);
    s->in = NULL;
    ++*why;
}

static int start(stream *s, uint32_t id) {
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) return -errno;
    s->in = malloc(INBUF);
    if (!s->in) return -ENOMEM;
    s->got = 0;
    int rc = connect(s->fd, (struct sockaddr *)&addr, sizeof addr);
    if (rc < 0 && errno != EINPROGRESS) return -errno;
    s->st = CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = id};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) return -errno;
    return 0;
}

/* Has the response in s->in reached the point where the stream counts as
 * held?  1 yes, 0 not yet, -1 not a 200. */
static int judge(stream *s) {
    s->in[s->got] = '\0';
    char *eoh = strstr(s->in, "\r\n\r\n");
    if (!eoh) return 0;
    if (strncmp(s->in, "HTTP/1.", 7) != 0 || strncmp(s->in + 8, " 200", 4) != 0) return -1;
    if (headers_only) return 1;
    return strstr(eoh + 4, "\n\n") != NULL;
}

/* One event on stream id; returns true if it left the connecting/waiting
 * states (held or failed). */
static bool on_event(stream *s, uint32_t events) {
    if (s->st == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(s, &failed_connect);
            return true;
        }
        if (!(events & (EPOLLOUT | EPOLLIN))) return false;
        if (send(s->fd, request, request_len, MSG_NOSIGNAL) != (ssize_t)request_len) {
            fail(s, &failed_connect);
            return true;
        }
        s->st = WAITING; /* the caller watches for reads only from now on */
        return false;
    }
    if (s->st == WAITING) {
        ssize_t r = read(s->fd, s->in + s->got, INBUF - 1 - s->got);
        if (r < 0 && errno == EAGAIN) return false;
        if (r <= 0) {
            fail(s, &failed_closed);
            return true;
        }
        s->got += (size_t)r;
        int j = judge(s);
        if (j < 0) {
            fail(s, &failed_status);
            return true;
        }
        if (j == 0 && s->got == INBUF - 1) { /* no event in the first 2 KiB: take it as held */
            j = 1;
        }
        if (j == 1) {
            s->st = HELD;
            free(s->in);
            s->in = NULL;
            return true;
        }
        return false;
    }
    if (s->st == HELD) { /* drain; the server may end the stream */
        char buf[4096];
        ssize_t r = read(s->fd, buf, sizeof buf);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            close(s->fd);
            s->fd = -1;
            s->st = CLOSED;
        }
    }
    return false;
}

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s --port P --clients K [--host IPV4] [--path /stream] [--hold S] "
            "[--batch N] [--timeout S] [--headers-only]\n",
            prog);
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(o, "--host") == 0 && has) host = argv[++i];
        else if (strcmp(o, "--port") == 0 && has) port = atoi(argv[++i]);
        else if (strcmp(o, "--path") == 0 && has) path = argv[++i];
        else if (strcmp(o, "--clients") == 0 && has) nclients = atoi(argv[++i]);
        else if (strcmp(o, "--hold") == 0 && has) hold = atof(argv[++i]);
        else if (strcmp(o, "--batch") == 0 && has) batch = atoi(argv[++i]);
        else if (strcmp(o, "--timeout") == 0 && has) timeout = atof(argv[++i]);
        else if (strcmp(o, "--headers-only") == 0) headers_only = true;
        else usage(argv[0]);
    }
    if (port < 1 || port > 65535 || nclients < 1 || batch < 1 || hold < 0 || !(timeout > 0))
        usage(argv[0]);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) usage(argv[0]);
    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
                                   "\r\n",
                                   path, host, port);
    setvbuf(stdout, NULL, _IOLBF, 0);
    ep = epoll_create1(EPOLL_CLOEXEC);
    stream *s = calloc((size_t)nclients, sizeof *s);
    if (ep < 0 || !s) {
        perror("sse_clients");
        return 1;
    }
    for (int i = 0; i < nclients; i++) s[i].fd = -1;

    double t0 = now_s();
    int next = 0, pending = 0, done = 0, held = 0;
    struct epoll_event evs[512];
    while (done < nclients && now_s() - t0 < timeout) {
        while (pending < batch && next < nclients) {
            int rc = start(&s[next], (uint32_t)next);
            if (rc < 0) {
                fprintf(stderr, "sse_clients: connection %d: %s\n", next, strerror(-rc));
                fail(&s[next], &failed_connect);
                done++;
            } else {
                pending++;
            }
            next++;
        }
        int n = epoll_wait(ep, evs, 512, 100);
        for (int k = 0; k < n; k++) {
            uint32_t id = evs[k].data.u32;
            stream *x = &s[id];
            enum state before = x->st;
            bool left = on_event(x, evs[k].events);
            if (before == CONNECTING && x->st == WAITING) { /* now only reads matter */
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = id};
                epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &ev);
            }
            if (left && (before == CONNECTING || before == WAITING)) {
                pending--;
                done++;
                held += x->st == HELD;
            }
        }
    }
    int failed = nclients - held;
    printf("ready %d %d %.2f\n", held, failed, now_s() - t0);
    if (failed)
        fprintf(stderr,
                "sse_clients: %d not held: %ld connect, %ld status not 200, %ld closed early, "
                "%d still waiting at the timeout\n",
                failed, failed_connect, failed_status, failed_closed, nclients - done);

    double until = now_s() + hold;
    while (now_s() < until) {
        int n = epoll_wait(ep, evs, 512, 100);
        for (int k = 0; k < n; k++) on_event(&s[evs[k].data.u32], evs[k].events);
    }
    long closed = 0;
    for (int i = 0; i < nclients; i++) {
        closed += s[i].st == CLOSED;
        if (s[i].fd >= 0) close(s[i].fd);
        free(s[i].in);
    }
    printf("closed-by-server %ld\n", closed);
    free(s);
    return failed == 0 && closed == 0 ? 0 : 1;
}
