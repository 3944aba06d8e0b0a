# node-kvm: load=0x100000
# 64-bit long mode at CPL0 (identity-mapped by the host): greet, then write a 64-bit marker to memory at
# 0x200000 (a second 2 MiB page) and into RAX, and halt.
        .code64
        .globl  _start
_start:
        lea     message(%rip), %rsi
        mov     $0xe9, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      movabs  $0x1122334455667788, %rax
        mov     %rax, 0x200000
        hlt
message:
        .asciz  "Hello from long mode!\n"
