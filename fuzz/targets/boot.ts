/**
 * Fuzz targets for the boot builders (lib/boot): the parsers that read caller-supplied kernel images and the
 * writers that produce what a guest parses (command line, cpio, ACPI/AML). The caller can be wrong, and a
 * kernel file can be corrupt or hostile: every bad input must end in a BootError with a reason, never in
 * another exception, a hang, or a boot plan that writes outside guest RAM or over its own boot structures.
 *
 * Each target returns an outcome label (which check rejected the input, or what kind of success): the fuzz
 * engine uses new labels as feedback to grow its corpus.
 */
import { realModeSegment } from '../../lib/arch/x86_64/gdt.js';
import { CMDLINE_START, HIMEM_START, ZERO_PAGE, ramRegions } from '../../lib/arch/x86_64/layout.js';
import type { MemoryWrite } from '../../lib/arch/x86_64/paging.js';
import * as aml from '../../lib/boot/acpi/aml.js';
import {
  buildAcpiTables,
  buildRelocatableAcpi,
  relocateAcpi,
  type AcpiConfig,
} from '../../lib/boot/acpi/index.js';
import { Cmdline, CMDLINE_MAX_LENGTH, splitCmdline } from '../../lib/boot/cmdline.js';
import { decompressPayload, detectCompression } from '../../lib/boot/decompress.js';
import { elfLoadWrites, parseElfKernel } from '../../lib/boot/elf.js';
import { BootError } from '../../lib/boot/errors.js';
import { CpioWriter, type CpioEntry } from '../../lib/boot/initramfs/cpio.js';
import { buildLinuxBoot, placeBzImage, type LinuxEntry } from '../../lib/boot/linux.js';
import { decodeLz4Block } from '../../lib/boot/lz4.js';
import { compressedPayload, parseSetupHeader, protectedModeKernel } from '../../lib/boot/setup-header.js';
import type { Sregs } from '../../lib/kvm/structs.js';
import { ByteReader, FuzzInvariantError } from '../../lib/virtio/testing/fuzz-targets.js';
import type { FuzzTarget } from '../engine.js';
import { gzipPayload, lz4Payload, seedBzImage, seedElf } from './seeds.js';

const MiB = 1024 * 1024;

/** An invariant of a boot target broke; `check` names which (the failure signature), the message says how. */
export class BootInvariantError extends FuzzInvariantError {
  constructor(
    readonly check: string,
    detail?: string,
  ) {
    super(
      detail === undefined
        ? check
        : `${check}: ${detail.length > 300 ? `${detail.slice(0, 300)}...` : detail}`,
    );
  }
}

function check(condition: boolean, what: string, detail?: () => string): asserts condition {
  if (!condition) throw new BootInvariantError(what, detail?.());
}

/** The outcome label of a rejected input; anything but a BootError is a bug and propagates. */
function rejected(error: unknown): string {
  if (error instanceof BootError) {
    check(error.message.length > 0, 'BootError without a message');
    const shape = error.message
      .replace(/"(?:[^"\\]|\\.)*"|'[^']*'/g, 'S')
      .replace(/0x[0-9a-f]+|\d+/gi, 'N')
      .slice(0, 60);
    return `reject:${error.code}:${shape}`;
  }
  throw error;
}

function u32(bytes: Uint8Array, at: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at, true);
}

function overlaps(a: { start: number; end: number }, b: { start: number; end: number }): boolean {
  return a.start < b.end && b.start < a.end;
}

// --- bzImage setup header, placement and host decompression ---------------------------------------------------

function bzImageSeeds(): Uint8Array[] {
  const elf = seedElf();
  const lz4 = lz4Payload(elf);
  return [
    seedBzImage(),
    seedBzImage({ payload: lz4 }),
    seedBzImage({ payload: elf }),
    seedBzImage({ relocatable: false, prefAddress: 0x40_0000 }),
    seedBzImage({ initSize: 0x800_0000 }),
  ];
}

