/* Streams and sockets (rill.h "Streams and sockets"): rill_read, rill_write,
 * the TCP and Unix socket calls, rill_close and rill_lines.  Only loopback
 * is used: no test needs a network. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/un.h>

#include "helpers.h"

#define MIB (1024 * 1024)

/* ---- helpers ------------------------------------------------------------ */

static void temp_sock_path(char *path, size_t len, const char *tag);

static void make_socketpair(int sv[2]) {
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void make_pipe(int p[2]) { cr_assert_eq(pipe2(p, O_CLOEXEC), 0); }

static bool is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

static bool is_nonblocking(int fd) { return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

static bool is_cloexec(int fd) { return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

static int sockopt(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    cr_assert_eq(getsockopt(fd, level, name, &v, &len), 0, "getsockopt: %s", strerror(errno));
    return v;
}

/* A number no file has now: writes to it, reads from it, closes of it must
 * all be -EBADF. */
static int unused_fd(void) {
    int fd = 700;
    while (is_open(fd)) fd++;
    return fd;
}

/* Nothing is waiting to be read on fd (which must be a socket). */
static bool socket_is_empty(int fd) {
    char c;
    return recv(fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* A byte pattern with no short period, to catch lost, doubled or reordered
 * chunks. */
static uint8_t pattern(size_t i) { return (uint8_t)((i * 2654435761u) >> 13) ^ (uint8_t)(i >> 17); }

/* Poll (sleeping, so that the loop runs) until *done or `seconds` pass. */
static bool wait_done(const volatile bool *done, double seconds) {
    double end = rill_now() + seconds * (under_valgrind() ? 10 : 1);
    while (!*done && rill_now() < end) rill_sleep(0.001);
    return *done;
}

/* A listener on 127.0.0.1 and one connection to it: client and server ends. */
static void tcp_pair(int *client, int *server) {
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0, "rill_tcp_listen: %s", rill_strerror(l));
    int port = rill_local_port(l);
    cr_assert(port > 0, "rill_local_port: %s", rill_strerror(port));
    *client = rill_tcp_connect("127.0.0.1", port);
    cr_assert(*client >= 0, "rill_tcp_connect: %s", rill_strerror(*client));
    *server = rill_accept(l, NULL, NULL);
    cr_assert(*server >= 0, "rill_accept: %s", rill_strerror(*server));
    expect_eq(rill_close(l), 0);
}

/* Close fd so that its peer sees a reset rather than an end of stream. */
static void reset_close(int fd) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    expect_eq(rill_close(fd), 0);
}

/* Send "msg" one way and check it arrives whole. */
static void check_carries(int from, int to, const char *msg) {
    size_t n = strlen(msg);
    char buf[128] = {0};
    expect_eq(rill_write(from, msg, n), n);
    size_t got = 0;
    while (got < n) {
        ssize_t r = rill_read(to, buf + got, sizeof buf - 1 - got);
        cr_assert(r > 0, "rill_read: %s", r < 0 ? rill_strerror((int)r) : "end of stream");
        got += (size_t)r;
    }
    cr_assert_str_eq(buf, msg);
}

/* A task that makes one call on fd and records what it returned. */
typedef struct io_call {
    int fd;
    void *buf; /* written into by reads only */
    size_t n;
    ssize_t rc;
    volatile bool done;
} io_call;

static int reads_once(void *arg) {
    io_call *c = arg;
    c->rc = rill_read(c->fd, c->buf, c->n);
    c->done = true;
    return 0;
}

static int writes_all(void *arg) {
    io_call *c = arg;
    c->rc = rill_write(c->fd, c->buf, c->n);
    c->done = true;
    return 0;
}

static int accepts_once(void *arg) {
    io_call *c = arg;
    c->rc = rill_accept(c->fd, NULL, NULL);
    c->done = true;
    return 0;
}

static int waits_readable(void *arg) {
    io_call *c = arg;
    c->rc = rill_wait_fd(c->fd, RILL_READ);
    c->done = true;
    return 0;
}

/* Writes buf, then ends the stream (shutdown for a socket, close for a
 * pipe's write end: `close_after`). */
typedef struct stream_writer {
    int fd;
    const char *buf;
    size_t n;
    bool close_after;
    ssize_t rc;
} stream_writer;

static int writes_then_ends(void *arg) {
    stream_writer *w = arg;
    w->rc = rill_write(w->fd, w->buf, w->n);
    if (w->close_after) rill_close(w->fd);
    else shutdown(w->fd, SHUT_WR);
    return 0;
}

static void sigpipe_default_and_unblocked(void) {
    cr_assert(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    cr_assert_eq(pthread_sigmask(SIG_UNBLOCK, &set, NULL), 0);
}

static void (*sigpipe_handler(void))(int) {
    struct sigaction sa;
    cr_assert_eq(sigaction(SIGPIPE, NULL, &sa), 0);
    return sa.sa_handler;
}

/* ===========================================================================
 * rill_read, rill_write
 * ======================================================================== */

FIBER_TEST(io, bytes_written_to_a_socketpair_or_a_pipe_are_read_back) {
    int sv[2], p[2];
    make_socketpair(sv);
    make_pipe(p);
    check_carries(sv[0], sv[1], "hello");
    check_carries(sv[1], sv[0], "and back");
    check_carries(p[1], p[0], "through a pipe");
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
    return 0;
}

FIBER_TEST(io, a_read_returns_the_bytes_there_without_waiting_to_fill_its_buffer) {
    int sv[2];
    make_socketpair(sv);
    char buf[100];
    /* A read that waited for 100 bytes would hang: the scope turns that into
     * a failure rather than a timeout. */
    rill_scope s;
    rill_scope_enter(&s, 5);
    cr_assert_eq(write(sv[1], "abc", 3), 3);
    expect_eq(rill_read(sv[0], buf, sizeof buf), 3);
    cr_assert(memcmp(buf, "abc", 3) == 0);
    cr_assert_eq(write(sv[1], "0123456789", 10), 10);
    expect_eq(rill_read(sv[0], buf, 4), 4);
    cr_assert(memcmp(buf, "0123", 4) == 0);
    expect_eq(rill_read(sv[0], buf, sizeof buf), 6);
    cr_assert(memcmp(buf, "456789", 6) == 0);
    expect_eq(rill_scope_exit(&s), 0);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

FIBER_TEST(io, a_read_waits_for_data_while_other_fibers_run) {
    int sv[2];
    make_socketpair(sv);
    char buf[16] = {0};
    io_call r = {.fd = sv[0], .buf = buf, .n = sizeof buf};
    rill_task *t = rill_spawn(reads_once, &r);
    expect_eq(rill_sleep(0.02), 0); /* this fiber runs while the reader waits */
    cr_assert(!r.done, "rill_read returned %zd with nothing to read", r.rc);
    cr_assert_eq(write(sv[1], "late", 4), 4);
    expect_eq(rill_join(t), 0);
    expect_eq(r.rc, 4);
    cr_assert_str_eq(buf, "late");
    close(sv[0]);
    close(sv[1]);
    return 0;
}

/* A reader that takes its time: small reads of varying sizes, and a sleep
 * now and then, so that the writer finds the buffer full again and again. */
typedef struct slow_reader {
    int fd;
    uint8_t *got;
    size_t total, n;
    const volatile bool *writer_done;
    bool writer_was_waiting;
} slow_reader;

static int reads_slowly(void *arg) {
    slow_reader *r = arg;
    for (size_t i = 0; r->n < r->total; i++) {
        size_t want = 1000 + (i * 977) % 7000;
        if (want > r->total - r->n) want = r->total - r->n;
        ssize_t got = rill_read(r->fd, r->got + r->n, want);
        if (got <= 0) return got < 0 ? (int)got : -EPIPE;
        if (r->n == 0) r->writer_was_waiting = !*r->writer_done;
        r->n += (size_t)got;
        if (i % 64 == 63 && rill_sleep(0.001) != 0) return -ECANCELED;
    }
    return 0;
}

static void write_to_slow_reader(int wfd, int rfd) {
    enum { TOTAL = 8 * MIB };
    uint8_t *out = malloc(TOTAL), *in = malloc(TOTAL);
    cr_assert(out && in);
    for (size_t i = 0; i < TOTAL; i++) out[i] = pattern(i);
    memset(in, 0, TOTAL);
    volatile bool done = false;
    slow_reader r = {.fd = rfd, .got = in, .total = TOTAL, .writer_done = &done};
    rill_task *t = rill_spawn(reads_slowly, &r);
    expect_eq(rill_write(wfd, out, TOTAL), TOTAL);
    done = true;
    expect_eq(rill_join(t), 0);
    expect_eq(r.n, TOTAL);
    cr_assert(r.writer_was_waiting, "the write finished before the reader read anything");
    if (memcmp(in, out, TOTAL) != 0) {
        size_t i = 0;
        while (in[i] == out[i]) i++;
        cr_assert_fail("byte %zu differs: got %u, wrote %u", i, in[i], out[i]);
    }
    free(out);
    free(in);
}

FIBER_TEST(io, eight_mib_written_to_a_slow_reader_arrive_whole_and_in_order) {
    int sv[2], p[2];
    make_socketpair(sv);
    write_to_slow_reader(sv[0], sv[1]);
    make_pipe(p); /* 64 KiB at a time: many partial writes */
    write_to_slow_reader(p[1], p[0]);
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
    return 0;
}

FIBER_TEST(io, a_read_returns_zero_at_the_end_of_the_stream) {
    int sv[2], p[2];
    char buf[16];
    make_socketpair(sv);
    cr_assert_eq(write(sv[1], "last", 4), 4);
    cr_assert_eq(shutdown(sv[1], SHUT_WR), 0);
    expect_eq(rill_read(sv[0], buf, sizeof buf), 4);
    expect_eq(rill_read(sv[0], buf, sizeof buf), 0);
    expect_eq(rill_read(sv[0], buf, sizeof buf), 0);
    /* A reader already waiting when the writer goes. */
    make_pipe(p);
    io_call r = {.fd = p[0], .buf = buf, .n = sizeof buf, .rc = 1};
    rill_task *t = rill_spawn(reads_once, &r);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!r.done);
    close(p[1]);
    expect_eq(rill_join(t), 0);
    expect_eq(r.rc, 0);
    close(p[0]);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

FIBER_TEST(io, reading_or_writing_zero_bytes_returns_zero_at_once) {
    int sv[2];
    make_socketpair(sv);
    char buf[4];
    rill_scope s; /* a call that waited would be cut here, and fail */
    rill_scope_enter(&s, 2);
    expect_eq(rill_read(sv[0], buf, 0), 0);
    expect_eq(rill_read(sv[0], NULL, 0), 0);
    expect_eq(rill_write(sv[0], buf, 0), 0);
    expect_eq(rill_write(sv[0], NULL, 0), 0);
    expect_eq(rill_scope_exit(&s), 0);
    cr_assert(socket_is_empty(sv[1]));
    close(sv[0]);
    close(sv[1]);
    return 0;
}

FIBER_TEST(io, a_null_buffer_is_einval) {
    int sv[2];
    make_socketpair(sv);
    cr_assert_eq(write(sv[1], "x", 1), 1);
    expect_eq(rill_read(sv[0], NULL, 1), -EINVAL);
    expect_eq(rill_write(sv[0], NULL, 1), -EINVAL);
    cr_assert(socket_is_empty(sv[1]), "rill_write(NULL) wrote something");
    char c;
    expect_eq(rill_read(sv[0], &c, 1), 1); /* the byte was not consumed */
    close(sv[0]);
    close(sv[1]);
    return 0;
}

FIBER_TEST(io, bad_descriptors_are_ebadf) {
    char buf[4] = "abc";
    expect_eq(rill_read(-1, buf, sizeof buf), -EBADF);
    expect_eq(rill_write(-1, buf, sizeof buf), -EBADF);
    int p[2];
    make_pipe(p);
    int closed = p[0];
    close(p[0]);
    expect_eq(rill_read(closed, buf, sizeof buf), -EBADF);
    expect_eq(rill_write(closed, buf, sizeof buf), -EBADF);
    close(p[1]);
    int never = unused_fd();
    expect_eq(rill_read(never, buf, sizeof buf), -EBADF);
    expect_eq(rill_write(never, buf, sizeof buf), -EBADF);
    return 0;
}

Test(io, calls_that_wait_are_eperm_outside_a_fiber_and_the_others_work, .timeout = TEST_TIMEOUT) {
    int sv[2];
    make_socketpair(sv);
    char buf[8];
    expect_eq(rill_read(sv[0], buf, sizeof buf), -EPERM);
    expect_eq(rill_write(sv[0], "x", 1), -EPERM);
    cr_assert(socket_is_empty(sv[1]), "rill_write outside a fiber wrote");
    /* A numeric host needs no lookup, so no fiber. */
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0, "rill_tcp_listen: %s", rill_strerror(l));
    int port = rill_local_port(l);
    cr_assert(port > 0);
    expect_eq(rill_accept(l, NULL, NULL), -EPERM);
    expect_eq(rill_tcp_connect("127.0.0.1", port), -EPERM);
    expect_eq(rill_tcp_listen("localhost", 0, 0), -EPERM);
    char path[64];
    snprintf(path, sizeof path, "/tmp/rill-io-%d-eperm.sock", (int)getpid());
    unlink(path);
    int u = rill_unix_listen(path, 0); /* does not block */
    cr_assert(u >= 0, "rill_unix_listen: %s", rill_strerror(u));
    expect_eq(rill_unix_connect(path), -EPERM);
    rill_gen *g = rill_lines(sv[0]);
    cr_assert_not_null(g);
    void *v;
    expect_eq(rill_gen_next(g, &v), -EPERM);
    rill_gen_free(g);
    expect_eq(rill_close(u), 0);
    expect_eq(rill_close(l), 0);
    expect_eq(rill_close(sv[0]), 0);
    expect_eq(rill_close(sv[1]), 0);
    unlink(path);
}

FIBER_TEST(io, a_read_after_a_short_read_gets_what_came_meanwhile_at_once) {
    /* A short read may make the next one wait for the reactor first: that
     * wait must end at once whenever there is something to read. */
    int sv[2];
    make_socketpair(sv);
    char buf[64] = {0};
    rill_scope s; /* a read that stalled would be cut here, and fail */
    rill_scope_enter(&s, 5);
    cr_assert_eq(write(sv[1], "one", 3), 3);
    expect_eq(rill_read(sv[0], buf, sizeof buf), 3); /* short */
    cr_assert_eq(write(sv[1], "two", 3), 3);
    expect_eq(rill_read(sv[0], buf, sizeof buf), 3);
    expect_eq(rill_read(sv[0], buf, 0), 0);
    cr_assert_eq(shutdown(sv[1], SHUT_WR), 0);
    expect_eq(rill_read(sv[0], buf, sizeof buf), 0);
    /* The number closed with close() after a short read, and a regular
     * file opened on it: read at once. */
    cr_assert_eq(write(sv[0], "x", 1), 1);
    expect_eq(rill_read(sv[1], buf, sizeof buf), 1); /* short */
    int x = sv[1];
    close(sv[1]);
    char path[] = "/tmp/rill-io-file-XXXXXX";
    int f = mkostemp(path, O_CLOEXEC);
    cr_assert_eq(f, x, "the file did not take the number: the test shows less");
    cr_assert_eq(write(f, "file data", 9), 9);
    cr_assert_eq(lseek(f, 0, SEEK_SET), 0);
    memset(buf, 0, sizeof buf);
    expect_eq(rill_read(f, buf, sizeof buf), 9);
    cr_assert_str_eq(buf, "file data");
    expect_eq(rill_read(f, buf, sizeof buf), 0);
    expect_eq(rill_scope_exit(&s), 0);
    close(f);
    unlink(path);
    close(sv[0]);
    return 0;
}

static int sleeps_then_writes(void *arg) {
    io_call *c = arg;
    rill_sleep(0.02);
    c->rc = rill_write(c->fd, c->buf, c->n);
    c->done = true;
    return 0;
}

FIBER_TEST(io, a_blocking_socket_of_the_caller_is_waited_for_and_keeps_its_flags) {
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert(!is_nonblocking(sv[0]) && !is_nonblocking(sv[1]));
    char buf[8] = {0};
    io_call w = {.fd = sv[1], .buf = (char[]){"wake"}, .n = 4};
    rill_task *t = rill_spawn(sleeps_then_writes, &w);
    /* A read that blocked the thread would never let the writer run. */
    expect_eq(rill_read(sv[0], buf, sizeof buf), 4);
    cr_assert_str_eq(buf, "wake");
    expect_eq(rill_join(t), 0);
    expect_eq(w.rc, 4);
    cr_assert(!is_nonblocking(sv[0]) && !is_nonblocking(sv[1]),
              "rill_read or rill_write changed the flags of a socket of the caller's");
    close(sv[0]);
    close(sv[1]);
    return 0;
}

FIBER_TEST(io, a_pipe_is_made_nonblocking_by_its_first_read_or_write) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert(!is_nonblocking(p[0]) && !is_nonblocking(p[1]));
    char buf[8] = {0};
    io_call w = {.fd = p[1], .buf = (char[]){"wake"}, .n = 4};
    rill_task *t = rill_spawn(sleeps_then_writes, &w);
    expect_eq(rill_read(p[0], buf, sizeof buf), 4);
    cr_assert_str_eq(buf, "wake");
    expect_eq(rill_join(t), 0);
    expect_eq(w.rc, 4);
    cr_assert(is_nonblocking(p[0]), "the read end is still blocking");
    cr_assert(is_nonblocking(p[1]), "the write end is still blocking");
    close(p[0]);
    close(p[1]);
    return 0;
}

/* ===========================================================================
 * Cancellation
 * ======================================================================== */

FIBER_TEST(cancel, a_read_cut_by_a_deadline_is_ecanceled_and_the_data_comes_later) {
    int sv[2];
    make_socketpair(sv);
    char buf[16] = {0};
    rill_scope s;
    rill_scope_enter(&s, 0.02);
    expect_eq(rill_read(sv[0], buf, sizeof buf), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    cr_assert_eq(write(sv[1], "abcdef", 6), 6);
    expect_eq(rill_read(sv[0], buf, sizeof buf), 6);
    cr_assert_str_eq(buf, "abcdef");
    close(sv[0]);
    close(sv[1]);
    return 0;
}

FIBER_TEST(cancel, a_read_cancelled_with_rill_cancel_is_ecanceled_and_consumes_nothing) {
    int p[2];
    make_pipe(p);
    char buf[16] = {0};
    io_call r = {.fd = p[0], .buf = buf, .n = sizeof buf};
    rill_task *t = rill_spawn(reads_once, &r);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!r.done);
    expect_eq(rill_cancel(t), 1);
    expect_eq(rill_join(t), 0);
    expect_eq(r.rc, -ECANCELED);
    expect_eq(rill_write(p[1], "later", 5), 5);
    expect_eq(rill_read(p[0], buf, sizeof buf), 5);
    cr_assert_str_eq(buf, "later");
    close(p[0]);
    close(p[1]);
    return 0;
}

FIBER_TEST(cancel, a_read_in_a_cancelled_scope_is_ecanceled_even_with_data_there) {
    int sv[2];
    make_socketpair(sv);
    cr_assert_eq(write(sv[1], "kept", 4), 4);
    char buf[8] = {0};
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_cancel(&s);
    expect_eq(rill_read(sv[0], buf, sizeof buf), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    expect_eq(rill_read(sv[0], buf, sizeof buf), 4);
    cr_assert_str_eq(buf, "kept");
    close(sv[0]);
    close(sv[1]);
    return 0;
}

/* Data arrives and the reader is cancelled in the same round, with 0, 1 or 2
 * yields between: whichever wins, every byte is either in the reader's
 * buffer or still in the socket. */
FIBER_TEST(cancel, a_read_cancelled_as_data_arrives_takes_all_of_it_or_none) {
    int sv[2];
    make_socketpair(sv);
    int cancelled = 0, served = 0;
    for (int i = 0; i < 30; i++) {
        char buf[32] = {0}, rest[32] = {0};
        io_call r = {.fd = sv[0], .buf = buf, .n = sizeof buf};
        rill_task *t = rill_spawn(reads_once, &r);
        expect_eq(rill_sleep(0.001), 0); /* the reader waits on the socket */
        cr_assert_eq(write(sv[1], "0123456789", 10), 10);
        for (int y = 0; y < i % 3; y++) rill_yield_now();
        rill_cancel(t);
        expect_eq(rill_join(t), 0);
        if (r.rc == -ECANCELED) {
            cancelled++;
            expect_eq(rill_read(sv[0], rest, sizeof rest), 10);
            cr_assert_str_eq(rest, "0123456789");
        } else {
            served++;
            expect_eq(r.rc, 10);
            cr_assert_str_eq(buf, "0123456789");
            cr_assert(socket_is_empty(sv[0]));
        }
    }
    cr_assert(cancelled > 0, "no read was cancelled (%d served)", served);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

/* The wake-up delivered, then the cancellation: a fiber woken in the same
 * round, and run first, cancels the reader (or acceptor) before it runs.
 * rill.h: the call then completes; whatever it returns, no byte and no
 * connection may be lost. */
typedef struct same_round {
    int tick;
    rill_task *victim;
    const volatile bool *victim_done;
    bool victim_ran_first;
} same_round;

static int cancels_its_victim_when_woken(void *arg) {
    same_round *r = arg;
    if (rill_wait_fd(r->tick, RILL_READ) != RILL_READ) return -EIO;
    r->victim_ran_first = *r->victim_done;
    rill_cancel(r->victim);
    return 0;
}

/* Whether the canceller ran first (the case the test is about). */
static bool cancelled_right_after_its_wake(bool accept, bool wake_victim_first) {
    int sv[2], tick[2], l = -1, port = 0, client = -1;
    make_socketpair(sv);
    make_socketpair(tick);
    char buf[32] = {0};
    io_call v = {.fd = sv[0], .buf = buf, .n = sizeof buf};
    if (accept) {
        l = rill_tcp_listen("127.0.0.1", 0, 0);
        cr_assert(l >= 0);
        port = rill_local_port(l);
        v.fd = l;
    }
    same_round r = {.tick = tick[0], .victim_done = &v.done};
    r.victim = rill_spawn(accept ? accepts_once : reads_once, &v);
    rill_task *tm = rill_spawn(cancels_its_victim_when_woken, &r);
    expect_eq(rill_sleep(0.01), 0); /* both wait, past a poll */
    cr_assert(!v.done);
    for (int i = 0; i < 2; i++) {
        if ((i == 0) == wake_victim_first) {
            if (accept) {
                struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
                client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                cr_assert_eq(connect(client, (struct sockaddr *)&sin, sizeof sin), 0);
            } else {
                cr_assert_eq(write(sv[1], "0123456789", 10), 10);
            }
        } else {
            cr_assert_eq(write(tick[1], "t", 1), 1);
        }
    }
    expect_eq(rill_join(tm), 0);
    expect_eq(rill_join(r.victim), 0);
    bool arranged = !r.victim_ran_first;
    if (accept) {
        int a = (int)v.rc;
        if (a == -ECANCELED) {
            rill_scope s;
            rill_scope_enter(&s, 5);
            a = rill_accept(l, NULL, NULL);
            rill_scope_exit(&s);
            cr_assert(a >= 0, "the connection was lost: %s", rill_strerror(a));
        }
        cr_assert(a >= 0, "rill_accept: %s", rill_strerror(a));
        if (arranged) expect_eq(v.rc, a); /* the delivered wake-up completed the accept */
        expect_eq(write(client, "c", 1), 1);
        char c = 0;
        expect_eq(rill_read(a, &c, 1), 1);
        rill_close(a);
        close(client);
        rill_close(l);
    } else {
        if (v.rc == -ECANCELED) {
            char rest[32] = {0};
            rill_scope s; /* bytes lost would make this read wait */
            rill_scope_enter(&s, 5);
            expect_eq(rill_read(sv[0], rest, sizeof rest), 10);
            rill_scope_exit(&s);
            cr_assert_str_eq(rest, "0123456789");
        } else {
            expect_eq(v.rc, 10);
            cr_assert_str_eq(buf, "0123456789");
        }
        if (arranged) expect_eq(v.rc, 10); /* the delivered wake-up completed the read */
        cr_assert(socket_is_empty(sv[0]));
    }
    rill_close(sv[0]);
    rill_close(sv[1]);
    rill_close(tick[0]);
    rill_close(tick[1]);
    return arranged;
}

FIBER_TEST(cancel, a_read_or_accept_cancelled_after_its_wake_up_completes_and_loses_nothing) {
    for (int accept = 0; accept < 2; accept++) {
        bool arranged = false;
        for (int first = 0; first < 2; first++)
            arranged |= cancelled_right_after_its_wake(accept, first);
        cr_assert(arranged, "the canceller never ran first: the test shows nothing here");
    }
    return 0;
}

FIBER_TEST(cancel, an_accept_cut_by_a_deadline_loses_no_connection) {
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    int port = rill_local_port(l);
    rill_scope s;
    rill_scope_enter(&s, 0.02);
    expect_eq(rill_accept(l, NULL, NULL), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    int c = rill_tcp_connect("127.0.0.1", port);
    cr_assert(c >= 0, "rill_tcp_connect: %s", rill_strerror(c));
    rill_scope_enter(&s, 5);
    int a = rill_accept(l, NULL, NULL);
    expect_eq(rill_scope_exit(&s), 0);
    cr_assert(a >= 0, "rill_accept: %s", rill_strerror(a));
    check_carries(c, a, "the same connection");
    /* An acceptor cancelled just as a connection comes: it takes it, or the
     * next accept does. */
    io_call acc = {.fd = l};
    rill_task *t = rill_spawn(accepts_once, &acc);
    expect_eq(rill_sleep(0.005), 0);
    int c2 = rill_tcp_connect("127.0.0.1", port);
    cr_assert(c2 >= 0);
    rill_cancel(t);
    expect_eq(rill_join(t), 0);
    int a2 = (int)acc.rc;
    if (a2 == -ECANCELED) {
        rill_scope_enter(&s, 5);
        a2 = rill_accept(l, NULL, NULL);
        expect_eq(rill_scope_exit(&s), 0);
    }
    cr_assert(a2 >= 0, "the second connection was lost: %s", rill_strerror(a2));
    check_carries(c2, a2, "the second connection");
    rill_close(a2);
    rill_close(c2);
    rill_close(a);
    rill_close(c);
    rill_close(l);
    return 0;
}

FIBER_TEST(cancel, a_connect_cut_by_a_deadline_leaves_no_connection_behind) {
    /* A listener that never accepts, with the smallest backlog: once it is
     * full the kernel drops new SYNs, and a connect waits (for seconds). */
    int l = rill_tcp_listen("127.0.0.1", 0, 1);
    cr_assert(l >= 0);
    int port = rill_local_port(l);
    int conns[16], n = 0, rc = 0, fds_before = 0;
    double deadline = under_valgrind() ? 2.0 : 0.3;
    while (n < 16) {
        fds_before = count_open_fds();
        rill_scope s;
        rill_scope_enter(&s, deadline);
        rc = rill_tcp_connect("127.0.0.1", port);
        rill_scope_exit(&s);
        if (rc < 0) break;
        conns[n++] = rc;
    }
    expect_eq(rc, -ECANCELED);
    cr_assert(n >= 1, "the very first connect did not complete");
    expect_eq(count_open_fds(), fds_before); /* its socket is closed */
    /* Every completed connection is in the backlog, and nothing else. */
    for (int i = 0; i < n; i++) {
        rill_scope s;
        rill_scope_enter(&s, 5);
        int a = rill_accept(l, NULL, NULL);
        expect_eq(rill_scope_exit(&s), 0);
        cr_assert(a >= 0, "rill_accept: %s", rill_strerror(a));
        rill_close(a);
    }
    rill_scope s;
    rill_scope_enter(&s, 0.1);
    int extra = rill_accept(l, NULL, NULL);
    rill_scope_exit(&s);
    if (extra >= 0) rill_close(extra);
    expect_eq(extra, -ECANCELED);
    for (int i = 0; i < n; i++) rill_close(conns[i]);
    rill_close(l);
    return 0;
}

static int blocks_on_a_pipe(void *arg) {
    char c;
    return read(*(int *)arg, &c, 1) == 1 ? 0 : -EIO;
}

static int occupies_a_worker(void *arg) { return rill_to_thread(blocks_on_a_pipe, arg); }

FIBER_TEST(cancel, a_connect_cancelled_while_its_name_waits_for_the_pool_leaves_nothing) {
    /* Every pool thread busy: the lookup of "localhost" waits in the queue
     * when the deadline comes.  (RILL_THREADS is read at this process's
     * first offloaded call; the blockers outnumber any default too.) */
    setenv("RILL_THREADS", "2", 1);
    enum { BLOCKERS = 40 };
    int gate[2];
    make_pipe(gate);
    rill_task *b[BLOCKERS];
    for (int i = 0; i < BLOCKERS; i++) b[i] = rill_spawn(occupies_a_worker, &gate[0]);
    expect_eq(rill_sleep(0.01), 0);
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    int port = rill_local_port(l);
    int fds = count_open_fds();
    rill_scope s;
    rill_scope_enter(&s, 0.05);
    int rc = rill_tcp_connect("localhost", port);
    rill_scope_exit(&s);
    if (rc >= 0) rill_close(rc);
    expect_eq(rc, -ECANCELED);
    expect_eq(count_open_fds(), fds);
    char release[BLOCKERS];
    memset(release, 'x', sizeof release);
    cr_assert_eq(write(gate[1], release, sizeof release), (ssize_t)sizeof release);
    for (int i = 0; i < BLOCKERS; i++) expect_eq(rill_join(b[i]), 0);
    /* The pool serves names again, and the cancelled connect left no
     * connection in the backlog. */
    int c = rill_tcp_connect("localhost", port);
    cr_assert(c >= 0, "rill_tcp_connect: %s", rill_strerror(c));
    int a = rill_accept(l, NULL, NULL);
    cr_assert(a >= 0);
    check_carries(c, a, "after the pool was freed");
    rill_scope_enter(&s, 0.1);
    int extra = rill_accept(l, NULL, NULL);
    rill_scope_exit(&s);
    if (extra >= 0) rill_close(extra);
    expect_eq(extra, -ECANCELED);
    rill_close(a);
    rill_close(c);
    rill_close(l);
    close(gate[0]);
    close(gate[1]);
    return 0;
}

FIBER_TEST(cancel, a_write_to_a_full_pipe_cut_by_a_deadline_is_ecanceled) {
    int p[2];
    make_pipe(p);
    char *big = calloc(1, MIB);
    rill_scope s;
    rill_scope_enter(&s, 0.05);
    expect_eq(rill_write(p[1], big, MIB), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    /* A writer task cancelled with rill_cancel, on a full socket. */
    int sv[2];
    make_socketpair(sv);
    io_call w = {.fd = sv[0], .buf = big, .n = MIB};
    rill_task *t = rill_spawn(writes_all, &w);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!w.done, "1 MiB fitted in the socket's buffer");
    expect_eq(rill_cancel(t), 1);
    expect_eq(rill_join(t), 0);
    expect_eq(w.rc, -ECANCELED);
    free(big);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

FIBER_TEST(cancel, a_write_by_a_caller_already_cancelled_writes_nothing) {
    int sv[2];
    make_socketpair(sv);
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_cancel(&s);
    expect_eq(rill_write(sv[0], "nothing", 7), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    cr_assert(socket_is_empty(sv[1]), "a cancelled caller wrote");
    close(sv[0]);
    close(sv[1]);
    return 0;
}

/* ===========================================================================
 * A peer that is gone
 * ======================================================================== */

FIBER_TEST(peer, writing_to_a_socket_whose_peer_closed_is_epipe_and_raises_no_sigpipe) {
    sigpipe_default_and_unblocked(); /* a SIGPIPE would kill the test */
    int sv[2];
    make_socketpair(sv);
    close(sv[1]);
    ssize_t rc = rill_write(sv[0], "x", 1);
    cr_assert(rc == -EPIPE || rc == -ECONNRESET, "rill_write gave %zd (%s)", rc,
              rill_strerror((int)rc));
    close(sv[0]);
    /* TCP: the first bytes may still leave before the reset comes back. */
    int c, a;
    tcp_pair(&c, &a);
    rill_close(a);
    for (int i = 0; i < 200; i++) {
        rc = rill_write(c, "xxxxxxxx", 8);
        if (rc < 0) break;
        rill_sleep(0.002);
    }
    cr_assert(rc == -EPIPE || rc == -ECONNRESET, "rill_write gave %zd (%s)", rc,
              rc < 0 ? rill_strerror((int)rc) : "");
    rill_close(c);
    /* Sockets are written with MSG_NOSIGNAL: nothing to change for them. */
    cr_assert(sigpipe_handler() == SIG_DFL, "SIGPIPE's disposition changed for socket writes");
    return 0;
}

FIBER_TEST(peer, writing_to_a_pipe_whose_reader_closed_is_epipe_and_raises_no_sigpipe) {
    sigpipe_default_and_unblocked();
    int p[2];
    make_pipe(p);
    close(p[0]);
    expect_eq(rill_write(p[1], "x", 1), -EPIPE);
    cr_assert(sigpipe_handler() == SIG_IGN, "SIGPIPE was not set to SIG_IGN");
    close(p[1]);
    /* A writer waiting on a full pipe when its reader goes. */
    make_pipe(p);
    char *big = calloc(1, MIB);
    io_call w = {.fd = p[1], .buf = big, .n = MIB};
    rill_task *t = rill_spawn(writes_all, &w);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!w.done);
    close(p[0]);
    cr_assert(wait_done(&w.done, 2), "the writer did not see its reader go");
    expect_eq(rill_join(t), 0);
    expect_eq(w.rc, -EPIPE);
    close(p[1]);
    free(big);
    return 0;
}

static volatile sig_atomic_t sigpipes;
static void counts_sigpipe(int sig) {
    (void)sig;
    sigpipes++;
}

FIBER_TEST(peer, a_sigpipe_handler_of_the_program_is_left_alone) {
    struct sigaction sa = {.sa_handler = counts_sigpipe};
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGPIPE, &sa, NULL), 0);
    int p[2];
    make_pipe(p);
    close(p[0]);
    expect_eq(rill_write(p[1], "x", 1), -EPIPE);
    cr_assert(sigpipe_handler() == counts_sigpipe, "the program's SIGPIPE handler was replaced");
    close(p[1]);
    signal(SIGPIPE, SIG_DFL);
    return 0;
}

FIBER_TEST(peer, a_read_from_a_reset_connection_is_econnreset) {
    int c, a;
    char buf[16];
    /* The reader waits when the reset comes. */
    tcp_pair(&c, &a);
    io_call r = {.fd = c, .buf = buf, .n = sizeof buf};
    rill_task *t = rill_spawn(reads_once, &r);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!r.done);
    reset_close(a);
    cr_assert(wait_done(&r.done, 2), "the reader did not see the reset");
    expect_eq(rill_join(t), 0);
    expect_eq(r.rc, -ECONNRESET);
    rill_close(c);
    /* The reset came before the read. */
    tcp_pair(&c, &a);
    reset_close(a);
    expect_eq(rill_sleep(0.02), 0);
    expect_eq(rill_read(c, buf, sizeof buf), -ECONNRESET);
    rill_close(c);
    return 0;
}

/* ===========================================================================
 * TCP
 * ======================================================================== */

static bool have_ipv6_loopback(void) {
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

FIBER_TEST(tcp, a_listener_on_port_zero_gets_a_port_of_its_own) {
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0, "rill_tcp_listen: %s", rill_strerror(l));
    int port = rill_local_port(l);
    cr_assert(port > 0 && port <= 65535, "port %d", port);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    cr_assert_eq(getsockname(l, (struct sockaddr *)&sin, &len), 0);
    expect_eq(sin.sin_family, AF_INET);
    expect_eq(ntohs(sin.sin_port), port);
    expect_eq(ntohl(sin.sin_addr.s_addr), INADDR_LOOPBACK);
    expect_eq(sockopt(l, SOL_SOCKET, SO_ACCEPTCONN), 1);
    cr_assert(sockopt(l, SOL_SOCKET, SO_REUSEADDR) != 0, "no SO_REUSEADDR");
    cr_assert(is_nonblocking(l) && is_cloexec(l));
    rill_close(l);
    if (have_ipv6_loopback()) {
        l = rill_tcp_listen("::1", 0, 0);
        cr_assert(l >= 0, "rill_tcp_listen(::1): %s", rill_strerror(l));
        port = rill_local_port(l);
        cr_assert(port > 0 && port <= 65535, "port %d", port);
        rill_close(l);
    }
    return 0;
}

FIBER_TEST(tcp, a_connection_carries_bytes_and_both_its_ends_are_nonblocking_cloexec_and_nodelay) {
    int c, a;
    tcp_pair(&c, &a);
    check_carries(c, a, "request");
    check_carries(a, c, "response");
    int ends[2] = {c, a};
    for (int i = 0; i < 2; i++) {
        cr_assert(is_nonblocking(ends[i]), "%s end is blocking", i ? "accepted" : "connected");
        cr_assert(is_cloexec(ends[i]), "%s end has no FD_CLOEXEC", i ? "accepted" : "connected");
        cr_assert(sockopt(ends[i], IPPROTO_TCP, TCP_NODELAY) != 0, "%s end has no TCP_NODELAY",
                  i ? "accepted" : "connected");
    }
    rill_close(c);
    rill_close(a);
    return 0;
}

FIBER_TEST(tcp, accept_fills_in_the_peer_address) {
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    int c = rill_tcp_connect("127.0.0.1", rill_local_port(l));
    cr_assert(c >= 0);
    struct sockaddr_storage ss;
    memset(&ss, 0xff, sizeof ss);
    socklen_t len = sizeof ss;
    int a = rill_accept(l, (struct sockaddr *)&ss, &len);
    cr_assert(a >= 0, "rill_accept: %s", rill_strerror(a));
    expect_eq(len, sizeof(struct sockaddr_in));
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
    expect_eq(sin->sin_family, AF_INET);
    expect_eq(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    expect_eq(ntohs(sin->sin_port), rill_local_port(c));
    rill_close(a);
    rill_close(c);
    rill_close(l);
    return 0;
}

FIBER_TEST(tcp, accept_refuses_an_address_without_a_length_and_what_does_not_listen) {
    rill_scope s; /* an accept that waited instead would be cut, and fail */
    rill_scope_enter(&s, 5);
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    struct sockaddr_storage ss;
    expect_eq(rill_accept(l, (struct sockaddr *)&ss, NULL), -EINVAL);
    int c = rill_tcp_connect("127.0.0.1", rill_local_port(l));
    cr_assert(c >= 0);
    expect_eq(rill_accept(l, (struct sockaddr *)&ss, NULL), -EINVAL);
    int a = rill_accept(l, NULL, NULL); /* the connection is still there */
    cr_assert(a >= 0, "rill_accept: %s", rill_strerror(a));
    expect_eq(rill_accept(c, NULL, NULL), -EINVAL); /* connected, not listening */
    int raw = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    cr_assert(raw >= 0);
    expect_eq(rill_accept(raw, NULL, NULL), -EINVAL); /* never listened */
    close(raw);
    int p[2];
    make_pipe(p);
    expect_eq(rill_accept(p[0], NULL, NULL), -ENOTSOCK);
    close(p[0]);
    close(p[1]);
    expect_eq(rill_accept(-1, NULL, NULL), -EBADF);
    expect_eq(rill_accept(unused_fd(), NULL, NULL), -EBADF);
    expect_eq(rill_scope_exit(&s), 0);
    rill_close(a);
    rill_close(c);
    rill_close(l);
    return 0;
}

/* Connects to 127.0.0.1:port after `delay` seconds from a thread of its
 * own, so that the connection comes even if a fiber blocks the thread. */
typedef struct late_connect {
    int port;
    double delay;
    int fd;
} late_connect;

static void *connects_late(void *arg) {
    late_connect *lc = arg;
    usleep((useconds_t)(lc->delay * 1e6));
    lc->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lc->port),
                            .sin_addr = {htonl(INADDR_LOOPBACK)}};
    if (lc->fd >= 0 && connect(lc->fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(lc->fd);
        lc->fd = -1;
    }
    return NULL;
}

FIBER_TEST(tcp, accept_on_a_blocking_listener_of_the_caller_lets_other_fibers_run) {
    /* A listener as systemd or inetd hand one over: blocking. */
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr = {htonl(INADDR_LOOPBACK)}};
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(l, 8), 0);
    cr_assert(!is_nonblocking(l));
    io_call acc = {.fd = l};
    late_connect lc = {.port = rill_local_port(l), .delay = 0.5, .fd = -1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, connects_late, &lc), 0);
    rill_task *t = rill_spawn(accepts_once, &acc);
    int ticks = 0;
    double end = rill_now() + 5 * (under_valgrind() ? 10 : 1);
    while (!acc.done && rill_now() < end) {
        expect_eq(rill_sleep(0.01), 0);
        ticks++;
    }
    cr_assert(acc.done, "rill_accept never returned");
    /* 0.5 s of 10 ms sleeps: a blocked thread would count one. */
    cr_assert(ticks >= 5, "rill_accept blocked the thread (%d ticks while it waited)", ticks);
    expect_eq(rill_join(t), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert(acc.rc >= 0, "rill_accept: %s", rill_strerror((int)acc.rc));
    cr_assert(lc.fd >= 0);
    rill_close((int)acc.rc);
    close(lc.fd);
    close(l);
    return 0;
}

FIBER_TEST(tcp, a_listener_on_every_interface_takes_ipv4_and_ipv6) {
    int l = rill_tcp_listen(NULL, 0, 0);
    cr_assert(l >= 0, "rill_tcp_listen(NULL): %s", rill_strerror(l));
    int port = rill_local_port(l);
    cr_assert(port > 0);
    int c = rill_tcp_connect("127.0.0.1", port);
    cr_assert(c >= 0, "IPv4 connect: %s", rill_strerror(c));
    int a = rill_accept(l, NULL, NULL);
    cr_assert(a >= 0);
    check_carries(c, a, "over IPv4");
    rill_close(a);
    rill_close(c);
    if (have_ipv6_loopback()) {
        c = rill_tcp_connect("::1", port);
        cr_assert(c >= 0, "IPv6 connect: %s", rill_strerror(c));
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        a = rill_accept(l, (struct sockaddr *)&ss, &len);
        cr_assert(a >= 0);
        expect_eq(ss.ss_family, AF_INET6);
        cr_assert(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr));
        check_carries(c, a, "over IPv6");
        rill_close(a);
        rill_close(c);
    } else {
        cr_log_info("no IPv6 loopback: its half of the test is skipped");
    }
    rill_close(l);
    return 0;
}

FIBER_TEST(tcp, names_are_looked_up_for_connect_and_listen) {
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    int c = rill_tcp_connect("localhost", rill_local_port(l));
    cr_assert(c >= 0, "rill_tcp_connect(localhost): %s", rill_strerror(c));
    int a = rill_accept(l, NULL, NULL);
    cr_assert(a >= 0);
    check_carries(c, a, "by name");
    rill_close(a);
    rill_close(c);
    rill_close(l);
    l = rill_tcp_listen("localhost", 0, 0);
    cr_assert(l >= 0, "rill_tcp_listen(localhost): %s", rill_strerror(l));
    cr_assert(rill_local_port(l) > 0);
    rill_close(l);
    return 0;
}

FIBER_TEST(tcp, connecting_to_a_port_just_closed_is_refused) {
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    int port = rill_local_port(l);
    expect_eq(rill_close(l), 0);
    expect_eq(rill_tcp_connect("127.0.0.1", port), -ECONNREFUSED);
    expect_eq(rill_tcp_connect("localhost", port), -ECONNREFUSED);
    return 0;
}

FIBER_TEST(tcp, an_unknown_host_is_enxio_or_eagain) {
    /* No network here: the lookup may fail for good or for now. */
    int rc = rill_tcp_connect("no-such-host.invalid", 80);
    cr_assert(rc == -ENXIO || rc == -EAGAIN, "rill_tcp_connect gave %d (%s)", rc,
              rc < 0 ? rill_strerror(rc) : "a connection");
    if (rc >= 0) rill_close(rc);
    rc = rill_tcp_listen("no-such-host.invalid", 0, 0);
    cr_assert(rc == -ENXIO || rc == -EAGAIN, "rill_tcp_listen gave %d (%s)", rc,
              rc < 0 ? rill_strerror(rc) : "a listener");
    if (rc >= 0) rill_close(rc);
    return 0;
}

FIBER_TEST(tcp, ports_out_of_range_and_a_null_host_are_einval) {
    expect_eq(rill_tcp_connect("127.0.0.1", 0), -EINVAL);
    expect_eq(rill_tcp_connect("127.0.0.1", -1), -EINVAL);
    expect_eq(rill_tcp_connect("127.0.0.1", 65536), -EINVAL);
    expect_eq(rill_tcp_connect(NULL, 80), -EINVAL);
    expect_eq(rill_tcp_listen("127.0.0.1", -1, 0), -EINVAL);
    expect_eq(rill_tcp_listen("127.0.0.1", 65536, 0), -EINVAL);
    expect_eq(rill_tcp_listen(NULL, 1 << 20, 0), -EINVAL);
    return 0;
}

/* backlog <= 0 means SOMAXCONN (listen(fd, 0) would take one or two). */
static void connections_wait_unaccepted(bool unix_sock, int backlog) {
    char path[64];
    int l, port = 0;
    if (unix_sock) {
        temp_sock_path(path, sizeof path, "somaxconn");
        l = rill_unix_listen(path, backlog);
    } else {
        l = rill_tcp_listen("127.0.0.1", 0, backlog);
        port = rill_local_port(l);
    }
    cr_assert(l >= 0);
    enum { N = 20 };
    int c[N];
    for (int i = 0; i < N; i++) {
        rill_scope s;
        rill_scope_enter(&s, under_valgrind() ? 5 : 1);
        c[i] = unix_sock ? rill_unix_connect(path) : rill_tcp_connect("127.0.0.1", port);
        rill_scope_exit(&s);
        cr_assert(c[i] >= 0, "%s connection %d with backlog %d: %s", unix_sock ? "Unix" : "TCP", i,
                  backlog, rill_strerror(c[i]));
    }
    for (int i = 0; i < N; i++) rill_close(c[i]);
    rill_close(l);
    if (unix_sock) unlink(path);
}

FIBER_TEST(tcp, tcp_and_unix_listeners_with_a_backlog_of_zero_or_less_take_somaxconn) {
    connections_wait_unaccepted(false, 0);
    connections_wait_unaccepted(false, -5);
    connections_wait_unaccepted(true, 0);
    connections_wait_unaccepted(true, -1);
    return 0;
}

FIBER_TEST(tcp, a_port_another_listener_holds_is_eaddrinuse) {
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    expect_eq(rill_tcp_listen("127.0.0.1", rill_local_port(l), 0), -EADDRINUSE);
    rill_close(l);
    return 0;
}

FIBER_TEST(tcp, a_listener_rebinds_its_port_right_after_a_closed_connection) {
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    int port = rill_local_port(l);
    int c = rill_tcp_connect("127.0.0.1", port);
    int a = rill_accept(l, NULL, NULL);
    cr_assert(c >= 0 && a >= 0);
    rill_close(a); /* the server's end closes first: TIME_WAIT on the port */
    char buf[4];
    expect_eq(rill_read(c, buf, sizeof buf), 0);
    rill_close(c);
    rill_close(l);
    /* Without SO_REUSEADDR the port is still taken... */
    int raw = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int bound = bind(raw, (struct sockaddr *)&sin, sizeof sin);
    close(raw);
    cr_assert(bound < 0 && errno == EADDRINUSE,
              "the kernel left no TIME_WAIT behind: the test shows nothing here");
    /* ...and rill's listener gets it. */
    l = rill_tcp_listen("127.0.0.1", port, 0);
    cr_assert(l >= 0, "rebinding port %d: %s", port, rill_strerror(l));
    c = rill_tcp_connect("127.0.0.1", port);
    cr_assert(c >= 0);
    a = rill_accept(l, NULL, NULL);
    cr_assert(a >= 0);
    check_carries(c, a, "again");
    rill_close(a);
    rill_close(c);
    rill_close(l);
    return 0;
}

/* The highest fd open below `limit` (valgrind keeps fds of its own above
 * the limit it shows). */
static int highest_open_fd(rlim_t limit) {
    int top = -1;
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (fd > top && (rlim_t)fd < limit) top = fd;
    }
    closedir(d);
    return top;
}

