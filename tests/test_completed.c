/* rill_as_completed: tasks yielded as they end, misuse refused, early
 * closes and cancelled waits that lose no task, and no dangling pointer
 * when a run ends with tasks still observed. */
#include "helpers.h"

/* A task that sleeps arg milliseconds and returns that number. */
static int sleeps_ms(void *arg) {
    int ms = (int)(intptr_t)arg;
    int rc = rill_sleep(ms / 1000.0);
    return rc < 0 ? rc : ms;
}

static rill_task *spawn_ms(int ms) { return rill_spawn(sleeps_ms, (void *)(intptr_t)ms); }

FIBER_TEST(completed, tasks_come_out_in_the_order_they_end_and_join_at_once) {
    int ms[] = {60, 20, 40, 1};
    rill_task *t[4];
    for (int i = 0; i < 4; i++) t[i] = spawn_ms(ms[i]);
    rill_gen *g = rill_as_completed(t, 4);
    cr_assert_not_null(g);
    int want[] = {1, 20, 40, 60}, k = 0;
    rill_task *done;
    rill_foreach(done, g) {
        cr_assert_lt(k, 4);
        expect_eq(rill_cancel(done), 0); /* it has ended: the join cannot wait */
        expect_eq(rill_join(done), want[k++]);
    }
    expect_eq(k, 4);
    expect_eq(rill_gen_status(g), 0); /* exhausted */
    void *v;
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(completed, tasks_already_ended_come_first_in_array_order) {
    rill_task *t[4] = {spawn_ms(30), rill_spawn(rill_test_noop, NULL), spawn_ms(10),
                       rill_spawn(rill_test_noop, NULL)};
    expect_eq(rill_sleep(0.002), 0); /* the two no-ops have ended */
    RILL_GEN_AUTO rill_gen *g = rill_as_completed(t, 4);
    rill_task *want[] = {t[1], t[3], t[2], t[0]}, *done;
    int k = 0;
    rill_foreach(done, g) {
        cr_assert_eq(done, want[k], "value %d", k);
        k++;
        cr_assert_geq(rill_join(done), 0);
    }
    expect_eq(k, 4);
    return 0;
}

FIBER_TEST(completed, no_tasks_yield_nothing) {
    rill_gen *g = rill_as_completed(NULL, 0);
    cr_assert_not_null(g);
    void *v;
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    rill_task *t = NULL;
    g = rill_as_completed(&t, 0);
    cr_assert_not_null(g);
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    return 0;
}

static rill_task *child;

static int spawns_nothing_more(void *arg) {
    (void)arg;
    child = rill_current();
    return rill_sleep(0.005);
}

static void expect_refused(rill_task *const *t, size_t n) {
    errno = 0;
    cr_assert_null(rill_as_completed(t, n));
    expect_eq(errno, EINVAL);
}

FIBER_TEST(completed, misuse_is_refused_and_leaves_every_task_unobserved) {
    expect_refused(NULL, 1);
    rill_task *a = spawn_ms(1), *b = spawn_ms(1);
    rill_task *with_null[] = {a, NULL};
    expect_refused(with_null, 2);
    rill_task *twice[] = {a, b, a};
    expect_refused(twice, 3);
    rill_task *main_task[] = {a, rill_current()};
    expect_refused(main_task, 2);

    rill_task *d = spawn_ms(1);
    rill_detach(d);
    rill_task *detached[] = {a, d};
    expect_refused(detached, 2);

    rill_group grp;
    rill_group_init(&grp);
    expect_eq(rill_group_spawn(&grp, spawns_nothing_more, NULL), 0);
    expect_eq(rill_yield_now(), 0);
    rill_task *grouped[] = {a, child};
    expect_refused(grouped, 2);
    expect_eq(rill_group_wait(&grp), 0);

    rill_task *j = spawn_ms(0);
    expect_eq(rill_join(j), 0);
    rill_task *joined[] = {a, j}; /* its struct sits in the task cache */
    expect_refused(joined, 2);

    /* Observed by another as_completed: refused until it lets go. */
    rill_task *first[] = {a};
    rill_gen *g = rill_as_completed(first, 1);
    cr_assert_not_null(g);
    rill_task *again[] = {b, a};
    expect_refused(again, 2);
    rill_gen_free(g);

    /* Every refusal let go of what it had taken: both join normally. */
    expect_eq(rill_join(a), 1);
    expect_eq(rill_join(b), 1);
    return 0;
}

FIBER_TEST(completed, an_observed_task_cannot_be_joined_or_detached_until_yielded) {
    rill_task *t = spawn_ms(5);
    rill_gen *g = rill_as_completed(&t, 1);
    expect_eq(rill_join(t), -EINVAL);
    errno = 0;
    rill_detach(t);
    expect_eq(errno, EINVAL);
    expect_eq(rill_cancel(t), 1); /* cancelling is fine */
    void *v;
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_eq(v, t);
    expect_eq(rill_join(t), -ECANCELED);
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    return 0;
}

/* A task that ends when the test opens its gate: ends under control,
 * whatever the machine's speed. */
typedef struct gate {
    rill_event open;
    int value;
} gate;

static int waits_for_its_gate(void *arg) {
    gate *g = arg;
    int rc = rill_event_wait(&g->open);
    return rc < 0 ? rc : g->value;
}

static rill_task *spawn_gated(gate *g, int value) {
    rill_event_init(&g->open);
    g->value = value;
    return rill_spawn(waits_for_its_gate, g);
}

/* Open g and let its task end (it runs before the caller resumes). */
static void open_gate(gate *g) {
    rill_event_set(&g->open);
    expect_eq(rill_yield_now(), 0);
}

FIBER_TEST(completed, closing_early_leaves_the_other_tasks_running_and_the_callers) {
    gate gt[3];
    rill_task *t[3];
    for (int i = 0; i < 3; i++) t[i] = spawn_gated(&gt[i], i);
    rill_gen *g = rill_as_completed(t, 3);
    open_gate(&gt[1]);
    rill_task *done;
    rill_foreach(done, g) {
        expect_eq(rill_join(done), 1);
        break; /* the first is enough */
    }
    rill_gen_free(g);
    expect_eq(rill_cancel(t[0]), 1); /* still running */
    expect_eq(rill_join(t[0]), -ECANCELED);
    open_gate(&gt[2]);
    expect_eq(rill_join(t[2]), 2);

    /* rill_gen_close, and a generator closed before it ever ran. */
    gate gu[2];
    rill_task *u[2] = {spawn_gated(&gu[0], 5), spawn_gated(&gu[1], 6)};
    rill_gen *h = rill_as_completed(u, 1), *never = rill_as_completed(u + 1, 1);
    open_gate(&gu[0]);
    void *v;
    expect_eq(rill_gen_next(h, &v), 1);
    expect_eq(rill_join(u[0]), 5);
    expect_eq(rill_gen_close(h), 0);
    expect_eq(rill_gen_close(never), 0);
    open_gate(&gu[1]);
    expect_eq(rill_join(u[1]), 6);
    rill_gen_free(h);
    rill_gen_free(never);
    return 0;
}

FIBER_TEST(completed, a_throw_ends_it_and_hands_the_tasks_back) {
    gate gt[2];
    rill_task *t[2] = {spawn_gated(&gt[0], 1), spawn_gated(&gt[1], 2)};
    rill_gen *g = rill_as_completed(t, 2);
    open_gate(&gt[0]);
    void *v;
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(rill_join(v), 1);
    expect_eq(rill_gen_throw(g, -EIO, &v), -EIO);
    expect_eq(rill_gen_status(g), -EIO);
    open_gate(&gt[1]);
    expect_eq(rill_join(t[1]), 2);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(completed, a_timed_out_next_yields_nothing_and_loses_no_task) {
    gate gt[2];
    rill_task *t[2] = {spawn_gated(&gt[0], 30), spawn_gated(&gt[1], 60)};
    rill_gen *g = rill_as_completed(t, 2);
    void *v = NULL;
    rill_scope s;
    rill_scope_enter(&s, 0.005); /* as_completed(timeout=0.005) */
    expect_eq(rill_gen_next(g, &v), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    cr_assert_null(v);
    expect_eq(rill_gen_status(g), 0); /* still usable */
    expect_eq(rill_join(t[0]), -EINVAL); /* still observed */

    /* t[0] ends while nobody waits: it is kept for the next call. */
    open_gate(&gt[0]);
    expect_eq(rill_cancel(t[0]), 0); /* it has ended */
    rill_scope_enter(&s, 0); /* already expired: a task that has ended
                                comes out without a cancellation check */
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_eq(v, t[0]);
    expect_eq(rill_gen_next(g, &v), -ECANCELED); /* t[1] is still running */
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    expect_eq(rill_join(t[0]), 30);

    rill_event_set(&gt[1].open); /* ends while the next call waits */
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_eq(v, t[1]);
    expect_eq(rill_join(t[1]), 60);
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    return 0;
}

/* The consumer is a task cancelled while it waits in rill_gen_next. */
typedef struct consumer {
    rill_gen *g;
    int rc;
} consumer;

static int consumes_one(void *arg) {
    consumer *c = arg;
    void *v;
    c->rc = rill_gen_next(c->g, &v);
    return 0;
}

FIBER_TEST(completed, a_cancelled_consumer_leaves_the_task_for_the_next_one) {
    gate gt;
    rill_task *t = spawn_gated(&gt, 20);
    consumer c = {rill_as_completed(&t, 1), 0};
    rill_task *ct = rill_spawn(consumes_one, &c);
    expect_eq(rill_yield_now(), 0); /* t and ct wait */
    rill_cancel(ct);
    expect_eq(rill_join(ct), 0);
    expect_eq(c.rc, -ECANCELED);
    rill_event_set(&gt.open);
    void *v;
    expect_eq(rill_gen_next(c.g, &v), 1); /* another consumer gets it */
    cr_assert_eq(v, t);
    expect_eq(rill_join(t), 20);
    rill_gen_free(c.g);
    return 0;
}

/* Sleeps a pseudo-random few milliseconds, returns its index. */
static int sleeps_then_returns_index(void *arg) {
    int i = (int)(intptr_t)arg;
    int rc = rill_sleep((i * 7919 % 50) / 1000.0);
    return rc < 0 ? rc : i;
}

FIBER_TEST(completed, a_thousand_tasks_each_come_out_once) {
    enum { N = 1000 };
    static rill_task *t[N];
    static unsigned char seen[N];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) t[i] = rill_spawn(sleeps_then_returns_index, (void *)(intptr_t)i);
    rill_gen *g = rill_as_completed(t, N);
    rill_task *done;
    int k = 0;
    rill_foreach(done, g) {
        int i = rill_join(done);
        cr_assert(i >= 0 && i < N && !seen[i], "join returned %d", i);
        seen[i] = 1;
        k++;
    }
    expect_eq(k, N);
    expect_eq(rill_gen_status(g), 0);
    rill_gen_free(g);
    return 0;
}

/* ---- a run that ends with tasks still observed ------------------------------ */

static rill_gen *kept[2];

static int leaves_its_generators(void *arg) {
    (void)arg;
    enum { MANY = 1100 }; /* more than the runtime caches: most are freed */
    static rill_task *t[2], *many[MANY];
    for (int i = 0; i < 2; i++) t[i] = spawn_ms(i == 0 ? 1 : 10000);
    for (int i = 0; i < MANY; i++) many[i] = spawn_ms(10000);
    kept[0] = rill_as_completed(t, 2);        /* started, then suspended */
    kept[1] = rill_as_completed(many, MANY);  /* never started */
    void *v;
    if (rill_gen_next(kept[0], &v) != 1 || v != t[0]) return -EIO;
    return rill_join(t[0]) == 1 ? 0 : -EIO;
    /* The others are cancelled by rill_run's end and freed unjoined while
     * observed; the generators outlive the run. */
}

Test(completed, generators_freed_after_the_run_touch_no_freed_task,
     .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(leaves_its_generators, NULL), 0);
    void *v;
    expect_eq(rill_gen_next(kept[0], &v), 0); /* shutdown closed it */
    rill_gen_free(kept[0]);
    rill_gen_free(kept[1]);
}

/* ---- a deadlock while waiting ------------------------------------------------ */

static int waits_forever(void *arg) {
    rill_event *e = arg;
    return rill_event_wait(e); /* nobody sets it: -EDEADLK */
}

static int deadlock_verdict = 1;

static int waits_on_tasks_that_wait_forever(void *arg) {
    (void)arg;
    rill_event e;
    rill_event_init(&e);
    rill_task *t = rill_spawn(waits_forever, &e);
    rill_gen *g = rill_as_completed(&t, 1);
    void *v;
    int rc = rill_gen_next(g, &v);
    int rc2 = rill_gen_next(g, &v); /* t ended with -EDEADLK meanwhile, or now */
    int st = rc2 == 1 && v == t ? rill_join(t) : -EIO;
    rill_gen_free(g);
    deadlock_verdict = rc == -EDEADLK && st == -EDEADLK ? 0 : -EIO;
    return 0;
}

Test(completed, a_deadlocked_wait_returns_edeadlk_and_loses_no_task, .timeout = TEST_TIMEOUT,
     .init = cr_redirect_stderr) {
    /* rill_run reports the deadlock whatever main returns. */
    expect_eq(rill_run(waits_on_tasks_that_wait_forever, NULL), -EDEADLK);
    expect_eq(deadlock_verdict, 0);
}
