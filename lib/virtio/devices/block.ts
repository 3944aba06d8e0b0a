/**
 * virtio-blk (§5.2) over a raw image. One request queue. Requests: IN, OUT, FLUSH (fdatasync), GET_ID,
 * DISCARD (punch hole) and WRITE_ZEROES (zero range / punch hole, falling back to writing zeros).
 *
 * Guest data moves straight between the image and guest memory views (no bounce buffer). The device never
 * makes assumptions about how a request is split into descriptors (§2.7.4): the header is the first 16
 * readable bytes, the status is the last writable byte.
 *
 * Errors: a request the guest built wrong (short header, bad length, out-of-range sector) or a host I/O error
 * (EIO, ENOSPC...) completes with VIRTIO_BLK_S_IOERR and the device carries on; unknown types get
 * VIRTIO_BLK_S_UNSUPP. A chain with no writable byte cannot carry a status: it is returned with length 0.
 *
 * Durability: VIRTIO_BLK_F_FLUSH is offered. A driver that negotiates it gets a writeback cache and FLUSH
 * makes writes stable; a driver that does not gets writethrough (every write is fdatasync'ed before it
 * completes), as §5.2.6.1 requires when FLUSH was offered but not negotiated.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import {
  BLK_CFG_CAPACITY,
  BLK_CFG_DISCARD_SECTOR_ALIGNMENT,
  BLK_CFG_MAX_DISCARD_SECTORS,
  BLK_CFG_MAX_DISCARD_SEG,
  BLK_CFG_MAX_WRITE_ZEROES_SECTORS,
  BLK_CFG_MAX_WRITE_ZEROES_SEG,
  BLK_CFG_SEG_MAX,
  BLK_CFG_SIZE,
  BLK_CFG_WRITE_ZEROES_MAY_UNMAP,
  VIRTIO_BLK_DWZ_SEGMENT_SIZE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_REQ_HEADER_SIZE,
  VIRTIO_BLK_SECTOR_SIZE,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
  VIRTIO_ID_BLOCK,
  bit,
} from '../constants.js';
import { VirtioDeviceBase } from '../device.js';
import {
  EIO,
  EOPNOTSUPP,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  type BlockFileIo,
} from '../host-io.js';
import type { DescriptorChain } from '../queue.js';

/** Storage behind a block device. Data calls return a byte count / 0, or a negative errno; they never throw. */
export interface BlockBackend {
  /** Size in bytes, a multiple of 512. */
  readonly size: number;
  readonly readOnly: boolean;
  read(buffer: Uint8Array, offset: number): number;
  write(buffer: Uint8Array, offset: number): number;
  /** Makes completed writes durable: 0 or -errno. */
  flush(): number;
  /** May deallocate [offset, offset+length); reads after it are unspecified. 0 or -errno. */
  discard(offset: number, length: number): number;
  /** Makes [offset, offset+length) read as zeros, deallocating it if `unmap`. 0 or -errno. */
  writeZeroes(offset: number, length: number, unmap: boolean): number;
  close(): void;
}

/** A block image could not be attached: missing, unreadable, not writable, or of a bad size. */
export class BlockImageError extends Error {
  readonly code = 'ERR_VIRTIO_BLOCK_IMAGE';
  constructor(
    message: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BlockImageError';
  }
}

const ZERO_CHUNK = new Uint8Array(64 * 1024);

