/**
 * Frame channels between threads: two single-producer/single-consumer rings in SharedArrayBuffers with an
 * eventfd doorbell each way. A VM thread plugs one end into virtio-net as a NetBackend; the other end goes to a
 * second VM, or stays on the main thread as a JS peer.
 */
import { read } from 'node:fs';
import type { NetBackend } from '../virtio/devices/net.js';
import { native, type NativeEventFd, type NativeHostIo } from '../native/binding.js';
import type { NetChannelEnd } from './config.js';
import { FD_IN, type FdWatcher } from '../virtio/host-io.js';

/** Ring header: Int32 [0] = write position, [1] = read position (bytes, monotonically increasing mod 2^31). */
const HEADER_BYTES = 8;
const DEFAULT_RING_BYTES = 1 << 20;
/** Largest frame we carry (64 KiB, as virtio-net without mergeable buffers). */
export const MAX_FRAME = 65_536;

export class FrameRing {
  private readonly pos: Int32Array;
  private readonly data: Uint8Array;
  private readonly view: DataView;
  private readonly size: number;
  /** Length prefix staging (a prefix may wrap around the end of the ring). */
  private readonly lenBytes = new Uint8Array(4);
  private readonly lenView = new DataView(this.lenBytes.buffer);

  constructor(buffer: SharedArrayBuffer) {
    this.pos = new Int32Array(buffer, 0, 2);
    this.size = buffer.byteLength - HEADER_BYTES;
    this.data = new Uint8Array(buffer, HEADER_BYTES);
    this.view = new DataView(buffer, HEADER_BYTES);
  }

  static create(bytes = DEFAULT_RING_BYTES): SharedArrayBuffer {
    return new SharedArrayBuffer(HEADER_BYTES + bytes);
  }

  private copyIn(at: number, src: Uint8Array): void {
    const first = Math.min(src.length, this.size - at);
    this.data.set(src.subarray(0, first), at);
    if (first < src.length) this.data.set(src.subarray(first), 0);
  }

  private copyOut(at: number, dst: Uint8Array): void {
    const first = Math.min(dst.length, this.size - at);
    dst.set(this.data.subarray(at, at + first));
    if (first < dst.length) dst.set(this.data.subarray(0, dst.length - first), first);
  }

  /** Appends a frame; false when the ring is full (the frame is dropped, as a full NIC queue would). */
  push(frame: Uint8Array): boolean {
    if (frame.length === 0 || frame.length > MAX_FRAME) return false;
    const write = Atomics.load(this.pos, 0);
    const readPos = Atomics.load(this.pos, 1);
    const used = (write - readPos) | 0;
    const need = 4 + frame.length;
    if (used + need > this.size) return false;
    const at = write % this.size;
    this.lenView.setUint32(0, frame.length, true);
    this.copyIn(at, this.lenBytes);
    this.copyIn((at + 4) % this.size, frame);
    Atomics.store(this.pos, 0, (write + need) & 0x7fff_ffff);
    return true;
  }

  /** Removes and returns the next frame, or undefined when empty. */
  pop(): Uint8Array | undefined {
    const readPos = Atomics.load(this.pos, 1);
    const write = Atomics.load(this.pos, 0);
    if (readPos === write) return undefined;
    const at = readPos % this.size;
    this.copyOut(at, this.lenBytes);
    const len = this.lenView.getUint32(0, true);
    if (len === 0 || len > MAX_FRAME || len + 4 > ((write - readPos) | 0)) {
      // A corrupt ring can only come from a bug on the other side: drop everything rather than loop.
      Atomics.store(this.pos, 1, write);
      return undefined;
    }
    const frame = new Uint8Array(len);
    this.copyOut((at + 4) % this.size, frame);
    Atomics.store(this.pos, 1, (readPos + 4 + len) & 0x7fff_ffff);
    return frame;
  }
}

const ONE = (() => {
  const b = new Uint8Array(8);
  b[0] = 1;
  return b;
})();

/** A channel: two ends to hand to VMs (config.net: [{ channel: end }]) or to a NetChannelPeer. */
export class NetChannel {
  private readonly doorbells: [NativeEventFd, NativeEventFd];
  readonly ends: [NetChannelEnd, NetChannelEnd];

  constructor(ringBytes = DEFAULT_RING_BYTES) {
    // Blocking eventfds: VM threads only read them once epoll says they are readable; a JS peer reads them
    // on the libuv thread pool, where blocking is the point.
    this.doorbells = [new (native().EventFd)(0, false, false), new (native().EventFd)(0, false, false)];
    const aToB = FrameRing.create(ringBytes);
    const bToA = FrameRing.create(ringBytes);
    this.ends = [
      { tx: aToB, rx: bToA, rxDoorbell: this.doorbells[0].fd, txDoorbell: this.doorbells[1].fd },
      { tx: bToA, rx: aToB, rxDoorbell: this.doorbells[1].fd, txDoorbell: this.doorbells[0].fd },
    ];
  }

  /** Closes the doorbells. Call only after both ends' users (VMs, peers) are gone. */
  close(): void {
    for (const d of this.doorbells) d.close();
  }
}

/** virtio-net backend over one channel end, served by the VM thread's loop. */
export class ChannelNetBackend implements NetBackend {
  private readonly rx: FrameRing;
  private readonly tx: FrameRing;
  private readonly scratch = new Uint8Array(8);
  private receive: ((frame: Uint8Array) => void) | undefined;
  dropped = 0;

  constructor(
    private readonly end: NetChannelEnd,
    private readonly io: Pick<NativeHostIo, 'read' | 'write'>,
    private readonly watcher: FdWatcher,
  ) {
    this.rx = new FrameRing(end.rx);
    this.tx = new FrameRing(end.tx);
  }

  attach(receive: (frame: Uint8Array) => void): void {
    this.receive = receive;
    this.watcher.watch(this.end.rxDoorbell, FD_IN, () => {
      this.io.read(this.end.rxDoorbell, this.scratch);
      for (let f = this.rx.pop(); f !== undefined; f = this.rx.pop()) this.receive?.(f);
    });
  }

  send(frame: Uint8Array): void {
    if (!this.tx.push(frame)) {
      this.dropped++;
      return;
    }
    this.io.write(this.end.txDoorbell, ONE);
  }

  close(): void {
    this.watcher.unwatch(this.end.rxDoorbell);
  }
}

/** A JS peer on the main thread: receive frames with onFrame, send with send(). */
export class NetChannelPeer {
  private readonly rx: FrameRing;
  private readonly tx: FrameRing;
  private closed = false;
  private readonly hostIo = native().hostIo;

  constructor(
    private readonly end: NetChannelEnd,
    private readonly onFrame: (frame: Uint8Array) => void,
  ) {
    this.rx = new FrameRing(end.rx);
    this.tx = new FrameRing(end.tx);
    this.wait();
  }

  private wait(): void {
    if (this.closed) return;
    read(this.end.rxDoorbell, Buffer.alloc(8), 0, 8, null, () => {
      if (this.closed) return;
      for (let f = this.rx.pop(); f !== undefined; f = this.rx.pop()) this.onFrame(f);
      this.wait();
    });
  }

  send(frame: Uint8Array): boolean {
    if (!this.tx.push(frame)) return false;
    this.hostIo.write(this.end.txDoorbell, ONE);
    return true;
  }

  /** Stops receiving (wakes the pending read so the thread-pool slot is released). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.hostIo.write(this.end.rxDoorbell, ONE);
  }
}
