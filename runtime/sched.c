/*
 * The scheduler: run queue, the host loop on libev, deadlock detection,
 * embedding, and rill_dump.  The rules are in internal.h.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "internal.h"

_Thread_local rill__rt *rill__self;

/* Hand-offs between fibers before the host polls libev without blocking:
 * bounds how long timers and I/O wait behind fibers that keep yielding. */
#define BUDGET 64u

_Noreturn void rill__panic(const char *file, int line, const char *cond,
                           const char *why) {
    rill__rt *rt = rill__self;
    const char *who = rt && rt->current ? rt->current->name : "?";
    fprintf(stderr, "rill: internal error in fiber '%s' at %s:%d: %s (%s)\n",
            who ? who : "?", file, line, why, cond);
    abort();
}

double rill_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct ev_loop *rill_loop(void) { return rill__self ? rill__self->loop : NULL; }

void rill__make_ready(rill__fiber *f) {
    rill__rt *rt = rill__self;
    RILL_ASSERT(f->state != RILL__READY && f->state != RILL__DONE,
                "made a fiber ready twice, or after it ended");
    f->state = RILL__READY;
    rill__list_push(&rt->runq, &f->node);
    /* Woken by a callback of a foreign loop's last iteration: keep that
     * loop from returning before the fiber has run. */
    if (rt->attached && rt->current == &rt->host) ev_idle_start(rt->loop, &rt->idle);
}

void rill__fiber_track(rill__fiber *f) {
    rill__rt *rt = rill__self;
    rill__list_push(&rt->all, &f->all_node);
    rt->nfibers++;
}

void rill__fiber_untrack(rill__fiber *f) {
    rill__list_remove(&f->all_node);
    rill__self->nfibers--;
}

void rill__reschedule(void) {
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
        self->state = RILL__RUNNING;
        return;
    }
    next->state = RILL__RUNNING;
    rill__switch(self, next);
}

/* Host: run ready fibers until the queue empties or the budget is spent. */
static void run_ready(rill__rt *rt) {
    rill__list *n = rill__list_pop(&rt->runq);
    if (!n) return;
    rt->budget = BUDGET;
    rill__fiber *f = rill__container_of(n, rill__fiber, node);
    f->state = RILL__RUNNING;
    rill__switch(&rt->host, f);
}

/* ---- timers on libev ------------------------------------------------------- */

