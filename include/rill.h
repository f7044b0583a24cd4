/*
 * rill: asyncio's tasks, timeouts and cancellation (Trio's cancel scopes) for C.
 *
 * Fibers are stackful (one mmap'ed stack each) and run on a libev reactor,
 * one runtime per OS thread.  How a fiber's context is switched is chosen
 * when rill is built (see rill_build_info): makecontext and swapcontext by
 * default (`make`), or a few instructions of assembly (`make SWITCH=fast`).  Code inside a fiber calls blocking-looking primitives (rill_sleep,
 * rill_wait_fd, rill_join, rill_group_wait, ...); each only suspends the
 * calling fiber while the others run.
 *
 * Conventions, for every function below:
 *   - A call that can fail returns int (or ssize_t): >= 0 on success, a
 *     negative errno on failure.  rill_strerror() describes it.
 *   - A call that creates an object returns a pointer, or NULL with errno set.
 *   - Every blocking call is a cancellation point: it returns -ECANCELED
 *     straight away while the caller is cancelled (see "Cancel scopes"), and a
 *     cancelled call has no effect.  Called outside a fiber it returns -EPERM.
 *   - Misuse (NULL, joining a task from two fibers, exiting scopes out of
 *     order) returns -EINVAL or another error; it never crashes or corrupts
 *     the runtime.  Functions that return void ignore misuse and set errno
 *     to EINVAL.  Two mistakes cannot be survived, and abort the process
 *     with one line naming the fiber: overflowing a fiber's stack, and
 *     returning from a task while a task group on its stack still has
 *     children running (they would write into the dead frame).  Handles
 *     follow the rules of pointers: a task handle is gone once joined.
 *   - A runtime and everything it owns belongs to the thread that runs it;
 *     several threads may each run one.  Only the functions of "Threads"
 *     that say so may be called from another thread.
 *
 * GNU C extensions: none are needed to use this header, except by the
 * two cleanup macros RILL_GEN_AUTO and RILL_SCOPE_AUTO (the `cleanup`
 * attribute of GCC and Clang) and rill_foreach (__COUNTER__).  Internally
 * the library uses C11 plus POSIX (ucontext, mmap, sigaltstack, dladdr), an
 * assembly switch for x86-64 and aarch64 in the SWITCH=fast build, and
 * these GCC/Clang extensions: __builtin_dwarf_cfa (the caller's stack pointer,
 * to find scopes left in frames that have returned), __builtin_return_address
 * (where a scope was entered, for that report), always_inline, and the
 * initial-exec TLS model for the one thread-local pointer every call reads.
 */
#ifndef RILL_H
#define RILL_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RILL_API __attribute__((visibility("default")))
#else
#define RILL_API
#endif

struct ev_loop;

typedef struct rill_task rill_task;
typedef struct rill_scope rill_scope;
typedef struct rill_group rill_group;
typedef struct rill_gen rill_gen;

/* A task body (and every callback run in a fiber): 0 on success, a negative
 * errno on failure.  Results travel through arg, the C way. */
typedef int rill_fn(void *arg);

/* No deadline: RILL_FOREVER as a timeout or deadline means "never". */
#define RILL_FOREVER INFINITY

/* rill_wait_fd() interest and result bits. */
#define RILL_READ  1
#define RILL_WRITE 2

/* rill_gather() flag: run every task to its end and report each status
 * (asyncio.gather(..., return_exceptions=True)). */
#define RILL_RETURN_ERRORS 1

/* Options for rill_spawn_opts() and friends.  Zeroes mean defaults. */
typedef struct rill_opts {
    const char *name;  /* copied (up to 31 bytes); default "task-N" */
    size_t stack_size; /* bytes, rounded up to whole pages, at least 16 KiB,
                          at most 1 GiB; default RILL_STACK_SIZE from the
                          environment (bytes, or with a k or m suffix), else
                          64 KiB (256 KiB in AddressSanitizer builds).  Only
                          touched pages cost memory: a sleeping fiber, about
                          one.  A guard page below each stack makes an
                          overflow abort the process with one line naming
                          the fiber; a frame larger than the guard page is
                          caught only in code built with
                          -fstack-clash-protection.  Without guard pages
                          (RILL_GUARD_PAGES=0 in the environment, or a
                          kernel without MADV_GUARD_INSTALL near its mapping
                          limit), a canary at the stack's low end, checked
                          at each switch, stands in (README, "Stacks") */
} rill_opts;

/* ---------------------------------------------------------------------------
 * Private layouts.  The structs below are caller-allocated (on the stack or
 * inside your own structs) so that entering a scope or running a group costs
 * no allocation.  Their fields are not part of the API: use the functions.
 * They hold pointers to themselves once initialised: do not copy or move one
 * while it is in use.
 * ------------------------------------------------------------------------- */
typedef struct rill__list {
    struct rill__list *next, *prev;
} rill__list;

typedef struct rill__timer {
    double at;                 /* absolute rill_now() time */
    uint64_t seq;              /* ties on `at` fire in arming order */
    size_t slot;               /* index in the runtime's heap; 0 = not armed */
    void (*fire)(struct rill__timer *);
} rill__timer;

struct rill__fiber;

struct rill_scope {
    struct rill_scope *parent;   /* next scope out, NULL past the outermost */
    struct rill__fiber *fiber;   /* the fiber that entered it */
    rill__timer timer;           /* armed while the deadline is finite */
    double deadline;
    uint8_t cancel_called;       /* rill_scope_cancel() was called */
    uint8_t deadline_fired;      /* the deadline passed while open */
    uint8_t shield;
};

#define RILL__GROUP_KEEP 8       /* failures kept inline by a group */

typedef struct rill_failure {
    int index;                   /* spawn order, from 0 */
    int status;                  /* what the child returned */
} rill_failure;

struct rill_group {
    rill__list children;         /* live children (rill_task.group_node) */
    rill__list waiters;          /* the fiber in rill_group_wait, if any */
    uint32_t magic;
    int flags;                   /* RILL_RETURN_ERRORS: no fail-fast */
    int spawned, live;
    int nfailures, first_status;
    bool cancelled, waited;
    int *statuses;               /* rill_gather's, or NULL */
    struct rill__fiber *owner;   /* the fiber whose stack holds the group */
    rill_scope body;             /* the body's scope, from init to wait */
    bool scoped;                 /* body is open (init ran in a fiber) */
    rill_failure failures[RILL__GROUP_KEEP];
};

typedef struct rill_event {
    rill__list waiters;
    uint32_t magic;
    bool set;
} rill_event;

typedef struct rill_sem {
    rill__list waiters;
    uint32_t magic;
    unsigned value;
} rill_sem;

typedef struct rill_mutex {
    rill__list waiters;
    uint32_t magic;
    struct rill__fiber *owner;   /* NULL: unlocked */
} rill_mutex;

typedef struct rill_cond {
    rill__list waiters;
    uint32_t magic;
} rill_cond;

typedef struct rill_queue rill_queue;

/* ===========================================================================
 * Errors
 * ======================================================================== */

/* Describe an error code of either sign (-ECANCELED and ECANCELED give the
 * same text): libc's description, with rill's meaning added for the codes
 * that libc also uses ("Broken pipe (or: generator or queue closed)" for
 * EPIPE; likewise ETIMEDOUT and EPERM), and rill's own text for -ECANCELED
 * and -EDEADLK.  Returns a static string; never NULL.  Does not block;
 * thread-safe. */
RILL_API const char *rill_strerror(int err);

