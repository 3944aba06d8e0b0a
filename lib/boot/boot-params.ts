/**
 * Linux `boot_params` (the "zero page", Documentation/arch/x86/zero-page.rst): the kernel's setup header
 * plus what the loader fills in — loader type, command line, initrd, ACPI RSDP address and the e820 map.
 */
import { BootError } from './errors.js';
import { view } from './bytes.js';
import { encodeE820, validateE820, E820_MAX_ENTRIES_ZEROPAGE, type E820Entry } from './e820.js';
import {
  BOOT_FLAG,
  HDR,
  HDR_MAGIC,
  LOADFLAG_CAN_USE_HEAP,
  LOADFLAG_KEEP_SEGMENTS,
  LOADFLAG_LOADED_HIGH,
  XLF_KERNEL_64,
} from './setup-header.js';

export const BOOT_PARAMS_SIZE = 4096;
/** boot_params field offsets outside the setup header. */
export const BP = {
  acpiRsdpAddr: 0x070,
  extRamdiskImage: 0x0c0,
  extRamdiskSize: 0x0c4,
  extCmdLinePtr: 0x0c8,
  e820Entries: 0x1e8,
  e820Table: 0x2d0,
} as const;
/** type_of_loader 0xff: "undefined" loader, the value for loaders without an assigned ID. */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** End of the setup heap relative to the real-mode code (only the 16-bit entry uses it). */
const HEAP_END_PTR = 0xfe00;

export interface BootParamsOptions {
  /**
   * The kernel's setup header bytes from 0x1f1 (SetupHeader.raw). Without it (an ELF vmlinux), a minimal
   * header is synthesized: boot flag, "HdrS", protocol 2.15, 64-bit kernel.
   */
  header?: Uint8Array;
  /** Guest address of the NUL-terminated command line. */
  cmdlineAddr: number;
  /** Guest address and size of the initrd, if any. */
  initrd?: { addr: number; size: number };
  e820: readonly E820Entry[];
  /** Guest address of the ACPI RSDP (boot protocol 2.14+ reads it from acpi_rsdp_addr). */
  rsdpAddr?: number;
}

function lo32(value: number): number {
  return value >>> 0;
}

function hi32(value: number): number {
  return Math.floor(value / 0x1_0000_0000) >>> 0;
}

/** Builds the 4 KiB boot_params page. */
export function buildBootParams(o: BootParamsOptions): Uint8Array {
  const bp = new Uint8Array(BOOT_PARAMS_SIZE);
  const v = view(bp);
  if (o.header) {
    if (o.header.length > 0x290 - HDR.setupSects) {
      throw new BootError('BAD_KERNEL', `setup header of ${o.header.length} bytes does not fit boot_params`);
    }
    bp.set(o.header, HDR.setupSects);
  } else {
    v.setUint16(HDR.bootFlag, BOOT_FLAG, true);
    v.setUint32(HDR.header, HDR_MAGIC, true);
    v.setUint16(HDR.version, 0x020f, true);
    v.setUint16(HDR.xloadflags, XLF_KERNEL_64, true);
    v.setUint32(HDR.kernelAlignment, 0x20_0000, true);
  }
  bp[HDR.typeOfLoader] = LOADER_TYPE_UNDEFINED;
  bp[HDR.loadflags] =
    (bp[HDR.loadflags] | LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP) & ~LOADFLAG_KEEP_SEGMENTS;
  v.setUint16(HDR.heapEndPtr, HEAP_END_PTR, true);
  v.setUint32(HDR.cmdLinePtr, lo32(o.cmdlineAddr), true);
  v.setUint32(BP.extCmdLinePtr, hi32(o.cmdlineAddr), true);
  if (o.initrd) {
    v.setUint32(HDR.ramdiskImage, lo32(o.initrd.addr), true);
    v.setUint32(HDR.ramdiskSize, lo32(o.initrd.size), true);
    v.setUint32(BP.extRamdiskImage, hi32(o.initrd.addr), true);
    v.setUint32(BP.extRamdiskSize, hi32(o.initrd.size), true);
  } else {
    v.setUint32(HDR.ramdiskImage, 0, true);
    v.setUint32(HDR.ramdiskSize, 0, true);
  }
  if (o.rsdpAddr !== undefined) v.setBigUint64(BP.acpiRsdpAddr, BigInt(o.rsdpAddr), true);
  validateE820(o.e820);
  if (o.e820.length > E820_MAX_ENTRIES_ZEROPAGE) throw new BootError('BAD_E820', 'too many e820 entries');
  bp[BP.e820Entries] = o.e820.length;
  bp.set(encodeE820(o.e820), BP.e820Table);
  return bp;
}
