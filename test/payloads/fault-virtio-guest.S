# node-kvm: load=0x100000
# A minimal virtio-mmio driver for the fault-injection, resource and soak tests: 64-bit user mode (CPL3, IOPL 3),
# so its hot loops run natively even where kernel-mode guest code is emulated (PVM). Interrupts stay off: it
# polls the used rings. Console output goes to the debug port 0xE9, the verdict to the debug-exit port 0x501.
#
# Entry registers (MicroVm boot.regs):
#   rdi  mode: 1 write+flush, 2 ENOSPC, 3 soak, 4 net flood, 5 touch RAM
#   rsi  count (blocks to write in modes 1 and 2; end address in mode 5)
#   rdx  virtio-blk transport base (0 if none)
#   rcx  virtio-net transport base (0 if none)
#
# Mode 1 (kill -9 test, 8 VMs at once): for i in 0..count-1, write 4 KiB block i (512 copies of the u64
#   MAGIC ^ i), then FLUSH; after each flush completes print '.'. Then exit 0x31.
# Mode 2 (ENOSPC): write blocks 0, 1, ... until a write fails. The status must be IOERR: print "E<index>\n" (hex).
#   Then show the device carries on: read block 0 back and compare, rewrite it, flush; print "R\n", exit 0x31.
#   If all `count` writes succeed, exit 0x35.
# Mode 3 (soak): forever: write block i % 64, read it back and compare, flush every 16th, transmit one frame,
#   recycle received frames; print '.' every 256 iterations.
# Mode 4 (tap flood): forever transmit frames; print '.' every 64.
# Mode 5 (hugepages): write one byte to every 4 KiB page from 4 MiB up to rsi, print "T\n", then exit 0x31
#   (rdx = 0) or spin, keeping the memory (rdx != 0).
# Failure exits: 0x41 bad magic/device id, 0x42 FEATURES_OK refused, 0x43 DEVICE_NEEDS_RESET after DRIVER_OK,
#   0x44 unexpected block status (the status is printed as "S<hex>\n" first), 0x45 read-back mismatch,
#   0x46 bad mode.
        .code64
        .globl  _start

        .set    DEBUG_EXIT, 0x501
        .set    MMIO_MAGIC_VALUE, 0x000
        .set    MMIO_DEVICE_ID, 0x008
        .set    MMIO_DEVICE_FEATURES, 0x010
        .set    MMIO_DEVICE_FEATURES_SEL, 0x014
        .set    MMIO_DRIVER_FEATURES, 0x020
        .set    MMIO_DRIVER_FEATURES_SEL, 0x024
        .set    MMIO_QUEUE_SEL, 0x030
        .set    MMIO_QUEUE_NUM, 0x038
        .set    MMIO_QUEUE_READY, 0x044
        .set    MMIO_QUEUE_NOTIFY, 0x050
        .set    MMIO_STATUS, 0x070
        .set    MMIO_QUEUE_DESC_LOW, 0x080
        .set    MMIO_QUEUE_DESC_HIGH, 0x084
        .set    MMIO_QUEUE_DRIVER_LOW, 0x090
        .set    MMIO_QUEUE_DRIVER_HIGH, 0x094
        .set    MMIO_QUEUE_DEVICE_LOW, 0x0a0
        .set    MMIO_QUEUE_DEVICE_HIGH, 0x0a4

        .set    QSIZE, 16
        .set    BLK_DESC, 0x200000
        .set    BLK_AVAIL, 0x201000
        .set    BLK_USED, 0x202000
        .set    RX_DESC, 0x210000
        .set    RX_AVAIL, 0x211000
        .set    RX_USED, 0x212000
        .set    TX_DESC, 0x218000
        .set    TX_AVAIL, 0x219000
        .set    TX_USED, 0x21a000
        .set    REQ_HDR, 0x300000
        .set    REQ_STATUS, 0x300100
        .set    DATA, 0x301000
        .set    READBUF, 0x303000
        .set    TXBUF, 0x310000
        .set    RXBUF, 0x320000
        .set    RX_BUFS, 8
        .set    RX_BUF_SIZE, 2048
        .set    FRAME_LEN, 72           # 12-byte virtio_net_hdr + 60-byte Ethernet frame
        # Driver-side ring indices (u16 each).
        .set    VAR_BLK_AVAIL, 0x3f0000
        .set    VAR_TX_AVAIL, 0x3f0002
        .set    VAR_RX_AVAIL, 0x3f0004
        .set    VAR_RX_SEEN, 0x3f0006

        .set    BLK_T_IN, 0
        .set    BLK_T_OUT, 1
        .set    BLK_T_FLUSH, 4
        .set    BLK_F_FLUSH, 1 << 9
        .set    DESC_F_NEXT, 1
        .set    DESC_F_WRITE, 2