FIBER_TEST(tcp, accept_out_of_fds_is_emfile_and_the_connection_waits_in_the_backlog) {
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    int c = rill_tcp_connect("127.0.0.1", rill_local_port(l));
    cr_assert(c >= 0);
    if (under_valgrind()) {
        /* valgrind keeps a limit of its own: an fd the kernel accepts above
         * it is closed again and EMFILE made up, and the connection is gone.
         * Only the plain and ASan runs can use up the fds. */
        int a = rill_accept(l, NULL, NULL);
        cr_assert(a >= 0);
        rill_close(a);
        rill_close(c);
        rill_close(l);
        return 0;
    }
    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)highest_open_fd(old.rlim_cur) + 16;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0, "setrlimit: %s", strerror(errno));
    int fillers[64], n = 0, d;
    while (n < 64 && (d = fcntl(c, F_DUPFD_CLOEXEC, 0)) >= 0) fillers[n++] = d;
    bool full = n < 64 && errno == EMFILE;
    int rc = full ? rill_accept(l, NULL, NULL) : 0;
    close(fillers[--n]);
    rill_scope s;
    rill_scope_enter(&s, 5);
    int a = rill_accept(l, NULL, NULL);
    expect_eq(rill_scope_exit(&s), 0);
    while (n) close(fillers[--n]);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    cr_assert(full, "could not use up the fds");
    if (rc >= 0) rill_close(rc);
    cr_assert(rc == -EMFILE || rc == -ENFILE, "rill_accept with no fd free gave %d (%s)", rc,
              rc < 0 ? rill_strerror(rc) : "an fd");
    cr_assert(a >= 0, "the connection was lost: %s", rill_strerror(a));
    check_carries(c, a, "it waited");
    rill_close(a);
    rill_close(c);
    rill_close(l);
    return 0;
}

