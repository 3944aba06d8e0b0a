/**
 * virtio-mmio version 2 transport [virtio 1.2 §4.2]: the 4 KiB register window a guest driver talks to,
 * wrapped around one device model. It owns feature negotiation, the device-status protocol (a table of allowed
 * transitions), queue configuration and validation, InterruptStatus and the config generation counter.
 *
 * Nothing a guest writes makes read()/write()/notifyQueue() throw: malformed accesses are ignored and counted,
 * device errors set DEVICE_NEEDS_RESET.
 *
 * Notifications arrive as QueueNotify writes (an MMIO exit) or through `notifyQueue(index)`, which the VMM
 * calls when the queue's KVM ioeventfd (address base + MMIO_QUEUE_NOTIFY, 4 bytes, datamatch = index) fires.
 */
import type { BusDevice } from '../bus/bus.js';
import type { IrqLine } from '../devices/irq.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import {
  INTERRUPT_CONFIG_CHANGE,
  INTERRUPT_USED_BUFFER,
  MMIO_CONFIG,
  MMIO_CONFIG_GENERATION,
  MMIO_DEVICE_FEATURES,
  MMIO_DEVICE_FEATURES_SEL,
  MMIO_DEVICE_ID,
  MMIO_DRIVER_FEATURES,
  MMIO_DRIVER_FEATURES_SEL,
  MMIO_INTERRUPT_ACK,
  MMIO_INTERRUPT_STATUS,
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
  MMIO_QUEUE_NUM_MAX,
  MMIO_QUEUE_READY,
  MMIO_QUEUE_RESET,
  MMIO_QUEUE_SEL,
  MMIO_SHM_BASE_HIGH,
  MMIO_SHM_BASE_LOW,
  MMIO_SHM_LEN_HIGH,
  MMIO_SHM_LEN_LOW,
  MMIO_SHM_SEL,
  MMIO_STATUS,
  MMIO_VENDOR_ID,
  MMIO_VERSION,
  MMIO_VERSION_2,
  MMIO_WINDOW_SIZE,
  NODE_KVM_VENDOR_ID,
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_FEATURES_OK,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_RESET,
  VIRTIO_F_VERSION_1,
  bit,
} from './constants.js';
import type { VirtioDevice, VirtioDeviceContext } from './device.js';
import { Virtqueue } from './queue.js';

/**
 * The device-status protocol (§3.1.1) as data: for each status the driver may be in, the next status in order.
 * One write may take several steps at once (SeaBIOS writes ACKNOWLEDGE|DRIVER together) but never skip one.
 * Besides these, writing 0 resets the device and FAILED may be added at any time. Anything else is ignored
 * (and counted). DEVICE_NEEDS_RESET is device-owned: it is ignored in written values.
 */
export const STATUS_TRANSITIONS: ReadonlyMap<number, number> = new Map([
  [0, STATUS_ACKNOWLEDGE],
  [STATUS_ACKNOWLEDGE, STATUS_ACKNOWLEDGE | STATUS_DRIVER],
  [STATUS_ACKNOWLEDGE | STATUS_DRIVER, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK],
  [
    STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
    STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
  ],
]);

const FEATURE_NEGOTIATION_STATUS = STATUS_ACKNOWLEDGE | STATUS_DRIVER;

export interface MmioTransportOptions {
  /**
   * How InterruptStatus drives the IrqLine. 'edge' (default, for irqfd / KVM_IRQ_LINE pulses): trigger() for
   * every new event. 'level': setLevel(InterruptStatus != 0) on every change.
   */
  interruptMode?: 'edge' | 'level';
  /** Offer VIRTIO_F_EVENT_IDX (default true). */
  eventIdx?: boolean;
  /** Offer VIRTIO_F_INDIRECT_DESC (default true). */
  indirectDescriptors?: boolean;
  /** Offer VIRTIO_F_RING_RESET (default true). */
  ringReset?: boolean;
}

