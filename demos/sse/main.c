/*
 * sse: an HTTP/1.1 server of Server-Sent Events, the event stream coming
 * from a rill generator.
 *
 * The Python original (FastAPI):
 *
 *     async def events(n, delay):
 *         try:
 *             yield 'event: init\ndata: {"status": "started"}\n\n'
 *             for i in range(n):
 *                 await asyncio.sleep(delay)
 *                 yield f'event: progress\ndata: {{"current": {i + 1}, "total": {n}, ...}}\n\n'
 *                 yield f'data: {{"id": {i}, "message": "Message {i}"}}\n\n'
 *             yield 'event: done\ndata: {"status": "completed"}\n\n'
 *         except Exception as e:
 *             yield f'event: error\ndata: {{"error": "{e}"}}\n\n'
 *
 *     @app.get("/stream")
 *     async def stream():
 *         return StreamingResponse(events(10, 0.5), media_type="text/event-stream")
 *
 * GET / serves a page whose EventSource shows the events as they come.
 * A client that leaves mid-stream has its generator closed and its state
 * freed at once (uvicorn's disconnect); bad requests get 400, 431 (head
 * over 8 KiB), 408 (no request in time), 405, 404; clients over the bound
 * get 503.
 *
 * Usage: sse [--host H] [--port N] [--max-clients N] [--events N]
 *            [--delay SECONDS] [--request-timeout SECONDS] [--fail-at K]
 *            [--scale F] [--self-test]
 * run-demos: --self-test
 */
#include "../demo.h"
#include "selftest.h"
#include "server.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

static sse_config config = {
    .name = "sse",
    .host = "127.0.0.1",
    .port = 8000,
    .max_clients = 1024,
    .events = 10,
    .delay = 0.5,
    .request_timeout = 10,
    .linger = 2,
};
static bool self_test;
static int sig_pipe[2] = {-1, -1};

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [--host H] [--port N] [--max-clients N] [--events N] [--delay SECONDS]\n"
            "          [--request-timeout SECONDS] [--fail-at K] [--scale F] [--self-test]\n"
            "  --host H                address to listen on (default 127.0.0.1)\n"
            "  --port N                port (default 8000; 0: any free port)\n"
            "  --max-clients N         connections served at once; more get 503 (default 1024)\n"
            "  --events N              progress/data pairs per stream (default 10)\n"
            "  --delay SECONDS         before each pair (default 0.5; 0 allowed)\n"
            "  --request-timeout SECONDS  to receive a request's head, else 408 (default 10)\n"
            "  --fail-at K             the generator fails before pair K (shows the error event)\n"
            "  --scale F               multiplies the delay and the timeouts (F > 0)\n"
            "  --self-test             start on a free port, check the server with clients of\n"
            "                          its own, print a verdict and exit\n",
            prog);
    exit(2);
}

static double number(const char *prog, const char *s, double lo, double hi) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= lo) || !(v <= hi)) usage(prog);
    return v;
}

static int whole(const char *prog, const char *s, double lo, double hi) {
    double v = number(prog, s, lo, hi);
    if (v != (int)v) usage(prog);
    return (int)v;
}

static void parse_flags(int argc, char **argv) {
    const char *p = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--self-test") == 0) {
            self_test = true;
            continue;
        }
        if (i + 1 >= argc) usage(p);
        const char *v = argv[++i];
        if (strcmp(f, "--host") == 0) config.host = v;
        else if (strcmp(f, "--port") == 0) config.port = whole(p, v, 0, 65535);
        else if (strcmp(f, "--max-clients") == 0) config.max_clients = whole(p, v, 1, 1e6);
        else if (strcmp(f, "--events") == 0) config.events = whole(p, v, 0, 1e6);
        else if (strcmp(f, "--delay") == 0) config.delay = number(p, v, 0, 1e6);
        else if (strcmp(f, "--request-timeout") == 0) config.request_timeout = number(p, v, 1e-3, 1e6);
        else if (strcmp(f, "--fail-at") == 0) config.fail_at = whole(p, v, 0, 1e6);
        else if (strcmp(f, "--scale") == 0) scale = number(p, v, 1e-6, 1e6);
        else usage(p);
    }
}

/* SIGINT and SIGTERM: a byte on a pipe, read by the main fiber. */
static void on_signal(int sig) {
    unsigned char b = (unsigned char)sig;
    int saved = errno;
    if (write(sig_pipe[1], &b, 1) < 0) { /* full: a signal is pending already */ }
    errno = saved;
}

static int install_signals(void) {
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) return -errno;
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) return -errno;
    return 0;
}

static void print_listening(const sse_server *s) {
    bool v6 = strchr(s->cfg.host, ':') != NULL;
    printf("sse: listening on http://%s%s%s:%d/\n", v6 ? "[" : "", s->cfg.host, v6 ? "]" : "",
           s->port);
    fflush(stdout);
}

static int serve(void) {
    int rc = install_signals();
    if (rc < 0) return rc;
    sse_server srv = {.cfg = config};
    srv.cfg.delay *= scale;
    srv.cfg.request_timeout *= scale;
    srv.cfg.linger *= scale;
    rc = sse_server_start(&srv);
    if (rc < 0) {
        fprintf(stderr, "sse: cannot listen on %s port %d: %s\n", config.host, config.port,
                rill_strerror(rc));
        return rc;
    }
    print_listening(&srv);
    unsigned char sig = 0;
    ssize_t n;
    while ((n = rill_read(sig_pipe[0], &sig, 1)) < 0 && n != -ECANCELED && n != -EBADF) {}
    fprintf(stderr, "sse: %s: stopping\n", sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "stop");
    rc = sse_server_stop(&srv);
    char statuses[200] = "";
    size_t len = 0;
    for (int code = 100; code < 600 && len < sizeof statuses; code++)
        if (srv.st.status[code])
            len += (size_t)snprintf(statuses + len, sizeof statuses - len, "; %d x%u", code,
                                    srv.st.status[code]);
    fprintf(stderr,
            "sse: stopped: %u connections, %u streams (%u completed, %u released), %u rejected%s\n",
            srv.st.connections, srv.st.streams_opened, srv.st.streams_completed,
            srv.st.streams_released, srv.st.rejected, statuses);
    rill_close(sig_pipe[0]);
    close(sig_pipe[1]);
    return rc;
}

static void check(bool ok, const char *claim) { expect(ok, claim); }

static int run_self_test(void *arg) {
    (void)arg;
    char summary[200] = "";
    int rc = sse_self_test(&config, scale, print_listening, check, summary, sizeof summary);
    demo_verdict("%s", summary);
    return rc;
}

static int amain(void *arg) {
    (void)arg;
    if (!self_test) return serve();
    /* Its clients and servers live on its stack: more than main's 64 KiB. */
    rill_task *t = rill_spawn_opts(run_self_test, NULL,
                                   &(rill_opts){.name = "self-test", .stack_size = 512 << 10});
    return t ? rill_join(t) : -errno;
}

int main(int argc, char **argv) {
    parse_flags(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* A connection's buffers (some 25 KiB) get pages of their own from the
     * kernel, and give them back when freed: only the pages a client's
     * bytes touch cost memory, and the server's memory falls back after a
     * peak of clients (the heap would keep the freed blocks). */
    mallopt(M_MMAP_THRESHOLD, 16 * 1024);
    int rc = rill_run(amain, NULL);
    if (!self_test) return rc == 0 ? 0 : 1;
    return demo_end(rc);
}
