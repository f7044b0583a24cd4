/* The primitive waits: sleep, sleep_until, yield, wait_fd, and the rule that
 * a cancelled wait leaves nothing behind (rill.h: "Cancel scopes", rill_wait_fd). */
#include <ev.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
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

/* The timer heap against a sort: many deadlines, ties among them, and
 * timers taken out of the middle (cancelled sleeps). */
typedef struct timed {
    double at;
    int id;
    bool cancelled;
} timed;

static int *heap_log, heap_logged;

static int sleeps_until_unless_cancelled(void *arg) {
    timed *s = arg;
    int rc = rill_sleep_until(s->at);
    if (rc == 0) heap_log[heap_logged++] = s->id;
    return rc == -ECANCELED ? 0 : rc;
}

static int by_deadline_then_arming(const void *a, const void *b) {
    const timed *x = a, *y = b;
    if (x->at != y->at) return x->at < y->at ? -1 : 1;
    return x->id - y->id; /* armed in id order */
}

FIBER_TEST(wait, timers_fire_in_deadline_then_arming_order_whatever_was_taken_out) {
    enum { N = 3000 };
    static timed a[N], sorted[N];
    static int log[N];
    static rill_task *t[N];
    heap_log = log;
    heap_logged = 0;
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        t[i] = rill_spawn(sleeps_until_unless_cancelled, &a[i]);
        cr_assert_not_null(t[i]);
    }
    /* Read by each sleeper when it first runs: after this loop.  Far enough
     * ahead that every cancellation below comes first, even under valgrind. */
    double base = rill_now() + (getenv("RILL_UNDER_VALGRIND") ? 5.0 : 0.5);
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        a[i] = (timed){base + (double)((seed >> 16) % 40) * 0.001, i, false};
    }
    expect_eq(rill_yield_now(), 0); /* every sleeper has armed its timer */
    int kept = 0;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 3 == 0) {
            a[i].cancelled = true;
            expect_eq(rill_cancel(t[i]), 1);
        } else {
            sorted[kept++] = a[i];
        }
    }
    cr_assert(rill_now() < base, "the machine was too slow: deadlines passed before the last "
                                 "cancellation (the test's margin is too small here)");
    for (int i = 0; i < N; i++) expect_eq(rill_join(t[i]), 0);
    qsort(sorted, (size_t)kept, sizeof sorted[0], by_deadline_then_arming);
    expect_eq(heap_logged, kept);
    for (int i = 0; i < kept; i++) expect_eq(log[i], sorted[i].id);
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

/* ---- a descriptor closed, or unusable, while a fiber waits on it ------------- */

typedef struct fd_wait_arg {
    int fd;
    int events;
    int rc;
} fd_wait_arg;

static int waits_on_fd(void *arg) {
    fd_wait_arg *a = arg;
    a->rc = rill_wait_fd(a->fd, a->events);
    return 0;
}

static int closes_fd(void *arg) {
    return close(*(int *)arg) == 0 ? 0 : -errno;
}

/* Waiters and a closer in one scheduling round: the closer runs after the
 * waiters (closer_first false) or before them, before the loop polls. */
static void race_close(int fd, const int *events, int nwaiters, bool closer_first) {
    fd_wait_arg w[2];
    rill_task *t[3];
    int n = 0, closed = fd;
    if (closer_first) t[n++] = rill_spawn(closes_fd, &closed);
    for (int i = 0; i < nwaiters; i++) {
        w[i] = (fd_wait_arg){fd, events[i], 1};
        t[n++] = rill_spawn(waits_on_fd, &w[i]);
    }
    if (!closer_first) t[n++] = rill_spawn(closes_fd, &closed);
    for (int i = 0; i < n; i++) expect_eq(rill_join(t[i]), 0);
    for (int i = 0; i < nwaiters; i++) expect_eq(w[i].rc, -EBADF);
}

FIBER_TEST(wait, closing_an_fd_in_the_round_its_wait_starts_wakes_the_waiter_with_ebadf) {
    int fds[2];
    static const int rd[] = {RILL_READ}, wr[] = {RILL_WRITE};
    for (int closer_first = 0; closer_first < 2; closer_first++) {
        cr_assert_eq(pipe(fds), 0);
        race_close(fds[0], rd, 1, closer_first);  /* nothing to read yet */
        race_close(fds[1], wr, 1, closer_first); /* writable at once */
    }
    /* The loop goes on working for descriptors that stay open, also while
     * a high fd makes room for itself and another closes. */
    cr_assert_eq(pipe(fds), 0);
    fd_wait_arg low = {fds[0], RILL_READ, 1};
    rill_task *t = rill_spawn(waits_on_fd, &low);
    expect_eq(rill_sleep(0.005), 0);
    int high = fcntl(fds[1], F_DUPFD, 300);
    cr_assert(high >= 300);
    race_close(high, wr, 1, false);
    cr_assert_eq(write(fds[1], "x", 1), 1);
    expect_eq(rill_join(t), 0);
    expect_eq(low.rc, RILL_READ);
    expect_eq(rill_wait_fd(fds[1], RILL_WRITE), RILL_WRITE);
    close(fds[0]);
    close(fds[1]);
    return 0;
}

