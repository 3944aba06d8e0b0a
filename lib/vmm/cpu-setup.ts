import type { CpuSetup } from '../arch/x86_64/modes.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { REG_NAMES, type Regs } from '../kvm/structs.js';
import type { GuestMemory } from '../memory/guest-memory.js';

/**
 * Applies a mode builder's result: memory writes, then special registers, then general registers. Registers the
 * setup leaves out start at zero: the mode builders define the whole entry state, and setting every register
 * saves a KVM_GET_REGS (a vCPU ioctl costs microseconds on some hosts).
 */
export function applyCpuSetup(vcpu: Vcpu, memory: GuestMemory, setup: CpuSetup): void {
  for (const w of setup.writes) memory.write(w.gpa, w.data);
  vcpu.setSregs(setup.sregs);
  const regs = {} as Regs;
  for (const name of REG_NAMES) regs[name] = setup.regs[name] ?? 0n;
  vcpu.setAllRegs(regs);
}
