import { describe, expect, it } from 'vitest';
import { PioBus } from '../../../lib/bus/bus.js';
import { RecordingIrqLine, type IrqLine } from '../../../lib/devices/irq.js';
import {
  FCR_CLEAR_RX,
  FCR_FE,
  IER_MSI,
  IER_RDI,
  IER_RLSI,
  IER_THRI,
  IIR_CTI,
  IIR_FIFO_ENABLED,
  IIR_MSI,
  IIR_NO_INT,
  IIR_RDI,
  IIR_RLSI,
  IIR_THRI,
  LCR_DLAB,
  LSR_DR,
  LSR_OE,
  LSR_TEMT,
  LSR_THRE,
  MCR_DTR,
  MCR_LOOP,
  MCR_OUT1,
  MCR_OUT2,
  MCR_RTS,
  MSR_CTS,
  MSR_DCD,
  MSR_DCTS,
  MSR_DDSR,
  MSR_DSR,
  MSR_RI,
  MSR_TERI,
  SERIAL8250_PORT_COUNT,
  Serial8250,
  UART_IER,
  UART_IIR_FCR,
  UART_LCR,
  UART_LSR,
  UART_MCR,
  UART_MSR,
  UART_RBR_THR,
  UART_SCR,
} from '../../../lib/devices/serial8250.js';
import { SERIAL_COM1_PORT } from '../../../lib/arch/x86_64/layout.js';

/** Records every setLevel call (not just the final level), to check edges. */
class LevelLog implements IrqLine {
  levels: boolean[] = [];
  trigger(): void {
    throw new Error('the UART drives a level line');
  }
  setLevel(high: boolean): void {
    this.levels.push(high);
  }
}

function uart(opts: { rxCapacity?: number } = {}) {
  const irq = new RecordingIrqLine();
  const out: number[] = [];
  const dev = new Serial8250({ irq, onOutput: (b) => out.push(...b), ...opts });
  const inb = (reg: number): number => {
    const d = new Uint8Array(1);
    dev.read(reg, d);
    return d[0];
  };
  const outb = (reg: number, v: number): void => dev.write(reg, Uint8Array.of(v));
  return { dev, irq, out, inb, outb };
}

