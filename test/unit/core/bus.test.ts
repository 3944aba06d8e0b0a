import { describe, expect, it } from 'vitest';
import {
  BusOverlapError,
  MmioBus,
  PioBus,
  readData,
  writeData,
  type BusDevice,
} from '../../../lib/bus/bus.js';

class Recorder implements BusDevice {
  reads: number[] = [];
  writes: [number, number][] = [];
  read(offset: number, data: Uint8Array): void {
    this.reads.push(offset);
    writeData(data, 0x1234_5678);
  }
  write(offset: number, data: Uint8Array): void {
    this.writes.push([offset, readData(data)]);
  }
}

describe('buses', () => {
  it('dispatch to the owning device with the offset inside its range', () => {
    const bus = new PioBus();
    const a = new Recorder();
    bus.register(0x3f8, 8, a, 'com1');
    const data = new Uint8Array(1);
    expect(bus.read(0x3fd, data)).toBe(true);
    expect(a.reads).toEqual([5]);
    expect(data[0]).toBe(0x78);
    bus.write(0x3f8, Uint8Array.of(0x41));
    expect(a.writes).toEqual([[0, 0x41]]);
  });

  it('refuse overlapping ranges, naming both devices', () => {
    const bus = new MmioBus();
    bus.register(0xd000_0000, 0x1000, new Recorder(), 'virtio0');
    expect(() => bus.register(0xd000_0800, 0x1000, new Recorder(), 'virtio1')).toThrow(BusOverlapError);
    expect(() => bus.register(0xd000_0800, 0x1000, new Recorder(), 'virtio1')).toThrow(
      /virtio1.*overlaps virtio0/,
    );
    bus.register(0xd000_1000, 0x1000, new Recorder(), 'virtio1');
    expect(bus.ranges.map((r) => r.name)).toEqual(['virtio0', 'virtio1']);
  });

  it('reject invalid ranges', () => {
    const bus = new PioBus();
    expect(() => bus.register(0xffff, 2, new Recorder())).toThrow(RangeError);
    expect(() => bus.register(-1, 1, new Recorder())).toThrow(RangeError);
    expect(() => bus.register(0, 0, new Recorder())).toThrow(RangeError);
  });

  it('unclaimed accesses: PIO reads all ones, MMIO reads zeros, writes are dropped and counted', () => {
    const pio = new PioBus();
    const d = new Uint8Array(2);
    expect(pio.read(0x80, d)).toBe(false);
    expect([...d]).toEqual([0xff, 0xff]);
    const mmio = new MmioBus();
    const m = Uint8Array.of(9, 9, 9, 9);
    mmio.read(0x1000, m);
    expect([...m]).toEqual([0, 0, 0, 0]);
    expect(mmio.write(0x1000, m)).toBe(false);
    expect([pio.unclaimedReads, mmio.unclaimedReads, mmio.unclaimedWrites]).toEqual([1, 1, 1]);
  });

  it('an access straddling the end of a device is unclaimed', () => {
    const bus = new PioBus();
    bus.register(0x10, 2, new Recorder());
    expect(bus.read(0x11, new Uint8Array(2))).toBe(false);
  });

  it('readData/writeData round-trip 1, 2, 4 and 8 bytes little-endian', () => {
    for (const [n, v] of [
      [1, 0xab],
      [2, 0xabcd],
      [4, 0xdead_beef],
      [8, 0x1f_ffff_ffff_ffff],
    ] as const) {
      const d = new Uint8Array(n);
      writeData(d, v);
      expect(readData(d)).toBe(v);
    }
    const d = new Uint8Array(4);
    writeData(d, 0x0102_0304);
    expect([...d]).toEqual([4, 3, 2, 1]);
  });
});