/* ===========================================================================
 * The build
 *
 * rill is built with one of three context switches (make SWITCH=...):
 *   ucontext  the default: makecontext + swapcontext.  Each fiber keeps a
 *             signal mask of its own (pthread_sigmask in one fiber does not
 *             change another's), and every switch is a system call.
 *   fast      assembly for x86-64 and aarch64 (the portable switch on other
 *             architectures): saves the callee-saved registers, the stack
 *             pointer and the floating-point control state (x87 control word
 *             and MXCSR; FPCR).  No system call, ~20x faster a switch.
 *   portable  _setjmp/_longjmp, for architectures the fast switch does not
 *             know; a new fiber's first run costs two system calls.
 * What a program can see: with fast and portable, the signal mask belongs
 * to the thread, as it does without fibers: a fiber that blocks a signal
 * blocks it for every fiber of its thread until it unblocks it.  The
 * floating-point control state (rounding mode, flush-to-zero, exception
 * masks) belongs to each fiber with fast and ucontext (a new fiber starts
 * with its creator's, as a new thread does), and to the thread with
 * portable.
 * ======================================================================== */

typedef struct rill_build {
    const char *version;        /* "0.1.0" */
    const char *switch_backend; /* "ucontext", "fast" or "portable" */
    const char *switch_method;  /* "swapcontext", "x86-64 assembly",
                                   "aarch64 assembly" or "_setjmp/_longjmp" */
    bool fiber_sigmask;         /* each fiber has a signal mask of its own */
    bool fiber_fp_control;      /* each fiber has its own floating-point
                                   control state (rounding mode, ...) */
    const char *checker;        /* "none", "address" (AddressSanitizer) or
                                   "thread" (ThreadSanitizer) */
} rill_build;

/* How this copy of rill was built.  Never NULL (static storage); does not
 * block; thread-safe. */
RILL_API const rill_build *rill_build_info(void);

/* ===========================================================================
 * Runtime
 *
 * rill_run() is asyncio.run(): it creates this thread's runtime and libev loop,
 * runs main in a fiber, and when main returns cancels every task still running
 * and waits for them.  Ready fibers hand over to each other directly; the
 * reactor is entered only when none is ready (and briefly every 256 hand-offs,
 * so that timers and I/O are never starved by fibers that keep yielding).
 *
 * If every fiber is blocked and nothing can wake one (no timer, no fd watcher,
 * no other active libev watcher; the deadline of a scope inside a suspended
 * generator does not count), rill_run does not hang: it prints the
 * blocked fibers as rill_dump() does and wakes each of them with -EDEADLK
 * from the call it is blocked in (shielded or not), so that the program can
 * unwind; rill_run then returns -EDEADLK whatever main returns.  If they
 * block again with nothing to wake them, and none has ended meanwhile, they
 * are abandoned: their stacks are freed without running them further (what
 * they allocated leaks), and rill_run returns -EDEADLK.
 * ======================================================================== */

/* Run main(arg) in a fiber on a new runtime for this thread, then cancel and
 * wait for the tasks left, close the generators left suspended, and wait for
 * the detached pool jobs its fibers gave up on (rill_to_thread_detached).
 * Returns main's status, or -EDEADLK (see above),
 * -EBUSY if this thread already runs a runtime, -EINVAL if main is NULL,
 * -ENOMEM. */
RILL_API int rill_run(rill_fn *main, void *arg);

/* Embed rill into a program that runs its own libev loop: fibers then run
 * from prepare/check watchers of that loop whenever it iterates.  Spawn
 * tasks with rill_spawn() afterwards.  The loop's own code (your callbacks)
 * is not a fiber: it can spawn, cancel and detach, but not block (-EPERM).
 * rill's hooks do not keep ev_run(loop, 0) running by themselves; a task
 * that sleeps, waits on an fd or is ready to run does, and so do a job on
 * the thread pool and a handle from rill_runtime_current() that another
 * thread still holds (a call may come).  Returns 0, -EBUSY if
 * this thread already has a runtime, -EINVAL if loop is NULL, -ENOMEM. */
RILL_API int rill_attach(struct ev_loop *loop);

/* End an embedding made with rill_attach(): cancel every fiber, iterate the
 * loop until they have all ended, remove rill's watchers and free the
 * runtime.  Returns 0, -EDEADLK if fibers were left that nothing could wake,
 * -EINVAL if there is no attached runtime, -EPERM if called from a fiber. */
RILL_API int rill_detach_loop(void);

/* This thread's libev loop, to add watchers of your own; NULL outside a
 * runtime.  An active watcher of yours counts as a possible wake-up for the
 * deadlock check. */
RILL_API struct ev_loop *rill_loop(void);

/* Seconds on the monotonic clock, read now (asyncio's loop.time()).  Every
 * absolute deadline in rill is in this time.  Works outside a runtime too.
 * Note: unlike libev's ev_now(), this is neither cached nor wall-clock time,
 * so a deadline computed from it is never early and never jumps. */
RILL_API double rill_now(void);

/* Print every fiber of this thread's runtime to out (stderr if NULL), one
 * line each: its name, its state (ready, running, blocked), what it is
 * blocked on ("sleep", "fd", "join 'NAME'", "group"), then its scopes from
 * the innermost out, each as "[scope ...]" with its deadline relative to now
 * and whether it is cancelled, timed out or shielded.  A task's root scope
 * and a task group's body show as scopes too. */
RILL_API void rill_dump(FILE *out);

/* ===========================================================================
 * Tasks
 * ======================================================================== */

/* Start fn(arg) as a new task (asyncio.create_task).  O(1): the task is queued
 * and first runs when the spawner blocks or yields.  The task must be joined
 * or detached; one still running when rill_run's main returns is cancelled.
 * Returns NULL with errno EPERM outside a runtime, EINVAL if fn is NULL or
 * the stack size is over 1 GiB, ENOMEM if no stack can be had. */
RILL_API rill_task *rill_spawn(rill_fn *fn, void *arg);

/* rill_spawn() with options (name, stack size); o may be NULL. */
RILL_API rill_task *rill_spawn_opts(rill_fn *fn, void *arg, const rill_opts *o);

/* Wait for t to end, free it, and return its status.  Blocks until t ends;
 * a task that has already ended is joined at once, without a cancellation
 * check.  If the caller is cancelled first: -ECANCELED, and t keeps running
 * (join it again, or cancel it); rill_cancelled() tells this apart from a
 * task that itself ended with -ECANCELED.  -EINVAL if t is NULL, detached,
 * a group's child, rill_run's main, being joined by another fiber, or
 * observed by a rill_as_completed generator that has not yielded it yet;
 * -EDEADLK if t is the caller; -EPERM outside a fiber (after the argument
 * checks).  A handle joined already is refused with -EINVAL while its
 * struct sits in the runtime's cache; after that it is a dangling pointer,
 * as with pthread_join. */
RILL_API int rill_join(rill_task *t);

/* Cancel t's root scope: t's current or next blocking call returns -ECANCELED
 * (level-triggered, see "Cancel scopes").  A task cancelled before it first
 * runs still starts.  Returns 1 if t was still running, 0 if it had already
 * ended (no effect; like asyncio's Task.cancel() returning False), -EINVAL if
 * t is NULL.  Does not block. */
RILL_API int rill_cancel(rill_task *t);

/* Nobody will join t: it is freed when it ends (at once if it has ended).
 * No effect (errno EINVAL) on NULL, a group's child, a task being joined,
 * or one a rill_as_completed generator has not yielded yet. */
RILL_API void rill_detach(rill_task *t);

/* Let every other ready fiber run, then continue (asyncio.sleep(0)).
 * Returns 0, -ECANCELED, -EPERM outside a fiber. */
RILL_API int rill_yield_now(void);

/* Suspend the caller for `seconds` (<= 0 behaves as rill_yield_now();
 * RILL_FOREVER until cancelled).  Any positive delay waits for its timer
 * (one reactor round at least), as asyncio.sleep does.  Returns 0, -ECANCELED, -EINVAL for NaN,
 * -EPERM outside a fiber, -ENOMEM (no memory for its timer). */
RILL_API int rill_sleep(double seconds);

/* Suspend the caller until rill_now() >= deadline; a deadline already
 * passed behaves as rill_yield_now() (Trio's sleep_until).  Returns as
 * rill_sleep. */
RILL_API int rill_sleep_until(double deadline);

