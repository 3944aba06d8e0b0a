import { describe, expect, it } from 'vitest';
import { validateConfig, type MicroVmConfig } from '../../../lib/vmm/config.js';
import { FrameRing, MAX_FRAME } from '../../../lib/vmm/net-channel.js';

const base: MicroVmConfig = {
  memory: { size: 1 << 24 },
  boot: { kind: 'payload', payload: new Uint8Array(1), mode: 'real' },
};

describe('MicroVm config validation', () => {
  it('fills defaults', () => {
    const c = validateConfig(base);
    expect(c).toMatchObject({ vcpus: 1, irqchip: false, serial: true, ioeventfd: true, disks: [] });
    // Virtio devices and kernels need the in-kernel irqchip; a bare payload defaults to none.
    expect(validateConfig({ ...base, rng: true }).irqchip).toBe(true);
    expect(() => validateConfig({ ...base, rng: true, irqchip: false })).toThrow(/irqchip/);
  });

  it.each([
    [{ memory: { size: 100 } }, RangeError, /memory.size/],
    [{ memory: { size: 1 << 24, hugepages: 'huge' } }, TypeError, /hugepages/],
    [{ vcpus: 65 }, RangeError, /vcpus/],
    [{ boot: { kind: 'payload', payload: new Uint8Array(1), mode: 'vm86' } }, TypeError, /boot.mode/],
    [
      { boot: { kind: 'payload', payload: new Uint8Array(1), mode: 'real', loadAddress: 1 << 30 } },
      RangeError,
      /loadAddress/,
    ],
    [{ boot: { kind: 'linux', kernel: '' } }, TypeError, /boot.kernel/],
    [{ boot: { kind: 'elf' } }, TypeError, /boot.kind/],
    [{ disks: [{ path: 'x', serial: 'a'.repeat(21) }] }, RangeError, /serial/],
    [{ net: [{ tap: 'a'.repeat(16) }] }, RangeError, /tap/],
    [{ net: [{ tap: 'tap0', mac: 'zz' }] }, RangeError, /mac/],
    [{ vsock: { cid: 2, udsPath: '/tmp/v' } }, RangeError, /cid/],
    [{ disks: Array.from({ length: 9 }, () => ({ path: 'x' })) }, RangeError, /at most 8/],
  ] as const)('rejects %j', (patch, type, message) => {
    expect(() => validateConfig({ ...base, ...(patch as object) } as MicroVmConfig)).toThrow(type);
    expect(() => validateConfig({ ...base, ...(patch as object) } as MicroVmConfig)).toThrow(message);
  });
});

describe('FrameRing', () => {
  it('carries frames in order across the wrap-around and refuses when full', () => {
    const ring = new FrameRing(FrameRing.create(256));
    for (let round = 0; round < 50; round++) {
      const a = new Uint8Array(60).fill(round);
      const b = new Uint8Array(100).fill(round + 1);
      expect(ring.push(a)).toBe(true);
      expect(ring.push(b)).toBe(true);
      expect(ring.pop()).toEqual(a);
      expect(ring.pop()).toEqual(b);
    }
    expect(ring.pop()).toBeUndefined();
    expect(ring.push(new Uint8Array(200))).toBe(true);
    expect(ring.push(new Uint8Array(100))).toBe(false);
    expect(ring.push(new Uint8Array(0))).toBe(false);
    expect(new FrameRing(FrameRing.create(1 << 18)).push(new Uint8Array(MAX_FRAME + 1))).toBe(false);
  });
});
