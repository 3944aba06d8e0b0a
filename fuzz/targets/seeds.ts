/**
 * Well-formed starting inputs for the boot-parser fuzz targets, built here (the fuzzer ships with the package;
 * test fixtures do not): a small ELF64 "vmlinux" with a Xen PVH note, bzImages wrapping it (gzip and LZ4
 * payloads), and LZ4 legacy frames.
 */
import { gzipSync } from 'node:zlib';

function u32le(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

export interface SeedElfOptions {
  base?: number;
  pvhEntry?: number;
  bss?: number;
  /** Entry point as a kernel virtual address (translated through the segments) instead of a physical one. */
  virtualEntry?: boolean;
}

/** An ELF64 x86-64 executable: text at `base`, data at base + 64 KiB (plus bss), a GNU note, a Xen PVH note. */
export function seedElf(o: SeedElfOptions = {}): Uint8Array {
  const base = o.base ?? 0x20_0000;
  const notes: number[] = [];
  const note = (name: string, type: number, desc: number[]) => {
    const nameBytes = [...Buffer.from(name + '\0')];
    notes.push(...u32le(nameBytes.length), ...u32le(desc.length), ...u32le(type));
    notes.push(...nameBytes, ...new Array<number>((4 - (nameBytes.length % 4)) % 4).fill(0));
    notes.push(...desc, ...new Array<number>((4 - (desc.length % 4)) % 4).fill(0));
  };
  note('GNU', 3, [1, 2, 3, 4]);
  if (o.pvhEntry !== 0) note('Xen', 18, u32le(o.pvhEntry ?? base + 0x10));
  const phoff = 64;
  const textOff = 0x200;
  const textLen = 0x100;
  const dataOff = 0x300;
  const dataLen = 0x40;
  const noteOff = 0x340;
  const out = new Uint8Array(noteOff + notes.length);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]);
  v.setUint16(16, 2, true);
  v.setUint16(18, 62, true);
  v.setUint32(20, 1, true);
  const kmap = 0xffff_ffff_8000_0000n;
  v.setBigUint64(24, o.virtualEntry ? kmap + BigInt(base) : BigInt(base), true);
  v.setBigUint64(32, BigInt(phoff), true);
  v.setUint16(52, 64, true);
  v.setUint16(54, 56, true);
  v.setUint16(56, 3, true);
  const ph = (i: number, type: number, off: number, paddr: number, filesz: number, memsz: number) => {
    const at = phoff + i * 56;
    v.setUint32(at, type, true);
    v.setUint32(at + 4, 5, true);
    v.setBigUint64(at + 8, BigInt(off), true);
    v.setBigUint64(at + 16, type === 1 ? kmap + BigInt(paddr) : 0n, true);
    v.setBigUint64(at + 24, BigInt(paddr), true);
    v.setBigUint64(at + 32, BigInt(filesz), true);
    v.setBigUint64(at + 40, BigInt(memsz), true);
    v.setBigUint64(at + 48, 0x1000n, true);
  };
  ph(0, 1, textOff, base, textLen, textLen);
  ph(1, 1, dataOff, base + 0x1_0000, dataLen, dataLen + (o.bss ?? 0x1000));
  ph(2, 4, noteOff, 0, notes.length, notes.length);
  for (let i = 0; i < textLen; i++) out[textOff + i] = (i * 7 + 1) & 0xff;
  out.fill(0xdd, dataOff, dataOff + dataLen);
  out.set(notes, noteOff);
  return out;
}

/** One LZ4 block holding `data` as literals, with a repeat of its first bytes as a match when it is long enough. */
export function lz4Block(data: Uint8Array): Uint8Array {
  const out: number[] = [];
  const literals = (bytes: Uint8Array, matchToken: number) => {
    const n = bytes.length;
    out.push(((n >= 15 ? 15 : n) << 4) | matchToken);
    if (n >= 15) {
      let rest = n - 15;
      while (rest >= 255) {
        out.push(255);
        rest -= 255;
      }
      out.push(rest);
    }
    out.push(...bytes);
  };
  if (data.length >= 8) {
    // "first 4 bytes" + match(offset 4, length 4 + 2): exercises the overlapping-copy path.
    literals(data.subarray(0, 4), 2);
    out.push(4, 0);
    literals(data.subarray(4), 0);
  } else literals(data, 0);
  return Uint8Array.from(out);
}

/** An LZ4 legacy frame (magic, then [u32 size][block]) of `data`, with the kernel's u32 size trailer. */
export function lz4Payload(data: Uint8Array, trailer = true): Uint8Array {
  const block = lz4Block(data);
  const decoded = data.length >= 8 ? data.length + 6 : data.length;
  return Uint8Array.from([
    0x02,
    0x21,
    0x4c,
    0x18,
    ...u32le(block.length),
    ...block,
    ...(trailer ? u32le(decoded) : []),
  ]);
}

/** What lz4Payload(data) decodes to (the seed block repeats 6 bytes after the first 4). */
export function lz4Decoded(data: Uint8Array): Uint8Array {
  if (data.length < 8) return data;
  const out = new Uint8Array(data.length + 6);
  out.set(data.subarray(0, 4));
  for (let i = 4; i < 10; i++) out[i] = out[i - 4];
  out.set(data.subarray(4), 10);
  return out;
}

/** A gzip kernel payload (gzip carries its own size trailer). */
export function gzipPayload(data: Uint8Array): Uint8Array {
  return new Uint8Array(gzipSync(data, { level: 1 }));
}

export interface SeedBzImageOptions {
  payload?: Uint8Array;
  prefAddress?: number;
  initSize?: number;
  relocatable?: boolean;
}

/** A bzImage (boot protocol 2.15, 64-bit entry) whose protected-mode part is a stub followed by `payload`. */
export function seedBzImage(o: SeedBzImageOptions = {}): Uint8Array {
  const payload = o.payload ?? gzipPayload(seedElf());
  const setupSects = 1;
  const setupSize = (setupSects + 1) * 512;
  const payloadOffset = 0x40;
  const sys = Math.ceil((payloadOffset + payload.length) / 16) * 16;
  const out = new Uint8Array(setupSize + sys);
  const v = new DataView(out.buffer);
  out[0x1f1] = setupSects;
  v.setUint32(0x1f4, sys / 16, true);
  v.setUint16(0x1fe, 0xaa55, true);
  out[0x200] = 0xeb;
  out[0x201] = 0x6a;
  out.set([0x48, 0x64, 0x72, 0x53], 0x202);
  v.setUint16(0x206, 0x020f, true);
  v.setUint16(0x20e, 0x1a0, true); // kernel version string at 0x3a0
  out.set(Buffer.from('6.1.0-fuzz #1\0'), 0x3a0);
  out[0x211] = 0x01;
  v.setUint32(0x214, 0x10_0000, true);
  v.setUint32(0x22c, 0x7fff_ffff, true);
  v.setUint32(0x230, 0x20_0000, true);
  out[0x234] = (o.relocatable ?? true) ? 1 : 0;
  out[0x235] = 21;
  v.setUint16(0x236, 0x7f, true);
  v.setUint32(0x238, 0x7ff, true);
  v.setUint32(0x248, payloadOffset, true);
  v.setUint32(0x24c, payload.length, true);
  v.setBigUint64(0x258, BigInt(o.prefAddress ?? 0x20_0000), true);
  v.setUint32(0x260, o.initSize ?? 0x40_0000, true);
  out.fill(0x90, setupSize, setupSize + payloadOffset);
  out.set(payload, setupSize + payloadOffset);
  return out;
}
