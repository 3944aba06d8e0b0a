import { describe, expect, it } from 'vitest';
import {
  ACPI_START,
  EBDA_START,
  GiB,
  HIMEM_START,
  MiB,
  MMIO_GAP_END,
  MMIO_GAP_START,
  PVH_START_INFO,
} from '../../../lib/arch/x86_64/layout.js';
import { BP, buildBootParams } from '../../../lib/boot/boot-params.js';
import {
  Cmdline,
  encodeCmdline,
  setCmdlineParam,
  splitCmdline,
  validateCmdline,
} from '../../../lib/boot/cmdline.js';
import {
  E820_ACPI,
  E820_RAM,
  E820_RESERVED,
  buildE820,
  e820RamSize,
  encodeE820,
  validateE820,
} from '../../../lib/boot/e820.js';
import { HVM_START_MAGIC, buildPvhStartInfo, setupPvhEntry } from '../../../lib/boot/pvh.js';
import { parseSetupHeader } from '../../../lib/boot/setup-header.js';
import { fakeBzImage, resetSregs } from './fixtures.js';

describe('command line', () => {
  it('validates characters and length', () => {
    expect(() => validateCmdline('console=ttyS0 quiet')).not.toThrow();
    expect(() => validateCmdline('a\0b')).toThrow(/NUL byte at index 1/);
    expect(() => validateCmdline('a\nb')).toThrow(/character code 10/);
    expect(() => validateCmdline('é')).toThrow(/printable ASCII/);
    expect(() => validateCmdline('x'.repeat(2048), 2047)).toThrow(
      /2048 bytes; the limit is 2047 \(the kernel's/,
    );
    expect(() => validateCmdline('x'.repeat(0x10000))).toThrow(/limit is 65535/);
    expect(() => validateCmdline('a="b')).toThrow(/unterminated/);
    expect([...encodeCmdline('ab')]).toEqual([0x61, 0x62, 0]);
  });

  it('splits like the kernel, keeping quoted values together', () => {
    expect(splitCmdline(' a=1  b="x y" c ')).toEqual(['a=1', 'b="x y"', 'c']);
  });

  it('sets key=value without duplicates, keeps order and init arguments', () => {
    const c = new Cmdline('console=tty0 quiet console=ttyS1 -- single');
    c.set('console', 'ttyS0').set('panic', -1).set('earlyprintk', 'serial,ttyS0,115200');
    expect(c.toString()).toBe('console=ttyS0 quiet panic=-1 earlyprintk=serial,ttyS0,115200 -- single');
    c.setDefault('panic', 5).setDefault('reboot', 'k');
    expect(c.get('panic')).toBe('-1');
    expect(c.get('reboot')).toBe('k');
    c.set('quiet', false).set('init', '/bin/sh -x');
    expect(c.has('quiet')).toBe(false);
    expect(c.get('init')).toBe('/bin/sh -x');
    expect(c.toString()).toContain('init="/bin/sh -x"');
    expect(c.get('missing')).toBeUndefined();
    expect(setCmdlineParam('a=1 b', 'b', '2')).toBe('a=1 b=2');
    expect(() => c.set('bad key', 1)).toThrow(/invalid command line key/);
    expect(() => c.set('k', 'a"b')).toThrow(/double quote/);
    expect([...c.encode()].at(-1)).toBe(0);
  });
});

describe('e820', () => {
  it('matches RAM, reserves the EBDA/BIOS area, marks ACPI, leaves the MMIO gap a hole', () => {
    const map = buildE820(256 * MiB);
    expect(map).toEqual([
      { addr: 0, size: EBDA_START, type: E820_RAM },
      { addr: EBDA_START, size: ACPI_START - EBDA_START, type: E820_RESERVED },
      { addr: ACPI_START, size: 0x2_0000, type: E820_ACPI },
      { addr: HIMEM_START, size: 255 * MiB, type: E820_RAM },
      { addr: 0xfeff_c000, size: 0x4000, type: E820_RESERVED },
    ]);
    expect(buildE820(256 * MiB, { acpiTables: false })[2].type).toBe(E820_RESERVED);
  });

  it('continues RAM above 4 GiB when RAM crosses the gap', () => {
    const map = buildE820(4 * GiB);
    const ram = map.filter((e) => e.type === E820_RAM);
    expect(ram.at(-1)).toEqual({ addr: MMIO_GAP_END, size: 4 * GiB - MMIO_GAP_START, type: E820_RAM });
    expect(ram[1].addr + ram[1].size).toBe(MMIO_GAP_START);
    expect(e820RamSize(map)).toBe(4 * GiB - HIMEM_START + EBDA_START);
    expect(() => validateE820(map, 4 * GiB)).not.toThrow();
  });

  it('rejects broken maps', () => {
    expect(() => buildE820(MiB)).toThrow(/too little/);
    expect(() => validateE820([])).toThrow(/no entries/);
    const a = { addr: 0, size: 0x2000, type: E820_RAM };
    expect(() => validateE820([a, { addr: 0x1000, size: 0x1000, type: 2 }])).toThrow(/overlaps/);
    expect(() => validateE820([{ addr: 0x3000, size: 1, type: 2 }, a])).toThrow(/not sorted/);
    expect(() => validateE820([{ addr: 0, size: 0, type: 1 }])).toThrow(/bad size/);
    expect(() => validateE820([{ addr: 0xc000_0000, size: 0x1000, type: E820_RAM }])).toThrow(/MMIO gap/);
    expect(() => validateE820([{ addr: 0, size: 64 * MiB, type: E820_RAM }], 32 * MiB)).toThrow(/not backed/);
  });

  it('encodes 20-byte entries', () => {
    const bytes = encodeE820([{ addr: 0x10_0000, size: 0x200_0000, type: 1 }]);
    const v = new DataView(bytes.buffer);
    expect(bytes.length).toBe(20);
    expect(v.getBigUint64(0, true)).toBe(0x10_0000n);
    expect(v.getBigUint64(8, true)).toBe(0x200_0000n);
    expect(v.getUint32(16, true)).toBe(1);
  });
});

describe('boot_params', () => {
  const header = parseSetupHeader(fakeBzImage()).raw;
  const e820 = buildE820(512 * MiB);

  it('copies the header and fills the loader fields', () => {
    const bp = buildBootParams({
      header,
      cmdlineAddr: 0x2_0000,
      initrd: { addr: 0x1f00_0000, size: 0x12345 },
      e820,
      rsdpAddr: ACPI_START,
    });
    const v = new DataView(bp.buffer);
    expect(bp.length).toBe(4096);
    expect(v.getUint16(0x1fe, true)).toBe(0xaa55);
    expect(v.getUint32(0x202, true)).toBe(0x53726448);
    expect(bp[0x210]).toBe(0xff);
    expect(bp[0x211] & 0x81).toBe(0x81);
    expect(v.getUint32(0x228, true)).toBe(0x2_0000);
    expect(v.getUint32(BP.extCmdLinePtr, true)).toBe(0);
    expect(v.getUint32(0x218, true)).toBe(0x1f00_0000);
    expect(v.getUint32(0x21c, true)).toBe(0x12345);
    expect(v.getBigUint64(BP.acpiRsdpAddr, true)).toBe(BigInt(ACPI_START));
    expect(bp[BP.e820Entries]).toBe(e820.length);
    expect(v.getBigUint64(BP.e820Table + 20 * 3, true)).toBe(BigInt(HIMEM_START));
  });

  it('splits addresses above 4 GiB into the ext_ fields', () => {
    const bp = buildBootParams({
      cmdlineAddr: 0x1_2345_6000,
      initrd: { addr: 0x2_0000_0000, size: 5 },
      e820,
    });
    const v = new DataView(bp.buffer);
    expect(v.getUint32(0x228, true)).toBe(0x2345_6000);
    expect(v.getUint32(BP.extCmdLinePtr, true)).toBe(1);
    expect(v.getUint32(0x218, true)).toBe(0);
    expect(v.getUint32(BP.extRamdiskImage, true)).toBe(2);
    // synthesized header for an ELF kernel
    expect(v.getUint16(0x1fe, true)).toBe(0xaa55);
    expect(v.getUint16(0x206, true)).toBe(0x020f);
    expect(v.getBigUint64(BP.acpiRsdpAddr, true)).toBe(0n);
  });
});

describe('PVH', () => {
  const e820 = buildE820(256 * MiB);

  it('builds hvm_start_info with module list and memory map', () => {
    const w = buildPvhStartInfo({
      cmdlineAddr: 0x2_0000,
      rsdpAddr: ACPI_START,
      memmap: e820,
      modules: [{ addr: 0xf00_0000, size: 0x4000 }],
    });
    expect(w.gpa).toBe(PVH_START_INFO);
    const v = new DataView(w.data.buffer);
    expect(v.getUint32(0, true)).toBe(HVM_START_MAGIC);
    expect(v.getUint32(4, true)).toBe(1);
    expect(v.getUint32(12, true)).toBe(1);
    const modlist = Number(v.getBigUint64(16, true)) - PVH_START_INFO;
    expect(v.getBigUint64(modlist, true)).toBe(0xf00_0000n);
    expect(v.getBigUint64(modlist + 8, true)).toBe(0x4000n);
    expect(v.getBigUint64(24, true)).toBe(0x2_0000n);
    expect(v.getBigUint64(32, true)).toBe(BigInt(ACPI_START));
    const memmap = Number(v.getBigUint64(40, true)) - PVH_START_INFO;
    expect(v.getUint32(48, true)).toBe(e820.length);
    expect(memmap).toBeGreaterThanOrEqual(modlist + 32);
    expect(v.getBigUint64(memmap + 24 * 3, true)).toBe(BigInt(HIMEM_START));
    expect(v.getUint32(memmap + 24 * 3 + 16, true)).toBe(E820_RAM);
  });

  it('enters in 32-bit protected mode, paging off, EBX = start_info', () => {
    const cpu = setupPvhEntry(resetSregs(), 0x100_0850);
    expect(cpu.regs.rip).toBe(0x100_0850n);
    expect(cpu.regs.rbx).toBe(BigInt(PVH_START_INFO));
    expect(cpu.sregs.cr0).toBe(0x11n);
    expect(cpu.sregs.cr4).toBe(0n);
    expect(cpu.sregs.efer).toBe(0n);
    expect(cpu.sregs.cs.selector).toBe(0x10);
    expect(cpu.sregs.cs.db).toBe(1);
    expect(cpu.sregs.cs.l).toBe(0);
    expect(cpu.sregs.ds.selector).toBe(0x18);
    expect(() => setupPvhEntry(resetSregs(), 0x1_0000_0000)).toThrow(/32-bit/);
  });
});
