/**
 * Decoding vCPU exits from the mmapped kvm_run page. Each vCPU owns one instance of every exit class; run()
 * returns the one matching the exit reason, whose getters read the page on demand. Nothing is allocated per
 * exit, so an exit object is only valid until the next run().
 */
import { ExitReason, InternalErrorSuberror, SystemEventType } from './constants.js';

// struct kvm_run offsets (x86-64).
const RUN_IMMEDIATE_EXIT = 1;
const RUN_EXIT_REASON = 8;
const RUN_IF_FLAG = 13;
const RUN_UNION = 32;

/** Typed access to one vCPU's kvm_run page. */
export class KvmRun {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  constructor(buffer: ArrayBuffer) {
    this.bytes = new Uint8Array(buffer);
    this.view = new DataView(buffer);
  }
  get exitReason(): number {
    return this.view.getUint32(RUN_EXIT_REASON, true);
  }
  get immediateExit(): boolean {
    return this.bytes[RUN_IMMEDIATE_EXIT] !== 0;
  }
  set immediateExit(on: boolean) {
    this.bytes[RUN_IMMEDIATE_EXIT] = on ? 1 : 0;
  }
  /** Guest RFLAGS.IF at exit. */
  get ifFlag(): boolean {
    return this.bytes[RUN_IF_FLAG] !== 0;
  }
}

/** A port I/O exit (`in`/`out`/`ins`/`outs`). */
export class IoExit {
  readonly reason = 'io' as const;
  private cachedOffset = -1;
  private cachedLength = -1;
  private cachedData: Uint8Array = new Uint8Array(0);
  constructor(private readonly run: KvmRun) {}
  /** 'out' when the guest writes. */
  get direction(): 'in' | 'out' {
    return this.run.bytes[RUN_UNION] === 1 ? 'out' : 'in';
  }
  get isWrite(): boolean {
    return this.run.bytes[RUN_UNION] === 1;
  }
  /** Access size in bytes: 1, 2 or 4. */
  get size(): number {
    return this.run.bytes[RUN_UNION + 1];
  }
  get port(): number {
    return this.run.view.getUint16(RUN_UNION + 2, true);
  }
  /** Repetitions (string I/O); 1 for plain in/out. */
  get count(): number {
    return this.run.view.getUint32(RUN_UNION + 4, true);
  }
  get dataOffset(): number {
    return Number(this.run.view.getBigUint64(RUN_UNION + 8, true));
  }
  /**
   * The data area: size*count bytes inside the kvm_run mapping. Out: what the guest wrote; in: fill it before
   * the next run. Cached, so steady-state exits with the same shape allocate nothing.
   */
  get data(): Uint8Array {
    const offset = this.dataOffset;
    const length = this.size * this.count;
    if (offset !== this.cachedOffset || length !== this.cachedLength) {
      if (offset + length > this.run.bytes.length)
        throw new RangeError('kvm_run io data is outside the page');
      this.cachedData = this.run.bytes.subarray(offset, offset + length);
      this.cachedOffset = offset;
      this.cachedLength = length;
    }
    return this.cachedData;
  }
  /** The value of a single (count 1) access, little-endian. */
  get value(): number {
    const d = this.data;
    switch (d.length) {
      case 1:
        return d[0];
      case 2:
        return d[0] | (d[1] << 8);
      default:
        return (d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) >>> 0;
    }
  }
  /** Sets the value an `in` returns (count 1). */
  set value(v: number) {
    const d = this.data;
    for (let i = 0; i < d.length && i < 4; i++) d[i] = (v >>> (8 * i)) & 0xff;
  }
}

/** An MMIO exit: a guest access to a physical address with no memory slot (or a read-only slot write). */
export class MmioExit {
  readonly reason = 'mmio' as const;
  private readonly slices: Uint8Array[];
  constructor(private readonly run: KvmRun) {
    // One cached view per possible length (0..8), over kvm_run.mmio.data.
    this.slices = Array.from({ length: 9 }, (_, n) => run.bytes.subarray(RUN_UNION + 8, RUN_UNION + 8 + n));
  }
  get physAddr(): number {
    return Number(this.run.view.getBigUint64(RUN_UNION, true));
  }
  get length(): number {
    return this.run.view.getUint32(RUN_UNION + 16, true);
  }
  get isWrite(): boolean {
    return this.run.bytes[RUN_UNION + 20] !== 0;
  }
  /** The access bytes: written data, or the buffer to fill for a read. */
  get data(): Uint8Array {
    const n = this.length;
    return this.slices[n <= 8 ? n : 8];
  }
}

export class HltExit {
  readonly reason = 'hlt' as const;
}

/** Triple fault (or a shutdown the CPU could not deliver): the guest is dead; a PC would reset. */
export class ShutdownExit {
  readonly reason = 'shutdown' as const;
}

/** VM entry failed; hardwareEntryFailureReason is the VMX/SVM reason code. */
export class FailEntryExit {
  readonly reason = 'fail_entry' as const;
  constructor(private readonly run: KvmRun) {}
  get hardwareEntryFailureReason(): bigint {
    return this.run.view.getBigUint64(RUN_UNION, true);
  }
  get cpu(): number {
    return this.run.view.getUint32(RUN_UNION + 8, true);
  }
}

