/**
 * The contract between the virtio-mmio transport and a device model. A device is a pure state machine: the
 * transport calls it on driver actions (feature negotiation, DRIVER_OK, queue notifications, config access,
 * reset), its backend calls it on host events, and its only outward effects are writes into guest buffers
 * through its queues and the calls it makes on its `VirtioDeviceContext`.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import type { Virtqueue } from './queue.js';

/** What the transport offers a device. */
export interface VirtioDeviceContext {
  readonly memory: GuestMemory;
  /** The device's queues, index = queue number. */
  readonly queues: readonly Virtqueue[];
  /** Features the driver accepted (valid once FEATURES_OK was set). */
  readonly features: bigint;
  /** True after DRIVER_OK and before reset or DEVICE_NEEDS_RESET: the device may use its queues. */
  readonly active: boolean;
  /** Whether `queue` may be used now (active, ready, not broken). */
  queueUsable(queue: number): boolean;
  /** After adding used buffers to a queue: raise a used-buffer interrupt if the driver wants one. */
  signalUsed(queue: number): void;
  /** The device changed its configuration space: bump ConfigGeneration and raise a config interrupt. */
  configChanged(): void;
  /** The device hit an error it cannot recover from without a reset (sets DEVICE_NEEDS_RESET). */
  needsReset(reason: string): void;
}

export interface VirtioDevice {
  /** Virtio device ID (§5). */
  readonly deviceId: number;
  /** Short name for diagnostics ("virtio-blk"). */
  readonly name: string;
  /** Max size of each queue; the length is the number of queues. */
  readonly queueMaxSizes: readonly number[];
  /** Device-specific feature bits offered (the transport adds VERSION_1, EVENT_IDX, INDIRECT_DESC, ...). */
  readonly deviceFeatures: bigint;
  /** Bytes of device configuration space. */
  readonly configSize: number;

  /** Called once by the transport before anything else. */
  bind(context: VirtioDeviceContext): void;
  /** Reads config bytes [offset, offset+data.length) (already clipped to configSize). */
  readConfig(offset: number, data: Uint8Array): void;
  /** Driver writes config bytes; devices with no writable fields ignore it. */
  writeConfig(offset: number, data: Uint8Array): void;
  /** Extra feature checks at FEATURES_OK (the transport already checked subset-of-offered and VERSION_1). */
  acceptFeatures?(features: bigint): boolean;
  /** DRIVER_OK: ready queues are active. The device should process anything already available. */
  activate(): void;
  /** The driver (or an ioeventfd) notified queue `queue`. Only called while active and the queue is usable. */
  queueNotify(queue: number): void;
  /** Device reset (status 0): drop all guest-facing state, keep host-side configuration. */
  reset(): void;
  /** VIRTIO_F_RING_RESET: queue `queue` was reset; drop state tied to it. */
  queueReset?(queue: number): void;
}

/** Per-device error counters every device exposes. */
export interface DeviceErrorCounters {
  /** Requests the device rejected because the guest built them wrong. */
  badRequests: number;
  /** Exceptions caught inside the device (bugs or unexpected host errors); each also set NEEDS_RESET. */
  internalErrors: number;
}

/** Shared plumbing for the devices in this folder: a config byte array, the context, error counters. */
export abstract class VirtioDeviceBase implements VirtioDevice {
  abstract readonly deviceId: number;
  abstract readonly name: string;
  abstract readonly queueMaxSizes: readonly number[];
  abstract readonly deviceFeatures: bigint;
  readonly errors: DeviceErrorCounters = { badRequests: 0, internalErrors: 0 };
  protected readonly config: Uint8Array;
  protected readonly configView: DataView;
  private boundContext: VirtioDeviceContext | undefined;

  constructor(readonly configSize: number) {
    this.config = new Uint8Array(configSize);
    this.configView = new DataView(this.config.buffer);
  }

  protected get ctx(): VirtioDeviceContext {
    if (this.boundContext === undefined) throw new Error(`${this.name} is not attached to a transport`);
    return this.boundContext;
  }

  /** Whether the device is attached and the driver has set DRIVER_OK. */
  protected get active(): boolean {
    return this.boundContext !== undefined && this.boundContext.active;
  }

  bind(context: VirtioDeviceContext): void {
    if (this.boundContext !== undefined) throw new Error(`${this.name} is already attached to a transport`);
    this.boundContext = context;
  }

  readConfig(offset: number, data: Uint8Array): void {
    data.set(this.config.subarray(offset, offset + data.length));
  }

  writeConfig(_offset: number, _data: Uint8Array): void {}

  abstract activate(): void;
  abstract queueNotify(queue: number): void;
  abstract reset(): void;

  /**
   * Runs a host-side callback (backend event) so that nothing escapes into the caller's loop: an exception is
   * counted and turns into DEVICE_NEEDS_RESET.
   */
  protected guarded(what: string, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.errors.internalErrors++;
      if (this.boundContext !== undefined) {
        this.boundContext.needsReset(
          `${this.name} ${what}: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    }
  }
}
