/**
 * 64-bit long mode at CPL0: identity-mapped with 2 MiB pages by the host; the payload greets and writes a marker.
 * Run: node dist/examples/hello-long-mode.js
 */
import { HIMEM_START } from '../lib/arch/x86_64/layout.js';
import { TinyVm } from '../lib/vmm/tiny-vm.js';
import type { StopReason } from '../lib/vmm/stop.js';
import { isMain } from './lib/main.js';
import { loadPayload } from './lib/payloads.js';

/** hello-long.S writes its marker here (the second 2 MiB page). */
export const MARKER_ADDRESS = 0x20_0000;

export function helloLongMode(options: { hugepages?: 'none' | 'thp' | 'hugetlb' | 'auto' } = {}): {
  output: string;
  stop: StopReason;
  rax: bigint;
  marker: bigint;
  backing: string;
} {
  const vm = TinyVm.create({ memorySize: 4 * 1024 * 1024, hugepages: options.hugepages });
  try {
    vm.load(HIMEM_START, loadPayload('hello-long'));
    vm.enterLongMode(HIMEM_START);
    const stop = vm.run({ maxExits: 1000 });
    return {
      output: vm.consoleOutput,
      stop,
      rax: vm.vcpu.getRegs().rax,
      marker: vm.memory.u64(MARKER_ADDRESS),
      backing: vm.memory.backing,
    };
  } finally {
    vm.close();
  }
}

if (isMain(import.meta.url)) {
  const r = helloLongMode();
  process.stdout.write(r.output);
  console.log(
    `stop: ${r.stop.reason}; RAX = 0x${r.rax.toString(16)}; memory[0x200000] = 0x${r.marker.toString(16)}`,
  );
}
