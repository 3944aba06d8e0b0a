/**
 * The e820 memory map handed to Linux (boot_params, or PVH's memmap): RAM below the EBDA, the EBDA/BIOS
 * area reserved, the ACPI tables' area, RAM from 1 MiB to the MMIO gap and beyond 4 GiB. The MMIO gap is
 * left as a hole (not RAM, not reserved) so Linux treats it as device space and drivers may claim windows
 * in it; only KVM's private identity-map/TSS pages inside it are reserved.
 */
import {
  ACPI_SIZE,
  ACPI_START,
  EBDA_START,
  HIMEM_START,
  KVM_IDENTITY_MAP_ADDR,
  KVM_TSS_ADDR,
  MMIO_GAP_END,
  MMIO_GAP_START,
  ramRegions,
} from '../arch/x86_64/layout.js';
import { BootError } from './errors.js';
import { hex } from './bytes.js';

export const E820_RAM = 1;
export const E820_RESERVED = 2;
export const E820_ACPI = 3;
export const E820_NVS = 4;
export const E820_UNUSABLE = 5;
/** boot_params has room for this many entries. */
export const E820_MAX_ENTRIES_ZEROPAGE = 128;
/** Size of one entry in boot_params: u64 addr, u64 size, u32 type. */
export const E820_ENTRY_SIZE = 20;
/** KVM_SET_TSS_ADDR takes three pages. */
const KVM_TSS_PAGES = 3;

export interface E820Entry {
  addr: number;
  size: number;
  type: number;
}

export interface E820Options {
  /** Mark the ACPI_START area as ACPI tables (type 3; default) rather than plain reserved. */
  acpiTables?: boolean;
}

/** The e820 map for `memSize` bytes of guest RAM laid out by ramRegions(). */
export function buildE820(memSize: number, options: E820Options = {}): E820Entry[] {
  const regions = ramRegions(memSize);
  const low = regions[0].size;
  if (low <= HIMEM_START) {
    throw new BootError('NO_ROOM', `${memSize} bytes of RAM is too little: Linux needs RAM above 1 MiB`);
  }
  const entries: E820Entry[] = [
    { addr: 0, size: EBDA_START, type: E820_RAM },
    { addr: EBDA_START, size: ACPI_START - EBDA_START, type: E820_RESERVED },
    { addr: ACPI_START, size: ACPI_SIZE, type: (options.acpiTables ?? true) ? E820_ACPI : E820_RESERVED },
    { addr: HIMEM_START, size: low - HIMEM_START, type: E820_RAM },
    {
      addr: KVM_IDENTITY_MAP_ADDR,
      size: KVM_TSS_ADDR + KVM_TSS_PAGES * 4096 - KVM_IDENTITY_MAP_ADDR,
      type: E820_RESERVED,
    },
  ];
  for (const r of regions.slice(1)) entries.push({ addr: r.gpa, size: r.size, type: E820_RAM });
  validateE820(entries, memSize);
  return entries;
}

/**
 * Checks that entries are sorted, non-empty and non-overlapping; with `memSize`, also that RAM entries match
 * the guest's RAM exactly (inside ramRegions, nothing in the MMIO gap).
 */
export function validateE820(entries: readonly E820Entry[], memSize?: number): void {
  const fail = (why: string): never => {
    throw new BootError('BAD_E820', `invalid e820 map: ${why}`);
  };
  if (entries.length === 0) fail('no entries');
  if (entries.length > E820_MAX_ENTRIES_ZEROPAGE) fail(`${entries.length} entries, boot_params holds 128`);
  entries.forEach((e, i) => {
    if (!Number.isSafeInteger(e.addr) || e.addr < 0) fail(`entry ${i} has a bad address ${e.addr}`);
    if (!Number.isSafeInteger(e.size) || e.size <= 0)
      fail(`entry ${i} at ${hex(e.addr)} has a bad size ${e.size}`);
    if (!Number.isInteger(e.type) || e.type < 1 || e.type > 0xffff_ffff)
      fail(`entry ${i} has type ${e.type}`);
    if (i > 0) {
      const p = entries[i - 1];
      if (e.addr < p.addr) fail(`entry ${i} at ${hex(e.addr)} is not sorted after ${hex(p.addr)}`);
      if (p.addr + p.size > e.addr) {
        fail(`[${hex(p.addr)}, ${hex(p.addr + p.size)}) overlaps [${hex(e.addr)}, ${hex(e.addr + e.size)})`);
      }
    }
    if (e.type === E820_RAM && e.addr < MMIO_GAP_END && e.addr + e.size > MMIO_GAP_START) {
      fail(`RAM entry [${hex(e.addr)}, ${hex(e.addr + e.size)}) reaches into the MMIO gap`);
    }
  });
  if (memSize !== undefined) {
    for (const e of entries) {
      if (e.type !== E820_RAM) continue;
      const inside = ramRegions(memSize).some((r) => e.addr >= r.gpa && e.addr + e.size <= r.gpa + r.size);
      if (!inside) fail(`RAM entry [${hex(e.addr)}, ${hex(e.addr + e.size)}) is not backed by guest RAM`);
    }
  }
}

/** Encodes entries as boot_params' e820_table (20 bytes each). */
export function encodeE820(entries: readonly E820Entry[]): Uint8Array {
  const out = new Uint8Array(entries.length * E820_ENTRY_SIZE);
  const v = new DataView(out.buffer);
  entries.forEach((e, i) => {
    v.setBigUint64(i * E820_ENTRY_SIZE, BigInt(e.addr), true);
    v.setBigUint64(i * E820_ENTRY_SIZE + 8, BigInt(e.size), true);
    v.setUint32(i * E820_ENTRY_SIZE + 16, e.type, true);
  });
  return out;
}

/** Total bytes of RAM the map describes. */
export function e820RamSize(entries: readonly E820Entry[]): number {
  return entries.filter((e) => e.type === E820_RAM).reduce((n, e) => n + e.size, 0);
}
