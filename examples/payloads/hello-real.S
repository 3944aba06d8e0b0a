# node-kvm: load=0x1000
# Real-mode hello: print a greeting on the debug console port (0xE9), then halt.
        .code16
        .globl _start
_start:
        mov     $message, %si
        mov     $0xe9, %dx
        cld
next:
        lodsb
        test    %al, %al
        jz      done
        out     %al, %dx
        jmp     next
done:
        hlt
message:
        .asciz  "Hello from real mode!\n"
