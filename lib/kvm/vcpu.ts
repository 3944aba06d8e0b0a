import type { NativeVcpuFd } from '../native/binding.js';
import { ExitDecoder, KvmRun, type VcpuExit } from './exits.js';
import {
  FPU_SIZE,
  LAPIC_SIZE,
  MP_STATE_SIZE,
  REGS_SIZE,
  SREGS_SIZE,
  VCPU_EVENTS_SIZE,
  decodeFpu,
  decodeMsrs,
  decodeRegs,
  decodeSregs,
  decodeVcpuEvents,
  encodeCpuid2,
  encodeFpu,
  encodeGuestDebug,
  encodeMsrs,
  encodeRegs,
  encodeSregs,
  encodeVcpuEvents,
  type CpuidEntry,
  type Fpu,
  type GuestDebug,
  type MsrEntry,
  type Regs,
  type Sregs,
  type VcpuEvents,
} from './structs.js';

/** One virtual CPU: a thin wrapper over its fd, one method per ioctl. */
export class Vcpu {
  /** The mmapped kvm_run page. */
  readonly kvmRun: KvmRun;
  private readonly decoder: ExitDecoder;
  private readonly regsBuf = new Uint8Array(REGS_SIZE);
  private readonly sregsBuf = new Uint8Array(SREGS_SIZE);

  constructor(private readonly fd: NativeVcpuFd) {
    this.kvmRun = new KvmRun(fd.runBuffer);
    this.decoder = new ExitDecoder(this.kvmRun);
  }

  get id(): number {
    return this.fd.id;
  }

  get closed(): boolean {
    return this.fd.closed;
  }

  /** The native handle, for the VMM's vCPU thread. */
  get nativeHandle(): NativeVcpuFd {
    return this.fd;
  }

  /** KVM_RUN; returns the raw exit reason (ExitReason.*). The fastest path: no decoding at all. */
  runRaw(): number {
    return this.fd.run();
  }

  /**
   * KVM_RUN; returns the decoded exit. The returned object is reused for every exit of its kind and reads the
   * kvm_run page lazily: use it before the next run().
   */
  run(): VcpuExit {
    return this.decoder.decode(this.fd.run());
  }

  /** Decodes an exit reason obtained elsewhere (e.g. from a vCPU thread) against this vCPU's kvm_run page. */
  decodeExit(code: number): VcpuExit {
    return this.decoder.decode(code);
  }

  /** Makes a KVM_RUN in progress return an 'intr' exit (immediate_exit + signal). */
  kick(): void {
    this.fd.kick();
  }

  /** KVM_GET_REGS */
  getRegs(): Regs {
    this.fd.getRegs(this.regsBuf);
    return decodeRegs(this.regsBuf);
  }

  /** KVM_SET_REGS with every register given (no KVM_GET_REGS first). */
  setAllRegs(regs: Regs): void {
    this.fd.setRegs(encodeRegs(regs, this.regsBuf));
  }

  /** KVM_SET_REGS; fields left out keep their current values (read with KVM_GET_REGS first). */
  setRegs(regs: Partial<Record<keyof Regs, bigint | number>>): void {
    const full = this.getRegs();
    for (const [k, v] of Object.entries(regs)) {
      if (v !== undefined) full[k as keyof Regs] = BigInt(v);
    }
    this.fd.setRegs(encodeRegs(full, this.regsBuf));
  }

  /** KVM_GET_SREGS */
  getSregs(): Sregs {
    this.fd.getSregs(this.sregsBuf);
    return decodeSregs(this.sregsBuf);
  }

  /** KVM_SET_SREGS */
  setSregs(sregs: Sregs): void {
    this.fd.setSregs(encodeSregs(sregs, this.sregsBuf));
  }

  /** KVM_GET_FPU */
  getFpu(): Fpu {
    const buf = new Uint8Array(FPU_SIZE);
    this.fd.getFpu(buf);
    return decodeFpu(buf);
  }

  /** KVM_SET_FPU */
  setFpu(fpu: Fpu): void {
    this.fd.setFpu(encodeFpu(fpu));
  }

  /** KVM_GET_MSRS for the given indices. Throws if KVM could not read all of them. */
  getMsrs(indices: readonly number[]): MsrEntry[] {
    const buf = encodeMsrs(indices.map((index) => ({ index, data: 0n })));
    const n = this.fd.getMsrs(buf);
    if (n !== indices.length) {
      throw new RangeError(
        `KVM_GET_MSRS read ${n} of ${indices.length} MSRs; MSR 0x${indices[n].toString(16)} failed`,
      );
    }
    return decodeMsrs(buf, n);
  }

  /** KVM_SET_MSRS. Throws if KVM rejected any of them, naming the first one. */
  setMsrs(entries: readonly MsrEntry[]): void {
    const n = this.fd.setMsrs(encodeMsrs(entries));
    if (n !== entries.length) {
      throw new RangeError(
        `KVM_SET_MSRS wrote ${n} of ${entries.length} MSRs; MSR 0x${entries[n].index.toString(16)} was rejected`,
      );
    }
  }

  /** KVM_SET_CPUID2 */
  setCpuid2(entries: readonly CpuidEntry[]): void {
    this.fd.setCpuid2(encodeCpuid2(entries));
  }

  /** KVM_GET_LAPIC: the 1 KiB local APIC register page. */
  getLapic(): Uint8Array {
    const buf = new Uint8Array(LAPIC_SIZE);
    this.fd.getLapic(buf);
    return buf;
  }

  /** KVM_SET_LAPIC */
  setLapic(page: Uint8Array): void {
    if (page.length !== LAPIC_SIZE) throw new RangeError(`LAPIC state must be ${LAPIC_SIZE} bytes`);
    this.fd.setLapic(page);
  }

  /** KVM_GET_MP_STATE (MpState.*) */
  getMpState(): number {
    const buf = new Uint8Array(MP_STATE_SIZE);
    this.fd.getMpState(buf);
    return new DataView(buf.buffer).getUint32(0, true);
  }

  /** KVM_SET_MP_STATE */
  setMpState(state: number): void {
    const buf = new Uint8Array(MP_STATE_SIZE);
    new DataView(buf.buffer).setUint32(0, state, true);
    this.fd.setMpState(buf);
  }

  /** KVM_GET_VCPU_EVENTS */
  getVcpuEvents(): VcpuEvents {
    const buf = new Uint8Array(VCPU_EVENTS_SIZE);
    this.fd.getVcpuEvents(buf);
    return decodeVcpuEvents(buf);
  }

  /** KVM_SET_VCPU_EVENTS */
  setVcpuEvents(events: VcpuEvents): void {
    this.fd.setVcpuEvents(encodeVcpuEvents(events));
  }

  /** KVM_SET_GUEST_DEBUG */
  setGuestDebug(debug: GuestDebug): void {
    this.fd.setGuestDebug(encodeGuestDebug(debug));
  }

  close(): void {
    this.fd.close();
  }
}
