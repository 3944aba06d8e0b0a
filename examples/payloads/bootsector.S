# node-kvm: load=0x7c00
# A boot sector for SeaBIOS to load from our virtio-blk disk: it prints a greeting on the 8250 UART (COM1) and
# powers the VM off through the ACPI sleep control register (S5). examples/seabios-boot.ts pads it into a disk
# image with the 0x55AA signature at offset 510.
        .code16
        .set    COM1, 0x3f8
        .set    COM1_LSR, 0x3fd
        .set    LSR_THRE, 0x20
        .set    ACPI_SLEEP_CONTROL, 0x3c0
        .set    SLP_S5, (5 << 2) | 0x20
        .globl  _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     $message, %si
next:
        lodsb
        test    %al, %al
        jz      off
        mov     %al, %bl
        mov     $COM1_LSR, %dx
wait:
        in      %dx, %al
        test    $LSR_THRE, %al
        jz      wait
        mov     $COM1, %dx
        mov     %bl, %al
        out     %al, %dx
        jmp     next
off:
        mov     $ACPI_SLEEP_CONTROL, %dx
        mov     $SLP_S5, %al
        out     %al, %dx
        hlt
        jmp     off
message:
        .asciz  "Hello from a boot sector loaded by SeaBIOS from virtio-blk!\r\n"
