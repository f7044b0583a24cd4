/*
 * rill internals: the scheduler's rules, and the structs behind them.
 *
 * Who switches to whom
 * --------------------
 * Each OS thread has at most one runtime (rill__rt).  Its `host` is the
 * thread's own stack: the code that called rill_run(), or the libev callback
 * of an attached loop.  Only two kinds of switch exist:
 *   - a fiber that gives up the CPU (blocks, yields, or ends) switches
 *     directly to the next fiber of the run queue, or to the host when the
 *     queue is empty or the hand-off budget is spent (rill__reschedule);
 *   - the host switches to the head of the run queue (rill__run_ready).
 * The host alone enters libev (ev_run); libev callbacks never switch, they
 * only make fibers ready.  So every fiber stack is suspended at exactly one
 * point: inside rill__switch().
 *
 * Fiber states and the lists a fiber is on
 * ----------------------------------------
 *   NEW      being created; on no list (becomes READY before its creator
 *            returns)
 *   READY    on rt->runq (via fiber.node); fiber.wait == NULL
 *   RUNNING  on no queue; rt->current == fiber
 *   BLOCKED  fiber.wait points to its rill__waiter, which is on exactly the
 *            wait list (or timer, or fd watcher) that will wake it
 *   DONE     on no queue; its stack is released by the next fiber to run
 * Every fiber that has not ended is also on rt->all (fiber.all_node).
 * Allowed transitions: NEW->READY, READY->RUNNING (switched to),
 * RUNNING->READY (yield), RUNNING->BLOCKED (rill__suspend), BLOCKED->READY
 * (rill__wake: by the waker, or by rill__interrupt on cancellation or
 * deadlock), RUNNING->DONE; and BLOCKED->DONE, without running again, only
 * when a deadlock persists and its fibers are abandoned.  Anything else is a
 * broken invariant and aborts with a message (RILL_ASSERT).
 *
 * One wait mechanism
 * ------------------
 * Every blocking primitive is: rill__checkpoint() (the one cancellation
 * check), register a rill__waiter with an `unhook` that undoes the
 * registration, then rill__suspend().  A waker removes the waiter from its
 * list and calls rill__wake(); a cancellation calls rill__interrupt(), which
 * calls unhook and wakes with -ECANCELED.  Whichever comes first wins: once
 * woken, a fiber is READY and no longer interruptible, so a hand-off is never
 * lost and a cancelled wait leaves nothing behind.
 *
 * Scopes
 * ------
 * A fiber's scopes form a chain through rill_scope.parent, innermost first
 * (fiber.scope); a generator's root scope hangs below its consumer's chain
 * while the body runs.  A scope that user code entered lives in that code's
 * memory, usually a frame: nothing may read it once the frame has returned.
 * So every call that reads the chain (rill__checkpoint, the scope calls,
 * resuming a generator, rill_yield) first judges each scope by address
 * against RILL__CALLER_SP(), the stack pointer of the user code calling
 * rill (rill__scope_chain_check): a recorded scope below it is reported and
 * the process aborts, before the walk follows its `parent`.  Recorded means
 * in rt->scopes, the table of open scopes entered with rill_scope_enter or
 * opened by rill_group_init in user code: it answers "is s open, and whose"
 * without reading s.  rill's own scopes (task and generator roots, groups in
 * rill's frames) are not recorded and never judged.  RILL__CALLER_SP() is
 * exact only where it is written in the public function itself or in code
 * always inlined into it (RILL__INLINE): blocking helpers that check are
 * inlined for that reason.
 */
#ifndef RILL_INTERNAL_H
#define RILL_INTERNAL_H

#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include "rill.h"

/* ---- checks that never compile out ------------------------------------- */

