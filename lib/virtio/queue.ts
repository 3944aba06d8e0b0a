/**
 * Split virtqueue [virtio 1.2 §2.7], device side. The guest owns the rings and may write anything into them
 * at any time, so every index, address and length read from guest memory is validated before use:
 *
 * - a head index >= queue size, or an avail idx that moved by more than the queue size, means the driver's
 *   ring is corrupt and nothing it holds can be returned safely: the queue stops and the device is marked
 *   DEVICE_NEEDS_RESET (§2.1.2: "the device SHOULD set DEVICE_NEEDS_RESET when it enters an error state").
 * - a malformed chain behind a valid head (bad next index, loop, buffer outside guest memory, length sum
 *   over 2^32-1, device-readable after device-writable, nested or unnegotiated indirect table) is returned to
 *   the driver with used length 0 and counted in `stats.invalidChains`; the queue goes on. The driver gets its
 *   descriptors back, the device touched none of its buffers.
 *
 * Zero-length descriptors are legal and skipped: no byte of them is accessed, so their address is not checked.
 * Nothing here throws on guest input.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import {
  VIRTQ_AVAIL_ALIGN,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_ALIGN,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
  VIRTQ_MAX_CHAIN_BYTES,
  VIRTQ_MAX_SIZE,
  VIRTQ_USED_ALIGN,
  VIRTQ_USED_ELEM_SIZE,
  availRingSize,
  usedRingSize,
} from './constants.js';

/** Largest guest address we accept from a 64-bit register or descriptor (exact as a JS number). */
const MAX_SAFE_HIGH_WORD = 0x1f_ffff;

