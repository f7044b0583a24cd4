/* Cancel scopes: rill.h "Cancel scopes", statement by statement. */
#include "helpers.h"

FIBER_TEST(scope, deadline_cancels_a_sleep_and_exit_reports_timeout) {
    rill_scope s;
    double t0 = rill_now();
    rill_scope_enter(&s, 0.05);
    expect_eq(rill_sleep(10), -ECANCELED);
    double took = rill_now() - t0;
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    cr_expect(took >= 0.045 && took < 2.0, "the sleep was cut after %.3f s", took);
    expect_eq(rill_sleep(0.001), 0);
    return 0;
}

FIBER_TEST(scope, scope_whose_deadline_did_not_fire_exits_with_zero) {
    rill_scope s;
    rill_scope_enter(&s, 5.0);
    expect_eq(rill_sleep(0.01), 0);
    expect_eq(rill_scope_exit(&s), 0);
    return 0;
}

FIBER_TEST(scope, forever_means_no_deadline) {
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    expect_eq(rill_sleep(0.01), 0);
    cr_expect(!rill_cancelled());
    expect_eq(rill_scope_exit(&s), 0);
    return 0;
}

FIBER_TEST(scope, cancellation_is_level_triggered_until_the_scope_is_exited) {
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_cancel(&s);
    for (int i = 0; i < 5; i++) {
        cr_expect(rill_cancelled());
        expect_eq(rill_sleep(0.001), -ECANCELED);
        expect_eq(rill_yield_now(), -ECANCELED);
    }
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    cr_expect(!rill_cancelled());
    expect_eq(rill_yield_now(), 0);
    return 0;
}

FIBER_TEST(scope, deadline_in_the_past_cancels_at_the_next_blocking_call) {
    rill_scope a, b;
    rill_scope_enter(&a, 0);
    cr_expect(rill_cancelled());
    expect_eq(rill_yield_now(), -ECANCELED);
    expect_eq(rill_scope_exit(&a), -ETIMEDOUT);
    rill_scope_enter_at(&b, rill_now() - 1.0);
    expect_eq(rill_sleep(1), -ECANCELED);
    expect_eq(rill_scope_exit(&b), -ETIMEDOUT);
    return 0;
}

FIBER_TEST(scope, enter_at_uses_an_absolute_deadline) {
    rill_scope s;
    double deadline = rill_now() + 0.05;
    rill_scope_enter_at(&s, deadline);
    expect_eq(rill_sleep(10), -ECANCELED);
    cr_expect(rill_now() >= deadline, "woke %.4f s before the deadline", deadline - rill_now());
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    return 0;
}

FIBER_TEST(scope, relative_timeout_counts_from_enter) {
    rill_scope s;
    double t0 = rill_now();
    rill_scope_enter(&s, 0.1);
    expect_eq(rill_sleep(0.06), 0); /* part of the budget is used here */
    expect_eq(rill_sleep(10), -ECANCELED);
    double took = rill_now() - t0;
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    cr_expect(took >= 0.095 && took < 0.5 + 2.0, "fired after %.3f s, not 0.1", took);
    return 0;
}

FIBER_TEST(scope, exit_reports_only_its_own_scope) {
    rill_scope outer, inner;
    rill_scope_enter(&outer, RILL_FOREVER);
    rill_scope_enter(&inner, RILL_FOREVER);
    rill_scope_cancel(&outer);
    expect_eq(rill_sleep(1), -ECANCELED); /* the outer cancel is seen inside */
    expect_eq(rill_scope_exit(&inner), 0);
    expect_eq(rill_yield_now(), -ECANCELED); /* and stays pending outside */
    expect_eq(rill_scope_exit(&outer), -ECANCELED);
    expect_eq(rill_yield_now(), 0);
    return 0;
}

FIBER_TEST(scope, inner_deadline_does_not_cancel_the_outer_scope) {
    rill_scope outer, inner;
    rill_scope_enter(&outer, RILL_FOREVER);
    rill_scope_enter(&inner, 0.02);
    expect_eq(rill_sleep(10), -ECANCELED);
    expect_eq(rill_scope_exit(&inner), -ETIMEDOUT);
    expect_eq(rill_sleep(0.001), 0);
    expect_eq(rill_scope_exit(&outer), 0);
    return 0;
}

