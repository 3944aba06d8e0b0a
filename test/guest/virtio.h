/*
 * A guest-side virtio-mmio (version 2) driver core [virtio 1.2 §4.2]: transport probing and the device
 * initialization sequence [§3.1.1], and split virtqueues [§2.7] in guest RAM. The guest polls used rings (its
 * interrupts are off); it still reads and acknowledges InterruptStatus where a test wants to see it.
 */
#ifndef NODE_KVM_GUEST_VIRTIO_H
#define NODE_KVM_GUEST_VIRTIO_H

#include "kit.h"

/* lib/arch/x86_64/layout.ts: transport n at VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE. */
#define VIRTIO_MMIO_BASE 0xd0000000UL
#define VIRTIO_MMIO_SIZE 0x1000UL
#define VIRTIO_MMIO_MAX_DEVICES 8

/* Registers [§4.2.2]. */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_INT_VRING 1
#define VIRTIO_MMIO_INT_CONFIG 2

/* Device status [§2.1]. */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

/* Reserved feature bits [§6]. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_BIT(n) (1ULL << (n))

/* Device IDs [§5]. */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_ENTROPY 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

/* Split virtqueue layout [§2.7]. */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_USED_F_NO_NOTIFY 1

struct virtq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

struct virtq_avail {
  uint16_t flags;
  uint16_t idx;
  uint16_t ring[]; /* [size], then used_event */
};

struct virtq_used_elem {
  uint32_t id;
  uint32_t len;
};

struct virtq_used {
  uint16_t flags;
  uint16_t idx;
  struct virtq_used_elem ring[]; /* [size], then avail_event */
};

/* One transport and what was negotiated on it. */
struct vdev {
  uintptr_t base;
  int slot;
  uint32_t device_id;
  uint64_t offered;  /* device features */
  uint64_t features; /* accepted by both */
};

/* The largest queue the kit sets up (the devices offer 256). */
#define KIT_QUEUE_MAX 256

struct vq {
  struct vdev* dev;
  uint16_t index;
  uint16_t size;
  volatile struct virtq_desc* desc;
  volatile struct virtq_avail* avail;
  volatile struct virtq_used* used;
  bool event_idx;
  bool hold_used_event; /* EVENT_IDX: keep used_event where vq_set_used_event() put it */
  uint16_t free_head;
  uint16_t num_free;
  uint16_t avail_idx; /* next avail slot (our copy of avail->idx) */
  uint16_t kicked;    /* avail_idx at the last kick decision */
  uint16_t last_used; /* next used slot to consume */
  uint32_t kicks;
  uint32_t suppressed_kicks;
  uint32_t completions;
  void* token[KIT_QUEUE_MAX]; /* what the caller attached to each chain, by head */
  /* Per head: the chain is with the device, and how many device-writable bytes it has. */
  bool in_flight[KIT_QUEUE_MAX];
  uint32_t writable[KIT_QUEUE_MAX];
};

/* One buffer of a chain: device-readable (write = false) buffers come first. */
struct vbuf {
  void* addr;
  uint32_t len;
  bool write;
};

/* Register access: 32-bit, aligned, volatile (one MMIO exit each). */
static inline uint32_t vdev_read(const struct vdev* d, uint32_t off) {
  return *(volatile uint32_t*)(d->base + off);
}
static inline void vdev_write(const struct vdev* d, uint32_t off, uint32_t v) {
  *(volatile uint32_t*)(d->base + off) = v;
}

/* Device-specific configuration [§4.2.2.2]: access widths match the field widths. */
uint8_t vdev_config8(const struct vdev* d, uint32_t off);
uint16_t vdev_config16(const struct vdev* d, uint32_t off);
uint32_t vdev_config32(const struct vdev* d, uint32_t off);
/* A 64-bit field as two 32-bit reads, retried until ConfigGeneration is stable around them. */
uint64_t vdev_config64(const struct vdev* d, uint32_t off);
void vdev_config_write32(const struct vdev* d, uint32_t off, uint32_t v);

const char* virtio_device_name(uint32_t id);

/* Reads MagicValue/Version/DeviceID of slot n. Returns false if there is no virtio-mmio v2 transport there.
 */
bool vdev_probe(struct vdev* d, int slot);

/*
 * §3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, feature negotiation (VERSION_1 always; `wanted` where
 * offered; every bit of `required` must be offered), FEATURES_OK and its read-back. Fails the run on any
 * refusal, with `fail_code`.
 */
void vdev_begin(struct vdev* d, uint64_t wanted, uint64_t required, uint8_t fail_code);
/* §4.2.3.2: sets up queue `index` with at most `size` entries (rings from kit_alloc). */
void vq_setup(struct vdev* d, struct vq* q, uint16_t index, uint16_t size, uint8_t fail_code);
/* §3.1.1 step 8: DRIVER_OK, then checks the device did not ask for a reset. */
void vdev_driver_ok(struct vdev* d, uint8_t fail_code);
/* Current status register (DEVICE_NEEDS_RESET shows up here). */
static inline uint32_t vdev_status(const struct vdev* d) { return vdev_read(d, VIRTIO_MMIO_STATUS); }
/* Reads InterruptStatus and acknowledges what it holds; returns the bits. */
uint32_t vdev_ack_interrupts(const struct vdev* d);
/* Resets the device (status 0) and checks the reset took. */
void vdev_reset(struct vdev* d, uint8_t fail_code);

/*
 * Adds a chain (readable buffers first) and remembers `token` for it (q->token[head]); returns the head, or
 * -1 when the table is short of descriptors. The chain is published at once; vq_kick() notifies the device.
 */
int vq_add(struct vq* q, const struct vbuf* bufs, int n, void* token);
/* Publishes added chains to the device: notifies unless EVENT_IDX / NO_NOTIFY says it need not. */
void vq_kick(struct vq* q);
/*
 * EVENT_IDX: asks for an interrupt when the used index moves past `idx` [§2.7.10] and keeps it there while
 * polling (normally vq_poll() moves it along to the next completion).
 */
void vq_set_used_event(struct vq* q, uint16_t idx);
/* Back to moving used_event along with each completion. */
void vq_release_used_event(struct vq* q);
/*
 * Takes one used element: returns its head (and the written length), or -1 when none is there. A used element
 * for a chain the device does not hold, or a length beyond the chain's writable bytes, fails the run (0x0e).
 */
int vq_poll(struct vq* q, uint32_t* len);
/* Polls until a used element arrives; fails the run with `fail_code` after KIT_TIMEOUT_TICKS. */
int vq_wait(struct vq* q, uint32_t* len, uint8_t fail_code, const char* what);
/* vq_add + vq_kick + vq_wait for a single synchronous request; checks the head that came back. */
uint32_t vq_transfer(struct vq* q, const struct vbuf* bufs, int n, uint8_t fail_code, const char* what);

#endif
