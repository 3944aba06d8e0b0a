import type { BusDevice } from '../bus/bus.js';

/** RST_CPU: bit 2 of the reset control register requests a CPU reset. */
const RST_CPU = 0x04;

/**
 * The PC reset control register at port 0xCF9 (SeaBIOS's and Linux's `reboot=p` path): a write with RST_CPU set
 * asks for a reset; other bits are remembered and read back.
 */
export class ResetControl implements BusDevice {
  private value = 0;

  constructor(private readonly onReset: () => void) {}

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
    data[0] = this.value;
  }

  write(_offset: number, data: Uint8Array): void {
    this.value = data[0] & ~RST_CPU;
    if ((data[0] & RST_CPU) !== 0) this.onReset();
  }
}
