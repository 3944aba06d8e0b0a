/**
 * Fuzz targets for the virtio layer, in the libFuzzer style: each takes an arbitrary byte string, plays a
 * hostile guest (and host) from it, and throws only when an invariant breaks. The fixed-seed property tests in
 * test/fuzz call them through fast-check; a long-running `npm run fuzz` can call them millions of times.
 *
 * Invariants checked everywhere:
 * - nothing throws out of the transport, the queues, the devices or their host-side callbacks;
 * - no GuestMemoryError (an access outside guest memory) is caught inside the device either
 *   (`transport.stats.internalErrors` stays 0 — every exception a device swallows is counted there);
 * - the device reports what the spec prescribes (DEVICE_NEEDS_RESET for corrupt rings, used length 0 for bad
 *   chains, a valid status byte for block requests) — checked per target.
 */
import {
  MMIO_CONFIG,
  MMIO_DEVICE_FEATURES,
  MMIO_DEVICE_FEATURES_SEL,
  MMIO_DRIVER_FEATURES,
  MMIO_DRIVER_FEATURES_SEL,
  MMIO_INTERRUPT_ACK,
  MMIO_MAGIC,
  MMIO_MAGIC_VALUE,
  MMIO_QUEUE_DESC_HIGH,
  MMIO_QUEUE_DESC_LOW,
  MMIO_QUEUE_DEVICE_HIGH,
  MMIO_QUEUE_DEVICE_LOW,
  MMIO_QUEUE_DRIVER_HIGH,
  MMIO_QUEUE_DRIVER_LOW,
  MMIO_QUEUE_NOTIFY,
  MMIO_QUEUE_NUM,
  MMIO_QUEUE_READY,
  MMIO_QUEUE_RESET,
  MMIO_QUEUE_SEL,
  MMIO_STATUS,
  STATUS_DEVICE_NEEDS_RESET,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_HDR_SIZE,
  VSOCK_HDR_SIZE,
  bit,
} from '../constants.js';
import type { VirtioDevice } from '../device.js';
import { VirtioBalloon } from '../devices/balloon.js';
import { MemoryBlockBackend, VirtioBlock } from '../devices/block.js';
import { VirtioConsole } from '../devices/console.js';
import { VirtioEntropy } from '../devices/entropy.js';
import { VirtioNet, createNetPair } from '../devices/net.js';
import { VirtioVsock } from '../devices/vsock.js';
import { EIO, ENOSPC } from '../host-io.js';
import { VirtioMmioTransport } from '../mmio-transport.js';
import { FakeSocketIo, type FakeSocket } from './fake-socket-io.js';
import { ManualFdWatcher } from './fd-watcher.js';
import { createMockGuest, type MockBuffer, type MockGuest } from './mock-driver.js';
import { ChainProbeDevice } from './probe-device.js';

/** An invariant broke: the message says which. */
export class FuzzInvariantError extends Error {
  override name = 'FuzzInvariantError';
}

/** Reads fuzz input as a stream of small integers; past the end it yields zeros. */
export class ByteReader {
  private at = 0;
  constructor(readonly bytes: Uint8Array) {}
  get done(): boolean {
    return this.at >= this.bytes.length;
  }
  u8(): number {
    return this.at < this.bytes.length ? this.bytes[this.at++] : 0;
  }
  u16(): number {
    return this.u8() | (this.u8() << 8);
  }
  u32(): number {
    return (this.u16() | (this.u16() << 16)) >>> 0;
  }
  bool(): boolean {
    return (this.u8() & 1) === 1;
  }
  pick<T>(list: readonly T[]): T {
    return list[this.u8() % list.length];
  }
  take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u8();
    return out;
  }
  /** n bytes of filler derived from one input byte: bulk data without spending the input on it. */
  filler(n: number): Uint8Array {
    const seed = this.u8();
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = (seed + i * 31) & 0xff;
    return out;
  }
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new FuzzInvariantError(message);
}

function checkTransport(t: VirtioMmioTransport): void {
  check(t.stats.internalErrors === 0, `device swallowed an exception: ${t.lastError}`);
  const s = t.status;
  check(
    (s & STATUS_DRIVER_OK) === 0 || (s & STATUS_FEATURES_OK) !== 0,
    `DRIVER_OK without FEATURES_OK (${s})`,
  );
  if ((s & STATUS_FEATURES_OK) !== 0) {
    check((t.features & ~t.offeredFeatures) === 0n, 'accepted features that were not offered');
    check((t.features & bit(VIRTIO_F_VERSION_1)) !== 0n, 'accepted features without VERSION_1');
  }
  for (const q of t.queues) {
    if (q.broken) check((s & STATUS_DEVICE_NEEDS_RESET) !== 0, 'broken queue without DEVICE_NEEDS_RESET');
  }
}

