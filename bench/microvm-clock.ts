/**
 * Timing a MicroVm from the outside: the bench guest writes a '.' to the debug console every N requests, and
 * the main thread timestamps each dot as it arrives. The arrival latency (a postMessage from the VM thread) is
 * the same at both ends of an interval, so intervals of many dots are what we measure.
 */
import { performance } from 'node:perf_hooks';
import type { MicroVm } from '../lib/vmm/micro-vm.js';
import type { MicroVmConfig } from '../lib/vmm/config.js';
import { formatStopReason, type StopReason } from '../lib/vmm/stop.js';

const DOT = 0x2e;

export class DotClock {
  readonly times: number[] = [];
  private waiter: { count: number; resolve: () => void } | undefined;
  private stopped: StopReason | undefined;
  private readonly onStop: Promise<never>;

  constructor(readonly vm: MicroVm) {
    vm.on('console', (bytes) => {
      for (const b of bytes) if (b === DOT) this.times.push(performance.now());
      const w = this.waiter;
      if (w !== undefined && this.times.length >= w.count) {
        this.waiter = undefined;
        w.resolve();
      }
    });
    this.onStop = vm.exited.then((s) => {
      this.stopped = s;
      throw new Error(`the guest stopped: ${formatStopReason(s)}`);
    });
    this.onStop.catch(() => {});
  }

  get count(): number {
    return this.times.length;
  }

  /** Resolves once `count` dots have arrived; rejects if the VM stops or nothing arrives for timeoutMs. */
  async until(count: number, timeoutMs = 30_000): Promise<void> {
    if (this.times.length >= count) return;
    if (this.stopped !== undefined) throw new Error(`the guest stopped: ${formatStopReason(this.stopped)}`);
    let timer: NodeJS.Timeout | undefined;
    const arrived = new Promise<void>((resolve) => (this.waiter = { count, resolve }));
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no progress from the guest for ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([arrived, this.onStop, timeout]);
    } finally {
      clearTimeout(timer);
      this.waiter = undefined;
    }
  }

  /**
   * Lets the guest run until `dots` more dots arrive, timing from the first dot (so work done before a resume
   * does not count). Returns the milliseconds between the first and the last of dots + 1 dots.
   */
  async interval(dots: number): Promise<number> {
    const first = this.times.length;
    await this.until(first + dots + 1);
    return this.times[first + dots] - this.times[first];
  }
}

/** A payload config for the bench guest (bench/guest/virtio-bench.S) at CPL3; regs carry its parameters. */
export function benchGuestConfig(
  payload: Uint8Array,
  regs: { rdi: number; rsi?: number; rdx?: number; rcx?: number; r8?: number; r9?: number },
  extra: Partial<MicroVmConfig> = {},
): MicroVmConfig {
  return {
    memory: { size: 32 * 1024 * 1024 },
    boot: { kind: 'payload', payload, mode: 'long-cpl3', regs },
    serial: false,
    ...extra,
  };
}