_start:
        mov     %rdi, %rbp              # mode
        mov     %rsi, %r15              # count
        mov     %rdx, %r12              # virtio-blk base
        mov     %rcx, %r13              # virtio-net base
        xor     %r14, %r14              # iteration
        cmp     $1, %rbp
        je      mode_write
        cmp     $2, %rbp
        je      mode_enospc
        cmp     $3, %rbp
        je      mode_soak
        cmp     $4, %rbp
        je      mode_flood
        cmp     $5, %rbp
        je      mode_touch
        mov     $0x46, %al
        jmp     exit

# --- Mode 1: write + flush, a dot per flushed block ------------------------------------------------------------
mode_write:
        call    blk_init
1:      cmp     %r15, %r14
        jae     ok
        mov     %r14, %rax
        call    write_block             # block r14 := pattern(r14)
        call    flush
        mov     $'.', %al
        out     %al, $0xe9
        inc     %r14
        jmp     1b

# --- Mode 2: write until ENOSPC, then prove the device still works -------------------------------------------
mode_enospc:
        call    blk_init
1:      cmp     %r15, %r14
        jae     no_enospc
        mov     %r14, %rax
        call    fill_pattern
        mov     $BLK_T_OUT, %eax
        mov     %r14, %rsi
        shl     $3, %rsi
        mov     $4096, %ecx
        xor     %edx, %edx
        mov     $DATA, %r9
        call    blk_request
        test    %al, %al
        jnz     2f
        inc     %r14
        jmp     1b
2:      cmp     $1, %al                 # VIRTIO_BLK_S_IOERR
        jne     bad_status
        mov     $'E', %al
        out     %al, $0xe9
        mov     %r14d, %eax
        call    print_hex32
        # The device goes on: block 0 reads back intact, can be rewritten, and a flush succeeds.
        xor     %eax, %eax
        call    fill_pattern
        mov     $BLK_T_IN, %eax
        xor     %esi, %esi
        mov     $4096, %ecx
        mov     $DESC_F_WRITE, %edx
        mov     $READBUF, %r9
        call    blk_request
        test    %al, %al
        jnz     bad_status
        call    compare
        xor     %eax, %eax
        call    write_block
        call    flush
        mov     $'R', %al
        out     %al, $0xe9
        mov     $'\n', %al
        out     %al, $0xe9
        jmp     ok
no_enospc:
        mov     $0x35, %al
        jmp     exit

# --- Mode 3: block and net I/O forever -----------------------------------------------------------------------
mode_soak:
        call    blk_init
        call    net_init
1:      mov     %r14, %rax
        and     $63, %rax
        mov     %rax, %rbx
        mov     %r14, %rax
        call    fill_pattern
        mov     $BLK_T_OUT, %eax
        mov     %rbx, %rsi
        shl     $3, %rsi
        mov     $4096, %ecx
        xor     %edx, %edx
        mov     $DATA, %r9
        call    blk_request
        test    %al, %al
        jnz     bad_status
        mov     $BLK_T_IN, %eax
        mov     %rbx, %rsi
        shl     $3, %rsi
        mov     $4096, %ecx
        mov     $DESC_F_WRITE, %edx
        mov     $READBUF, %r9
        call    blk_request
        test    %al, %al
        jnz     bad_status
        call    compare
        test    $15, %r14
        jnz     2f
        call    flush
