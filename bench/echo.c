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
 * connections with one SIZE-byte message in flight each: it sends, waits
 * for the whole echo, checks it, sends again.  Each round starts one
 * server, warms up, then counts round trips for the measured window, and
 * reads the server's CPU time (/proc/PID/stat) across that window: CPU µs
 * per round trip shows the server's own cost even when the client, on the
 * other core, limits the rate.  The two servers alternate, round by round
 * (the first of each pair alternating too), so a busy spell of the machine
 * hits both alike; the ratios are the medians of the per-round ratios.
 *
 *   echo                 3 rounds of each, 3 s measured after 0.5 s of warm-up
 *   echo --quick         3 rounds of each, 1 s after 0.2 s
 *   echo --seconds S --warmup W --rounds N --conns C --size B
 *   echo --rows          also "=echo<TAB>rill rt/s<TAB>epoll rt/s<TAB>ratio
 *                        <TAB>rill cpu us/rt<TAB>epoll cpu us/rt" for
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"

#define BUF (16 * 1024)   /* each server's read buffer */
#define MAX_ROUNDS 15

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

static server start_server(int kind) {
    int ctl[2], portpipe[2];
    if (pipe2(ctl, O_CLOEXEC) < 0 || pipe2(portpipe, O_CLOEXEC) < 0) die("pipe", errno);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork", errno);
    if (pid == 0) {
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

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* ---- the load client ----------------------------------------------------------- */

typedef struct result {
    double rps;           /* round trips per second in the window */
    double server_us;     /* server CPU µs per round trip */
    double client_us;     /* client CPU µs per round trip */
} result;

typedef struct conn {
    int fd;
    size_t got;
    char in[256];
} conn;

static int conns = 100, size = 64;
static double seconds = 3, warmup = 0.5;

static result load(server *s) {
    conn *c = calloc((size_t)conns, sizeof *c);
    char msg[256];
    for (int i = 0; i < size; i++) msg[i] = (char)('a' + i % 26);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!c || ep < 0) die("client setup", errno);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < conns; i++) {
        c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c[i].fd < 0 || connect(c[i].fd, (struct sockaddr *)&a, sizeof a) < 0)
            die("connect", errno);
        int one = 1;
        setsockopt(c[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(c[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev) < 0) die("epoll_ctl", errno);
    }
    for (int i = 0; i < conns; i++)
        if (send(c[i].fd, msg, (size_t)size, MSG_NOSIGNAL) != size) die("send", errno);

    double t0 = now_s(), start = t0 + warmup, end = start + seconds;
    double s_cpu0 = 0, c_cpu0 = 0;
    long trips = 0, counted0 = 0;
    bool measuring = false;
    struct epoll_event evs[256];
    for (;;) {
        double t = now_s();
        if (!measuring && t >= start) {
            measuring = true;
            counted0 = trips;
            s_cpu0 = cpu_seconds(s->pid);
            c_cpu0 = self_cpu();
            start = t;
        }
        if (t >= end) {
            end = t;
            break;
        }
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0 && errno != EINTR) die("epoll_wait", errno);
        for (int k = 0; k < n; k++) {
            conn *x = &c[evs[k].data.u32];
            ssize_t r = read(x->fd, x->in + x->got, sizeof x->in - x->got);
            if (r == 0) die("the server closed a connection", EPIPE);
            if (r < 0) {
                if (errno == EAGAIN) continue;
                die("read", errno);
            }
            x->got += (size_t)r;
            if (x->got < (size_t)size) continue;
            if (x->got > (size_t)size || memcmp(x->in, msg, (size_t)size) != 0)
                die("the echo differs from the message", EPROTO);
            x->got = 0;
            trips++;
            if (send(x->fd, msg, (size_t)size, MSG_NOSIGNAL) != size) die("send", errno);
        }
    }
    double s_cpu = cpu_seconds(s->pid) - s_cpu0, c_cpu = self_cpu() - c_cpu0;
    long counted = trips - counted0;
    for (int i = 0; i < conns; i++) close(c[i].fd);
    close(ep);
    free(c);
    result r = {.rps = (double)counted / (end - start),
                .server_us = counted ? s_cpu * 1e6 / (double)counted : 0,
                .client_us = counted ? c_cpu * 1e6 / (double)counted : 0};
    return r;
}

