/**
 * A real-mode computation checked by the host: Fibonacci numbers left in registers and in guest memory.
 * Run: node dist/examples/compute-real-mode.js
 */
import { REAL_MODE_PAYLOAD } from '../lib/arch/x86_64/layout.js';
import { TinyVm } from '../lib/vmm/tiny-vm.js';
import type { StopReason } from '../lib/vmm/stop.js';
import { isMain } from './lib/main.js';
import { loadPayload } from './lib/payloads.js';

/** Where the payload stores its table (compute-real.S: RESULT). */
export const RESULT_ADDRESS = 0x5000;

export interface ComputeResult {
  stop: StopReason;
  ax: number;
  bx: number;
  cx: number;
  table: number[];
}

export function computeRealMode(): ComputeResult {
  const vm = TinyVm.create({ memorySize: 1024 * 1024 });
  try {
    vm.load(REAL_MODE_PAYLOAD, loadPayload('compute-real'));
    vm.enterRealMode(REAL_MODE_PAYLOAD);
    const stop = vm.run({ maxExits: 10 });
    const regs = vm.vcpu.getRegs();
    const table = Array.from({ length: 16 }, (_, i) => vm.memory.u16(RESULT_ADDRESS + 2 * i));
    return {
      stop,
      ax: Number(regs.rax & 0xffffn),
      bx: Number(regs.rbx & 0xffffn),
      cx: Number(regs.rcx & 0xffffn),
      table,
    };
  } finally {
    vm.close();
  }
}

if (isMain(import.meta.url)) {
  const r = computeRealMode();
  console.log(`stop: ${r.stop.reason}; AX = ${r.ax} (fib 24), BX = 0x${r.bx.toString(16)}, CX = ${r.cx}`);
  console.log(`table at 0x${RESULT_ADDRESS.toString(16)}: ${r.table.join(' ')}`);
}
