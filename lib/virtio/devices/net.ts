/**
 * virtio-net (§5.1): receiveq (0) and transmitq (1), one queue pair, no offloads (no checksum / GSO features,
 * no mergeable receive buffers). Every buffer starts with a 12-byte virtio_net_hdr_v1; the device writes an
 * all-zero header with num_buffers = 1 on receive and ignores the driver's header on transmit.
 *
 * Frames reach the host through a NetBackend: an in-process pair or hub (tests, VM-to-VM, VM-to-JS) or a tap
 * device. Frames that arrive while the guest has no receive buffers wait in a bounded queue; beyond the bound
 * they are dropped and counted, as a NIC with a full ring would.
 */
import { randomBytes } from 'node:crypto';
import {
  ETH_HEADER_SIZE,
  NET_CFG_MAC,
  NET_CFG_SIZE,
  NET_CFG_STATUS,
  NET_MAX_FRAME_SIZE,
  VIRTIO_ID_NET,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_HDR_NUM_BUFFERS,
  VIRTIO_NET_HDR_SIZE,
  VIRTIO_NET_S_LINK_UP,
  bit,
} from '../constants.js';
import { VirtioDeviceBase } from '../device.js';
import { EAGAIN, FD_ERR, FD_HUP, FD_IN, type FdWatcher, type TapIo } from '../host-io.js';

/** Where a virtio-net device's frames go. Frames are Ethernet frames without the virtio header. */
export interface NetBackend {
  /** The device registers the function that delivers frames to the guest (called once). */
  attach(receive: (frame: Uint8Array) => void): void;
  /** A frame from the guest; the backend owns it. Must not throw (the device counts it if it does). */
  send(frame: Uint8Array): void;
  close(): void;
}

export interface NetPortStats {
  sent: number;
  delivered: number;
  /** Frames that arrived while nothing was attached to receive them. */
  dropped: number;
}

/**
 * One end of an in-process link. A device attaches to it; so can JS code (`attach(fn)` to receive,
 * `send(frame)` to inject). Delivery is synchronous, on the caller's thread.
 */
export class NetPort implements NetBackend {
  readonly stats: NetPortStats = { sent: 0, delivered: 0, dropped: 0 };
  private receiver: ((frame: Uint8Array) => void) | undefined;
  private closed = false;

  constructor(private readonly forward: (from: NetPort, frame: Uint8Array) => void) {}

  attach(receive: (frame: Uint8Array) => void): void {
    this.receiver = receive;
  }

  send(frame: Uint8Array): void {
    if (this.closed) return;
    this.stats.sent++;
    this.forward(this, frame);
  }

  /** @internal Delivers a frame to whatever is attached here. */
  deliver(frame: Uint8Array): void {
    if (this.closed || this.receiver === undefined) {
      this.stats.dropped++;
      return;
    }
    this.stats.delivered++;
    this.receiver(frame);
  }

  close(): void {
    this.closed = true;
    this.receiver = undefined;
  }
}

/** Two ports wired back to back: what one sends, the other receives. */
export function createNetPair(): [NetPort, NetPort] {
  const ports: NetPort[] = [];
  const forward = (from: NetPort, frame: Uint8Array): void => {
    const to = from === ports[0] ? ports[1] : ports[0];
    to.deliver(frame.slice());
  };
  ports.push(new NetPort(forward), new NetPort(forward));
  return [ports[0], ports[1]];
}

/** A hub: every frame one port sends is delivered to every other port (a copy each). */
export class NetHub {
  private readonly ports: NetPort[] = [];

  connect(): NetPort {
    const port = new NetPort((from, frame) => {
      for (const p of this.ports) if (p !== from) p.deliver(frame.slice());
    });
    this.ports.push(port);
    return port;
  }
}

/** A tap device could not be opened (no /dev/net/tun, no permission, bad name). */
export class TapOpenError extends Error {
  readonly code = 'ERR_VIRTIO_NET_TAP';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TapOpenError';
  }
}

export interface TapStats {
  rxFrames: number;
  txFrames: number;
  /** Frames the kernel would not take (EAGAIN: the tap's queue is full) — dropped. */
  txDropped: number;
  /** Other read/write errors. */
  errors: number;
  /** Set when the tap stopped working (device removed, fd error); the backend then does nothing. */
  failed: string;
}

/** Most frames read per readiness event, so one busy tap cannot starve the VM thread's other work. */
const TAP_READS_PER_EVENT = 64;
const TAP_FRAME_BUFFER = 65536 + VIRTIO_NET_HDR_SIZE;

