/**
 * Traditional memory balloon (§5.5): inflateq (0), deflateq (1), statsq (2, with VIRTIO_BALLOON_F_STATS_VQ).
 *
 * The host sets a target with `setTarget(pages)` (config `num_pages`, config-change interrupt); the driver
 * inflates by sending 4 KiB page frame numbers, which the device hands back to the host with
 * `GuestMemory.discard()` (madvise DONTNEED on real guest memory), and reports progress in `actual`. PFNs
 * outside guest memory are ignored and counted. Deflate needs no host action: discarded pages come back as
 * zero pages on the next guest touch.
 *
 * Stats: the driver keeps one buffer of {tag u16, val u64} entries in the statsq. The device reads it, keeps
 * the chain, and returns it when the host calls `requestStats()`; the driver then refreshes the numbers and
 * posts the buffer again.
 */
import {
  BALLOON_CFG_ACTUAL,
  BALLOON_CFG_NUM_PAGES,
  BALLOON_CFG_SIZE,
  BALLOON_STAT_NAMES,
  BALLOON_STAT_SIZE,
  VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
  VIRTIO_BALLOON_F_STATS_VQ,
  VIRTIO_BALLOON_PAGE_SIZE,
  VIRTIO_BALLOON_PFN_SHIFT,
  VIRTIO_ID_BALLOON,
  bit,
} from '../constants.js';
import { VirtioDeviceBase } from '../device.js';

export interface BalloonOptions {
  /** Queue size (power of two). Default 256. */
  queueSize?: number;
  /** Offer the statistics queue. Default true. */
  statistics?: boolean;
  /** Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM (the guest may take pages back under memory pressure). Default false. */
  deflateOnOom?: boolean;
  /** Called with each stats update the guest sends. */
  onStats?: (stats: BalloonStatistics) => void;
}

/** Guest memory statistics by name (bytes or counts, as the guest reports them); unknown tags as `tag<N>`. */
export type BalloonStatistics = Record<string, number>;

export interface BalloonCounters {
  inflatedPages: number;
  deflatedPages: number;
  /** PFNs that pointed outside guest memory. */
  invalidPfns: number;
  /** discard() failures from the memory backend. */
  discardErrors: number;
  statsUpdates: number;
}

const INFLATE_QUEUE = 0;
const DEFLATE_QUEUE = 1;
const STATS_QUEUE = 2;
/** PFNs read per chunk (and the most one request is allowed to carry: 4 MiB of PFNs = 4 TiB of guest RAM). */
const PFN_CHUNK_BYTES = 4096;
const MAX_PFN_BYTES = 4 * 1024 * 1024;

export class VirtioBalloon extends VirtioDeviceBase {
  readonly deviceId = VIRTIO_ID_BALLOON;
  readonly name = 'virtio-balloon';
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures: bigint;
  readonly counters: BalloonCounters = {
    inflatedPages: 0,
    deflatedPages: 0,
    invalidPfns: 0,
    discardErrors: 0,
    statsUpdates: 0,
  };
  /** The most recent statistics the guest reported, if any. */
  latestStats: BalloonStatistics | undefined;
  private readonly onStats: ((stats: BalloonStatistics) => void) | undefined;
  private heldStatsHead = -1;
  private readonly chunk = new Uint8Array(PFN_CHUNK_BYTES);
  private readonly chunkView = new DataView(this.chunk.buffer);

  constructor(options: BalloonOptions = {}) {
    super(BALLOON_CFG_SIZE);
    const size = options.queueSize ?? 256;
    const statistics = options.statistics ?? true;
    this.queueMaxSizes = statistics ? [size, size, size] : [size, size];
    let features = 0n;
    if (statistics) features |= bit(VIRTIO_BALLOON_F_STATS_VQ);
    if (options.deflateOnOom) features |= bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
    this.deviceFeatures = features;
    this.onStats = options.onStats;
  }

  /** Pages (4 KiB) the host wants in the balloon. */
  get targetPages(): number {
    return this.configView.getUint32(BALLOON_CFG_NUM_PAGES, true);
  }

  /** Pages the driver says are in the balloon (`actual`). */
  get actualPages(): number {
    return this.configView.getUint32(BALLOON_CFG_ACTUAL, true);
  }

  /** Asks the guest to grow or shrink the balloon to `pages` 4 KiB pages. */
  setTarget(pages: number): void {
    if (!Number.isInteger(pages) || pages < 0 || pages > 0xffff_ffff) {
      throw new RangeError(`balloon target ${pages} must be an integer number of pages in 0..2^32-1`);
    }
    this.configView.setUint32(BALLOON_CFG_NUM_PAGES, pages, true);
    this.guarded('set target', () => this.ctx.configChanged());
  }

  /** Returns the held stats buffer so the guest sends fresh numbers. False if the guest holds none with us. */
  requestStats(): boolean {
    if (this.heldStatsHead < 0 || !this.active) return false;
    let done = false;
    this.guarded('stats request', () => {
      const ctx = this.ctx;
      if (!ctx.queueUsable(STATS_QUEUE)) return;
      ctx.queues[STATS_QUEUE].pushUsed(this.heldStatsHead, 0);
      this.heldStatsHead = -1;
      ctx.signalUsed(STATS_QUEUE);
      done = true;
    });
    return done;
  }

