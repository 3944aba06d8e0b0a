/**
 * Boot GDT layout and descriptors. Selectors follow the Linux boot protocol (__BOOT_CS 0x10, __BOOT_DS 0x18) so
 * the same table serves payloads and kernels; CPL3 payloads use the user selectors.
 */
import type { Segment } from '../../kvm/structs.js';

export const SELECTOR_CODE32 = 0x08;
export const SELECTOR_CODE = 0x10;
export const SELECTOR_DATA = 0x18;
export const SELECTOR_TSS = 0x20;
export const SELECTOR_USER_DATA = 0x30 | 3;
export const SELECTOR_USER_CODE64 = 0x38 | 3;
export const GDT_ENTRIES = 8;

/** Code segment type: execute/read, accessed. */
export const TYPE_CODE = 0xb;
/** Data segment type: read/write, accessed. */
export const TYPE_DATA = 0x3;
/** System segment type: 64-bit (or 32-bit) busy TSS. */
export const TYPE_TSS_BUSY = 0xb;

/** Flat segment, as KVM's hidden segment state. */
export function flatSegment(
  selector: number,
  type: number,
  options: { dpl?: number; long?: boolean; big?: boolean } = {},
): Segment {
  const long = options.long ?? false;
  return {
    base: 0n,
    limit: 0xffff_ffff,
    selector,
    type,
    present: 1,
    dpl: options.dpl ?? 0,
    db: long ? 0 : (options.big ?? true) ? 1 : 0,
    s: 1,
    l: long ? 1 : 0,
    g: 1,
    avl: 0,
    unusable: 0,
  };
}

/** 16-bit real-mode segment with base = selector * 16. */
export function realModeSegment(selector: number, type: number): Segment {
  return {
    base: BigInt(selector * 16),
    limit: 0xffff,
    selector,
    type,
    present: 1,
    dpl: 0,
    db: 0,
    s: 1,
    l: 0,
    g: 0,
    avl: 0,
    unusable: 0,
  };
}

/** The 8-byte GDT encoding of a code/data segment (the inverse of what the CPU caches in Segment). */
export function encodeDescriptor(s: Segment): bigint {
  const base = Number(s.base & 0xffff_ffffn);
  const limit = s.g ? s.limit >>> 12 : s.limit;
  const access = (s.present << 7) | (s.dpl << 5) | (s.s << 4) | s.type;
  const flags = (s.g << 3) | (s.db << 2) | (s.l << 1) | s.avl;
  return (
    BigInt(limit & 0xffff) |
    (BigInt(base & 0xff_ffff) << 16n) |
    (BigInt(access) << 40n) |
    (BigInt((limit >>> 16) & 0xf) << 48n) |
    (BigInt(flags) << 52n) |
    (BigInt((base >>> 24) & 0xff) << 56n)
  );
}

/** A busy 64-bit TSS at base, as KVM's hidden TR state. */
export function tssSegment(base: number, limit: number, selector = 0): Segment {
  return {
    base: BigInt(base),
    limit,
    selector,
    type: TYPE_TSS_BUSY,
    present: 1,
    dpl: 0,
    db: 0,
    s: 0,
    l: 0,
    g: 0,
    avl: 0,
    unusable: 0,
  };
}

/** The 16-byte GDT encoding of a 64-bit TSS descriptor. */
export function encodeTssDescriptor(base: number, limit: number): [bigint, bigint] {
  return [encodeDescriptor(tssSegment(base, limit)), BigInt(Math.floor(base / 0x1_0000_0000))];
}

/** Builds the boot GDT bytes. `long` selects a 64-bit (L=1) kernel code segment at SELECTOR_CODE. */
export function buildGdt(long: boolean, tssBase: number, tssLimit: number): Uint8Array {
  const entries: bigint[] = new Array<bigint>(GDT_ENTRIES).fill(0n);
  entries[SELECTOR_CODE32 >> 3] = encodeDescriptor(flatSegment(SELECTOR_CODE32, TYPE_CODE));
  entries[SELECTOR_CODE >> 3] = encodeDescriptor(flatSegment(SELECTOR_CODE, TYPE_CODE, { long }));
  entries[SELECTOR_DATA >> 3] = encodeDescriptor(flatSegment(SELECTOR_DATA, TYPE_DATA));
  [entries[SELECTOR_TSS >> 3], entries[(SELECTOR_TSS >> 3) + 1]] = encodeTssDescriptor(tssBase, tssLimit);
  entries[SELECTOR_USER_DATA >> 3] = encodeDescriptor(flatSegment(SELECTOR_USER_DATA, TYPE_DATA, { dpl: 3 }));
  entries[SELECTOR_USER_CODE64 >> 3] = encodeDescriptor(
    flatSegment(SELECTOR_USER_CODE64, TYPE_CODE, { dpl: 3, long: true }),
  );
  const bytes = new Uint8Array(GDT_ENTRIES * 8);
  const v = new DataView(bytes.buffer);
  entries.forEach((e, i) => v.setBigUint64(i * 8, e, true));
  return bytes;
}
