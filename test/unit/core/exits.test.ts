import { describe, expect, it } from 'vitest';
import { ExitDecoder, KvmRun } from '../../../lib/kvm/exits.js';
import { ExitReason } from '../../../lib/kvm/constants.js';

function run(): { run: KvmRun; v: DataView; d: ExitDecoder } {
  const buf = new ArrayBuffer(8192);
  const r = new KvmRun(buf);
  return { run: r, v: new DataView(buf), d: new ExitDecoder(r) };
}

describe('exit decoding from a kvm_run page', () => {
  it('io: direction, size, port, count, data at data_offset; in-values written back', () => {
    const { v, d, run: r } = run();
    v.setUint8(32, 1);
    v.setUint8(33, 2);
    v.setUint16(34, 0x3f8, true);
    v.setUint32(36, 1, true);
    v.setBigUint64(40, 4096n, true);
    v.setUint16(4096, 0xbeef, true);
    const e = d.decode(ExitReason.IO);
    expect(e.reason).toBe('io');
    if (e.reason !== 'io') return;
    expect([e.direction, e.size, e.port, e.count, e.value]).toEqual(['out', 2, 0x3f8, 1, 0xbeef]);
    v.setUint8(32, 0);
    e.value = 0x1234;
    expect(v.getUint16(4096, true)).toBe(0x1234);
    expect(e.data).toBe(e.data); // cached: no allocation per exit
    expect(r.bytes.length).toBe(8192);
  });

  it('io data pointing outside the page is refused', () => {
    const { v, d } = run();
    v.setUint8(33, 4);
    v.setUint32(36, 1000, true);
    v.setBigUint64(40, 8000n, true);
    const e = d.decode(ExitReason.IO);
    if (e.reason !== 'io') throw new Error();
    expect(() => e.data).toThrow(RangeError);
  });

  it('mmio: address, length, direction, data view', () => {
    const { v, d } = run();
    v.setBigUint64(32, 0xd000_0050n, true);
    v.setUint32(40, 7, true);
    v.setUint32(48, 4, true);
    v.setUint8(52, 1);
    const e = d.decode(ExitReason.MMIO);
    if (e.reason !== 'mmio') throw new Error();
    expect([e.physAddr, e.length, e.isWrite, e.data.length, e.data[0]]).toEqual([0xd000_0050, 4, true, 4, 7]);
  });

  it('internal error: suberror name and instruction bytes when KVM provides them', () => {
    const { v, d, run: r } = run();
    v.setUint32(32, 1, true);
    v.setUint32(36, 4, true);
    v.setBigUint64(40, 1n, true);
    r.bytes[48] = 2;
    r.bytes[49] = 0x0f;
    r.bytes[50] = 0x0b;
    const e = d.decode(ExitReason.INTERNAL_ERROR);
    if (e.reason !== 'internal_error') throw new Error();
    expect(e.suberrorName).toBe('emulation');
    expect([...e.instructionBytes!]).toEqual([0x0f, 0x0b]);
  });

  it('every other reason maps to its own reused object', () => {
    const { d } = run();
    expect(d.decode(ExitReason.HLT).reason).toBe('hlt');
    expect(d.decode(ExitReason.SHUTDOWN).reason).toBe('shutdown');
    expect(d.decode(ExitReason.INTR).reason).toBe('intr');
    const o = d.decode(99);
    expect(o.reason === 'other' && o.code).toBe(99);
    expect(d.decode(ExitReason.HLT)).toBe(d.decode(ExitReason.HLT));
  });
});
