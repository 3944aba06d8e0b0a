# node-kvm: load=0x100000
# The benchmark's virtio driver: 64-bit user mode (CPL3, IOPL 3), so its loops run natively even where
# kernel-mode guest code is emulated (PVM). It streams like a real driver (every completion is refilled at
# once) and negotiates VIRTIO_F_EVENT_IDX, so it notifies a queue only when the device has gone idle and asks
# for no interrupts (it polls the used rings: CPL3 code cannot halt). It writes a '.' to the debug console
# (port 0xE9) after every `per-dot` requests or frames; the host timestamps the dots. Failures end the run
# through the debug-exit port 0x501.
#
# Entry registers (MicroVm boot.regs):
#   rdi  mode: 1 blk sequential read, 2 blk sequential write, 3 net transmit, 4 net receive,
#              5 touch [rsi, r8) one byte per 4 KiB, print 'T', then spin,
#              6 exit loop: `out dx, al` to port 0x3f8 (no device there) forever, a dot every rcx exits
#   rsi  request size in bytes (blk: a multiple of 512, at most 1 MiB) / frame length (net, 14..1514)
#   rdx  virtio-mmio transport base
#   rcx  requests (frames) per progress dot
#   r8   blk: bytes of the disk to cycle through (sequential, wrapping); touch: end address
#   r9   requests (frames) in flight (blk: 1..16; net transmit: 1..64)
# Exit codes: 0x41 not the expected virtio device, 0x42 FEATURES_OK refused, 0x44 a block request failed,
#   0x46 bad mode or parameters.
        .code64
        .globl  _start

        .set    DEBUG_CONSOLE, 0xe9
        .set    DEBUG_EXIT, 0x501
        .set    MMIO_MAGIC_VALUE, 0x000
        .set    MMIO_VERSION, 0x004
        .set    MMIO_DEVICE_ID, 0x008
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

        .set    QSIZE, 64
        # Queue A: the block request queue, or the net receive queue. Queue B: the net transmit queue.
        .set    QA_DESC, 0x200000
        .set    QA_AVAIL, 0x201000
        .set    QA_USED, 0x202000
        .set    QB_DESC, 0x210000
        .set    QB_AVAIL, 0x211000
        .set    QB_USED, 0x212000
        .set    REQ_HDR, 0x220000       # 16 bytes per block request slot
        .set    REQ_STATUS, 0x221000    # 1 byte per block request slot
        .set    VAR_AVAIL, 0x230000     # u16: next avail idx (queue A)
        .set    VAR_AVAIL_B, 0x230002   # u16: next avail idx (queue B)
        .set    VAR_SEEN, 0x230004      # u16: used idx consumed so far (net receive)
        .set    VAR_POS, 0x230008       # u64: next disk byte offset
        .set    VAR_DONE, 0x230010      # u64: requests since the last dot
        .set    NET_TX, 0x300000        # 2 KiB per transmit buffer
        .set    NET_RX, 0x340000        # 2 KiB per receive buffer
        .set    NET_BUF, 2048
        .set    NET_HDR, 12
        .set    DATA, 0x400000          # block data: slot i at DATA + i * size

        .set    BLK_T_IN, 0
        .set    BLK_T_OUT, 1
        .set    DESC_F_NEXT, 1
        .set    DESC_F_WRITE, 2
        .set    VIRTIO_ID_NET, 1
        .set    VIRTIO_ID_BLOCK, 2
        .set    BLK_F_FLUSH, 1 << 9     # negotiated: writeback cache (no fdatasync per write)
        .set    EVENT_IDX, 1 << 29      # VIRTIO_F_EVENT_IDX: notifications only when the other side waits

_start:
        mov     %rdi, %rbx              # mode
        mov     %rsi, %r13              # size
        mov     %rdx, %r12              # transport
        mov     %rcx, %r14              # per dot
        mov     %r8, %r15               # region / end
        mov     %r9, %rbp               # depth
        cmp     $1, %rbx
        je      blk
        cmp     $2, %rbx
        je      blk
        cmp     $3, %rbx
        je      net_tx
        cmp     $4, %rbx
        je      net_rx
        cmp     $5, %rbx
        je      touch
        cmp     $6, %rbx
        je      exits
