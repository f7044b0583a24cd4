/*
 * The scheduler: fiber states, the run queue, blocking and waking, the
 * host's loop on libev (timers, deadlock detection, the hooks modules
 * register), and running fibers from a foreign loop's watchers.  It knows
 * fibers, timers and libev; tasks and generators plug in through their
 * fibers' ops.  rill_dump is here too: it reads fibers and their scopes.
 * The rules are in internal.h.
 */
#include "internal.h"

/* Hand-offs between fibers before the host polls libev without blocking:
 * bounds how long timers and I/O wait behind fibers that keep yielding
 * (about 5 us of fast switches, 60 us of swapcontext ones).  Each poll is
 * a system call: at 64, it was an eighth of a fast spawn + join. */
#define BUDGET 256u

struct ev_loop *rill_loop(void) { return rill__self ? rill__self->loop : NULL; }

/* ---- states ------------------------------------------------------------------ */

/* internal.h's table, a bit per allowed target state: the check is inlined
 * into every state change (rill__sched_set_state), which a generator step
 * makes four of. */
#define TO(s) (1u << (s))
const uint8_t rill__sched_allowed[5] = {
    [RILL__NEW] = TO(RILL__READY) | TO(RILL__BLOCKED),
    [RILL__READY] = TO(RILL__RUNNING),
    [RILL__RUNNING] = TO(RILL__READY) | TO(RILL__BLOCKED) | TO(RILL__DONE),
    [RILL__BLOCKED] = TO(RILL__READY) | TO(RILL__RUNNING) | TO(RILL__DONE),
};

void rill__sched_ready(rill__fiber *f) {
    rill__rt *rt = rill__self;
    rill__sched_set_state(f, RILL__READY);
    rill__list_push(&rt->runq, &f->node);
    /* Woken by a callback of a foreign loop's last iteration: keep that
     * loop from returning before the fiber has run. */
    if (rt->attached && rt->current == &rt->host) ev_idle_start(rt->loop, &rt->idle);
}

void rill__sched_track(rill__fiber *f) {
    rill__rt *rt = rill__self;
    rill__list_push(&rt->all, &f->all_node);
    rt->nfibers++;
}

void rill__sched_untrack(rill__fiber *f) {
    rill__rt *rt = rill__self;
    RILL_ASSERT(rt->nfibers > 0 && f->ops->cancel, "ended a fiber that was never tracked");
    rill__list_remove(&f->all_node);
    rt->nfibers--;
    rt->run.ended++;
}

void rill__sched_reschedule(void) {
    rill__rt *rt = rill__self;
    rill__fiber *self = rt->current;
    rill__fiber *next = &rt->host;
    if (rt->budget) {
        rill__list *n = rill__list_pop(&rt->runq);
        if (n) {
            next = rill__container_of(n, rill__fiber, node);
            rt->budget--;
        }
    }
    if (next == self) { /* it yielded and nobody else was ready */
        rill__sched_set_state(self, RILL__RUNNING);
        return;
    }
    if (next != &rt->host) rill__sched_set_state(next, RILL__RUNNING);
    rill__fiber_switch(self, next);
}

/* Host: run ready fibers until the queue empties or the budget is spent. */
static void run_ready(rill__rt *rt) {
    rill__list *n = rill__list_pop(&rt->runq);
    if (!n) return;
    rt->budget = BUDGET;
    rill__fiber *f = rill__container_of(n, rill__fiber, node);
    rill__sched_set_state(f, RILL__RUNNING);
    rill__fiber_switch(&rt->host, f);
}

/* ---- blocking and waking --------------------------------------------------------- */

int rill__sched_block(rill__waiter *w) {
    rill__rt *rt = rill__self;
    rill__fiber *f = rt->current;
    /* The host is not a fiber: a libev callback must never block. */
    RILL_ASSERT(f != &rt->host, "the host (a libev callback) tried to block");
    RILL_ASSERT(f->state == RILL__RUNNING, "only a running fiber can block");
    w->fiber = f;
    f->wait = w;
    rill__sched_set_state(f, RILL__BLOCKED);
    rill__sched_reschedule();
    return w->result;
}

void rill__sched_wake(rill__waiter *w, int result) {
    rill__fiber *f = w->fiber;
    RILL_ASSERT(f->state == RILL__BLOCKED && f->wait == w,
                "woke a fiber that was not blocked on this wait");
    f->wait = NULL;
    w->result = result;
    rill__sched_ready(f);
}

void rill__sched_interrupt(rill__fiber *f, int err) {
    if (f->state != RILL__BLOCKED) return; /* already woken: it keeps its wake-up */
    rill__waiter *w = f->wait;
    if (w->uncancellable && err == -ECANCELED) return;
    w->unhook(w);
    rill__sched_wake(w, err);
}

/* ---- what keeps the run alive ------------------------------------------------------ */

void rill__sched_keepalive(rill__rt *rt, int delta) {
    RILL_ASSERT(delta >= 0 || rt->keepalive >= (unsigned)-delta,
                "the keep-alive count went below zero");
    bool was = rt->keepalive > 0;
    rt->keepalive += (unsigned)delta;
    /* libev sees the whole count as one active watcher. */
    if (!rt->loop || was == (rt->keepalive > 0)) return;
    if (was) ev_unref(rt->loop);
    else ev_ref(rt->loop);
}

