import { describe, expect, it } from 'vitest';
import { PioBus } from '../../../lib/bus/bus.js';
import { I8042_COMMAND_PORT, I8042_DATA_PORT } from '../../../lib/arch/x86_64/layout.js';
import { RecordingIrqLine, type IrqLine } from '../../../lib/devices/irq.js';
import {
  I8042,
  I8042_COMMAND,
  I8042_CTR_AUX_DISABLE,
  I8042_CTR_KBD_DISABLE,
  I8042_CTR_KBD_INT,
  I8042_CTR_SYS,
  I8042_CTR_XLATE,
  I8042_DATA,
  I8042_SPAN,
  I8042_STR_AUX_OBF,
  I8042_STR_CMD,
  I8042_STR_OBF,
  I8042_STR_SYS,
} from '../../../lib/devices/i8042.js';

class LevelLog implements IrqLine {
  levels: boolean[] = [];
  trigger(): void {
    throw new Error('the i8042 drives level lines');
  }
  setLevel(high: boolean): void {
    this.levels.push(high);
  }
}

function controller() {
  const kbdIrq = new RecordingIrqLine();
  const auxIrq = new RecordingIrqLine();
  let resets = 0;
  const dev = new I8042({ kbdIrq, auxIrq, onReset: () => resets++ });
  const bus = new PioBus();
  bus.register(I8042_DATA_PORT, 1, dev.dataPort, 'i8042 data');
  bus.register(I8042_COMMAND_PORT, 1, dev.commandPort, 'i8042 command');
  const inb = (port: number): number => {
    const d = new Uint8Array(1);
    bus.read(port, d);
    return d[0];
  };
  const outb = (port: number, v: number): void => {
    bus.write(port, Uint8Array.of(v));
  };
  const status = (): number => inb(I8042_COMMAND_PORT);
  const command = (cmd: number, param?: number): void => {
    outb(I8042_COMMAND_PORT, cmd);
    if (param !== undefined) outb(I8042_DATA_PORT, param);
  };
  /** Reads everything in the output buffer, like i8042_flush. */
  const drain = (): number[] => {
    const out: number[] = [];
    while (status() & I8042_STR_OBF) out.push(inb(I8042_DATA_PORT));
    return out;
  };
  return { dev, kbdIrq, auxIrq, resets: () => resets, inb, outb, status, command, drain, bus };
}

