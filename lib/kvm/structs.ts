/**
 * Encoders/decoders for the x86-64 KVM structs passed to vCPU ioctls. The native layer moves raw bytes;
 * offsets here follow include/uapi/asm-x86/kvm.h. 64-bit fields are bigint.
 */

export const REGS_SIZE = 144;
export const SREGS_SIZE = 312;
export const FPU_SIZE = 416;
export const LAPIC_SIZE = 1024;
export const MP_STATE_SIZE = 4;
export const VCPU_EVENTS_SIZE = 64;
export const GUEST_DEBUG_SIZE = 72;
export const CLOCK_DATA_SIZE = 48;
export const MSR_ENTRY_SIZE = 16;
export const CPUID_ENTRY_SIZE = 40;

export const REG_NAMES = [
  'rax',
  'rbx',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'rsp',
  'rbp',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
  'rip',
  'rflags',
] as const;
export type RegName = (typeof REG_NAMES)[number];
export type Regs = Record<RegName, bigint>;

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function decodeRegs(bytes: Uint8Array): Regs {
  const v = view(bytes);
  const out = {} as Regs;
  REG_NAMES.forEach((name, i) => {
    out[name] = v.getBigUint64(i * 8, true);
  });
  return out;
}

export function encodeRegs(regs: Regs, bytes = new Uint8Array(REGS_SIZE)): Uint8Array {
  const v = view(bytes);
  REG_NAMES.forEach((name, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, regs[name]), true));
  return bytes;
}

/** A segment register as KVM sees it (hidden part included). */
export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  /** Descriptor type field (4 bits). */
  type: number;
  present: number;
  dpl: number;
  /** D/B: default operand size 32-bit. */
  db: number;
  /** S: code/data (1) vs system (0). */
  s: number;
  /** L: 64-bit code segment. */
  l: number;
  /** G: limit in 4 KiB units. */
  g: number;
  avl: number;
  unusable: number;
}

export interface DescriptorTable {
  base: bigint;
  limit: number;
}

export interface Sregs {
  cs: Segment;
  ds: Segment;
  es: Segment;
  fs: Segment;
  gs: Segment;
  ss: Segment;
  tr: Segment;
  ldt: Segment;
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
  apicBase: bigint;
  /** Pending external interrupt bitmap (256 bits). */
  interruptBitmap: [bigint, bigint, bigint, bigint];
}

const SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;

function decodeSegment(v: DataView, o: number): Segment {
  return {
    base: v.getBigUint64(o, true),
    limit: v.getUint32(o + 8, true),
    selector: v.getUint16(o + 12, true),
    type: v.getUint8(o + 14),
    present: v.getUint8(o + 15),
    dpl: v.getUint8(o + 16),
    db: v.getUint8(o + 17),
    s: v.getUint8(o + 18),
    l: v.getUint8(o + 19),
    g: v.getUint8(o + 20),
    avl: v.getUint8(o + 21),
    unusable: v.getUint8(o + 22),
  };
}

function encodeSegment(v: DataView, o: number, s: Segment): void {
  v.setBigUint64(o, BigInt.asUintN(64, s.base), true);
  v.setUint32(o + 8, s.limit >>> 0, true);
  v.setUint16(o + 12, s.selector, true);
  v.setUint8(o + 14, s.type);
  v.setUint8(o + 15, s.present);
  v.setUint8(o + 16, s.dpl);
  v.setUint8(o + 17, s.db);
  v.setUint8(o + 18, s.s);
  v.setUint8(o + 19, s.l);
  v.setUint8(o + 20, s.g);
  v.setUint8(o + 21, s.avl);
  v.setUint8(o + 22, s.unusable);
  v.setUint8(o + 23, 0);
}

export function decodeSregs(bytes: Uint8Array): Sregs {
  const v = view(bytes);
  const seg = (i: number) => decodeSegment(v, i * 24);
  const dt = (o: number): DescriptorTable => ({
    base: v.getBigUint64(o, true),
    limit: v.getUint16(o + 8, true),
  });
  return {
    cs: seg(0),
    ds: seg(1),
    es: seg(2),
    fs: seg(3),
    gs: seg(4),
    ss: seg(5),
    tr: seg(6),
    ldt: seg(7),
    gdt: dt(192),
    idt: dt(208),
    cr0: v.getBigUint64(224, true),
    cr2: v.getBigUint64(232, true),
    cr3: v.getBigUint64(240, true),
    cr4: v.getBigUint64(248, true),
    cr8: v.getBigUint64(256, true),
    efer: v.getBigUint64(264, true),
    apicBase: v.getBigUint64(272, true),
    interruptBitmap: [
      v.getBigUint64(280, true),
      v.getBigUint64(288, true),
      v.getBigUint64(296, true),
      v.getBigUint64(304, true),
    ],
  };
}

