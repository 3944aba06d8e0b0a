/**
 * ACPI tables in the two forms the VMM hands to guests: at fixed addresses from ACPI_START (RSDP first, where
 * Linux's scan of 0xE0000-0xFFFFF finds it) for direct kernel boot, and relocatable for fw_cfg's
 * table-loader, where firmware (SeaBIOS) chooses the addresses.
 */
import { ACPI_SIZE, ACPI_START } from '../../arch/x86_64/layout.js';
import type { MemoryWrite } from '../../arch/x86_64/paging.js';
import { BootError } from '../errors.js';
import { alignUp } from '../bytes.js';
import {
  FADT_DSDT_OFFSET,
  FADT_X_DSDT_OFFSET,
  RSDP_CHECKSUM_OFFSET,
  RSDP_EXT_CHECKSUM_OFFSET,
  RSDP_SIZE,
  RSDP_XSDT_OFFSET,
  SDT_CHECKSUM_OFFSET,
  SDT_HEADER_SIZE,
  buildDsdt,
  buildFadt,
  buildMadt,
  buildRsdp,
  buildXsdt,
  validateAcpiConfig,
  type AcpiConfig,
} from './tables.js';
import type { AcpiChecksum, AcpiPointer, RelocatableAcpi } from './types.js';

export type { AcpiConfig, VirtioMmioResource } from './tables.js';
export type { AcpiChecksum, AcpiPointer, RelocatableAcpi } from './types.js';

export const ACPI_RSDP_FILE = 'etc/acpi/rsdp';
export const ACPI_TABLES_FILE = 'etc/acpi/tables';
/** Tables are 8-byte aligned within the tables blob. */
const TABLE_ALIGN = 8;
/** The fixed-address tables start this far after the RSDP. */
const FIXED_TABLES_OFFSET = 0x40;

export interface PlacedTable {
  signature: string;
  /** Offset in the tables blob. */
  offset: number;
  length: number;
}

interface Assembled {
  rsdp: Uint8Array;
  tables: Uint8Array;
  placed: PlacedTable[];
  pointers: AcpiPointer[];
  checksums: AcpiChecksum[];
}

/**
 * Lays out DSDT, FADT, MADT, XSDT in one blob assumed to start at `tablesBase`; with base 0 every pointer
 * field holds a file offset, which is what the table-loader expects.
 */
function assemble(config: AcpiConfig, tablesBase: number): Assembled {
  validateAcpiConfig(config);
  const dsdt = buildDsdt(config);
  const madt = buildMadt(config.vcpus);
  const offDsdt = 0;
  const offFadt = alignUp(offDsdt + dsdt.length, TABLE_ALIGN);
  const fadt = buildFadt(tablesBase + offDsdt);
  const offMadt = alignUp(offFadt + fadt.length, TABLE_ALIGN);
  const offXsdt = alignUp(offMadt + madt.length, TABLE_ALIGN);
  const xsdt = buildXsdt([tablesBase + offFadt, tablesBase + offMadt]);
  const tables = new Uint8Array(offXsdt + xsdt.length);
  const placed: PlacedTable[] = [
    { signature: 'DSDT', offset: offDsdt, length: dsdt.length },
    { signature: 'FACP', offset: offFadt, length: fadt.length },
    { signature: 'APIC', offset: offMadt, length: madt.length },
    { signature: 'XSDT', offset: offXsdt, length: xsdt.length },
  ];
  tables.set(dsdt, offDsdt);
  tables.set(fadt, offFadt);
  tables.set(madt, offMadt);
  tables.set(xsdt, offXsdt);
  const rsdp = buildRsdp(tablesBase + offXsdt);
  const T = ACPI_TABLES_FILE;
  const pointers: AcpiPointer[] = [
    { file: ACPI_RSDP_FILE, offset: RSDP_XSDT_OFFSET, size: 8, targetFile: T },
    { file: T, offset: offXsdt + SDT_HEADER_SIZE, size: 8, targetFile: T },
    { file: T, offset: offXsdt + SDT_HEADER_SIZE + 8, size: 8, targetFile: T },
    { file: T, offset: offFadt + FADT_DSDT_OFFSET, size: 4, targetFile: T },
    { file: T, offset: offFadt + FADT_X_DSDT_OFFSET, size: 8, targetFile: T },
  ];
  const checksums: AcpiChecksum[] = [
    ...placed.map((p) => ({
      file: T,
      start: p.offset,
      length: p.length,
      offset: p.offset + SDT_CHECKSUM_OFFSET,
    })),
    { file: ACPI_RSDP_FILE, start: 0, length: 20, offset: RSDP_CHECKSUM_OFFSET },
    { file: ACPI_RSDP_FILE, start: 0, length: RSDP_SIZE, offset: RSDP_EXT_CHECKSUM_OFFSET },
  ];
  return { rsdp, tables, placed, pointers, checksums };
}

