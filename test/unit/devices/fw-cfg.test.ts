import { describe, expect, it } from 'vitest';
import { PioBus } from '../../../lib/bus/bus.js';
import { GuestMemory } from '../../../lib/memory/guest-memory.js';
import { FW_CFG_DATA_PORT, FW_CFG_DMA_PORT, FW_CFG_SELECTOR_PORT } from '../../../lib/arch/x86_64/layout.js';
import {
  FW_CFG_ARCH_LOCAL,
  FW_CFG_BOOT_MENU,
  FW_CFG_DMA_CTL_ERROR,
  FW_CFG_DMA_CTL_READ,
  FW_CFG_DMA_CTL_SELECT,
  FW_CFG_DMA_CTL_SKIP,
  FW_CFG_DMA_CTL_WRITE,
  FW_CFG_E820_TABLE,
  FW_CFG_FILE_DIR,
  FW_CFG_FILE_FIRST,
  FW_CFG_ID,
  FW_CFG_MAX_CPUS,
  FW_CFG_NB_CPUS,
  FW_CFG_NOGRAPHIC,
  FW_CFG_PORT_COUNT,
  FW_CFG_RAM_SIZE,
  FW_CFG_SIGNATURE,
  FW_CFG_WRITE_CHANNEL,
  FwCfg,
  FwCfgError,
} from '../../../lib/devices/fw-cfg.js';

const RAM = 1 << 20;

function setup(opts: { dma?: boolean } = {}) {
  const memory = new GuestMemory([{ gpa: 0, buffer: new ArrayBuffer(RAM) }]);
  const fw = new FwCfg({ memory, dma: opts.dma ?? true });
  const bus = new PioBus();
  bus.register(FW_CFG_SELECTOR_PORT, FW_CFG_PORT_COUNT, fw, 'fw_cfg');
  const io = {
    outw: (port: number, v: number) => bus.write(port, Uint8Array.of(v & 0xff, v >> 8)),
    outb: (port: number, v: number) => bus.write(port, Uint8Array.of(v)),
    /** outl(cpu_to_be32(v)): the bytes on the wire are v big-endian. */
    outlBe: (port: number, v: number) =>
      bus.write(port, Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff)),
    inb: (port: number) => {
      const d = new Uint8Array(1);
      bus.read(port, d);
      return d[0];
    },
    insb: (port: number, n: number) => {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = io.inb(port);
      return out;
    },
  };
  return { memory, fw, bus, io };
}

/** Writes an FWCfgDmaAccess at gpa and starts it the way SeaBIOS does (one outl to 0x518). */
function dma(
  s: ReturnType<typeof setup>,
  gpa: number,
  control: number,
  length: number,
  address: number,
): number {
  const u = s.memory.view(gpa, 16);
  const v = new DataView(u.buffer, u.byteOffset, 16);
  v.setUint32(0, control, false);
  v.setUint32(4, length, false);
  v.setBigUint64(8, BigInt(address), false);
  s.io.outlBe(FW_CFG_DMA_PORT + 4, gpa);
  return v.getUint32(0, false);
}

