/* virtio-mmio transport and split virtqueues, driver side (see virtio.h). */
#include "virtio.h"

uint8_t vdev_config8(const struct vdev* d, uint32_t off) {
  return *(volatile uint8_t*)(d->base + VIRTIO_MMIO_CONFIG + off);
}

uint16_t vdev_config16(const struct vdev* d, uint32_t off) {
  return *(volatile uint16_t*)(d->base + VIRTIO_MMIO_CONFIG + off);
}

uint32_t vdev_config32(const struct vdev* d, uint32_t off) {
  return *(volatile uint32_t*)(d->base + VIRTIO_MMIO_CONFIG + off);
}

uint64_t vdev_config64(const struct vdev* d, uint32_t off) {
  for (;;) {
    uint32_t before = vdev_read(d, VIRTIO_MMIO_CONFIG_GENERATION);
    uint64_t lo = vdev_config32(d, off);
    uint64_t hi = vdev_config32(d, off + 4);
    if (vdev_read(d, VIRTIO_MMIO_CONFIG_GENERATION) == before) return lo | (hi << 32);
  }
}

void vdev_config_write32(const struct vdev* d, uint32_t off, uint32_t v) {
  *(volatile uint32_t*)(d->base + VIRTIO_MMIO_CONFIG + off) = v;
}

const char* virtio_device_name(uint32_t id) {
  switch (id) {
    case VIRTIO_ID_NET:
      return "net";
    case VIRTIO_ID_BLOCK:
      return "blk";
    case VIRTIO_ID_CONSOLE:
      return "console";
    case VIRTIO_ID_ENTROPY:
      return "rng";
    case VIRTIO_ID_BALLOON:
      return "balloon";
    case VIRTIO_ID_VSOCK:
      return "vsock";
    default:
      return "unknown";
  }
}

bool vdev_probe(struct vdev* d, int slot) {
  memset(d, 0, sizeof *d);
  d->slot = slot;
  d->base = VIRTIO_MMIO_BASE + (uintptr_t)slot * VIRTIO_MMIO_SIZE;
  if (vdev_read(d, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC) return false;
  if (vdev_read(d, VIRTIO_MMIO_VERSION) != 2) return false;
  d->device_id = vdev_read(d, VIRTIO_MMIO_DEVICE_ID);
  return true;
}

void vdev_reset(struct vdev* d, uint8_t fail_code) {
  vdev_write(d, VIRTIO_MMIO_STATUS, 0);
  uint32_t status = vdev_status(d);
  KIT_CHECK(status == 0, fail_code, "slot %d: Status reads 0x%x after a reset, expected 0", d->slot, status);
}

void vdev_begin(struct vdev* d, uint64_t wanted, uint64_t required, uint8_t fail_code) {
  vdev_reset(d, fail_code);
  vdev_write(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
  vdev_write(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
  uint64_t offered = 0;
  for (uint32_t sel = 0; sel < 2; sel++) {
    vdev_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
    offered |= (uint64_t)vdev_read(d, VIRTIO_MMIO_DEVICE_FEATURES) << (32 * sel);
  }
  d->offered = offered;
  required |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
  KIT_CHECK((offered & required) == required, fail_code,
            "slot %d (%s): device features 0x%lx lack required 0x%lx", d->slot,
            virtio_device_name(d->device_id), offered, required & ~offered);
  d->features = offered & (wanted | required);
  for (uint32_t sel = 0; sel < 2; sel++) {
    vdev_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
    vdev_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->features >> (32 * sel)));
  }
  vdev_write(d, VIRTIO_MMIO_STATUS,
             VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
  uint32_t status = vdev_status(d);
  KIT_CHECK((status & VIRTIO_STATUS_FEATURES_OK) != 0, fail_code,
            "slot %d (%s): FEATURES_OK not accepted for features 0x%lx (status 0x%x)", d->slot,
            virtio_device_name(d->device_id), d->features, status);
}

void vq_setup(struct vdev* d, struct vq* q, uint16_t index, uint16_t size, uint8_t fail_code) {
  memset(q, 0, sizeof *q);
  q->dev = d;
  q->index = index;
  vdev_write(d, VIRTIO_MMIO_QUEUE_SEL, index);
  KIT_CHECK(vdev_read(d, VIRTIO_MMIO_QUEUE_READY) == 0, fail_code,
            "slot %d queue %u: QueueReady is already 1", d->slot, index);
  uint32_t max = vdev_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
  KIT_CHECK(max != 0, fail_code, "slot %d queue %u: QueueNumMax is 0 (no such queue)", d->slot, index);
  if (size > max) size = (uint16_t)max;
  if (size > KIT_QUEUE_MAX) size = KIT_QUEUE_MAX;
  q->size = size;
  q->event_idx = (d->features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX)) != 0;
  /* Each area in its own page: aligned well beyond the 16/2/4 bytes §2.7 asks for. */
  q->desc = kit_alloc(sizeof(struct virtq_desc) * size, 4096);
  q->avail = kit_alloc(6 + 2 * size, 4096);
  q->used = kit_alloc(6 + sizeof(struct virtq_used_elem) * size, 4096);
  for (uint16_t i = 0; i < size; i++) q->desc[i].next = (uint16_t)(i + 1);
  q->free_head = 0;
  q->num_free = size;
  vdev_write(d, VIRTIO_MMIO_QUEUE_NUM, size);
  vdev_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)GPA(q->desc));
  vdev_write(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(GPA(q->desc) >> 32));
  vdev_write(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)GPA(q->avail));
  vdev_write(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(GPA(q->avail) >> 32));
  vdev_write(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)GPA(q->used));
  vdev_write(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(GPA(q->used) >> 32));
  vdev_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
  KIT_CHECK(vdev_read(d, VIRTIO_MMIO_QUEUE_READY) == 1, fail_code,
            "slot %d queue %u: QueueReady reads 0 after enabling (size %u refused?)", d->slot, index, size);
}

