/* The context switch on its own (runtime/switch.h): one backend, built from
 * switch.h and that backend's files only: no libev, no rest of rill, no
 * Criterion, so that it also builds and runs for another architecture
 * (make test-aarch64, under qemu-aarch64).
 *
 * Each check prints "PASS name" or "FAIL name: why"; the last line is
 * "switch: P passed, F failed" and the exit status is 0 only if nothing
 * failed.  What is checked:
 *   - ping-pong between the thread's stack and three fiber stacks, values
 *     handed over in shared memory arriving in order;
 *   - entry(arg) receives its arg, on the stack it was given;
 *   - every callee-saved register survives a switch while the other
 *     context has loaded different values into all of them;
 *   - the floating-point control state is each context's own and a new
 *     context starts with its maker's (fast, ucontext), or the thread's,
 *     shared by all (portable), as switch.h says;
 *   - the stack pointer at entry is aligned as the ABI requires;
 *   - the signal mask is each context's own (ucontext) or the thread's;
 *   - unwinding from any instruction of the switch finds its caller. */
#include <fenv.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "switch.h"

/* ---- reporting ---------------------------------------------------------- */

static int passed, failed;
static int errors; /* in the check running now */
static const char *running;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s: ", running);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    errors++;
}

/* A crash fails the check it happened in, by name. */
static void on_crash(int sig) {
    char msg[256];
    int n = snprintf(msg, sizeof msg, "FAIL %s: crashed with signal %d\n", running, sig);
    if (write(1, msg, (size_t)n) < 0) _exit(2);
    _exit(1);
}

static void catch_crashes(void) {
    static char alt[64 * 1024];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    sigaltstack(&ss, NULL);
    struct sigaction sa = {.sa_handler = on_crash, .sa_flags = SA_ONSTACK | SA_RESETHAND};
    int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}

static void run(const char *name, void (*check)(void)) {
    running = name;
    errors = 0;
    check();
    if (errors) failed++;
    else {
        passed++;
        printf("PASS %s\n", name);
    }
    fflush(stdout);
}

/* ---- stacks --------------------------------------------------------------- */

#define STACK_SIZE (64 * 1024)
#define NFIBERS 3
static _Alignas(64) char stacks[NFIBERS + 4][STACK_SIZE];

/* A fresh stack each time, so that no check depends on another's fibers:
 * hi is 16-aligned but, with skew, not 32- or 64-aligned. */
static int next_stack;
static void new_fiber(rill__ctx *c, void (*entry)(void *), void *arg, unsigned skew,
                      char **lo_out, char **hi_out) {
    if (next_stack == (int)(sizeof stacks / sizeof stacks[0])) next_stack = 0;
    char *lo = stacks[next_stack++];
    char *hi = lo + STACK_SIZE - 64 + 16 * (skew % 4);
    memset(lo, 0xa5, STACK_SIZE);
    rill__ctx_make(c, lo, hi, entry, arg);
    if (lo_out) *lo_out = lo;
    if (hi_out) *hi_out = hi;
}

static rill__ctx host;

/* ---- ping-pong -------------------------------------------------------------- */

#define ROUNDS 100000
static rill__ctx ring[NFIBERS];
static long token;      /* handed round: host -> fiber 0 -> 1 -> 2 -> host */
static long next_token; /* what the next context to run must find */
static int order[4 * 8], norder;

static void ring_entry(void *arg) {
    int me = (int)(intptr_t)arg;
    for (;;) {
        if (token != next_token) fail("fiber %d found token %ld, expected %ld", me, token, next_token);
        if (norder < (int)(sizeof order / sizeof order[0])) order[norder++] = me + 1;
        token++;
        next_token = token;
        rill__ctx_switch(&ring[me], me + 1 < NFIBERS ? &ring[me + 1] : &host);
    }
}