void rill__sched_on_idle(rill__rt *rt, rill__hook *h) { rill__list_push(&rt->idle_hooks, &h->node); }

void rill__sched_before_poll(rill__rt *rt, rill__hook *h) {
    rill__list_push(&rt->poll_hooks, &h->node);
}

/* Run the idle hooks in order until one makes work. */
static bool idle_work(rill__rt *rt) {
    rill__list_each(n, &rt->idle_hooks)
        if (rill__container_of(n, rill__hook, node)->run(rt)) return true;
    return false;
}

static bool before_poll(rill__rt *rt) {
    bool woke = false;
    rill__list_each(n, &rt->poll_hooks)
        woke |= rill__container_of(n, rill__hook, node)->run(rt);
    return woke;
}

/* ---- timers on libev ------------------------------------------------------- */

static void arm_wakeup(rill__rt *rt) {
    double next = rill__timer_next();
    if (next == rt->wakeup_at && ev_is_active(&rt->wakeup)) return;
    ev_timer_stop(rt->loop, &rt->wakeup);
    rt->wakeup_at = next;
    if (next == INFINITY) return;
    /* libev counts from its cached clock: refresh it so the wake-up is
     * neither early by the staleness nor late. */
    ev_now_update(rt->loop);
    double after = next - rill_now();
    ev_timer_set(&rt->wakeup, after > 0 ? after : 0, 0);
    ev_timer_start(rt->loop, &rt->wakeup);
}

static void on_wakeup(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
    rill__self->wakeup_at = INFINITY;
    rill__timer_run_due();
}

/* ---- deadlock ---------------------------------------------------------------- */

/* End every fiber without running it again: for fibers that blocked again,
 * with nothing to wake them, after being woken with -EDEADLK. */
static void abandon_all(rill__rt *rt) {
    /* First take every wait off the lists it is on (some live on other
     * abandoned stacks), then end the fibers, generators a consumer was
     * running first. */
    rill__list_each(n, &rt->all) {
        rill__fiber *f = rill__fiber_leaf(rill__container_of(n, rill__fiber, all_node));
        if (f->state == RILL__BLOCKED) f->wait->unhook(f->wait);
    }
    rt->run.abandoned = true;
    rill__list *n;
    while ((n = rill__list_pop(&rt->all))) {
        rill__fiber *f = rill__container_of(n, rill__fiber, all_node);
        rt->nfibers--;
        for (rill__fiber *g = f->delegate, *next; g; g = next) {
            next = g->delegate;
            g->delegate = g->delegator = NULL;
            rill__sched_set_state(g, RILL__DONE);
            g->ops->abandon(g);
        }
        f->delegate = NULL;
        rill__sched_set_state(f, RILL__DONE);
        f->ops->abandon(f);
    }
}

static void deadlock(rill__rt *rt) {
    if (rt->run.deadlocked && rt->run.ended == rt->run.ended_at_deadlock) {
        fprintf(stderr, "rill: still deadlocked, and no fiber ended since they were woken "
                        "with -EDEADLK: abandoning %zu fiber%s without unwinding them\n",
                rt->nfibers, rt->nfibers == 1 ? "" : "s");
        abandon_all(rt);
        return;
    }
    fprintf(stderr, "rill: deadlock: every fiber is blocked and nothing can "
                    "wake one; their blocking calls return -EDEADLK\n");
    rill_dump(stderr);
    rt->run.deadlocked = true;
    rt->run.ended_at_deadlock = rt->run.ended;
    rill__list_each(n, &rt->all)
        rill__sched_interrupt(rill__fiber_leaf(rill__container_of(n, rill__fiber, all_node)), -EDEADLK);
}

void rill__sched_cancel_all(rill__rt *rt) {
    rt->run.shutting_down = true;
    rill__list_each(n, &rt->all) {
        rill__fiber *f = rill__container_of(n, rill__fiber, all_node);
        f->ops->cancel(f);
    }
}

void rill__sched_drive(rill__rt *rt, rill__fiber *main) {
    bool rest_cancelled = false;
    for (;;) {
        run_ready(rt);
        if (rt->nfibers == 0) {
            if (idle_work(rt)) continue;
            if (!rt->keepalive) return;
            /* Jobs on other threads whose callers gave up end before the
             * run does (their release() may flush or free). */
            ev_run(rt->loop, EVRUN_ONCE);
            continue;
        }
        if (main && main->state == RILL__DONE && !rest_cancelled) {
            rill__sched_cancel_all(rt);
            rest_cancelled = true;
            continue;
        }
        bool idle = rill__list_empty(&rt->runq);
        arm_wakeup(rt);
        int alive = ev_run(rt->loop, idle ? EVRUN_ONCE : EVRUN_NOWAIT);
        rill__timer_run_due();
        if (idle && rill__list_empty(&rt->runq) && !alive && rill__timer_next() == INFINITY)
            deadlock(rt);
    }
}

