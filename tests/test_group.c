/* Task groups (rill_group_*) and rill_gather: fail-fast, cancellation of and
 * by the waiter, failure bookkeeping, misuse, and a stress case. */
#include "helpers.h"

/* ---- children used throughout ------------------------------------------- */

/* A child that sleeps, then returns `fail` if set, else what the sleep
 * returned.  After a cancelled sleep it may clean up in a shielded scope. */
typedef struct child {
    double sleep;      /* RILL_FOREVER: until cancelled */
    int fail;          /* returned, whatever the sleep returned, if non-zero */
    double cleanup;    /* > 0: a shielded sleep this long after a cancelled sleep */
    int cleanup_yields; /* and/or this many shielded yields */
    /* what happened */
    rill_task *self;
    bool started, cleaned, ended;
    int sleep_rc, cleanup_rc;
} child;

static int child_run(void *arg) {
    child *c = arg;
    c->self = rill_current();
    c->started = true;
    c->sleep_rc = rill_sleep(c->sleep);
    if (c->sleep_rc == -ECANCELED && (c->cleanup > 0 || c->cleanup_yields > 0)) {
        rill_scope s;
        rill_scope_enter(&s, RILL_FOREVER);
        rill_scope_shield(&s, true);
        if (c->cleanup > 0) c->cleanup_rc = rill_sleep(c->cleanup);
        for (int i = 0; i < c->cleanup_yields && c->cleanup_rc == 0; i++)
            c->cleanup_rc = rill_yield_now();
        rill_scope_exit(&s);
        c->cleaned = true;
    }
    c->ended = true;
    return c->fail ? c->fail : c->sleep_rc;
}

static int count_ended(const child *c, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) k += c[i].ended;
    return k;
}

/* A child that yields `yields` times (ignoring cancellation), then returns
 * `status`.  With yields == 0 it fails before any blocking call. */
typedef struct failer {
    int yields;
    int status;
    bool ended;
} failer;

static int failer_run(void *arg) {
    failer *f = arg;
    for (int i = 0; i < f->yields; i++) rill_yield_now();
    f->ended = true;
    return f->status;
}

/* Returns -ECANCELED of its own accord, without having been cancelled. */
static int fake_cancel_run(void *arg) {
    bool *cancelled_before = arg;
    int rc = rill_sleep(0.01);
    *cancelled_before = rc == -ECANCELED;
    return -ECANCELED;
}

/* Twelve distinct failure statuses. */
static const int codes[12] = {-EIO,   -ENOENT, -EPIPE, -EBADF,   -EACCES, -EEXIST,
                              -ENOSPC, -EROFS, -EMFILE, -ENOTDIR, -EISDIR, -EXDEV};

static void expect_failure(rill_failure f, int index, int status) {
    expect_eq(f.index, index);
    expect_eq(f.status, status);
}

/* ---- success and concurrency ---------------------------------------------- */

FIBER_TEST(group, all_children_succeeding_makes_wait_return_zero) {
    rill_group g;
    rill_group_init(&g);
    child c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = (child){.sleep = 0.005 * (i + 1)};
        expect_eq(rill_group_spawn(&g, child_run, &c[i]), 0);
    }
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(count_ended(c, 3), 3);
    for (int i = 0; i < 3; i++) expect_eq(c[i].sleep_rc, 0);
    expect_eq(rill_group_errors(&g, NULL, 0), 0);
    return 0;
}

FIBER_TEST(group, children_run_concurrently) {
    rill_group g;
    rill_group_init(&g);
    child c[3];
    double t0 = rill_now();
    for (int i = 0; i < 3; i++) {
        c[i] = (child){.sleep = 0.05};
        expect_eq(rill_group_spawn(&g, child_run, &c[i]), 0);
    }
    expect_eq(rill_group_wait(&g), 0);
    double took = rill_now() - t0;
    cr_assert(took >= 0.049, "three 0.05 s children took %.3f s", took);
    cr_assert(took < 0.15, "three 0.05 s children took %.3f s: not concurrent", took);
    return 0;
}

FIBER_TEST(group, children_first_run_when_the_spawner_blocks) {
    rill_group g;
    rill_group_init(&g);
    child c = {.sleep = 0};
    expect_eq(rill_group_spawn(&g, child_run, &c), 0);
    expect_eq(c.started, false);
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(c.ended, true);
    return 0;
}

/* ---- failure ---------------------------------------------------------------- */

FIBER_TEST(group, a_failure_cancels_the_other_children) {
    rill_group g;
    rill_group_init(&g);
    child c[3] = {{.sleep = RILL_FOREVER}, {.sleep = 0.01, .fail = -EIO},
                  {.sleep = RILL_FOREVER}};
    for (int i = 0; i < 3; i++) expect_eq(rill_group_spawn(&g, child_run, &c[i]), 0);
    expect_eq(rill_group_wait(&g), -EIO);
    expect_eq(c[0].sleep_rc, -ECANCELED);
    expect_eq(c[2].sleep_rc, -ECANCELED);
    rill_failure f[2];
    expect_eq(rill_group_errors(&g, f, 2), 1);
    expect_failure(f[0], 1, -EIO);
    return 0;
}

FIBER_TEST(group, wait_returns_only_after_cancelled_children_finish_cleaning_up) {
    rill_group g;
    rill_group_init(&g);
    child c[3] = {{.sleep = RILL_FOREVER, .cleanup = 0.03},
                  {.sleep = 0.01, .fail = -EPIPE},
                  {.sleep = RILL_FOREVER, .cleanup = 0.02}};
    double t0 = rill_now();
    for (int i = 0; i < 3; i++) expect_eq(rill_group_spawn(&g, child_run, &c[i]), 0);
    expect_eq(rill_group_wait(&g), -EPIPE);
    double took = rill_now() - t0;
    expect_eq(count_ended(c, 3), 3);
    for (int i = 0; i < 3; i += 2) {
        expect_eq(c[i].cleaned, true);
        expect_eq(c[i].cleanup_rc, 0); /* the shield held */
    }
    cr_assert(took >= 0.039, "wait returned after %.3f s, before the 0.03 s cleanup", took);
    return 0;
}

