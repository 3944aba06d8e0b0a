/**
 * An in-memory SocketIo for vsock tests and fuzzing: Unix "sockets" are byte queues, a test plays the host
 * programs (connect to the device's listener, listen on uds_path_PORT, send, read, close) and can throttle
 * writes to force EAGAIN paths.
 */
import { EAGAIN, EBADF, EPIPE, type SocketIo } from '../host-io.js';

export class FakeSocket {
  /** Bytes the host program sent, not yet read by the device. */
  inbound: number[] = [];
  /** Bytes the device wrote. */
  outbound: number[] = [];
  /** The host program closed its write side: device reads see EOF once inbound is empty. */
  hostEof = false;
  /** The host program closed entirely: device writes fail with EPIPE. */
  hostClosed = false;
  /** The device shut down its write side. */
  deviceShutWrite = false;
  /** The device closed the fd. */
  deviceClosed = false;
  /** Bytes the device may still write before getting EAGAIN (Infinity: no limit). */
  writeCapacity = Infinity;

  constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  /** Host program sends bytes. */
  send(data: Uint8Array | string): void {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    for (const b of bytes) this.inbound.push(b);
  }

  /** Everything the device wrote so far, as text. */
  text(): string {
    return new TextDecoder().decode(Uint8Array.from(this.outbound));
  }

  /** Takes and clears what the device wrote. */
  take(): Uint8Array {
    const out = Uint8Array.from(this.outbound);
    this.outbound = [];
    return out;
  }
}

export class FakeSocketIo implements SocketIo {
  private nextFd = 100;
  readonly sockets = new Map<number, FakeSocket>();
  /** Listening fds by path, and the connections waiting to be accepted on each. */
  readonly listeners = new Map<string, { fd: number; backlog: FakeSocket[] }>();
  /** Paths a host program listens on (guest-initiated connections succeed there), and what got connected. */
  readonly hostListeners = new Map<string, FakeSocket[]>();
  closedFds: number[] = [];

  unixListen(path: string, _backlog: number): number {
    const fd = this.nextFd++;
    this.listeners.set(path, { fd, backlog: [] });
    return fd;
  }

  unixConnect(path: string): number {
    const accepted = this.hostListeners.get(path);
    if (accepted === undefined) {
      throw Object.assign(new Error(`connect ECONNREFUSED ${path}`), { code: 'ECONNREFUSED' });
    }
    const s = new FakeSocket(this.nextFd++, path);
    this.sockets.set(s.fd, s);
    accepted.push(s);
    return s.fd;
  }

  accept(fd: number): number {
    for (const l of this.listeners.values()) {
      if (l.fd !== fd) continue;
      const s = l.backlog.shift();
      if (s === undefined) return -EAGAIN;
      this.sockets.set(s.fd, s);
      return s.fd;
    }
    return -EBADF;
  }

  read(fd: number, buf: Uint8Array): number {
    const s = this.sockets.get(fd);
    if (s === undefined || s.deviceClosed) return -EBADF;
    if (s.inbound.length === 0) return s.hostEof || s.hostClosed ? 0 : -EAGAIN;
    const n = Math.min(buf.length, s.inbound.length);
    for (let i = 0; i < n; i++) buf[i] = s.inbound[i];
    s.inbound.splice(0, n);
    return n;
  }

  write(fd: number, buf: Uint8Array): number {
    const s = this.sockets.get(fd);
    if (s === undefined || s.deviceClosed) return -EBADF;
    if (s.hostClosed || s.deviceShutWrite) return -EPIPE;
    const n = Math.min(buf.length, s.writeCapacity);
    if (n === 0 && buf.length > 0) return -EAGAIN;
    for (let i = 0; i < n; i++) s.outbound.push(buf[i]);
    s.writeCapacity -= n;
    return n;
  }

  shutdown(fd: number, how: number): number {
    const s = this.sockets.get(fd);
    if (s === undefined) return -EBADF;
    if (how !== 0) s.deviceShutWrite = true;
    return 0;
  }

  close(fd: number): void {
    this.closedFds.push(fd);
    const s = this.sockets.get(fd);
    if (s !== undefined) s.deviceClosed = true;
  }

  // --- Playing the host programs ------------------------------------------------------------------------------

  /** A host program connects to the device's listening socket at path. */
  hostConnect(path: string): FakeSocket {
    const l = this.listeners.get(path);
    if (l === undefined) throw new Error(`nothing listens on ${path}`);
    const s = new FakeSocket(this.nextFd++, path);
    l.backlog.push(s);
    return s;
  }

  /** A host program listens at path (for guest-initiated connections); returns the list of connections. */
  hostListen(path: string): FakeSocket[] {
    const list: FakeSocket[] = [];
    this.hostListeners.set(path, list);
    return list;
  }

  listenerFd(path: string): number {
    const l = this.listeners.get(path);
    if (l === undefined) throw new Error(`nothing listens on ${path}`);
    return l.fd;
  }
}