2:      call    net_send
        call    net_recycle_rx
        test    $255, %r14
        jnz     3f
        mov     $'.', %al
        out     %al, $0xe9
3:      inc     %r14
        jmp     1b

# --- Mode 4: transmit frames forever ------------------------------------------------------------------------
mode_flood:
        call    net_init
1:      call    net_send
        call    net_recycle_rx
        test    $63, %r14
        jnz     2f
        mov     $'.', %al
        out     %al, $0xe9
2:      inc     %r14
        jmp     1b

# --- Mode 5: touch every page of guest RAM above 4 MiB ------------------------------------------------------
mode_touch:
        mov     $0x400000, %rdi
1:      cmp     %r15, %rdi
        jae     2f
        movb    %dil, (%rdi)
        add     $4096, %rdi
        jmp     1b
2:      mov     $'T', %al
        out     %al, $0xe9
        mov     $'\n', %al
        out     %al, $0xe9
        test    %r12, %r12
        jz      ok
3:      pause
        jmp     3b

# --- virtio-mmio device setup ----------------------------------------------------------------------------------
# virtio_init: rbx = transport base, eax = expected device id, ecx = feature bits 0-31 wanted (VERSION_1 always).
virtio_init:
        cmpl    $0x74726976, MMIO_MAGIC_VALUE(%rbx)
        jne     bad_device
        cmpl    %eax, MMIO_DEVICE_ID(%rbx)
        jne     bad_device
        movl    $0, MMIO_STATUS(%rbx)
        movl    $1, MMIO_STATUS(%rbx)           # ACKNOWLEDGE
        movl    $3, MMIO_STATUS(%rbx)           # DRIVER
        movl    $0, MMIO_DEVICE_FEATURES_SEL(%rbx)
        movl    MMIO_DEVICE_FEATURES(%rbx), %eax
        and     %ecx, %eax
        movl    $0, MMIO_DRIVER_FEATURES_SEL(%rbx)
        movl    %eax, MMIO_DRIVER_FEATURES(%rbx)
        movl    $1, MMIO_DRIVER_FEATURES_SEL(%rbx)
        movl    $1, MMIO_DRIVER_FEATURES(%rbx)  # VIRTIO_F_VERSION_1 (bit 32)
        movl    $0xb, MMIO_STATUS(%rbx)         # FEATURES_OK
        movl    MMIO_STATUS(%rbx), %eax
        test    $8, %al
        jz      bad_features
        ret

# queue_init: rbx = base, eax = queue index, r8 = descriptor table, r9 = driver area, r10 = device area.
queue_init:
        movl    %eax, MMIO_QUEUE_SEL(%rbx)
        movl    $QSIZE, MMIO_QUEUE_NUM(%rbx)
        movl    %r8d, MMIO_QUEUE_DESC_LOW(%rbx)
        movl    $0, MMIO_QUEUE_DESC_HIGH(%rbx)
        movl    %r9d, MMIO_QUEUE_DRIVER_LOW(%rbx)
        movl    $0, MMIO_QUEUE_DRIVER_HIGH(%rbx)
        movl    %r10d, MMIO_QUEUE_DEVICE_LOW(%rbx)
        movl    $0, MMIO_QUEUE_DEVICE_HIGH(%rbx)
        movl    $1, MMIO_QUEUE_READY(%rbx)
        ret

# driver_ok: rbx = base.
driver_ok:
        movl    $0xf, MMIO_STATUS(%rbx)
        movl    MMIO_STATUS(%rbx), %eax
        test    $0x40, %al                      # DEVICE_NEEDS_RESET
        jnz     needs_reset
        ret