/* ---- libev's hooks: before each poll, and attached, after it ----------------------- */

/* Attached, the fibers run here, from the foreign loop's callbacks. */
static void attach_tick(struct ev_loop *loop, rill__rt *rt) {
    /* A fiber that runs the loop itself (ev_run from inside a fiber) must not
     * have the host's context overwritten under it. */
    if (rt->current != &rt->host) return;
    rill__timer_run_due();
    run_ready(rt);
    /* Fibers still ready: keep the loop from blocking in its poll. */
    if (!rill__list_empty(&rt->runq)) ev_idle_start(loop, &rt->idle);
    else ev_idle_stop(loop, &rt->idle);
    arm_wakeup(rt);
}

/* libev runs prepare watchers, then hands fd changes to the kernel, then
 * polls: the poll hooks (fd.c's checks) come last, after any fiber ran. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)w;
    (void)revents;
    rill__rt *rt = rill__self;
    if (rt->attached) attach_tick(loop, rt);
    /* Attached, a fiber made ready keeps the poll from blocking (the idle
     * watcher); under rill_run the host runs it before polling. */
    if (before_poll(rt) && !rt->attached && rt->current == &rt->host)
        ev_break(loop, EVBREAK_ONE);
}

static void on_check(struct ev_loop *loop, ev_check *w, int revents) {
    (void)w;
    (void)revents;
    attach_tick(loop, rill__self);
}

static void on_idle(struct ev_loop *loop, ev_idle *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
}

void rill__sched_init(rill__rt *rt) {
    rill__list_init(&rt->runq);
    rill__list_init(&rt->all);
    rill__list_init(&rt->idle_hooks);
    rill__list_init(&rt->poll_hooks);
    rt->host.state = RILL__RUNNING;
    rt->host.name = "(host)";
    rt->current = &rt->host;
    rt->wakeup_at = INFINITY;
    ev_timer_init(&rt->wakeup, on_wakeup, 0, 0);
    ev_prepare_init(&rt->prepare, on_prepare);
    ev_check_init(&rt->check, on_check);
    ev_idle_init(&rt->idle, on_idle);
}

/* rill's own watchers must not keep the loop alive on their own; its timers,
 * fd waits, ready fibers and rt->keepalive do. */
void rill__sched_start(rill__rt *rt, bool attached) {
    ev_prepare_start(rt->loop, &rt->prepare);
    ev_unref(rt->loop);
    if (attached) {
        ev_check_start(rt->loop, &rt->check);
        ev_unref(rt->loop);
    }
    rt->attached = attached;
}

void rill__sched_stop(rill__rt *rt) {
    if (ev_is_active(&rt->check)) {
        ev_ref(rt->loop);
        ev_check_stop(rt->loop, &rt->check);
    }
    ev_idle_stop(rt->loop, &rt->idle);
    /* drive() after an attachment still needs the prepare watcher. */
    rt->attached = false;
}

void rill__sched_run_end(rill__rt *rt) {
    RILL_ASSERT(rt->keepalive == 0, "a run ended with something still keeping it alive");
    if (ev_is_active(&rt->prepare)) {
        ev_ref(rt->loop);
        ev_prepare_stop(rt->loop, &rt->prepare);
    }
    ev_timer_stop(rt->loop, &rt->wakeup);
    rt->wakeup_at = INFINITY;
}

/* ---- rill_dump ----------------------------------------------------------------- */

static const char *const state_names[] = {
    [RILL__NEW] = "new",
    [RILL__READY] = "ready",
    [RILL__RUNNING] = "running",
    [RILL__BLOCKED] = "blocked",
    [RILL__DONE] = "done",
};

void rill_dump(FILE *out) {
    rill__rt *rt = rill__self;
    if (!out) out = stderr;
    if (!rt) {
        fprintf(out, "rill: no runtime on this thread\n");
        return;
    }
    double now = rill_now();
    fprintf(out, "rill: %zu fiber%s\n", rt->nfibers, rt->nfibers == 1 ? "" : "s");
    rill__list_each(n, &rt->all) {
        rill__fiber *f = rill__container_of(n, rill__fiber, all_node);
        fprintf(out, "  '%s' %s", f->name, state_names[f->state]);
        /* A consumer's line goes on down its chain of generators. */
        for (rill__fiber *g = f; g; g = g->delegate) {
            if (g != f) fprintf(out, " -> '%s' %s", g->name, state_names[g->state]);
            if (g->state == RILL__BLOCKED && !g->delegate) {
                fprintf(out, " on %s", g->wait->what);
                if (g->wait->on) fprintf(out, " '%s'", g->wait->on);
            }
        }
        for (const rill_scope *s = rill__fiber_leaf(f)->scope; s; s = s->parent) {
            fprintf(out, " [scope");
            if (s->deadline < INFINITY) fprintf(out, " deadline %+.3fs", s->deadline - now);
            if (s->cancel_called) fprintf(out, " cancelled");
            if (s->deadline_fired) fprintf(out, " timed-out");
            if (s->shield) fprintf(out, " shielded");
            fprintf(out, "]");
        }
        fprintf(out, "\n");
    }
}
