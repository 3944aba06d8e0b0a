/**
 * Xen PVH direct boot (xen/include/public/arch-x86/hvm/start_info.h, docs/misc/pvh.pandoc): the kernel is
 * entered in 32-bit protected mode with paging off at the address in its XEN_ELFNOTE_PHYS32_ENTRY note, with
 * EBX pointing to an `hvm_start_info` that gives the command line, RSDP, initrd (as module 0) and memory map.
 */
import type { Sregs } from '../kvm/structs.js';
import { PVH_START_INFO } from '../arch/x86_64/layout.js';
import { CR0_ET, CR0_PE, setupProtectedMode, type CpuSetup } from '../arch/x86_64/modes.js';
import type { MemoryWrite } from '../arch/x86_64/paging.js';
import { BootError } from './errors.js';
import { view } from './bytes.js';
import { validateE820, type E820Entry } from './e820.js';

export const HVM_START_MAGIC = 0x336ec578;
/** Version 1 added the memory map. */
export const HVM_START_VERSION = 1;
export const HVM_START_INFO_SIZE = 56;
export const HVM_MODLIST_ENTRY_SIZE = 32;
export const HVM_MEMMAP_ENTRY_SIZE = 24;
/** Inside the start-info page: module list, then memory map. */
const MODLIST_OFFSET = 0x40;
const MAX_MODULES = 2;
const MEMMAP_OFFSET = MODLIST_OFFSET + MAX_MODULES * HVM_MODLIST_ENTRY_SIZE;
const PAGE = 4096;

export interface PvhModule {
  addr: number;
  size: number;
  /** Guest address of a NUL-terminated string for this module (0 = none). */
  cmdlineAddr?: number;
}

export interface PvhStartInfoOptions {
  cmdlineAddr: number;
  rsdpAddr?: number;
  memmap: readonly E820Entry[];
  /** Linux takes module 0 as its initrd. */
  modules?: readonly PvhModule[];
  /** Where the page goes (default PVH_START_INFO). */
  at?: number;
}

/** Builds the one-page hvm_start_info + module list + memory map, for the guest address `at`. */
export function buildPvhStartInfo(o: PvhStartInfoOptions): MemoryWrite {
  const at = o.at ?? PVH_START_INFO;
  const modules = o.modules ?? [];
  if (modules.length > MAX_MODULES) throw new BootError('BAD_INITRD', `at most ${MAX_MODULES} PVH modules`);
  validateE820(o.memmap);
  const maxEntries = Math.floor((PAGE - MEMMAP_OFFSET) / HVM_MEMMAP_ENTRY_SIZE);
  if (o.memmap.length > maxEntries)
    throw new BootError('BAD_E820', `PVH memmap holds at most ${maxEntries} entries`);
  const page = new Uint8Array(PAGE);
  const v = view(page);
  v.setUint32(0, HVM_START_MAGIC, true);
  v.setUint32(4, HVM_START_VERSION, true);
  v.setUint32(8, 0, true); // flags
  v.setUint32(12, modules.length, true);
  v.setBigUint64(16, modules.length ? BigInt(at + MODLIST_OFFSET) : 0n, true);
  v.setBigUint64(24, BigInt(o.cmdlineAddr), true);
  v.setBigUint64(32, BigInt(o.rsdpAddr ?? 0), true);
  v.setBigUint64(40, BigInt(at + MEMMAP_OFFSET), true);
  v.setUint32(48, o.memmap.length, true);
  modules.forEach((m, i) => {
    const off = MODLIST_OFFSET + i * HVM_MODLIST_ENTRY_SIZE;
    v.setBigUint64(off, BigInt(m.addr), true);
    v.setBigUint64(off + 8, BigInt(m.size), true);
    v.setBigUint64(off + 16, BigInt(m.cmdlineAddr ?? 0), true);
  });
  o.memmap.forEach((e, i) => {
    const off = MEMMAP_OFFSET + i * HVM_MEMMAP_ENTRY_SIZE;
    v.setBigUint64(off, BigInt(e.addr), true);
    v.setBigUint64(off + 8, BigInt(e.size), true);
    v.setUint32(off + 16, e.type, true); // XEN_HVM_MEMMAP_TYPE_* use the e820 numbering
  });
  return { gpa: at, data: page };
}

/**
 * CPU state for the PVH entry: 32-bit protected mode with flat segments, paging off, CR4 clear,
 * EBX = start_info address.
 */
export function setupPvhEntry(current: Sregs, entry: number, startInfo: number = PVH_START_INFO): CpuSetup {
  if (!Number.isInteger(entry) || entry <= 0 || entry >= 0x1_0000_0000) {
    throw new BootError('BAD_KERNEL', `PVH entry ${entry} is not a 32-bit address`);
  }
  const cpu = setupProtectedMode(current, { entry });
  cpu.sregs.cr0 = CR0_PE | CR0_ET;
  cpu.sregs.cr4 = 0n;
  cpu.sregs.efer = 0n;
  cpu.regs.rbx = BigInt(startInfo);
  return cpu;
}
