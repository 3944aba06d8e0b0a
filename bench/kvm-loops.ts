/**
 * The JS halves of the raw-KVM benchmarks, built on node-kvm's API the way a user would write them: exit round
 * trips (vcpu.run() and runLoop() with buses), ioeventfd writes, the VM lifecycle and guest memory first
 * touch. They run the same guest programs as bench/baseline/kvm-bench.c, with the same layout.
 */
import { setupLongMode, setupRealMode } from '../lib/arch/x86_64/modes.js';
import { MmioBus, PioBus, type BusDevice } from '../lib/bus/bus.js';
import { ExitReason } from '../lib/kvm/constants.js';
import { Kvm } from '../lib/kvm/kvm.js';
import type { Vcpu } from '../lib/kvm/vcpu.js';
import type { Vm } from '../lib/kvm/vm.js';
import { allocateGuestMemory, type AllocatedGuestMemory, type HugepageMode } from '../lib/memory/allocate.js';
import { native, type NativeEventFd } from '../lib/native/binding.js';
import { applyCpuSetup } from '../lib/vmm/cpu-setup.js';
import { runLoop } from '../lib/vmm/run-loop.js';
import { VmControl, type StopReason } from '../lib/vmm/stop.js';

// The guest layout shared with bench/guest/*.S and bench/baseline/kvm-bench.c.
export const LOW_SIZE = 0xc_0000;
export const CODE_ADDR = 0x1000;
export const PARAM_COUNT = 0x800;
export const PARAM_START = 0x808;
export const PARAM_END = 0x810;
export const DATA_PORT = 0x3f8;
export const MMIO_ADDR = 0xd_0000;
export const DONE_PORT = 0x99;
export const TOUCH_GPA = 1 << 30;
const MiB = 1024 * 1024;

export type GuestMode = 'real' | 'cpl3';
export type AccessKind = 'pio' | 'mmio';

function now(): bigint {
  return process.hrtime.bigint();
}

/** One VM with one vCPU and a low-memory slot [0, LOW_SIZE), running one of the loop guests. */
export class LoopVm {
  readonly vm: Vm;
  readonly low: AllocatedGuestMemory;
  readonly vcpu: Vcpu;
  private readonly extras: AllocatedGuestMemory[] = [];
  private readonly eventfds: NativeEventFd[] = [];

  constructor(
    readonly kvm: Kvm,
    code: Uint8Array,
    mode: GuestMode,
    lowSize = LOW_SIZE,
  ) {
    this.vm = kvm.createVm();
    this.low = allocateGuestMemory([{ gpa: 0, size: lowSize }], { hugepages: 'none' });
    this.low.attach(this.vm);
    this.vcpu = this.vm.createVcpu(0);
    this.low.write(CODE_ADDR, code);
    const sregs = this.vcpu.getSregs();
    applyCpuSetup(
      this.vcpu,
      this.low,
      mode === 'real'
        ? setupRealMode(sregs, { entry: CODE_ADDR })
        : setupLongMode(sregs, { entry: CODE_ADDR, cpl3: true }),
    );
  }

  /** Adds a memory slot at gpa backed as asked. */
  addMemory(gpa: number, size: number, hugepages: HugepageMode): AllocatedGuestMemory {
    const m = allocateGuestMemory([{ gpa, size }], { hugepages });
    try {
      m.attach(this.vm, 1 + this.extras.length);
    } catch (e) {
      m.close();
      throw e;
    }
    this.extras.push(m);
    return m;
  }

  /** An eventfd KVM signals on guest writes to the data port (pio) or MMIO_ADDR, with no exit. */
  addIoeventfd(kind: AccessKind): NativeEventFd {
    const efd = new (native().EventFd)(0, true, false);
    this.vm.registerIoeventfd({
      eventfd: efd.fd,
      addr: kind === 'pio' ? DATA_PORT : MMIO_ADDR,
      length: 1,
      pio: kind === 'pio',
    });
    this.eventfds.push(efd);
    return efd;
  }

  /**
   * One chunk through the public fast path: `count` guest iterations, each exit read through vcpu.run()'s
   * decoded exit object (no allocation), until the end marker. Returns the exits to userspace (marker excluded).
   */
  runChunk(count: number): number {
    this.low.setU32(PARAM_COUNT, count);
    const vcpu = this.vcpu;
    let exits = 0;
    for (;;) {
      const exit = vcpu.run();
      if (exit.reason === 'io') {
        if (exit.port === DONE_PORT) return exits;
        exits++;
      } else if (exit.reason === 'mmio') exits++;
      else if (exit.reason !== 'intr') throw new Error(`unexpected exit '${exit.reason}'`);
      // 'intr': a signal (e.g. a profiler's) interrupted KVM_RUN; enter again, as the C loop does on EINTR.
    }
  }

