/**
 * virtio-vsock (§5.10), host side over Unix sockets with the Firecracker convention:
 *
 * - Host-initiated: a host program connects to `udsPath` and writes `CONNECT <port>\n`. The device sends the
 *   guest a REQUEST for that port from a fresh host port H; when the guest accepts (RESPONSE) the device writes
 *   `OK <H>\n` back and the socket carries the stream from then on. A guest RST closes the socket.
 * - Guest-initiated: a guest connection to CID 2 port P is forwarded to the Unix socket `${udsPath}_${P}`
 *   (which a host program listens on). If nothing listens there, the guest gets RST.
 *
 * Queues: rx (0) device→guest packets, tx (1) guest→device packets, event (2) transport-reset events. Every
 * packet starts with the 44-byte virtio_vsock_hdr. Only stream sockets exist (no features offered, so the
 * stream type is implied, §5.10.3).
 *
 * Flow control (§5.10.6.3): each side advertises buf_alloc and a running fwd_cnt. The device sends the guest
 * no more than its credit (buf_alloc - (tx_cnt - fwd_cnt)); it advertises `bufferSize` per connection and
 * counts as forwarded what it has written to the host socket. A guest that overruns that credit is reset.
 * When the guest has no receive buffers (or no credit), the device stops reading the host socket: host data
 * is never dropped. Control replies wait in a bounded queue (the tx queue keeps being processed, §5.10.6.1.1).
 *
 * All host I/O is non-blocking through the injected SocketIo; readiness comes from the injected FdWatcher.
 */
import { unlinkSync } from 'node:fs';
import {
  VIRTIO_ID_VSOCK,
  VSOCK_CFG_GUEST_CID,
  VSOCK_CFG_SIZE,
  VSOCK_EVENT_SIZE,
  VSOCK_EVENT_TRANSPORT_RESET,
  VSOCK_HDR_BUF_ALLOC,
  VSOCK_HDR_DST_CID,
  VSOCK_HDR_DST_PORT,
  VSOCK_HDR_FLAGS,
  VSOCK_HDR_FWD_CNT,
  VSOCK_HDR_LEN,
  VSOCK_HDR_OP,
  VSOCK_HDR_SIZE,
  VSOCK_HDR_SRC_CID,
  VSOCK_HDR_SRC_PORT,
  VSOCK_HDR_TYPE,
  VSOCK_HOST_CID,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
  VSOCK_RESERVED_CIDS,
  VSOCK_SHUTDOWN_F_RECEIVE,
  VSOCK_SHUTDOWN_F_SEND,
  VSOCK_TYPE_STREAM,
} from '../constants.js';
import { VirtioDeviceBase } from '../device.js';
import { EAGAIN, FD_ERR, FD_HUP, FD_IN, FD_OUT, type FdWatcher, type SocketIo } from '../host-io.js';

export interface VsockOptions {
  /** The guest's context ID (3..2^32-2). */
  guestCid: number;
  /** Host Unix socket for host-initiated connections; guest-initiated ones go to `${udsPath}_${port}`. */
  udsPath: string;
  io: SocketIo;
  watcher: FdWatcher;
  /** Queue size (power of two). Default 256. */
  queueSize?: number;
  /** Receive buffer advertised to the guest per connection (buf_alloc). Default 256 KiB. */
  bufferSize?: number;
  /** Most connections (open or being set up) at once. Default 1024. */
  maxConnections?: number;
}

/** The vsock device could not be set up (bad CID, socket path unusable). */
export class VsockSetupError extends Error {
  readonly code = 'ERR_VIRTIO_VSOCK';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VsockSetupError';
  }
}

export interface VsockStats {
  hostConnections: number;
  guestConnections: number;
  /** Guest connection requests refused with RST (no listener at uds_path_PORT, limit reached). */
  refusedConnections: number;
  closedConnections: number;
  /** Payload bytes guest → host and host → guest. */
  bytesToHost: number;
  bytesToGuest: number;
  /** Guest packets dropped: wrong CIDs, short header, bad length. */
  droppedPackets: number;
  /** Guest protocol violations answered with RST (unknown connection, credit overrun, unexpected op). */
  protocolErrors: number;
  /** Control packets dropped because the pending queue was full. */
  droppedReplies: number;
  /** Host sockets closed before a valid CONNECT line. */
  badHandshakes: number;
}