void vdev_driver_ok(struct vdev* d, uint8_t fail_code) {
  uint32_t status = vdev_status(d);
  vdev_write(d, VIRTIO_MMIO_STATUS, status | VIRTIO_STATUS_DRIVER_OK);
  status = vdev_status(d);
  KIT_CHECK((status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED)) ==
                VIRTIO_STATUS_DRIVER_OK,
            fail_code, "slot %d (%s): status 0x%x after DRIVER_OK", d->slot, virtio_device_name(d->device_id),
            status);
}

uint32_t vdev_ack_interrupts(const struct vdev* d) {
  uint32_t bits = vdev_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
  if (bits != 0) vdev_write(d, VIRTIO_MMIO_INTERRUPT_ACK, bits);
  return bits;
}

/* used_event sits after the avail ring, avail_event after the used ring [§2.7.10]. */
static volatile uint16_t* used_event(struct vq* q) { return &q->avail->ring[q->size]; }
static volatile uint16_t* avail_event(struct vq* q) { return (volatile uint16_t*)&q->used->ring[q->size]; }

void vq_set_used_event(struct vq* q, uint16_t idx) {
  q->hold_used_event = true;
  *used_event(q) = idx;
  full_fence();
}

void vq_release_used_event(struct vq* q) {
  q->hold_used_event = false;
  *used_event(q) = q->last_used;
}