/* Wait until fd is ready for `events` (RILL_READ and/or RILL_WRITE).  Returns
 * the ready subset (> 0), -ECANCELED, -EINVAL if events has no known bit,
 * -EPERM outside a fiber, -ENOMEM, or -EBADF if fd is negative, not open,
 * opened O_PATH, or closed (by another fiber, say) before the loop next
 * polls: fds are checked right before that poll, so -EBADF may come after
 * other fibers have run.  An fd closed later, once the kernel watches it,
 * wakes nobody (epoll drops it silently): close an fd only when no fiber
 * waits on it, or cancel its waiters first.  Regular files, directories
 * and the like, which the kernel cannot poll, are always ready, as poll()
 * says. */
RILL_API int rill_wait_fd(int fd, int events);

/* The task's name ("main" for rill_run's main, "task-N" by default); "?" for
 * NULL.  The string lives as long as the task. */
RILL_API const char *rill_task_name(const rill_task *t);

/* The task running now (the fiber's task), or NULL outside a task. */
RILL_API rill_task *rill_current(void);

/* ===========================================================================
 * Cancel scopes (Trio's model; asyncio.timeout is a scope with a deadline)
 *
 * A scope is entered and exited by the same fiber, strictly LIFO.  A task's
 * body runs inside its root scope, which rill_cancel() cancels.
 *
 * Level-triggered: while any scope between the innermost and the nearest
 * shielded one (inclusive) is cancelled, every blocking call returns
 * -ECANCELED at once, again and again, until the code leaves that scope.
 * A shielded scope hides the cancellation of the scopes outside it; its own
 * deadline and rill_scope_cancel() still apply.  A deadline already in the
 * past cancels at the next blocking call.  A cancelled call has no effect,
 * except when a wake-up (data, hand-off, a task ending) was already
 * delivered to it: then it completes, and the cancellation is seen at the
 * next blocking call.
 * ======================================================================== */

/* Enter s with a deadline `timeout` seconds from now (RILL_FOREVER: none;
 * <= 0: already expired).  Does not block.  No effect outside a fiber
 * (errno EPERM), with s NULL, a NaN timeout, or s already open in this
 * fiber or in another one (errno EINVAL), or with no memory to record it
 * or to arm its deadline (errno ENOMEM).
 *
 * Exit every scope you enter before the function that entered it returns:
 * `return` from inside `async with asyncio.timeout(t):` is written with
 * RILL_SCOPE_AUTO (below), which exits the scope on any path out of its C
 * block.  A scope left open by a function that returned is found at the
 * fiber's next blocking call or scope call (its address lies below the
 * caller's stack), and the process aborts with one line naming the fiber
 * and the code that entered the scope; when the compiler inlined that
 * function into its caller, the scope lies in the caller's live frame and
 * is not found (README, "Scopes left open").  A task or generator body that
 * returns with scopes still open gets them all closed, and a one-time
 * warning on stderr. */
RILL_API void rill_scope_enter(rill_scope *s, double timeout);

/* Enter s with an absolute deadline in rill_now() time (asyncio.timeout_at). */
RILL_API void rill_scope_enter_at(rill_scope *s, double deadline);

/* Move s's deadline (absolute; RILL_FOREVER removes it), as asyncio's
 * Timeout.reschedule().  A deadline that already fired stays fired.  No
 * effect (errno EINVAL) if s is not open (entered with rill_scope_enter and
 * not exited; a scope its task or generator left open when it returned is
 * closed), or errno ENOMEM if there is no memory to arm the new deadline.
 * May be called from any fiber of the runtime. */
RILL_API void rill_scope_reschedule(rill_scope *s, double deadline);

/* Shield s (on) from the cancellation of outer scopes, or stop shielding it.
 * This is Trio's CancelScope(shield=True): the fiber runs the code inside s
 * to its end (so whoever waits for that fiber waits for it too), and the
 * outer cancellation is seen at the first blocking call after s is exited.
 * Use it for cleanup that blocks after -ECANCELED, with a deadline on s.
 * asyncio.shield(aw) differs: there the awaiting caller is cancelled at once
 * while the work goes on.  For that, run the work as a task of its own and
 * wait with rill_join(), which a cancellation interrupts while the task
 * keeps running; then rill_detach() the task (or join it later).  Its arg
 * must outlive the caller (README, "Cleanup and shields", shows both).
 * No effect (errno EINVAL) if s is not open (see rill_scope_reschedule). */
RILL_API void rill_scope_shield(rill_scope *s, bool on);

/* Cancel s: blocking calls inside it return -ECANCELED until it is exited.
 * May be called from any fiber of the runtime.  No effect (errno EINVAL) if s
 * is not open (see rill_scope_reschedule). */
RILL_API void rill_scope_cancel(rill_scope *s);

/* Leave s, which must be the caller's innermost scope (a task group
 * initialised inside s counts as a scope until its rill_group_wait).
 * Returns 0, -ECANCELED if rill_scope_cancel() was called on s (even if its
 * deadline passed too), -ETIMEDOUT if its own deadline has passed (noticed
 * by a blocking call or not), -EINVAL if s is not the innermost open scope
 * of the caller (then nothing changes), -EPERM outside a fiber.  Reports
 * only what happened to s: an outer cancellation stays pending.  Does not
 * block. */
RILL_API int rill_scope_exit(rill_scope *s);

/* The cleanup behind RILL_SCOPE_AUTO. */
RILL_API void rill__scope_autoexit(rill_scope *s);

/* `RILL_SCOPE_AUTO rill_scope s;` exits s when the variable goes out of C
 * scope, by any path (return, break, goto), as `async with` does: so
 * `rill_scope_enter(&s, t); return fetch();` is safe.  It does nothing for
 * a scope that was never entered or was exited already: call
 * rill_scope_exit() yourself where you need its result (-ETIMEDOUT).
 * Scopes entered after s in the same block and still open stay open (and
 * are reported as left open once the function returns).  Uses the
 * `cleanup` attribute of GCC and Clang, as RILL_GEN_AUTO does. */
#define RILL_SCOPE_AUTO __attribute__((cleanup(rill__scope_autoexit)))

/* Would the caller's next blocking call return -ECANCELED?  (A deadline
 * that has passed counts, even before the reactor fires it.)  false outside
 * a fiber.  Does not block. */
RILL_API bool rill_cancelled(void);

/* ===========================================================================
 * Task groups (asyncio.TaskGroup / Trio nursery) and gather
 *
 * When a child fails (returns < 0, other than -ECANCELED after being
 * cancelled), the group cancels every other child and its body;
 * rill_group_wait returns only once every child has ended, so children
 * never outlive the wait.  A child that returns -ECANCELED because it was
 * cancelled (by the group, or by rill_cancel) is not a failure.  Spawning
 * into a group that is already cancelling works (as in Trio): the child
 * starts cancelled.
 *
 * The body: the code of the fiber that called rill_group_init, from that
 * call to its rill_group_wait, is the body of asyncio's `async with
 * TaskGroup()` (Trio's nursery block).  It runs inside a cancel scope of the
 * group's, so a child's failure (or rill_group_cancel) makes the body's
 * blocking calls return -ECANCELED and it reaches rill_group_wait quickly;
 * that scope closes when the wait returns.
 *
 * A group lives in the caller's memory, usually its stack: the task that
 * holds it must wait for it before returning (see "Conventions").
 * ======================================================================== */

/* Prepare g for use and, in a fiber, open its body scope.  Does not block;
 * cannot fail (g NULL: no effect, errno EINVAL). */
RILL_API void rill_group_init(rill_group *g);

/* Start fn(arg) as a child of g.  Returns 0, -EINVAL if g or fn is NULL or g
 * was already waited for, -EPERM outside a runtime or in a generator body
 * driven from outside any fiber (nothing there could wait for the child),
 * -ENOMEM. */
RILL_API int rill_group_spawn(rill_group *g, rill_fn *fn, void *arg);