/** KVM could not handle an exit itself (e.g. an instruction its emulator lacks). */
export class InternalErrorExit {
  readonly reason = 'internal_error' as const;
  constructor(private readonly run: KvmRun) {}
  get suberror(): number {
    return this.run.view.getUint32(RUN_UNION, true);
  }
  get suberrorName(): string {
    const entry = Object.entries(InternalErrorSuberror).find(([, v]) => v === this.suberror);
    return entry ? entry[0].toLowerCase() : `unknown(${this.suberror})`;
  }
  /** Number of valid u64 words in data. */
  get ndata(): number {
    return Math.min(this.run.view.getUint32(RUN_UNION + 4, true), 16);
  }
  /** kvm_run.internal.data[0..ndata). */
  get data(): bigint[] {
    const out: bigint[] = [];
    for (let i = 0; i < this.ndata; i++) out.push(this.run.view.getBigUint64(RUN_UNION + 8 + i * 8, true));
    return out;
  }
  /**
   * For emulation failures that carry them (flags bit 0): the bytes of the instruction KVM could not
   * emulate. Undefined otherwise; the VMM can then read them from guest memory at RIP.
   */
  get instructionBytes(): Uint8Array | undefined {
    if (this.suberror !== InternalErrorSuberror.EMULATION || this.ndata < 3) return undefined;
    const flags = this.run.view.getBigUint64(RUN_UNION + 8, true);
    if ((flags & 1n) === 0n) return undefined;
    const size = Math.min(this.run.bytes[RUN_UNION + 16], 15);
    return this.run.bytes.slice(RUN_UNION + 17, RUN_UNION + 17 + size);
  }
}

/** Guest-requested platform event (PSCI/ACPI-style shutdown, reset, crash). */
export class SystemEventExit {
  readonly reason = 'system_event' as const;
  constructor(private readonly run: KvmRun) {}
  get type(): number {
    return this.run.view.getUint32(RUN_UNION, true);
  }
  get typeName(): string {
    const entry = Object.entries(SystemEventType).find(([, v]) => v === this.type);
    return entry ? entry[0].toLowerCase() : `unknown(${this.type})`;
  }
}

/** A debug exit (single step, hardware breakpoint, int3 with KVM_GUESTDBG_USE_SW_BP). */
export class DebugExit {
  readonly reason = 'debug' as const;
  constructor(private readonly run: KvmRun) {}
  get exception(): number {
    return this.run.view.getUint32(RUN_UNION, true);
  }
  get pc(): bigint {
    return this.run.view.getBigUint64(RUN_UNION + 8, true);
  }
  get dr6(): bigint {
    return this.run.view.getBigUint64(RUN_UNION + 16, true);
  }
  get dr7(): bigint {
    return this.run.view.getBigUint64(RUN_UNION + 24, true);
  }
}

/** KVM_RUN returned early: a signal or immediate_exit. */
export class IntrExit {
  readonly reason = 'intr' as const;
}

/** Any other exit reason; `code` is kvm_run.exit_reason. */
export class OtherExit {
  readonly reason = 'other' as const;
  code = 0;
}

export type VcpuExit =
  | IoExit
  | MmioExit
  | HltExit
  | ShutdownExit
  | FailEntryExit
  | InternalErrorExit
  | SystemEventExit
  | DebugExit
  | IntrExit
  | OtherExit;

/** The per-vCPU set of exit objects, and the mapping from exit reason code to one of them. */
export class ExitDecoder {
  readonly io: IoExit;
  readonly mmio: MmioExit;
  readonly hlt = new HltExit();
  readonly shutdown = new ShutdownExit();
  readonly failEntry: FailEntryExit;
  readonly internalError: InternalErrorExit;
  readonly systemEvent: SystemEventExit;
  readonly debug: DebugExit;
  readonly intr = new IntrExit();
  readonly other = new OtherExit();

  constructor(readonly run: KvmRun) {
    this.io = new IoExit(run);
    this.mmio = new MmioExit(run);
    this.failEntry = new FailEntryExit(run);
    this.internalError = new InternalErrorExit(run);
    this.systemEvent = new SystemEventExit(run);
    this.debug = new DebugExit(run);
  }

  decode(code: number): VcpuExit {
    switch (code) {
      case ExitReason.IO:
        return this.io;
      case ExitReason.MMIO:
        return this.mmio;
      case ExitReason.HLT:
        return this.hlt;
      case ExitReason.SHUTDOWN:
        return this.shutdown;
      case ExitReason.FAIL_ENTRY:
        return this.failEntry;
      case ExitReason.INTERNAL_ERROR:
        return this.internalError;
      case ExitReason.SYSTEM_EVENT:
        return this.systemEvent;
      case ExitReason.DEBUG:
        return this.debug;
      case ExitReason.INTR:
        return this.intr;
      default:
        this.other.code = code;
        return this.other;
    }
  }
}