describe('I8042', () => {
  it('reports an empty, present controller (status is not 0xFF)', () => {
    const { status } = controller();
    expect(status()).not.toBe(0xff);
    expect(status() & I8042_STR_OBF).toBe(0);
  });

  it('self-test answers 0x55 and sets the system flag; interface tests answer 0x00', () => {
    const { command, drain, status } = controller();
    command(0xaa);
    expect(status() & I8042_STR_SYS).toBe(I8042_STR_SYS);
    expect(drain()).toEqual([0x55]);
    command(0xab);
    expect(drain()).toEqual([0x00]);
    command(0xa9);
    expect(drain()).toEqual([0x00]);
  });

  it('reads and writes the command byte (CTR) and the rest of controller RAM', () => {
    const { command, drain, dev } = controller();
    command(0x20);
    expect(drain()).toEqual([dev.ctr]);
    command(0x60, I8042_CTR_XLATE | I8042_CTR_SYS | I8042_CTR_KBD_INT);
    expect(dev.ctr).toBe(0x45);
    command(0x20);
    expect(drain()).toEqual([0x45]);
    command(0x65, 0x99);
    command(0x25);
    expect(drain()).toEqual([0x99]);
  });

  it('tracks whether the last write was a command (status bit 3)', () => {
    const { command, status, outb } = controller();
    command(0x20);
    expect(status() & I8042_STR_CMD).toBe(I8042_STR_CMD);
    outb(I8042_DATA_PORT, 0xf4);
    expect(status() & I8042_STR_CMD).toBe(0);
  });

  it('disables and enables the keyboard and AUX ports through the CTR', () => {
    const { command, dev } = controller();
    command(0xad);
    expect(dev.ctr & I8042_CTR_KBD_DISABLE).toBeTruthy();
    command(0xae);
    expect(dev.ctr & I8042_CTR_KBD_DISABLE).toBe(0);
    command(0xa7);
    expect(dev.ctr & I8042_CTR_AUX_DISABLE).toBeTruthy();
    command(0xa8);
    expect(dev.ctr & I8042_CTR_AUX_DISABLE).toBe(0);
  });

  it('holds keyboard bytes while the keyboard port is disabled', () => {
    const { command, drain, dev } = controller();
    command(0xad);
    dev.keyboardInput([0x1c]);
    expect(drain()).toEqual([]);
    command(0x20); // controller replies still come through
    expect(drain()).toEqual([dev.ctr]);
    command(0xae);
    expect(drain()).toEqual([0x1c]);
  });

  it('loops AUX output-buffer writes back as AUX data (Linux i8042_check_aux)', () => {
    const { command, status, inb, auxIrq, kbdIrq } = controller();
    command(0xd3, 0x5a);
    expect(status() & (I8042_STR_OBF | I8042_STR_AUX_OBF)).toBe(I8042_STR_OBF | I8042_STR_AUX_OBF);
    expect(auxIrq.level).toBe(true);
    expect(kbdIrq.level).toBe(false);
    expect(inb(I8042_DATA_PORT)).toBe(0x5a);
    expect(auxIrq.level).toBe(false);
  });

  it('writes the keyboard output buffer (0xD2) as keyboard data with IRQ 1', () => {
    const { command, kbdIrq, inb, status } = controller();
    command(0xd2, 0x1e);
    expect(kbdIrq.level).toBe(true);
    expect(status() & I8042_STR_AUX_OBF).toBe(0);
    expect(inb(I8042_DATA_PORT)).toBe(0x1e);
    expect(kbdIrq.level).toBe(false);
    // An empty buffer reads the last byte again.
    expect(inb(I8042_DATA_PORT)).toBe(0x1e);
  });

  it('does not raise IRQ 1 while CTR.KBD_INT is clear (polled probe)', () => {
    const { command, kbdIrq, drain } = controller();
    command(0x60, 0);
    command(0xaa);
    expect(kbdIrq.level).toBe(false);
    expect(drain()).toEqual([0x55]);
  });

  it('gives each queued byte its own edge on the keyboard line', () => {
    const log = new LevelLog();
    const dev = new I8042({ kbdIrq: log });
    dev.keyboardInput([1, 2]);
    expect(log.levels).toEqual([true]);
    dev.read(I8042_DATA, new Uint8Array(1));
    expect(log.levels).toEqual([true, false, true]);
    dev.read(I8042_DATA, new Uint8Array(1));
    expect(log.levels).toEqual([true, false, true, false]);
  });

  it('answers the keyboard commands atkbd sends: reset, identify, scancode set, LEDs, enable', () => {
    const { outb, drain, command } = controller();
    outb(I8042_DATA_PORT, 0xff);
    expect(drain()).toEqual([0xfa, 0xaa]);
    outb(I8042_DATA_PORT, 0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x83]);
    command(0x60, I8042_CTR_XLATE | I8042_CTR_KBD_INT);
    outb(I8042_DATA_PORT, 0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x41]);
    outb(I8042_DATA_PORT, 0xf0);
    outb(I8042_DATA_PORT, 0x00);
    expect(drain()).toEqual([0xfa, 0xfa, 0x41]);
    outb(I8042_DATA_PORT, 0xed);
    outb(I8042_DATA_PORT, 0x07);
    expect(drain()).toEqual([0xfa, 0xfa]);
    outb(I8042_DATA_PORT, 0xee);
    expect(drain()).toEqual([0xee]);
    outb(I8042_DATA_PORT, 0xf4);
    expect(drain()).toEqual([0xfa]);
  });

  it('drops host keys while scanning is disabled (0xF5) and resumes on 0xF4', () => {
    const { outb, drain, dev } = controller();
    outb(I8042_DATA_PORT, 0xf5);
    expect(drain()).toEqual([0xfa]);
    dev.keyboardInput([0x1c]);
    expect(drain()).toEqual([]);
    outb(I8042_DATA_PORT, 0xf4);
    drain();
    dev.keyboardInput([0x1c]);
    expect(drain()).toEqual([0x1c]);
  });

  it('pulse reset 0xFE calls onReset', () => {
    const c = controller();
    c.command(0xfe);
    expect(c.resets()).toBe(1);
    expect(c.dev.resets).toBe(1);
    // Pulses that leave bit 0 alone do not reset.
    c.command(0xff);
    c.command(0xf1);
    expect(c.resets()).toBe(1);
    c.command(0xf0);
    expect(c.resets()).toBe(2);
  });

  it('an output-port write with bit 0 clear resets; reading the output port returns what was written', () => {
    const c = controller();
    c.command(0xd0);
    const port = c.drain()[0];
    expect(port & 0x03).toBe(0x03); // not in reset, A20 on
    c.command(0xd1, 0xdf);
    expect(c.resets()).toBe(0);
    c.command(0xd0);
    expect(c.drain()).toEqual([0xdf]);
    c.command(0xd1, 0xde);
    expect(c.resets()).toBe(1);
  });

  it('bounds its output queues when the guest never reads', () => {
    const { outb, drain } = controller();
    for (let i = 0; i < 1000; i++) outb(I8042_DATA_PORT, 0xff);
    expect(drain().length).toBeLessThanOrEqual(16);
  });

  it('swallows bytes for the (absent) mouse and unknown commands', () => {
    const { command, drain, status } = controller();
    command(0xd4, 0xf4);
    command(0x01);
    command(0xc0);
    expect(drain()).toEqual([0x00]);
    expect(status() & I8042_STR_OBF).toBe(0);
  });

  it('also works as one 5-byte registration at 0x60', () => {
    let resets = 0;
    const dev = new I8042({ onReset: () => resets++ });
    const bus = new PioBus();
    bus.register(I8042_DATA_PORT, I8042_SPAN, dev);
    bus.write(I8042_COMMAND_PORT, Uint8Array.of(0xaa));
    const d = new Uint8Array(1);
    bus.read(I8042_DATA_PORT, d);
    expect(d[0]).toBe(0x55);
    bus.read(I8042_DATA_PORT + 1, d);
    expect(d[0]).toBe(0xff);
    bus.write(I8042_DATA_PORT + 2, Uint8Array.of(0));
    dev.write(I8042_COMMAND, Uint8Array.of(0xfe));
    expect(resets).toBe(1);
    dev.write(I8042_DATA, Uint8Array.of(0xff));
    expect(() => dev.read(3, new Uint8Array(2))).not.toThrow();
  });

  it('runs the Linux i8042 probe sequence to completion', () => {
    const { command, drain, status, outb, dev } = controller();
    // i8042_controller_check: flush, status != 0xff.
    drain();
    expect(status()).not.toBe(0xff);
    // i8042_controller_selftest.
    command(0xaa);
    expect(drain()).toEqual([0x55]);
    // i8042_controller_init: read CTR twice, then write it back with ports disabled and IRQs off.
    command(0x20);
    const ctr1 = drain()[0];
    command(0x20);
    expect(drain()[0]).toBe(ctr1);
    command(0x60, (ctr1 | I8042_CTR_KBD_DISABLE | I8042_CTR_AUX_DISABLE) & ~0x03);
    // i8042_check_aux: AUX loopback of 0x5a.
    command(0xd3, 0x5a);
    expect(drain()).toEqual([0x5a]);
    // Enable the keyboard with its interrupt.
    command(0x60, (dev.ctr & ~I8042_CTR_KBD_DISABLE) | I8042_CTR_KBD_INT);
    outb(I8042_DATA_PORT, 0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x83]);
  });
});