blk_init:
        mov     %r12, %rbx
        mov     $2, %eax
        mov     $BLK_F_FLUSH, %ecx
        call    virtio_init
        xor     %eax, %eax
        mov     $BLK_DESC, %r8
        mov     $BLK_AVAIL, %r9
        mov     $BLK_USED, %r10
        call    queue_init
        call    driver_ok
        ret

net_init:
        mov     %r13, %rbx
        mov     $1, %eax
        xor     %ecx, %ecx
        call    virtio_init
        xor     %eax, %eax                      # receiveq
        mov     $RX_DESC, %r8
        mov     $RX_AVAIL, %r9
        mov     $RX_USED, %r10
        call    queue_init
        mov     $1, %eax                        # transmitq
        mov     $TX_DESC, %r8
        mov     $TX_AVAIL, %r9
        mov     $TX_USED, %r10
        call    queue_init
        call    driver_ok
        # The frame we send: virtio_net_hdr (zero), broadcast destination, 02:00:00:00:00:01, type 0x88b5.
        movq    $-1, TXBUF+12
        movl    $0x00000002, TXBUF+18
        movw    $0x0100, TXBUF+22
        movw    $0xb588, TXBUF+24
        # Post RX_BUFS receive buffers, descriptors 0..RX_BUFS-1.
        xor     %ecx, %ecx
1:      mov     %rcx, %rax
        shl     $11, %rax                       # * RX_BUF_SIZE
        add     $RXBUF, %rax
        mov     %rcx, %rdx
        shl     $4, %rdx
        mov     %rax, RX_DESC(%rdx)
        movl    $RX_BUF_SIZE, RX_DESC+8(%rdx)
        movw    $DESC_F_WRITE, RX_DESC+12(%rdx)
        movw    %cx, RX_AVAIL+4(,%rcx,2)
        inc     %ecx
        cmp     $RX_BUFS, %ecx
        jb      1b
        movw    %cx, RX_AVAIL+2
        movw    %cx, VAR_RX_AVAIL
        movl    $0, MMIO_QUEUE_NOTIFY(%r13)
        ret

# --- Block requests --------------------------------------------------------------------------------------------
# blk_request: eax = type, rsi = sector, ecx = data bytes (0: no data descriptor), edx = data descriptor flags
# (0 or DESC_F_WRITE), r9 = data buffer. Returns the status byte in eax. Descriptors 0-2, one request at a time.
blk_request:
        movl    %eax, REQ_HDR
        movl    $0, REQ_HDR+4
        mov     %rsi, REQ_HDR+8
        movb    $0xff, REQ_STATUS
        movq    $REQ_HDR, BLK_DESC
        movl    $16, BLK_DESC+8
        movw    $DESC_F_NEXT, BLK_DESC+12
        test    %ecx, %ecx
        jz      1f
        movw    $1, BLK_DESC+14
        mov     %r9, BLK_DESC+16
        movl    %ecx, BLK_DESC+24
        or      $DESC_F_NEXT, %edx
        movw    %dx, BLK_DESC+28
        movw    $2, BLK_DESC+30
        jmp     2f
1:      movw    $2, BLK_DESC+14
2:      movq    $REQ_STATUS, BLK_DESC+32
        movl    $1, BLK_DESC+40
        movw    $DESC_F_WRITE, BLK_DESC+44
        movw    $0, BLK_DESC+46
        movzwl  VAR_BLK_AVAIL, %eax
        mov     %eax, %edx
        and     $(QSIZE - 1), %edx
        movw    $0, BLK_AVAIL+4(,%rdx,2)
        inc     %eax
        movw    %ax, BLK_AVAIL+2
        movw    %ax, VAR_BLK_AVAIL
        movl    $0, MMIO_QUEUE_NOTIFY(%r12)
3:      pause
        cmpw    BLK_USED+2, %ax
        jne     3b
        movzbl  REQ_STATUS, %eax
        ret