function deviceErrors(d: VirtioDevice): number {
  return (d as { errors?: { internalErrors: number } }).errors?.internalErrors ?? 0;
}

// Guest memory is reused between runs (zeroed each time): a fuzzer calls these targets millions of times.
const FUZZ_MEMORY = 0x1_0000;
const FUZZ_RING_AREA = 0x4000;
let sharedBuffer: ArrayBuffer | undefined;
function guestFor<D extends VirtioDevice>(device: D): MockGuest<D> {
  sharedBuffer ??= new ArrayBuffer(FUZZ_MEMORY);
  return createMockGuest(device, { buffer: sharedBuffer, ringArea: FUZZ_RING_AREA });
}

const V1 = bit(VIRTIO_F_VERSION_1);

// --- Descriptor chains and ring indices ------------------------------------------------------------------------

/**
 * Writes arbitrary descriptor tables (direct and indirect), avail ring entries, avail idx jumps and event
 * indices, then notifies. Checks that every chain the device got is in memory, ordered readable-then-writable
 * and no longer than the queue, and that corrupt rings end in DEVICE_NEEDS_RESET.
 */
export function fuzzDescriptorChains(bytes: Uint8Array): void {
  const r = new ByteReader(bytes);
  const size = 1 << (r.u8() % 5);
  const featureBits = r.u8();
  const eventIdx = (featureBits & 2) !== 0;
  const features =
    V1 |
    ((featureBits & 1) !== 0 ? bit(VIRTIO_F_INDIRECT_DESC) : 0n) |
    (eventIdx ? bit(VIRTIO_F_EVENT_IDX) : 0n);
  const device = new ChainProbeDevice([16]);
  device.maxCopy = 4096;
  const { driver, transport, memory } = guestFor(device);
  check(driver.init({ features, queueSizes: [size] }), 'FEATURES_OK refused');
  const tableBase = 0x8000;
  const address = (): number => {
    switch (r.u8() % 6) {
      case 0:
        return 0x9000 + (r.u16() % 0x6000);
      case 1:
        return FUZZ_MEMORY - r.u8();
      case 2:
        return tableBase + 16 * (r.u8() % 16);
      case 3:
        return r.u32() * 0x1_0000 + r.u16();
      case 4:
        return 0xffff_ffff * 0x1_0000_0000 + r.u32();
      default:
        return r.u16();
    }
  };
  const length = (): number => r.pick([0, r.u8(), r.u16(), 0xffff_ffff - r.u8(), 16 * (r.u8() % 20), 1]);
  const descriptor = () => ({ addr: address(), len: length(), flags: r.u8() & 7, next: r.u8() % (size + 2) });
  for (let i = 0; i < size; i++) driver.writeDescriptor(0, i, descriptor());
  for (let i = 0; i < 16; i++) driver.writeDescriptorAt(tableBase + 16 * i, descriptor());
  const q = transport.queues[0];
  // Checked where the device writes it: writable buffers may legally overlap the guest's own rings, so what the
  // driver reads back from the used ring proves nothing.
  const pushUsed = q.pushUsed.bind(q);
  q.pushUsed = (head, len) => {
    check(head < size, `used id ${head} >= queue size ${size}`);
    pushUsed(head, len);
  };
  const rounds = 1 + (r.u8() % 4);
  for (let round = 0; round < rounds; round++) {
    const n = r.u8() % (size + 2);
    for (let j = 0; j < n; j++) driver.publish(0, r.u8() % (size + 1));
    if (r.u8() % 16 === 0) driver.setAvailIdx(0, r.u16());
    if (eventIdx) driver.setUsedEvent(0, r.u16());
    driver.setAvailFlags(0, r.u8() & 1);
    if (r.u8() % 8 === 0) transport.notifyQueue(r.u8() % 3);
    else driver.kick(0);
    checkTransport(transport);
    for (const c of device.seen) {
      check(c.buffers.length <= size, `chain of ${c.buffers.length} buffers in a queue of ${size}`);
      let writable = false;
      let total = 0;
      for (const b of c.buffers) {
        check(memory.contains(b.addr, b.len), `buffer 0x${b.addr.toString(16)}+${b.len} outside memory`);
        check(b.len > 0, 'zero-length buffer handed to the device');
        check(!writable || b.writable, 'readable buffer after a writable one');
        writable ||= b.writable;
        total += b.len;
      }
      check(total <= 0xffff_ffff, 'chain longer than 2^32-1 bytes');
      check(c.head < size, 'head index out of range');
    }
    device.seen.length = 0;
  }
  if (q.broken) check((transport.status & STATUS_DEVICE_NEEDS_RESET) !== 0, 'broken without NEEDS_RESET');
}

