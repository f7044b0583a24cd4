/*
 * Cancel scopes.  A scope is a link in its fiber's chain (innermost first);
 * rill__fiber_cancelled() walks that chain up to the first shield.  Changing
 * a scope (cancel, deadline, unshield) re-checks the one fiber that can be
 * affected, the scope's owner, and interrupts it if it is blocked.
 */
#include "internal.h"

#define SCOPE_OPEN 0x5c09e0e1u
#define SCOPE_EXITED 0x5c09e0e0u

bool rill__scope_is_cancelled(const rill_scope *s) {
    return s->cancel_called || s->deadline_fired;
}

static void deadline_fired(rill__timer *t) {
    rill_scope *s = rill__container_of(t, rill_scope, timer);
    s->deadline_fired = 1;
    rill__recheck(s->fiber);
}

static void set_deadline(rill_scope *s, double deadline) {
    s->deadline = deadline;
    rill__timer_disarm(&s->timer);
    if (s->deadline_fired || deadline >= INFINITY) return;
    if (deadline <= rill_now()) {
        s->deadline_fired = 1;
        rill__recheck(s->fiber);
        return;
    }
    rill__timer_arm(&s->timer, deadline, deadline_fired);
}

void rill__scope_open(rill_scope *s, rill__fiber *f, double deadline) {
    s->parent = f->scope;
    s->fiber = f;
    s->magic = SCOPE_OPEN;
    s->cancel_called = s->deadline_fired = s->shield = 0;
    s->timer.slot = 0;
    f->scope = s;
    set_deadline(s, deadline);
}

void rill_scope_enter_at(rill_scope *s, double deadline) {
    rill__rt *rt = rill__self;
    if (!s || isnan(deadline)) {
        errno = EINVAL;
        return;
    }
    if (!rt || rt->current == &rt->host) {
        errno = EPERM;
        return;
    }
    rill__scope_open(s, rt->current, deadline);
}

void rill_scope_enter(rill_scope *s, double timeout) {
    if (isnan(timeout)) {
        errno = EINVAL;
        return;
    }
    rill_scope_enter_at(s, timeout >= INFINITY ? INFINITY : rill_now() + timeout);
}

static bool is_open(const rill_scope *s) {
    if (s && s->magic == SCOPE_OPEN) return true;
    errno = EINVAL;
    return false;
}

void rill_scope_reschedule(rill_scope *s, double deadline) {
    if (!is_open(s) || isnan(deadline)) {
        errno = EINVAL;
        return;
    }
    set_deadline(s, deadline);
}

void rill_scope_shield(rill_scope *s, bool on) {
    if (!is_open(s)) return;
    s->shield = on;
    if (!on) rill__recheck(s->fiber);
}

void rill_scope_cancel(rill_scope *s) {
    if (!is_open(s)) return;
    s->cancel_called = 1;
    rill__recheck(s->fiber);
}

int rill_scope_exit(rill_scope *s) {
    rill__rt *rt = rill__self;
    if (!rt || rt->current == &rt->host) return -EPERM;
    if (!s || s->magic != SCOPE_OPEN || rt->current->scope != s) return -EINVAL;
    rill__timer_disarm(&s->timer);
    rt->current->scope = s->parent;
    s->magic = SCOPE_EXITED;
    if (s->cancel_called) return -ECANCELED;
    if (s->deadline_fired) return -ETIMEDOUT;
    return 0;
}