FIBER_TEST(tcp, local_port_refuses_what_is_not_an_inet_socket) {
    expect_eq(rill_local_port(-1), -EBADF);
    expect_eq(rill_local_port(unused_fd()), -EBADF);
    int p[2], sv[2];
    make_pipe(p);
    expect_eq(rill_local_port(p[0]), -ENOTSOCK);
    make_socketpair(sv);
    expect_eq(rill_local_port(sv[0]), -EAFNOSUPPORT);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

/* ---- many connections at once ----------------------------------------- */

static int echoes_until_eof(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[256];
    ssize_t r;
    while ((r = rill_read(fd, buf, sizeof buf)) > 0) {
        ssize_t w = rill_write(fd, buf, (size_t)r);
        if (w < 0) {
            r = w;
            break;
        }
    }
    rill_close(fd);
    return (int)r;
}

typedef struct echo_server {
    int lfd, n;
} echo_server;

static int serves_n_connections(void *arg) {
    echo_server *s = arg;
    rill_group g;
    rill_group_init(&g);
    int rc = 0;
    for (int i = 0; i < s->n && rc == 0; i++) {
        int fd = rill_accept(s->lfd, NULL, NULL);
        if (fd < 0) rc = fd;
        else if ((rc = rill_group_spawn(&g, echoes_until_eof, (void *)(intptr_t)fd)) < 0)
            rill_close(fd);
    }
    int wrc = rill_group_wait(&g);
    return rc ? rc : wrc;
}

typedef struct echo_client {
    int port, id;
    int *completed;
} echo_client;

static int talks_to_the_echo_server(void *arg) {
    echo_client *c = arg;
    int fd = rill_tcp_connect("127.0.0.1", c->port);
    if (fd < 0) return fd;
    int rc = 0;
    for (int m = 0; m < 3 && rc == 0; m++) {
        char msg[64], back[64] = {0};
        int n = snprintf(msg, sizeof msg, "client %d message %d\n", c->id, m);
        ssize_t w = rill_write(fd, msg, (size_t)n);
        if (w != n) {
            rc = w < 0 ? (int)w : -EIO;
            break;
        }
        for (int got = 0; got < n;) {
            ssize_t r = rill_read(fd, back + got, (size_t)(n - got));
            if (r <= 0) {
                rc = r < 0 ? (int)r : -EPIPE;
                break;
            }
            got += (int)r;
        }
        if (rc == 0 && memcmp(msg, back, (size_t)n) != 0) rc = -EBADMSG;
    }
    rill_close(fd);
    if (rc == 0) (*c->completed)++;
    return rc;
}

FIBER_TEST(tcp, three_hundred_and_twenty_connections_at_once_all_complete) {
    int n = 320;
#ifdef __SANITIZE_ADDRESS__
    n = 40;
#endif
    if (under_valgrind()) n = 40;
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    echo_server srv = {l, n};
    echo_client *cl = calloc((size_t)n, sizeof *cl);
    int completed = 0;
    rill_group g;
    rill_group_init(&g);
    expect_eq(rill_group_spawn(&g, serves_n_connections, &srv), 0);
    for (int i = 0; i < n; i++) {
        cl[i] = (echo_client){rill_local_port(l), i, &completed};
        expect_eq(rill_group_spawn(&g, talks_to_the_echo_server, &cl[i]), 0);
    }
    int rc = rill_group_wait(&g);
    rill_failure f[8];
    int nf = rill_group_errors(&g, f, 8);
    cr_assert_eq(rc, 0, "%d tasks failed, the first %d (%s)", nf, nf ? f[0].status : 0,
                 nf ? rill_strerror(f[0].status) : "");
    expect_eq(completed, n);
    free(cl);
    rill_close(l);
    return 0;
}

/* ===========================================================================
 * rill_close
 * ======================================================================== */

FIBER_TEST(close, closing_an_fd_wakes_its_blocked_reader_with_ebadf) {
    int sv[2];
    make_socketpair(sv);
    char buf[8];
    io_call r = {.fd = sv[0], .buf = buf, .n = sizeof buf};
    rill_task *t = rill_spawn(reads_once, &r);
    expect_eq(rill_sleep(0.01), 0); /* past a poll: the kernel watches the fd */
    cr_assert(!r.done);
    expect_eq(rill_close(sv[0]), 0);
    cr_assert(!is_open(sv[0]));
    cr_assert(wait_done(&r.done, 1), "the reader was not woken by rill_close");
    expect_eq(rill_join(t), 0);
    expect_eq(r.rc, -EBADF);
    close(sv[1]);
    return 0;
}

/* Fill fd's send buffer (a socket), so that the next write waits. */
static size_t fill_socket(int fd) {
    static char junk[65536];
    size_t total = 0;
    ssize_t w;
    while ((w = send(fd, junk, sizeof junk, MSG_DONTWAIT)) > 0) total += (size_t)w;
    cr_assert(w < 0 && errno == EAGAIN);
    return total;
}

FIBER_TEST(close, closing_an_fd_wakes_both_its_reader_and_its_writer) {
    int sv[2];
    make_socketpair(sv);
    fill_socket(sv[0]);
    char buf[8];
    io_call r = {.fd = sv[0], .buf = buf, .n = sizeof buf};
    io_call w = {.fd = sv[0], .buf = (char[]){"more"}, .n = 4};
    rill_task *tr = rill_spawn(reads_once, &r), *tw = rill_spawn(writes_all, &w);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!r.done && !w.done);
    expect_eq(rill_close(sv[0]), 0);
    cr_assert(wait_done(&r.done, 1), "the reader was not woken");
    cr_assert(wait_done(&w.done, 1), "the writer was not woken");
    expect_eq(rill_join(tr), 0);
    expect_eq(rill_join(tw), 0);
    expect_eq(r.rc, -EBADF);
    expect_eq(w.rc, -EBADF);
    close(sv[1]);
    return 0;
}

