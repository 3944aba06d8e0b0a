import { describe, expect, it } from 'vitest';
import { PioBus } from '../../../lib/bus/bus.js';
import {
  ACPI_RESET_PORT,
  ACPI_RESET_VALUE,
  ACPI_S5_SLP_TYP,
  ACPI_SLEEP_CONTROL_PORT,
  ACPI_SLEEP_STATUS_PORT,
} from '../../../lib/arch/x86_64/layout.js';
import { ACPI_PM_PORT_COUNT, AcpiPm, SLP_EN, WAK_STS } from '../../../lib/devices/acpi-pm.js';

function pm() {
  const events: string[] = [];
  const dev = new AcpiPm({ onPowerOff: () => events.push('off'), onReset: () => events.push('reset') });
  const bus = new PioBus();
  bus.register(ACPI_SLEEP_CONTROL_PORT, ACPI_PM_PORT_COUNT, dev, 'acpi-pm');
  const outb = (port: number, v: number) => bus.write(port, Uint8Array.of(v));
  const inb = (port: number) => {
    const d = new Uint8Array(1);
    bus.read(port, d);
    return d[0];
  };
  return { dev, events, outb, inb };
}

describe('AcpiPm', () => {
  it('powers off on SLP_EN with SLP_TYP = S5 (what ACPICA writes for HW-reduced sleep)', () => {
    const { events, outb } = pm();
    // acpi_hw_extended_sleep: clear WAK_STS, then write SLP_TYP << 2 | SLP_EN.
    outb(ACPI_SLEEP_STATUS_PORT, WAK_STS);
    expect(events).toEqual([]);
    outb(ACPI_SLEEP_CONTROL_PORT, (ACPI_S5_SLP_TYP << 2) | SLP_EN);
    expect(events).toEqual(['off']);
  });

  it('ignores SLP_TYP without SLP_EN, and other sleep states', () => {
    const { events, outb, dev } = pm();
    outb(ACPI_SLEEP_CONTROL_PORT, ACPI_S5_SLP_TYP << 2);
    outb(ACPI_SLEEP_CONTROL_PORT, (3 << 2) | SLP_EN);
    expect(events).toEqual([]);
    expect(dev.ignoredSleeps).toBe(1);
  });

  it('resets on the reset value only', () => {
    const { events, outb } = pm();
    outb(ACPI_RESET_PORT, ACPI_RESET_VALUE ^ 0xff);
    expect(events).toEqual([]);
    outb(ACPI_RESET_PORT, ACPI_RESET_VALUE);
    expect(events).toEqual(['reset']);
  });

  it('reads all registers as zero and tolerates wide accesses', () => {
    const { inb, dev } = pm();
    expect([inb(ACPI_SLEEP_CONTROL_PORT), inb(ACPI_SLEEP_STATUS_PORT), inb(ACPI_RESET_PORT)]).toEqual([
      0, 0, 0,
    ]);
    const wide = new Uint8Array(2).fill(0xff);
    dev.read(0, wide);
    expect([...wide]).toEqual([0, 0]);
    expect(() => dev.write(7, Uint8Array.of(1))).not.toThrow();
  });
});
