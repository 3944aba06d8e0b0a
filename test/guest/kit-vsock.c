/*
 * vsock test [virtio 1.2 §5.10], stream sockets with credit flow control:
 * - guest-initiated: REQUEST to host port KIT_VSOCK_HOST_PORT (the device connects to `${udsPath}_5000`),
 *   RESPONSE, one message out, its upper-cased echo back, SHUTDOWN, RST from the device.
 * - with KIT_F_VSOCK_LISTEN, host-initiated too: the host connects with "CONNECT 6000"; the guest accepts the
 *   REQUEST, reads one line, answers it upper-cased, shuts down and waits for the RST.
 */
#include "kit-tests.h"

#define VSOCK_HOST_CID 2
#define VSOCK_TYPE_STREAM 1
#define VSOCK_OP_REQUEST 1
#define VSOCK_OP_RESPONSE 2
#define VSOCK_OP_RST 3
#define VSOCK_OP_SHUTDOWN 4
#define VSOCK_OP_RW 5
#define VSOCK_OP_CREDIT_UPDATE 6
#define VSOCK_OP_CREDIT_REQUEST 7
#define VSOCK_SHUTDOWN_BOTH 3
#define RX_BUFFERS 8
#define RX_PAYLOAD 4096
#define EVENT_BUFFERS 4
#define BUF_ALLOC (RX_BUFFERS * RX_PAYLOAD)
#define MESSAGE_MAX 256

struct __attribute__((packed)) vsock_hdr {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};

struct conn {
  uint32_t local_port;
  uint32_t peer_port;
  uint32_t fwd_cnt; /* payload bytes we consumed */
  uint32_t tx_cnt;  /* payload bytes we sent */
  uint32_t peer_buf_alloc;
  uint32_t peer_fwd_cnt;
};

struct packet {
  struct vsock_hdr h;
  uint8_t data[RX_PAYLOAD];
};

static struct vq rxq;
static struct vq txq;
static struct vq eventq;
static uint64_t guest_cid;
static struct vsock_hdr* tx_hdr;
static uint8_t* tx_data;
static struct packet packet;

static const char* op_name(uint16_t op) {
  static const char* const names[] = {"INVALID",  "REQUEST", "RESPONSE",      "RST",
                                      "SHUTDOWN", "RW",      "CREDIT_UPDATE", "CREDIT_REQUEST"};
  return op < 8 ? names[op] : "?";
}

static void post_rx(uint8_t* buffer) {
  struct vbuf b = {buffer, sizeof(struct vsock_hdr) + RX_PAYLOAD, true};
  KIT_CHECK(vq_add(&rxq, &b, 1, buffer) >= 0, 0x0d, "vsock: rx queue full");
}

static void send_packet(struct conn* c, uint16_t op, uint32_t flags, const void* data, uint32_t len,
                        uint8_t code) {
  struct vsock_hdr* h = tx_hdr;
  memset(h, 0, sizeof *h);
  h->src_cid = guest_cid;
  h->dst_cid = VSOCK_HOST_CID;
  h->src_port = c->local_port;
  h->dst_port = c->peer_port;
  h->len = len;
  h->type = VSOCK_TYPE_STREAM;
  h->op = op;
  h->flags = flags;
  h->buf_alloc = BUF_ALLOC;
  h->fwd_cnt = c->fwd_cnt;
  struct vbuf bufs[2] = {{h, sizeof *h, false}, {tx_data, len, false}};
  if (len > 0) memcpy(tx_data, data, len);
  vq_transfer(&txq, bufs, len > 0 ? 2 : 1, code, op_name(op));
  c->tx_cnt += len;
}

/* Next packet for any connection, copied into `packet` (the rx buffer goes straight back to the device). */
static void receive_any(uint8_t code, const char* what) {
  uint32_t len = 0;
  int head = vq_wait(&rxq, &len, code, what);
  uint8_t* buffer = rxq.token[head];
  KIT_CHECK(len >= sizeof(struct vsock_hdr) && len <= sizeof(struct vsock_hdr) + RX_PAYLOAD, code,
            "vsock: rx used length %u", len);
  memcpy(&packet, buffer, len);
  post_rx(buffer);
  vq_kick(&rxq);
  const struct vsock_hdr* h = &packet.h;
  KIT_CHECK(h->src_cid == VSOCK_HOST_CID && h->dst_cid == guest_cid && h->type == VSOCK_TYPE_STREAM, code,
            "vsock: packet from cid %lu to %lu type %u", h->src_cid, h->dst_cid, h->type);
  KIT_CHECK(h->len == len - sizeof(struct vsock_hdr), code, "vsock: header len %u, used length %u", h->len,
            len);
}

/* Next packet for connection c that is not credit bookkeeping (credit requests are answered here). */
static void receive(struct conn* c, uint8_t code, const char* what) {
  for (;;) {
    receive_any(code, what);
    const struct vsock_hdr* h = &packet.h;
    KIT_CHECK(h->dst_port == c->local_port && (c->peer_port == 0 || h->src_port == c->peer_port), code,
              "vsock: %s for port %u from %u while waiting for %s", op_name(h->op), h->dst_port, h->src_port,
              what);
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    if (h->op == VSOCK_OP_CREDIT_UPDATE) continue;
    if (h->op == VSOCK_OP_CREDIT_REQUEST) {
      send_packet(c, VSOCK_OP_CREDIT_UPDATE, 0, 0, 0, code);
      continue;
    }
    return;
  }
}