FIBER_TEST(close, a_reader_and_a_writer_waiting_on_one_fd_are_both_served) {
    int sv[2];
    make_socketpair(sv);
    size_t filled = fill_socket(sv[0]);
    char buf[8] = {0};
    io_call r = {.fd = sv[0], .buf = buf, .n = sizeof buf};
    io_call w = {.fd = sv[0], .buf = (char[]){"more"}, .n = 4};
    rill_task *tr = rill_spawn(reads_once, &r), *tw = rill_spawn(writes_all, &w);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!r.done && !w.done);
    cr_assert_eq(write(sv[1], "data", 4), 4);
    cr_assert(wait_done(&r.done, 2), "the reader was not served");
    expect_eq(r.rc, 4);
    cr_assert_str_eq(buf, "data");
    cr_assert(!w.done, "the writer finished with the buffer still full");
    /* Drain the other end: the writer's bytes come last. */
    size_t want = filled + 4, got = 0;
    char *all = malloc(want);
    rill_scope s; /* bytes that never come would make this wait */
    rill_scope_enter(&s, 5);
    while (got < want) {
        ssize_t n = rill_read(sv[1], all + got, want - got);
        cr_assert(n > 0, "draining: %zd", n);
        got += (size_t)n;
    }
    expect_eq(rill_scope_exit(&s), 0);
    cr_assert(memcmp(all + filled, "more", 4) == 0);
    free(all);
    cr_assert(wait_done(&w.done, 2), "the writer was not served");
    expect_eq(w.rc, 4);
    expect_eq(rill_join(tr), 0);
    expect_eq(rill_join(tw), 0);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

