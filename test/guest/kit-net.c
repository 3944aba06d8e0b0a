/*
 * Net test [virtio 1.2 §5.1]: the MAC and link status from config space, then KIT_NET_FRAMES Ethernet frames
 * (60..1514 bytes, header and frame as two descriptors) to the peer MAC, each answered by the peer with MACs
 * swapped and the payload unchanged. With KIT_F_NET_ECHO the guest is that peer instead (VM-to-VM test).
 */
#include "kit-tests.h"

#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1
#define NET_HDR 12 /* virtio_net_hdr_v1 */
#define ETH_HDR 14
#define MAX_FRAME 1514
#define RX_BUFFERS 16
#define RX_BUFFER_SIZE (NET_HDR + MAX_FRAME)

static struct vq rxq;
static struct vq txq;
static uint8_t mac[6];
static uint8_t* tx_hdr;
static uint8_t* tx_frame;

static const uint32_t frame_sizes[KIT_NET_FRAMES] = {60, 128, 1000, MAX_FRAME};

static void post_rx(uint8_t* buffer) {
  struct vbuf b = {buffer, RX_BUFFER_SIZE, true};
  KIT_CHECK(vq_add(&rxq, &b, 1, buffer) >= 0, 0x0d, "net: receiveq full");
}

static void transmit(uint32_t len, uint8_t code) {
  struct vbuf bufs[2] = {{tx_hdr, NET_HDR, false}, {tx_frame, len, false}};
  uint32_t written = vq_transfer(&txq, bufs, 2, code, "a transmitted frame");
  KIT_CHECK(written == 0, code, "net: transmit buffer came back with %u bytes written", written);
}

/* Waits for a frame; returns the buffer (header first) and the frame length. The caller re-posts it. */
static uint8_t* receive(uint32_t* frame_len, uint8_t code) {
  uint32_t len = 0;
  int head = vq_wait(&rxq, &len, code, "a received frame");
  uint8_t* buffer = rxq.token[head];
  KIT_CHECK(len >= NET_HDR + ETH_HDR && len <= RX_BUFFER_SIZE, code, "net: received used length %u", len);
  uint16_t num_buffers = (uint16_t)(buffer[10] | (buffer[11] << 8));
  KIT_CHECK(num_buffers == 1, code, "net: num_buffers %u in the receive header, expected 1", num_buffers);
  *frame_len = len - NET_HDR;
  return buffer;
}

static void print_mac(const char* what, const uint8_t* m) {
  kit_printf("%s %02x:%02x:%02x:%02x:%02x:%02x", what, m[0], m[1], m[2], m[3], m[4], m[5]);
}

static void ping(void) {
  const uint8_t* peer = kit_args.peer_mac;
  for (int f = 0; f < KIT_NET_FRAMES; f++) {
    uint32_t size = frame_sizes[f];
    memcpy(tx_frame, peer, 6);
    memcpy(tx_frame + 6, mac, 6);
    tx_frame[12] = KIT_NET_ETHERTYPE >> 8;
    tx_frame[13] = KIT_NET_ETHERTYPE & 0xff;
    for (uint32_t i = ETH_HDR; i < size; i++) tx_frame[i] = (uint8_t)(i * 3 + f);
    kit_snprintf((char*)tx_frame + ETH_HDR, 32, "node-kvm kit frame %d", f);
    transmit(size, 0x41);
    uint32_t len = 0;
    uint8_t* buffer = receive(&len, 0x42);
    uint8_t* frame = buffer + NET_HDR;
    KIT_CHECK(len == size, 0x43, "net: reply to frame %d is %u bytes, expected %u", f, len, size);
    KIT_CHECK(memcmp(frame, mac, 6) == 0 && memcmp(frame + 6, peer, 6) == 0, 0x43,
              "net: reply to frame %d has dst %02x:..:%02x src %02x:..:%02x (MACs not swapped)", f, frame[0],
              frame[5], frame[6], frame[11]);
    KIT_CHECK(memcmp(frame + 12, tx_frame + 12, size - 12) == 0, 0x43,
              "net: reply to frame %d: payload differs", f);
    post_rx(buffer);
    vq_kick(&rxq);
  }
  kit_printf("KIT net ok: %d frames echoed by", KIT_NET_FRAMES);
  print_mac("", peer);
  kit_printf("\n");
}

static void echo(void) {
  for (int f = 0; f < KIT_NET_FRAMES; f++) {
    uint32_t len = 0;
    uint8_t* buffer = receive(&len, 0x44);
    uint8_t* frame = buffer + NET_HDR;
    KIT_CHECK(memcmp(frame, mac, 6) == 0, 0x44, "net: frame %d is not addressed to us", f);
    memcpy(tx_frame, frame + 6, 6);
    memcpy(tx_frame + 6, mac, 6);
    memcpy(tx_frame + 12, frame + 12, len - 12);
    post_rx(buffer);
    vq_kick(&rxq);
    transmit(len, 0x45);
  }
  kit_printf("KIT net echo ok: %d frames\n", KIT_NET_FRAMES);
}

void test_net(struct vdev* d) {
  vdev_begin(d, VIRTIO_BIT(VIRTIO_NET_F_STATUS), VIRTIO_BIT(VIRTIO_NET_F_MAC), 0x40);
  vq_setup(d, &rxq, 0, 32, 0x40);
  vq_setup(d, &txq, 1, 32, 0x40);
  vdev_driver_ok(d, 0x40);
  for (int i = 0; i < 6; i++) mac[i] = vdev_config8(d, i);
  if ((d->features & VIRTIO_BIT(VIRTIO_NET_F_STATUS)) != 0) {
    uint16_t status = vdev_config16(d, 6);
    KIT_CHECK((status & VIRTIO_NET_S_LINK_UP) != 0, 0x40, "net: link is down (status 0x%x)", status);
  }
  print_mac("KIT net mac", mac);
  kit_printf(", link up\n");
  uint8_t* rx = kit_alloc(RX_BUFFERS * RX_BUFFER_SIZE, 64);
  for (int i = 0; i < RX_BUFFERS; i++) post_rx(rx + i * RX_BUFFER_SIZE);
  vq_kick(&rxq);
  tx_hdr = kit_alloc(NET_HDR, 16);
  tx_frame = kit_alloc(MAX_FRAME, 64);
  if ((kit_args.flags & KIT_F_NET_ECHO) != 0)
    echo();
  else
    ping();
}