/* rill_group_spawn() with options (name, stack size); o may be NULL. */
RILL_API int rill_group_spawn_opts(rill_group *g, rill_fn *fn, void *arg,
                                   const rill_opts *o);

/* Wait for every child of g, then close the body's scope.  Returns 0 if
 * none failed (also after rill_group_cancel), else the first failure's
 * status.  If the caller is cancelled (by its own scopes, not the group's),
 * the group cancels its children, still waits for them all, and returns
 * -ECANCELED; the failures are then in rill_group_errors.  -EINVAL if g is
 * NULL or was already waited for (or is being waited for); -EDEADLK if the
 * caller is a child of g; -EPERM outside a fiber.  After it returns, g
 * holds no resources. */
RILL_API int rill_group_wait(rill_group *g);

/* Cancel every child of g (running or spawned later) and its body, as
 * cancelling a Trio nursery's scope does.  Does not block. */
RILL_API void rill_group_cancel(rill_group *g);

/* How many children failed (exact), filling out[0..max) with the first ones
 * in the order they failed, at most 8 (kept inline by the group, like an
 * ExceptionGroup's list).  Readable after rill_group_wait.  -EINVAL if g is
 * NULL or max < 0 (out may be NULL when max is 0). */
RILL_API int rill_group_errors(const rill_group *g, rill_failure *out, int max);

/* Run fns[i](args[i]) for i < n concurrently and wait for all (asyncio.gather).
 * Default: fail fast like a group, returning the first failure's status.
 * With RILL_RETURN_ERRORS every task runs to its end and the call returns 0.
 * Either way statuses[i] (if statuses is not NULL) receives each task's
 * status (-ECANCELED for one cancelled).  Returns -ECANCELED if the caller
 * was cancelled (the tasks are cancelled and waited for), -EINVAL on bad
 * arguments (n < 0, fns NULL with n > 0, a NULL fns[i], unknown flags),
 * -EPERM outside a fiber, -ENOMEM.  args may be NULL (every arg NULL). */
RILL_API int rill_gather(int n, rill_fn *const fns[], void *const args[],
                         int statuses[], int flags);

/* A generator that yields each of tasks[0..n) as it ends (asyncio's
 * as_completed, or wait(return_when=FIRST_COMPLETED) in a loop): the value
 * is the rill_task *, which the consumer then joins (rill_join returns its
 * status at once) or ignores.  Tasks already ended come first, in array
 * order; then the others in the order they end.  Exhausted after n values
 * (at once if n is 0).  Waiting for the next end costs O(1) per task end.
 *
 * The array is read at this call only.  Until a task is yielded it is
 * observed: rill_join on it returns -EINVAL and rill_detach refuses it
 * (errno EINVAL); rill_cancel works.  Once yielded, or once the generator
 * is closed, thrown into or freed before yielding it, the task is the
 * caller's again: closing early (break + rill_gen_free, or rill_gen_close)
 * leaves the tasks not yet yielded running, for the caller to join or
 * cancel.
 *
 * rill_gen_next blocks while no task has ended; the wait is a cancellation
 * point under the consumer's cancellation, so a scope with a deadline
 * around rill_gen_next is as_completed(timeout=...).  A cancelled next
 * returns -ECANCELED and yields nothing, and the generator stays usable: no
 * task is lost, the next call yields it (as for a -EDEADLK).
 *
 * NULL with errno EINVAL if tasks is NULL with n > 0, or if a task is NULL,
 * already joined, detached, a group's child, rill_run's main, being joined,
 * given twice, or observed by another as_completed; ENOMEM.  Nothing is
 * observed then.  Free the generator with rill_gen_free. */
RILL_API rill_gen *rill_as_completed(rill_task *const *tasks, size_t n);

/* ===========================================================================
 * Synchronisation (asyncio.Event, Semaphore, Lock, Condition, Queue)
 *
 * For the fibers of one runtime.  Every wait is a cancellation point with
 * the no-effect guarantee: a cancelled acquire holds nothing, a cancelled
 * get took no item, a cancelled put stored none.  Wake-ups are FIFO, and
 * they are hand-offs: a waiter woken with a permit, the lock or an item
 * keeps it even if it is cancelled before it runs (the cancellation is seen
 * at its next blocking call), so a wake-up is never lost.  A call that can
 * complete at once does so without a cancellation check, as in asyncio; one
 * that must wait checks first.  The structs are caller-allocated;
 * initialise before use and do not copy one in use.
 * ======================================================================== */

/* An event starts clear.  set wakes every waiter; clear makes later waits
 * block again.  Neither blocks.  NULL: no effect, errno EINVAL. */
RILL_API void rill_event_init(rill_event *e);
RILL_API void rill_event_set(rill_event *e);
RILL_API void rill_event_clear(rill_event *e);
/* false for NULL. */
RILL_API bool rill_event_is_set(const rill_event *e);
/* Wait until e is set (at once if it is).  0, -ECANCELED, -EINVAL (NULL or
 * not initialised), -EPERM outside a fiber. */
RILL_API int rill_event_wait(rill_event *e);

/* A counting semaphore with n permits. */
RILL_API void rill_sem_init(rill_sem *s, unsigned n);
/* Take a permit, waiting while there is none.  0, -ECANCELED (no permit
 * taken), -EINVAL, -EPERM outside a fiber. */
RILL_API int rill_sem_acquire(rill_sem *s);
/* Take a permit if one is free; never blocks. */
RILL_API bool rill_sem_try_acquire(rill_sem *s);
/* Give a permit back: straight to the longest waiter if there is one.
 * With UINT_MAX permits free already: no effect, errno EOVERFLOW (the
 * count is refused rather than wrapped to 0 or silently capped). */
RILL_API void rill_sem_release(rill_sem *s);

/* A mutex between fibers (asyncio.Lock), handed to waiters in FIFO order. */
RILL_API void rill_mutex_init(rill_mutex *m);
/* Lock m, waiting while another fiber holds it.  0, -ECANCELED (not
 * locked), -EDEADLK if the caller holds it already, -EINVAL, -EPERM
 * outside a fiber. */
RILL_API int rill_mutex_lock(rill_mutex *m);
/* Unlock m (held by the caller): the longest waiter gets it.  No effect,
 * errno EPERM, if the caller does not hold it. */
RILL_API void rill_mutex_unlock(rill_mutex *m);

/* A condition variable used with a rill_mutex (asyncio.Condition). */
RILL_API void rill_cond_init(rill_cond *c);
/* Unlock m (held by the caller), wait for a signal, lock m again: m is held
 * again on every return, cancelled or not, as asyncio's Condition.wait
 * reacquires its lock.  0, -ECANCELED, -EPERM if the caller does not hold m
 * or is not a fiber, -EINVAL; and -EDEADLK if the runtime found a deadlock
 * while the caller waited to lock m again: then, alone among the returns,
 * m is not held. */
RILL_API int rill_cond_wait(rill_cond *c, rill_mutex *m);
/* Wake the longest waiter / every waiter.  Never blocks. */
RILL_API void rill_cond_signal(rill_cond *c);
RILL_API void rill_cond_broadcast(rill_cond *c);

/* rill_queue_new's capacity for a queue with no bound (asyncio.Queue()). */
#define RILL_UNBOUNDED SIZE_MAX

/* A FIFO queue of copied items: bounded (asyncio.Queue(maxsize)), its
 * capacity allocated at once; or RILL_UNBOUNDED (asyncio.Queue()), whose
 * memory follows its length: chunks of about 4 KiB (at least 8 items) are
 * linked as puts fill them and freed as gets empty them (one spare is
 * kept), so an item is copied in and out once and never moved, and a
 * drained queue holds at most two chunks whatever its peak.  NULL with
 * errno EINVAL if capacity or item_size is 0 (or too big), ENOMEM.  Works
 * outside a runtime too, with the try_ calls. */