/* A fiber waits on X; rill_close(X); a new file gets the number X at once and
 * becomes readable.  The old waiter has -EBADF and never sees the new
 * file's data; a new waiter on X gets it. */
static void reused_number(bool use_pipe, bool wait_only) {
    int old[2], nw[2];
    if (use_pipe) make_pipe(old);
    else make_socketpair(old);
    int x = old[0];
    char buf[8] = {0}, buf2[8] = {0};
    io_call a = {.fd = x, .buf = buf, .n = sizeof buf};
    rill_task *ta = rill_spawn(wait_only ? waits_readable : reads_once, &a);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!a.done);
    expect_eq(rill_close(x), 0);
    if (use_pipe) make_pipe(nw);
    else make_socketpair(nw);
    cr_assert_eq(nw[0], x, "the kernel did not reuse the number: the test shows nothing");
    io_call b = {.fd = x, .buf = buf2, .n = sizeof buf2};
    rill_task *tb = rill_spawn(reads_once, &b);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!b.done);
    cr_assert_eq(write(nw[1], "new", 3), 3);
    cr_assert(wait_done(&b.done, 2), "the new waiter was not served");
    expect_eq(b.rc, 3);
    cr_assert_str_eq(buf2, "new");
    cr_assert(wait_done(&a.done, 1), "the old waiter was not woken by rill_close");
    expect_eq(a.rc, -EBADF);
    cr_assert_str_eq(buf, "", "the old waiter read the new file's data");
    expect_eq(rill_join(ta), 0);
    expect_eq(rill_join(tb), 0);
    rill_close(nw[0]);
    rill_close(nw[1]);
    rill_close(old[1]);
}

