import type { BusDevice } from '../bus/bus.js';
import type { IrqLine } from './irq.js';

/**
 * The PS/2 controller (i8042) with a minimal AT keyboard behind it, as a pure state machine modelled on
 * QEMU's hw/input/pckbd.c: enough for Linux's i8042 probe (self-test, CTR read/write, port enable/disable,
 * AUX loopback) and atkbd's reset/identify to complete without timeouts, and for the two reset paths guests
 * use — command 0xFE (pulse the reset line) and an output-port write with bit 0 clear — to reach `onReset`.
 *
 * Ports: the controller has a data port (0x60) and a command/status port (0x64). Register `i8042.dataPort`
 * at I8042_DATA_PORT and `i8042.commandPort` at I8042_COMMAND_PORT, one byte each. They are separate on
 * purpose: 0x61 between them is the PC speaker / PIT gate port, which KVM's in-kernel PIT owns. (The device
 * itself is also a BusDevice for a single 5-byte registration at 0x60 — offset 0 data, offset 4 command.)
 *
 * Interrupts: the keyboard line (IRQ 1) is a level line, high while a keyboard byte waits in the output
 * buffer and CTR.KBD_INT is set; the optional AUX line (IRQ 12) likewise for AUX bytes. Reading the data
 * port drops the line before the next byte loads, so edge-triggered pins see one edge per byte.
 */

export const I8042_DATA = 0;
export const I8042_COMMAND = 4;
/** Span of the single-registration form (0x60..0x64). */
export const I8042_SPAN = 5;

/** Status register bits. */
export const I8042_STR_OBF = 0x01;
export const I8042_STR_IBF = 0x02;
export const I8042_STR_SYS = 0x04;
export const I8042_STR_CMD = 0x08;
export const I8042_STR_UNLOCKED = 0x10;
export const I8042_STR_AUX_OBF = 0x20;

/** Controller configuration byte (CTR) bits. */
export const I8042_CTR_KBD_INT = 0x01;
export const I8042_CTR_AUX_INT = 0x02;
export const I8042_CTR_SYS = 0x04;
export const I8042_CTR_KBD_DISABLE = 0x10;
export const I8042_CTR_AUX_DISABLE = 0x20;
export const I8042_CTR_XLATE = 0x40;

/** Controller commands (written to the command port). */
export const I8042_CMD_READ_CTR = 0x20;
export const I8042_CMD_WRITE_CTR = 0x60;
export const I8042_CMD_AUX_DISABLE = 0xa7;
export const I8042_CMD_AUX_ENABLE = 0xa8;
export const I8042_CMD_AUX_TEST = 0xa9;
export const I8042_CMD_SELF_TEST = 0xaa;
export const I8042_CMD_KBD_TEST = 0xab;
export const I8042_CMD_KBD_DISABLE = 0xad;
export const I8042_CMD_KBD_ENABLE = 0xae;
export const I8042_CMD_READ_INPUT = 0xc0;
export const I8042_CMD_READ_OUTPUT = 0xd0;
export const I8042_CMD_WRITE_OUTPUT = 0xd1;
export const I8042_CMD_WRITE_KBD_OBUF = 0xd2;
export const I8042_CMD_WRITE_AUX_OBUF = 0xd3;
export const I8042_CMD_WRITE_AUX = 0xd4;
export const I8042_CMD_PULSE_RESET = 0xfe;

/** Output port bits: bit 0 is the CPU reset line (active low), bit 1 the A20 gate. */
export const I8042_OUT_RESET = 0x01;
export const I8042_OUT_A20 = 0x02;

export const I8042_SELF_TEST_OK = 0x55;
export const KBD_ACK = 0xfa;
export const KBD_BAT_OK = 0xaa;

/** Output queues are bounded so a guest that never reads cannot grow them. */
const QUEUE_LIMIT = 16;

type Source = 'ctrl' | 'kbd';
/** Marks a controller-queue byte as AUX data (0xD3 loopback) rather than keyboard data. */
const AUX_TAG = 0x100;

export interface I8042Options {
  /** Keyboard interrupt (IRQ 1), a level line. */
  kbdIrq?: IrqLine;
  /** AUX (mouse) interrupt (IRQ 12); optional — no mouse is emulated, only the controller's AUX loopback. */
  auxIrq?: IrqLine;
  /** The guest asked for a CPU reset (0xFE, any 0xF0-0xFF pulse with bit 0 clear, or 0xD1 with bit 0 clear). */
  onReset?: () => void;
}

export class I8042 implements BusDevice {
  private readonly kbdIrq: IrqLine | undefined;
  private readonly auxIrq: IrqLine | undefined;
  private readonly onReset: () => void;

