/** IrqLine implementations over KVM: irqfd for edge-triggered devices, KVM_IRQ_LINE for level ones. */
import type { IrqLine } from '../devices/irq.js';
import type { Vm } from '../kvm/vm.js';
import { native, type NativeEventFd } from '../native/binding.js';

/** Edge interrupts through an irqfd: a trigger is one eventfd write, with no ioctl on the VM thread. */
export class IrqfdLine implements IrqLine {
  private readonly eventfd: NativeEventFd;
  triggers = 0;

  constructor(
    private readonly vm: Vm,
    readonly gsi: number,
  ) {
    this.eventfd = new (native().EventFd)(0, true, false);
    vm.registerIrqfd({ eventfd: this.eventfd.fd, gsi });
  }

  trigger(): void {
    this.triggers++;
    this.eventfd.write(1);
  }

  /** An irqfd only makes edges: a rising level becomes one interrupt. */
  setLevel(high: boolean): void {
    if (high) this.trigger();
  }

  close(): void {
    if (!this.vm.closed) this.vm.unregisterIrqfd({ eventfd: this.eventfd.fd, gsi: this.gsi });
    this.eventfd.close();
  }
}

/** KVM_IRQ_LINE: real levels (for devices like the 8250 whose line stays up while a condition holds). */
export class KvmIrqLine implements IrqLine {
  private level = false;
  triggers = 0;

  constructor(
    private readonly vm: Vm,
    readonly gsi: number,
  ) {}

  trigger(): void {
    this.triggers++;
    this.vm.irqLine(this.gsi, true);
    this.vm.irqLine(this.gsi, false);
    this.level = false;
  }

  setLevel(high: boolean): void {
    if (high === this.level) return;
    this.level = high;
    if (high) this.triggers++;
    this.vm.irqLine(this.gsi, high);
  }
}
