/** Synthetic kernels for the boot tests: a tiny ELF64 "vmlinux" and a bzImage wrapping it. */
import { gzipSync } from 'node:zlib';
import { guestAssetsDir as libGuestAssetsDir } from '../../../lib/boot/initramfs/assets.js';

export interface FakeElfOptions {
  /** Physical address of the first segment (the entry point). */
  base?: number;
  /** Include a Xen PVH note with this 32-bit entry (or omit it). */
  pvhEntry?: number;
  /** Width of the PVH note's descriptor. */
  pvhDescSize?: 4 | 8;
  /** Extra bss after the second segment. */
  bss?: number;
}

/** An ELF64 x86-64 executable: two PT_LOAD segments (text at base, data at base + 0x200000), one PT_NOTE. */
export function fakeElf(o: FakeElfOptions = {}): Uint8Array {
  const base = o.base ?? 0x100_0000;
  const text = new Uint8Array(0x300).map((_, i) => (i * 7 + 1) & 0xff);
  const data = new Uint8Array(0x100).fill(0xdd);
  const descSize = o.pvhDescSize ?? 8;
  const notes: number[] = [];
  const pushNote = (name: string, type: number, desc: number[]) => {
    const nameBytes = [...Buffer.from(name + '\0')];
    const u32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
    notes.push(...u32(nameBytes.length), ...u32(desc.length), ...u32(type));
    notes.push(...nameBytes, ...new Array((4 - (nameBytes.length % 4)) % 4).fill(0));
    notes.push(...desc, ...new Array((4 - (desc.length % 4)) % 4).fill(0));
  };
  pushNote('GNU', 3, [1, 2, 3, 4]);
  if (o.pvhEntry !== undefined) {
    const d = new Uint8Array(descSize);
    new DataView(d.buffer).setUint32(0, o.pvhEntry, true);
    pushNote('Xen', 18, [...d]);
  }
  const phnum = 3;
  const phoff = 64;
  const textOff = 0x1000;
  const dataOff = 0x2000;
  const noteOff = 0x2100;
  const out = new Uint8Array(noteOff + notes.length);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]);
  v.setUint16(16, 2, true); // ET_EXEC
  v.setUint16(18, 62, true); // EM_X86_64
  v.setUint32(20, 1, true);
  v.setBigUint64(24, BigInt(base), true); // physical entry, like vmlinux
  v.setBigUint64(32, BigInt(phoff), true);
  v.setUint16(52, 64, true);
  v.setUint16(54, 56, true);
  v.setUint16(56, phnum, true);
  const ph = (
    i: number,
    type: number,
    off: number,
    vaddr: bigint,
    paddr: number,
    filesz: number,
    memsz: number,
  ) => {
    const at = phoff + i * 56;
    v.setUint32(at, type, true);
    v.setUint32(at + 4, 5, true);
    v.setBigUint64(at + 8, BigInt(off), true);
    v.setBigUint64(at + 16, vaddr, true);
    v.setBigUint64(at + 24, BigInt(paddr), true);
    v.setBigUint64(at + 32, BigInt(filesz), true);
    v.setBigUint64(at + 40, BigInt(memsz), true);
    v.setBigUint64(at + 48, 0x1000n, true);
  };
  const kmap = 0xffff_ffff_8000_0000n;
  ph(0, 1, textOff, kmap + BigInt(base), base, text.length, text.length);
  ph(
    1,
    1,
    dataOff,
    kmap + BigInt(base + 0x20_0000),
    base + 0x20_0000,
    data.length,
    data.length + (o.bss ?? 0x1000),
  );
  ph(2, 4, noteOff, 0n, 0, notes.length, notes.length);
  out.set(text, textOff);
  out.set(data, dataOff);
  out.set(notes, noteOff);
  return out;
}

export interface FakeBzImageOptions {
  payload?: Uint8Array;
  version?: number;
  xloadflags?: number;
  prefAddress?: number;
  initSize?: number;
  cmdlineSize?: number;
  initrdAddrMax?: number;
  setupSects?: number;
  relocatable?: boolean;
}

/** Compressed payload the way the kernel build makes it: gzip as is, others + a u32 size trailer. */
export function gzipPayload(data: Uint8Array): Uint8Array {
  return new Uint8Array(gzipSync(data));
}

/** A bzImage whose protected-mode part is a 0x300-byte stub followed by `payload`. */
export function fakeBzImage(o: FakeBzImageOptions = {}): Uint8Array {
  const payload = o.payload ?? gzipPayload(fakeElf());
  const setupSects = o.setupSects === 0 ? 4 : (o.setupSects ?? 4);
  const setupSize = (setupSects + 1) * 512;
  const payloadOffset = 0x300;
  const sys = payloadOffset + payload.length;
  const sysPadded = Math.ceil(sys / 16) * 16;
  const out = new Uint8Array(setupSize + sysPadded);
  const v = new DataView(out.buffer);
  out[0x1f1] = o.setupSects === 0 ? 0 : setupSects;
  v.setUint32(0x1f4, sysPadded / 16, true);
  v.setUint16(0x1fe, 0xaa55, true);
  out[0x200] = 0xeb;
  out[0x201] = 0x6a; // header ends at 0x26c
  out.set([0x48, 0x64, 0x72, 0x53], 0x202);
  v.setUint16(0x206, o.version ?? 0x020f, true);
  v.setUint16(0x20e, 0x100, true); // kernel version string at 0x300
  out.set(Buffer.from('6.1.0-fake (test@example) #1\0'), 0x300);
  out[0x211] = 0x01; // LOADED_HIGH
  v.setUint32(0x214, 0x10_0000, true);
  v.setUint32(0x22c, o.initrdAddrMax ?? 0x7fff_ffff, true);
  v.setUint32(0x230, 0x20_0000, true);
  out[0x234] = (o.relocatable ?? true) ? 1 : 0;
  out[0x235] = 21;
  v.setUint16(0x236, o.xloadflags ?? 0x7f, true);
  v.setUint32(0x238, o.cmdlineSize ?? 0x7ff, true);
  v.setUint32(0x248, payloadOffset, true);
  v.setUint32(0x24c, payload.length, true);
  v.setBigUint64(0x258, BigInt(o.prefAddress ?? 0x100_0000), true);
  v.setUint32(0x260, o.initSize ?? 0x40_0000, true);
  out.fill(0x90, setupSize, setupSize + payloadOffset);
  out.set(payload, setupSize + payloadOffset);
  return out;
}

/** Where scripts/guest-assets.mjs caches the Debian kernel and initramfs (repo-relative default). */
export function guestAssetsDir(): string {
  return libGuestAssetsDir(new URL('../../..', import.meta.url).pathname);
}

/** Special registers as a freshly created vCPU has them (one definition, shared with the boot fuzzer). */
export { resetSregs } from '../../../fuzz/targets/boot.js';
