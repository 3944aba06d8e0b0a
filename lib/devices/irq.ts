/** The only outward call a device makes: signal its interrupt line. The VMM decides how (irqfd, KVM_IRQ_LINE). */
export interface IrqLine {
  /** Edge-style interrupt: deliver one interrupt (irqfd write, or KVM_IRQ_LINE 1 then 0). */
  trigger(): void;
  /** Level-style interrupt: hold the line asserted (true) or deasserted (false). */
  setLevel(high: boolean): void;
}

/** An IrqLine that records what devices did; for tests and for devices with no interrupt wired. */
export class RecordingIrqLine implements IrqLine {
  triggers = 0;
  level = false;
  trigger(): void {
    this.triggers++;
  }
  setLevel(high: boolean): void {
    this.level = high;
  }
}
