/*
 * Request handling as a pure function of the bytes received (see http.h).
 *
 * The head limit does not depend on how the bytes were split: the parser
 * is never given more than HTTP_MAX_HEAD + 1 bytes of one request's head,
 * so a head that is not over by then is over the limit, whatever the
 * reads were.  The parser is paused at the end of the headers: the bytes
 * after them belong to the next request (pipelining) or, for a request
 * with a body, to a body this server never reads (it answers and closes).
 */
#include "http.h"

#include <stdio.h>
#include <string.h>

static int on_url(http_parser *p, const char *at, size_t len) {
    http_req *r = p->data;
    if (len > HTTP_MAX_HEAD - r->url_len) {
        r->url_too_long = true; /* the head limit catches it too */
        return 0;
    }
    memcpy(r->url + r->url_len, at, len);
    r->url_len += len;
    r->url[r->url_len] = '\0';
    return 0;
}

/* The path of the URL, without query or fragment; false if it has none
 * (an absolute URL's path is used as is, as RFC 9112 says a server must
 * accept). */
static bool url_path(const http_req *r, const char **path, size_t *len) {
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(r->url, r->url_len, 0, &u) != 0) return false;
    if (!(u.field_set & (1 << UF_PATH))) return false;
    *path = r->url + u.field_data[UF_PATH].off;
    *len = u.field_data[UF_PATH].len;
    return true;
}

static bool path_is(const char *path, size_t len, const char *want) {
    return len == strlen(want) && memcmp(path, want, len) == 0;
}

static void decide(http_req *r) {
    http_parser *p = &r->parser;
    http_decision *d = &r->d;
    d->http10 = p->http_major == 1 && p->http_minor == 0;
    /* Bodies are never read: only a request without one leaves the
     * connection fit for the next. */
    bool body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0) ||
                p->uses_transfer_encoding;
    d->keep_alive = http_should_keep_alive(p) && !body && !p->upgrade;
    const char *path;
    size_t len;
    if (r->url_too_long || !url_path(r, &path, &len)) {
        d->status = 400;
    } else if (path_is(path, len, "/") || path_is(path, len, "/stream")) {
        if (p->method != HTTP_GET) {
            d->status = 405;
        } else {
            d->status = 200;
            d->route = path_is(path, len, "/") ? ROUTE_PAGE : ROUTE_STREAM;
        }
    } else {
        d->status = 404;
    }
    if (d->status >= 400 && d->status != 404) d->keep_alive = false;
}

static int on_headers_complete(http_parser *p) {
    http_req *r = p->data;
    r->head_done = true;
    decide(r);
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
};

void http_req_init(http_req *r) {
    memset(r, 0, offsetof(http_req, url) + 1);
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
}

size_t http_req_feed(http_req *r, const char *buf, size_t n) {
    if (r->d.status != 0 || n == 0) return 0;
    /* Up to one byte past the limit: enough to know the head is too long. */
    size_t room = HTTP_MAX_HEAD + 1 - r->head_bytes;
    size_t give = n < room ? n : room;
    size_t used = http_parser_execute(&r->parser, &settings, buf, give);
    enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);
    if (r->head_done) {
        /* Paused at the end of the headers, on the "\n" that ends them:
         * it is this request's last byte. */
        if (used < give && buf[used] == '\n') used++;
        r->head_bytes += used;
        if (r->head_bytes > HTTP_MAX_HEAD) {
            r->d = (http_decision){.status = 431};
        }
        return used;
    }
    r->head_bytes += used;
    if (err == HPE_HEADER_OVERFLOW) {
        r->d = (http_decision){.status = 431};
    } else if (err != HPE_OK) {
        r->d = (http_decision){.status = 400};
    } else if (r->head_bytes > HTTP_MAX_HEAD) {
        r->d = (http_decision){.status = 431};
    }
    return used;
}

bool http_req_started(const http_req *r) { return r->head_bytes > 0; }

bool http_req_eof(http_req *r) {
    if (r->d.status != 0) return true;
    if (!http_req_started(r)) return false;
    r->d = (http_decision){.status = 400};
    return true;
}

const char *http_reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

size_t http_format_head(char *buf, size_t cap, int status, const char *content_type,
                        long long content_length, bool chunked, bool keep_alive,
                        bool http10, const char *extra) {
    char length[64] = "";
    if (content_length >= 0)
        snprintf(length, sizeof length, "Content-Length: %lld\r\n", content_length);
    else if (chunked && !http10)
        snprintf(length, sizeof length, "Transfer-Encoding: chunked\r\n");
    /* An HTTP/1.0 client keeps the connection only if both say so. */
    const char *conn = !keep_alive ? "Connection: close\r\n"
                       : http10    ? "Connection: keep-alive\r\n"
                                   : "";
    int len = snprintf(buf, cap, "HTTP/1.%d %d %s\r\n%s%s%s%s%s%s\r\n", http10 ? 0 : 1, status,
                       http_reason(status), content_type ? "Content-Type: " : "",
                       content_type ? content_type : "", content_type ? "\r\n" : "", length,
                       conn, extra ? extra : "");
    return len < 0 || (size_t)len >= cap ? 0 : (size_t)len;
}

size_t http_decide(const char *buf, size_t n, size_t piece, bool eof, http_decision *d) {
    static http_req r; /* large (the URL): not on a small stack */
    http_req_init(&r);
    size_t at = 0;
    while (at < n && r.d.status == 0) {
        size_t give = piece == 0 || n - at < piece ? n - at : piece;
        size_t used = http_req_feed(&r, buf + at, give);
        at += used;
        if (used < give) break; /* decided */
    }
    if (eof && r.d.status == 0) http_req_eof(&r);
    *d = r.d;
    return at;
}