  override writeConfig(offset: number, data: Uint8Array): void {
    // Only `actual` is driver-writable; accept any width of write that lands inside it.
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      if (at >= BALLOON_CFG_ACTUAL && at < BALLOON_CFG_ACTUAL + 4) this.config[at] = data[i];
    }
  }

  activate(): void {
    this.processPfns(INFLATE_QUEUE);
    this.processPfns(DEFLATE_QUEUE);
    this.processStats();
  }

  queueNotify(queue: number): void {
    if (queue === INFLATE_QUEUE || queue === DEFLATE_QUEUE) this.processPfns(queue);
    else if (queue === STATS_QUEUE) this.processStats();
  }

  reset(): void {
    this.heldStatsHead = -1;
    this.configView.setUint32(BALLOON_CFG_ACTUAL, 0, true);
  }

  queueReset(queue: number): void {
    if (queue === STATS_QUEUE) this.heldStatsHead = -1;
  }

  private processPfns(queue: number): void {
    const ctx = this.ctx;
    if (!ctx.queueUsable(queue)) return;
    const q = ctx.queues[queue];
    while (q.pop()) {
      const chain = q.chain;
      const bytes = Math.min(chain.readableBytes - (chain.readableBytes % 4), MAX_PFN_BYTES);
      if (bytes !== chain.readableBytes) this.errors.badRequests++;
      let runStart = -1;
      let runLength = 0;
      for (let offset = 0; offset < bytes; offset += PFN_CHUNK_BYTES) {
        const n = Math.min(PFN_CHUNK_BYTES, bytes - offset);
        chain.readInto(offset, this.chunk.subarray(0, n));
        for (let i = 0; i < n; i += 4) {
          const pfn = this.chunkView.getUint32(i, true);
          if (queue === DEFLATE_QUEUE) {
            this.counters.deflatedPages++;
            continue;
          }
          if (runLength > 0 && pfn === runStart + runLength) {
            runLength++;
            continue;
          }
          if (runLength > 0) this.inflate(runStart, runLength);
          runStart = pfn;
          runLength = 1;
        }
      }
      if (runLength > 0) this.inflate(runStart, runLength);
      q.pushUsed(chain.head, 0);
    }
    ctx.signalUsed(queue);
  }

  /** Discards a run of consecutive PFNs; pages outside guest memory are skipped one by one. */
  private inflate(firstPfn: number, count: number): void {
    const memory = this.ctx.memory;
    const gpa = firstPfn * 2 ** VIRTIO_BALLOON_PFN_SHIFT;
    const length = count * VIRTIO_BALLOON_PAGE_SIZE;
    if (memory.contains(gpa, length)) {
      this.discard(gpa, length, count);
      return;
    }
    for (let i = 0; i < count; i++) {
      const page = gpa + i * VIRTIO_BALLOON_PAGE_SIZE;
      if (memory.contains(page, VIRTIO_BALLOON_PAGE_SIZE)) this.discard(page, VIRTIO_BALLOON_PAGE_SIZE, 1);
      else this.counters.invalidPfns++;
    }
  }

  private discard(gpa: number, length: number, pages: number): void {
    try {
      this.ctx.memory.discard(gpa, length);
      this.counters.inflatedPages += pages;
    } catch {
      this.counters.discardErrors++;
    }
  }

  private processStats(): void {
    const ctx = this.ctx;
    // The stats queue only exists when VIRTIO_BALLOON_F_STATS_VQ was negotiated (§5.5.2).
    if ((ctx.features & bit(VIRTIO_BALLOON_F_STATS_VQ)) === 0n || !ctx.queueUsable(STATS_QUEUE)) return;
    const q = ctx.queues[STATS_QUEUE];
    while (q.pop()) {
      const chain = q.chain;
      // Only one buffer is meant to be outstanding; give an older one back.
      if (this.heldStatsHead >= 0) q.pushUsed(this.heldStatsHead, 0);
      this.heldStatsHead = chain.head;
      const count = Math.min(Math.floor(chain.readableBytes / BALLOON_STAT_SIZE), 64);
      const raw = new Uint8Array(count * BALLOON_STAT_SIZE);
      chain.readInto(0, raw);
      const view = new DataView(raw.buffer);
      const stats: BalloonStatistics = {};
      for (let i = 0; i < count; i++) {
        const tag = view.getUint16(i * BALLOON_STAT_SIZE, true);
        const value = Number(view.getBigUint64(i * BALLOON_STAT_SIZE + 2, true));
        stats[BALLOON_STAT_NAMES[tag] ?? `tag${tag}`] = value;
      }
      this.latestStats = stats;
      this.counters.statsUpdates++;
      try {
        this.onStats?.(stats);
      } catch {
        this.errors.internalErrors++;
      }
    }
    ctx.signalUsed(STATS_QUEUE);
  }
}
