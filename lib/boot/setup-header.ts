/**
 * The Linux x86 boot protocol's setup header (Documentation/arch/x86/boot.rst): parsed and validated from a
 * bzImage, so a bad image fails here with a reason instead of as a silent guest hang.
 */
import { BootError } from './errors.js';
import { hex, view } from './bytes.js';

/** Offsets into the bzImage file (and into boot_params, which embeds the header at the same offsets). */
export const HDR = {
  setupSects: 0x1f1,
  syssize: 0x1f4,
  bootFlag: 0x1fe,
  jump: 0x200,
  header: 0x202,
  version: 0x206,
  typeOfLoader: 0x210,
  loadflags: 0x211,
  code32Start: 0x214,
  ramdiskImage: 0x218,
  ramdiskSize: 0x21c,
  heapEndPtr: 0x224,
  cmdLinePtr: 0x228,
  initrdAddrMax: 0x22c,
  kernelAlignment: 0x230,
  relocatableKernel: 0x234,
  minAlignment: 0x235,
  xloadflags: 0x236,
  cmdlineSize: 0x238,
  payloadOffset: 0x248,
  payloadLength: 0x24c,
  setupData: 0x250,
  prefAddress: 0x258,
  initSize: 0x260,
  handoverOffset: 0x264,
  kernelInfoOffset: 0x268,
} as const;

export const BOOT_FLAG = 0xaa55;
/** "HdrS" little-endian. */
export const HDR_MAGIC = 0x5372_6448;
export const LOADFLAG_LOADED_HIGH = 0x01;
export const LOADFLAG_KEEP_SEGMENTS = 0x40;
export const LOADFLAG_CAN_USE_HEAP = 0x80;
export const XLF_KERNEL_64 = 0x1;
export const XLF_CAN_BE_LOADED_ABOVE_4G = 0x2;
/** Boot protocol 2.12 introduced xloadflags, which says whether the 64-bit entry exists. */
export const MIN_BOOT_PROTOCOL = 0x020c;
/** The 64-bit entry point is this far into the protected-mode kernel (startup_64). */
export const STARTUP_64_OFFSET = 0x200;
/** Where the header ends at the latest: boot_params has other fields from 0x290. */
const HEADER_LIMIT = 0x290;

export interface SetupHeader {
  /** Boot protocol version, e.g. 0x020f for 2.15. */
  version: number;
  /** Number of 512-byte setup sectors after the boot sector (0 in the image means 4). */
  setupSects: number;
  /** Bytes before the protected-mode kernel: (setupSects + 1) * 512. */
  setupSize: number;
  /** Protected-mode kernel size in bytes, from syssize (16-byte units). */
  sysSize: number;
  loadflags: number;
  xloadflags: number;
  code32Start: number;
  initrdAddrMax: number;
  kernelAlignment: number;
  relocatable: boolean;
  minAlignment: number;
  /** Longest command line the kernel accepts, without the NUL. */
  cmdlineSize: number;
  /** Compressed payload, relative to the start of the protected-mode kernel. */
  payloadOffset: number;
  payloadLength: number;
  prefAddress: number;
  /** Bytes the kernel needs from its load address before it has set up its own memory map. */
  initSize: number;
  handoverOffset: number;
  /** The kernel version string pointed to by the header, if present. */
  kernelVersion: string | undefined;
  /** The raw header bytes, [0x1f1, end of header), to copy into boot_params. */
  raw: Uint8Array;
}

function bad(reason: string): never {
  throw new BootError('BAD_KERNEL', `not a bootable bzImage: ${reason}`);
}

/** True if the bytes start like a bzImage (boot flag and "HdrS"); no further validation. */
export function looksLikeBzImage(image: Uint8Array): boolean {
  if (image.length < HDR.header + 4) return false;
  const v = view(image);
  return v.getUint16(HDR.bootFlag, true) === BOOT_FLAG && v.getUint32(HDR.header, true) === HDR_MAGIC;
}

