import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ACPI_RESET_PORT,
  ACPI_SLEEP_CONTROL_PORT,
  ACPI_START,
  IOAPIC_START,
  LAPIC_START,
  virtioGsi,
  virtioMmioBase,
  VIRTIO_MMIO_SIZE,
} from '../../../lib/arch/x86_64/layout.js';
import * as aml from '../../../lib/boot/acpi/aml.js';
import {
  ACPI_RSDP_FILE,
  ACPI_TABLES_FILE,
  buildAcpiTables,
  buildRelocatableAcpi,
  relocateAcpi,
  type AcpiConfig,
} from '../../../lib/boot/acpi/index.js';
import { buildDsdt, buildFadt, buildMadt, buildRsdp } from '../../../lib/boot/acpi/tables.js';
import { BootError } from '../../../lib/boot/errors.js';

const IASL = '/usr/bin/iasl';
const haveIasl = existsSync(IASL);
if (!haveIasl) console.log(`SKIP iasl tests: ${IASL} is missing (Debian package acpica-tools)`);

const config: AcpiConfig = {
  vcpus: 3,
  virtio: [0, 1, 2].map((n) => ({ base: virtioMmioBase(n), size: VIRTIO_MMIO_SIZE, gsi: virtioGsi(n) })),
  serial: true,
};

function sum(data: Uint8Array): number {
  return data.reduce((s, b) => (s + b) & 0xff, 0);
}

