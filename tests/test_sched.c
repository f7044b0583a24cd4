/* The scheduler: rill_run, deadlock detection, rill_dump, embedding into a
 * foreign libev loop, fairness between yielders and timers/I-O. */
#include <ev.h>
#include <unistd.h>

#include "helpers.h"

static int returns_arg(void *arg) { return (int)(intptr_t)arg; }

Test(sched, run_returns_mains_status, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(returns_arg, (void *)(intptr_t)17), 17);
    expect_eq(rill_run(returns_arg, (void *)(intptr_t)-EIO), -EIO);
    expect_eq(rill_run(NULL, NULL), -EINVAL);
}

static int nested_run(void *arg) {
    (void)arg;
    return rill_run(returns_arg, NULL);
}

Test(sched, run_inside_a_runtime_is_refused, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(nested_run, NULL), -EBUSY);
}

static int checks_loop(void *arg) {
    (void)arg;
    return rill_loop() != NULL ? 0 : -EINVAL;
}

Test(sched, loop_exists_only_inside_a_runtime, .timeout = TEST_TIMEOUT) {
    cr_expect_null(rill_loop());
    expect_eq(rill_run(checks_loop, NULL), 0);
    cr_expect_null(rill_loop());
}

Test(sched, now_is_monotonic_and_works_outside, .timeout = TEST_TIMEOUT) {
    double a = rill_now();
    usleep(2000);
    double b = rill_now();
    cr_expect(b - a >= 0.0019 && b - a < 1.0, "a=%f b=%f", a, b);
}

/* ---- deadlock ---------------------------------------------------------------- */

typedef struct pair {
    rill_task *other;
    int rc;
} pair;

static int joins_other(void *arg) {
    pair *p = arg;
    rill_yield_now(); /* let both handles be filled in */
    p->rc = rill_join(p->other);
    return p->rc;
}

static int two_tasks_join_each_other(void *arg) {
    int *main_rc = arg;
    pair a = {0}, b = {0};
    rill_task *ta = rill_spawn_opts(joins_other, &a, &(rill_opts){.name = "alpha"});
    rill_task *tb = rill_spawn_opts(joins_other, &b, &(rill_opts){.name = "beta"});
    a.other = tb;
    b.other = ta;
    *main_rc = rill_sleep(RILL_FOREVER);
    /* Each was woken with -EDEADLK from its join: let both return from it
     * (until then each is being joined, and joining it here is refused;
     * returning would leave them writing into a and b in a dead frame). */
    expect_eq(rill_yield_now(), 0);
    expect_eq(rill_join(ta), -EDEADLK);
    expect_eq(rill_join(tb), -EDEADLK);
    return *main_rc;
}

Test(sched, deadlock_returns_edeadlk_and_dumps_the_fibers, .timeout = TEST_TIMEOUT) {
    cr_redirect_stderr();
    int main_rc = 0;
    expect_eq(rill_run(two_tasks_join_each_other, &main_rc), -EDEADLK);
    expect_eq(main_rc, -EDEADLK);
    fflush(stderr);
    char buf[4096] = {0};
    FILE *err = cr_get_redirected_stderr();
    size_t n = fread(buf, 1, sizeof buf - 1, err);
    buf[n] = 0;
    cr_expect(strstr(buf, "rill: deadlock"), "stderr: %s", buf);
    cr_expect(strstr(buf, "'alpha' blocked on join 'beta'"), "stderr: %s", buf);
    cr_expect(strstr(buf, "'beta' blocked on join 'alpha'"), "stderr: %s", buf);
    cr_expect(strstr(buf, "'main' blocked on sleep"), "stderr: %s", buf);
}

static int sleeps_forever(void *arg) {
    (void)arg;
    return rill_sleep(RILL_FOREVER);
}

Test(sched, a_lone_infinite_sleep_is_a_deadlock, .timeout = TEST_TIMEOUT) {
    cr_redirect_stderr();
    expect_eq(rill_run(sleeps_forever, NULL), -EDEADLK);
}

static int shielded_forever_after_main(void *arg) {
    (void)arg;
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_shield(&s, true);
    int rc = rill_sleep(RILL_FOREVER); /* cancellation cannot reach it */
    rill_scope_exit(&s);
    return rc;
}

static int leaves_a_shielded_sleeper(void *arg) {
    (void)arg;
    rill_spawn(shielded_forever_after_main, NULL);
    rill_yield_now();
    return 0;
}

Test(sched, shielded_task_left_behind_does_not_hang_run, .timeout = TEST_TIMEOUT) {
    cr_redirect_stderr();
    expect_eq(rill_run(leaves_a_shielded_sleeper, NULL), -EDEADLK);
}

static int sleeps_a_bit(void *arg) {
    (void)arg;
    return rill_sleep(0.02);
}

