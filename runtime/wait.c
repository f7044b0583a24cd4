/*
 * The one wait mechanism (see internal.h), and the primitive waits built
 * directly on it: yield, sleep, and waiting for a file descriptor.
 */
#include <fcntl.h>

#include "internal.h"

bool rill__fiber_cancelled(const rill__fiber *f) {
    for (const rill_scope *s = f->scope; s; s = s->parent) {
        if (rill__scope_is_cancelled(s)) return true;
        if (s->shield) return false;
    }
    return false;
}

int rill__checkpoint_below(const char *caller_sp) {
    rill__rt *rt = rill__self;
    /* Blocking needs a fiber to suspend, and a loop: a generator driven from
     * outside any fiber (its consumer chain starts at the host) has neither. */
    if (!rt || rill__root(rt->current) == &rt->host) return -EPERM;
    /* As rill__fiber_cancelled, but a deadline that has passed counts even
     * if the reactor has not fired its timer yet (the fiber may have been
     * computing since): "a deadline in the past cancels at the next call".
     * The clock is read only inside a scope with a deadline.  The walk goes
     * on past a shield or a cancellation to judge every scope of the chain
     * (rill__scope_chain_check) before anything reads it. */
    rill__fiber *f = rt->current;
    double now = NAN;
    int rc = 0;
    bool shielded = false;
    for (rill_scope *s = f->scope; s; s = s->parent) {
        if (rill__scope_is_below(f, s, caller_sp)) rill__scope_check_below(f, s);
        if (rc || shielded) continue;
        if (rill__scope_is_cancelled(s)) {
            rc = -ECANCELED;
            continue;
        }
        if (s->deadline < INFINITY) {
            if (isnan(now)) now = rill_now();
            if (s->deadline <= now) {
                rill__scope_expire(s);
                rc = -ECANCELED;
                continue;
            }
        }
        shielded = s->shield;
    }
    return rc;
}

bool rill_cancelled(void) { return rill__checkpoint() == -ECANCELED; }

int rill__suspend(rill__waiter *w) {
    rill__rt *rt = rill__self;
    rill__fiber *f = rt->current;
    RILL_ASSERT(f->state == RILL__RUNNING, "only a running fiber can block");
    w->fiber = f;
    f->wait = w;
    f->state = RILL__BLOCKED;
    rill__reschedule();
    return w->result;
}

void rill__wake(rill__waiter *w, int result) {
    rill__fiber *f = w->fiber;
    RILL_ASSERT(f->state == RILL__BLOCKED && f->wait == w,
                "woke a fiber that was not blocked on this wait");
    f->wait = NULL;
    w->result = result;
    rill__make_ready(f);
}

void rill__interrupt(rill__fiber *f, int err) {
    if (f->state != RILL__BLOCKED) return; /* already woken: it keeps its wake-up */
    rill__waiter *w = f->wait;
    if (w->uncancellable && err == -ECANCELED) return;
    w->unhook(w);
    rill__wake(w, err);
}

void rill__recheck(rill__fiber *f) {
    f = rill__leaf(f); /* the fiber actually blocked, for a consumer */
    if (f->state == RILL__BLOCKED && rill__fiber_cancelled(f))
        rill__interrupt(f, -ECANCELED);
}

void rill__waiter_unlink(rill__waiter *w) { rill__list_remove(&w->node); }

bool rill__waitq_wake_one(rill__list *q, int result) {
    rill__list *n = rill__list_pop(q);
    if (!n) return false;
    rill__wake(rill__container_of(n, rill__waiter, node), result);
    return true;
}

void rill__waitq_wake_all(rill__list *q, int result) {
    while (rill__waitq_wake_one(q, result)) {
    }
}

/* ---- yield and sleep ------------------------------------------------------ */

/* Yield and sleep are inlined into each public entry, so that the
 * checkpoint judges scopes against the user's own frame. */
RILL__INLINE int yield_now(void) {
    int rc = rill__checkpoint();
    if (rc) return rc;
    rill__rt *rt = rill__self;
    rill__make_ready(rt->current);
    rill__reschedule();
    return 0;
}

int rill_yield_now(void) { return yield_now(); }

typedef struct sleeper {
    rill__waiter w;
    rill__timer timer;
} sleeper;

static void sleep_fired(rill__timer *t) {
    sleeper *s = rill__container_of(t, sleeper, timer);
    rill__wake(&s->w, 0);
}

static void sleep_unhook(rill__waiter *w) {
    sleeper *s = rill__container_of(w, sleeper, w);
    rill__timer_disarm(&s->timer);
}

RILL__INLINE int sleep_until(double deadline) {
    if (isnan(deadline)) return -EINVAL;
    int rc = rill__checkpoint();
    if (rc) return rc;
    if (deadline <= rill_now()) return yield_now();
    sleeper s = {.w = {.unhook = sleep_unhook, .what = "sleep"}};
    /* An infinite sleep arms no timer: only a cancellation can end it. */
    if (deadline < INFINITY) rill__timer_arm(&s.timer, deadline, sleep_fired);
    return rill__suspend(&s.w);
}

int rill_sleep_until(double deadline) { return sleep_until(deadline); }

int rill_sleep(double seconds) {
    if (isnan(seconds)) return -EINVAL;
    if (seconds <= 0) return yield_now();
    if (seconds >= INFINITY) return sleep_until(INFINITY);
    return sleep_until(rill_now() + seconds);
}

/* ---- file descriptors ------------------------------------------------------ */

typedef struct fd_waiter {
    rill__waiter w;
    ev_io io;
} fd_waiter;

static void fd_ready(struct ev_loop *loop, ev_io *io, int revents) {
    fd_waiter *fw = rill__container_of(io, fd_waiter, io);
    ev_io_stop(loop, io);
    int ready = 0;
    if (revents & EV_READ) ready |= RILL_READ;
    if (revents & EV_WRITE) ready |= RILL_WRITE;
    /* libev reports a descriptor that the kernel rejected with EV_ERROR. */
    rill__wake(&fw->w, (revents & EV_ERROR) ? -EBADF : ready);
}

static void fd_unhook(rill__waiter *w) {
    fd_waiter *fw = rill__container_of(w, fd_waiter, w);
    ev_io_stop(rill__self->loop, &fw->io);
}

int rill_wait_fd(int fd, int events) {
    if (fd < 0) return -EBADF;
    if (!(events & (RILL_READ | RILL_WRITE)) || (events & ~(RILL_READ | RILL_WRITE)))
        return -EINVAL;
    int rc = rill__checkpoint();
    if (rc) return rc;
    if (fcntl(fd, F_GETFD) < 0) return -EBADF;
    fd_waiter fw = {.w = {.unhook = fd_unhook, .what = "fd"}};
    int ev = ((events & RILL_READ) ? EV_READ : 0) | ((events & RILL_WRITE) ? EV_WRITE : 0);
    ev_io_init(&fw.io, fd_ready, fd, ev);
    ev_io_start(rill__self->loop, &fw.io);
    return rill__suspend(&fw.w);
}