bad:    mov     $0x46, %al
exit:   mov     $DEBUG_EXIT, %dx
        out     %al, %dx
        jmp     .

# --- virtio-mmio bring-up ------------------------------------------------------------------------------------
# dev_init: eax = expected device id, esi = driver feature bits 0..31. Accepts VERSION_1 (bit 32) too.
dev_init:
        cmpl    $0x74726976, MMIO_MAGIC_VALUE(%r12)
        jne     1f
        cmpl    $2, MMIO_VERSION(%r12)
        jne     1f
        cmp     %eax, MMIO_DEVICE_ID(%r12)
        jne     1f
        movl    $0, MMIO_STATUS(%r12)   # reset
        movl    $1, MMIO_STATUS(%r12)   # ACKNOWLEDGE
        movl    $3, MMIO_STATUS(%r12)   # + DRIVER
        movl    $0, MMIO_DRIVER_FEATURES_SEL(%r12)
        mov     %esi, MMIO_DRIVER_FEATURES(%r12)
        movl    $1, MMIO_DRIVER_FEATURES_SEL(%r12)
        movl    $1, MMIO_DRIVER_FEATURES(%r12)  # VERSION_1
        movl    $11, MMIO_STATUS(%r12)  # + FEATURES_OK
        testl   $8, MMIO_STATUS(%r12)
        jz      2f
        ret
1:      mov     $0x41, %al
        jmp     exit
2:      mov     $0x42, %al
        jmp     exit

# queue_init: eax = queue index, rsi = desc, rdi = avail, rcx = used.
queue_init:
        mov     %eax, MMIO_QUEUE_SEL(%r12)
        movl    $QSIZE, MMIO_QUEUE_NUM(%r12)
        mov     %esi, MMIO_QUEUE_DESC_LOW(%r12)
        movl    $0, MMIO_QUEUE_DESC_HIGH(%r12)
        mov     %edi, MMIO_QUEUE_DRIVER_LOW(%r12)
        movl    $0, MMIO_QUEUE_DRIVER_HIGH(%r12)
        mov     %ecx, MMIO_QUEUE_DEVICE_LOW(%r12)
        movl    $0, MMIO_QUEUE_DEVICE_HIGH(%r12)
        movw    $0, (%rdi)              # avail.flags (ignored with EVENT_IDX; publish sets used_event)
        movl    $1, MMIO_QUEUE_READY(%r12)
        ret

driver_ok:
        movl    $15, MMIO_STATUS(%r12)
        ret

dot:
        push    %rax
        mov     $'.', %al
        out     %al, $DEBUG_CONSOLE
        pop     %rax
        ret

# --- Block: `depth` requests of `size` bytes always in flight, sequential ---------------------------------
# Like a real driver: each completion is refilled at once with the next offset, and with VIRTIO_F_EVENT_IDX the
# queue is notified only when the device has gone idle (avail_event), so a busy device never sleeps.
blk:
        test    %rbp, %rbp
        jz      bad
        cmp     $16, %rbp
        ja      bad
        mov     $VIRTIO_ID_BLOCK, %eax
        mov     $BLK_F_FLUSH | EVENT_IDX, %esi
        call    dev_init
        xor     %eax, %eax
        mov     $QA_DESC, %esi
        mov     $QA_AVAIL, %edi
        mov     $QA_USED, %ecx
        call    queue_init
        call    driver_ok
        # Slot i: descriptors 3i (header), 3i+1 (data), 3i+2 (status).
        mov     $BLK_T_IN, %r10d
        mov     $DESC_F_NEXT | DESC_F_WRITE, %r11d
        cmp     $2, %rbx
        jne     1f
        mov     $BLK_T_OUT, %r10d
        mov     $DESC_F_NEXT, %r11d