export interface MmioTransportStats {
  /** Register accesses that were not 32-bit aligned, or hit no register. */
  badAccesses: number;
  /** Writes to a register in a state where the spec does not allow them (ignored). */
  ignoredWrites: number;
  /** Status writes outside the transition table. */
  rejectedStatusWrites: number;
  /** FEATURES_OK refused (features not offered, VERSION_1 missing, or refused by the device). */
  rejectedFeatures: number;
  /** QueueReady=1 refused because the queue configuration was invalid. */
  rejectedQueues: number;
  /** Notifications for a queue that does not exist, is not ready, or before DRIVER_OK. */
  ignoredNotifications: number;
  /** Times DEVICE_NEEDS_RESET was set. */
  needsResets: number;
  /** Exceptions caught from the device model. */
  internalErrors: number;
  /** Device resets by the driver (status 0). */
  resets: number;
}

export class VirtioMmioTransport implements BusDevice, VirtioDeviceContext {
  readonly queues: readonly Virtqueue[];
  /** Every feature bit offered to the driver (device bits plus transport bits). */
  readonly offeredFeatures: bigint;
  readonly stats: MmioTransportStats = {
    badAccesses: 0,
    ignoredWrites: 0,
    rejectedStatusWrites: 0,
    rejectedFeatures: 0,
    rejectedQueues: 0,
    ignoredNotifications: 0,
    needsResets: 0,
    internalErrors: 0,
    resets: 0,
  };
  /** Why DEVICE_NEEDS_RESET was last set, or why the last queue/feature setup was refused. */
  lastError = '';

  private statusValue = 0;
  private interruptStatusValue = 0;
  private driverFeaturesValue = 0n;
  private acceptedFeatures = 0n;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private queueSel = 0;
  private configGeneration = 0;
  private readonly level: boolean;
  /** Queues whose QueueReady=1 was refused: a driver that goes on to DRIVER_OK anyway gets NEEDS_RESET. */
  private readonly refusedQueues = new Map<number, string>();

  constructor(
    readonly device: VirtioDevice,
    readonly memory: GuestMemory,
    private readonly irq: IrqLine,
    options: MmioTransportOptions = {},
  ) {
    if (device.queueMaxSizes.length === 0)
      throw new RangeError(`${device.name}: a device needs at least one queue`);
    this.level = options.interruptMode === 'level';
    let transportFeatures = bit(VIRTIO_F_VERSION_1);
    if (options.eventIdx ?? true) transportFeatures |= bit(VIRTIO_F_EVENT_IDX);
    if (options.indirectDescriptors ?? true) transportFeatures |= bit(VIRTIO_F_INDIRECT_DESC);
    if (options.ringReset ?? true) transportFeatures |= bit(VIRTIO_F_RING_RESET);
    this.offeredFeatures = device.deviceFeatures | transportFeatures;
    this.queues = device.queueMaxSizes.map((max, i) => {
      const q = new Virtqueue(i, max, memory);
      q.onBroken = (reason) => this.needsReset(reason);
      return q;
    });
    device.bind(this);
  }

  /** Device status register value. */
  get status(): number {
    return this.statusValue;
  }

  get interruptStatus(): number {
    return this.interruptStatusValue;
  }

  /** Features the driver has written so far (accepted at FEATURES_OK). */
  get driverFeatures(): bigint {
    return this.driverFeaturesValue;
  }

  /** Features in force: the driver's selection once FEATURES_OK was accepted. */
  get features(): bigint {
    return this.acceptedFeatures;
  }

  get active(): boolean {
    return (
      (this.statusValue & (STATUS_DRIVER_OK | STATUS_FAILED | STATUS_DEVICE_NEEDS_RESET)) === STATUS_DRIVER_OK
    );
  }

  get queueCount(): number {
    return this.queues.length;
  }

  hasFeature(featureBit: number): boolean {
    return (this.acceptedFeatures & bit(featureBit)) !== 0n;
  }

  // --- VirtioDeviceContext ------------------------------------------------------------------------------------

