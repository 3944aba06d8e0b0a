import { describe, expect, it } from 'vitest';
import { buildRelocatableAcpi, relocateAcpi } from '../../../lib/boot/acpi/index.js';
import type { RelocatableAcpi } from '../../../lib/boot/acpi/types.js';
import {
  FwCfgError,
  LOADER_COMMAND_ADD_CHECKSUM,
  LOADER_COMMAND_ADD_POINTER,
  LOADER_COMMAND_ALLOCATE,
  LOADER_ENTRY_SIZE,
  LOADER_ZONE_FSEG,
  LOADER_ZONE_HIGH,
  encodeTableLoader,
} from '../../../lib/devices/fw-cfg-loader.js';
import { FwCfg } from '../../../lib/devices/fw-cfg.js';

/**
 * A tiny interpreter of the loader commands, following SeaBIOS src/fw/romfile_loader.c: ALLOCATE copies the
 * file to an aligned address in its zone, ADD_POINTER adds the source file's address to the little-endian
 * field, ADD_CHECKSUM does data[offset] -= sum(data[start..start+length)).
 */
function runLoader(loader: Uint8Array, readFile: (name: string) => Uint8Array | undefined) {
  expect(loader.length % LOADER_ENTRY_SIZE).toBe(0);
  const v = new DataView(loader.buffer, loader.byteOffset, loader.length);
  const name = (at: number): string => {
    const field = loader.subarray(at, at + 56);
    expect(field[55]).toBe(0);
    return Buffer.from(field).toString('latin1').replace(/\0.*$/s, '');
  };
  const next = { [LOADER_ZONE_HIGH]: 0x7ff0_0000, [LOADER_ZONE_FSEG]: 0xf_0000 } as Record<number, number>;
  const files = new Map<string, { addr: number; data: Uint8Array; zone: number }>();
  const get = (n: string) => {
    const f = files.get(n);
    if (f === undefined) throw new Error(`${n} used before ALLOCATE`);
    return f;
  };
  const commands: number[] = [];
  for (let at = 0; at < loader.length; at += LOADER_ENTRY_SIZE) {
    const cmd = v.getUint32(at, true);
    commands.push(cmd);
    const p = at + 4;
    if (cmd === LOADER_COMMAND_ALLOCATE) {
      const file = name(p);
      const align = v.getUint32(p + 56, true);
      const zone = loader[p + 60];
      expect(align & (align - 1)).toBe(0);
      expect([LOADER_ZONE_HIGH, LOADER_ZONE_FSEG]).toContain(zone);
      const data = readFile(file);
      if (data === undefined) throw new Error(`ALLOCATE of missing file ${file}`);
      const addr = Math.ceil((next[zone] + 1) / align) * align; // +1: never reuse an address
      next[zone] = addr + data.length;
      expect(files.has(file)).toBe(false);
      files.set(file, { addr, data: data.slice(), zone });
    } else if (cmd === LOADER_COMMAND_ADD_POINTER) {
      const dest = get(name(p));
      const src = get(name(p + 56));
      const offset = v.getUint32(p + 112, true);
      const size = loader[p + 116];
      expect([1, 2, 4, 8]).toContain(size);
      expect(offset + size).toBeLessThanOrEqual(dest.data.length);
      let value = 0n;
      for (let i = 0; i < size; i++) value |= BigInt(dest.data[offset + i]) << BigInt(8 * i);
      value = (value + BigInt(src.addr)) & ((1n << BigInt(8 * size)) - 1n);
      for (let i = 0; i < size; i++) dest.data[offset + i] = Number((value >> BigInt(8 * i)) & 0xffn);
    } else if (cmd === LOADER_COMMAND_ADD_CHECKSUM) {
      const f = get(name(p));
      const offset = v.getUint32(p + 56, true);
      const start = v.getUint32(p + 60, true);
      const length = v.getUint32(p + 64, true);
      expect(start + length).toBeLessThanOrEqual(f.data.length);
      let sum = 0;
      for (let i = start; i < start + length; i++) sum = (sum + f.data[i]) & 0xff;
      f.data[offset] = (f.data[offset] - sum) & 0xff;
    } else {
      throw new Error(`unexpected loader command ${cmd}`);
    }
  }
  return { files, commands };
}

const sum8 = (d: Uint8Array): number => d.reduce((a, b) => (a + b) & 0xff, 0);