FIBER_TEST(wait, closing_an_fd_two_fibers_just_started_waiting_on_wakes_both) {
    int sv[2];
    static const int both[] = {RILL_READ, RILL_WRITE}, reads[] = {RILL_READ, RILL_READ};
    for (int closer_first = 0; closer_first < 2; closer_first++) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        race_close(sv[0], both, 2, closer_first);
        race_close(sv[1], reads, 2, closer_first);
    }
    return 0;
}

FIBER_TEST(wait, closing_an_fd_while_one_of_its_established_waits_is_cancelled_wakes_the_other) {
    for (int cancel_first = 0; cancel_first < 2; cancel_first++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        /* Both wait past a poll: the read end is never writable. */
        fd_wait_arg a = {fds[0], RILL_READ, 1}, b = {fds[0], RILL_WRITE, 1};
        rill_task *ta = rill_spawn(waits_on_fd, &a), *tb = rill_spawn(waits_on_fd, &b);
        expect_eq(rill_sleep(0.01), 0);
        /* One round: a's watcher goes, which changes what libev asks the
         * kernel for the fd, and the fd closes. */
        if (cancel_first) expect_eq(rill_cancel(ta), 1);
        close(fds[0]);
        if (!cancel_first) expect_eq(rill_cancel(ta), 1);
        expect_eq(rill_join(ta), 0);
        expect_eq(rill_join(tb), 0);
        expect_eq(a.rc, -ECANCELED);
        expect_eq(b.rc, -EBADF);
        close(fds[1]);
    }
    return 0;
}

FIBER_TEST(wait, wait_fd_on_an_unpollable_fd_fails_and_on_a_file_is_ready) {
    int path = open("/tmp", O_PATH);
    cr_assert(path >= 0);
    expect_eq(rill_wait_fd(path, RILL_READ), -EBADF);
    expect_eq(rill_wait_fd(path, RILL_READ | RILL_WRITE), -EBADF);
    close(path);
    /* epoll refuses regular files, directories and /dev/null, which are
     * always ready (as poll() says): so is the wait. */
    FILE *f = tmpfile();
    cr_assert(f);
    expect_eq(rill_wait_fd(fileno(f), RILL_READ), RILL_READ);
    expect_eq(rill_wait_fd(fileno(f), RILL_READ | RILL_WRITE), RILL_READ | RILL_WRITE);
    fclose(f);
    int dir = open("/", O_RDONLY | O_DIRECTORY), null = open("/dev/null", O_WRONLY);
    cr_assert(dir >= 0 && null >= 0);
    expect_eq(rill_wait_fd(dir, RILL_READ), RILL_READ);
    expect_eq(rill_wait_fd(null, RILL_WRITE), RILL_WRITE);
    close(dir);
    close(null);
    /* An eventfd is polled as usual. */
    int efd = eventfd(0, 0);
    cr_assert(efd >= 0);
    expect_eq(rill_wait_fd(efd, RILL_WRITE), RILL_WRITE);
    close(efd);
    return 0;
}

Test(wait, in_an_attached_loop_closing_an_fd_a_fiber_just_started_waiting_on_wakes_it,
     .timeout = TEST_TIMEOUT) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    expect_eq(rill_attach(loop), 0);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    int path = open("/tmp", O_PATH);
    cr_assert(path >= 0);
    fd_wait_arg w = {fds[0], RILL_READ, 1}, p = {path, RILL_READ, 1};
    int closed = fds[0];
    rill_detach(rill_spawn(waits_on_fd, &w));
    rill_detach(rill_spawn(closes_fd, &closed));
    rill_detach(rill_spawn(waits_on_fd, &p));
    ev_run(loop, 0);
    expect_eq(w.rc, -EBADF);
    expect_eq(p.rc, -EBADF);
    /* The loop still serves descriptors that stay open. */
    fd_wait_arg ok = {fds[1], RILL_WRITE, 1};
    rill_detach(rill_spawn(waits_on_fd, &ok));
    ev_run(loop, 0);
    expect_eq(ok.rc, RILL_WRITE);
    expect_eq(rill_detach_loop(), 0);
    ev_loop_destroy(loop);
    close(fds[1]);
    close(path);
}