type ConnectionState = 'connecting' | 'established';

interface PendingWrite {
  bytes: Uint8Array;
  /** Guest payload (counts toward fwd_cnt once written), or our own "OK" line (does not). */
  payload: boolean;
}

interface Connection {
  readonly fd: number;
  readonly key: string;
  readonly localPort: number;
  readonly peerPort: number;
  state: ConnectionState;
  peerBufAlloc: number;
  peerFwdCnt: number;
  /** Payload bytes sent to the guest (free-running u32). */
  txCnt: number;
  /** Payload bytes written to the host socket (free-running u32). */
  fwdCnt: number;
  /** fwd_cnt last told to the guest. */
  advertisedFwdCnt: number;
  /** Guest payload received but not yet written to the host socket. */
  pendingBytes: number;
  pending: PendingWrite[];
  /** Bytes read from the host with the CONNECT line, to send first. */
  leftover: Uint8Array | undefined;
  /** The host socket reported readable (or hung up) and has not been drained. */
  readable: boolean;
  hostEof: boolean;
  guestShutSend: boolean;
  guestShutRecv: boolean;
  shutdownWriteDone: boolean;
  creditRequested: boolean;
  /** Send RST and close once pending data reached the host. */
  closeWhenFlushed: boolean;
  /** Interest set currently registered (-1: not watched any more). */
  events: number;
  closed: boolean;
}

interface Handshake {
  readonly fd: number;
  buffer: Uint8Array;
  length: number;
}

interface ControlPacket {
  op: number;
  localPort: number;
  peerPort: number;
  flags: number;
  connection: Connection | undefined;
}

const RX_QUEUE = 0;
const TX_QUEUE = 1;
const EVENT_QUEUE = 2;
const CONNECT_LINE_MAX = 64;
const MAX_PENDING_CONTROL = 4096;
const STAGING_SIZE = 64 * 1024;
const FIRST_HOST_PORT = 1 << 30;
const SHUT_WR = 1;
const ACCEPTS_PER_EVENT = 64;

function u32(n: number): number {
  return n >>> 0;
}

export class VirtioVsock extends VirtioDeviceBase {
  readonly deviceId = VIRTIO_ID_VSOCK;
  readonly name = 'virtio-vsock';
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures = 0n;
  readonly guestCid: number;
  readonly udsPath: string;
  readonly stats: VsockStats = {
    hostConnections: 0,
    guestConnections: 0,
    refusedConnections: 0,
    closedConnections: 0,
    bytesToHost: 0,
    bytesToGuest: 0,
    droppedPackets: 0,
    protocolErrors: 0,
    droppedReplies: 0,
    badHandshakes: 0,
  };
  private readonly io: SocketIo;
  private readonly watcher: FdWatcher;
  private readonly bufferSize: number;
  private readonly maxConnections: number;
  private listenFd: number;
  private readonly connections = new Map<string, Connection>();
  private readonly handshakes = new Map<number, Handshake>();
  /** Connections with host data to send, in service order. */
  private readonly ready = new Set<Connection>();
  private control: ControlPacket[] = [];
  private nextHostPort = FIRST_HOST_PORT;
  private readonly header = new Uint8Array(VSOCK_HDR_SIZE);
  private readonly headerView = new DataView(this.header.buffer);
  private readonly staging = new Uint8Array(STAGING_SIZE);
  private readonly event = new Uint8Array(VSOCK_EVENT_SIZE);
  private processingRx = false;