1:      xor     %ecx, %ecx              # slot
2:      lea     (%rcx,%rcx,2), %rax
        shl     $4, %rax
        lea     QA_DESC(%rax), %rdi     # &desc[3i]
        mov     %rcx, %rax
        shl     $4, %rax
        lea     REQ_HDR(%rax), %rsi
        mov     %r10d, (%rsi)           # type
        movl    $0, 4(%rsi)
        mov     %rsi, (%rdi)            # header: addr, len 16, NEXT
        movl    $16, 8(%rdi)
        movw    $DESC_F_NEXT, 12(%rdi)
        lea     (%rcx,%rcx,2), %eax
        inc     %eax
        mov     %ax, 14(%rdi)
        mov     %rcx, %rax              # data: DATA + i * size
        imul    %r13, %rax
        add     $DATA, %rax
        mov     %rax, 16(%rdi)
        mov     %r13d, 24(%rdi)
        mov     %r11w, 28(%rdi)
        lea     (%rcx,%rcx,2), %eax
        add     $2, %eax
        mov     %ax, 30(%rdi)
        lea     REQ_STATUS(%rcx), %rax  # status: 1 byte, device-writable
        mov     %rax, 32(%rdi)
        movl    $1, 40(%rdi)
        movw    $DESC_F_WRITE, 44(%rdi)
        movw    $0, 46(%rdi)
        inc     %rcx
        cmp     %rbp, %rcx
        jb      2b
        movq    $0, VAR_POS
        movq    $0, VAR_DONE
        movw    $0, VAR_AVAIL
        movw    $0, VAR_SEEN
        xor     %ecx, %ecx              # first fill: every slot
3:      call    blk_submit
        inc     %rcx
        cmp     %rbp, %rcx
        jb      3b
        xor     %r9d, %r9d              # avail idx before this round (forces the first notify)
        jmp     blk_publish
blk_loop:
        movzwl  VAR_SEEN, %r8d
1:      movzwl  QA_USED+2, %eax
        cmp     %ax, %r8w
        jne     2f
        pause
        jmp     1b
2:      movzwl  VAR_AVAIL, %r9d
3:      mov     %r8d, %esi              # used.ring[seen % QSIZE].id = 3 * slot
        and     $QSIZE-1, %esi
        mov     QA_USED+4(,%rsi,8), %ecx
        imul    $0xaaab, %ecx, %ecx     # slot = id / 3 (exact for id < 2^16)
        shr     $17, %ecx
        cmpb    $0, REQ_STATUS(%rcx)
        jne     blk_failed
        call    blk_submit
        call    count_one
        inc     %r8d
        cmp     %ax, %r8w
        jne     3b
        mov     %r8w, VAR_SEEN
blk_publish:
        mov     $QA_AVAIL, %rdi
        mov     $QA_USED, %rsi
        xor     %eax, %eax
        call    publish
        jmp     blk_loop
blk_failed:
        mov     $0x44, %al
        jmp     exit

# blk_submit: rcx = slot. Points its header at the next sequential offset and makes it available.
blk_submit:
        push    %rax
        mov     VAR_POS, %rax           # wrap before the request would cross the region end
        lea     (%rax,%r13), %rsi
        cmp     %r15, %rsi
        jbe     1f
        xor     %eax, %eax
1:      lea     (%rax,%r13), %rsi
        mov     %rsi, VAR_POS
        shr     $9, %rax                # sector
        mov     %rcx, %rsi
        shl     $4, %rsi
        mov     %rax, REQ_HDR+8(%rsi)
        movb    $0xff, REQ_STATUS(%rcx)
        movzwl  VAR_AVAIL, %esi         # avail.ring[idx % QSIZE] = 3 * slot
        mov     %esi, %edx
        and     $QSIZE-1, %esi
        lea     (%rcx,%rcx,2), %eax
        mov     %ax, QA_AVAIL+4(,%rsi,2)
        inc     %edx
        mov     %dx, VAR_AVAIL
        pop     %rax
        ret

