import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../lib/memory/guest-memory.js';
import { RecordingIrqLine } from '../../../lib/devices/irq.js';
import {
  BALLOON_CFG_ACTUAL,
  BALLOON_CFG_NUM_PAGES,
  VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
  VIRTIO_BALLOON_F_STATS_VQ,
  VIRTIO_ID_BALLOON,
  bit,
} from '../../../lib/virtio/constants.js';
import { VirtioBalloon, type BalloonStatistics } from '../../../lib/virtio/devices/balloon.js';
import { VirtioMmioTransport } from '../../../lib/virtio/mmio-transport.js';
import { MockDriver, createMockGuest } from '../../../lib/virtio/testing/mock-driver.js';

function pfns(...list: number[]): Uint8Array {
  const b = new Uint8Array(list.length * 4);
  list.forEach((p, i) => new DataView(b.buffer).setUint32(i * 4, p, true));
  return b;
}

function statsBuffer(entries: [number, bigint][]): Uint8Array {
  const b = new Uint8Array(entries.length * 10);
  const v = new DataView(b.buffer);
  entries.forEach(([tag, val], i) => {
    v.setUint16(i * 10, tag, true);
    v.setBigUint64(i * 10 + 2, val, true);
  });
  return b;
}

describe('virtio-balloon', () => {
  it('is device 5 with the stats queue offered', () => {
    const { driver } = createMockGuest(new VirtioBalloon({ deflateOnOom: true }));
    expect(driver.readReg(0x008)).toBe(VIRTIO_ID_BALLOON);
    const f = driver.deviceFeatures();
    expect(f & bit(VIRTIO_BALLOON_F_STATS_VQ)).not.toBe(0n);
    expect(f & bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM)).not.toBe(0n);
  });

  it('setTarget updates num_pages and raises a config interrupt; the driver reports actual', () => {
    const { driver, device } = createMockGuest(new VirtioBalloon());
    driver.init();
    device.setTarget(256);
    expect(driver.ackInterrupts()).toBe(2);
    expect(new DataView(driver.readConfig(BALLOON_CFG_NUM_PAGES, 4).buffer).getUint32(0, true)).toBe(256);
    driver.writeConfig(BALLOON_CFG_ACTUAL, pfns(200));
    expect(device.actualPages).toBe(200);
    driver.writeConfig(BALLOON_CFG_NUM_PAGES, pfns(1)); // num_pages is not driver-writable
    expect(device.targetPages).toBe(256);
    expect(() => device.setTarget(-1)).toThrow(RangeError);
  });

  it('inflate discards the pages (coalescing runs); deflate is acknowledged', () => {
    const discards: [number, number][] = [];
    const buffer = new ArrayBuffer(1 << 20);
    const memory = new GuestMemory([{ gpa: 0, buffer, discard: (o, l) => discards.push([o, l]) }]);
    const device = new VirtioBalloon();
    const transport = new VirtioMmioTransport(device, memory, new RecordingIrqLine());
    const driver = new MockDriver(transport, memory);
    driver.init();
    driver.send(0, [{ data: pfns(0x80, 0x81, 0x82, 0x90) }]);
    expect(discards).toEqual([
      [0x80000, 3 * 4096],
      [0x90000, 4096],
    ]);
    expect(device.counters.inflatedPages).toBe(4);
    expect(driver.takeUsed(0)).toHaveLength(1);
    driver.send(1, [{ data: pfns(0x80, 0x81) }]);
    expect(device.counters.deflatedPages).toBe(2);
    expect(driver.takeUsed(1)).toHaveLength(1);
  });

  it('zeroes discarded pages of plain memory and ignores PFNs outside guest memory', () => {
    const { driver, device, memory } = createMockGuest(new VirtioBalloon(), { memorySize: 1 << 20 });
    driver.init();
    memory.fill(0x80000, 4096, 0x11);
    driver.send(0, [{ data: pfns(0x80, 0xffff_ffff, 0x100, 0xff) }]);
    expect(memory.view(0x80000, 4096).every((b) => b === 0)).toBe(true);
    expect(device.counters.inflatedPages).toBe(2); // 0x80 and 0xff
    expect(device.counters.invalidPfns).toBe(2);
  });

  it('counts a discard failure without breaking the device', () => {
    const memory = new GuestMemory([
      {
        gpa: 0,
        buffer: new ArrayBuffer(1 << 20),
        discard: () => {
          throw new Error('madvise EINVAL');
        },
      },
    ]);
    const device = new VirtioBalloon();
    const transport = new VirtioMmioTransport(device, memory, new RecordingIrqLine());
    const driver = new MockDriver(transport, memory);
    driver.init();
    driver.send(0, [{ data: pfns(0x80) }]);
    expect(device.counters.discardErrors).toBe(1);
    expect(transport.status & 64).toBe(0);
  });

  it('stats: keeps the buffer, exposes the numbers, returns it on request', () => {
    const updates: BalloonStatistics[] = [];
    const { driver, device } = createMockGuest(new VirtioBalloon({ onStats: (s) => updates.push(s) }));
    driver.init();
    driver.send(2, [
      {
        data: statsBuffer([
          [4, 1000n],
          [5, 4096n],
          [77, 5n],
        ]),
      },
    ]);
    expect(device.latestStats).toEqual({ freeMemory: 1000, totalMemory: 4096, tag77: 5 });
    expect(updates).toHaveLength(1);
    expect(driver.takeUsed(2)).toHaveLength(0); // held by the device
    expect(device.requestStats()).toBe(true);
    expect(driver.takeUsed(2)).toHaveLength(1);
    expect(device.requestStats()).toBe(false);
  });

  it('without the stats feature there are two queues', () => {
    const device = new VirtioBalloon({ statistics: false });
    expect(device.queueMaxSizes).toHaveLength(2);
    expect(device.deviceFeatures & bit(VIRTIO_BALLOON_F_STATS_VQ)).toBe(0n);
  });
});
