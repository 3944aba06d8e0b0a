import { describe, expect, it } from 'vitest';
import {
  STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  bit,
} from '../../../lib/virtio/constants.js';
import { createMockGuest } from '../../../lib/virtio/testing/mock-driver.js';
import { ChainProbeDevice } from '../../../lib/virtio/testing/probe-device.js';

const BASE_FEATURES = bit(VIRTIO_F_VERSION_1);
const DATA = 0x8_0000;

function setup(features = BASE_FEATURES | bit(VIRTIO_F_INDIRECT_DESC), size = 8) {
  const device = new ChainProbeDevice([size]);
  const g = createMockGuest(device, { memorySize: 1024 * 1024 });
  expect(g.driver.init({ features })).toBe(true);
  const q = g.transport.queues[0];
  return { ...g, q };
}

describe('split virtqueue: well-formed chains', () => {
  it('hands over readable then writable buffers and returns the written length', () => {
    const { driver, device, q } = setup();
    const chain = driver.send(0, [
      { data: Uint8Array.from([1, 2, 3]) },
      { data: Uint8Array.from([4, 5]) },
      { length: 10, writable: true },
    ])!;
    expect(device.seen).toHaveLength(1);
    expect([...device.seen[0].readable]).toEqual([1, 2, 3, 4, 5]);
    expect(device.seen[0].writableBytes).toBe(10);
    const used = driver.takeUsed(0);
    expect(used).toEqual([{ id: chain.head, len: 10, chain }]);
    expect([...driver.writtenBytes(chain, 10)]).toEqual(new Array(10).fill(0x5a));
    expect(q.stats.chains).toBe(1);
    expect(q.stats.invalidChains).toBe(0);
  });

  it('follows an indirect table', () => {
    const { driver, device } = setup();
    driver.send(0, [{ data: Uint8Array.from([9, 8]) }, { length: 4, writable: true }], { indirect: true });
    expect(device.seen).toHaveLength(1);
    expect([...device.seen[0].readable]).toEqual([9, 8]);
    expect(driver.takeUsed(0)[0].len).toBe(4);
  });

  it('accepts direct descriptors followed by one indirect descriptor (§2.7.5.3.2)', () => {
    const { driver, device, memory } = setup();
    memory.write(DATA, [1, 2]);
    memory.write(DATA + 0x100, [3, 4]);
    const table = DATA + 0x1000;
    driver.writeDescriptorAt(table, { addr: DATA + 0x100, len: 2, flags: 0, next: 0 });
    driver.writeDescriptor(0, 0, { addr: DATA, len: 2, flags: VIRTQ_DESC_F_NEXT, next: 1 });
    driver.writeDescriptor(0, 1, { addr: table, len: 16, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    driver.publish(0, 0);
    driver.kick(0);
    expect([...device.seen[0].readable]).toEqual([1, 2, 3, 4]);
  });

  it('skips zero-length descriptors without checking their address', () => {
    const { driver, device, memory } = setup();
    memory.write(DATA, [7]);
    driver.writeDescriptor(0, 0, { addr: 2 ** 52, len: 0, flags: VIRTQ_DESC_F_NEXT, next: 1 });
    driver.writeDescriptor(0, 1, { addr: DATA, len: 1, flags: 0, next: 0 });
    driver.publish(0, 0);
    driver.kick(0);
    expect(device.seen[0].buffers).toEqual([{ addr: DATA, len: 1, writable: false }]);
  });

  it('wraps the 16-bit ring indices', () => {
    const { driver, device, q } = setup(BASE_FEATURES, 4);
    for (let i = 0; i < 70_000 / 100; i++) {
      for (let j = 0; j < 4; j++) driver.addChain(0, [{ length: 1, writable: true }]);
      driver.kick(0);
      expect(driver.takeUsed(0)).toHaveLength(4);
    }
    expect(device.seen.length).toBe(2800);
    expect(q.nextAvail).toBe(2800 & 0xffff);
  });
});

describe('split virtqueue: hostile chains are returned with length 0', () => {
  function expectRejected(g: ReturnType<typeof setup>, head = 0): void {
    g.driver.publish(0, head);
    g.driver.kick(0);
    expect(g.device.seen).toHaveLength(0);
    const used = g.driver.takeUsed(0);
    expect(used).toHaveLength(1);
    expect(used[0]).toMatchObject({ id: head, len: 0 });
    expect(g.q.stats.invalidChains).toBe(1);
    expect(g.transport.status & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    // The queue keeps working.
    g.driver.send(0, [{ length: 1, writable: true }]);
    expect(g.device.seen).toHaveLength(1);
  }

  it('a descriptor loop', () => {
    const g = setup();
    g.driver.writeDescriptor(0, 0, { addr: DATA, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 1 });
    g.driver.writeDescriptor(0, 1, { addr: DATA, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 0 });
    expectRejected(g);
  });

  it('a self loop', () => {
    const g = setup();
    g.driver.writeDescriptor(0, 0, { addr: DATA, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 0 });
    expectRejected(g);
  });

  it('next index out of range', () => {
    const g = setup();
    g.driver.writeDescriptor(0, 0, { addr: DATA, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 8 });
    expectRejected(g);
  });

  it('buffer beyond guest memory', () => {
    const g = setup();
    g.driver.writeDescriptor(0, 0, { addr: 1024 * 1024 - 4, len: 8, flags: 0, next: 0 });
    expectRejected(g);
  });

  it('buffer at a 64-bit address beyond 2^53', () => {
    const g = setup();
    g.driver.writeDescriptor(0, 0, { addr: 0xffff_ffff * 0x1_0000_0000, len: 8, flags: 0, next: 0 });
    expectRejected(g);
  });

  it('huge length', () => {
    const g = setup();
    g.driver.writeDescriptor(0, 0, { addr: DATA, len: 0xffff_ffff, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    expectRejected(g);
  });

  it('lengths summing past 2^32-1', () => {
    // A 2 GiB guest (lazily allocated): three 2 GiB-1 buffers each fit, their sum does not fit in a u32.
    const device = new ChainProbeDevice([8]);
    const g = createMockGuest(device, { memorySize: 2 ** 31 });
    expect(g.driver.init({ features: BASE_FEATURES })).toBe(true);
    for (let i = 0; i < 3; i++) {
      g.driver.writeDescriptor(0, i, {
        addr: 0,
        len: 0x7fff_ffff,
        flags: VIRTQ_DESC_F_WRITE | (i < 2 ? VIRTQ_DESC_F_NEXT : 0),
        next: i + 1,
      });
    }
    expectRejected({ ...g, q: g.transport.queues[0] });
    expect(g.transport.queues[0].lastInvalidChain).toMatch(/2\^32/);
  });

  it('device-readable after device-writable', () => {
    const g = setup();
    g.driver.writeDescriptor(0, 0, {
      addr: DATA,
      len: 8,
      flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
      next: 1,
    });
    g.driver.writeDescriptor(0, 1, { addr: DATA + 8, len: 8, flags: 0, next: 0 });
    expectRejected(g);
    expect(g.q.lastInvalidChain).toMatch(/readable/);
  });

  it('nested indirect table', () => {
    const g = setup();
    const outer = DATA;
    const inner = DATA + 0x100;
    g.driver.writeDescriptorAt(inner, { addr: DATA + 0x200, len: 4, flags: 0, next: 0 });
    g.driver.writeDescriptorAt(outer, { addr: inner, len: 16, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    g.driver.writeDescriptor(0, 0, { addr: outer, len: 16, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    expectRejected(g);
    expect(g.q.lastInvalidChain).toMatch(/nested/);
  });

  it('indirect without the feature negotiated', () => {
    const g = setup(BASE_FEATURES);
    g.driver.writeDescriptorAt(DATA, { addr: DATA + 0x100, len: 4, flags: 0, next: 0 });
    g.driver.writeDescriptor(0, 0, { addr: DATA, len: 16, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    expectRejected(g);
  });

  it.each([
    ['zero length', 0, 0],
    ['length not a multiple of 16', 24, 0],
    ['INDIRECT with NEXT', 16, VIRTQ_DESC_F_NEXT],
    ['more entries than the queue size', 16 * 9, 0],
  ])('indirect table: %s', (_name, len, extraFlags) => {
    const g = setup();
    g.driver.writeDescriptor(0, 0, { addr: DATA, len, flags: VIRTQ_DESC_F_INDIRECT | extraFlags, next: 1 });
    expectRejected(g);
  });

  it('indirect table with a loop inside', () => {
    const g = setup();
    g.driver.writeDescriptorAt(DATA, { addr: DATA + 0x100, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 1 });
    g.driver.writeDescriptorAt(DATA + 16, { addr: DATA + 0x100, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 0 });
    g.driver.writeDescriptor(0, 0, { addr: DATA, len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    expectRejected(g);
  });

  it('indirect table outside guest memory', () => {
    const g = setup();
    g.driver.writeDescriptor(0, 0, { addr: 1024 * 1024 - 8, len: 16, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    expectRejected(g);
  });
});

describe('split virtqueue: corrupt rings set DEVICE_NEEDS_RESET', () => {
  it('head index >= queue size', () => {
    const g = setup();
    g.driver.publish(0, 8);
    g.driver.kick(0);
    expect(g.transport.status & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    expect(g.q.broken).toBe(true);
    expect(g.transport.lastError).toMatch(/head index 8/);
    expect(g.driver.ackInterrupts() & 2).toBe(2); // config-change interrupt announces NEEDS_RESET
    // Nothing more is processed until reset.
    g.driver.send(0, [{ length: 1, writable: true }]);
    expect(g.device.seen).toHaveLength(0);
  });

  it('avail idx jumping by more than the queue size', () => {
    const g = setup();
    g.driver.setAvailIdx(0, 9);
    g.driver.kick(0);
    expect(g.transport.status & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    expect(g.transport.lastError).toMatch(/avail idx/);
  });

  it('recovers after a device reset', () => {
    const g = setup();
    g.driver.setAvailIdx(0, 100);
    g.driver.kick(0);
    expect(g.transport.status & STATUS_DEVICE_NEEDS_RESET).not.toBe(0);
    expect(g.driver.init({ features: BASE_FEATURES })).toBe(true);
    g.driver.send(0, [{ length: 2, writable: true }]);
    expect(g.device.seen).toHaveLength(1);
  });
});

describe('notification suppression', () => {
  it('without EVENT_IDX, interrupts unless the driver sets NO_INTERRUPT', () => {
    const g = setup(BASE_FEATURES);
    g.driver.send(0, [{ length: 1, writable: true }]);
    expect(g.irq.triggers).toBe(1);
    g.driver.setAvailFlags(0, VIRTQ_AVAIL_F_NO_INTERRUPT);
    g.driver.send(0, [{ length: 1, writable: true }]);
    expect(g.irq.triggers).toBe(1);
    expect(g.q.stats.suppressedInterrupts).toBe(1);
  });

  it('batches: one interrupt decision for many used entries', () => {
    const g = setup(BASE_FEATURES);
    for (let i = 0; i < 5; i++) g.driver.addChain(0, [{ length: 1, writable: true }]);
    g.driver.kick(0);
    expect(g.driver.takeUsed(0)).toHaveLength(5);
    expect(g.irq.triggers).toBe(1);
  });

  it('EVENT_IDX: interrupts only when used idx crosses used_event', () => {
    const g = setup(BASE_FEATURES | bit(VIRTIO_F_EVENT_IDX));
    g.driver.setUsedEvent(0, 2); // "interrupt me once entry 2 is used"
    g.driver.send(0, [{ length: 1, writable: true }]); // used idx 0 -> 1
    expect(g.irq.triggers).toBe(0);
    g.driver.send(0, [{ length: 1, writable: true }]); // 1 -> 2
    expect(g.irq.triggers).toBe(0);
    g.driver.send(0, [{ length: 1, writable: true }]); // 2 -> 3: crosses
    expect(g.irq.triggers).toBe(1);
    g.driver.send(0, [{ length: 1, writable: true }]); // used_event still 2: behind, no interrupt
    expect(g.irq.triggers).toBe(1);
  });

  it('EVENT_IDX: the device publishes avail_event when it runs dry', () => {
    const g = setup(BASE_FEATURES | bit(VIRTIO_F_EVENT_IDX));
    for (let i = 0; i < 3; i++) g.driver.addChain(0, [{ length: 1, writable: true }]);
    g.driver.kick(0);
    expect(g.driver.availEvent(0)).toBe(3);
  });

  it('ignores NO_INTERRUPT when EVENT_IDX is negotiated (§2.7.7.2)', () => {
    const g = setup(BASE_FEATURES | bit(VIRTIO_F_EVENT_IDX));
    g.driver.setAvailFlags(0, VIRTQ_AVAIL_F_NO_INTERRUPT);
    g.driver.setUsedEvent(0, 0);
    g.driver.send(0, [{ length: 1, writable: true }]);
    expect(g.irq.triggers).toBe(1);
  });
});
