/**
 * CPU mode builders, one per mode, each built on the one before (kvm-hello-world's ladder): real mode →
 * 32-bit protected mode → 64-bit long mode (optionally dropping to CPL3). Pure: they take the vCPU's current
 * special registers and return what to load and what to write into guest memory; the VMM applies it.
 */
import type { Regs, Sregs } from '../../kvm/structs.js';
import {
  SELECTOR_CODE,
  SELECTOR_DATA,
  SELECTOR_TSS,
  SELECTOR_USER_CODE64,
  SELECTOR_USER_DATA,
  TYPE_CODE,
  TYPE_DATA,
  GDT_ENTRIES,
  buildGdt,
  tssSegment,
  flatSegment,
  realModeSegment,
} from './gdt.js';
import { BOOT_GDT, BOOT_IDT, BOOT_STACK_TOP, BOOT_TSS, IDENTITY_MAP_SIZE, PML4_START } from './layout.js';
import { identityMapTables, type MemoryWrite } from './paging.js';

export const CR0_PE = 1n << 0n;
export const CR0_MP = 1n << 1n;
export const CR0_ET = 1n << 4n;
export const CR0_NE = 1n << 5n;
export const CR0_WP = 1n << 16n;
export const CR0_AM = 1n << 18n;
export const CR0_NW = 1n << 29n;
export const CR0_CD = 1n << 30n;
export const CR0_PG = 1n << 31n;
export const CR4_PAE = 1n << 5n;
export const CR4_OSFXSR = 1n << 9n;
export const CR4_OSXMMEXCPT = 1n << 10n;
export const EFER_SCE = 1n << 0n;
export const EFER_LME = 1n << 8n;
export const EFER_LMA = 1n << 10n;
/** RFLAGS bit 1 is reserved and always set. */
export const RFLAGS_RESERVED = 0x2n;
/** IOPL = 3: CPL3 code may use in/out directly. */
export const RFLAGS_IOPL3 = 0x3000n;

/** TSS proper (104 bytes), then one permission bit per port (8 KiB), then the 0xff terminator byte. */
const TSS_SIZE = 104;
const IO_BITMAP_SIZE = 0x1_0000 / 8;
const TSS_TOTAL = TSS_SIZE + IO_BITMAP_SIZE + 1;

export interface CpuSetup {
  sregs: Sregs;
  regs: Partial<Regs>;
  /** Bytes to copy into guest memory before running (GDT, TSS, page tables). */
  writes: MemoryWrite[];
}

export interface EntryOptions {
  /** Guest address of the first instruction. */
  entry: number;
  /** Initial stack pointer (defaults to BOOT_STACK_TOP). */
  stack?: number;
}

/** A copy deep enough that the builders never modify the caller's object (cheaper than structuredClone). */
function cloneSregs(s: Sregs): Sregs {
  return {
    ...s,
    cs: { ...s.cs },
    ds: { ...s.ds },
    es: { ...s.es },
    fs: { ...s.fs },
    gs: { ...s.gs },
    ss: { ...s.ss },
    tr: { ...s.tr },
    ldt: { ...s.ldt },
    gdt: { ...s.gdt },
    idt: { ...s.idt },
    interruptBitmap: [...s.interruptBitmap],
  };
}

/** Real mode with every segment at base 0: the payload runs from `entry` (below 64 KiB). */
export function setupRealMode(current: Sregs, o: EntryOptions): CpuSetup {
  if (!Number.isInteger(o.entry) || o.entry < 0 || o.entry > 0xffff) {
    throw new RangeError('real-mode entry must be within the first 64 KiB (CS = 0)');
  }
  const sregs = cloneSregs(current);
  sregs.cs = realModeSegment(0, TYPE_CODE);
  for (const name of ['ds', 'es', 'fs', 'gs', 'ss'] as const) sregs[name] = realModeSegment(0, TYPE_DATA);
  // Leave caching enabled: the reset value of CR0 has CD/NW set.
  sregs.cr0 &= ~(CR0_PE | CR0_PG | CR0_CD | CR0_NW);
  return {
    sregs,
    regs: { rip: BigInt(o.entry), rsp: BigInt(o.stack ?? BOOT_STACK_TOP), rflags: RFLAGS_RESERVED },
    writes: [],
  };
}

