/*
 * echo: a line-echo TCP server, each client handled by a task of its own.
 *
 * The Python original (asyncio's socket echo server):
 *
 *     async def handle(reader, writer):
 *         async for line in reader:
 *             writer.write(line)
 *             await writer.drain()
 *         writer.close()
 *
 *     async def main():
 *         server = await asyncio.start_server(handle, "127.0.0.1", 8888)
 *         async with server:
 *             await server.serve_forever()
 *
 * rill_tcp_listen() is start_server's socket; the accept loop spawns
 * handle() for each connection into a task group, so stopping the server
 * (cancelling its task) cancels the clients still connected and waits for
 * them, as server.close() + wait_closed() do.  rill_lines(fd) is `async
 * for line in reader`, and rill_write() is write() + drain(): it returns
 * once every byte is handed to the kernel, waiting for room while other
 * tasks run.  A client's reset or a failed write ends its own task only
 * (the handler returns 0 and says why): one client never takes the others
 * down, as an exception in a handler would not in asyncio.
 *
 * --self-test starts the server on a free port, runs many client tasks at
 * once (each sends lines in irregular writes: several lines in one write,
 * a line split across two writes with a pause between, "\n" and "\r\n",
 * one long line, a last line without newline followed by a half-close),
 * checks every echo, then stops the server and checks that every client
 * was served at once by a task of its own and that no fd is left open.
 *
 * Usage: echo [--host H] [--port N]   serve until killed (port 8888; 0: any)
 *        echo --self-test [--port N] [--scale X]  the self-test (any free port
 *                                      unless given one), pauses x X
 *        echo --scale X                (without --port) the self-test too
 *
 * run-demos: --self-test
 */
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "demo.h"

#define CLIENTS 100        /* client tasks at once in the self-test */
#define LINES 40           /* lines each client sends (the last without "\n") */
#define LONG_LINE 70000    /* one line of this many bytes per client */
#define PAUSE 0.05         /* seconds between a client's writes, before scaling */

/* ---- the server ------------------------------------------------------------ */

typedef struct server {
    int lfd;
    bool verbose;          /* say when each client comes and goes */
    rill_group clients;    /* one task per connection */
    long accepted, lines, bytes;
    int live, max_live;    /* handlers running now, and at most */
    int ended_eof, ended_error, ended_cancelled;
} server;

typedef struct conn {
    server *srv;
    int fd, id;
    char *out;             /* the line being echoed, with its "\n" back on */
    size_t cap;
} conn;

/* writer.write(line + "\n"); await writer.drain(): rill_write returns once
 * every byte is with the kernel.  Returns its result, or -ENOMEM. */
static ssize_t echo_line(conn *c, const char *line) {
    size_t n = strlen(line);
    if (n + 1 > c->cap) {
        char *bigger = realloc(c->out, n + 1);
        if (!bigger) return -ENOMEM;
        c->out = bigger;
        c->cap = n + 1;
    }
    memcpy(c->out, line, n);
    c->out[n] = '\n';
    ssize_t w = rill_write(c->fd, c->out, n + 1);
    if (w > 0) {
        c->srv->lines++;
        c->srv->bytes += w;
    }
    return w;
}

/* handle(reader, writer): echo every line until the client is done. */
static int handle(void *arg) {
    conn *c = arg;
    server *s = c->srv;
    if (++s->live > s->max_live) s->max_live = s->live;
    if (s->verbose) printf("client %d connected\n", c->id);

    int rc = 0;
    rill_gen *lines = rill_lines(c->fd);
    if (!lines) rc = -errno;
    char *line;
    if (lines) rill_foreach(line, lines) {
        ssize_t w = echo_line(c, line);
        if (w < 0) {
            rc = (int)w;
            break;
        }
    }
    if (rc == 0 && lines) rc = rill_gen_status(lines); /* 0: the end of the stream */
    rill_gen_free(lines);
    rill_close(c->fd); /* writer.close() */
    s->live--;
    if (rc == 0) s->ended_eof++;
    else if (rc == -ECANCELED) s->ended_cancelled++;
    else s->ended_error++;
    if (s->verbose)
        printf("client %d %s\n", c->id, rc == 0 ? "disconnected" : rill_strerror(rc));
    free(c->out);
    free(c);
    return 0; /* a client's trouble is its own: the group goes on */
}

/* serve_forever(): accept until cancelled, one handler task per client.
 * Returns 0 once stopped by a cancellation, else the accept error. */
static int serve(void *arg) {
    server *s = arg;
    int rc;
    rill_group_init(&s->clients);
    for (;;) {
        int fd = rill_accept(s->lfd, NULL, NULL);
        if (fd == -EMFILE || fd == -ENFILE) { /* the connection waits in the backlog */
            if ((rc = rill_sleep(0.1)) < 0) break;
            continue;
        }
        if (fd < 0) {
            rc = fd;
            break;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            rill_close(fd);
            continue;
        }
        *c = (conn){.srv = s, .fd = fd, .id = (int)++s->accepted};
        if (rill_group_spawn(&s->clients, handle, c) < 0) {
            rill_close(fd);
            free(c);
        }
    }
    /* Cancelled (or accept failed): the clients still connected are
     * cancelled and waited for. */
    int wrc = rill_group_wait(&s->clients);
    if (rc == -ECANCELED) rc = 0;
    return rc < 0 ? rc : wrc == -ECANCELED ? 0 : wrc;
}