/* ---- main ---------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double s[MAX_ROUNDS];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double minmax(const double *v, int n, bool max) {
    double m = v[0];
    for (int i = 1; i < n; i++) m = max ? (v[i] > m ? v[i] : m) : (v[i] < m ? v[i] : m);
    return m;
}

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [--quick] [--rows] [--seconds S] [--warmup S] [--rounds N] [--conns N] "
            "[--size BYTES]\n",
            prog);
    exit(2);
}

int main(int argc, char **argv) {
    int rounds = 3;
    bool rows = false;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(o, "--quick") == 0) seconds = 1, warmup = 0.2;
        else if (strcmp(o, "--rows") == 0) rows = true;
        else if (strcmp(o, "--seconds") == 0 && has) seconds = atof(argv[++i]);
        else if (strcmp(o, "--warmup") == 0 && has) warmup = atof(argv[++i]);
        else if (strcmp(o, "--rounds") == 0 && has) rounds = atoi(argv[++i]);
        else if (strcmp(o, "--conns") == 0 && has) conns = atoi(argv[++i]);
        else if (strcmp(o, "--size") == 0 && has) size = atoi(argv[++i]);
        else usage(argv[0]);
    }
    if (!(seconds > 0) || warmup < 0 || rounds < 1 || rounds > MAX_ROUNDS || conns < 1 ||
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
    printf("# rill echo bench | switch: %s (%s) | %d connections, one %d-byte message in "
           "flight each | %d rounds of each server, %.1f s after %.1f s of warm-up | load "
           "average at start %.2f\n",
           b->switch_backend, b->switch_method, conns, size, rounds, seconds, warmup, load1);

    double rps[2][MAX_ROUNDS], cpu[2][MAX_ROUNDS], ccpu[2][MAX_ROUNDS];
    double ratio[MAX_ROUNDS], cpu_ratio[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            int kind = (r + k) % 2; /* rill first in even rounds, epoll in odd ones */
            server s = start_server(kind);
            result res = load(&s);
            stop_server(&s);
            rps[kind][r] = res.rps;
            cpu[kind][r] = res.server_us;
            ccpu[kind][r] = res.client_us;
        }
        ratio[r] = rps[RILL][r] / rps[EPOLL][r];
        cpu_ratio[r] = cpu[RILL][r] / cpu[EPOLL][r];
    }
    printf("%-52s %12s %21s %14s %14s\n", "server", "round trips/s", "(min..max)",
           "server CPU us", "client CPU us");
    static const char *const label[] = {
        "rill: rill_read + rill_write, a task per connection",
        "plain C: epoll (level-triggered), read + write"};
    for (int k = 0; k < 2; k++)
        printf("%-52s %12.0f %10.0f..%-10.0f %14.2f %14.2f\n", label[k],
               median(rps[k], rounds), minmax(rps[k], rounds, false), minmax(rps[k], rounds, true),
               median(cpu[k], rounds), median(ccpu[k], rounds));
    double rmed = median(ratio, rounds), cmed = median(cpu_ratio, rounds);
    printf("rill / epoll: %.3fx the round trips per second (goal >= 0.9; per round:", rmed);
    for (int r = 0; r < rounds; r++) printf(" %.3f", ratio[r]);
    printf("), %.2fx the server CPU per round trip\n", cmed);
    if (rows)
        printf("=echo\t%.0f\t%.0f\t%.4f\t%.3f\t%.3f\n", median(rps[RILL], rounds),
               median(rps[EPOLL], rounds), rmed, median(cpu[RILL], rounds),
               median(cpu[EPOLL], rounds));
    return 0;
}
