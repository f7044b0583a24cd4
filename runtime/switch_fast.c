/* The fast backend (switch.h): the switch itself is switch_x86_64.S or
 * switch_aarch64.S.  A new stack starts with the frame that switch would
 * have left on it: the registers it restores (zero, but for the entry
 * point and its argument), the floating-point control state of the thread
 * that made it, and rill__ctx_begin as the return address, which calls
 * entry(arg). */
#include <stdint.h>
#include <string.h>

#include "switch.h"

const char rill__ctx_backend[] = "fast";
const int rill__ctx_own_sigmask = 0;
const int rill__ctx_own_fp_control = 1;

void rill__ctx_begin(void); /* the assembly file's */

#if defined(__x86_64__)
const char rill__ctx_method[] = "x86-64 assembly";

/* The switch's frame, from the saved stack pointer up. */
typedef struct frame {
    uint32_t mxcsr, x87cw;
    uint64_t r15, r14, r13, r12, rbx, rbp;
    void (*ret)(void);
    uint64_t pad[2]; /* rill__ctx_begin's call then finds the stack 16-aligned */
} frame;

void rill__ctx_make(rill__ctx *c, char *lo, char *hi, void (*entry)(void *), void *arg) {
    (void)lo;
    frame *f = (frame *)(void *)(hi - sizeof(frame));
    uint32_t mxcsr;
    uint16_t x87cw;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(x87cw));
    *f = (frame){.mxcsr = mxcsr, .x87cw = x87cw, .rbx = (uint64_t)(uintptr_t)entry,
                 .r12 = (uint64_t)(uintptr_t)arg, .ret = rill__ctx_begin};
    c->p = f;
}
#elif defined(__aarch64__)
const char rill__ctx_method[] = "aarch64 assembly";

typedef struct frame {
    uint64_t x19, x20, x21_28[8];
    uint64_t x29;
    void (*x30)(void);
    uint64_t d8_15[8];
    uint64_t fpcr, pad;
} frame;

void rill__ctx_make(rill__ctx *c, char *lo, char *hi, void (*entry)(void *), void *arg) {
    (void)lo;
    frame *f = (frame *)(void *)(hi - sizeof(frame));
    memset(f, 0, sizeof *f);
    __asm__ volatile("mrs %0, fpcr" : "=r"(f->fpcr));
    f->x19 = (uint64_t)(uintptr_t)entry;
    f->x20 = (uint64_t)(uintptr_t)arg;
    f->x30 = rill__ctx_begin;
    c->p = f;
}
#else
#error "the fast switch is written for x86-64 and aarch64 (build with SWITCH=portable)"
#endif