// --- The virtio-mmio register space --------------------------------------------------------------------------

const REGISTERS = [
  MMIO_MAGIC_VALUE,
  MMIO_DEVICE_FEATURES,
  MMIO_DEVICE_FEATURES_SEL,
  MMIO_DRIVER_FEATURES,
  MMIO_DRIVER_FEATURES_SEL,
  MMIO_QUEUE_SEL,
  MMIO_QUEUE_NUM,
  MMIO_QUEUE_READY,
  MMIO_QUEUE_NOTIFY,
  MMIO_INTERRUPT_ACK,
  MMIO_STATUS,
  MMIO_QUEUE_DESC_LOW,
  MMIO_QUEUE_DESC_HIGH,
  MMIO_QUEUE_DRIVER_LOW,
  MMIO_QUEUE_DRIVER_HIGH,
  MMIO_QUEUE_DEVICE_LOW,
  MMIO_QUEUE_DEVICE_HIGH,
  MMIO_QUEUE_RESET,
];

function makeDevice(kind: number): { device: VirtioDevice; close: () => void } {
  switch (kind % 7) {
    case 0:
      return { device: new ChainProbeDevice([8, 8]), close: () => {} };
    case 1:
      return { device: new VirtioEntropy({ queueSize: 8 }), close: () => {} };
    case 2:
      return { device: new VirtioConsole({ queueSize: 8 }), close: () => {} };
    case 3:
      return { device: new VirtioBalloon({ queueSize: 8 }), close: () => {} };
    case 4:
      return {
        device: new VirtioBlock({ backend: new MemoryBlockBackend(4096), queueSize: 8 }),
        close: () => {},
      };
    case 5: {
      const [port] = createNetPair();
      return {
        device: new VirtioNet({ backend: port, queueSize: 8, mac: '02:00:00:00:00:01' }),
        close: () => {},
      };
    }
    default: {
      const device = new VirtioVsock({
        guestCid: 3,
        udsPath: '/fuzz/v.sock',
        io: new FakeSocketIo(),
        watcher: new ManualFdWatcher(),
        queueSize: 8,
      });
      return { device, close: () => device.close() };
    }
  }
}

/**
 * Random register sequences (any offset, width and value, out-of-order status writes, queue setup with bad
 * sizes and addresses, notifications before ready), mixed with well-formed driver steps and chains, against
 * each device type.
 */