FIBER_TEST(close, a_waiter_on_a_closed_number_never_sees_the_file_that_takes_the_number) {
    reused_number(false, false);
    reused_number(true, false);
    reused_number(false, true); /* rill_wait_fd's waiters too */
    return 0;
}

/* A fiber woken by its fd that has not run yet, and another, woken in the
 * same round and run first, that closes the fd with rill_close and makes a
 * new file that takes its number: the first must not go on with the new
 * file (read its data, or write the rest of its buffer into it). */
typedef struct reuse_race {
    int tick, x;
    const volatile bool *a_done;
    bool a_ran_first;
    int nw[2];
} reuse_race;

static int closes_and_reuses_the_number_when_woken(void *arg) {
    reuse_race *r = arg;
    if (rill_wait_fd(r->tick, RILL_READ) != RILL_READ) return -EIO;
    r->a_ran_first = *r->a_done;
    if (r->a_ran_first) return 0;
    rill_close(r->x);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r->nw) != 0) return -errno;
    if (r->nw[0] != r->x) return -EXDEV; /* the number was not reused */
    return write(r->nw[1], "new", 3) == 3 ? 0 : -EIO;
}

static void drain_socket(int fd) {
    static char sink[65536];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
}

/* Whether the closer ran first (the case the test is about). */
static bool woken_fiber_meets_a_reused_number(bool writer, bool wake_x_first) {
    int old[2], tick[2];
    make_socketpair(old);
    make_socketpair(tick);
    int x = old[0];
    char buf[8] = {0};
    char *out = calloc(1, 4096);
    io_call a = {.fd = x, .buf = writer ? (void *)out : buf, .n = writer ? 4096 : sizeof buf};
    if (writer) fill_socket(x);
    reuse_race r = {.tick = tick[0], .x = x, .a_done = &a.done, .nw = {-1, -1}};
    rill_task *ta = rill_spawn(writer ? writes_all : reads_once, &a);
    rill_task *tm = rill_spawn(closes_and_reuses_the_number_when_woken, &r);
    expect_eq(rill_sleep(0.01), 0); /* both wait, past a poll */
    cr_assert(!a.done);
    for (int i = 0; i < 2; i++) {
        if ((i == 0) == wake_x_first) {
            if (writer) drain_socket(old[1]);
            else cr_assert_eq(write(old[1], "old", 3), 3);
        } else {
            cr_assert_eq(write(tick[1], "t", 1), 1);
        }
    }
    expect_eq(rill_join(tm), 0);
    cr_assert(wait_done(&a.done, 2), "the %s never returned", writer ? "writer" : "reader");
    expect_eq(rill_join(ta), 0);
    bool arranged = !r.a_ran_first;
    if (arranged) {
        if (writer)
            cr_assert(socket_is_empty(r.nw[1]),
                      "the writer wrote into the file that took its number (it returned %zd)",
                      a.rc);
        else
            cr_assert_str_eq(buf, "", "the reader read the data of the file that took its "
                                      "number (it returned %zd)", a.rc);
        expect_eq(a.rc, -EBADF);
        rill_close(r.nw[0]);
        rill_close(r.nw[1]);
    } else {
        rill_close(x);
    }
    rill_close(old[1]);
    rill_close(tick[0]);
    rill_close(tick[1]);
    free(out);
    return arranged;
}

FIBER_TEST(close, a_fiber_woken_but_not_yet_run_never_goes_on_with_the_file_that_takes_its_number) {
    for (int writer = 0; writer < 2; writer++) {
        bool arranged = false;
        for (int first = 0; first < 2; first++)
            arranged |= woken_fiber_meets_a_reused_number(writer, first);
        cr_assert(arranged, "the closer never ran first: the test shows nothing here");
    }
    return 0;
}

FIBER_TEST(close, a_waiter_on_an_fd_closed_with_close_is_ebadf_when_a_rill_socket_takes_the_number) {
    int p[2];
    make_pipe(p);
    io_call w = {.fd = p[0]};
    rill_task *t = rill_spawn(waits_readable, &w);
    expect_eq(rill_yield_now(), 0); /* it waits; the loop has not polled since */
    cr_assert(!w.done);
    int x = p[0];
    close(x); /* not rill_close: rill_wait_fd promises -EBADF before the poll */
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0, "rill_tcp_listen: %s", rill_strerror(l));
    cr_assert_eq(l, x, "the listener did not take the number: the test shows nothing");
    int c = rill_tcp_connect("127.0.0.1", rill_local_port(l)); /* l is readable now */
    cr_assert(c >= 0);
    cr_assert(wait_done(&w.done, 1), "the waiter never returned");
    expect_eq(rill_join(t), 0);
    expect_eq(w.rc, -EBADF);
    rill_close(c);
    rill_close(l);
    close(p[1]);
    return 0;
}

FIBER_TEST(close, closing_a_listener_wakes_its_acceptor_and_its_other_waiters) {
    int l = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(l >= 0);
    io_call acc = {.fd = l}, wt = {.fd = l};
    rill_task *ta = rill_spawn(accepts_once, &acc), *tw = rill_spawn(waits_readable, &wt);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!acc.done && !wt.done);
    expect_eq(rill_close(l), 0);
    cr_assert(wait_done(&acc.done, 1), "the acceptor was not woken");
    cr_assert(wait_done(&wt.done, 1), "the rill_wait_fd waiter was not woken");
    expect_eq(acc.rc, -EBADF);
    expect_eq(wt.rc, -EBADF);
    expect_eq(rill_join(ta), 0);
    expect_eq(rill_join(tw), 0);
    return 0;
}

FIBER_TEST(close, closing_what_is_not_open_is_ebadf) {
    expect_eq(rill_close(-1), -EBADF);
    expect_eq(rill_close(unused_fd()), -EBADF);
    expect_eq(rill_close(1 << 30), -EBADF);
    int p[2];
    make_pipe(p);
    expect_eq(rill_close(p[0]), 0);
    expect_eq(rill_close(p[0]), -EBADF);
    expect_eq(rill_close(p[1]), 0);
    return 0;
}

Test(close, rill_close_outside_a_fiber_closes_the_fd, .timeout = TEST_TIMEOUT) {
    int p[2];
    make_pipe(p);
    expect_eq(rill_close(p[0]), 0);
    cr_assert(!is_open(p[0]));
    expect_eq(rill_close(p[0]), -EBADF);
    expect_eq(rill_close(p[1]), 0);
    cr_assert(!is_open(p[1]));
}

/* ===========================================================================
 * Unix sockets
 * ======================================================================== */

static void temp_sock_path(char *path, size_t len, const char *tag) {
    snprintf(path, len, "/tmp/rill-io-%d-%s.sock", (int)getpid(), tag);
    unlink(path);
}

static bool is_socket_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* A socket file at path that nobody listens on (what a server that died
 * leaves behind). */
static void leave_stale_socket(const char *path) {
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    close(fd);
    cr_assert(is_socket_file(path));
}