  constructor(options: VsockOptions) {
    super(VSOCK_CFG_SIZE);
    const cid = options.guestCid;
    if (!Number.isInteger(cid) || cid < 0 || cid > 0xffff_ffff || VSOCK_RESERVED_CIDS.includes(cid)) {
      throw new VsockSetupError(
        `vsock guest CID ${cid} is invalid (use 3..4294967294; 0, 1, 2 are reserved)`,
      );
    }
    this.guestCid = cid;
    this.udsPath = options.udsPath;
    this.io = options.io;
    this.watcher = options.watcher;
    const size = options.queueSize ?? 256;
    this.queueMaxSizes = [size, size, size];
    this.bufferSize = options.bufferSize ?? 256 * 1024;
    this.maxConnections = options.maxConnections ?? 1024;
    this.configView.setBigUint64(VSOCK_CFG_GUEST_CID, BigInt(cid), true);
    try {
      this.listenFd = this.io.unixListen(this.udsPath, 128);
    } catch (error) {
      throw new VsockSetupError(
        `cannot listen on vsock socket ${this.udsPath}: ${(error as Error).message} ` +
          '(is the directory writable, and the path shorter than 108 bytes?)',
        { cause: error },
      );
    }
    this.watcher.watch(this.listenFd, FD_IN, () => this.guarded('accept', () => this.acceptHost()));
  }

  /** Open connections (established or waiting for the guest). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stops listening and closes every connection. The device stays attached but inert. */
  close(): void {
    this.closeAllConnections();
    for (const h of [...this.handshakes.values()]) this.closeHandshake(h);
    if (this.listenFd >= 0) {
      this.watcher.unwatch(this.listenFd);
      this.io.close(this.listenFd);
      this.listenFd = -1;
      try {
        unlinkSync(this.udsPath);
      } catch {
        // Already gone.
      }
    }
  }

  /**
   * Tells the guest that communication was interrupted (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET): every connection
   * is closed on both sides. Returns false when the guest has no event buffer posted.
   */
  sendTransportReset(): boolean {
    let sent = false;
    this.guarded('transport reset', () => {
      this.closeAllConnections();
      const ctx = this.ctx;
      if (!ctx.queueUsable(EVENT_QUEUE)) return;
      const q = ctx.queues[EVENT_QUEUE];
      if (!q.pop()) return;
      new DataView(this.event.buffer).setUint32(0, VSOCK_EVENT_TRANSPORT_RESET, true);
      const n = q.chain.writeFrom(0, this.event);
      q.pushUsed(q.chain.head, n);
      ctx.signalUsed(EVENT_QUEUE);
      sent = n === VSOCK_EVENT_SIZE;
    });
    return sent;
  }

  activate(): void {
    this.processTx();
    this.processRx();
  }

  queueNotify(queue: number): void {
    if (queue === TX_QUEUE) this.processTx();
    else if (queue === RX_QUEUE) this.processRx();
    // Event buffers are only consumed when there is an event.
  }

  reset(): void {
    this.closeAllConnections();
    this.control = [];
  }

  queueReset(queue: number): void {
    // The guest's view of the connections is gone with its ring: start over.
    if (queue !== EVENT_QUEUE) this.reset();
  }

  // --- Host side ----------------------------------------------------------------------------------------------

  private acceptHost(): void {
    for (let i = 0; i < ACCEPTS_PER_EVENT; i++) {
      const fd = this.io.accept(this.listenFd);
      if (fd < 0) return; // EAGAIN, or a transient accept error
      if (this.connections.size + this.handshakes.size >= this.maxConnections) {
        this.io.close(fd);
        this.stats.refusedConnections++;
        continue;
      }
      const h: Handshake = { fd, buffer: new Uint8Array(CONNECT_LINE_MAX), length: 0 };
      this.handshakes.set(fd, h);
      this.watcher.watch(fd, FD_IN, () => this.guarded('handshake', () => this.readHandshake(h)));
    }
  }

  private closeHandshake(h: Handshake): void {
    this.handshakes.delete(h.fd);
    this.watcher.unwatch(h.fd);
    this.io.close(h.fd);
  }