describe('table-loader encoding', () => {
  it('encodes 128-byte ALLOCATE / ADD_POINTER / ADD_CHECKSUM entries at the documented offsets', () => {
    const acpi: RelocatableAcpi = {
      files: [
        { name: 'a', data: new Uint8Array(16), align: 16, zone: 'fseg' },
        { name: 'b', data: new Uint8Array(64), align: 64, zone: 'high' },
      ],
      pointers: [{ file: 'a', offset: 8, size: 4, targetFile: 'b' }],
      checksums: [{ file: 'b', start: 0, length: 64, offset: 9 }],
    };
    const l = encodeTableLoader(acpi);
    expect(l.length).toBe(4 * 128);
    const v = new DataView(l.buffer);
    expect(v.getUint32(0, true)).toBe(1);
    expect(l[4]).toBe('a'.charCodeAt(0));
    expect(v.getUint32(4 + 56, true)).toBe(16);
    expect(l[4 + 60]).toBe(2);
    expect(l[128 + 4 + 60]).toBe(1);
    expect(v.getUint32(256, true)).toBe(2);
    expect(l[256 + 4]).toBe('a'.charCodeAt(0)); // dest: holds the pointer
    expect(l[256 + 4 + 56]).toBe('b'.charCodeAt(0)); // src: whose address is added
    expect(v.getUint32(256 + 4 + 112, true)).toBe(8);
    expect(l[256 + 4 + 116]).toBe(4);
    expect(v.getUint32(384, true)).toBe(3);
    expect(v.getUint32(384 + 4 + 56, true)).toBe(9); // offset
    expect(v.getUint32(384 + 4 + 60, true)).toBe(0); // start
    expect(v.getUint32(384 + 4 + 64, true)).toBe(64); // length
    // Unused bytes of every entry are zero.
    expect(l.subarray(4 + 61, 128).every((b) => b === 0)).toBe(true);
    expect(l.subarray(256 + 4 + 117, 384).every((b) => b === 0)).toBe(true);
  });

  it('rejects inconsistent descriptions', () => {
    const base = (): RelocatableAcpi => ({
      files: [{ name: 'a', data: new Uint8Array(16), align: 16, zone: 'high' }],
      pointers: [],
      checksums: [],
    });
    const bad = (edit: (r: RelocatableAcpi) => void) => {
      const r = base();
      edit(r);
      return () => encodeTableLoader(r);
    };
    expect(bad(() => {})).not.toThrow();
    expect(bad((r) => r.files.push(r.files[0]))).toThrow(FwCfgError);
    expect(bad((r) => (r.files[0].align = 3))).toThrow(FwCfgError);
    expect(bad((r) => (r.files[0].name = 'n'.repeat(56)))).toThrow(FwCfgError);
    expect(bad((r) => r.pointers.push({ file: 'a', offset: 0, size: 4, targetFile: 'zz' }))).toThrow(
      FwCfgError,
    );
    expect(bad((r) => r.pointers.push({ file: 'a', offset: 13, size: 4, targetFile: 'a' }))).toThrow(
      FwCfgError,
    );
    expect(bad((r) => r.checksums.push({ file: 'a', start: 8, length: 9, offset: 0 }))).toThrow(FwCfgError);
    expect(bad((r) => r.checksums.push({ file: 'a', start: 0, length: 16, offset: 16 }))).toThrow(FwCfgError);
  });

  it('loads our ACPI tables through fw_cfg: RSDP in the F-segment, pointers patched, checksums valid', () => {
    const acpi = buildRelocatableAcpi({
      vcpus: 2,
      virtio: [
        { base: 0xd000_0000, size: 0x1000, gsi: 16 },
        { base: 0xd000_1000, size: 0x1000, gsi: 17 },
      ],
      serial: true,
    });
    const fw = new FwCfg();
    fw.addAcpiTables(acpi);
    expect(fw.files.map((f) => f.name)).toEqual(['etc/acpi/rsdp', 'etc/acpi/tables', 'etc/table-loader']);
    const { files, commands } = runLoader(fw.file('etc/table-loader')!, (n) => fw.file(n));
    // Allocations precede every use; checksums come last.
    const firstNonAlloc = commands.findIndex((c) => c !== LOADER_COMMAND_ALLOCATE);
    expect(commands.slice(firstNonAlloc).includes(LOADER_COMMAND_ALLOCATE)).toBe(false);
    expect(commands.indexOf(LOADER_COMMAND_ADD_CHECKSUM)).toBeGreaterThan(
      commands.lastIndexOf(LOADER_COMMAND_ADD_POINTER),
    );

    const rsdp = files.get('etc/acpi/rsdp')!;
    const tables = files.get('etc/acpi/tables')!;
    expect(rsdp.zone).toBe(LOADER_ZONE_FSEG);
    expect(rsdp.addr % 16).toBe(0);
    expect(rsdp.addr).toBeGreaterThanOrEqual(0xe0000);
    expect(rsdp.addr + rsdp.data.length).toBeLessThanOrEqual(0x100000);
    expect(tables.addr % 64).toBe(0);
    expect(Buffer.from(rsdp.data.subarray(0, 8)).toString()).toBe('RSD PTR ');
    expect(sum8(rsdp.data.subarray(0, 20))).toBe(0);
    expect(sum8(rsdp.data.subarray(0, 36))).toBe(0);

    // Walk RSDP → XSDT → every table, checking each one's checksum at its patched address.
    const rv = new DataView(rsdp.data.buffer);
    const xsdtAddr = Number(rv.getBigUint64(24, true));
    const at = (addr: number) => {
      const off = addr - tables.addr;
      expect(off).toBeGreaterThanOrEqual(0);
      const len = new DataView(tables.data.buffer).getUint32(off + 4, true);
      const t = tables.data.subarray(off, off + len);
      expect(sum8(t)).toBe(0);
      return { sig: Buffer.from(t.subarray(0, 4)).toString(), t };
    };
    const xsdt = at(xsdtAddr);
    expect(xsdt.sig).toBe('XSDT');
    const xv = new DataView(xsdt.t.buffer, xsdt.t.byteOffset, xsdt.t.length);
    const sigs: string[] = [];
    for (let o = 36; o < xsdt.t.length; o += 8) {
      const t = at(Number(xv.getBigUint64(o, true)));
      sigs.push(t.sig);
      if (t.sig === 'FACP') {
        const fv = new DataView(t.t.buffer, t.t.byteOffset, t.t.length);
        expect(at(Number(fv.getBigUint64(140, true))).sig).toBe('DSDT'); // X_DSDT
      }
    }
    expect(sigs).toContain('FACP');
    expect(sigs).toContain('APIC');

    // Same bytes as the ACPI module's own relocation for these addresses.
    const ref = relocateAcpi(acpi, { 'etc/acpi/rsdp': rsdp.addr, 'etc/acpi/tables': tables.addr });
    expect(Buffer.from(rsdp.data).equals(Buffer.from(ref.get('etc/acpi/rsdp')!))).toBe(true);
    expect(Buffer.from(tables.data).equals(Buffer.from(ref.get('etc/acpi/tables')!))).toBe(true);
  });
});
