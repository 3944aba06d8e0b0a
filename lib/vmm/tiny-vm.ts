/**
 * A one-vCPU VM for small payloads, run on the calling thread: guest RAM from 0, the debug console on port
 * 0xE9, the debug-exit port, and the exit loop. Everything else (extra devices) goes on its buses.
 */
import { DEBUG_CONSOLE_PORT, DEBUG_EXIT_PORT, MMIO_GAP_START } from '../arch/x86_64/layout.js';
import { setupLongMode, setupProtectedMode, setupRealMode } from '../arch/x86_64/modes.js';
import { MmioBus, PioBus } from '../bus/bus.js';
import { DebugConsole } from '../devices/debug-console.js';
import { DebugExitPort } from '../devices/debug-exit.js';
import { Kvm } from '../kvm/kvm.js';
import type { Vcpu } from '../kvm/vcpu.js';
import type { Vm } from '../kvm/vm.js';
import { allocateGuestMemory, type AllocatedGuestMemory, type HugepageMode } from '../memory/allocate.js';
import { applyCpuSetup } from './cpu-setup.js';
import { runLoop } from './run-loop.js';
import { VmControl, type StopReason } from './stop.js';

export interface TinyVmOptions {
  /** Guest RAM in bytes, mapped from guest-physical 0 (default 4 MiB, at most 3 GiB). */
  memorySize?: number;
  hugepages?: HugepageMode;
  /** Called with each chunk of debug-console output (it is also collected in consoleOutput). */
  onConsole?: (text: string) => void;
}

export class TinyVm {
  readonly pio = new PioBus();
  readonly mmio = new MmioBus();
  readonly control = new VmControl();
  private readonly consoleChunks: string[] = [];
  private readonly decoder = new TextDecoder();

  private constructor(
    readonly kvm: Kvm,
    readonly vm: Vm,
    readonly memory: AllocatedGuestMemory,
    readonly vcpu: Vcpu,
    onConsole: ((text: string) => void) | undefined,
  ) {
    const console = new DebugConsole((bytes) => {
      const text = this.decoder.decode(bytes, { stream: true });
      this.consoleChunks.push(text);
      onConsole?.(text);
    });
    this.pio.register(DEBUG_CONSOLE_PORT, 1, console, 'debug-console');
    this.pio.register(
      DEBUG_EXIT_PORT,
      1,
      new DebugExitPort((code) => this.control.requestStop({ reason: 'debug-exit', code })),
      'debug-exit',
    );
  }

  static create(options: TinyVmOptions = {}): TinyVm {
    const size = options.memorySize ?? 4 * 1024 * 1024;
    if (!Number.isSafeInteger(size) || size <= 0 || size > MMIO_GAP_START) {
      throw new RangeError(`memorySize must be between 1 byte and ${MMIO_GAP_START} bytes`);
    }
    const kvm = Kvm.open();
    let vm: Vm | undefined;
    let memory: AllocatedGuestMemory | undefined;
    try {
      vm = kvm.createVm();
      memory = allocateGuestMemory([{ gpa: 0, size }], { hugepages: options.hugepages ?? 'none' });
      memory.attach(vm);
      const vcpu = vm.createVcpu(0);
      return new TinyVm(kvm, vm, memory, vcpu, options.onConsole);
    } catch (e) {
      vm?.close();
      memory?.close();
      kvm.close();
      throw e;
    }
  }

  /** Copies a payload into guest memory. */
  load(gpa: number, bytes: Uint8Array): void {
    this.memory.write(gpa, bytes);
  }

  enterRealMode(entry: number): void {
    applyCpuSetup(this.vcpu, this.memory, setupRealMode(this.vcpu.getSregs(), { entry }));
  }

  enterProtectedMode(entry: number): void {
    applyCpuSetup(this.vcpu, this.memory, setupProtectedMode(this.vcpu.getSregs(), { entry }));
  }

  enterLongMode(entry: number, options: { cpl3?: boolean } = {}): void {
    applyCpuSetup(this.vcpu, this.memory, setupLongMode(this.vcpu.getSregs(), { entry, ...options }));
  }

  /** Runs until HLT, a debug exit, an error or the exit budget; see runLoop(). */
  run(options: { maxExits?: number } = {}): StopReason {
    this.control.clear();
    return runLoop(this.vcpu, {
      pio: this.pio,
      mmio: this.mmio,
      control: this.control,
      maxExits: options.maxExits,
    });
  }

  /** Everything the guest wrote to the debug console so far. */
  get consoleOutput(): string {
    return this.consoleChunks.join('');
  }

  close(): void {
    this.vm.close();
    this.memory.close();
    this.kvm.close();
  }
}
