/*
 * The SSE demo's request handling, without sockets: bytes go in, a decision
 * comes out (what to answer, and whether the connection may carry another
 * request).  The connection code (server.c) feeds it what it reads; the
 * fuzz target (tests/fuzz/fuzz_http.c) feeds it anything.  Parsing is
 * libhttp-parser's; this file adds the limits and the routes.
 */
#ifndef SSE_HTTP_H
#define SSE_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

/* The request line and headers together may be this long at most (431). */
#define HTTP_MAX_HEAD 8192

enum http_route {
    ROUTE_NONE,   /* an error status: no page, no stream */
    ROUTE_PAGE,   /* GET /: the HTML page */
    ROUTE_STREAM, /* GET /stream: the event stream */
};

typedef struct http_decision {
    int status;           /* 200, 400, 404, 405, 431; 0 until decided */
    enum http_route route;
    bool keep_alive;      /* another request may follow on the connection */
    bool http10;          /* an HTTP/1.0 client: no chunked encoding */
} http_decision;

/* One request being read.  Caller-allocated; http_req_init before each
 * request on a connection. */
typedef struct http_req {
    http_parser parser;
    size_t head_bytes;    /* bytes of this request consumed so far */
    size_t url_len;
    bool url_too_long;
    bool head_done;       /* the parser reached the end of the headers */
    http_decision d;
    char url[HTTP_MAX_HEAD + 1];
} http_req;

void http_req_init(http_req *r);

/* Feed n bytes read from the client.  Returns how many were consumed: all
 * of them while no decision is taken; once r->d.status is set, the bytes
 * of this request only (the rest, a pipelined request, is the next one's).
 * Feeding a decided request consumes nothing. */
size_t http_req_feed(http_req *r, const char *buf, size_t n);

/* The client closed its side: a request begun and not finished is
 * malformed (400).  Returns true if a decision was taken (false: no byte
 * of this request had arrived, nothing to answer). */
bool http_req_eof(http_req *r);

/* Whether any byte of this request has arrived (a timeout then gets 408;
 * an idle keep-alive connection is closed silently). */
bool http_req_started(const http_req *r);

/* The reason phrase of the statuses this server sends ("Not Found"). */
const char *http_reason(int status);

/* Format a response head into buf (NUL-terminated): status line,
 * Content-Type (if not NULL), Content-Length (if >= 0, else chunked when
 * chunked is true), Connection, then extra (whole header lines ending in
 * "\r\n", or NULL) and the blank line.  Returns its length, or 0 if cap is
 * too small. */
size_t http_format_head(char *buf, size_t cap, int status, const char *content_type,
                        long long content_length, bool chunked, bool keep_alive,
                        bool http10, const char *extra);

/* Everything in one call, for tests and the fuzzer: decide on the first
 * request of buf[0..n) as if the bytes arrived in pieces of `piece` bytes
 * (0: all at once) followed by the end of the stream when eof is true.
 * Returns the bytes consumed; *d is the decision (status 0: none yet). */
size_t http_decide(const char *buf, size_t n, size_t piece, bool eof, http_decision *d);

#endif
