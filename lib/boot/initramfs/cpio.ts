/**
 * cpio "newc" archives (the format the kernel unpacks into its initramfs, Documentation/driver-api/
 * early-userspace/buffer-format.rst): 110-byte ASCII-hex headers, NUL-terminated names, header+name and data
 * each padded to 4 bytes, a TRAILER!!! entry at the end. Owners are root, times fixed, so builds reproduce.
 */
import { gzipSync } from 'node:zlib';
import { BootError } from '../errors.js';

export const S_IFMT = 0o170000;
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFDIR = 0o040000;
export const S_IFBLK = 0o060000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

const MAGIC = '070701';
const HEADER_SIZE = 110;
const TRAILER = 'TRAILER!!!';

export type CpioEntry =
  | { type: 'file'; path: string; data: Uint8Array | string; mode?: number }
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char' | 'block'; path: string; major: number; minor: number; mode?: number }
  | { type: 'fifo'; path: string; mode?: number };

export interface CpioOptions {
  /** Modification time of every entry, seconds since the epoch (default 0, for reproducible archives). */
  mtime?: number;
}

function fail(why: string): never {
  throw new BootError('BAD_CPIO', why);
}

/** "/bin//sh" → "bin/sh"; rejects empty names, "." / ".." components and NUL. */
export function normalizeCpioPath(path: string): string {
  if (path.includes('\0')) fail(`cpio path ${JSON.stringify(path)} contains NUL`);
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0) fail(`cpio path ${JSON.stringify(path)} names no file`);
  if (parts.includes('..')) fail(`cpio path ${JSON.stringify(path)} contains ".."`);
  return parts.join('/');
}

function checkPerm(mode: number, path: string): number {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) fail(`bad permission bits ${mode} for ${path}`);
  return mode;
}

/** Accumulates entries (creating missing parent directories) and writes the archive. */
function validateEntry(entry: CpioEntry, path: string): void {
  switch (entry.type) {
    case 'symlink':
      if (entry.target === '' || entry.target.includes('\0')) fail(`bad symlink target for ${path}`);
      break;
    case 'char':
    case 'block':
      for (const n of [entry.major, entry.minor]) {
        if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) fail(`bad device number ${n} for ${path}`);
      }
      checkPerm(entry.mode ?? 0o600, path);
      break;
    case 'file':
      checkPerm(entry.mode ?? 0o644, path);
      break;
    case 'dir':
      checkPerm(entry.mode ?? 0o755, path);
      break;
    case 'fifo':
      checkPerm(entry.mode ?? 0o644, path);
      break;
    default:
      fail(`unknown cpio entry type for ${path}`);
  }
}

export class CpioWriter {
  private readonly chunks: Uint8Array[] = [];
  private readonly seen = new Map<string, CpioEntry['type']>();
  private ino = 1;
  private size = 0;
  private readonly mtime: number;
  private finished = false;

  constructor(options: CpioOptions = {}) {
    this.mtime = options.mtime ?? 0;
    if (!Number.isInteger(this.mtime) || this.mtime < 0 || this.mtime > 0xffff_ffff) fail('bad mtime');
  }