  private readHandshake(h: Handshake): void {
    const n = this.io.read(h.fd, h.buffer.subarray(h.length));
    if (n === -EAGAIN) return;
    if (n <= 0) {
      this.stats.badHandshakes++;
      this.closeHandshake(h);
      return;
    }
    h.length += n;
    const newline = h.buffer.subarray(0, h.length).indexOf(0x0a);
    if (newline < 0) {
      if (h.length === CONNECT_LINE_MAX) {
        this.stats.badHandshakes++;
        this.closeHandshake(h);
      }
      return;
    }
    const line = new TextDecoder().decode(h.buffer.subarray(0, newline)).replace(/\r$/, '');
    const match = /^CONNECT ([0-9]{1,10})$/.exec(line);
    const port = match === null ? -1 : Number(match[1]);
    if (port < 0 || port > 0xffff_ffff || !this.active) {
      // Malformed request, or no guest driver to connect to.
      this.stats.badHandshakes++;
      this.closeHandshake(h);
      return;
    }
    this.handshakes.delete(h.fd);
    const localPort = this.allocateHostPort(port);
    const conn = this.addConnection(h.fd, localPort, port, 'connecting');
    if (newline + 1 < h.length) conn.leftover = h.buffer.slice(newline + 1, h.length);
    this.stats.hostConnections++;
    this.updateInterest(conn);
    this.queueControl(VSOCK_OP_REQUEST, conn, 0);
    this.processRx();
  }

  private allocateHostPort(peerPort: number): number {
    for (;;) {
      const port = this.nextHostPort;
      this.nextHostPort = this.nextHostPort >= 0xffff_fffe ? FIRST_HOST_PORT : this.nextHostPort + 1;
      if (!this.connections.has(`${port}:${peerPort}`)) return port;
    }
  }

  private addConnection(fd: number, localPort: number, peerPort: number, state: ConnectionState): Connection {
    const conn: Connection = {
      fd,
      key: `${localPort}:${peerPort}`,
      localPort,
      peerPort,
      state,
      peerBufAlloc: 0,
      peerFwdCnt: 0,
      txCnt: 0,
      fwdCnt: 0,
      advertisedFwdCnt: 0,
      pendingBytes: 0,
      pending: [],
      leftover: undefined,
      readable: false,
      hostEof: false,
      guestShutSend: false,
      guestShutRecv: false,
      shutdownWriteDone: false,
      creditRequested: false,
      closeWhenFlushed: false,
      events: 0,
      closed: false,
    };
    this.connections.set(conn.key, conn);
    this.watcher.watch(fd, 0, (events) => this.guarded('socket', () => this.onSocketEvent(conn, events)));
    return conn;
  }

  private closeConnection(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    this.connections.delete(conn.key);
    this.ready.delete(conn);
    if (conn.events >= 0) this.watcher.unwatch(conn.fd);
    this.io.close(conn.fd);
    this.stats.closedConnections++;
  }

  private closeAllConnections(): void {
    for (const conn of [...this.connections.values()]) this.closeConnection(conn);
    this.ready.clear();
  }

  private peerCredit(conn: Connection): number {
    const inFlight = u32(conn.txCnt - conn.peerFwdCnt);
    return inFlight >= conn.peerBufAlloc ? 0 : conn.peerBufAlloc - inFlight;
  }

  /** Registers the interest the connection needs now: IN when we could forward host data, OUT when blocked. */
  private updateInterest(conn: Connection): void {
    if (conn.closed || conn.events < 0) return;
    const wantRead =
      conn.state === 'established' &&
      !conn.hostEof &&
      !conn.guestShutRecv &&
      !conn.readable &&
      conn.leftover === undefined;
    const events = (wantRead ? FD_IN : 0) | (conn.pending.length > 0 ? FD_OUT : 0);
    if (events === conn.events) return;
    conn.events = events;
    this.watcher.watch(conn.fd, events, (ev) => this.guarded('socket', () => this.onSocketEvent(conn, ev)));
  }

