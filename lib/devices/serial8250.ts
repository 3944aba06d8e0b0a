import type { BusDevice } from '../bus/bus.js';
import type { IrqLine } from './irq.js';

/**
 * A 16550A UART (COM1) as a pure state machine, modelled on QEMU's hw/char/serial.c so that Linux's 8250
 * driver (autoconfig, the THRE re-assert test, interrupt-driven TX/RX), `earlyprintk=serial` and SeaBIOS
 * (polled) all work.
 *
 * Transmit is instantaneous: a THR write is handed to `onOutput` at once, so THRE/TEMT read as set except
 * inside the write. Receive goes through a bounded FIFO filled by the host with `input()`; bytes that do not
 * fit are dropped, counted in `overruns` and flagged with LSR.OE. `rxSpace` lets the VMM apply backpressure
 * instead. The buffer is used in both FIFO and 16450 mode (the guest just sees DR stay set longer).
 *
 * Interrupts: the device drives a level line (`IrqLine.setLevel`), high while any IER-enabled condition is
 * pending (what IIR reports), low otherwise. It calls setLevel only on changes, plus a low→high pulse after
 * each THR write while THRE stays pending, as QEMU does: an edge-triggered IOAPIC/PIC pin (ISA IRQ 4) then
 * sees a fresh edge for every "transmitter empty again". OUT2 does not gate the line (QEMU does not either).
 * No timers: with the FIFO enabled and fewer bytes than the trigger level, IIR reports the character-timeout
 * interrupt at once, as if the timeout had already elapsed.
 */

/** Register offsets from the base port. */
export const UART_RBR_THR = 0; // DLL when LCR.DLAB
export const UART_IER = 1; // DLM when LCR.DLAB
export const UART_IIR_FCR = 2;
export const UART_LCR = 3;
export const UART_MCR = 4;
export const UART_LSR = 5;
export const UART_MSR = 6;
export const UART_SCR = 7;
/** The UART claims 8 consecutive ports. */
export const SERIAL8250_PORT_COUNT = 8;

export const IER_RDI = 0x01;
export const IER_THRI = 0x02;
export const IER_RLSI = 0x04;
export const IER_MSI = 0x08;

export const IIR_NO_INT = 0x01;
export const IIR_MSI = 0x00;
export const IIR_THRI = 0x02;
export const IIR_RDI = 0x04;
export const IIR_RLSI = 0x06;
export const IIR_CTI = 0x0c;
export const IIR_FIFO_ENABLED = 0xc0;

export const FCR_FE = 0x01;
export const FCR_CLEAR_RX = 0x02;
export const FCR_CLEAR_TX = 0x04;

export const LCR_DLAB = 0x80;

export const MCR_DTR = 0x01;
export const MCR_RTS = 0x02;
export const MCR_OUT1 = 0x04;
export const MCR_OUT2 = 0x08;
export const MCR_LOOP = 0x10;

export const LSR_DR = 0x01;
export const LSR_OE = 0x02;
export const LSR_PE = 0x04;
export const LSR_FE = 0x08;
export const LSR_BI = 0x10;
export const LSR_THRE = 0x20;
export const LSR_TEMT = 0x40;
/** Error bits that raise the line-status interrupt and clear on an LSR read. */
const LSR_INT_ANY = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

export const MSR_DCTS = 0x01;
export const MSR_DDSR = 0x02;
export const MSR_TERI = 0x04;
export const MSR_DDCD = 0x08;
export const MSR_CTS = 0x10;
export const MSR_DSR = 0x20;
export const MSR_RI = 0x40;
export const MSR_DCD = 0x80;
/** Modem inputs when not in loopback: a null-modem host that is always ready (as QEMU reports). */
const MSR_HOST_READY = MSR_DCD | MSR_DSR | MSR_CTS;

/** RX trigger levels selected by FCR bits 7:6. */
const TRIGGER_LEVELS = [1, 4, 8, 14] as const;

export interface Serial8250Options {
  /** Interrupt line (GSI 4 for COM1); a level line. Defaults to none. */
  irq?: IrqLine;
  /** Called with each byte the guest transmits (outside loopback). */
  onOutput?: (bytes: Uint8Array) => void;
  /** Capacity of the host→guest receive buffer in bytes (default 256). */
  rxCapacity?: number;
}

