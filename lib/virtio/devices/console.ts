/**
 * virtio-console (§5.3), port 0 only (no MULTIPORT): receiveq (0) carries host input to the guest, transmitq (1)
 * carries guest output to a sink. Host input is buffered (up to a bound) until the guest posts receive buffers.
 * VIRTIO_CONSOLE_F_EMERG_WRITE is offered: a write to `emerg_wr` outputs one byte, even before the queues work.
 */
import {
  CONSOLE_CFG_EMERG_WR,
  CONSOLE_CFG_MAX_NR_PORTS,
  CONSOLE_CFG_SIZE,
  VIRTIO_CONSOLE_F_EMERG_WRITE,
  VIRTIO_ID_CONSOLE,
  bit,
} from '../constants.js';
import { VirtioDeviceBase } from '../device.js';

/** Where guest output goes: a function, or anything with a stream-like write(). */
export type ConsoleSink = ((bytes: Uint8Array) => void) | { write(chunk: Uint8Array): unknown };

export interface ConsoleOptions {
  /** Guest output. Each call gets a fresh copy the sink may keep. Default: discarded. */
  output?: ConsoleSink;
  /** Queue sizes (power of two). Default 256. */
  queueSize?: number;
  /** Host input buffered while the guest has no receive buffers; more is dropped. Default 1 MiB. */
  maxPendingInput?: number;
  /** Most output bytes taken from one transmit chain (the rest is skipped and counted). Default 1 MiB. */
  maxOutputPerChain?: number;
}

export interface ConsoleStats {
  outputBytes: number;
  inputBytes: number;
  inputDropped: number;
  outputTruncated: number;
}

const RECEIVE_QUEUE = 0;
const TRANSMIT_QUEUE = 1;

export class VirtioConsole extends VirtioDeviceBase {
  readonly deviceId = VIRTIO_ID_CONSOLE;
  readonly name = 'virtio-console';
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures = bit(VIRTIO_CONSOLE_F_EMERG_WRITE);
  readonly stats: ConsoleStats = { outputBytes: 0, inputBytes: 0, inputDropped: 0, outputTruncated: 0 };
  private readonly sink: (bytes: Uint8Array) => void;
  private readonly maxPending: number;
  private readonly maxOutput: number;
  private pending: Uint8Array[] = [];
  private pendingOffset = 0;
  private pendingBytes = 0;

  constructor(options: ConsoleOptions = {}) {
    super(CONSOLE_CFG_SIZE);
    const size = options.queueSize ?? 256;
    this.queueMaxSizes = [size, size];
    const output = options.output;
    this.sink =
      output === undefined ? () => {} : typeof output === 'function' ? output : (b) => void output.write(b);
    this.maxPending = options.maxPendingInput ?? 1024 * 1024;
    this.maxOutput = options.maxOutputPerChain ?? 1024 * 1024;
    this.configView.setUint32(CONSOLE_CFG_MAX_NR_PORTS, 1, true);
  }

  /** Host input for the guest (keyboard, pipe). Buffered until the guest posts receive buffers. Never throws. */
  input(bytes: Uint8Array | string): void {
    this.guarded('input', () => {
      const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes.slice();
      if (data.length === 0) return;
      const room = this.maxPending - this.pendingBytes;
      if (data.length > room) this.stats.inputDropped += data.length - Math.max(room, 0);
      if (room <= 0) return;
      const kept = data.length > room ? data.subarray(0, room) : data;
      this.pending.push(kept);
      this.pendingBytes += kept.length;
      this.deliverInput();
    });
  }

  /** Host input bytes waiting for guest receive buffers. */
  get pendingInput(): number {
    return this.pendingBytes;
  }

  override writeConfig(offset: number, data: Uint8Array): void {
    // emerg_wr: the low byte of a (normally 32-bit) write is one output character.
    if (offset === CONSOLE_CFG_EMERG_WR && data.length > 0) this.emit(data.slice(0, 1));
  }

  activate(): void {
    this.deliverInput();
    this.drainOutput();
  }

  queueNotify(queue: number): void {
    if (queue === RECEIVE_QUEUE) this.deliverInput();
    else if (queue === TRANSMIT_QUEUE) this.drainOutput();
  }

  reset(): void {
    // Host input typed before the driver came back stays buffered.
  }

  private emit(bytes: Uint8Array): void {
    this.stats.outputBytes += bytes.length;
    try {
      this.sink(bytes);
    } catch {
      // A failing sink is the host's problem, not the guest's: the output is lost, the device goes on.
      this.errors.internalErrors++;
    }
  }

  private drainOutput(): void {
    const ctx = this.ctx;
    if (!ctx.queueUsable(TRANSMIT_QUEUE)) return;
    const q = ctx.queues[TRANSMIT_QUEUE];
    while (q.pop()) {
      const chain = q.chain;
      const length = Math.min(chain.readableBytes, this.maxOutput);
      if (length < chain.readableBytes) this.stats.outputTruncated += chain.readableBytes - length;
      if (length > 0) {
        const out = new Uint8Array(length);
        chain.readInto(0, out);
        this.emit(out);
      }
      q.pushUsed(chain.head, 0);
    }
    ctx.signalUsed(TRANSMIT_QUEUE);
  }

  private deliverInput(): void {
    if (this.pendingBytes === 0 || !this.active) return;
    const ctx = this.ctx;
    if (!ctx.queueUsable(RECEIVE_QUEUE)) return;
    const q = ctx.queues[RECEIVE_QUEUE];
    while (this.pendingBytes > 0 && q.pop()) {
      const chain = q.chain;
      let written = 0;
      while (this.pendingBytes > 0 && written < chain.writableBytes) {
        const head = this.pending[0];
        const n = chain.writeFrom(written, head.subarray(this.pendingOffset));
        written += n;
        this.pendingOffset += n;
        this.pendingBytes -= n;
        if (this.pendingOffset === head.length) {
          this.pending.shift();
          this.pendingOffset = 0;
        }
      }
      if (chain.writableBytes === 0) this.errors.badRequests++;
      this.stats.inputBytes += written;
      q.pushUsed(chain.head, written);
    }
    ctx.signalUsed(RECEIVE_QUEUE);
  }
}
