import { describe, expect, it } from 'vitest';
import { MmioBus } from '../../../lib/bus/bus.js';
import { RecordingIrqLine } from '../../../lib/devices/irq.js';
import { GuestMemory } from '../../../lib/memory/guest-memory.js';
import {
  MMIO_CONFIG_GENERATION,
  MMIO_DEVICE_ID,
  MMIO_INTERRUPT_STATUS,
  MMIO_MAGIC,
  MMIO_MAGIC_VALUE,
  MMIO_QUEUE_DESC_LOW,
  MMIO_QUEUE_NOTIFY,
  MMIO_QUEUE_NUM,
  MMIO_QUEUE_NUM_MAX,
  MMIO_QUEUE_READY,
  MMIO_QUEUE_RESET,
  MMIO_QUEUE_SEL,
  MMIO_SHM_LEN_HIGH,
  MMIO_SHM_LEN_LOW,
  MMIO_SHM_SEL,
  MMIO_STATUS,
  MMIO_VENDOR_ID,
  MMIO_VERSION,
  NODE_KVM_VENDOR_ID,
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_FEATURES_OK,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_RESET,
  VIRTIO_F_VERSION_1,
  bit,
} from '../../../lib/virtio/constants.js';
import { STATUS_TRANSITIONS, VirtioMmioTransport } from '../../../lib/virtio/mmio-transport.js';
import { MockDriver, createMockGuest } from '../../../lib/virtio/testing/mock-driver.js';
import { ChainProbeDevice, PROBE_DEVICE_ID } from '../../../lib/virtio/testing/probe-device.js';

const V1 = bit(VIRTIO_F_VERSION_1);
const ACK = STATUS_ACKNOWLEDGE;
const DRV = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
const FOK = DRV | STATUS_FEATURES_OK;
const DOK = FOK | STATUS_DRIVER_OK;

function guest(queues: number[] = [16, 16], transport = {}) {
  return createMockGuest(new ChainProbeDevice(queues), { memorySize: 1024 * 1024, transport });
}

describe('virtio-mmio registers', () => {
  it('identifies itself as a version 2 device', () => {
    const { driver } = guest();
    expect(driver.readReg(MMIO_MAGIC_VALUE)).toBe(MMIO_MAGIC);
    expect(driver.readReg(MMIO_VERSION)).toBe(2);
    expect(driver.readReg(MMIO_DEVICE_ID)).toBe(PROBE_DEVICE_ID);
    expect(driver.readReg(MMIO_VENDOR_ID)).toBe(NODE_KVM_VENDOR_ID);
  });

  it('offers VERSION_1, EVENT_IDX, INDIRECT_DESC and RING_RESET', () => {
    const { driver } = guest();
    const f = driver.deviceFeatures();
    for (const b of [VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_RESET]) {
      expect(f & bit(b)).not.toBe(0n);
    }
  });

  it('transport features can be switched off', () => {
    const { driver } = guest([16], { eventIdx: false, indirectDescriptors: false, ringReset: false });
    expect(driver.deviceFeatures()).toBe(V1);
  });

  it('reports queue max sizes and 0 past the last queue', () => {
    const { driver } = guest([16, 64]);
    driver.writeReg(MMIO_QUEUE_SEL, 1);
    expect(driver.readReg(MMIO_QUEUE_NUM_MAX)).toBe(64);
    driver.writeReg(MMIO_QUEUE_SEL, 2);
    expect(driver.readReg(MMIO_QUEUE_NUM_MAX)).toBe(0);
  });

  it('has no shared memory regions (length -1)', () => {
    const { driver } = guest();
    driver.writeReg(MMIO_SHM_SEL, 0);
    expect(driver.readReg(MMIO_SHM_LEN_LOW)).toBe(0xffff_ffff);
    expect(driver.readReg(MMIO_SHM_LEN_HIGH)).toBe(0xffff_ffff);
  });

  it('ignores and counts non-32-bit register accesses', () => {
    const { transport } = guest();
    const two = new Uint8Array(2);
    transport.read(MMIO_MAGIC_VALUE, two);
    expect([...two]).toEqual([0, 0]);
    transport.write(MMIO_STATUS, new Uint8Array([1]));
    transport.write(MMIO_STATUS + 1, new Uint8Array([1, 0, 0, 0]));
    expect(transport.status).toBe(0);
    expect(transport.stats.badAccesses).toBe(3);
  });

  it('reads device config at any width and offset, zeros past its end', () => {
    const { transport } = guest(); // probe config bytes are 0..7
    const one = new Uint8Array(1);
    transport.read(0x103, one);
    expect(one[0]).toBe(3);
    const eight = new Uint8Array(8);
    transport.read(0x101, eight);
    expect([...eight]).toEqual([1, 2, 3, 4, 5, 6, 7, 0]);
    const four = new Uint8Array(4);
    transport.read(0x200, four);
    expect([...four]).toEqual([0, 0, 0, 0]);
  });

  it('works behind an MmioBus', () => {
    const memory = new GuestMemory([{ gpa: 0, buffer: new ArrayBuffer(1 << 20) }]);
    const transport = new VirtioMmioTransport(new ChainProbeDevice(), memory, new RecordingIrqLine());
    const bus = new MmioBus();
    bus.register(0xd000_0000, 0x1000, transport, 'virtio');
    const data = new Uint8Array(4);
    bus.read(0xd000_0000, data);
    expect(new DataView(data.buffer).getUint32(0, true)).toBe(MMIO_MAGIC);
  });
});

