/*
 * echo: round trips per second through a rill echo server, against a
 * plain epoll echo server written in C, driven by the same load client in
 * the same run.
 *
 * The servers, each in a process of its own (forked), listening on
 * 127.0.0.1 and a free port:
 *   - rill: rill_accept in main, one detached task per connection doing
 *     rill_read + rill_write of what it read (a 16 KiB buffer);
 *   - epoll: one thread, level-triggered epoll_wait, accept4, read into a
 *     16 KiB buffer and write it back (what is left of a short write waits
 *     for EPOLLOUT, reading that connection paused meanwhile), TCP_NODELAY
 *     as rill sets it.
 * The load client (this process, plain epoll, no rill) keeps CONNS
 * connections to each server with one SIZE-byte message in flight on each
 * connection of the server it drives: it sends, waits for the whole echo,
 * checks it, sends again.  It drives the two servers in turn, in slices of
 * 0.25 s (see slice()), so both are measured side by side through the
 * same spells of a busy machine; the ratio is the median of the ratios of
 * neighbouring slices.  Each server's CPU time (/proc/PID/stat) over the
 * measured slices, per round trip, shows its own cost even when the
 * client, on the other core, limits the rate.
 *
 *   echo                 4 s of slices on each server after 1 s of warm-up
 *   echo --quick         1 s of each after 0.5 s
 *   echo --seconds S --warmup W --conns C --size B
 *   echo --rows          also "=echo<TAB>rill rt/s<TAB>epoll rt/s<TAB>ratio
 *                        <TAB>rill CPU us/rt<TAB>epoll CPU us/rt" for
 *                        scripts/bench-compare.sh
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"
#include "median.h"

#define BUF (16 * 1024)   /* each server's read buffer */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

_Noreturn static void die(const char *what, int err) {
    fprintf(stderr, "bench echo: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

/* ---- the rill server ------------------------------------------------------- */

static int rill_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(BUF);
    for (ssize_t n; buf && (n = rill_read(fd, buf, BUF)) > 0;)
        if (rill_write(fd, buf, (size_t)n) < 0) break;
    free(buf);
    rill_close(fd);
    return 0;
}

typedef struct rill_srv {
    int lfd, ctl; /* ctl: the read end of a pipe the parent closes to stop us */
} rill_srv;

static int rill_stopper(void *arg) {
    rill_srv *s = arg;
    char c;
    while (rill_read(s->ctl, &c, 1) > 0) {}
    rill_close(s->lfd); /* wakes the accept with -EBADF */
    return 0;
}

static int rill_server_main(void *arg) {
    rill_srv *s = arg;
    rill_task *stopper = rill_spawn(rill_stopper, s);
    if (!stopper) return -errno;
    for (;;) {
        int fd = rill_accept(s->lfd, NULL, NULL);
        if (fd < 0) break;
        rill_task *t = rill_spawn(rill_conn, (void *)(intptr_t)fd);
        if (!t) rill_close(fd);
        else rill_detach(t);
    }
    return rill_join(stopper); /* then rill_run cancels the connections left */
}

/* ---- the plain epoll server ------------------------------------------------- */

typedef struct pending {
    char *data;
    size_t len, off;
} pending;

static void epoll_server(int lfd, int ctl) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1", errno);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl", errno);
    ev.data.fd = ctl;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ctl, &ev) < 0) die("epoll_ctl", errno);
    int maxfd = 65536;
    pending *pend = calloc((size_t)maxfd, sizeof *pend);
    char *buf = malloc(BUF);
    if (!pend || !buf) die("malloc", ENOMEM);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait", errno);
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ctl) return; /* the parent closed the pipe: exit */
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= maxfd) {
                        close(c);
                        continue;
                    }
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0) close(c);
                }
                continue;
            }
            pending *p = &pend[fd];
            bool drop = false;
            if (p->len) { /* EPOLLOUT: finish the short write */
                ssize_t w = send(fd, p->data + p->off, p->len - p->off, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN) drop = true;
                if (w > 0 && (p->off += (size_t)w) == p->len) {
                    p->len = p->off = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
                }
            } else {
                ssize_t r = read(fd, buf, BUF);
                if (r == 0 || (r < 0 && errno != EAGAIN)) drop = true;
                if (r > 0) {
                    ssize_t w = send(fd, buf, (size_t)r, MSG_NOSIGNAL);
                    if (w < 0 && errno != EAGAIN) drop = true;
                    else if (w < r) { /* keep the rest, wait for room */
                        size_t off = w < 0 ? 0 : (size_t)w;
                        p->data = realloc(p->data, BUF);
                        if (!p->data) die("realloc", ENOMEM);
                        memcpy(p->data, buf + off, (size_t)r - off);
                        p->len = (size_t)r - off;
                        p->off = 0;
                        struct epoll_event cev = {.events = EPOLLOUT, .data.fd = fd};
                        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
                    }
                }
            }
            if (drop) {
                free(p->data);
                *p = (pending){0};
                close(fd); /* leaves the epoll set */
            }
        }
    }
}

/* ---- one server process ------------------------------------------------------ */

