/* The context switch: one interface, three backends, one of them built
 * (Makefile: SWITCH=ucontext, the default; SWITCH=fast; SWITCH=portable).
 * The Makefile compiles the chosen backend's files only.  Only fiber.c
 * calls it; nothing else in the runtime knows which backend it runs on.
 *
 *   ucontext  makecontext + swapcontext (switch_ucontext.c).  Each fiber
 *             keeps its own signal mask (a new one starts with the mask its
 *             thread had at its first fiber); every switch is a system call.
 *   fast      switch_x86_64.S / switch_aarch64.S: saves the callee-saved
 *             registers, the stack pointer and the floating-point control
 *             state (x87 control word and MXCSR; FPCR) on the stack it
 *             leaves.  One signal mask for the thread.  Other architectures
 *             get the portable backend instead (the Makefile says so).
 *   portable  _setjmp/_longjmp (switch_portable.c); a new fiber is entered
 *             once through a ucontext, given the thread's signal mask and
 *             floating-point control state.  One signal mask for the thread.
 *
 * Every backend preserves the callee-saved registers across a switch.  The
 * floating-point control state (x86-64: MXCSR's control bits and the x87
 * control word; aarch64: FPCR; rounding mode, flush-to-zero, ...):
 *   fast, ucontext  each context has its own, restored when it resumes (glibc's
 *             swapcontext saves the x87 environment and MXCSR; FPCR); a
 *             new context starts with the state of the one that made it,
 *             as a new thread does.
 *   portable  one for the thread, shared by every context: _longjmp restores
 *             none, and entering a new context leaves it as it is.
 * Exception flags (MXCSR's low bits, FPSR) are nobody's promise.
 * tests/switch/test_switch.c checks these promises, backend by backend
 * (make test-switch; make test-aarch64 under qemu-aarch64).
 *
 * Standalone: includes nothing of rill, so that the switch test can build
 * a backend on its own, for another architecture too. */
#ifndef RILL_SWITCH_H
#define RILL_SWITCH_H

#include <ucontext.h>

/* Where a suspended context resumes; what it points to is the backend's:
 * the stack pointer saved by the fast switch, or a ucontext_t / jmp_buf in
 * the frame of the switch that suspended it (or at the top of a new stack,
 * for a context never entered yet). */
typedef struct rill__ctx {
    void *p;
} rill__ctx;

/* Prepare c to run entry(arg) on the stack [lo, hi) (hi 16-byte aligned) at
 * the first switch to it; entry must never return.  The backend keeps its
 * start state in the topmost bytes of the range: entry is called with at
 * most RILL__CTX_START_MAX bytes above its stack pointer.  Makes no system
 * call. */
void rill__ctx_make(rill__ctx *c, char *lo, char *hi, void (*entry)(void *), void *arg);
/* A ucontext_t and a frame or two: under 1.3 KiB on x86-64, 4.8 KiB on
 * aarch64 (whose ucontext_t is 4.5 KiB). */
#define RILL__CTX_START_MAX (sizeof(ucontext_t) + 256)

/* Save the running context into *from and resume *to.  Returns when some
 * context switches back to *from.  from needs no rill__ctx_make: the
 * thread's own stack is saved and resumed the same way. */
void rill__ctx_switch(rill__ctx *from, rill__ctx *to);

/* The backend built: "ucontext", "fast" or "portable", and how it switches
 * ("swapcontext", "x86-64 assembly", "aarch64 assembly", "_setjmp/_longjmp"). */
extern const char rill__ctx_backend[];
extern const char rill__ctx_method[];
/* Whether each context keeps a signal mask of its own (ucontext only). */
extern const int rill__ctx_own_sigmask;
/* Whether each context keeps its floating-point control state (not portable). */
extern const int rill__ctx_own_fp_control;

/* A new context for the ucontext and portable backends (switch_start.c):
 * a ucontext at the top of [lo, hi) that calls entry(arg). */
ucontext_t *rill__ctx_start(char *lo, char *hi, void (*entry)(void *), void *arg);
/* Put the running context's floating-point control state into uc, for
 * setcontext to load (switch_start.c). */
void rill__ctx_fp_here(ucontext_t *uc);

#endif