  /** Controller RAM: byte 0 is the CTR. Commands 0x20-0x3F / 0x60-0x7F read and write it. */
  private readonly ram = new Uint8Array(32);
  private status = I8042_STR_CMD | I8042_STR_UNLOCKED;
  private outputPort = 0xcc | I8042_OUT_RESET | I8042_OUT_A20;
  /** Command waiting for its parameter on the data port. */
  private pendingCommand = 0;
  /** Keyboard command waiting for its parameter (0xED, 0xF0, 0xF3). */
  private kbdPendingCommand = 0;
  private kbdScanning = true;
  private readonly queues: Record<Source, number[]> = { ctrl: [], kbd: [] };
  private lastData = 0;
  private kbdLevel = false;
  private auxLevel = false;

  /** The data port (I8042_DATA_PORT) as its own one-byte device. */
  readonly dataPort: BusDevice;
  /** The command/status port (I8042_COMMAND_PORT) as its own one-byte device. */
  readonly commandPort: BusDevice;
  /** How many resets the guest requested. */
  resets = 0;

  constructor(options: I8042Options = {}) {
    this.kbdIrq = options.kbdIrq;
    this.auxIrq = options.auxIrq;
    this.onReset = options.onReset ?? (() => {});
    this.ram[0] = I8042_CTR_KBD_INT | I8042_CTR_AUX_INT;
    this.dataPort = {
      read: (_offset, data) => this.read(I8042_DATA, data),
      write: (_offset, data) => this.write(I8042_DATA, data),
    };
    this.commandPort = {
      read: (_offset, data) => this.read(I8042_COMMAND, data),
      write: (_offset, data) => this.write(I8042_COMMAND, data),
    };
  }

