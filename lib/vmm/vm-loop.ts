/**
 * The VM thread's event loop: one epoll wait over vCPU exit notifications, ioeventfds, backend fds and the
 * control eventfd. vCPUs run KVM_RUN on their own native threads; an exit that needs a device parks its
 * thread, and this loop handles it through the vCPU's kvm_run page and releases it.
 */
import type { MmioBus, PioBus } from '../bus/bus.js';
import { VCPU_NO_EXIT_BASE, VcpuThreadState } from '../kvm/constants.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { native, type NativeEventFd, type NativePoller, type NativeVcpuThread } from '../native/binding.js';
import { FD_IN, type FdWatcher } from '../virtio/host-io.js';
import { dispatchDeviceExit, stopReasonForExit, type ExitPolicy } from './run-loop.js';
import { VmControl, type StopReason } from './stop.js';

/**
 * Adaptive polling before sleeping (µs), as KVM's halt_poll_ns: while events keep arriving within MAX_SPIN_MICROS
 * the polling window doubles (so it comes to cover the gap between exits); longer gaps halve it, down to no
 * polling at all when the VM is quiet.
 */
const MAX_SPIN_MICROS = 200;
const MIN_SPIN_MICROS = 10;

interface VcpuRunner {
  vcpu: Vcpu;
  thread: NativeVcpuThread;
  notify: NativeEventFd;
  paused: boolean;
}

interface Timer {
  at: number;
  fn: () => void;
}

export interface VmLoopOptions {
  pio: PioBus;
  mmio: MmioBus;
  control: VmControl;
  /** What HLT and triple faults mean for this VM. */
  policy: ExitPolicy;
}

export class VmLoop implements FdWatcher {
  private readonly poller: NativePoller = new (native().Poller)();
  private readonly events = new Int32Array(128);
  private readonly handlers = new Map<number, (events: number) => void>();
  private readonly tagOfFd = new Map<number, number>();
  private readonly runners: VcpuRunner[] = [];
  private readonly timers: Timer[] = [];
  private nextTag = 1;
  private spinMicros = 0;
  private pauseWaiters: (() => void)[] = [];
  /** Exits handled by this loop (all vCPUs). */
  exits = 0;

  constructor(private readonly o: VmLoopOptions) {}

  watch(fd: number, events: number, onEvent: (events: number) => void): void {
    const existing = this.tagOfFd.get(fd);
    if (existing !== undefined) {
      this.handlers.set(existing, onEvent);
      this.poller.modify(fd, events, existing);
      return;
    }
    const tag = this.nextTag++;
    this.poller.add(fd, events, tag);
    this.tagOfFd.set(fd, tag);
    this.handlers.set(tag, onEvent);
  }

  unwatch(fd: number): void {
    const tag = this.tagOfFd.get(fd);
    if (tag === undefined) return;
    this.tagOfFd.delete(fd);
    this.handlers.delete(tag);
    try {
      this.poller.remove(fd);
    } catch {
      // Already closed: epoll dropped it by itself.
    }
  }

  /** Runs fn after ms milliseconds on the VM thread. */
  setTimer(ms: number, fn: () => void): void {
    this.timers.push({ at: performance.now() + ms, fn });
    this.timers.sort((a, b) => a.at - b.at);
  }

  /** Hands a vCPU to a native thread; it starts running when run() begins. */
  addVcpu(vcpu: Vcpu): void {
    const notify = new (native().EventFd)(0, true, false);
    const thread = new (native().VcpuThread)(vcpu.nativeHandle, notify.fd);
    const runner: VcpuRunner = { vcpu, thread, notify, paused: false };
    this.runners.push(runner);
    this.watch(notify.fd, FD_IN, () => this.onVcpuNotify(runner));
  }

  private onVcpuNotify(r: VcpuRunner): void {
    const code = r.thread.takeExit();
    if (code <= VCPU_NO_EXIT_BASE) {
      if (VCPU_NO_EXIT_BASE - code === VcpuThreadState.PAUSED) {
        r.paused = true;
        if (this.runners.every((x) => x.paused)) {
          for (const w of this.pauseWaiters.splice(0)) w();
        }
      }
      return;
    }
    this.exits++;
    if (code < 0) {
      this.o.control.requestStop({
        reason: 'error',
        kind: 'kvm_run',
        message: `KVM_RUN failed with errno ${-code}`,
      });
      return;
    }
    const exit = r.vcpu.decodeExit(code);
    try {
      if (!dispatchDeviceExit(exit, this.o.pio, this.o.mmio)) {
        const stop = stopReasonForExit(exit, r.vcpu, this.o.policy);
        if (stop !== undefined) {
          this.o.control.requestStop(stop);
          return;
        }
      }
    } catch (e) {
      this.o.control.requestStop({
        reason: 'error',
        kind: 'vmm',
        message: `device fault: ${(e as Error).message}`,
      });
      return;
    }
    if (this.o.control.stopRequested === undefined) r.thread.resume();
  }

  private adaptSpin(waitedMicros: number): void {
    if (waitedMicros <= MAX_SPIN_MICROS) {
      this.spinMicros = Math.min(MAX_SPIN_MICROS, Math.max(MIN_SPIN_MICROS, this.spinMicros * 2));
    } else {
      this.spinMicros = this.spinMicros / 2 < MIN_SPIN_MICROS ? 0 : Math.floor(this.spinMicros / 2);
    }
  }

  /** Parks every vCPU; calls done once all are parked. */
  pause(done: () => void): void {
    this.pauseWaiters.push(done);
    for (const r of this.runners) r.thread.pause();
  }

  resume(): void {
    for (const r of this.runners) {
      r.paused = false;
      r.thread.unpause();
    }
  }

  get vcpuExits(): number {
    return this.runners.reduce((a, r) => a + r.thread.exits, 0);
  }

  /** Starts the vCPUs and serves events until a stop is requested; returns why. */
  run(): StopReason {
    for (const r of this.runners) r.thread.start();
    const control = this.o.control;
    for (;;) {
      const stop = control.stopRequested;
      if (stop !== undefined) return stop;
      let timeout = -1;
      if (this.timers.length > 0) timeout = Math.max(0, Math.ceil(this.timers[0].at - performance.now()));
      const started = performance.now();
      const n = this.poller.wait(this.events, timeout, this.spinMicros);
      if (this.runners.length > 0) this.adaptSpin((performance.now() - started) * 1000);
      for (let i = 0; i < n; i++) {
        const handler = this.handlers.get(this.events[2 * i]);
        if (handler === undefined) continue;
        try {
          handler(this.events[2 * i + 1]);
        } catch (e) {
          control.requestStop({
            reason: 'error',
            kind: 'vmm',
            message: `event handler fault: ${(e as Error).message}`,
          });
        }
      }
      const now = performance.now();
      while (this.timers.length > 0 && this.timers[0].at <= now) {
        const t = this.timers.shift()!;
        try {
          t.fn();
        } catch (e) {
          control.requestStop({
            reason: 'error',
            kind: 'vmm',
            message: `timer fault: ${(e as Error).message}`,
          });
        }
      }
    }
  }

  /** Stops and joins every vCPU thread and releases the loop's fds. Idempotent. */
  close(): void {
    for (const r of this.runners) {
      r.thread.stop();
      this.unwatch(r.notify.fd);
      r.notify.close();
    }
    this.runners.length = 0;
    this.poller.close();
  }
}
