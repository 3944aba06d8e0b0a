/* node-kvm: program=virtio-console-hello
 *
 * The smallest virtio guest: finds the virtio console among the transports, brings it up and prints a
 * greeting on port 0's transmitq. Used by examples/virtio-console-hello.ts. Exit status 0, or 1 if there is
 * no console.
 */
#include "console.h"

static struct vdev device;
static struct vconsole console;

uint8_t guest_main(void) {
  for (int slot = 0; slot < VIRTIO_MMIO_MAX_DEVICES; slot++) {
    if (!vdev_probe(&device, slot)) break;
    if (device.device_id != VIRTIO_ID_CONSOLE) continue;
    vcons_init(&console, &device, 2);
    static const char greeting[] = "Hello from the virtio console!\n";
    vcons_write(&console, greeting, sizeof greeting - 1, 3);
    return 0;
  }
  kit_printf("no virtio console found\n");
  return 1;
}
