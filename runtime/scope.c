/*
 * Cancel scopes.  A scope is a link in its fiber's chain (innermost first);
 * rill__fiber_cancelled() walks that chain up to the first shield.  Changing
 * a scope (cancel, deadline, unshield) re-checks the one fiber that can be
 * affected, the scope's owner, and interrupts it if it is blocked.
 */
#include "internal.h"

#define SCOPE_OPEN 0x5c09e0e1u
#define SCOPE_EXITED 0x5c09e0e0u

typedef struct dropping {
    const rill__fiber *f;
} dropping;

static void deadline_fired(rill__timer *t);

static bool owned_by(rill__timer *t, void *ctx) {
    const rill__fiber *f = ((dropping *)ctx)->f;
    const char *p = (const char *)t;
    if (p >= f->stack->lo && p < f->stack->hi) return true; /* not read: may be garbage */
    if (t->fire != deadline_fired) return false;
    rill_scope *s = rill__container_of(t, rill_scope, timer);
    if (s->fiber != f) return false;
    t->slot = 0;
    s->magic = SCOPE_EXITED;
    return true;
}

void rill__fiber_drop_timers(rill__fiber *f) {
    if (!f->stack) return;
    dropping d = {f};
    rill__timers_disarm_if(owned_by, &d);
}

bool rill__timer_can_wake(rill__timer *t) {
    if (t->fire != deadline_fired) return true;
    return !rill__fiber_is_suspended_gen(rill__container_of(t, rill_scope, timer)->fiber);
}

void rill__scope_expire(rill_scope *s) {
    rill__timer_disarm(&s->timer);
    s->deadline_fired = 1;
}

static void deadline_fired(rill__timer *t) {
    rill_scope *s = rill__container_of(t, rill_scope, timer);
    rill__scope_expire(s);
    rill__recheck(s->fiber);
}

/* `now` may be passed in by a caller that just read the clock. */
static void set_deadline(rill_scope *s, double deadline, double now) {
    s->deadline = deadline;
    rill__timer_disarm(&s->timer);
    if (s->deadline_fired || deadline >= INFINITY) return;
    if (deadline <= (isnan(now) ? rill_now() : now)) {
        s->deadline_fired = 1;
        rill__recheck(s->fiber);
        return;
    }
    rill__timer_arm(&s->timer, deadline, deadline_fired);
}

static void scope_open(rill_scope *s, rill__fiber *f, double deadline, double now) {
    s->parent = f->scope;
    s->fiber = f;
    s->magic = SCOPE_OPEN;
    s->cancel_called = s->deadline_fired = s->shield = 0;
    s->timer.slot = 0;
    f->scope = s;
    set_deadline(s, deadline, now);
}

void rill__scope_open(rill_scope *s, rill__fiber *f, double deadline) {
    scope_open(s, f, deadline, NAN);
}

static bool enter_allowed(const rill_scope *s, double t) {
    rill__rt *rt = rill__self;
    if (!s || isnan(t)) {
        errno = EINVAL;
        return false;
    }
    if (!rt || rt->current == &rt->host) {
        errno = EPERM;
        return false;
    }
    /* Entering a scope that is already open would link it to itself.  (Only
     * addresses are compared: s itself is usually uninitialised here.) */
    for (const rill_scope *p = rt->current->scope; p; p = p->parent)
        if (p == s) {
            errno = EINVAL;
            return false;
        }
    return true;
}

void rill_scope_enter_at(rill_scope *s, double deadline) {
    if (enter_allowed(s, deadline)) scope_open(s, rill__self->current, deadline, NAN);
}

void rill_scope_enter(rill_scope *s, double timeout) {
    if (!enter_allowed(s, timeout)) return;
    if (timeout >= INFINITY) {
        scope_open(s, rill__self->current, INFINITY, NAN);
        return;
    }
    double now = rill_now(); /* read once: the deadline and the past-check */
    scope_open(s, rill__self->current, now + timeout, now);
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
    set_deadline(s, deadline, NAN);
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

void rill__scope_unlink(rill_scope *s) {
    rill_scope **link = &s->fiber->scope;
    while (*link && *link != s) link = &(*link)->parent;
    if (*link) *link = s->parent;
    rill__timer_disarm(&s->timer);
    s->magic = SCOPE_EXITED;
}

int rill_scope_exit(rill_scope *s) {
    rill__rt *rt = rill__self;
    if (!rt || rt->current == &rt->host) return -EPERM;
    if (!s || s->magic != SCOPE_OPEN || rt->current->scope != s) return -EINVAL;
    /* A deadline that passed counts as fired even if nothing noticed yet. */
    if (!s->deadline_fired && s->deadline < INFINITY && s->deadline <= rill_now())
        s->deadline_fired = 1;
    rill__scope_unlink(s);
    if (s->cancel_called) return -ECANCELED;
    if (s->deadline_fired) return -ETIMEDOUT;
    return 0;
}
