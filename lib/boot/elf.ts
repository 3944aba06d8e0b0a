/**
 * ELF64 kernel loading (an uncompressed vmlinux, or the one decompressed from a bzImage): PT_LOAD segments
 * go to their physical addresses; the entry point and the Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY) are read
 * so the kernel can be entered either at its 64-bit entry with boot_params or at its 32-bit PVH entry.
 */
import type { MemoryWrite } from '../arch/x86_64/paging.js';
import { BootError } from './errors.js';
import { hex, view } from './bytes.js';

export const ELF_MAGIC = 0x464c457f;
export const EM_X86_64 = 62;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
/** Xen ELF note type whose descriptor is the 32-bit physical PVH entry point. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;

export interface ElfSegment {
  /** Guest-physical load address. */
  paddr: number;
  vaddr: bigint;
  /** Bytes from the file (a view into the image); the rest up to memsz is zero. */
  data: Uint8Array;
  memsz: number;
  flags: number;
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

export interface ElfKernel {
  /** Physical entry address (e_entry, translated through the segments if it is virtual). */
  entry: number;
  /** 32-bit PVH entry from the Xen note, if the kernel has one. */
  pvhEntry: number | undefined;
  segments: ElfSegment[];
  notes: ElfNote[];
  /** Lowest and highest (exclusive) physical address any segment occupies. */
  start: number;
  end: number;
}

function bad(reason: string): never {
  throw new BootError('BAD_KERNEL', `not a loadable ELF64 kernel: ${reason}`);
}

/** True if the bytes start with the ELF magic. */
export function isElf(data: Uint8Array): boolean {
  return data.length >= 4 && view(data).getUint32(0, true) === ELF_MAGIC;
}

function toNumber(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) bad(`${what} ${hex(value)} is too large`);
  return Number(value);
}

function parseNotes(image: Uint8Array, offset: number, size: number, into: ElfNote[]): void {
  const v = view(image);
  let at = offset;
  const end = offset + size;
  while (at + 12 <= end) {
    const namesz = v.getUint32(at, true);
    const descsz = v.getUint32(at + 4, true);
    const type = v.getUint32(at + 8, true);
    const nameAt = at + 12;
    // Sizes are u32: round up with arithmetic, since `& ~3` would turn sizes >= 2^31 negative.
    const descAt = nameAt + Math.ceil(namesz / 4) * 4;
    const next = descAt + Math.ceil(descsz / 4) * 4;
    if (next > end) bad(`note at file offset ${hex(at)} runs past its PT_NOTE segment`);
    const nameBytes = image.subarray(nameAt, nameAt + namesz);
    const nul = nameBytes.indexOf(0);
    const name = String.fromCharCode(...(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes));
    into.push({ name, type, desc: image.subarray(descAt, descAt + descsz) });
    at = next;
  }
}