export function fuzzMmioRegisters(bytes: Uint8Array): void {
  const r = new ByteReader(bytes);
  const { device, close } = makeDevice(r.u8());
  const { driver, transport } = guestFor(device);
  const width = () => r.pick([1, 2, 4, 4, 4, 8]);
  const offset = () => (r.u8() % 4 === 0 ? r.u16() % 0x1000 : r.pick(REGISTERS));
  const value = () => r.pick([0, 1, 2, 3, 8, 11, 15, 0x80, 0x40, 0xffff_ffff, r.u32(), r.u8()]);
  for (let step = 0; step < 64 && !r.done; step++) {
    switch (r.u8() % 10) {
      case 0:
        transport.read(offset(), new Uint8Array(width()));
        break;
      case 1: {
        const data = new Uint8Array(width());
        new DataView(data.buffer).setUint8(0, value() & 0xff);
        if (data.length >= 4) new DataView(data.buffer).setUint32(0, value(), true);
        transport.write(offset(), data);
        break;
      }
      case 2:
        driver.setStatus(r.pick([0, 1, 3, 11, 15, 0x80, 0x40, 0x8b, r.u8()]));
        break;
      case 3:
        driver.writeDriverFeatures(transport.offeredFeatures & ((BigInt(r.u32()) << 32n) | BigInt(r.u32())));
        if (r.bool()) driver.writeDriverFeatures(BigInt(r.u32()) << BigInt(r.u8() % 40));
        break;
      case 4: {
        driver.writeReg(MMIO_QUEUE_SEL, r.u8() % 4);
        driver.writeReg(MMIO_QUEUE_NUM, r.pick([0, 1, 2, 3, 8, 16, 256, r.u16()]));
        const addr = () => r.pick([0x1000, 0x1008, 0x2000, 0x3001, FUZZ_MEMORY - 8, 2 ** 40, r.u32()]);
        driver.writeAddress(MMIO_QUEUE_DESC_LOW, MMIO_QUEUE_DESC_HIGH, addr());
        driver.writeAddress(MMIO_QUEUE_DRIVER_LOW, MMIO_QUEUE_DRIVER_HIGH, addr());
        driver.writeAddress(MMIO_QUEUE_DEVICE_LOW, MMIO_QUEUE_DEVICE_HIGH, addr());
        driver.writeReg(MMIO_QUEUE_READY, r.pick([0, 1, 1, 2, r.u32()]));
        break;
      }
      case 5:
        if (r.bool()) driver.writeReg(MMIO_QUEUE_NOTIFY, r.pick([0, 1, 2, 3, 0xffff, r.u32()]));
        else transport.notifyQueue(r.u8() % 5);
        break;
      case 6: {
        const data = r.take(width());
        if (r.bool()) transport.write(MMIO_CONFIG + (r.u8() % 80), data);
        else transport.read(MMIO_CONFIG + (r.u16() % 0xf00), data);
        break;
      }
      case 7:
        driver.writeReg(MMIO_INTERRUPT_ACK, r.u8() & 3);
        break;
      case 8: {
        const offered = transport.offeredFeatures;
        driver.init({ features: V1 | (offered & BigInt(r.u32())) });
        sendRandomChain(r, driver, transport);
        break;
      }
      default:
        driver.writeReg(MMIO_QUEUE_SEL, r.u8() % 4);
        driver.writeReg(MMIO_QUEUE_RESET, r.pick([1, 0, r.u32()]));
    }
    checkTransport(transport);
    check(driver.readReg(MMIO_MAGIC_VALUE) === MMIO_MAGIC, 'magic value changed');
    check(deviceErrors(device) === 0, 'device counted an internal error');
  }
  close();
}

/** Adds a random well-formed chain to a random queue the mock driver has set up, and kicks. */
function sendRandomChain(
  r: ByteReader,
  driver: MockGuest<VirtioDevice>['driver'],
  t: VirtioMmioTransport,
): void {
  const index = r.u8() % t.queues.length;
  let q;
  try {
    q = driver.queue(index);
  } catch {
    return; // queue not set up
  }
  const buffers: MockBuffer[] = [];
  const n = 1 + (r.u8() % Math.min(4, q.size));
  let writable = false;
  for (let i = 0; i < n; i++) {
    writable ||= r.u8() % 3 === 0;
    const len = r.pick([0, 1, 12, 44, 64, 512, r.u16() % 4096]);
    buffers.push(
      writable ? { length: len, writable: true } : { data: len <= 64 ? r.take(len) : r.filler(len) },
    );
  }
  driver.send(index, buffers, { indirect: driver.hasFeature(VIRTIO_F_INDIRECT_DESC) && r.bool() });
  driver.takeUsed(index);
}

// --- Block request parser ---------------------------------------------------------------------------------------

/**
 * Block requests of every type with arbitrary sectors, split headers, odd data lengths, missing or oversized
 * status buffers, direct or indirect, with injected host I/O errors. Checks the status byte is OK, IOERR or
 * UNSUPP, the used length covers the status byte, and a read-only image never changes.
 */