FIBER_TEST(group, children_ended_by_the_groups_cancellation_are_not_failures) {
    rill_group g;
    rill_group_init(&g);
    child c[4] = {{.sleep = RILL_FOREVER}, {.sleep = RILL_FOREVER},
                  {.sleep = 0.01, .fail = -EIO}, {.sleep = RILL_FOREVER}};
    for (int i = 0; i < 4; i++) expect_eq(rill_group_spawn(&g, child_run, &c[i]), 0);
    expect_eq(rill_group_wait(&g), -EIO);
    rill_failure f[4] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    expect_eq(rill_group_errors(&g, f, 4), 1);
    expect_failure(f[0], 2, -EIO);
    expect_failure(f[1], -1, -1);
    return 0;
}

FIBER_TEST(group, a_child_returning_another_error_when_cancelled_is_a_failure) {
    rill_group g;
    rill_group_init(&g);
    child c[2] = {{.sleep = RILL_FOREVER}, {.sleep = RILL_FOREVER, .fail = -EPIPE}};
    for (int i = 0; i < 2; i++) expect_eq(rill_group_spawn(&g, child_run, &c[i]), 0);
    expect_eq(rill_sleep(0.005), 0);
    rill_group_cancel(&g);
    expect_eq(rill_group_wait(&g), -EPIPE);
    expect_eq(c[1].sleep_rc, -ECANCELED);
    rill_failure f;
    expect_eq(rill_group_errors(&g, &f, 1), 1);
    expect_failure(f, 1, -EPIPE);
    return 0;
}

FIBER_TEST(group, a_child_returning_ecanceled_without_being_cancelled_is_a_failure) {
    rill_group g;
    rill_group_init(&g);
    bool cancelled_before = true;
    child sibling = {.sleep = RILL_FOREVER};
    expect_eq(rill_group_spawn(&g, fake_cancel_run, &cancelled_before), 0);
    expect_eq(rill_group_spawn(&g, child_run, &sibling), 0);
    expect_eq(rill_group_wait(&g), -ECANCELED);
    expect_eq(cancelled_before, false);
    expect_eq(sibling.sleep_rc, -ECANCELED); /* the failure cancelled it */
    rill_failure f;
    expect_eq(rill_group_errors(&g, &f, 1), 1);
    expect_failure(f, 0, -ECANCELED);
    return 0;
}

FIBER_TEST(group, a_child_cancelled_with_rill_cancel_is_not_a_failure) {
    rill_group g;
    rill_group_init(&g);
    child c[2] = {{.sleep = RILL_FOREVER}, {.sleep = 0.02}};
    for (int i = 0; i < 2; i++) expect_eq(rill_group_spawn(&g, child_run, &c[i]), 0);
    expect_eq(rill_sleep(0.005), 0);
    expect_eq(rill_cancel(c[0].self), 1);
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(c[0].sleep_rc, -ECANCELED);
    expect_eq(c[1].sleep_rc, 0); /* its sibling was not cancelled */
    expect_eq(rill_group_errors(&g, NULL, 0), 0);
    return 0;
}

/* ---- rill_group_errors ------------------------------------------------------ */

/* Twelve children failing: child 0 yields once first, so the failure order
 * is 1, 2, ..., 11, 0 while the spawn order is 0..11. */
static void run_twelve_failures(rill_group *g, failer f[12]) {
    rill_group_init(g);
    for (int i = 0; i < 12; i++) {
        f[i] = (failer){.yields = i == 0, .status = codes[i]};
        expect_eq(rill_group_spawn(g, failer_run, &f[i]), 0);
    }
    expect_eq(rill_group_wait(g), codes[1]);
    for (int i = 0; i < 12; i++) expect_eq(f[i].ended, true);
}

FIBER_TEST(group, errors_counts_every_failure_and_keeps_the_first_eight_in_order) {
    rill_group g;
    failer f[12];
    run_twelve_failures(&g, f);
    rill_failure out[12];
    for (int i = 0; i < 12; i++) out[i] = (rill_failure){-7, -7};
    expect_eq(rill_group_errors(&g, out, 12), 12);
    for (int i = 0; i < 8; i++) expect_failure(out[i], i + 1, codes[i + 1]);
    for (int i = 8; i < 12; i++) expect_failure(out[i], -7, -7);
    return 0;
}

FIBER_TEST(group, errors_fills_no_more_than_max_entries) {
    rill_group g;
    failer f[12];
    run_twelve_failures(&g, f);
    rill_failure out[4];
    for (int i = 0; i < 4; i++) out[i] = (rill_failure){-7, -7};
    expect_eq(rill_group_errors(&g, out, 3), 12);
    for (int i = 0; i < 3; i++) expect_failure(out[i], i + 1, codes[i + 1]);
    expect_failure(out[3], -7, -7);
    expect_eq(rill_group_errors(&g, NULL, 0), 12);
    return 0;
}

FIBER_TEST(group, errors_rejects_a_null_group_a_negative_max_and_a_null_out) {
    rill_group g;
    failer f[12];
    run_twelve_failures(&g, f);
    rill_failure out = {-7, -7};
    expect_eq(rill_group_errors(NULL, &out, 1), -EINVAL);
    expect_eq(rill_group_errors(NULL, NULL, 0), -EINVAL);
    expect_eq(rill_group_errors(&g, &out, -1), -EINVAL);
    expect_eq(rill_group_errors(&g, NULL, 1), -EINVAL);
    expect_failure(out, -7, -7);
    expect_eq(rill_group_errors(&g, &out, 1), 12);
    expect_failure(out, 1, codes[1]);
    return 0;
}

/* ---- the waiter cancelled --------------------------------------------------- */

typedef struct waiter {
    int flags;         /* for rill_gather */
    child c[3];
    int statuses[3];
    int rc;
    int ended_at_return;
} waiter;

