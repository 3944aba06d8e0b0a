/*
 * Balloon test [virtio 1.2 §5.5]: posts a statistics buffer, waits (polling config num_pages) for the host's
 * target, inflates that many pages it had filled (PFNs in two chains, in flight together), reports `actual`,
 * waits for the target to go back to 0, deflates them, and counts how many came back zeroed (the host
 * discarded them).
 */
#include "kit-tests.h"

#define VIRTIO_BALLOON_F_STATS_VQ 1
#define BALLOON_CFG_NUM_PAGES 0
#define BALLOON_CFG_ACTUAL 4
#define PAGE 4096
#define MAX_PAGES 4096
#define POLL_TICKS (1ULL << 22)

struct __attribute__((packed)) balloon_stat {
  uint16_t tag;
  uint64_t val;
};

#define STAT_FREE_MEMORY 4
#define STAT_TOTAL_MEMORY 5
#define STAT_AVAILABLE_MEMORY 6

static struct vq inflateq;
static struct vq deflateq;
static struct vq statsq;

static uint32_t wait_target(struct vdev* d, bool nonzero, uint8_t code) {
  uint64_t start = rdtsc();
  for (;;) {
    uint32_t target = vdev_config32(d, BALLOON_CFG_NUM_PAGES);
    if ((target != 0) == nonzero) return target;
    KIT_CHECK(rdtsc() - start < KIT_TIMEOUT_TICKS, code, "balloon: no %s target from the host",
              nonzero ? "non-zero" : "zero");
    kit_delay(POLL_TICKS);
  }
}

/* Sends `count` PFNs on `q` as two chains in flight together; waits for both. */
static void send_pfns(struct vq* q, uint32_t* pfns, uint32_t count, uint8_t code) {
  uint32_t half = count / 2;
  struct vbuf a = {pfns, half * 4, false};
  struct vbuf b = {pfns + half, (count - half) * 4, false};
  int chains = 0;
  if (half > 0) chains += vq_add(q, &a, 1, 0) >= 0;
  chains += vq_add(q, &b, 1, 0) >= 0;
  KIT_CHECK(chains == (half > 0 ? 2 : 1), code, "balloon: queue full");
  vq_kick(q);
  for (int i = 0; i < chains; i++) vq_wait(q, 0, code, "PFNs to be taken");
}

void test_balloon(struct vdev* d) {
  vdev_begin(d, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ), 0, 0x50);
  bool stats = (d->features & VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ)) != 0;
  vq_setup(d, &inflateq, 0, 8, 0x50);
  vq_setup(d, &deflateq, 1, 8, 0x50);
  if (stats) vq_setup(d, &statsq, 2, 8, 0x50);
  vdev_driver_ok(d, 0x50);
  if (stats) {
    struct balloon_stat* s = kit_alloc(3 * sizeof *s, 16);
    uint64_t total = kit_args.ram_size;
    uint64_t used = kit_heap_end();
    s[0] = (struct balloon_stat){STAT_TOTAL_MEMORY, total};
    s[1] = (struct balloon_stat){STAT_FREE_MEMORY, total > used ? total - used : 0};
    s[2] = (struct balloon_stat){STAT_AVAILABLE_MEMORY, total > used ? total - used : 0};
    struct vbuf b = {s, 3 * sizeof *s, false};
    KIT_CHECK(vq_add(&statsq, &b, 1, 0) >= 0, 0x51, "balloon: statsq full");
    vq_kick(&statsq);
  }

  kit_printf("KIT balloon waiting for a target\n");
  uint32_t target = wait_target(d, true, 0x52);
  KIT_CHECK(target <= MAX_PAGES, 0x52, "balloon: target %u pages is more than the kit gives (%u)", target,
            MAX_PAGES);
  uint32_t bits = vdev_ack_interrupts(d);
  KIT_CHECK((bits & VIRTIO_MMIO_INT_CONFIG) != 0, 0x52,
            "balloon: no config-change interrupt (InterruptStatus 0x%x)", bits);
  uint8_t* pages = kit_alloc((size_t)target * PAGE, PAGE);
  uint32_t* pfns = kit_alloc((size_t)target * 4, 16);
  for (uint32_t i = 0; i < target; i++) {
    memset(pages + (size_t)i * PAGE, 0xa5, PAGE); /* touched, so the host has real pages to take back */
    pfns[i] = (uint32_t)(GPA(pages + (size_t)i * PAGE) >> 12);
  }
  send_pfns(&inflateq, pfns, target, 0x53);
  vdev_config_write32(d, BALLOON_CFG_ACTUAL, target);
  uint32_t actual = vdev_config32(d, BALLOON_CFG_ACTUAL);
  KIT_CHECK(actual == target, 0x53, "balloon: actual reads %u after writing %u", actual, target);
  kit_printf("KIT balloon inflated %u pages\n", target);

  wait_target(d, false, 0x54);
  send_pfns(&deflateq, pfns, target, 0x55);
  vdev_config_write32(d, BALLOON_CFG_ACTUAL, 0);
  /* Deflated pages are ours again: the ones the host discarded read as zeros. */
  uint32_t zeroed = 0;
  for (uint32_t i = 0; i < target; i++) {
    const uint64_t* p = (const uint64_t*)(pages + (size_t)i * PAGE);
    uint64_t any = 0;
    for (int w = 0; w < PAGE / 8; w++) any |= p[w];
    zeroed += any == 0;
  }
  kit_printf("KIT balloon deflated %u pages, %u came back zeroed\n", target, zeroed);
}
