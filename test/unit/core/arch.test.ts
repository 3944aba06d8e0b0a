import { describe, expect, it } from 'vitest';
import { buildCpuid } from '../../../lib/arch/x86_64/cpuid.js';
import {
  encodeDescriptor,
  flatSegment,
  SELECTOR_CODE,
  TYPE_CODE,
  buildGdt,
} from '../../../lib/arch/x86_64/gdt.js';
import {
  BOOT_GDT,
  BOOT_TSS,
  PML4_START,
  ramRegions,
  virtioGsi,
  virtioMmioBase,
} from '../../../lib/arch/x86_64/layout.js';
import {
  setupLongMode,
  setupProtectedMode,
  setupRealMode,
  EFER_LMA,
  EFER_LME,
  CR0_PG,
  CR0_PE,
} from '../../../lib/arch/x86_64/modes.js';
import { identityMapTables } from '../../../lib/arch/x86_64/paging.js';
import { decodeSregs, encodeSregs, SREGS_SIZE, type Sregs } from '../../../lib/kvm/structs.js';

function resetSregs(): Sregs {
  const s = decodeSregs(new Uint8Array(SREGS_SIZE));
  s.cr0 = 0x6000_0010n;
  s.cs = { ...s.cs, selector: 0xf000, base: 0xffff_0000n, limit: 0xffff, present: 1, type: 0xb, s: 1 };
  return s;
}

