/**
 * A small AML encoder (ACPI 6.x §20, "ACPI Machine Language Specification") for the objects our DSDT needs:
 * names, integers, strings, buffers, packages, scopes, devices, methods and resource templates (§6.4).
 * Every function returns the encoded bytes of one term.
 */
import { BootError } from '../errors.js';
import { concat } from '../bytes.js';

export type AmlBytes = Uint8Array;

const ZERO_OP = 0x00;
const ONE_OP = 0x01;
const NAME_OP = 0x08;
const BYTE_PREFIX = 0x0a;
const WORD_PREFIX = 0x0b;
const DWORD_PREFIX = 0x0c;
const STRING_PREFIX = 0x0d;
const QWORD_PREFIX = 0x0e;
const SCOPE_OP = 0x10;
const BUFFER_OP = 0x11;
const PACKAGE_OP = 0x12;
const METHOD_OP = 0x14;
const RETURN_OP = 0xa4;
const EXT_OP_PREFIX = 0x5b;
const DEVICE_OP = 0x82;
const DUAL_NAME_PREFIX = 0x2e;
const MULTI_NAME_PREFIX = 0x2f;
const ROOT_CHAR = 0x5c;
const PARENT_PREFIX = 0x5e;

function fail(why: string): never {
  throw new BootError('BAD_ACPI', why);
}

/** One 4-character name segment: a leading A-Z or '_', then A-Z, 0-9 or '_', padded with '_'. */
export function nameSeg(seg: string): number[] {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg)) fail(`invalid AML name segment ${JSON.stringify(seg)}`);
  return Array.from(seg.padEnd(4, '_'), (c) => c.charCodeAt(0));
}

/** A NameString: optional '\' or '^' prefixes, then segments joined by '.', e.g. "\_SB.COM1". */
export function nameString(path: string): AmlBytes {
  const out: number[] = [];
  let rest = path;
  if (rest.startsWith('\\')) {
    out.push(ROOT_CHAR);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith('^')) {
      out.push(PARENT_PREFIX);
      rest = rest.slice(1);
    }
  }
  const segs = rest === '' ? [] : rest.split('.');
  if (segs.length === 0)
    out.push(0x00); // NullName
  else if (segs.length === 2) out.push(DUAL_NAME_PREFIX);
  else if (segs.length > 2) {
    if (segs.length > 255) fail('AML name has too many segments');
    out.push(MULTI_NAME_PREFIX, segs.length);
  }
  for (const s of segs) out.push(...nameSeg(s));
  return Uint8Array.from(out);
}

/**
 * PkgLength for `contentLength` bytes that follow it; the encoded length counts the PkgLength bytes
 * themselves. 1 byte up to 63, else a lead byte (count in bits 7-6, low nibble) plus 1-3 bytes.
 */
export function pkgLength(contentLength: number): AmlBytes {
  if (!Number.isInteger(contentLength) || contentLength < 0) fail(`bad package length ${contentLength}`);
  if (contentLength + 1 < 0x40) return Uint8Array.of(contentLength + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = contentLength + 1 + extra;
    if (total < 1 << (4 + 8 * extra)) {
      const out = [(extra << 6) | (total & 0x0f)];
      for (let i = 0; i < extra; i++) out.push((total >>> (4 + 8 * i)) & 0xff);
      return Uint8Array.from(out);
    }
  }
  return fail(`package of ${contentLength} bytes is too large for AML`);
}

/** An integer with the shortest encoding: Zero, One, or Byte/Word/DWord/QWord constants. */
export function integer(value: number | bigint): AmlBytes {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) fail(`AML integer ${value} is out of range`);
  if (v === 0n) return Uint8Array.of(ZERO_OP);
  if (v === 1n) return Uint8Array.of(ONE_OP);
  const le = (bytes: number) => Array.from({ length: bytes }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
  if (v <= 0xffn) return Uint8Array.of(BYTE_PREFIX, ...le(1));
  if (v <= 0xffffn) return Uint8Array.of(WORD_PREFIX, ...le(2));
  if (v <= 0xffff_ffffn) return Uint8Array.of(DWORD_PREFIX, ...le(4));
  return Uint8Array.of(QWORD_PREFIX, ...le(8));
}

/** A String constant (ASCII, no NUL). */
export function string(text: string): AmlBytes {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0 || c > 0x7f) fail(`AML string ${JSON.stringify(text)} must be ASCII without NUL`);
  }
  return Uint8Array.from([STRING_PREFIX, ...Array.from(text, (c) => c.charCodeAt(0)), 0]);
}

/** The 32-bit compressed EISA ID of e.g. "PNP0501", as an integer term (what ASL's EisaId() produces). */
export function eisaId(id: string): AmlBytes {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) fail(`invalid EISA ID ${JSON.stringify(id)}`);
  const c = (i: number) => id.charCodeAt(i) - 0x40;
  const vendor = (c(0) << 10) | (c(1) << 5) | c(2);
  const product = parseInt(id.slice(3), 16);
  const bytes = [vendor >> 8, vendor & 0xff, product >> 8, product & 0xff];
  return integer((bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (bytes[3] << 24)) >>> 0);
}

/** Buffer(n) { bytes }. */
export function buffer(bytes: Uint8Array): AmlBytes {
  const body = concat([integer(bytes.length), bytes]);
  return concat([Uint8Array.of(BUFFER_OP), pkgLength(body.length), body]);
}