#define RILL_ASSERT(cond, why)                                               \
    do {                                                                     \
        if (!(cond)) rill__panic(__FILE__, __LINE__, #cond, why);            \
    } while (0)

_Noreturn void rill__panic(const char *file, int line, const char *cond,
                           const char *why);

#define rill__container_of(ptr, type, member)                                \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- allocation (alloc.c) --------------------------------------------------
 * Every malloc, calloc and realloc of the runtime goes through these (free
 * stays free), and every fresh stack mapping asks rill__stack_map_fails()
 * first: tests make the Nth call fail (tests/fail.h). */

void *rill__malloc(size_t n);
void *rill__calloc(size_t k, size_t n);
void *rill__realloc(void *p, size_t n);
/* Should this stack mapping fail (errno ENOMEM)? */
bool rill__stack_map_fails(void);
/* The test hooks: the nth call from now fails (0: none), or every call
 * from the nth on; calls counted and failures injected since. */
void rill__alloc_fail_at(long n);
void rill__alloc_fail_from(long n);
long rill__alloc_calls(void);
long rill__alloc_failures(void);
void rill__stack_map_fail_at(long n);
void rill__stack_map_fail_from(long n);
long rill__stack_map_calls(void);
long rill__stack_map_failures(void);

/* ---- intrusive circular lists ------------------------------------------ */

static inline void rill__list_init(rill__list *l) { l->next = l->prev = l; }
static inline bool rill__list_empty(const rill__list *l) { return l->next == l; }
static inline void rill__list_push(rill__list *l, rill__list *n) {
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}
static inline void rill__list_remove(rill__list *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}
static inline rill__list *rill__list_pop(rill__list *l) {
    rill__list *n = l->next;
    if (n == l) return NULL;
    rill__list_remove(n);
    return n;
}

/* ---- stacks (fiber.c) -------------------------------------------------- */

typedef struct rill__stack {
    char *lo, *hi;         /* usable range; the canary sits at lo */
    char *map;             /* mapping start (guard page included), NULL for
                              a slab stack */
    size_t map_len;
    size_t size;           /* usable bytes, as asked for (page-rounded) */
    unsigned vg_id;        /* valgrind stack registration */
    struct rill__stack *next_free; /* in the pool's free list */
    bool guarded;
} rill__stack;

/* ---- fibers -------------------------------------------------------------- */

typedef enum rill__state {
    RILL__NEW,      /* being created: on no list yet */
    RILL__READY,
    RILL__RUNNING,
    RILL__BLOCKED,
    RILL__DONE,
} rill__state;

struct rill__waiter;

typedef struct rill__fiber {
    ucontext_t ctx;
    rill__stack *stack;        /* NULL for the host */
    rill__list node;           /* on rt->runq while READY */
    rill__list all_node;       /* on rt->all until DONE */
    rill__state state;
    bool is_task;              /* the fiber is the first member of a rill_task */
    /* Generators: a consumer runs a generator's body "on its behalf".  While
     * it does, consumer->delegate is the generator's fiber and that fiber's
     * delegator is the consumer (chains nest: a generator consuming another).
     * Cancellation reaches the fiber at the end of the delegate chain. */
    struct rill__fiber *delegate;
    struct rill__fiber *delegator;
    struct rill__waiter *wait; /* while BLOCKED */
    rill_scope *scope;         /* innermost open scope */
    unsigned nentered;         /* its entries in rt->scopes */
    unsigned busy_groups;      /* groups on this stack with live children */
    void (*entry)(struct rill__fiber *); /* first code run on the stack */
    const char *name;
    void *tsan;                /* ThreadSanitizer's context for the fiber */
    /* AddressSanitizer's view of this fiber's stack. */
    void *asan_fake;
    const void *asan_bottom;
    size_t asan_size;
} rill__fiber;

/* ---- waiting (wait.c) ---------------------------------------------------- */

typedef struct rill__waiter {
    rill__list node;           /* on a wait list, when the wait uses one */
    rill__fiber *fiber;
    void (*unhook)(struct rill__waiter *); /* undo the registration */
    const char *what;          /* for rill_dump: "sleep", "join", ... */
    const char *on;            /* for rill_dump: the object's name, or NULL */
    int result;                /* what rill__suspend returns */
    void *data;                /* a hand-off's buffer (queue items) */
    bool uncancellable;        /* only a deadlock may interrupt it */
} rill__waiter;

/* Inlined into every public function that looks at the caller's scopes, so
 * that RILL__CALLER_SP() there is the stack pointer of the user's code. */
#define RILL__INLINE static inline __attribute__((always_inline))

/* The stack pointer of the code that called the public function this is
 * written in (its canonical frame address).  Every frame of the calling
 * fiber below it has returned, as far as that code is concerned. */
#define RILL__CALLER_SP() ((const char *)__builtin_dwarf_cfa())

/* The one cancellation check: 0, -EPERM outside a fiber, -ECANCELED while
 * the caller's scopes are cancelled.  It also aborts if the caller's chain
 * holds a scope whose frame has returned (rill__scope_chain_check).  A
 * macro, so that RILL__CALLER_SP() is taken in the public function. */
#define rill__checkpoint() rill__checkpoint_below(RILL__CALLER_SP())
int rill__checkpoint_below(const char *caller_sp);
/* Is this fiber cancelled right now (its scope chain, up to a shield)? */
bool rill__fiber_cancelled(const rill__fiber *f);
/* Block the running fiber on w (already registered).  Returns w->result. */
int rill__suspend(rill__waiter *w);
/* Make w's fiber READY with result; the caller already unlinked w. */
void rill__wake(rill__waiter *w, int result);
/* Cancel f's wait if it is BLOCKED and cancellable: unhook, wake with err. */
void rill__interrupt(rill__fiber *f, int err);
/* Interrupt f if it is blocked and now cancelled. */
void rill__recheck(rill__fiber *f);
void rill__waiter_unlink(rill__waiter *w); /* the unhook of wait lists */
/* A FIFO wait list: block on it (checkpoint included), wake its head/all.
 * Inlined, so that its checkpoint judges scopes against the public
 * function's caller. */
RILL__INLINE int rill__waitq_wait(rill__list *q, rill__waiter *w, const char *what,
                                  const char *on) {
    int rc = rill__checkpoint();
    if (rc) return rc;
    w->unhook = rill__waiter_unlink;
    w->what = what;
    w->on = on;
    w->uncancellable = false;
    rill__list_push(q, &w->node);
    return rill__suspend(w);
}
bool rill__waitq_wake_one(rill__list *q, int result);
void rill__waitq_wake_all(rill__list *q, int result);

/* ---- timers (timer.c): a binary heap, FIFO among equal deadlines ---------- */

/* 0, or -ENOMEM (the heap could not grow): t is not armed then. */
int rill__timer_arm(rill__timer *t, double at, void (*fire)(rill__timer *));
void rill__timer_disarm(rill__timer *t);
static inline bool rill__timer_armed(const rill__timer *t) { return t->slot != 0; }
/* Fire every timer due at `now`.  Returns how many fired. */
int rill__timers_run(double now);
/* The earliest deadline armed, or INFINITY. */
double rill__timers_next(void);
void rill__timers_free(void);
/* Take out of the heap every timer pred() says (without writing to them). */
void rill__timers_disarm_if(bool (*pred)(rill__timer *t, void *ctx), void *ctx);

/* ---- tasks (task.c) ----------------------------------------------------- */

struct rill_task {
    rill__fiber fiber;         /* first: a fiber of a task is its task */
    uint32_t magic;            /* RILL__TASK_LIVE from spawn until freed */
    rill_scope root;           /* the body runs inside it */
    rill_fn *fn;
    void *arg;
    int status;
    int index;                 /* spawn order within its group */
    rill__list joiners;        /* the fiber in rill_join, if any */
    rill_group *group;         /* owning group, or NULL */
    rill__list link;           /* a group's child: on group->children while it
                                  runs.  Any other task: on rt->unjoined from
                                  its end until joined or detached */
    bool detached, ended;
    bool joining;              /* a fiber is inside rill_join(t) */
    struct rill__observer *observer; /* an as_completed waiting for t to end
                                  (completed.c): join and detach are refused */
    char name_buf[32];
    struct rill_task *next_free; /* in the runtime's cache of task structs */
};

#define RILL__TASK_LIVE 0x7a5c0a11u
#define RILL__TASK_FREED 0x7a5c0dedu

rill_task *rill__task_new(rill_fn *fn, void *arg, const rill_opts *o);
void rill__task_free(rill_task *t);
/* Abort if f's body returned while a group on its stack has live children. */
void rill__check_groups_waited(const rill__fiber *f);
/* Free the ended tasks nobody joined (rill_run's end). */
void rill__tasks_free_unjoined(void);

/* ---- as_completed (completed.c) ----------------------------------------- */

/* t->observer's t has ended: queue it for the consumer, wake the waiter. */
void rill__observer_ended(rill_task *t);
/* t is freed while observed (by rill_run's end, or a deadlock's
 * abandonment): the observer lets go of it. */
void rill__observer_forget(rill_task *t);

/* ---- the runtime (sched.c) -------------------------------------------- */

/* The open scopes entered with rill_scope_enter, by address (scope.c). */
typedef struct rill__scope_slot {
    const rill_scope *scope;   /* NULL: a free slot */
    rill__fiber *fiber;        /* the fiber that entered it */
    const void *where;         /* the code that entered it */
    bool group;                /* a task group's body (rill_group_init) */
} rill__scope_slot;

typedef struct rill__scope_table {
    rill__scope_slot *slots;   /* cap slots (a power of two), at most half used */
    size_t cap, len;
} rill__scope_table;

typedef struct rill__rt {
    struct ev_loop *loop;
    bool own_loop;             /* created by rill_run: destroyed with rt */
    bool attached;             /* fibers run from a foreign loop's watchers */
    rill__fiber host;          /* the thread's own stack */
    rill__fiber *current;      /* RUNNING fiber, or &host */
    rill__fiber *dead;         /* DONE fiber whose stack awaits release */
    rill__fiber *switch_from;  /* the fiber the last switch left */
    rill__list runq;           /* READY fibers, FIFO */
    rill__list all;            /* every fiber not yet DONE */
    rill__list unjoined;       /* ended tasks nobody joined yet (task.link) */
    size_t nfibers;            /* length of `all` */
    unsigned budget;           /* hand-offs left before the host polls */
    bool deadlocked;           /* a deadlock was found: rill_run says so */
    bool shutting_down;        /* main has ended: new tasks start cancelled */
    bool abandoned;            /* fibers were abandoned: no generator shutdown */
    uint64_t ended_count;      /* fibers ended so far: progress, for deadlocks */
    uint64_t ended_at_deadlock; /* ended_count when the last deadlock was found */
    uint64_t spawned;          /* for default names */
    rill_task *main;           /* rill_run's main task */
    bool bare;                 /* no loop: made for generators outside rill_run */
    uint64_t run_id;           /* which rill_run/rill_attach: 0 while bare */
    rill__list gens;           /* every generator not yet freed (gen.node) */
    size_t ngens;
    /* Timers: heap[1..n] (slot 0 unused, so slot 0 means "not armed"). */
    rill__timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    rill__scope_table scopes;  /* scope.c */
    ev_timer wakeup;           /* armed for the heap's earliest deadline */
    double wakeup_at;
    /* Right before each poll, in every mode: fd checks (and, attached, a
     * tick of the fibers).  Embedding (rill_attach): check and idle. */
    ev_prepare prepare;
    ev_check check;
    ev_idle idle;
    /* Caches, so that spawning neither maps nor allocates. */
    rill_task *free_tasks;
    size_t nfree_tasks;
    /* Other threads (remote.c): the handle they post to, the jobs of this
     * run on the pool, and whether libev counts them as keeping it alive. */
    struct rill_runtime *remote;
    unsigned pending_jobs;     /* jobs a fiber waits for */
    unsigned abandoned_jobs;   /* detached jobs whose callers gave up: the
                                  run ends only after they have */
    bool remote_refd;
    /* File-descriptor waits (wait.c): each fd's waiters (fd_slots[fd]) and
     * the fds libev will hand to the kernel at its next poll (fd_dirty). */
    struct rill__fd_slot *fd_slots;
    int *fd_dirty;
    size_t fd_cap, fd_ndirty;
    /* Alternate signal stack for the overflow handler. */
    void *altstack;
    stack_t old_altstack;
} rill__rt;

extern _Thread_local rill__rt *rill__self;

/* The thread's runtime, made bare (no loop) if there is none, for
 * generators used outside rill_run; and its release when the last one goes. */
rill__rt *rill__bare_runtime(void);
void rill__bare_release(void);
/* Give the CPU away from the running fiber, which is already READY (on the
 * run queue), BLOCKED or DONE. */
void rill__reschedule(void);
/* Make f READY at the tail of the run queue. */
void rill__make_ready(rill__fiber *f);
/* A DONE fiber's stack was released: free what else it owns (task.c). */
void rill__fiber_reaped(rill__fiber *f);
/* Register/unregister a fiber in rt->all. */
void rill__fiber_track(rill__fiber *f);
void rill__fiber_untrack(rill__fiber *f);
/* Fire due timers now (also re-arms libev's wake-up). */
void rill__timers_poll(void);
/* Before libev polls (wait.c): wake, with the error the kernel would give
 * libev, the waiters of every fd closed (or opened O_PATH) since libev was
 * last told about it.  Returns whether it woke any.  Runs from the run's
 * prepare watcher. */
bool rill__fds_recheck(rill__rt *rt);
/* In a forked child: libev hands every watched fd to the kernel afresh, and
 * the child may close some first (the parent's): check them all. */
void rill__fds_after_fork(rill__rt *rt);
void rill__fds_free(rill__rt *rt);

/* ---- other threads (remote.c, pool.c) ------------------------------------ */

/* Something another thread hands to a run: completed pool jobs and calls.
 * Posted under the handle's mutex; run(m) is called on the run's thread. */
typedef struct rill__msg {
    rill__list node;
    bool (*run)(struct rill__msg *m); /* false: no memory yet, try later */
} rill__msg;

/* The run's handle, made on first use (NULL if out of memory). */
struct rill_runtime *rill__remote_of(rill__rt *rt);
/* Take / drop a reference to the handle's memory (any thread). */
void rill__remote_ref(struct rill_runtime *h);
void rill__remote_unref(struct rill_runtime *h);
/* Hand m to h's run and wake its loop.  false if the run has ended. */
bool rill__remote_post(struct rill_runtime *h, rill__msg *m);
/* Make libev's count of active watchers agree with what may still wake the
 * run from outside: pending and abandoned pool jobs, and handles held by
 * other threads. */
void rill__remote_keepalive(rill__rt *rt);
/* The run has no fiber left: refuse further calls.  Returns true if calls
 * accepted meanwhile were just started (the run must go on). */
bool rill__remote_close(rill__rt *rt);
/* The run is over: stop the watcher and drop the run's reference. */
void rill__remote_end(rill__rt *rt);
/* fork(): the forking thread's handle is kept whole across it, and starts
 * afresh in the child (sched.c's pthread_atfork handlers). */
void rill__remote_fork_prepare(rill__rt *rt);
void rill__remote_fork_parent(rill__rt *rt);
void rill__remote_after_fork(rill__rt *rt);

/* ---- fibers and stacks (fiber.c) ---------------------------------------- */

size_t rill__default_stack_size(void);
/* Create f's context on a new stack of `size` bytes; f->entry(f) runs first. */
int rill__fiber_init(rill__fiber *f, size_t size);
/* Return f's stack to the pool (f must not be running on it). */
void rill__fiber_release(rill__fiber *f);
/* Switch from the running fiber `from` to `to`.  When from->state is DONE,
 * from's stack is handed to rt->dead and released by whoever runs next. */
void rill__switch(rill__fiber *from, rill__fiber *to);
/* Per-thread set-up of the overflow handler (its alternate signal stack),
 * made while fibers may run; undone by rill__signals_end. */
int rill__signals_begin(rill__rt *rt);
void rill__signals_end(rill__rt *rt);
/* Give this thread's pooled stacks to the process (the run is over), and
 * free what is left once no fiber holds a stack (slabs included). */
void rill__stacks_trim(void);
void rill__stacks_free(void);

/* ---- scopes (scope.c) ---------------------------------------------------- */

void rill__scope_open(rill_scope *s, rill__fiber *f, double deadline);
/* Close s wherever it is in its fiber's chain; the scopes inside it stay
 * open, now under s's parent. */
void rill__scope_unlink(rill_scope *s);
/* rill_scope_cancel without the check that a user entered s. */
void rill__scope_cancel(rill_scope *s);
/* f's body is gone (returned with scopes open, or abandoned): close every
 * scope it entered (those on its stack without reading them), and take out
 * every timer that lives on its stack. */
void rill__scopes_drop(rill__fiber *f);
/* f's body returned with scopes open above base (its root scope): close
 * them all (rill__scopes_drop), and warn once per process. */
void rill__scopes_close_leftover(rill__fiber *f, rill_scope *base);
/* A generator's body suspends at a yield / is resumed: the deadlines of its
 * scopes (from f's innermost up to stop, its root) are disarmed meanwhile,
 * since they could wake nobody; on resume, one that passed has fired. */
void rill__scopes_suspend(rill__fiber *f, const rill_scope *stop);
void rill__scopes_resume(rill__fiber *f, const rill_scope *stop);
/* Mark s's deadline as fired (and its timer disarmed). */
void rill__scope_expire(rill_scope *s);
void rill__scopes_free(rill__rt *rt);
static inline bool rill__scope_is_cancelled(const rill_scope *s) {
    return s->cancel_called || s->deadline_fired;
}
/* Record s (entered by user code at `where`) in the table of open scopes,
 * which judges it when it lies below the caller; false if out of memory.
 * Forget it again (no effect if it is not there). */
bool rill__scope_record(const rill_scope *s, rill__fiber *f, const void *where, bool group);
void rill__scope_forget(const rill_scope *s);
/* Does s, on f's chain, lie on f's own stack below caller_sp?  Decided by
 * address: *s is not read. */
static inline bool rill__scope_is_below(const rill__fiber *f, const rill_scope *s,
                                        const char *caller_sp) {
    const char *p = (const char *)s;
    return f->stack && p < caller_sp && p >= f->stack->lo;
}
/* s lies below the caller: if user code entered it, the frame that held it
 * has returned: report it (naming f and where s was entered) and abort. */
void rill__scope_check_below(const rill__fiber *f, const rill_scope *s);
/* Abort if f's chain holds a scope left open by a frame that returned.
 * Each scope is judged before it is read, so the walk never follows a
 * pointer out of a dead frame. */
static inline void rill__scope_chain_check(const rill__fiber *f, const char *caller_sp) {
    for (const rill_scope *s = f->scope; s; s = s->parent)
        if (rill__scope_is_below(f, s, caller_sp)) rill__scope_check_below(f, s);
}

/* ---- generators (gen.c) ------------------------------------------------- */

typedef enum rill__gen_state {
    RILL__GEN_CREATED,         /* body not started */
    RILL__GEN_SUSPENDED,       /* at a rill_yield */
    RILL__GEN_RUNNING,         /* body running for a consumer */
    RILL__GEN_FINISHED,        /* body returned (or never will run) */
} rill__gen_state;

struct rill_gen {
    rill__fiber fiber;         /* its own stack; not a task, not on rt->all */
    uint32_t magic;
    rill__gen_state state;
    rill_gen_fn *body;
    void *arg;
    const struct rill__gen_hooks *hooks; /* adapters: their sources, or NULL */
    rill_scope root;           /* outermost scope of the body; its parent is
                                  the consumer's innermost scope while running */
    rill__waiter consumer_wait; /* the consumer is blocked on it meanwhile */
    void *value;               /* last yielded */
    void *sent;                /* last sent */
    int resume_with;           /* what the suspended rill_yield returns */
    int result;                /* what the consumer's call returns */
    int status;                /* rill_gen_status */
    bool closing;              /* -EPIPE delivered: another yield is a bug */
    bool started;
    bool owned;                /* an adapter's source: the adapter frees it */
    uint64_t run_id;           /* the run it first ran in: that run closes it */
    rill__list node;           /* on rt->gens while the runtime knows it */
    char name_buf[32];
};

/* What an adapter does, beyond its body, with the sources its arg owns. */
typedef struct rill__gen_hooks {
    void (*close)(void *arg);  /* closed (or thrown into) before its body ran */
    void (*free)(void *arg);   /* freed: free arg and the sources */
} rill__gen_hooks;

/* Create a generator with hooks (NULL for none). */
rill_gen *rill__gen_new(rill_gen_fn *body, void *arg, const rill_opts *o,
                        const rill__gen_hooks *hooks);
/* Close every suspended generator (a task body, for rill_run's end). */
int rill__gens_shutdown(void *unused);
bool rill__gens_suspended(void);
/* A consumer's delegate chain is being abandoned (a deadlock that persists):
 * finish every generator on it, releasing their stacks. */
void rill__gens_abandon_chain(rill__fiber *consumer);
/* In a body: return err (< 0) from the consumer's call and stay suspended
 * (a wait that was cancelled, not an end).  Returns as rill_yield. */
int rill__yield_error(rill_gen *g, int err);
/* Free a generator whatever its owner (adapters freeing their sources). */
void rill__gen_free(rill_gen *g);
/* Fiber at the end of f's delegate chain. */
static inline rill__fiber *rill__leaf(rill__fiber *f) {
    while (f->delegate) f = f->delegate;
    return f;
}
/* Fiber at the start of f's delegator chain (a task, or the host). */
static inline rill__fiber *rill__root(rill__fiber *f) {
    while (f->delegator) f = f->delegator;
    return f;
}

/* ---- groups (group.c) ---------------------------------------------------- */

void rill__group_child_ended(rill_task *t);
/* rill_group_init for rill's own groups, which live in rill's frames. */
void rill__group_init(rill_group *g);

#endif