  private onSocketEvent(conn: Connection, events: number): void {
    if (conn.closed) return;
    if ((events & (FD_ERR | FD_HUP)) !== 0) {
      // Hangup is reported whatever the interest set; stop watching and let reads find EOF / the error.
      this.watcher.unwatch(conn.fd);
      conn.events = -1;
      if (conn.pending.length > 0) {
        this.resetConnection(conn);
        return;
      }
    }
    if ((events & FD_OUT) !== 0 || (conn.events < 0 && conn.pending.length > 0)) this.flushToHost(conn);
    if (conn.closed) return;
    if ((events & (FD_IN | FD_ERR | FD_HUP)) !== 0 && conn.state === 'established') {
      conn.readable = true;
      this.markReady(conn);
    }
    this.updateInterest(conn);
    this.processRx();
  }

  private markReady(conn: Connection): void {
    if (conn.state === 'established' && (conn.readable || conn.leftover !== undefined)) this.ready.add(conn);
  }

  /** Writes queued bytes to the host socket; returns false if the connection failed. */
  private flushToHost(conn: Connection): boolean {
    while (conn.pending.length > 0) {
      const item = conn.pending[0];
      const n = this.io.write(conn.fd, item.bytes);
      if (n === -EAGAIN) break;
      if (n < 0) {
        this.resetConnection(conn);
        return false;
      }
      if (item.payload) this.forwarded(conn, n);
      if (n < item.bytes.length) {
        item.bytes = item.bytes.subarray(n);
        break;
      }
      conn.pending.shift();
    }
    if (conn.pending.length === 0) this.afterDrained(conn);
    this.updateInterest(conn);
    return !conn.closed;
  }

  private forwarded(conn: Connection, bytes: number): void {
    conn.fwdCnt = u32(conn.fwdCnt + bytes);
    conn.pendingBytes -= Math.min(bytes, conn.pendingBytes);
    this.stats.bytesToHost += bytes;
    // Tell the guest about freed space before it runs dry (it sees fwd_cnt in every packet we send, too).
    if (u32(conn.fwdCnt - conn.advertisedFwdCnt) >= this.bufferSize / 2) {
      this.queueControl(VSOCK_OP_CREDIT_UPDATE, conn, 0);
    }
  }

  private afterDrained(conn: Connection): void {
    if (conn.closeWhenFlushed) {
      this.queueControl(VSOCK_OP_RST, conn, 0);
      this.closeConnection(conn);
      return;
    }
    if (conn.guestShutSend && !conn.shutdownWriteDone) {
      conn.shutdownWriteDone = true;
      this.io.shutdown(conn.fd, SHUT_WR);
    }
  }

  private resetConnection(conn: Connection): void {
    this.queueControl(VSOCK_OP_RST, conn, 0);
    this.closeConnection(conn);
  }

  // --- Guest → host (tx queue) -------------------------------------------------------------------------------

  private processTx(): void {
    const ctx = this.ctx;
    if (!ctx.queueUsable(TX_QUEUE)) return;
    const q = ctx.queues[TX_QUEUE];
    while (q.pop()) {
      const chain = q.chain;
      if (chain.readInto(0, this.header) < VSOCK_HDR_SIZE) {
        this.stats.droppedPackets++;
        this.errors.badRequests++;
      } else {
        this.handleGuestPacket(chain.readableBytes - VSOCK_HDR_SIZE);
      }
      q.pushUsed(chain.head, 0);
    }
    ctx.signalUsed(TX_QUEUE);
    this.processRx();
  }