// A seq_cst read-modify-write on shared memory is a full fence for all memory on x86-64 and arm64 (V8 emits
// `lock xadd` / `dmb ish`). We need one between publishing an index and reading the other side's event index.
const fenceCell = new Int32Array(new SharedArrayBuffer(4));
function fullFence(): void {
  Atomics.add(fenceCell, 0, 0);
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/**
 * One validated descriptor chain. Buffers [0, readableCount) are device-readable, the rest device-writable, in
 * chain order; zero-length buffers are left out. The queue reuses one instance per queue: copy out what you
 * need before the next `pop()`.
 */
export class DescriptorChain {
  /** Head descriptor index: what goes back in the used ring. */
  head = 0;
  /** Number of (non-empty) buffers. */
  count = 0;
  readableCount = 0;
  readableBytes = 0;
  writableBytes = 0;
  readonly addrs: Float64Array;
  readonly lens: Uint32Array;

  constructor(
    readonly memory: GuestMemory,
    capacity: number,
  ) {
    this.addrs = new Float64Array(capacity);
    this.lens = new Uint32Array(capacity);
  }

  /** @internal */
  clear(head: number): void {
    this.head = head;
    this.count = 0;
    this.readableCount = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
  }

  /** @internal */
  add(addr: number, len: number, writable: boolean): void {
    this.addrs[this.count] = addr;
    this.lens[this.count] = len;
    this.count++;
    if (writable) this.writableBytes += len;
    else {
      this.readableCount++;
      this.readableBytes += len;
    }
  }

  get writableCount(): number {
    return this.count - this.readableCount;
  }

  /**
   * Calls visit with zero-copy views covering [offset, offset+length) of the readable (or writable) bytes, in
   * order. visit returns how many bytes of the view it handled; a short count stops the walk. Returns the total
   * handled. The range is clipped to the buffers' extent.
   */
  forEachRange(
    writable: boolean,
    offset: number,
    length: number,
    visit: (view: Uint8Array) => number,
  ): number {
    let first = writable ? this.readableCount : 0;
    const end = writable ? this.count : this.readableCount;
    let skip = offset;
    let remaining = length;
    let done = 0;
    for (; first < end && remaining > 0; first++) {
      const len = this.lens[first];
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const take = Math.min(len - skip, remaining);
      // Validated when the chain was built; guest memory regions never move, so this cannot fail.
      const view = this.memory.view(this.addrs[first] + skip, take);
      skip = 0;
      const handled = visit(view);
      done += handled;
      remaining -= handled;
      if (handled < take) break;
    }
    return done;
  }

  /** Copies readable bytes starting at offset into target; returns how many were copied. */
  readInto(offset: number, target: Uint8Array): number {
    let at = 0;
    return this.forEachRange(false, offset, target.length, (view) => {
      target.set(view, at);
      at += view.length;
      return view.length;
    });
  }

  /** Copies src into the writable bytes starting at offset; returns how many were copied. */
  writeFrom(offset: number, src: Uint8Array): number {
    let at = 0;
    return this.forEachRange(true, offset, src.length, (view) => {
      view.set(src.subarray(at, at + view.length));
      at += view.length;
      return view.length;
    });
  }

  /** Fills length writable bytes from offset with value. */
  fillWritable(offset: number, length: number, value = 0): number {
    return this.forEachRange(true, offset, length, (view) => {
      view.fill(value);
      return view.length;
    });
  }
}

export interface VirtqueueStats {
  /** Chains handed to the device. */
  chains: number;
  /** Malformed chains returned with used length 0. */
  invalidChains: number;
  /** Used-buffer notifications requested (after suppression). */
  interrupts: number;
  /** Used-buffer notifications suppressed by flags / used_event. */
  suppressedInterrupts: number;
}

/**
 * One split virtqueue. The transport writes the driver's configuration (size, addresses, ready) and calls
 * `activate()`; the device then loops `while (q.pop()) { ...; q.pushUsed(q.chain.head, len) }` and asks the
 * transport to interrupt once per batch.
 */
export class Virtqueue {
  // Driver-written configuration (§4.2.2), reset to these defaults.
  size: number;
  descAddr = 0;
  driverAddr = 0;
  deviceAddr = 0;
  ready = false;

  /** Device-side progress through the rings (free-running 16-bit indices). */
  nextAvail = 0;
  nextUsed = 0;
  /** Set when the ring is corrupt; the queue does nothing until reset. */
  broken = false;
  brokenReason = '';
  readonly chain: DescriptorChain;
  readonly stats: VirtqueueStats = { chains: 0, invalidChains: 0, interrupts: 0, suppressedInterrupts: 0 };
  /** Most recent reason a chain was rejected (for diagnostics). */
  lastInvalidChain = '';
  /** Called once when the queue becomes broken (the transport sets DEVICE_NEEDS_RESET). */
  onBroken: (reason: string) => void = () => {};

  private desc: DataView | undefined;
  private avail: DataView | undefined;
  private used: DataView | undefined;
  private eventIdx = false;
  private indirect = false;
  private signalledUsed = 0;
  private unsignalled = 0;

  constructor(
    readonly index: number,
    readonly maxSize: number,
    private readonly memory: GuestMemory,
  ) {
    if (!isPowerOfTwo(maxSize) || maxSize > VIRTQ_MAX_SIZE) {
      throw new RangeError(`queue ${index}: max size ${maxSize} must be a power of two <= ${VIRTQ_MAX_SIZE}`);
    }
    this.size = maxSize;
    this.chain = new DescriptorChain(memory, maxSize);
  }

  /** True between activate() and reset(): the device may use the rings. */
  get active(): boolean {
    return this.used !== undefined;
  }

  /** Checks the driver's configuration; returns why it is unusable, or undefined when it is fine. */
  validate(): string | undefined {
    const { size, descAddr, driverAddr, deviceAddr, memory } = this;
    if (!isPowerOfTwo(size) || size > this.maxSize) {
      return `queue ${this.index}: size ${size} is not a power of two in 1..${this.maxSize}`;
    }
    if (descAddr % VIRTQ_DESC_ALIGN !== 0 || driverAddr % VIRTQ_AVAIL_ALIGN !== 0) {
      return `queue ${this.index}: descriptor or driver area misaligned`;
    }
    if (deviceAddr % VIRTQ_USED_ALIGN !== 0) return `queue ${this.index}: device area misaligned`;
    if (!memory.contains(descAddr, VIRTQ_DESC_SIZE * size)) {
      return `queue ${this.index}: descriptor table outside guest memory`;
    }
    if (!memory.contains(driverAddr, availRingSize(size))) {
      return `queue ${this.index}: driver area outside guest memory`;
    }
    if (!memory.contains(deviceAddr, usedRingSize(size))) {
      return `queue ${this.index}: device area outside guest memory`;
    }
    return undefined;
  }

  /** Starts using the rings with the negotiated features. Returns an error string if the config is invalid. */
  activate(eventIdx: boolean, indirect: boolean): string | undefined {
    const problem = this.validate();
    if (problem !== undefined) return problem;
    this.desc = dataView(this.memory.view(this.descAddr, VIRTQ_DESC_SIZE * this.size));
    this.avail = dataView(this.memory.view(this.driverAddr, availRingSize(this.size)));
    this.used = dataView(this.memory.view(this.deviceAddr, usedRingSize(this.size)));
    this.eventIdx = eventIdx;
    this.indirect = indirect;
    this.nextAvail = 0;
    this.nextUsed = 0;
    this.signalledUsed = 0;
    this.unsignalled = 0;
    this.broken = false;
    this.brokenReason = '';
    return undefined;
  }

  /** Back to the post-reset state: not ready, default size, no addresses (§4.2.2 QueueReset / device reset). */
  reset(): void {
    this.size = this.maxSize;
    this.descAddr = 0;
    this.driverAddr = 0;
    this.deviceAddr = 0;
    this.ready = false;
    this.deactivate();
  }

  /** Stops using the rings but keeps the driver's configuration. */
  deactivate(): void {
    this.desc = undefined;
    this.avail = undefined;
    this.used = undefined;
    this.nextAvail = 0;
    this.nextUsed = 0;
    this.broken = false;
    this.brokenReason = '';
  }

  private markBroken(reason: string): void {
    if (this.broken) return;
    this.broken = true;
    this.brokenReason = `queue ${this.index}: ${reason}`;
    this.onBroken(this.brokenReason);
  }

  /** Whether the driver has made buffers available that the device has not taken yet. */
  hasAvailable(): boolean {
    const avail = this.avail;
    if (avail === undefined || this.broken) return false;
    return avail.getUint16(2, true) !== this.nextAvail;
  }

  /** Number of chains available now (0 when inactive or broken). */
  availableCount(): number {
    const avail = this.avail;
    if (avail === undefined || this.broken) return 0;
    const pending = (avail.getUint16(2, true) - this.nextAvail) & 0xffff;
    return pending > this.size ? 0 : pending;
  }

  /**
   * Takes the next valid chain into `this.chain`; returns false when none is available (or the queue broke).
   * Invalid chains met on the way are returned to the driver with length 0.
   */
  pop(): boolean {
    const avail = this.avail;
    if (avail === undefined || this.broken) return false;
    for (;;) {
      let availIdx = avail.getUint16(2, true);
      if (availIdx === this.nextAvail) {
        if (!this.eventIdx) return false;
        // Ask for a notification at the next buffer, then look again: the driver may have published one
        // before it could see our avail_event (§2.7.10).
        this.used!.setUint16(4 + VIRTQ_USED_ELEM_SIZE * this.size, this.nextAvail, true);
        fullFence();
        availIdx = avail.getUint16(2, true);
        if (availIdx === this.nextAvail) return false;
      }
      const pending = (availIdx - this.nextAvail) & 0xffff;
      if (pending > this.size) {
        this.markBroken(`avail idx moved ${pending} entries ahead (queue size ${this.size})`);
        return false;
      }
      const head = avail.getUint16(4 + 2 * (this.nextAvail & (this.size - 1)), true);
      this.nextAvail = (this.nextAvail + 1) & 0xffff;
      if (head >= this.size) {
        this.markBroken(`head index ${head} >= queue size ${this.size}`);
        return false;
      }
      const problem = this.parseChain(head);
      if (problem === undefined) {
        this.stats.chains++;
        return true;
      }
      this.stats.invalidChains++;
      this.lastInvalidChain = problem;
      this.pushUsed(head, 0);
    }
  }

  /** Gives back the chain just popped (not yet used), so the next pop() returns it again. */
  unpop(): void {
    this.nextAvail = (this.nextAvail - 1) & 0xffff;
    this.stats.chains--;
  }

  private parseChain(head: number): string | undefined {
    const chain = this.chain;
    const memory = this.memory;
    const desc = this.desc!;
    chain.clear(head);
    let index = head;
    // Where descriptors are read from: the ring's table (tableAddr < 0) or an indirect table in guest memory.
    let tableAddr = -1;
    let tableEntries = this.size;
    // Loop guard: no chain visits more descriptors than the table it lives in has entries.
    let ttl = this.size;
    let seenWritable = false;
    let total = 0;
    for (;;) {
      if (ttl-- === 0) return 'chain longer than its descriptor table (loop?)';
      let lo: number, hi: number, len: number, flags: number, next: number;
      if (tableAddr < 0) {
        const at = index * VIRTQ_DESC_SIZE;
        lo = desc.getUint32(at, true);
        hi = desc.getUint32(at + 4, true);
        len = desc.getUint32(at + 8, true);
        flags = desc.getUint16(at + 12, true);
        next = desc.getUint16(at + 14, true);
      } else {
        const at = tableAddr + index * VIRTQ_DESC_SIZE;
        lo = memory.u32(at);
        hi = memory.u32(at + 4);
        len = memory.u32(at + 8);
        flags = memory.u16(at + 12);
        next = memory.u16(at + 14);
      }
      if (hi > MAX_SAFE_HIGH_WORD) return 'buffer address beyond guest memory';
      const addr = hi * 0x1_0000_0000 + lo;
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        if (tableAddr >= 0) return 'nested indirect table';
        if (!this.indirect) return 'indirect descriptor without VIRTIO_F_INDIRECT_DESC';
        if ((flags & VIRTQ_DESC_F_NEXT) !== 0) return 'indirect descriptor with NEXT';
        if (len === 0 || len % VIRTQ_DESC_SIZE !== 0) return `indirect table length ${len}`;
        const entries = len / VIRTQ_DESC_SIZE;
        if (entries > this.size) return `indirect table of ${entries} entries exceeds queue size`;
        if (!memory.contains(addr, len)) return 'indirect table outside guest memory';
        // Counted descriptors so far plus the table's must still fit one chain of at most `size` buffers.
        tableAddr = addr;
        tableEntries = entries;
        ttl = Math.min(entries, this.size - chain.count);
        index = 0;
        continue;
      }
      const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (writable) seenWritable = true;
      else if (seenWritable) return 'device-readable buffer after a device-writable one';
      if (len > 0) {
        total += len;
        if (total > VIRTQ_MAX_CHAIN_BYTES) return 'chain longer than 2^32-1 bytes';
        if (!memory.contains(addr, len)) return 'buffer outside guest memory';
        chain.add(addr, len, writable);
      }
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) return undefined;
      if (next >= tableEntries) return `next index ${next} >= table size ${tableEntries}`;
      index = next;
    }
  }

  /** Returns a chain to the driver: id and the number of bytes the device wrote into it. */
  pushUsed(head: number, len: number): void {
    const used = this.used;
    if (used === undefined) return;
    const at = 4 + VIRTQ_USED_ELEM_SIZE * (this.nextUsed & (this.size - 1));
    used.setUint32(at, head, true);
    used.setUint32(at + 4, len, true);
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
    // The element is written before idx; x86-64 keeps stores in order, and the driver reads idx first.
    used.setUint16(2, this.nextUsed, true);
    this.unsignalled++;
  }

  /**
   * After a batch of pushUsed(): whether the driver wants an interrupt for it (flags or used_event, §2.7.7 /
   * §2.7.10). Call once per batch; it resets the batch.
   */
  needsInterrupt(): boolean {
    const avail = this.avail;
    if (avail === undefined || this.unsignalled === 0) return false;
    fullFence();
    const newUsed = this.nextUsed;
    const oldUsed = this.signalledUsed;
    const count = this.unsignalled;
    this.signalledUsed = newUsed;
    this.unsignalled = 0;
    let wanted: boolean;
    if (!this.eventIdx) {
      wanted = (avail.getUint16(0, true) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    } else if (count >= 0x1_0000) {
      wanted = true; // idx wrapped all the way round since the last decision: the window check cannot tell
    } else {
      const usedEvent = avail.getUint16(4 + 2 * this.size, true);
      wanted = ((newUsed - usedEvent - 1) & 0xffff) < ((newUsed - oldUsed) & 0xffff);
    }
    if (wanted) this.stats.interrupts++;
    else this.stats.suppressedInterrupts++;
    return wanted;
  }
}

function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
