/* The ucontext backend (switch.h): makecontext for a new stack, swapcontext
 * for every switch.  swapcontext saves and restores the signal mask with a
 * system call each time: the one reason for the other backends. */
#include <ucontext.h>

#include "switch.h"

const char rill__ctx_backend[] = "ucontext";
const char rill__ctx_method[] = "swapcontext";
const int rill__ctx_own_sigmask = 1;
const int rill__ctx_own_fp_control = 1;

void rill__ctx_make(rill__ctx *c, char *lo, char *hi, void (*entry)(void *), void *arg) {
    c->p = rill__ctx_start(lo, hi, entry, arg);
}

void rill__ctx_switch(rill__ctx *from, rill__ctx *to) {
    ucontext_t here; /* lives until this frame is resumed */
    /* swapcontext saves no stack bounds, but AddressSanitizer's swapcontext
     * reads the target's, and clears the shadow of that range: garbage there
     * would unpoison (or wreck) any stretch of memory. */
    here.uc_stack = (stack_t){0};
    from->p = &here;
    swapcontext(&here, to->p);
}