describe('Serial8250', () => {
  it('resets to an idle 8N1 UART with THR empty and no interrupt', () => {
    const { inb, irq } = uart();
    expect(inb(UART_LSR)).toBe(LSR_THRE | LSR_TEMT);
    expect(inb(UART_IIR_FCR)).toBe(IIR_NO_INT);
    expect(inb(UART_IER)).toBe(0);
    expect(inb(UART_LCR)).toBe(0x03);
    expect(inb(UART_MSR)).toBe(MSR_DCD | MSR_DSR | MSR_CTS);
    expect(irq.level).toBe(false);
  });

  it('transmits THR writes to onOutput', () => {
    const { outb, out, inb } = uart();
    for (const c of 'hi\n') outb(UART_RBR_THR, c.charCodeAt(0));
    expect(Buffer.from(out).toString()).toBe('hi\n');
    expect(inb(UART_LSR) & (LSR_THRE | LSR_TEMT)).toBe(LSR_THRE | LSR_TEMT);
  });

  it('latches the divisor behind DLAB without touching THR/IER', () => {
    const { outb, inb, out } = uart();
    outb(UART_IER, IER_RDI);
    outb(UART_LCR, LCR_DLAB | 0x03);
    outb(UART_RBR_THR, 0x01); // DLL: 115200
    outb(UART_IER, 0x00); // DLM
    expect(inb(UART_RBR_THR)).toBe(0x01);
    expect(inb(UART_IER)).toBe(0x00);
    outb(UART_LCR, 0x03);
    expect(out).toEqual([]);
    expect(inb(UART_IER)).toBe(IER_RDI);
  });

  it('keeps IER to its low nibble (Linux autoconfig scratch test)', () => {
    const { outb, inb } = uart();
    outb(UART_IER, 0);
    expect(inb(UART_IER) & 0x0f).toBe(0);
    outb(UART_IER, 0xff);
    expect(inb(UART_IER)).toBe(0x0f);
  });

  it('keeps the scratch register', () => {
    const { outb, inb } = uart();
    outb(UART_SCR, 0xa5);
    expect(inb(UART_SCR)).toBe(0xa5);
  });

  it('receives host input in order, with DR while bytes remain', () => {
    const { dev, inb } = uart();
    expect(dev.input(Buffer.from('ok'))).toBe(2);
    expect(inb(UART_LSR) & LSR_DR).toBe(LSR_DR);
    expect(inb(UART_RBR_THR)).toBe(0x6f);
    expect(inb(UART_RBR_THR)).toBe(0x6b);
    expect(inb(UART_LSR) & LSR_DR).toBe(0);
    // An empty RBR reads the last byte again.
    expect(inb(UART_RBR_THR)).toBe(0x6b);
  });

  it('bounds the receive buffer: extra bytes are overruns, OE latched until LSR is read', () => {
    const { dev, inb } = uart({ rxCapacity: 4 });
    expect(dev.rxSpace).toBe(4);
    expect(dev.input([1, 2, 3, 4, 5, 6])).toBe(4);
    expect(dev.overruns).toBe(2);
    expect(dev.rxSpace).toBe(0);
    expect(inb(UART_LSR) & (LSR_OE | LSR_DR)).toBe(LSR_OE | LSR_DR);
    expect(inb(UART_LSR) & LSR_OE).toBe(0);
    expect([inb(0), inb(0), inb(0), inb(0)]).toEqual([1, 2, 3, 4]);
    // The ring wraps.
    expect(dev.input([7, 8, 9])).toBe(3);
    expect([inb(0), inb(0), inb(0)]).toEqual([7, 8, 9]);
  });

  it('rejects a non-positive rxCapacity', () => {
    expect(() => new Serial8250({ rxCapacity: 0 })).toThrow(RangeError);
  });

  it('reports FIFO mode in IIR bits 7:6 and clears the RX FIFO on request', () => {
    const { dev, outb, inb } = uart();
    outb(UART_IIR_FCR, FCR_FE);
    expect(inb(UART_IIR_FCR)).toBe(IIR_FIFO_ENABLED | IIR_NO_INT);
    dev.input([1, 2, 3]);
    outb(UART_IIR_FCR, FCR_FE | FCR_CLEAR_RX);
    expect(inb(UART_LSR) & LSR_DR).toBe(0);
    dev.input([1]);
    outb(UART_IIR_FCR, 0); // leaving FIFO mode resets the FIFOs
    expect(inb(UART_LSR) & LSR_DR).toBe(0);
    expect(inb(UART_IIR_FCR)).toBe(IIR_NO_INT);
  });

  it('raises RX data interrupts: RDI at the trigger level, character timeout below it', () => {
    const { dev, outb, inb, irq } = uart();
    outb(UART_IER, IER_RDI);
    expect(irq.level).toBe(false);
    dev.input([0x41]);
    expect(irq.level).toBe(true);
    expect(inb(UART_IIR_FCR)).toBe(IIR_RDI); // 16450 mode: one byte is enough
    inb(UART_RBR_THR);
    expect(irq.level).toBe(false);

    outb(UART_IIR_FCR, FCR_FE | 0x80); // trigger level 8
    dev.input([1, 2, 3]);
    expect(inb(UART_IIR_FCR)).toBe(IIR_FIFO_ENABLED | IIR_CTI);
    dev.input([4, 5, 6, 7, 8]);
    expect(inb(UART_IIR_FCR)).toBe(IIR_FIFO_ENABLED | IIR_RDI);
    for (let i = 0; i < 8; i++) inb(UART_RBR_THR);
    expect(inb(UART_IIR_FCR)).toBe(IIR_FIFO_ENABLED | IIR_NO_INT);
    expect(irq.level).toBe(false);
  });

  it('raises THRE when THRI is enabled, clears it on an IIR read, and re-asserts on re-enable', () => {
    const { outb, inb, irq } = uart();
    // The sequence of Linux's UART_BUG_THRE test in serial8250_do_startup.
    outb(UART_IER, IER_THRI);
    expect(irq.level).toBe(true);
    const iir1 = inb(UART_IIR_FCR);
    expect(iir1).toBe(IIR_THRI);
    expect(irq.level).toBe(false);
    expect(inb(UART_IIR_FCR)).toBe(IIR_NO_INT);
    outb(UART_IER, 0);
    outb(UART_IER, IER_THRI);
    const iir = inb(UART_IIR_FCR);
    expect(iir & IIR_NO_INT).toBe(0);
    outb(UART_IER, 0);
    expect(irq.level).toBe(false);
  });

  it('pulses the line low then high on each THR write so edge-triggered pins see every THRE', () => {
    const log = new LevelLog();
    const dev = new Serial8250({ irq: log });
    dev.write(UART_IER, Uint8Array.of(IER_THRI));
    expect(log.levels).toEqual([true]);
    dev.write(UART_RBR_THR, Uint8Array.of(0x41));
    expect(log.levels).toEqual([true, false, true]);
    // Without THRI enabled, writes do not touch the line.
    dev.write(UART_IER, Uint8Array.of(0));
    dev.write(UART_RBR_THR, Uint8Array.of(0x42));
    expect(log.levels).toEqual([true, false, true, false]);
  });

  it('only calls setLevel on changes', () => {
    const log = new LevelLog();
    const dev = new Serial8250({ irq: log });
    dev.write(UART_IER, Uint8Array.of(IER_RDI));
    dev.input([1]);
    dev.input([2]);
    dev.input([3]);
    expect(log.levels).toEqual([true]);
  });

  it('orders interrupts: line status > RX data > THRE > modem status', () => {
    const { dev, outb, inb } = uart({ rxCapacity: 1 });
    outb(UART_IER, IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
    // THRE pending from enabling THRI; create a modem-status delta via loopback and back.
    outb(UART_MCR, MCR_LOOP | MCR_RTS);
    outb(UART_MCR, 0);
    dev.input([1, 2]); // second byte overruns
    expect(inb(UART_IIR_FCR)).toBe(IIR_RLSI);
    inb(UART_LSR); // clears OE
    expect(inb(UART_IIR_FCR)).toBe(IIR_RDI);
    inb(UART_RBR_THR);
    expect(inb(UART_IIR_FCR)).toBe(IIR_THRI); // and this read acknowledges it
    expect(inb(UART_IIR_FCR)).toBe(IIR_MSI);
    inb(UART_MSR);
    expect(inb(UART_IIR_FCR)).toBe(IIR_NO_INT);
  });

  it('loops THR back to RBR in loopback mode, with no output', () => {
    const { outb, inb, out, dev } = uart();
    outb(UART_MCR, MCR_LOOP);
    outb(UART_RBR_THR, 0x55);
    expect(out).toEqual([]);
    expect(inb(UART_LSR) & LSR_DR).toBe(LSR_DR);
    expect(inb(UART_RBR_THR)).toBe(0x55);
    // The host is disconnected while looping back.
    expect(dev.input([1])).toBe(0);
    expect(dev.overruns).toBe(0);
  });

  it('wires modem outputs to inputs in loopback (Linux autoconfig expects DCD|CTS for LOOP|OUT2|RTS)', () => {
    const { outb, inb } = uart();
    outb(UART_MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS);
    expect(inb(UART_MSR) & 0xf0).toBe(MSR_DCD | MSR_CTS);
    outb(UART_MCR, MCR_LOOP | MCR_DTR | MCR_OUT1);
    expect(inb(UART_MSR) & 0xf0).toBe(MSR_DSR | MSR_RI);
    outb(UART_MCR, MCR_LOOP);
    const msr = inb(UART_MSR);
    expect(msr & 0x0f).toBe(MSR_DDSR | MSR_TERI);
    expect(inb(UART_MSR) & 0x0f).toBe(0); // deltas clear on read
    outb(UART_MCR, MCR_LOOP | MCR_RTS);
    expect(inb(UART_MSR) & 0x0f).toBe(MSR_DCTS);
  });

  it('ignores writes to LSR and MSR, and never throws on odd offsets or widths', () => {
    const { dev, inb } = uart();
    dev.write(UART_LSR, Uint8Array.of(0));
    dev.write(UART_MSR, Uint8Array.of(0));
    expect(inb(UART_LSR)).toBe(LSR_THRE | LSR_TEMT);
    const wide = new Uint8Array(4).fill(0xee);
    dev.read(UART_LSR, wide);
    expect([...wide]).toEqual([LSR_THRE | LSR_TEMT, 0, 0, 0]);
    expect(() => dev.write(9, Uint8Array.of(1))).not.toThrow();
  });

  it("passes SeaBIOS's detect_serial and serves its polled sercon console", () => {
    const { dev, outb, inb, out, irq } = uart();
    // src/serial.c detect_serial: IER=THRI must read back and IIR & 0x3f must say THRE.
    outb(UART_IER, 0x02);
    expect(inb(UART_IER)).toBe(0x02);
    expect(inb(UART_IIR_FCR) & 0x3f).toBe(0x02);
    outb(UART_IER, 0x00);
    expect(irq.level).toBe(false); // SeaBIOS runs without interrupts: the probe leaves the line low
    // src/sercon.c: 8N1, FIFO on, LSR must not float (0xFF), output when THRE, input while DR.
    outb(UART_LCR, 0x03);
    outb(UART_IIR_FCR, 0x01);
    expect(inb(UART_LSR)).not.toBe(0xff);
    if (inb(UART_LSR) & 0x20) outb(UART_RBR_THR, 0x41);
    expect(out).toEqual([0x41]);
    dev.input([0x0d, 0x1b]);
    const keys: number[] = [];
    while (inb(UART_LSR) & 0x01) keys.push(inb(UART_RBR_THR));
    expect(keys).toEqual([0x0d, 0x1b]);
  });

  it('identifies as a 16550A in the FIFO and EFR probes of Linux autoconfig', () => {
    const { outb, inb } = uart();
    // FIFO probe: IIR bits 7:6 read 3 with the FIFO on.
    outb(UART_IIR_FCR, FCR_FE);
    expect(inb(UART_IIR_FCR) >> 6).toBe(3);
    // No EFR behind LCR 0xBF: offset 2 still reads IIR, never 0.
    outb(UART_LCR, 0xbf);
    expect(inb(UART_IIR_FCR)).not.toBe(0);
    // Not a TI16750: the 64-byte FIFO bit (FCR/IIR bit 5) does not stick.
    outb(UART_LCR, 0);
    outb(UART_IIR_FCR, FCR_FE | 0x20);
    expect(inb(UART_IIR_FCR) & 0xe0).toBe(IIR_FIFO_ENABLED);
    // Not an XScale: IER bit 6 (UUE) does not stick.
    outb(UART_IER, 0x40);
    expect(inb(UART_IER) & 0x40).toBe(0);
  });

  it('drives interrupt-driven RX and TX the way the Linux 8250 interrupt handler does', () => {
    /** Counts rising edges, which is what an edge-triggered IOAPIC pin delivers. */
    class EdgeCounter implements IrqLine {
      edges = 0;
      high = false;
      trigger(): void {
        throw new Error('level line expected');
      }
      setLevel(high: boolean): void {
        if (high && !this.high) this.edges++;
        this.high = high;
      }
    }
    const line = new EdgeCounter();
    const out: number[] = [];
    const dev = new Serial8250({ irq: line, onOutput: (b) => out.push(...b) });
    const inb = (reg: number): number => {
      const d = new Uint8Array(1);
      dev.read(reg, d);
      return d[0];
    };
    const outb = (reg: number, v: number): void => dev.write(reg, Uint8Array.of(v));
    const received: number[] = [];
    const pending = Array.from(Buffer.from('interrupt-driven transmit of more than one FIFO of text\n'));
    /** serial8250_handle_irq: IIR says whether this port interrupted; LSR says what to do. */
    const handleIrq = (): boolean => {
      const iir = inb(UART_IIR_FCR);
      if (iir & IIR_NO_INT) return false;
      let lsr = inb(UART_LSR);
      while (lsr & LSR_DR) {
        received.push(inb(UART_RBR_THR));
        lsr = inb(UART_LSR);
      }
      inb(UART_MSR);
      if (lsr & LSR_THRE && inb(UART_IER) & IER_THRI) {
        // serial8250_tx_chars: up to a FIFO's worth per interrupt, then stop TX interrupts when done.
        for (let n = 0; n < 16 && pending.length > 0; n++) outb(UART_RBR_THR, pending.shift()!);
        if (pending.length === 0) outb(UART_IER, inb(UART_IER) & ~IER_THRI);
      }
      return true;
    };
    outb(UART_IIR_FCR, FCR_FE | FCR_CLEAR_RX | 0xc0);
    outb(UART_MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
    outb(UART_IER, IER_RDI | IER_RLSI);
    expect(line.edges).toBe(0);

    dev.input(Buffer.from('typed'));
    expect(line.edges).toBe(1);
    while (line.high) expect(handleIrq()).toBe(true);
    expect(Buffer.from(received).toString()).toBe('typed');

    // start_tx: enable THRI; every interrupt refills the FIFO until the text is out.
    outb(UART_IER, inb(UART_IER) | IER_THRI);
    let interrupts = 0;
    while (line.high && interrupts < 100) {
      handleIrq();
      interrupts++;
    }
    expect(Buffer.from(out).toString()).toBe('interrupt-driven transmit of more than one FIFO of text\n');
    expect(interrupts).toBe(Math.ceil(out.length / 16));
    expect(inb(UART_IER) & IER_THRI).toBe(0);
    expect(line.high).toBe(false);
  });

  it('serves an earlyprintk-style polled console through the port bus', () => {
    const out: number[] = [];
    const bus = new PioBus();
    bus.register(
      SERIAL_COM1_PORT,
      SERIAL8250_PORT_COUNT,
      new Serial8250({ onOutput: (b) => out.push(...b) }),
    );
    const outb = (port: number, v: number) => bus.write(port, Uint8Array.of(v));
    const inb = (port: number) => {
      const d = new Uint8Array(1);
      bus.read(port, d);
      return d[0];
    };
    // early_serial_init: LCR 8N1, no interrupts, no FIFO, DTR|RTS, divisor 1.
    outb(SERIAL_COM1_PORT + UART_LCR, 0x03);
    outb(SERIAL_COM1_PORT + UART_IER, 0);
    outb(SERIAL_COM1_PORT + UART_IIR_FCR, 0);
    outb(SERIAL_COM1_PORT + UART_MCR, 0x03);
    outb(SERIAL_COM1_PORT + UART_LCR, 0x83);
    outb(SERIAL_COM1_PORT + 0, 1);
    outb(SERIAL_COM1_PORT + 1, 0);
    outb(SERIAL_COM1_PORT + UART_LCR, 0x03);
    for (const c of 'early') {
      while (!(inb(SERIAL_COM1_PORT + UART_LSR) & LSR_THRE)) {
        /* spin */
      }
      outb(SERIAL_COM1_PORT, c.charCodeAt(0));
    }
    expect(Buffer.from(out).toString()).toBe('early');
  });
});
