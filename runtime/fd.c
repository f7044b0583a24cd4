/*
 * Waiting for file descriptors: each fd's waiters, the check that keeps
 * libev from seeing an fd that was closed before it polls, and rill_close,
 * which wakes an fd's waiters before it closes it.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* libev hands a watcher's fd to the kernel (epoll_ctl) only just before it
 * polls, and aborts the process if the kernel then says the fd is not open
 * or cannot be an fd at all (closed meanwhile, or opened O_PATH).  So each
 * fd whose interest libev will change at its next poll is on rt->fds.dirty,
 * and recheck, a hook run from the scheduler's prepare watcher (libev calls those
 * right before it applies fd changes), checks those fds once each and
 * wakes their waiters with the error instead.  A wait costs one fcntl, as
 * a check at its start would, but that check alone would come too early:
 * another fiber may close the fd before the loop polls.
 *
 * A request-reply exchange waits on a socket, is woken, reads, writes and
 * waits again, all in one round of the loop.  libev would tell the kernel
 * about the new watcher (epoll_ctl) and rill check the fd first (fcntl):
 * two syscalls per exchange that a hand-written epoll loop does not make,
 * since the kernel still watches the fd for the same events.  So a wait
 * that starts in the round the fd's last wait ended ready, for the same
 * events, with no other waiter, is started as the same registration (its
 * watcher without libev's "new fd" flag) and not checked.  Only for the
 * sockets rill made (rill__fd_created): a file closed and replaced on the
 * same number within the round would leave the kernel watching nothing,
 * and rill_close, which such sockets are closed with, forgets the fd. */

typedef struct fd_waiter {
    rill__waiter w;
    ev_io io;
    struct fd_waiter *next, *prev; /* among its fd's waiters */
} fd_waiter;

struct rill__fd_slot {
    fd_waiter *head;           /* the fd's waiters, newest first */
    bool dirty;                /* on rt->fds.dirty */
    bool drained;              /* rill_read's hint: see rill__fd_drained */
    bool created;              /* a socket rill made, not closed by rill_close */
    unsigned char ready_events; /* the EV_ mask of the wait that last ended ready, */
    unsigned ready_round;      /* in this round of the loop (ev_iteration + 1) */
    unsigned closes;           /* rill_close calls on this number */
};

static int interest(const fd_waiter *fw) {
    int ev = 0;
    for (; fw; fw = fw->next) ev |= fw->io.events & (EV_READ | EV_WRITE);
    return ev;
}

static void mark(rill__rt *rt, int fd) {
    struct rill__fd_slot *s = &rt->fds.slots[fd];
    if (s->dirty) return;
    s->dirty = true;
    rt->fds.dirty[rt->fds.ndirty++] = fd; /* room: one entry per slot */
}

/* Room for fd in the tables: 0, -EBADF, -ENOMEM. */
static int make_room(rill__rt *rt, int fd) {
    if ((size_t)fd < rt->fds.cap) return 0;
    /* Only an open fd grows them: a number like INT_MAX is no request for
     * gigabytes. */
    if (fcntl(fd, F_GETFD) < 0) return -EBADF;
    size_t cap = rt->fds.cap ? rt->fds.cap : 64;
    while (cap <= (size_t)fd) cap *= 2;
    struct rill__fd_slot *slots = rill__realloc(rt->fds.slots, cap * sizeof *slots);
    if (!slots) return -ENOMEM;
    memset(slots + rt->fds.cap, 0, (cap - rt->fds.cap) * sizeof *slots);
    rt->fds.slots = slots;
    int *dirty = rill__realloc(rt->fds.dirty, cap * sizeof *dirty);
    if (!dirty) return -ENOMEM; /* the slots stay, unused until next time */
    rt->fds.dirty = dirty;
    rt->fds.cap = cap;
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
    struct rill__fd_slot *s = &rt->fds.slots[fd];
    int before = interest(s->head);
    unlink_waiter(s, fw);
    /* Waiters left that want less: libev tells the kernel, so the fd is
     * checked first. */
    if (s->head && interest(s->head) != before) mark(rt, fd);
}

static void fd_ready(struct ev_loop *loop, ev_io *io, int revents) {
    fd_waiter *fw = rill__container_of(io, fd_waiter, io);
    rill__rt *rt = rill__self;
    struct rill__fd_slot *s = &rt->fds.slots[io->fd];
    if (s->created && !(revents & EV_ERROR)) {
        s->ready_events = (unsigned char)(io->events & (EV_READ | EV_WRITE));
        s->ready_round = ev_iteration(loop) + 1;
    }
    fd_stop(rt, fw);
    int ready = 0;
    if (revents & EV_READ) ready |= RILL_READ;
    if (revents & EV_WRITE) ready |= RILL_WRITE;
    /* libev reports a descriptor that the kernel rejected with EV_ERROR. */
    rill__sched_wake(&fw->w, (revents & EV_ERROR) ? -EBADF : ready);
}

static void fd_unhook(rill__waiter *w) {
    fd_stop(rill__self, rill__container_of(w, fd_waiter, w));
}

/* Wake every waiter on s with err.  Their watchers stopped, libev has
 * nothing left to tell the kernel about the fd, and the next watcher on
 * its number (ev_io_set marks it new) is handed to the kernel afresh. */