export function fuzzBlockRequests(bytes: Uint8Array): void {
  const r = new ByteReader(bytes);
  const readOnly = r.bool();
  const sectors = 16;
  const backend = new MemoryBlockBackend(sectors * 512, readOnly);
  for (let i = 0; i < backend.bytes.length; i++) backend.bytes[i] = i & 0xff;
  const before = backend.bytes.slice();
  const device = new VirtioBlock({ backend, queueSize: 16, maxDiscardSegments: 4, maxWriteZeroesSectors: 8 });
  const { driver, transport, memory } = guestFor(device);
  const features =
    V1 | (device.deviceFeatures & BigInt(r.u32())) | (r.bool() ? bit(VIRTIO_F_INDIRECT_DESC) : 0n);
  check(driver.init({ features }), 'FEATURES_OK refused');
  for (let i = 0; i < 24 && !r.done; i++) {
    const type = r.pick([
      VIRTIO_BLK_T_IN,
      VIRTIO_BLK_T_OUT,
      VIRTIO_BLK_T_FLUSH,
      VIRTIO_BLK_T_GET_ID,
      VIRTIO_BLK_T_DISCARD,
      VIRTIO_BLK_T_WRITE_ZEROES,
      r.u32(),
    ]);
    const header = new Uint8Array(16);
    const hv = new DataView(header.buffer);
    hv.setUint32(0, type, true);
    hv.setUint32(8, r.pick([0, r.u8() % sectors, sectors - 1, sectors, r.u32()]), true);
    hv.setUint32(12, r.pick([0, 0, 0, r.u32()]), true);
    const buffers: MockBuffer[] = [];
    const headerLength = r.pick([16, 16, 16, r.u8() % 20]);
    const split = r.u8() % 17;
    const h =
      headerLength <= 16 ? header.subarray(0, headerLength) : Uint8Array.from([...header, 0, 0, 0, 0]);
    if (split > 0 && split < h.length)
      buffers.push({ data: h.subarray(0, split) }, { data: h.subarray(split) });
    else buffers.push({ data: h });
    const dataWritable = type === VIRTIO_BLK_T_IN || type === VIRTIO_BLK_T_GET_ID;
    const segments = r.u8() % 3;
    for (let s = 0; s < segments; s++) {
      const len = r.pick([0, 512, 1024, 16, 32, 511, r.u16() % 2048]);
      if (dataWritable) buffers.push({ length: len, writable: true });
      else {
        const data = r.filler(len);
        // Discard / write-zeroes segments: mostly small in-range numbers so some succeed.
        if (len >= 16 && r.bool()) {
          const dv = new DataView(data.buffer);
          dv.setBigUint64(0, BigInt(r.u8() % (sectors + 2)), true);
          dv.setUint32(8, r.u8() % 10, true);
          dv.setUint32(12, r.pick([0, 0, 1, r.u32()]), true);
        }
        buffers.push({ data });
      }
    }
    const statusLength = r.pick([1, 1, 1, 0, 2]);
    if (statusLength > 0) buffers.push({ length: statusLength, writable: true });
    backend.failWith = r.u8() % 8 === 0 ? r.pick([EIO, ENOSPC]) : 0;
    const chain = driver.send(0, buffers, {
      indirect: driver.hasFeature(VIRTIO_F_INDIRECT_DESC) && r.bool(),
    });
    if (chain === undefined) break;
    const used = driver.takeUsed(0);
    check(used.length === 1, `expected one used entry, got ${used.length}`);
    const writableTotal = chain.buffers.filter((b) => b.writable).reduce((n, b) => n + b.length, 0);
    if (writableTotal === 0) {
      check(used[0].len === 0, 'request without a status byte returned with a length');
    } else {
      check(used[0].len === writableTotal, `used length ${used[0].len} != writable bytes ${writableTotal}`);
      const last = chain.buffers.filter((b) => b.writable && b.length > 0).pop()!;
      const status = memory.u8(last.gpa + last.length - 1);
      check(status <= VIRTIO_BLK_S_UNSUPP, `status byte ${status}`);
    }
    checkTransport(transport);
  }
  if (readOnly)
    check(
      backend.bytes.every((b, i) => b === before[i]),
      'read-only image changed',
    );
  check(device.errors.internalErrors === 0, 'block device internal error');
}

// --- Net ---------------------------------------------------------------------------------------------------------

/**
 * Transmit chains with any header/payload split and size, receive buffers of any size (including none
 * writable), frames from a JS peer of any size, link flaps and resets. Checks frames arrive intact and in order.
 */