  add(entry: CpioEntry): this {
    if (this.finished) fail('cpio archive already finished');
    const path = normalizeCpioPath(entry.path);
    // Validate everything first: a rejected entry must leave no trace (no parents, no 'seen' record).
    validateEntry(entry, path);
    this.ensureParents(path);
    const prev = this.seen.get(path);
    if (prev !== undefined) {
      if (prev === 'dir' && entry.type === 'dir') return this; // mkdir -p semantics
      fail(`duplicate cpio path ${path}`);
    }
    this.seen.set(path, entry.type);
    const enc = new TextEncoder();
    switch (entry.type) {
      case 'file': {
        const data = typeof entry.data === 'string' ? enc.encode(entry.data) : entry.data;
        this.record(path, S_IFREG | checkPerm(entry.mode ?? 0o644, path), 1, data, 0, 0);
        break;
      }
      case 'dir':
        this.record(path, S_IFDIR | checkPerm(entry.mode ?? 0o755, path), 2, new Uint8Array(0), 0, 0);
        break;
      case 'symlink':
        if (entry.target === '' || entry.target.includes('\0')) fail(`bad symlink target for ${path}`);
        this.record(path, S_IFLNK | 0o777, 1, enc.encode(entry.target), 0, 0);
        break;
      case 'char':
      case 'block': {
        for (const n of [entry.major, entry.minor]) {
          if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) fail(`bad device number ${n} for ${path}`);
        }
        const kind = entry.type === 'char' ? S_IFCHR : S_IFBLK;
        this.record(
          path,
          kind | checkPerm(entry.mode ?? 0o600, path),
          1,
          new Uint8Array(0),
          entry.major,
          entry.minor,
        );
        break;
      }
      case 'fifo':
        this.record(path, S_IFIFO | checkPerm(entry.mode ?? 0o644, path), 1, new Uint8Array(0), 0, 0);
        break;
    }
    return this;
  }

  file(path: string, data: Uint8Array | string, mode?: number): this {
    return this.add({ type: 'file', path, data, mode });
  }

  dir(path: string, mode?: number): this {
    return this.add({ type: 'dir', path, mode });
  }

  symlink(path: string, target: string): this {
    return this.add({ type: 'symlink', path, target });
  }

  charDevice(path: string, major: number, minor: number, mode?: number): this {
    return this.add({ type: 'char', path, major, minor, mode });
  }

  has(path: string): boolean {
    return this.seen.has(normalizeCpioPath(path));
  }

  /** The archive: every entry, then TRAILER!!!. */
  finish(): Uint8Array {
    if (!this.finished) {
      this.record(TRAILER, 0, 1, new Uint8Array(0), 0, 0, 0);
      this.finished = true;
    }
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }

  private ensureParents(path: string): void {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      const kind = this.seen.get(dir);
      if (kind === undefined) {
        this.seen.set(dir, 'dir');
        this.record(dir, S_IFDIR | 0o755, 2, new Uint8Array(0), 0, 0);
      } else if (kind !== 'dir') fail(`${dir} is a ${kind}, so ${path} cannot be inside it`);
    }
  }

  private record(
    name: string,
    mode: number,
    nlink: number,
    data: Uint8Array,
    rdevMajor: number,
    rdevMinor: number,
    ino = this.ino++,
  ): void {
    if (data.length > 0xffff_ffff) fail(`${name} is too large for cpio newc`);
    const nameBytes = new TextEncoder().encode(name + '\0');
    const hex8 = (n: number) => (n >>> 0).toString(16).padStart(8, '0');
    const fields = [
      ino,
      mode,
      0,
      0,
      nlink,
      this.mtime,
      data.length,
      0,
      0,
      rdevMajor,
      rdevMinor,
      nameBytes.length,
      0,
    ];
    const header = MAGIC + fields.map(hex8).join('');
    const headLen = pad4(HEADER_SIZE + nameBytes.length);
    const head = new Uint8Array(headLen);
    for (let i = 0; i < HEADER_SIZE; i++) head[i] = header.charCodeAt(i);
    head.set(nameBytes, HEADER_SIZE);
    this.push(head);
    if (data.length) {
      this.push(data);
      const padding = pad4(data.length) - data.length;
      if (padding) this.push(new Uint8Array(padding));
    }
  }

  private push(c: Uint8Array): void {
    this.chunks.push(c);
    this.size += c.length;
  }
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** A newc archive of `entries`. */
export function writeCpio(entries: readonly CpioEntry[], options?: CpioOptions): Uint8Array {
  const w = new CpioWriter(options);
  for (const e of entries) w.add(e);
  return w.finish();
}

/** gzip, as the kernel's initramfs unpacker accepts it. */
export function gzip(data: Uint8Array): Uint8Array {
  const z = gzipSync(data, { level: 9 });
  return new Uint8Array(z.buffer, z.byteOffset, z.byteLength);
}
