/**
 * A guest-side virtio driver in TypeScript, for tests and fuzzing: it lays out split rings in a GuestMemory over
 * a plain ArrayBuffer, speaks the virtio-mmio register protocol through the transport's BusDevice interface,
 * negotiates features, adds descriptor chains (direct or indirect), kicks, and collects used entries. Raw
 * helpers let hostile-guest tests write any descriptor or ring index they like.
 */
import type { BusDevice } from '../../bus/bus.js';
import { RecordingIrqLine } from '../../devices/irq.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import {
  MMIO_DEVICE_FEATURES,
  MMIO_DEVICE_FEATURES_SEL,
  MMIO_DRIVER_FEATURES,
  MMIO_DRIVER_FEATURES_SEL,
  MMIO_INTERRUPT_ACK,
  MMIO_INTERRUPT_STATUS,
  MMIO_QUEUE_DESC_HIGH,
  MMIO_QUEUE_DESC_LOW,
  MMIO_QUEUE_DEVICE_HIGH,
  MMIO_QUEUE_DEVICE_LOW,
  MMIO_QUEUE_DRIVER_HIGH,
  MMIO_QUEUE_DRIVER_LOW,
  MMIO_QUEUE_NOTIFY,
  MMIO_QUEUE_NUM,
  MMIO_QUEUE_NUM_MAX,
  MMIO_QUEUE_READY,
  MMIO_QUEUE_SEL,
  MMIO_STATUS,
  MMIO_CONFIG,
  STATUS_ACKNOWLEDGE,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
  VIRTQ_USED_ELEM_SIZE,
  availRingSize,
  bit,
  usedRingSize,
} from '../constants.js';
import type { VirtioDevice } from '../device.js';
import { VirtioMmioTransport, type MmioTransportOptions } from '../mmio-transport.js';

/** One buffer of a chain the mock driver builds: readable data, or a writable area of `length` bytes. */
export type MockBuffer = { data: Uint8Array; writable?: false } | { length: number; writable: true };

export interface PlacedBuffer {
  gpa: number;
  length: number;
  writable: boolean;
}

/** A chain the driver made available, and what came back for it. */
export interface MockChain {
  queue: number;
  head: number;
  buffers: PlacedBuffer[];
  /** Descriptor slots of the ring's table this chain occupies (freed when used). */
  slots: number[];
}

export interface UsedEntry {
  id: number;
  len: number;
  /** The chain the id refers to, when this driver added it. */
  chain: MockChain | undefined;
}

export interface RawDescriptor {
  addr: number;
  len: number;
  flags: number;
  next: number;
}

interface DriverQueue {
  size: number;
  desc: number;
  avail: number;
  used: number;
  availIdx: number;
  lastUsed: number;
  free: number[];
  inflight: Map<number, MockChain>;
}

export interface MockDriverInitOptions {
  /** Feature bits to accept (intersected with what the device offers). Default: everything offered. */
  features?: bigint;
  /** Queue sizes to set up (index = queue). Default: every queue at its max size. 0 skips a queue. */
  queueSizes?: readonly number[];
  /** Stop before DRIVER_OK (to test queue setup or notify-before-ready). */
  skipDriverOk?: boolean;
}

export class MockDriver {
  private ringNext = 0x1000;
  private dataNext: number;
  private readonly queues = new Map<number, DriverQueue>();
  /** Features the driver wrote at negotiation. */
  features = 0n;

  /**
   * Rings are bump-allocated in [base + 4 KiB, base + ringArea) of the first memory region; data buffers live
   * above, in an arena that wraps around.
   */
  constructor(
    readonly transport: BusDevice,
    readonly memory: GuestMemory,
    readonly base = memory.regions[0].gpa,
    readonly ringArea = 0x4_0000,
  ) {
    this.dataNext = base + ringArea;
  }

  // --- Registers ---------------------------------------------------------------------------------------------

