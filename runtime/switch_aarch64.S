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
        /* The unwind rules hold on both sides of the stack swap: the
         * frame resumed has the same layout as the one left. */
        sub     sp, sp, #176
        .cfi_def_cfa_offset 176
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        .cfi_offset x19, -176
        .cfi_offset x20, -168
        .cfi_offset x21, -160
        .cfi_offset x22, -152
        .cfi_offset x23, -144
        .cfi_offset x24, -136
        .cfi_offset x25, -128
        .cfi_offset x26, -120
        .cfi_offset x27, -112
        .cfi_offset x28, -104
        .cfi_offset x29, -96
        .cfi_offset x30, -88
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        .cfi_offset d8, -80
        .cfi_offset d9, -72
        .cfi_offset d10, -64
        .cfi_offset d11, -56
        .cfi_offset d12, -48
        .cfi_offset d13, -40
        .cfi_offset d14, -32
        .cfi_offset d15, -24
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
        .cfi_def_cfa_offset 0
        .cfi_restore x19
        .cfi_restore x20
        .cfi_restore x21
        .cfi_restore x22
        .cfi_restore x23
        .cfi_restore x24
        .cfi_restore x25
        .cfi_restore x26
        .cfi_restore x27
        .cfi_restore x28
        .cfi_restore x29
        .cfi_restore x30
        .cfi_restore d8
        .cfi_restore d9
        .cfi_restore d10
        .cfi_restore d11
        .cfi_restore d12
        .cfi_restore d13
        .cfi_restore d14
        .cfi_restore d15
        ret
        .cfi_endproc
        .size   rill__ctx_switch, .-rill__ctx_switch

/* First code on a new stack, "returned to" by the switch: entry(arg), with
 * entry in x19 and arg in x20.  Entry never returns.  Unwinders look up the
 * instruction before a return address: the nop puts it in this function. */
        .globl  rill__ctx_begin
        .hidden rill__ctx_begin
        .type   rill__ctx_begin, %function
        .p2align 4
        .cfi_startproc
        .cfi_undefined x30              /* the outermost frame: unwinders stop */
        nop
rill__ctx_begin:
        mov     x0, x20
        blr     x19
        brk     #0
        .cfi_endproc
        .size   rill__ctx_begin, .-rill__ctx_begin

        .section .note.GNU-stack, "", %progbits
