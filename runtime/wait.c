/*
 * Wait lists (FIFO queues of waiters, the building block of every
 * primitive), and the primitive waits built directly on the scheduler:
 * yield and sleep.
 */
#include "internal.h"

void rill__wait_unlink(rill__waiter *w) { rill__list_remove(&w->node); }

int rill__wait_deaf(rill__list *q, rill__waiter *w, const char *what, const char *on) {
    if (q) {
        rill__wait_add(q, w, what, on, true);
    } else {
        w->what = what;
        w->on = on;
        w->uncancellable = true;
    }
    return rill__sched_block(w);
}

bool rill__wait_wake_one(rill__list *q, int result) {
    rill__list *n = rill__list_pop(q);
    if (!n) return false;
    rill__sched_wake(rill__container_of(n, rill__waiter, node), result);
    return true;
}

void rill__wait_wake_all(rill__list *q, int result) {
    while (rill__wait_wake_one(q, result)) {
    }
}

/* ---- yield and sleep ------------------------------------------------------ */

/* Yield and sleep are inlined into each public entry, so that the
 * checkpoint judges scopes against the user's own frame. */
RILL__INLINE int yield_now(void) {
    int rc = rill__scope_checkpoint();
    if (rc) return rc;
    rill__rt *rt = rill__self;
    rill__sched_ready(rt->current);
    rill__sched_reschedule();
    return 0;
}

int rill_yield_now(void) { return yield_now(); }

typedef struct sleeper {
    rill__waiter w;
    rill__timer timer;
} sleeper;

static void sleep_fired(rill__timer *t) {
    sleeper *s = rill__container_of(t, sleeper, timer);
    rill__sched_wake(&s->w, 0);
}

static void sleep_unhook(rill__waiter *w) {
    sleeper *s = rill__container_of(w, sleeper, w);
    rill__timer_disarm(&s->timer);
}

/* `past_yields`: rill_sleep_until with a deadline already passed is a
 * checkpoint (Trio); rill_sleep(d > 0) always waits for its timer, as
 * asyncio's sleep does, however long the caller took to get here. */
RILL__INLINE int sleep_until(double deadline, bool past_yields) {
    if (isnan(deadline)) return -EINVAL;
    int rc = rill__scope_checkpoint();
    if (rc) return rc;
    if (past_yields && deadline <= rill_now()) return yield_now();
    sleeper s = {.w = {.unhook = sleep_unhook, .what = "sleep"}};
    /* An infinite sleep arms no timer: only a cancellation can end it. */
    if (deadline < INFINITY && (rc = rill__timer_arm(&s.timer, deadline, sleep_fired)) < 0)
        return rc;
    return rill__sched_block(&s.w);
}

int rill_sleep_until(double deadline) { return sleep_until(deadline, true); }

int rill_sleep(double seconds) {
    if (isnan(seconds)) return -EINVAL;
    if (seconds <= 0) return yield_now();
    if (seconds >= INFINITY) return sleep_until(INFINITY, false);
    return sleep_until(rill_now() + seconds, false);
}
