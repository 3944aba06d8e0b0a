# node-kvm: load=0x1000
# Real-mode computation checked by the host: the 24th Fibonacci number (46368) in AX, and the first 16
# Fibonacci numbers as 16-bit words at RESULT (0x5000). BX holds a marker, CX the count.
        .code16
        .set    RESULT, 0x5000
        .globl  _start
_start:
        mov     $RESULT, %di
        xor     %ax, %ax               # f(0)
        mov     $1, %bx                # f(1)
        mov     $16, %cx
store:
        mov     %ax, (%di)
        add     $2, %di
        mov     %ax, %dx
        add     %bx, %ax               # ax = f(n) + f(n+1)
        xchg    %ax, %bx               # ax = f(n+1), bx = f(n+2)
        loop    store
        # Continue to f(24) without storing: 8 more steps.
        mov     $8, %cx
more:
        mov     %ax, %dx
        add     %bx, %ax
        xchg    %ax, %bx
        loop    more
        mov     $16, %cx
        mov     $0xc0de, %bx
        hlt