function runBzImage(image: Uint8Array): string {
  let header;
  try {
    header = parseSetupHeader(image);
  } catch (e) {
    return rejected(e);
  }
  check(header.setupSize < image.length, 'setup not shorter than the file');
  check(header.sysSize > 0 && header.setupSize + header.sysSize <= image.length, 'syssize beyond the file');
  check(header.initSize >= header.sysSize, 'init_size below the kernel size');
  check(header.cmdlineSize > 0, 'cmdline_size 0 accepted');
  check((header.kernelAlignment & (header.kernelAlignment - 1)) === 0, 'kernel_alignment not a power of 2');
  check(header.raw.length <= 0x290 - 0x1f1, 'header copy runs into the rest of boot_params');
  check(protectedModeKernel(image, header).length === header.sysSize, 'protected-mode kernel length');
  const payload = compressedPayload(image, header);
  check(payload.length === header.payloadLength, 'compressed payload outside the kernel');
  let label = 'header-ok';
  for (const memSize of [16 * MiB, 256 * MiB]) {
    try {
      const placed = placeBzImage(header, memSize);
      const lowEnd = ramRegions(memSize)[0].size;
      check(placed.end <= lowEnd, 'kernel span ends past low RAM', () => `${placed.end} > ${lowEnd}`);
      check(
        placed.start >= HIMEM_START,
        'kernel placed over the boot area below 1 MiB',
        () => `loaded at 0x${placed.start.toString(16)}`,
      );
      label += ':placed';
    } catch (e) {
      label += `:${rejected(e)}`;
    }
  }
  try {
    const { data, compression } = decompressPayload(payload);
    if (compression === 'gzip' || compression === 'lz4') {
      check(data.length === u32(payload, payload.length - 4), 'decompressed size differs from the trailer');
    }
    label += `:decompressed-${compression}`;
  } catch (e) {
    label += `:${rejected(e)}`;
  }
  return label;
}

// --- Compressed payloads (gzip, LZ4 legacy frames, raw LZ4 blocks) --------------------------------------------

function decompressSeeds(): Uint8Array[] {
  const text = Uint8Array.from(Buffer.from('node-kvm boots kernels; '.repeat(8)));
  const gz = gzipPayload(text);
  return [
    lz4Payload(text),
    lz4Payload(text.subarray(0, 5)),
    gz,
    Uint8Array.from([0x00, ...lz4Payload(text).subarray(8)]), // mode byte 0: a raw block
    seedElf(),
  ];
}

/** First byte 0: the rest is a raw LZ4 block; otherwise the whole input is a kernel payload. */
function runDecompress(bytes: Uint8Array): string {
  if (bytes.length > 0 && bytes[0] === 0) {
    try {
      const out = decodeLz4Block(bytes.subarray(1), 1 * MiB);
      check(out.length <= 1 * MiB, 'raw block decoded past its limit');
      return `block-ok:${Math.min(out.length, 64) >> 4}`;
    } catch (e) {
      return rejected(e);
    }
  }
  try {
    const { data, compression } = decompressPayload(bytes);
    check(compression === detectCompression(bytes), 'compression differs from the detected one');
    if (compression === 'gzip' || compression === 'lz4') {
      check(data.length === u32(bytes, bytes.length - 4), 'decoded size differs from the trailer');
    }
    return `ok:${compression}`;
  } catch (e) {
    return rejected(e);
  }
}

// --- ELF kernels ---------------------------------------------------------------------------------------------

function elfSeeds(): Uint8Array[] {
  return [
    seedElf(),
    seedElf({ virtualEntry: true }),
    seedElf({ pvhEntry: 0 }),
    seedElf({ base: 0x100_0000, bss: 0x10_0000 }),
  ];
}

function runElf(image: Uint8Array): string {
  let elf;
  try {
    elf = parseElfKernel(image);
  } catch (e) {
    return rejected(e);
  }
  check(elf.segments.length > 0, 'no segments accepted');
  const sorted = [...elf.segments].sort((a, b) => a.paddr - b.paddr);
  let total = 0;
  sorted.forEach((s, i) => {
    check(s.data.length <= s.memsz, 'filesz > memsz accepted');
    check(Number.isSafeInteger(s.paddr + s.memsz), 'segment end is not a safe integer');
    check(s.data.buffer === image.buffer, 'segment data is not a view of the image');
    check(
      s.data.byteOffset + s.data.length <= image.byteOffset + image.length,
      'segment data beyond the file',
    );
    if (i > 0) check(sorted[i - 1].paddr + sorted[i - 1].memsz <= s.paddr, 'overlapping segments accepted');
    total += s.memsz;
  });
  check(elf.start === sorted[0].paddr, 'start is not the lowest segment');
  check(
    elf.segments.some((s) => elf.entry >= s.paddr && elf.entry < s.paddr + s.memsz),
    'entry in no segment',
  );
  if (elf.pvhEntry !== undefined) {
    check(elf.pvhEntry < 2 ** 32, 'PVH entry above 4 GiB');
    check(
      elf.segments.some((s) => elf.pvhEntry! >= s.paddr && elf.pvhEntry! < s.paddr + s.memsz),
      'PVH entry in no segment',
    );
  }
  if (total <= 8 * MiB) {
    const writes = elfLoadWrites(elf);
    const written = writes.reduce((n, w) => n + w.data.length, 0);
    check(written === total, 'load writes do not cover the segments', () => `${written} != ${total}`);
  }
  return `ok:${elf.segments.length}:${elf.pvhEntry === undefined ? 'nopvh' : 'pvh'}:${elf.notes.length}`;
}

