/**
 * Loads the native addon and describes it. This is the only module that touches the `.node` file; everything
 * above it goes through these types. Struct-valued ioctls take a Uint8Array of exactly the kernel struct's
 * size; lib/kvm encodes and decodes them.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeKvmSystem {
  readonly fd: number;
  readonly closed: boolean;
  /** KVM_GET_API_VERSION */
  apiVersion(): number;
  /** KVM_CHECK_EXTENSION */
  checkExtension(cap: number): number;
  /** KVM_GET_VCPU_MMAP_SIZE */
  vcpuMmapSize(): number;
  /** KVM_GET_SUPPORTED_CPUID: kvm_cpuid2 bytes (8-byte header, then 40-byte entries). */
  supportedCpuid(): Uint8Array;
  /** KVM_GET_MSR_INDEX_LIST */
  msrIndexList(): Uint32Array;
  /** KVM_CREATE_VM */
  createVm(type?: number): NativeVmFd;
  close(): void;
}

export interface NativeVmFd {
  readonly fd: number;
  readonly closed: boolean;
  /** KVM_CHECK_EXTENSION on the VM */
  checkExtension(cap: number): number;
  /** KVM_SET_USER_MEMORY_REGION; size 0 deletes the slot (mapping may then be null). */
  setUserMemoryRegion(
    slot: number,
    flags: number,
    guestPhysAddr: number,
    size: number,
    mapping: NativeGuestMapping | null,
    mappingOffset: number,
  ): void;
  /** KVM_SET_TSS_ADDR */
  setTssAddr(addr: number): void;
  /** KVM_SET_IDENTITY_MAP_ADDR */
  setIdentityMapAddr(addr: number): void;
  /** KVM_CREATE_IRQCHIP */
  createIrqchip(): void;
  /** KVM_CREATE_PIT2 */
  createPit2(flags: number): void;
  /** KVM_IRQ_LINE */
  irqLine(irq: number, level: number): void;
  /** KVM_IOEVENTFD */
  ioeventfd(eventfd: number, addr: number, len: number, flags: number, datamatch: number | bigint): void;
  /** KVM_IRQFD */
  irqfd(eventfd: number, gsi: number, flags: number, resamplefd: number): void;
  /** KVM_GET_DIRTY_LOG into bitmap (at least ceil(pages/64)*8 bytes). */
  getDirtyLog(slot: number, bitmap: Uint8Array): void;
  /** KVM_GET_CLOCK into a kvm_clock_data buffer */
  getClock(buffer: Uint8Array): void;
  /** KVM_SET_CLOCK from a kvm_clock_data buffer */
  setClock(buffer: Uint8Array): void;
  /** KVM_CREATE_VCPU */
  createVcpu(id: number): NativeVcpuFd;
  close(): void;
}

export interface NativeVcpuFd {
  readonly fd: number;
  readonly id: number;
  readonly closed: boolean;
  /** The mmapped kvm_run area (KVM_GET_VCPU_MMAP_SIZE bytes). Detached on close. */
  readonly runBuffer: ArrayBuffer;
  /** KVM_RUN; returns kvm_run.exit_reason, or KVM_EXIT_INTR (10) when interrupted. */
  run(): number;
  /** Sets immediate_exit and signals the thread inside KVM_RUN. */
  kick(): void;
  getRegs(buffer: Uint8Array): void;
  setRegs(buffer: Uint8Array): void;
  getSregs(buffer: Uint8Array): void;
  setSregs(buffer: Uint8Array): void;
  getFpu(buffer: Uint8Array): void;
  setFpu(buffer: Uint8Array): void;
  /** KVM_GET_MSRS on kvm_msrs bytes; returns how many were read. */
  getMsrs(buffer: Uint8Array): number;
  /** KVM_SET_MSRS; returns how many were written. */
  setMsrs(buffer: Uint8Array): number;
  setCpuid2(buffer: Uint8Array): void;
  getLapic(buffer: Uint8Array): void;
  setLapic(buffer: Uint8Array): void;
  getMpState(buffer: Uint8Array): void;
  setMpState(buffer: Uint8Array): void;
  getVcpuEvents(buffer: Uint8Array): void;
  setVcpuEvents(buffer: Uint8Array): void;
  setGuestDebug(buffer: Uint8Array): void;
  close(): void;
}

export interface NativeGuestMapping {
  readonly buffer: ArrayBuffer;
  readonly size: number;
  /** memfd for shared mappings, else -1. */
  readonly fd: number;
  readonly closed: boolean;
  /** How many KVM memory slots use this mapping; close() refuses while > 0. */
  readonly slotRefs: number;
  madvise(offset: number, length: number, advice: number): void;
  close(): void;
}

export interface NativeEventFd {
  readonly fd: number;
  readonly closed: boolean;
  /** Returns and resets the counter; 0 when non-blocking and not signalled. */
  read(): number;
  write(value?: number | bigint): void;
  close(): void;
}

/**
 * Host-side I/O for device backends, all on raw fds so the VM thread can wait on them with one epoll.
 * Data-path calls never throw: they return a byte count (>= 0) or a negative errno (-11 = EAGAIN, -5 = EIO,
 * -28 = ENOSPC). Setup calls (open*, unix*) throw Node-style errors.
 */
