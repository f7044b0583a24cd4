/* The portable backend (switch.h): _setjmp/_longjmp between running
 * contexts, which saves no signal mask; a new context is entered once
 * through setcontext, which sets the signal mask and the floating-point
 * control state it holds: the thread's are put there first (its only
 * system calls).  _FORTIFY_SOURCE's longjmp check rejects a jump to another
 * stack, so it is off in this file. */
#undef _FORTIFY_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>

#include "switch.h"

const char rill__ctx_backend[] = "portable";
const char rill__ctx_method[] = "_setjmp/_longjmp";
const int rill__ctx_own_sigmask = 0;
const int rill__ctx_own_fp_control = 0;

/* A context never entered is its start ucontext with the low bit set. */
#define FRESH ((uintptr_t)1)

void rill__ctx_make(rill__ctx *c, char *lo, char *hi, void (*entry)(void *), void *arg) {
    c->p = (void *)((uintptr_t)rill__ctx_start(lo, hi, entry, arg) | FRESH);
}

void rill__ctx_switch(rill__ctx *from, rill__ctx *to) {
    jmp_buf here; /* lives until this frame is resumed */
    from->p = here;
    if (_setjmp(here) != 0) return;
    uintptr_t t = (uintptr_t)to->p;
    if (t & FRESH) {
        /* The thread's, not those it had at its first context or at make. */
        ucontext_t *uc = (ucontext_t *)(t & ~FRESH);
        pthread_sigmask(SIG_BLOCK, NULL, &uc->uc_sigmask);
        rill__ctx_fp_here(uc);
        setcontext(uc);
    }
    _longjmp(*(jmp_buf *)to->p, 1);
}
