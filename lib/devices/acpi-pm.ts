import type { BusDevice } from '../bus/bus.js';
import {
  ACPI_RESET_PORT,
  ACPI_RESET_VALUE,
  ACPI_S5_SLP_TYP,
  ACPI_SLEEP_CONTROL_PORT,
  ACPI_SLEEP_STATUS_PORT,
} from '../arch/x86_64/layout.js';

/**
 * The hardware-reduced ACPI power-management registers our FADT points at (SLEEP_CONTROL_REG,
 * SLEEP_STATUS_REG, RESET_REG; one byte each, consecutive ports). Register the device once at
 * ACPI_SLEEP_CONTROL_PORT with length ACPI_PM_PORT_COUNT.
 *
 * - Sleep control: writing SLP_EN (bit 5) with SLP_TYP (bits 4:2) == ACPI_S5_SLP_TYP is soft-off →
 *   `onPowerOff()`. Other sleep types (S1-S4) are not supported and are ignored, so the guest's sleep attempt
 *   simply returns. Reads return 0 (the register is write-only in the spec).
 * - Sleep status: WAK_STS (bit 7) is write-1-to-clear; we never sleep, so it always reads 0.
 * - Reset: writing ACPI_RESET_VALUE → `onReset()`; other values are ignored. Reads return 0.
 */

export const ACPI_PM_PORT_COUNT = 3;
export const ACPI_PM_CONTROL = ACPI_SLEEP_CONTROL_PORT - ACPI_SLEEP_CONTROL_PORT;
export const ACPI_PM_STATUS = ACPI_SLEEP_STATUS_PORT - ACPI_SLEEP_CONTROL_PORT;
export const ACPI_PM_RESET = ACPI_RESET_PORT - ACPI_SLEEP_CONTROL_PORT;

/** SLEEP_CONTROL_REG fields (ACPI 6.5 §4.8.3.7). */
export const SLP_EN = 0x20;
export const SLP_TYP_SHIFT = 2;
export const SLP_TYP_MASK = 0x1c;
/** SLEEP_STATUS_REG.WAK_STS. */
export const WAK_STS = 0x80;

export interface AcpiPmOptions {
  /** Guest entered S5 (soft-off). */
  onPowerOff?: () => void;
  /** Guest wrote the reset value to RESET_REG. */
  onReset?: () => void;
}

export class AcpiPm implements BusDevice {
  private readonly onPowerOff: () => void;
  private readonly onReset: () => void;
  /** Sleep requests for states other than S5, which we ignore (for diagnostics). */
  ignoredSleeps = 0;

  constructor(options: AcpiPmOptions = {}) {
    this.onPowerOff = options.onPowerOff ?? (() => {});
    this.onReset = options.onReset ?? (() => {});
    // The layout must keep the three registers consecutive for one registration to cover them.
    if (ACPI_PM_STATUS !== 1 || ACPI_PM_RESET !== 2) throw new Error('ACPI PM ports are not consecutive');
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  write(offset: number, data: Uint8Array): void {
    const value = data[0];
    if (offset === ACPI_PM_CONTROL) {
      if (!(value & SLP_EN)) return;
      if ((value & SLP_TYP_MASK) >> SLP_TYP_SHIFT === ACPI_S5_SLP_TYP) this.onPowerOff();
      else this.ignoredSleeps++;
    } else if (offset === ACPI_PM_RESET) {
      if (value === ACPI_RESET_VALUE) this.onReset();
    }
  }
}
