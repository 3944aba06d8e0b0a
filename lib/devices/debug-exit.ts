import type { BusDevice } from '../bus/bus.js';
import { readData } from '../bus/bus.js';

/**
 * A one-register device at DEBUG_EXIT_PORT: a guest write ends the run with that value as its exit code.
 * Payloads running at CPL3 cannot HLT; this is how they say they are done.
 */
export class DebugExitPort implements BusDevice {
  constructor(private readonly onExit: (code: number) => void) {}

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  write(_offset: number, data: Uint8Array): void {
    this.onExit(readData(data));
  }
}
