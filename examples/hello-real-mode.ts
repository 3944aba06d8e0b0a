/**
 * Real-mode hello: a 16-bit payload prints a greeting through port 0xE9 and halts.
 * Run: node dist/examples/hello-real-mode.js
 */
import { REAL_MODE_PAYLOAD } from '../lib/arch/x86_64/layout.js';
import { TinyVm } from '../lib/vmm/tiny-vm.js';
import type { StopReason } from '../lib/vmm/stop.js';
import { isMain } from './lib/main.js';
import { loadPayload } from './lib/payloads.js';

export function helloRealMode(onConsole?: (text: string) => void): { output: string; stop: StopReason } {
  const vm = TinyVm.create({ memorySize: 1024 * 1024, onConsole });
  try {
    vm.load(REAL_MODE_PAYLOAD, loadPayload('hello-real'));
    vm.enterRealMode(REAL_MODE_PAYLOAD);
    const stop = vm.run({ maxExits: 1000 });
    return { output: vm.consoleOutput, stop };
  } finally {
    vm.close();
  }
}

if (isMain(import.meta.url)) {
  const { stop } = helloRealMode((text) => process.stdout.write(text));
  if (stop.reason !== 'hlt') {
    console.error(
      `guest stopped unexpectedly: ${JSON.stringify(stop, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}`,
    );
    process.exitCode = 1;
  }
}