function gdtAndTss(long: boolean): MemoryWrite[] {
  const tss = new Uint8Array(TSS_TOTAL);
  const v = new DataView(tss.buffer);
  v.setBigUint64(4, BigInt(BOOT_STACK_TOP), true); // RSP0: stack for interrupts taken at CPL3
  v.setUint16(102, TSS_SIZE, true); // the I/O bitmap follows the TSS; all zero = every port allowed
  tss[TSS_TOTAL - 1] = 0xff;
  return [
    { gpa: BOOT_GDT, data: buildGdt(long, BOOT_TSS, TSS_TOTAL - 1) },
    { gpa: BOOT_TSS, data: tss },
  ];
}

/** 32-bit protected mode, flat 4 GiB segments (CS = 0x10, data = 0x18), paging off. */
export function setupProtectedMode(current: Sregs, o: EntryOptions): CpuSetup {
  const sregs = cloneSregs(current);
  sregs.gdt = { base: BigInt(BOOT_GDT), limit: GDT_ENTRIES * 8 - 1 };
  sregs.idt = { base: BigInt(BOOT_IDT), limit: 0 };
  sregs.cs = flatSegment(SELECTOR_CODE, TYPE_CODE);
  for (const name of ['ds', 'es', 'fs', 'gs', 'ss'] as const)
    sregs[name] = flatSegment(SELECTOR_DATA, TYPE_DATA);
  sregs.tr = tssSegment(BOOT_TSS, TSS_TOTAL - 1, SELECTOR_TSS);
  sregs.cr0 = (sregs.cr0 | CR0_PE | CR0_ET) & ~(CR0_PG | CR0_CD | CR0_NW);
  return {
    sregs,
    regs: { rip: BigInt(o.entry), rsp: BigInt(o.stack ?? BOOT_STACK_TOP), rflags: RFLAGS_RESERVED },
    writes: gdtAndTss(false),
  };
}

export interface LongModeOptions extends EntryOptions {
  /** Run the payload at CPL3 with IOPL 3: native speed on hosts that emulate kernel-mode guest code. */
  cpl3?: boolean;
  /** Bytes identity-mapped with 2 MiB pages (default IDENTITY_MAP_SIZE, 4 GiB). */
  identityMapSize?: number;
}

/** 64-bit long mode with an identity map; optionally at CPL3 (user segments, IOPL 3, user pages). */
export function setupLongMode(current: Sregs, o: LongModeOptions): CpuSetup {
  const base = setupProtectedMode(current, o);
  const sregs = base.sregs;
  const cpl3 = o.cpl3 ?? false;
  sregs.cr3 = BigInt(PML4_START);
  sregs.cr4 |= CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
  sregs.cr0 |= CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
  sregs.efer |= EFER_LME | EFER_LMA;
  if (cpl3) {
    sregs.cs = flatSegment(SELECTOR_USER_CODE64, TYPE_CODE, { dpl: 3, long: true });
    for (const name of ['ds', 'es', 'fs', 'gs', 'ss'] as const) {
      sregs[name] = flatSegment(SELECTOR_USER_DATA, TYPE_DATA, { dpl: 3 });
    }
  } else {
    sregs.cs = flatSegment(SELECTOR_CODE, TYPE_CODE, { long: true });
  }
  return {
    sregs,
    regs: {
      rip: BigInt(o.entry),
      rsp: BigInt(o.stack ?? BOOT_STACK_TOP),
      rflags: RFLAGS_RESERVED | (cpl3 ? RFLAGS_IOPL3 : 0n),
    },
    writes: [...gdtAndTss(true), ...identityMapTables(o.identityMapSize ?? IDENTITY_MAP_SIZE, cpl3)],
  };
}
