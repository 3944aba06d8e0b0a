import type { BusDevice } from '../bus/bus.js';

/**
 * The Bochs/QEMU debug console at port 0xE9: every byte the guest writes is console output. Reads return 0xE9,
 * which is how guests detect the port.
 */
export class DebugConsole implements BusDevice {
  constructor(private readonly onOutput: (bytes: Uint8Array) => void) {}

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
    data[0] = 0xe9;
  }

  write(_offset: number, data: Uint8Array): void {
    this.onOutput(data.slice(0, 1));
  }
}