RILL_API rill_queue *rill_queue_new(size_t capacity, size_t item_size);
/* Copy item in, waiting while the queue is full (an unbounded one never
 * is); a waiting getter gets it directly.  0, -EPIPE if the queue is
 * closed (also while waiting), -ECANCELED (nothing stored), -ENOMEM
 * (unbounded: no memory for a new chunk; nothing stored), -EINVAL, -EPERM
 * outside a fiber. */
RILL_API int rill_queue_put(rill_queue *q, const void *item);
/* Copy the oldest item out, waiting while the queue is empty.  0; after
 * rill_queue_close, the items left, then -EPIPE; -ECANCELED (nothing
 * taken), -EINVAL, -EPERM outside a fiber. */
RILL_API int rill_queue_get(rill_queue *q, void *item);
/* Never block: -EAGAIN when full / empty; -EPIPE when closed (get: closed
 * and drained); put: -ENOMEM as rill_queue_put. */
RILL_API int rill_queue_try_put(rill_queue *q, const void *item);
RILL_API int rill_queue_try_get(rill_queue *q, void *item);
/* No more puts: waiting putters get -EPIPE, getters drain what is left and
 * then get -EPIPE.  Never blocks. */
RILL_API void rill_queue_close(rill_queue *q);
/* Items in the queue (0 for NULL). */
RILL_API size_t rill_queue_len(const rill_queue *q);
/* Free q; fibers still waiting on it are woken with -EPIPE first (so free it
 * only when nobody will touch it again).  NULL: no effect. */
RILL_API void rill_queue_free(rill_queue *q);

/* ===========================================================================
 * Threads: offloading blocking work, and one runtime per thread
 * (asyncio.to_thread / loop.run_in_executor, loop.call_soon_threadsafe)
 *
 * One process-wide pool of worker threads runs offloaded calls.  It starts
 * its threads on demand, up to RILL_THREADS (an integer from 1 to 1024,
 * read once, at the first offloaded call; default: Python's, min(32,
 * online CPUs + 4), as jobs are mostly blocking calls rather than
 * computations; another value is reported once on stderr and the default
 * used), and keeps them for the life of the process
 * (at exit the idle ones are joined).  Jobs start in FIFO order.  A
 * finished job wakes its caller's loop with an ev_async watcher; the
 * caller's runtime counts pending jobs as possible wake-ups, so waiting on
 * one is never reported as a deadlock.  Worker threads block asynchronous
 * signals (not faults such as SIGSEGV).
 *
 * fork(): the child has only the forking thread, and keeps that thread's
 * run (rill_run's or an attached one) with all its fibers.  rill's
 * pthread_atfork handlers (installed with the first runtime) tell libev
 * (ev_loop_fork), so the child's next poll makes kernel state of its own
 * (epoll set, wake-up fd): parent and child then go on independently, fd
 * waits, timers, rill_to_thread and calls from other threads alike.  Both
 * copies of a fiber waiting on an fd they share wake when it is ready: the
 * child should close the parent's fds (its waiters on them then wake with
 * -EBADF) or leave them alone.  The child has no pool worker: it starts
 * some at once for the jobs its run had queued, others on demand.  Jobs
 * that were already running at the fork never finish in the child, so fork
 * with none of the run's in flight.  Other threads' runs do not exist in
 * the child: their handles must not be used there.  Only fork() runs the
 * handlers (not a raw clone system call).
 *
 * Each OS thread may run its own runtime (rill_run in each thread, e.g. one
 * per core).  Runtimes share nothing: a fiber, task, generator, scope or
 * synchronisation object belongs to the runtime that created it and must
 * not be touched from another thread.  The one way across is
 * rill_call_threadsafe(), through a counted handle to the receiving run.
 * ======================================================================== */

/* Run fn(arg) on a pool thread and wait for it; returns what fn returned.
 * fn must not call rill's blocking functions (it is not in a fiber: they
 * return -EPERM).  Cancellation: if the caller is cancelled before a worker
 * has taken the job, the job never runs and the call returns -ECANCELED;
 * once it runs, the caller waits for it to finish whatever happens (arg
 * usually lives on the caller's stack) and returns its result, the
 * cancellation being seen at the caller's next blocking call.  -EINVAL if
 * fn is NULL, -EPERM outside a fiber, -EAGAIN if no worker thread could be
 * started, -ENOMEM.  Blocks the calling fiber only. */
RILL_API int rill_to_thread(rill_fn *fn, void *arg);

/* As rill_to_thread, but a cancelled caller does not wait for a running job:
 * it returns -ECANCELED at once, and the job finishes on its own (asyncio's
 * to_thread, Trio's abandon_on_cancel).  arg must then outlive the caller,
 * so ownership follows the outcome: on any return but -ECANCELED the caller
 * still owns arg; on -ECANCELED (whether the caller was cancelled, or fn
 * itself returned -ECANCELED) it has passed to rill, which calls
 * release(arg), if release is not NULL, on the caller's thread: once fn has
 * returned, or at once if fn never ran (or will not).  The job's result is
 * then dropped.  The run does not end before every such job has: rill_run
 * waits for them (as asyncio.run waits for its default executor), so their
 * release() always runs.  Errors as rill_to_thread. */
RILL_API int rill_to_thread_detached(rill_fn *fn, void *arg, void (*release)(void *arg));

/* A counted handle to one run of a runtime (one rill_run or rill_attach on
 * one thread), for other threads to send it calls. */
typedef struct rill_runtime rill_runtime;

/* A new reference to the run on the calling thread, to hand to other
 * threads.  NULL with errno EPERM when the thread runs none, ENOMEM (the
 * run makes its handle at the first call).  While any reference is held,
 * the run counts it as a possible source of wake-ups and reports no
 * deadlock (another thread may send a call).  Release every reference with
 * rill_runtime_release.  Never blocks. */
RILL_API rill_runtime *rill_runtime_current(void);

/* Another reference to the same run, taken from any thread that holds one
 * (to hand to a third thread, which releases it in its turn).  Returns rt;
 * NULL with errno EINVAL if rt is NULL or has no reference left to share.
 * Never blocks. */
RILL_API rill_runtime *rill_runtime_retain(rill_runtime *rt);

/* Drop a reference taken with rill_runtime_current or rill_runtime_retain,
 * from any thread.  The handle's memory lives until the last reference and
 * the run are gone.  NULL: no effect. */
RILL_API void rill_runtime_release(rill_runtime *rt);

/* Have fn(arg) run in a new detached task of rt's run: callable from any
 * thread, including rt's own and threads with no runtime.  Calls run in the
 * order they were made from one thread; fn's result is dropped (report
 * through arg).  0 once accepted: an accepted call always runs (it waits
 * and is retried if there is no memory for its task), and runs cancelled if
 * it arrives after the run's main task has ended; only one that still finds
 * no memory when the run's last fiber has ended is dropped, and the run
 * says how many on stderr.  -ESRCH once the run is over: every fiber of it
 * has ended (generator cleanups at the very end aside), -EINVAL if rt or
 * fn is NULL, -ENOMEM.  Never blocks (it takes a mutex briefly). */
RILL_API int rill_call_threadsafe(rill_runtime *rt, rill_fn *fn, void *arg);