int vq_add(struct vq* q, const struct vbuf* bufs, int n, void* token) {
  if (n <= 0 || n > q->num_free) return -1;
  uint16_t head = q->free_head;
  uint16_t idx = head;
  uint32_t writable = 0;
  for (int i = 0; i < n; i++) {
    volatile struct virtq_desc* d = &q->desc[idx];
    d->addr = GPA(bufs[i].addr);
    d->len = bufs[i].len;
    d->flags = (uint16_t)((bufs[i].write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
    if (bufs[i].write) writable += bufs[i].len;
    idx = d->next;
  }
  q->token[head] = token;
  q->in_flight[head] = true;
  q->writable[head] = writable;
  q->free_head = idx;
  q->num_free = (uint16_t)(q->num_free - n);
  q->avail->ring[q->avail_idx & (q->size - 1)] = head;
  /* The descriptors and the ring entry are visible before the index that publishes them (TSO + barrier). */
  barrier();
  q->avail_idx++;
  q->avail->idx = q->avail_idx;
  return head;
}

void vq_kick(struct vq* q) {
  /* The store to avail->idx must be visible before we read what the device asked for (store→load). */
  full_fence();
  uint16_t new_idx = q->avail_idx;
  uint16_t old_idx = q->kicked;
  q->kicked = new_idx;
  if (new_idx == old_idx) return;
  bool notify;
  if (q->event_idx) {
    uint16_t event = *avail_event(q);
    notify = (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
  } else {
    notify = (q->used->flags & VIRTQ_USED_F_NO_NOTIFY) == 0;
  }
  if (!notify) {
    q->suppressed_kicks++;
    return;
  }
  q->kicks++;
  vdev_write(q->dev, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

int vq_poll(struct vq* q, uint32_t* len) {
  if (q->used->idx == q->last_used) return -1;
  barrier(); /* read the element only after seeing the index (loads stay in order on x86) */
  volatile struct virtq_used_elem* e = &q->used->ring[q->last_used & (q->size - 1)];
  uint32_t id = e->id;
  uint32_t written = e->len;
  KIT_CHECK(id < q->size, 0x0e, "slot %d queue %u: used id %u >= queue size %u", q->dev->slot, q->index, id,
            q->size);
  KIT_CHECK(q->in_flight[id], 0x0e, "slot %d queue %u: used id %u is not a chain the device holds",
            q->dev->slot, q->index, id);
  KIT_CHECK(written <= q->writable[id], 0x0e,
            "slot %d queue %u: used length %u > the chain's %u writable bytes", q->dev->slot, q->index,
            written, q->writable[id]);
  q->in_flight[id] = false;
  q->last_used++;
  /* Ask for an interrupt at the next completion (we poll, but keep the protocol honest). */
  if (q->event_idx && !q->hold_used_event) *used_event(q) = q->last_used;
  /* Return the chain to the free list. */
  uint16_t idx = (uint16_t)id;
  uint16_t count = 1;
  while ((q->desc[idx].flags & VIRTQ_DESC_F_NEXT) != 0) {
    idx = q->desc[idx].next;
    count++;
    KIT_CHECK(count <= q->size, 0x0e, "slot %d queue %u: descriptor chain loop", q->dev->slot, q->index);
  }
  q->desc[idx].next = q->free_head;
  q->free_head = (uint16_t)id;
  q->num_free = (uint16_t)(q->num_free + count);
  q->completions++;
  if (len != 0) *len = written;
  return (int)id;
}

int vq_wait(struct vq* q, uint32_t* len, uint8_t fail_code, const char* what) {
  uint64_t start = rdtsc();
  for (;;) {
    int id = vq_poll(q, len);
    if (id >= 0) return id;
    if (rdtsc() - start > KIT_TIMEOUT_TICKS) {
      kit_fail(fail_code, "slot %d queue %u: timed out waiting for %s (used idx %u, status 0x%x)",
               q->dev->slot, q->index, what, q->used->idx, vdev_status(q->dev));
    }
    cpu_relax();
  }
}

uint32_t vq_transfer(struct vq* q, const struct vbuf* bufs, int n, uint8_t fail_code, const char* what) {
  int head = vq_add(q, bufs, n, 0);
  KIT_CHECK(head >= 0, fail_code, "%s: no free descriptors", what);
  vq_kick(q);
  uint32_t len = 0;
  int id = vq_wait(q, &len, fail_code, what);
  KIT_CHECK(id == head, fail_code, "%s: used id %d, expected %d", what, id, head);
  return len;
}
