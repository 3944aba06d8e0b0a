import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../../lib/native/binding.js';
import {
  VIRTIO_ID_VSOCK,
  VSOCK_CFG_GUEST_CID,
  VSOCK_HDR_SIZE,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
} from '../../../lib/virtio/constants.js';
import { VirtioVsock, VsockSetupError, type VsockOptions } from '../../../lib/virtio/devices/vsock.js';
import { FD_IN, FD_OUT, type SocketIo } from '../../../lib/virtio/host-io.js';
import { FakeSocketIo } from '../../../lib/virtio/testing/fake-socket-io.js';
import { ManualFdWatcher } from '../../../lib/virtio/testing/fd-watcher.js';
import { createMockGuest, type MockGuest } from '../../../lib/virtio/testing/mock-driver.js';

const GUEST_CID = 3;
const PATH = '/run/test/v.sock';

interface Packet {
  srcCid: number;
  dstCid: number;
  srcPort: number;
  dstPort: number;
  len: number;
  type: number;
  op: number;
  flags: number;
  bufAlloc: number;
  fwdCnt: number;
  payload: Uint8Array;
}

function packet(p: Partial<Packet> & { op: number; srcPort: number; dstPort: number }): Uint8Array {
  const payload = p.payload ?? new Uint8Array(0);
  const b = new Uint8Array(VSOCK_HDR_SIZE + payload.length);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(p.srcCid ?? GUEST_CID), true);
  v.setBigUint64(8, BigInt(p.dstCid ?? 2), true);
  v.setUint32(16, p.srcPort, true);
  v.setUint32(20, p.dstPort, true);
  v.setUint32(24, p.len ?? payload.length, true);
  v.setUint16(28, p.type ?? 1, true);
  v.setUint16(30, p.op, true);
  v.setUint32(32, p.flags ?? 0, true);
  v.setUint32(36, p.bufAlloc ?? 64 * 1024, true);
  v.setUint32(40, p.fwdCnt ?? 0, true);
  b.set(payload, VSOCK_HDR_SIZE);
  return b;
}

function parse(b: Uint8Array): Packet {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const len = v.getUint32(24, true);
  return {
    srcCid: Number(v.getBigUint64(0, true)),
    dstCid: Number(v.getBigUint64(8, true)),
    srcPort: v.getUint32(16, true),
    dstPort: v.getUint32(20, true),
    len,
    type: v.getUint16(28, true),
    op: v.getUint16(30, true),
    flags: v.getUint32(32, true),
    bufAlloc: v.getUint32(36, true),
    fwdCnt: v.getUint32(40, true),
    payload: b.slice(VSOCK_HDR_SIZE, VSOCK_HDR_SIZE + len),
  };
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);

class GuestSide {
  constructor(readonly g: MockGuest<VirtioVsock>) {}
  postRx(n = 8, size = 4096 + VSOCK_HDR_SIZE): void {
    for (let i = 0; i < n; i++) this.g.driver.addChain(0, [{ length: size, writable: true }]);
    this.g.driver.kick(0);
  }
  send(p: Parameters<typeof packet>[0]): void {
    const b = packet(p);
    // Header and payload in separate descriptors, as Linux does.
    const bufs = [{ data: b.subarray(0, VSOCK_HDR_SIZE) }];
    if (b.length > VSOCK_HDR_SIZE) bufs.push({ data: b.subarray(VSOCK_HDR_SIZE) });
    this.g.driver.send(1, bufs);
    this.g.driver.takeUsed(1);
  }
  recv(): Packet[] {
    return this.g.driver.takeUsed(0).map((u) => parse(this.g.driver.writtenBytes(u.chain!, u.len)));
  }
}

function setup(options: Partial<VsockOptions> = {}) {
  const io = new FakeSocketIo();
  const watcher = new ManualFdWatcher();
  const device = new VirtioVsock({ guestCid: GUEST_CID, udsPath: PATH, io, watcher, ...options });
  const g = createMockGuest(device);
  g.driver.init();
  const guest = new GuestSide(g);
  guest.postRx();
  return { ...g, io, watcher, guest };
}

