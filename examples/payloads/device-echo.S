# node-kvm: load=0x1000
# Real mode, talking to a device written in TypeScript (examples/device-echo.ts) at ports 0x10-0x12:
#   0x10 (in, 16-bit)  counter: each read returns the next value
#   0x11 (in, 8-bit)   input: next byte of host-provided input, 0 when empty
#   0x12 (out, 8-bit)  output: bytes echoed back to the host
# It reads the counter three times, stores the readings at 0x5000, then echoes its input, upper-cased.
        .code16
        .globl  _start
_start:
        mov     $0x5000, %di
        mov     $3, %cx
        mov     $0x10, %dx
1:      in      %dx, %ax
        mov     %ax, (%di)
        add     $2, %di
        loop    1b
echo:
        mov     $0x11, %dx
        in      %dx, %al
        test    %al, %al
        jz      done
        cmp     $'a', %al
        jb      out
        cmp     $'z', %al
        ja      out
        sub     $0x20, %al
out:
        mov     $0x12, %dx
        out     %al, %dx
        jmp     echo
done:
        hlt