enum { RILL, EPOLL };

typedef struct server {
    pid_t pid;
    int port, ctl; /* ctl: the pipe's write end */
} server;

static int started[2], nstarted; /* the pipes of the servers started */

static server start_server(int kind) {
    int ctl[2], portpipe[2];
    if (pipe2(ctl, O_CLOEXEC) < 0 || pipe2(portpipe, O_CLOEXEC) < 0) die("pipe", errno);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork", errno);
    if (pid == 0) {
        for (int i = 0; i < nstarted; i++) close(started[i]); /* the other server's pipe */
        close(ctl[1]);
        close(portpipe[0]);
        int lfd = rill_tcp_listen("127.0.0.1", 0, 0); /* does not block: needs no fiber */
        if (lfd < 0) die("rill_tcp_listen", lfd);
        int port = rill_local_port(lfd);
        if (write(portpipe[1], &port, sizeof port) != sizeof port) _exit(1);
        close(portpipe[1]);
        if (kind == EPOLL) {
            epoll_server(lfd, ctl[0]);
            _exit(0);
        }
        rill_srv s = {.lfd = lfd, .ctl = ctl[0]};
        int rc = rill_run(rill_server_main, &s);
        if (rc < 0) die("rill_run", rc);
        _exit(0);
    }
    close(ctl[0]);
    close(portpipe[1]);
    server s = {.pid = pid, .ctl = ctl[1]};
    started[nstarted++] = ctl[1];
    if (read(portpipe[0], &s.port, sizeof s.port) != sizeof s.port) die("server start", EIO);
    close(portpipe[0]);
    return s;
}

static void stop_server(server *s) {
    close(s->ctl);
    int st;
    if (waitpid(s->pid, &st, 0) < 0) die("waitpid", errno);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) die("the server did not exit cleanly", EIO);
}

/* The CPU seconds (user + system) pid has used. */
static double cpu_seconds(pid_t pid) {
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    char *p = strrchr(line, ')'); /* after the command name */
    unsigned long ut, stt;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) != 2)
        return -1;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- the load client ----------------------------------------------------------- */

/* Both servers run at once; the client holds `conns` connections to each
 * and drives one server at a time, in slices of SLICE seconds: a slice
 * sends one message on each of its server's connections, sends the next
 * on each as its echo comes back, stops sending when the slice's time is
 * up and ends when the last echo is in.  The other server waits in
 * epoll_wait meanwhile, costing nothing.  Slices alternate ABBA (rill,
 * epoll, epoll, rill, ...): each pair's ratio compares two neighbouring
 * slices, so a busy spell of the shared machine, which lasts longer than
 * a slice, hits both sides of a pair alike. */
#define SLICE 0.25
#define MAX_SLICES 4096

typedef struct conn {
    int fd, kind;
    size_t got;
    char in[256];
} conn;

static int conns = 100, size = 64;
static double seconds = 4, warmup = 1;

typedef struct client {
    conn *c;       /* conns of the rill server, then conns of the epoll one */
    int ep;
    char msg[256];
} client;

static void connect_all(client *cl, server *s, int kind) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = kind * conns; i < (kind + 1) * conns; i++) {
        conn *x = &cl->c[i];
        x->kind = kind;
        x->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (x->fd < 0 || connect(x->fd, (struct sockaddr *)&a, sizeof a) < 0)
            die("connect", errno);
        int one = 1;
        setsockopt(x->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(x->fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(cl->ep, EPOLL_CTL_ADD, x->fd, &ev) < 0) die("epoll_ctl", errno);
    }
}

/* One slice on server `kind`: round trips per second. */
static double slice(client *cl, int kind) {
    double t0 = now_s(), end = t0 + SLICE;
    long trips = 0;
    int in_flight = 0;
    for (int i = kind * conns; i < (kind + 1) * conns; i++, in_flight++)
        if (send(cl->c[i].fd, cl->msg, (size_t)size, MSG_NOSIGNAL) != size) die("send", errno);
    struct epoll_event evs[256];
    bool sending = true;
    while (in_flight > 0) {
        int n = epoll_wait(cl->ep, evs, 256, 1000);
        if (n < 0 && errno != EINTR) die("epoll_wait", errno);
        if (n == 0) die("no echo for a second", ETIMEDOUT);
        if (sending && now_s() >= end) sending = false;
        for (int k = 0; k < n; k++) {
            conn *x = &cl->c[evs[k].data.u32];
            ssize_t r = read(x->fd, x->in + x->got, sizeof x->in - x->got);
            if (r == 0) die("the server closed a connection", EPIPE);
            if (r < 0) {
                if (errno == EAGAIN) continue;
                die("read", errno);
            }
            if (x->kind != kind) die("an echo from the idle server", EPROTO);
            x->got += (size_t)r;
            if (x->got < (size_t)size) continue;
            if (x->got > (size_t)size || memcmp(x->in, cl->msg, (size_t)size) != 0)
                die("the echo differs from the message", EPROTO);
            x->got = 0;
            trips++;
            if (!sending) in_flight--;
            else if (send(x->fd, cl->msg, (size_t)size, MSG_NOSIGNAL) != size) die("send", errno);
        }
    }
    return (double)trips / (now_s() - t0);
}