/** Host program connects and asks for guest port; returns the host socket and the guest's view of it. */
function hostConnect(s: ReturnType<typeof setup>, port: number, extra = '') {
  const sock = s.io.hostConnect(PATH);
  s.watcher.fire(s.io.listenerFd(PATH), FD_IN);
  sock.send(`CONNECT ${port}\n${extra}`);
  s.watcher.poll();
  const [req] = s.guest.recv();
  expect(req).toMatchObject({ op: VSOCK_OP_REQUEST, dstPort: port, srcCid: 2, dstCid: GUEST_CID });
  expect(req.srcPort).toBeGreaterThanOrEqual(1 << 30);
  return { sock, hostPort: req.srcPort };
}

describe('virtio-vsock: setup', () => {
  it('is device 19 with the guest CID in config', () => {
    const { driver } = setup();
    expect(driver.readReg(0x008)).toBe(VIRTIO_ID_VSOCK);
    expect(new DataView(driver.readConfig(VSOCK_CFG_GUEST_CID, 8).buffer).getBigUint64(0, true)).toBe(3n);
  });

  it.each([0, 1, 2, 0xffff_ffff, -1, 2 ** 32])('rejects reserved or invalid CID %d', (cid) => {
    expect(
      () =>
        new VirtioVsock({
          guestCid: cid,
          udsPath: PATH,
          io: new FakeSocketIo(),
          watcher: new ManualFdWatcher(),
        }),
    ).toThrow(VsockSetupError);
  });

  it('explains a socket path it cannot listen on', () => {
    const io = new FakeSocketIo();
    io.unixListen = () => {
      throw Object.assign(new Error('bind: EACCES'), { code: 'EACCES' });
    };
    expect(() => new VirtioVsock({ guestCid: 3, udsPath: PATH, io, watcher: new ManualFdWatcher() })).toThrow(
      /cannot listen on vsock socket/,
    );
  });
});

describe('virtio-vsock: host-initiated connections (CONNECT <port>)', () => {
  it('connects, answers OK <hostport>, and carries data both ways', () => {
    const s = setup();
    const { sock, hostPort } = hostConnect(s, 52);
    s.guest.send({ op: VSOCK_OP_RESPONSE, srcPort: 52, dstPort: hostPort });
    expect(sock.text()).toBe(`OK ${hostPort}\n`);
    sock.take();
    sock.send('hello');
    s.watcher.poll();
    const [rw] = s.guest.recv();
    expect(rw).toMatchObject({ op: VSOCK_OP_RW, srcPort: hostPort, dstPort: 52, len: 5 });
    expect(text(rw.payload)).toBe('hello');
    expect(rw.bufAlloc).toBe(256 * 1024);
    s.guest.send({ op: VSOCK_OP_RW, srcPort: 52, dstPort: hostPort, payload: bytes('world') });
    expect(text(sock.take())).toBe('world');
    expect(s.device.stats.bytesToGuest).toBe(5);
    expect(s.device.stats.bytesToHost).toBe(5);
    // Clean close from the guest: SHUTDOWN both ways → RST and the socket closes.
    s.guest.send({ op: VSOCK_OP_SHUTDOWN, srcPort: 52, dstPort: hostPort, flags: 3 });
    expect(s.guest.recv().map((p) => p.op)).toEqual([VSOCK_OP_RST]);
    expect(sock.deviceClosed).toBe(true);
    expect(s.device.connectionCount).toBe(0);
  });

  it('forwards bytes the host sent along with the CONNECT line', () => {
    const s = setup();
    const { hostPort } = hostConnect(s, 7, 'early');
    s.guest.send({ op: VSOCK_OP_RESPONSE, srcPort: 7, dstPort: hostPort });
    const [rw] = s.guest.recv();
    expect(text(rw.payload)).toBe('early');
  });

  it('closes the host socket when the guest refuses (RST)', () => {
    const s = setup();
    const { sock, hostPort } = hostConnect(s, 52);
    s.guest.send({ op: VSOCK_OP_RST, srcPort: 52, dstPort: hostPort });
    expect(sock.deviceClosed).toBe(true);
    expect(sock.text()).toBe('');
  });

  it.each(['HELLO\n', 'CONNECT abc\n', 'CONNECT 99999999999\n', 'x'.repeat(80)])(
    'drops a bad handshake %j',
    (line) => {
      const s = setup();
      const sock = s.io.hostConnect(PATH);
      s.watcher.fire(s.io.listenerFd(PATH), FD_IN);
      sock.send(line);
      s.watcher.poll();
      expect(sock.deviceClosed).toBe(true);
      expect(s.device.stats.badHandshakes).toBe(1);
      expect(s.guest.recv()).toHaveLength(0);
    },
  );

  it('host EOF → SHUTDOWN to the guest; the guest RST closes the socket', () => {
    const s = setup();
    const { sock, hostPort } = hostConnect(s, 52);
    s.guest.send({ op: VSOCK_OP_RESPONSE, srcPort: 52, dstPort: hostPort });
    sock.send('bye');
    sock.hostEof = true;
    s.watcher.poll();
    const got = s.guest.recv();
    expect(got.map((p) => p.op)).toEqual([VSOCK_OP_RW, VSOCK_OP_SHUTDOWN]);
    expect(got[1].flags).toBe(3);
    s.guest.send({ op: VSOCK_OP_RST, srcPort: 52, dstPort: hostPort });
    expect(sock.deviceClosed).toBe(true);
  });
});

