/* The primitive waits: sleep, sleep_until, yield, wait_fd, and the rule that
 * a cancelled wait leaves nothing behind (DESIGN §3, §4, §8 rill_wait_fd). */
#include <fcntl.h>
#include <unistd.h>

#include "helpers.h"

FIBER_TEST(wait, sleep_waits_at_least_the_time_asked) {
    double t0 = rill_now();
    expect_eq(rill_sleep(0.03), 0);
    double took = rill_now() - t0;
    cr_expect(took >= 0.03 && took < 2.0, "slept %.4f s", took);
    double until = rill_now() + 0.02;
    expect_eq(rill_sleep_until(until), 0);
    cr_expect(rill_now() >= until);
    return 0;
}

FIBER_TEST(wait, sleep_of_zero_or_less_yields_and_nan_is_rejected) {
    expect_eq(rill_sleep(0), 0);
    expect_eq(rill_sleep(-1), 0);
    expect_eq(rill_sleep_until(0), 0);
    expect_eq(rill_sleep(NAN), -EINVAL);
    expect_eq(rill_sleep_until(NAN), -EINVAL);
    return 0;
}

typedef struct sleeper_arg {
    double delay;
    int *log;
    int *n;
    int id;
} sleeper_arg;

static int sleeps_and_logs(void *arg) {
    sleeper_arg *s = arg;
    int rc = rill_sleep(s->delay);
    s->log[(*s->n)++] = s->id;
    return rc;
}

FIBER_TEST(wait, sleepers_wake_in_deadline_order) {
    enum { N = 6 };
    double delays[N] = {0.05, 0.01, 0.04, 0.02, 0.06, 0.03};
    int want[N] = {1, 3, 5, 2, 0, 4};
    int log[N], n = 0;
    sleeper_arg a[N];
    rill_task *t[N];
    for (int i = 0; i < N; i++) {
        a[i] = (sleeper_arg){delays[i], log, &n, i};
        t[i] = rill_spawn(sleeps_and_logs, &a[i]);
    }
    for (int i = 0; i < N; i++) expect_eq(rill_join(t[i]), 0);
    for (int i = 0; i < N; i++) expect_eq(log[i], want[i]);
    return 0;
}

static int sleeps_until_and_logs(void *arg) {
    sleeper_arg *s = arg;
    int rc = rill_sleep_until(s->delay);
    s->log[(*s->n)++] = s->id;
    return rc;
}

FIBER_TEST(wait, equal_deadlines_wake_in_arming_order) {
    enum { N = 50 };
    int log[N], n = 0;
    sleeper_arg a[N];
    rill_task *t[N];
    double at = rill_now() + 0.02;
    for (int i = 0; i < N; i++) {
        a[i] = (sleeper_arg){at, log, &n, i};
        t[i] = rill_spawn(sleeps_until_and_logs, &a[i]);
    }
    for (int i = 0; i < N; i++) expect_eq(rill_join(t[i]), 0);
    for (int i = 0; i < N; i++) expect_eq(log[i], i);
    return 0;
}

FIBER_TEST(wait, wait_fd_reports_readiness) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    expect_eq(rill_wait_fd(fds[1], RILL_WRITE), RILL_WRITE);
    cr_assert_eq(write(fds[1], "hi", 2), 2);
    expect_eq(rill_wait_fd(fds[0], RILL_READ), RILL_READ);
    expect_eq(rill_wait_fd(fds[0], RILL_READ | RILL_WRITE) & RILL_READ, RILL_READ);
    close(fds[0]);
    close(fds[1]);
    return 0;
}

typedef struct writer_arg {
    int fd;
    double after;
} writer_arg;

static int writes_later(void *arg) {
    writer_arg *w = arg;
    rill_sleep(w->after);
    return write(w->fd, "x", 1) == 1 ? 0 : -errno;
}

FIBER_TEST(wait, wait_fd_blocks_until_data_arrives_while_others_run) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    writer_arg w = {fds[1], 0.02};
    rill_task *t = rill_spawn(writes_later, &w);
    double t0 = rill_now();
    expect_eq(rill_wait_fd(fds[0], RILL_READ), RILL_READ);
    cr_expect(rill_now() - t0 >= 0.015);
    expect_eq(rill_join(t), 0);
    close(fds[0]);
    close(fds[1]);
    return 0;
}

FIBER_TEST(wait, cancelled_wait_fd_leaves_no_watcher_behind) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    rill_scope s;
    rill_scope_enter(&s, 0.01);
    expect_eq(rill_wait_fd(fds[0], RILL_READ), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    /* A stale watcher would fire on this write and wake a fiber that waits
     * for something else (an assertion in the runtime would abort). */
    cr_assert_eq(write(fds[1], "x", 1), 1);
    expect_eq(rill_sleep(0.02), 0);
    char c;
    expect_eq(read(fds[0], &c, 1), 1); /* the byte is still there */
    close(fds[0]);
    close(fds[1]);
    return 0;
}

FIBER_TEST(wait, wait_fd_rejects_bad_descriptors_and_events) {
    expect_eq(rill_wait_fd(-1, RILL_READ), -EBADF);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    int closed = fds[0];
    close(fds[0]);
    expect_eq(rill_wait_fd(closed, RILL_READ), -EBADF);
    expect_eq(rill_wait_fd(fds[1], 0), -EINVAL);
    expect_eq(rill_wait_fd(fds[1], 8), -EINVAL);
    close(fds[1]);
    return 0;
}

FIBER_TEST(wait, wait_fd_in_a_cancelled_scope_returns_at_once) {
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_cancel(&s);
    expect_eq(rill_wait_fd(0, RILL_READ), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    return 0;
}

static int returns_seven(void *arg) {
    (void)arg;
    return 7;
}

typedef struct handoff {
    rill_task *target;
    int join_rc, next_rc;
} handoff;

static int joins_target(void *arg) {
    handoff *h = arg;
    h->join_rc = rill_join(h->target);
    h->next_rc = rill_yield_now();
    return 0;
}

FIBER_TEST(wait, a_delivered_wakeup_wins_over_a_later_cancellation) {
    handoff h = {0};
    /* Run order is FIFO: a blocks joining c; c ends and wakes a; main runs
     * next and cancels a, which is already woken but has not run yet. */
    rill_task *a = rill_spawn(joins_target, &h);
    h.target = rill_spawn(returns_seven, NULL);
    expect_eq(rill_yield_now(), 0);
    expect_eq(rill_cancel(a), 1);
    expect_eq(rill_join(a), 0);
    expect_eq(h.join_rc, 7);           /* the wake-up was kept */
    expect_eq(h.next_rc, -ECANCELED);  /* the cancellation is seen next */
    return 0;
}
