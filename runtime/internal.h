/*
 * rill internals: the scheduler's rules, the runtime's parts, and the
 * structs behind them.  docs/ARCHITECTURE.md draws the modules and how they
 * depend on each other; this header states the rules the code checks.
 *
 * Who switches to whom
 * --------------------
 * Each OS thread has at most one runtime (rill__rt).  Its `host` is the
 * thread's own stack: the code that called rill_run(), or, attached to a
 * foreign loop, that loop's prepare and check callbacks.  Only three kinds
 * of switch exist:
 *   - a fiber that gives up the CPU (blocks, yields, or ends) switches
 *     directly to the next fiber of the run queue, or to the host when the
 *     queue is empty or the hand-off budget is spent (rill__sched_reschedule);
 *   - the host switches to the head of the run queue (run_ready in sched.c),
 *     from rill_run's loop or, attached, from those two callbacks;
 *   - a consumer and the generator it resumes switch to each other directly
 *     (gen.c), the one BLOCKED while the other runs.
 * Every other libev callback only makes fibers ready: it never switches.
 * So every suspended fiber stack is suspended at one point: inside
 * rill__fiber_switch().
 *
 * Fiber states and the lists a fiber is on
 * ----------------------------------------
 *   NEW      being created; on no list
 *   READY    on rt->runq (via fiber.node); fiber.wait == NULL
 *   RUNNING  on no queue; rt->current == fiber
 *   BLOCKED  fiber.wait points to its rill__waiter: on the wait list (or
 *            timer, or fd watcher) that will wake it, or, for a generator
 *            (suspended, or not started) and its consumer, on none
 *   DONE     on no queue; its stack is released by the next fiber to run
 * A task's fiber is on rt->all from NEW until DONE (rill__sched_track);
 * generators are on rt->gens.list instead, and count as no live fiber.
 * Every state change goes through rill__sched_set_state(), which checks it
 * against this table (anything else aborts with a message):
 *   NEW->READY       a task is spawned
 *   NEW->BLOCKED     a generator is created (it waits for its first resume)
 *   READY->RUNNING   switched to
 *   RUNNING->READY   yields (rill_yield_now)
 *   RUNNING->BLOCKED blocks (rill__sched_block), or suspends at a rill_yield,
 *                    or resumes a generator (the consumer)
 *   BLOCKED->READY   woken (rill__sched_wake: by its waker, or by rill__sched_interrupt
 *                    on cancellation or deadlock)
 *   BLOCKED->RUNNING the direct switch between a consumer and its generator
 *   RUNNING->DONE    its body returned
 *   BLOCKED->DONE    ended without running again: a deadlock that persists
 *                    (abandoned), or a generator finished before it started
 *
 * One wait mechanism
 * ------------------
 * Every blocking primitive is: rill__scope_checkpoint() (the one cancellation
 * check), register a rill__waiter with an `unhook` that undoes the
 * registration, then rill__sched_block().  A waker removes the waiter from its
 * list and calls rill__sched_wake(); a cancellation calls rill__sched_interrupt(), which
 * calls unhook and wakes with -ECANCELED.  Whichever comes first wins: once
 * woken, a fiber is READY and no longer interruptible, so a hand-off is never
 * lost and a cancelled wait leaves nothing behind.
 *
 * What keeps a run alive
 * ----------------------
 * Fibers on rt->all, ready or waiting on something libev watches (a timer,
 * an fd, a user's watcher); and rt->keepalive, the one count of what may
 * still wake the run from another thread (a pool job a fiber waits for or
 * gave up on, the handles other threads hold).  libev counts keepalive > 0
 * as one active watcher, so a run waiting on those is not deadlocked; once
 * no fiber is left, the run goes on only while idle hooks start work
 * (calls that other threads sent, generators left suspended) or keepalive
 * is not 0 (jobs whose callers gave up), then ends with keepalive at 0.
 *
 * Modules and their parts
 * -----------------------
 * The runtime is the scheduler's own fields followed by one part per
 * module (rill__rt below), each owned by one file, which alone writes it,
 * and made, ended and freed by that file's rill__module functions, which
 * runtime.c calls in one order.  A run's own state is one more part
 * (rill__run), reset as a whole when the run begins and ends.  The
 * scheduler knows fibers, the run queue, timers and libev; the rest plugs
 * in through a fiber's ops (tasks, generators), idle hooks, before-poll
 * hooks and rt->keepalive.
 *
 * Scopes
 * ------
 * A fiber's scopes form a chain through rill_scope.parent, innermost first
 * (fiber.scope); a generator's root scope hangs below its consumer's chain
 * while the body runs.  A scope that user code entered lives in that code's
 * memory, usually a frame: nothing may read it once the frame has returned.
 * So every call that reads the chain (rill__scope_checkpoint, the scope calls,
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
#include <string.h>

#include "rill.h"
#include "switch.h"

/* ---- checks that never compile out ------------------------------------- */