static void check_ping_pong(void) {
    for (int i = 0; i < NFIBERS; i++) new_fiber(&ring[i], ring_entry, (void *)(intptr_t)i, (unsigned)i, NULL, NULL);
    token = next_token = 0;
    norder = 0;
    for (long r = 0; r < ROUNDS && errors < 5; r++) {
        if (norder < (int)(sizeof order / sizeof order[0])) order[norder++] = 0;
        token = next_token = 1000 * r;
        rill__ctx_switch(&host, &ring[0]);
        if (token != 1000 * r + NFIBERS)
            fail("round %ld: back on the thread's stack with token %ld, expected %ld", r, token,
                 1000 * r + NFIBERS);
    }
    for (int i = 0; i < norder; i++)
        if (order[i] != i % (NFIBERS + 1)) {
            fail("context %d ran at step %d, expected %d", order[i], i, i % (NFIBERS + 1));
            break;
        }
}

/* ---- entry(arg) --------------------------------------------------------------- */

static rill__ctx argc_ctx;
static void *got_arg;
static char *got_local;

static void arg_entry(void *arg) {
    char here;
    got_arg = arg;
    got_local = &here;
    for (;;) rill__ctx_switch(&argc_ctx, &host);
}

static void check_entry_gets_its_arg(void) {
    static int cookies[3];
    for (int i = 0; i < 3; i++) {
        char *lo, *hi;
        got_arg = NULL;
        got_local = NULL;
        new_fiber(&argc_ctx, arg_entry, &cookies[i], (unsigned)i, &lo, &hi);
        rill__ctx_switch(&host, &argc_ctx);
        if (got_arg != &cookies[i]) fail("entry got %p, expected %p", got_arg, (void *)&cookies[i]);
        if (!(got_local >= lo && got_local < hi))
            fail("entry ran with a local at %p, outside its stack [%p, %p)", (void *)got_local,
                 (void *)lo, (void *)hi);
    }
}

/* ---- callee-saved registers ------------------------------------------------------ */

/* regs_switch(from, to, in, out): loads in[] into every callee-saved
 * register, calls rill__ctx_switch(from, to), and when it returns stores
 * those registers into out[] (and restores its caller's). */
void regs_switch(rill__ctx *from, rill__ctx *to, const uint64_t *in, uint64_t *out);

#if defined(__x86_64__)
#define NREGS 6
static const char *const reg_names[NREGS] = {"rbx", "rbp", "r12", "r13", "r14", "r15"};
__asm__(".text\n"
        ".globl regs_switch\n"
        ".type regs_switch, @function\n"
        "regs_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    pushq %rcx\n" /* out; rsp is now 16-aligned for the call */
        "    movq 0(%rdx), %rbx\n"
        "    movq 8(%rdx), %rbp\n"
        "    movq 16(%rdx), %r12\n"
        "    movq 24(%rdx), %r13\n"
        "    movq 32(%rdx), %r14\n"
        "    movq 40(%rdx), %r15\n"
        "    call rill__ctx_switch\n"
        "    popq %rcx\n"
        "    movq %rbx, 0(%rcx)\n"
        "    movq %rbp, 8(%rcx)\n"
        "    movq %r12, 16(%rcx)\n"
        "    movq %r13, 24(%rcx)\n"
        "    movq %r14, 32(%rcx)\n"
        "    movq %r15, 40(%rcx)\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size regs_switch, .-regs_switch\n");
#elif defined(__aarch64__)
#define NREGS 19
static const char *const reg_names[NREGS] = {
    "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
    "x29", "d8",  "d9",  "d10", "d11", "d12", "d13", "d14", "d15"};
