import { describe, expect, it } from 'vitest';
import { native } from '../../../lib/native/binding.js';
import {
  NET_CFG_MAC,
  NET_CFG_STATUS,
  VIRTIO_ID_NET,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_HDR_SIZE,
  bit,
} from '../../../lib/virtio/constants.js';
import {
  NetHub,
  TapNetBackend,
  TapOpenError,
  VirtioNet,
  createNetPair,
  formatMac,
  parseMac,
} from '../../../lib/virtio/devices/net.js';
import { EAGAIN, EIO, FD_IN, type TapIo } from '../../../lib/virtio/host-io.js';
import { ManualFdWatcher } from '../../../lib/virtio/testing/fd-watcher.js';
import { createMockGuest, type MockGuest } from '../../../lib/virtio/testing/mock-driver.js';

function frame(length: number, seed = 1): Uint8Array {
  const f = Uint8Array.from({ length }, (_, i) => (i + seed) & 0xff);
  f.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0);
  return f;
}

function txBuffers(f: Uint8Array) {
  return [{ data: new Uint8Array(VIRTIO_NET_HDR_SIZE) }, { data: f }];
}

/** Posts n receive buffers of `size` bytes; returns them. */
function postRx(g: MockGuest<VirtioNet>, n: number, size = 1526) {
  const chains = [];
  for (let i = 0; i < n; i++) chains.push(g.driver.addChain(0, [{ length: size, writable: true }])!);
  g.driver.kick(0);
  return chains;
}

function received(g: MockGuest<VirtioNet>): Uint8Array[] {
  return g.driver.takeUsed(0).map((u) => {
    const bytes = g.driver.writtenBytes(u.chain!, u.len);
    expect(bytes[10]).toBe(1); // num_buffers
    expect(bytes.subarray(0, 10).every((b) => b === 0)).toBe(true);
    return bytes.subarray(VIRTIO_NET_HDR_SIZE);
  });
}

describe('virtio-net', () => {
  it('is device 1 with MAC and link status in config', () => {
    const [a] = createNetPair();
    const device = new VirtioNet({ backend: a, mac: '52:54:00:12:34:56' });
    const { driver } = createMockGuest(device);
    expect(driver.readReg(0x008)).toBe(VIRTIO_ID_NET);
    const f = driver.deviceFeatures();
    expect(f & bit(VIRTIO_NET_F_MAC)).not.toBe(0n);
    expect(f & bit(VIRTIO_NET_F_STATUS)).not.toBe(0n);
    expect(formatMac(driver.readConfig(NET_CFG_MAC, 6))).toBe('52:54:00:12:34:56');
    expect(driver.readConfig(NET_CFG_STATUS, 2)[0]).toBe(1);
  });

  it('generates a locally administered unicast MAC by default', () => {
    const device = new VirtioNet({ backend: createNetPair()[0] });
    expect(device.mac[0] & 0x03).toBe(0x02);
  });

  it('parses and validates MAC strings', () => {
    expect([...parseMac('02-00-00-00-00-0a')]).toEqual([2, 0, 0, 0, 0, 10]);
    expect(() => parseMac('02:00:00')).toThrow(/invalid MAC/);
  });

  it('two VMs exchange frames over an in-process pair', () => {
    const [pa, pb] = createNetPair();
    const a = createMockGuest(new VirtioNet({ backend: pa }));
    const b = createMockGuest(new VirtioNet({ backend: pb }));
    a.driver.init();
    b.driver.init();
    postRx(b, 2);
    const f = frame(100);
    a.driver.send(1, txBuffers(f));
    expect(a.driver.takeUsed(1)[0].len).toBe(0);
    const got = received(b);
    expect(got).toHaveLength(1);
    expect([...got[0]]).toEqual([...f]);
    expect(a.device.stats.txFrames).toBe(1);
    expect(b.device.stats.rxFrames).toBe(1);
  });

  it('a JS peer sends and receives frames', () => {
    const [vmSide, jsSide] = createNetPair();
    const g = createMockGuest(new VirtioNet({ backend: vmSide }));
    const fromGuest: Uint8Array[] = [];
    jsSide.attach((f) => fromGuest.push(f));
    g.driver.init();
    g.driver.send(1, [
      { data: new Uint8Array(12) },
      { data: frame(30).subarray(0, 10) },
      { data: frame(30).subarray(10) },
    ]);
    expect(fromGuest.map((f) => f.length)).toEqual([30]);
    postRx(g, 1);
    jsSide.send(frame(60, 5));
    expect([...received(g)[0]]).toEqual([...frame(60, 5)]);
  });

  it('a hub broadcasts to every other port', () => {
    const hub = new NetHub();
    const guests = [0, 1, 2].map(() => createMockGuest(new VirtioNet({ backend: hub.connect() })));
    for (const g of guests) {
      g.driver.init();
      postRx(g, 1);
    }
    guests[0].driver.send(1, txBuffers(frame(64)));
    expect(received(guests[0])).toHaveLength(0);
    expect(received(guests[1])).toHaveLength(1);
    expect(received(guests[2])).toHaveLength(1);
  });

  it('queues frames while the guest has no receive buffers, then drops beyond the bound', () => {
    const [vmSide, jsSide] = createNetPair();
    const g = createMockGuest(new VirtioNet({ backend: vmSide, maxPendingFrames: 2 }));
    g.driver.init();
    for (let i = 0; i < 5; i++) jsSide.send(frame(60, i));
    expect(g.device.pendingFrames).toBe(2);
    expect(g.device.stats.rxDropped).toBe(3);
    postRx(g, 4);
    const got = received(g);
    expect(got.map((f) => f[6])).toEqual([frame(60, 0)[6], frame(60, 1)[6]]);
  });

  it('returns a too-small receive buffer empty and drops the frame', () => {
    const [vmSide, jsSide] = createNetPair();
    const g = createMockGuest(new VirtioNet({ backend: vmSide }));
    g.driver.init();
    postRx(g, 1, 50);
    jsSide.send(frame(60));
    expect(g.driver.takeUsed(0)[0].len).toBe(0);
    expect(g.device.stats.rxTooSmall).toBe(1);
  });

  it('does not forward runt or oversized guest frames', () => {
    const [vmSide, jsSide] = createNetPair();
    const out: Uint8Array[] = [];
    jsSide.attach((f) => out.push(f));
    const g = createMockGuest(new VirtioNet({ backend: vmSide }));
    g.driver.init();
    g.driver.send(1, [{ data: new Uint8Array(12) }]);
    g.driver.send(1, txBuffers(new Uint8Array(5)));
    g.driver.send(1, txBuffers(new Uint8Array(70_000)));
    expect(out).toHaveLength(0);
    expect(g.device.stats.txInvalid).toBe(3);
    expect(g.driver.takeUsed(1)).toHaveLength(3);
  });

  it('link status changes raise a config interrupt', () => {
    const g = createMockGuest(new VirtioNet({ backend: createNetPair()[0] }));
    g.driver.init();
    g.device.setLinkUp(false);
    expect(g.driver.readConfig(NET_CFG_STATUS, 2)[0]).toBe(0);
    expect(g.driver.ackInterrupts()).toBe(2);
  });

  it('reset drops frames queued for the old driver', () => {
    const [vmSide, jsSide] = createNetPair();
    const g = createMockGuest(new VirtioNet({ backend: vmSide }));
    jsSide.send(frame(60));
    expect(g.device.pendingFrames).toBe(1);
    g.driver.init();
    expect(g.device.pendingFrames).toBe(0);
  });
});