static int group_waiter_run(void *arg) {
    waiter *w = arg;
    rill_group g;
    rill_group_init(&g);
    for (int i = 0; i < 3; i++) {
        w->c[i] = (child){.sleep = RILL_FOREVER, .cleanup = 0.01 * (i + 1)};
        if (rill_group_spawn(&g, child_run, &w->c[i]) < 0) return -EFAULT;
    }
    w->rc = rill_group_wait(&g);
    w->ended_at_return = count_ended(w->c, 3);
    return w->rc;
}

FIBER_TEST(group, a_cancelled_waiter_cancels_the_children_and_still_waits_for_them) {
    waiter w = {.rc = 1};
    rill_task *t = rill_spawn(group_waiter_run, &w);
    cr_assert_not_null(t);
    expect_eq(rill_sleep(0.01), 0);
    expect_eq(w.rc, 1); /* still waiting */
    expect_eq(rill_cancel(t), 1);
    expect_eq(rill_join(t), -ECANCELED);
    expect_eq(w.ended_at_return, 3);
    for (int i = 0; i < 3; i++) {
        expect_eq(w.c[i].sleep_rc, -ECANCELED);
        expect_eq(w.c[i].cleaned, true);
        expect_eq(w.c[i].cleanup_rc, 0);
    }
    return 0;
}

FIBER_TEST(group, a_deadline_around_the_wait_cancels_the_children) {
    rill_group g;
    rill_group_init(&g);
    child c[3] = {{.sleep = 0.001}, {.sleep = RILL_FOREVER, .cleanup = 0.01},
                  {.sleep = RILL_FOREVER}};
    rill_scope s;
    rill_scope_enter(&s, 0.02);
    for (int i = 0; i < 3; i++) expect_eq(rill_group_spawn(&g, child_run, &c[i]), 0);
    expect_eq(rill_group_wait(&g), -ECANCELED);
    expect_eq(count_ended(c, 3), 3);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    expect_eq(c[0].sleep_rc, 0);
    expect_eq(c[1].sleep_rc, -ECANCELED);
    expect_eq(c[1].cleaned, true);
    expect_eq(c[2].sleep_rc, -ECANCELED);
    expect_eq(rill_group_errors(&g, NULL, 0), 0);
    return 0;
}

FIBER_TEST(group, a_cancelled_waiter_still_counts_failures_of_its_children) {
    rill_group g;
    rill_group_init(&g);
    /* Both children fail once cancelled: they are failures all the same. */
    child c[2] = {{.sleep = RILL_FOREVER, .fail = -EPIPE},
                  {.sleep = RILL_FOREVER, .fail = -EIO}};
    rill_scope s;
    rill_scope_enter(&s, 0.01);
    for (int i = 0; i < 2; i++) expect_eq(rill_group_spawn(&g, child_run, &c[i]), 0);
    expect_eq(rill_group_wait(&g), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    rill_failure f[2];
    expect_eq(rill_group_errors(&g, f, 2), 2);
    expect_failure(f[0], 0, -EPIPE);
    expect_failure(f[1], 1, -EIO);
    return 0;
}

/* ---- nested groups, inner failure racing an outer cancellation ------------ */

typedef struct nested {
    int fail_after;     /* yields before the inner failure */
    failer b1;          /* the inner child that fails */
    child b2;           /* the inner child cancelled by it */
    rill_task *self;
    int inner_rc, inner_nerrors;
    rill_failure inner_first;
    bool ended;
} nested;

static int nested_run(void *arg) {
    nested *p = arg;
    p->self = rill_current();
    rill_group inner;
    rill_group_init(&inner);
    p->b1 = (failer){.yields = p->fail_after, .status = -EIO};
    p->b2 = (child){.sleep = RILL_FOREVER, .cleanup_yields = 2};
    if (rill_group_spawn(&inner, failer_run, &p->b1) < 0) return -EFAULT;
    if (rill_group_spawn(&inner, child_run, &p->b2) < 0) return -EFAULT;
    p->inner_rc = rill_group_wait(&inner);
    p->inner_nerrors = rill_group_errors(&inner, &p->inner_first, 1);
    p->ended = true;
    return p->inner_rc;
}

typedef struct canceller {
    int yields;
    rill_group *group;  /* rill_group_cancel this group, */
    nested *target;     /* or else rill_cancel this task */
    int cancel_rc;
} canceller;

static int canceller_run(void *arg) {
    canceller *k = arg;
    for (int i = 0; i < k->yields; i++) rill_yield_now();
    if (k->group) rill_group_cancel(k->group);
    else if (!k->target->ended) k->cancel_rc = rill_cancel(k->target->self);
    return 0;
}

FIBER_TEST(group, nested_inner_failure_racing_an_outer_cancel_ends_every_child) {
    int outcomes[2] = {0, 0}; /* the inner failure won / the cancellation won */
    for (int mode = 0; mode < 2; mode++) {
        for (int j = 0; j < 8; j++) {
            for (int k = 0; k < 8; k++) {
                rill_group outer;
                rill_group_init(&outer);
                nested p = {.fail_after = k};
                canceller kl = {.yields = j, .group = mode == 0 ? &outer : NULL,
                                .target = &p};
                /* Mode 0 cancels it with the group; mode 1 cancels p alone,
                 * so there it only yields. */
                child bystander = {.sleep = mode == 0 ? RILL_FOREVER : 0};
                expect_eq(rill_group_spawn(&outer, nested_run, &p), 0);
                expect_eq(rill_group_spawn(&outer, canceller_run, &kl), 0);
                expect_eq(rill_group_spawn(&outer, child_run, &bystander), 0);
                int rc = rill_group_wait(&outer);
                cr_assert(p.ended && p.b1.ended && p.b2.ended && bystander.ended,
                          "mode %d j %d k %d: a child outlived the wait", mode, j, k);
                expect_eq(p.b2.sleep_rc, -ECANCELED);
                expect_eq(p.b2.cleaned, true);
                /* The inner failure is recorded whoever won. */
                expect_eq(p.inner_nerrors, 1);
                expect_failure(p.inner_first, 0, -EIO);
                cr_assert(p.inner_rc == -EIO || p.inner_rc == -ECANCELED,
                          "mode %d j %d k %d: inner wait returned %d", mode, j, k,
                          p.inner_rc);
                bool failed = p.inner_rc == -EIO;
                outcomes[!failed]++;
                rill_failure f = {-7, -7};
                /* p ended by the cancellation (-ECANCELED) is no failure. */
                expect_eq(rc, failed ? -EIO : 0);
                expect_eq(rill_group_errors(&outer, &f, 1), failed);
                if (failed) expect_failure(f, 0, -EIO);
                if (mode == 0) expect_eq(bystander.sleep_rc, -ECANCELED);
                if (mode == 1 && !failed) expect_eq(kl.cancel_rc, 1);
            }
        }
    }
    cr_assert(outcomes[0] > 0 && outcomes[1] > 0,
              "the sweep never raced both ways (%d failures won, %d cancels won)",
              outcomes[0], outcomes[1]);
    return 0;
}

/* ---- misuse ------------------------------------------------------------------ */

FIBER_TEST(group, spawning_after_wait_is_rejected) {
    rill_group g;
    rill_group_init(&g);
    child c = {.sleep = 0}, late = {.sleep = 0};
    expect_eq(rill_group_spawn(&g, child_run, &c), 0);
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(rill_group_spawn(&g, child_run, &late), -EINVAL);
    expect_eq(rill_group_spawn_opts(&g, child_run, &late, &(rill_opts){.name = "x"}),
              -EINVAL);
    expect_eq(rill_sleep(0.002), 0);
    expect_eq(late.started, false);
    return 0;
}

FIBER_TEST(group, waiting_twice_is_rejected) {
    rill_group g;
    rill_group_init(&g);
    child c = {.sleep = 0.001};
    expect_eq(rill_group_spawn(&g, child_run, &c), 0);
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(rill_group_wait(&g), -EINVAL);
    return 0;
}

FIBER_TEST(group, null_group_or_function_is_rejected) {
    rill_group g;
    rill_group_init(&g);
    child c = {.sleep = 0};
    expect_eq(rill_group_spawn(NULL, child_run, &c), -EINVAL);
    expect_eq(rill_group_spawn(&g, NULL, &c), -EINVAL);
    expect_eq(rill_group_spawn_opts(NULL, child_run, &c, NULL), -EINVAL);
    expect_eq(rill_group_spawn_opts(&g, NULL, &c, NULL), -EINVAL);
    expect_eq(rill_group_wait(NULL), -EINVAL);
    errno = 0;
    rill_group_cancel(NULL);
    expect_eq(errno, EINVAL);
    rill_group_init(NULL); /* no effect, no crash */
    /* g is still usable and empty. */
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(c.started, false);
    return 0;
}

/* ---- rill_group_cancel and cancelled groups -------------------------------- */

FIBER_TEST(group, group_cancel_cancels_every_child_without_blocking) {
    rill_group g;
    rill_group_init(&g);
    child c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = (child){.sleep = RILL_FOREVER};
        expect_eq(rill_group_spawn(&g, child_run, &c[i]), 0);
    }
    expect_eq(rill_sleep(0.005), 0);
    rill_group_cancel(&g);
    expect_eq(count_ended(c, 3), 0); /* did not block */
    expect_eq(rill_group_wait(&g), 0);
    for (int i = 0; i < 3; i++) expect_eq(c[i].sleep_rc, -ECANCELED);
    expect_eq(rill_group_errors(&g, NULL, 0), 0);
    return 0;
}

