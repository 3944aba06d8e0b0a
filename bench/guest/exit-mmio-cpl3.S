# node-kvm: load=0x1000
# Exit round trip, 64-bit CPL3: a byte write to guest-physical 0xD0000 (no memory slot there), [0x800] times,
# then the chunk-end marker (out 0x99). With an ioeventfd on 0xD0000 the writes stay inside KVM.
        .code64
        .globl  _start
        .set    COUNT, 0x800
        .set    MMIO_ADDR, 0xd0000
        .set    DONE_PORT, 0x99
_start:
        mov     $MMIO_ADDR, %ebx
1:      mov     COUNT, %ecx
2:      mov     %al, (%rbx)
        dec     %ecx
        jnz     2b
        out     %al, $DONE_PORT
        jmp     1b
