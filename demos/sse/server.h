/*
 * The SSE demo's server: an accept loop, one fiber per connection, one
 * generator per event stream.  Several servers can run in one rill_run
 * (the self-test starts three with different settings).
 */
#ifndef SSE_SERVER_H
#define SSE_SERVER_H

#include <rill.h>

typedef struct sse_config {
    const char *name;       /* prefix of its log lines ("sse") */
    const char *host;       /* numeric, or a name (looked up) */
    int port;               /* 0: any free port */
    int max_clients;        /* connections served at once; more get 503 */
    int events;             /* progress + data pairs per stream */
    double delay;           /* seconds before each pair */
    double request_timeout; /* seconds to receive a request's head (408) */
    double linger;          /* seconds to drain a client's input before closing */
    int fail_at;            /* 0, or the pair before which the generator fails */
} sse_config;

typedef struct sse_stats {
    unsigned connections;        /* accepted and served */
    unsigned active;             /* being served now */
    unsigned rejected;           /* answered 503 */
    unsigned rejecting;          /* 503s being sent now */
    unsigned streams_opened;     /* /stream requests that got a stream */
    unsigned streams_released;   /* of those, whose state has been freed */
    unsigned streams_completed;  /* ended with "done" or "error", in full */
    unsigned left_mid_stream;    /* clients gone while their generator ran */
    unsigned left_before_start;  /* clients gone before the first event */
    unsigned status[600];        /* responses sent, by status */
} sse_stats;

typedef struct sse_server {
    sse_config cfg;
    sse_stats st;
    int lfd;
    int port;                    /* the bound port, once started */
    rill_task *task;             /* the accept loop */
} sse_server;

/* Listen on cfg.host:cfg.port and start accepting (in a task).  0, or a
 * negative errno from rill_tcp_listen / rill_spawn. */
int sse_server_start(sse_server *s);

/* Stop accepting, cancel every connection (their streams are released),
 * wait for them all and close the listening socket.  Returns 0 or the
 * accept loop's error. */
int sse_server_stop(sse_server *s);

#endif