FIBER_TEST(group, a_child_spawned_into_a_cancelled_group_starts_cancelled) {
    rill_group g;
    rill_group_init(&g);
    rill_group_cancel(&g);
    child c = {.sleep = RILL_FOREVER};
    expect_eq(rill_group_spawn(&g, child_run, &c), 0);
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(c.started, true);
    expect_eq(c.sleep_rc, -ECANCELED);
    expect_eq(rill_group_errors(&g, NULL, 0), 0);
    return 0;
}

typedef struct respawner {
    rill_group *g;
    child late;
    int sleep_rc, spawn_rc;
} respawner;

static int respawner_run(void *arg) {
    respawner *r = arg;
    r->sleep_rc = rill_sleep(RILL_FOREVER);
    r->late = (child){.sleep = RILL_FOREVER};
    r->spawn_rc = rill_group_spawn(r->g, child_run, &r->late);
    return r->sleep_rc;
}

FIBER_TEST(group, a_child_spawned_while_the_group_cancels_after_a_failure_starts_cancelled) {
    rill_group g;
    rill_group_init(&g);
    respawner r = {.g = &g};
    failer f = {.status = -EIO};
    expect_eq(rill_group_spawn(&g, respawner_run, &r), 0);
    expect_eq(rill_group_spawn(&g, failer_run, &f), 0);
    expect_eq(rill_group_wait(&g), -EIO);
    expect_eq(r.sleep_rc, -ECANCELED);
    expect_eq(r.spawn_rc, 0);
    expect_eq(r.late.ended, true);
    expect_eq(r.late.sleep_rc, -ECANCELED);
    rill_failure out;
    expect_eq(rill_group_errors(&g, &out, 1), 1);
    expect_failure(out, 1, -EIO);
    return 0;
}

FIBER_TEST(group, an_empty_group_waits_for_nothing) {
    rill_group g;
    rill_group_init(&g);
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(rill_group_errors(&g, NULL, 0), 0);
    return 0;
}

