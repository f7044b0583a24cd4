/*
 * The runtime: one per thread, the scheduler's fields and one part per
 * module (internal.h).  This file makes, runs and frees it, calling each
 * module's functions in one order, and is where rill_run and embedding
 * begin and end; so it is the one file that knows every module.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "alloc.h"
#include "internal.h"

_Thread_local rill__rt *rill__self RILL__TLS;

/* Made in this order; ended and freed in the reverse.  Idle hooks run in it
 * too: calls other threads sent (remote) before the generators left
 * suspended are closed (gen). */
static const rill__module *const modules[] = {
    &rill__stack_module, &rill__timer_module, &rill__scope_module, &rill__fd_module,
    &rill__task_module,  &rill__remote_module, &rill__gen_module,
};
#define NMODULES (sizeof modules / sizeof modules[0])

/* Call each module's fn (if it has one), in order, or in reverse. */
#define EACH(rt, fn)                                                             \
    for (size_t k_ = 0; k_ < NMODULES; k_++)                                     \
        if (modules[k_]->fn) modules[k_]->fn(rt)
#define EACH_REVERSE(rt, fn)                                                     \
    for (size_t k_ = NMODULES; k_-- > 0;)                                        \
        if (modules[k_]->fn) modules[k_]->fn(rt)

/* ---- fork() ------------------------------------------------------------------ */

/* The child has one thread, the forking one, so at most one runtime lives
 * on there, that thread's, and it keeps its run.  libev's loop shares its
 * kernel state (the epoll set, the wake-up fd) with the parent's until told
 * of the fork: ev_loop_fork makes the child's next iteration create its
 * own.  pthread_atfork handlers, rather than a getpid() check per
 * iteration: they run before the child runs any code, cost nothing until a
 * fork, and reset mutexes that other threads held. */
static void fork_prepare(void) {
    if (rill__self) EACH(rill__self, fork_prepare);
}

static void fork_parent(void) {
    if (rill__self) EACH_REVERSE(rill__self, fork_parent);
}

static void fork_child(void) {
    rill__rt *rt = rill__self;
    if (!rt) return;
    if (rt->loop) ev_loop_fork(rt->loop);
    EACH_REVERSE(rt, fork_child);
}

/* ---- a runtime left over by generators ------------------------------------------ */

/* A bare runtime left to a thread by generators that were never freed: a
 * small struct (the generators themselves are their owner's leak).  Freed
 * when the thread exits, or at process exit for the thread calling exit. */
static pthread_key_t bare_key;

static void rt_free(rill__rt *rt);

static void bare_thread_exit(void *rt) {
    rill__self = rt;
    rt_free(rt);
}

static void bare_process_exit(void) {
    rill__rt *rt = rill__self;
    if (rt && rt->bare && rt->current == &rt->host) rt_free(rt);
}

/* Once per process, with the first runtime: before it, no run exists that
 * a fork could split, and no runtime is left over. */
static void process_hooks(void) {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    (void)pthread_key_create(&bare_key, bare_thread_exit);
    atexit(bare_process_exit);
}

/* ---- lifetime ---------------------------------------------------------------------- */

/* Runtimes alive in the process, for tests (runtime/alloc.h). */
static atomic_long live_runtimes;

long rill__runtime_count(void) { return atomic_load(&live_runtimes); }

static rill__rt *rt_new(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, process_hooks);
    rill__rt *rt = rill__calloc(1, sizeof *rt);
    if (!rt) return NULL;
    atomic_fetch_add(&live_runtimes, 1);
    rill__sched_init(rt);
    rt->bare = true;
    rill__self = rt;
    EACH(rt, init);
    /* Made bare (a generator outside any run): freed at the thread's exit
     * if its generators never are. */
    pthread_setspecific(bare_key, rt);
    return rt;
}

static void rt_free(rill__rt *rt) {
    pthread_setspecific(bare_key, NULL);
    EACH_REVERSE(rt, term);
    if (rill__self == rt) rill__self = NULL;
    free(rt);
    atomic_fetch_sub(&live_runtimes, 1);
}

rill__rt *rill__runtime_bare(void) { return rill__self ? rill__self : rt_new(); }

void rill__runtime_bare_release(void) {
    rill__rt *rt = rill__self;
    if (rt && rt->bare && !rt->gens.n && rt->current == &rt->host) rt_free(rt);
}

/* A run of this thread's runtime on `loop` (made if need be: or the bare
 * one that generators made outside any run, which keep working inside).
 * NULL with *err set: -EBUSY if the thread runs one already, -ENOMEM. */
static rill__rt *run_begin(struct ev_loop *loop, bool own, bool attached, int *err) {
    static atomic_uint_fast64_t runs;
    rill__rt *rt = rill__self;
    if (rt && (!rt->bare || rt->current != &rt->host)) {
        *err = -EBUSY;
        return NULL;
    }
    if (!rt && !(rt = rt_new())) {
        *err = -ENOMEM;
        return NULL;
    }
    if (rill__stack_signals(rt) != 0) {
        rill__runtime_bare_release();
        *err = -ENOMEM;
        return NULL;
    }
    pthread_setspecific(bare_key, NULL); /* a run again: not left over */
    rt->loop = loop;
    rt->own_loop = own;
    rt->bare = false;
    rt->run = (rill__run){.id = ++runs};
    rill__sched_start(rt, attached);
    return rt;
}

/* The run is over and its loop goes; generators still allocated keep a
 * bare runtime, with only what they need. */
static void run_end(rill__rt *rt) {
    EACH_REVERSE(rt, run_end);
    rill__sched_run_end(rt);
    if (rt->own_loop) ev_loop_destroy(rt->loop);
    rt->loop = NULL;
    rt->own_loop = rt->attached = false;
    rt->run = (rill__run){0};
    rt->bare = true;
    if (!rt->gens.n) {
        rt_free(rt);
        return;
    }
    pthread_setspecific(bare_key, rt);
}

/* ---- rill_run and embedding ----------------------------------------------------------- */

int rill_run(rill_fn *main, void *arg) {
    if (!main) return -EINVAL;
    if (rill__self && !rill__self->bare) return -EBUSY;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop) return -ENOMEM;
    int err = 0;
    rill__rt *rt = run_begin(loop, true, false, &err);
    if (!rt) {
        ev_loop_destroy(loop);
        return err;
    }
    rill_task *t = rill__task_new(main, arg, &(rill_opts){.name = "main"});
    if (!t) {
        run_end(rt);
        return -ENOMEM;
    }
    rt->run.main = &t->fiber;
    rill__sched_drive(rt, &t->fiber);
    int status = rt->run.deadlocked ? -EDEADLK : t->status;
    rt->run.main = NULL;
    rill__task_free(t);
    run_end(rt);
    return status;
}

int rill_attach(struct ev_loop *loop) {
    if (!loop) return -EINVAL;
    int err = 0;
    return run_begin(loop, false, true, &err) ? 0 : err;
}

int rill_detach_loop(void) {
    rill__rt *rt = rill__self;
    if (!rt || !rt->attached) return -EINVAL;
    if (rt->current != &rt->host) return -EPERM;
    rill__sched_stop(rt); /* from here on rill drives the loop itself */
    rill__sched_cancel_all(rt);
    rill__sched_drive(rt, NULL);
    int rc = rt->run.deadlocked ? -EDEADLK : 0;
    run_end(rt);
    return rc;
}