  readReg(offset: number): number {
    const data = new Uint8Array(4);
    this.transport.read(offset, data);
    return (data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)) >>> 0;
  }

  writeReg(offset: number, value: number): void {
    const v = value >>> 0;
    this.transport.write(offset, new Uint8Array([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]));
  }

  readConfig(offset: number, length: number): Uint8Array {
    const data = new Uint8Array(length);
    this.transport.read(MMIO_CONFIG + offset, data);
    return data;
  }

  writeConfig(offset: number, data: Uint8Array): void {
    this.transport.write(MMIO_CONFIG + offset, data);
  }

  get status(): number {
    return this.readReg(MMIO_STATUS);
  }

  setStatus(value: number): void {
    this.writeReg(MMIO_STATUS, value);
  }

  deviceFeatures(): bigint {
    this.writeReg(MMIO_DEVICE_FEATURES_SEL, 0);
    const lo = BigInt(this.readReg(MMIO_DEVICE_FEATURES));
    this.writeReg(MMIO_DEVICE_FEATURES_SEL, 1);
    const hi = BigInt(this.readReg(MMIO_DEVICE_FEATURES));
    return (hi << 32n) | lo;
  }

  writeDriverFeatures(features: bigint): void {
    this.writeReg(MMIO_DRIVER_FEATURES_SEL, 0);
    this.writeReg(MMIO_DRIVER_FEATURES, Number(features & 0xffff_ffffn));
    this.writeReg(MMIO_DRIVER_FEATURES_SEL, 1);
    this.writeReg(MMIO_DRIVER_FEATURES, Number((features >> 32n) & 0xffff_ffffn));
  }

  /** Reads InterruptStatus and acknowledges it; returns the bits. */
  ackInterrupts(): number {
    const bits = this.readReg(MMIO_INTERRUPT_STATUS);
    if (bits !== 0) this.writeReg(MMIO_INTERRUPT_ACK, bits);
    return bits;
  }

  // --- Initialization (§3.1.1) ------------------------------------------------------------------------------

  /** Full driver initialization. Returns false when the device refused FEATURES_OK. */
  init(options: MockDriverInitOptions = {}): boolean {
    this.setStatus(0);
    this.queues.clear();
    this.ringNext = this.base + 0x1000;
    this.setStatus(STATUS_ACKNOWLEDGE);
    this.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    const offered = this.deviceFeatures();
    this.features = (options.features ?? offered) & offered;
    this.writeDriverFeatures(this.features);
    this.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if ((this.status & STATUS_FEATURES_OK) === 0) return false;
    for (let i = 0; ; i++) {
      this.writeReg(MMIO_QUEUE_SEL, i);
      const max = this.readReg(MMIO_QUEUE_NUM_MAX);
      if (max === 0) break;
      const size = options.queueSizes === undefined ? max : (options.queueSizes[i] ?? 0);
      if (size > 0) this.setupQueue(i, size);
    }
    if (!options.skipDriverOk) {
      this.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    }
    return true;
  }

  hasFeature(featureBit: number): boolean {
    return (this.features & bit(featureBit)) !== 0n;
  }

  /** Bump-allocates guest memory in the ring area. */
  allocRing(size: number, align: number): number {
    const at = Math.ceil(this.ringNext / align) * align;
    if (at + size > this.base + this.ringArea) throw new RangeError('mock driver: ring area exhausted');
    this.ringNext = at + size;
    this.memory.fill(at, size, 0);
    return at;
  }

  /** Allocates a data buffer; the arena wraps around, so old buffers are eventually reused. */
  allocData(size: number, align = 8): number {
    const end = this.base + this.memory.regions[0].size;
    let at = Math.ceil(this.dataNext / align) * align;
    if (at + size > end) at = this.base + this.ringArea;
    if (at + size > end) throw new RangeError(`mock driver: buffer of ${size} bytes does not fit`);
    this.dataNext = at + size;
    return at;
  }

  /** Lays out and enables queue `index` with `size` entries (QueueSel, QueueNum, addresses, QueueReady). */
  setupQueue(index: number, size: number): DriverQueue {
    const desc = this.allocRing(VIRTQ_DESC_SIZE * size, 16);
    const avail = this.allocRing(availRingSize(size), 2);
    const used = this.allocRing(usedRingSize(size), 4);
    this.writeReg(MMIO_QUEUE_SEL, index);
    this.writeReg(MMIO_QUEUE_NUM, size);
    this.writeAddress(MMIO_QUEUE_DESC_LOW, MMIO_QUEUE_DESC_HIGH, desc);
    this.writeAddress(MMIO_QUEUE_DRIVER_LOW, MMIO_QUEUE_DRIVER_HIGH, avail);
    this.writeAddress(MMIO_QUEUE_DEVICE_LOW, MMIO_QUEUE_DEVICE_HIGH, used);
    this.writeReg(MMIO_QUEUE_READY, 1);
    const q: DriverQueue = {
      size,
      desc,
      avail,
      used,
      availIdx: 0,
      lastUsed: 0,
      free: Array.from({ length: size }, (_, i) => i),
      inflight: new Map(),
    };
    this.queues.set(index, q);
    return q;
  }

  writeAddress(lowReg: number, highReg: number, address: number): void {
    this.writeReg(lowReg, address % 0x1_0000_0000);
    this.writeReg(highReg, Math.floor(address / 0x1_0000_0000));
  }

  queue(index: number): DriverQueue {
    const q = this.queues.get(index);
    if (q === undefined) throw new RangeError(`mock driver: queue ${index} is not set up`);
    return q;
  }

  // --- Buffers --------------------------------------------------------------------------------------------------

  /**
   * Places buffers in guest memory, builds a chain (in the ring's table, or in one indirect table), publishes
   * it in the avail ring and returns it. Does not kick. Returns undefined when the table has no free slots.
   */
  addChain(
    index: number,
    buffers: readonly MockBuffer[],
    options: { indirect?: boolean } = {},
  ): MockChain | undefined {
    const q = this.queue(index);
    const placed: PlacedBuffer[] = buffers.map((b) => {
      if (b.writable) {
        const gpa = this.allocData(Math.max(b.length, 1));
        this.memory.fill(gpa, Math.max(b.length, 1), 0xaa);
        return { gpa, length: b.length, writable: true };
      }
      const gpa = this.allocData(Math.max(b.data.length, 1));
      this.memory.write(gpa, b.data);
      return { gpa, length: b.data.length, writable: false };
    });
    const descriptors: RawDescriptor[] = placed.map((p, i) => ({
      addr: p.gpa,
      len: p.length,
      flags: (p.writable ? VIRTQ_DESC_F_WRITE : 0) | (i < placed.length - 1 ? VIRTQ_DESC_F_NEXT : 0),
      next: i + 1,
    }));
    let slots: number[];
    if (options.indirect) {
      if (q.free.length < 1) return undefined;
      const table = this.allocData(VIRTQ_DESC_SIZE * descriptors.length, 16);
      descriptors.forEach((d, i) => this.writeDescriptorAt(table + VIRTQ_DESC_SIZE * i, d));
      slots = [q.free.shift()!];
      this.writeDescriptor(index, slots[0], {
        addr: table,
        len: VIRTQ_DESC_SIZE * descriptors.length,
        flags: VIRTQ_DESC_F_INDIRECT,
        next: 0,
      });
    } else {
      if (q.free.length < descriptors.length || descriptors.length === 0) return undefined;
      slots = q.free.splice(0, descriptors.length);
      descriptors.forEach((d, i) => this.writeDescriptor(index, slots[i], { ...d, next: slots[i + 1] ?? 0 }));
    }
    const chain: MockChain = { queue: index, head: slots[0], buffers: placed, slots };
    q.inflight.set(chain.head, chain);
    this.publish(index, chain.head);
    return chain;
  }

  /** Adds a chain and kicks the queue. */
  send(
    index: number,
    buffers: readonly MockBuffer[],
    options: { indirect?: boolean } = {},
  ): MockChain | undefined {
    const chain = this.addChain(index, buffers, options);
    this.kick(index);
    return chain;
  }

  /** Writes QueueNotify for the queue. */
  kick(index: number): void {
    this.writeReg(MMIO_QUEUE_NOTIFY, index);
  }

  /** New used entries since the last call; frees their descriptor slots. */
  takeUsed(index: number): UsedEntry[] {
    const q = this.queue(index);
    const out: UsedEntry[] = [];
    const usedIdx = this.memory.u16(q.used + 2);
    while (q.lastUsed !== usedIdx) {
      const at = q.used + 4 + VIRTQ_USED_ELEM_SIZE * (q.lastUsed % q.size);
      const id = this.memory.u32(at);
      const len = this.memory.u32(at + 4);
      const chain = q.inflight.get(id);
      if (chain !== undefined) {
        q.inflight.delete(id);
        q.free.push(...chain.slots);
      }
      out.push({ id, len, chain });
      q.lastUsed = (q.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  /** The first `length` bytes the device wrote into a chain's writable buffers, concatenated. */
  writtenBytes(chain: MockChain, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let at = 0;
    for (const b of chain.buffers) {
      if (!b.writable || at >= length) continue;
      const n = Math.min(b.length, length - at);
      out.set(this.memory.view(b.gpa, n), at);
      at += n;
    }
    return out;
  }

  // --- Raw ring access (hostile-guest tests) ------------------------------------------------------------------

  writeDescriptor(index: number, slot: number, d: RawDescriptor): void {
    const q = this.queue(index);
    this.writeDescriptorAt(q.desc + VIRTQ_DESC_SIZE * slot, d);
  }

  writeDescriptorAt(gpa: number, d: RawDescriptor): void {
    this.memory.setU32(gpa, d.addr % 0x1_0000_0000);
    this.memory.setU32(gpa + 4, Math.floor(d.addr / 0x1_0000_0000));
    this.memory.setU32(gpa + 8, d.len);
    this.memory.setU16(gpa + 12, d.flags);
    this.memory.setU16(gpa + 14, d.next);
  }

  /** Puts a head index in the avail ring and bumps avail idx. */
  publish(index: number, head: number): void {
    const q = this.queue(index);
    this.memory.setU16(q.avail + 4 + 2 * (q.availIdx % q.size), head);
    q.availIdx = (q.availIdx + 1) & 0xffff;
    this.memory.setU16(q.avail + 2, q.availIdx);
  }

  setAvailIdx(index: number, value: number): void {
    const q = this.queue(index);
    q.availIdx = value & 0xffff;
    this.memory.setU16(q.avail + 2, q.availIdx);
  }

  setAvailFlags(index: number, flags: number): void {
    this.memory.setU16(this.queue(index).avail, flags);
  }

  /** EVENT_IDX: interrupt me when the used idx passes this value. */
  setUsedEvent(index: number, value: number): void {
    const q = this.queue(index);
    this.memory.setU16(q.avail + 4 + 2 * q.size, value);
  }

  /** EVENT_IDX: the avail index at which the device wants the next notification. */
  availEvent(index: number): number {
    const q = this.queue(index);
    return this.memory.u16(q.used + 4 + VIRTQ_USED_ELEM_SIZE * q.size);
  }

  usedIdx(index: number): number {
    return this.memory.u16(this.queue(index).used + 2);
  }
}

/** A device on a transport with a mock driver over fresh guest memory: the usual unit-test setup. */
export interface MockGuest<D extends VirtioDevice> {
  device: D;
  memory: GuestMemory;
  irq: RecordingIrqLine;
  transport: VirtioMmioTransport;
  driver: MockDriver;
}

export function createMockGuest<D extends VirtioDevice>(
  device: D,
  options: {
    memorySize?: number;
    memoryBase?: number;
    /** Reuse this buffer (zeroed here) as guest memory instead of allocating one. */
    buffer?: ArrayBuffer;
    ringArea?: number;
    transport?: MmioTransportOptions;
  } = {},
): MockGuest<D> {
  let buffer = options.buffer;
  if (buffer === undefined) buffer = new ArrayBuffer(options.memorySize ?? 4 * 1024 * 1024);
  else new Uint8Array(buffer).fill(0);
  const memory = new GuestMemory([{ gpa: options.memoryBase ?? 0, buffer }]);
  const irq = new RecordingIrqLine();
  const transport = new VirtioMmioTransport(device, memory, irq, options.transport);
  const driver = new MockDriver(transport, memory, memory.regions[0].gpa, options.ringArea);
  return { device, memory, irq, transport, driver };
}

/** Features a typical modern Linux driver accepts of the transport ones. */
export const COMMON_DRIVER_FEATURES =
  bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC);