export function fuzzNetDevice(bytes: Uint8Array): void {
  const r = new ByteReader(bytes);
  const [vmPort, peer] = createNetPair();
  const device = new VirtioNet({
    backend: vmPort,
    queueSize: 16,
    maxPendingFrames: 4,
    mac: '02:00:00:00:00:02',
  });
  const { driver, transport } = guestFor(device);
  const fromGuest: Uint8Array[] = [];
  peer.attach((f) => fromGuest.push(f));
  const sentToGuest: Uint8Array[] = [];
  check(driver.init({ features: V1 | (device.deviceFeatures & BigInt(r.u32())) }), 'FEATURES_OK refused');
  for (let i = 0; i < 32 && !r.done; i++) {
    switch (r.u8() % 5) {
      case 0: {
        const header = r.take(r.pick([VIRTIO_NET_HDR_SIZE, 0, 4, 20]));
        const payload = r.filler(r.pick([14, 60, 0, 5, r.u16() % 1600]));
        const split = r.u8() % (payload.length + 1);
        const before = fromGuest.length;
        driver.send(1, [
          { data: header },
          { data: payload.subarray(0, split) },
          { data: payload.subarray(split) },
        ]);
        driver.takeUsed(1);
        const frameLength = header.length + payload.length - VIRTIO_NET_HDR_SIZE;
        if (frameLength >= 14) {
          check(fromGuest.length === before + 1, 'valid frame not forwarded');
          const all = Uint8Array.from([...header, ...payload]).subarray(VIRTIO_NET_HDR_SIZE);
          check(
            fromGuest[before].every((b, k) => b === all[k]),
            'forwarded frame differs',
          );
        }
        break;
      }
      case 1: {
        const size = r.pick([1526, 60, 12, 0, r.u16() % 2000]);
        driver.send(0, r.bool() ? [{ length: size, writable: true }] : [{ data: new Uint8Array(4) }]);
        break;
      }
      case 2: {
        const frame = r.filler(r.pick([60, 14, 1514, r.u16() % 1600]));
        sentToGuest.push(frame);
        peer.send(frame);
        break;
      }
      case 3:
        device.setLinkUp(r.bool());
        break;
      default:
        if (r.u8() % 4 === 0) driver.init({ features: V1 });
    }
    for (const u of driver.takeUsed(0)) {
      if (u.len === 0) continue;
      const got = driver.writtenBytes(u.chain!, u.len).subarray(VIRTIO_NET_HDR_SIZE);
      const match = sentToGuest.findIndex((f) => f.length === got.length && f.every((b, k) => b === got[k]));
      check(match >= 0, 'guest received a frame nobody sent');
      sentToGuest.splice(0, match + 1); // in order: everything before it was dropped
    }
    checkTransport(transport);
  }
  check(device.errors.internalErrors === 0, 'net device internal error');
}

// --- Vsock --------------------------------------------------------------------------------------------------------

/**
 * Guest packets with arbitrary ops, ports, CIDs, lengths, credit and flags; host programs connecting with good
 * and bad CONNECT lines, sending, stalling and closing; transport resets. Checks no exception, no leaked
 * connection beyond the limit, and every fd the device closed is closed once.
 */
