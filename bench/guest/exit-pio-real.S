# node-kvm: load=0x1000
# Exit round trip, real mode: `out dx, al` to port 0x3f8, [0x800] times, then the chunk-end marker (out 0x99).
# With no device behind 0x3f8 every `out` is an exit to userspace; with an ioeventfd there, none is.
        .code16
        .globl  _start
        .set    COUNT, 0x800
        .set    DATA_PORT, 0x3f8
        .set    DONE_PORT, 0x99
_start:
        mov     $DATA_PORT, %dx
1:      movl    COUNT, %ecx
2:      outb    %al, %dx
        decl    %ecx
        jnz     2b
        outb    %al, $DONE_PORT
        jmp     1b
