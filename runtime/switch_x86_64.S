/* The fast backend's switch for x86-64 (System V ABI); see switch.h and
 * switch_fast.c, whose `frame` is the layout pushed here. */
        .text

/* void rill__ctx_switch(rill__ctx *from, rill__ctx *to) */
        .globl  rill__ctx_switch
        .hidden rill__ctx_switch
        .type   rill__ctx_switch, @function
        .p2align 4
rill__ctx_switch:
        .cfi_startproc
        /* The unwind rules hold on both sides of the stack swap: the
         * frame resumed has the same layout as the one left. */
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rbp, 0
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rbx, 0
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r12, 0
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r13, 0
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r14, 0
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r15, 0
        subq    $8, %rsp
        .cfi_adjust_cfa_offset 8
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        movq    %rsp, (%rdi)            /* from->p: where it resumes */
        movq    (%rsi), %rsp            /* to's stack, as its switch left it */
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        .cfi_adjust_cfa_offset -8
        popq    %r15
        .cfi_adjust_cfa_offset -8
        .cfi_restore r15
        popq    %r14
        .cfi_adjust_cfa_offset -8
        .cfi_restore r14
        popq    %r13
        .cfi_adjust_cfa_offset -8
        .cfi_restore r13
        popq    %r12
        .cfi_adjust_cfa_offset -8
        .cfi_restore r12
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        .cfi_restore rbx
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        .cfi_restore rbp
        ret
        .cfi_endproc
        .size   rill__ctx_switch, .-rill__ctx_switch

/* First code on a new stack, "returned to" by the switch: entry(arg), with
 * entry in rbx and arg in r12.  Entry never returns.  Unwinders look up the
 * instruction before a return address: the nop puts it in this function. */
        .globl  rill__ctx_begin
        .hidden rill__ctx_begin
        .type   rill__ctx_begin, @function
        .p2align 4
        .cfi_startproc
        .cfi_undefined rip              /* the outermost frame: unwinders stop */
        nop
rill__ctx_begin:
        movq    %r12, %rdi
        callq   *%rbx
        ud2
        .cfi_endproc
        .size   rill__ctx_begin, .-rill__ctx_begin

        .section .note.GNU-stack, "", @progbits
