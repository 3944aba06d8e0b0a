import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ACPI_START,
  CMDLINE_START,
  MiB,
  PML4_START,
  PVH_START_INFO,
  ZERO_PAGE,
} from '../../../lib/arch/x86_64/layout.js';
import { CR0_PG, EFER_LMA } from '../../../lib/arch/x86_64/modes.js';
import { BP } from '../../../lib/boot/boot-params.js';
import { decompressBzImage } from '../../../lib/boot/decompress.js';
import { parseElfKernel } from '../../../lib/boot/elf.js';
import { buildLinuxBoot, placeBzImage, placeInitrd } from '../../../lib/boot/linux.js';
import { parseSetupHeader } from '../../../lib/boot/setup-header.js';
import { fakeBzImage, fakeElf, guestAssetsDir, resetSregs } from './fixtures.js';

const acpi = { vcpus: 2, virtio: [{ base: 0xd000_0000, size: 0x1000, gsi: 16 }], serial: true };

function at(writes: { gpa: number; data: Uint8Array }[], gpa: number): Uint8Array {
  const w = writes.find((x) => x.gpa === gpa);
  if (!w) throw new Error(`no write at 0x${gpa.toString(16)}`);
  return w.data;
}

function overlaps(writes: { gpa: number; data: Uint8Array }[]): string[] {
  const sorted = [...writes].sort((a, b) => a.gpa - b.gpa);
  const bad: string[] = [];
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1].gpa + sorted[i - 1].data.length > sorted[i].gpa) bad.push(sorted[i].gpa.toString(16));
  }
  return bad;
}