# count_one: one more request done; a dot every `per-dot`. Keeps every register.
count_one:
        push    %rax
        mov     VAR_DONE, %rax
        inc     %rax
        cmp     %r14, %rax
        jb      1f
        call    dot
        xor     %eax, %eax
1:      mov     %rax, VAR_DONE
        pop     %rax
        ret

# publish: rdi = avail ring, rsi = used ring, eax = queue index, r9w = avail idx before this round, and the
# new idx in VAR_AVAIL (queue A) or VAR_AVAIL_B (queue B, eax = 1). Publishes the idx, keeps used_event far
# ahead (no interrupts: we poll), and notifies only if the device asked (vring_need_event on avail_event).
publish:
        movzwl  VAR_AVAIL, %edx
        test    %eax, %eax
        jz      1f
        movzwl  VAR_AVAIL_B, %edx
1:      mov     %dx, 2(%rdi)            # avail.idx (x86 keeps the ring stores before this one)
        movzwl  2(%rsi), %ecx
        add     $0x4000, %ecx
        mov     %cx, 4+2*QSIZE(%rdi)    # used_event = used idx + 16384: never reached
        mfence
        movzwl  4+8*QSIZE(%rsi), %ecx   # avail_event
        mov     %edx, %r10d             # need = (u16)(new - event - 1) < (u16)(new - old)
        sub     %ecx, %r10d
        dec     %r10d
        and     $0xffff, %r10d
        mov     %edx, %r11d
        sub     %r9d, %r11d
        and     $0xffff, %r11d
        cmp     %r11d, %r10d
        jae     2f
        mov     %eax, MMIO_QUEUE_NOTIFY(%r12)
2:      ret

# --- Net transmit: `depth` frames of `size` bytes always queued ----------------------------------------------
net_tx:
        test    %rbp, %rbp
        jz      bad
        cmp     $QSIZE, %rbp
        ja      bad
        mov     $VIRTIO_ID_NET, %eax
        mov     $EVENT_IDX, %esi
        call    dev_init
        mov     $1, %eax
        mov     $QB_DESC, %esi
        mov     $QB_AVAIL, %edi
        mov     $QB_USED, %ecx
        call    queue_init
        call    driver_ok
        # Descriptor i: one buffer, virtio_net_hdr (12 zero bytes) + an Ethernet frame to the broadcast address.
        xor     %ecx, %ecx
1:      mov     %rcx, %rdi
        shl     $11, %rdi
        add     $NET_TX, %rdi
        movq    $0, (%rdi)
        movl    $0, 8(%rdi)
        movl    $0xffffffff, NET_HDR(%rdi)      # destination ff:ff:ff:ff:ff:ff
        movw    $0xffff, NET_HDR+4(%rdi)
        movl    $0x00000002, NET_HDR+6(%rdi)    # source 02:00:00:00:00:01
        movw    $0x0100, NET_HDR+10(%rdi)
        movw    $0xb588, NET_HDR+12(%rdi)       # EtherType 0x88b5 (local experimental)
        mov     %rcx, %rax
        shl     $4, %rax
        mov     %rdi, QB_DESC(%rax)
        lea     NET_HDR(%r13), %esi
        mov     %esi, QB_DESC+8(%rax)
        movl    $0, QB_DESC+12(%rax)
        inc     %rcx
        cmp     $QSIZE, %rcx
        jb      1b
        movq    $0, VAR_DONE
        movw    $0, VAR_SEEN
        xor     %ecx, %ecx                      # first fill: descriptors 0..depth-1
2:      mov     %cx, QB_AVAIL+4(,%rcx,2)
        inc     %rcx
        cmp     %rbp, %rcx
        jb      2b
        mov     %cx, VAR_AVAIL_B
        xor     %r9d, %r9d
        jmp     tx_publish
tx_loop:
        movzwl  VAR_SEEN, %r8d