export interface FixedAcpi {
  /** RSDP then the tables, to copy into guest memory. */
  writes: MemoryWrite[];
  /** Guest address of the RSDP (boot_params.acpi_rsdp_addr, PVH rsdp_paddr). */
  rsdpAddr: number;
  /** Where each table went. */
  tables: { signature: string; addr: number; length: number }[];
}

/** The tables at fixed guest addresses: RSDP at `base` (default ACPI_START), the rest after it. */
export function buildAcpiTables(
  config: AcpiConfig,
  base: number = ACPI_START,
  limit: number = ACPI_SIZE,
): FixedAcpi {
  const tablesAddr = base + FIXED_TABLES_OFFSET;
  const a = assemble(config, tablesAddr);
  if (FIXED_TABLES_OFFSET + a.tables.length > limit) {
    throw new BootError(
      'BAD_ACPI',
      `ACPI tables need ${FIXED_TABLES_OFFSET + a.tables.length} bytes; ${limit} reserved`,
    );
  }
  return {
    writes: [
      { gpa: base, data: a.rsdp },
      { gpa: tablesAddr, data: a.tables },
    ],
    rsdpAddr: base,
    tables: a.placed.map((p) => ({ signature: p.signature, addr: tablesAddr + p.offset, length: p.length })),
  };
}

/** The tables as fw_cfg files plus the table-loader's pointer and checksum commands. */
export function buildRelocatableAcpi(config: AcpiConfig): RelocatableAcpi {
  const a = assemble(config, 0);
  return {
    files: [
      { name: ACPI_RSDP_FILE, data: a.rsdp, align: 16, zone: 'fseg' },
      { name: ACPI_TABLES_FILE, data: a.tables, align: 64, zone: 'high' },
    ],
    pointers: a.pointers,
    checksums: a.checksums,
  };
}

/**
 * Applies a RelocatableAcpi the way firmware does (pointers, then checksums) for given file addresses;
 * returns the patched copies. Used by tests, and handy to check a loader implementation against.
 */
export function relocateAcpi(r: RelocatableAcpi, addresses: Record<string, number>): Map<string, Uint8Array> {
  const files = new Map(r.files.map((f) => [f.name, f.data.slice()]));
  const get = (name: string): Uint8Array => {
    const f = files.get(name);
    if (!f) throw new BootError('BAD_ACPI', `table-loader names unknown file ${name}`);
    return f;
  };
  for (const p of r.pointers) {
    const data = get(p.file);
    const target = addresses[p.targetFile];
    if (target === undefined) throw new BootError('BAD_ACPI', `no address for ${p.targetFile}`);
    let value = 0n;
    for (let i = 0; i < p.size; i++) value |= BigInt(data[p.offset + i]) << BigInt(8 * i);
    value = (value + BigInt(target)) & ((1n << BigInt(8 * p.size)) - 1n);
    for (let i = 0; i < p.size; i++) data[p.offset + i] = Number((value >> BigInt(8 * i)) & 0xffn);
  }
  for (const c of r.checksums) {
    const data = get(c.file);
    let sum = 0;
    for (let i = c.start; i < c.start + c.length; i++) sum = (sum + data[i]) & 0xff;
    data[c.offset] = (data[c.offset] - sum) & 0xff;
  }
  return files;
}