describe('device status protocol', () => {
  it('is a table of allowed transitions', () => {
    expect(STATUS_TRANSITIONS.get(0)).toBe(ACK);
    expect(STATUS_TRANSITIONS.get(ACK)).toBe(DRV);
    expect(STATUS_TRANSITIONS.get(DRV)).toBe(FOK);
    expect(STATUS_TRANSITIONS.get(FOK)).toBe(DOK);
    expect(STATUS_TRANSITIONS.get(DOK)).toBeUndefined();
  });

  it('walks ACKNOWLEDGE → DRIVER → FEATURES_OK → DRIVER_OK', () => {
    const { driver, device, transport } = guest();
    expect(driver.init({ features: V1 })).toBe(true);
    expect(driver.status).toBe(DOK);
    expect(transport.active).toBe(true);
    expect(device.activations).toBe(1);
  });

  it('takes several steps in one write, as SeaBIOS does (ACKNOWLEDGE|DRIVER together)', () => {
    const { driver, transport, device } = guest();
    driver.setStatus(DRV);
    expect(driver.status).toBe(DRV);
    driver.writeDriverFeatures(V1);
    driver.setStatus(DOK);
    expect(driver.status).toBe(DOK);
    expect(device.activations).toBe(1);
    expect(transport.stats.rejectedStatusWrites).toBe(0);
  });

  it('stops before FEATURES_OK when a multi-step write carries unacceptable features', () => {
    const { driver, transport, device } = guest();
    driver.setStatus(DOK);
    expect(driver.status).toBe(DRV);
    expect(transport.stats.rejectedFeatures).toBe(1);
    expect(device.activations).toBe(0);
  });

  it.each([
    ['skipping ACKNOWLEDGE', 0, STATUS_DRIVER],
    ['skipping DRIVER', ACK, ACK | STATUS_FEATURES_OK],
    ['DRIVER_OK before FEATURES_OK', DRV, DRV | STATUS_DRIVER_OK],
    ['clearing a bit', FOK, ACK],
    ['setting everything but ACKNOWLEDGE at once', 0, DOK & ~ACK],
  ])('rejects %s', (_name, from, to) => {
    const { driver, transport, device } = guest();
    for (const s of [ACK, DRV, FOK]) {
      if ((s & from) !== s || from === 0) break;
      if (s === FOK) driver.writeDriverFeatures(V1);
      driver.setStatus(s);
    }
    expect(driver.status).toBe(from);
    driver.setStatus(to);
    expect(driver.status).toBe(from);
    expect(transport.stats.rejectedStatusWrites).toBe(1);
    expect(device.activations).toBe(0);
  });

  it('refuses FEATURES_OK for features not offered or without VERSION_1', () => {
    const { driver, transport } = guest([16], { ringReset: false });
    driver.setStatus(ACK);
    driver.setStatus(DRV);
    driver.writeDriverFeatures(V1 | bit(VIRTIO_F_RING_RESET));
    driver.setStatus(FOK);
    expect(driver.status).toBe(DRV);
    driver.writeDriverFeatures(0n);
    driver.setStatus(FOK);
    expect(driver.status).toBe(DRV);
    expect(transport.stats.rejectedFeatures).toBe(2);
    driver.writeDriverFeatures(V1);
    driver.setStatus(FOK);
    expect(driver.status).toBe(FOK);
    expect(transport.features).toBe(V1);
  });

  it('ignores feature writes outside feature negotiation', () => {
    const { driver, transport } = guest();
    driver.init({ features: V1 });
    driver.writeDriverFeatures(V1 | bit(VIRTIO_F_EVENT_IDX));
    expect(transport.features).toBe(V1);
    expect(transport.driverFeatures).toBe(V1);
  });

  it('accepts FAILED at any time, then only a reset', () => {
    const { driver, transport } = guest();
    driver.setStatus(ACK);
    driver.setStatus(ACK | STATUS_FAILED);
    expect(driver.status).toBe(ACK | STATUS_FAILED);
    driver.setStatus(DRV | STATUS_FAILED);
    expect(driver.status).toBe(ACK | STATUS_FAILED);
    driver.setStatus(0);
    expect(driver.status).toBe(0);
    expect(transport.stats.resets).toBe(1);
  });

  it('reset clears queues, features and interrupts, and resets the device', () => {
    const { driver, transport, device } = guest();
    driver.init({ features: V1 });
    driver.send(0, [{ length: 4, writable: true }]);
    expect(transport.interruptStatus).toBe(1);
    const resetsBefore = device.resets;
    driver.setStatus(0);
    expect(transport.interruptStatus).toBe(0);
    expect(transport.features).toBe(0n);
    expect(transport.queues.every((q) => !q.ready && q.size === q.maxSize)).toBe(true);
    expect(device.resets).toBe(resetsBefore + 1);
  });

  it('DEVICE_NEEDS_RESET is device-owned and survives driver writes', () => {
    const { driver, transport } = guest();
    driver.init({ features: V1 });
    transport.needsReset('test');
    expect(driver.status).toBe(DOK | STATUS_DEVICE_NEEDS_RESET);
    driver.setStatus(DOK | STATUS_FAILED); // Linux adds FAILED to what it read
    expect(driver.status).toBe(DOK | STATUS_FAILED | STATUS_DEVICE_NEEDS_RESET);
    expect(transport.active).toBe(false);
  });
});