export interface NativeHostIo {
  read(fd: number, buf: Uint8Array): number;
  write(fd: number, buf: Uint8Array): number;
  pread(fd: number, buf: Uint8Array, position: number): number;
  pwrite(fd: number, buf: Uint8Array, position: number): number;
  /** 0 or -errno */
  fdatasync(fd: number): number;
  /** fallocate(2): 0 or -errno. Modes: FALLOC_FL_KEEP_SIZE 1, PUNCH_HOLE 2, ZERO_RANGE 0x10. */
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  /** Opens /dev/net/tun and attaches to (or creates) tap device `name`; non-blocking. */
  openTap(name: string, vnetHdr: boolean): { fd: number; name: string };
  /** A non-blocking listening AF_UNIX stream socket at path (created 0600; an existing socket file is replaced). */
  unixListen(path: string, backlog: number): number;
  /** A non-blocking AF_UNIX stream socket connected to path. */
  unixConnect(path: string): number;
  /** accept4 (non-blocking, CLOEXEC): a new fd, or -EAGAIN when none is pending. */
  accept(fd: number): number;
  /** shutdown(2) how: 0 read, 1 write, 2 both. 0 or -errno. */
  shutdown(fd: number, how: number): number;
  close(fd: number): void;
}

/** epoll(7) over fds the VM thread waits on. Events: IN 0x1, OUT 0x4, ERR 0x8, HUP 0x10, RDHUP 0x2000. */
export interface NativePoller {
  readonly fd: number;
  add(fd: number, events: number, tag: number): void;
  modify(fd: number, events: number, tag: number): void;
  remove(fd: number): void;
  /**
   * Waits up to timeoutMs (-1 = forever), polling without sleeping for the first spinMicros; writes [tag, events]
   * pairs into out and returns how many.
   */
  wait(out: Int32Array, timeoutMs: number, spinMicros?: number): number;
  close(): void;
}

/** Runs KVM_RUN for one vCPU on a native thread; parks on each exit and signals notifyEventFd. */
export interface NativeVcpuThread {
  /** 0 idle, 1 running, 2 exited (waiting for resume), 3 paused, 4 stopped */
  readonly state: number;
  /** Last exit reason, or -errno when KVM_RUN failed. */
  readonly lastExit: number;
  /** Exits handed to the VMM so far. */
  readonly exits: number;
  /**
   * Consumes the notification and returns the pending exit (a KVM exit reason, or -errno when KVM_RUN failed), or
   * VCPU_NO_EXIT_BASE - state when the thread is not parked on an exit.
   */
  takeExit(): number;
  start(): void;
  /** After an exit was handled through the kvm_run page: enter the guest again. */
  resume(): void;
  /** Kick the vCPU out and park it (the eventfd fires once parked). */
  pause(): void;
  unpause(): void;
  /** Leave the guest for good and join the thread. */
  stop(): void;
}

export interface NativeBinding {
  KvmSystem: new (path: string) => NativeKvmSystem;
  GuestMapping: new (
    size: number,
    hugetlb: boolean,
    memfd: boolean,
    thp: boolean,
    populate: boolean,
    name: string,
  ) => NativeGuestMapping;
  EventFd: new (initval: number, nonblocking: boolean, semaphore: boolean) => NativeEventFd;
  Poller: new () => NativePoller;
  /** spinMicros: how long the vCPU thread polls for resume() before sleeping (default 50). */
  VcpuThread: new (vcpu: NativeVcpuFd, notifyEventFd: number, spinMicros?: number) => NativeVcpuThread;
  hostIo: NativeHostIo;
  /** sizeof() of the kernel structs this build was compiled against. */
  structSizes: Readonly<Record<string, number>>;
  /** What the addon has mapped and not unmapped yet, in the whole process: guest memory regions and kvm_run pages. */
  liveMappings(): { guest: number; guestBytes: number; vcpuRun: number };
}

function addonPath(): string {
  const fromEnv = process.env.NODE_KVM_ADDON;
  if (fromEnv) return resolve(fromEnv);
  // dist/lib/native → package root is three levels up; lib/native (run from source) is two.
  const here = dirname(fileURLToPath(import.meta.url));
  for (const root of [resolve(here, '../../..'), resolve(here, '../..')]) {
    for (const dir of ['build/Release', 'build-cmake/Release', 'build/Debug']) {
      const candidate = join(root, dir, 'node_kvm.node');
      if (existsSync(candidate)) return candidate;
    }
  }
  throw Object.assign(
    new Error(
      'node-kvm native addon not found: run `npm install` (or `npm run build`) in the node-kvm package',
    ),
    { code: 'ERR_KVM_ADDON_MISSING' },
  );
}

let cached: NativeBinding | undefined;
let loadedFrom: string | undefined;

/** The native addon, loaded on first use. */
export function native(): NativeBinding {
  if (cached === undefined) {
    const require = createRequire(import.meta.url);
    loadedFrom = addonPath();
    cached = require(loadedFrom) as NativeBinding;
  }
  return cached;
}

/** Where the addon was loaded from (after the first native() call). */
export function nativeAddonPath(): string | undefined {
  return loadedFrom;
}