/** Package() { elements } (at most 255 elements). */
export function pkg(elements: readonly AmlBytes[]): AmlBytes {
  if (elements.length > 255) fail('AML Package holds at most 255 elements (VarPackage not supported)');
  const body = concat([Uint8Array.of(elements.length), ...elements]);
  return concat([Uint8Array.of(PACKAGE_OP), pkgLength(body.length), body]);
}

/** Name(path, value). */
export function name(path: string, value: AmlBytes): AmlBytes {
  return concat([Uint8Array.of(NAME_OP), nameString(path), value]);
}

/** Scope(path) { terms }. */
export function scope(path: string, terms: readonly AmlBytes[]): AmlBytes {
  const body = concat([nameString(path), ...terms]);
  return concat([Uint8Array.of(SCOPE_OP), pkgLength(body.length), body]);
}

/** Device(path) { terms }. */
export function device(path: string, terms: readonly AmlBytes[]): AmlBytes {
  const body = concat([nameString(path), ...terms]);
  return concat([Uint8Array.of(EXT_OP_PREFIX, DEVICE_OP), pkgLength(body.length), body]);
}

/** Method(path, argCount, serialized) { terms }. */
export function method(
  path: string,
  argCount: number,
  serialized: boolean,
  terms: readonly AmlBytes[],
): AmlBytes {
  if (!Number.isInteger(argCount) || argCount < 0 || argCount > 7) fail('AML methods take 0-7 arguments');
  const body = concat([nameString(path), Uint8Array.of(argCount | (serialized ? 0x08 : 0)), ...terms]);
  return concat([Uint8Array.of(METHOD_OP), pkgLength(body.length), body]);
}

/** Return(value). */
export function ret(value: AmlBytes): AmlBytes {
  return concat([Uint8Array.of(RETURN_OP), value]);
}

// --- Resource descriptors (ACPI 6.x §6.4) --------------------------------------------------------------------

function u16(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff];
}

function u32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

function checkRange(what: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) fail(`${what} ${v} is outside 0..${max}`);
}

/** Memory32Fixed(ReadWrite|ReadOnly, base, length): large item 0x86. */
export function memory32Fixed(readWrite: boolean, base: number, length: number): AmlBytes {
  checkRange('Memory32Fixed base', base, 0xffff_ffff);
  checkRange('Memory32Fixed length', length, 0xffff_ffff);
  if (base + length > 0x1_0000_0000) fail('Memory32Fixed range crosses 4 GiB');
  return Uint8Array.from([0x86, ...u16(9), readWrite ? 1 : 0, ...u32(base), ...u32(length)]);
}

export interface InterruptFlags {
  /** ResourceConsumer (default) or ResourceProducer. */
  consumer?: boolean;
  /** Edge (default) or Level triggered. */
  edge?: boolean;
  /** ActiveLow, else ActiveHigh (default). */
  activeLow?: boolean;
  /** Shared, else Exclusive (default). */
  shared?: boolean;
  wakeCapable?: boolean;
}

/** Interrupt(...) { gsis }: the Extended Interrupt descriptor, large item 0x89. */
export function extendedInterrupt(flags: InterruptFlags, gsis: readonly number[]): AmlBytes {
  if (gsis.length === 0 || gsis.length > 255) fail('Interrupt descriptor needs 1-255 interrupt numbers');
  for (const g of gsis) checkRange('interrupt number', g, 0xffff_ffff);
  const f =
    ((flags.consumer ?? true) ? 0x01 : 0) |
    ((flags.edge ?? true) ? 0x02 : 0) |
    (flags.activeLow ? 0x04 : 0) |
    (flags.shared ? 0x08 : 0) |
    (flags.wakeCapable ? 0x10 : 0);
  return Uint8Array.from([0x89, ...u16(2 + 4 * gsis.length), f, gsis.length, ...gsis.flatMap(u32)]);
}

/** IO(Decode16, min, max, alignment, length): small item 0x47. */
export function io(min: number, max: number, alignment: number, length: number): AmlBytes {
  checkRange('IO minimum', min, 0xffff);
  checkRange('IO maximum', max, 0xffff);
  checkRange('IO alignment', alignment, 0xff);
  checkRange('IO length', length, 0xff);
  if (max < min) fail('IO maximum is below its minimum');
  return Uint8Array.from([0x47, 0x01, ...u16(min), ...u16(max), alignment, length]);
}

/** IRQNoFlags() { irqs }: small item 0x22 with a 16-bit mask (ISA IRQs 0-15, edge, active high). */
export function irqNoFlags(irqs: readonly number[]): AmlBytes {
  let mask = 0;
  for (const irq of irqs) {
    checkRange('ISA IRQ', irq, 15);
    mask |= 1 << irq;
  }
  return Uint8Array.from([0x22, ...u16(mask)]);
}

/** End Tag: small item 0x79 with a zero checksum byte (zero means "treat as valid"). */
export function endTag(): AmlBytes {
  return Uint8Array.of(0x79, 0x00);
}

/** ResourceTemplate() { descriptors }: a Buffer with the descriptors and an End Tag. */
export function resourceTemplate(descriptors: readonly AmlBytes[]): AmlBytes {
  return buffer(concat([...descriptors, endTag()]));
}
