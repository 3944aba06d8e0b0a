/*
 * Block test [virtio 1.2 §5.2]: read sector 0 (host pattern), write 64 KiB from 16 scattered pages, FLUSH,
 * read it back in one buffer, WRITE_ZEROES a range inside it, GET_ID, requests past the end (IOERR), an
 * unknown type (UNSUPP), eight reads in flight at once, and InterruptStatus. A read-only disk gets IOERR for
 * a write and keeps its data. EVENT_IDX is negotiated here, so notifications follow avail_event.
 */
#include "kit-tests.h"

#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_WRITE_ZEROES 14
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define SECTOR 512
#define PAGE 4096
#define BATCH 8

struct blk_req {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

struct blk_dwz {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};

/* One request slot: header and status in DMA memory. */
struct blk_slot {
  struct blk_req* req;
  volatile uint8_t* status;
};

static struct vq queue;
static struct blk_slot slots[BATCH];

static const char* status_name(uint8_t s) {
  return s == VIRTIO_BLK_S_OK       ? "OK"
         : s == VIRTIO_BLK_S_IOERR  ? "IOERR"
         : s == VIRTIO_BLK_S_UNSUPP ? "UNSUPP"
                                    : "?";
}

/* Adds header + data buffers + status as one chain; returns its head. */
static int add_request(struct blk_slot* s, uint32_t type, uint64_t sector, const struct vbuf* data,
                       int ndata) {
  struct vbuf bufs[2 + 16];
  s->req->type = type;
  s->req->reserved = 0;
  s->req->sector = sector;
  *s->status = 0xff;
  int n = 0;
  bufs[n++] = (struct vbuf){s->req, sizeof *s->req, false};
  for (int i = 0; i < ndata; i++) bufs[n++] = data[i];
  bufs[n++] = (struct vbuf){(void*)s->status, 1, true};
  int head = vq_add(&queue, bufs, n, s);
  KIT_CHECK(head >= 0, 0x2f, "blk: no free descriptors for a request of %d buffers", n);
  return head;
}

/* One synchronous request; checks the used length (writable bytes + status) and returns the status. */
static uint8_t request(uint32_t type, uint64_t sector, const struct vbuf* data, int ndata, uint8_t code) {
  uint32_t expected = 1;
  for (int i = 0; i < ndata; i++) expected += data[i].write ? data[i].len : 0;
  int head = add_request(&slots[0], type, sector, data, ndata);
  vq_kick(&queue);
  uint32_t len = 0;
  int id = vq_wait(&queue, &len, code, "a block request");
  KIT_CHECK(id == head, code, "blk: used id %d, expected %d", id, head);
  uint8_t status = *slots[0].status;
  KIT_CHECK(status != VIRTIO_BLK_S_OK || len == expected, code, "blk: type %u used length %u, expected %u",
            type, len, expected);
  return status;
}

static void expect_status(uint8_t got, uint8_t want, uint8_t code, const char* what) {
  KIT_CHECK(got == want, code, "blk: %s: status %u (%s), expected %u (%s)", what, got, status_name(got), want,
            status_name(want));
}

static void verify_sector0(const uint8_t* buf, uint8_t code) {
  for (uint32_t i = 0; i < SECTOR; i++) {
    KIT_CHECK(buf[i] == sector0_byte(i), code, "blk: sector 0 byte %u is 0x%02x, expected 0x%02x", i, buf[i],
              sector0_byte(i));
  }
}

static void fill_words(uint32_t* p, uint64_t offset, size_t bytes) {
  for (size_t i = 0; i < bytes / 4; i++) p[i] = disk_word(offset + 4 * i);
}

/* Checks `bytes` read from disk offset `offset`; zero_from/zero_to: a range expected to read as zeros. */
static void verify_words(const uint32_t* p, uint64_t offset, size_t bytes, uint64_t zero_from,
                         uint64_t zero_to, uint8_t code) {
  for (size_t i = 0; i < bytes / 4; i++) {
    uint64_t at = offset + 4 * i;
    uint32_t want = at >= zero_from && at < zero_to ? 0 : disk_word(at);
    KIT_CHECK(p[i] == want, code, "blk: disk offset 0x%lx reads 0x%08x, expected 0x%08x", at, p[i], want);
  }
}

void test_blk(struct vdev* d) {
  vdev_begin(d,
             VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_RO) |
                 VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES) |
                 VIRTIO_BIT(VIRTIO_F_EVENT_IDX),
             0, 0x20);
  vq_setup(d, &queue, 0, 64, 0x20);
  vdev_driver_ok(d, 0x20);
  for (int i = 0; i < BATCH; i++) {
    slots[i].req = kit_alloc(sizeof(struct blk_req), 16);
    slots[i].status = kit_alloc(1, 16);
  }
  uint64_t capacity = vdev_config64(d, 0);
  bool ro = (d->features & VIRTIO_BIT(VIRTIO_BLK_F_RO)) != 0;
  bool flush = (d->features & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH)) != 0;
  bool zeroes = (d->features & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES)) != 0;
  kit_printf("KIT blk slot %d: capacity %lu sectors, %s, features 0x%lx\n", d->slot, capacity,
             ro ? "read-only" : "read-write", d->features);
  KIT_CHECK(capacity >= KIT_BLK_WRITE_SECTOR + KIT_BLK_WRITE_SECTORS, 0x20, "blk: capacity %lu is too small",
            capacity);

  /* 1. Sector 0 holds what the host wrote. */
  uint8_t* sector = kit_alloc(SECTOR, 512);
  struct vbuf rd0 = {sector, SECTOR, true};
  expect_status(request(VIRTIO_BLK_T_IN, 0, &rd0, 1, 0x21), VIRTIO_BLK_S_OK, 0x21, "read sector 0");
  verify_sector0(sector, 0x21);

  const uint64_t base = (uint64_t)KIT_BLK_WRITE_SECTOR * SECTOR;
  const size_t span = (size_t)KIT_BLK_WRITE_SECTORS * SECTOR;
  if (ro) {
    /* A read-only disk refuses writes with IOERR and keeps its data. */
    memset(sector, 0, SECTOR);
    struct vbuf wr = {sector, SECTOR, false};
    expect_status(request(VIRTIO_BLK_T_OUT, 0, &wr, 1, 0x2a), VIRTIO_BLK_S_IOERR, 0x2a,
                  "write to a read-only disk");
    expect_status(request(VIRTIO_BLK_T_IN, 0, &rd0, 1, 0x2a), VIRTIO_BLK_S_OK, 0x2a, "re-read sector 0");
    verify_sector0(sector, 0x2a);
  } else {
    /* 2. 64 KiB from 16 pages that are not contiguous in guest memory: one chain of 18 descriptors. */
    struct vbuf pages[16];
    for (int i = 0; i < 16; i++) {
      uint32_t* page = kit_alloc(PAGE, PAGE);
      kit_alloc(PAGE, PAGE); /* a gap, so neighbours are never adjacent */
      fill_words(page, base + (uint64_t)i * PAGE, PAGE);
      pages[i] = (struct vbuf){page, PAGE, false};
    }
    expect_status(request(VIRTIO_BLK_T_OUT, KIT_BLK_WRITE_SECTOR, pages, 16, 0x22), VIRTIO_BLK_S_OK, 0x22,
                  "write 64 KiB");
    /* 3. FLUSH makes it durable (the host checks the image file after the VM stops). */
    if (flush) expect_status(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0x23), VIRTIO_BLK_S_OK, 0x23, "flush");
    /* 4. Read it back in one buffer. */
    uint32_t* back = kit_alloc(span, PAGE);
    struct vbuf rd = {back, (uint32_t)span, true};
    expect_status(request(VIRTIO_BLK_T_IN, KIT_BLK_WRITE_SECTOR, &rd, 1, 0x24), VIRTIO_BLK_S_OK, 0x24,
                  "read back 64 KiB");
    verify_words(back, base, span, 0, 0, 0x24);
    /* 5. WRITE_ZEROES inside the written range; the rest stays. */
    if (zeroes) {
      struct blk_dwz* seg = kit_alloc(sizeof *seg, 16);
      seg->sector = KIT_BLK_ZERO_SECTOR;
      seg->num_sectors = KIT_BLK_ZERO_SECTORS;
      seg->flags = 0;
      struct vbuf z = {seg, sizeof *seg, false};
      expect_status(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &z, 1, 0x25), VIRTIO_BLK_S_OK, 0x25,
                    "write zeroes");
      if (flush) expect_status(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0x25), VIRTIO_BLK_S_OK, 0x25, "flush");
      memset(back, 0xee, span);
      expect_status(request(VIRTIO_BLK_T_IN, KIT_BLK_WRITE_SECTOR, &rd, 1, 0x25), VIRTIO_BLK_S_OK, 0x25,
                    "read after write zeroes");
      uint64_t zfrom = (uint64_t)KIT_BLK_ZERO_SECTOR * SECTOR;
      verify_words(back, base, span, zfrom, zfrom + KIT_BLK_ZERO_SECTORS * SECTOR, 0x25);
    }
  }

  /* 6. GET_ID: the serial, NUL-padded to 20 bytes. */
  char* id = kit_alloc(21, 16);
  struct vbuf idb = {id, 20, true};
  expect_status(request(VIRTIO_BLK_T_GET_ID, 0, &idb, 1, 0x26), VIRTIO_BLK_S_OK, 0x26, "get id");
  id[20] = 0;
  kit_printf("KIT blk slot %d: id \"%s\"\n", d->slot, id);

  /* 7. Past the end, and straddling it: IOERR. */
  struct vbuf two = {kit_alloc(2 * SECTOR, 512), 2 * SECTOR, true};
  expect_status(request(VIRTIO_BLK_T_IN, capacity, &rd0, 1, 0x27), VIRTIO_BLK_S_IOERR, 0x27,
                "read past the end");
  expect_status(request(VIRTIO_BLK_T_IN, capacity - 1, &two, 1, 0x27), VIRTIO_BLK_S_IOERR, 0x27,
                "read across the end");

  /* 8. An unknown request type: UNSUPP. */
  expect_status(request(0x7f, 0, &rd0, 1, 0x28), VIRTIO_BLK_S_UNSUPP, 0x28, "unknown request type");

  /* 9. Eight reads in flight, one notification; completions may come in any order. */
  uint32_t kicks_before = queue.kicks + queue.suppressed_kicks;
  uint8_t* batch = kit_alloc(BATCH * PAGE, PAGE);
  int heads[BATCH];
  for (int i = 0; i < BATCH; i++) {
    memset(batch + i * PAGE, 0xee, PAGE);
    struct vbuf b = {batch + i * PAGE, PAGE, true};
    heads[i] = add_request(&slots[i], VIRTIO_BLK_T_IN, KIT_BLK_WRITE_SECTOR + (uint64_t)i * 8, &b, 1);
  }
  vq_kick(&queue);
  for (int done = 0; done < BATCH; done++) {
    uint32_t len = 0;
    int head = vq_wait(&queue, &len, 0x29, "a batched read");
    int i = 0;
    while (i < BATCH && heads[i] != head) i++;
    KIT_CHECK(i < BATCH, 0x29, "blk: used id %d is none of the batch", head);
    heads[i] = -1;
    expect_status(*slots[i].status, VIRTIO_BLK_S_OK, 0x29, "batched read");
    KIT_CHECK(len == PAGE + 1, 0x29, "blk: batched read used length %u", len);
    if (!ro) {
      uint64_t at = base + (uint64_t)i * PAGE;
      uint64_t zfrom = zeroes ? (uint64_t)KIT_BLK_ZERO_SECTOR * SECTOR : 0;
      verify_words((uint32_t*)(batch + i * PAGE), at, PAGE, zfrom,
                   zeroes ? zfrom + KIT_BLK_ZERO_SECTORS * SECTOR : 0, 0x29);
    }
  }
  KIT_CHECK(queue.kicks + queue.suppressed_kicks == kicks_before + 1, 0x29,
            "blk: batch took more than one kick");

  /*
   * 10. Interrupt suppression [§2.7.10]: we poll, so raised interrupts just stay pending in InterruptStatus.
   * The VM thread handles our register read only after it finished the request (and its interrupt decision),
   * so the check is exact. With used_event far ahead the device must not interrupt; with used_event at the
   * current used index it must. (With EVENT_IDX off, the flags word asks for every interrupt.)
   */
  vdev_ack_interrupts(d);
  if (queue.event_idx) {
    vq_set_used_event(&queue, (uint16_t)(queue.last_used + 0x100));
    expect_status(request(VIRTIO_BLK_T_IN, 0, &rd0, 1, 0x2b), VIRTIO_BLK_S_OK, 0x2b, "read (interrupt held)");
    uint32_t held = vdev_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
    KIT_CHECK(
        (held & VIRTIO_MMIO_INT_VRING) == 0, 0x2b,
        "blk: used-buffer interrupt raised although used_event is 0x100 entries ahead (InterruptStatus 0x%x)",
        held);
    vq_set_used_event(&queue, queue.last_used);
  }
  expect_status(request(VIRTIO_BLK_T_IN, 0, &rd0, 1, 0x2b), VIRTIO_BLK_S_OK, 0x2b, "read (interrupt wanted)");
  uint32_t bits = vdev_ack_interrupts(d);
  KIT_CHECK((bits & VIRTIO_MMIO_INT_VRING) != 0, 0x2b, "blk: InterruptStatus 0x%x lacks the used-buffer bit",
            bits);
  uint32_t after = vdev_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
  KIT_CHECK(after == 0, 0x2b, "blk: InterruptStatus 0x%x after InterruptACK", after);
  vq_release_used_event(&queue);

  kit_printf("KIT blk ok slot %d: %u requests, %u notifications, %u suppressed (event idx %s)\n", d->slot,
             queue.completions, queue.kicks, queue.suppressed_kicks, queue.event_idx ? "on" : "off");
}
