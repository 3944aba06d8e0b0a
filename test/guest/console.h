/* virtio-console driver, port 0 only [virtio 1.2 §5.3]: receiveq 0, transmitq 1. */
#ifndef NODE_KVM_GUEST_CONSOLE_H
#define NODE_KVM_GUEST_CONSOLE_H

#include "virtio.h"

#define VCONS_RX_BUFFERS 8
#define VCONS_RX_BUFFER_SIZE 64
#define VCONS_TX_BUFFER_SIZE 512

struct vconsole {
  struct vdev* dev;
  struct vq rx;
  struct vq tx;
  uint8_t* rx_buffers;
  uint8_t* tx_buffer;
  /* Input received but not yet consumed. */
  uint8_t pending[VCONS_RX_BUFFER_SIZE];
  uint32_t pending_len;
  uint32_t pending_off;
};

/* Initializes the device on a probed transport (features: VERSION_1 only) and posts the receive buffers. */
void vcons_init(struct vconsole* c, struct vdev* d, uint8_t fail_code);
/* Transmits `len` bytes (in chunks of VCONS_TX_BUFFER_SIZE) and waits until the device has taken them. */
void vcons_write(struct vconsole* c, const void* data, size_t len, uint8_t fail_code);
/* Transmits a two-part message as one chain of two descriptors. */
void vcons_write2(struct vconsole* c, const void* a, size_t alen, const void* b, size_t blen,
                  uint8_t fail_code);
/*
 * Reads one line of host input (up to and excluding '\n') into buf (NUL-terminated, at most size - 1 bytes
 * kept); waits for it up to KIT_TIMEOUT_TICKS. Returns the line length.
 */
size_t vcons_read_line(struct vconsole* c, char* buf, size_t size, uint8_t fail_code);

/* Routes kit_printf lines through this console. */
void vcons_use_as_sink(struct vconsole* c);

#endif