#define RILL_ASSERT(cond, why)                                               \
    do {                                                                     \
        if (!(cond)) rill__error_panic(__FILE__, __LINE__, #cond, why);            \
    } while (0)

_Noreturn void rill__error_panic(const char *file, int line, const char *cond,
                           const char *why);

#define rill__container_of(ptr, type, member)                                \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Inlined into every public function that looks at the caller's scopes, so
 * that RILL__CALLER_SP() there is the stack pointer of the user's code. */
#define RILL__INLINE static inline __attribute__((always_inline))

/* The stack pointer of the code that called the public function this is
 * written in (its canonical frame address).  Every frame of the calling
 * fiber below it has returned, as far as that code is concerned. */
#define RILL__CALLER_SP() ((const char *)__builtin_dwarf_cfa())

/* ---- allocation (alloc.c) --------------------------------------------------
 * Every malloc, calloc and realloc of the runtime goes through these (free
 * stays free), and every fresh stack mapping asks rill__alloc_stack_fails()
 * first: tests make the Nth call fail (runtime/alloc.h). */

void *rill__malloc(size_t n);
void *rill__calloc(size_t k, size_t n);
void *rill__realloc(void *p, size_t n);
/* Should this stack mapping fail (errno ENOMEM)? */
bool rill__alloc_stack_fails(void);
/* The test hooks that make them fail are declared in alloc.h. */

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
/* Insert n at l's head (rill__list_push inserts at its tail). */
static inline void rill__list_push_front(rill__list *l, rill__list *n) {
    rill__list_push(l->next, n);
}
static inline rill__list *rill__list_pop(rill__list *l) {
    rill__list *n = l->next;
    if (n == l) return NULL;
    rill__list_remove(n);
    return n;
}
/* For each node n of list l, head to tail.  The body must not unlink n (to
 * empty a list, pop it instead). */
#define rill__list_each(n, l)                                                \
    for (rill__list *n = (l)->next; n != (l); n = n->next)

/* ---- misuse ------------------------------------------------------------- */

/* Is p an object of its kind: not NULL, and its `magic` field is `want`
 * (the value its kind stores while the object is usable). */
#define rill__valid(p, want) ((p) && (p)->magic == (want))
/* The same, for calls that report misuse through errno: false, with errno
 * set to EINVAL, when p is not valid. */
#define rill__valid_or_einval(p, want)                                       \
    (rill__valid(p, want) || (errno = EINVAL, false))

/* ---- default names (tasks, generators) ------------------------------------ */

/* memset(p, 0, n) in 64-byte pieces: GCC zeroes a known size above 64
 * bytes with `rep stosq`, whose start-up costs more than the rest of a
 * small struct's clearing (a task's, at every spawn). */
static inline void rill__zero(void *p, size_t n) {
    char *c = p;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) memset(c + i, 0, 64);
    memset(c + i, 0, n - i);
}

/* A count kept in decimal, for default names ("task-12"): counted up in
 * place, since a division per digit at every spawn cost more than the
 * rest of naming. */
typedef struct rill__name_count {
    char digits[20];           /* most significant first; UINT64_MAX has 20 */
    uint8_t len;               /* 0: the count is 0 */
} rill__name_count;

/* Count one more, and write "<prefix><count>" into buf (len bytes,
 * truncated, always terminated). */
static inline void rill__default_name(char *buf, size_t len, const char *prefix,
                                      rill__name_count *c) {
    int k = c->len - 1;
    while (k >= 0 && c->digits[k] == '9') c->digits[k--] = '0';
    if (k >= 0) {
        c->digits[k]++;
    } else if (c->len < sizeof c->digits) { /* 9...9 + 1: one digit more */
        memmove(c->digits + 1, c->digits, c->len++);
        c->digits[0] = '1';
    }
    if (!len) return;
    size_t i = 0;
    for (const char *p = prefix; *p && i + 1 < len; p++) buf[i++] = *p;
    for (unsigned d = 0; d < c->len && i + 1 < len; d++) buf[i++] = c->digits[d];
    buf[i] = 0;
}

