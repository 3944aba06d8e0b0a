/**
 * The single-threaded exit loop: KVM_RUN on the calling thread, each exit dispatched to the buses. This is the
 * fast path for tiny payloads; MicroVm runs the same dispatch on a VM thread with vCPUs on native threads.
 */
import type { MmioBus, PioBus } from '../bus/bus.js';
import type { VcpuExit } from '../kvm/exits.js';
import { ExitReason, SystemEventType } from '../kvm/constants.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { VmControl, type StopReason } from './stop.js';

export interface RunLoopOptions {
  pio: PioBus;
  mmio: MmioBus;
  /** Where devices and the host request a stop (checked after every exit). */
  control?: VmControl;
  /** Stop with 'exit-limit' after this many exits (default: no limit). */
  maxExits?: number;
  /** Return 'hlt' on HLT (default true); false keeps running (useful with an in-kernel irqchip). */
  stopOnHlt?: boolean;
}

/** Handles one I/O or MMIO exit; returns false when the exit is not a device access. */
export function dispatchDeviceExit(exit: VcpuExit, pio: PioBus, mmio: MmioBus): boolean {
  if (exit.reason === 'io') {
    const data = exit.data;
    const size = exit.size;
    const port = exit.port;
    if (data.length === size) {
      if (exit.isWrite) pio.write(port, data);
      else pio.read(port, data);
    } else {
      // String I/O (rep ins/outs): one device access per element.
      for (let off = 0; off < data.length; off += size) {
        const element = data.subarray(off, off + size);
        if (exit.isWrite) pio.write(port, element);
        else pio.read(port, element);
      }
    }
    return true;
  }
  if (exit.reason === 'mmio') {
    if (exit.isWrite) mmio.write(exit.physAddr, exit.data);
    else mmio.read(exit.physAddr, exit.data);
    return true;
  }
  return false;
}

/** Maps a non-device exit to a stop reason (undefined: keep running). */
export interface ExitPolicy {
  /** HLT stops the VM (true when there is no in-kernel irqchip to wake the vCPU). */
  stopOnHlt: boolean;
  /**
   * A triple fault is a reboot request (firmware and kernels: a PC resets on it, and SeaBIOS and Linux's
   * reboot=t use it) rather than an error (payloads).
   */
  tripleFaultIsReset?: boolean;
}

export function stopReasonForExit(exit: VcpuExit, vcpu: Vcpu, policy: ExitPolicy): StopReason | undefined {
  switch (exit.reason) {
    case 'hlt':
      return policy.stopOnHlt ? { reason: 'hlt' } : undefined;
    case 'intr':
      return undefined;
    case 'shutdown':
      if (policy.tripleFaultIsReset) return { reason: 'reset', source: 'triple_fault' };
      return {
        reason: 'error',
        kind: 'triple_fault',
        message: 'guest triple fault (KVM_EXIT_SHUTDOWN)',
        regs: safeRegs(vcpu),
      };
    case 'fail_entry':
      return {
        reason: 'error',
        kind: 'fail_entry',
        message: `VM entry failed: hardware reason 0x${exit.hardwareEntryFailureReason.toString(16)}`,
        regs: safeRegs(vcpu),
        detail: { hardwareEntryFailureReason: exit.hardwareEntryFailureReason, cpu: exit.cpu },
      };
    case 'internal_error': {
      const bytes = exit.instructionBytes;
      return {
        reason: 'error',
        kind: 'internal_error',
        message:
          `KVM internal error: ${exit.suberrorName}` +
          (bytes
            ? ` at instruction ${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ')}`
            : ''),
        regs: safeRegs(vcpu),
        detail: { suberror: exit.suberror, data: exit.data, instructionBytes: bytes },
      };
    }
    case 'system_event':
      if (exit.type === SystemEventType.SHUTDOWN) return { reason: 'poweroff' };
      if (exit.type === SystemEventType.RESET) return { reason: 'reset', source: 'system_event' };
      return {
        reason: 'error',
        kind: 'unexpected_exit',
        message: `system event ${exit.typeName}`,
        regs: safeRegs(vcpu),
      };
    case 'debug':
      return { reason: 'error', kind: 'unexpected_exit', message: `debug exit at 0x${exit.pc.toString(16)}` };
    case 'other':
      return {
        reason: 'error',
        kind: 'unexpected_exit',
        message: `unhandled exit reason ${exit.code}${exit.code === ExitReason.EXCEPTION ? ' (exception)' : ''}`,
        regs: safeRegs(vcpu),
      };
    default:
      return undefined;
  }
}

function safeRegs(vcpu: Vcpu) {
  try {
    return vcpu.getRegs();
  } catch {
    return undefined;
  }
}

/**
 * Runs the vCPU until a stop: HLT, a guest power event, an error exit, a device's stop request, or the exit
 * budget. Device exceptions and KVM_RUN failures end the run with an 'error' stop instead of propagating.
 */
export function runLoop(vcpu: Vcpu, o: RunLoopOptions): StopReason {
  const control = o.control ?? new VmControl();
  const maxExits = o.maxExits ?? Infinity;
  const stopOnHlt = o.stopOnHlt ?? true;
  const { pio, mmio } = o;
  for (let exits = 0; ;) {
    let exit: VcpuExit;
    try {
      exit = vcpu.run();
    } catch (e) {
      return { reason: 'error', kind: 'kvm_run', message: (e as Error).message, regs: safeRegs(vcpu) };
    }
    exits++;
    try {
      if (!dispatchDeviceExit(exit, pio, mmio)) {
        const stop = stopReasonForExit(exit, vcpu, { stopOnHlt });
        if (stop !== undefined) return stop;
      }
    } catch (e) {
      return {
        reason: 'error',
        kind: 'vmm',
        message: `device fault: ${(e as Error).message}`,
        regs: safeRegs(vcpu),
      };
    }
    const requested = control.stopRequested;
    if (requested !== undefined) return requested;
    if (exits >= maxExits) return { reason: 'exit-limit', exits };
  }
}
