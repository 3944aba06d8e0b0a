/**
 * A hot loop at CPL3 (64-bit user mode, IOPL 3): native speed even on hosts that emulate kernel-mode guest code.
 * The guest reports a tick every 10,000 iterations through port 0x99 and ends through the debug-exit port.
 * Run: node dist/examples/cpl3-loop.js [ticks]
 */
import type { BusDevice } from '../lib/bus/bus.js';
import { HIMEM_START } from '../lib/arch/x86_64/layout.js';
import { TinyVm } from '../lib/vmm/tiny-vm.js';
import type { StopReason } from '../lib/vmm/stop.js';
import { isMain } from './lib/main.js';
import { loadPayload } from './lib/payloads.js';

const TICK_PORT = 0x99;
const ITERATIONS_PER_TICK = 10_000;
/** cpl3-loop.S stores its iteration count here before exiting. */
export const COUNT_ADDRESS = 0x20_0000;

class TickCounter implements BusDevice {
  ticks = 0;
  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }
  write(): void {
    this.ticks++;
  }
}

export interface Cpl3Result {
  stop: StopReason;
  ticks: number;
  iterations: number;
  seconds: number;
}

export function cpl3Loop(ticks = 1000): Cpl3Result {
  const vm = TinyVm.create({ memorySize: 4 * 1024 * 1024 });
  try {
    const counter = new TickCounter();
    vm.pio.register(TICK_PORT, 1, counter, 'tick-counter');
    vm.load(HIMEM_START, loadPayload('cpl3-loop'));
    vm.enterLongMode(HIMEM_START, { cpl3: true });
    vm.vcpu.setRegs({ rdi: ticks });
    const start = process.hrtime.bigint();
    const stop = vm.run({ maxExits: ticks + 10 });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    return { stop, ticks: counter.ticks, iterations: Number(vm.memory.u64(COUNT_ADDRESS)), seconds };
  } finally {
    vm.close();
  }
}

if (isMain(import.meta.url)) {
  const r = cpl3Loop(Number(process.argv[2] ?? 1000));
  const exits = r.ticks + 1;
  console.log(
    `stop: ${r.stop.reason}${r.stop.reason === 'debug-exit' ? ` (code 0x${r.stop.code.toString(16)})` : ''}; ` +
      `${r.iterations} iterations (${r.ticks} ticks of ${ITERATIONS_PER_TICK}) in ${r.seconds.toFixed(3)} s: ` +
      `${(r.iterations / r.seconds / 1e6).toFixed(0)} M iterations/s, ${(exits / r.seconds).toFixed(0)} exits/s`,
  );
}