/* ---- stacks (stack.c) -------------------------------------------------- */

typedef struct rill__stack {
    char *lo, *hi;         /* usable range */
    char *guard;           /* its guard page (just below lo), NULL when it has
                              none: then a canary sits at lo */
    struct rill__slab *slab; /* carved from it, or NULL: a mapping of its own
                              (from guard, map_len bytes) */
    size_t map_len;
    size_t size;           /* usable bytes, as asked for (page-rounded) */
    struct rill__stack *next_free; /* in a pool's or the stash's free list
                              (a slab lists its free slots by number) */
    unsigned vg_id;        /* valgrind stack registration */
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
struct rill__fiber;

/* What kind of fiber it is: how the scheduler starts, ends and abandons
 * it, without knowing tasks from generators. */
typedef struct rill__fiber_ops {
    const char *kind;                         /* "task", "generator" */
    void (*entry)(struct rill__fiber *f);     /* first code run on its stack;
                                                 ends the fiber, never returns */
    void (*reaped)(struct rill__fiber *f);    /* DONE and its stack released:
                                                 free what else it owns */
    void (*abandon)(struct rill__fiber *f);   /* made DONE by a deadlock
                                                 that persists, it never runs
                                                 again: release its stack
                                                 and what it owns (f may be
                                                 freed) */
    void (*cancel)(struct rill__fiber *f);    /* the run's main ended: cancel
                                                 it (fibers on rt->all) */
} rill__fiber_ops;

typedef struct rill__fiber {
    rill__ctx ctx;             /* where it resumes (switch.h) */
    rill__stack *stack;        /* NULL for the host */
    const rill__fiber_ops *ops; /* NULL for the host */
    rill__list node;           /* on rt->runq while READY */
    rill__list all_node;       /* on rt->all from spawn to end (tasks) */
    rill__state state;
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
    const char *name;
    void *tsan;                /* ThreadSanitizer's context for the fiber */
    /* AddressSanitizer's view of this fiber's stack. */
    void *asan_fake;
    const void *asan_bottom;
    size_t asan_size;
} rill__fiber;

/* Fiber at the end of f's delegate chain. */
static inline rill__fiber *rill__fiber_leaf(rill__fiber *f) {
    while (f->delegate) f = f->delegate;
    return f;
}
/* Fiber at the start of f's delegator chain (a task, or the host). */
static inline rill__fiber *rill__fiber_root(rill__fiber *f) {
    while (f->delegator) f = f->delegator;
    return f;
}

/* ---- waiting --------------------------------------------------------------- */

typedef struct rill__waiter {
    rill__list node;           /* on a wait list, when the wait uses one */
    rill__fiber *fiber;
    void (*unhook)(struct rill__waiter *); /* undo the registration */
    const char *what;          /* for rill_dump: "sleep", "join", ... */
    const char *on;            /* for rill_dump: the object's name, or NULL */
    int result;                /* what rill__sched_block returns */
    void *data;                /* a hand-off's buffer (queue items) */
    bool uncancellable;        /* only a deadlock may interrupt it */
} rill__waiter;

/* ---- timers (timer.c): a 4-ary heap, FIFO among equal deadlines ----------- */

/* A timer and its key, kept together in the heap (timer.c says why). */
typedef struct rill__timer_entry {
    double at;
    uint64_t seq;
    rill__timer *timer;
} rill__timer_entry;

typedef struct rill__timers {
    rill__timer_entry *heap;   /* heap[1..len]: slot 0 means "not armed" */
    size_t len, cap;
    uint64_t seq;              /* arming order, for ties */
} rill__timers;

/* 0, or -ENOMEM (the heap could not grow): t is not armed then. */
int rill__timer_arm(rill__timer *t, double at, void (*fire)(rill__timer *));
void rill__timer_disarm(rill__timer *t);
static inline bool rill__timer_armed(const rill__timer *t) { return t->slot != 0; }
/* Fire every timer due now.  Returns how many fired. */
int rill__timer_run_due(void);
/* The earliest deadline armed, or INFINITY. */
double rill__timer_next(void);
/* Take out of the heap every timer pred() says (without writing to them). */
void rill__timer_disarm_if(bool (*pred)(rill__timer *t, void *ctx), void *ctx);

/* ---- scopes' table (scope.c) ------------------------------------------------ */

/* The open scopes entered with rill_scope_enter, by address. */
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

/* ---- the parts of the runtime, one per module ------------------------------ */

struct rill__rt;

/* A hook the scheduler calls at a point of its loop (registered once, by a
 * module's init).  Returns whether it made work: fibers ready or spawned. */
typedef struct rill__hook {
    rill__list node;
    bool (*run)(struct rill__rt *rt);
} rill__hook;

typedef struct rill__tasks {   /* task.c */
    rill__list unjoined;       /* ended tasks nobody joined yet (task.link) */
    struct rill_task *free;    /* structs kept for reuse: spawning allocates
                                  nothing once warm */
    size_t nfree;
} rill__tasks;

typedef struct rill__gens {    /* gen.c */
    rill__list list;           /* every generator not yet freed (gen.node) */
    size_t n;
    rill__hook shutdown;       /* idle: close what the run left suspended */
} rill__gens;

typedef struct rill__remote {  /* remote.c, pool.c */
    struct rill_runtime *handle; /* what other threads post to, made on
                                  first use */
    bool holders_counted;      /* other threads' handles are in keepalive */
    rill__hook close;          /* idle: refuse calls, run those accepted */
} rill__remote;

typedef struct rill__fds {     /* fd.c */
    struct rill__fd_slot *slots; /* each fd's waiters, by fd */
    int *dirty;                /* fds libev hands to the kernel next poll */
    size_t cap, ndirty;
    rill__hook recheck;        /* before each poll: closed fds */
} rill__fds;

typedef struct rill__stacks {  /* stack.c */
    void *altstack;            /* the overflow handler's stack */
    stack_t old_altstack;
    ev_timer decay;            /* gives back the stacks a pool keeps unused */
} rill__stacks;

/* What belongs to one run (a rill_run, or an attachment): reset as a
 * whole when it begins and when it ends. */
typedef struct rill__run {
    uint64_t id;               /* which run (0: none; generators remember it) */
    rill__fiber *main;         /* rill_run's main task's fiber */
    bool deadlocked;           /* a deadlock was found: rill_run says so */
    bool shutting_down;        /* main has ended: new tasks start cancelled */
    bool abandoned;            /* fibers were abandoned: no generator shutdown */
    uint64_t ended;            /* fibers ended so far: progress, for deadlocks */
    uint64_t ended_at_deadlock; /* `ended` when the last deadlock was found */
} rill__run;

typedef struct rill__rt {
    /* The scheduler's own (sched.c). */
    struct ev_loop *loop;      /* NULL while bare */
    bool own_loop;             /* made by rill_run: destroyed when it ends */
    bool attached;             /* fibers run from a foreign loop's watchers */
    bool bare;                 /* no loop: made for generators outside a run */
    rill__fiber host;          /* the thread's own stack */
    rill__fiber *current;      /* RUNNING fiber, or &host */
    rill__fiber *dead;         /* DONE fiber whose stack awaits release */
    rill__fiber *switch_from;  /* the fiber the last switch left */
    rill__list runq;           /* READY fibers, FIFO */
    rill__list all;            /* tasks' fibers not yet DONE */
    size_t nfibers;            /* length of `all` */
    unsigned budget;           /* hand-offs left before the host polls */
    unsigned keepalive;        /* see "What keeps a run alive" */
    rill__name_count spawned;  /* unnamed fibers made, for default names */
    ev_timer wakeup;           /* armed for the heap's earliest deadline */
    double wakeup_at;
    ev_prepare prepare;        /* right before each poll: poll_hooks, and,
                                  attached, a tick of the fibers */
    ev_check check;            /* attached: a tick after each poll */
    ev_idle idle;              /* attached: fibers ready, do not block */
    rill__list idle_hooks;     /* rill__hook: no fiber is left */
    rill__list poll_hooks;     /* rill__hook: libev is about to poll */
    rill__run run;
    /* The modules' parts. */
    rill__timers timers;
    rill__scope_table scopes;
    rill__tasks tasks;
    rill__gens gens;
    rill__remote remote;
    rill__fds fds;
    rill__stacks stacks;
} rill__rt;

/* The thread's runtime.  Initial-exec: read with one %fs-relative load
 * even from librill.so, where the default model calls __tls_get_addr in
 * every function that reads it (it is 8 bytes of the static TLS that
 * glibc reserves for libraries). */
#define RILL__TLS __attribute__((tls_model("initial-exec")))
extern _Thread_local rill__rt *rill__self RILL__TLS;

/* A module's part of the runtime: runtime.c calls these, in one order, for
 * every module that has them (NULL: nothing to do). */
typedef struct rill__module {
    void (*init)(rill__rt *rt);         /* the runtime is made (zeroed) */
    void (*run_end)(rill__rt *rt);      /* a run is over: free what only it
                                           needed (generators may live on) */
    void (*term)(rill__rt *rt);         /* the runtime is freed */
    void (*fork_prepare)(rill__rt *rt); /* fork(), in the forking thread */
    void (*fork_parent)(rill__rt *rt);
    void (*fork_child)(rill__rt *rt);   /* in the child, whose loop was told */
} rill__module;

extern const rill__module rill__timer_module, rill__scope_module, rill__task_module,
    rill__gen_module, rill__remote_module, rill__fd_module, rill__stack_module;

/* ---- the runtime (runtime.c) ------------------------------------------------ */

/* The thread's runtime, made bare (no loop) if there is none, for
 * generators used outside rill_run; and its release when the last one goes. */
rill__rt *rill__runtime_bare(void);
void rill__runtime_bare_release(void);

/* ---- the scheduler (sched.c) -------------------------------------------------- */

/* Change f's state, checked against the table above (sched.c holds it as
 * bits: rill__sched_allowed[from] >> to & 1). */
extern const uint8_t rill__sched_allowed[5];
static inline void rill__sched_set_state(rill__fiber *f, rill__state to) {
    RILL_ASSERT(rill__sched_allowed[f->state] >> to & 1u,
                "a fiber state change that internal.h does not allow");
    /* The lists that go with the state (internal.h). */
    RILL_ASSERT(to != RILL__READY || !f->wait, "a ready fiber still has a wait");
    RILL_ASSERT(to != RILL__BLOCKED || f->wait, "a blocked fiber has no wait");
    f->state = to;
}
/* Give the CPU away from the running fiber, which is already READY (on the
 * run queue), BLOCKED or DONE. */
void rill__sched_reschedule(void);
/* Make f READY at the tail of the run queue. */
void rill__sched_ready(rill__fiber *f);
/* Block the running fiber on w (already registered).  Returns w->result. */
int rill__sched_block(rill__waiter *w);
/* Make w's fiber READY with result; the caller already unlinked w. */
void rill__sched_wake(rill__waiter *w, int result);
/* Cancel f's wait if it is BLOCKED and cancellable: unhook, wake with err. */
void rill__sched_interrupt(rill__fiber *f, int err);
/* Register/unregister a task's fiber in rt->all: a live fiber of the run. */
void rill__sched_track(rill__fiber *f);
void rill__sched_untrack(rill__fiber *f);
/* Count (delta 1) or stop counting (-1) one thing that may wake the run
 * from another thread; the count never goes below 0. */
void rill__sched_keepalive(rill__rt *rt, int delta);
/* Hooks: called, in the order registered, when no fiber is left (until one
 * makes work), and right before libev polls (every one). */
void rill__sched_on_idle(rill__rt *rt, rill__hook *h);
void rill__sched_before_poll(rill__rt *rt, rill__hook *h);
/* Run the fibers until none is left; once `main` (if not NULL) has ended,
 * cancel the others (rill_run's end, as asyncio.run does). */
void rill__sched_drive(rill__rt *rt, rill__fiber *main);
/* Cancel every live fiber (ops->cancel): the run is ending. */
void rill__sched_cancel_all(rill__rt *rt);
/* Start / stop the scheduler's watchers on rt->loop (attached: fibers run
 * from the foreign loop's prepare and check callbacks). */
void rill__sched_start(rill__rt *rt, bool attached);
void rill__sched_stop(rill__rt *rt);
void rill__sched_init(rill__rt *rt);
/* The run is over (rt->keepalive must be 0): stop the rest. */
void rill__sched_run_end(rill__rt *rt);

/* ---- stacks (stack.c) ------------------------------------------------------ */

/* A stack of `size` bytes (0: the default; page-rounded): 0, -EINVAL (too
 * large), -ENOMEM. */
int rill__stack_get(size_t size, rill__stack **out);
/* Back to the pool (nothing may run on it). */
void rill__stack_put(rill__stack *st);
/* Abort with the overflow report if f's stack shows it overflowed. */
void rill__stack_check(const rill__fiber *f);
/* Install this thread's overflow handler stack, if it has none: needed
 * while fibers may run (a run, or a bare runtime's generators). */
int rill__stack_signals(rill__rt *rt);

/* ---- fibers (fiber.c) ------------------------------------------------------ */

/* Create f's context on a new stack of `size` bytes; f->ops->entry(f) runs
 * first. */
int rill__fiber_init(rill__fiber *f, size_t size);
/* Return f's stack to the pool (f must not be running on it). */
void rill__fiber_release(rill__fiber *f);
/* Switch from the running fiber `from` to `to`.  When from->state is DONE,
 * from's stack is handed to rt->dead and released by whoever runs next. */
void rill__fiber_switch(rill__fiber *from, rill__fiber *to);
/* Abort if f's body returned while a group on its stack has live children. */
void rill__fiber_check_groups_waited(const rill__fiber *f);

/* ---- cancellation and scopes (scope.c) ------------------------------------ */

/* The one cancellation check: 0, -EPERM outside a fiber, -ECANCELED while
 * the caller's scopes are cancelled.  It also aborts if the caller's chain
 * holds a scope whose frame has returned (rill__scope_chain_check).  A
 * macro, so that RILL__CALLER_SP() is taken in the public function. */
#define rill__scope_checkpoint() rill__scope_checkpoint_below(RILL__CALLER_SP())
int rill__scope_checkpoint_below(const char *caller_sp);
/* Is this fiber cancelled right now (its scope chain, up to a shield)? */
bool rill__scope_cancelled(const rill__fiber *f);
void rill__scope_open(rill_scope *s, rill__fiber *f, double deadline);
/* Close s wherever it is in its fiber's chain; the scopes inside it stay
 * open, now under s's parent. */
void rill__scope_unlink(rill_scope *s);
/* rill_scope_cancel without the check that a user entered s. */
void rill__scope_cancel(rill_scope *s);
/* f's body is gone (returned with scopes open, or abandoned): close every
 * scope it entered (those on its stack without reading them), and take out
 * every timer that lives on its stack. */
void rill__scope_drop_all(rill__fiber *f);
/* f's body returned with scopes open above base (its root scope): close
 * them all (rill__scope_drop_all), and warn once per process. */
void rill__scope_close_leftover(rill__fiber *f, rill_scope *base);
/* A generator's body suspends at a yield / is resumed: the deadlines of its
 * scopes (from f's innermost up to stop, its root) are disarmed meanwhile,
 * since they could wake nobody; on resume, one that passed has fired. */
void rill__scope_suspend(rill__fiber *f, const rill_scope *stop);
void rill__scope_resume(rill__fiber *f, const rill_scope *stop);
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

/* ---- wait lists (wait.c) ------------------------------------------------------ */

void rill__wait_unlink(rill__waiter *w); /* the unhook of wait lists */
/* Register w at q's tail (what and on are for rill_dump). */
static inline void rill__wait_add(rill__list *q, rill__waiter *w, const char *what,
                                   const char *on, bool uncancellable) {
    w->unhook = rill__wait_unlink;
    w->what = what;
    w->on = on;
    w->uncancellable = uncancellable;
    rill__list_push(q, &w->node);
}
/* A FIFO wait list: block on it (checkpoint included), wake its head/all.
 * Inlined, so that its checkpoint judges scopes against the public
 * function's caller. */
RILL__INLINE int rill__wait_on(rill__list *q, rill__waiter *w, const char *what,
                                  const char *on) {
    int rc = rill__scope_checkpoint();
    if (rc) return rc;
    rill__wait_add(q, w, what, on, false);
    return rill__sched_block(w);
}
/* Block on w deaf to cancellation: only a deadlock interrupts it, and then
 * it returns -EDEADLK.  No checkpoint: for the waits that must end even in
 * a cancelled fiber (for a group's children, which never outlive it; a
 * condition's relock; a job running on the caller's memory).  With q, w
 * goes to q's tail, as in rill__wait_on; with NULL, the caller has
 * registered w (its unhook set) where its waker finds it. */
int rill__wait_deaf(rill__list *q, rill__waiter *w, const char *what, const char *on);
bool rill__wait_wake_one(rill__list *q, int result);
void rill__wait_wake_all(rill__list *q, int result);

/* ---- tasks (task.c) ----------------------------------------------------- */

/* Who else learns of a task's end (a group, an as_completed): set by them,
 * called by task.c. */
typedef struct rill__task_watch {
    void (*ended)(rill_task *t);  /* t ended, its status set */
    void (*freed)(rill_task *t);  /* t is freed while watched (rill_run's end,
                                     or a deadlock's abandonment) */
} rill__task_watch;

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
                                  runs.  Any other task: on the run's
                                  unjoined list from its end until joined or
                                  detached */
    bool detached, ended;
    bool joining;              /* a fiber is inside rill_join(t) */
    const rill__task_watch *watch; /* a group's, or an as_completed's */
    struct rill__observer *observer; /* an as_completed waiting for t to end
                                  (completed.c): join and detach are refused */
    char name_buf[32];
    struct rill_task *next_free; /* in the runtime's cache of task structs */
};

