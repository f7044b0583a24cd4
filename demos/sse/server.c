/*
 * The server: what each connection does, and the event stream.
 *
 * A connection's fiber reads a request under a deadline (the request
 * timeout: 408 when it passes), answers it, and reads the next one while
 * the client keeps the connection (HTTP/1.1 keep-alive, pipelining).
 * A stream is a generator (stream_body) consumed by the connection's fiber,
 * which writes each event as a chunk.  While it streams, a watcher task
 * reads the socket: end of stream or an error means the client has left,
 * and the watcher cancels the stream's scope, which interrupts the
 * generator's sleep at once (not at the next write, a delay later).  The
 * stream's state belongs to the connection's fiber, which frees it after
 * closing the generator, whether the body ran or not.
 */
#include "server.h"

#include "http.h"
#include "page.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define IN_CAP 16384 /* bytes read ahead of the request being handled */

typedef struct conn {
    sse_server *srv;
    int fd;
    unsigned id;
    bool eof;                  /* the client closed its side */
    bool gone;                 /* the watcher saw the client leave */
    rill_scope *stream_scope;  /* the stream being served, for the watcher */
    size_t in_len;
    char in[IN_CAP];
    http_req req;
} conn;

/* One stream's state: what the generator works on, freed once by the
 * connection's fiber (stream_release). */
struct stream {
    sse_server *srv;
    unsigned id;
    int sent;          /* events written to the client */
    bool body_ran;     /* the generator's body started */
    bool body_closed;  /* and was closed or cancelled while suspended */
    char event[256];   /* the event being yielded */
};

__attribute__((format(printf, 2, 3))) static void say(const sse_server *s, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", s->cfg.name, line);
}

static int send_all(conn *c, const void *buf, size_t n) {
    ssize_t w = rill_write(c->fd, buf, n);
    return w < 0 ? (int)w : 0;
}

static int send_response(conn *c, int status, const char *type, const char *body, bool keep_alive,
                         bool http10, const char *extra) {
    char head[512];
    size_t blen = body ? strlen(body) : 0;
    size_t hlen = http_format_head(head, sizeof head, status, type, (long long)blen, false,
                                   keep_alive, http10, extra);
    c->srv->st.status[status]++;
    int rc = send_all(c, head, hlen);
    if (rc == 0 && blen > 0) rc = send_all(c, body, blen);
    return rc;
}

static int send_error(conn *c, int status, const char *extra) {
    char body[96];
    snprintf(body, sizeof body, "%d %s\n", status, http_reason(status));
    return send_response(c, status, "text/plain; charset=utf-8", body,
                         status == 404 && c->req.d.keep_alive, c->req.d.http10, extra);
}

/* Close after a response the client may still be sending into: shut our
 * side, then read and drop what comes for a moment.  Closing with unread
 * input would make the kernel reset the connection, and the client could
 * lose the response (a 431 after 64 KiB of headers, a 503 sent before the
 * request was read). */
static void linger_close(conn *c) {
    if (!c->eof && !c->gone && shutdown(c->fd, SHUT_WR) == 0) {
        rill_scope sc;
        rill_scope_enter(&sc, c->srv->cfg.linger);
        char junk[4096];
        size_t total = 0;
        while (total < (1u << 20)) {
            ssize_t n = rill_read(c->fd, junk, sizeof junk);
            if (n <= 0) break;
            total += (size_t)n;
        }
        rill_scope_exit(&sc);
    }
    rill_close(c->fd);
    c->fd = -1;
}

/* ---- the stream ----------------------------------------------------------- */

/* Hand one event to the consumer.  0, or what rill_yield returned: -EPIPE
 * when the consumer closes the generator. */