/** Parses and validates an x86-64 ELF kernel image. */
export function parseElfKernel(image: Uint8Array): ElfKernel {
  if (image.length < EHDR_SIZE) bad(`only ${image.length} bytes, shorter than an ELF header`);
  if (!isElf(image)) bad('missing the \\x7fELF magic');
  if (image[4] !== 2) bad(`EI_CLASS is ${image[4]}, expected 2 (64-bit)`);
  if (image[5] !== 1) bad(`EI_DATA is ${image[5]}, expected 1 (little-endian)`);
  const v = view(image);
  const type = v.getUint16(16, true);
  if (type !== 2 && type !== 3) bad(`e_type is ${type}, expected ET_EXEC (2) or ET_DYN (3)`);
  const machine = v.getUint16(18, true);
  if (machine !== EM_X86_64) bad(`e_machine is ${machine}, expected EM_X86_64 (62)`);
  const entryRaw = v.getBigUint64(24, true);
  const phoff = toNumber(v.getBigUint64(32, true), 'e_phoff');
  const phentsize = v.getUint16(54, true);
  const phnum = v.getUint16(56, true);
  if (phentsize !== PHDR_SIZE) bad(`e_phentsize is ${phentsize}, expected ${PHDR_SIZE}`);
  if (phnum === 0) bad('no program headers');
  if (phoff + phnum * PHDR_SIZE > image.length)
    bad('program headers run past the end of the file (truncated?)');

  const segments: ElfSegment[] = [];
  const notes: ElfNote[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * PHDR_SIZE;
    const ptype = v.getUint32(at, true);
    const offset = toNumber(v.getBigUint64(at + 8, true), `segment ${i} p_offset`);
    const filesz = toNumber(v.getBigUint64(at + 32, true), `segment ${i} p_filesz`);
    if (ptype !== PT_LOAD && ptype !== PT_NOTE) continue;
    if (offset + filesz > image.length) {
      bad(`segment ${i} [file ${hex(offset)}, +${hex(filesz)}) runs past the end of the file (truncated?)`);
    }
    if (ptype === PT_NOTE) {
      parseNotes(image, offset, filesz, notes);
      continue;
    }
    const paddr = toNumber(v.getBigUint64(at + 24, true), `segment ${i} p_paddr`);
    const memsz = toNumber(v.getBigUint64(at + 40, true), `segment ${i} p_memsz`);
    if (memsz < filesz) bad(`segment ${i} has p_memsz ${hex(memsz)} < p_filesz ${hex(filesz)}`);
    if (memsz === 0) continue;
    segments.push({
      paddr,
      vaddr: v.getBigUint64(at + 16, true),
      data: image.subarray(offset, offset + filesz),
      memsz,
      flags: v.getUint32(at + 4, true),
    });
  }
  if (segments.length === 0) bad('no PT_LOAD segments');
  const sorted = [...segments].sort((a, b) => a.paddr - b.paddr);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (prev.paddr + prev.memsz > sorted[i].paddr) {
      bad(`segments at ${hex(prev.paddr)} and ${hex(sorted[i].paddr)} overlap physically`);
    }
  }
  const start = sorted[0].paddr;
  const last = sorted[sorted.length - 1];
  const end = last.paddr + last.memsz;

  let entry: number | undefined;
  if (entryRaw <= BigInt(Number.MAX_SAFE_INTEGER)) {
    const e = Number(entryRaw);
    if (segments.some((s) => e >= s.paddr && e < s.paddr + s.memsz)) entry = e;
  }
  if (entry === undefined) {
    const s = segments.find((seg) => entryRaw >= seg.vaddr && entryRaw < seg.vaddr + BigInt(seg.memsz));
    if (s) entry = s.paddr + Number(entryRaw - s.vaddr);
  }
  if (entry === undefined) bad(`entry point ${hex(entryRaw)} lies in no loadable segment`);

  let pvhEntry: number | undefined;
  const pvh = notes.find((n) => n.name === 'Xen' && n.type === XEN_ELFNOTE_PHYS32_ENTRY);
  if (pvh) {
    const dv = view(pvh.desc);
    if (pvh.desc.length === 4) pvhEntry = dv.getUint32(0, true);
    else if (pvh.desc.length === 8) pvhEntry = toNumber(dv.getBigUint64(0, true), 'PVH entry');
    else bad(`Xen PHYS32_ENTRY note has a ${pvh.desc.length}-byte descriptor, expected 4 or 8`);
    if (pvhEntry >= 0x1_0000_0000) bad(`PVH entry ${hex(pvhEntry)} is not a 32-bit address`);
    if (!segments.some((s) => pvhEntry! >= s.paddr && pvhEntry! < s.paddr + s.memsz)) {
      bad(`PVH entry ${hex(pvhEntry)} lies in no loadable segment`);
    }
  }
  return { entry, pvhEntry, segments, notes, start, end };
}

/** Memory writes that load the kernel: each segment's file bytes, then zeros for its bss part. */
export function elfLoadWrites(elf: ElfKernel): MemoryWrite[] {
  const writes: MemoryWrite[] = [];
  for (const s of elf.segments) {
    if (s.data.length > 0) writes.push({ gpa: s.paddr, data: s.data });
    if (s.memsz > s.data.length) {
      writes.push({ gpa: s.paddr + s.data.length, data: new Uint8Array(s.memsz - s.data.length) });
    }
  }
  return writes;
}