export function fuzzVsockPackets(bytes: Uint8Array): void {
  const r = new ByteReader(bytes);
  const io = new FakeSocketIo();
  const watcher = new ManualFdWatcher();
  const path = '/fuzz/v.sock';
  const device = new VirtioVsock({
    guestCid: 3,
    udsPath: path,
    io,
    watcher,
    queueSize: 16,
    bufferSize: 1024,
    maxConnections: 4,
  });
  const { driver, transport } = guestFor(device);
  io.hostListen(`${path}_1`);
  io.hostListen(`${path}_2`);
  check(driver.init({ features: V1 | (r.bool() ? bit(VIRTIO_F_EVENT_IDX) : 0n) }), 'FEATURES_OK refused');
  const hostSockets: FakeSocket[] = [];
  // Mostly well-addressed packets on a few flows (guest→host ports 1 and 2, replies to host-initiated flows
  // from ports 1 and 2 to the first host ports), so connections get established and carry data.
  const flows: [number, number][] = [
    [1000, 1],
    [1001, 2],
    [1, 1 << 30],
    [2, (1 << 30) + 1],
  ];
  let lastRequested: [number, number] | undefined;
  const flow = (): [number, number] => {
    const choice = r.u8();
    if (choice % 2 === 0 && lastRequested !== undefined) return lastRequested; // keep talking on a live flow
    return choice % 16 === 1 ? [r.u32(), r.u32()] : r.pick(flows);
  };
  const op = () =>
    r.pick([
      VSOCK_OP_REQUEST,
      VSOCK_OP_RW,
      VSOCK_OP_RW,
      VSOCK_OP_RW,
      VSOCK_OP_RW,
      VSOCK_OP_RESPONSE,
      VSOCK_OP_CREDIT_UPDATE,
      VSOCK_OP_CREDIT_REQUEST,
      VSOCK_OP_SHUTDOWN,
      VSOCK_OP_RST,
      r.u8() % 9,
    ]);
  for (let i = 0; i < 48 && !r.done; i++) {
    switch (r.u8() % 11) {
      case 0:
      case 1:
      case 8:
      case 9:
      case 10: {
        const payload = r.filler(r.pick([0, 0, 5, 100, r.u16() % 600]));
        const h = new Uint8Array(VSOCK_HDR_SIZE);
        const v = new DataView(h.buffer);
        const [src, dst] = flow();
        // Three packets in four are well formed; the fourth breaks one header field.
        const corrupt = r.u8();
        const broken = corrupt % 4 === 0 ? (corrupt >> 2) % 6 : -1;
        v.setUint32(0, broken === 0 ? r.u32() : 3, true);
        v.setUint32(4, broken === 1 ? 1 : 0, true);
        v.setUint32(8, broken === 2 ? 3 : 2, true);
        v.setUint32(16, src, true);
        v.setUint32(20, dst, true);
        v.setUint32(24, broken === 3 ? r.u32() : payload.length, true);
        v.setUint16(28, broken === 4 ? r.u16() : 1, true);
        const opcode = broken === 5 ? r.u16() : op();
        if (opcode === VSOCK_OP_REQUEST) lastRequested = [src, dst];
        v.setUint16(30, opcode, true);
        v.setUint32(32, r.pick([0, 1, 2, 3, r.u32()]), true);
        v.setUint32(36, r.pick([4096, 4096, 64, 0, r.u32()]), true);
        v.setUint32(40, r.pick([0, 64, r.u32()]), true);
        const bufs: MockBuffer[] = r.bool()
          ? [{ data: Uint8Array.from([...h, ...payload]) }]
          : [{ data: h.subarray(0, r.pick([44, 44, 20])) }, { data: payload }];
        driver.send(1, bufs);
        driver.takeUsed(1);
        break;
      }
      case 2: {
        const n = 1 + (r.u8() % 4);
        const size = r.pick([4096 + VSOCK_HDR_SIZE, 44, 45, 10, 0, r.u16() % 5000]);
        for (let k = 0; k < n; k++) driver.addChain(0, [{ length: size, writable: true }]);
        driver.kick(0);
        break;
      }
      case 3: {
        const s = io.hostConnect(path);
        hostSockets.push(s);
        watcher.fire(io.listenerFd(path), 1);
        s.send(r.pick(['CONNECT 1\n', 'CONNECT 2\nxyz', 'CONNECT 9', 'bogus\n', `CONNECT ${r.u32()}\n`]));
        break;
      }
      case 4: {
        const s = [...hostSockets, ...(io.hostListeners.get(`${path}_1`) ?? [])][r.u8() % 8];
        if (s !== undefined) {
          switch (r.u8() % 4) {
            case 0:
              s.send(r.filler(r.u16() % 700));
              break;
            case 1:
              s.hostEof = true;
              break;
            case 2:
              s.hostClosed = true;
              break;
            default:
              s.writeCapacity = r.pick([0, 3, Infinity]);
          }
        }
        break;
      }
      case 5:
        driver.send(2, [{ length: r.pick([4, 8, 1, 0]), writable: true }]);
        if (r.u8() % 8 === 0) device.sendTransportReset();
        break;
      case 6:
        if (r.u8() % 8 === 0) driver.init({ features: V1 });
        break;
      default:
        for (const fd of [...watcher.watched.keys()]) watcher.fire(fd, r.pick([1, 4, 5, 0x10, 0x8]));
    }
    watcher.poll();
    driver.takeUsed(0);
    driver.takeUsed(2);
    checkTransport(transport);
    check(device.connectionCount <= 4, `connection limit exceeded: ${device.connectionCount}`);
    check(device.errors.internalErrors === 0, 'vsock internal error');
  }
  device.close();
  check(new Set(io.closedFds).size === io.closedFds.length, 'an fd was closed twice');
}

// --- Balloon and console -------------------------------------------------------------------------------------------