/* ---- the self-test's clients --------------------------------------------- */

typedef struct test {
    int port;
    int connected_and_echoed;  /* clients past their first echo */
    rill_event all_in;         /* every client is connected and was echoed once */
    long sent, echoed, mismatched;
    int clean_ends;            /* clients that saw the server end their stream */
} test;

typedef struct client {
    test *t;
    int id;
} client;

/* Line j of client id: its text (no newline) into buf, and its length. */
static size_t line_text(int id, int j, char *buf, size_t cap) {
    if (j == LINES - 2) { /* the long line */
        size_t n = LONG_LINE < cap - 1 ? LONG_LINE : cap - 1;
        for (size_t k = 0; k < n; k++) buf[k] = (char)('a' + (k * 7 + (size_t)id) % 26);
        buf[n] = '\0';
        return n;
    }
    if (j == LINES - 1) return (size_t)snprintf(buf, cap, "bye from client %d", id);
    int len = snprintf(buf, cap, "client %d line %d:", id, j);
    int pad = (id * 31 + j * 17) % 90; /* lines of many lengths, some empty of payload */
    for (int k = 0; k < pad && (size_t)len + 1 < cap; k++) buf[len++] = (char)('A' + (k + j) % 26);
    buf[len] = '\0';
    return (size_t)len;
}

/* Read one echoed line and compare it with what line j should be. */
static int expect_echo(client *c, rill_gen *echoes, int j, char *want, size_t cap) {
    char *got;
    int rc = rill_gen_next(echoes, (void **)&got);
    if (rc != 1) return rc == 0 ? -ECONNRESET : rc; /* the stream ended early */
    size_t n = line_text(c->id, j, want, cap);
    if (strlen(got) != n || memcmp(got, want, n) != 0) c->t->mismatched++;
    c->t->echoed++;
    return 0;
}

static int run_client(void *arg) {
    client *c = arg;
    test *t = c->t;
    int fd = rill_tcp_connect("127.0.0.1", t->port); /* asyncio.open_connection */
    if (fd < 0) return fd;
    size_t cap = LONG_LINE + 64;
    char *want = malloc(cap), *burst = malloc(cap * 2);
    rill_gen *echoes = rill_lines(fd);
    int rc = want && burst && echoes ? 0 : -ENOMEM;
    const char *eol = c->id % 2 ? "\r\n" : "\n"; /* odd clients end lines with \r\n */

    /* Bursts of 1 to 4 lines in one write; every third burst is cut in two
     * writes in the middle of a line, with a pause between. */
    for (int j = 0; rc == 0 && j < LINES - 1;) {
        int k = 1 + (c->id + j) % 4;
        if (j + k > LINES - 1) k = LINES - 1 - j;
        size_t len = 0;
        for (int i = 0; i < k; i++) {
            len += line_text(c->id, j + i, burst + len, cap);
            len += (size_t)sprintf(burst + len, "%s", eol);
        }
        size_t cut = (j / 4) % 3 == 0 ? len / 2 + 1 : len;
        ssize_t w = rill_write(fd, burst, cut);
        if (w >= 0 && cut < len && (rc = rill_sleep(PAUSE / 4 * scale)) == 0)
            w = rill_write(fd, burst + cut, len - cut);
        if (w < 0 && rc == 0) rc = (int)w;
        t->sent += k;
        for (int i = 0; rc == 0 && i < k; i++) rc = expect_echo(c, echoes, j + i, want, cap);
        if (rc == 0 && j == 0 && ++t->connected_and_echoed == CLIENTS) rill_event_set(&t->all_in);
        if (rc == 0 && j == 0) rc = rill_event_wait(&t->all_in);
        j += k;
        if (rc == 0) rc = rill_sleep(PAUSE * scale);
    }
    /* The last line without newline, then a half-close: the server echoes
     * it (with a newline) at the end of the stream and closes its side. */
    if (rc == 0) {
        size_t len = line_text(c->id, LINES - 1, burst, cap);
        ssize_t w = rill_write(fd, burst, len);
        if (w < 0) rc = (int)w;
        else if (shutdown(fd, SHUT_WR) < 0) rc = -errno;
        t->sent++;
    }
    if (rc == 0) rc = expect_echo(c, echoes, LINES - 1, want, cap);
    if (rc == 0) { /* nothing more, and a clean end */
        void *extra;
        int end = rill_gen_next(echoes, &extra);
        if (end == 0 && rill_gen_status(echoes) == 0) t->clean_ends++;
        else rc = end < 0 ? end : -EPROTO;
    }
    rill_gen_free(echoes);
    rill_close(fd);
    free(want);
    free(burst);
    return rc;
}

