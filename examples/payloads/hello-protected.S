# node-kvm: load=0x100000
# 32-bit protected mode (entered by the host with flat segments, paging off): greet, add up a table, halt.
# EAX = sum of 1..1000 = 500500.
        .code32
        .globl  _start
_start:
        mov     $message, %esi
        mov     $0xe9, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      xor     %eax, %eax
        mov     $1000, %ecx
3:      add     %ecx, %eax
        loop    3b
        hlt
message:
        .asciz  "Hello from protected mode!\n"