  /** The header is in this.header; the payload follows it in the tx queue's current chain. */
  private handleGuestPacket(available: number): void {
    const h = this.headerView;
    const srcCidHigh = h.getUint32(VSOCK_HDR_SRC_CID + 4, true);
    const dstCidHigh = h.getUint32(VSOCK_HDR_DST_CID + 4, true);
    const srcCid = h.getUint32(VSOCK_HDR_SRC_CID, true);
    const dstCid = h.getUint32(VSOCK_HDR_DST_CID, true);
    const srcPort = h.getUint32(VSOCK_HDR_SRC_PORT, true);
    const dstPort = h.getUint32(VSOCK_HDR_DST_PORT, true);
    const len = h.getUint32(VSOCK_HDR_LEN, true);
    const type = h.getUint16(VSOCK_HDR_TYPE, true);
    const op = h.getUint16(VSOCK_HDR_OP, true);
    const flags = h.getUint32(VSOCK_HDR_FLAGS, true);
    if (srcCidHigh !== 0 || dstCidHigh !== 0 || srcCid !== this.guestCid || dstCid !== VSOCK_HOST_CID) {
      this.stats.droppedPackets++; // not from our guest, or not for the host: nobody to answer
      return;
    }
    if (len > available) {
      this.stats.droppedPackets++;
      this.errors.badRequests++;
      return;
    }
    const key = `${dstPort}:${srcPort}`;
    const conn = this.connections.get(key);
    if (type !== VSOCK_TYPE_STREAM) {
      // §5.10.6.4: unknown type → RST (never answer an RST).
      this.stats.protocolErrors++;
      if (conn !== undefined) this.resetConnection(conn);
      else if (op !== VSOCK_OP_RST) this.queueReply(VSOCK_OP_RST, dstPort, srcPort);
      return;
    }
    if (conn === undefined) {
      if (op === VSOCK_OP_REQUEST) this.guestConnect(dstPort, srcPort);
      else if (op !== VSOCK_OP_RST) {
        this.stats.protocolErrors++;
        this.queueReply(VSOCK_OP_RST, dstPort, srcPort);
      }
      return;
    }
    const bufAlloc = h.getUint32(VSOCK_HDR_BUF_ALLOC, true);
    const fwdCnt = h.getUint32(VSOCK_HDR_FWD_CNT, true);
    // Every packet carries the guest's credit; new credit means a later shortage deserves a new request.
    if (bufAlloc !== conn.peerBufAlloc || fwdCnt !== conn.peerFwdCnt) conn.creditRequested = false;
    conn.peerBufAlloc = bufAlloc;
    conn.peerFwdCnt = fwdCnt;
    switch (op) {
      case VSOCK_OP_RESPONSE:
        if (conn.state !== 'connecting') break;
        conn.state = 'established';
        conn.pending.push({ bytes: new TextEncoder().encode(`OK ${conn.localPort}\n`), payload: false });
        this.markReady(conn);
        this.flushToHost(conn);
        return;
      case VSOCK_OP_RW:
        if (conn.state !== 'established' || conn.guestShutSend) break;
        this.forwardPayload(conn, len);
        return;
      case VSOCK_OP_CREDIT_UPDATE:
        conn.creditRequested = false;
        this.markReady(conn);
        return;
      case VSOCK_OP_CREDIT_REQUEST:
        this.queueControl(VSOCK_OP_CREDIT_UPDATE, conn, 0);
        return;
      case VSOCK_OP_SHUTDOWN:
        if (conn.state !== 'established') break;
        if ((flags & VSOCK_SHUTDOWN_F_SEND) !== 0) conn.guestShutSend = true;
        if ((flags & VSOCK_SHUTDOWN_F_RECEIVE) !== 0) {
          conn.guestShutRecv = true;
          this.ready.delete(conn);
        }
        if (conn.guestShutSend && (conn.guestShutRecv || conn.hostEof)) {
          // Clean disconnect: answer with RST once the guest's last bytes reached the host.
          conn.closeWhenFlushed = true;
        }
        if (conn.pending.length === 0) this.afterDrained(conn);
        this.updateInterest(conn);
        return;
      case VSOCK_OP_RST:
        this.closeConnection(conn);
        return;
    }
    // REQUEST on an existing connection, RESPONSE when not connecting, data on a closed direction, unknown op.
    this.stats.protocolErrors++;
    this.resetConnection(conn);
  }

  private guestConnect(localPort: number, peerPort: number): void {
    if (this.connections.size + this.handshakes.size >= this.maxConnections) {
      this.stats.refusedConnections++;
      this.queueReply(VSOCK_OP_RST, localPort, peerPort);
      return;
    }
    let fd: number;
    try {
      fd = this.io.unixConnect(`${this.udsPath}_${localPort}`);
    } catch {
      this.stats.refusedConnections++;
      this.queueReply(VSOCK_OP_RST, localPort, peerPort);
      return;
    }
    const h = this.headerView;
    const conn = this.addConnection(fd, localPort, peerPort, 'established');
    conn.peerBufAlloc = h.getUint32(VSOCK_HDR_BUF_ALLOC, true);
    conn.peerFwdCnt = h.getUint32(VSOCK_HDR_FWD_CNT, true);
    this.stats.guestConnections++;
    this.queueControl(VSOCK_OP_RESPONSE, conn, 0);
    this.updateInterest(conn);
  }

