/**
 * A device that exercises the queue generically, for queue tests and chain fuzzing: for every chain it reads
 * all readable bytes, fills all writable bytes with a marker, records what it saw, and returns the chain with
 * the writable length.
 */
import { VirtioDeviceBase } from '../device.js';

export interface ProbedChain {
  queue: number;
  head: number;
  readable: Uint8Array;
  writableBytes: number;
  /** Buffer list as (address, length, writable). */
  buffers: { addr: number; len: number; writable: boolean }[];
}

/** Device ID 0 marks a placeholder in virtio-mmio; the probe uses an unassigned ID instead. */
export const PROBE_DEVICE_ID = 0xfffe;

export class ChainProbeDevice extends VirtioDeviceBase {
  readonly deviceId = PROBE_DEVICE_ID;
  readonly name = 'probe';
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures = 0n;
  readonly seen: ProbedChain[] = [];
  /** Most readable bytes copied per chain (keeps huge hostile chains cheap). */
  maxCopy = 1 << 16;
  /** Byte written into every writable byte. */
  marker = 0x5a;
  activations = 0;
  resets = 0;
  queueResets: number[] = [];
  /** When set, queueNotify throws this (to test that the transport contains device bugs). */
  throwOnNotify: Error | undefined;

  constructor(queueMaxSizes: readonly number[] = [16], configSize = 8) {
    super(configSize);
    this.queueMaxSizes = queueMaxSizes;
    for (let i = 0; i < configSize; i++) this.config[i] = i;
  }

  override writeConfig(offset: number, data: Uint8Array): void {
    this.config.set(data, offset);
  }

  activate(): void {
    this.activations++;
    for (let i = 0; i < this.queueMaxSizes.length; i++) this.drain(i);
  }

  queueNotify(queue: number): void {
    if (this.throwOnNotify !== undefined) throw this.throwOnNotify;
    this.drain(queue);
  }

  reset(): void {
    this.resets++;
  }

  queueReset(queue: number): void {
    this.queueResets.push(queue);
  }

  /** Raises a config-change notification (host-side config update). */
  changeConfig(offset: number, value: number): void {
    this.config[offset] = value;
    this.ctx.configChanged();
  }

  private drain(queue: number): void {
    const ctx = this.ctx;
    if (!ctx.queueUsable(queue)) return;
    const q = ctx.queues[queue];
    while (q.pop()) {
      const c = q.chain;
      const buffers = [];
      for (let i = 0; i < c.count; i++) {
        buffers.push({ addr: c.addrs[i], len: c.lens[i], writable: i >= c.readableCount });
      }
      const readable = new Uint8Array(Math.min(c.readableBytes, this.maxCopy));
      c.readInto(0, readable);
      const written = c.fillWritable(0, Math.min(c.writableBytes, this.maxCopy), this.marker);
      this.seen.push({ queue, head: c.head, readable, writableBytes: c.writableBytes, buffers });
      q.pushUsed(c.head, written);
    }
    ctx.signalUsed(queue);
  }
}