#define RILL__TASK_LIVE 0x7a5c0a11u
#define RILL__TASK_FREED 0x7a5c0dedu

rill_task *rill__task_new(rill_fn *fn, void *arg, const rill_opts *o);
void rill__task_free(rill_task *t);

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

/* ---- file descriptors (fd.c) ------------------------------------------------- */

/* Register the calling fiber as a waiter on fd for `events` (RILL_READ,
 * RILL_WRITE) and block until it is ready: the ready set, or -EBADF (closed,
 * see recheck in fd.c; rill_close), -ENOMEM, -ECANCELED.  No checkpoint:
 * callers go through rill__fd_wait. */
int rill__fd_block(int fd, int events);

/* Wait for fd as rill_wait_fd does (checkpoint included).  Inlined, so that
 * its checkpoint judges scopes against the public function's caller. */
RILL__INLINE int rill__fd_wait(int fd, int events) {
    int rc = rill__scope_checkpoint();
    if (rc) return rc;
    return rill__fd_block(fd, events);
}

/* rill_read's hint that fd's input is drained (fd.c explains it).  Call
 * them in a fiber. */
void rill__fd_set_drained(int fd, bool drained);
bool rill__fd_drained(int fd);

/* fd is a socket rill just made, which its user closes with rill_close:
 * back-to-back waits on it may keep its registration (fd.c).  Waiters
 * left on its number (a file closed with close()) get -EBADF. */