class FakeTapIo implements TapIo {
  frames: Uint8Array[] = [];
  written: Uint8Array[] = [];
  writeResult: number | undefined;
  readError = 0;
  closed = false;
  openError: Error | undefined;
  openTap(name: string): { fd: number; name: string } {
    if (this.openError) throw this.openError;
    return { fd: 42, name };
  }
  read(_fd: number, buf: Uint8Array): number {
    if (this.readError) return -this.readError;
    const f = this.frames.shift();
    if (f === undefined) return -EAGAIN;
    buf.set(f);
    return f.length;
  }
  write(_fd: number, buf: Uint8Array): number {
    if (this.writeResult !== undefined) return this.writeResult;
    this.written.push(buf.slice());
    return buf.length;
  }
  close(): void {
    this.closed = true;
  }
}

describe('tap backend', () => {
  it('reads frames until EAGAIN when the watcher reports the fd readable', () => {
    const io = new FakeTapIo();
    const watcher = new ManualFdWatcher();
    const tap = TapNetBackend.open('tap0', { io, watcher });
    const g = createMockGuest(new VirtioNet({ backend: tap }));
    g.driver.init();
    expect(watcher.interest(42)).toBe(FD_IN);
    io.frames.push(frame(60, 1), frame(70, 2));
    postRx(g, 4);
    watcher.fire(42, FD_IN);
    expect(received(g).map((f) => f.length)).toEqual([60, 70]);
    g.driver.send(1, txBuffers(frame(42)));
    expect(io.written.map((f) => f.length)).toEqual([42]);
    tap.close();
    expect(io.closed).toBe(true);
    expect(watcher.interest(42)).toBeUndefined();
  });

  it('counts EAGAIN on write as a dropped frame', () => {
    const io = new FakeTapIo();
    const tap = TapNetBackend.open('tap0', { io, watcher: new ManualFdWatcher() });
    io.writeResult = -EAGAIN;
    tap.send(frame(60));
    expect(tap.stats.txDropped).toBe(1);
  });

  it('stops listening to a tap that vanished', () => {
    const io = new FakeTapIo();
    const watcher = new ManualFdWatcher();
    const tap = TapNetBackend.open('tap0', { io, watcher });
    tap.attach(() => {});
    io.readError = EIO;
    watcher.fire(42, FD_IN);
    expect(tap.stats.failed).toMatch(/errno 5/);
    expect(watcher.interest(42)).toBeUndefined();
    tap.send(frame(60));
    expect(tap.stats.txDropped).toBe(1);
  });

  it('explains why /dev/net/tun cannot be opened', () => {
    const io = new FakeTapIo();
    io.openError = Object.assign(new Error('open: EACCES'), { code: 'EACCES' });
    expect(() => TapNetBackend.open('tap9', { io, watcher: new ManualFdWatcher() })).toThrow(TapOpenError);
    expect(() => TapNetBackend.open('tap9', { io, watcher: new ManualFdWatcher() })).toThrow(/ip tuntap add/);
    io.openError = Object.assign(new Error('open: ENOENT'), { code: 'ENOENT' });
    expect(() => TapNetBackend.open('tap9', { io, watcher: new ManualFdWatcher() })).toThrow(/modprobe tun/);
  });

  it('opens a real tap with the native host I/O, or fails with TapOpenError', () => {
    let io: TapIo;
    try {
      io = native().hostIo;
    } catch {
      return; // no addon built
    }
    let tap: TapNetBackend | undefined;
    try {
      tap = TapNetBackend.open('nkvmtest0', { io, watcher: new ManualFdWatcher() });
    } catch (error) {
      expect(error).toBeInstanceOf(TapOpenError);
      return;
    }
    expect(tap.fd).toBeGreaterThan(0);
    expect(tap.ifname).toBe('nkvmtest0');
    tap.close();
  });
});
