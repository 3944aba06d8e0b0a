# node-kvm: load=0x1000
# First touch, 64-bit CPL3 with the 2 MiB identity map: writes 1 to the first byte of every 4 KiB page in
# [[0x808], [0x810]), then the end marker (out 0x99); the next run touches the range again.
        .code64
        .globl  _start
        .set    START, 0x808
        .set    END, 0x810
        .set    DONE_PORT, 0x99
_start:
1:      mov     START, %rsi
        mov     END, %rdi
2:      movb    $1, (%rsi)
        add     $4096, %rsi
        cmp     %rdi, %rsi
        jb      2b
        out     %al, $DONE_PORT
        jmp     1b