describe('queue configuration', () => {
  function negotiated(queues = [16]) {
    const g = guest(queues);
    g.driver.init({ features: V1, skipDriverOk: true, queueSizes: [] });
    return g;
  }

  it('ignores queue writes before FEATURES_OK', () => {
    const { driver, transport } = guest();
    driver.setStatus(ACK);
    driver.writeReg(MMIO_QUEUE_SEL, 0);
    driver.writeReg(MMIO_QUEUE_NUM, 8);
    driver.writeReg(MMIO_QUEUE_READY, 1);
    expect(transport.queues[0].size).toBe(16);
    expect(driver.readReg(MMIO_QUEUE_READY)).toBe(0);
  });

  it.each([
    ['not a power of two', 12],
    ['larger than the max', 32],
    ['zero', 0],
  ])('refuses QueueReady for a size %s', (_name, size) => {
    const { driver, transport } = negotiated();
    driver.writeReg(MMIO_QUEUE_SEL, 0);
    const q = driver.setupQueue(0, 16);
    expect(driver.readReg(MMIO_QUEUE_READY)).toBe(1);
    driver.writeReg(MMIO_QUEUE_READY, 0);
    driver.writeReg(MMIO_QUEUE_NUM, size);
    driver.writeReg(MMIO_QUEUE_READY, 1);
    expect(driver.readReg(MMIO_QUEUE_READY)).toBe(0);
    expect(transport.stats.rejectedQueues).toBe(1);
    expect(q.size).toBe(16);
  });

  it.each([
    ['a misaligned descriptor table', 0x1008],
    ['a descriptor table outside memory', 1024 * 1024 - 0x80],
    ['an address beyond 2^53', 0xffff_ffff_0000],
  ])('refuses QueueReady with %s', (_name, address) => {
    const { driver, transport } = negotiated();
    driver.setupQueue(0, 16);
    driver.writeReg(MMIO_QUEUE_READY, 0);
    if (address > 2 ** 32) driver.writeAddress(MMIO_QUEUE_DESC_LOW, MMIO_QUEUE_DESC_LOW + 4, 2 ** 60);
    else driver.writeAddress(MMIO_QUEUE_DESC_LOW, MMIO_QUEUE_DESC_LOW + 4, address);
    driver.writeReg(MMIO_QUEUE_READY, 1);
    expect(driver.readReg(MMIO_QUEUE_READY)).toBe(0);
    expect(transport.lastError).toMatch(/descriptor/);
  });

  it('a driver that goes on to DRIVER_OK with a refused queue gets DEVICE_NEEDS_RESET', () => {
    const { driver, transport, device } = negotiated();
    driver.writeReg(MMIO_QUEUE_SEL, 0);
    driver.writeReg(MMIO_QUEUE_NUM, 12);
    driver.writeReg(MMIO_QUEUE_READY, 1);
    driver.setStatus(DOK);
    expect(driver.status).toBe(DOK | STATUS_DEVICE_NEEDS_RESET);
    expect(transport.active).toBe(false);
    expect(device.activations).toBe(0);
  });

  it('ignores size and address writes while the queue is ready', () => {
    const { driver, transport } = negotiated();
    driver.setupQueue(0, 8);
    driver.writeReg(MMIO_QUEUE_NUM, 4);
    expect(transport.queues[0].size).toBe(8);
    expect(transport.stats.ignoredWrites).toBeGreaterThan(0);
  });

  it('ignores notifications before DRIVER_OK, then processes what was queued at DRIVER_OK', () => {
    const { driver, device, transport } = negotiated();
    driver.setupQueue(0, 16);
    driver.send(0, [{ length: 2, writable: true }]);
    expect(device.seen).toHaveLength(0);
    expect(transport.stats.ignoredNotifications).toBe(1);
    driver.setStatus(DOK);
    expect(device.seen).toHaveLength(1);
  });

  it('ignores notifications for a missing or not-ready queue', () => {
    const g = guest([16, 16]);
    g.driver.init({ features: V1, queueSizes: [16] });
    g.driver.writeReg(MMIO_QUEUE_NOTIFY, 1);
    g.driver.writeReg(MMIO_QUEUE_NOTIFY, 7);
    g.transport.notifyQueue(99);
    expect(g.transport.stats.ignoredNotifications).toBe(3);
  });

  it('RING_RESET: resets one queue and lets the driver re-enable it', () => {
    const { driver, device, transport } = guest();
    driver.init({ features: V1 | bit(VIRTIO_F_RING_RESET) });
    driver.writeReg(MMIO_QUEUE_SEL, 1);
    driver.writeReg(MMIO_QUEUE_RESET, 1);
    expect(driver.readReg(MMIO_QUEUE_RESET)).toBe(0);
    expect(driver.readReg(MMIO_QUEUE_READY)).toBe(0);
    expect(device.queueResets).toEqual([1]);
    driver.setupQueue(1, 8);
    driver.send(1, [{ length: 1, writable: true }]);
    expect(device.seen).toHaveLength(1);
    expect(transport.queues[1].size).toBe(8);
  });

  it('QueueReset is ignored without RING_RESET', () => {
    const { driver, transport } = guest();
    driver.init({ features: V1 });
    driver.writeReg(MMIO_QUEUE_SEL, 0);
    driver.writeReg(MMIO_QUEUE_RESET, 1);
    expect(driver.readReg(MMIO_QUEUE_READY)).toBe(1);
    expect(transport.stats.ignoredWrites).toBe(1);
  });
});

