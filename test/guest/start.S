# Entry stub shared by every C guest (linked first, at the load address in guest.ld). The VMM enters here at
# CPL3 with the boot registers of the MicroVm config: rdi, rsi, rdx, rcx are passed on to
# guest_main(rdi, rsi, rdx, rcx) unchanged. The stub moves the stack to the image's own 64 KiB stack, clears
# .bss, calls guest_main and writes its return value (the status) to the debug-exit port, which stops the VM.
        .section .text.start, "ax"
        .code64
        .globl  _start
_start:
        lea     __stack_top(%rip), %rsp
        mov     %rdi, %r12
        mov     %rsi, %r13
        mov     %rdx, %r14
        mov     %rcx, %r15
        cld
        lea     __bss_start(%rip), %rdi
        lea     __bss_end(%rip), %rcx
        sub     %rdi, %rcx
        xor     %eax, %eax
        rep stosb
        mov     %r12, %rdi
        mov     %r13, %rsi
        mov     %r14, %rdx
        mov     %r15, %rcx
        call    guest_main
        mov     $0x501, %dx
        out     %al, %dx
1:      pause
        jmp     1b
        .section .note.GNU-stack, "", @progbits