static void arm_wakeup(rill__rt *rt) {
    double next = rill__timers_next();
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

void rill__timers_poll(void) {
    rill__rt *rt = rill__self;
    if (!rt->heap_len) return;
    double now = rill_now();
    if (rt->heap[1]->at <= now) rill__timers_run(now);
}

static void on_wakeup(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
    rill__self->wakeup_at = INFINITY;
    rill__timers_poll();
}

/* ---- deadlock ---------------------------------------------------------------- */

/* Free every fiber without running it again: for fibers that blocked again,
 * with nothing to wake them, after being woken with -EDEADLK. */
static void abandon_all(rill__rt *rt) {
    /* First take every wait off the lists it is on (some live on other
     * abandoned stacks), then release the stacks. */
    for (rill__list *n = rt->all.next; n != &rt->all; n = n->next) {
        rill__fiber *f = rill__container_of(n, rill__fiber, all_node);
        if (f->state == RILL__BLOCKED) f->wait->unhook(f->wait);
    }
    /* The generators a consumer was running end with it. */
    for (rill__list *n = rt->all.next; n != &rt->all; n = n->next)
        rill__gens_abandon_chain(rill__container_of(n, rill__fiber, all_node));
    rt->abandoned = true;
    rill__list *n;
    while ((n = rill__list_pop(&rt->all))) {
        rill__fiber *f = rill__container_of(n, rill__fiber, all_node);
        rt->nfibers--;
        rill__scopes_drop(f);
        f->state = RILL__DONE;
        rill__fiber_release(f);
        if (!f->is_task) continue;
        rill_task *t = (rill_task *)f;
        t->ended = true;
        t->status = -EDEADLK;
        if (t->group) rill__list_remove(&t->link); /* its group may live on */
        if (t != rt->main) rill__task_free(t);
    }
}

static void deadlock(rill__rt *rt) {
    if (rt->deadlocked && rt->ended_count == rt->ended_at_deadlock) {
        fprintf(stderr, "rill: still deadlocked, and no fiber ended since they were woken "
                        "with -EDEADLK: abandoning %zu fiber%s without unwinding them\n",
                rt->nfibers, rt->nfibers == 1 ? "" : "s");
        abandon_all(rt);
        return;
    }
    fprintf(stderr, "rill: deadlock: every fiber is blocked and nothing can "
                    "wake one; their blocking calls return -EDEADLK\n");
    rill_dump(stderr);
    rt->deadlocked = true;
    rt->ended_at_deadlock = rt->ended_count;
    for (rill__list *n = rt->all.next; n != &rt->all; n = n->next) {
        rill__fiber *f = rill__container_of(n, rill__fiber, all_node);
        rill__interrupt(rill__leaf(f), -EDEADLK);
    }
}

static void cancel_all_tasks(rill__rt *rt) {
    for (rill__list *n = rt->all.next; n != &rt->all; n = n->next) {
        rill__fiber *f = rill__container_of(n, rill__fiber, all_node);
        if (f->is_task) rill_cancel((rill_task *)f);
    }
}

/* Drive the loop until no fiber is left.  When `main` (if any) ends, the
 * tasks left are cancelled, as asyncio.run does. */
static void drive(rill__rt *rt, rill_task *main) {
    bool rest_cancelled = false, gens_left = false;
    for (;;) {
        run_ready(rt);
        if (rt->nfibers == 0) {
            /* Calls other threads made meanwhile still run; later ones are
             * refused. */
            if (rill__remote_close(rt)) continue;
            /* After abandoning fibers, generators may point into what was
             * freed: leave them alone. */
            if (rt->abandoned || gens_left || !rill__gens_suspended()) {
                /* Detached jobs whose callers gave up end before the run
                 * does (their release() may flush or free): wait for them. */
                if (!rt->abandoned_jobs) return;
                rill__remote_keepalive(rt);
                ev_run(rt->loop, EVRUN_ONCE);
                continue;
            }
            /* asyncio's shutdown_asyncgens: close the generators left
             * suspended, from a task (cleanups may block) born cancelled. */
            rt->shutting_down = true;
            rill_task *t = rill__task_new(rill__gens_shutdown, NULL,
                                          &(rill_opts){.name = "gen-shutdown"});
            if (!t) { /* out of memory: they stay suspended; the jobs are
                         * still waited for (a return here ended the run) */
                gens_left = true;
                continue;
            }
            rill_detach(t);
            continue;
        }
        if (main && main->ended && !rest_cancelled) {
            rt->shutting_down = true;
            cancel_all_tasks(rt);
            rest_cancelled = true;
            continue;
        }
        bool idle = rill__list_empty(&rt->runq);
        arm_wakeup(rt);
        rill__remote_keepalive(rt);
        int alive = ev_run(rt->loop, idle ? EVRUN_ONCE : EVRUN_NOWAIT);
        rill__timers_poll();
        if (idle && rill__list_empty(&rt->runq) && !alive && rill__timers_next() == INFINITY)
            deadlock(rt);
    }
}

/* ---- the prepare watcher: what must happen right before libev polls ---------- */

static void attach_tick(struct ev_loop *loop, rill__rt *rt);

/* libev runs prepare watchers, then hands fd changes to the kernel, then
 * polls.  Attached, rill runs its fibers here; in every mode (a fiber may
 * run the loop itself) the fds they asked for are checked here, as late as
 * possible: a closed one would make libev abort. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)w;
    (void)revents;
    rill__rt *rt = rill__self;
    if (rt->attached) attach_tick(loop, rt);
    /* Attached, a fiber made ready keeps the poll from blocking (the idle
     * watcher); under rill_run the host runs it before polling. */
    if (rill__fds_recheck(rt) && !rt->attached && rt->current == &rt->host)
        ev_break(loop, EVBREAK_ONE);
}

/* rill's own hook must not keep the loop alive on its own. */
static void prepare_start(rill__rt *rt) {
    ev_prepare_init(&rt->prepare, on_prepare);
    ev_prepare_start(rt->loop, &rt->prepare);
    ev_unref(rt->loop);
}

static void prepare_stop(rill__rt *rt) {
    if (!ev_is_active(&rt->prepare)) return;
    ev_ref(rt->loop);
    ev_prepare_stop(rt->loop, &rt->prepare);
}

/* ---- runtime lifetime -------------------------------------------------------- */