export class Serial8250 implements BusDevice {
  private readonly irq: IrqLine | undefined;
  private readonly onOutput: (bytes: Uint8Array) => void;
  private readonly rxCapacity: number;
  // Receive ring.
  private readonly rx: Uint8Array;
  private rxHead = 0;
  private rxCount = 0;

  private ier = 0;
  private lcr = 0x03; // 8N1
  private mcr = MCR_OUT2;
  private lsrErrors = 0; // OE/PE/FE/BI latched until an LSR read
  private msrDelta = 0;
  private scr = 0;
  private dll = 0x0c; // 9600 baud
  private dlm = 0;
  private fcr = 0;
  private thrPending = false;
  private lastRbr = 0;
  private level = false;

  /** Bytes dropped because the receive buffer was full. */
  overruns = 0;

  constructor(options: Serial8250Options = {}) {
    this.irq = options.irq;
    this.onOutput = options.onOutput ?? (() => {});
    const capacity = options.rxCapacity ?? 256;
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`rxCapacity must be a positive integer, got ${capacity}`);
    }
    this.rxCapacity = capacity;
    this.rx = new Uint8Array(capacity);
  }

  /** Free room in the receive buffer: how many bytes `input` accepts without overrun. */
  get rxSpace(): number {
    return this.rxCapacity - this.rxCount;
  }

  /** Bytes waiting for the guest to read. */
  get rxPending(): number {
    return this.rxCount;
  }

  /** Whether the interrupt line is currently asserted. */
  get irqLevel(): boolean {
    return this.level;
  }

  /**
   * Host → guest bytes. Returns how many were accepted; the rest are dropped (counted in `overruns`, LSR.OE
   * set). In loopback mode the UART is disconnected from the host: input is dropped without an overrun.
   */
  input(bytes: Uint8Array | readonly number[]): number {
    if (this.mcr & MCR_LOOP) return 0;
    let accepted = 0;
    for (let i = 0; i < bytes.length; i++) {
      if (this.push(bytes[i] & 0xff)) accepted++;
    }
    this.updateIrq();
    return accepted;
  }

  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    data[0] = this.readRegister(offset & 7);
  }

  write(offset: number, data: Uint8Array): void {
    this.writeRegister(offset & 7, data[0]);
  }

  private push(byte: number): boolean {
    if (this.rxCount === this.rxCapacity) {
      this.overruns++;
      this.lsrErrors |= LSR_OE;
      return false;
    }
    this.rx[(this.rxHead + this.rxCount) % this.rxCapacity] = byte;
    this.rxCount++;
    return true;
  }

  private clearRx(): void {
    this.rxHead = 0;
    this.rxCount = 0;
  }

  private lsr(): number {
    return (this.rxCount > 0 ? LSR_DR : 0) | this.lsrErrors | LSR_THRE | LSR_TEMT;
  }

  /** Modem status inputs (MSR 7:4): wired to MCR outputs in loopback, else the always-ready host. */
  private msrStatus(mcr = this.mcr): number {
    if (!(mcr & MCR_LOOP)) return MSR_HOST_READY;
    return (
      (mcr & MCR_DTR ? MSR_DSR : 0) |
      (mcr & MCR_RTS ? MSR_CTS : 0) |
      (mcr & MCR_OUT1 ? MSR_RI : 0) |
      (mcr & MCR_OUT2 ? MSR_DCD : 0)
    );
  }

  /** The highest-priority pending, enabled interrupt, as IIR bits 3:0. */
  private pendingInterrupt(): number {
    if (this.ier & IER_RLSI && this.lsrErrors & LSR_INT_ANY) return IIR_RLSI;
    if (this.ier & IER_RDI && this.rxCount > 0) {
      if (!(this.fcr & FCR_FE) || this.rxCount >= TRIGGER_LEVELS[this.fcr >> 6]) return IIR_RDI;
      return IIR_CTI;
    }
    if (this.ier & IER_THRI && this.thrPending) return IIR_THRI;
    if (this.ier & IER_MSI && this.msrDelta) return IIR_MSI;
    return IIR_NO_INT;
  }

  private updateIrq(): void {
    this.setLevel(this.pendingInterrupt() !== IIR_NO_INT);
  }

  private setLevel(high: boolean): void {
    if (high === this.level) return;
    this.level = high;
    this.irq?.setLevel(high);
  }

  private readRegister(reg: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (reg) {
      case UART_RBR_THR: {
        if (dlab) return this.dll;
        if (this.rxCount > 0) {
          this.lastRbr = this.rx[this.rxHead];
          this.rxHead = (this.rxHead + 1) % this.rxCapacity;
          this.rxCount--;
          this.updateIrq();
        }
        return this.lastRbr;
      }
      case UART_IER:
        return dlab ? this.dlm : this.ier;
      case UART_IIR_FCR: {
        const id = this.pendingInterrupt();
        // Reading IIR while it reports THRE acknowledges that interrupt.
        if (id === IIR_THRI) {
          this.thrPending = false;
          this.updateIrq();
        }
        return id | (this.fcr & FCR_FE ? IIR_FIFO_ENABLED : 0);
      }
      case UART_LCR:
        return this.lcr;
      case UART_MCR:
        return this.mcr;
      case UART_LSR: {
        const value = this.lsr();
        if (this.lsrErrors) {
          this.lsrErrors = 0;
          this.updateIrq();
        }
        return value;
      }
      case UART_MSR: {
        const value = this.msrStatus() | this.msrDelta;
        if (this.msrDelta) {
          this.msrDelta = 0;
          this.updateIrq();
        }
        return value;
      }
      default:
        return this.scr;
    }
  }

  private writeRegister(reg: number, value: number): void {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (reg) {
      case UART_RBR_THR:
        if (dlab) {
          this.dll = value;
          return;
        }
        this.transmit(value);
        return;
      case UART_IER: {
        if (dlab) {
          this.dlm = value;
          return;
        }
        const next = value & 0x0f;
        const changed = this.ier ^ next;
        this.ier = next;
        // Enabling THRI while THR is empty raises THRE again even if an IIR read had cleared it: Linux's
        // UART_BUG_THRE probe toggles IER and expects exactly that.
        if (changed & IER_THRI) this.thrPending = (next & IER_THRI) !== 0;
        this.updateIrq();
        return;
      }
      case UART_IIR_FCR: {
        const enable = value & FCR_FE;
        // Toggling FIFO mode resets both FIFOs on a 16550.
        if (value & FCR_CLEAR_RX || enable !== (this.fcr & FCR_FE)) this.clearRx();
        this.fcr = enable ? value & 0xc9 : 0;
        this.updateIrq();
        return;
      }
      case UART_LCR:
        this.lcr = value;
        return;
      case UART_MCR: {
        const next = value & 0x1f;
        const before = this.msrStatus();
        const after = this.msrStatus(next);
        this.mcr = next;
        this.msrDelta |= msrDeltas(before, after);
        this.updateIrq();
        return;
      }
      case UART_LSR:
      case UART_MSR:
        return; // read-only (factory test registers on some parts)
      default:
        this.scr = value;
    }
  }

  private transmit(byte: number): void {
    // THR goes non-empty then empty again: drop the line so an edge-triggered pin sees a new edge.
    this.thrPending = false;
    this.updateIrq();
    if (this.mcr & MCR_LOOP) {
      this.push(byte);
    } else {
      this.onOutput(Uint8Array.of(byte));
    }
    this.thrPending = true;
    this.updateIrq();
  }
}

/** MSR delta bits for a change of the status inputs (RI reports its trailing edge only). */
function msrDeltas(before: number, after: number): number {
  const changed = before ^ after;
  return (
    (changed & MSR_CTS ? MSR_DCTS : 0) |
    (changed & MSR_DSR ? MSR_DDSR : 0) |
    (changed & MSR_DCD ? MSR_DDCD : 0) |
    (before & MSR_RI && !(after & MSR_RI) ? MSR_TERI : 0)
  );
}