__asm__(".text\n"
        ".globl regs_switch\n"
        ".type regs_switch, %function\n"
        "regs_switch:\n"
        "    stp x29, x30, [sp, #-176]!\n"
        "    stp x19, x20, [sp, #16]\n"
        "    stp x21, x22, [sp, #32]\n"
        "    stp x23, x24, [sp, #48]\n"
        "    stp x25, x26, [sp, #64]\n"
        "    stp x27, x28, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    str x3, [sp, #160]\n"
        "    ldp x19, x20, [x2, #0]\n"
        "    ldp x21, x22, [x2, #16]\n"
        "    ldp x23, x24, [x2, #32]\n"
        "    ldp x25, x26, [x2, #48]\n"
        "    ldp x27, x28, [x2, #64]\n"
        "    ldr x29, [x2, #80]\n"
        "    ldp d8, d9, [x2, #88]\n"
        "    ldp d10, d11, [x2, #104]\n"
        "    ldp d12, d13, [x2, #120]\n"
        "    ldp d14, d15, [x2, #136]\n"
        "    bl rill__ctx_switch\n"
        "    ldr x3, [sp, #160]\n"
        "    stp x19, x20, [x3, #0]\n"
        "    stp x21, x22, [x3, #16]\n"
        "    stp x23, x24, [x3, #32]\n"
        "    stp x25, x26, [x3, #48]\n"
        "    stp x27, x28, [x3, #64]\n"
        "    str x29, [x3, #80]\n"
        "    stp d8, d9, [x3, #88]\n"
        "    stp d10, d11, [x3, #104]\n"
        "    stp d12, d13, [x3, #120]\n"
        "    stp d14, d15, [x3, #136]\n"
        "    ldp x19, x20, [sp, #16]\n"
        "    ldp x21, x22, [sp, #32]\n"
        "    ldp x23, x24, [sp, #48]\n"
        "    ldp x25, x26, [sp, #64]\n"
        "    ldp x27, x28, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    ldp x29, x30, [sp], #176\n"
        "    ret\n"
        ".size regs_switch, .-regs_switch\n");
#else
#error "the switch test knows the callee-saved registers of x86-64 and aarch64 only"
#endif

static rill__ctx regs_ctx;
static uint64_t fiber_in[NREGS], fiber_out[NREGS];

static void fill(uint64_t *r, uint64_t seed) {
    for (int i = 0; i < NREGS; i++) r[i] = seed * 0x0101010101010101ull ^ (uint64_t)(i + 1) << 40;
}

/* The other side: clobbers every callee-saved register with its own values
 * before it switches back, and checks it gets them back in turn. */
static void regs_entry(void *arg) {
    (void)arg;
    for (uint64_t round = 1;; round++) {
        fill(fiber_in, 0x50 + round);
        regs_switch(&regs_ctx, &host, fiber_in, fiber_out);
        for (int i = 0; i < NREGS; i++)
            if (fiber_out[i] != fiber_in[i])
                fail("fiber: %s was %#llx after the switch, expected %#llx", reg_names[i],
                     (unsigned long long)fiber_out[i], (unsigned long long)fiber_in[i]);
    }
}

static void check_callee_saved_registers(void) {
    uint64_t in[NREGS], out[NREGS];
    new_fiber(&regs_ctx, regs_entry, NULL, 1, NULL, NULL);
    for (uint64_t round = 1; round <= 100 && !errors; round++) {
        fill(in, 0xa0 + round);
        memset(out, 0, sizeof out);
        regs_switch(&host, &regs_ctx, in, out);
        for (int i = 0; i < NREGS; i++)
            if (out[i] != in[i])
                fail("thread's stack: %s was %#llx after the switch, expected %#llx",
                     reg_names[i], (unsigned long long)out[i], (unsigned long long)in[i]);
    }
}

/* ---- floating-point control state -------------------------------------------------- */

/* The control state, as one number: MXCSR's control bits << 16 | the x87
 * control word; FPCR.  Exception flags (MXCSR's low bits, FPSR) are not
 * part of it. */
