/*
 * The self-test: three servers in this process (a normal one, a slow one
 * bounded to two clients, one whose generator fails), and clients that
 * check what they get.  Responses are parsed with libhttp-parser too.
 */
#include "selftest.h"

#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static sse_check_fn *check;
static const char *connect_host;

/* ---- a client ----------------------------------------------------------- */

typedef struct client {
    int fd;
    http_parser p;
    bool complete, eof, bad, in_field;
    char headers[2048]; /* "\nname: value" for each header, names lower-cased */
    size_t hlen;
    char *body;
    size_t blen, bcap;
    char pend[4096];    /* bytes read after the response being parsed (one read's) */
    size_t plen;
} client;

static void add(char *buf, size_t *len, size_t cap, const char *at, size_t n, bool lower) {
    for (size_t i = 0; i < n && *len + 1 < cap; i++)
        buf[(*len)++] = lower && at[i] >= 'A' && at[i] <= 'Z' ? (char)(at[i] + 32) : at[i];
    buf[*len] = '\0';
}

static int on_field(http_parser *p, const char *at, size_t n) {
    client *c = p->data;
    if (!c->in_field) add(c->headers, &c->hlen, sizeof c->headers, "\n", 1, false);
    c->in_field = true;
    add(c->headers, &c->hlen, sizeof c->headers, at, n, true);
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t n) {
    client *c = p->data;
    if (c->in_field) add(c->headers, &c->hlen, sizeof c->headers, ": ", 2, false);
    c->in_field = false;
    add(c->headers, &c->hlen, sizeof c->headers, at, n, false);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    client *c = p->data;
    if (c->blen + n + 1 > c->bcap) {
        size_t cap = (c->blen + n + 1) * 2;
        char *b = realloc(c->body, cap);
        if (!b) return 1;
        c->body = b;
        c->bcap = cap;
    }
    memcpy(c->body + c->blen, at, n);
    c->blen += n;
    c->body[c->blen] = '\0';
    return 0;
}