describe('x86-64 mode builders', () => {
  it('real mode: CS base 0, caching on, entry in RIP', () => {
    const s = setupRealMode(resetSregs(), { entry: 0x1000 });
    expect(s.sregs.cs.base).toBe(0n);
    expect(s.sregs.cs.selector).toBe(0);
    expect(s.sregs.cr0 & (3n << 29n)).toBe(0n);
    expect(s.regs.rip).toBe(0x1000n);
    expect(s.writes).toEqual([]);
    expect(() => setupRealMode(resetSregs(), { entry: 0x10000 })).toThrow(RangeError);
  });

  it('protected mode: flat 32-bit segments, PE on, paging off, GDT and TSS written', () => {
    const s = setupProtectedMode(resetSregs(), { entry: 0x10_0000 });
    expect(s.sregs.cr0 & CR0_PE).toBe(CR0_PE);
    expect(s.sregs.cr0 & CR0_PG).toBe(0n);
    expect(s.sregs.cs).toMatchObject({ selector: SELECTOR_CODE, db: 1, l: 0, limit: 0xffff_ffff, g: 1 });
    expect(s.writes.map((w) => w.gpa)).toEqual([BOOT_GDT, BOOT_TSS]);
  });

  it('long mode: paging, LME|LMA, 64-bit CS; CPL3 uses DPL-3 segments, IOPL 3 and user pages', () => {
    const k = setupLongMode(resetSregs(), { entry: 0x10_0000 });
    expect(k.sregs.efer & (EFER_LME | EFER_LMA)).toBe(EFER_LME | EFER_LMA);
    expect(k.sregs.cr3).toBe(BigInt(PML4_START));
    expect(k.sregs.cs).toMatchObject({ l: 1, db: 0, dpl: 0 });
    const u = setupLongMode(resetSregs(), { entry: 0x10_0000, cpl3: true });
    expect(u.sregs.cs).toMatchObject({ l: 1, dpl: 3, selector: 0x3b });
    expect(u.sregs.ss).toMatchObject({ dpl: 3, selector: 0x33 });
    expect(u.regs.rflags! & 0x3000n).toBe(0x3000n);
    // The TSS carries an all-zero I/O bitmap, terminated by 0xff.
    const tss = u.writes.find((w) => w.gpa === BOOT_TSS)!.data;
    expect(new DataView(tss.buffer).getUint16(102, true)).toBe(104);
    expect(tss[tss.length - 1]).toBe(0xff);
    expect(tss.subarray(104, tss.length - 1).every((b) => b === 0)).toBe(true);
    // The sregs survive the KVM struct encoding.
    expect(decodeSregs(encodeSregs(u.sregs))).toEqual(u.sregs);
  });

  it('GDT descriptors encode the architectural bit layout', () => {
    // The classic flat 4 GiB 32-bit code descriptor.
    expect(encodeDescriptor(flatSegment(0x08, TYPE_CODE))).toBe(0x00cf9b000000ffffn);
    // 64-bit code: L=1, D=0.
    expect(encodeDescriptor(flatSegment(0x10, TYPE_CODE, { long: true }))).toBe(0x00af9b000000ffffn);
    expect(buildGdt(true, BOOT_TSS, 0x2068).length).toBe(64);
  });

  it('identity map: 2 MiB pages covering 4 GiB, user bit only when asked', () => {
    const [pml4, pdpt, pd] = identityMapTables(4 * 1024 ** 3, true);
    const v = new DataView(pd.data.buffer);
    expect(pd.data.length).toBe(4 * 4096);
    expect(v.getBigUint64(8, true)).toBe(0x20_0000n | 0x87n);
    expect(new DataView(pml4.data.buffer).getBigUint64(0, true) & 4n).toBe(4n);
    expect(new DataView(pdpt.data.buffer).getBigUint64(3 * 8, true) & ~0xfffn).toBe(
      BigInt(0xb000 + 3 * 4096),
    );
    const [, , kpd] = identityMapTables(1024 ** 3, false);
    expect(new DataView(kpd.data.buffer).getBigUint64(0, true) & 4n).toBe(0n);
    expect(() => identityMapTables(1000, false)).toThrow(RangeError);
  });

  it('layout helpers', () => {
    expect(ramRegions(64 << 20)).toEqual([{ gpa: 0, size: 64 << 20 }]);
    expect(ramRegions(4 * 1024 ** 3)).toEqual([
      { gpa: 0, size: 0xc000_0000 },
      { gpa: 0x1_0000_0000, size: 0x4000_0000 },
    ]);
    expect(virtioMmioBase(1)).toBe(0xd000_1000);
    expect(virtioGsi(2)).toBe(18);
    expect(() => virtioMmioBase(8)).toThrow(RangeError);
  });

  it('CPUID: per-vCPU APIC IDs, the hypervisor bit and the KVM signature', () => {
    const supported = [
      { function: 0, index: 0, flags: 0, eax: 0xd, ebx: 0, ecx: 0, edx: 0 },
      { function: 1, index: 0, flags: 0, eax: 0x806c1, ebx: 0x0000_0800, ecx: 0, edx: 0 },
      { function: 0xb, index: 0, flags: 1, eax: 0, ebx: 0, ecx: 0, edx: 0 },
      { function: 0xb, index: 1, flags: 1, eax: 0, ebx: 0, ecx: 0, edx: 0 },
    ];
    const e = buildCpuid(supported, { vcpuId: 3, vcpuCount: 4 });
    const leaf1 = e.find((x) => x.function === 1)!;
    expect(leaf1.ebx >>> 24).toBe(3);
    expect((leaf1.ebx >>> 16) & 0xff).toBe(4);
    expect(leaf1.ecx >>> 31).toBe(1);
    expect(e.filter((x) => x.function === 0xb).every((x) => x.edx === 3)).toBe(true);
    const sig = e.find((x) => x.function === 0x4000_0000)!;
    const name = Buffer.alloc(12);
    name.writeUInt32LE(sig.ebx, 0);
    name.writeUInt32LE(sig.ecx, 4);
    name.writeUInt32LE(sig.edx, 8);
    expect(name.toString('latin1').replace(/\0+$/, '')).toBe('KVMKVMKVM');
    expect(supported[1].ebx).toBe(0x800); // input untouched
    expect(() => buildCpuid(supported, { vcpuId: 300, vcpuCount: 1 })).toThrow(RangeError);
  });
});