FIBER_TEST(scope, deadline_and_cancel_both_fired_report_cancelled) {
    rill_scope s;
    rill_scope_enter(&s, 0.01);
    expect_eq(rill_sleep(1), -ECANCELED);
    rill_scope_cancel(&s);
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    return 0;
}

FIBER_TEST(scope, shield_hides_outer_cancellation_until_it_is_left) {
    rill_scope outer, shield;
    rill_scope_enter(&outer, RILL_FOREVER);
    rill_scope_cancel(&outer);
    rill_scope_enter(&shield, RILL_FOREVER);
    rill_scope_shield(&shield, true);
    cr_expect(!rill_cancelled());
    expect_eq(rill_sleep(0.01), 0); /* the critical work finishes */
    expect_eq(rill_scope_exit(&shield), 0);
    expect_eq(rill_yield_now(), -ECANCELED); /* seen at the next call outside */
    expect_eq(rill_scope_exit(&outer), -ECANCELED);
    return 0;
}

FIBER_TEST(scope, shielded_scope_keeps_its_own_deadline) {
    rill_scope outer, shield;
    rill_scope_enter(&outer, RILL_FOREVER);
    rill_scope_cancel(&outer);
    rill_scope_enter(&shield, 0.02);
    rill_scope_shield(&shield, true);
    expect_eq(rill_sleep(10), -ECANCELED);
    expect_eq(rill_scope_exit(&shield), -ETIMEDOUT);
    expect_eq(rill_scope_exit(&outer), -ECANCELED);
    return 0;
}