describe('interrupts and config changes', () => {
  it('edge mode triggers per event; InterruptACK clears bits', () => {
    const { driver, irq } = guest();
    driver.init({ features: V1 });
    driver.send(0, [{ length: 1, writable: true }]);
    expect(irq.triggers).toBe(1);
    expect(driver.readReg(MMIO_INTERRUPT_STATUS)).toBe(1);
    expect(driver.ackInterrupts()).toBe(1);
    expect(driver.readReg(MMIO_INTERRUPT_STATUS)).toBe(0);
  });

  it('level mode follows InterruptStatus', () => {
    const { driver, irq } = guest([16], { interruptMode: 'level' });
    driver.init({ features: V1 });
    driver.send(0, [{ length: 1, writable: true }]);
    expect(irq.level).toBe(true);
    expect(irq.triggers).toBe(0);
    driver.ackInterrupts();
    expect(irq.level).toBe(false);
  });

  it('a config change bumps ConfigGeneration and raises bit 1', () => {
    const { driver, device } = guest();
    driver.init({ features: V1 });
    const before = driver.readReg(MMIO_CONFIG_GENERATION);
    device.changeConfig(0, 42);
    expect(driver.readReg(MMIO_CONFIG_GENERATION)).toBe(before + 1);
    expect(driver.readReg(MMIO_INTERRUPT_STATUS)).toBe(2);
    expect(driver.readConfig(0, 1)[0]).toBe(42);
  });

  it('no config interrupt before DRIVER_OK', () => {
    const { driver, device, irq } = guest();
    device.changeConfig(0, 1);
    expect(irq.triggers).toBe(0);
    expect(driver.readReg(MMIO_INTERRUPT_STATUS)).toBe(0);
  });
});

describe('containment', () => {
  it('a device that throws sets NEEDS_RESET instead of escaping', () => {
    const { driver, device, transport } = guest();
    driver.init({ features: V1 });
    device.throwOnNotify = new Error('boom');
    expect(() => driver.send(0, [{ length: 1, writable: true }])).not.toThrow();
    expect(transport.status & STATUS_DEVICE_NEEDS_RESET).not.toBe(0);
    expect(transport.stats.internalErrors).toBe(1);
    expect(transport.lastError).toMatch(/boom/);
  });

  it('an IrqLine that throws does not escape', () => {
    const memory = new GuestMemory([{ gpa: 0, buffer: new ArrayBuffer(1 << 20) }]);
    const irq = {
      trigger() {
        throw new Error('irqfd gone');
      },
      setLevel() {},
    };
    const transport = new VirtioMmioTransport(new ChainProbeDevice([16]), memory, irq);
    const driver = new MockDriver(transport, memory);
    driver.init({ features: V1 });
    expect(() => driver.send(0, [{ length: 1, writable: true }])).not.toThrow();
    expect(transport.stats.internalErrors).toBe(1);
  });
});
