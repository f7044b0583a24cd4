/* rill_file_lines (rill.h "Files"): a file's lines as a generator,
 * read on the pool. */
#include <fcntl.h>
#include <sys/stat.h>

#include <sys/socket.h>
#include <sys/un.h>

#include "helpers.h"

/* A file in /tmp with the given bytes; the path goes in path (64 bytes). */
static void make_file(char *path, const char *bytes, size_t n) {
    strcpy(path, "/tmp/rill-lines-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, bytes + off, n - off);
        cr_assert(w > 0);
        off += (size_t)w;
    }
    close(fd);
}

/* Every line of the file at path, joined with '|', into out. */
static int collect(const char *path, char *out, size_t len, int *nlines) {
    rill_gen *g = rill_file_lines(path);
    int rc = join_lines(g, out, len, nlines);
    rill_gen_free(g);
    return rc;
}

FIBER_TEST(lines, endings_empty_lines_and_a_last_line_without_newline) {
    char path[64], out[256];
    int n;
    const char text[] = "alpha\nbeta\r\n\n\ngamma\r\ndelta";
    make_file(path, text, sizeof text - 1);
    expect_eq(collect(path, out, sizeof out, &n), 0);
    cr_assert_str_eq(out, "alpha|beta|||gamma|delta");
    expect_eq(n, 6);
    unlink(path);
    make_file(path, "", 0);
    expect_eq(collect(path, out, sizeof out, &n), 0);
    expect_eq(n, 0);
    unlink(path);
    make_file(path, "\n", 1);
    expect_eq(collect(path, out, sizeof out, &n), 0);
    expect_eq(n, 1); /* one empty line */
    unlink(path);
    return 0;
}

FIBER_TEST(lines, a_line_longer_than_many_chunks_comes_out_whole) {
    enum { LONG = 300 * 1024 };
    char *text = malloc(LONG + 16);
    memset(text, 'x', LONG);
    memcpy(text + LONG, "\nshort\n", 7);
    char path[64];
    make_file(path, text, LONG + 7);
    rill_gen *g = rill_file_lines(path);
    void *v;
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(strlen(v), LONG);
    expect_eq(memcmp(v, text, LONG), 0);
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_str_eq(v, "short");
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    free(text);
    unlink(path);
    return 0;
}

static int ticks(void *arg) {
    int *n = arg;
    while (rill_sleep(0.001) == 0) (*n)++;
    return 0;
}

FIBER_TEST(lines, every_line_of_a_large_file_in_order_while_others_run) {
    int nlines = under_valgrind() ? 20000 : 200000;
    size_t cap = (size_t)nlines * 12;
    char *text = malloc(cap);
    size_t len = 0;
    for (int i = 0; i < nlines; i++) len += (size_t)sprintf(text + len, "line %d\n", i);
    char path[64];
    make_file(path, text, len);
    free(text);
    int ticked = 0;
    rill_task *t = rill_spawn(ticks, &ticked);
    rill_gen *g = rill_file_lines(path);
    void *v;
    int i = 0, rc;
    char want[32];
    while ((rc = rill_gen_next(g, &v)) == 1) {
        sprintf(want, "line %d", i++);
        if (strcmp(v, want) != 0) cr_assert_str_eq(v, want);
        if (i % 20000 == 0) rill_sleep(0.002); /* a consumer that takes its time */
    }
    expect_eq(rc, 0);
    expect_eq(i, nlines);
    cr_assert(ticked > 0, "the ticker never ran while the file was read");
    rill_gen_free(g);
    rill_cancel(t);
    expect_eq(rill_join(t), 0);
    unlink(path);
    return 0;
}

FIBER_TEST(lines, breaking_early_closes_the_file) {
    char path[64];
    make_file(path, "1\n2\n3\n4\n5\n", 10);
    int fds = count_open_fds();
    rill_gen *g = rill_file_lines(path);
    expect_eq(count_open_fds(), fds + 1); /* opened at once */
    void *v;
    expect_eq(rill_gen_next(g, &v), 1);
    fds = count_open_fds(); /* the file, and the loop's wake-up fd now */
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_str_eq(v, "2");
    expect_eq(rill_gen_close(g), 0);
    expect_eq(count_open_fds(), fds - 1);
    rill_gen_free(g);
    /* Never started: freeing it closes the file too. */
    g = rill_file_lines(path);
    expect_eq(count_open_fds(), fds);
    rill_gen_free(g);
    expect_eq(count_open_fds(), fds - 1);
    unlink(path);
    return 0;
}

Test(lines, what_is_not_a_regular_file_is_refused, .timeout = TEST_TIMEOUT) {
    errno = 0;
    cr_assert_null(rill_file_lines(NULL));
    expect_eq(errno, EINVAL);
    cr_assert_null(rill_file_lines("/nonexistent/rill/file"));
    expect_eq(errno, ENOENT);
    cr_assert_null(rill_file_lines("/tmp"));
    expect_eq(errno, EISDIR);
    char fifo[] = "/tmp/rill-fifo-XXXXXX";
    int fd = mkstemp(fifo);
    close(fd);
    unlink(fifo);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_null(rill_file_lines(fifo)); /* and it did not hang on open */
    expect_eq(errno, EINVAL);
    unlink(fifo);
    /* A Unix socket's path: open() says ENXIO, which is not what it is. */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "/tmp/rill-sock-%d", (int)getpid());
    int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_eq(bind(sfd, (struct sockaddr *)&sun, sizeof sun), 0);
    errno = 0;
    cr_assert_null(rill_file_lines(sun.sun_path));
    expect_eq(errno, EINVAL);
    close(sfd);
    unlink(sun.sun_path);
}

Test(lines, read_outside_a_fiber_is_eperm, .timeout = TEST_TIMEOUT) {
    char path[64];
    make_file(path, "a\n", 2);
    rill_gen *g = rill_file_lines(path);
    cr_assert_not_null(g);
    void *v;
    expect_eq(rill_gen_next(g, &v), -EPERM);
    rill_gen_free(g);
    unlink(path);
}

/* A read cancelled before it started consumed nothing: the same generator
 * goes on, for a file and for a stream alike. */
static void next_under_expired_scope_then_resume(rill_gen *g, const char *first) {
    rill_scope s;
    rill_scope_enter(&s, 0); /* already expired: the read is cancelled at once */
    void *v = NULL;
    expect_eq(rill_gen_next(g, &v), -ECANCELED);
    rill_scope_exit(&s);
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_str_eq(v, first);
}

FIBER_TEST(lines, a_cancelled_read_leaves_the_generator_where_it_was) {
    char path[64];
    make_file(path, "one\ntwo\n", 8);
    rill_gen *g = rill_file_lines(path);
    cr_assert_not_null(g);
    next_under_expired_scope_then_resume(g, "one");
    rill_gen_free(g);
    unlink(path);

    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(write(sv[1], "alpha\nbeta", 10), 10);
    cr_assert_eq(shutdown(sv[1], SHUT_WR), 0);
    g = rill_lines(sv[0]);
    cr_assert_not_null(g);
    next_under_expired_scope_then_resume(g, "alpha");
    void *v;
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_str_eq(v, "beta");
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
