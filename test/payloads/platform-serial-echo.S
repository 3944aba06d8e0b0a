# node-kvm: load=0x1000
# Real mode, 8250 both ways: print "ready\n" on COM1, then echo every received byte back upper-cased until '.',
# then reset the machine through the i8042 (0xFE pulse), which the VMM reports as a stop with reason 'reset'.
        .code16
        .set    COM1, 0x3f8
        .set    LSR, 0x3fd
        .globl  _start
_start:
        mov     $ready, %si
1:      lodsb
        test    %al, %al
        jz      echo
        call    putc
        jmp     1b
echo:
        mov     $LSR, %dx
2:      in      %dx, %al
        test    $0x01, %al              # LSR.DR: a byte is waiting
        jz      2b
        mov     $COM1, %dx
        in      %dx, %al
        cmp     $'.', %al
        je      reset
        cmp     $'a', %al
        jb      3f
        cmp     $'z', %al
        ja      3f
        sub     $0x20, %al
3:      call    putc
        jmp     echo
reset:
        mov     $0xfe, %al
        out     %al, $0x64
        hlt
putc:                                   # al = byte
        mov     %al, %bl
        mov     $LSR, %dx
4:      in      %dx, %al
        test    $0x20, %al              # LSR.THRE
        jz      4b
        mov     $COM1, %dx
        mov     %bl, %al
        out     %al, %dx
        ret
ready:
        .asciz  "ready\n"
