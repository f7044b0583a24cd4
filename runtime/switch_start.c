/* A new context for the ucontext and portable backends (switch.h): a
 * ucontext at the top of the new stack, made without a system call. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switch.h"

/* What a new context starts from: taken with getcontext once per thread, so
 * that making a fiber is no system call.  A new fiber starts with the signal
 * mask its thread had at its first fiber, and with the floating-point control
 * state of the context that made it (rill__ctx_fp_here). */
static _Thread_local ucontext_t start_template;
static _Thread_local bool have_template;

typedef struct start {
    ucontext_t uc;
    void (*entry)(void *);
    void *arg;
} start;

/* makecontext passes int arguments only: the start record's address comes
 * in two halves. */
static void begin(unsigned hi, unsigned lo) {
    start *s = (start *)(((uintptr_t)hi << 16 << 16) | lo);
    s->entry(s->arg);
}

void rill__ctx_fp_here(ucontext_t *uc) {
#if defined(__x86_64__) && defined(__GLIBC__)
    /* glibc's getcontext stores the x87 environment (fnstenv: the control
     * word first) at fpregs and MXCSR in its fxsave slot; setcontext loads
     * both from there. */
    unsigned mxcsr;
    unsigned short cw;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(cw));
    uc->uc_mcontext.fpregs->cwd = cw;
    uc->uc_mcontext.fpregs->mxcsr = mxcsr;
#elif defined(__aarch64__) && defined(__GLIBC__)
    /* glibc's getcontext writes the kernel's fpsimd_context record first in
     * __reserved, and setcontext loads FPCR from it. */
    struct {
        uint32_t magic, size, fpsr, fpcr;
    } *fp = (void *)uc->uc_mcontext.__reserved;
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    if (fp->magic == 0x46508001u) fp->fpcr = (uint32_t)fpcr; /* FPSIMD_MAGIC */
#else
    (void)uc; /* elsewhere: the thread's state at its first fiber */
#endif
}

ucontext_t *rill__ctx_start(char *lo, char *hi, void (*entry)(void *), void *arg) {
    if (!have_template) {
        getcontext(&start_template);
        have_template = true;
    }
    start *s = (start *)(void *)(((uintptr_t)hi - sizeof(start)) & ~(uintptr_t)15);
    s->uc = start_template;
#if defined(__x86_64__) && defined(__GLIBC__)
    s->uc.uc_mcontext.fpregs = &s->uc.__fpregs_mem; /* the copy's own, not the template's */
#endif
    s->uc.uc_stack.ss_sp = lo;
    s->uc.uc_stack.ss_size = (size_t)((char *)s - lo);
    s->uc.uc_link = NULL;
    rill__ctx_fp_here(&s->uc);
    s->entry = entry;
    s->arg = arg;
    uintptr_t a = (uintptr_t)s;
    makecontext(&s->uc, (void (*)(void))begin, 2, (unsigned)(a >> 16 >> 16), (unsigned)a);
    return &s->uc;
}