  close(): void {
    this.vm.close();
    for (const e of this.eventfds) e.close();
    for (const m of this.extras) m.close();
    this.low.close();
  }
}

/** The same loop through runLoop() and the buses, as TinyVm runs payloads: the VMM's single-thread path. */
export class BusLoop {
  private readonly pio = new PioBus();
  private readonly mmio = new MmioBus();
  private readonly control = new VmControl();
  private static readonly DONE: StopReason = { reason: 'debug-exit', code: 0 };
  exits = 0;

  constructor(private readonly loop: LoopVm) {
    const sink: BusDevice = {
      read: (_o, data) => data.fill(0),
      write: () => {
        this.exits++;
      },
    };
    const done: BusDevice = {
      read: (_o, data) => data.fill(0),
      write: () => this.control.requestStop(BusLoop.DONE),
    };
    this.pio.register(DATA_PORT, 1, sink, 'sink');
    this.mmio.register(MMIO_ADDR, 1, sink, 'sink');
    this.pio.register(DONE_PORT, 1, done, 'done');
  }

  runChunk(count: number): number {
    this.loop.low.setU32(PARAM_COUNT, count);
    this.control.clear();
    this.exits = 0;
    const stop = runLoop(this.loop.vcpu, { pio: this.pio, mmio: this.mmio, control: this.control });
    if (stop !== BusLoop.DONE) throw new Error(`runLoop stopped: ${JSON.stringify(stop)}`);
    return this.exits;
  }
}

/** Times fn in nanoseconds. */
export function timeNs(fn: () => void): number {
  const t0 = now();
  fn();
  return Number(now() - t0);
}

/** Time spent in each lifecycle phase, summed over calls (nanoseconds). */
export interface LifecyclePhases {
  /** Kvm.open() .. registers set. */
  setup: number;
  /** The first KVM_RUN (HLT at the first instruction). */
  run: number;
  /** vm.close(), memory close, kvm.close(). */
  teardown: number;
}

/**
 * One VM from nothing to its first exit and back to nothing, through the public API, as the C side does it:
 * Kvm.open(), createVm(), a 2 MiB slot, createVcpu(), real-mode registers, run() returning HLT, close all.
 */
export function lifecycleOnce(phases?: LifecyclePhases): void {
  const t0 = now();
  const kvm = Kvm.open();
  try {
    const vm = kvm.createVm();
    const mem = allocateGuestMemory([{ gpa: 0, size: 2 * MiB }], { hugepages: 'none' });
    let t1 = t0;
    let t2 = t0;
    try {
      mem.attach(vm);
      const vcpu = vm.createVcpu(0);
      mem.setU8(CODE_ADDR, 0xf4); // hlt
      applyCpuSetup(vcpu, mem, setupRealMode(vcpu.getSregs(), { entry: CODE_ADDR }));
      t1 = now();
      let reason: number;
      do reason = vcpu.runRaw();
      while (reason === ExitReason.INTR);
      t2 = now();
      if (reason !== ExitReason.HLT) throw new Error(`lifecycle: exit ${reason}, not HLT`);
    } finally {
      vm.close();
      mem.close();
    }
    kvm.close();
    if (phases !== undefined) {
      phases.setup += Number(t1 - t0);
      phases.run += Number(t2 - t1);
      phases.teardown += Number(now() - t2);
    }
  } finally {
    if (!kvm.closed) kvm.close();
  }
}

export interface TouchResult {
  /** The guest's KVM_RUN over the whole range. */
  ns: number;
  setupNs: number;
  teardownNs: number;
  /** What the allocator actually got. */
  backing: string;
}

/** A fresh VM whose CPL3 guest writes one byte per 4 KiB page of `mib` MiB of fresh memory at 1 GiB. */
export function touchOnce(code: Uint8Array, hugepages: HugepageMode, mib: number): TouchResult {
  const t0 = now();
  const kvm = Kvm.open();
  let loop: LoopVm | undefined;
  try {
    loop = new LoopVm(kvm, code, 'cpl3');
    const size = mib * MiB;
    const region = loop.addMemory(TOUCH_GPA, size, hugepages);
    loop.low.setU64(PARAM_START, TOUCH_GPA);
    loop.low.setU64(PARAM_END, TOUCH_GPA + size);
    const t1 = now();
    loop.runChunk(1);
    const t2 = now();
    if (region.u8(TOUCH_GPA) !== 1 || region.u8(TOUCH_GPA + size - 4096) !== 1) {
      throw new Error('the guest did not touch the memory');
    }
    const backing = region.backing;
    loop.close();
    loop = undefined;
    kvm.close();
    const t3 = now();
    return { ns: Number(t2 - t1), setupNs: Number(t1 - t0), teardownNs: Number(t3 - t2), backing };
  } finally {
    loop?.close();
    if (!kvm.closed) kvm.close();
  }
}
