/**
 * MicroVm configuration: plain data (it crosses into the VM thread by structured clone), validated once on the
 * main thread so a bad config fails at the call with a TypeError/RangeError naming the field.
 */
import type { HugepageMode } from '../memory/allocate.js';
import type { RegName } from '../kvm/structs.js';
import { MMIO_GAP_START, VIRTIO_MMIO_MAX_DEVICES } from '../arch/x86_64/layout.js';

export type PayloadMode = 'real' | 'protected' | 'long' | 'long-cpl3';

export type BootConfig =
  | {
      kind: 'payload';
      /** The payload bytes, or a path to a flat binary. */
      payload: Uint8Array | string;
      mode: PayloadMode;
      /** Where the payload is loaded (default: REAL_MODE_PAYLOAD for real mode, HIMEM_START otherwise). */
      loadAddress?: number;
      /** First instruction (default: loadAddress). */
      entry?: number;
      /** Initial general registers, e.g. arguments for the payload. */
      regs?: Partial<Record<RegName, number | bigint>>;
    }
  | {
      kind: 'linux';
      /** bzImage or ELF vmlinux. */
      kernel: string;
      initrd?: string;
      cmdline?: string;
      /**
       * 'bzimage' (default for a bzImage): the 64-bit entry of the image as shipped. 'elf64': decompress the
       * bzImage on the host and enter the kernel proper (saves the guest's own decompression). 'pvh': the
       * kernel's PVH entry (32-bit).
       */
      entry?: 'bzimage' | 'elf64' | 'pvh';
    }
  | { kind: 'firmware'; firmware: string };

export interface DiskConfig {
  path: string;
  readOnly?: boolean;
  /** Up to 20 bytes returned by VIRTIO_BLK_T_GET_ID. */
  serial?: string;
}

export type NetConfig =
  /** A host tap device (created if it does not exist; needs CAP_NET_ADMIN). */
  | { tap: string; mac?: string }
  /** One end of an in-process frame channel (createNetChannel()), for VM-to-VM or VM-to-JS traffic. */
  | { channel: NetChannelEnd; mac?: string };

/** One side of a frame channel between two VMs, or a VM and JS: shared rings plus an eventfd doorbell each way. */
export interface NetChannelEnd {
  rx: SharedArrayBuffer;
  tx: SharedArrayBuffer;
  /** eventfd this end waits on (signalled when rx has frames). */
  rxDoorbell: number;
  /** eventfd of the other end (signalled after writing tx). */
  txDoorbell: number;
}

export interface VsockConfig {
  /** Guest context id (>= 3). */
  cid: number;
  /** Host Unix socket path (Firecracker convention). */
  udsPath: string;
}

export interface MicroVmConfig {
  memory: { size: number; hugepages?: HugepageMode; shared?: boolean };
  vcpus?: number;
  boot: BootConfig;
  /**
   * In-kernel PIC/IOAPIC/LAPIC. Default: on for kernels, firmware and payloads with virtio devices (their
   * interrupts need it); off for bare payloads, so a payload's HLT stops the VM.
   */
  irqchip?: boolean;
  /** 8250 UART on COM1 (default true). */
  serial?: boolean;
  /** Port 0xE9 debug console (default true). */
  debugConsole?: boolean;
  /** Capture the firmware's debug log (port 0x402) as 'firmwareLog' events (default false). */
  firmwareDebug?: boolean;
  /** virtio console (output joins the console stream). */
  virtioConsole?: boolean;
  disks?: DiskConfig[];
  net?: NetConfig[];
  vsock?: VsockConfig;
  rng?: boolean;
  balloon?: boolean;
  /** QueueNotify through KVM ioeventfd (default true); false keeps the plain MMIO-exit path. */
  ioeventfd?: boolean;
}

