/* Entropy test [virtio 1.2 §5.4]: two 64-byte requests (each a chain of two 32-byte buffers) that are full,
 * not all one value, and differ from each other. */
#include "kit-tests.h"

#define RNG_BYTES 64

static struct vq queue;

static void fetch(uint8_t* out, uint8_t code) {
  memset(out, 0, RNG_BYTES);
  struct vbuf bufs[2] = {{out, RNG_BYTES / 2, true}, {out + RNG_BYTES / 2, RNG_BYTES / 2, true}};
  uint32_t len = vq_transfer(&queue, bufs, 2, code, "entropy");
  KIT_CHECK(len == RNG_BYTES, code, "rng: %u bytes, expected %u", len, RNG_BYTES);
  bool all_equal = true;
  for (int i = 1; i < RNG_BYTES; i++) all_equal = all_equal && out[i] == out[0];
  KIT_CHECK(!all_equal, code, "rng: all %u bytes are 0x%02x", RNG_BYTES, out[0]);
}

void test_rng(struct vdev* d) {
  vdev_begin(d, 0, 0, 0x30);
  vq_setup(d, &queue, 0, 8, 0x30);
  vdev_driver_ok(d, 0x30);
  uint8_t* a = kit_alloc(RNG_BYTES, 64);
  uint8_t* b = kit_alloc(RNG_BYTES, 64);
  fetch(a, 0x31);
  fetch(b, 0x32);
  KIT_CHECK(memcmp(a, b, RNG_BYTES) != 0, 0x33, "rng: two requests returned the same bytes");
  /* Without EVENT_IDX every completion interrupts: the bit is pending (we poll), and clears when
   * acknowledged. */
  uint32_t bits = vdev_ack_interrupts(d);
  KIT_CHECK(bits == VIRTIO_MMIO_INT_VRING, 0x34, "rng: InterruptStatus 0x%x, expected the used-buffer bit",
            bits);
  bits = vdev_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
  KIT_CHECK(bits == 0, 0x34, "rng: InterruptStatus 0x%x after InterruptACK", bits);
  kit_printf("KIT rng ok: %02x%02x%02x%02x%02x%02x%02x%02x...\n", a[0], a[1], a[2], a[3], a[4], a[5], a[6],
             a[7]);
}
