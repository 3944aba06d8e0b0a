/* virtio-console driver (see console.h). Buffers are used in place: guest RAM is identity-mapped. */
#include "console.h"

#define CONSOLE_RECEIVEQ 0
#define CONSOLE_TRANSMITQ 1

static void post_rx(struct vconsole* c, uint8_t* buffer) {
  struct vbuf b = {buffer, VCONS_RX_BUFFER_SIZE, true};
  int head = vq_add(&c->rx, &b, 1, buffer);
  KIT_CHECK(head >= 0, 0x0d, "console: receiveq full");
}

void vcons_init(struct vconsole* c, struct vdev* d, uint8_t fail_code) {
  memset(c, 0, sizeof *c);
  c->dev = d;
  vdev_begin(d, 0, 0, fail_code);
  vq_setup(d, &c->rx, CONSOLE_RECEIVEQ, 16, fail_code);
  vq_setup(d, &c->tx, CONSOLE_TRANSMITQ, 16, fail_code);
  vdev_driver_ok(d, fail_code);
  c->rx_buffers = kit_alloc(VCONS_RX_BUFFERS * VCONS_RX_BUFFER_SIZE, 64);
  for (int i = 0; i < VCONS_RX_BUFFERS; i++) post_rx(c, c->rx_buffers + i * VCONS_RX_BUFFER_SIZE);
  vq_kick(&c->rx);
}

void vcons_write2(struct vconsole* c, const void* a, size_t alen, const void* b, size_t blen,
                  uint8_t fail_code) {
  struct vbuf bufs[2];
  int n = 0;
  if (alen > 0) bufs[n++] = (struct vbuf){(void*)a, (uint32_t)alen, false};
  if (blen > 0) bufs[n++] = (struct vbuf){(void*)b, (uint32_t)blen, false};
  if (n == 0) return;
  uint32_t written = vq_transfer(&c->tx, bufs, n, fail_code, "console transmit");
  KIT_CHECK(written == 0, fail_code, "console: transmit buffer came back with %u bytes written", written);
}

void vcons_write(struct vconsole* c, const void* data, size_t len, uint8_t fail_code) {
  const uint8_t* p = data;
  while (len > 0) {
    size_t n = len < VCONS_TX_BUFFER_SIZE ? len : VCONS_TX_BUFFER_SIZE;
    vcons_write2(c, p, n, 0, 0, fail_code);
    p += n;
    len -= n;
  }
}

/* Refills `pending` from the next used receive buffer; waits for one. */
static void receive(struct vconsole* c, uint8_t fail_code) {
  uint32_t len = 0;
  int head = vq_wait(&c->rx, &len, fail_code, "console input");
  uint8_t* buffer = c->rx.token[head];
  KIT_CHECK(len <= VCONS_RX_BUFFER_SIZE, fail_code, "console: receive length %u > buffer size %u", len,
            VCONS_RX_BUFFER_SIZE);
  memcpy(c->pending, buffer, len);
  c->pending_len = len;
  c->pending_off = 0;
  post_rx(c, buffer);
  vq_kick(&c->rx);
}

size_t vcons_read_line(struct vconsole* c, char* buf, size_t size, uint8_t fail_code) {
  size_t n = 0;
  for (;;) {
    if (c->pending_off == c->pending_len) receive(c, fail_code);
    char ch = (char)c->pending[c->pending_off++];
    if (ch == '\n') break;
    if (ch == '\r') continue;
    if (n + 1 < size) buf[n++] = ch;
  }
  buf[n] = 0;
  return n;
}

static struct vconsole* sink_console;

static void console_sink(const char* line, size_t len) { vcons_write(sink_console, line, len, 0x0c); }

void vcons_use_as_sink(struct vconsole* c) {
  sink_console = c;
  kit_set_sink(console_sink);
}