/** A Linux tap interface (IFF_TAP | IFF_NO_PI), non-blocking, read when the watcher reports it readable. */
export class TapNetBackend implements NetBackend {
  readonly stats: TapStats = { rxFrames: 0, txFrames: 0, txDropped: 0, errors: 0, failed: '' };
  private readonly buffer = new Uint8Array(TAP_FRAME_BUFFER);
  private receiver: ((frame: Uint8Array) => void) | undefined;
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly ifname: string,
    private readonly io: TapIo,
    private readonly watcher: FdWatcher,
  ) {}

  /** Opens (or creates) tap `name`. Throws TapOpenError with the reason and the usual fix. */
  static open(name: string, options: { io: TapIo; watcher: FdWatcher }): TapNetBackend {
    let opened: { fd: number; name: string };
    try {
      opened = options.io.openTap(name, false);
    } catch (error) {
      const code = (error as { code?: string }).code ?? '';
      const hint =
        code === 'ENOENT' || code === 'ENODEV'
          ? '/dev/net/tun is missing (load the tun module: modprobe tun)'
          : code === 'EACCES' || code === 'EPERM'
            ? 'permission denied (create it first: sudo ip tuntap add dev ' +
              `${name} mode tap user $USER && sudo ip link set ${name} up, or run with CAP_NET_ADMIN)`
            : (error as Error).message;
      throw new TapOpenError(`cannot open tap device "${name}" via /dev/net/tun: ${hint}`, { cause: error });
    }
    return new TapNetBackend(opened.fd, opened.name, options.io, options.watcher);
  }

  attach(receive: (frame: Uint8Array) => void): void {
    this.receiver = receive;
    if (!this.closed) this.watcher.watch(this.fd, FD_IN, (events) => this.onReadable(events));
  }

  private fail(reason: string): void {
    if (this.stats.failed !== '') return;
    this.stats.failed = reason;
    this.watcher.unwatch(this.fd);
  }

  private onReadable(events: number): void {
    if (this.closed) return;
    for (let i = 0; i < TAP_READS_PER_EVENT; i++) {
      const n = this.io.read(this.fd, this.buffer);
      if (n === -EAGAIN) return;
      if (n <= 0) {
        this.stats.errors++;
        // A tap whose interface was deleted reports EBADFD / EIO / hangup forever: stop listening to it.
        this.fail(n === 0 ? 'tap returned end of file' : `tap read failed: errno ${-n}`);
        return;
      }
      this.stats.rxFrames++;
      this.receiver?.(this.buffer.slice(0, n));
    }
    if ((events & (FD_ERR | FD_HUP)) !== 0) this.fail('tap reported an error or hangup');
  }

  send(frame: Uint8Array): void {
    if (this.closed || this.stats.failed !== '') {
      this.stats.txDropped++;
      return;
    }
    const n = this.io.write(this.fd, frame);
    if (n === -EAGAIN) this.stats.txDropped++;
    else if (n < 0) {
      this.stats.errors++;
      this.stats.txDropped++;
    } else this.stats.txFrames++;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.unwatch(this.fd);
    this.io.close(this.fd);
  }
}

export interface NetOptions {
  backend: NetBackend;
  /** MAC address ("52:54:00:12:34:56" or 6 bytes). Default: a random locally administered address. */
  mac?: string | Uint8Array;
  /** Queue size (power of two). Default 256. */
  queueSize?: number;
  /** Frames held while the guest has no receive buffers. Default 256. */
  maxPendingFrames?: number;
}

export interface NetStats {
  txFrames: number;
  txBytes: number;
  /** Guest frames not forwarded: shorter than an Ethernet header or longer than 64 KiB. */
  txInvalid: number;
  /** The backend threw on send. */
  txBackendErrors: number;
  rxFrames: number;
  rxBytes: number;
  /** Frames dropped because the pending queue was full. */
  rxDropped: number;
  /** Frames dropped because the guest's receive buffer was too small (returned with length 0). */
  rxTooSmall: number;
}

const RECEIVE_QUEUE = 0;
const TRANSMIT_QUEUE = 1;
/** virtio_net_hdr_v1 for received frames: no offload flags, one buffer. */
const RX_HEADER = (() => {
  const h = new Uint8Array(VIRTIO_NET_HDR_SIZE);
  h[VIRTIO_NET_HDR_NUM_BUFFERS] = 1;
  return h;
})();