static void wake_all(rill__rt *rt, struct rill__fd_slot *s, int err) {
    while (s->head) {
        fd_waiter *fw = s->head;
        ev_io_stop(rt->loop, &fw->io);
        unlink_waiter(s, fw);
        rill__sched_wake(&fw->w, err);
    }
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

/* Before libev polls: wake, with the error the kernel would give libev,
 * the waiters of every fd closed (or opened O_PATH) since libev was last
 * told about it.  Returns whether it woke any. */
static bool recheck(rill__rt *rt) {
    bool woke = false;
    for (size_t i = 0; i < rt->fds.ndirty; i++) {
        int fd = rt->fds.dirty[i];
        struct rill__fd_slot *s = &rt->fds.slots[fd];
        s->dirty = false;
        if (!s->head) continue;
        int err = unpollable(fd);
        if (!err) continue;
        wake_all(rt, s, err);
        woke = true;
    }
    rt->fds.ndirty = 0;
    return woke;
}

/* In a forked child libev hands every watched fd to the kernel afresh, and
 * the child may close some first (the parent's): check them all. */
static void fds_fork_child(rill__rt *rt) {
    for (size_t fd = 0; fd < rt->fds.cap; fd++) {
        rt->fds.slots[fd].ready_round = 0; /* the child's kernel watches nothing yet */
        if (rt->fds.slots[fd].head) mark(rt, (int)fd);
    }
}

static void fds_free(rill__rt *rt) {
    free(rt->fds.slots);
    free(rt->fds.dirty);
    rt->fds.slots = NULL;
    rt->fds.dirty = NULL;
    rt->fds.cap = rt->fds.ndirty = 0;
}

static void fds_init(rill__rt *rt) {
    rt->fds.recheck.run = recheck;
    rill__sched_before_poll(rt, &rt->fds.recheck);
}

const rill__module rill__fd_module = {
    .init = fds_init, .run_end = fds_free, .term = fds_free, .fork_child = fds_fork_child};

int rill__fd_block(int fd, int events) {
    rill__rt *rt = rill__self;
    int rc = make_room(rt, fd);
    if (rc) return rc;
    fd_waiter fw = {.w = {.unhook = fd_unhook, .what = "fd"}};
    int ev = ((events & RILL_READ) ? EV_READ : 0) | ((events & RILL_WRITE) ? EV_WRITE : 0);
    ev_io_init(&fw.io, fd_ready, fd, ev);
    struct rill__fd_slot *s = &rt->fds.slots[fd];
    bool same = s->created && !s->head && s->ready_events == ev &&
                s->ready_round == ev_iteration(rt->loop) + 1;
    if (same) fw.io.events &= ~EV__IOFDSET;
    ev_io_start(rt->loop, &fw.io);
    fw.next = s->head;
    if (s->head) s->head->prev = &fw;
    s->head = &fw;
    /* A new watcher makes libev (re)tell the kernel about its fd. */
    if (!same) mark(rt, fd);
    unsigned closes = s->closes;
    rc = rill__sched_block(&fw.w);
    /* Woken ready, then the fd closed (and its number perhaps reused)
     * before this fiber ran: the readiness was the old file's. */
    if (rc > 0 && rt->fds.slots[fd].closes != closes) rc = -EBADF;
    return rc;
}

void rill__fd_forget(int fd) {
    rill__rt *rt = rill__self;
    if (!rt || fd < 0 || (size_t)fd >= rt->fds.cap) return;
    struct rill__fd_slot *s = &rt->fds.slots[fd];
    wake_all(rt, s, -EBADF);
    s->closes++;
    s->created = s->drained = false;
    s->ready_round = 0;
}

void rill__fd_created(int fd) {
    rill__rt *rt = rill__self;
    /* Without a runtime or room, the fd just goes without the shortcut. */
    if (!rt || make_room(rt, fd) != 0) return;
    struct rill__fd_slot *s = &rt->fds.slots[fd];
    /* Fibers waiting on this number, or woken by it and not run yet, were
     * served by a file closed with close() (nobody could wait on fd yet):
     * -EBADF, as recheck would have said had the number not been taken
     * again before the poll. */
    wake_all(rt, s, -EBADF);
    s->closes++;
    s->created = true;
    s->drained = false;
    s->ready_round = 0;
}

/* A read that returned less than it asked for has most likely emptied the
 * socket's buffer: the next one waits first instead of trying a read that
 * would say EAGAIN (in a request-reply exchange, it always would).  A hint
 * only: kept for an fd number, it may outlive its file, and then one wait
 * returns at once (the fd is polled level-triggered). */
void rill__fd_set_drained(int fd, bool drained) {
    rill__rt *rt = rill__self;
    if ((size_t)fd < rt->fds.cap) rt->fds.slots[fd].drained = drained;
}

bool rill__fd_drained(int fd) {
    rill__rt *rt = rill__self;
    return (size_t)fd < rt->fds.cap && rt->fds.slots[fd].drained;
}

int rill_wait_fd(int fd, int events) {
    if (fd < 0) return -EBADF;
    if (!(events & (RILL_READ | RILL_WRITE)) || (events & ~(RILL_READ | RILL_WRITE)))
        return -EINVAL;
    return rill__fd_wait(fd, events);
}

int rill_close(int fd) {
    if (fd < 0) return -EBADF;
    rill__fd_forget(fd);
    /* Linux releases the fd even when close() fails; EINTR means it is
     * closed too (retrying could close a number reused meanwhile). */
    if (close(fd) == 0 || errno == EINTR) return 0;
    return -errno;
}
