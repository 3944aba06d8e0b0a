# node-kvm: load=0x1000
# Exit round trip, 64-bit CPL3 (IOPL 3; native on PVM hosts): `out dx, al` to port 0x3f8, [0x800] times, then
# the chunk-end marker (out 0x99). With an ioeventfd on 0x3f8 the writes stay inside KVM.
        .code64
        .globl  _start
        .set    COUNT, 0x800
        .set    DATA_PORT, 0x3f8
        .set    DONE_PORT, 0x99
_start:
        mov     $DATA_PORT, %edx
1:      mov     COUNT, %ecx
2:      out     %al, (%dx)
        dec     %ecx
        jnz     2b
        out     %al, $DONE_PORT
        jmp     1b
