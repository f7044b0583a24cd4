/* Shared by every test file: run a test body inside rill_run, and check that
 * it leaves no file descriptor behind.  Allocations, stacks and fibers left
 * behind are caught by the ASan and valgrind runs of `make test`. */
#ifndef RILL_TEST_HELPERS_H
#define RILL_TEST_HELPERS_H

#ifdef RILL_MINICRIT
#include "minicrit.h" /* ThreadSanitizer builds: see there */
#else
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#endif
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procfs.h"
#include "rill.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#endif

/* Default per-test timeout, generous: valgrind makes everything ~30x slower. */
#define TEST_TIMEOUT 60

static inline int count_open_fds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

static inline int rill_test_noop(void *arg) {
    (void)arg;
    return rill_yield_now();
}

static inline bool under_valgrind(void) { return getenv("RILL_UNDER_VALGRIND") != NULL; }

/* ThreadSanitizer keeps a trace per fiber: thousands at once exhaust it. */
static inline bool under_tsan(void) {
#if defined(__SANITIZE_THREAD__)
    return true;
#else
    return false;
#endif
}

/* Run rill_run(fn, arg) in a child process (with RILL_GUARD_PAGES set to
 * guard_env unless NULL), for behaviour that ends the process: returns the
 * child's wait status and copies its stderr into err. */
static inline int run_child(rill_fn *fn, void *arg, const char *guard_env, char *err,
                            size_t errlen) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
#ifdef __SANITIZE_ADDRESS__
        /* A sanitizer report here is expected: keep it out of the log dir
         * that makes the run fail, and in the stderr the test reads. */
        __sanitizer_set_report_path("stderr");
#endif
        if (guard_env) setenv("RILL_GUARD_PAGES", guard_env, 1);
        _exit(rill_run(fn, arg) == 0 ? 0 : 3);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < errlen && (r = read(p[0], err + n, errlen - 1 - n)) > 0) n += (size_t)r;
    err[n] = 0;
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

/* FIBER_TEST(suite, name) { ...body returning int... }
 * The body runs as rill_run's main; the test fails unless rill_run returns 0
 * and the process has as many open fds afterwards as before. */
#define FIBER_TEST(suite, name, ...)                                           \
    static int suite##_##name##_body(void *arg);                               \
    Test(suite, name, .timeout = TEST_TIMEOUT, ##__VA_ARGS__) {                \
        run_fiber_test(suite##_##name##_body);                                 \
    }                                                                          \
    static int suite##_##name##_body(void *arg)

/* What a FIBER_TEST does: body as rill_run's main, then the checks. */
static inline void run_fiber_test(rill_fn *body) {
    rill_run(rill_test_noop, NULL); /* ASan opens its log at the 1st switch */
    int fds = count_open_fds();
    int rc = rill_run(body, NULL);
    cr_assert_eq(rc, 0, "rill_run returned %d (%s)", rc, rill_strerror(rc));
    cr_assert_eq(count_open_fds(), fds, "fds before %d, after %d", fds, count_open_fds());
}

/* Assert an int equals an expected value, printing both with their names. */
#define expect_eq(got, want)                                                   \
    do {                                                                       \
        long long g_ = (long long)(got), w_ = (long long)(want);               \
        cr_assert_eq(g_, w_, "%s is %lld (%s), expected %s = %lld (%s)", #got, \
                     g_, g_ < 0 ? rill_strerror((int)g_) : "", #want, w_,      \
                     w_ < 0 ? rill_strerror((int)w_) : "");                    \
    } while (0)

/* Every line a line generator (rill_lines, rill_file_lines) yields, joined
 * with '|', into out; the count into *nlines.  Returns the last
 * rill_gen_next's result (0 at the end). */
static inline int join_lines(rill_gen *g, char *out, size_t len, int *nlines) {
    cr_assert_not_null(g, "no line generator: %s", strerror(errno));
    out[0] = 0;
    *nlines = 0;
    void *v;
    int rc;
    while ((rc = rill_gen_next(g, &v)) == 1) {
        if (*nlines) strncat(out, "|", len - strlen(out) - 1);
        strncat(out, v, len - strlen(out) - 1);
        (*nlines)++;
    }
    return rc;
}

#endif
