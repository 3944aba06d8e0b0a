import { describe, expect, it } from 'vitest';
import { PioBus } from '../../../lib/bus/bus.js';
import { DEBUG_CONSOLE_PORT } from '../../../lib/arch/x86_64/layout.js';
import { DebugConsole } from '../../../lib/devices/debug-console.js';

describe('DebugConsole', () => {
  function setup() {
    const out: number[] = [];
    const bus = new PioBus();
    bus.register(DEBUG_CONSOLE_PORT, 1, new DebugConsole((b) => out.push(...b)), 'debugcon');
    return { out, bus };
  }

  it('passes every byte the guest writes to the output callback, in order', () => {
    const { out, bus } = setup();
    for (const c of 'ok\n') bus.write(DEBUG_CONSOLE_PORT, Uint8Array.of(c.charCodeAt(0)));
    expect(Buffer.from(out).toString()).toBe('ok\n');
  });

  it('reads back 0xE9 so guests can detect it (SeaBIOS qemu_debug_preinit, Bochs)', () => {
    const { bus } = setup();
    const d = new Uint8Array(1);
    bus.read(DEBUG_CONSOLE_PORT, d);
    expect(d[0]).toBe(0xe9);
  });

  it('takes the low byte of a wide write and fills wide reads with zeros above it', () => {
    const out: number[] = [];
    const dev = new DebugConsole((b) => out.push(...b));
    dev.write(0, Uint8Array.of(0x41, 0x42));
    expect(out).toEqual([0x41]);
    const wide = new Uint8Array(4).fill(0xff);
    dev.read(0, wide);
    expect([...wide]).toEqual([0xe9, 0, 0, 0]);
  });

  it('hands the callback a copy (reusing the exit buffer cannot change delivered bytes)', () => {
    const seen: Uint8Array[] = [];
    const dev = new DebugConsole((b) => seen.push(b));
    const buf = Uint8Array.of(0x31);
    dev.write(0, buf);
    buf[0] = 0x32;
    expect(seen[0][0]).toBe(0x31);
  });
});