/** Parses and validates the setup header of a bzImage that has a 64-bit entry point. */
export function parseSetupHeader(image: Uint8Array): SetupHeader {
  if (image.length < HEADER_LIMIT) bad(`only ${image.length} bytes, shorter than a setup header`);
  const v = view(image);
  const bootFlag = v.getUint16(HDR.bootFlag, true);
  if (bootFlag !== BOOT_FLAG) bad(`boot_flag at 0x1fe is ${hex(bootFlag)}, expected 0xaa55`);
  if (v.getUint32(HDR.header, true) !== HDR_MAGIC) bad('no "HdrS" signature at 0x202 (boot protocol < 2.00)');
  const version = v.getUint16(HDR.version, true);
  const versionText = `${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}`;
  if (version < MIN_BOOT_PROTOCOL) {
    bad(`boot protocol ${versionText} is older than 2.12, which is needed to know about the 64-bit entry`);
  }
  const xloadflags = v.getUint16(HDR.xloadflags, true);
  if (!(xloadflags & XLF_KERNEL_64))
    bad('xloadflags lacks XLF_KERNEL_64: the kernel has no 64-bit entry point');
  const loadflags = image[HDR.loadflags];
  if (!(loadflags & LOADFLAG_LOADED_HIGH)) bad('loadflags lacks LOADED_HIGH: a zImage, not a bzImage');
  const setupSects = image[HDR.setupSects] === 0 ? 4 : image[HDR.setupSects];
  const setupSize = (setupSects + 1) * 512;
  if (setupSize >= image.length)
    bad(`setup (${setupSize} bytes) is not shorter than the file (${image.length})`);
  const sysSize = v.getUint32(HDR.syssize, true) * 16;
  const pmLength = image.length - setupSize;
  if (sysSize === 0) bad('syssize is 0');
  if (sysSize > pmLength) {
    bad(`truncated: syssize says ${sysSize} bytes of kernel, the file has ${pmLength} after the setup`);
  }
  const payloadOffset = v.getUint32(HDR.payloadOffset, true);
  const payloadLength = v.getUint32(HDR.payloadLength, true);
  if (payloadLength === 0 || payloadOffset + payloadLength > sysSize) {
    bad(`payload [${hex(payloadOffset)}, +${hex(payloadLength)}) lies outside the ${sysSize}-byte kernel`);
  }
  const kernelAlignment = v.getUint32(HDR.kernelAlignment, true);
  if (kernelAlignment === 0 || (kernelAlignment & (kernelAlignment - 1)) !== 0) {
    bad(`kernel_alignment ${hex(kernelAlignment)} is not a power of two`);
  }
  const initSize = v.getUint32(HDR.initSize, true);
  if (initSize < sysSize)
    bad(`init_size ${hex(initSize)} is smaller than the kernel itself (${hex(sysSize)})`);
  const cmdlineSize = v.getUint32(HDR.cmdlineSize, true);
  if (cmdlineSize === 0) bad('cmdline_size is 0');
  const prefAddress = Number(v.getBigUint64(HDR.prefAddress, true));
  if (!Number.isSafeInteger(prefAddress)) bad(`pref_address ${hex(prefAddress)} is out of range`);
  const headerEnd = Math.min(HDR.header + image[HDR.jump + 1], HEADER_LIMIT);
  const versionPtr = v.getUint16(0x20e, true);
  return {
    version,
    setupSects,
    setupSize,
    sysSize,
    loadflags,
    xloadflags,
    code32Start: v.getUint32(HDR.code32Start, true),
    initrdAddrMax: v.getUint32(HDR.initrdAddrMax, true),
    kernelAlignment,
    relocatable: image[HDR.relocatableKernel] !== 0,
    minAlignment: image[HDR.minAlignment],
    cmdlineSize,
    payloadOffset,
    payloadLength,
    prefAddress,
    initSize,
    handoverOffset: v.getUint32(HDR.handoverOffset, true),
    kernelVersion: versionPtr ? readCString(image, versionPtr + 0x200, 256) : undefined,
    raw: image.slice(HDR.setupSects, headerEnd),
  };
}

function readCString(image: Uint8Array, at: number, max: number): string | undefined {
  if (at >= image.length) return undefined;
  let end = at;
  while (end < image.length && end - at < max && image[end] !== 0) end++;
  const text = String.fromCharCode(...image.subarray(at, end));
  return /^[\x20-\x7e]+$/.test(text) ? text : undefined;
}

/** The protected-mode kernel: everything after the setup sectors, syssize bytes long. */
export function protectedModeKernel(image: Uint8Array, header: SetupHeader): Uint8Array {
  return image.subarray(header.setupSize, header.setupSize + header.sysSize);
}

/** The compressed kernel payload inside the protected-mode kernel (its last 4 bytes are the output size). */
export function compressedPayload(image: Uint8Array, header: SetupHeader): Uint8Array {
  const start = header.setupSize + header.payloadOffset;
  return image.subarray(start, start + header.payloadLength);
}