/* ===========================================================================
 * Generators (async generators: `async def ... yield`, `async for`)
 *
 * A generator is a body function with a stack of its own.  rill_gen_next()
 * switches straight into the body and rill_yield() straight back: one switch
 * each way, no scheduler in between.  The body is an ordinary C loop that
 * may block (sleep, wait on an fd, join, consume another generator); while
 * it runs for a consumer it is under that consumer's cancellation, so a
 * scope with a deadline around rill_gen_next() cancels a sleep in the body.
 * Other fibers run while the body blocks.
 *
 * Values are borrowed: a yielded pointer stays valid until the consumer
 * resumes the generator again.  Adapters that run a body ahead of its
 * consumer copy values (item_size > 0) or take them as owned pointers
 * (item_size == 0).
 *
 * The body's side of the protocol, as in Python:
 *   rill_yield() returns 0 when resumed by next (or send: see rill_gen_sent),
 *   the error given to rill_gen_throw, or -EPIPE when the consumer closes
 *   the generator (GeneratorExit): then clean up, which may block, and
 *   return.  Yielding again after -EPIPE is a bug: rill_gen_close returns
 *   -EPROTO and the body is abandoned (its stack freed, its cleanup unrun).
 *   The body returns 0 when exhausted, or a negative errno: the consumer's
 *   call returns that error once, then the generator is finished.
 *
 * Generators also work outside rill_run, as plain synchronous generators and
 * send()-driven coroutines, as long as the body does not block: a blocking
 * call there (and in any body driven from outside a fiber) returns -EPERM.
 * When rill_run's tasks have all ended, the generators still suspended that
 * were first resumed during that run are closed (asyncio's
 * shutdown_asyncgens), each cleanup running cancelled: blocking calls in it
 * return -ECANCELED unless shielded.  Their structs stay until rill_gen_free.
 * Generators started outside rill_run are left alone and keep working.
 *
 * A generator is used by one consumer at a time: resuming one whose body is
 * running (blocked on behalf of another consumer, or resuming itself)
 * returns -EBUSY at once.
 * ======================================================================== */

/* A generator body: yields with rill_yield(g, value); returns 0 when
 * exhausted, or a negative errno. */
typedef int rill_gen_fn(rill_gen *g, void *arg);

/* Create a generator; its body first runs at the first next/send.  Returns
 * NULL with errno EINVAL (body NULL, stack size over 1 GiB) or ENOMEM.
 * Works outside a runtime too.  Free it with rill_gen_free. */
RILL_API rill_gen *rill_gen_new(rill_gen_fn *body, void *arg);

/* rill_gen_new() with options (name, stack size); o may be NULL. */
RILL_API rill_gen *rill_gen_new_opts(rill_gen_fn *body, void *arg, const rill_opts *o);

/* In the body: hand value to the consumer and suspend until resumed.
 * Returns 0 (resumed by next/send), -EPIPE (closed: clean up and return),
 * or the error passed to rill_gen_throw; -EINVAL if g is not the generator
 * whose body is running. */
RILL_API int rill_yield(rill_gen *g, void *value);

/* Yield, in turn, a pointer to each of the n elements of `size` bytes at
 * items, as n calls of rill_yield(g, (char *)items + i * size) would
 * (`for x in batch: yield x`), but the consumer's rill_gen_next takes the
 * second and later elements without resuming the body: a batch costs one
 * round trip to the body, not one per element.  items must stay as they
 * are until this returns.  Returns 0 once the consumer asks for the value
 * after the last (the body then goes on), or as rill_yield: -EPIPE when
 * the generator is closed, the error of a rill_gen_throw (the rest of the
 * batch is dropped in both cases); a rill_gen_send with a value ends the
 * batch too (0, rill_gen_sent() giving the value).  n == 0 returns 0 at
 * once.  -EINVAL if items is NULL with n > 0, or as rill_yield. */
RILL_API int rill_yield_from(rill_gen *g, void *items, size_t n, size_t size);

/* What the last rill_gen_send passed in (NULL after a next or a throw).
 * Read it in the body right after rill_yield returns 0. */
RILL_API void *rill_gen_sent(const rill_gen *g);

/* Resume the body until its next yield (async for's __anext__).  Returns 1
 * with *value set (value may be NULL to ignore it), 0 when the generator is
 * exhausted (then and on every later call), or a negative error: the
 * body's own error (once; then it is finished), -ECANCELED and the like
 * from the body's blocking calls if it returns them (rill_as_completed's
 * body returns them without finishing), -EBUSY if the body is running,
 * -EINVAL if g is NULL.  Blocks while the body blocks. */
RILL_API int rill_gen_next(rill_gen *g, void **value);

/* asend: as rill_gen_next, and the body's rill_yield returns 0 with
 * rill_gen_sent() == in.  -EINVAL if in is not NULL and the body has not
 * started yet (Python: "can't send non-None value to a just-started
 * generator"). */
RILL_API int rill_gen_send(rill_gen *g, void *in, void **value);

/* athrow: make the suspended rill_yield return err (< 0).  Returns as
 * rill_gen_next: 1 if the body handled it and yielded again, err itself if
 * the body returned it.  On a generator not started yet, the body never
 * runs: it is finished and err is returned; on a finished one err is
 * returned.  -EINVAL if err >= 0 or g is NULL. */
RILL_API int rill_gen_throw(rill_gen *g, int err, void **value);

/* aclose: make the suspended rill_yield return -EPIPE and let the body
 * clean up and return.  Returns 0 (also when the body returns -EPIPE), the
 * body's error if its cleanup failed, -EPROTO if the body yielded again,
 * -EBUSY if the body is running, -EINVAL if g is NULL.  A generator never
 * started is finished without running its body; closing a finished one
 * does nothing and returns 0.  Blocks while the cleanup blocks. */
RILL_API int rill_gen_close(rill_gen *g);

/* Close g if suspended (running its cleanup), then free it.  No effect
 * (errno EBUSY) if the body is running for a consumer; no effect (errno
 * EINVAL) on NULL or on an adapter's source, which the adapter frees (so do
 * not give a source to RILL_GEN_AUTO as well as to an adapter); no effect
 * (errno EPERM) from outside any fiber on a merge or prefetch whose tasks
 * are running (rill_run's end closes it).  Resuming or closing such a
 * generator from outside a fiber returns -EPERM likewise. */
RILL_API void rill_gen_free(rill_gen *g);

/* The result that ended iteration (0 exhausted, or an error), or 0 while
 * the generator can still yield.  rill_foreach's way to tell an end from an
 * error. */
RILL_API int rill_gen_status(const rill_gen *g);

/* The generator's name ("gen-N" by default). */
RILL_API const char *rill_gen_name(const rill_gen *g);

/* The cleanup behind RILL_GEN_AUTO. */
RILL_API void rill__gen_autofree(rill_gen **g);

/* `RILL_GEN_AUTO rill_gen *g = rill_gen_new(...);` closes and frees g when
 * the variable goes out of scope, by any path (aclosing()).  Uses the
 * `cleanup` attribute of GCC and Clang: the one GNU extension of this API. */
#define RILL_GEN_AUTO __attribute__((cleanup(rill__gen_autofree)))

#define RILL__CAT2(a, b) a##b
#define RILL__CAT(a, b) RILL__CAT2(a, b)

/* async for: `T *v; rill_foreach(v, g) { ... }` runs the block for each
 * value (v is any pointer type, declared before).  The loop ends when the
 * generator is exhausted or fails: rill_gen_status(g) tells which.
 * Breaking out leaves the generator suspended; free (or RILL_GEN_AUTO)
 * runs its cleanup, once. */
#ifdef __cplusplus /* C++ does not convert void * implicitly */
#define RILL__FROM_VOID(var, p) static_cast<decltype(var)>(p)
#else
#define RILL__FROM_VOID(var, p) (p)
#endif
/* __COUNTER__ (GCC, Clang) names the hidden variable: one per expansion, so
 * loops nested on one line do not shadow each other. */
#define rill_foreach(var, g) RILL__FOREACH(var, g, RILL__CAT(rill__v, __COUNTER__))
#define RILL__FOREACH(var, g, tmp)                                               \
    for (void *tmp; rill_gen_next((g), &tmp) == 1 && ((var) = RILL__FROM_VOID(var, tmp), 1);)

