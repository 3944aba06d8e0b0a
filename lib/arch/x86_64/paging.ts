/** Identity-mapping page tables for long mode, built as bytes at fixed guest-physical addresses. */
import { GiB, MMIO_GAP_START, PD_START, PDPT_START, PML4_START } from './layout.js';

export const PTE_PRESENT = 1n << 0n;
export const PTE_WRITABLE = 1n << 1n;
export const PTE_USER = 1n << 2n;
export const PTE_WRITE_THROUGH = 1n << 3n;
export const PTE_CACHE_DISABLE = 1n << 4n;
export const PTE_HUGE = 1n << 7n;

export interface MemoryWrite {
  gpa: number;
  data: Uint8Array;
}

const PAGE = 4096;
const HUGE = 2 * 1024 * 1024;

/**
 * PML4 → PDPT → one PD per GiB, 2 MiB pages, identity-mapping [0, size). `user` sets U/S at every level so
 * CPL3 code can touch everything (including MMIO). The MMIO gap is mapped uncached.
 */
export function identityMapTables(size: number, user: boolean): MemoryWrite[] {
  if (size <= 0 || size % GiB !== 0 || size > 512 * GiB) {
    throw new RangeError('identity map size must be a whole number of GiB, at most 512 GiB');
  }
  const gibs = size / GiB;
  const flags = PTE_PRESENT | PTE_WRITABLE | (user ? PTE_USER : 0n);
  const pml4 = new Uint8Array(PAGE);
  new DataView(pml4.buffer).setBigUint64(0, BigInt(PDPT_START) | flags, true);
  const pdpt = new Uint8Array(PAGE);
  const pds = new Uint8Array(PAGE * gibs);
  const pdptView = new DataView(pdpt.buffer);
  const pdView = new DataView(pds.buffer);
  for (let g = 0; g < gibs; g++) {
    pdptView.setBigUint64(g * 8, BigInt(PD_START + g * PAGE) | flags, true);
    for (let i = 0; i < 512; i++) {
      const addr = g * GiB + i * HUGE;
      const uncached = addr >= MMIO_GAP_START && addr < 4 * GiB ? PTE_CACHE_DISABLE | PTE_WRITE_THROUGH : 0n;
      pdView.setBigUint64((g * 512 + i) * 8, BigInt(addr) | flags | PTE_HUGE | uncached, true);
    }
  }
  return [
    { gpa: PML4_START, data: pml4 },
    { gpa: PDPT_START, data: pdpt },
    { gpa: PD_START, data: pds },
  ];
}