/* fork(): the child has one thread, the forking one, so at most one
 * runtime lives on there, that thread's, and it keeps its run.  libev's
 * loop shares its kernel state (the epoll set, the wake-up fd) with the
 * parent's until told of the fork: ev_loop_fork makes the child's next
 * iteration create its own.  pthread_atfork handlers, rather than a
 * getpid() check per iteration: they run before the child runs any code,
 * cost nothing until a fork, and reset mutexes that other threads held. */
static void fork_prepare(void) { rill__remote_fork_prepare(rill__self); }
static void fork_parent(void) { rill__remote_fork_parent(rill__self); }

static void fork_child(void) {
    rill__rt *rt = rill__self;
    if (!rt || !rt->loop) return;
    ev_loop_fork(rt->loop);
    rill__fds_after_fork(rt);
    rill__remote_after_fork(rt);
}

static void fork_hooks(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static rill__rt *rt_new(struct ev_loop *loop, bool own) {
    /* Once per process, with the first runtime: before it, no run exists
     * that a fork could split. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fork_hooks);
    rill__rt *rt = rill__calloc(1, sizeof *rt);
    if (!rt) return NULL;
    rt->loop = loop;
    rt->own_loop = own;
    rt->bare = loop == NULL;
    rill__list_init(&rt->runq);
    rill__list_init(&rt->all);
    rill__list_init(&rt->unjoined);
    rill__list_init(&rt->gens);
    rt->host.state = RILL__RUNNING;
    rt->host.name = "(host)";
    rt->current = &rt->host;
    rt->wakeup_at = INFINITY;
    ev_timer_init(&rt->wakeup, on_wakeup, 0, 0);
    rill__self = rt;
    return rt;
}

/* What a runtime owns beyond its struct and what its generators need: a
 * run that ends with generators still allocated keeps only those. */
static void rt_trim(rill__rt *rt) {
    rill__tasks_free_unjoined();
    while (rt->free_tasks) {
        rill_task *t = rt->free_tasks;
        rt->free_tasks = t->next_free;
        free(t);
    }
    rt->nfree_tasks = 0;
    /* Suspended generators keep no timer armed (rill__scopes_suspend). */
    if (!rt->heap_len) rill__timers_free();
    if (!rt->scopes.len) rill__scopes_free(rt);
    rill__stacks_trim();
    rill__signals_end(rt);
}

static void rt_free(rill__rt *rt) {
    if (rt->loop) {
        ev_timer_stop(rt->loop, &rt->wakeup);
        prepare_stop(rt);
        rill__remote_end(rt);
    }
    rill__fds_free(rt);
    rt_trim(rt);
    rill__timers_free();
    rill__scopes_free(rt);
    rill__stacks_free();
    if (rt->own_loop) ev_loop_destroy(rt->loop);
    if (rill__self == rt) rill__self = NULL;
    free(rt);
}

/* A bare runtime left to a thread by generators that were never freed: a
 * small struct (the generators themselves are their owner's leak).  Freed
 * when the thread exits, or at process exit for the thread calling exit. */
static pthread_key_t bare_key;
static pthread_once_t bare_once = PTHREAD_ONCE_INIT;

static void bare_thread_exit(void *rt) {
    rill__self = rt;
    rt_free(rt);
}

static void bare_process_exit(void) {
    rill__rt *rt = rill__self;
    if (rt && rt->bare && rt->current == &rt->host) rt_free(rt);
}

static void bare_keys(void) {
    (void)pthread_key_create(&bare_key, bare_thread_exit);
    atexit(bare_process_exit);
}

/* A runtime for this thread, driving `loop`: a new one, or the bare one
 * that generators made outside rill_run (they keep working inside).
 * NULL with *err set if the thread already runs one. */
static rill__rt *rt_acquire(struct ev_loop *loop, bool own, int *err) {
    rill__rt *rt = rill__self;
    if (rt && (!rt->bare || rt->current != &rt->host)) {
        *err = -EBUSY;
        return NULL;
    }
    static _Atomic uint64_t runs;
    if (!rt) {
        rt = rt_new(loop, own);
        if (!rt) *err = -ENOMEM;
    } else {
        rt->loop = loop;
        rt->own_loop = own;
        rt->bare = false;
        pthread_setspecific(bare_key, NULL); /* a run again: not left over */
    }
    if (rt && rill__signals_begin(rt) != 0) {
        rt->loop = NULL; /* the caller keeps its loop */
        rt->own_loop = false;
        rt->bare = true;
        if (!rt->ngens) rt_free(rt);
        *err = -ENOMEM;
        return NULL;
    }
    if (rt) rt->run_id = ++runs;
    return rt;
}

/* The loop goes away; generators still allocated keep a bare runtime. */
static void rt_release(rill__rt *rt) {
    if (!rt->ngens) {
        rt_free(rt);
        return;
    }
    ev_timer_stop(rt->loop, &rt->wakeup);
    prepare_stop(rt);
    rill__remote_end(rt);
    rill__fds_free(rt);
    rt_trim(rt);
    if (rt->own_loop) ev_loop_destroy(rt->loop);
    rt->loop = NULL;
    rt->own_loop = rt->attached = rt->deadlocked = rt->shutting_down = rt->abandoned = false;
    rt->bare = true;
    rt->run_id = 0;
    rt->wakeup_at = INFINITY;
    pthread_once(&bare_once, bare_keys);
    pthread_setspecific(bare_key, rt);
}

rill__rt *rill__bare_runtime(void) {
    return rill__self ? rill__self : rt_new(NULL, false);
}

void rill__bare_release(void) {
    rill__rt *rt = rill__self;
    if (!rt || !rt->bare || rt->ngens || rt->current != &rt->host) return;
    pthread_once(&bare_once, bare_keys);
    pthread_setspecific(bare_key, NULL);
    rt_free(rt);
}

int rill_run(rill_fn *main, void *arg) {
    if (!main) return -EINVAL;
    if (rill__self && !rill__self->bare) return -EBUSY;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop) return -ENOMEM;
    int err = 0;
    rill__rt *rt = rt_acquire(loop, true, &err);
    if (!rt) {
        ev_loop_destroy(loop);
        return err;
    }
    rill_task *t = rill__task_new(main, arg, &(rill_opts){.name = "main"});
    if (!t) {
        rt_release(rt);
        return -ENOMEM;
    }
    rt->main = t;
    prepare_start(rt);
    drive(rt, t);
    int status = rt->deadlocked ? -EDEADLK : t->status;
    rt->main = NULL;
    rill__task_free(t);
    rt_release(rt);
    return status;
}

/* ---- embedding into a foreign libev loop ------------------------------------ */

static void attach_tick(struct ev_loop *loop, rill__rt *rt) {
    /* A fiber that runs the loop itself (ev_run from inside a fiber) must not
     * have the host's context overwritten under it. */
    if (rt->current != &rt->host) return;
    rill__timers_poll();
    run_ready(rt);
    /* Fibers still ready: keep the loop from blocking in its poll. */
    if (!rill__list_empty(&rt->runq)) ev_idle_start(loop, &rt->idle);
    else ev_idle_stop(loop, &rt->idle);
    arm_wakeup(rt);
    rill__remote_keepalive(rt);
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

int rill_attach(struct ev_loop *loop) {
    if (!loop) return -EINVAL;
    int err = 0;
    rill__rt *rt = rt_acquire(loop, false, &err);
    if (!rt) return err;
    ev_check_init(&rt->check, on_check);
    ev_idle_init(&rt->idle, on_idle);
    /* rill's own hooks must not keep the user's loop alive on their own;
     * its timers, fd waits and ready fibers do. */
    prepare_start(rt);
    ev_check_start(loop, &rt->check);
    ev_unref(loop);
    rt->attached = true;
    return 0;
}

int rill_detach_loop(void) {
    rill__rt *rt = rill__self;
    if (!rt || !rt->attached) return -EINVAL;
    if (rt->current != &rt->host) return -EPERM;
    /* The prepare watcher stays: drive() needs its fd checks too. */
    ev_ref(rt->loop);
    ev_check_stop(rt->loop, &rt->check);
    ev_idle_stop(rt->loop, &rt->idle);
    rt->attached = false; /* from here on rill drives the loop itself */
    rt->shutting_down = true;
    cancel_all_tasks(rt);
    drive(rt, NULL);
    int rc = rt->deadlocked ? -EDEADLK : 0;
    rt_release(rt);
    return rc;
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
    for (rill__list *n = rt->all.next; n != &rt->all; n = n->next) {
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
        for (const rill_scope *s = rill__leaf(f)->scope; s; s = s->parent) {
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