  private forwardPayload(conn: Connection, len: number): void {
    if (len === 0) return;
    if (conn.pendingBytes + len > this.bufferSize) {
      // The guest ignored the credit we gave it.
      this.stats.protocolErrors++;
      this.resetConnection(conn);
      return;
    }
    const chain = this.ctx.queues[TX_QUEUE].chain;
    conn.pendingBytes += len;
    let failed = false;
    // Straight from guest memory to the socket; whatever the socket does not take now is copied and queued.
    chain.forEachRange(false, VSOCK_HDR_SIZE, len, (view) => {
      if (conn.pending.length > 0) {
        conn.pending.push({ bytes: view.slice(), payload: true });
        return view.length;
      }
      const n = this.io.write(conn.fd, view);
      if (n === -EAGAIN) {
        conn.pending.push({ bytes: view.slice(), payload: true });
        return view.length;
      }
      if (n < 0) {
        failed = true;
        return 0;
      }
      this.forwarded(conn, n);
      if (n < view.length) conn.pending.push({ bytes: view.slice(n), payload: true });
      return view.length;
    });
    if (failed) this.resetConnection(conn);
    else this.updateInterest(conn);
  }

  // --- Device → guest (rx queue) -----------------------------------------------------------------------------

  private queueReply(op: number, localPort: number, peerPort: number): void {
    this.pushControl({ op, localPort, peerPort, flags: 0, connection: undefined });
  }

  private queueControl(op: number, conn: Connection, flags: number): void {
    this.pushControl({ op, localPort: conn.localPort, peerPort: conn.peerPort, flags, connection: conn });
  }

  private pushControl(packet: ControlPacket): void {
    if (this.control.length >= MAX_PENDING_CONTROL) {
      this.stats.droppedReplies++;
      return;
    }
    this.control.push(packet);
  }

  private writeHeader(
    op: number,
    localPort: number,
    peerPort: number,
    len: number,
    flags: number,
    conn: Connection | undefined,
  ): void {
    const h = this.headerView;
    h.setBigUint64(VSOCK_HDR_SRC_CID, BigInt(VSOCK_HOST_CID), true);
    h.setBigUint64(VSOCK_HDR_DST_CID, BigInt(this.guestCid), true);
    h.setUint32(VSOCK_HDR_SRC_PORT, localPort, true);
    h.setUint32(VSOCK_HDR_DST_PORT, peerPort, true);
    h.setUint32(VSOCK_HDR_LEN, len, true);
    h.setUint16(VSOCK_HDR_TYPE, VSOCK_TYPE_STREAM, true);
    h.setUint16(VSOCK_HDR_OP, op, true);
    h.setUint32(VSOCK_HDR_FLAGS, flags, true);
    h.setUint32(VSOCK_HDR_BUF_ALLOC, conn === undefined ? 0 : this.bufferSize, true);
    h.setUint32(VSOCK_HDR_FWD_CNT, conn === undefined ? 0 : conn.fwdCnt, true);
    if (conn !== undefined) conn.advertisedFwdCnt = conn.fwdCnt;
  }

