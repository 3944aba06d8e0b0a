/** virtio-mmio transport, split virtqueue and device models. See docs/virtio.md. */
export * from './constants.js';
export * from './device.js';
export * from './host-io.js';
export * from './mmio-transport.js';
export * from './queue.js';
export * from './devices/balloon.js';
export * from './devices/block.js';
export * from './devices/console.js';
export * from './devices/entropy.js';
export * from './devices/net.js';
export * from './devices/vsock.js';
