/**
 * A real-mode payload talking to a device written in TypeScript: it reads a counter three times and echoes the
 * host's input back upper-cased.
 * Run: node dist/examples/device-echo.js [text]
 */
import { readData, writeData, type BusDevice } from '../lib/bus/bus.js';
import { REAL_MODE_PAYLOAD } from '../lib/arch/x86_64/layout.js';
import { TinyVm } from '../lib/vmm/tiny-vm.js';
import type { StopReason } from '../lib/vmm/stop.js';
import { isMain } from './lib/main.js';
import { loadPayload } from './lib/payloads.js';

/** Ports 0x10 counter (16-bit read), 0x11 input (8-bit read, 0 = end), 0x12 output (8-bit write). */
export class CounterEchoDevice implements BusDevice {
  private counter: number;
  private inputPos = 0;
  readonly output: number[] = [];

  constructor(
    private readonly input: Uint8Array,
    start = 100,
  ) {
    this.counter = start;
  }

  read(offset: number, data: Uint8Array): void {
    if (offset === 0) writeData(data, this.counter++ & 0xffff);
    else if (offset === 1)
      writeData(data, this.inputPos < this.input.length ? this.input[this.inputPos++] : 0);
    else data.fill(0);
  }

  write(offset: number, data: Uint8Array): void {
    if (offset === 2) this.output.push(readData(data) & 0xff);
  }
}

export function deviceEcho(text: string): { stop: StopReason; echoed: string; counterReadings: number[] } {
  const vm = TinyVm.create({ memorySize: 1024 * 1024 });
  try {
    const device = new CounterEchoDevice(new TextEncoder().encode(text));
    vm.pio.register(0x10, 3, device, 'counter-echo');
    vm.load(REAL_MODE_PAYLOAD, loadPayload('device-echo'));
    vm.enterRealMode(REAL_MODE_PAYLOAD);
    const stop = vm.run({ maxExits: 10_000 });
    const counterReadings = [0, 1, 2].map((i) => vm.memory.u16(0x5000 + 2 * i));
    return { stop, echoed: String.fromCharCode(...device.output), counterReadings };
  } finally {
    vm.close();
  }
}

if (isMain(import.meta.url)) {
  const r = deviceEcho(process.argv[2] ?? 'hello, device!');
  console.log(`counter readings stored by the guest: ${r.counterReadings.join(', ')}`);
  console.log(`echoed: ${r.echoed}`);
  console.log(`stop: ${r.stop.reason}`);
}