// --- The whole Linux boot plan --------------------------------------------------------------------------------

/** Special registers as a freshly created vCPU has them. */
export function resetSregs(): Sregs {
  return {
    cs: { ...realModeSegment(0xf000, 0xb), base: 0xffff0000n },
    ds: realModeSegment(0, 3),
    es: realModeSegment(0, 3),
    fs: realModeSegment(0, 3),
    gs: realModeSegment(0, 3),
    ss: realModeSegment(0, 3),
    tr: { ...realModeSegment(0, 0xb), s: 0 },
    ldt: { ...realModeSegment(0, 2), s: 0 },
    gdt: { base: 0n, limit: 0xffff },
    idt: { base: 0n, limit: 0xffff },
    cr0: 0x6000_0010n,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
    apicBase: 0xfee0_0900n,
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
}

const INITRDS = [undefined, new Uint8Array(4096).fill(7), new Uint8Array(3 * MiB), new Uint8Array(1)];
const CMDLINES = ['', 'console=ttyS0 earlyprintk=serial', 'a="b c" -- init', 'x'.repeat(3000), 'bad\u0001'];

function linuxSeeds(): Uint8Array[] {
  return [
    Uint8Array.from([0x00, ...seedBzImage()]),
    Uint8Array.from([0x11, ...seedBzImage({ payload: lz4Payload(seedElf()) })]),
    Uint8Array.from([0x22, ...seedBzImage()]),
    Uint8Array.from([0x01, ...seedElf()]),
    Uint8Array.from([0x32, ...seedElf()]),
  ];
}

/**
 * First byte: entry kind, RAM size, initrd size and command line; the rest is the kernel (bzImage or ELF).
 * Checks every write lands in guest RAM and no two writes (kernel, initrd, ACPI, cmdline, boot_params, and the
 * CPU setup's GDT, TSS and page tables) overlap.
 */
function runLinux(bytes: Uint8Array): string {
  const o = bytes[0] ?? 0;
  const kernel = bytes.subarray(1);
  const entry = ([undefined, 'bzimage', 'elf64', 'pvh'] as (LinuxEntry | undefined)[])[o & 3];
  const memSize = [8 * MiB, 16 * MiB, 64 * MiB, 3 * MiB][(o >> 2) & 3];
  const initrd = INITRDS[(o >> 4) & 3];
  const cmdline = CMDLINES[(o >> 6) % CMDLINES.length];
  let plan;
  try {
    plan = buildLinuxBoot(
      kernel,
      { memSize, cmdline, initrd, entry, acpi: { vcpus: 1, virtio: [], serial: true } },
      resetSregs(),
    );
  } catch (e) {
    return rejected(e);
  }
  const ram = ramRegions(memSize);
  const named: { what: string; w: MemoryWrite }[] = [
    ...plan.writes.map((w) => ({ what: 'plan', w })),
    ...plan.cpu.writes.map((w) => ({ what: 'cpu', w })),
  ];
  for (const { what, w } of named) {
    const end = w.gpa + w.data.length;
    check(
      ram.some((r) => w.gpa >= r.gpa && end <= r.gpa + r.size),
      `${what} write outside guest RAM`,
      () => `[0x${w.gpa.toString(16)}, 0x${end.toString(16)}) with RAM ${memSize}`,
    );
  }
  for (let i = 0; i < named.length; i++) {
    for (let j = i + 1; j < named.length; j++) {
      const a = named[i].w;
      const b = named[j].w;
      if (a.data.length === 0 || b.data.length === 0) continue;
      check(
        !overlaps({ start: a.gpa, end: a.gpa + a.data.length }, { start: b.gpa, end: b.gpa + b.data.length }),
        `boot writes overlap (${named[i].what}/${named[j].what})`,
        () =>
          `0x${a.gpa.toString(16)} (+0x${a.data.length.toString(16)}) and ` +
          `0x${b.gpa.toString(16)} (+0x${b.data.length.toString(16)})`,
      );
    }
  }
  const info = plan.info;
  check(info.kernel.start >= HIMEM_START, 'kernel span starts below 1 MiB');
  if (info.initrd) {
    check(
      !overlaps(info.kernel, { start: info.initrd.addr, end: info.initrd.addr + info.initrd.size }),
      'initrd over the kernel',
    );
  }
  check(
    plan.writes.some((w) => w.gpa === CMDLINE_START),
    'no command line written',
  );
  if (info.entryKind !== 'pvh') check(plan.cpu.regs.rsi === BigInt(ZERO_PAGE), 'RSI is not the zero page');
  return `ok:${info.format}:${info.entryKind}:${info.compression ?? '-'}:${info.initrd ? 'initrd' : '-'}`;
}

// --- Command line builder ------------------------------------------------------------------------------------

const CMD_CHARS = [
  'a',
  'b',
  'z',
  '0',
  '9',
  '_',
  '.',
  '-',
  '=',
  ' ',
  '"',
  '[',
  ']',
  ',',
  '/',
  '\t',
  '\n',
  '\0',
  'é',
  '~',
];

function cmdString(r: ByteReader, max = 12): string {
  if (r.u8() % 16 === 0) return 'k'.repeat(r.u16() % 5000);
  const n = r.u8() % max;
  let s = '';
  for (let i = 0; i < n; i++) s += CMD_CHARS[r.u8() % CMD_CHARS.length];
  return s;
}

function keyOf(param: string): string {
  const eq = param.indexOf('=');
  return eq < 0 ? param : param.slice(0, eq);
}

/** Params before a standalone `--`. */
function kernelParams(cmdline: string): string[] {
  const parts = splitCmdline(cmdline);
  const dashes = parts.indexOf('--');
  return dashes < 0 ? parts : parts.slice(0, dashes);
}

/**
 * Builds a command line from an initial string and a sequence of set / setDefault / remove calls with hostile
 * keys and values. Checks: set(k, v) makes get(k) return v and leaves exactly one k; remove(k) leaves none;
 * toString() re-parses to itself; encode() is printable ASCII + NUL within the limit.
 */
function runCmdline(bytes: Uint8Array): string {
  const r = new ByteReader(bytes);
  let c: Cmdline;
  try {
    c = new Cmdline(cmdString(r, 40));
  } catch (e) {
    return rejected(e);
  }
  let label = 'ok';
  for (let step = 0; step < 8 && !r.done; step++) {
    const key =
      r.u8() % 4 === 0 ? cmdString(r) : r.pick(['console', 'root', 'a.b', 'x-y', 'k[0]', '--', 'init']);
    const value = r.pick<string | number | boolean | undefined>([
      undefined,
      true,
      false,
      0,
      42,
      cmdString(r),
      cmdString(r),
    ]);
    const op = r.u8() % 3;
    try {
      if (op === 0) c.set(key, value);
      else if (op === 1) c.setDefault(key, value);
      else c.remove(key);
    } catch (e) {
      label = rejected(e);
      continue;
    }
    const text = c.toString();
    if (op === 2) {
      check(
        !c.has(key),
        'remove(key) leaves the key',
        () => `remove(${JSON.stringify(key)}) -> ${JSON.stringify(text)}`,
      );
      continue;
    }
    if (op === 0 && value !== false) {
      const expected = value === undefined || value === true ? '' : String(value);
      check(
        c.get(key) === expected,
        'set(key, value) then get(key) differs',
        () =>
          `set(${JSON.stringify(key)}, ${JSON.stringify(value)}) then get gave ${JSON.stringify(c.get(key))}`,
      );
      const count = kernelParams(text).filter((p) => keyOf(p) === key).length;
      check(
        count === 1,
        `set(key) leaves ${Math.min(count, 2)} copies of the key`,
        () => `set(${JSON.stringify(key)}) -> ${JSON.stringify(text)}`,
      );
    }
  }
  const text = c.toString();
  let encoded: Uint8Array;
  try {
    encoded = c.encode();
  } catch (e) {
    return `${label}:${rejected(e)}`;
  }
  check(encoded[encoded.length - 1] === 0, 'encoded command line lacks its NUL');
  check(encoded.length - 1 <= CMDLINE_MAX_LENGTH, 'encoded command line longer than the limit');
  for (let i = 0; i < encoded.length - 1; i++) {
    check(encoded[i] >= 0x20 && encoded[i] <= 0x7e, 'non-printable byte in an encoded command line');
  }
  let again: string;
  try {
    again = new Cmdline(text).toString();
  } catch (e) {
    throw new BootInvariantError('toString() output does not parse again', (e as Error).message);
  }
  check(
    again === text,
    'toString() does not round-trip',
    () => `${JSON.stringify(text)} -> ${JSON.stringify(again)}`,
  );
  return `${label}:encoded`;
}

// --- cpio newc writer ------------------------------------------------------------------------------------------

const PATH_PARTS = ['bin', 'sh', 'a', '.', '..', '', 'lib', 'é', 'x'.repeat(300), 'dev', 'n\0ul'];

function cpioPath(r: ByteReader): string {
  const n = r.u8() % 4;
  const parts: string[] = [];
  for (let i = 0; i <= n; i++) parts.push(PATH_PARTS[r.u8() % PATH_PARTS.length]);
  return (r.bool() ? '/' : '') + parts.join(r.u8() % 8 === 0 ? '//' : '/');
}

function cpioMode(r: ByteReader): number | undefined {
  return r.pick([undefined, 0o755, 0o644, 0o7777, 0o10000, -1, 1.5, 0]);
}

interface ParsedEntry {
  name: string;
  mode: number;
  data: Uint8Array;
  rdevMajor: number;
  rdevMinor: number;
}

/** A strict newc reader: magic, hex fields, NUL-terminated names, 4-byte padding, TRAILER!!! last. */
function parseNewc(archive: Uint8Array): ParsedEntry[] {
  const out: ParsedEntry[] = [];
  const text = (a: number, b: number) => String.fromCharCode(...archive.subarray(a, b));
  let at = 0;
  for (;;) {
    check(at % 4 === 0, 'cpio entry not 4-byte aligned');
    check(at + 110 <= archive.length, 'cpio header runs past the archive');
    check(text(at, at + 6) === '070701', 'bad cpio magic');
    const field = (i: number) => {
      const h = text(at + 6 + 8 * i, at + 14 + 8 * i);
      check(/^[0-9a-f]{8}$/.test(h), 'cpio field is not 8 hex digits', () => JSON.stringify(h));
      return parseInt(h, 16);
    };
    const mode = field(1);
    const filesize = field(6);
    const rdevMajor = field(9);
    const rdevMinor = field(10);
    const namesize = field(11);
    check(namesize >= 2, 'empty name');
    const nameAt = at + 110;
    check(archive[nameAt + namesize - 1] === 0, 'name is not NUL-terminated');
    check(!archive.subarray(nameAt, nameAt + namesize - 1).includes(0), 'NUL inside a name');
    const name = Buffer.from(archive.subarray(nameAt, nameAt + namesize - 1)).toString('utf8');
    let dataAt = nameAt + namesize;
    while (dataAt % 4) check(archive[dataAt++] === 0, 'non-zero header padding');
    check(dataAt + filesize <= archive.length, 'file data runs past the archive');
    const data = archive.subarray(dataAt, dataAt + filesize);
    at = dataAt + filesize;
    while (at % 4) check(archive[at++] === 0, 'non-zero data padding');
    if (name === 'TRAILER!!!') {
      check(at === archive.length, 'bytes after the trailer');
      return out;
    }
    out.push({ name, mode, data, rdevMajor, rdevMinor });
  }
}

/**
 * Adds hostile entries (odd paths, "..", NUL, duplicates, files under files, bad modes and device numbers),
 * each either accepted or rejected with a BootError; the archive must then parse strictly and contain
 * exactly what was accepted, parents before children.
 */
function runCpio(bytes: Uint8Array): string {
  const r = new ByteReader(bytes);
  let w: CpioWriter;
  try {
    w = new CpioWriter({ mtime: r.pick([0, 1_700_000_000, -1, 2 ** 33, 0.5]) });
  } catch (e) {
    return rejected(e);
  }
  const accepted: { path: string; entry: CpioEntry }[] = [];
  let rejects = 0;
  for (let i = 0; i < 12 && !r.done; i++) {
    const path = cpioPath(r);
    let entry: CpioEntry;
    switch (r.u8() % 5) {
      case 0:
        entry = {
          type: 'file',
          path,
          data: r.bool() ? r.filler(r.u16() % 3000) : cmdString(r),
          mode: cpioMode(r),
        };
        break;
      case 1:
        entry = { type: 'dir', path, mode: cpioMode(r) };
        break;
      case 2:
        entry = { type: 'symlink', path, target: r.pick(['/bin/busybox', '', 'a\0b', '../x']) };
        break;
      case 3:
        entry = {
          type: r.bool() ? 'char' : 'block',
          path,
          major: r.pick([1, 5, 0, -1, 2 ** 32, 0.5]),
          minor: r.pick([3, 0, 255, 2 ** 32 - 1]),
          mode: cpioMode(r),
        };
        break;
      default:
        entry = { type: 'fifo', path, mode: cpioMode(r) };
    }
    try {
      w.add(entry);
      accepted.push({ path, entry });
    } catch (e) {
      rejected(e);
      rejects++;
    }
  }
  let archive: Uint8Array;
  try {
    archive = w.finish();
  } catch (e) {
    return rejected(e);
  }
  const entries = parseNewc(archive);
  const names = new Set<string>();
  for (const e of entries) {
    check(!names.has(e.name), 'duplicate cpio name', () => e.name);
    check(
      !e.name.startsWith('/') && !e.name.split('/').some((p) => p === '..' || p === '.' || p === ''),
      'unsafe cpio name',
      () => JSON.stringify(e.name),
    );
    const slash = e.name.lastIndexOf('/');
    if (slash > 0) {
      const parent = entries.find((p) => p.name === e.name.slice(0, slash));
      check(
        parent !== undefined && names.has(parent.name),
        'cpio entry before its parent directory',
        () => e.name,
      );
      check((parent!.mode & 0o170000) === 0o040000, 'cpio parent is not a directory', () => e.name);
    }
    names.add(e.name);
  }
  for (const { entry } of accepted) {
    const name = entry.path
      .split('/')
      .filter((p) => p !== '' && p !== '.')
      .join('/');
    const found = entries.find((e) => e.name === name);
    check(found !== undefined, 'accepted cpio entry missing from the archive', () =>
      JSON.stringify(entry.path),
    );
    if (entry.type === 'file') {
      const data = typeof entry.data === 'string' ? new TextEncoder().encode(entry.data) : entry.data;
      check(Buffer.from(found!.data).equals(Buffer.from(data)), 'cpio file data differs', () => name);
      check((found!.mode & 0o170000) === 0o100000, 'cpio file is not a regular file', () => name);
    }
    if (entry.type === 'char' || entry.type === 'block') {
      check(
        found!.rdevMajor === entry.major && found!.rdevMinor === entry.minor,
        'cpio device numbers differ',
        () => name,
      );
    }
  }
  return `ok:${Math.min(entries.length, 8)}:${Math.min(rejects, 4)}`;
}

// --- ACPI tables and AML --------------------------------------------------------------------------------------

function sum8(data: Uint8Array, start = 0, length = data.length - start): number {
  let s = 0;
  for (let i = start; i < start + length; i++) s = (s + data[i]) & 0xff;
  return s;
}

/** Decodes a PkgLength at `at`: [value, bytes used]. */
function readPkgLength(b: Uint8Array, at: number): [number, number] {
  const lead = b[at];
  const count = lead >> 6;
  if (count === 0) return [lead & 0x3f, 1];
  check((lead & 0x30) === 0, 'PkgLength lead byte has bits 4-5 set');
  let v = lead & 0x0f;
  for (let i = 0; i < count; i++) v |= b[at + 1 + i] << (4 + 8 * i);
  return [v >>> 0, 1 + count];
}

function readNameString(b: Uint8Array, at: number, end: number): number {
  while (at < end && (b[at] === 0x5c || b[at] === 0x5e)) at++;
  check(at < end, 'NameString runs past its package');
  if (b[at] === 0x00) return at + 1;
  let segs = 1;
  if (b[at] === 0x2e) {
    segs = 2;
    at++;
  } else if (b[at] === 0x2f) {
    segs = b[at + 1];
    at += 2;
  }
  for (let s = 0; s < segs; s++) {
    check(at + 4 <= end, 'NameSeg runs past its package');
    check(/^[A-Z_][A-Z0-9_]{3}$/.test(String.fromCharCode(...b.subarray(at, at + 4))), 'invalid NameSeg');
    at += 4;
  }
  return at;
}

/** Walks the AML subset our encoder emits; every package must end exactly where its PkgLength says. */
function walkAml(b: Uint8Array, at: number, end: number): void {
  while (at < end) at = walkTerm(b, at, end);
  check(at === end, 'AML term list overruns its package');
}

function walkPackage(
  b: Uint8Array,
  at: number,
  end: number,
  body: (start: number, stop: number) => void,
): number {
  const [len, used] = readPkgLength(b, at);
  const stop = at + len;
  check(
    len >= used && stop <= end,
    'AML PkgLength runs past its parent',
    () => `${len} at ${at}, parent ends ${end}`,
  );
  body(at + used, stop);
  return stop;
}

function walkTerm(b: Uint8Array, at: number, end: number): number {
  const op = b[at++];
  switch (op) {
    case 0x00:
    case 0x01:
    case 0xff:
      return at;
    case 0x0a:
      return at + 1;
    case 0x0b:
      return at + 2;
    case 0x0c:
      return at + 4;
    case 0x0e:
      return at + 8;
    case 0x0d: {
      const nul = b.indexOf(0, at);
      check(nul >= 0 && nul < end, 'unterminated AML string');
      return nul + 1;
    }
    case 0x08: // NameOp NameString DataRefObject
      return walkTerm(b, readNameString(b, at, end), end);
    case 0x10: // ScopeOp
      return walkPackage(b, at, end, (s, e) => walkAml(b, readNameString(b, s, e), e));
    case 0x14: // MethodOp
      return walkPackage(b, at, end, (s, e) => walkAml(b, readNameString(b, s, e) + 1, e));
    case 0x11: // BufferOp: BufferSize then bytes
      return walkPackage(b, at, end, (s, e) => {
        const after = walkTerm(b, s, e);
        check(after <= e, 'buffer size runs past the buffer');
      });
    case 0x12: // PackageOp: NumElements then elements
      return walkPackage(b, at, end, (s, e) => walkAml(b, s + 1, e));
    case 0xa4:
      return walkTerm(b, at, end);
    case 0x5b:
      check(b[at] === 0x82, 'unexpected AML extended opcode', () => `0x${b[at].toString(16)}`);
      return walkPackage(b, at + 1, end, (s, e) => walkAml(b, readNameString(b, s, e), e));
    default:
      throw new BootInvariantError('unexpected AML opcode', `0x${op.toString(16)} at ${at - 1}`);
  }
}

function checkSdt(table: Uint8Array, signature: string): void {
  check(
    String.fromCharCode(...table.subarray(0, 4)) === signature,
    `ACPI pointer does not lead to ${signature}`,
  );
  check(u32(table, 4) === table.length, `${signature} length field`);
  check(sum8(table) === 0, `${signature} checksum`);
}

function acpiConfig(r: ByteReader): AcpiConfig {
  const n = r.u8() % 12;
  const virtio = [];
  for (let i = 0; i < n; i++) {
    virtio.push({
      base: r.pick([0xd000_0000 + 0x1000 * i, 0xd000_0000, 0xffff_f000, 2 ** 32, -4096, 0.5, r.u32()]),
      size: r.pick([0x1000, 0x1000, 0, -1, 2 ** 32, r.u32()]),
      gsi: r.pick([16 + i, 16, -1, 2 ** 32, 1.5, r.u32()]),
    });
  }
  return {
    vcpus: r.pick([1, 2, 8, 255, 0, 256, 1.5, r.u8()]),
    virtio,
    serial: r.bool(),
    keyboard: r.pick([undefined, true, false]),
  };
}

/** AML primitive encoders with hostile arguments: a BootError or an encoding that decodes back. */
function amlPrimitives(r: ByteReader): void {
  const len = r.pick([
    0,
    62,
    63,
    64,
    0xfff,
    0x1000,
    0xfffff,
    0x100000,
    0xfffffff,
    0x10000000,
    -1,
    1.5,
    r.u32(),
  ]);
  try {
    const p = aml.pkgLength(len);
    const [decoded, used] = readPkgLength(p, 0);
    check(
      used === p.length && decoded === len + p.length,
      'pkgLength does not decode back',
      () => `${len} -> ${decoded}`,
    );
  } catch (e) {
    rejected(e);
  }
  const name = cmdString(r, 20).toUpperCase();
  try {
    const encoded = aml.nameString(name);
    check(readNameString(encoded, 0, encoded.length) === encoded.length, 'nameString does not walk', () =>
      JSON.stringify(name),
    );
  } catch (e) {
    rejected(e);
  }
  const value = r.pick<number | bigint>([
    0,
    1,
    0xff,
    0x100,
    0xffff_ffff,
    2 ** 32,
    -1,
    2n ** 64n - 1n,
    2n ** 64n,
  ]);
  try {
    const encoded = aml.integer(value);
    check(walkTerm(encoded, 0, encoded.length) === encoded.length, 'AML integer length', () => String(value));
  } catch (e) {
    rejected(e);
  }
  const elements = Array.from({ length: r.pick([0, 1, 255, 256]) }, () => aml.integer(r.u8()));
  try {
    const encoded = aml.pkg(elements);
    check(walkTerm(encoded, 0, encoded.length) === encoded.length, 'package');
  } catch (e) {
    rejected(e);
  }
  for (const f of [
    () => aml.string(cmdString(r)),
    () => aml.eisaId(cmdString(r, 8).toUpperCase()),
    () =>
      aml.io(r.pick([0, 0x3f8, 0x10000, -1]), r.pick([0, 0x3f8, 0xffff]), r.pick([1, 256]), r.pick([8, 256])),
    () => aml.memory32Fixed(r.bool(), r.pick([0, 0xffff_f000, 2 ** 32]), r.pick([0x1000, 0x2000, -1])),
    () =>
      aml.extendedInterrupt(
        { shared: r.bool() },
        Array.from({ length: r.pick([0, 1, 255, 256]) }, () => 5),
      ),
    () => aml.irqNoFlags([r.pick([0, 4, 15, 16, -1])]),
    () => aml.method(name, r.pick([0, 7, 8, -1]), r.bool(), [aml.ret(aml.integer(1))]),
  ]) {
    try {
      const encoded = f();
      check(encoded.length > 0, 'empty encoding');
    } catch (e) {
      rejected(e);
    }
  }
}

/**
 * ACPI configurations from hostile callers, and AML primitives with hostile arguments. Accepted tables must
 * have correct lengths and checksums, pointers that lead to each other, a DSDT whose AML walks exactly, and
 * still check out after the fw_cfg relocation at arbitrary addresses.
 */
function runAcpi(bytes: Uint8Array): string {
  const r = new ByteReader(bytes);
  amlPrimitives(r);
  const config = acpiConfig(r);
  let fixed;
  try {
    fixed = buildAcpiTables(config);
  } catch (e) {
    return rejected(e);
  }
  const mem = new Map<number, Uint8Array>(fixed.writes.map((w) => [w.gpa, w.data]));
  const rsdp = mem.get(fixed.rsdpAddr)!;
  check(String.fromCharCode(...rsdp.subarray(0, 8)) === 'RSD PTR ', 'RSDP signature');
  check(sum8(rsdp, 0, 20) === 0 && sum8(rsdp) === 0, 'RSDP checksums');
  const blobAddr = fixed.writes[1].gpa;
  const blob = fixed.writes[1].data;
  const tableAt = (addr: number) => {
    const off = addr - blobAddr;
    check(
      off >= 0 && off + 36 <= blob.length,
      'ACPI pointer outside the tables',
      () => `0x${addr.toString(16)}`,
    );
    return blob.subarray(off, off + u32(blob, off + 4));
  };
  const xsdtAddr = Number(new DataView(rsdp.buffer, rsdp.byteOffset).getBigUint64(24, true));
  const xsdt = tableAt(xsdtAddr);
  checkSdt(xsdt, 'XSDT');
  const dv = new DataView(xsdt.buffer, xsdt.byteOffset, xsdt.byteLength);
  const fadt = tableAt(Number(dv.getBigUint64(36, true)));
  checkSdt(fadt, 'FACP');
  const madt = tableAt(Number(dv.getBigUint64(44, true)));
  checkSdt(madt, 'APIC');
  check(madt.length === 44 + 8 * config.vcpus + 12, 'MADT does not have one LAPIC per vCPU');
  const dsdtAddr = Number(new DataView(fadt.buffer, fadt.byteOffset).getBigUint64(140, true));
  check(u32(fadt, 40) === dsdtAddr, 'FADT DSDT and X_DSDT differ');
  const dsdt = tableAt(dsdtAddr);
  checkSdt(dsdt, 'DSDT');
  walkAml(dsdt, 36, dsdt.length);
  const relocatable = buildRelocatableAcpi(config);
  const addresses = {
    'etc/acpi/rsdp': 0xf0000 + 16 * (r.u8() % 64),
    'etc/acpi/tables': 0x10_0000 + 64 * r.u16(),
  };
  const files = relocateAcpi(relocatable, addresses);
  const reRsdp = files.get('etc/acpi/rsdp')!;
  check(sum8(reRsdp, 0, 20) === 0 && sum8(reRsdp) === 0, 'relocated RSDP checksums');
  for (const c of relocatable.checksums) {
    check(
      sum8(files.get(c.file)!, c.start, c.length) === 0,
      'relocated ACPI checksum',
      () => `${c.file}@${c.start}`,
    );
  }
  return `ok:${Math.min(config.virtio.length, 9)}:${config.serial}:${config.keyboard}`;
}

// --- The targets ---------------------------------------------------------------------------------------------

export const BOOT_FUZZ_TARGETS: readonly FuzzTarget[] = [
  {
    name: 'boot-bzimage',
    description: 'bzImage setup header parse, placement in RAM, host decompression of the payload',
    run: runBzImage,
    seeds: bzImageSeeds,
    maxLength: 8192,
  },
  {
    name: 'boot-decompress',
    description: 'kernel payload decompression: gzip, LZ4 legacy frames and raw LZ4 blocks',
    run: runDecompress,
    seeds: decompressSeeds,
    maxLength: 4096,
  },
  {
    name: 'boot-elf',
    description: 'ELF64 kernel loader: program headers, PT_NOTE walk, PVH entry, load writes',
    run: runElf,
    seeds: elfSeeds,
    maxLength: 4096,
  },
  {
    name: 'boot-linux-plan',
    description: 'the whole Linux boot plan: every write inside RAM, no write over another',
    run: runLinux,
    seeds: linuxSeeds,
    maxLength: 8192,
  },
  {
    name: 'boot-cmdline',
    description: 'command line builder: set/setDefault/remove with hostile keys and values, round trip',
    run: runCmdline,
    seeds: () => [new Uint8Array(0), Uint8Array.from([3, 1, 2, 3, 0, 0, 5, 1, 1, 6, 0, 2])],
    maxLength: 256,
  },
  {
    name: 'boot-cpio',
    description: 'cpio newc writer: hostile paths, types, modes; the archive parses strictly back',
    run: runCpio,
    seeds: () => [new Uint8Array(0), Uint8Array.from([0, 1, 0, 0, 1, 0, 0, 0, 1, 2, 0, 3, 1])],
    maxLength: 512,
  },
  {
    name: 'boot-acpi',
    description: 'ACPI tables (RSDP/XSDT/FADT/MADT/DSDT) and AML encoders: lengths, checksums, AML structure',
    run: runAcpi,
    seeds: () => [
      new Uint8Array(0),
      Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1]),
    ],
    maxLength: 512,
  },
];