#if defined(__x86_64__)
static uint64_t fp_get(void) {
    uint32_t mxcsr;
    uint16_t cw;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(cw));
    return (uint64_t)(mxcsr & ~0x3fu) << 16 | cw; /* not the exception flags */
}
static void fp_set(uint64_t v) {
    uint32_t mxcsr = (uint32_t)(v >> 16);
    uint16_t cw = (uint16_t)v;
    __asm__ volatile("ldmxcsr %0\n\tfldcw %1" : : "m"(mxcsr), "m"(cw));
}
/* Rounding up and flush-to-zero; x87 rounding up.  Then rounding towards
 * zero and denormals-are-zero; x87 towards zero at single precision. */
static uint64_t fp_state_a(uint64_t d) {
    uint64_t mxcsr = ((d >> 16) & ~0x6000ull) | 0x4000 | 0x8000, cw = ((d & 0xffff) & ~0x0c00ull) | 0x0800;
    return mxcsr << 16 | cw;
}
static uint64_t fp_state_b(uint64_t d) {
    uint64_t mxcsr = (d >> 16) | 0x6000 | 0x0040, cw = ((d & 0xffff) & ~0x0f00ull) | 0x0c00;
    return mxcsr << 16 | cw;
}
#elif defined(__aarch64__)
static uint64_t fp_get(void) {
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}
static void fp_set(uint64_t v) { __asm__ volatile("msr fpcr, %0" : : "r"(v)); }
/* RMode (bits 22-23) towards +inf and FZ; then towards zero and DN. */
static uint64_t fp_state_a(uint64_t d) { return (d & ~(3ull << 22)) | 1ull << 22 | 1ull << 24; }
static uint64_t fp_state_b(uint64_t d) { return (d & ~(3ull << 22)) | 3ull << 22 | 1ull << 25; }
#endif

static const char *round_name(int r) {
    switch (r) {
    case FE_TONEAREST: return "to nearest";
    case FE_UPWARD: return "upward";
    case FE_DOWNWARD: return "downward";
    case FE_TOWARDZERO: return "towards zero";
    default: return "?";
    }
}

static rill__ctx fp_ctx;
static uint64_t fp_default;

static void expect_fp(const char *where, uint64_t want, int want_round) {
    uint64_t got = fp_get();
    if (got != want)
        fail("%s: FP control state %#llx, expected %#llx", where, (unsigned long long)got,
             (unsigned long long)want);
    /* What C sees of it, and what arithmetic does with it. */
    if (fegetround() != want_round)
        fail("%s: fegetround() says %s, expected %s", where, round_name(fegetround()),
             round_name(want_round));
    volatile double one = 1, three = 3;
    double third = one / three, down = one / three;
    (void)down;
    volatile double back = third * three;
    if (want_round == FE_UPWARD && !(back >= 1))
        fail("%s: 1/3*3 = %.17g, rounding upward should give >= 1", where, back);
}

static void fp_entry(void *arg) {
    (void)arg;
    /* The state of the thread when the context was made. */
    expect_fp("fiber, first entry", fp_default, FE_TONEAREST);
    fp_set(fp_state_b(fp_default));
    for (;;) {
        rill__ctx_switch(&fp_ctx, &host);
        expect_fp("fiber, resumed", fp_state_b(fp_default), FE_TOWARDZERO);
    }
}

/* A context made while the state was A starts with A. */
static rill__ctx fp_child_ctx;
static void fp_child_entry(void *arg) {
    (void)arg;
    expect_fp("fiber made under state A, first entry", fp_state_a(fp_default), FE_UPWARD);
    fp_set(fp_default);
    for (;;) {
        rill__ctx_switch(&fp_child_ctx, &host);
        expect_fp("fiber made under state A, resumed", fp_default, FE_TONEAREST);
    }
}

