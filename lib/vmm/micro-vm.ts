/**
 * MicroVm: a VM whose VMM loop runs on its own worker thread (the VM thread), so the caller's event loop stays
 * free. Control (pause, resume, stop, console input) goes by message plus an eventfd kick.
 */
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { writeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { native, type NativeEventFd } from '../native/binding.js';
import { validateConfig, type MicroVmConfig } from './config.js';
import type { FromVmThread, ToVmThread, VmStats } from './messages.js';
import type { StopReason } from './stop.js';

/** Young-generation cap of a VM thread's V8 heap (MiB). */
const VM_THREAD_YOUNG_GENERATION_MB = 2;

function vmThreadUrl(): URL {
  const compiled = new URL('./vm-thread.js', import.meta.url);
  if (existsSync(compiled)) return compiled;
  // Running from TypeScript sources (tests): the worker runs the compiled copy under dist/.
  const dist = new URL('../../dist/lib/vmm/vm-thread.js', import.meta.url);
  if (existsSync(dist)) return dist;
  throw Object.assign(
    new Error('the compiled VM thread (dist/lib/vmm/vm-thread.js) is missing: run `npm run build:ts`'),
    {
      code: 'ERR_KVM_VM_THREAD_MISSING',
    },
  );
}

/**
 * Node options for the VM thread: the parent's, minus --input-type, which a worker started from a file rejects
 * ("--input-type can only be used with string input"), so a MicroVm could not start from `node --input-type=module
 * -e ...` scripts.
 */
function vmThreadExecArgv(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--input-type') i++;
    else if (!argv[i].startsWith('--input-type=')) out.push(argv[i]);
  }
  return out;
}

export interface MicroVmEvents {
  console: [Uint8Array];
  exit: [StopReason];
  balloonStats: [Record<string, number>];
  /** Human-readable progress of long steps (kernel decompression, firmware setup). */
  progress: [string];
  /** The firmware's debug log (config.firmwareDebug). */
  firmwareLog: [Uint8Array];
}

export class MicroVm extends EventEmitter<MicroVmEvents> {
  private worker: Worker | undefined;
  private control: NativeEventFd | undefined;
  private readonly config: MicroVmConfig;
  private exitReason: StopReason | undefined;
  private readonly exitPromise: Promise<StopReason>;
  private resolveExit!: (s: StopReason) => void;
  private waiters: { type: FromVmThread['type']; resolve: (m: FromVmThread) => void }[] = [];
  /** What guest RAM got ('hugetlb', 'thp', '4k'), once started. */
  backing: string | undefined;
  /** The last statistics the VM thread sent (always sent at exit). */
  lastStats: VmStats | undefined;

  constructor(config: MicroVmConfig) {
    super();
    validateConfig(config);
    this.config = config;
    this.exitPromise = new Promise((resolve) => {
      this.resolveExit = resolve;
    });
  }

  /** Resolves with the stop reason when the VM has stopped and released everything. */
  get exited(): Promise<StopReason> {
    return this.exitPromise;
  }

  get running(): boolean {
    return this.worker !== undefined && this.exitReason === undefined;
  }

  /** Starts the VM thread; resolves once the guest is running (rejects if the VM cannot be built). */
  async start(): Promise<void> {
    if (this.worker) throw new Error('MicroVm already started');
    this.control = new (native().EventFd)(0, true, false);
    const worker = new Worker(vmThreadUrl(), {
      workerData: { config: this.config, controlFd: this.control.fd },
      execArgv: vmThreadExecArgv(),
      // The VM thread allocates little once the VM is built (the exit path allocates nothing), so a small
      // young generation is enough; V8's default commits 2 MiB more per VM for nothing.
      resourceLimits: { maxYoungGenerationSizeMb: VM_THREAD_YOUNG_GENERATION_MB },
    });
    this.worker = worker;
    worker.on('message', (m: FromVmThread) => this.onMessage(m));
    worker.on('error', (e) =>
      this.finish({ reason: 'error', kind: 'vmm', message: `VM thread crashed: ${e.message}` }),
    );
    worker.on('exit', () => {
      this.finish({ reason: 'error', kind: 'vmm', message: 'VM thread exited without a stop reason' });
      this.control?.close();
      this.control = undefined;
    });
    const first = await Promise.race([this.next('started'), this.exitPromise]);
    if ('reason' in first) {
      throw Object.assign(
        new Error(first.reason === 'error' ? first.message : `VM stopped: ${first.reason}`),
        {
          code: 'ERR_KVM_VM_START',
          stop: first,
        },
      );
    }
  }

  private onMessage(m: FromVmThread): void {
    switch (m.type) {
      case 'console':
        this.emit('console', m.data);
        break;
      case 'started':
        this.backing = m.backing;
        break;
      case 'progress':
        this.emit('progress', m.message);
        break;
      case 'firmware-log':
        this.emit('firmwareLog', m.data);
        break;
      case 'balloon-stats':
        this.emit('balloonStats', m.stats);
        break;
      case 'stats':
        this.lastStats = m.stats;
        break;
      case 'exit':
        this.finish(m.stop);
        break;
    }
    for (const w of this.waiters.filter((x) => x.type === m.type)) w.resolve(m);
    this.waiters = this.waiters.filter((x) => x.type !== m.type);
  }

  private finish(stop: StopReason): void {
    if (this.exitReason !== undefined) return;
    this.exitReason = stop;
    this.resolveExit(stop);
    this.emit('exit', stop);
  }

  private next<T extends FromVmThread['type']>(type: T): Promise<Extract<FromVmThread, { type: T }>> {
    return new Promise((resolve) => {
      this.waiters.push({ type, resolve: resolve as (m: FromVmThread) => void });
    });
  }

  private send(m: ToVmThread): void {
    if (!this.worker || this.exitReason !== undefined || !this.control) {
      throw Object.assign(new Error('MicroVm is not running'), { code: 'ERR_KVM_VM_NOT_RUNNING' });
    }
    this.worker.postMessage(m);
    const one = Buffer.alloc(8);
    one[0] = 1;
    writeSync(this.control.fd, one);
  }

  /** Parks every vCPU; resolves when they are all out of the guest. */
  async pause(): Promise<void> {
    const paused = this.next('paused');
    this.send({ type: 'pause' });
    await Promise.race([paused, this.exitPromise]);
  }

  async resume(): Promise<void> {
    const resumed = this.next('resumed');
    this.send({ type: 'resume' });
    await Promise.race([resumed, this.exitPromise]);
  }

  /** Sends bytes to the guest's console input (virtio console and 8250). */
  writeConsole(data: Uint8Array | string): void {
    this.send({
      type: 'console-input',
      data: typeof data === 'string' ? new TextEncoder().encode(data) : data,
    });
  }

  /** Sets the balloon target in 4 KiB pages. */
  setBalloonTarget(pages: number): void {
    if (!Number.isSafeInteger(pages) || pages < 0)
      throw new RangeError('pages must be a non-negative integer');
    this.send({ type: 'balloon-target', pages });
  }

  async stats(): Promise<VmStats> {
    const s = this.next('stats');
    this.send({ type: 'stats' });
    return (await s).stats;
  }

  /** Stops the VM (if still running) and resolves with the stop reason. */
  async stop(): Promise<StopReason> {
    if (this.exitReason === undefined && this.worker) this.send({ type: 'stop' });
    return this.exitPromise;
  }
}