  /** The controller configuration byte. */
  get ctr(): number {
    return this.ram[0];
  }

  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset === I8042_DATA) data[0] = this.readData();
    else if (offset === I8042_COMMAND) data[0] = this.readStatus();
    else data.fill(0xff);
  }

  write(offset: number, data: Uint8Array): void {
    if (offset === I8042_DATA) this.writeData(data[0]);
    else if (offset === I8042_COMMAND) this.writeCommand(data[0]);
  }

  /** Host keyboard input: scancodes as the keyboard would send them (dropped while scanning is off). */
  keyboardInput(bytes: readonly number[] | Uint8Array): void {
    if (!this.kbdScanning) return;
    for (const b of bytes) this.enqueue('kbd', b & 0xff);
    this.updateIrq();
  }

  /**
   * Which queue the output buffer presents: the controller's own bytes first (replies and 0xD2/0xD3
   * loopbacks, which ignore the port-disable bits), then keyboard data if the keyboard port is enabled.
   */
  private head(): Source | undefined {
    if (this.queues.ctrl.length > 0) return 'ctrl';
    if (this.queues.kbd.length > 0 && !(this.ram[0] & I8042_CTR_KBD_DISABLE)) return 'kbd';
    return undefined;
  }

  private enqueue(source: Source, byte: number): void {
    const q = this.queues[source];
    if (q.length < QUEUE_LIMIT) q.push(byte);
  }

  private readStatus(): number {
    const head = this.head();
    let s = this.status & ~(I8042_STR_OBF | I8042_STR_AUX_OBF);
    if (head !== undefined) s |= I8042_STR_OBF;
    if (this.headIsAux(head)) s |= I8042_STR_AUX_OBF;
    return s;
  }

  private headIsAux(head: Source | undefined): boolean {
    return head === 'ctrl' && (this.queues.ctrl[0] & AUX_TAG) !== 0;
  }

  private readData(): number {
    const head = this.head();
    if (head === undefined) return this.lastData;
    this.lastData = (this.queues[head].shift() ?? 0) & 0xff;
    // Drop the lines before the next byte loads, so a following byte is a new edge.
    this.setKbd(false);
    this.setAux(false);
    this.updateIrq();
    return this.lastData;
  }

  private updateIrq(): void {
    const head = this.head();
    const aux = this.headIsAux(head);
    // Controller replies are delivered as keyboard data (QEMU does the same).
    this.setKbd(head !== undefined && !aux && (this.ram[0] & I8042_CTR_KBD_INT) !== 0);
    this.setAux(aux && (this.ram[0] & I8042_CTR_AUX_INT) !== 0);
  }

  private setKbd(high: boolean): void {
    if (high === this.kbdLevel) return;
    this.kbdLevel = high;
    this.kbdIrq?.setLevel(high);
  }

  private setAux(high: boolean): void {
    if (high === this.auxLevel) return;
    this.auxLevel = high;
    this.auxIrq?.setLevel(high);
  }

  private reply(byte: number): void {
    this.enqueue('ctrl', byte);
    this.updateIrq();
  }

  private requestReset(): void {
    this.resets++;
    this.onReset();
  }

  private writeCommand(cmd: number): void {
    this.status |= I8042_STR_CMD;
    this.pendingCommand = 0;
    if (cmd >= I8042_CMD_READ_CTR && cmd < I8042_CMD_READ_CTR + 0x20) {
      this.reply(this.ram[cmd - I8042_CMD_READ_CTR]);
      return;
    }
    if (cmd >= I8042_CMD_WRITE_CTR && cmd < I8042_CMD_WRITE_CTR + 0x20) {
      this.pendingCommand = cmd;
      return;
    }
    if (cmd >= 0xf0) {
      // Pulse output-port bits 3:0 low for those clear in the command; bit 0 is the reset line.
      if (!(cmd & I8042_OUT_RESET)) this.requestReset();
      return;
    }
    switch (cmd) {
      case I8042_CMD_AUX_DISABLE:
        this.setCtr(this.ram[0] | I8042_CTR_AUX_DISABLE);
        return;
      case I8042_CMD_AUX_ENABLE:
        this.setCtr(this.ram[0] & ~I8042_CTR_AUX_DISABLE);
        return;
      case I8042_CMD_KBD_DISABLE:
        this.setCtr(this.ram[0] | I8042_CTR_KBD_DISABLE);
        return;
      case I8042_CMD_KBD_ENABLE:
        this.setCtr(this.ram[0] & ~I8042_CTR_KBD_DISABLE);
        return;
      case I8042_CMD_AUX_TEST:
      case I8042_CMD_KBD_TEST:
        this.reply(0x00); // interface OK
        return;
      case I8042_CMD_SELF_TEST:
        this.status |= I8042_STR_SYS;
        this.reply(I8042_SELF_TEST_OK);
        return;
      case I8042_CMD_READ_INPUT:
        this.reply(0x00);
        return;
      case I8042_CMD_READ_OUTPUT:
        this.reply(this.outputPort);
        return;
      case I8042_CMD_WRITE_OUTPUT:
      case I8042_CMD_WRITE_KBD_OBUF:
      case I8042_CMD_WRITE_AUX_OBUF:
      case I8042_CMD_WRITE_AUX:
        this.pendingCommand = cmd;
        return;
      default:
        return; // unknown commands are ignored, as on real controllers
    }
  }

  private setCtr(value: number): void {
    this.ram[0] = value;
    this.status = value & I8042_CTR_SYS ? this.status | I8042_STR_SYS : this.status & ~I8042_STR_SYS;
    this.updateIrq();
  }

  private writeData(byte: number): void {
    this.status &= ~I8042_STR_CMD;
    const cmd = this.pendingCommand;
    this.pendingCommand = 0;
    if (cmd >= I8042_CMD_WRITE_CTR && cmd < I8042_CMD_WRITE_CTR + 0x20) {
      if (cmd === I8042_CMD_WRITE_CTR) this.setCtr(byte);
      else this.ram[cmd - I8042_CMD_WRITE_CTR] = byte;
      return;
    }
    switch (cmd) {
      case I8042_CMD_WRITE_OUTPUT:
        this.outputPort = byte;
        if (!(byte & I8042_OUT_RESET)) this.requestReset();
        return;
      case I8042_CMD_WRITE_KBD_OBUF:
        this.reply(byte);
        return;
      case I8042_CMD_WRITE_AUX_OBUF:
        this.reply(byte | AUX_TAG);
        return;
      case I8042_CMD_WRITE_AUX:
        return; // no mouse behind the AUX port: the byte goes nowhere
      default:
        this.keyboardCommand(byte);
    }
  }

  /** A byte for the keyboard itself (data-port write with no controller command pending). */
  private keyboardCommand(byte: number): void {
    const pending = this.kbdPendingCommand;
    this.kbdPendingCommand = 0;
    const out = (...bytes: number[]): void => {
      for (const b of bytes) this.enqueue('kbd', b);
      this.updateIrq();
    };
    if (pending !== 0) {
      // Parameter of 0xED (LEDs), 0xF3 (typematic) or 0xF0 (scancode set; 0 = query).
      if (pending === 0xf0 && byte === 0) out(KBD_ACK, this.ram[0] & I8042_CTR_XLATE ? 0x41 : 0x02);
      else out(KBD_ACK);
      return;
    }
    switch (byte) {
      case 0xed:
      case 0xf0:
      case 0xf3:
        this.kbdPendingCommand = byte;
        out(KBD_ACK);
        return;
      case 0xee:
        out(0xee); // echo
        return;
      case 0xf2:
        // Identify: MF2 keyboard, translated form when the controller translates.
        out(KBD_ACK, 0xab, this.ram[0] & I8042_CTR_XLATE ? 0x41 : 0x83);
        return;
      case 0xf4:
        this.kbdScanning = true;
        out(KBD_ACK);
        return;
      case 0xf5:
        this.kbdScanning = false;
        out(KBD_ACK);
        return;
      case 0xff:
        this.queues.kbd.length = 0;
        this.kbdScanning = true;
        out(KBD_ACK, KBD_BAT_OK);
        return;
      default:
        out(KBD_ACK);
    }
  }
}