/** Parses "aa:bb:cc:dd:ee:ff" (or '-' separated). */
export function parseMac(mac: string | Uint8Array): Uint8Array {
  if (mac instanceof Uint8Array) {
    if (mac.length !== 6) throw new RangeError('a MAC address is 6 bytes');
    return mac.slice();
  }
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new RangeError(`invalid MAC address "${mac}" (expected aa:bb:cc:dd:ee:ff)`);
  }
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export function formatMac(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export class VirtioNet extends VirtioDeviceBase {
  readonly deviceId = VIRTIO_ID_NET;
  readonly name = 'virtio-net';
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures = bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS);
  readonly mac: Uint8Array;
  readonly backend: NetBackend;
  readonly stats: NetStats = {
    txFrames: 0,
    txBytes: 0,
    txInvalid: 0,
    txBackendErrors: 0,
    rxFrames: 0,
    rxBytes: 0,
    rxDropped: 0,
    rxTooSmall: 0,
  };
  private readonly maxPending: number;
  private pending: Uint8Array[] = [];

  constructor(options: NetOptions) {
    super(NET_CFG_SIZE);
    const size = options.queueSize ?? 256;
    this.queueMaxSizes = [size, size];
    this.maxPending = options.maxPendingFrames ?? 256;
    if (options.mac !== undefined) this.mac = parseMac(options.mac);
    else {
      this.mac = randomBytes(6);
      this.mac[0] = (this.mac[0] & 0xfe) | 0x02; // unicast, locally administered
    }
    this.config.set(this.mac, NET_CFG_MAC);
    this.configView.setUint16(NET_CFG_STATUS, VIRTIO_NET_S_LINK_UP, true);
    this.backend = options.backend;
    this.backend.attach((frame) => this.receive(frame));
  }

  /** Frames waiting for guest receive buffers. */
  get pendingFrames(): number {
    return this.pending.length;
  }

  get linkUp(): boolean {
    return (this.configView.getUint16(NET_CFG_STATUS, true) & VIRTIO_NET_S_LINK_UP) !== 0;
  }

  /** Sets the link status the guest sees (config change interrupt). */
  setLinkUp(up: boolean): void {
    this.guarded('link change', () => {
      if (up === this.linkUp) return;
      this.configView.setUint16(NET_CFG_STATUS, up ? VIRTIO_NET_S_LINK_UP : 0, true);
      this.ctx.configChanged();
    });
  }

  /** A frame for the guest (called by the backend). Never throws. */
  receive(frame: Uint8Array): void {
    this.guarded('receive', () => {
      if (this.pending.length >= this.maxPending) {
        this.stats.rxDropped++;
        return;
      }
      this.pending.push(frame);
      this.deliver();
    });
  }

  activate(): void {
    this.deliver();
    this.transmit();
  }

  queueNotify(queue: number): void {
    if (queue === RECEIVE_QUEUE) this.deliver();
    else if (queue === TRANSMIT_QUEUE) this.transmit();
  }

  reset(): void {
    // Frames queued for the old driver instance are stale for the new one: dropped, and counted.
    this.stats.rxDropped += this.pending.length;
    this.pending = [];
  }

  private deliver(): void {
    if (this.pending.length === 0 || !this.active) return;
    const ctx = this.ctx;
    if (!ctx.queueUsable(RECEIVE_QUEUE)) return;
    const q = ctx.queues[RECEIVE_QUEUE];
    let delivered = 0;
    while (delivered < this.pending.length && q.pop()) {
      const frame = this.pending[delivered++];
      const chain = q.chain;
      if (chain.writableBytes < VIRTIO_NET_HDR_SIZE + frame.length) {
        this.stats.rxTooSmall++;
        q.pushUsed(chain.head, 0);
        continue;
      }
      chain.writeFrom(0, RX_HEADER);
      chain.writeFrom(VIRTIO_NET_HDR_SIZE, frame);
      this.stats.rxFrames++;
      this.stats.rxBytes += frame.length;
      q.pushUsed(chain.head, VIRTIO_NET_HDR_SIZE + frame.length);
    }
    if (delivered > 0) this.pending.splice(0, delivered);
    ctx.signalUsed(RECEIVE_QUEUE);
  }

  private transmit(): void {
    const ctx = this.ctx;
    if (!ctx.queueUsable(TRANSMIT_QUEUE)) return;
    const q = ctx.queues[TRANSMIT_QUEUE];
    while (q.pop()) {
      const chain = q.chain;
      const length = chain.readableBytes - VIRTIO_NET_HDR_SIZE;
      if (length < ETH_HEADER_SIZE || length > NET_MAX_FRAME_SIZE) {
        this.stats.txInvalid++;
        this.errors.badRequests++;
      } else {
        const frame = new Uint8Array(length);
        chain.readInto(VIRTIO_NET_HDR_SIZE, frame);
        this.stats.txFrames++;
        this.stats.txBytes += length;
        try {
          this.backend.send(frame);
        } catch {
          this.stats.txBackendErrors++;
        }
      }
      q.pushUsed(chain.head, 0);
    }
    ctx.signalUsed(TRANSMIT_QUEUE);
  }
}