static void expect_op(uint16_t op, uint8_t code, const char* what) {
  KIT_CHECK(packet.h.op == op, code, "vsock: %s while waiting for %s (%s)", op_name(packet.h.op), op_name(op),
            what);
}

/* Receives RW data until `want` bytes, or a newline when want is 0; returns the length. */
static uint32_t receive_data(struct conn* c, char* out, uint32_t want, uint8_t code) {
  uint32_t got = 0;
  for (;;) {
    receive(c, code, "data");
    expect_op(VSOCK_OP_RW, code, "data");
    uint32_t n = packet.h.len;
    KIT_CHECK(got + n <= MESSAGE_MAX, code, "vsock: more data than expected (%u bytes)", got + n);
    memcpy(out + got, packet.data, n);
    got += n;
    c->fwd_cnt += n;
    if (want != 0 ? got >= want : (got > 0 && out[got - 1] == '\n')) return got;
  }
}

static void upper(char* s, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    if (s[i] >= 'a' && s[i] <= 'z') s[i] = (char)(s[i] - 'a' + 'A');
  }
}

/* SHUTDOWN both ways; the device answers RST once our data reached the host (a host SHUTDOWN may come first).
 */
static void close_conn(struct conn* c, uint8_t code) {
  send_packet(c, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH, 0, 0, code);
  for (;;) {
    receive(c, code, "RST after SHUTDOWN");
    if (packet.h.op != VSOCK_OP_SHUTDOWN) break;
  }
  expect_op(VSOCK_OP_RST, code, "the close");
}

static void connect_to_host(void) {
  struct conn c = {KIT_VSOCK_LOCAL_PORT, KIT_VSOCK_HOST_PORT, 0, 0, 0, 0};
  send_packet(&c, VSOCK_OP_REQUEST, 0, 0, 0, 0x61);
  receive(&c, 0x61, "RESPONSE");
  KIT_CHECK(packet.h.op != VSOCK_OP_RST, 0x61, "vsock: connection to host port %u refused (RST)",
            c.peer_port);
  expect_op(VSOCK_OP_RESPONSE, 0x61, "RESPONSE");
  static const char message[] = "hello over vsock from the guest\n";
  uint32_t n = sizeof message - 1;
  send_packet(&c, VSOCK_OP_RW, 0, message, n, 0x62);
  static char reply[MESSAGE_MAX];
  uint32_t got = receive_data(&c, reply, n, 0x63);
  static char expected[sizeof message];
  memcpy(expected, message, n);
  upper(expected, n);
  KIT_CHECK(got == n && memcmp(reply, expected, n) == 0, 0x63, "vsock: echo is not the upper-cased message");
  close_conn(&c, 0x64);
  kit_printf("KIT vsock connect ok: %u bytes each way with host port %u\n", n, KIT_VSOCK_HOST_PORT);
}

static void accept_from_host(void) {
  struct conn c = {KIT_VSOCK_LISTEN_PORT, 0, 0, 0, 0, 0};
  kit_printf("KIT vsock listening on port %u\n", KIT_VSOCK_LISTEN_PORT);
  receive(&c, 0x65, "a host connection");
  expect_op(VSOCK_OP_REQUEST, 0x65, "a host connection");
  c.peer_port = packet.h.src_port;
  send_packet(&c, VSOCK_OP_RESPONSE, 0, 0, 0, 0x65);
  static char line[MESSAGE_MAX];
  uint32_t n = receive_data(&c, line, 0, 0x66);
  upper(line, n);
  send_packet(&c, VSOCK_OP_RW, 0, line, n, 0x67);
  close_conn(&c, 0x68);
  kit_printf("KIT vsock listen ok: host port %u, %u bytes each way\n", c.peer_port, n);
}

void test_vsock(struct vdev* d) {
  vdev_begin(d, 0, 0, 0x60);
  vq_setup(d, &rxq, 0, 16, 0x60);
  vq_setup(d, &txq, 1, 16, 0x60);
  vq_setup(d, &eventq, 2, 8, 0x60);
  vdev_driver_ok(d, 0x60);
  guest_cid = vdev_config64(d, 0);
  kit_printf("KIT vsock cid %lu\n", guest_cid);
  uint8_t* rx = kit_alloc(RX_BUFFERS * (sizeof(struct vsock_hdr) + RX_PAYLOAD), 64);
  for (int i = 0; i < RX_BUFFERS; i++) post_rx(rx + i * (sizeof(struct vsock_hdr) + RX_PAYLOAD));
  vq_kick(&rxq);
  uint8_t* events = kit_alloc(EVENT_BUFFERS * 8, 16);
  for (int i = 0; i < EVENT_BUFFERS; i++) {
    struct vbuf b = {events + i * 8, 8, true};
    KIT_CHECK(vq_add(&eventq, &b, 1, 0) >= 0, 0x60, "vsock: event queue full");
  }
  vq_kick(&eventq);
  tx_hdr = kit_alloc(sizeof *tx_hdr, 16);
  tx_data = kit_alloc(MESSAGE_MAX, 16);
  connect_to_host();
  if ((kit_args.flags & KIT_F_VSOCK_LISTEN) != 0) accept_from_host();
}