static int waits_for_a_sleeper(void *arg) {
    (void)arg;
    return rill_join(rill_spawn(sleeps_a_bit, NULL));
}

Test(sched, a_pending_timer_is_not_a_deadlock, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(waits_for_a_sleeper, NULL), 0);
}

/* ---- rill_dump ------------------------------------------------------------------- */

static int dumps(void *arg) {
    FILE *out = arg;
    rill_task *t = rill_spawn_opts(sleeps_forever, NULL, &(rill_opts){.name = "sleeper"});
    rill_yield_now();
    rill_scope s;
    rill_scope_enter(&s, 5.0);
    rill_scope_shield(&s, true);
    rill_dump(out);
    rill_scope_exit(&s);
    rill_cancel(t);
    return rill_join(t) == -ECANCELED ? 0 : -EIO;
}

Test(sched, dump_lists_fibers_states_waits_and_scopes, .timeout = TEST_TIMEOUT) {
    char buf[2048] = {0};
    FILE *out = fmemopen(buf, sizeof buf - 1, "w");
    expect_eq(rill_run(dumps, out), 0);
    fclose(out);
    cr_expect(strstr(buf, "rill: 2 fibers"), "dump: %s", buf);
    cr_expect(strstr(buf, "'main' running [scope deadline +"), "dump: %s", buf);
    cr_expect(strstr(buf, "shielded] [scope]"), "dump: %s", buf);
    cr_expect(strstr(buf, "'sleeper' blocked on sleep [scope]"), "dump: %s", buf);
}

Test(sched, dump_outside_a_runtime_says_so, .timeout = TEST_TIMEOUT) {
    char buf[256] = {0};
    FILE *out = fmemopen(buf, sizeof buf - 1, "w");
    rill_dump(out);
    fclose(out);
    cr_expect(strstr(buf, "no runtime"), "dump: %s", buf);
}

/* ---- fairness ---------------------------------------------------------------------- */

static int yields_until_cancelled(void *arg) {
    long *n = arg;
    while (rill_yield_now() == 0) (*n)++;
    return 0;
}

static int timer_beats_yielders(void *arg) {
    (void)arg;
    long n1 = 0, n2 = 0;
    rill_task *a = rill_spawn(yields_until_cancelled, &n1);
    rill_task *b = rill_spawn(yields_until_cancelled, &n2);
    double t0 = rill_now();
    int rc = rill_sleep(0.02); /* must wake although others never block */
    double took = rill_now() - t0;
    rill_cancel(a);
    rill_cancel(b);
    rill_join(a);
    rill_join(b);
    cr_expect(took < 2.0, "sleep of 0.02 s took %.3f s", took);
    cr_expect(n1 > 10 && n2 > 10, "yielders ran %ld and %ld times", n1, n2);
    return rc;
}

FIBER_TEST(sched, timers_are_not_starved_by_fibers_that_keep_yielding) {
    return timer_beats_yielders(arg);
}

static int reads_pipe(void *arg) {
    int *fds = arg;
    return rill_wait_fd(fds[0], RILL_READ);
}

FIBER_TEST(sched, io_is_not_starved_by_fibers_that_keep_yielding) {
    long n = 0;
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    rill_task *y = rill_spawn(yields_until_cancelled, &n);
    rill_task *r = rill_spawn(reads_pipe, fds);
    rill_yield_now();
    cr_assert_eq(write(fds[1], "x", 1), 1);
    expect_eq(rill_join(r), RILL_READ); /* joining blocks us; y keeps yielding */
    rill_cancel(y);
    rill_join(y);
    close(fds[0]);
    close(fds[1]);
    return 0;
}

/* ---- embedding ------------------------------------------------------------------------ */

typedef struct embedded {
    int steps;
    double slept;
} embedded;

static int embedded_task(void *arg) {
    embedded *e = arg;
    for (int i = 0; i < 3; i++) {
        double t0 = rill_now();
        if (rill_sleep(0.01) != 0) return -EIO;
        e->slept += rill_now() - t0;
        e->steps++;
    }
    return 0;
}

static int user_timer_fired;

static void user_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
    user_timer_fired++;
}

Test(sched, attach_runs_fibers_inside_a_foreign_loop, .timeout = TEST_TIMEOUT) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    expect_eq(rill_attach(loop), 0);
    expect_eq(rill_attach(loop), -EBUSY);
    cr_expect(rill_loop() == loop);
    embedded e = {0};
    rill_task *t = rill_spawn(embedded_task, &e);
    cr_assert(t);
    rill_detach(t);
    ev_timer tm;
    ev_timer_init(&tm, user_timer, 0.005, 0);
    ev_timer_start(loop, &tm);
    ev_run(loop, 0); /* returns when neither the user's nor rill's work is left */
    expect_eq(e.steps, 3);
    expect_eq(user_timer_fired, 1);
    cr_expect(e.slept >= 0.029, "slept %.3f", e.slept);
    expect_eq(rill_detach_loop(), 0);
    cr_expect_null(rill_loop());
    ev_loop_destroy(loop);
}