FIBER_TEST(unix_sock, a_server_on_a_path_echoes_what_a_client_sends) {
    char path[64];
    temp_sock_path(path, sizeof path, "echo");
    int l = rill_unix_listen(path, 0);
    cr_assert(l >= 0, "rill_unix_listen: %s", rill_strerror(l));
    cr_assert(is_socket_file(path));
    cr_assert(is_nonblocking(l) && is_cloexec(l));
    int c = rill_unix_connect(path);
    cr_assert(c >= 0, "rill_unix_connect: %s", rill_strerror(c));
    struct sockaddr_un peer;
    socklen_t len = sizeof peer;
    int a = rill_accept(l, (struct sockaddr *)&peer, &len);
    cr_assert(a >= 0, "rill_accept: %s", rill_strerror(a));
    expect_eq(peer.sun_family, AF_UNIX);
    int ends[2] = {c, a};
    for (int i = 0; i < 2; i++)
        cr_assert(is_nonblocking(ends[i]) && is_cloexec(ends[i]), "%s end",
                  i ? "accepted" : "connected");
    check_carries(c, a, "ping");
    check_carries(a, c, "pong");
    rill_close(a);
    rill_close(c);
    rill_close(l);
    cr_assert(is_socket_file(path), "the file went with the listener");
    unlink(path);
    return 0;
}

FIBER_TEST(unix_sock, a_socket_file_left_by_a_server_that_is_gone_is_replaced) {
    char path[64];
    temp_sock_path(path, sizeof path, "stale");
    leave_stale_socket(path);
    int l = rill_unix_listen(path, 0);
    cr_assert(l >= 0, "over a stale socket file: %s", rill_strerror(l));
    int c = rill_unix_connect(path);
    cr_assert(c >= 0);
    int a = rill_accept(l, NULL, NULL);
    cr_assert(a >= 0);
    check_carries(c, a, "fresh");
    rill_close(a);
    rill_close(c);
    rill_close(l); /* leaves its file: the next listen replaces it */
    l = rill_unix_listen(path, 0);
    cr_assert(l >= 0, "after rill_close: %s", rill_strerror(l));
    rill_close(l);
    unlink(path);
    return 0;
}

FIBER_TEST(unix_sock, a_path_where_a_server_listens_is_eaddrinuse_and_stays_its) {
    char path[64];
    temp_sock_path(path, sizeof path, "live");
    int l = rill_unix_listen(path, 0);
    cr_assert(l >= 0);
    expect_eq(rill_unix_listen(path, 0), -EADDRINUSE);
    /* The first server still gets the connections made to the path.  (A
     * probe of the failed listen may show up as a connection that ends at
     * once: skip those.) */
    rill_scope s0;
    rill_scope_enter(&s0, 5);
    int c = rill_unix_connect(path);
    rill_scope_exit(&s0);
    cr_assert(c >= 0, "rill_unix_connect: %s", rill_strerror(c));
    expect_eq(rill_write(c, "hi", 2), 2);
    bool reached = false;
    for (int i = 0; i < 3 && !reached; i++) {
        rill_scope s;
        rill_scope_enter(&s, 5);
        int a = rill_accept(l, NULL, NULL);
        char buf[4] = {0};
        ssize_t r = a >= 0 ? rill_read(a, buf, sizeof buf) : a;
        expect_eq(rill_scope_exit(&s), 0);
        cr_assert(a >= 0, "rill_accept: %s", rill_strerror(a));
        reached = r == 2 && memcmp(buf, "hi", 2) == 0;
        rill_close(a);
    }
    cr_assert(reached, "the client did not reach the first server");
    rill_close(c);
    rill_close(l);
    unlink(path);
    return 0;
}

FIBER_TEST(unix_sock, a_file_that_is_not_a_socket_is_left_alone) {
    char path[64];
    temp_sock_path(path, sizeof path, "regular");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, "keep", 4), 4);
    close(fd);
    expect_eq(rill_unix_listen(path, 0), -EADDRINUSE);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "the file is gone");
    cr_assert(S_ISREG(st.st_mode) && st.st_size == 4, "the file was replaced");
    unlink(path);
    return 0;
}

FIBER_TEST(unix_sock, bad_paths_are_refused) {
    expect_eq(rill_unix_listen(NULL, 0), -EINVAL);
    expect_eq(rill_unix_listen("", 0), -EINVAL);
    expect_eq(rill_unix_connect(NULL), -EINVAL);
    expect_eq(rill_unix_connect(""), -EINVAL);
    /* 108 bytes do not fit sun_path with its NUL; 107 do. */
    char path[200];
    int base = snprintf(path, sizeof path, "/tmp/rill-io-%d-", (int)getpid());
    memset(path + base, 'n', 108 - (size_t)base);
    path[108] = 0;
    expect_eq(strlen(path), 108);
    expect_eq(rill_unix_listen(path, 0), -ENAMETOOLONG);
    expect_eq(rill_unix_connect(path), -ENAMETOOLONG);
    path[107] = 0;
    unlink(path);
    int l = rill_unix_listen(path, 0);
    cr_assert(l >= 0, "a path of 107 bytes: %s", rill_strerror(l));
    int c = rill_unix_connect(path);
    cr_assert(c >= 0, "a path of 107 bytes: %s", rill_strerror(c));
    rill_close(c);
    rill_close(l);
    unlink(path);
    expect_eq(rill_unix_listen("/nonexistent-rill-dir/x.sock", 0), -ENOENT);
    expect_eq(rill_unix_connect("/nonexistent-rill-dir/x.sock"), -ENOENT);
    char missing[64];
    temp_sock_path(missing, sizeof missing, "missing");
    expect_eq(rill_unix_connect(missing), -ENOENT);
    leave_stale_socket(missing);
    expect_eq(rill_unix_connect(missing), -ECONNREFUSED);
    unlink(missing);
    return 0;
}

typedef struct unix_client {
    const char *path;
    int rc;
    volatile bool done;
} unix_client;

static int connects_unix(void *arg) {
    unix_client *c = arg;
    c->rc = rill_unix_connect(c->path);
    c->done = true;
    return 0;
}

FIBER_TEST(unix_sock, a_connect_waits_while_the_backlog_is_full) {
    char path[64];
    temp_sock_path(path, sizeof path, "backlog");
    int l = rill_unix_listen(path, 1);
    cr_assert(l >= 0);
    int conns[16], n = 0, rc = 0;
    double deadline = under_valgrind() ? 1.0 : 0.1;
    while (n < 16) {
        rill_scope s;
        rill_scope_enter(&s, deadline);
        rc = rill_unix_connect(path);
        rill_scope_exit(&s);
        if (rc < 0) break;
        conns[n++] = rc;
    }
    expect_eq(rc, -ECANCELED); /* it waited for room, and the deadline cut it */
    cr_assert(n >= 1);
    unix_client cl = {.path = path};
    rill_task *t = rill_spawn(connects_unix, &cl);
    expect_eq(rill_sleep(0.02), 0);
    cr_assert(!cl.done, "connected with the backlog full (%d)", cl.rc);
    int a = rill_accept(l, NULL, NULL); /* room for one */
    cr_assert(a >= 0);
    rill_close(a);
    cr_assert(wait_done(&cl.done, 2), "the waiting connect never went through");
    expect_eq(rill_join(t), 0);
    cr_assert(cl.rc >= 0, "rill_unix_connect: %s", rill_strerror(cl.rc));
    for (int i = 0; i < n; i++) {
        a = rill_accept(l, NULL, NULL);
        cr_assert(a >= 0);
        rill_close(a);
        rill_close(conns[i]);
    }
    rill_close(cl.rc);
    rill_close(l);
    unlink(path);
    return 0;
}

FIBER_TEST(unix_sock, abstract_names_work_leave_no_file_and_match_other_programs) {
    char name[64], raw_name[64];
    snprintf(name, sizeof name, "@rill-io-%d-abstract", (int)getpid());
    snprintf(raw_name, sizeof raw_name, "@rill-io-%d-raw", (int)getpid());
    int l = rill_unix_listen(name, 0);
    cr_assert(l >= 0, "rill_unix_listen(%s): %s", name, rill_strerror(l));
    cr_assert(access(name, F_OK) != 0, "a file was made");
    int c = rill_unix_connect(name);
    cr_assert(c >= 0, "rill_unix_connect(%s): %s", name, rill_strerror(c));
    int a = rill_accept(l, NULL, NULL);
    cr_assert(a >= 0);
    check_carries(c, a, "abstract");
    rill_close(a);
    rill_close(c);
    /* Another program names it by its bytes alone (no padding NULs). */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(name) - 1;
    memcpy(sun.sun_path + 1, name + 1, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    int raw = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(raw, (struct sockaddr *)&sun, len), 0,
                 "a program that names %s exactly does not find it: %s", name, strerror(errno));
    a = rill_accept(l, NULL, NULL);
    cr_assert(a >= 0);
    rill_close(a);
    close(raw);
    expect_eq(rill_unix_listen(name, 0), -EADDRINUSE);
    rill_close(l);
    l = rill_unix_listen(name, 0); /* gone with its socket */
    cr_assert(l >= 0, "after rill_close: %s", rill_strerror(l));
    rill_close(l);
    /* And rill finds a program's abstract listener. */
    raw = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    n = strlen(raw_name) - 1;
    memset(sun.sun_path, 0, sizeof sun.sun_path);
    memcpy(sun.sun_path + 1, raw_name + 1, n);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    cr_assert_eq(bind(raw, (struct sockaddr *)&sun, len), 0);
    cr_assert_eq(listen(raw, 4), 0);
    c = rill_unix_connect(raw_name);
    cr_assert(c >= 0, "rill_unix_connect(%s): %s", raw_name, rill_strerror(c));
    rill_close(c);
    close(raw);
    return 0;
}

/* ===========================================================================
 * rill_lines
 * ======================================================================== */

/* The lines of `text` written at once to a pipe (or a socketpair) that then
 * ends. */
static void lines_of(bool use_pipe, const char *text, const char *want, int want_n) {
    int fds[2];
    if (use_pipe) make_pipe(fds);
    else make_socketpair(fds);
    int rd = fds[0], wr = fds[1];
    size_t n = strlen(text);
    cr_assert_eq(write(wr, text, n), (ssize_t)n);
    if (use_pipe) close(wr);
    else shutdown(wr, SHUT_WR);
    char out[256];
    int got_n;
    rill_gen *g = rill_lines(rd);
    expect_eq(join_lines(g, out, sizeof out, &got_n), 0);
    cr_assert_str_eq(out, want, "lines of \"%s\" (%s)", text, use_pipe ? "pipe" : "socket");
    expect_eq(got_n, want_n);
    expect_eq(rill_gen_status(g), 0);
    rill_gen_free(g);
    close(rd);
    if (!use_pipe) close(wr);
}

FIBER_TEST(lines_stream, endings_are_stripped_and_a_last_line_without_newline_comes_too) {
    for (int p = 0; p < 2; p++) {
        lines_of(p, "alpha\nbeta\r\n\n\ngamma\r\ndelta", "alpha|beta|||gamma|delta", 6);
        lines_of(p, "", "", 0);
        lines_of(p, "\n", "", 1);
        lines_of(p, "\r\n\r\n", "|", 2);
        lines_of(p, "one\r\n", "one", 1);
        lines_of(p, "a\rb\nc\n", "a\rb|c", 2); /* only a "\r" before "\n" goes */
    }
    return 0;
}

typedef struct trickle {
    int fd;
    const char *text;
    int rc;
} trickle;

