/* Tasks: spawn, join, cancel, detach, names, and rill_run's end (rill.h "Tasks"). */
#include "helpers.h"

static int returns_arg(void *arg) { return (int)(intptr_t)arg; }

static int sleeps_then_returns(void *arg) {
    int rc = rill_sleep(0.01);
    return rc ? rc : (int)(intptr_t)arg;
}

FIBER_TEST(task, join_returns_the_status_of_the_task) {
    rill_task *a = rill_spawn(returns_arg, (void *)(intptr_t)5);
    rill_task *b = rill_spawn(sleeps_then_returns, (void *)(intptr_t)-EIO);
    cr_assert(a && b);
    expect_eq(rill_join(b), -EIO);
    expect_eq(rill_join(a), 5);
    return 0;
}

typedef struct order_log {
    int seen[8];
    int n;
} order_log;

static order_log order;

static int record(void *arg) {
    order.seen[order.n++] = (int)(intptr_t)arg;
    return 0;
}

FIBER_TEST(task, spawn_is_lazy_and_tasks_start_in_spawn_order) {
    order.n = 0;
    rill_task *t[4];
    for (int i = 0; i < 4; i++) t[i] = rill_spawn(record, (void *)(intptr_t)i);
    expect_eq(order.n, 0); /* nothing ran: the spawner has not yielded */
    expect_eq(rill_yield_now(), 0);
    expect_eq(order.n, 4);
    for (int i = 0; i < 4; i++) {
        expect_eq(order.seen[i], i);
        expect_eq(rill_join(t[i]), 0);
    }
    return 0;
}

static int counts_forever(void *arg) {
    int *ticks = arg;
    for (;;) {
        int rc = rill_yield_now();
        if (rc) return rc;
        (*ticks)++;
    }
}

FIBER_TEST(task, yield_now_lets_every_ready_task_run) {
    int a = 0, b = 0;
    rill_task *ta = rill_spawn(counts_forever, &a);
    rill_task *tb = rill_spawn(counts_forever, &b);
    for (int i = 0; i < 100; i++) expect_eq(rill_yield_now(), 0);
    cr_expect(a >= 98 && b >= 98, "a=%d b=%d", a, b);
    cr_expect(abs(a - b) <= 1, "unfair: a=%d b=%d", a, b);
    expect_eq(rill_cancel(ta), 1);
    expect_eq(rill_cancel(tb), 1);
    expect_eq(rill_join(ta), -ECANCELED);
    expect_eq(rill_join(tb), -ECANCELED);
    return 0;
}

typedef struct first_call {
    int started;
    int first;
} first_call;

static int notes_first_call(void *arg) {
    first_call *f = arg;
    f->started = 1;
    f->first = rill_sleep(0.001);
    return f->first;
}

FIBER_TEST(task, cancelled_before_it_first_runs_it_still_starts) {
    first_call f = {0, 1};
    rill_task *t = rill_spawn(notes_first_call, &f);
    expect_eq(rill_cancel(t), 1);
    expect_eq(rill_join(t), -ECANCELED);
    expect_eq(f.started, 1);
    expect_eq(f.first, -ECANCELED);
    return 0;
}

FIBER_TEST(task, cancelling_a_finished_task_has_no_effect) {
    rill_task *t = rill_spawn(returns_arg, (void *)(intptr_t)3);
    expect_eq(rill_yield_now(), 0);
    expect_eq(rill_cancel(t), 0);
    expect_eq(rill_join(t), 3);
    return 0;
}

static int sleeps_long(void *arg) {
    (void)arg;
    return rill_sleep(30);
}

typedef struct joiner {
    rill_task *t;
    int rc;
} joiner;

static int joins(void *arg) {
    joiner *j = arg;
    j->rc = rill_join(j->t);
    return 0;
}

FIBER_TEST(task, second_joiner_gets_an_error_and_nothing_breaks) {
    rill_task *t = rill_spawn(sleeps_then_returns, (void *)(intptr_t)9);
    joiner j1 = {t, 1}, j2 = {t, 1};
    rill_task *a = rill_spawn(joins, &j1);
    expect_eq(rill_yield_now(), 0); /* j1 now waits on t */
    rill_task *b = rill_spawn(joins, &j2);
    expect_eq(rill_join(b), 0);
    expect_eq(j2.rc, -EINVAL);
    expect_eq(rill_join(a), 0);
    expect_eq(j1.rc, 9);
    return 0;
}