Test(sched, detach_loop_cancels_what_is_left, .timeout = TEST_TIMEOUT) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    expect_eq(rill_attach(loop), 0);
    rill_task *t = rill_spawn(sleeps_forever, NULL);
    ev_run(loop, EVRUN_NOWAIT); /* it starts and blocks */
    rill_detach(t);
    expect_eq(rill_detach_loop(), 0);
    expect_eq(rill_detach_loop(), -EINVAL);
    ev_loop_destroy(loop);
    expect_eq(rill_attach(NULL), -EINVAL);
}

/* ---- the user's own watchers on rill's loop ------------------------------------- */

static int sleeps_until_a_user_timer_cancels(void *arg);

static void cancels_main(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    rill_cancel(w->data); /* from a libev callback: the host, not a fiber */
}

Test(sched, a_watcher_of_the_users_own_counts_as_a_possible_wakeup, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(sleeps_until_a_user_timer_cancels, NULL), -ECANCELED);
}

static int sleeps_until_a_user_timer_cancels(void *arg) {
    (void)arg;
    ev_timer tm;
    ev_timer_init(&tm, cancels_main, 0.02, 0);
    tm.data = rill_current();
    ev_timer_start(rill_loop(), &tm);
    /* Nothing of rill's can end this sleep, but the user's timer can: this
     * is not a deadlock. */
    int rc = rill_sleep(RILL_FOREVER);
    ev_timer_stop(rill_loop(), &tm);
    return rc;
}

/* ---- regressions: embedding ---------------------------------------------------- */

static int sleeper_state;

static int sleeps_until_cancelled_and_notes_it(void *arg) {
    (void)arg;
    sleeper_state = 1;
    int rc = rill_sleep(RILL_FOREVER);
    sleeper_state = rc == -ECANCELED ? 2 : 3;
    return 0;
}

static void cancels_task(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    rill_cancel(w->data);
}

Test(sched, a_fiber_woken_by_a_foreign_callback_runs_before_the_loop_returns,
     .timeout = TEST_TIMEOUT) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    expect_eq(rill_attach(loop), 0);
    sleeper_state = 0;
    rill_task *t = rill_spawn(sleeps_until_cancelled_and_notes_it, NULL);
    rill_detach(t);
    ev_timer tm;
    ev_timer_init(&tm, cancels_task, 0.01, 0);
    tm.data = t;
    ev_timer_start(loop, &tm);
    ev_run(loop, 0); /* the user's one-shot timer is its last watcher */
    expect_eq(sleeper_state, 2);
    expect_eq(rill_detach_loop(), 0);
    ev_loop_destroy(loop);
}

static int other_ran;

static int yields_three_times(void *arg) {
    (void)arg;
    for (int i = 0; i < 3; i++, other_ran++) rill_yield_now();
    return 0;
}

static int runs_the_loop_itself(void *arg) {
    (void)arg;
    rill_detach(rill_spawn(yields_three_times, NULL));
    ev_run(rill_loop(), EVRUN_NOWAIT); /* a blocking client library might */
    return rill_yield_now();
}

Test(sched, a_fiber_iterating_the_attached_loop_itself_does_not_corrupt_it,
     .timeout = TEST_TIMEOUT) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    expect_eq(rill_attach(loop), 0);
    other_ran = 0;
    rill_detach(rill_spawn(runs_the_loop_itself, NULL));
    ev_run(loop, 0);
    expect_eq(other_ran, 3);
    expect_eq(rill_detach_loop(), 0);
    ev_loop_destroy(loop);
}

/* ---- regressions: a deadlock that persists ---------------------------------------- */

static int blocks_again_and_again(void *arg) {
    int *wakeups = arg;
    while (rill_sleep(RILL_FOREVER) == -EDEADLK) (*wakeups)++;
    return 0;
}

static int main_of_a_stubborn_deadlock(void *arg) {
    rill_task *t = rill_spawn(blocks_again_and_again, arg);
    rill_detach(t);
    return rill_sleep(RILL_FOREVER); /* -EDEADLK, then main ends */
}

Test(sched, fibers_that_block_again_after_edeadlk_are_abandoned_not_looped_on,
     .init = cr_redirect_stderr, .timeout = TEST_TIMEOUT) {
    int wakeups = 0;
    expect_eq(rill_run(main_of_a_stubborn_deadlock, &wakeups), -EDEADLK);
    cr_expect(wakeups >= 1 && wakeups <= 3, "woken %d times", wakeups);
}