function fail(field: string, message: string, type = false): never {
  throw type ? new TypeError(`${field}: ${message}`) : new RangeError(`${field}: ${message}`);
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

/** Checks a config; returns it with defaults filled in. */
export function validateConfig(
  c: MicroVmConfig,
): Required<Omit<MicroVmConfig, 'vsock'>> & Pick<MicroVmConfig, 'vsock'> {
  if (typeof c !== 'object' || c === null) fail('config', 'must be an object', true);
  if (typeof c.memory !== 'object' || c.memory === null) fail('memory', 'must be an object', true);
  if (!isInt(c.memory.size) || c.memory.size < 1 << 20 || c.memory.size % 4096 !== 0) {
    fail('memory.size', 'must be a whole number of 4 KiB pages, at least 1 MiB');
  }
  if (c.memory.size > 1024 * 1024 * 1024 * 1024) fail('memory.size', 'must be at most 1 TiB');
  const hp = c.memory.hugepages ?? 'none';
  if (!['none', 'thp', 'hugetlb', 'auto'].includes(hp))
    fail('memory.hugepages', `unknown mode '${String(hp)}'`, true);
  const vcpus = c.vcpus ?? 1;
  if (!isInt(vcpus) || vcpus < 1 || vcpus > 64) fail('vcpus', 'must be an integer in 1..64');
  const b = c.boot;
  if (typeof b !== 'object' || b === null) fail('boot', 'must be an object', true);
  switch (b.kind) {
    case 'payload':
      if (!(b.payload instanceof Uint8Array) && typeof b.payload !== 'string') {
        fail('boot.payload', 'must be a Uint8Array or a file path', true);
      }
      if (!['real', 'protected', 'long', 'long-cpl3'].includes(b.mode))
        fail('boot.mode', `unknown mode '${b.mode}'`, true);
      for (const f of ['loadAddress', 'entry'] as const) {
        const v = b[f];
        if (v !== undefined && (!isInt(v) || v < 0 || v >= Math.min(c.memory.size, MMIO_GAP_START))) {
          fail(`boot.${f}`, 'must be inside guest RAM');
        }
      }
      break;
    case 'linux':
      if (typeof b.kernel !== 'string' || b.kernel === '') fail('boot.kernel', 'must be a file path', true);
      if (b.initrd !== undefined && typeof b.initrd !== 'string')
        fail('boot.initrd', 'must be a file path', true);
      if (b.cmdline !== undefined && typeof b.cmdline !== 'string')
        fail('boot.cmdline', 'must be a string', true);
      break;
    case 'firmware':
      if (typeof b.firmware !== 'string' || b.firmware === '')
        fail('boot.firmware', 'must be a file path', true);
      break;
    default:
      fail('boot.kind', `must be 'payload', 'linux' or 'firmware'`, true);
  }
  const disks = c.disks ?? [];
  const net = c.net ?? [];
  disks.forEach((d, i) => {
    if (typeof d?.path !== 'string' || d.path === '') fail(`disks[${i}].path`, 'must be a file path', true);
    if (d.serial !== undefined && (typeof d.serial !== 'string' || Buffer.byteLength(d.serial) > 20)) {
      fail(`disks[${i}].serial`, 'must be a string of at most 20 bytes');
    }
  });
  net.forEach((n, i) => {
    if ('tap' in n) {
      if (typeof n.tap !== 'string' || n.tap === '' || n.tap.length > 15)
        fail(`net[${i}].tap`, 'must be 1..15 characters');
    } else if (!('channel' in n)) {
      fail(`net[${i}]`, "needs 'tap' or 'channel'", true);
    }
    if (n.mac !== undefined && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(n.mac))
      fail(`net[${i}].mac`, 'must look like 02:00:00:00:00:01');
  });
  if (c.vsock !== undefined) {
    if (!isInt(c.vsock.cid) || c.vsock.cid < 3 || c.vsock.cid > 0xffff_ffff)
      fail('vsock.cid', 'must be an integer >= 3');
    if (typeof c.vsock.udsPath !== 'string' || c.vsock.udsPath === '')
      fail('vsock.udsPath', 'must be a path', true);
  }
  const virtioCount =
    disks.length +
    net.length +
    (c.vsock ? 1 : 0) +
    (c.rng ? 1 : 0) +
    (c.balloon ? 1 : 0) +
    (c.virtioConsole ? 1 : 0);
  if (virtioCount > VIRTIO_MMIO_MAX_DEVICES)
    fail('devices', `at most ${VIRTIO_MMIO_MAX_DEVICES} virtio devices`);
  if (c.irqchip === false && virtioCount > 0) fail('irqchip', 'virtio devices need the in-kernel irqchip');
  return {
    memory: { size: c.memory.size, hugepages: hp, shared: c.memory.shared ?? false },
    vcpus,
    boot: b,
    irqchip: c.irqchip ?? (b.kind !== 'payload' || virtioCount > 0),
    serial: c.serial ?? true,
    debugConsole: c.debugConsole ?? true,
    firmwareDebug: c.firmwareDebug ?? false,
    virtioConsole: c.virtioConsole ?? false,
    disks,
    net,
    vsock: c.vsock,
    rng: c.rng ?? false,
    balloon: c.balloon ?? false,
    ioeventfd: c.ioeventfd ?? true,
  };
}
