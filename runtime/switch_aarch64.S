/* The fast backend's switch for aarch64 (AAPCS64); see switch.h and
 * switch_fast.c, whose `frame` is the layout stored here. */
        .text

/* void rill__ctx_switch(rill__ctx *from, rill__ctx *to) */
        .globl  rill__ctx_switch
        .hidden rill__ctx_switch
        .type   rill__ctx_switch, %function
        .p2align 4
rill__ctx_switch:
        .cfi_startproc
        sub     sp, sp, #176
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mrs     x9, fpcr
        str     x9, [sp, #160]
        mov     x9, sp
        str     x9, [x0]                /* from->p: where it resumes */
        ldr     x9, [x1]                /* to's stack, as its switch left it */
        mov     sp, x9
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        ldr     x9, [sp, #160]
        msr     fpcr, x9
        add     sp, sp, #176
        ret
        .cfi_endproc
        .size   rill__ctx_switch, .-rill__ctx_switch

/* First code on a new stack, "returned to" by the switch: entry(arg), with
 * entry in x19 and arg in x20.  Entry never returns. */
        .globl  rill__ctx_begin
        .hidden rill__ctx_begin
        .type   rill__ctx_begin, %function
        .p2align 4
rill__ctx_begin:
        .cfi_startproc
        .cfi_undefined x30              /* the outermost frame: unwinders stop */
        mov     x0, x20
        blr     x19
        brk     #0
        .cfi_endproc
        .size   rill__ctx_begin, .-rill__ctx_begin

        .section .note.GNU-stack, "", %progbits
