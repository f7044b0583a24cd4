/*
 * The one wait mechanism (see internal.h), and the primitive waits built
 * directly on it: yield, sleep, and waiting for a file descriptor.
 */
#include <fcntl.h>
#include <string.h>

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
    if (deadline < INFINITY && (rc = rill__timer_arm(&s.timer, deadline, sleep_fired)) < 0)
        return rc;
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

/* libev hands a watcher's fd to the kernel (epoll_ctl) only just before it
 * polls, and aborts the process if the kernel then says the fd is not open
 * or cannot be an fd at all (closed meanwhile, or opened O_PATH).  So each
 * fd whose interest libev will change at its next poll is on rt->fd_dirty,
 * and rill__fds_recheck, run from a prepare watcher (libev calls those
 * right before it applies fd changes), checks those fds once each and
 * wakes their waiters with the error instead.  A wait costs one fcntl, as
 * a check at its start would, but that check alone would come too early:
 * another fiber may close the fd before the loop polls. */

typedef struct fd_waiter {
    rill__waiter w;
    ev_io io;
    struct fd_waiter *next, *prev; /* among its fd's waiters */
} fd_waiter;

struct rill__fd_slot {
    fd_waiter *head;           /* the fd's waiters, newest first */
    bool dirty;                /* on rt->fd_dirty */
};

static int interest(const fd_waiter *fw) {
    int ev = 0;
    for (; fw; fw = fw->next) ev |= fw->io.events & (EV_READ | EV_WRITE);
    return ev;
}

static void mark(rill__rt *rt, int fd) {
    struct rill__fd_slot *s = &rt->fd_slots[fd];
    if (s->dirty) return;
    s->dirty = true;
    rt->fd_dirty[rt->fd_ndirty++] = fd; /* room: one entry per slot */
}

/* Room for fd in the tables: 0, -EBADF, -ENOMEM. */
static int make_room(rill__rt *rt, int fd) {
    if ((size_t)fd < rt->fd_cap) return 0;
    /* Only an open fd grows them: a number like INT_MAX is no request for
     * gigabytes. */
    if (fcntl(fd, F_GETFD) < 0) return -EBADF;
    size_t cap = rt->fd_cap ? rt->fd_cap : 64;
    while (cap <= (size_t)fd) cap *= 2;
    struct rill__fd_slot *slots = rill__realloc(rt->fd_slots, cap * sizeof *slots);
    if (!slots) return -ENOMEM;
    memset(slots + rt->fd_cap, 0, (cap - rt->fd_cap) * sizeof *slots);
    rt->fd_slots = slots;
    int *dirty = rill__realloc(rt->fd_dirty, cap * sizeof *dirty);
    if (!dirty) return -ENOMEM; /* the slots stay, unused until next time */
    rt->fd_dirty = dirty;
    rt->fd_cap = cap;
    return 0;
}

static void unlink_waiter(struct rill__fd_slot *s, fd_waiter *fw) {
    if (fw->prev) fw->prev->next = fw->next;
    else s->head = fw->next;
    if (fw->next) fw->next->prev = fw->prev;
}

/* fw's wait ends (ready, or interrupted). */
static void fd_stop(rill__rt *rt, fd_waiter *fw) {
    int fd = fw->io.fd;
    ev_io_stop(rt->loop, &fw->io);
    struct rill__fd_slot *s = &rt->fd_slots[fd];
    int before = interest(s->head);
    unlink_waiter(s, fw);
    /* Waiters left that want less: libev tells the kernel, so the fd is
     * checked first. */
    if (s->head && interest(s->head) != before) mark(rt, fd);
}

static void fd_ready(struct ev_loop *loop, ev_io *io, int revents) {
    (void)loop;
    fd_waiter *fw = rill__container_of(io, fd_waiter, io);
    fd_stop(rill__self, fw);
    int ready = 0;
    if (revents & EV_READ) ready |= RILL_READ;
    if (revents & EV_WRITE) ready |= RILL_WRITE;
    /* libev reports a descriptor that the kernel rejected with EV_ERROR. */
    rill__wake(&fw->w, (revents & EV_ERROR) ? -EBADF : ready);
}

static void fd_unhook(rill__waiter *w) {
    fd_stop(rill__self, rill__container_of(w, fd_waiter, w));
}

/* Why the kernel would refuse to poll fd (0 if it would not): epoll_ctl
 * fails with EBADF for a closed fd and for an O_PATH one.  (It refuses
 * regular files, directories and the like with EPERM, which libev takes
 * for "always ready", as poll() does.) */
static int unpollable(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    return (flags & O_PATH) ? -EBADF : 0;
}

bool rill__fds_recheck(rill__rt *rt) {
    bool woke = false;
    for (size_t i = 0; i < rt->fd_ndirty; i++) {
        int fd = rt->fd_dirty[i];
        struct rill__fd_slot *s = &rt->fd_slots[fd];
        s->dirty = false;
        if (!s->head) continue;
        int err = unpollable(fd);
        if (!err) continue;
        /* Every waiter goes: libev then has nothing to tell the kernel. */
        while (s->head) {
            fd_waiter *fw = s->head;
            ev_io_stop(rt->loop, &fw->io);
            unlink_waiter(s, fw);
            rill__wake(&fw->w, err);
        }
        woke = true;
    }
    rt->fd_ndirty = 0;
    return woke;
}

void rill__fds_after_fork(rill__rt *rt) {
    for (size_t fd = 0; fd < rt->fd_cap; fd++)
        if (rt->fd_slots[fd].head) mark(rt, (int)fd);
}

void rill__fds_free(rill__rt *rt) {
    free(rt->fd_slots);
    free(rt->fd_dirty);
    rt->fd_slots = NULL;
    rt->fd_dirty = NULL;
    rt->fd_cap = rt->fd_ndirty = 0;
}

int rill_wait_fd(int fd, int events) {
    if (fd < 0) return -EBADF;
    if (!(events & (RILL_READ | RILL_WRITE)) || (events & ~(RILL_READ | RILL_WRITE)))
        return -EINVAL;
    int rc = rill__checkpoint();
    if (rc) return rc;
    rill__rt *rt = rill__self;
    rc = make_room(rt, fd);
    if (rc) return rc;
    fd_waiter fw = {.w = {.unhook = fd_unhook, .what = "fd"}};
    int ev = ((events & RILL_READ) ? EV_READ : 0) | ((events & RILL_WRITE) ? EV_WRITE : 0);
    ev_io_init(&fw.io, fd_ready, fd, ev);
    ev_io_start(rt->loop, &fw.io);
    struct rill__fd_slot *s = &rt->fd_slots[fd];
    fw.next = s->head;
    if (s->head) s->head->prev = &fw;
    s->head = &fw;
    /* A new watcher makes libev (re)tell the kernel about its fd. */
    mark(rt, fd);
    return rill__suspend(&fw.w);
}
