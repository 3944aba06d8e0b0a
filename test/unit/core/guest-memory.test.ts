import { describe, expect, it } from 'vitest';
import { GuestMemory, GuestMemoryError } from '../../../lib/memory/guest-memory.js';

describe('GuestMemory', () => {
  const mem = () =>
    new GuestMemory([
      { gpa: 0, buffer: new ArrayBuffer(0x2000) },
      { gpa: 0x1_0000, buffer: new ArrayBuffer(0x1000) },
    ]);

  it('reads and writes little-endian values inside regions', () => {
    const m = mem();
    m.setU32(0x10, 0xdeadbeef);
    expect(m.u32(0x10)).toBe(0xdeadbeef);
    expect(m.u16(0x10)).toBe(0xbeef);
    m.setU64(0x1_0008, 0x1122334455667788n);
    expect(m.u64(0x1_0008)).toBe(0x1122334455667788n);
    m.setU64(0x20, 2 ** 40 + 5);
    expect(m.u64n(0x20)).toBe(2 ** 40 + 5);
    m.write(0x100, [1, 2, 3]);
    expect([...m.read(0x100, 3)]).toEqual([1, 2, 3]);
    expect(m.size).toBe(0x3000);
  });

  it('refuses every access that leaves a region, including across a gap and at the edges', () => {
    const m = mem();
    const cases: [number, number][] = [
      [0x1fff, 2], // straddles the end of region 0
      [0x2000, 1], // in the gap
      [0x1_0ffc, 8], // past the end of region 1
      [-1, 1],
      [2 ** 53, 1],
      [0.5, 1],
      [0, -1],
      [Number.NaN, 1],
    ];
    for (const [gpa, len] of cases) {
      expect(() => m.view(gpa, len)).toThrow(GuestMemoryError);
      expect(m.tryView(gpa, len)).toBeUndefined();
      expect(m.contains(gpa, len)).toBe(false);
    }
    expect(() => m.u32(0x1ffe)).toThrow(GuestMemoryError);
    expect(() => m.setU8(0x3000, 1)).toThrow(GuestMemoryError);
  });

  it('u64n refuses values above 2^53 (guest-controlled addresses)', () => {
    const m = mem();
    m.setU64(0, 0xffff_ffff_ffff_ffffn);
    expect(() => m.u64n(0)).toThrow(GuestMemoryError);
  });

  it('views are zero-copy and exactly the requested range', () => {
    const m = mem();
    const v = m.view(0x10, 4);
    v[0] = 0x55;
    expect(m.u8(0x10)).toBe(0x55);
    expect(v.length).toBe(4);
  });

  it('discard zeroes or releases pages, 4 KiB aligned only', () => {
    let released: [number, number] | undefined;
    const m = new GuestMemory([
      { gpa: 0, buffer: new ArrayBuffer(0x2000), discard: (o, l) => (released = [o, l]) },
      { gpa: 0x4000, buffer: new Uint8Array(0x1000).fill(7) },
    ]);
    m.discard(0x1000, 0x1000);
    expect(released).toEqual([0x1000, 0x1000]);
    m.discard(0x4000, 0x1000);
    expect(m.u8(0x4000)).toBe(0);
    expect(() => m.discard(0x10, 0x1000)).toThrow(GuestMemoryError);
  });

  it('rejects overlapping or empty regions', () => {
    expect(
      () =>
        new GuestMemory([
          { gpa: 0, buffer: new ArrayBuffer(0x2000) },
          { gpa: 0x1000, buffer: new ArrayBuffer(0x1000) },
        ]),
    ).toThrow(/overlap/);
    expect(() => new GuestMemory([])).toThrow(RangeError);
    expect(() => new GuestMemory([{ gpa: 0, buffer: new ArrayBuffer(0) }])).toThrow(RangeError);
  });
});
