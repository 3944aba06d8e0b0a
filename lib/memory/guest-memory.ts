/**
 * Guest physical memory: a set of non-overlapping regions, each backed by host memory, with bounds-checked
 * accessors. Devices get a GuestMemory and nothing else; every guest-supplied address goes through here.
 */

/** What a region is backed by on the host, as actually obtained. */
export type Backing = '4k' | 'thp' | 'hugetlb';

export interface MemoryRegion {
  /** Guest-physical base address. */
  readonly gpa: number;
  /** Length in bytes. */
  readonly size: number;
  readonly backing: Backing;
}

/** Thrown when a guest-physical range is not entirely inside one region. */
export class GuestMemoryError extends RangeError {
  readonly code = 'ERR_GUEST_MEMORY_RANGE';
  constructor(
    readonly gpa: number,
    readonly length: number,
  ) {
    super(`guest-physical range 0x${gpa.toString(16)}+0x${length.toString(16)} is outside guest memory`);
    this.name = 'GuestMemoryError';
  }
}

interface Region extends MemoryRegion {
  readonly end: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly discard?: (offset: number, length: number) => void;
}

export interface RegionSource {
  gpa: number;
  buffer: ArrayBuffer | Uint8Array;
  backing?: Backing;
  /** Returns [offset, offset+length) of this region's host pages to the host (e.g. madvise DONTNEED). */
  discard?: (offset: number, length: number) => void;
}

export class GuestMemory {
  private readonly list: Region[];
  private last: Region;

  /** Builds guest memory over existing host buffers (tests, or mappings made by the memory allocator). */
  constructor(sources: readonly RegionSource[]) {
    if (sources.length === 0) throw new RangeError('guest memory needs at least one region');
    const list: Region[] = sources.map((s) => {
      if (!Number.isSafeInteger(s.gpa) || s.gpa < 0) throw new RangeError(`region gpa ${s.gpa} is invalid`);
      const bytes = s.buffer instanceof Uint8Array ? s.buffer : new Uint8Array(s.buffer);
      if (bytes.byteLength === 0) throw new RangeError(`region at 0x${s.gpa.toString(16)} is empty`);
      return {
        gpa: s.gpa,
        size: bytes.byteLength,
        end: s.gpa + bytes.byteLength,
        backing: s.backing ?? '4k',
        bytes,
        view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        discard: s.discard,
      };
    });
    list.sort((a, b) => a.gpa - b.gpa);
    for (let i = 1; i < list.length; i++) {
      if (list[i].gpa < list[i - 1].end) {
        throw new RangeError(
          `regions at 0x${list[i - 1].gpa.toString(16)} and 0x${list[i].gpa.toString(16)} overlap`,
        );
      }
    }
    this.list = list;
    this.last = list[0];
  }

  get regions(): readonly MemoryRegion[] {
    return this.list.map(({ gpa, size, backing }) => ({ gpa, size, backing }));
  }

  /** Total bytes of guest RAM. */
  get size(): number {
    let total = 0;
    for (const r of this.list) total += r.size;
    return total;
  }

  /** True when [gpa, gpa+length) lies inside one region. */
  contains(gpa: number, length: number): boolean {
    return this.find(gpa, length) !== undefined;
  }

  private find(gpa: number, length: number): Region | undefined {
    if (!(gpa >= 0) || !(length >= 0) || !Number.isSafeInteger(gpa) || !Number.isSafeInteger(length)) {
      return undefined;
    }
    const last = this.last;
    if (gpa >= last.gpa && gpa + length <= last.end) return last;
    for (const r of this.list) {
      if (gpa >= r.gpa && gpa + length <= r.end) {
        this.last = r;
        return r;
      }
    }
    return undefined;
  }

  private region(gpa: number, length: number): Region {
    const r = this.find(gpa, length);
    if (r === undefined) throw new GuestMemoryError(gpa, length);
    return r;
  }

  /**
   * A zero-copy view of exactly [gpa, gpa+length): for handing one validated guest buffer to host I/O.
   * Throws GuestMemoryError when the range is not inside one region.
   */
  view(gpa: number, length: number): Uint8Array {
    const r = this.region(gpa, length);
    return r.bytes.subarray(gpa - r.gpa, gpa - r.gpa + length);
  }

  /** Like view(), but returns undefined instead of throwing (for guest-supplied ranges on hot paths). */
  tryView(gpa: number, length: number): Uint8Array | undefined {
    const r = this.find(gpa, length);
    return r === undefined ? undefined : r.bytes.subarray(gpa - r.gpa, gpa - r.gpa + length);
  }

  /** Copies [gpa, gpa+length) out of the guest. */
  read(gpa: number, length: number): Uint8Array {
    return this.view(gpa, length).slice();
  }

  /** Copies guest bytes at gpa into target (target.length bytes). */
  readInto(gpa: number, target: Uint8Array): void {
    target.set(this.view(gpa, target.length));
  }

  /** Copies data into the guest at gpa. */
  write(gpa: number, data: Uint8Array | readonly number[]): void {
    this.view(gpa, data.length).set(data);
  }

  /**
   * Gives the host pages behind [gpa, gpa+length) back to the host (balloon inflate). The range reads as zeros
   * afterwards. gpa and length must be 4 KiB aligned.
   */
  discard(gpa: number, length: number): void {
    if (gpa % 4096 !== 0 || length % 4096 !== 0) throw new GuestMemoryError(gpa, length);
    const r = this.region(gpa, length);
    if (r.discard !== undefined) r.discard(gpa - r.gpa, length);
    else r.bytes.fill(0, gpa - r.gpa, gpa - r.gpa + length);
  }

  fill(gpa: number, length: number, value = 0): void {
    this.view(gpa, length).fill(value);
  }

  u8(gpa: number): number {
    const r = this.region(gpa, 1);
    return r.bytes[gpa - r.gpa];
  }
  u16(gpa: number): number {
    const r = this.region(gpa, 2);
    return r.view.getUint16(gpa - r.gpa, true);
  }
  u32(gpa: number): number {
    const r = this.region(gpa, 4);
    return r.view.getUint32(gpa - r.gpa, true);
  }
  u64(gpa: number): bigint {
    const r = this.region(gpa, 8);
    return r.view.getBigUint64(gpa - r.gpa, true);
  }
  /** A 64-bit little-endian value as a number; throws if it exceeds 2^53 (guest addresses, lengths). */
  u64n(gpa: number): number {
    const r = this.region(gpa, 8);
    const lo = r.view.getUint32(gpa - r.gpa, true);
    const hi = r.view.getUint32(gpa - r.gpa + 4, true);
    if (hi > 0x1fffff) throw new GuestMemoryError(gpa, 8);
    return hi * 0x1_0000_0000 + lo;
  }

  setU8(gpa: number, value: number): void {
    const r = this.region(gpa, 1);
    r.bytes[gpa - r.gpa] = value;
  }
  setU16(gpa: number, value: number): void {
    const r = this.region(gpa, 2);
    r.view.setUint16(gpa - r.gpa, value, true);
  }
  setU32(gpa: number, value: number): void {
    const r = this.region(gpa, 4);
    r.view.setUint32(gpa - r.gpa, value >>> 0, true);
  }
  setU64(gpa: number, value: bigint | number): void {
    const r = this.region(gpa, 8);
    r.view.setBigUint64(gpa - r.gpa, BigInt(value), true);
  }
}