describe('FwCfg port interface', () => {
  it('identifies as QEMU fw_cfg with traditional and DMA interfaces', () => {
    const { io } = setup();
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_SIGNATURE);
    expect(Buffer.from(io.insb(FW_CFG_DATA_PORT, 4)).toString()).toBe('QEMU');
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_ID);
    expect([...io.insb(FW_CFG_DATA_PORT, 4)]).toEqual([3, 0, 0, 0]);
  });

  it('offers no DMA without it, and refuses DMA without memory', () => {
    const fw = new FwCfg();
    fw.write(0, Uint8Array.of(FW_CFG_ID, 0));
    const d = new Uint8Array(1);
    fw.read(1, d);
    expect(d[0]).toBe(1);
    expect(() => new FwCfg({ dma: true })).toThrow(FwCfgError);
    const { io } = setup({ dma: false });
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_ID);
    expect(io.inb(FW_CFG_DATA_PORT)).toBe(1);
  });

  it('auto-increments on data reads, reads 0 past the end, and rewinds on select', () => {
    const { io } = setup();
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_SIGNATURE);
    expect([...io.insb(FW_CFG_DATA_PORT, 6)]).toEqual([0x51, 0x45, 0x4d, 0x55, 0, 0]);
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_SIGNATURE);
    expect(io.inb(FW_CFG_DATA_PORT)).toBe(0x51);
  });

  it('returns consecutive bytes for wide data reads (string-preserving)', () => {
    const { bus, io } = setup();
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_SIGNATURE);
    const d = new Uint8Array(2);
    bus.read(FW_CFG_DATA_PORT, d);
    expect(Buffer.from(d).toString()).toBe('QE');
    bus.read(FW_CFG_DATA_PORT, d);
    expect(Buffer.from(d).toString()).toBe('MU');
  });

  it('reads unknown items as zeros, ignores the write-channel bit and keeps arch-local keys apart', () => {
    const { fw, io } = setup();
    io.outw(FW_CFG_SELECTOR_PORT, 0x1234);
    expect([...io.insb(FW_CFG_DATA_PORT, 3)]).toEqual([0, 0, 0]);
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_SIGNATURE | FW_CFG_WRITE_CHANNEL);
    expect(io.inb(FW_CFG_DATA_PORT)).toBe(0x51);
    fw.setItem(FW_CFG_E820_TABLE, Uint8Array.of(9));
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_E820_TABLE);
    expect(io.inb(FW_CFG_DATA_PORT)).toBe(9);
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_E820_TABLE & ~FW_CFG_ARCH_LOCAL);
    expect(io.inb(FW_CFG_DATA_PORT)).toBe(0);
  });

  it('ignores data-port writes and byte writes to the selector', () => {
    const { io } = setup();
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_SIGNATURE);
    io.outb(FW_CFG_DATA_PORT, 0x99);
    io.outb(FW_CFG_SELECTOR_PORT, FW_CFG_ID);
    expect(io.inb(FW_CFG_DATA_PORT)).toBe(0x51);
  });

  it('publishes files in FILE_DIR: BE32 count, then size BE32, select BE16, reserved, name[56]', () => {
    const { fw, io } = setup();
    expect(fw.addFile('etc/one', Uint8Array.of(1, 2, 3))).toBe(FW_CFG_FILE_FIRST);
    expect(fw.addFile('opt/two', new Uint8Array(300))).toBe(FW_CFG_FILE_FIRST + 1);
    io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_FILE_DIR);
    const dir = io.insb(FW_CFG_DATA_PORT, 4 + 128);
    const v = new DataView(dir.buffer);
    expect(v.getUint32(0, false)).toBe(2);
    expect(v.getUint32(4, false)).toBe(3);
    expect(v.getUint16(8, false)).toBe(0x20);
    expect(v.getUint16(10, false)).toBe(0);
    expect(
      Buffer.from(dir.subarray(12, 12 + 56))
        .toString()
        .replace(/\0+$/, ''),
    ).toBe('etc/one');
    expect(v.getUint32(68, false)).toBe(300);
    expect(v.getUint16(72, false)).toBe(0x21);
    io.outw(FW_CFG_SELECTOR_PORT, 0x20);
    expect([...io.insb(FW_CFG_DATA_PORT, 4)]).toEqual([1, 2, 3, 0]);
    expect(fw.files).toEqual([
      { name: 'etc/one', select: 0x20, size: 3 },
      { name: 'opt/two', select: 0x21, size: 300 },
    ]);
  });

  it('replaces files with setFile (same key, new size in the directory) and rejects bad names and keys', () => {
    const { fw } = setup();
    fw.addFile('a', Uint8Array.of(1));
    expect(() => fw.addFile('a', Uint8Array.of(2))).toThrow(FwCfgError);
    expect(fw.setFile('a', Uint8Array.of(5, 6))).toBe(0x20);
    expect([...(fw.file('a') ?? [])]).toEqual([5, 6]);
    expect(new DataView(fw.item(FW_CFG_FILE_DIR)!.buffer).getUint32(4, false)).toBe(2);
    expect(() => fw.addFile('x'.repeat(56), Uint8Array.of())).toThrow(FwCfgError);
    expect(() => fw.addFile('', Uint8Array.of())).toThrow(FwCfgError);
    expect(() => fw.setItem(0x20, Uint8Array.of())).toThrow(FwCfgError);
    expect(() => fw.setItem(FW_CFG_FILE_DIR, Uint8Array.of())).toThrow(FwCfgError);
    expect(() => fw.setItem(0x10000, Uint8Array.of())).toThrow(FwCfgError);
    expect(fw.file('nope')).toBeUndefined();
  });

  it('copies data handed to it (later host edits do not leak into the guest view)', () => {
    const { fw } = setup();
    const data = Uint8Array.of(1, 2);
    fw.addFile('f', data);
    data[0] = 9;
    expect(fw.file('f')![0]).toBe(1);
  });

  it('encodes the legacy items SeaBIOS reads', () => {
    const { fw } = setup();
    fw.setRamSize(0x1_2000_0000);
    fw.setCpus(2, 4);
    fw.setNoGraphic(true);
    fw.setBootMenu(false);
    expect([...fw.item(FW_CFG_RAM_SIZE)!]).toEqual([0, 0, 0, 0x20, 1, 0, 0, 0]);
    expect([...fw.item(FW_CFG_NB_CPUS)!]).toEqual([2, 0]);
    expect([...fw.item(FW_CFG_MAX_CPUS)!]).toEqual([4, 0]);
    expect([...fw.item(FW_CFG_NOGRAPHIC)!]).toEqual([1, 0]);
    expect([...fw.item(FW_CFG_BOOT_MENU)!]).toEqual([0, 0]);
    expect(() => fw.setCpus(0)).toThrow(FwCfgError);
    expect(() => fw.setCpus(4, 2)).toThrow(FwCfgError);
  });

  it('encodes etc/e820 as packed {u64 addr, u64 len, u32 type} LE entries', () => {
    const { fw } = setup();
    fw.setE820([
      { addr: 0, size: 0x9fc00, type: 1 },
      { addr: 0x1_0000_0000, size: 0x4000_0000, type: 1 },
      { addr: 0xfeffc000, size: 0x4000, type: 2 },
    ]);
    const e = fw.file('etc/e820')!;
    expect(e.length).toBe(60);
    const v = new DataView(e.buffer);
    expect(v.getBigUint64(0, true)).toBe(0n);
    expect(v.getBigUint64(8, true)).toBe(0x9fc00n);
    expect(v.getUint32(16, true)).toBe(1);
    expect(v.getBigUint64(20, true)).toBe(0x1_0000_0000n);
    expect(v.getUint32(56, true)).toBe(2);
    expect(() => fw.setE820([{ addr: -1, size: 1, type: 1 }])).toThrow(FwCfgError);
  });

  it('encodes bootorder as newline-separated paths with a final NUL, and integer files', () => {
    const { fw } = setup();
    fw.setBootOrder(['/virtio-mmio@00000000d0000000', 'HALT']);
    expect(Buffer.from(fw.file('bootorder')!).toString()).toBe('/virtio-mmio@00000000d0000000\nHALT\0');
    expect(() => fw.setBootOrder(['a\nb'])).toThrow(FwCfgError);
    fw.setIntFile('etc/boot-fail-wait', 1000);
    expect([...fw.file('etc/boot-fail-wait')!]).toEqual([0xe8, 0x03, 0, 0]);
    fw.setIntFile('etc/x', 0x1_0000_0001, 8);
    expect([...fw.file('etc/x')!]).toEqual([1, 0, 0, 0, 1, 0, 0, 0]);
    expect(() => fw.setIntFile('etc/y', 256, 1)).toThrow(FwCfgError);
  });
});