static int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own fd */
}

/* ---- main ------------------------------------------------------------------ */

static const char *host = "127.0.0.1";
static int port = 8888;
static bool port_given, self_test; /* the self-test takes any free port unless given one */

static int serve_forever(void) {
    server s = {.verbose = true};
    s.lfd = rill_tcp_listen(host, port, 0);
    if (s.lfd < 0) {
        fprintf(stderr, "echo: cannot listen on %s:%d: %s\n", host, port, rill_strerror(s.lfd));
        return s.lfd;
    }
    printf("echo: listening on %s:%d\n", host, rill_local_port(s.lfd));
    int rc = serve(&s); /* until the process is killed */
    rill_close(s.lfd);
    return rc;
}

static int amain(void *arg) {
    (void)arg;
    if (!self_test) return serve_forever();

    int fds0 = count_open_fds();
    server s = {.verbose = false};
    s.lfd = rill_tcp_listen(host, port_given ? port : 0, 0);
    if (s.lfd < 0) return s.lfd;
    test t = {.port = rill_local_port(s.lfd)};
    rill_event_init(&t.all_in);
    printf("echo: listening on %s:%d\n", host, t.port);
    rill_task *srv = rill_spawn(serve, &s);
    if (!srv) return -errno;

    printf("%d clients at once, %d lines each (one of %d bytes, the last without newline, "
           "then a half-close), pauses of %g s\n",
           CLIENTS, LINES, LONG_LINE, PAUSE * scale);
    double t0 = rill_now();
    static client clients[CLIENTS];
    rill_group g;
    rill_group_init(&g);
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = (client){.t = &t, .id = i};
        if (rill_group_spawn(&g, run_client, &clients[i]) < 0) {
            rill_group_cancel(&g);
            break;
        }
    }
    int crc = rill_group_wait(&g);
    double took = demo_elapsed(t0);
    printf("clients: %s; %ld lines sent, %ld echoed back, %ld different from what was sent, "
           "in %.2f s\n",
           crc == 0 ? "all done" : rill_strerror(crc), t.sent, t.echoed, t.mismatched, took);

    /* server.close(); await server.wait_closed() */
    rill_cancel(srv);
    int src = rill_join(srv);
    rill_close(s.lfd);
    int fds1 = count_open_fds();
    printf("server: %ld connections, %ld lines (%ld bytes) echoed, %d clients served at once at "
           "most; handlers ended: %d at the end of their stream, %d cancelled, %d on an error; "
           "stopped: %s\n",
           s.accepted, s.lines, s.bytes, s.max_live, s.ended_eof, s.ended_cancelled,
           s.ended_error, src == 0 ? "cleanly" : rill_strerror(src));
    printf("open fds: %d before the server, %d after it stopped\n", fds0, fds1);

    long want = (long)CLIENTS * LINES;
    expect(crc == 0, "every client ran to its end without an error");
    expect(t.sent == want && t.echoed == want, "every line sent was echoed back");
    expect(t.mismatched == 0, "every echo is the line sent, byte for byte");
    expect(t.clean_ends == CLIENTS, "after a half-close the last line comes back, then the end");
    expect(s.accepted == CLIENTS && s.lines == want, "the server saw every client and every line");
    expect(s.max_live == CLIENTS, "every client was served at once, each by a task of its own");
    expect(s.ended_eof == CLIENTS && s.live == 0, "every handler ended at its client's end");
    expect(src == 0, "cancelling the server's task stops it cleanly");
    expect(fds0 >= 0 && fds1 == fds0, "no fd is left open");
    demo_verdict("%d clients at once, %ld lines echoed byte for byte by one task per client, "
                 "server stopped cleanly",
                 CLIENTS, t.echoed);
    return 0;
}

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [--host H] [--port N]    serve until killed (default 127.0.0.1:8888; "
            "port 0: any free port)\n"
            "       %s --self-test [--port N] [--scale X]  start it, run %d clients against it, check, stop\n"
            "       (--scale without --port runs the self-test too)\n",
            prog, prog, CLIENTS);
    exit(2);
}

int main(int argc, char **argv) {
    bool scale_given = false;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--self-test") == 0) {
            self_test = true;
        } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            long p = strtol(argv[++i], &end, 10);
            if (*end || p < 0 || p > 65535) usage(argv[0]);
            port = (int)p;
            port_given = true;
        } else if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
            scale = strtod(argv[++i], &end);
            if (*end || !(scale > 0) || scale > 1e6) usage(argv[0]);
            scale_given = true;
        } else {
            usage(argv[0]);
        }
    }
    if (scale_given && !port_given) self_test = true; /* a demo run: test, never hang */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (self_test && scale != 1.0)
        printf("(--scale %g: every pause is %gx its full length; times below are at full "
               "scale, measured / %g)\n\n",
               scale, scale, scale);
    int rc = rill_run(amain, NULL);
    if (!self_test) return rc == 0 ? 0 : 1;
    return demo_end(rc);
}
