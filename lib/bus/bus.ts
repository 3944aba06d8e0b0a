/**
 * Address-decoded buses for port I/O and MMIO. A device claims a range; an exit is dispatched to the device
 * owning the address with the offset inside its range. Ranges may not overlap.
 */

/** A device on a bus. `data` is 1, 2, 4 or 8 bytes, little-endian; a read fills it, a write consumes it. */
export interface BusDevice {
  read(offset: number, data: Uint8Array): void;
  write(offset: number, data: Uint8Array): void;
}

interface Entry {
  readonly base: number;
  readonly end: number;
  readonly name: string;
  readonly device: BusDevice;
}

export class BusOverlapError extends RangeError {
  readonly code = 'ERR_BUS_OVERLAP';
}

export class Bus {
  private entries: Entry[] = [];
  private last: Entry | undefined;
  /** Accesses that hit no device (reads see `unclaimedReadValue`, writes are dropped). */
  unclaimedReads = 0;
  unclaimedWrites = 0;

  constructor(
    readonly name: string,
    private readonly limit: number,
    private readonly unclaimedReadValue: number,
  ) {}

  /** Claims [base, base+length) for device. Throws BusOverlapError if any byte is already claimed. */
  register(base: number, length: number, device: BusDevice, name = 'device'): void {
    if (!Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(length) || length <= 0) {
      throw new RangeError(`${this.name}: invalid range base=${base} length=${length}`);
    }
    if (base + length > this.limit) {
      throw new RangeError(
        `${this.name}: range 0x${base.toString(16)}+0x${length.toString(16)} exceeds the bus`,
      );
    }
    const end = base + length;
    for (const e of this.entries) {
      if (base < e.end && e.base < end) {
        throw new BusOverlapError(
          `${this.name}: ${name} at 0x${base.toString(16)}-0x${(end - 1).toString(16)} overlaps ${e.name} at ` +
            `0x${e.base.toString(16)}-0x${(e.end - 1).toString(16)}`,
        );
      }
    }
    this.entries.push({ base, end, name, device });
    this.entries.sort((a, b) => a.base - b.base);
  }

  /** Removes the device registered at base; returns whether one was there. */
  unregister(base: number): boolean {
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => e.base !== base);
    this.last = undefined;
    return this.entries.length !== before;
  }

  private lookup(addr: number, size: number): Entry | undefined {
    const last = this.last;
    if (last !== undefined && addr >= last.base && addr + size <= last.end) return last;
    for (const e of this.entries) {
      if (addr >= e.base && addr + size <= e.end) {
        this.last = e;
        return e;
      }
    }
    return undefined;
  }

  /** Dispatches a read; returns false (and fills data with the unclaimed value) if no device owns it. */
  read(addr: number, data: Uint8Array): boolean {
    const e = this.lookup(addr, data.length);
    if (e === undefined) {
      this.unclaimedReads++;
      data.fill(this.unclaimedReadValue);
      return false;
    }
    e.device.read(addr - e.base, data);
    return true;
  }

  /** Dispatches a write; returns false if no device owns it. */
  write(addr: number, data: Uint8Array): boolean {
    const e = this.lookup(addr, data.length);
    if (e === undefined) {
      this.unclaimedWrites++;
      return false;
    }
    e.device.write(addr - e.base, data);
    return true;
  }

  /** Registered ranges, for diagnostics and ACPI/DSDT generation. */
  get ranges(): readonly { base: number; length: number; name: string }[] {
    return this.entries.map((e) => ({ base: e.base, length: e.end - e.base, name: e.name }));
  }
}

/** The x86 I/O port space (64 KiB). Unclaimed reads return all ones, as on a floating ISA bus. */
export class PioBus extends Bus {
  constructor() {
    super('pio', 0x1_0000, 0xff);
  }
}

/** Guest-physical MMIO space. Unclaimed reads return zeros. */
export class MmioBus extends Bus {
  constructor() {
    super('mmio', 2 ** 52, 0);
  }
}

/** Little-endian helpers for devices reading/writing a bus access of 1, 2, 4 or 8 bytes. */
export function readData(data: Uint8Array): number {
  switch (data.length) {
    case 1:
      return data[0];
    case 2:
      return data[0] | (data[1] << 8);
    case 4:
      return (data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)) >>> 0;
    default: {
      // 8-byte access: low 53 bits are exact, which covers every register we emulate.
      const lo = (data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)) >>> 0;
      const hi = (data[4] | (data[5] << 8) | (data[6] << 16) | (data[7] << 24)) >>> 0;
      return hi * 0x1_0000_0000 + lo;
    }
  }
}

export function writeData(data: Uint8Array, value: number): void {
  const lo = value >>> 0;
  const hi = Math.floor(value / 0x1_0000_0000) >>> 0;
  for (let i = 0; i < data.length; i++) {
    data[i] = i < 4 ? (lo >>> (8 * i)) & 0xff : (hi >>> (8 * (i - 4))) & 0xff;
  }
}