describe('FwCfg DMA interface', () => {
  it('reads as the "QEMU CFG" signature', () => {
    const { bus } = setup();
    const d = new Uint8Array(4);
    bus.read(FW_CFG_DMA_PORT, d);
    expect(Buffer.from(d).toString()).toBe('QEMU');
    bus.read(FW_CFG_DMA_PORT + 4, d);
    expect(Buffer.from(d).toString()).toBe(' CFG');
  });

  it('selects and reads an item into guest memory, then completes with control = 0', () => {
    const s = setup();
    s.fw.addFile('etc/hello', new TextEncoder().encode('hello'));
    const ctl = dma(s, 0x1000, (0x20 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 5, 0x2000);
    expect(ctl).toBe(0);
    expect(Buffer.from(s.memory.read(0x2000, 5)).toString()).toBe('hello');
    expect(s.fw.dmaTransfers).toBe(1);
    expect(s.fw.dmaErrors).toBe(0);
  });

  it('continues from the current offset, zero-fills past the end, and skips', () => {
    const s = setup();
    s.fw.addFile('f', Uint8Array.of(1, 2, 3, 4, 5, 6));
    s.io.outw(FW_CFG_SELECTOR_PORT, 0x20);
    expect(dma(s, 0x1000, FW_CFG_DMA_CTL_SKIP, 2, 0)).toBe(0);
    s.memory.fill(0x2000, 8, 0xee);
    expect(dma(s, 0x1000, FW_CFG_DMA_CTL_READ, 6, 0x2000)).toBe(0);
    expect([...s.memory.read(0x2000, 8)]).toEqual([3, 4, 5, 6, 0, 0, 0xee, 0xee]);
    // The port interface sees the same offset.
    expect(s.io.inb(FW_CFG_DATA_PORT)).toBe(0);
  });

  it('mixes with the port interface: a port select then a DMA read, a DMA skip then port reads', () => {
    const s = setup();
    s.fw.addFile('f', Uint8Array.of(10, 11, 12, 13));
    s.io.outw(FW_CFG_SELECTOR_PORT, 0x20);
    s.io.inb(FW_CFG_DATA_PORT);
    dma(s, 0x1000, FW_CFG_DMA_CTL_READ, 1, 0x2000);
    expect(s.memory.u8(0x2000)).toBe(11);
    dma(s, 0x1000, FW_CFG_DMA_CTL_SKIP, 1, 0);
    expect(s.io.inb(FW_CFG_DATA_PORT)).toBe(13);
  });

  it('accepts the 64-bit form and the high/low pair', () => {
    const s = setup();
    const desc = 0x3000;
    const v = new DataView(s.memory.view(0, RAM).buffer);
    v.setUint32(desc, (FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, false);
    v.setUint32(desc + 4, 4, false);
    v.setBigUint64(desc + 8, 0x4000n, false);
    const be64 = new Uint8Array(8);
    new DataView(be64.buffer).setBigUint64(0, BigInt(desc), false);
    s.bus.write(FW_CFG_DMA_PORT, be64);
    expect(v.getUint32(desc, false)).toBe(0);
    expect(Buffer.from(s.memory.read(0x4000, 4)).toString()).toBe('QEMU');

    v.setUint32(desc, (FW_CFG_ID << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, false);
    s.io.outlBe(FW_CFG_DMA_PORT, 0);
    s.io.outlBe(FW_CFG_DMA_PORT + 4, desc);
    expect(v.getUint32(desc, false)).toBe(0);
    expect(s.memory.u32(0x4000)).toBe(3);
  });

  it('only selects when no operation bit is set', () => {
    const s = setup();
    expect(dma(s, 0x1000, (FW_CFG_ID << 16) | FW_CFG_DMA_CTL_SELECT, 100, 0xdead_0000)).toBe(0);
    expect(s.io.inb(FW_CFG_DATA_PORT)).toBe(3);
  });

  it('refuses writes with ERROR (no item is writable)', () => {
    const s = setup();
    s.fw.addFile('f', Uint8Array.of(1, 2));
    const ctl = dma(s, 0x1000, (0x20 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE, 2, 0x2000);
    expect(ctl).toBe(FW_CFG_DMA_CTL_ERROR);
    expect([...s.fw.file('f')!]).toEqual([1, 2]);
    expect(s.fw.dmaErrors).toBe(1);
  });

  it('sets ERROR for a target outside guest memory, never throwing', () => {
    const s = setup();
    const ctl = (a: number, len = 4) =>
      dma(s, 0x1000, (FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, len, a);
    expect(ctl(RAM - 2)).toBe(FW_CFG_DMA_CTL_ERROR);
    expect(ctl(0xffff_ffff_0000)).toBe(FW_CFG_DMA_CTL_ERROR);
    expect(ctl(2 ** 60)).toBe(FW_CFG_DMA_CTL_ERROR);
    expect(ctl(0, 0xffff_ffff)).toBe(FW_CFG_DMA_CTL_ERROR);
    expect(s.fw.dmaErrors).toBe(4);
  });

  it('ignores descriptors outside guest memory (nothing to write the status to)', () => {
    const s = setup();
    expect(() => s.io.outlBe(FW_CFG_DMA_PORT + 4, RAM - 8)).not.toThrow();
    expect(() => s.io.outlBe(FW_CFG_DMA_PORT + 4, 0xffff_fff0)).not.toThrow();
    s.io.outlBe(FW_CFG_DMA_PORT, 0xffff_ffff);
    expect(() => s.io.outlBe(FW_CFG_DMA_PORT + 4, 0)).not.toThrow();
    expect(s.fw.dmaErrors).toBe(3);
  });

  it('resets the high half after each transfer (QEMU semantics)', () => {
    const s = setup();
    s.io.outlBe(FW_CFG_DMA_PORT, 0xffff_ffff);
    s.io.outlBe(FW_CFG_DMA_PORT + 4, 0x1000); // descriptor unreachable: counts as an error
    expect(
      dma(s, 0x1000, (FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, 0x2000),
    ).toBe(0);
  });

  it('ignores DMA register writes of odd widths or offsets, and all DMA writes when DMA is off', () => {
    const s = setup();
    s.bus.write(FW_CFG_DMA_PORT + 2, Uint8Array.of(0, 0));
    s.bus.write(FW_CFG_DMA_PORT + 4, Uint8Array.of(0));
    expect(s.fw.dmaTransfers).toBe(0);
    const off = setup({ dma: false });
    off.io.outlBe(FW_CFG_DMA_PORT + 4, 0x1000);
    expect(off.fw.dmaTransfers).toBe(0);
    const d = new Uint8Array(4);
    off.bus.read(FW_CFG_DMA_PORT, d);
    expect([...d]).toEqual([0, 0, 0, 0]);
  });
});

/**
 * The fw_cfg half of SeaBIOS's src/fw/paravirt.c, transcribed: qemu_cfg_detect, qemu_early_e820,
 * qemu_cfg_legacy, qemu_cfg_init's directory walk, and qemu_cfg_read_file — over ports or DMA.
 */
function seabiosDriver(s: ReturnType<typeof setup>) {
  const scratch = 0x8000;
  let dmaOn = false;
  const read = (len: number): Uint8Array => {
    if (len === 0) return new Uint8Array(0);
    if (!dmaOn) return s.io.insb(FW_CFG_DATA_PORT, len);
    expect(dma(s, 0x7000, FW_CFG_DMA_CTL_READ, len, scratch)).toBe(0);
    return s.memory.read(scratch, len);
  };
  const readEntry = (key: number, len: number): Uint8Array => {
    if (!dmaOn) {
      s.io.outw(FW_CFG_SELECTOR_PORT, key);
      return read(len);
    }
    expect(dma(s, 0x7000, (key << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, len, scratch)).toBe(0);
    return s.memory.read(scratch, len);
  };
  const detect = (): boolean => {
    s.io.outw(FW_CFG_SELECTOR_PORT, FW_CFG_SIGNATURE);
    for (const c of 'QEMU') if (s.io.inb(FW_CFG_DATA_PORT) !== c.charCodeAt(0)) return false;
    const id = new DataView(readEntry(FW_CFG_ID, 4).buffer).getUint32(0, true);
    dmaOn = (id & 2) !== 0;
    return true;
  };
  const directory = (): { name: string; select: number; size: number }[] => {
    const count = new DataView(readEntry(FW_CFG_FILE_DIR, 4).buffer).getUint32(0, false);
    const files = [];
    for (let i = 0; i < count; i++) {
      const e = read(64);
      const v = new DataView(e.buffer);
      const name = Buffer.from(e.subarray(8)).toString('latin1').replace(/\0.*$/s, '');
      files.push({ name, select: v.getUint16(4, false), size: v.getUint32(0, false) });
    }
    return files;
  };
  return {
    get dma() {
      return dmaOn;
    },
    detect,
    directory,
    readEntry,
    /** qemu_early_e820: find etc/e820 in the directory, walk it 20 bytes at a time. */
    e820: (): { addr: bigint; len: bigint; type: number }[] => {
      const f = directory().find((x) => x.name === 'etc/e820');
      if (f === undefined) return [];
      s.io.outw(FW_CFG_SELECTOR_PORT, f.select);
      const out = [];
      for (let i = 0; i < f.size / 20; i++) {
        const v = new DataView(read(20).buffer);
        out.push({
          addr: v.getBigUint64(0, true),
          len: v.getBigUint64(8, true),
          type: v.getUint32(16, true),
        });
      }
      return out;
    },
    /** qemu_cfg_legacy's reads: NUMA count (u64), ACPI tables count (u16), SMBIOS count (u16). */
    legacyCounts: () => ({
      numa: new DataView(readEntry(0x0d, 8).buffer).getBigUint64(0, true),
      acpi: new DataView(readEntry(FW_CFG_ARCH_LOCAL, 2).buffer).getUint16(0, true),
      smbios: new DataView(readEntry(FW_CFG_ARCH_LOCAL + 1, 2).buffer).getUint16(0, true),
    }),
    loadFile: (name: string): Uint8Array | undefined => {
      const f = directory().find((x) => x.name === name);
      return f === undefined ? undefined : readEntry(f.select, f.size);
    },
  };
}

describe('FwCfg as SeaBIOS sees it', () => {
  for (const useDma of [true, false]) {
    it(`detects, finds etc/e820 and loads files (${useDma ? 'DMA' : 'port I/O'})`, () => {
      const s = setup({ dma: useDma });
      s.fw.setCpus(2);
      s.fw.setE820([
        { addr: 0, size: 0x9fc00, type: 1 },
        { addr: 0x100000, size: 0x3ff00000, type: 1 },
      ]);
      s.fw.setBootOrder(['HALT']);
      s.fw.addFile(
        'etc/big',
        new Uint8Array(5000).map((_, i) => i & 0xff),
      );
      const bios = seabiosDriver(s);
      expect(bios.detect()).toBe(true);
      expect(bios.dma).toBe(useDma);
      expect(bios.e820()).toEqual([
        { addr: 0n, len: 0x9fc00n, type: 1 },
        { addr: 0x100000n, len: 0x3ff00000n, type: 1 },
      ]);
      expect(bios.legacyCounts()).toEqual({ numa: 0n, acpi: 0, smbios: 0 });
      expect([...bios.readEntry(FW_CFG_NB_CPUS, 2)]).toEqual([2, 0]);
      expect([...bios.readEntry(FW_CFG_NOGRAPHIC, 2)]).toEqual([0, 0]); // unset items read as 0
      expect(bios.directory().map((f) => f.name)).toEqual(['etc/e820', 'bootorder', 'etc/big']);
      const big = bios.loadFile('etc/big')!;
      expect(big.length).toBe(5000);
      expect(big[4999]).toBe(4999 & 0xff);
    });
  }
});
