/** The README's example: a VM, 1 MiB of RAM, one vCPU in real mode, and an exit loop. */
import { Kvm, allocateGuestMemory, applyCpuSetup, setupRealMode } from '../lib/index.js';
import { isMain } from './lib/main.js';

export function readmeExample(write: (s: string) => void): void {
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  const memory = allocateGuestMemory([{ gpa: 0, size: 1 << 20 }]);
  memory.attach(vm);
  const vcpu = vm.createVcpu(0);

  // mov al, 'K'; out 0xe9, al; hlt
  memory.write(0x1000, [0xb0, 0x4b, 0xe6, 0xe9, 0xf4]);
  applyCpuSetup(vcpu, memory, setupRealMode(vcpu.getSregs(), { entry: 0x1000 }));

  for (;;) {
    const exit = vcpu.run();
    if (exit.reason === 'io' && exit.port === 0xe9) write(String.fromCharCode(exit.value));
    else if (exit.reason === 'hlt') break;
    else throw new Error(`unexpected exit: ${exit.reason}`);
  }
  vm.close();
  memory.close();
  kvm.close();
}

if (isMain(import.meta.url)) readmeExample((s) => process.stdout.write(s + '\n'));
