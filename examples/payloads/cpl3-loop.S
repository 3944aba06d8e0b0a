# node-kvm: load=0x100000
# 64-bit user mode (CPL3, IOPL 3): a hot loop that runs natively even where kernel-mode guest code is
# emulated. Every 10,000 iterations it reports a tick on port 0x99; after RDI ticks it writes the iteration
# count to memory at 0x200000 and exits through the debug-exit port (0x501) with code 0x31. CPL3 code cannot
# HLT, hence the exit port.
        .code64
        .globl  _start
_start:
        xor     %r8, %r8                # total iterations
        mov     $0x99, %dx
tick:
        mov     $10000, %ecx
spin:
        inc     %r8
        dec     %ecx
        jnz     spin
        out     %al, %dx
        dec     %rdi
        jnz     tick
        mov     %r8, 0x200000
        mov     $0x501, %dx
        mov     $0x31, %al
        out     %al, %dx
        jmp     .
