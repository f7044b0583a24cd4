/*
 * libFuzzer target for the SSE demo's request handling (demos/sse/http.c):
 * the input is what a client sends on one connection.  Requests are
 * decided one after another, as the server does (the bytes a decision
 * leaves are the next request's, while the connection is kept), and each
 * decision must hold what the server relies on:
 *   - it does not depend on how the bytes arrive: whole, one byte at a
 *     time, or in pieces of 7 and 1000 bytes, the same status, route,
 *     keep-alive and the same number of bytes consumed;
 *   - a status is always taken at the end of the stream, and is one the
 *     server sends (200 with a route, else 400, 404, 405, 431 and none);
 *   - no more than HTTP_MAX_HEAD + 1 bytes are read for one head, and
 *     431 is given exactly when that many were needed;
 *   - an error other than 404 closes the connection;
 *   - its response head can be formatted.
 * Memory errors and undefined behaviour are caught by ASan and UBSan.
 *
 *   make test-fuzz   (clang -fsanitize=fuzzer,address,undefined; 60 s)
 */
#include "http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int ok) {
    if (!ok) __builtin_trap();
}

static const size_t pieces[] = {1, 7, 1000};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *buf = (const char *)data;
    size_t at = 0;
    for (int k = 0; at < size && k < 32; k++) {
        http_decision d;
        size_t used = http_decide(buf + at, size - at, 0, true, &d);
        for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
            http_decision e;
            size_t u = http_decide(buf + at, size - at, pieces[i], true, &e);
            must(u == used && e.status == d.status && e.route == d.route &&
                 e.keep_alive == d.keep_alive && e.http10 == d.http10);
        }
        must(used <= size - at && used <= HTTP_MAX_HEAD + 1);
        switch (d.status) {
        case 200: must(d.route == ROUTE_PAGE || d.route == ROUTE_STREAM); break;
        case 404: must(d.route == ROUTE_NONE); break;
        case 400: case 405: case 431: must(d.route == ROUTE_NONE && !d.keep_alive); break;
        default: must(0); /* a byte arrived: the end of the stream decides */
        }
        must((d.status == 431) == (used == HTTP_MAX_HEAD + 1 && d.status != 400));
        char head[512];
        must(http_format_head(head, sizeof head, d.status, "text/plain", d.route ? -1 : 10,
                              d.route == ROUTE_STREAM, d.keep_alive, d.http10, NULL) > 0);
        if (!d.keep_alive || used == 0) break;
        at += used;
    }
    return 0;
}