FIBER_TEST(scope, cancel_on_the_shielded_scope_itself_applies) {
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_shield(&s, true);
    rill_scope_cancel(&s);
    expect_eq(rill_yield_now(), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    return 0;
}

FIBER_TEST(scope, shield_inside_shield) {
    rill_scope outer, s1, mid, s2;
    rill_scope_enter(&outer, RILL_FOREVER);
    rill_scope_enter(&s1, RILL_FOREVER);
    rill_scope_shield(&s1, true);
    rill_scope_enter(&mid, RILL_FOREVER);
    rill_scope_enter(&s2, RILL_FOREVER);
    rill_scope_shield(&s2, true);
    rill_scope_cancel(&outer);
    rill_scope_cancel(&mid);
    expect_eq(rill_sleep(0.001), 0); /* the inner shield hides mid and outer */
    expect_eq(rill_scope_exit(&s2), 0);
    expect_eq(rill_yield_now(), -ECANCELED); /* mid is cancelled, inside s1 */
    expect_eq(rill_scope_exit(&mid), -ECANCELED);
    expect_eq(rill_sleep(0.001), 0); /* s1 hides outer */
    expect_eq(rill_scope_exit(&s1), 0);
    expect_eq(rill_yield_now(), -ECANCELED);
    expect_eq(rill_scope_exit(&outer), -ECANCELED);
    return 0;
}

FIBER_TEST(scope, unshielding_exposes_the_outer_cancellation) {
    rill_scope outer, s;
    rill_scope_enter(&outer, RILL_FOREVER);
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_shield(&s, true);
    rill_scope_cancel(&outer);
    expect_eq(rill_yield_now(), 0);
    rill_scope_shield(&s, false);
    expect_eq(rill_yield_now(), -ECANCELED);
    expect_eq(rill_scope_exit(&s), 0);
    expect_eq(rill_scope_exit(&outer), -ECANCELED);
    return 0;
}

FIBER_TEST(scope, reschedule_later_lets_the_work_finish) {
    rill_scope s;
    rill_scope_enter(&s, 0.03);
    rill_scope_reschedule(&s, rill_now() + 5.0);
    expect_eq(rill_sleep(0.06), 0);
    expect_eq(rill_scope_exit(&s), 0);
    return 0;
}

FIBER_TEST(scope, reschedule_from_none_sets_a_deadline) {
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER); /* asyncio.timeout(None) */
    rill_scope_reschedule(&s, rill_now() + 0.02);
    expect_eq(rill_sleep(10), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    return 0;
}

FIBER_TEST(scope, reschedule_to_forever_removes_the_deadline) {
    rill_scope s;
    rill_scope_enter(&s, 0.02);
    rill_scope_reschedule(&s, RILL_FOREVER);
    expect_eq(rill_sleep(0.05), 0);
    expect_eq(rill_scope_exit(&s), 0);
    return 0;
}

FIBER_TEST(scope, reschedule_into_the_past_cancels_at_the_next_call) {
    rill_scope s;
    rill_scope_enter(&s, 10);
    rill_scope_reschedule(&s, rill_now() - 1);
    expect_eq(rill_yield_now(), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    return 0;
}

FIBER_TEST(scope, reschedule_of_an_exited_scope_is_an_error_without_effect) {
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    expect_eq(rill_scope_exit(&s), 0);
    errno = 0;
    rill_scope_reschedule(&s, rill_now() + 0.01);
    expect_eq(errno, EINVAL);
    errno = 0;
    rill_scope_cancel(&s);
    expect_eq(errno, EINVAL);
    /* Nothing was armed: a later sleep is neither cut nor disturbed. */
    expect_eq(rill_sleep(0.05), 0);
    cr_expect(!rill_cancelled());
    expect_eq(rill_scope_exit(&s), -EINVAL);
    return 0;
}

FIBER_TEST(scope, exiting_out_of_order_is_rejected_and_changes_nothing) {
    rill_scope outer, inner;
    rill_scope_enter(&outer, RILL_FOREVER);
    rill_scope_enter(&inner, RILL_FOREVER);
    expect_eq(rill_scope_exit(&outer), -EINVAL);
    rill_scope_cancel(&inner);
    expect_eq(rill_yield_now(), -ECANCELED); /* inner is still in force */
    expect_eq(rill_scope_exit(&inner), -ECANCELED);
    expect_eq(rill_scope_exit(&outer), 0);
    return 0;
}

typedef struct cancel_later {
    rill_scope *target;
    double after;
} cancel_later;

static int canceller(void *arg) {
    cancel_later *c = arg;
    rill_sleep(c->after);
    rill_scope_cancel(c->target);
    return 0;
}

FIBER_TEST(scope, cancel_from_another_fiber_wakes_the_blocked_owner) {
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    cancel_later c = {&s, 0.02};
    rill_task *t = rill_spawn(canceller, &c);
    double t0 = rill_now();
    expect_eq(rill_sleep(10), -ECANCELED);
    cr_expect(rill_now() - t0 < 5.0);
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    expect_eq(rill_join(t), 0);
    return 0;
}

FIBER_TEST(scope, a_cancelled_sleep_leaves_no_timer_behind) {
    rill_scope s;
    rill_scope_enter(&s, 0.01);
    expect_eq(rill_sleep(0.03), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    /* If the 0.03 s timer were still armed it would cut this sleep short or
     * wake a fiber that no longer waits; either breaks the timing below. */
    double t0 = rill_now();
    expect_eq(rill_sleep(0.06), 0);
    cr_expect(rill_now() - t0 >= 0.059, "slept only %.4f s", rill_now() - t0);
    return 0;
}

FIBER_TEST(scope, of_many_nested_deadlines_only_the_earliest_fires) {
    enum { N = 20 };
    rill_scope s[N];
    for (int i = 0; i < N; i++) rill_scope_enter(&s[i], i == N - 1 ? 0.02 : 30.0 - i);
    expect_eq(rill_sleep(10), -ECANCELED);
    expect_eq(rill_scope_exit(&s[N - 1]), -ETIMEDOUT);
    for (int i = N - 2; i >= 0; i--) expect_eq(rill_scope_exit(&s[i]), 0);
    return 0;
}

Test(scope, misuse_outside_a_fiber_is_reported, .timeout = TEST_TIMEOUT) {
    rill_scope s;
    errno = 0;
    rill_scope_enter(&s, 1.0);
    expect_eq(errno, EPERM);
    expect_eq(rill_scope_exit(&s), -EPERM);
    cr_expect(!rill_cancelled());
}

FIBER_TEST(scope, null_and_nan_are_rejected) {
    errno = 0;
    rill_scope_enter(NULL, 1.0);
    expect_eq(errno, EINVAL);
    rill_scope s;
    errno = 0;
    rill_scope_enter(&s, NAN);
    expect_eq(errno, EINVAL);
    expect_eq(rill_scope_exit(NULL), -EINVAL);
    errno = 0;
    rill_scope_shield(NULL, true);
    expect_eq(errno, EINVAL);
    errno = 0;
    rill_scope_cancel(NULL);
    expect_eq(errno, EINVAL);
    expect_eq(rill_yield_now(), 0);
    return 0;
}

FIBER_TEST(scope, entering_a_scope_that_is_already_open_is_refused) {
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    errno = 0;
    rill_scope_enter(&s, 1.0);
    expect_eq(errno, EINVAL);
    cr_expect(!rill_cancelled()); /* would loop forever on a cycle */
    expect_eq(rill_yield_now(), 0);
    expect_eq(rill_scope_exit(&s), 0);
    return 0;
}

FIBER_TEST(scope, a_deadline_passed_during_cpu_work_cancels_the_very_next_call) {
    rill_scope s;
    rill_scope_enter(&s, 0.01);
    double until = rill_now() + 0.03;
    while (rill_now() < until) {
        /* compute, without a blocking call: the reactor never runs */
    }
    cr_expect(rill_cancelled());
    expect_eq(rill_yield_now(), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    return 0;
}

FIBER_TEST(scope, a_deadline_that_passed_unnoticed_still_makes_exit_report_timeout) {
    rill_scope s;
    rill_scope_enter(&s, 0.01);
    double until = rill_now() + 0.03;
    while (rill_now() < until) {
        /* no blocking call at all inside the scope */
    }
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    expect_eq(rill_yield_now(), 0);
    return 0;
}

/* ---- scopes left open by a returning frame, RILL_SCOPE_AUTO ------------------ */

/* The natural port of `async with asyncio.timeout(t): return await f()`,
 * without RILL_SCOPE_AUTO: the frame that holds the scope returns with the
 * scope still open. */
static __attribute__((noinline)) int leaves_a_scope_open(void) {
    rill_scope s;
    rill_scope_enter(&s, 5.0);
    return rill_yield_now();
}

static int returns_then_sleeps(void *arg) {
    (void)arg;
    leaves_a_scope_open();
    return rill_sleep(0.001);
}

static int returns_then_enters(void *arg) {
    (void)arg;
    leaves_a_scope_open();
    rill_scope again;
    rill_scope_enter(&again, 1.0);
    return rill_scope_exit(&again);
}

static int yields_after_a_helper_left_a_scope(rill_gen *g, void *arg) {
    (void)arg;
    leaves_a_scope_open();
    return rill_yield(g, NULL);
}

static int consumes_a_generator_that_left_a_scope(void *arg) {
    (void)arg;
    rill_gen *g = rill_gen_new_opts(yields_after_a_helper_left_a_scope, NULL,
                                    &(rill_opts){.name = "leaky-gen"});
    rill_gen_next(g, NULL);
    rill_gen_free(g);
    return 0;
}

static int consumer_left_a_scope(void *arg) {
    (void)arg;
    rill_gen *g = rill_gen_new_opts(yields_after_a_helper_left_a_scope, NULL, NULL);
    leaves_a_scope_open();
    rill_gen_next(g, NULL); /* the body would inherit the dead scope */
    rill_gen_free(g);
    return 0;
}

static void expect_left_open_report(rill_fn *fn, const char *fiber) {
    char err[4096];
    int status = run_child(fn, NULL, NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "the child was not aborted (status %#x): %s", status, err);
    char want[128];
    snprintf(want, sizeof want, "rill: fiber '%s' left a scope without rill_scope_exit", fiber);
    cr_expect(strstr(err, want), "stderr lacks \"%s\": %s", want, err);
    cr_expect(strstr(err, "entered it (at "), "stderr does not say where: %s", err);
    /* One line, not a crash report. */
    cr_expect(!strstr(err, "overflowed") && !strstr(err, "AddressSanitizer"), "%s", err);
}

Test(scope, returning_with_a_scope_open_aborts_at_the_next_blocking_call,
     .timeout = TEST_TIMEOUT) {
    expect_left_open_report(returns_then_sleeps, "main");
}

Test(scope, returning_with_a_scope_open_aborts_at_the_next_scope_call,
     .timeout = TEST_TIMEOUT) {
    expect_left_open_report(returns_then_enters, "main");
}

Test(scope, a_generator_body_left_with_a_scope_open_aborts_at_its_yield,
     .timeout = TEST_TIMEOUT) {
    expect_left_open_report(consumes_a_generator_that_left_a_scope, "leaky-gen");
}

Test(scope, a_consumer_left_with_a_scope_open_aborts_when_it_resumes_a_generator,
     .timeout = TEST_TIMEOUT) {
    expect_left_open_report(consumer_left_a_scope, "main");
}

/* A scope in the heap outlives the frame that entered it: not judged. */
static __attribute__((noinline)) void enters_a_heap_scope(rill_scope *s) {
    rill_scope_enter(s, RILL_FOREVER);
}

FIBER_TEST(scope, a_heap_scope_may_be_exited_by_a_caller_of_the_function_that_entered_it) {
    rill_scope *s = malloc(sizeof *s);
    enters_a_heap_scope(s);
    expect_eq(rill_sleep(0.001), 0);
    rill_scope_cancel(s);
    expect_eq(rill_yield_now(), -ECANCELED);
    expect_eq(rill_scope_exit(s), -ECANCELED);
    free(s);
    expect_eq(rill_yield_now(), 0);
    return 0;
}

static __attribute__((noinline)) int fetch_within(double timeout, double work) {
    RILL_SCOPE_AUTO rill_scope s;
    rill_scope_enter(&s, timeout);
    return rill_sleep(work); /* `return await f()` inside `async with timeout` */
}

FIBER_TEST(scope, auto_scope_exits_when_its_function_returns) {
    expect_eq(fetch_within(0.02, 10), -ECANCELED);
    cr_expect(!rill_cancelled(), "the timed-out scope leaked into the caller");
    expect_eq(fetch_within(5, 0.001), 0);
    expect_eq(rill_sleep(0.03), 0); /* its deadline must not fire out here */
    return 0;
}

FIBER_TEST(scope, auto_scope_exits_on_break_and_goto) {
    for (int i = 0; i < 3; i++) {
        RILL_SCOPE_AUTO rill_scope s;
        rill_scope_enter(&s, 0);
        if (rill_yield_now() == -ECANCELED) break;
    }
    expect_eq(rill_yield_now(), 0);
    {
        RILL_SCOPE_AUTO rill_scope s;
        rill_scope_enter(&s, RILL_FOREVER);
        rill_scope_cancel(&s);
        if (rill_cancelled()) goto out;
    }
out:
    expect_eq(rill_yield_now(), 0);
    return 0;
}

FIBER_TEST(scope, auto_scope_does_nothing_when_never_entered_or_already_exited) {
    { RILL_SCOPE_AUTO rill_scope never; (void)never; } /* valgrind: no read of it */
    rill_scope outer;
    rill_scope_enter(&outer, RILL_FOREVER);
    {
        RILL_SCOPE_AUTO rill_scope s;
        rill_scope_enter(&s, 0);
        expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    } /* exited already: outer must stay open and innermost */
    expect_eq(rill_scope_exit(&outer), 0);
    {
        /* Entered while outside a fiber: refused, so nothing to exit. */
        RILL_SCOPE_AUTO rill_scope s;
        rill_scope_enter(NULL, 1);
        (void)s;
    }
    return 0;
}

static int auto_scope_outside_a_fiber(void) {
    RILL_SCOPE_AUTO rill_scope s;
    rill_scope_enter(&s, 1.0);
    return errno;
}

Test(scope, auto_scope_outside_a_fiber_is_harmless, .timeout = TEST_TIMEOUT) {
    expect_eq(auto_scope_outside_a_fiber(), EPERM);
}

/* RILL_SCOPE_AUTO exits its own scope only: a plain scope entered after it
 * in the same block is left open, and reported once the block's function
 * has returned. */
static __attribute__((noinline)) int auto_block_leaves_an_inner_scope(void) {
    {
        RILL_SCOPE_AUTO rill_scope s;
        rill_scope inner;
        rill_scope_enter(&s, 1.0);
        rill_scope_enter(&inner, 1.0);
    }
    return 0;
}

static int inner_left_in_an_auto_block(void *arg) {
    (void)arg;
    auto_block_leaves_an_inner_scope();
    return rill_yield_now();
}

Test(scope, a_plain_scope_left_open_inside_an_auto_block_aborts_once_its_function_returns,
     .timeout = TEST_TIMEOUT) {
    expect_left_open_report(inner_left_in_an_auto_block, "main");
}

/* ---- one scope, one fiber ------------------------------------------------------- */

typedef struct shared_scope {
    rill_scope *s;
    int err;
    bool cancelled_after;
    rill_event entered, tried;
} shared_scope;

static int enters_anothers_scope(void *arg) {
    shared_scope *x = arg;
    rill_event_wait(&x->entered);
    errno = 0;
    rill_scope_enter(x->s, 0); /* would cancel this fiber, if accepted */
    x->err = errno;
    x->cancelled_after = rill_cancelled();
    rill_event_set(&x->tried);
    return 0;
}

static int refuse_anothers_scope(rill_scope *s) {
    shared_scope x = {.s = s};
    rill_event_init(&x.entered);
    rill_event_init(&x.tried);
    rill_task *t = rill_spawn(enters_anothers_scope, &x);
    rill_scope_enter(s, RILL_FOREVER);
    rill_event_set(&x.entered);
    expect_eq(rill_event_wait(&x.tried), 0);
    expect_eq(x.err, EINVAL);
    cr_expect(!x.cancelled_after, "the other fiber entered the scope");
    expect_eq(rill_join(t), 0);
    expect_eq(rill_sleep(0.001), 0);
    expect_eq(rill_scope_exit(s), 0);
    return 0;
}

FIBER_TEST(scope, entering_a_scope_that_another_fiber_has_open_is_refused) {
    rill_scope local;
    refuse_anothers_scope(&local);
    rill_scope *heap = malloc(sizeof *heap);
    refuse_anothers_scope(heap);
    free(heap);
    return 0;
}

/* ---- scopes a returning task leaves open are closed, every one ------------------ */

typedef struct heap_leftover {
    rill_scope s;
    double timeout;
} heap_leftover;

static int leaves_a_heap_scope(void *arg) {
    heap_leftover *h = arg;
    rill_scope_enter(&h->s, h->timeout);
    return 0;
}

static void heap_scope_is_closed_after_its_task(double timeout) {
    heap_leftover *h = malloc(sizeof *h);
    h->timeout = timeout;
    expect_eq(rill_join(rill_spawn(leaves_a_heap_scope, h)), 0);
    errno = 0;
    rill_scope_cancel(&h->s);
    expect_eq(errno, EINVAL);
    errno = 0;
    rill_scope_reschedule(&h->s, rill_now() + 0.01);
    expect_eq(errno, EINVAL);
    errno = 0;
    rill_scope_shield(&h->s, true);
    expect_eq(errno, EINVAL);
    expect_eq(rill_scope_exit(&h->s), -EINVAL);
    free(h); /* nothing of rill's points at it any more (ASan, valgrind) */
    expect_eq(rill_sleep(0.02), 0);
}

FIBER_TEST(scope, every_heap_scope_left_open_by_a_returning_task_is_closed) {
    heap_scope_is_closed_after_its_task(RILL_FOREVER);
    heap_scope_is_closed_after_its_task(10.0);
    return 0;
}

/* ---- The README's recipes, as printed there --------------------------------- */

/* "except CancelledError: cleanup; raise": cleanup that blocks goes in a
 * shielded scope, since the task's cancellation is level-triggered. */
typedef struct {
    int flush_rc;
    double flush_took;
} conn;

static int flush_and_close(conn *c) { /* a cleanup that blocks */
    double t0 = rill_now();
    c->flush_rc = rill_sleep(0.05);
    c->flush_took = rill_now() - t0;
    return c->flush_rc;
}

static int worker(void *arg) {
    conn *c = arg;
    int rc = rill_sleep(60);                 /* any blocking call */
    if (rc == -ECANCELED) {                  /* except CancelledError: */
        rill_scope s;
        rill_scope_enter(&s, 5.0);           /* a deadline of its own */
        rill_scope_shield(&s, true);         /* hide the task's cancellation */
        flush_and_close(c);                  /* may block: sleep, fds, joins */
        rill_scope_exit(&s);
        return -ECANCELED;                   /* raise */
    }
    return rc;
}

FIBER_TEST(scope, readme_cleanup_after_cancel_blocks_in_a_shielded_scope) {
    conn c = {.flush_rc = 1};
    rill_task *t = rill_spawn(worker, &c);
    cr_assert(t);
    expect_eq(rill_sleep(0.01), 0);
    expect_eq(rill_cancel(t), 1);
    expect_eq(rill_join(t), -ECANCELED);
    expect_eq(c.flush_rc, 0); /* the cleanup's own blocking call completed */
    cr_expect(c.flush_took >= 0.045, "the cleanup slept %.3f s, not 0.05", c.flush_took);
    return 0;
}

/* asyncio.shield(aw): the work runs in a task of its own; its caller waits
 * with a join that can be cancelled, and on -ECANCELED leaves at once while
 * the work goes on.  The job is shared, so the last of the two frees it. */
typedef struct {
    int rows;
    bool fail;
    rill_event saved;
} database;

typedef struct { int refs, status; database *db; } save_job;

static int save_to_database(save_job *j) { /* three rows, 0.1 s each */
    int rc = 0;
    for (int row = 0; row < 3 && rc == 0; row++)
        if ((rc = rill_sleep(0.1)) == 0) j->db->rows++;
    rill_event_set(&j->db->saved);
    return rc < 0 ? rc : j->db->fail ? -EIO : 0;
}

static void save_job_drop(save_job *j) {
    if (--j->refs == 0) free(j);
}

static int save_task(void *arg) {            /* the shielded work, a task */
    save_job *j = arg;
    j->status = save_to_database(j);
    save_job_drop(j);
    return 0;                                /* the status travels in j */
}

static int save_shielded(database *db) {           /* await asyncio.shield(save(db)) */
    save_job *j = malloc(sizeof *j);
    if (!j) return -ENOMEM;
    *j = (save_job){.refs = 2, .db = db};    /* 2: the task's and ours */
    rill_task *t = rill_spawn(save_task, j);
    if (!t) {
        free(j);
        return -ENOMEM;
    }
    int rc = rill_join(t);                   /* -ECANCELED at once if we are */
    if (rc == 0)
        rc = j->status;
    else
        rill_detach(t);                      /* cancelled: the save goes on */
    save_job_drop(j);
    return rc;
}

static int critical_operation(void *arg) { return save_shielded(arg); }

FIBER_TEST(scope, readme_asyncio_shield_cancels_the_caller_at_once_while_the_work_goes_on) {
    database d = {0};
    rill_event_init(&d.saved);
    rill_task *t = rill_spawn(critical_operation, &d);
    cr_assert(t);
    expect_eq(rill_sleep(0.15), 0); /* in the middle of the second row */
    expect_eq(rill_cancel(t), 1);
    expect_eq(rill_join(t), -ECANCELED);
    cr_expect(d.rows < 3 && !rill_event_is_set(&d.saved),
              "the caller waited for the save (%d rows written)", d.rows);
    expect_eq(rill_event_wait(&d.saved), 0);
    expect_eq(d.rows, 3); /* the save was not cut short */
    return 0;
}

FIBER_TEST(scope, readme_asyncio_shield_returns_the_works_status_when_not_cancelled) {
    database d = {.fail = true};
    rill_event_init(&d.saved);
    rill_task *t = rill_spawn(critical_operation, &d);
    cr_assert(t);
    expect_eq(rill_join(t), -EIO);
    expect_eq(d.rows, 3);
    return 0;
}
