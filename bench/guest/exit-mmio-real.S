# node-kvm: load=0x1000
# Exit round trip, real mode: a byte write to 0xD0000 (ES=0xD000; no memory slot there), [0x800] times, then
# the chunk-end marker (out 0x99).
        .code16
        .globl  _start
        .set    COUNT, 0x800
        .set    DONE_PORT, 0x99
_start:
        mov     $0xd000, %ax
        mov     %ax, %es
        xor     %bx, %bx
1:      movl    COUNT, %ecx
2:      movb    %al, %es:(%bx)
        decl    %ecx
        jnz     2b
        outb    %al, $DONE_PORT
        jmp     1b