1:      movzwl  QB_USED+2, %eax
        cmp     %ax, %r8w
        jne     2f
        pause
        jmp     1b
2:      movzwl  VAR_AVAIL_B, %r9d
        mov     %r9d, %edx
3:      mov     %r8d, %esi              # the sent descriptor goes straight back into the avail ring
        and     $QSIZE-1, %esi
        mov     QB_USED+4(,%rsi,8), %ecx
        mov     %edx, %esi
        and     $QSIZE-1, %esi
        mov     %cx, QB_AVAIL+4(,%rsi,2)
        inc     %edx
        call    count_one
        inc     %r8d
        cmp     %ax, %r8w
        jne     3b
        mov     %r8w, VAR_SEEN
        mov     %dx, VAR_AVAIL_B
tx_publish:
        mov     $QB_AVAIL, %rdi
        mov     $QB_USED, %rsi
        mov     $1, %eax
        call    publish
        jmp     tx_loop

# --- Net receive: keep every buffer posted, count frames -----------------------------------------------------
net_rx:
        mov     $VIRTIO_ID_NET, %eax
        mov     $EVENT_IDX, %esi
        call    dev_init
        xor     %eax, %eax
        mov     $QA_DESC, %esi
        mov     $QA_AVAIL, %edi
        mov     $QA_USED, %ecx
        call    queue_init
        call    driver_ok
        xor     %ecx, %ecx
1:      mov     %rcx, %rax
        shl     $4, %rax
        mov     %rcx, %rdi
        shl     $11, %rdi
        add     $NET_RX, %rdi
        mov     %rdi, QA_DESC(%rax)
        movl    $NET_BUF, QA_DESC+8(%rax)
        movw    $DESC_F_WRITE, QA_DESC+12(%rax)
        movw    $0, QA_DESC+14(%rax)
        mov     %cx, QA_AVAIL+4(,%rcx,2)
        inc     %rcx
        cmp     $QSIZE, %rcx
        jb      1b
        movw    $QSIZE, VAR_AVAIL
        movw    $0, VAR_SEEN
        movq    $0, VAR_DONE
        xor     %r9d, %r9d
        jmp     rx_publish
rx_loop:
        movzwl  VAR_SEEN, %r8d
1:      movzwl  QA_USED+2, %eax
        cmp     %ax, %r8w
        jne     2f
        pause
        jmp     1b
2:      movzwl  VAR_AVAIL, %r9d
        mov     %r9d, %edx
3:      mov     %r8d, %esi              # used.ring[seen % QSIZE].id → back into the avail ring
        and     $QSIZE-1, %esi
        mov     QA_USED+4(,%rsi,8), %ecx
        mov     %edx, %esi
        and     $QSIZE-1, %esi
        mov     %cx, QA_AVAIL+4(,%rsi,2)
        inc     %edx
        call    count_one
        inc     %r8d
        cmp     %ax, %r8w
        jne     3b
        mov     %r8w, VAR_SEEN
        mov     %dx, VAR_AVAIL
rx_publish:
        mov     $QA_AVAIL, %rdi
        mov     $QA_USED, %rsi
        xor     %eax, %eax
        call    publish
        jmp     rx_loop

# --- Touch: one byte per 4 KiB page of [rsi, r8), then 'T' -------------------------------------------------
touch:
        mov     %r13, %rsi
1:      cmp     %r15, %rsi
        jae     2f
        movb    $1, (%rsi)
        add     $4096, %rsi
        jmp     1b
2:      mov     $'T', %al
        out     %al, $DEBUG_CONSOLE
        jmp     .

# --- Exit loop: every `out` is an exit to the VMM; a dot every `per-dot` exits --------------------------------
exits:
        test    %r14, %r14
        jz      bad
        mov     $0x3f8, %edx
1:      mov     %r14, %rcx
2:      out     %al, (%dx)
        dec     %rcx
        jnz     2b
        call    dot
        jmp     1b
