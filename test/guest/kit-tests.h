/*
 * The driver kit (program driver-kit, kit.c): one test per virtio device type, run against every transport
 * the guest finds. Progress lines start with "KIT "; the exit status is 0 when everything passed, else the
 * failure code below (printed with a reason as "KIT FAIL 0x<code>: ..." on the debug console).
 *
 * Failure codes: 0x01-0x0f core (0x0c console sink, 0x0d receive ring full, 0x0e used ring corrupt),
 * 0x10 console, 0x20 block, 0x30 entropy, 0x40 net, 0x50 balloon, 0x60 vsock (+ the step within).
 */
#ifndef NODE_KVM_GUEST_KIT_TESTS_H
#define NODE_KVM_GUEST_KIT_TESTS_H

#include "virtio.h"

/*
 * Boot register rdi: what to do beyond the defaults.
 * KIT_F_VSOCK_LISTEN: vsock, after the guest-initiated round trip, accepts one host connection too.
 * KIT_F_NET_ECHO: net echoes KIT_NET_FRAMES frames back (MACs swapped) instead of sending them.
 */
#define KIT_F_VSOCK_LISTEN 1
#define KIT_F_NET_ECHO 2

#define KIT_NET_FRAMES 4
#define KIT_NET_ETHERTYPE 0x88b5 /* IEEE local experimental */

/* vsock ports (the host side listens on `${udsPath}_5000` and connects to 6000 with CONNECT 6000). */
#define KIT_VSOCK_HOST_PORT 5000
#define KIT_VSOCK_LISTEN_PORT 6000
#define KIT_VSOCK_LOCAL_PORT 49152

/* Block: sector 0 holds sector0_byte(i) (host-written); the kit writes disk_word() at sectors 16..143. */
#define KIT_BLK_WRITE_SECTOR 16
#define KIT_BLK_WRITE_SECTORS 128
#define KIT_BLK_ZERO_SECTOR 20
#define KIT_BLK_ZERO_SECTORS 4

static inline uint8_t sector0_byte(uint32_t i) { return (uint8_t)(i * 13 + 7); }
/* The 32-bit word the kit writes at disk byte offset `offset` (a multiple of 4). */
static inline uint32_t disk_word(uint64_t offset) { return (uint32_t)((offset ^ 0x4b495421u) * 2654435761u); }

struct kit_args {
  uint64_t flags;
  uint8_t peer_mac[6];
  uint64_t ram_size;
};
extern struct kit_args kit_args;

void test_console(struct vdev* d);
void test_blk(struct vdev* d);
void test_rng(struct vdev* d);
void test_net(struct vdev* d);
void test_balloon(struct vdev* d);
void test_vsock(struct vdev* d);

#endif
