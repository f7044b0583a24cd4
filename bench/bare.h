/*
 * Bare switches between two stacks, with nothing of rill around them: the
 * floors a rill switch is measured against (bench/bench.h has the
 * swapcontext one).  Each is a ping-pong: n switches are n/2 round trips
 * main -> peer -> main.
 *
 *   bench_setjmp   _setjmp/_longjmp, as the portable backend switches; the
 *                  peer's stack is entered once through a ucontext.
 *   bench_ctx      rill's own rill__ctx_switch (runtime/switch.h) alone, as
 *                  the library linked was built (rill_build_info()): in the
 *                  SWITCH=fast build the bare register switch (callee-saved
 *                  registers and the floating-point control state), in the
 *                  others the backend's swapcontext or _setjmp/_longjmp.
 *
 * rill__ctx_* is hidden in librill.so but linked from librill.a.
 * Include this file before any other: _FORTIFY_SOURCE's longjmp check
 * rejects a jump to another stack, so it must be off before the system
 * headers see it.
 */
#ifndef RILL_BENCH_BARE_H
#define RILL_BENCH_BARE_H

#undef _FORTIFY_SOURCE
#include <setjmp.h>

#include "../runtime/switch.h"
#include "bench.h"

#if defined(__USE_FORTIFY_LEVEL) && __USE_FORTIFY_LEVEL > 0
#error "bench/bare.h must be included before any system header (_FORTIFY_SOURCE)"
#endif

/* A peer's stack, allocated once: a run leaves its peer suspended for good,
 * and the next run starts a new one on the same stack. */
static inline char *peer_stack(char **stack) {
    if (!*stack && !(*stack = malloc(STACK_BYTES))) die("malloc", -ENOMEM);
    return *stack;
}

/* ---- _setjmp/_longjmp --------------------------------------------------------- */

static jmp_buf jb_main, jb_peer;

/* One switch, in a frame of its own as the portable backend's: the caller's
 * variables need not survive a setjmp. */
__attribute__((noinline)) static void jb_switch(jmp_buf from, jmp_buf to) {
    if (_setjmp(from) == 0) _longjmp(to, 1);
}

static void jb_peer_fn(void) {
    for (;;) jb_switch(jb_peer, jb_main);
}

static inline uint64_t bench_setjmp(uint64_t n) {
    static ucontext_t start;
    static char *stack;
    if (getcontext(&start) != 0) die("getcontext", -errno);
    start.uc_stack.ss_sp = peer_stack(&stack);
    start.uc_stack.ss_size = STACK_BYTES;
    start.uc_link = NULL;
    makecontext(&start, jb_peer_fn, 0);
    if (_setjmp(jb_main) == 0) setcontext(&start); /* first entry, not timed */
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n / 2; i++) jb_switch(jb_main, jb_peer);
    return now_ns() - t0;
}

/* ---- rill__ctx_switch alone ------------------------------------------------------ */

static rill__ctx ctx_main, ctx_peer;

static void ctx_peer_fn(void *arg) {
    (void)arg;
    for (;;) rill__ctx_switch(&ctx_peer, &ctx_main);
}

static inline uint64_t bench_ctx(uint64_t n) {
    static char *stack;
    char *lo = peer_stack(&stack);
    char *hi = (char *)((uintptr_t)(lo + STACK_BYTES) & ~(uintptr_t)15);
    rill__ctx_make(&ctx_peer, lo, hi, ctx_peer_fn, NULL);
    rill__ctx_switch(&ctx_main, &ctx_peer); /* first entry, not timed */
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n / 2; i++) rill__ctx_switch(&ctx_main, &ctx_peer);
    return now_ns() - t0;
}

/* "bare rill__ctx_switch (x86-64 assembly)": the row's name, for this build. */
static inline const char *ctx_row_name(void) {
    static char name[64];
    snprintf(name, sizeof name, "bare rill__ctx_switch (%s)", rill_build_info()->switch_method);
    return name;
}

#endif