/* ---- adapters ----------------------------------------------------------
 * Each returns a new generator that owns its source(s): it closes them when
 * it ends or is closed (their cleanup runs then), and frees them when it is
 * freed; rill_gen_free on a source is then refused.  Functions given to
 * adapters run in the adapter's body and may block.  Values thrown into an
 * adapter end it with that error.  An adapter that copies values
 * (item_size > 0, or a size function) ends with -EINVAL if a source yields
 * NULL.  merge and prefetch run their sources in tasks: they need rill_run
 * (a body driven from outside any fiber gets -EPERM), and end with -ENOMEM
 * if a task cannot be had.  Each returns NULL with errno EINVAL (a NULL or
 * already owned source, the same source twice, a NULL function, a zero
 * size or depth) or ENOMEM; the sources then stay the caller's.
 *
 * Values the adapter stores: rill_gen_map hands on the pointer fn gives,
 * so fn must own what it points to; rill_gen_map_into and rill_gen_map_sized
 * give fn a buffer of the adapter's to write into.  The _sized adapters copy
 * values of any size (a line of rill_file_lines, which is valid only until
 * its next resume) into buffers of their own: each value is measured by a
 * size function, copied, and yielded valid until the next resume.  Each of
 * their buffers grows to the largest value it has held and is reused, never
 * shrunk: memory stays within (slots + 1) x the largest value.  A size
 * function is called once per value (by merge and prefetch, in their
 * tasks), never with NULL: a NULL value ends the stream with -EINVAL first.
 * A size of 0 ends the stream with -EINVAL (nothing to copy), a size too
 * large to allocate with -ENOMEM; the sources are closed then as after any
 * error. */

/* Map: 0 with *out set, or a negative errno that ends the stream. */
typedef int rill_map_fn(void *in, void **out, void *ctx);
/* Map into the adapter's buffer: write the output for in at out (its
 * contents on entry are unspecified); 0, or a negative errno that ends the
 * stream. */
typedef int rill_map_into_fn(void *in, void *out, void *ctx);
/* How many bytes of item a _sized adapter stores (item is never NULL). */
typedef size_t rill_size_fn(const void *item, void *ctx);
/* Filter: 1 keep, 0 drop, or a negative errno that ends the stream. */
typedef int rill_keep_fn(void *in, void *ctx);
/* What rill_gen_batch yields: n values stored contiguously in items (each
 * item_size bytes, or each a void * when item_size is 0). */
typedef struct rill_batch {
    size_t n;
    void *items;
} rill_batch;

/* fn(value) for each value of src (a generator expression's map). */
RILL_API rill_gen *rill_gen_map(rill_gen *src, rill_map_fn *fn, void *ctx);
/* A map whose outputs the adapter stores: `(f(x) async for x in src)` where
 * f makes a new value (x * 2, a parsed struct).  The adapter owns one buffer
 * of out_size bytes (allocated here: ENOMEM if it cannot be); fn(value, out,
 * ctx) fills it and the adapter yields out, valid until the next resume.  fn
 * sees NULL values as they come. */
RILL_API rill_gen *rill_gen_map_into(rill_gen *src, rill_map_into_fn *fn, size_t out_size,
                                     void *ctx);
/* rill_gen_map_into for outputs whose size depends on the input (a new
 * string made from each line): before fn(value, out, ctx) the buffer is
 * grown to size_fn(value, ctx) bytes (rill_size_str: room for a copy of a
 * string value).  ctx goes to both. */
RILL_API rill_gen *rill_gen_map_sized(rill_gen *src, rill_map_into_fn *fn,
                                      rill_size_fn *size_fn, void *ctx);
/* The values of src that keep() keeps. */
RILL_API rill_gen *rill_gen_filter(rill_gen *src, rill_keep_fn *keep, void *ctx);
/* The first n values of src; then src is closed. */
RILL_API rill_gen *rill_gen_take(rill_gen *src, size_t n);
/* Values of src in groups of n, as rill_batch * (valid until the next
 * resume); the last batch may be shorter (buffered output's flush).  An
 * error from src ends the stream at once, without the partial batch. */
RILL_API rill_gen *rill_gen_batch(rill_gen *src, size_t n, size_t item_size);
/* The values of n sources, consumed concurrently (one task each) and
 * yielded as they come; copies item_size bytes of each (0: passes the
 * pointers on, for sources whose values stay valid).  The merge ends when
 * every source has; a source's error ends it with that error, after the
 * others are stopped and closed.  srcs is copied; n >= 1. */
RILL_API rill_gen *rill_gen_merge(rill_gen **srcs, size_t n, size_t item_size);
/* rill_gen_merge copying size_fn(value, ctx) bytes of each value, for
 * values of any size: n + 1 buffers (a slot per source, and the value being
 * yielded). */
RILL_API rill_gen *rill_gen_merge_sized(rill_gen **srcs, size_t n, rill_size_fn *size_fn,
                                        void *ctx);
/* src run ahead in a task of its own, at most depth values ahead of the
 * consumer (backpressure: asyncpg's prefetch).  Closing the adapter stops
 * that task, then closes src. */
RILL_API rill_gen *rill_gen_prefetch(rill_gen *src, size_t depth, size_t item_size);
/* rill_gen_prefetch copying size_fn(value, ctx) bytes of each value: depth
 * + 1 buffers.  A file's lines read ahead while the consumer works:
 * rill_gen_prefetch_sized(rill_file_lines(path), 64, rill_size_str, NULL)
 * (a NULL source, as when rill_file_lines fails, gives NULL with errno
 * EINVAL: keep rill_file_lines' errno first if it matters). */
RILL_API rill_gen *rill_gen_prefetch_sized(rill_gen *src, size_t depth, rill_size_fn *size_fn,
                                           void *ctx);
/* A size function for NUL-terminated strings: strlen(item) + 1 (0 for
 * NULL). */
RILL_API size_t rill_size_str(const void *item, void *ctx);

/* ===========================================================================
 * Streams and sockets (asyncio streams, loop.sock_*, Trio's SocketStream)
 *
 * Each call waits for its fd with the reactor and lets other fibers run
 * meanwhile.  The sockets rill creates are non-blocking and close-on-exec;
 * its TCP sockets have TCP_NODELAY set (small writes leave at once, as in
 * asyncio).  On a socket of yours, rill_read and rill_write pass
 * MSG_DONTWAIT and leave the socket's flags alone; any other fd (a pipe, a
 * terminal) is switched to O_NONBLOCK at its first rill_read or rill_write,
 * and a blocking listener of yours at its first rill_accept (accept has no
 * MSG_DONTWAIT), which everyone sharing them sees.  No call raises
 * SIGPIPE: sockets are written with MSG_NOSIGNAL, and the first rill_write
 * to anything else sets SIGPIPE to SIG_IGN for the process if it was
 * SIG_DFL (a handler of yours is left alone; programs it executes later
 * inherit SIG_IGN, so restore SIG_DFL in a child before exec if they
 * expect it).  Timeouts come from scopes: rill_scope_enter(&s, 5) around
 * any of these makes them return -ECANCELED at the deadline, and
 * rill_scope_exit(&s) then returns -ETIMEDOUT (telling the deadline apart
 * from a cancellation from outside).
 *
 * Every call here is a cancellation point (see "Conventions"); a cancelled
 * read, accept or connect has no effect.  Close with rill_close the
 * sockets these calls return, and any fd fibers may be waiting on: it
 * wakes the waiters (close() leaves them to the check rill_wait_fd
 * describes) and makes rill forget the fd.  rill keeps the kernel
 * watching a socket of its making between back-to-back waits (one
 * syscall fewer per wait), so such a socket closed with close() rather
 * than rill_close right after a wait on it ended, before the loop polls
 * again, leaves the next wait on its number unwatched: on the closed fd it
 * never ends (no -EBADF, unlike what rill_wait_fd says of closed fds), and
 * on a file that took the number it misses that file's readiness.
 * ======================================================================== */

/* Read up to n bytes from fd into buf (asyncio's loop.sock_recv, reader.read(n)):
 * returns as soon as some bytes are there, waiting until fd is readable
 * if none are.  Returns the count (> 0), 0 at the end of the stream (or for
 * n == 0), or -ECANCELED (no byte consumed), -EBADF (fd not open, or closed
 * by rill_close while waiting), -ECONNRESET, -ETIMEDOUT (the kernel gave up
 * on the peer), -EINVAL (buf NULL with n > 0), -EPERM outside a fiber,
 * -ENOMEM, or read()'s errno. */
