import { describe, expect, it } from 'vitest';
import {
  CONSOLE_CFG_EMERG_WR,
  CONSOLE_CFG_MAX_NR_PORTS,
  VIRTIO_CONSOLE_F_EMERG_WRITE,
  VIRTIO_CONSOLE_F_MULTIPORT,
  VIRTIO_ID_CONSOLE,
  VIRTIO_ID_ENTROPY,
  bit,
} from '../../../lib/virtio/constants.js';
import { VirtioConsole } from '../../../lib/virtio/devices/console.js';
import { VirtioEntropy } from '../../../lib/virtio/devices/entropy.js';
import { createMockGuest } from '../../../lib/virtio/testing/mock-driver.js';

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);

describe('virtio-console', () => {
  function setup(options: ConstructorParameters<typeof VirtioConsole>[0] = {}) {
    const out: Uint8Array[] = [];
    const device = new VirtioConsole({ output: (b) => out.push(b), ...options });
    const g = createMockGuest(device);
    return { ...g, out, output: () => out.map(text).join('') };
  }

  it('is device 3 with port 0 only (no MULTIPORT) and emergency write', () => {
    const { driver } = setup();
    expect(driver.readReg(0x008)).toBe(VIRTIO_ID_CONSOLE);
    const f = driver.deviceFeatures();
    expect(f & bit(VIRTIO_CONSOLE_F_MULTIPORT)).toBe(0n);
    expect(f & bit(VIRTIO_CONSOLE_F_EMERG_WRITE)).not.toBe(0n);
    expect(new DataView(driver.readConfig(CONSOLE_CFG_MAX_NR_PORTS, 4).buffer).getUint32(0, true)).toBe(1);
  });

  it('sends transmitq buffers to the sink, however they are split', () => {
    const { driver, output } = setup();
    driver.init();
    driver.send(1, [{ data: bytes('hel') }, { data: bytes('lo\n') }]);
    driver.send(1, [{ data: bytes('world') }], { indirect: true });
    expect(output()).toBe('hello\nworld');
    expect(driver.takeUsed(1).map((u) => u.len)).toEqual([0, 0]);
  });

  it('accepts a stream-like sink', () => {
    const chunks: Uint8Array[] = [];
    const device = new VirtioConsole({ output: { write: (c: Uint8Array) => chunks.push(c) } });
    const { driver } = createMockGuest(device);
    driver.init();
    driver.send(1, [{ data: bytes('x') }]);
    expect(chunks.map(text)).toEqual(['x']);
  });

  it('buffers host input until the guest posts receive buffers', () => {
    const { driver, device } = setup();
    device.input('early ');
    driver.init();
    device.input(bytes('typing'));
    expect(device.pendingInput).toBe(12);
    const chain = driver.send(0, [{ length: 8, writable: true }])!;
    const used = driver.takeUsed(0);
    expect(used[0].len).toBe(8);
    expect(text(driver.writtenBytes(chain, 8))).toBe('early ty');
    const rest = driver.send(0, [{ length: 64, writable: true }])!;
    expect(driver.takeUsed(0)[0].len).toBe(4);
    expect(text(driver.writtenBytes(rest, 4))).toBe('ping');
    expect(device.pendingInput).toBe(0);
  });

  it('fills several posted buffers from one input', () => {
    const { driver, device } = setup();
    driver.init();
    const a = driver.addChain(0, [{ length: 2, writable: true }])!;
    const b = driver.addChain(0, [{ length: 2, writable: true }])!;
    driver.kick(0);
    device.input('abc');
    expect(driver.takeUsed(0).map((u) => u.len)).toEqual([2, 1]);
    expect(text(driver.writtenBytes(a, 2)) + text(driver.writtenBytes(b, 1))).toBe('abc');
  });

  it('drops (and counts) input beyond the bound', () => {
    const { device } = setup({ maxPendingInput: 4 });
    device.input('abcdef');
    expect(device.pendingInput).toBe(4);
    expect(device.stats.inputDropped).toBe(2);
  });

  it('emergency write outputs one byte at any time', () => {
    const { driver, output } = setup();
    driver.writeConfig(CONSOLE_CFG_EMERG_WR, Uint8Array.from([0x21, 0, 0, 0]));
    expect(output()).toBe('!');
  });

  it('a throwing sink costs the output, not the device', () => {
    const device = new VirtioConsole({
      output: () => {
        throw new Error('EPIPE');
      },
    });
    const { driver, transport } = createMockGuest(device);
    driver.init();
    driver.send(1, [{ data: bytes('x') }]);
    expect(driver.takeUsed(1)).toHaveLength(1);
    expect(device.errors.internalErrors).toBe(1);
    expect(transport.status & 64).toBe(0);
  });
});

describe('virtio-rng', () => {
  it('is device 4 and fills device-writable buffers from the CSPRNG', () => {
    const device = new VirtioEntropy();
    const { driver } = createMockGuest(device);
    expect(driver.readReg(0x008)).toBe(VIRTIO_ID_ENTROPY);
    driver.init();
    const chain = driver.send(0, [
      { length: 64, writable: true },
      { length: 64, writable: true },
    ])!;
    expect(driver.takeUsed(0)[0].len).toBe(128);
    const got = driver.writtenBytes(chain, 128);
    // The mock driver pre-fills with 0xaa; 128 random bytes are never all 0xaa.
    expect(got.some((b) => b !== 0xaa)).toBe(true);
    expect(device.bytesProvided).toBe(128);
  });

  it('uses an injected source and caps each request', () => {
    const device = new VirtioEntropy({ fill: (b) => b.fill(7), maxBytesPerRequest: 10 });
    const { driver } = createMockGuest(device);
    driver.init();
    const chain = driver.send(0, [{ length: 100, writable: true }])!;
    expect(driver.takeUsed(0)[0].len).toBe(10);
    expect([...driver.writtenBytes(chain, 11)]).toEqual([...new Array(10).fill(7), 0xaa]);
  });

  it('returns a readable-only chain with length 0', () => {
    const device = new VirtioEntropy();
    const { driver } = createMockGuest(device);
    driver.init();
    driver.send(0, [{ data: new Uint8Array(8) }]);
    expect(driver.takeUsed(0)[0].len).toBe(0);
    expect(device.errors.badRequests).toBe(1);
  });
});