export function encodeSregs(s: Sregs, bytes = new Uint8Array(SREGS_SIZE)): Uint8Array {
  const v = view(bytes);
  SEGMENTS.forEach((name, i) => encodeSegment(v, i * 24, s[name]));
  const dt = (o: number, t: DescriptorTable) => {
    v.setBigUint64(o, BigInt.asUintN(64, t.base), true);
    v.setUint16(o + 8, t.limit, true);
    v.setUint16(o + 10, 0, true);
    v.setUint32(o + 12, 0, true);
  };
  dt(192, s.gdt);
  dt(208, s.idt);
  v.setBigUint64(224, s.cr0, true);
  v.setBigUint64(232, s.cr2, true);
  v.setBigUint64(240, s.cr3, true);
  v.setBigUint64(248, s.cr4, true);
  v.setBigUint64(256, s.cr8, true);
  v.setBigUint64(264, s.efer, true);
  v.setBigUint64(272, s.apicBase, true);
  s.interruptBitmap.forEach((w, i) => v.setBigUint64(280 + i * 8, w, true));
  return bytes;
}

export interface Fpu {
  /** 8 x87 registers, 16 bytes each. */
  fpr: Uint8Array;
  fcw: number;
  fsw: number;
  ftwx: number;
  lastOpcode: number;
  lastIp: bigint;
  lastDp: bigint;
  /** 16 XMM registers, 16 bytes each. */
  xmm: Uint8Array;
  mxcsr: number;
}

export function decodeFpu(bytes: Uint8Array): Fpu {
  const v = view(bytes);
  return {
    fpr: bytes.slice(0, 128),
    fcw: v.getUint16(128, true),
    fsw: v.getUint16(130, true),
    ftwx: v.getUint8(132),
    lastOpcode: v.getUint16(134, true),
    lastIp: v.getBigUint64(136, true),
    lastDp: v.getBigUint64(144, true),
    xmm: bytes.slice(152, 408),
    mxcsr: v.getUint32(408, true),
  };
}

export function encodeFpu(f: Fpu, bytes = new Uint8Array(FPU_SIZE)): Uint8Array {
  const v = view(bytes);
  if (f.fpr.length !== 128 || f.xmm.length !== 256) throw new RangeError('fpr must be 128 bytes and xmm 256');
  bytes.set(f.fpr, 0);
  v.setUint16(128, f.fcw, true);
  v.setUint16(130, f.fsw, true);
  v.setUint8(132, f.ftwx);
  v.setUint16(134, f.lastOpcode, true);
  v.setBigUint64(136, f.lastIp, true);
  v.setBigUint64(144, f.lastDp, true);
  bytes.set(f.xmm, 152);
  v.setUint32(408, f.mxcsr, true);
  return bytes;
}

export interface CpuidEntry {
  function: number;
  index: number;
  /** KVM_CPUID_FLAG_SIGNIFCANT_INDEX (1) etc. */
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** kvm_cpuid2 bytes (8-byte header + entries) → entries. */
export function decodeCpuid2(bytes: Uint8Array): CpuidEntry[] {
  const v = view(bytes);
  const n = v.getUint32(0, true);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + i * CPUID_ENTRY_SIZE;
    out.push({
      function: v.getUint32(o, true),
      index: v.getUint32(o + 4, true),
      flags: v.getUint32(o + 8, true),
      eax: v.getUint32(o + 12, true),
      ebx: v.getUint32(o + 16, true),
      ecx: v.getUint32(o + 20, true),
      edx: v.getUint32(o + 24, true),
    });
  }
  return out;
}

export function encodeCpuid2(entries: readonly CpuidEntry[]): Uint8Array {
  const bytes = new Uint8Array(8 + entries.length * CPUID_ENTRY_SIZE);
  const v = view(bytes);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const o = 8 + i * CPUID_ENTRY_SIZE;
    v.setUint32(o, e.function >>> 0, true);
    v.setUint32(o + 4, e.index >>> 0, true);
    v.setUint32(o + 8, e.flags >>> 0, true);
    v.setUint32(o + 12, e.eax >>> 0, true);
    v.setUint32(o + 16, e.ebx >>> 0, true);
    v.setUint32(o + 20, e.ecx >>> 0, true);
    v.setUint32(o + 24, e.edx >>> 0, true);
  });
  return bytes;
}

export interface MsrEntry {
  index: number;
  data: bigint;
}

export function encodeMsrs(entries: readonly MsrEntry[]): Uint8Array {
  const bytes = new Uint8Array(8 + entries.length * MSR_ENTRY_SIZE);
  const v = view(bytes);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    v.setUint32(8 + i * MSR_ENTRY_SIZE, e.index >>> 0, true);
    v.setBigUint64(8 + i * MSR_ENTRY_SIZE + 8, BigInt.asUintN(64, e.data), true);
  });
  return bytes;
}

export function decodeMsrs(bytes: Uint8Array, count: number): MsrEntry[] {
  const v = view(bytes);
  const out: MsrEntry[] = [];
  for (let i = 0; i < count; i++) {
    out.push({
      index: v.getUint32(8 + i * MSR_ENTRY_SIZE, true),
      data: v.getBigUint64(16 + i * MSR_ENTRY_SIZE, true),
    });
  }
  return out;
}