# write_block: block rax := pattern(rax); a failed status ends the run.
write_block:
        push    %rax
        call    fill_pattern
        pop     %rsi
        shl     $3, %rsi
        mov     $BLK_T_OUT, %eax
        mov     $4096, %ecx
        xor     %edx, %edx
        mov     $DATA, %r9
        call    blk_request
        test    %al, %al
        jnz     bad_status
        ret

flush:
        mov     $BLK_T_FLUSH, %eax
        xor     %esi, %esi
        xor     %ecx, %ecx
        call    blk_request
        test    %al, %al
        jnz     bad_status
        ret

# fill_pattern: DATA := 512 copies of MAGIC ^ rax.
fill_pattern:
        mov     $0x4e4f44454b564d21, %rdx       # "!MVKEDON" little-endian: the host checks the same value
        xor     %rdx, %rax
        mov     $DATA, %rdi
        mov     $512, %ecx
        rep stosq
        ret

compare:
        mov     $DATA, %rsi
        mov     $READBUF, %rdi
        mov     $512, %ecx
        repe cmpsq
        jne     mismatch
        ret

# --- Net ---------------------------------------------------------------------------------------------------------
# net_send: one frame carrying r14, on transmit descriptor 0; waits until the device has used it.
net_send:
        mov     %r14, TXBUF+26
        movq    $TXBUF, TX_DESC
        movl    $FRAME_LEN, TX_DESC+8
        movw    $0, TX_DESC+12
        movzwl  VAR_TX_AVAIL, %eax
        mov     %eax, %edx
        and     $(QSIZE - 1), %edx
        movw    $0, TX_AVAIL+4(,%rdx,2)
        inc     %eax
        movw    %ax, TX_AVAIL+2
        movw    %ax, VAR_TX_AVAIL
        movl    $1, MMIO_QUEUE_NOTIFY(%r13)
1:      pause
        cmpw    TX_USED+2, %ax
        jne     1b
        ret

# net_recycle_rx: hands every receive buffer the device has filled back to it.
net_recycle_rx:
        movzwl  VAR_RX_SEEN, %ecx
        movzwl  RX_USED+2, %r8d
        cmp     %cx, %r8w
        je      2f
1:      mov     %ecx, %edx
        and     $(QSIZE - 1), %edx
        movl    RX_USED+4(,%rdx,8), %eax        # used element id = descriptor index
        movzwl  VAR_RX_AVAIL, %edx
        mov     %edx, %r9d
        and     $(QSIZE - 1), %r9d
        movw    %ax, RX_AVAIL+4(,%r9,2)
        inc     %edx
        movw    %dx, RX_AVAIL+2
        movw    %dx, VAR_RX_AVAIL
        inc     %ecx
        cmp     %cx, %r8w
        jne     1b
        movw    %cx, VAR_RX_SEEN
        movl    $0, MMIO_QUEUE_NOTIFY(%r13)
2:      ret

# --- Output and exits ----------------------------------------------------------------------------------------------
# print_hex32: eax as 8 hex digits and a newline.
print_hex32:
        mov     %eax, %edx
        mov     $8, %ecx
1:      rol     $4, %edx
        mov     %edx, %eax
        and     $0xf, %eax
        add     $'0', %al
        cmp     $'9', %al
        jbe     2f
        add     $('a' - '9' - 1), %al
2:      out     %al, $0xe9
        dec     %ecx
        jnz     1b
        mov     $'\n', %al
        out     %al, $0xe9
        ret

bad_device:
        mov     $0x41, %al
        jmp     exit
bad_features:
        mov     $0x42, %al
        jmp     exit
needs_reset:
        mov     $0x43, %al
        jmp     exit
bad_status:
        push    %rax
        mov     $'S', %al
        out     %al, $0xe9
        pop     %rax
        call    print_hex32
        mov     $0x44, %al
        jmp     exit
mismatch:
        mov     $0x45, %al
        jmp     exit
ok:
        mov     $0x31, %al
exit:
        mov     $DEBUG_EXIT, %dx
        out     %al, %dx
1:      jmp     1b