FIBER_TEST(task, cancelled_join_leaves_the_task_running) {
    rill_task *t = rill_spawn(sleeps_then_returns, (void *)(intptr_t)4);
    rill_scope s;
    rill_scope_enter(&s, 0.001);
    expect_eq(rill_join(t), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    expect_eq(rill_join(t), 4); /* it kept running; join again works */
    return 0;
}

FIBER_TEST(task, main_joining_itself_is_a_deadlock_error) {
    expect_eq(rill_join(rill_current()), -EDEADLK);
    return 0;
}

FIBER_TEST(task, joining_a_task_that_was_already_joined_is_refused) {
    rill_task *t = rill_spawn(returns_arg, (void *)(intptr_t)7);
    expect_eq(rill_join(t), 7);
    /* Its struct now waits in the cache: the stale handle is recognised
     * (until a new spawn reuses the struct, as with any freed handle). */
    expect_eq(rill_join(t), -EINVAL);
    expect_eq(rill_cancel(t), -EINVAL);
    errno = 0;
    rill_detach(t);
    expect_eq(errno, EINVAL);
    return 0;
}

static int joins_itself(void *arg) {
    (void)arg;
    return rill_join(rill_current());
}

FIBER_TEST(task, a_task_joining_itself_gets_edeadlk) {
    expect_eq(rill_join(rill_spawn(joins_itself, NULL)), -EDEADLK);
    return 0;
}

FIBER_TEST(task, misuse_returns_errors) {
    expect_eq(rill_join(NULL), -EINVAL);
    expect_eq(rill_cancel(NULL), -EINVAL);
    errno = 0;
    cr_expect_null(rill_spawn(NULL, NULL));
    expect_eq(errno, EINVAL);
    errno = 0;
    rill_detach(NULL);
    expect_eq(errno, EINVAL);
    cr_expect_str_eq(rill_task_name(NULL), "?");
    rill_task *t = rill_spawn(sleeps_long, NULL);
    rill_detach(t);
    expect_eq(rill_join(t), -EINVAL); /* detached */
    rill_cancel(t);
    return 0;
}

Test(task, outside_a_runtime_blocking_calls_return_eperm, .timeout = TEST_TIMEOUT) {
    errno = 0;
    cr_expect_null(rill_spawn(returns_arg, NULL));
    expect_eq(errno, EPERM);
    expect_eq(rill_sleep(0.01), -EPERM);
    expect_eq(rill_sleep_until(0), -EPERM);
    expect_eq(rill_yield_now(), -EPERM);
    expect_eq(rill_wait_fd(0, RILL_READ), -EPERM);
    cr_expect_null(rill_current());
    cr_expect_null(rill_loop());
}

static int checks_name(void *arg) { return strcmp(rill_task_name(rill_current()), arg) == 0 ? 0 : -EINVAL; }

FIBER_TEST(task, names_default_to_task_n_and_can_be_given) {
    cr_expect_str_eq(rill_task_name(rill_current()), "main");
    static char fetcher[] = "fetcher";
    rill_task *t = rill_spawn_opts(checks_name, fetcher, &(rill_opts){.name = "fetcher"});
    cr_expect_str_eq(rill_task_name(t), "fetcher");
    expect_eq(rill_join(t), 0);
    t = rill_spawn(returns_arg, NULL);
    cr_expect(strncmp(rill_task_name(t), "task-", 5) == 0, "name %s", rill_task_name(t));
    expect_eq(rill_join(t), 0);
    char longname[100];
    memset(longname, 'x', sizeof longname - 1);
    longname[99] = 0;
    t = rill_spawn_opts(returns_arg, NULL, &(rill_opts){.name = longname});
    expect_eq(strlen(rill_task_name(t)), 31); /* truncated copy */
    expect_eq(rill_join(t), 0);
    return 0;
}

/* Default names count up in decimal across every carry (9 -> 10, ...,
 * 999 -> 1000), whatever count the runtime had reached. */
FIBER_TEST(task, default_names_count_up_one_by_one) {
    rill_task *t = rill_spawn(returns_arg, NULL);
    long first = strtol(rill_task_name(t) + 5, NULL, 10);
    cr_assert(first >= 1, "name %s", rill_task_name(t));
    expect_eq(rill_join(t), 0);
    for (long k = 1; k <= 1200; k++) {
        char want[32];
        snprintf(want, sizeof want, "task-%ld", first + k);
        t = rill_spawn(returns_arg, NULL);
        cr_assert_str_eq(rill_task_name(t), want);
        expect_eq(rill_join(t), 0);
    }
    rill_gen *g = rill_gen_new(NULL, NULL); /* refused: no name is taken */
    cr_assert_null(g);
    t = rill_spawn(returns_arg, NULL);
    char want[32];
    snprintf(want, sizeof want, "task-%ld", first + 1201);
    cr_expect_str_eq(rill_task_name(t), want);
    expect_eq(rill_join(t), 0);
    return 0;
}

static int uses_stack(void *arg) {
    size_t n = (size_t)arg;
    volatile char buf[200 * 1024];
    for (size_t i = 0; i < n && i < sizeof buf; i += 512) buf[i] = (char)i;
    return buf[0];
}

FIBER_TEST(task, stack_size_option_gives_a_bigger_stack) {
    rill_task *t = rill_spawn_opts(uses_stack, (void *)(size_t)(200 * 1024),
                                   &(rill_opts){.stack_size = 1024 * 1024});
    expect_eq(rill_join(t), 0);
    return 0;
}

static int detached_sets(void *arg) {
    rill_sleep(0.005);
    *(int *)arg = 1;
    return 0;
}

FIBER_TEST(task, detached_task_runs_to_its_end_and_is_freed) {
    int done = 0, early = 0;
    rill_detach(rill_spawn(detached_sets, &done));
    rill_task *t = rill_spawn(returns_arg, NULL);
    expect_eq(rill_yield_now(), 0);
    rill_detach(t); /* already finished: freed at once */
    (void)early;
    expect_eq(rill_sleep(0.02), 0);
    expect_eq(done, 1);
    return 0;
}

static int cleanup_seen;

static int cleans_up_on_cancel(void *arg) {
    (void)arg;
    int rc = rill_sleep(30);
    if (rc == -ECANCELED) {
        rill_scope s; /* cleanup that blocks needs a shield */
        rill_scope_enter(&s, RILL_FOREVER);
        rill_scope_shield(&s, true);
        if (rill_sleep(0.005) == 0) cleanup_seen++;
        rill_scope_exit(&s);
    }
    return rc;
}

static int leaves_tasks_behind(void *arg) {
    (void)arg;
    for (int i = 0; i < 3; i++) rill_spawn(cleans_up_on_cancel, NULL); /* never joined */
    rill_detach(rill_spawn(cleans_up_on_cancel, NULL));
    rill_spawn(returns_arg, NULL); /* ends, never joined: freed by rill_run */
    rill_yield_now();
    return 42;
}

Test(task, run_cancels_and_waits_for_what_main_left, .timeout = TEST_TIMEOUT) {
    cleanup_seen = 0;
    expect_eq(rill_run(leaves_tasks_behind, NULL), 42);
    expect_eq(cleanup_seen, 4);
}

static int tiny(void *arg) {
    (*(int *)arg)++;
    return 0;
}

FIBER_TEST(task, hundred_thousand_fibers_spawned_and_joined) {
    /* All alive at once: more stacks than guard-page mappings allow, so this
     * also crosses into the slab fallback.  Fewer under valgrind. */
    int n = under_valgrind() ? 5000 : 100000;
    rill_task **t = malloc(sizeof *t * (size_t)n);
    int ran = 0;
    for (int i = 0; i < n; i++) {
        t[i] = rill_spawn_opts(tiny, &ran, &(rill_opts){.stack_size = 16 * 1024});
        cr_assert(t[i], "spawn %d failed: %s", i, strerror(errno));
    }
    for (int i = 0; i < n; i++) expect_eq(rill_join(t[i]), 0);
    expect_eq(ran, n);
    free(t);
    return 0;
}

/* ---- regressions: the window between a task's end and its joiner's return -- */

typedef struct window {
    rill_task *t;
    int joiner_rc, second_rc, detach_errno;
} window;

static int joins_window_target(void *arg) {
    window *w = arg;
    w->joiner_rc = rill_join(w->t);
    return 0;
}

static int joins_and_detaches_in_the_window(void *arg) {
    window *w = arg;
    /* Runs right after w->t ended and woke the first joiner, before that
     * joiner resumed: the joiners list is empty again here. */
    w->second_rc = rill_join(w->t);
    errno = 0;
    rill_detach(w->t);
    w->detach_errno = errno;
    return 0;
}

static int ends_at_once(void *arg) {
    (void)arg;
    return 42;
}

FIBER_TEST(task, second_join_or_detach_after_the_end_but_before_the_joiner_resumes_is_refused) {
    window w = {0};
    /* FIFO: a (joiner) blocks on t; t ends and wakes a; b runs before a. */
    rill_task *a = rill_spawn(joins_window_target, &w);
    w.t = rill_spawn(ends_at_once, NULL);
    rill_task *b = rill_spawn(joins_and_detaches_in_the_window, &w);
    expect_eq(rill_join(a), 0);
    expect_eq(rill_join(b), 0);
    expect_eq(w.joiner_rc, 42);
    expect_eq(w.second_rc, -EINVAL);
    expect_eq(w.detach_errno, EINVAL);
    return 0;
}

/* ---- regressions: scopes a body forgot to exit ------------------------------ */

static int enters_and_forgets(void) {
    rill_scope s; /* lives in this frame, which is gone when we return */
    rill_scope_enter(&s, 0.02);
    return 0;
}

static int returns_inside_a_scope(void *arg) {
    (void)arg;
    return enters_and_forgets();
}

static int reuses_the_stack_of_a_task_that_forgot_a_scope(void *arg) {
    (void)arg;
    if (rill_join(rill_spawn(returns_inside_a_scope, NULL)) != 0) return -EIO;
    /* Reuse the dead task's stack while its forgotten deadline passes: a
     * timer left armed would fire into that memory. */
    rill_task *t[4];
    for (int i = 0; i < 4; i++) t[i] = rill_spawn(sleeps_then_returns, (void *)(intptr_t)i);
    if (rill_sleep(0.05) != 0) return -EIO;
    for (int i = 0; i < 4; i++)
        if (rill_join(t[i]) != i) return -EIO;
    return 0;
}

Test(task, a_task_that_returns_inside_a_scope_leaves_no_timer_behind,
     .init = cr_redirect_stderr, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(reuses_the_stack_of_a_task_that_forgot_a_scope, NULL), 0);
    fflush(stderr);
    cr_expect_stderr_eq_str("rill: task 'task-1' ended inside a scope it did not exit\n");
}