describe('Linux boot plan', () => {
  const initrd = new Uint8Array(0x5432).fill(0x42);

  it('bzImage: 64-bit entry at load + 0x200, RSI = boot_params, everything placed without overlap', () => {
    const image = fakeBzImage({ prefAddress: 0x100_0000, initSize: 0x80_0000 });
    const plan = buildLinuxBoot(
      image,
      { memSize: 128 * MiB, cmdline: 'console=ttyS0', initrd, acpi },
      resetSregs(),
    );
    expect(plan.info.format).toBe('bzImage');
    expect(plan.info.entryKind).toBe('bzimage');
    expect(plan.info.entry).toBe(0x100_0200);
    expect(plan.info.kernel).toEqual({ start: 0x100_0000, end: 0x180_0000 });
    expect(plan.cpu.regs.rip).toBe(0x100_0200n);
    expect(plan.cpu.regs.rsi).toBe(BigInt(ZERO_PAGE));
    expect(plan.cpu.sregs.efer & EFER_LMA).toBe(EFER_LMA);
    expect(plan.cpu.sregs.cr0 & CR0_PG).toBe(CR0_PG);
    expect(plan.cpu.sregs.cr3).toBe(BigInt(PML4_START));
    expect(plan.cpu.sregs.cs.selector).toBe(0x10);
    expect(plan.cpu.sregs.cs.l).toBe(1);
    expect(plan.cpu.sregs.ds.selector).toBe(0x18);
    expect(plan.cpu.writes.some((w) => w.gpa === PML4_START)).toBe(true);
    expect(overlaps([...plan.writes, ...plan.cpu.writes])).toEqual([]);

    const kernel = at(plan.writes, 0x100_0000);
    expect(kernel.length).toBe(parseSetupHeader(image).sysSize);
    // initrd: page-aligned, at the top of RAM
    expect(plan.info.initrd).toEqual({ addr: (128 * MiB - 0x6000) & ~0xfff, size: initrd.length });
    expect(at(plan.writes, plan.info.initrd!.addr)).toBe(initrd);
    expect(String.fromCharCode(...at(plan.writes, CMDLINE_START))).toBe('console=ttyS0\0');
    expect(at(plan.writes, ACPI_START).subarray(0, 8)).toEqual(new TextEncoder().encode('RSD PTR '));

    const bp = at(plan.writes, ZERO_PAGE);
    const v = new DataView(bp.buffer);
    expect(v.getUint32(0x228, true)).toBe(CMDLINE_START);
    expect(v.getUint32(0x218, true)).toBe(plan.info.initrd!.addr);
    expect(v.getUint32(0x21c, true)).toBe(initrd.length);
    expect(v.getUint32(0x214, true)).toBe(0x100_0000); // code32_start = load address
    expect(v.getBigUint64(BP.acpiRsdpAddr, true)).toBe(BigInt(ACPI_START));
    expect(bp[BP.e820Entries]).toBe(plan.info.e820.length);
    expect(bp[0x210]).toBe(0xff);
  });

  it('bzImage decompressed on the host: ELF segments and the ELF entry, with the bzImage header', () => {
    const plan = buildLinuxBoot(
      fakeBzImage(),
      { memSize: 64 * MiB, entry: 'elf64', acpi: false },
      resetSregs(),
    );
    expect(plan.info.compression).toBe('gzip');
    expect(plan.info.entry).toBe(0x100_0000);
    expect(plan.cpu.regs.rip).toBe(0x100_0000n);
    expect(plan.cpu.regs.rsi).toBe(BigInt(ZERO_PAGE));
    expect(at(plan.writes, 0x100_0000).length).toBe(0x300);
    expect(plan.info.acpi).toBeUndefined();
    const bp = new DataView(at(plan.writes, ZERO_PAGE).buffer);
    expect(bp.getUint32(0x202, true)).toBe(0x53726448);
    expect(bp.getBigUint64(BP.acpiRsdpAddr, true)).toBe(0n);
    expect(plan.writes.some((w) => w.gpa === ACPI_START)).toBe(false);
  });

  it('ELF with a PVH note: 32-bit entry, EBX = hvm_start_info with the initrd as module 0', () => {
    const elf = fakeElf({ pvhEntry: 0x100_0080 });
    const plan = buildLinuxBoot(
      elf,
      { memSize: 64 * MiB, entry: 'pvh', initrd, cmdline: 'x', acpi },
      resetSregs(),
    );
    expect(plan.info.format).toBe('elf');
    expect(plan.info.entry).toBe(0x100_0080);
    expect(plan.cpu.regs.rbx).toBe(BigInt(PVH_START_INFO));
    expect(plan.cpu.sregs.efer).toBe(0n);
    expect(plan.cpu.sregs.cr0 & CR0_PG).toBe(0n);
    const si = new DataView(at(plan.writes, PVH_START_INFO).buffer);
    expect(si.getUint32(12, true)).toBe(1);
    const mod = Number(si.getBigUint64(16, true)) - PVH_START_INFO;
    expect(Number(si.getBigUint64(mod, true))).toBe(plan.info.initrd!.addr);
    expect(Number(si.getBigUint64(32, true))).toBe(ACPI_START);
    expect(plan.writes.some((w) => w.gpa === ZERO_PAGE)).toBe(false);
    expect(overlaps([...plan.writes, ...plan.cpu.writes])).toEqual([]);
  });

  it('ELF defaults to the 64-bit entry with a synthesized boot_params header', () => {
    const plan = buildLinuxBoot(fakeElf(), { memSize: 64 * MiB }, resetSregs());
    expect(plan.info.entryKind).toBe('elf64');
    expect(plan.cpu.regs.rsi).toBe(BigInt(ZERO_PAGE));
    expect(plan.info.acpi?.rsdpAddr).toBe(ACPI_START);
  });

  it('fails clearly when things do not fit or do not exist', () => {
    const s = resetSregs();
    expect(() => buildLinuxBoot(new Uint8Array(4096), { memSize: 64 * MiB }, s)).toThrow(/neither a bzImage/);
    expect(() => buildLinuxBoot(fakeElf(), { memSize: 64 * MiB, entry: 'pvh' }, s)).toThrow(
      /no Xen PVH entry note/,
    );
    expect(() => buildLinuxBoot(fakeElf(), { memSize: 64 * MiB, entry: 'bzimage' }, s)).toThrow(
      /needs a bzImage/,
    );
    expect(() => buildLinuxBoot(fakeBzImage({ initSize: 0x400_0000 }), { memSize: 32 * MiB }, s)).toThrow(
      /needs RAM up to 0x5000000/,
    );
    expect(() =>
      buildLinuxBoot(fakeBzImage(), { memSize: 64 * MiB, cmdline: 'x'.repeat(100) }, s),
    ).not.toThrow();
    expect(() =>
      buildLinuxBoot(fakeBzImage({ cmdlineSize: 10 }), { memSize: 64 * MiB, cmdline: 'x'.repeat(11) }, s),
    ).toThrow(/limit is 10/);
    expect(() =>
      buildLinuxBoot(fakeBzImage(), { memSize: 24 * MiB, initrd: new Uint8Array(8 * MiB) }, s),
    ).toThrow(/no room for a 8388608-byte initrd/);
  });

  it('places the initrd below initrd_addr_max and above the kernel', () => {
    const kernel = { start: 0x100_0000, end: 0x200_0000 };
    expect(placeInitrd(0x1000, 4096 * MiB, kernel, 0x7fff_ffff)).toBe(0x8000_0000 - 0x1000);
    expect(placeInitrd(0x1001, 256 * MiB, kernel)).toBe(256 * MiB - 0x2000);
    expect(() => placeInitrd(0, 256 * MiB, kernel)).toThrow(/empty/);
    const h = parseSetupHeader(fakeBzImage({ prefAddress: 0x100_0000, initSize: 0x100_0000 }));
    expect(placeBzImage(h, 64 * MiB)).toEqual({ load: 0x100_0000, start: 0x100_0000, end: 0x200_0000 });
  });
});