__attribute__((format(printf, 4, 5))) static int emit(rill_gen *g, struct stream *st,
                                                       const char *type, const char *fmt, ...) {
    int len = type ? snprintf(st->event, sizeof st->event, "event: %s\ndata: ", type)
                   : snprintf(st->event, sizeof st->event, "data: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->event + len, sizeof st->event - (size_t)len - 2, fmt, ap);
    va_end(ap);
    strcat(st->event, "\n\n");
    return rill_yield(g, st->event);
}

/* The generator of the original:
 *     yield init; for i in range(n): sleep; yield progress; yield data
 *     yield done
 * and an error inside it becomes an "error" event that ends the stream.
 * A cancellation (the client left, the server stops) is not an error: it
 * ends the body at once, as CancelledError goes through `except
 * Exception`.  Closing (rill_yield returns -EPIPE) ends it quietly. */
static int stream_body(rill_gen *g, void *arg) {
    struct stream *st = arg;
    const sse_config *cfg = &st->srv->cfg;
    st->body_ran = true;
    int n = cfg->events;
    int rc = emit(g, st, "init", "{\"status\": \"started\"}");
    for (int i = 0; rc == 0 && i < n; i++) {
        rc = rill_sleep(cfg->delay);
        if (rc == 0 && cfg->fail_at == i + 1) rc = -EIO; /* the simulated failure */
        if (rc < 0) break;
        rc = emit(g, st, "progress", "{\"current\": %d, \"total\": %d, \"percentage\": %.1f}",
                  i + 1, n, (i + 1) * 100.0 / n);
        if (rc == 0) rc = emit(g, st, NULL, "{\"id\": %d, \"message\": \"Message %d\"}", i, i);
    }
    if (rc == 0) rc = emit(g, st, "done", "{\"status\": \"completed\"}");
    if (rc == -EPIPE || rc == -ECANCELED) {
        st->body_closed = true; /* the client left, or the server stops */
        return rc == -EPIPE ? 0 : rc;
    }
    if (rc < 0) {
        /* Any other failure: say it in the stream, and end it cleanly. */
        char why[128];
        if (rc == -EIO && cfg->fail_at)
            snprintf(why, sizeof why, "simulated failure before event %d", cfg->fail_at);
        else
            snprintf(why, sizeof why, "%s", rill_strerror(rc));
        int y = emit(g, st, "error", "{\"error\": \"%s\"}", why);
        if (y == -EPIPE) st->body_closed = true;
    }
    return 0;
}

static void stream_release(struct stream *st) {
    sse_server *s = st->srv;
    s->st.streams_released++;
    if (!st->body_ran)
        say(s, "released stream %u (the generator never started)", st->id);
    else
        say(s, "released stream %u (after %d event%s%s)", st->id, st->sent,
            st->sent == 1 ? "" : "s", st->body_closed ? "; generator closed early" : "");
    free(st);
}

/* The watcher: reads what the client sends while its stream runs (a
 * pipelined request is kept for later), and on the end of its input or an
 * error cancels the stream.  A full input buffer leaves only the writes to
 * notice a departure. */
static int watch_main(void *arg) {
    conn *c = arg;
    while (!c->eof) {
        if (c->in_len == IN_CAP) {
            rill_sleep(RILL_FOREVER); /* until cancelled */
            return 0;
        }
        ssize_t n = rill_read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
        if (n == -ECANCELED) return 0;
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n == 0) c->eof = true;
        break;
    }
    c->gone = true;
    if (c->stream_scope) rill_scope_cancel(c->stream_scope);
    return 0;
}

/* Has the client left already (its request, then the end of its input)?
 * Looked at before the generator starts, without waiting: its body then
 * never runs, as a Python generator closed before its first step.  Later
 * departures are the watcher's. */