void rill__fd_created(int fd);

/* Wake every waiter on fd with -EBADF and take its watchers out of libev,
 * before fd is closed (rill_close).  No effect without a runtime. */
void rill__fd_forget(int fd);

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
    rill__waiter parked;       /* the body's own fiber waits on it while not
                                  running (unstarted, suspended): uncancellable,
                                  on no list; only its consumer resumes it */
    void *value;               /* last yielded */
    char *batch;               /* rill_yield_from: the next element, */
    size_t batch_left;         /* how many are left to hand out, */
    size_t batch_size;         /* and the size of one */
    void *sent;                /* last sent */
    int resume_with;           /* what the suspended rill_yield returns */
    int result;                /* what the consumer's call returns */
    int status;                /* rill_gen_status */
    bool closing;              /* -EPIPE delivered: another yield is a bug */
    bool started;
    bool owned;                /* an adapter's source: the adapter frees it */
    uint64_t run_id;           /* the run it first ran in: that run closes it */
    rill__list node;           /* on rt->gens.list while the runtime knows it */
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
/* In a body: return err (< 0) from the consumer's call and stay suspended
 * (a wait that was cancelled, not an end).  Returns as rill_yield. */
int rill__gen_yield_error(rill_gen *g, int err);
/* Free a generator whatever its owner (adapters freeing their sources). */
void rill__gen_free(rill_gen *g);

/* ---- groups (group.c) ---------------------------------------------------- */

/* rill_group_init for rill's own groups, which live in rill's frames. */
void rill__group_init(rill_group *g);

#endif