static void check_fp_control_state(void) {
    fp_default = fp_get();
    new_fiber(&fp_ctx, fp_entry, NULL, 2, NULL, NULL);
    fp_set(fp_state_a(fp_default));
    new_fiber(&fp_child_ctx, fp_child_entry, NULL, 3, NULL, NULL);
    for (int i = 0; i < 3; i++) {
        rill__ctx_switch(&host, &fp_ctx);
        expect_fp("thread's stack, resumed", fp_state_a(fp_default), FE_UPWARD);
        rill__ctx_switch(&host, &fp_child_ctx);
        expect_fp("thread's stack, resumed", fp_state_a(fp_default), FE_UPWARD);
    }
    fp_set(fp_default);
}

/* What the portable backend does instead: one state for the thread. */
static void fp_shared_entry(void *arg) {
    (void)arg;
    expect_fp("fiber, first entry", fp_state_a(fp_default), FE_UPWARD);
    fp_set(fp_state_b(fp_default));
    for (;;) {
        rill__ctx_switch(&fp_ctx, &host);
        expect_fp("fiber, resumed", fp_state_a(fp_default), FE_UPWARD);
        fp_set(fp_state_b(fp_default));
    }
}

static void check_fp_control_state_shared(void) {
    fp_default = fp_get();
    new_fiber(&fp_ctx, fp_shared_entry, NULL, 2, NULL, NULL);
    fp_set(fp_state_a(fp_default));
    for (int i = 0; i < 3; i++) {
        rill__ctx_switch(&host, &fp_ctx);
        expect_fp("thread's stack, resumed", fp_state_b(fp_default), FE_TOWARDZERO);
        fp_set(fp_state_a(fp_default));
    }
    fp_set(fp_default);
}

/* ---- signal mask ----------------------------------------------------------------------- */

/* switch.h: the ucontext switch keeps a mask per context; the others leave
 * the thread's alone, a new context's first entry too. */
static rill__ctx mask_ctx;
static int mask_blocked(int sig) {
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    return sigismember(&now, sig);
}

static void mask_entry(void *arg) {
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    if (rill__ctx_own_sigmask) {
        /* Its own, from the thread's at its first context. */
        if (mask_blocked(SIGUSR2)) fail("fiber's first entry: SIGUSR2 blocked, as on the thread's stack");
    } else if (!mask_blocked(SIGUSR2)) {
        fail("fiber's first entry: SIGUSR2, blocked by the thread, unblocked");
    }
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    for (;;) {
        rill__ctx_switch(&mask_ctx, &host);
        if (!mask_blocked(SIGUSR1)) fail("fiber resumed: SIGUSR1, blocked here, unblocked");
    }
}