static bool already_gone(const conn *c) {
    if (c->eof) return true;
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int write_event(conn *c, const char *ev, bool http10) {
    if (http10) return send_all(c, ev, strlen(ev));
    char chunk[300];
    int len = snprintf(chunk, sizeof chunk, "%zx\r\n%s\r\n", strlen(ev), ev);
    return send_all(c, chunk, (size_t)len);
}

/* Serve one /stream request.  Returns true if the connection can carry
 * another request. */
static bool serve_stream(conn *c) {
    sse_server *s = c->srv;
    const http_decision *d = &c->req.d;
    struct stream *st = calloc(1, sizeof *st);
    rill_gen *g = st ? rill_gen_new(stream_body, st) : NULL;
    if (!g) {
        free(st);
        send_error(c, 500, NULL);
        return false;
    }
    st->srv = s;
    st->id = ++s->st.streams_opened;

    rill_scope scope;
    rill_scope_enter(&scope, RILL_FOREVER);
    c->stream_scope = &scope;
    c->gone = false;
    int rc = 0;
    rill_task *w = NULL;
    if (already_gone(c)) {
        c->gone = true;
        rc = -ECONNRESET;
    } else {
        /* Without a watcher the stream still works; a departure is then
         * seen at the next write. */
        w = rill_spawn_opts(watch_main, c, &(rill_opts){.name = "sse-watch"});
    }
    char head[512];
    size_t hlen = http_format_head(head, sizeof head, 200, "text/event-stream", -1, true,
                                   d->keep_alive && !d->http10, d->http10,
                                   "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    if (rc == 0) rc = send_all(c, head, hlen);
    if (rc == 0) s->st.status[200]++;
    while (rc == 0) {
        void *ev;
        int k = rill_gen_next(g, &ev);
        if (k <= 0) {
            rc = k;
            break;
        }
        rc = write_event(c, ev, d->http10);
        if (rc == 0) st->sent++;
    }
    if (rc == 0 && !d->http10) rc = send_all(c, "0\r\n\r\n", 5);
    c->stream_scope = NULL;
    rill_scope_exit(&scope);

    /* Stop the watcher, even while this fiber is cancelled (a join refused
     * would leave it running on a freed connection). */
    if (w) {
        rill_scope shield;
        rill_scope_enter(&shield, RILL_FOREVER);
        rill_scope_shield(&shield, true);
        rill_cancel(w);
        rill_join(w);
        rill_scope_exit(&shield);
    }
    bool gone = c->gone || rc == -EPIPE || rc == -ECONNRESET;
    bool started = st->body_ran;
    rill_gen_free(g); /* closes it if suspended: the body's cleanup runs */
    if (rc == 0) {
        s->st.streams_completed++;
    } else if (gone) {
        if (started) s->st.left_mid_stream++;
        else s->st.left_before_start++;
        say(s, "client %u left stream %u %s", c->id, st->id,
            started ? "mid-stream" : "before its first event");
        if (rc != -ECANCELED) c->gone = true;
    } else {
        say(s, "stream %u ended: %s", st->id, rill_strerror(rc));
    }
    stream_release(st);
    return rc == 0 && d->keep_alive && !d->http10;
}

/* ---- a connection --------------------------------------------------------- */

/* Read the next request's head into c->req.  1: decided (c->req.d); 0:
 * nothing to answer (the client closed, or an idle keep-alive connection
 * timed out); -ETIMEDOUT: the deadline passed with the request not
 * received (408); another negative errno: the connection failed or the
 * server is stopping. */
static int read_request(conn *c, bool first) {
    http_req *r = &c->req;
    http_req_init(r);
    rill_scope sc;
    rill_scope_enter(&sc, c->srv->cfg.request_timeout);
    int rc;
    for (;;) {
        if (c->in_len > 0) {
            size_t used = http_req_feed(r, c->in, c->in_len);
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
            if (r->d.status != 0) {
                rc = 1;
                break;
            }
        }
        if (c->eof) {
            rc = http_req_eof(r) ? 1 : 0;
            break;
        }
        ssize_t n = rill_read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
        } else if (n == 0) {
            c->eof = true;
        } else {
            rc = (int)n;
            break;
        }
    }
    if (rill_scope_exit(&sc) == -ETIMEDOUT && rc < 0)
        return first || http_req_started(r) ? -ETIMEDOUT : 0;
    return rc;
}

static int conn_main(void *arg) {
    conn *c = arg;
    sse_server *s = c->srv;
    s->st.connections++;
    bool more = true;
    for (bool first = true; more; first = false) {
        int rc = read_request(c, first);
        if (rc == -ETIMEDOUT) {
            say(s, "client %u: 408 (no request within %g s)", c->id, s->cfg.request_timeout);
            send_error(c, 408, NULL);
            break;
        }
        if (rc <= 0) {
            if (rc < 0 && rc != -ECANCELED) c->gone = true;
            break;
        }
        const http_decision *d = &c->req.d;
        if (d->status != 200) {
            if (d->status != 404) say(s, "client %u: %d %s", c->id, d->status, http_reason(d->status));
            more = send_error(c, d->status, d->status == 405 ? "Allow: GET\r\n" : NULL) == 0 &&
                   d->keep_alive;
        } else if (d->route == ROUTE_PAGE) {
            more = send_response(c, 200, "text/html; charset=utf-8", page_html, d->keep_alive,
                                 d->http10, "Cache-Control: no-cache\r\n") == 0 &&
                   d->keep_alive;
        } else {
            more = serve_stream(c);
        }
    }
    linger_close(c);
    s->st.active--;
    free(c);
    return 0;
}

/* More clients than the bound: say so at once and close (a 503 rather than
 * a connection left waiting in a queue nobody reads). */
static int reject_main(void *arg) {
    conn *c = arg;
    sse_server *s = c->srv;
    s->st.rejected++;
    say(s, "client %u: 503 (%d clients already)", c->id, s->cfg.max_clients);
    rill_scope sc;
    rill_scope_enter(&sc, s->cfg.linger);
    c->req.d = (http_decision){.status = 503};
    send_error(c, 503, "Retry-After: 1\r\n");
    rill_scope_exit(&sc);
    linger_close(c);
    s->st.rejecting--;
    free(c);
    return 0;
}

static int accept_loop(void *arg) {
    sse_server *s = arg;
    rill_group g;
    rill_group_init(&g);
    unsigned next_id = 0;
    for (;;) {
        int fd = rill_accept(s->lfd, NULL, NULL);
        if (fd == -ECANCELED || fd == -EBADF || fd == -EPERM) break;
        if (fd < 0) {
            /* Out of fds or memory: the connection waits in the backlog. */
            say(s, "accept: %s", rill_strerror(fd));
            if (rill_sleep(0.05) < 0) break;
            continue;
        }
        bool full = s->st.active >= (unsigned)s->cfg.max_clients;
        if (full && s->st.rejecting >= (unsigned)s->cfg.max_clients) {
            rill_close(fd); /* even the 503s are at their bound */
            continue;
        }
        conn *c = malloc(sizeof *c);
        if (!c) {
            rill_close(fd);
            continue;
        }
        c->srv = s;
        c->fd = fd;
        c->id = ++next_id;
        c->eof = c->gone = false;
        c->stream_scope = NULL;
        c->in_len = 0;
        http_req_init(&c->req);
        /* Counted here, not when the fiber first runs: a burst of accepts
         * must see the ones before it. */
        if (full) s->st.rejecting++;
        else s->st.active++;
        /* Children never fail (they return 0): one client's trouble does
         * not cancel the others. */
        if (rill_group_spawn_opts(&g, full ? reject_main : conn_main, c,
                                  &(rill_opts){.name = full ? "sse-503" : "sse-conn"}) < 0) {
            if (full) s->st.rejecting--;
            else s->st.active--;
            rill_close(fd);
            free(c);
        }
    }
    rill_group_cancel(&g);
    int rc = rill_group_wait(&g);
    return rc == -ECANCELED ? 0 : rc;
}

int sse_server_start(sse_server *s) {
    memset(&s->st, 0, sizeof s->st);
    s->lfd = rill_tcp_listen(s->cfg.host, s->cfg.port, 0);
    if (s->lfd < 0) return s->lfd;
    s->port = rill_local_port(s->lfd);
    s->task = rill_spawn_opts(accept_loop, s, &(rill_opts){.name = "sse-accept"});
    if (!s->task) {
        int err = -errno;
        rill_close(s->lfd);
        return err;
    }
    return 0;
}

int sse_server_stop(sse_server *s) {
    rill_cancel(s->task);
    int rc = rill_join(s->task);
    s->task = NULL;
    rill_close(s->lfd);
    s->lfd = -1;
    return rc == -ECANCELED ? 0 : rc;
}