static int writes_a_byte_at_a_time(void *arg) {
    trickle *t = arg;
    for (const char *p = t->text; *p; p++) {
        ssize_t w = rill_write(t->fd, p, 1);
        if (w != 1) {
            t->rc = w < 0 ? (int)w : -EIO;
            break;
        }
        rill_sleep(0.0001); /* a reactor round: the reader takes this byte alone */
    }
    shutdown(t->fd, SHUT_WR);
    return 0;
}

FIBER_TEST(lines_stream, lines_written_a_byte_at_a_time_come_out_whole) {
    int sv[2];
    make_socketpair(sv);
    trickle t = {sv[1], "first line\r\nsecond\n\nthird\r\n\r\na longer fourth line\nlast", 0};
    rill_task *w = rill_spawn(writes_a_byte_at_a_time, &t);
    char out[256];
    int n;
    rill_gen *g = rill_lines(sv[0]);
    expect_eq(join_lines(g, out, sizeof out, &n), 0);
    cr_assert_str_eq(out, "first line|second||third||a longer fourth line|last");
    expect_eq(n, 7);
    rill_gen_free(g);
    expect_eq(rill_join(w), 0);
    expect_eq(t.rc, 0);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

/* body (len bytes of `fill`) then tail, written by a task to a socketpair
 * that then ends; returns the generator's reader end through *rd and the
 * writer task through *wt. */
static rill_gen *lines_of_big(stream_writer *w, char **buf, size_t len, char fill,
                              const char *tail, int sv[2], rill_task **wt) {
    size_t tl = strlen(tail);
    *buf = malloc(len + tl);
    cr_assert_not_null(*buf);
    memset(*buf, fill, len);
    memcpy(*buf + len, tail, tl);
    make_socketpair(sv);
    *w = (stream_writer){.fd = sv[1], .buf = *buf, .n = len + tl};
    *wt = rill_spawn(writes_then_ends, w);
    rill_gen *g = rill_lines(sv[0]);
    cr_assert_not_null(g);
    return g;
}

static void expect_big_line(rill_gen *g, size_t len, char fill) {
    void *v;
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(strlen(v), len);
    const char *s = v;
    for (size_t i = 0; i < len; i++)
        if (s[i] != fill) cr_assert_fail("byte %zu of the long line is %d", i, s[i]);
}

static void finish_big(rill_gen *g, stream_writer *w, char *buf, int sv[2], rill_task *wt,
                       bool whole) {
    rill_gen_free(g);
    rill_close(sv[0]); /* a writer still waiting for room then fails */
    expect_eq(rill_join(wt), 0);
    if (whole) expect_eq(w->rc, w->n);
    else cr_assert(w->rc == (ssize_t)w->n || w->rc == -EPIPE || w->rc == -ECONNRESET,
                   "writer: %zd", w->rc);
    rill_close(sv[1]);
    free(buf);
}

FIBER_TEST(lines_stream, a_line_of_one_mib_is_yielded_and_one_byte_more_is_e2big) {
    stream_writer w;
    char *buf;
    int sv[2];
    rill_task *wt;
    void *v;
    /* Exactly 1 MiB, ended by "\n", then by "\r\n", then by the stream's end. */
    rill_gen *g = lines_of_big(&w, &buf, MIB, 'x', "\nafter\n", sv, &wt);
    expect_big_line(g, MIB, 'x');
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_str_eq(v, "after");
    expect_eq(rill_gen_next(g, &v), 0);
    finish_big(g, &w, buf, sv, wt, true);

    g = lines_of_big(&w, &buf, MIB, 'y', "\r\nend", sv, &wt);
    expect_big_line(g, MIB, 'y');
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_str_eq(v, "end");
    expect_eq(rill_gen_next(g, &v), 0);
    finish_big(g, &w, buf, sv, wt, true);

    g = lines_of_big(&w, &buf, MIB, 'v', "", sv, &wt);
    expect_big_line(g, MIB, 'v');
    expect_eq(rill_gen_next(g, &v), 0);
    finish_big(g, &w, buf, sv, wt, true);

    /* One byte more: the body ends with -E2BIG, once; then it is finished. */
    g = lines_of_big(&w, &buf, MIB + 1, 'z', "\nnever\n", sv, &wt);
    expect_eq(rill_gen_next(g, &v), -E2BIG);
    expect_eq(rill_gen_status(g), -E2BIG);
    expect_eq(rill_gen_next(g, &v), 0);
    finish_big(g, &w, buf, sv, wt, false);

    g = lines_of_big(&w, &buf, MIB + 1, 'w', "", sv, &wt);
    expect_eq(rill_gen_next(g, &v), -E2BIG);
    finish_big(g, &w, buf, sv, wt, false);
    return 0;
}

static int resets_later(void *arg) {
    rill_sleep(0.01);
    reset_close(*(int *)arg);
    return 0;
}

FIBER_TEST(lines_stream, a_reset_peer_ends_the_lines_with_econnreset) {
    int c, a;
    tcp_pair(&c, &a);
    expect_eq(rill_write(a, "one\n", 4), 4);
    rill_gen *g = rill_lines(c);
    cr_assert_not_null(g);
    void *v;
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_str_eq(v, "one");
    rill_task *t = rill_spawn(resets_later, &a);
    expect_eq(rill_gen_next(g, &v), -ECONNRESET); /* the body waits when it comes */
    expect_eq(rill_gen_status(g), -ECONNRESET);
    expect_eq(rill_gen_next(g, &v), 0);
    expect_eq(rill_join(t), 0);
    rill_gen_free(g);
    rill_close(c);
    return 0;
}

FIBER_TEST(lines_stream, the_fd_stays_open_and_usable_once_the_generator_is_freed) {
    int sv[2];
    make_socketpair(sv);
    cr_assert_eq(write(sv[1], "a\n", 2), 2);
    rill_gen *g = rill_lines(sv[0]);
    void *v;
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_str_eq(v, "a");
    rill_gen_free(g); /* suspended after a line */
    cr_assert(is_open(sv[0]));
    cr_assert_eq(write(sv[1], "more", 4), 4);
    char buf[8] = {0};
    expect_eq(rill_read(sv[0], buf, sizeof buf), 4);
    cr_assert_str_eq(buf, "more");
    g = rill_lines(sv[0]); /* never started */
    rill_gen_free(g);
    cr_assert(is_open(sv[0]));
    shutdown(sv[1], SHUT_WR);
    g = rill_lines(sv[0]); /* finished */
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    cr_assert(is_open(sv[0]));
    close(sv[0]);
    close(sv[1]);
    return 0;
}

FIBER_TEST(lines_stream, a_bad_fd_gives_no_generator_or_one_that_fails_with_ebadf) {
    errno = 0;
    cr_assert_null(rill_lines(-1));
    expect_eq(errno, EBADF);
    /* A number that is not open is found by the first read (rill.h names
     * only fd < 0 for NULL; refusing it at once would do as well). */
    errno = 0;
    rill_gen *g = rill_lines(unused_fd());
    if (g) {
        void *v;
        expect_eq(rill_gen_next(g, &v), -EBADF);
        rill_gen_free(g);
    } else {
        expect_eq(errno, EBADF);
    }
    return 0;
}

typedef struct next_call {
    rill_gen *g;
    int rc;
    volatile bool done;
} next_call;

static int nexts_once(void *arg) {
    next_call *c = arg;
    c->rc = rill_gen_next(c->g, NULL);
    c->done = true;
    return 0;
}

FIBER_TEST(lines_stream, closing_the_fd_under_a_waiting_generator_ends_it_with_ebadf) {
    int sv[2];
    make_socketpair(sv);
    next_call c = {.g = rill_lines(sv[0])};
    cr_assert_not_null(c.g);
    rill_task *t = rill_spawn(nexts_once, &c);
    expect_eq(rill_sleep(0.01), 0);
    cr_assert(!c.done);
    expect_eq(rill_close(sv[0]), 0);
    cr_assert(wait_done(&c.done, 1), "the generator's read was not woken");
    expect_eq(rill_join(t), 0);
    expect_eq(c.rc, -EBADF);
    expect_eq(rill_gen_status(c.g), -EBADF);
    rill_gen_free(c.g);
    close(sv[1]);
    return 0;
}

typedef struct many_lines {
    int fd, n;
    ssize_t rc;
} many_lines;

static int writes_numbered_lines(void *arg) {
    many_lines *m = arg;
    char chunk[8192];
    size_t len = 0;
    m->rc = 0;
    for (int i = 0; i < m->n && m->rc >= 0; i++) {
        len += (size_t)sprintf(chunk + len, "line %d\n", i);
        if (len > sizeof chunk - 32 || i == m->n - 1) {
            m->rc = rill_write(m->fd, chunk, len);
            len = 0;
        }
    }
    shutdown(m->fd, SHUT_WR);
    return 0;
}

FIBER_TEST(lines_stream, many_lines_through_a_socket_arrive_in_order) {
    int sv[2];
    make_socketpair(sv);
    many_lines m = {sv[1], under_valgrind() ? 20000 : 100000, 0};
    rill_task *t = rill_spawn(writes_numbered_lines, &m);
    rill_gen *g = rill_lines(sv[0]);
    void *v;
    int i = 0, rc;
    char want[32];
    while ((rc = rill_gen_next(g, &v)) == 1) {
        sprintf(want, "line %d", i++);
        if (strcmp(v, want) != 0) cr_assert_str_eq(v, want);
    }
    expect_eq(rc, 0);
    expect_eq(i, m.n);
    rill_gen_free(g);
    expect_eq(rill_join(t), 0);
    cr_assert(m.rc > 0);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

FIBER_TEST(lines_stream, breaking_out_early_frees_the_generator_cleanly) {
    int sv[2];
    make_socketpair(sv);
    many_lines m = {sv[1], 200000, 0}; /* more than the socket holds */
    rill_task *t = rill_spawn(writes_numbered_lines, &m);
    {
        RILL_GEN_AUTO rill_gen *g = rill_lines(sv[0]);
        const char *line;
        int i = 0;
        rill_foreach(line, g) {
            char want[32];
            sprintf(want, "line %d", i);
            cr_assert_str_eq(line, want);
            if (++i == 10) break;
        }
        expect_eq(i, 10);
    }
    cr_assert(is_open(sv[0]));
    expect_eq(rill_close(sv[0]), 0); /* the writer, still waiting, fails */
    expect_eq(rill_join(t), 0);
    cr_assert(m.rc == -EPIPE || m.rc == -ECONNRESET, "writer: %zd", m.rc);
    close(sv[1]);
    return 0;
}

FIBER_TEST(lines_stream, a_deadline_cuts_a_next_waiting_for_a_line_and_loses_nothing) {
    int p[2];
    make_pipe(p);
    cr_assert_eq(write(p[1], "partial", 7), 7);
    rill_gen *g = rill_lines(p[0]);
    void *v;
    rill_scope s;
    rill_scope_enter(&s, 0.02);
    expect_eq(rill_gen_next(g, &v), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    /* The cancelled read had no effect: the generator goes on, with the
     * bytes it had already read. */
    expect_eq(rill_gen_status(g), 0);
    cr_assert_eq(write(p[1], " line\nnext\n", 11), 11);
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_str_eq(v, "partial line");
    /* A deadline per line: a scope around each next. */
    rill_scope_enter(&s, 5);
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(rill_scope_exit(&s), 0);
    cr_assert_str_eq(v, "next");
    close(p[1]);
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    close(p[0]);
    return 0;
}