/** A raw image file. Open it with `FileBlockBackend.open()` (errors are BlockImageError, at attach time). */
export class FileBlockBackend implements BlockBackend {
  private zeroRangeWorks = true;
  private punchHoleWorks = true;
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly size: number,
    readonly readOnly: boolean,
    readonly path: string,
    private readonly io: BlockFileIo,
  ) {}

  /**
   * Opens `path` read-write (or read-only) through node:fs and does all I/O through `io` (the native host I/O:
   * `native().hostIo`, or `nodeFsBlockIo` where the addon is missing).
   */
  static open(path: string, options: { readOnly?: boolean; io: BlockFileIo }): FileBlockBackend {
    const readOnly = options.readOnly ?? false;
    let fd: number;
    try {
      fd = openSync(path, readOnly ? 'r' : 'r+');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      const hint =
        code === 'ENOENT'
          ? 'the file does not exist'
          : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
            ? readOnly
              ? 'permission denied'
              : 'permission denied for writing (attach it read-only, or fix its permissions)'
            : String((error as Error).message);
      throw new BlockImageError(`cannot open block image ${path}: ${hint} (${code})`, path, { cause: error });
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new BlockImageError(`block image ${path} is not a regular file`, path);
      if (st.size === 0) throw new BlockImageError(`block image ${path} is empty`, path);
      if (st.size % VIRTIO_BLK_SECTOR_SIZE !== 0) {
        throw new BlockImageError(
          `block image ${path} is ${st.size} bytes, not a multiple of ${VIRTIO_BLK_SECTOR_SIZE} ` +
            `(pad it, e.g. truncate -s %512 ${path})`,
          path,
        );
      }
      return new FileBlockBackend(fd, st.size, readOnly, path, options.io);
    } catch (error) {
      closeSync(fd);
      if (error instanceof BlockImageError) throw error;
      throw new BlockImageError(`cannot stat block image ${path}: ${(error as Error).message}`, path, {
        cause: error,
      });
    }
  }

  read(buffer: Uint8Array, offset: number): number {
    return this.io.pread(this.fd, buffer, offset);
  }

  write(buffer: Uint8Array, offset: number): number {
    return this.io.pwrite(this.fd, buffer, offset);
  }

  flush(): number {
    return this.io.fdatasync(this.fd);
  }

  discard(offset: number, length: number): number {
    if (!this.punchHoleWorks) return 0;
    const r = this.io.fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
    // Discard is advisory: a file system without hole punching simply keeps the blocks.
    if (r === -EOPNOTSUPP) {
      this.punchHoleWorks = false;
      return 0;
    }
    return r;
  }

  writeZeroes(offset: number, length: number, unmap: boolean): number {
    if (unmap && this.punchHoleWorks) {
      const r = this.io.fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
      if (r !== -EOPNOTSUPP) return r;
      this.punchHoleWorks = false;
    }
    if (this.zeroRangeWorks) {
      const r = this.io.fallocate(this.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length);
      if (r !== -EOPNOTSUPP) return r;
      this.zeroRangeWorks = false;
    }
    for (let done = 0; done < length;) {
      const n = Math.min(ZERO_CHUNK.length, length - done);
      const r = writeFully(this, ZERO_CHUNK.subarray(0, n), offset + done);
      if (r < 0) return r;
      done += n;
    }
    return 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Close through node:fs, which opened it: inside a worker, Node tracks fds opened by fs and closes any still
    // tracked when the worker exits, which would close whatever reused the number.
    closeSync(this.fd);
  }
}

/** An image in memory, for tests and fuzzing; `failWith` injects an errno into the next data calls. */
export class MemoryBlockBackend implements BlockBackend {
  readonly bytes: Uint8Array;
  /** When set, read/write/flush/discard/writeZeroes return -failWith (and do nothing). */
  failWith = 0;
  flushes = 0;

  constructor(
    image: number | Uint8Array,
    readonly readOnly = false,
  ) {
    this.bytes = typeof image === 'number' ? new Uint8Array(image) : image;
    if (this.bytes.length % VIRTIO_BLK_SECTOR_SIZE !== 0) {
      throw new RangeError(`image size ${this.bytes.length} is not a multiple of ${VIRTIO_BLK_SECTOR_SIZE}`);
    }
  }

  get size(): number {
    return this.bytes.length;
  }

  read(buffer: Uint8Array, offset: number): number {
    if (this.failWith) return -this.failWith;
    const n = Math.max(0, Math.min(buffer.length, this.bytes.length - offset));
    buffer.set(this.bytes.subarray(offset, offset + n));
    return n;
  }

  write(buffer: Uint8Array, offset: number): number {
    if (this.failWith) return -this.failWith;
    const n = Math.max(0, Math.min(buffer.length, this.bytes.length - offset));
    this.bytes.set(buffer.subarray(0, n), offset);
    return n;
  }

  flush(): number {
    if (this.failWith) return -this.failWith;
    this.flushes++;
    return 0;
  }

  discard(offset: number, length: number): number {
    return this.writeZeroes(offset, length, true);
  }

  writeZeroes(offset: number, length: number, _unmap = false): number {
    if (this.failWith) return -this.failWith;
    this.bytes.fill(0, offset, offset + length);
    return 0;
  }

  close(): void {}
}