/* ---- main ---------------------------------------------------------------------- */


static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [--quick] [--rows] [--seconds S] [--warmup S] [--conns N] "
            "[--size BYTES]\n",
            prog);
    exit(2);
}

int main(int argc, char **argv) {
    bool rows = false;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(o, "--quick") == 0) seconds = 1, warmup = 0.5;
        else if (strcmp(o, "--rows") == 0) rows = true;
        else if (strcmp(o, "--seconds") == 0 && has) seconds = atof(argv[++i]);
        else if (strcmp(o, "--warmup") == 0 && has) warmup = atof(argv[++i]);
        else if (strcmp(o, "--conns") == 0 && has) conns = atoi(argv[++i]);
        else if (strcmp(o, "--size") == 0 && has) size = atoi(argv[++i]);
        else usage(argv[0]);
    }
    int pairs = (int)(seconds / SLICE + 0.5), warm = (int)(warmup / SLICE / 2 + 0.5);
    if (pairs < 1 || pairs > MAX_SLICES / 2 || warmup < 0 || warmup > 60 || conns < 1 ||
        conns > 10000 || size < 1 || size > 256)
        usage(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    double load1 = 0;
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &load1) != 1) load1 = 0;
        fclose(la);
    }
    const rill_build *b = rill_build_info();
    printf("# rill echo bench | switch: %s (%s) | %d connections to each server, one %d-byte "
           "message in flight each | %d slices of %.2f s on each server, alternating, after "
           "%d of warm-up | load average at start %.2f\n",
           b->switch_backend, b->switch_method, conns, size, pairs, SLICE, 2 * warm, load1);

    client cl = {.c = calloc(2 * (size_t)conns, sizeof(conn)), .ep = epoll_create1(EPOLL_CLOEXEC)};
    if (!cl.c || cl.ep < 0) die("client setup", errno);
    for (int i = 0; i < size; i++) cl.msg[i] = (char)('a' + i % 26);
    server srv[2] = {start_server(RILL), start_server(EPOLL)};
    connect_all(&cl, &srv[RILL], RILL);
    connect_all(&cl, &srv[EPOLL], EPOLL);

    static double rps[2][MAX_SLICES / 2], ratio[MAX_SLICES / 2];
    double cpu0[2] = {0}, t_cpu[2];
    for (int p = -warm; p < pairs; p++) {
        if (p == 0)
            for (int k = 0; k < 2; k++) cpu0[k] = cpu_seconds(srv[k].pid);
        int first = (p + warm) % 2; /* ABBA: rill first in even pairs */
        double r[2];
        r[first] = slice(&cl, first);
        r[!first] = slice(&cl, !first);
        if (p < 0) continue;
        rps[RILL][p] = r[RILL];
        rps[EPOLL][p] = r[EPOLL];
        ratio[p] = r[RILL] / r[EPOLL];
    }
    for (int k = 0; k < 2; k++) t_cpu[k] = cpu_seconds(srv[k].pid) - cpu0[k];
    /* CPU per round trip: the server's CPU time over the measured slices
     * (it is idle in the other's), over its round trips then. */
    double trips[2] = {0, 0};
    for (int p = 0; p < pairs; p++)
        for (int k = 0; k < 2; k++) trips[k] += rps[k][p] * SLICE;
    double us[2] = {t_cpu[0] * 1e6 / trips[0], t_cpu[1] * 1e6 / trips[1]};
    for (int i = 0; i < 2 * conns; i++) close(cl.c[i].fd);
    close(cl.ep);
    free(cl.c);
    stop_server(&srv[RILL]);
    stop_server(&srv[EPOLL]);

    double lo[2], hi[2], med[2];
    for (int k = 0; k < 2; k++) {
        med[k] = median(rps[k], pairs); /* sorts */
        lo[k] = rps[k][0];
        hi[k] = rps[k][pairs - 1];
    }
    double rmed = median(ratio, pairs), rlo = ratio[0], rhi = ratio[pairs - 1];
    printf("%-52s %13s %21s %16s\n", "server", "round trips/s", "(slices' min..max)",
           "server CPU us/rt");
    static const char *const label[] = {
        "rill: rill_read + rill_write, a task per connection",
        "plain C: epoll (level-triggered), read + write"};
    for (int k = 0; k < 2; k++)
        printf("%-52s %13.0f %10.0f..%-10.0f %16.2f\n", label[k], med[k], lo[k], hi[k], us[k]);
    printf("rill / epoll: %.3fx the round trips per second (median of %d pairs of slices, "
           "%.3f..%.3f; goal >= 0.9), %.2fx the server CPU per round trip\n",
           rmed, pairs, rlo, rhi, us[RILL] / us[EPOLL]);
    if (rows)
        printf("=echo\t%.0f\t%.0f\t%.4f\t%.3f\t%.3f\n", med[RILL], med[EPOLL], rmed, us[RILL],
               us[EPOLL]);
    return 0;
}