RILL_API ssize_t rill_read(int fd, void *buf, size_t n);

/* Write all n bytes of buf to fd (writer.write + drain, loop.sock_sendall),
 * waiting for room as often as needed while other fibers run.  Returns n,
 * or a negative errno: -EPIPE or -ECONNRESET (the peer is gone; never
 * SIGPIPE), -EBADF, -EINVAL (buf NULL with n > 0, or n > SSIZE_MAX), -EPERM outside a
 * fiber, -ENOMEM, or write()'s errno.  -ECANCELED (cancelled, or a scope's
 * deadline, while waiting for room) means an unknown prefix of buf may have
 * been written, as with a cancelled drain(): the stream is then fit only
 * to be closed.  A caller cancelled before the call writes nothing.
 * Two fibers writing to one fd at once may interleave their bytes where
 * one waits for room: let one fiber write, or hold a rill_mutex. */
RILL_API ssize_t rill_write(int fd, const void *buf, size_t n);

/* A listening TCP socket (asyncio.start_server's socket) bound to host
 * (a name or numeric address, looked up on the thread pool unless
 * numeric; NULL: every interface, IPv6 and IPv4 at once where the kernel
 * allows it, else IPv4) and port (0: any free port, see rill_local_port),
 * with SO_REUSEADDR, every address of the lookup tried in turn.  backlog
 * <= 0 means SOMAXCONN.  Returns the fd, or -EINVAL (port outside
 * 0..65535), -ENXIO (host not found), -EAGAIN (lookup failed for now),
 * -EADDRINUSE, -EACCES, -EADDRNOTAVAIL, -EMFILE, -ENOMEM, or -ECANCELED /
 * -EPERM while the lookup of a name runs (a numeric host needs no fiber). */
RILL_API int rill_tcp_listen(const char *host, int port, int backlog);

/* Accept a connection on the listening socket lfd (loop.sock_accept),
 * waiting for one.  lfd is made O_NONBLOCK if it is not (a listener
 * inherited from systemd or inetd, say).  The new fd is non-blocking and
 * close-on-exec (with TCP_NODELAY for TCP).  addr and len are as for
 * accept() (both NULL, or *len the size of addr).  Connections aborted before they were accepted
 * are skipped.  Returns the fd, or -ECANCELED (nothing accepted), -EBADF,
 * -EINVAL (lfd not listening, or addr without len), -ENOTSOCK, -EMFILE or
 * -ENFILE (out of fds: the connection waits in the backlog), -ENOMEM,
 * -EPERM outside a fiber. */
RILL_API int rill_accept(int lfd, struct sockaddr *addr, socklen_t *len);

/* Connect to host:port over TCP (asyncio.open_connection): the name is
 * looked up on the thread pool (a numeric address needs no lookup), and
 * every address it gives is tried in turn until one connects.  Returns the
 * connected fd, or the last address's error: -ECONNREFUSED, -ETIMEDOUT,
 * -ENETUNREACH, -EHOSTUNREACH, ...; -ENXIO (host not found), -EAGAIN (the
 * lookup failed for now), -EINVAL (host NULL, port outside 1..65535),
 * -ECANCELED (no connection is left behind; a lookup under way finishes on
 * its pool thread without the caller), -EPERM outside a fiber, -EMFILE,
 * -ENOMEM. */
RILL_API int rill_tcp_connect(const char *host, int port);

/* A listening AF_UNIX stream socket bound to path (asyncio.start_unix_server).
 * A socket file left at path by a server that is gone is replaced (one
 * that still accepts gives -EADDRINUSE: it is asked by connecting to it,
 * so it sees a connection that closes at once); the file stays after rill_close
 * (unlink it).  A path starting with '@' names a socket in Linux's
 * abstract namespace (no file).  backlog <= 0 means SOMAXCONN.  Returns the
 * fd, or -EINVAL (path NULL or empty), -ENAMETOOLONG (108 bytes or more),
 * -EADDRINUSE, -EACCES, -ENOENT (no such directory), -EMFILE, -ENOMEM.
 * Does not block. */
RILL_API int rill_unix_listen(const char *path, int backlog);

/* Connect to the AF_UNIX stream socket at path ('@' as above), waiting
 * while the server's backlog is full.  Returns the fd, or -ENOENT,
 * -ECONNREFUSED (nothing listens there), -EACCES, -EINVAL, -ENAMETOOLONG,
 * -ECANCELED, -EPERM outside a fiber, -EMFILE, -ENOMEM. */
RILL_API int rill_unix_connect(const char *path);

/* The port a TCP socket is bound to (after rill_tcp_listen(host, 0, ...),
 * the one the kernel chose).  Returns it (0..65535), or -EBADF, -ENOTSOCK,
 * -EAFNOSUPPORT (not an IPv4 or IPv6 socket).  Does not block. */
RILL_API int rill_local_port(int fd);

/* Close fd (writer.close()): first every fiber of this thread's runtime
 * waiting on fd (rill_read, rill_write, rill_accept, rill_wait_fd, ...),
 * or woken by it and not run yet, returns -EBADF and rill forgets the fd,
 * so a number the kernel reuses at once never wakes them; then close().  Never blocks, and the fd is
 * closed whatever it returns: 0, -EBADF (fd not open), or the error the
 * kernel reported while closing (-EIO; -ENOSPC or -EDQUOT on a network
 * file system; an interrupted close counts as done).
 * Works outside a fiber too. */
RILL_API int rill_close(int fd);

/* A generator of the lines read from the stream fd (`async for line in
 * reader`): each value is a char *, the line without its "\n" or "\r\n",
 * NUL-terminated, valid until the generator is resumed again; a last line
 * without a newline is yielded at the end of the stream.  A line longer
 * than 1 MiB ends the body with -E2BIG (rather than a buffer without
 * bound).  The body reads with rill_read: it returns 0 at the end of the
 * stream, or rill_read's error (-ECONNRESET, -ECANCELED, -EBADF, ...).
 * A read cancelled while it waits (a scope's deadline around
 * rill_gen_next, say) has no effect: that rill_gen_next returns -ECANCELED
 * and the next one goes on reading, so a deadline per line is written as
 * a scope around each rill_gen_next.  fd stays open and the caller's;
 * bytes read past the last line yielded are lost when the generator is
 * freed.  Returns NULL with errno EBADF
 * (fd < 0) or ENOMEM.  Free it with rill_gen_free. */
RILL_API rill_gen *rill_lines(int fd);

/* ===========================================================================
 * Files
 * ======================================================================== */

/* A generator of the lines of the regular file at path (`async for line in
 * aiofiles.open(path)`), read in chunks of 64 KiB or more on the thread pool
 * while other fibers run.  Each value is a const char *: the line without
 * its "\n" (or "\r\n"), NUL-terminated, valid until the generator is resumed
 * again; a last line without a newline is yielded too (a "\r" ending it is
 * dropped); a line holding a NUL byte reads as shorter in C.  Lines may be
 * of any length (the buffer grows).
 * The file is opened at once and closed when the body ends, is closed, or is
 * freed.  NULL with errno: EINVAL (path NULL, or a FIFO, socket or device:
 * streams are read with rill_wait_fd), EISDIR, ENOMEM, or open()'s errno
 * (ENOENT, EACCES, ...).  The generator's body returns a read error as a
 * negative errno (or rill_to_thread's, or -ENOMEM for a line that outgrows
 * the memory to be had); consumed outside a fiber it returns -EPERM
 * (reading blocks).  A read cancelled before its pool job started has no
 * effect, as in rill_lines: rill_gen_next returns -ECANCELED and the next
 * call goes on.  Free it with rill_gen_free. */
RILL_API rill_gen *rill_file_lines(const char *path);

#ifdef __cplusplus
}
#endif
#endif /* RILL_H */
