/**
 * virtio-rng (entropy device, §5.4): one request queue; the device fills each device-writable buffer with bytes
 * from the host CSPRNG. No features, no configuration space.
 */
import { randomFillSync } from 'node:crypto';
import { VIRTIO_ID_ENTROPY } from '../constants.js';
import { VirtioDeviceBase } from '../device.js';

export interface EntropyOptions {
  /** Queue size (power of two). Default 256. */
  queueSize?: number;
  /** Most bytes filled per request: bounds the work one guest request causes. Default 64 KiB. */
  maxBytesPerRequest?: number;
  /** Random source (tests inject a deterministic one). Default crypto.randomFillSync. */
  fill?: (buffer: Uint8Array) => void;
}

const REQUEST_QUEUE = 0;

export class VirtioEntropy extends VirtioDeviceBase {
  readonly deviceId = VIRTIO_ID_ENTROPY;
  readonly name = 'virtio-rng';
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures = 0n;
  /** Bytes handed to the guest so far. */
  bytesProvided = 0;
  private readonly maxBytes: number;
  private readonly fill: (buffer: Uint8Array) => void;

  constructor(options: EntropyOptions = {}) {
    super(0);
    this.queueMaxSizes = [options.queueSize ?? 256];
    this.maxBytes = options.maxBytesPerRequest ?? 64 * 1024;
    this.fill = options.fill ?? ((b) => randomFillSync(b));
  }

  activate(): void {
    this.process();
  }

  queueNotify(_queue: number): void {
    this.process();
  }

  reset(): void {}

  private process(): void {
    const ctx = this.ctx;
    if (!ctx.queueUsable(REQUEST_QUEUE)) return;
    const q = ctx.queues[REQUEST_QUEUE];
    while (q.pop()) {
      const chain = q.chain;
      if (chain.writableBytes === 0) this.errors.badRequests++;
      const written = chain.forEachRange(true, 0, this.maxBytes, (view) => {
        this.fill(view);
        return view.length;
      });
      this.bytesProvided += written;
      q.pushUsed(chain.head, written);
    }
    ctx.signalUsed(REQUEST_QUEUE);
  }
}