FIBER_TEST(group, an_empty_group_wait_by_a_cancelled_caller_returns_ecanceled) {
    rill_group g;
    rill_group_init(&g);
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_cancel(&s);
    expect_eq(rill_group_wait(&g), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    expect_eq(rill_group_wait(&g), -EINVAL); /* it was waited for */
    return 0;
}

/* ---- spawning while the parent waits -------------------------------------- */

typedef struct spawner {
    rill_group *g;
    const bool *parent_waiting;
    bool saw_parent_waiting;
    child kids[3];
    int spawn_rc[3];
} spawner;

static int spawner_run(void *arg) {
    spawner *s = arg;
    int rc = rill_sleep(0.005);
    s->saw_parent_waiting = *s->parent_waiting;
    for (int i = 0; i < 3; i++) {
        s->kids[i] = (child){.sleep = 0.005 * (i + 1)};
        s->spawn_rc[i] = rill_group_spawn(s->g, child_run, &s->kids[i]);
    }
    return rc;
}

FIBER_TEST(group, a_child_may_spawn_siblings_while_the_parent_waits) {
    rill_group g;
    rill_group_init(&g);
    bool waiting = false;
    spawner s = {.g = &g, .parent_waiting = &waiting};
    expect_eq(rill_group_spawn(&g, spawner_run, &s), 0);
    waiting = true;
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(s.saw_parent_waiting, true);
    for (int i = 0; i < 3; i++) {
        expect_eq(s.spawn_rc[i], 0);
        expect_eq(s.kids[i].ended, true);
        expect_eq(s.kids[i].sleep_rc, 0);
    }
    return 0;
}

typedef struct chain {
    rill_group *g;
    int left;
    int *ended;
} chain;

static chain links[10];

/* Spawns the next link, then returns at once: the group never empties. */
static int chain_run(void *arg) {
    chain *c = arg;
    if (c->left > 0) {
        chain *next = c + 1;
        *next = (chain){.g = c->g, .left = c->left - 1, .ended = c->ended};
        if (rill_group_spawn(c->g, chain_run, next) < 0) return -EFAULT;
    }
    ++*c->ended;
    return 0;
}

FIBER_TEST(group, a_chain_of_children_each_spawning_the_next_is_waited_for_to_its_end) {
    rill_group g;
    rill_group_init(&g);
    int ended = 0;
    links[0] = (chain){.g = &g, .left = 9, .ended = &ended};
    expect_eq(rill_group_spawn(&g, chain_run, &links[0]), 0);
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(ended, 10);
    return 0;
}

/* A task outside the group spawns into it in the window between the last
 * child's end and the waiter resuming.  Either the spawn is refused or the
 * wait covers the new child: a child never outlives the wait.  The group is
 * static so that a failure here cannot corrupt a dead stack frame. */
static rill_group race_group;
typedef struct outsider {
    const child *first;
    child late;
    int spawn_rc;
} outsider;

static int outsider_run(void *arg) {
    outsider *o = arg;
    while (!o->first->ended)
        if (rill_yield_now() < 0) return -ECANCELED;
    o->late = (child){.sleep = 0.005};
    o->spawn_rc = rill_group_spawn(&race_group, child_run, &o->late);
    return 0;
}

FIBER_TEST(group, a_spawn_racing_with_the_end_of_the_wait_never_outlives_it) {
    rill_group_init(&race_group);
    child first = {.sleep = 0};
    outsider o = {.first = &first, .spawn_rc = 1};
    rill_task *t = rill_spawn(outsider_run, &o);
    cr_assert_not_null(t);
    expect_eq(rill_group_spawn(&race_group, child_run, &first), 0);
    int rc = rill_group_wait(&race_group);
    bool late_ended = o.late.ended;
    expect_eq(rill_join(t), 0);
    cr_assert(o.spawn_rc == 0 || o.spawn_rc == -EINVAL, "spawn returned %d", o.spawn_rc);
    if (o.spawn_rc == 0) {
        cr_assert(late_ended, "a child spawned before the wait returned outlived it");
    } else {
        expect_eq(o.late.started, false);
    }
    expect_eq(rc, 0);
    return 0;
}

/* ---- names and options ------------------------------------------------------ */

typedef struct namer {
    char name[64];
} namer;

static int namer_run(void *arg) {
    namer *n = arg;
    snprintf(n->name, sizeof n->name, "%s", rill_task_name(rill_current()));
    return 0;
}

FIBER_TEST(group, spawn_opts_names_the_child) {
    rill_group g;
    rill_group_init(&g);
    namer n[3] = {{""}, {""}, {""}};
    const char *long_name = "a-name-longer-than-thirty-one-bytes-by-far";
    expect_eq(rill_group_spawn_opts(&g, namer_run, &n[0], &(rill_opts){.name = "worker-7"}), 0);
    expect_eq(rill_group_spawn_opts(&g, namer_run, &n[1], &(rill_opts){.name = long_name}), 0);
    expect_eq(rill_group_spawn_opts(&g, namer_run, &n[2], NULL), 0);
    expect_eq(rill_group_wait(&g), 0);
    cr_assert_str_eq(n[0].name, "worker-7");
    cr_assert(strlen(n[1].name) == 31 && strncmp(n[1].name, long_name, 31) == 0,
              "long name became '%s'", n[1].name);
    cr_assert(strncmp(n[2].name, "task-", 5) == 0, "default name is '%s'", n[2].name);
    return 0;
}

/* Touches 160 KiB of stack: only survives with the bigger stack asked for. */
static int deep_run(void *arg) {
    (void)arg;
    volatile char buf[160 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 512) buf[i] = (char)i;
    int sum = 0;
    for (size_t i = 0; i < sizeof buf; i += 512) sum += buf[i];
    return sum == 12345678 ? -EIO : 0;
}

FIBER_TEST(group, spawn_opts_gives_the_child_the_stack_size_asked_for) {
    rill_group g;
    rill_group_init(&g);
    expect_eq(rill_group_spawn_opts(&g, deep_run, NULL,
                                    &(rill_opts){.stack_size = 512 * 1024}),
              0);
    expect_eq(rill_group_wait(&g), 0);
    return 0;
}

/* ---- outside the runtime ---------------------------------------------------- */

static int never_run(void *arg) {
    (void)arg;
    return 0;
}

Test(group, wait_outside_a_fiber_returns_eperm, .timeout = TEST_TIMEOUT) {
    rill_group g;
    rill_group_init(&g);
    expect_eq(rill_group_wait(&g), -EPERM);
}

Test(group, spawn_outside_a_runtime_returns_eperm, .timeout = TEST_TIMEOUT) {
    rill_group g;
    rill_group_init(&g);
    expect_eq(rill_group_spawn(&g, never_run, NULL), -EPERM);
    expect_eq(rill_group_spawn_opts(&g, never_run, NULL, &(rill_opts){.name = "x"}), -EPERM);
    expect_eq(rill_group_errors(&g, NULL, 0), 0);
}

Test(gather, gather_outside_a_fiber_returns_eperm, .timeout = TEST_TIMEOUT) {
    rill_fn *fns[1] = {never_run};
    int st[1] = {7};
    expect_eq(rill_gather(1, fns, NULL, st, 0), -EPERM);
}

/* ---- rill_gather -------------------------------------------------------------- */

typedef struct square {
    int in, out;
} square;

static int square_run(void *arg) {
    square *s = arg;
    int rc = rill_sleep(0.001 * s->in);
    s->out = s->in * s->in;
    return rc;
}

static int negate_run(void *arg) {
    square *s = arg;
    s->out = -s->in;
    return 0;
}

FIBER_TEST(gather, results_come_back_through_args) {
    square sq[4] = {{3, 0}, {1, 0}, {4, 0}, {2, 0}};
    rill_fn *fns[4] = {square_run, square_run, negate_run, square_run};
    void *args[4] = {&sq[0], &sq[1], &sq[2], &sq[3]};
    int st[4] = {7, 7, 7, 7};
    expect_eq(rill_gather(4, fns, args, st, 0), 0);
    expect_eq(sq[0].out, 9);
    expect_eq(sq[1].out, 1);
    expect_eq(sq[2].out, -4);
    expect_eq(sq[3].out, 4);
    for (int i = 0; i < 4; i++) expect_eq(st[i], 0);
    return 0;
}

FIBER_TEST(gather, fails_fast_and_reports_every_status) {
    child c[4] = {{.sleep = 0}, {.sleep = 0.01, .fail = -EIO},
                  {.sleep = RILL_FOREVER}, {.sleep = RILL_FOREVER, .cleanup = 0.01}};
    rill_fn *fns[4] = {child_run, child_run, child_run, child_run};
    void *args[4] = {&c[0], &c[1], &c[2], &c[3]};
    int st[4] = {7, 7, 7, 7};
    expect_eq(rill_gather(4, fns, args, st, 0), -EIO);
    expect_eq(count_ended(c, 4), 4);
    expect_eq(c[3].cleaned, true);
    expect_eq(st[0], 0);
    expect_eq(st[1], -EIO);
    expect_eq(st[2], -ECANCELED);
    expect_eq(st[3], -ECANCELED);
    return 0;
}

FIBER_TEST(gather, fail_fast_returns_the_first_failure_not_the_lowest_index) {
    child c[2] = {{.sleep = RILL_FOREVER, .fail = -EPIPE}, {.sleep = 0.005, .fail = -EIO}};
    rill_fn *fns[2] = {child_run, child_run};
    void *args[2] = {&c[0], &c[1]};
    int st[2] = {7, 7};
    expect_eq(rill_gather(2, fns, args, st, 0), -EIO);
    expect_eq(c[0].sleep_rc, -ECANCELED);
    expect_eq(st[0], -EPIPE);
    expect_eq(st[1], -EIO);
    return 0;
}

FIBER_TEST(gather, return_errors_runs_every_task_to_its_end) {
    failer f = {.status = -EIO};
    child c[3] = {{.sleep = 0.02}, {.sleep = 0.01, .fail = -ENOENT}, {.sleep = 0.03}};
    rill_fn *fns[4] = {failer_run, child_run, child_run, child_run};
    void *args[4] = {&f, &c[0], &c[1], &c[2]};
    int st[4] = {7, 7, 7, 7};
    expect_eq(rill_gather(4, fns, args, st, RILL_RETURN_ERRORS), 0);
    for (int i = 0; i < 3; i++) expect_eq(c[i].sleep_rc, 0); /* none cancelled */
    expect_eq(st[0], -EIO);
    expect_eq(st[1], 0);
    expect_eq(st[2], -ENOENT);
    expect_eq(st[3], 0);
    return 0;
}

static int null_arg_calls;

static int expects_null_arg(void *arg) {
    null_arg_calls++;
    int rc = rill_yield_now();
    return arg ? -EFAULT : rc;
}

FIBER_TEST(gather, args_may_be_null) {
    rill_fn *fns[3] = {expects_null_arg, expects_null_arg, expects_null_arg};
    int st[3] = {7, 7, 7};
    null_arg_calls = 0;
    expect_eq(rill_gather(3, fns, NULL, st, 0), 0);
    expect_eq(null_arg_calls, 3);
    for (int i = 0; i < 3; i++) expect_eq(st[i], 0);
    return 0;
}

FIBER_TEST(gather, statuses_may_be_null) {
    child c[3] = {{.sleep = 0.001}, {.sleep = 0.005, .fail = -EIO}, {.sleep = RILL_FOREVER}};
    rill_fn *fns[3] = {child_run, child_run, child_run};
    void *args[3] = {&c[0], &c[1], &c[2]};
    expect_eq(rill_gather(3, fns, args, NULL, 0), -EIO);
    expect_eq(count_ended(c, 3), 3);
    expect_eq(c[2].sleep_rc, -ECANCELED);

    child d[2] = {{.sleep = 0.001, .fail = -EIO}, {.sleep = 0.005}};
    void *dargs[2] = {&d[0], &d[1]};
    expect_eq(rill_gather(2, fns, dargs, NULL, RILL_RETURN_ERRORS), 0);
    expect_eq(count_ended(d, 2), 2);
    expect_eq(d[1].sleep_rc, 0);
    return 0;
}

FIBER_TEST(gather, no_tasks_returns_zero) {
    expect_eq(rill_gather(0, NULL, NULL, NULL, 0), 0);
    expect_eq(rill_gather(0, NULL, NULL, NULL, RILL_RETURN_ERRORS), 0);
    rill_fn *fns[1] = {never_run};
    int st[1] = {7};
    expect_eq(rill_gather(0, fns, NULL, st, 0), 0);
    expect_eq(st[0], 7);
    return 0;
}

FIBER_TEST(gather, invalid_arguments_are_rejected_and_run_nothing) {
    child c[2] = {{.sleep = 0}, {.sleep = 0}};
    rill_fn *fns[2] = {child_run, child_run};
    rill_fn *holey[2] = {child_run, NULL};
    void *args[2] = {&c[0], &c[1]};
    int st[2];
    expect_eq(rill_gather(-1, fns, args, st, 0), -EINVAL);
    expect_eq(rill_gather(2, NULL, args, st, 0), -EINVAL);
    expect_eq(rill_gather(2, holey, args, st, 0), -EINVAL);
    expect_eq(rill_gather(2, fns, args, st, 2), -EINVAL);
    expect_eq(rill_gather(2, fns, args, st, RILL_RETURN_ERRORS | 0x100), -EINVAL);
    expect_eq(rill_gather(2, fns, args, st, -1), -EINVAL);
    expect_eq(rill_sleep(0.002), 0);
    expect_eq(c[0].started, false);
    expect_eq(c[1].started, false);
    return 0;
}

static int gather_waiter_run(void *arg) {
    waiter *w = arg;
    rill_fn *fns[3] = {child_run, child_run, child_run};
    void *args[3];
    for (int i = 0; i < 3; i++) {
        w->c[i] = (child){.sleep = RILL_FOREVER, .cleanup = 0.01 * (i + 1)};
        args[i] = &w->c[i];
        w->statuses[i] = 7;
    }
    w->rc = rill_gather(3, fns, args, w->statuses, w->flags);
    w->ended_at_return = count_ended(w->c, 3);
    return w->rc;
}

static void check_cancelled_gather(int flags) {
    waiter w = {.flags = flags, .rc = 1};
    rill_task *t = rill_spawn(gather_waiter_run, &w);
    cr_assert_not_null(t);
    expect_eq(rill_sleep(0.01), 0);
    expect_eq(w.rc, 1); /* still gathering */
    expect_eq(rill_cancel(t), 1);
    expect_eq(rill_join(t), -ECANCELED);
    expect_eq(w.ended_at_return, 3);
    for (int i = 0; i < 3; i++) {
        expect_eq(w.c[i].cleaned, true);
        expect_eq(w.statuses[i], -ECANCELED);
    }
}

FIBER_TEST(gather, a_cancelled_caller_cancels_every_task_and_waits_for_them) {
    check_cancelled_gather(0);
    return 0;
}

FIBER_TEST(gather, a_cancelled_caller_cancels_every_task_even_with_return_errors) {
    check_cancelled_gather(RILL_RETURN_ERRORS);
    return 0;
}

FIBER_TEST(gather, a_deadline_around_gather_cancels_every_task) {
    child c[2] = {{.sleep = RILL_FOREVER}, {.sleep = 0.001}};
    rill_fn *fns[2] = {child_run, child_run};
    void *args[2] = {&c[0], &c[1]};
    int st[2] = {7, 7};
    rill_scope s;
    /* Long enough for the 1 ms child to end first even under valgrind. */
    rill_scope_enter(&s, 0.2);
    expect_eq(rill_gather(2, fns, args, st, 0), -ECANCELED);
    expect_eq(count_ended(c, 2), 2);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    expect_eq(st[0], -ECANCELED);
    expect_eq(st[1], 0);
    return 0;
}

FIBER_TEST(gather, an_already_cancelled_caller_gets_ecanceled_and_leaves_no_task) {
    child c[2] = {{.sleep = RILL_FOREVER}, {.sleep = 0.001}};
    rill_fn *fns[2] = {child_run, child_run};
    void *args[2] = {&c[0], &c[1]};
    int st[2] = {7, 7};
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_cancel(&s);
    expect_eq(rill_gather(2, fns, args, st, 0), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    for (int i = 0; i < 2; i++) {
        expect_eq(c[i].started, c[i].ended); /* none left running */
        expect_eq(st[i], -ECANCELED);
    }
    return 0;
}

/* ---- stress -------------------------------------------------------------------- */

#define MANY 1000

typedef struct random_child {
    int status;     /* < 0: fails with it, whatever happens */
    int yields;     /* before failing / before succeeding */
    double sleep;   /* non-failing ones: then sleep this long */
    bool ended;
} random_child;

static int random_child_run(void *arg) {
    random_child *r = arg;
    int rc = 0;
    for (int i = 0; i < r->yields && rc == 0; i++) rc = rill_yield_now();
    if (r->status < 0) {
        r->ended = true;
        return r->status;
    }
    if (rc == 0) rc = rill_sleep(r->sleep);
    r->ended = true;
    return rc;
}

static random_child many[MANY];

static int make_random_children(unsigned seed) {
    srand(seed);
    int nfail = 0;
    for (int i = 0; i < MANY; i++) {
        bool fail = rand() % 10 == 0;
        many[i] = (random_child){
            .status = fail ? codes[rand() % 12] : 0,
            .yields = rand() % 4,
            .sleep = (rand() % 3) * 0.001,
        };
        nfail += fail;
    }
    return nfail;
}

FIBER_TEST(group, a_thousand_children_with_random_failures_are_counted_exactly) {
    int nfail = make_random_children(20240601);
    cr_assert(nfail > RILL__GROUP_KEEP, "seed gave only %d failures", nfail);
    rill_group g;
    rill_group_init(&g);
    for (int i = 0; i < MANY; i++) expect_eq(rill_group_spawn(&g, random_child_run, &many[i]), 0);
    int rc = rill_group_wait(&g);
    for (int i = 0; i < MANY; i++) cr_assert(many[i].ended, "child %d outlived the wait", i);
    rill_failure f[8];
    expect_eq(rill_group_errors(&g, f, 8), nfail);
    expect_eq(rc, f[0].status);
    for (int i = 0; i < 8; i++) {
        cr_assert(f[i].index >= 0 && f[i].index < MANY, "failure %d has index %d", i,
                  f[i].index);
        expect_eq(f[i].status, many[f[i].index].status);
        for (int j = 0; j < i; j++)
            cr_assert(f[j].index != f[i].index, "index %d kept twice", f[i].index);
    }
    return 0;
}

FIBER_TEST(gather, return_errors_reports_each_status_of_a_thousand_tasks) {
    int nfail = make_random_children(7);
    static rill_fn *fns[MANY];
    static void *args[MANY];
    static int st[MANY];
    for (int i = 0; i < MANY; i++) {
        fns[i] = random_child_run;
        args[i] = &many[i];
        st[i] = 7;
    }
    expect_eq(rill_gather(MANY, fns, args, st, RILL_RETURN_ERRORS), 0);
    int seen = 0;
    for (int i = 0; i < MANY; i++) {
        cr_assert(many[i].ended, "task %d outlived gather", i);
        cr_assert(st[i] == many[i].status, "statuses[%d] is %d, expected %d", i, st[i],
                  many[i].status);
        seen += st[i] < 0;
    }
    expect_eq(seen, nfail);
    return 0;
}

/* ---- regressions and the body's scope ------------------------------------------ */

static rill_group *selfwait_group;

static int waits_for_its_own_group(void *arg) {
    (void)arg;
    return rill_group_wait(selfwait_group);
}

FIBER_TEST(group, a_child_waiting_for_its_own_group_gets_edeadlk) {
    rill_group g;
    rill_group_init(&g);
    selfwait_group = &g;
    expect_eq(rill_group_spawn(&g, waits_for_its_own_group, NULL), 0);
    expect_eq(rill_group_wait(&g), -EDEADLK); /* the child's status */
    return 0;
}

typedef struct body_probe {
    int body_sleep_rc;
    double took;
} body_probe;

FIBER_TEST(group, a_child_failure_cancels_the_body_too) {
    /* asyncio's TaskGroup cancels the parent, Trio's nursery its body: the
     * code between init and wait stops at its next blocking call. */
    rill_group g;
    rill_group_init(&g);
    child c = {.sleep = 0.01, .fail = -EIO};
    expect_eq(rill_group_spawn(&g, child_run, &c), 0);
    double t0 = rill_now();
    expect_eq(rill_sleep(10), -ECANCELED);
    cr_expect(rill_now() - t0 < 5.0);
    expect_eq(rill_group_wait(&g), -EIO); /* the failure, not -ECANCELED */
    expect_eq(rill_yield_now(), 0);        /* and the body's cancel is over */
    return 0;
}

FIBER_TEST(group, group_cancel_cancels_the_body_and_wait_then_returns_zero) {
    rill_group g;
    rill_group_init(&g);
    child c = {.sleep = RILL_FOREVER};
    expect_eq(rill_group_spawn(&g, child_run, &c), 0);
    rill_group_cancel(&g);
    expect_eq(rill_yield_now(), -ECANCELED);
    expect_eq(rill_group_wait(&g), 0); /* as a Trio nursery whose scope was cancelled */
    expect_eq(c.sleep_rc, -ECANCELED);
    expect_eq(rill_yield_now(), 0);
    return 0;
}

FIBER_TEST(group, an_outer_cancel_still_ends_the_wait_with_ecanceled) {
    rill_scope s;
    rill_scope_enter(&s, 0.01);
    rill_group g;
    rill_group_init(&g);
    child c = {.sleep = RILL_FOREVER};
    expect_eq(rill_group_spawn(&g, child_run, &c), 0);
    expect_eq(rill_group_wait(&g), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    return 0;
}

FIBER_TEST(group, scopes_the_body_left_open_stay_open_after_the_wait) {
    rill_group g;
    rill_group_init(&g);
    rill_scope inner;
    rill_scope_enter(&inner, RILL_FOREVER);
    child c = {.sleep = 0.001};
    expect_eq(rill_group_spawn(&g, child_run, &c), 0);
    expect_eq(rill_group_wait(&g), 0);
    rill_scope_cancel(&inner);
    expect_eq(rill_yield_now(), -ECANCELED);
    expect_eq(rill_scope_exit(&inner), -ECANCELED);
    expect_eq(rill_yield_now(), 0);
    return 0;
}

static int returns_without_waiting(void *arg) {
    (void)arg;
    rill_group g;
    rill_group_init(&g);
    static child c = {.sleep = 0.05};
    rill_group_spawn(&g, child_run, &c);
    return 0; /* the child would write into this dead frame when it ends */
}

static int spawns_a_careless_task(void *arg) {
    return rill_join(rill_spawn_opts(returns_without_waiting, NULL, &(rill_opts){.name = arg}));
}

Test(group, a_task_returning_before_waiting_for_its_group_aborts_with_a_message,
     .timeout = TEST_TIMEOUT) {
    char err[4096];
    char name[] = "careless";
    int status = run_child(spawns_a_careless_task, name, NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "child status %#x, stderr: %s", status, err);
    cr_expect(strstr(err, "rill: task 'careless' returned while a task group on its stack "
                          "still had children running"),
              "stderr: %s", err);
}

/* ---- a deadlock that persists ---------------------------------------------------- */

/* Blocks again after each -EDEADLK, deaf to the cancellation its group sends. */
static int blocks_again_shielded(void *arg) {
    (void)arg;
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_shield(&s, true);
    while (rill_sleep(RILL_FOREVER) == -EDEADLK) {
    }
    rill_scope_exit(&s);
    return 0;
}

static int waits_for_stubborn_children(void *arg) {
    (void)arg;
    rill_group g;
    rill_group_init(&g);
    rill_group_spawn(&g, blocks_again_shielded, NULL);
    rill_group_spawn(&g, blocks_again_shielded, NULL);
    return rill_group_wait(&g);
}

static int spawns_the_owner_on_a_stack_of_its_own_size(void *arg) {
    (void)arg;
    /* Not the default size: the stack is unmapped as soon as it is released. */
    rill_task *t = rill_spawn_opts(waits_for_stubborn_children, NULL,
                                   &(rill_opts){.stack_size = 1u << 20});
    return rill_join(t);
}

Test(group, children_abandoned_after_their_group_owner_leave_its_stack_alone,
     .init = cr_redirect_stderr, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(spawns_the_owner_on_a_stack_of_its_own_size, NULL), -EDEADLK);
}
