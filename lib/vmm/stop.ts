/** Why a VM stopped, and the handle devices use to ask for a stop. */
import type { Regs } from '../kvm/structs.js';

export type StopReason =
  /** The guest executed HLT with nothing to wake it (no in-kernel irqchip). */
  | { reason: 'hlt' }
  /** Guest asked to power off (ACPI S5). */
  | { reason: 'poweroff' }
  /** Guest asked to reboot (i8042 pulse, ACPI reset register, KVM system event). */
  | { reason: 'reset'; source: string }
  /** The guest wrote its exit code to the debug-exit port (payloads that cannot HLT, e.g. at CPL3). */
  | { reason: 'debug-exit'; code: number }
  /** The host asked the VM to stop. */
  | { reason: 'stopped' }
  /** The exit budget of the run ran out. */
  | { reason: 'exit-limit'; exits: number }
  /** Triple fault, failed VM entry, KVM internal error, or a VMM fault: the guest cannot continue. */
  | { reason: 'error'; kind: ErrorKind; message: string; regs?: Regs; detail?: Record<string, unknown> };

export type ErrorKind =
  'triple_fault' | 'fail_entry' | 'internal_error' | 'kvm_run' | 'vmm' | 'unexpected_exit';

/** Devices and the host request a stop through this; the exit loop checks it after every exit. */
export class VmControl {
  private pending: StopReason | undefined;

  /** First request wins: a reset that triggers a second event still reports the reset. */
  requestStop(reason: StopReason): void {
    this.pending ??= reason;
  }

  get stopRequested(): StopReason | undefined {
    return this.pending;
  }

  clear(): void {
    this.pending = undefined;
  }
}

export function formatStopReason(s: StopReason): string {
  switch (s.reason) {
    case 'reset':
      return `reset (${s.source})`;
    case 'debug-exit':
      return `debug exit with code ${s.code}`;
    case 'exit-limit':
      return `exit limit reached after ${s.exits} exits`;
    case 'error':
      return `error: ${s.kind}: ${s.message}`;
    default:
      return s.reason;
  }
}