const assets = guestAssetsDir();
const vmlinuz = join(assets, 'vmlinuz');
const haveKernel = existsSync(vmlinuz);
if (!haveKernel) {
  console.log(`SKIP real Debian kernel tests: ${vmlinuz} is missing (run: node scripts/guest-assets.mjs)`);
}

describe.skipIf(!haveKernel)('the real Debian kernel', () => {
  const image = haveKernel ? new Uint8Array(readFileSync(vmlinuz)) : new Uint8Array(0);

  it('has a valid bzImage header with the 64-bit entry', () => {
    const h = parseSetupHeader(image);
    expect(h.version).toBeGreaterThanOrEqual(0x020c);
    expect(h.relocatable).toBe(true);
    expect(h.kernelAlignment).toBe(0x20_0000);
    expect(h.prefAddress).toBe(0x100_0000);
    expect(h.initSize).toBeGreaterThan(h.sysSize);
    expect(h.cmdlineSize).toBeGreaterThanOrEqual(255);
    expect(h.kernelVersion).toMatch(/^\d+\.\d+/);
  });

  it('decompresses on the host to an ELF vmlinux with a PVH note and a physical entry', () => {
    const { data, compression } = decompressBzImage(image);
    expect(['lz4', 'gzip']).toContain(compression);
    const elf = parseElfKernel(data);
    expect(elf.entry).toBe(0x100_0000);
    expect(elf.pvhEntry).toBeGreaterThan(elf.entry);
    expect(elf.pvhEntry!).toBeLessThan(elf.end);
    expect(elf.start).toBe(0x100_0000);
    expect(elf.end).toBeLessThanOrEqual(0x100_0000 + parseSetupHeader(image).initSize);
  });

  it('builds plans for all three entries', () => {
    const s = resetSregs();
    const opts = { memSize: 256 * MiB, cmdline: 'console=ttyS0 earlyprintk=serial', acpi };
    const bz = buildLinuxBoot(image, opts, s);
    expect(bz.info.entry).toBe(0x100_0200);
    const elf = buildLinuxBoot(image, { ...opts, entry: 'elf64' }, s);
    expect(elf.info.entry).toBe(0x100_0000);
    const pvh = buildLinuxBoot(image, { ...opts, entry: 'pvh' }, s);
    expect(pvh.cpu.regs.rbx).toBe(BigInt(PVH_START_INFO));
    for (const p of [bz, elf, pvh]) expect(overlaps([...p.writes, ...p.cpu.writes])).toEqual([]);
  });
});