export interface VcpuEvents {
  exception: { injected: number; nr: number; hasErrorCode: number; pending: number; errorCode: number };
  interrupt: { injected: number; nr: number; soft: number; shadow: number };
  nmi: { injected: number; pending: number; masked: number };
  sipiVector: number;
  flags: number;
  smi: { smm: number; pending: number; smmInsideNmi: number; latchedInit: number };
  tripleFaultPending: number;
  exceptionHasPayload: number;
  exceptionPayload: bigint;
}

export function decodeVcpuEvents(bytes: Uint8Array): VcpuEvents {
  const v = view(bytes);
  return {
    exception: {
      injected: v.getUint8(0),
      nr: v.getUint8(1),
      hasErrorCode: v.getUint8(2),
      pending: v.getUint8(3),
      errorCode: v.getUint32(4, true),
    },
    interrupt: { injected: v.getUint8(8), nr: v.getUint8(9), soft: v.getUint8(10), shadow: v.getUint8(11) },
    nmi: { injected: v.getUint8(12), pending: v.getUint8(13), masked: v.getUint8(14) },
    sipiVector: v.getUint32(16, true),
    flags: v.getUint32(20, true),
    smi: {
      smm: v.getUint8(24),
      pending: v.getUint8(25),
      smmInsideNmi: v.getUint8(26),
      latchedInit: v.getUint8(27),
    },
    tripleFaultPending: v.getUint8(28),
    exceptionHasPayload: v.getUint8(55),
    exceptionPayload: v.getBigUint64(56, true),
  };
}

export function encodeVcpuEvents(e: VcpuEvents, bytes = new Uint8Array(VCPU_EVENTS_SIZE)): Uint8Array {
  const v = view(bytes);
  v.setUint8(0, e.exception.injected);
  v.setUint8(1, e.exception.nr);
  v.setUint8(2, e.exception.hasErrorCode);
  v.setUint8(3, e.exception.pending);
  v.setUint32(4, e.exception.errorCode, true);
  v.setUint8(8, e.interrupt.injected);
  v.setUint8(9, e.interrupt.nr);
  v.setUint8(10, e.interrupt.soft);
  v.setUint8(11, e.interrupt.shadow);
  v.setUint8(12, e.nmi.injected);
  v.setUint8(13, e.nmi.pending);
  v.setUint8(14, e.nmi.masked);
  v.setUint32(16, e.sipiVector, true);
  v.setUint32(20, e.flags, true);
  v.setUint8(24, e.smi.smm);
  v.setUint8(25, e.smi.pending);
  v.setUint8(26, e.smi.smmInsideNmi);
  v.setUint8(27, e.smi.latchedInit);
  v.setUint8(28, e.tripleFaultPending);
  v.setUint8(55, e.exceptionHasPayload);
  v.setBigUint64(56, e.exceptionPayload, true);
  return bytes;
}

export interface GuestDebug {
  /** GuestDebugFlag bits. */
  control: number;
  /** DR0-DR7 */
  debugreg: bigint[];
}

export function encodeGuestDebug(d: GuestDebug): Uint8Array {
  const bytes = new Uint8Array(GUEST_DEBUG_SIZE);
  const v = view(bytes);
  v.setUint32(0, d.control >>> 0, true);
  for (let i = 0; i < 8; i++) v.setBigUint64(8 + i * 8, d.debugreg[i] ?? 0n, true);
  return bytes;
}

export interface ClockData {
  /** kvmclock nanoseconds. */
  clock: bigint;
  flags: number;
  realtime: bigint;
  hostTsc: bigint;
}

export function decodeClockData(bytes: Uint8Array): ClockData {
  const v = view(bytes);
  return {
    clock: v.getBigUint64(0, true),
    flags: v.getUint32(8, true),
    realtime: v.getBigUint64(16, true),
    hostTsc: v.getBigUint64(24, true),
  };
}

export function encodeClockData(c: ClockData): Uint8Array {
  const bytes = new Uint8Array(CLOCK_DATA_SIZE);
  const v = view(bytes);
  v.setBigUint64(0, c.clock, true);
  v.setUint32(8, c.flags >>> 0, true);
  v.setBigUint64(16, c.realtime, true);
  v.setBigUint64(24, c.hostTsc, true);
  return bytes;
}

/** Sizes this module assumes; checked against the addon's sizeof() at load. */
export const STRUCT_SIZES: Readonly<Record<string, number>> = {
  kvm_regs: REGS_SIZE,
  kvm_sregs: SREGS_SIZE,
  kvm_fpu: FPU_SIZE,
  kvm_msr_entry: MSR_ENTRY_SIZE,
  kvm_cpuid_entry2: CPUID_ENTRY_SIZE,
  kvm_lapic_state: LAPIC_SIZE,
  kvm_mp_state: MP_STATE_SIZE,
  kvm_vcpu_events: VCPU_EVENTS_SIZE,
  kvm_guest_debug: GUEST_DEBUG_SIZE,
  kvm_clock_data: CLOCK_DATA_SIZE,
};
