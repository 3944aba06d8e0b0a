import type { CpuSetup } from '../arch/x86_64/modes.js';
import type { Vcpu } from '../kvm/vcpu.js';
import type { GuestMemory } from '../memory/guest-memory.js';

/** Applies a mode builder's result: memory writes, then special registers, then general registers. */
export function applyCpuSetup(vcpu: Vcpu, memory: GuestMemory, setup: CpuSetup): void {
  for (const w of setup.writes) memory.write(w.gpa, w.data);
  vcpu.setSregs(setup.sregs);
  vcpu.setRegs(setup.regs);
}
