/* node-kvm: program=driver-kit
 *
 * The guest driver kit: finds the virtio-mmio transports, drives each device through its test (kit-*.c) and
 * reports "KIT ..." lines, then exits with status 0 (or the failure code, see kit-tests.h).
 *
 * Boot registers: rdi = KIT_F_* flags, rsi = the net peer's MAC (byte i in bits 8i..8i+7), rdx = number of
 * transports (0: probe slots until one does not answer), rcx = guest RAM size in bytes (balloon statistics).
 */
#include "kit-tests.h"

struct kit_args kit_args;

static struct vdev devices[VIRTIO_MMIO_MAX_DEVICES];

uint8_t guest_main(uint64_t flags, uint64_t peer_mac, uint64_t transports, uint64_t ram_size) {
  kit_args.flags = flags;
  for (int i = 0; i < 6; i++) kit_args.peer_mac[i] = (uint8_t)(peer_mac >> (8 * i));
  kit_args.ram_size = ram_size;
  uint64_t start = rdtsc();
  kit_printf("KIT start flags=0x%lx transports=%lu\n", flags, transports);

  int count = 0;
  int limit =
      transports == 0 || transports > VIRTIO_MMIO_MAX_DEVICES ? VIRTIO_MMIO_MAX_DEVICES : (int)transports;
  for (int slot = 0; slot < limit; slot++) {
    struct vdev* d = &devices[count];
    if (!vdev_probe(d, slot)) {
      KIT_CHECK(transports == 0, 0x01, "slot %d: no virtio-mmio v2 transport (magic/version)", slot);
      break;
    }
    kit_printf("KIT slot %d: %s (device id %u)\n", slot, virtio_device_name(d->device_id), d->device_id);
    if (d->device_id != 0) count++;
  }
  KIT_CHECK(count > 0, 0x01, "no virtio devices found");

  for (int i = 0; i < count; i++) {
    struct vdev* d = &devices[i];
    switch (d->device_id) {
      case VIRTIO_ID_CONSOLE:
        test_console(d);
        break;
      case VIRTIO_ID_BLOCK:
        test_blk(d);
        break;
      case VIRTIO_ID_ENTROPY:
        test_rng(d);
        break;
      case VIRTIO_ID_NET:
        test_net(d);
        break;
      case VIRTIO_ID_BALLOON:
        test_balloon(d);
        break;
      case VIRTIO_ID_VSOCK:
        test_vsock(d);
        break;
      default:
        kit_printf("KIT slot %d: device id %u has no test, skipped\n", d->slot, d->device_id);
        continue;
    }
    uint32_t status = vdev_status(d);
    KIT_CHECK((status & (VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED)) == 0, 0x02,
              "slot %d (%s): status 0x%x after its test", d->slot, virtio_device_name(d->device_id), status);
  }
  kit_printf("KIT done: %d devices passed in %lu M TSC ticks\n", count, (rdtsc() - start) >> 20);
  kit_flush();
  return 0;
}