static void check_signal_mask(void) {
    sigset_t saved, s;
    pthread_sigmask(SIG_BLOCK, NULL, &saved);
    new_fiber(&mask_ctx, mask_entry, NULL, 1, NULL, NULL); /* not the first made */
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    for (int i = 0; i < 2; i++) {
        rill__ctx_switch(&host, &mask_ctx);
        if (!mask_blocked(SIGUSR2)) fail("thread's stack resumed: SIGUSR2 unblocked");
        if (mask_blocked(SIGUSR1) != !rill__ctx_own_sigmask)
            fail("thread's stack resumed: SIGUSR1, blocked by the fiber, is %sblocked here",
                 mask_blocked(SIGUSR1) ? "" : "not ");
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/* ---- stack alignment ------------------------------------------------------------------ */

/* probe_entry records the stack pointer it is entered with, then jumps (the
 * stack untouched) to probe_body, an ordinary C function. */
void probe_entry(void *arg);
void probe_body(void *arg);
uintptr_t probe_sp;
#if defined(__x86_64__)
__asm__(".text\n.globl probe_entry\n.type probe_entry, @function\nprobe_entry:\n"
        "    movq %rsp, probe_sp(%rip)\n"
        "    jmp probe_body\n"
        ".size probe_entry, .-probe_entry\n");
/* At a function's first instruction, the return address just pushed. */
#define SP_ALIGNED(sp) (((sp) + 8) % 16 == 0)
#define SP_RULE "(sp + 8) % 16 == 0"
#elif defined(__aarch64__)
__asm__(".text\n.globl probe_entry\n.type probe_entry, %function\nprobe_entry:\n"
        "    mov x9, sp\n"
        "    adrp x10, probe_sp\n"
        "    str x9, [x10, :lo12:probe_sp]\n"
        "    b probe_body\n"
        ".size probe_entry, .-probe_entry\n");
#define SP_ALIGNED(sp) ((sp) % 16 == 0)
#define SP_RULE "sp % 16 == 0"
#endif

static rill__ctx probe_ctx;
static uintptr_t probe_local;

void probe_body(void *arg) {
    (void)arg;
    /* The compiler trusts the ABI's alignment for this one. */
    _Alignas(16) volatile char aligned[16];
    aligned[0] = 1;
    probe_local = (uintptr_t)aligned;
    for (;;) rill__ctx_switch(&probe_ctx, &host);
}

static void check_stack_alignment(void) {
    for (unsigned skew = 0; skew < 4; skew++) {
        char *lo, *hi;
        probe_sp = probe_local = 0;
        new_fiber(&probe_ctx, probe_entry, NULL, skew, &lo, &hi);
        rill__ctx_switch(&host, &probe_ctx);
        if (!SP_ALIGNED(probe_sp))
            fail("stack top %p: sp at entry %#lx, the ABI wants " SP_RULE, (void *)hi,
                 (unsigned long)probe_sp);
        if (probe_local % 16)
            fail("stack top %p: an _Alignas(16) local at %#lx", (void *)hi, (unsigned long)probe_local);
        /* switch.h: the start state takes the topmost bytes, at most
         * RILL__CTX_START_MAX of them. */
        if (probe_sp > (uintptr_t)hi || (uintptr_t)hi - probe_sp > RILL__CTX_START_MAX)
            fail("stack [%p, %p): entry's sp %#lx is not within the top %zu bytes", (void *)lo,
                 (void *)hi, (unsigned long)probe_sp, (size_t)RILL__CTX_START_MAX);
    }
}

/* ---- unwinding ------------------------------------------------------------------------- */

/* A debugger, a profiler or a crash report stopped anywhere in the switch
 * must find the caller: the one that called it, or after the stack swap the
 * one it returns to.  On x86-64 the trap flag stops the switch at every
 * instruction; the SIGTRAP handler unwinds (libgcc, from the unwind tables)
 * from there.  aarch64 has no single-step in user mode: not checked there. */
#if defined(__x86_64__)
#include <unwind.h>

static rill__ctx unwind_ctx;
static volatile int unwind_phase; /* 1: stepping; 2: done */
static int unwind_stops, unwind_bad;
static void *unwind_bad_pc, *unwind_bad_caller;
static volatile int unwind_resumes;
/* Each must stay one function of its own name: no inlining, no clones. */
#ifdef __clang__
#define MARKER __attribute__((noinline))
#else
#define MARKER __attribute__((noinline, noclone))
#endif

MARKER static void host_side(void) {
    unwind_phase = 1;
    __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq" : : : "memory", "cc");
    rill__ctx_switch(&host, &unwind_ctx);
    unwind_resumes++; /* no tail call: this frame stays under the switch */
}

MARKER static void fiber_side(void) {
    rill__ctx_switch(&unwind_ctx, &host);
    unwind_resumes++;
}

static void unwind_entry(void *arg) {
    (void)arg;
    for (;;) fiber_side();
}

typedef struct trace {
    void *fn[12];
    int n;
} trace;

static _Unwind_Reason_Code collect(struct _Unwind_Context *ctx, void *arg) {
    trace *t = arg;
    int exact = 0;
    uintptr_t ip = _Unwind_GetIPInfo(ctx, &exact);
    if (!exact && ip) ip--; /* a return address: the call is before it */
    t->fn[t->n++] = _Unwind_FindEnclosingFunction((void *)ip);
    return t->n < 12 ? _URC_NO_REASON : _URC_END_OF_STACK;
}

static void on_trap(int sig, siginfo_t *si, void *uc_) {
    (void)sig, (void)si;
    ucontext_t *uc = uc_;
    void *pc = (void *)uc->uc_mcontext.gregs[REG_RIP];
    void *fn = _Unwind_FindEnclosingFunction(pc);
    if (unwind_phase != 1) return;
    if (fn == (void *)fiber_side) { /* the switch is over */
        uc->uc_mcontext.gregs[REG_EFL] &= ~0x100;
        unwind_phase = 2;
        return;
    }
    if (fn != (void *)rill__ctx_switch) return; /* before it, or inside libc */
    unwind_stops++;
    trace t = {.n = 0};
    _Unwind_Backtrace(collect, &t);
    void *caller = NULL;
    for (int i = 0; i + 1 < t.n; i++)
        if (t.fn[i] == (void *)rill__ctx_switch) {
            caller = t.fn[i + 1];
            break;
        }
    if (caller != (void *)host_side && caller != (void *)fiber_side && !unwind_bad++) {
        unwind_bad_pc = pc;
        unwind_bad_caller = caller;
    }
}

static void check_unwinding_inside_the_switch(void) {
    struct sigaction sa = {.sa_sigaction = on_trap, .sa_flags = SA_SIGINFO}, old;
    sigaction(SIGTRAP, &sa, &old);
    new_fiber(&unwind_ctx, unwind_entry, NULL, 0, NULL, NULL);
    rill__ctx_switch(&host, &unwind_ctx); /* now waiting in fiber_side */
    unwind_phase = 0;
    unwind_stops = unwind_bad = 0;
    host_side();
    sigaction(SIGTRAP, &old, NULL);
    if (unwind_phase != 2) fail("stepping never reached the fiber's side");
    if (unwind_stops < 5) fail("stopped only %d times in rill__ctx_switch", unwind_stops);
    if (unwind_bad)
        fail("at %d of %d instructions of rill__ctx_switch the caller found was not "
             "host_side or fiber_side; first at pc %p (rill__ctx_switch+%ld): %p",
             unwind_bad, unwind_stops, unwind_bad_pc,
             (long)((char *)unwind_bad_pc - (char *)(void *)rill__ctx_switch), unwind_bad_caller);
}
#endif

/* ---- main ------------------------------------------------------------------------------ */

int main(void) {
    printf("switch backend %s (%s)\n", rill__ctx_backend, rill__ctx_method);
    catch_crashes();
    run("ping_pong_between_the_thread_and_three_fibers_keeps_order", check_ping_pong);
    run("entry_receives_its_arg_on_its_own_stack", check_entry_gets_its_arg);
    run("callee_saved_registers_survive_a_switch", check_callee_saved_registers);
    if (strcmp(rill__ctx_backend, "portable") == 0) {
        run("fp_control_state_is_the_threads_shared_by_every_context", check_fp_control_state_shared);
    } else {
        run("fp_control_state_is_each_contexts_own", check_fp_control_state);
    }
    run("stack_is_aligned_at_entry_as_the_abi_requires", check_stack_alignment);
    run(rill__ctx_own_sigmask ? "signal_mask_is_each_contexts_own"
                              : "signal_mask_is_the_threads_shared_by_every_context",
        check_signal_mask);
#if defined(__x86_64__)
    run("an_unwinder_stopped_at_any_instruction_of_the_switch_finds_the_caller",
        check_unwinding_inside_the_switch);
#else
    printf("SKIP an_unwinder_stopped_at_any_instruction_of_the_switch_finds_the_caller "
           "(needs x86-64's trap flag)\n");
#endif
    printf("switch %s: %d passed, %d failed\n", rill__ctx_backend, passed, failed);
    return failed ? 1 : 0;
}