  private processRx(): void {
    // Host callbacks triggered from inside this loop (a write that closes a socket) must not re-enter it.
    if (this.processingRx || !this.active) return;
    const ctx = this.ctx;
    if (!ctx.queueUsable(RX_QUEUE)) return;
    const q = ctx.queues[RX_QUEUE];
    this.processingRx = true;
    try {
      for (;;) {
        if (this.control.length > 0) {
          const p = this.control[0];
          // Credit talk for a connection that has closed since is moot (its SHUTDOWN and RST are not).
          if (
            p.connection?.closed === true &&
            (p.op === VSOCK_OP_CREDIT_UPDATE || p.op === VSOCK_OP_CREDIT_REQUEST)
          ) {
            this.control.shift();
            continue;
          }
          if (!q.pop()) break;
          this.control.shift();
          this.writeHeader(p.op, p.localPort, p.peerPort, 0, p.flags, p.connection);
          this.finishPacket(q.chain.writeFrom(0, this.header));
          continue;
        }
        const conn = this.nextReady();
        if (conn === undefined) {
          if (this.control.length > 0) continue; // nextReady queued a credit request
          break;
        }
        if (!q.pop()) break;
        this.sendData(conn);
      }
    } finally {
      this.processingRx = false;
    }
    ctx.signalUsed(RX_QUEUE);
  }

  private finishPacket(written: number): void {
    const q = this.ctx.queues[RX_QUEUE];
    if (written < VSOCK_HDR_SIZE) {
      // A receive buffer too small for a header: the packet is lost, the buffer returned empty.
      this.errors.badRequests++;
      q.pushUsed(q.chain.head, 0);
      return;
    }
    q.pushUsed(q.chain.head, written);
  }

  /** The next connection with host data and guest credit (round robin); asks for credit where it ran out. */
  private nextReady(): Connection | undefined {
    for (const conn of this.ready) {
      if (this.peerCredit(conn) > 0) return conn;
      if (!conn.creditRequested) {
        conn.creditRequested = true;
        this.queueControl(VSOCK_OP_CREDIT_REQUEST, conn, 0);
        return undefined; // send the request first (control packets go out before data)
      }
    }
    return undefined;
  }

  /** Fills the rx chain just popped with one RW packet from conn, or gives the chain back. */
  private sendData(conn: Connection): void {
    const q = this.ctx.queues[RX_QUEUE];
    const chain = q.chain;
    const room = Math.min(chain.writableBytes - VSOCK_HDR_SIZE, this.peerCredit(conn), STAGING_SIZE);
    if (room <= 0) {
      // No room for a byte of payload (Linux posts 4 KiB buffers): return the buffer empty.
      this.errors.badRequests++;
      q.pushUsed(chain.head, 0);
      return;
    }
    let data: Uint8Array;
    if (conn.leftover !== undefined) {
      data = conn.leftover.subarray(0, room);
      conn.leftover = room < conn.leftover.length ? conn.leftover.subarray(room) : undefined;
    } else {
      const n = this.io.read(conn.fd, this.staging.subarray(0, room));
      if (n <= 0) {
        q.unpop();
        this.ready.delete(conn);
        conn.readable = false;
        if (n === -EAGAIN) {
          this.updateInterest(conn);
        } else if (n === 0) {
          // Host closed its side: the guest will receive (and the host send) nothing more.
          conn.hostEof = true;
          this.queueControl(VSOCK_OP_SHUTDOWN, conn, VSOCK_SHUTDOWN_F_RECEIVE | VSOCK_SHUTDOWN_F_SEND);
          if (conn.guestShutSend) conn.closeWhenFlushed = true;
          if (conn.closeWhenFlushed && conn.pending.length === 0) this.afterDrained(conn);
          else this.updateInterest(conn);
        } else {
          this.resetConnection(conn);
        }
        return;
      }
      data = this.staging.subarray(0, n);
    }
    this.writeHeader(VSOCK_OP_RW, conn.localPort, conn.peerPort, data.length, 0, conn);
    chain.writeFrom(0, this.header);
    chain.writeFrom(VSOCK_HDR_SIZE, data);
    q.pushUsed(chain.head, VSOCK_HDR_SIZE + data.length);
    conn.txCnt = u32(conn.txCnt + data.length);
    this.stats.bytesToGuest += data.length;
    // Round robin: the next packet serves another connection.
    this.ready.delete(conn);
    if (conn.leftover !== undefined || conn.readable) this.ready.add(conn);
    if (conn.leftover === undefined && !conn.readable) this.updateInterest(conn);
  }
}
