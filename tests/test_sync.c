/* Event, semaphore, mutex, condition (rill.h "Synchronisation"): FIFO hand-offs and the
 * no-effect rule for cancelled waits. */
#include <limits.h>

#include "helpers.h"

typedef struct log {
    int order[64];
    int n;
} log_t;

/* ---- event --------------------------------------------------------------------- */

typedef struct ev_arg {
    rill_event *e;
    log_t *log;
    int id, rc;
} ev_arg;

static int waits_for_event(void *arg) {
    ev_arg *a = arg;
    a->rc = rill_event_wait(a->e);
    a->log->order[a->log->n++] = a->id;
    return 0;
}

FIBER_TEST(sync, event_set_wakes_every_waiter_and_later_waits_pass) {
    rill_event e;
    rill_event_init(&e);
    log_t log = {0};
    ev_arg a[3];
    rill_task *t[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (ev_arg){&e, &log, i, 1};
        t[i] = rill_spawn(waits_for_event, &a[i]);
    }
    expect_eq(rill_yield_now(), 0);
    expect_eq(log.n, 0);
    cr_expect(!rill_event_is_set(&e));
    rill_event_set(&e);
    for (int i = 0; i < 3; i++) expect_eq(rill_join(t[i]), 0);
    for (int i = 0; i < 3; i++) {
        expect_eq(log.order[i], i); /* FIFO */
        expect_eq(a[i].rc, 0);
    }
    expect_eq(rill_event_wait(&e), 0);
    rill_event_clear(&e);
    rill_scope s;
    rill_scope_enter(&s, 0.01);
    expect_eq(rill_event_wait(&e), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    return 0;
}

/* ---- semaphore --------------------------------------------------------------------- */

typedef struct sem_arg {
    rill_sem *s;
    int *inside, *peak;
    int rc;
} sem_arg;

static int holds_a_permit(void *arg) {
    sem_arg *a = arg;
    if ((a->rc = rill_sem_acquire(a->s)) < 0) return 0;
    if (++*a->inside > *a->peak) *a->peak = *a->inside;
    rill_sleep(0.002);
    --*a->inside;
    rill_sem_release(a->s);
    return 0;
}

FIBER_TEST(sync, semaphore_bounds_concurrency_and_cancelled_acquires_hold_nothing) {
    rill_sem s;
    rill_sem_init(&s, 3);
    int inside = 0, peak = 0;
    enum { N = 40 };
    sem_arg a[N];
    rill_task *t[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        a[i] = (sem_arg){&s, &inside, &peak, 1};
        t[i] = rill_spawn(holds_a_permit, &a[i]);
    }
    for (int i = 0; i < N; i++)
        if (rand() % 3 == 0) rill_cancel(t[i]);
    int cancelled = 0;
    for (int i = 0; i < N; i++) {
        rill_join(t[i]);
        cancelled += a[i].rc == -ECANCELED;
    }
    cr_expect(peak <= 3, "peak %d", peak);
    cr_expect(cancelled > 0);
    /* Nothing leaked: all 3 permits are back. */
    for (int i = 0; i < 3; i++) cr_expect(rill_sem_try_acquire(&s));
    cr_expect(!rill_sem_try_acquire(&s));
    return 0;
}

static int acquires(void *arg) { return rill_sem_acquire(arg); }

FIBER_TEST(sync, a_released_permit_goes_to_the_waiter_even_if_it_is_then_cancelled) {
    rill_sem s;
    rill_sem_init(&s, 0);
    rill_task *t = rill_spawn(acquires, &s);
    expect_eq(rill_yield_now(), 0); /* t waits */
    rill_sem_release(&s);           /* handed to t */
    rill_cancel(t);                 /* too late: it keeps the permit */
    expect_eq(rill_join(t), 0);
    cr_expect(!rill_sem_try_acquire(&s)); /* the permit is t's, not free */
    return 0;
}

/* ---- mutex -------------------------------------------------------------------------- */

typedef struct mx_arg {
    rill_mutex *m;
    log_t *log;
    int id;
} mx_arg;

static int locks_and_logs(void *arg) {
    mx_arg *a = arg;
    int rc = rill_mutex_lock(a->m);
    if (rc) return rc;
    a->log->order[a->log->n++] = a->id;
    rill_yield_now();
    rill_mutex_unlock(a->m);
    return 0;
}

Test(sync, a_release_at_uint_max_is_refused_and_the_count_never_wraps,
     .timeout = TEST_TIMEOUT) {
    rill_sem s;
    rill_sem_init(&s, UINT_MAX);
    errno = 0;
    rill_sem_release(&s);
    expect_eq(errno, EOVERFLOW);
    cr_assert(rill_sem_try_acquire(&s), "the count wrapped to 0");
    errno = 0;
    rill_sem_release(&s); /* back to UINT_MAX: allowed */
    expect_eq(errno, 0);
    rill_sem_release(&s);
    expect_eq(errno, EOVERFLOW);
    for (int i = 0; i < 3; i++) cr_assert(rill_sem_try_acquire(&s));
}

FIBER_TEST(sync, mutex_is_handed_over_in_fifo_order) {
    rill_mutex m;
    rill_mutex_init(&m);
    expect_eq(rill_mutex_lock(&m), 0);
    expect_eq(rill_mutex_lock(&m), -EDEADLK);
    log_t log = {0};
    mx_arg a[5];
    rill_task *t[5];
    for (int i = 0; i < 5; i++) {
        a[i] = (mx_arg){&m, &log, i};
        t[i] = rill_spawn(locks_and_logs, &a[i]);
    }
    expect_eq(rill_yield_now(), 0);
    rill_mutex_unlock(&m);
    for (int i = 0; i < 5; i++) expect_eq(rill_join(t[i]), 0);
    for (int i = 0; i < 5; i++) expect_eq(log.order[i], i);
    errno = 0;
    rill_mutex_unlock(&m); /* not held */
    expect_eq(errno, EPERM);
    return 0;
}

/* ---- condition ------------------------------------------------------------------------ */

typedef struct cv_arg {
    rill_mutex *m;
    rill_cond *c;
    int *ready, *woken;
    int rc;
    bool held_after;
} cv_arg;

static int waits_for_ready(void *arg) {
    cv_arg *a = arg;
    rill_mutex_lock(a->m);
    while (!*a->ready && (a->rc = rill_cond_wait(a->c, a->m)) == 0) {
    }
    a->held_after = true;
    if (a->rc == 0) ++*a->woken;
    rill_mutex_unlock(a->m);
    return 0;
}

FIBER_TEST(sync, condition_broadcast_wakes_all_and_the_mutex_is_held_again) {
    rill_mutex m;
    rill_cond c;
    rill_mutex_init(&m);
    rill_cond_init(&c);
    int ready = 0, woken = 0;
    cv_arg a[4];
    rill_task *t[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (cv_arg){&m, &c, &ready, &woken, 0, false};
        t[i] = rill_spawn(waits_for_ready, &a[i]);
    }
    expect_eq(rill_yield_now(), 0);
    rill_cancel(t[3]); /* cancelled in its wait: returns holding m */
    rill_mutex_lock(&m);
    ready = 1;
    rill_cond_broadcast(&c);
    rill_mutex_unlock(&m);
    for (int i = 0; i < 4; i++) expect_eq(rill_join(t[i]), 0);
    expect_eq(woken, 3);
    expect_eq(a[3].rc, -ECANCELED);
    for (int i = 0; i < 4; i++) cr_expect(a[i].held_after);
    expect_eq(rill_cond_wait(&c, &m), -EPERM); /* m not held */
    return 0;
}

typedef struct relock_arg {
    rill_mutex *m;
    rill_cond *c;
    int rc, unlock_errno;
} relock_arg;

static int waits_then_unlocks(void *arg) {
    relock_arg *a = arg;
    rill_mutex_lock(a->m);
    a->rc = rill_cond_wait(a->c, a->m);
    errno = 0;
    rill_mutex_unlock(a->m); /* EPERM unless the wait returned holding m */
    a->unlock_errno = errno;
    return 0;
}

FIBER_TEST(sync, a_relock_cancelled_again_still_returns_holding_the_mutex) {
    rill_mutex m;
    rill_cond c;
    rill_mutex_init(&m);
    rill_cond_init(&c);
    relock_arg a = {&m, &c, 0, -1};
    rill_task *t = rill_spawn(waits_then_unlocks, &a);
    expect_eq(rill_yield_now(), 0); /* t waits on c, m is free */
    expect_eq(rill_mutex_lock(&m), 0);
    rill_cancel(t);                 /* t leaves c and waits to relock m */
    expect_eq(rill_yield_now(), 0);
    rill_cancel(t);                 /* the relock sits this one out too */
    expect_eq(rill_yield_now(), 0);
    rill_mutex_unlock(&m);          /* hands m to t */
    expect_eq(rill_join(t), 0);
    expect_eq(a.rc, -ECANCELED);
    expect_eq(a.unlock_errno, 0);
    return 0;
}

Test(sync, misuse_returns_errors, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_event_wait(NULL), -EINVAL);
    expect_eq(rill_sem_acquire(NULL), -EINVAL);
    expect_eq(rill_mutex_lock(NULL), -EINVAL);
    expect_eq(rill_cond_wait(NULL, NULL), -EINVAL);
    cr_expect(!rill_event_is_set(NULL));
    cr_expect(!rill_sem_try_acquire(NULL));
    rill_event e;
    rill_event_init(&e);
    expect_eq(rill_event_wait(&e), -EPERM); /* outside a fiber, would block */
    rill_event_set(&e);
    expect_eq(rill_event_wait(&e), 0);
}