/* ---- regressions: tasks spawned while rill_run shuts down ------------------ */

static int ticks_until_cancelled(void *arg) {
    (void)arg;
    while (rill_sleep(0.005) == 0) {
    }
    return 0;
}

static int spawns_while_unwinding(void *arg) {
    (void)arg;
    int rc = rill_sleep(RILL_FOREVER); /* cancelled when main returns */
    rill_detach(rill_spawn(ticks_until_cancelled, NULL));
    return rc;
}

static int leaves_a_late_spawner(void *arg) {
    (void)arg;
    rill_detach(rill_spawn(spawns_while_unwinding, NULL));
    rill_yield_now();
    return 0;
}

Test(task, a_task_spawned_while_run_shuts_down_starts_cancelled, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(leaves_a_late_spawner, NULL), 0);
}

FIBER_TEST(task, an_absurd_stack_size_is_refused) {
    errno = 0;
    cr_expect_null(rill_spawn_opts(returns_arg, NULL, &(rill_opts){.stack_size = SIZE_MAX}));
    expect_eq(errno, EINVAL);
    errno = 0;
    cr_expect_null(rill_spawn_opts(returns_arg, NULL,
                                   &(rill_opts){.stack_size = (size_t)1 << 58}));
    expect_eq(errno, EINVAL);
    return 0;
}