describe('virtio-vsock: guest-initiated connections (uds_path_<port>)', () => {
  it('connects to the host listener at uds_path_PORT', () => {
    const s = setup();
    const accepted = s.io.hostListen(`${PATH}_1234`);
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 5000, dstPort: 1234 });
    expect(accepted).toHaveLength(1);
    const [resp] = s.guest.recv();
    expect(resp).toMatchObject({ op: VSOCK_OP_RESPONSE, srcPort: 1234, dstPort: 5000 });
    s.guest.send({ op: VSOCK_OP_RW, srcPort: 5000, dstPort: 1234, payload: bytes('ping') });
    expect(text(accepted[0].take())).toBe('ping');
    accepted[0].send('pong');
    s.watcher.poll();
    expect(text(s.guest.recv()[0].payload)).toBe('pong');
  });

  it('answers RST when nothing listens there', () => {
    const s = setup();
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 5000, dstPort: 9 });
    expect(s.guest.recv()).toMatchObject([{ op: VSOCK_OP_RST, srcPort: 9, dstPort: 5000 }]);
    expect(s.device.stats.refusedConnections).toBe(1);
  });

  it('guest SHUTDOWN(SEND) half-closes the host socket after the data', () => {
    const s = setup();
    const accepted = s.io.hostListen(`${PATH}_80`);
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 6000, dstPort: 80 });
    s.guest.send({ op: VSOCK_OP_RW, srcPort: 6000, dstPort: 80, payload: bytes('GET /') });
    s.guest.send({ op: VSOCK_OP_SHUTDOWN, srcPort: 6000, dstPort: 80, flags: 2 });
    expect(accepted[0].deviceShutWrite).toBe(true);
    accepted[0].send('200 OK');
    accepted[0].hostEof = true;
    s.watcher.poll();
    const ops = s.guest.recv().map((p) => p.op);
    expect(ops).toEqual([VSOCK_OP_RESPONSE, VSOCK_OP_RW, VSOCK_OP_SHUTDOWN, VSOCK_OP_RST]);
    expect(accepted[0].deviceClosed).toBe(true);
  });
});