/** Inflate/deflate PFN arrays (any values, odd lengths), stats buffers, targets and stats requests. */
export function fuzzBalloon(bytes: Uint8Array): void {
  const r = new ByteReader(bytes);
  const device = new VirtioBalloon({ queueSize: 8 });
  const { driver, transport } = guestFor(device);
  check(driver.init({ features: V1 | (device.deviceFeatures & BigInt(r.u8())) }), 'FEATURES_OK refused');
  let pfnCount = 0;
  for (let i = 0; i < 24 && !r.done; i++) {
    switch (r.u8() % 5) {
      case 0: {
        const n = r.u8() % 32;
        const data = new Uint8Array(n * 4 + (r.u8() % 8 === 0 ? 1 : 0));
        const v = new DataView(data.buffer);
        for (let k = 0; k < n; k++) {
          v.setUint32(k * 4, r.pick([0x10 + (r.u8() % 8), 0xf, r.u32(), FUZZ_MEMORY / 4096 - 1]), true);
        }
        pfnCount += n;
        driver.send(0, [{ data }]);
        break;
      }
      case 1:
        driver.send(1, [{ data: r.take(r.u8()) }]);
        break;
      case 2:
        driver.send(2, [{ data: r.filler(r.pick([10, 20, 0, 7, r.u16() % 1000])) }]);
        break;
      case 3:
        device.setTarget(r.u32());
        transport.write(MMIO_CONFIG + (r.u8() % 10), r.take(r.pick([1, 2, 4])));
        break;
      default:
        device.requestStats();
    }
    for (const q of [0, 1, 2]) {
      try {
        driver.takeUsed(q);
      } catch {
        // queue 2 absent when stats were not negotiated
      }
    }
    checkTransport(transport);
  }
  const c = device.counters;
  check(c.inflatedPages + c.invalidPfns + c.discardErrors <= pfnCount, 'more pages inflated than sent');
  check(device.errors.internalErrors === 0, 'balloon internal error');
}

/** Console input of any size, transmit and receive chains of any shape; output and input keep their order. */
export function fuzzConsole(bytes: Uint8Array): void {
  const r = new ByteReader(bytes);
  const output: number[] = [];
  const device = new VirtioConsole({
    queueSize: 8,
    maxPendingInput: 256,
    output: (b) => output.push(...b),
  });
  const { driver, transport } = guestFor(device);
  const expectedOutput: number[] = [];
  const input: number[] = [];
  const delivered: number[] = [];
  check(driver.init(), 'FEATURES_OK refused');
  for (let i = 0; i < 32 && !r.done; i++) {
    switch (r.u8() % 4) {
      case 0: {
        const parts = [r.take(r.u8() % 40), r.take(r.u8() % 40)];
        expectedOutput.push(...parts[0], ...parts[1]);
        driver.send(1, [{ data: parts[0] }, { data: parts[1] }]);
        break;
      }
      case 1: {
        const data = r.filler(r.u16() % 300);
        const room = 256 - device.pendingInput;
        input.push(...data.subarray(0, Math.max(0, room)));
        device.input(data);
        break;
      }
      case 2:
        driver.send(0, [{ length: r.pick([1, 16, 0, 300]), writable: true }]);
        break;
      default:
        transport.write(MMIO_CONFIG + 8, Uint8Array.of(0x41, 0, 0, 0));
        expectedOutput.push(0x41);
    }
    driver.takeUsed(1);
    for (const u of driver.takeUsed(0)) delivered.push(...driver.writtenBytes(u.chain!, u.len));
    checkTransport(transport);
  }
  check(
    output.length === expectedOutput.length && output.every((b, k) => b === expectedOutput[k]),
    'output order',
  );
  check(
    delivered.every((b, k) => b === input[k]),
    'input delivered out of order',
  );
  check(device.errors.internalErrors === 0, 'console internal error');
}

/** Every virtio fuzz target by name, for a fuzz runner. */
export const VIRTIO_FUZZ_TARGETS: Readonly<Record<string, (bytes: Uint8Array) => void>> = {
  'virtio-descriptor-chains': fuzzDescriptorChains,
  'virtio-mmio-registers': fuzzMmioRegisters,
  'virtio-blk-requests': fuzzBlockRequests,
  'virtio-net': fuzzNetDevice,
  'virtio-vsock-packets': fuzzVsockPackets,
  'virtio-balloon': fuzzBalloon,
  'virtio-console': fuzzConsole,
};
