/**
 * 32-bit protected mode: the host builds a flat GDT and enters the payload at 1 MiB; it greets and sums 1..1000.
 * Run: node dist/examples/hello-protected-mode.js
 */
import { HIMEM_START } from '../lib/arch/x86_64/layout.js';
import { TinyVm } from '../lib/vmm/tiny-vm.js';
import type { StopReason } from '../lib/vmm/stop.js';
import { isMain } from './lib/main.js';
import { loadPayload } from './lib/payloads.js';

export function helloProtectedMode(): { output: string; stop: StopReason; eax: number } {
  const vm = TinyVm.create({ memorySize: 4 * 1024 * 1024 });
  try {
    vm.load(HIMEM_START, loadPayload('hello-protected'));
    vm.enterProtectedMode(HIMEM_START);
    const stop = vm.run({ maxExits: 1000 });
    return { output: vm.consoleOutput, stop, eax: Number(vm.vcpu.getRegs().rax & 0xffff_ffffn) };
  } finally {
    vm.close();
  }
}

if (isMain(import.meta.url)) {
  const r = helloProtectedMode();
  process.stdout.write(r.output);
  console.log(`stop: ${r.stop.reason}; EAX = ${r.eax}`);
}