describe('virtio-vsock: flow control', () => {
  function established(s: ReturnType<typeof setup>, guestBufAlloc: number) {
    const accepted = s.io.hostListen(`${PATH}_80`);
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 6000, dstPort: 80, bufAlloc: guestBufAlloc });
    s.guest.recv();
    return accepted[0];
  }

  it('never sends the guest more than its credit, and asks for more', () => {
    const s = setup();
    const host = established(s, 10);
    host.send('abcdefghijklmnopqrstuvwxy'); // 25 bytes
    s.watcher.poll();
    let got = s.guest.recv();
    expect(got.map((p) => p.op)).toEqual([VSOCK_OP_RW, VSOCK_OP_CREDIT_REQUEST]);
    expect(text(got[0].payload)).toBe('abcdefghij');
    s.guest.send({ op: VSOCK_OP_CREDIT_UPDATE, srcPort: 6000, dstPort: 80, bufAlloc: 10, fwdCnt: 10 });
    got = s.guest.recv();
    expect(text(got[0].payload)).toBe('klmnopqrst');
    s.guest.send({ op: VSOCK_OP_CREDIT_UPDATE, srcPort: 6000, dstPort: 80, bufAlloc: 10, fwdCnt: 20 });
    got = s.guest.recv();
    expect(text(got[0].payload)).toBe('uvwxy');
    expect(s.device.stats.bytesToGuest).toBe(25);
  });

  it('stops reading the host socket while the guest has no receive buffers (no data is dropped)', () => {
    const s = setup();
    const host = established(s, 1 << 20);
    s.guest.postRx(1); // replaces the one the RESPONSE used
    // Use up the posted buffers.
    host.send('x'.repeat(8 * 4096 + 100));
    s.watcher.poll();
    expect(s.guest.recv()).toHaveLength(8);
    expect(host.inbound.length).toBe(100);
    expect(s.watcher.interest(host.fd) ?? 0).toBe(0);
    s.guest.postRx(1);
    expect(s.guest.recv()[0].len).toBe(100);
  });

  it('queues guest data the host socket cannot take yet and forwards it on POLLOUT', () => {
    const s = setup({ bufferSize: 64 });
    const host = established(s, 4096);
    host.writeCapacity = 4;
    s.guest.send({ op: VSOCK_OP_RW, srcPort: 6000, dstPort: 80, payload: bytes('0123456789') });
    expect(text(host.take())).toBe('0123');
    expect(s.watcher.interest(host.fd)! & FD_OUT).toBe(FD_OUT);
    host.writeCapacity = Infinity;
    s.watcher.fire(host.fd, FD_OUT);
    expect(text(host.take())).toBe('456789');
    expect(s.watcher.interest(host.fd)! & FD_OUT).toBe(0);
  });

  it('resets a guest that overruns the credit it was given', () => {
    const s = setup({ bufferSize: 8 });
    const host = established(s, 4096);
    host.writeCapacity = 0;
    s.guest.send({ op: VSOCK_OP_RW, srcPort: 6000, dstPort: 80, payload: bytes('12345678') });
    s.guest.send({ op: VSOCK_OP_RW, srcPort: 6000, dstPort: 80, payload: bytes('9') });
    expect(s.guest.recv().map((p) => p.op)).toEqual([VSOCK_OP_RST]);
    expect(host.deviceClosed).toBe(true);
    expect(s.device.stats.protocolErrors).toBe(1);
  });

  it('answers CREDIT_REQUEST with CREDIT_UPDATE carrying fwd_cnt', () => {
    const s = setup();
    established(s, 4096);
    s.guest.send({ op: VSOCK_OP_RW, srcPort: 6000, dstPort: 80, payload: bytes('abc') });
    s.guest.send({ op: VSOCK_OP_CREDIT_REQUEST, srcPort: 6000, dstPort: 80 });
    expect(s.guest.recv()).toMatchObject([{ op: VSOCK_OP_CREDIT_UPDATE, fwdCnt: 3, bufAlloc: 256 * 1024 }]);
  });
});

describe('virtio-vsock: hostile packets', () => {
  it('answers packets for unknown connections with RST, and never answers an RST', () => {
    const s = setup();
    s.guest.send({ op: VSOCK_OP_RW, srcPort: 1, dstPort: 2, payload: bytes('x') });
    s.guest.send({ op: VSOCK_OP_RST, srcPort: 1, dstPort: 2 });
    expect(s.guest.recv().map((p) => p.op)).toEqual([VSOCK_OP_RST]);
  });

  it('drops packets with a wrong CID or a length past the buffer', () => {
    const s = setup();
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 1, dstPort: 2, srcCid: 4 });
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 1, dstPort: 2, dstCid: 7 });
    s.guest.send({ op: VSOCK_OP_RW, srcPort: 1, dstPort: 2, len: 1000 });
    s.driver.send(1, [{ data: new Uint8Array(10) }]);
    expect(s.guest.recv()).toHaveLength(0);
    expect(s.device.stats.droppedPackets).toBe(4);
  });

  it('answers an unknown socket type with RST', () => {
    const s = setup();
    s.io.hostListen(`${PATH}_80`);
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 1, dstPort: 80, type: 2 });
    expect(s.guest.recv().map((p) => p.op)).toEqual([VSOCK_OP_RST]);
    expect(s.device.connectionCount).toBe(0);
  });

  it('resets a connection on an unexpected op', () => {
    const s = setup();
    const accepted = s.io.hostListen(`${PATH}_80`);
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 1, dstPort: 80 });
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 1, dstPort: 80 });
    expect(s.guest.recv().map((p) => p.op)).toEqual([VSOCK_OP_RESPONSE, VSOCK_OP_RST]);
    expect(accepted[0].deviceClosed).toBe(true);
  });
});

