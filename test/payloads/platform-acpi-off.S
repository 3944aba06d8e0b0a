# node-kvm: load=0x1000
# Real mode: power off through the ACPI sleep control register (SLP_TYP = 5, SLP_EN), as Linux's poweroff does.
        .code16
        .globl  _start
_start:
        mov     $0x3c0, %dx
        mov     $((5 << 2) | 0x20), %al
        out     %al, %dx
        hlt