  queueUsable(queue: number): boolean {
    const q = this.queues[queue];
    return q !== undefined && this.active && q.ready && q.active && !q.broken;
  }

  signalUsed(queue: number): void {
    const q = this.queues[queue];
    if (q !== undefined && (this.statusValue & STATUS_DRIVER_OK) !== 0 && q.needsInterrupt()) {
      this.raise(INTERRUPT_USED_BUFFER);
    }
  }

  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) >>> 0;
    if ((this.statusValue & STATUS_DRIVER_OK) !== 0) this.raise(INTERRUPT_CONFIG_CHANGE);
  }

  needsReset(reason: string): void {
    this.lastError = reason;
    if ((this.statusValue & STATUS_DEVICE_NEEDS_RESET) !== 0) return;
    this.stats.needsResets++;
    this.statusValue |= STATUS_DEVICE_NEEDS_RESET;
    // §2.1.2: with DRIVER_OK set, the device MUST send a configuration change notification.
    if ((this.statusValue & STATUS_DRIVER_OK) !== 0) this.raise(INTERRUPT_CONFIG_CHANGE);
  }

  // --- Notifications ------------------------------------------------------------------------------------------

  /** Available-buffer notification for queue `index` (QueueNotify write or ioeventfd). Never throws. */
  notifyQueue(index: number): void {
    if (!this.queueUsable(index)) {
      this.stats.ignoredNotifications++;
      return;
    }
    this.callDevice('queue notify', () => this.device.queueNotify(index));
  }

  private raise(bits: number): void {
    this.interruptStatusValue |= bits;
    try {
      if (this.level) this.irq.setLevel(true);
      else this.irq.trigger();
    } catch (error) {
      // The VMM's interrupt path failing is not the guest's fault; count it and keep the register state.
      this.stats.internalErrors++;
      this.lastError = `interrupt delivery failed: ${error instanceof Error ? error.message : String(error)}`;
    }
  }

  private acknowledge(bits: number): void {
    this.interruptStatusValue &= ~bits;
    if (this.level) {
      try {
        this.irq.setLevel(this.interruptStatusValue !== 0);
      } catch {
        this.stats.internalErrors++;
      }
    }
  }

  private callDevice(what: string, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.stats.internalErrors++;
      this.needsReset(
        `${this.device.name} ${what}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  // --- Register access ----------------------------------------------------------------------------------------

  read(offset: number, data: Uint8Array): void {
    if (offset >= MMIO_CONFIG) {
      this.readConfigSpace(offset - MMIO_CONFIG, data);
      return;
    }
    if (data.length !== 4 || offset % 4 !== 0) {
      this.stats.badAccesses++;
      data.fill(0);
      return;
    }
    const value = this.readRegister(offset);
    data[0] = value & 0xff;
    data[1] = (value >>> 8) & 0xff;
    data[2] = (value >>> 16) & 0xff;
    data[3] = (value >>> 24) & 0xff;
  }

  write(offset: number, data: Uint8Array): void {
    if (offset >= MMIO_CONFIG) {
      this.writeConfigSpace(offset - MMIO_CONFIG, data);
      return;
    }
    if (data.length !== 4 || offset % 4 !== 0) {
      this.stats.badAccesses++;
      return;
    }
    const value = (data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)) >>> 0;
    this.writeRegister(offset, value);
  }

  private readConfigSpace(offset: number, data: Uint8Array): void {
    data.fill(0);
    const size = this.device.configSize;
    if (offset >= size || offset + data.length > MMIO_WINDOW_SIZE - MMIO_CONFIG) return;
    const n = Math.min(data.length, size - offset);
    this.callDevice('config read', () => this.device.readConfig(offset, data.subarray(0, n)));
  }

  private writeConfigSpace(offset: number, data: Uint8Array): void {
    const size = this.device.configSize;
    if (offset >= size) {
      this.stats.ignoredWrites++;
      return;
    }
    const n = Math.min(data.length, size - offset);
    this.callDevice('config write', () => this.device.writeConfig(offset, data.subarray(0, n)));
  }

  private get selectedQueue(): Virtqueue | undefined {
    return this.queues[this.queueSel];
  }

  private readRegister(offset: number): number {
    const q = this.selectedQueue;
    switch (offset) {
      case MMIO_MAGIC_VALUE:
        return MMIO_MAGIC;
      case MMIO_VERSION:
        return MMIO_VERSION_2;
      case MMIO_DEVICE_ID:
        return this.device.deviceId;
      case MMIO_VENDOR_ID:
        return NODE_KVM_VENDOR_ID;
      case MMIO_DEVICE_FEATURES:
        return this.deviceFeaturesSel > 1 ? 0 : featureWord(this.offeredFeatures, this.deviceFeaturesSel);
      case MMIO_QUEUE_NUM_MAX:
        return q === undefined ? 0 : q.maxSize;
      case MMIO_QUEUE_NUM:
        return q === undefined ? 0 : q.size;
      case MMIO_QUEUE_READY:
        return q !== undefined && q.ready ? 1 : 0;
      case MMIO_INTERRUPT_STATUS:
        return this.interruptStatusValue;
      case MMIO_STATUS:
        return this.statusValue;
      case MMIO_SHM_LEN_LOW:
      case MMIO_SHM_LEN_HIGH:
      case MMIO_SHM_BASE_LOW:
      case MMIO_SHM_BASE_HIGH:
        return 0xffff_ffff; // no shared memory regions: length -1, base all ones
      case MMIO_QUEUE_RESET:
        return 0; // a queue reset completes synchronously
      case MMIO_CONFIG_GENERATION:
        return this.configGeneration;
      case MMIO_DEVICE_FEATURES_SEL:
      case MMIO_DRIVER_FEATURES:
      case MMIO_DRIVER_FEATURES_SEL:
      case MMIO_QUEUE_SEL:
      case MMIO_QUEUE_NOTIFY:
      case MMIO_INTERRUPT_ACK:
      case MMIO_QUEUE_DESC_LOW:
      case MMIO_QUEUE_DESC_HIGH:
      case MMIO_QUEUE_DRIVER_LOW:
      case MMIO_QUEUE_DRIVER_HIGH:
      case MMIO_QUEUE_DEVICE_LOW:
      case MMIO_QUEUE_DEVICE_HIGH:
      case MMIO_SHM_SEL:
        return 0; // write-only registers
      default:
        this.stats.badAccesses++;
        return 0;
    }
  }

  private writeRegister(offset: number, value: number): void {
    switch (offset) {
      case MMIO_DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = value;
        return;
      case MMIO_DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = value;
        return;
      case MMIO_DRIVER_FEATURES:
        this.writeDriverFeatures(value);
        return;
      case MMIO_QUEUE_SEL:
        this.queueSel = value;
        return;
      case MMIO_QUEUE_NUM:
        this.writeQueueConfig((q) => (q.size = value));
        return;
      case MMIO_QUEUE_DESC_LOW:
        this.writeQueueConfig((q) => (q.descAddr = setLow(q.descAddr, value)));
        return;
      case MMIO_QUEUE_DESC_HIGH:
        this.writeQueueConfig((q) => (q.descAddr = setHigh(q.descAddr, value)));
        return;
      case MMIO_QUEUE_DRIVER_LOW:
        this.writeQueueConfig((q) => (q.driverAddr = setLow(q.driverAddr, value)));
        return;
      case MMIO_QUEUE_DRIVER_HIGH:
        this.writeQueueConfig((q) => (q.driverAddr = setHigh(q.driverAddr, value)));
        return;
      case MMIO_QUEUE_DEVICE_LOW:
        this.writeQueueConfig((q) => (q.deviceAddr = setLow(q.deviceAddr, value)));
        return;
      case MMIO_QUEUE_DEVICE_HIGH:
        this.writeQueueConfig((q) => (q.deviceAddr = setHigh(q.deviceAddr, value)));
        return;
      case MMIO_QUEUE_READY:
        this.writeQueueReady(value);
        return;
      case MMIO_QUEUE_RESET:
        this.writeQueueReset(value);
        return;
      case MMIO_QUEUE_NOTIFY:
        // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index (§4.2.3.3).
        this.notifyQueue(value & 0xffff);
        return;
      case MMIO_INTERRUPT_ACK:
        this.acknowledge(value & (INTERRUPT_USED_BUFFER | INTERRUPT_CONFIG_CHANGE));
        return;
      case MMIO_STATUS:
        this.writeStatus(value & 0xff);
        return;
      case MMIO_SHM_SEL:
        return; // no regions; the selector has no effect
      case MMIO_MAGIC_VALUE:
      case MMIO_VERSION:
      case MMIO_DEVICE_ID:
      case MMIO_VENDOR_ID:
      case MMIO_DEVICE_FEATURES:
      case MMIO_QUEUE_NUM_MAX:
      case MMIO_INTERRUPT_STATUS:
      case MMIO_SHM_LEN_LOW:
      case MMIO_SHM_LEN_HIGH:
      case MMIO_SHM_BASE_LOW:
      case MMIO_SHM_BASE_HIGH:
      case MMIO_CONFIG_GENERATION:
        this.stats.ignoredWrites++; // read-only registers
        return;
      default:
        this.stats.badAccesses++;
    }
  }

  private writeDriverFeatures(value: number): void {
    const current = this.statusValue & ~STATUS_DEVICE_NEEDS_RESET;
    if (current !== FEATURE_NEGOTIATION_STATUS || this.driverFeaturesSel > 1) {
      this.stats.ignoredWrites++;
      return;
    }
    const shift = BigInt(this.driverFeaturesSel * 32);
    const mask = 0xffff_ffffn << shift;
    this.driverFeaturesValue = (this.driverFeaturesValue & ~mask) | (BigInt(value) << shift);
  }

  /** Queue size and addresses: only after FEATURES_OK, never while the queue is ready (§4.2.2.2). */
  private writeQueueConfig(apply: (q: Virtqueue) => void): void {
    const q = this.selectedQueue;
    const s = this.statusValue;
    if (q === undefined || q.ready || (s & STATUS_FEATURES_OK) === 0 || (s & STATUS_FAILED) !== 0) {
      this.stats.ignoredWrites++;
      return;
    }
    apply(q);
  }

  private writeQueueReady(value: number): void {
    const q = this.selectedQueue;
    if (q === undefined) {
      this.stats.ignoredWrites++;
      return;
    }
    if (value === 0) {
      if (!q.ready) return;
      q.ready = false;
      q.deactivate();
      this.callDevice('queue reset', () => this.device.queueReset?.(q.index));
      return;
    }
    if (value !== 1 || q.ready) {
      this.stats.ignoredWrites++;
      return;
    }
    const s = this.statusValue;
    if ((s & STATUS_FEATURES_OK) === 0 || (s & (STATUS_FAILED | STATUS_DEVICE_NEEDS_RESET)) !== 0) {
      this.stats.ignoredWrites++;
      return;
    }
    const problem = q.activate(this.hasFeature(VIRTIO_F_EVENT_IDX), this.hasFeature(VIRTIO_F_INDIRECT_DESC));
    if (problem !== undefined) {
      // Refused: QueueReady reads back 0, which is how the driver learns (§4.2.3.2 reads it back).
      this.stats.rejectedQueues++;
      this.lastError = problem;
      this.refusedQueues.set(q.index, problem);
      return;
    }
    this.refusedQueues.delete(q.index);
    q.ready = true;
    // Re-enabled after a queue reset while running: pick up what the driver already queued.
    if (this.active) this.notifyQueue(q.index);
  }

  private writeQueueReset(value: number): void {
    const q = this.selectedQueue;
    if (q === undefined || value !== 1 || !this.hasFeature(VIRTIO_F_RING_RESET)) {
      this.stats.ignoredWrites++;
      return;
    }
    q.reset();
    this.refusedQueues.delete(q.index);
    this.callDevice('queue reset', () => this.device.queueReset?.(q.index));
  }

  private writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const written = value & ~STATUS_DEVICE_NEEDS_RESET;
    const current = this.statusValue & ~STATUS_DEVICE_NEEDS_RESET;
    if (written === current) return;
    if (written === (current | STATUS_FAILED)) {
      this.statusValue |= STATUS_FAILED; // the driver gave up; only a reset brings the device back
      return;
    }
    const needsReset = (this.statusValue & STATUS_DEVICE_NEEDS_RESET) !== 0;
    const steps: number[] = [];
    for (let state = current; state !== written;) {
      const next = STATUS_TRANSITIONS.get(state);
      if ((current & STATUS_FAILED) !== 0 || needsReset || next === undefined || (next & written) !== next) {
        this.stats.rejectedStatusWrites++;
        return;
      }
      steps.push(next);
      state = next;
    }
    for (const step of steps) {
      const added = step & ~this.statusValue;
      if (added === STATUS_FEATURES_OK) {
        if (!this.featuresAcceptable(this.driverFeaturesValue)) {
          // FEATURES_OK stays clear; the driver reads it back and gives up (§3.1.1 step 6).
          this.stats.rejectedFeatures++;
          return;
        }
        this.acceptedFeatures = this.driverFeaturesValue;
      }
      this.statusValue = step;
      if (added === STATUS_DRIVER_OK) this.driverOk();
    }
  }

  private featuresAcceptable(features: bigint): boolean {
    if ((features & ~this.offeredFeatures) !== 0n) {
      this.lastError = `driver accepted features not offered: 0x${(features & ~this.offeredFeatures).toString(16)}`;
      return false;
    }
    if ((features & bit(VIRTIO_F_VERSION_1)) === 0n) {
      this.lastError = 'driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)';
      return false;
    }
    let ok = true;
    this.callDevice('feature check', () => {
      ok = this.device.acceptFeatures?.(features) ?? true;
    });
    if (!ok) this.lastError = `${this.device.name} refused features 0x${features.toString(16)}`;
    return ok;
  }

  private driverOk(): void {
    for (const problem of this.refusedQueues.values()) {
      // Linux does not read QueueReady back; tell it the device cannot run this way.
      this.needsReset(problem);
      return;
    }
    for (const q of this.queues) {
      if (!q.ready) continue;
      const problem = q.validate();
      if (problem !== undefined) {
        this.needsReset(problem);
        return;
      }
    }
    this.callDevice('activate', () => this.device.activate());
  }

  /** Device reset (status 0, §2.4): everything back to the power-on state. */
  reset(): void {
    this.stats.resets++;
    this.statusValue = 0;
    this.driverFeaturesValue = 0n;
    this.acceptedFeatures = 0n;
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.queueSel = 0;
    this.refusedQueues.clear();
    for (const q of this.queues) q.reset();
    this.callDevice('reset', () => this.device.reset());
    // callDevice may have set NEEDS_RESET on a failing reset; a fresh device starts clean regardless.
    this.statusValue = 0;
    this.interruptStatusValue = 0;
    if (this.level) {
      try {
        this.irq.setLevel(false);
      } catch {
        this.stats.internalErrors++;
      }
    }
  }
}

function featureWord(features: bigint, sel: number): number {
  return Number((features >> BigInt(sel * 32)) & 0xffff_ffffn);
}

function setLow(address: number, low: number): number {
  return Math.floor(address / 0x1_0000_0000) * 0x1_0000_0000 + low;
}

function setHigh(address: number, high: number): number {
  // Addresses past 2^53 cannot be represented; keep them out of range so validation rejects them.
  const safeHigh = high > 0x1f_ffff ? 0x1f_ffff + 1 : high;
  return safeHigh * 0x1_0000_0000 + (address % 0x1_0000_0000);
}