function readFully(backend: BlockBackend, view: Uint8Array, offset: number): number {
  for (let done = 0; done < view.length;) {
    const n = backend.read(done === 0 ? view : view.subarray(done), offset + done);
    if (n < 0) return n;
    if (n === 0) return -EIO; // the image shrank under us
    done += n;
  }
  return 0;
}

function writeFully(backend: BlockBackend, view: Uint8Array, offset: number): number {
  for (let done = 0; done < view.length;) {
    const n = backend.write(done === 0 ? view : view.subarray(done), offset + done);
    if (n < 0) return n;
    if (n === 0) return -EIO;
    done += n;
  }
  return 0;
}

export interface BlockOptions {
  backend: BlockBackend;
  /** Device ID string returned by GET_ID (ASCII, at most 20 bytes). Default "node-kvm". */
  serial?: string;
  /** Queue size (power of two). Default 256. */
  queueSize?: number;
  /** Offer DISCARD (default: true unless read-only). */
  discard?: boolean;
  /** Offer WRITE_ZEROES (default: true unless read-only). */
  writeZeroes?: boolean;
  /** Config limits for DISCARD / WRITE_ZEROES: sectors per segment and segments per request. */
  maxDiscardSectors?: number;
  maxDiscardSegments?: number;
  maxWriteZeroesSectors?: number;
  maxWriteZeroesSegments?: number;
}

export interface BlockStats {
  reads: number;
  writes: number;
  flushes: number;
  discards: number;
  writeZeroes: number;
  bytesRead: number;
  bytesWritten: number;
  /** Requests completed with IOERR because the host I/O failed. */
  ioErrors: number;
  /** Last host errno seen (positive), 0 if none. */
  lastErrno: number;
  /** Requests completed with UNSUPP. */
  unsupported: number;
}

const REQUEST_QUEUE = 0;

export class VirtioBlock extends VirtioDeviceBase {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly name = 'virtio-blk';
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures: bigint;
  readonly backend: BlockBackend;
  readonly stats: BlockStats = {
    reads: 0,
    writes: 0,
    flushes: 0,
    discards: 0,
    writeZeroes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    ioErrors: 0,
    lastErrno: 0,
    unsupported: 0,
  };
  private readonly capacitySectors: number;
  private readonly serial: Uint8Array;
  private readonly limits: { discardSectors: number; discardSegs: number; wzSectors: number; wzSegs: number };
  private readonly header = new Uint8Array(VIRTIO_BLK_REQ_HEADER_SIZE);
  private readonly headerView = new DataView(this.header.buffer);
  private readonly statusByte = new Uint8Array(1);
  private writethrough = false;

  constructor(options: BlockOptions) {
    super(BLK_CFG_SIZE);
    const backend = options.backend;
    if (backend.size % VIRTIO_BLK_SECTOR_SIZE !== 0 || backend.size <= 0) {
      throw new RangeError(`block backend size ${backend.size} is not a positive multiple of 512`);
    }
    this.backend = backend;
    const queueSize = options.queueSize ?? 256;
    this.queueMaxSizes = [queueSize];
    this.capacitySectors = backend.size / VIRTIO_BLK_SECTOR_SIZE;
    const serial = new TextEncoder().encode(options.serial ?? 'node-kvm');
    if (serial.length > VIRTIO_BLK_ID_BYTES) throw new RangeError(`block serial is longer than 20 bytes`);
    this.serial = new Uint8Array(VIRTIO_BLK_ID_BYTES);
    this.serial.set(serial);
    this.limits = {
      discardSectors: options.maxDiscardSectors ?? 1 << 22,
      discardSegs: options.maxDiscardSegments ?? 16,
      wzSectors: options.maxWriteZeroesSectors ?? 1 << 22,
      wzSegs: options.maxWriteZeroesSegments ?? 16,
    };
    const writable = !backend.readOnly;
    let features = bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_FLUSH);
    if (backend.readOnly) features |= bit(VIRTIO_BLK_F_RO);
    if (writable && (options.discard ?? true)) features |= bit(VIRTIO_BLK_F_DISCARD);
    if (writable && (options.writeZeroes ?? true)) features |= bit(VIRTIO_BLK_F_WRITE_ZEROES);
    this.deviceFeatures = features;