static int on_complete(http_parser *p) {
    client *c = p->data;
    c->complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings response_settings = {
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

static void keep(client *c, const char *buf, size_t n) {
    if (n > sizeof c->pend - c->plen) {
        c->bad = true;
        return;
    }
    memcpy(c->pend + c->plen, buf, n);
    c->plen += n;
}

static void parse(client *c, const char *buf, size_t n) {
    if (c->complete) {
        keep(c, buf, n);
        return;
    }
    size_t used = http_parser_execute(&c->p, &response_settings, buf, n);
    if (c->complete) keep(c, buf + used, n - used);
    else if (HTTP_PARSER_ERRNO(&c->p) != HPE_OK) c->bad = true;
}

/* Start on the next response of the connection (keep-alive). */
static void client_next(client *c) {
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
    c->complete = c->bad = c->in_field = false;
    c->hlen = c->blen = 0;
    c->headers[0] = '\0';
    if (c->body) c->body[0] = '\0';
    char held[sizeof c->pend];
    size_t n = c->plen, at = 0;
    memcpy(held, c->pend, n);
    c->plen = 0;
    while (at < n && (held[at] == '\r' || held[at] == '\n')) at++; /* the last response's end */
    if (at < n) parse(c, held + at, n - at);
}

static int client_open(client *c, int port) {
    memset(c, 0, offsetof(client, pend));
    c->plen = 0;
    c->fd = rill_tcp_connect(connect_host, port);
    if (c->fd < 0) return c->fd;
    client_next(c);
    return 0;
}

static void client_close(client *c) {
    if (c->fd >= 0) rill_close(c->fd);
    c->fd = -1;
    free(c->body);
    c->body = NULL;
    c->bcap = c->blen = 0;
}

static int client_send(client *c, const char *s) {
    ssize_t n = rill_write(c->fd, s, strlen(s));
    return n < 0 ? (int)n : 0;
}

/* Read until the response is complete or its body holds want (if not
 * NULL), for timeout seconds at most.  0, -ETIMEDOUT, -EPROTO (the
 * connection ended first, or the response does not parse), or rill_read's
 * error. */
static int client_wait(client *c, const char *want, double timeout) {
    rill_scope sc;
    rill_scope_enter(&sc, timeout);
    int rc = 0;
    while (!c->complete && !(want && c->body && strstr(c->body, want))) {
        if (c->eof || c->bad) {
            rc = -EPROTO;
            break;
        }
        char buf[4096];
        ssize_t n = rill_read(c->fd, buf, sizeof buf);
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if (n == 0) {
            c->eof = true;
            if (!c->complete) http_parser_execute(&c->p, &response_settings, NULL, 0);
        } else {
            parse(c, buf, (size_t)n);
        }
    }
    if (rill_scope_exit(&sc) == -ETIMEDOUT && rc < 0) rc = -ETIMEDOUT;
    return rc;
}

/* After a response that closes the connection: the server's end of it. */
static bool client_sees_close(client *c, double timeout) {
    rill_scope sc;
    rill_scope_enter(&sc, timeout);
    while (!c->eof) {
        char buf[4096];
        ssize_t n = rill_read(c->fd, buf, sizeof buf);
        if (n <= 0) {
            c->eof = n == 0 || n == -ECONNRESET;
            break;
        }
    }
    rill_scope_exit(&sc);
    return c->eof;
}

static bool has_header(const client *c, const char *line) { return strstr(c->headers, line); }

/* One request on a new connection; the response's status (0 if none came). */
static int one_request(int port, const char *req, double timeout, bool *closed) {
    client c;
    if (client_open(&c, port) < 0) return 0;
    int status = 0;
    if (client_send(&c, req) == 0 && client_wait(&c, NULL, timeout) == 0 && c.complete)
        status = c.p.status_code;
    if (closed) *closed = client_sees_close(&c, timeout);
    client_close(&c);
    return status;
}

/* ---- the events ----------------------------------------------------------- */

/* Does body hold exactly the stream of the original for n pairs (failing
 * before pair fail_at, if not 0)?  why says where it differs. */
static bool stream_ok(const char *body, int n, int fail_at, char *why, size_t cap) {
    char want[8192];
    size_t len = 0;
#define ADD(...) len += (size_t)snprintf(want + len, sizeof want - len, __VA_ARGS__)
    ADD("event: init\ndata: {\"status\": \"started\"}\n\n");
    for (int i = 0; i < n; i++) {
        if (fail_at == i + 1) {
            ADD("event: error\ndata: {\"error\": \"simulated failure before event %d\"}\n\n", i + 1);
            break;
        }
        ADD("event: progress\ndata: {\"current\": %d, \"total\": %d, \"percentage\": %.1f}\n\n",
            i + 1, n, (i + 1) * 100.0 / n);
        ADD("data: {\"id\": %d, \"message\": \"Message %d\"}\n\n", i, i);
    }
    if (!fail_at) ADD("event: done\ndata: {\"status\": \"completed\"}\n\n");
#undef ADD
    if (body && strcmp(body, want) == 0) return true;
    size_t at = 0;
    while (body && body[at] && body[at] == want[at]) at++;
    snprintf(why, cap, "differs at byte %zu: got \"%.40s\", want \"%.40s\"", at,
             body ? body + at : "(nothing)", want + at);
    return false;
}

static int count(const char *body, const char *what) {
    int k = 0;
    for (const char *p = body; p && (p = strstr(p, what)); p += strlen(what)) k++;
    return k;
}

/* ---- the checks ------------------------------------------------------------ */

static void claim(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void claim(bool ok, const char *fmt, ...) {
    char text[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    printf("  [%s] %s\n", ok ? "ok" : "FAILED", text);
    check(ok, text);
}

/* Poll *counter until it passes was, for timeout seconds; the time it took
 * (or -1). */
static double wait_count(const unsigned *counter, unsigned was, double timeout) {
    double t0 = rill_now();
    while (*counter == was) {
        if (rill_now() - t0 > timeout || rill_sleep(0.0005) < 0) return -1;
    }
    return rill_now() - t0;
}

static void check_stream(sse_server *a, double d) {
    printf("GET /stream, then GET / on the same connection:\n");
    client c;
    if (client_open(&c, a->port) < 0) {
        claim(false, "connect to the server");
        return;
    }
    double t0 = rill_now();
    client_send(&c, "GET /stream HTTP/1.1\r\nHost: test\r\n\r\n");
    int rc = client_wait(&c, NULL, a->cfg.events * d * 4 + 5);
    double took = rill_now() - t0;
    char why[200] = "";
    claim(rc == 0 && c.p.status_code == 200, "the stream is answered 200 (%s)", rill_strerror(rc));
    claim(has_header(&c, "\ncontent-type: text/event-stream") &&
              has_header(&c, "\ncache-control: no-cache") &&
              has_header(&c, "\ntransfer-encoding: chunked"),
          "text/event-stream, no-cache, chunked");
    claim(stream_ok(c.body, a->cfg.events, 0, why, sizeof why),
          "init, %d x (progress, data), done, in order, with their counts%s%s", a->cfg.events,
          why[0] ? ": " : "", why);
    claim(count(c.body, "event: progress") == a->cfg.events &&
              count(c.body, "\ndata: {\"id\"") + (c.body && !strncmp(c.body, "data:", 5)) ==
                  a->cfg.events,
          "%d progress events and %d data events", a->cfg.events, a->cfg.events);
    claim(took >= a->cfg.events * d * 0.99, "the events are spaced by the delay: %.3f s for %d x %.3f s",
          took, a->cfg.events, d);
    client_next(&c);
    client_send(&c, "GET /?x=1 HTTP/1.1\r\nHost: test\r\n\r\n");
    rc = client_wait(&c, NULL, 5);
    claim(rc == 0 && c.p.status_code == 200 && c.body && strstr(c.body, "new EventSource('/stream')") &&
              has_header(&c, "\ncontent-type: text/html"),
          "keep-alive: GET / on the same connection gives the page with its EventSource");
    client_close(&c);

    printf("two requests in one write (pipelined):\n");
    if (client_open(&c, a->port) < 0) return;
    client_send(&c, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\nGET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    rc = client_wait(&c, NULL, 5);
    claim(rc == 0 && c.p.status_code == 404, "GET /nope: 404");
    client_next(&c);
    rc = client_wait(&c, NULL, a->cfg.events * d * 4 + 5);
    claim(rc == 0 && c.p.status_code == 200 && stream_ok(c.body, a->cfg.events, 0, why, sizeof why),
          "then the pipelined GET /stream, in full%s%s", why[0] ? ": " : "", why);
    client_close(&c);
}

static void check_bad_input(sse_server *a) {
    printf("bad requests (each closes its connection):\n");
    static const struct {
        const char *req, *what;
        int status;
    } bad[] = {
        {"BLAH\r\n\r\n", "a request line that is not HTTP", 400},
        {"GET / HTTP/1.1\r\nno colon here\r\n\r\n", "a header line without a colon", 400},
        {"GET / HTTP/9.9.9\r\n\r\n", "a bad version", 400},
        {"POST /stream HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", "POST /stream", 405},
        {"DELETE / HTTP/1.1\r\n\r\n", "DELETE /", 405},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool closed = false;
        int st = one_request(a->port, bad[i].req, 5, &closed);
        claim(st == bad[i].status && closed, "%s: %d (got %d), then closed", bad[i].what,
              bad[i].status, st);
    }
    /* A request cut short by the end of the client's stream. */
    client c;
    if (client_open(&c, a->port) == 0) {
        client_send(&c, "GET / HTTP/1.1\r\nHost: x");
        shutdown(c.fd, SHUT_WR);
        int rc = client_wait(&c, NULL, 5);
        claim(rc == 0 && c.p.status_code == 400, "a request cut short by EOF: 400");
        client_close(&c);
    }
    /* 64 KiB of headers. */
    size_t big = 65536;
    char *req = malloc(big + 64);
    if (req) {
        int len = sprintf(req, "GET / HTTP/1.1\r\nX-Big: ");
        memset(req + len, 'a', big);
        strcpy(req + len + big, "\r\n\r\n");
        bool closed = false;
        int st = one_request(a->port, req, 5, &closed);
        claim(st == 431 && closed, "64 KiB of headers: 431 (got %d), then closed", st);
        free(req);
    }
}

/* ---- the slowloris -------------------------------------------------------- */

struct slow {
    sse_server *srv;
    double interval;   /* between two bytes; 0: send nothing */
    int status;        /* what it got */
    double t_start, t_answer;
};

/* A client that sends its request one byte per interval (a slowloris), or
 * nothing at all (interval 0), and waits for the answer. */
static int slow_client(void *arg) {
    struct slow *s = arg;
    client c;
    s->t_start = rill_now();
    if (client_open(&c, s->srv->port) < 0) return 0;
    double limit = s->srv->cfg.request_timeout * 3 + 2;
    int rc;
    if (s->interval > 0) {
        rc = client_send(&c, "GET / HTTP/1.1\r\nHost: slowloris\r\nX-Slow: ");
        double t_end = rill_now() + limit;
        while (rc == 0 && rill_now() < t_end) {
            if (rill_write(c.fd, "z", 1) < 0) break;
            rc = client_wait(&c, NULL, s->interval);
            if (rc == -ETIMEDOUT) rc = 0;
            else break;
        }
    } else {
        rc = client_wait(&c, NULL, limit);
    }
    s->t_answer = rill_now();
    if (c.complete) s->status = c.p.status_code;
    client_close(&c);
    return 0;
}

struct good {
    sse_server *srv;
    bool ok;
    double t_start, t_end;
};

static int good_client(void *arg) {
    struct good *g = arg;
    char why[200];
    g->t_start = rill_now();
    client c;
    if (client_open(&c, g->srv->port) < 0) return 0;
    client_send(&c, "GET /stream HTTP/1.1\r\nHost: good\r\n\r\n");
    int rc = client_wait(&c, NULL, 30);
    g->t_end = rill_now();
    g->ok = rc == 0 && c.p.status_code == 200 && stream_ok(c.body, g->srv->cfg.events, 0, why, sizeof why);
    client_close(&c);
    return 0;
}

static void check_slow_clients(sse_server *a, double *good_took) {
    double t = a->cfg.request_timeout;
    printf("a slowloris (one byte every %.3f s), an idle client, and a good client meanwhile:\n", t / 8);
    struct slow loris = {.srv = a, .interval = t / 8}, idle = {.srv = a};
    struct good good = {.srv = a};
    rill_task *tl = rill_spawn(slow_client, &loris);
    rill_task *ti = rill_spawn(slow_client, &idle);
    rill_sleep(t / 4); /* the slow ones are connected and trickling */
    good_client(&good);
    if (tl) rill_join(tl);
    if (ti) rill_join(ti);
    double lt = loris.t_answer - loris.t_start, it = idle.t_answer - idle.t_start;
    claim(loris.status == 408 && lt >= t * 0.99 && lt < t * 3 + 1,
          "the slowloris gets 408 after the request timeout: %d after %.3f s (timeout %.3f s)",
          loris.status, lt, t);
    claim(idle.status == 408 && it >= t * 0.99 && it < t * 3 + 1,
          "a client that sends nothing gets 408: %d after %.3f s", idle.status, it);
    claim(good.ok && good.t_end < loris.t_answer,
          "a good client is served in full (%.3f s) while the slowloris trickles", good.t_end - good.t_start);
    *good_took = good.t_end - good.t_start;
}

/* ---- disconnects and the bound --------------------------------------------- */

static void check_disconnects(sse_server *b, double *worst) {
    double slow = b->cfg.delay, bound = slow / 4;
    printf("the slow server (%.3f s between events, %d clients at most):\n", slow, b->cfg.max_clients);
    client c1, c2, c3;
    if (client_open(&c1, b->port) < 0 || client_open(&c2, b->port) < 0) {
        claim(false, "connect to the slow server");
        return;
    }
    client_send(&c1, "GET /stream HTTP/1.1\r\nHost: 1\r\n\r\n");
    client_send(&c2, "GET /stream HTTP/1.1\r\nHost: 2\r\n\r\n");
    int r1 = client_wait(&c1, "event: init", 5), r2 = client_wait(&c2, "event: init", 5);
    claim(r1 == 0 && r2 == 0, "two streams started (init received)");

    double t0 = rill_now();
    int st = 0;
    if (client_open(&c3, b->port) == 0) {
        client_send(&c3, "GET /stream HTTP/1.1\r\nHost: 3\r\n\r\n");
        if (client_wait(&c3, NULL, 5) == 0 && c3.complete) st = c3.p.status_code;
        client_close(&c3);
    }
    double t503 = rill_now() - t0;
    claim(st == 503 && t503 < bound, "a third client gets 503 at once: %d after %.4f s", st, t503);

    unsigned rel = b->st.streams_released, mid = b->st.left_mid_stream;
    client_close(&c1);
    double took1 = wait_count(&b->st.streams_released, rel, slow / 2);
    rill_sleep(bound / 4); /* room for a second release, if there were one */
    claim(took1 >= 0 && took1 < bound && b->st.streams_released == rel + 1 &&
              b->st.left_mid_stream == mid + 1,
          "a client leaving mid-stream (generator asleep for %.3f s): released once, after %.4f s",
          slow, took1);
    rel = b->st.streams_released;
    client_close(&c2);
    double took2 = wait_count(&b->st.streams_released, rel, slow / 2);
    rill_sleep(bound / 4);
    claim(took2 >= 0 && took2 < bound && b->st.streams_released == rel + 1,
          "the second one too: released once, after %.4f s", took2);

    /* Gone before the first event: the request is read, then the end of
     * the stream. */
    client c4;
    rel = b->st.streams_released;
    unsigned before = b->st.left_before_start;
    double took3 = -1;
    if (client_open(&c4, b->port) == 0) {
        client_send(&c4, "GET /stream HTTP/1.1\r\nHost: 4\r\n\r\n");
        client_close(&c4);
        took3 = wait_count(&b->st.streams_released, rel, slow / 2);
        rill_sleep(bound / 4);
    }
    claim(took3 >= 0 && took3 < bound && b->st.streams_released == rel + 1 &&
              b->st.left_before_start == before + 1,
          "a client gone before the first event: its stream released once (the generator never "
          "started), after %.4f s", took3);
    *worst = took1 > took2 ? took1 : took2;
    if (took3 > *worst) *worst = took3;
}

static void check_error_event(sse_server *f, double d) {
    printf("a generator that fails before event %d:\n", f->cfg.fail_at);
    client c;
    if (client_open(&c, f->port) < 0) return;
    client_send(&c, "GET /stream HTTP/1.1\r\nHost: f\r\n\r\n");
    int rc = client_wait(&c, NULL, f->cfg.events * d * 4 + 5);
    char why[200] = "";
    claim(rc == 0 && c.complete && stream_ok(c.body, f->cfg.events, f->cfg.fail_at, why, sizeof why),
          "its error becomes an \"error\" event and the stream ends cleanly%s%s",
          why[0] ? ": " : "", why);
    client_next(&c);
    client_send(&c, "GET / HTTP/1.1\r\nHost: f\r\n\r\n");
    rc = client_wait(&c, NULL, 5);
    claim(rc == 0 && c.p.status_code == 200, "the connection then serves the next request");
    client_close(&c);
}

int sse_self_test(const sse_config *base, double scale, void (*announce)(const sse_server *),
                  sse_check_fn *chk, char *summary, size_t cap) {
    check = chk;
    const char *h = base->host;
    connect_host = strcmp(h, "0.0.0.0") == 0 ? "127.0.0.1" : strcmp(h, "::") == 0 ? "::1" : h;
    double d = 0.2 * scale, timeout = 4 * scale, linger = 2 * scale;
    sse_server a = {.cfg = {.name = "sse", .host = h, .max_clients = 64, .events = 5, .delay = d,
                            .request_timeout = timeout, .linger = linger}};
    sse_server b = {.cfg = {.name = "sse-slow", .host = h, .max_clients = 2, .events = 3,
                            .delay = 20 * scale, .request_timeout = timeout, .linger = linger}};
    sse_server f = {.cfg = {.name = "sse-fail", .host = h, .max_clients = 8, .events = 4,
                            .delay = d, .request_timeout = timeout, .linger = linger, .fail_at = 3}};
    int rc = sse_server_start(&a);
    if (rc < 0) return rc;
    announce(&a);
    if ((rc = sse_server_start(&b)) < 0) {
        sse_server_stop(&a);
        return rc;
    }
    if ((rc = sse_server_start(&f)) < 0) {
        sse_server_stop(&a);
        sse_server_stop(&b);
        return rc;
    }
    double good_took = 0, worst = 0;
    check_stream(&a, d);
    check_bad_input(&a);
    check_slow_clients(&a, &good_took);
    check_disconnects(&b, &worst);
    check_error_event(&f, d);

    printf("stopping the servers:\n");
    sse_server *all[] = {&a, &b, &f};
    bool stopped = true, released = true;
    unsigned streams = 0;
    for (int i = 0; i < 3; i++) {
        stopped &= sse_server_stop(all[i]) == 0 && all[i]->st.active == 0 && all[i]->st.rejecting == 0;
        released &= all[i]->st.streams_released == all[i]->st.streams_opened;
        streams += all[i]->st.streams_opened;
    }
    claim(stopped, "every server stops, with no connection left");
    claim(released, "every stream opened (%u) was released, once each", streams);
    snprintf(summary, cap,
             "%u SSE streams over HTTP/1.1 in order; disconnects released once within %.1f ms; "
             "400 431 405 404 408 503 answered; a good client took %.3f s beside a slowloris",
             streams, worst * 1e3, good_took);
    return 0;
}