describe('virtio-vsock: resets', () => {
  it('a device reset closes every connection', () => {
    const s = setup();
    const accepted = s.io.hostListen(`${PATH}_80`);
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 1, dstPort: 80 });
    s.driver.setStatus(0);
    expect(accepted[0].deviceClosed).toBe(true);
    expect(s.device.connectionCount).toBe(0);
  });

  it('sends a transport reset event and closes connections', () => {
    const s = setup();
    const accepted = s.io.hostListen(`${PATH}_80`);
    s.guest.send({ op: VSOCK_OP_REQUEST, srcPort: 1, dstPort: 80 });
    const ev = s.driver.send(2, [{ length: 4, writable: true }])!;
    expect(s.device.sendTransportReset()).toBe(true);
    const used = s.driver.takeUsed(2);
    expect(used[0].len).toBe(4);
    expect([...s.driver.writtenBytes(ev, 4)]).toEqual([0, 0, 0, 0]);
    expect(accepted[0].deviceClosed).toBe(true);
    expect(s.device.sendTransportReset()).toBe(false); // no more event buffers
  });

  it('close() stops listening', () => {
    const s = setup();
    const fd = s.io.listenerFd(PATH);
    s.device.close();
    expect(s.io.closedFds).toContain(fd);
    expect(s.watcher.interest(fd)).toBeUndefined();
  });
});

describe('virtio-vsock over real Unix sockets (native host I/O)', () => {
  let io: SocketIo | undefined;
  try {
    io = native().hostIo;
  } catch {
    io = undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'nkvm-vsock-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function until(watcher: ManualFdWatcher, done: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 500; i++) {
      watcher.poll();
      if (done()) return;
      await new Promise((r) => setTimeout(r, 2));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  it.skipIf(io === undefined)('host-initiated and guest-initiated round trips', async () => {
    const udsPath = join(dir, 'v.sock');
    const watcher = new ManualFdWatcher();
    const device = new VirtioVsock({ guestCid: 3, udsPath, io: io!, watcher });
    const g = createMockGuest(device);
    g.driver.init();
    const guest = new GuestSide(g);
    guest.postRx(16);
    const inbox: Packet[] = [];
    const pump = () => inbox.push(...guest.recv());

    // Host-initiated.
    const client: Socket = createConnection(udsPath);
    let fromGuest = '';
    client.on('data', (d) => (fromGuest += d.toString()));
    await new Promise<void>((r) => client.on('connect', () => r()));
    client.write('CONNECT 52\n');
    await until(watcher, () => (pump(), inbox.some((p) => p.op === VSOCK_OP_REQUEST)), 'REQUEST');
    const req = inbox.find((p) => p.op === VSOCK_OP_REQUEST)!;
    guest.send({ op: VSOCK_OP_RESPONSE, srcPort: 52, dstPort: req.srcPort });
    await until(watcher, () => fromGuest === `OK ${req.srcPort}\n`, 'OK line');
    guest.send({ op: VSOCK_OP_RW, srcPort: 52, dstPort: req.srcPort, payload: bytes('from guest') });
    await until(watcher, () => fromGuest.endsWith('from guest'), 'guest data on the host socket');
    client.write('from host');
    await until(watcher, () => (pump(), inbox.some((p) => text(p.payload) === 'from host')), 'host data');
    client.end();
    await until(watcher, () => (pump(), inbox.some((p) => p.op === VSOCK_OP_SHUTDOWN)), 'SHUTDOWN');
    guest.send({ op: VSOCK_OP_RST, srcPort: 52, dstPort: req.srcPort });
    client.destroy();

    // Guest-initiated.
    let serverGot = '';
    const server = createServer((sock) => {
      sock.on('data', (d) => {
        serverGot += d.toString();
        sock.write('pong');
      });
    });
    await new Promise<void>((r) => server.listen(`${udsPath}_1234`, () => r()));
    guest.send({ op: VSOCK_OP_REQUEST, srcPort: 7000, dstPort: 1234 });
    await until(watcher, () => (pump(), inbox.some((p) => p.op === VSOCK_OP_RESPONSE)), 'RESPONSE');
    guest.send({ op: VSOCK_OP_RW, srcPort: 7000, dstPort: 1234, payload: bytes('ping') });
    await until(watcher, () => (pump(), inbox.some((p) => text(p.payload) === 'pong')), 'pong');
    expect(serverGot).toBe('ping');
    device.close();
    await new Promise<void>((r) => server.close(() => r()));
    expect(existsSync(udsPath)).toBe(false);
  });
});