    const c = this.configView;
    c.setBigUint64(BLK_CFG_CAPACITY, BigInt(this.capacitySectors), true);
    // Header and status take two descriptors of a chain that can be at most queueSize long.
    c.setUint32(BLK_CFG_SEG_MAX, Math.max(1, queueSize - 2), true);
    c.setUint32(BLK_CFG_MAX_DISCARD_SECTORS, this.limits.discardSectors, true);
    c.setUint32(BLK_CFG_MAX_DISCARD_SEG, this.limits.discardSegs, true);
    c.setUint32(BLK_CFG_DISCARD_SECTOR_ALIGNMENT, 1, true);
    c.setUint32(BLK_CFG_MAX_WRITE_ZEROES_SECTORS, this.limits.wzSectors, true);
    c.setUint32(BLK_CFG_MAX_WRITE_ZEROES_SEG, this.limits.wzSegs, true);
    this.config[BLK_CFG_WRITE_ZEROES_MAY_UNMAP] = 1;
  }

  /** Capacity in 512-byte sectors. */
  get capacity(): number {
    return this.capacitySectors;
  }

  activate(): void {
    this.writethrough = (this.ctx.features & bit(VIRTIO_BLK_F_FLUSH)) === 0n;
    this.process();
  }

  queueNotify(_queue: number): void {
    this.process();
  }

  reset(): void {}

  private has(featureBit: number): boolean {
    return (this.ctx.features & bit(featureBit)) !== 0n;
  }

  private process(): void {
    const ctx = this.ctx;
    if (!ctx.queueUsable(REQUEST_QUEUE)) return;
    const q = ctx.queues[REQUEST_QUEUE];
    while (q.pop()) {
      const chain = q.chain;
      if (chain.writableBytes === 0) {
        // No place for a status byte: the request cannot be answered, only returned.
        this.errors.badRequests++;
        q.pushUsed(chain.head, 0);
        continue;
      }
      this.statusByte[0] = this.handle(chain);
      chain.writeFrom(chain.writableBytes - 1, this.statusByte);
      q.pushUsed(chain.head, chain.writableBytes);
    }
    ctx.signalUsed(REQUEST_QUEUE);
  }

  private ioError(errno: number): number {
    this.stats.ioErrors++;
    this.stats.lastErrno = -errno;
    return VIRTIO_BLK_S_IOERR;
  }

  private badRequest(): number {
    this.errors.badRequests++;
    return VIRTIO_BLK_S_IOERR;
  }

  /** Whether [sector, sector + bytes/512) lies inside the disk. */
  private inRange(sector: number, bytes: number): boolean {
    return sector <= this.capacitySectors && bytes / VIRTIO_BLK_SECTOR_SIZE <= this.capacitySectors - sector;
  }

  private handle(chain: DescriptorChain): number {
    if (chain.readInto(0, this.header) < VIRTIO_BLK_REQ_HEADER_SIZE) return this.badRequest();
    const type = this.headerView.getUint32(0, true);
    const sectorHigh = this.headerView.getUint32(12, true);
    // Sectors past 2^53 are out of range for any image; clamp so the range checks reject them.
    const sector =
      sectorHigh > 0x1f_ffff
        ? Number.MAX_SAFE_INTEGER
        : sectorHigh * 0x1_0000_0000 + this.headerView.getUint32(8, true);
    switch (type) {
      case VIRTIO_BLK_T_IN:
        return this.read(chain, sector);
      case VIRTIO_BLK_T_OUT:
        return this.write(chain, sector);
      case VIRTIO_BLK_T_FLUSH: {
        this.stats.flushes++;
        const r = this.backend.flush();
        return r < 0 ? this.ioError(r) : VIRTIO_BLK_S_OK;
      }
      case VIRTIO_BLK_T_GET_ID:
        chain.writeFrom(0, this.serial.subarray(0, Math.min(VIRTIO_BLK_ID_BYTES, chain.writableBytes - 1)));
        return VIRTIO_BLK_S_OK;
      case VIRTIO_BLK_T_DISCARD:
        if (!this.has(VIRTIO_BLK_F_DISCARD)) break;
        return this.discardOrZero(chain, false);
      case VIRTIO_BLK_T_WRITE_ZEROES:
        if (!this.has(VIRTIO_BLK_F_WRITE_ZEROES)) break;
        return this.discardOrZero(chain, true);
    }
    this.stats.unsupported++;
    return VIRTIO_BLK_S_UNSUPP;
  }

  private read(chain: DescriptorChain, sector: number): number {
    const length = chain.writableBytes - 1;
    if (length % VIRTIO_BLK_SECTOR_SIZE !== 0 || !this.inRange(sector, length)) return this.badRequest();
    let position = sector * VIRTIO_BLK_SECTOR_SIZE;
    let errno = 0;
    chain.forEachRange(true, 0, length, (view) => {
      errno = readFully(this.backend, view, position);
      position += view.length;
      return errno < 0 ? 0 : view.length;
    });
    if (errno < 0) return this.ioError(errno);
    this.stats.reads++;
    this.stats.bytesRead += length;
    return VIRTIO_BLK_S_OK;
  }

  private write(chain: DescriptorChain, sector: number): number {
    if (this.backend.readOnly) return VIRTIO_BLK_S_IOERR; // §5.2.6.1: IOERR, and nothing written
    const length = chain.readableBytes - VIRTIO_BLK_REQ_HEADER_SIZE;
    if (length % VIRTIO_BLK_SECTOR_SIZE !== 0 || !this.inRange(sector, length)) return this.badRequest();
    let position = sector * VIRTIO_BLK_SECTOR_SIZE;
    let errno = 0;
    chain.forEachRange(false, VIRTIO_BLK_REQ_HEADER_SIZE, length, (view) => {
      errno = writeFully(this.backend, view, position);
      position += view.length;
      return errno < 0 ? 0 : view.length;
    });
    if (errno === 0 && this.writethrough) errno = this.backend.flush();
    if (errno < 0) return this.ioError(errno);
    this.stats.writes++;
    this.stats.bytesWritten += length;
    return VIRTIO_BLK_S_OK;
  }

  private discardOrZero(chain: DescriptorChain, zero: boolean): number {
    if (this.backend.readOnly) return VIRTIO_BLK_S_IOERR;
    const bytes = chain.readableBytes - VIRTIO_BLK_REQ_HEADER_SIZE;
    const segments = bytes / VIRTIO_BLK_DWZ_SEGMENT_SIZE;
    const maxSegments = zero ? this.limits.wzSegs : this.limits.discardSegs;
    const maxSectors = zero ? this.limits.wzSectors : this.limits.discardSectors;
    if (bytes <= 0 || !Number.isInteger(segments) || segments > maxSegments) return this.badRequest();
    const raw = new Uint8Array(bytes);
    chain.readInto(VIRTIO_BLK_REQ_HEADER_SIZE, raw);
    const view = new DataView(raw.buffer);
    // Validate every segment before touching the image: a bad request changes nothing.
    for (let i = 0; i < segments; i++) {
      const at = i * VIRTIO_BLK_DWZ_SEGMENT_SIZE;
      const flags = view.getUint32(at + 12, true);
      const allowedFlags = zero ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
      if ((flags & ~allowedFlags) !== 0) {
        this.stats.unsupported++;
        return VIRTIO_BLK_S_UNSUPP; // §5.2.6.1: unknown flags, or unmap on a discard
      }
      const high = view.getUint32(at + 4, true);
      const sector =
        high > 0x1f_ffff ? Number.MAX_SAFE_INTEGER : high * 0x1_0000_0000 + view.getUint32(at, true);
      const count = view.getUint32(at + 8, true);
      if (count > maxSectors || !this.inRange(sector, count * VIRTIO_BLK_SECTOR_SIZE))
        return this.badRequest();
    }
    for (let i = 0; i < segments; i++) {
      const at = i * VIRTIO_BLK_DWZ_SEGMENT_SIZE;
      const offset =
        (view.getUint32(at + 4, true) * 0x1_0000_0000 + view.getUint32(at, true)) * VIRTIO_BLK_SECTOR_SIZE;
      const length = view.getUint32(at + 8, true) * VIRTIO_BLK_SECTOR_SIZE;
      if (length === 0) continue;
      const unmap = (view.getUint32(at + 12, true) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0;
      const r = zero ? this.backend.writeZeroes(offset, length, unmap) : this.backend.discard(offset, length);
      if (r < 0) return this.ioError(r);
    }
    if (zero && this.writethrough) {
      const r = this.backend.flush();
      if (r < 0) return this.ioError(r);
    }
    if (zero) this.stats.writeZeroes++;
    else this.stats.discards++;
    return VIRTIO_BLK_S_OK;
  }
}
