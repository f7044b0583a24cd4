/* Shared by every test file: run a test body inside rill_run, and check that
 * it leaves no file descriptor behind.  Allocations, stacks and fibers left
 * behind are caught by the ASan and valgrind runs of `make test`. */
#ifndef RILL_TEST_HELPERS_H
#define RILL_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "rill.h"

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

/* FIBER_TEST(suite, name) { ...body returning int... }
 * The body runs as rill_run's main; the test fails unless rill_run returns 0
 * and the process has as many open fds afterwards as before. */
#define FIBER_TEST(suite, name, ...)                                           \
    static int suite##_##name##_body(void *arg);                               \
    Test(suite, name, .timeout = TEST_TIMEOUT, ##__VA_ARGS__) {                \
        rill_run(rill_test_noop, NULL); /* ASan opens its log at 1st switch */ \
        int fds = count_open_fds();                                            \
        int rc = rill_run(suite##_##name##_body, NULL);                        \
        cr_assert_eq(rc, 0, "rill_run returned %d (%s)", rc, rill_strerror(rc)); \
        cr_assert_eq(count_open_fds(), fds, "fds before %d, after %d", fds,    \
                     count_open_fds());                                        \
    }                                                                          \
    static int suite##_##name##_body(void *arg)

/* Assert an int equals an expected value, printing both with their names. */
#define expect_eq(got, want)                                                   \
    do {                                                                       \
        long long g_ = (long long)(got), w_ = (long long)(want);               \
        cr_assert_eq(g_, w_, "%s is %lld (%s), expected %s = %lld (%s)", #got, \
                     g_, g_ < 0 ? rill_strerror((int)g_) : "", #want, w_,      \
                     w_ < 0 ? rill_strerror((int)w_) : "");                    \
    } while (0)

#endif
