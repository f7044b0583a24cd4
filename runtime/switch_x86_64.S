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
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        movq    %rsp, (%rdi)            /* from->p: where it resumes */
        movq    (%rsi), %rsp            /* to's stack, as its switch left it */
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   rill__ctx_switch, .-rill__ctx_switch

/* First code on a new stack, "returned to" by the switch: entry(arg), with
 * entry in rbx and arg in r12.  Entry never returns. */
        .globl  rill__ctx_begin
        .hidden rill__ctx_begin
        .type   rill__ctx_begin, @function
        .p2align 4
rill__ctx_begin:
        .cfi_startproc
        .cfi_undefined rip              /* the outermost frame: unwinders stop */
        movq    %r12, %rdi
        callq   *%rbx
        ud2
        .cfi_endproc
        .size   rill__ctx_begin, .-rill__ctx_begin

        .section .note.GNU-stack, "", @progbits