const tmp = mkdtempSync(join(tmpdir(), 'node-kvm-acpi-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Disassembles one table with iasl; returns the .dsl text and iasl's own output. */
function disassemble(name: string, table: Uint8Array): { dsl: string; log: string } {
  const file = join(tmp, `${name}.dat`);
  writeFileSync(file, table);
  const log = execFileSync(IASL, ['-d', file], {
    cwd: tmp,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { dsl: readFileSync(join(tmp, `${name}.dsl`), 'utf8'), log };
}

function expectClean(r: { dsl: string; log: string }): void {
  expect(r.log).not.toMatch(/error|warning|invalid|incorrect/i);
  expect(r.dsl).not.toMatch(/\*\*\*\*|Invalid|Incorrect|Unknown/);
}

describe('AML encoder', () => {
  it('encodes package lengths with the right number of bytes', () => {
    expect([...aml.pkgLength(0)]).toEqual([0x01]);
    expect([...aml.pkgLength(62)]).toEqual([0x3f]);
    // 63 content bytes + 2 length bytes = 65 = 0x41: lead 0x41 (1 extra byte, low nibble 1), then 0x04
    expect([...aml.pkgLength(63)]).toEqual([0x41, 0x04]);
    expect(aml.pkgLength(0xffd).length).toBe(2);
    expect(aml.pkgLength(0xffe).length).toBe(3);
    expect(aml.pkgLength(0xf_fffc).length).toBe(3);
    expect(aml.pkgLength(0xf_fffd).length).toBe(4);
    expect(() => aml.pkgLength(0x1000_0000)).toThrow(BootError);
  });

  it('picks the shortest integer encoding', () => {
    expect([...aml.integer(0)]).toEqual([0x00]);
    expect([...aml.integer(1)]).toEqual([0x01]);
    expect([...aml.integer(5)]).toEqual([0x0a, 5]);
    expect([...aml.integer(0x3f8)]).toEqual([0x0b, 0xf8, 0x03]);
    expect([...aml.integer(0xd0000000)]).toEqual([0x0c, 0, 0, 0, 0xd0]);
    expect([...aml.integer(0x1_0000_0000n)]).toEqual([0x0e, 0, 0, 0, 0, 1, 0, 0, 0]);
    expect(() => aml.integer(-1)).toThrow(/out of range/);
  });

  it('encodes names, strings and EISA IDs', () => {
    expect([...aml.nameString('_HID')]).toEqual([0x5f, 0x48, 0x49, 0x44]);
    expect([...aml.nameString('\\_SB')]).toEqual([0x5c, 0x5f, 0x53, 0x42, 0x5f]);
    expect([...aml.nameString('\\_SB.COM1')].slice(0, 2)).toEqual([0x5c, 0x2e]);
    expect([...aml.nameString('A.B.C')].slice(0, 2)).toEqual([0x2f, 3]);
    expect([...aml.string('AB')]).toEqual([0x0d, 0x41, 0x42, 0x00]);
    expect([...aml.eisaId('PNP0501')]).toEqual([0x0c, 0x41, 0xd0, 0x05, 0x01]);
    expect(() => aml.nameSeg('1ABC')).toThrow(/name segment/);
    expect(() => aml.eisaId('pnp0501')).toThrow(/EISA/);
  });

  it('encodes resource descriptors', () => {
    expect([...aml.memory32Fixed(true, 0xd0000000, 0x1000)]).toEqual([
      0x86, 9, 0, 1, 0, 0, 0, 0xd0, 0, 0x10, 0, 0,
    ]);
    expect([...aml.extendedInterrupt({}, [16])]).toEqual([0x89, 6, 0, 0x03, 1, 16, 0, 0, 0]);
    expect([...aml.extendedInterrupt({ edge: false, activeLow: true, shared: true }, [5])][3]).toBe(0x0d);
    expect([...aml.io(0x3f8, 0x3f8, 1, 8)]).toEqual([0x47, 1, 0xf8, 3, 0xf8, 3, 1, 8]);
    expect([...aml.irqNoFlags([4])]).toEqual([0x22, 0x10, 0x00]);
    expect(() => aml.irqNoFlags([16])).toThrow(/ISA IRQ/);
    expect(() => aml.memory32Fixed(true, 0xffff_f000, 0x2000)).toThrow(/4 GiB/);
  });
});

describe('ACPI tables at fixed addresses', () => {
  const fixed = buildAcpiTables(config);
  const rsdp = fixed.writes[0].data;
  const blob = fixed.writes[1].data;
  const table = (sig: string): Uint8Array => {
    const t = fixed.tables.find((x) => x.signature === sig)!;
    const off = t.addr - fixed.writes[1].gpa;
    return blob.subarray(off, off + t.length);
  };

  it('puts the RSDP first at ACPI_START with both checksums valid', () => {
    expect(fixed.rsdpAddr).toBe(ACPI_START);
    expect(fixed.writes[0].gpa).toBe(ACPI_START);
    expect(String.fromCharCode(...rsdp.subarray(0, 8))).toBe('RSD PTR ');
    expect(rsdp[15]).toBe(2);
    expect(sum(rsdp.subarray(0, 20))).toBe(0);
    expect(sum(rsdp)).toBe(0);
    const v = new DataView(rsdp.buffer, rsdp.byteOffset);
    expect(Number(v.getBigUint64(24, true))).toBe(fixed.tables.find((t) => t.signature === 'XSDT')!.addr);
  });

  it('every table checksums to zero and stays inside the ACPI area', () => {
    for (const t of fixed.tables) {
      expect(sum(table(t.signature)), t.signature).toBe(0);
      expect(t.addr + t.length).toBeLessThanOrEqual(0x10_0000);
    }
  });

  it('links XSDT → FADT, MADT and FADT → DSDT', () => {
    const xsdt = new DataView(table('XSDT').slice().buffer);
    const addrOf = (sig: string) => fixed.tables.find((t) => t.signature === sig)!.addr;
    expect(Number(xsdt.getBigUint64(36, true))).toBe(addrOf('FACP'));
    expect(Number(xsdt.getBigUint64(44, true))).toBe(addrOf('APIC'));
    const fadt = new DataView(table('FACP').slice().buffer);
    expect(fadt.getUint32(40, true)).toBe(addrOf('DSDT'));
    expect(Number(fadt.getBigUint64(140, true))).toBe(addrOf('DSDT'));
    expect(fadt.getUint32(4, true)).toBe(276);
    expect(fadt.getUint32(112, true) & (1 << 20)).not.toBe(0);
  });

  it('rejects bad configurations', () => {
    expect(() => buildAcpiTables({ ...config, vcpus: 0 })).toThrow(/vCPU count/);
    expect(() => buildAcpiTables({ ...config, virtio: [config.virtio[0], config.virtio[0]] })).toThrow(
      /share/,
    );
    expect(() => buildAcpiTables(config, ACPI_START, 64)).toThrow(/bytes/);
    const device = (n: number) => ({ base: virtioMmioBase(n), size: VIRTIO_MMIO_SIZE, gsi: virtioGsi(n) });
    const nine = [
      ...Array.from({ length: 8 }, (_, n) => device(n)),
      { ...device(7), base: 0xd000_8000, gsi: 15 },
    ];
    expect(() => buildAcpiTables({ ...config, virtio: nine })).toThrow(
      /9 virtio-mmio devices; .* room for 8/,
    );
    const withVirtio = (d: { base: number; size: number; gsi: number }) =>
      buildAcpiTables({ ...config, virtio: [device(0), d] });
    expect(() => withVirtio({ ...device(1), base: 0x10_0000 })).toThrow(/not inside the MMIO gap/);
    expect(() => withVirtio({ ...device(1), base: 0xffff_f000, size: 0x2000 })).toThrow(
      /not inside the MMIO gap/,
    );
    expect(() => withVirtio({ ...device(1), base: virtioMmioBase(0) + 0x800 })).toThrow(/share MMIO space/);
    expect(() => withVirtio({ ...device(1), size: 0 })).toThrow(/bad window size/);
    expect(() => withVirtio({ ...device(1), gsi: 24 })).toThrow(/GSI 24 is not an IOAPIC pin \(0\.\.23\)/);
    expect(() => withVirtio({ ...device(1), gsi: 1.5 })).toThrow(/not an IOAPIC pin/);
    expect(() => withVirtio({ ...device(1), gsi: virtioGsi(0) })).toThrow(/already used by virtio device 0/);
    expect(() => withVirtio({ ...device(1), gsi: 4 })).toThrow(/GSI 4 is already used by COM1/);
    expect(() => withVirtio({ ...device(1), gsi: 1 })).toThrow(/already used by the PS\/2 keyboard/);
    // without COM1 and the keyboard described, their GSIs are free for virtio
    expect(() =>
      buildAcpiTables({ ...config, serial: false, keyboard: false, virtio: [{ ...device(0), gsi: 4 }] }),
    ).not.toThrow();
    expect(() => buildRelocatableAcpi({ ...config, virtio: nine })).toThrow(BootError);
  });

  describe.skipIf(!haveIasl)('iasl disassembly', () => {
    it('DSDT: LNRO0005 devices, COM1, PS/2 keyboard and _S5', () => {
      const r = disassemble('dsdt', table('DSDT'));
      expectClean(r);
      expect(r.dsl.match(/"LNRO0005"/g)).toHaveLength(3);
      for (let n = 0; n < 3; n++) {
        expect(r.dsl).toContain(`Device (V00${n})`);
        expect(r.dsl).toMatch(
          new RegExp(`0x${virtioMmioBase(n).toString(16).toUpperCase()},\\s*// Address Base`),
        );
        expect(r.dsl).toMatch(
          new RegExp(`\\{\\s*0x000000${virtioGsi(n).toString(16).toUpperCase()},?\\s*\\}`),
        );
      }
      expect(r.dsl).toMatch(/Memory32Fixed \(ReadWrite,/);
      expect(r.dsl).toMatch(/Interrupt \(ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, \)/);
      expect(r.dsl).toContain('Name (_CCA, One)');
      expect(r.dsl).toContain('EisaId ("PNP0501")');
      expect(r.dsl).toContain('EisaId ("PNP0303")');
      expect(r.dsl).toMatch(/0x03F8,\s*\/\/ Range Minimum/);
      expect(r.dsl).toMatch(/IRQNoFlags \(\)\s*\{4\}/);
      expect(r.dsl).toMatch(/IRQNoFlags \(\)\s*\{1\}/);
      expect(r.dsl).toMatch(/Name \(_S5, Package \(0x04\)[^{]*\{\s*0x05,\s*Zero,\s*Zero,\s*Zero\s*\}\)/);
    });

    it('FADT: hardware-reduced, reset and sleep registers on our ports, X_DSDT', () => {
      const r = disassemble('facp', table('FACP'));
      expectClean(r);
      expect(r.dsl).toMatch(/Hardware Reduced \(V5\) : 1/);
      expect(r.dsl).toMatch(/Reset Register Supported \(V2\) : 1/);
      expect(r.dsl).toMatch(/Revision : 06/);
      const hex = (n: number) => n.toString(16).toUpperCase().padStart(16, '0');
      expect(r.dsl).toContain(`Address : ${hex(ACPI_RESET_PORT)}`);
      expect(r.dsl).toContain(`Address : ${hex(ACPI_SLEEP_CONTROL_PORT)}`);
      expect(r.dsl).toMatch(/Space ID : 01 \[SystemIO\]/);
      const dsdt = fixed.tables.find((t) => t.signature === 'DSDT')!.addr;
      expect(r.dsl).toMatch(new RegExp(`\\[08Ch 0140   8\\]\\s+DSDT Address : ${hex(dsdt)}`));
      expect(r.dsl).toMatch(new RegExp(`\\[028h 0040   4\\]\\s+DSDT Address : ${hex(dsdt).slice(8)}`));
      // 'NODE-KVM' read as a little-endian u64
      expect(r.dsl).toContain('Hypervisor ID : 4D564B2D45444F4E');
    });

    it('MADT: LAPIC address, one enabled Local APIC per vCPU, one IOAPIC', () => {
      const r = disassemble('apic', table('APIC'));
      expectClean(r);
      expect(r.dsl).toContain(`Local Apic Address : ${LAPIC_START.toString(16).toUpperCase()}`);
      expect(r.dsl.match(/Subtable Type : 00 \[Processor Local APIC\]/g)).toHaveLength(3);
      expect(r.dsl.match(/Processor Enabled : 1/g)).toHaveLength(3);
      expect(r.dsl.match(/Subtable Type : 01 \[I\/O APIC\]/g)).toHaveLength(1);
      expect(r.dsl).toContain(`Address : ${IOAPIC_START.toString(16).toUpperCase()}`);
      expect(r.dsl).toMatch(/Interrupt : 00000000/);
    });

    it('XSDT', () => {
      const x = disassemble('xsdt', table('XSDT'));
      expectClean(x);
      expect(x.dsl.match(/ACPI Table Address {3}\d : /g)).toHaveLength(2);
    });

    it('RSDP: iasl compiles the same 36 bytes from the intended field values', () => {
      // iasl cannot disassemble a lone RSDP (its signature is not a table name), so compile one instead.
      const xsdt = fixed.tables.find((t) => t.signature === 'XSDT')!.addr;
      const asl = [
        '[0008] Signature : "RSD PTR "',
        '[0001] Checksum : 00',
        '[0006] Oem ID : "NODKVM"',
        '[0001] Revision : 02',
        '[0004] RSDT Address : 00000000',
        '[0004] Length : 00000024',
        `[0008] XSDT Address : ${xsdt.toString(16).padStart(16, '0')}`,
        '[0001] Extended Checksum : 00',
        '[0003] Reserved : 000000',
      ].join('\n');
      writeFileSync(join(tmp, 'rsdp.asl'), asl + '\n');
      const log = execFileSync(IASL, ['rsdp.asl'], {
        cwd: tmp,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      expect(log).toMatch(/0 Errors, 0 Warnings/);
      expect([...readFileSync(join(tmp, 'rsdp.aml'))]).toEqual([...rsdp]);
    });

    it('DSDT round trip: iasl recompiles its disassembly to the same AML', () => {
      const dsdt = table('DSDT');
      const r = disassemble('dsdt-rt', dsdt);
      const log = execFileSync(IASL, ['dsdt-rt.dsl'], {
        cwd: tmp,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      expect(log).toMatch(/0 Errors, 0 Warnings/);
      expect(r.dsl).toBeTruthy();
      const compiled = readFileSync(join(tmp, 'dsdt-rt.aml'));
      expect([...compiled.subarray(36)]).toEqual([...dsdt.subarray(36)]);
    });

    it('acpiexec loads all tables and evaluates the AML', () => {
      const acpiexec = '/usr/bin/acpiexec';
      if (!existsSync(acpiexec)) {
        console.log(`SKIP acpiexec check: ${acpiexec} is missing`);
        return;
      }
      const files = ['FACP', 'APIC', 'DSDT'].map((sig) => {
        const f = join(tmp, `exec-${sig}.dat`);
        writeFileSync(f, table(sig));
        return f;
      });
      const out = execFileSync(
        acpiexec,
        ['-b', 'evaluate \\_SB.V001._CRS; evaluate \\_S5; evaluate \\_SB.COM1._HID', ...files],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 },
      );
      expect(out).not.toMatch(/AE_[A-Z_]+ERROR|Exception|AE_NOT_FOUND/);
      expect(out).toMatch(/0000: 86 09 00 01 00 10 00 D0 00 10 00 00 89 06 00 03/);
      expect(out).toMatch(/0010: 01 11 00 00 00 79 00/); // GSI 17
      expect(out).toMatch(/\[Package\] Contains 4 Elements/);
      expect(out).toMatch(/\[Integer\] = 0000000000000005/);
      expect(out).toMatch(/\[Integer\] = 000000000105D041/); // EisaId("PNP0501")
    });

    it('a DSDT with 8 devices and no serial or keyboard still disassembles', () => {
      const dsdt = buildDsdt({
        vcpus: 1,
        virtio: Array.from({ length: 8 }, (_, n) => ({
          base: virtioMmioBase(n),
          size: 0x1000,
          gsi: virtioGsi(n),
        })),
        serial: false,
        keyboard: false,
      });
      const r = disassemble('dsdt8', dsdt);
      expectClean(r);
      expect(r.dsl.match(/"LNRO0005"/g)).toHaveLength(8);
      expect(r.dsl).not.toContain('PNP0501');
    });
  });
});

describe('relocatable ACPI (fw_cfg table-loader)', () => {
  const rel = buildRelocatableAcpi(config);

  it('has the rsdp file in fseg and the tables in high memory', () => {
    expect(rel.files.map((f) => [f.name, f.zone])).toEqual([
      [ACPI_RSDP_FILE, 'fseg'],
      [ACPI_TABLES_FILE, 'high'],
    ]);
    for (const p of rel.pointers) expect([ACPI_RSDP_FILE, ACPI_TABLES_FILE]).toContain(p.file);
  });

  it('relocated to any addresses, matches the fixed-address build there', () => {
    const tablesAddr = 0x7ff0_0000;
    const patched = relocateAcpi(rel, { [ACPI_RSDP_FILE]: 0xf5a00, [ACPI_TABLES_FILE]: tablesAddr });
    const fixed = buildAcpiTables(config, 0x7ff0_0000 - 0x40, 0x10000);
    expect([...patched.get(ACPI_TABLES_FILE)!]).toEqual([...fixed.writes[1].data]);
    const rsdp = patched.get(ACPI_RSDP_FILE)!;
    expect(sum(rsdp.subarray(0, 20))).toBe(0);
    expect(sum(rsdp)).toBe(0);
    expect([...rsdp]).toEqual([...buildRsdp(fixed.tables.find((t) => t.signature === 'XSDT')!.addr)]);
  });

  it('every checksum range covers a whole table and its checksum byte', () => {
    const tables = rel.files[1].data;
    for (const c of rel.checksums.filter((x) => x.file === ACPI_TABLES_FILE)) {
      const len = new DataView(tables.buffer, tables.byteOffset).getUint32(c.start + 4, true);
      expect(c.length).toBe(len);
      expect(c.offset).toBe(c.start + 9);
      expect(sum(tables.subarray(c.start, c.start + c.length))).toBe(0);
    }
  });
});

describe('table builders', () => {
  it('MADT rejects more than 255 vCPUs', () => {
    expect(() => buildMadt(256)).toThrow(/vCPU/);
  });
  it('FADT leaves the 32-bit DSDT field empty above 4 GiB', () => {
    const f = buildFadt(0x1_0000_0000);
    expect(new DataView(f.buffer).getUint32(40, true)).toBe(0);
    expect(sum(f)).toBe(0);
  });
});
