/**
 * The stock Debian kernel's early boot in our VMM: it prints, over our 8250 (earlyprintk=serial), the e820 map
 * and the ACPI tables it found; both must match what we built. This runs on PVM hosts too: the kernel is
 * decompressed on the host and entered at its 64-bit entry, and everything we check is printed before the first
 * instruction PVM cannot emulate.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { buildAcpiTables } from '../../lib/boot/acpi/index.js';
import { guestAssetsDir } from '../../lib/boot/initramfs/index.js';
import { buildE820, E820_ACPI, E820_RAM, E820_RESERVED } from '../../lib/boot/e820.js';
import { MicroVm } from '../../lib/vmm/micro-vm.js';
import { describeKvm } from '../support/kvm.js';

const ASSETS = guestAssetsDir();
const KERNEL = join(ASSETS, 'vmlinuz');
const MEM = 256 * 1024 * 1024;
const haveKernel = existsSync(KERNEL);
if (!haveKernel)
  console.warn(
    `[node-kvm] skipping the Linux early-boot test: ${KERNEL} is missing (run node scripts/guest-assets.mjs)`,
  );

const E820_NAMES: Record<number, string> = {
  [E820_RAM]: 'usable',
  [E820_RESERVED]: 'reserved',
  [E820_ACPI]: 'ACPI data',
};
const hex16 = (n: number) => '0x' + n.toString(16).padStart(16, '0');

describeKvm('Linux early boot (stock Debian kernel, uncompressed 64-bit entry)', () => {
  it.skipIf(!haveKernel)(
    'prints our e820 map and our ACPI tables over the 8250',
    async () => {
      const vm = new MicroVm({
        memory: { size: MEM },
        boot: {
          kind: 'linux',
          kernel: KERNEL,
          entry: 'elf64',
          cmdline: 'console=ttyS0 earlyprintk=serial,ttyS0,115200',
        },
        serial: true,
      });
      let text = '';
      const done = new Promise<void>((resolve) => {
        vm.on('console', (b) => {
          text += Buffer.from(b).toString('latin1');
          // Linux has parsed the MADT (CPUs and IOAPIC) once it says how many CPUs it allows.
          if (/smpboot: Allowing \d+ CPUs.*\n/.test(text)) resolve();
        });
      });
      await vm.start();
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, 240_000));
      await Promise.race([done, timeout, vm.exited]);
      const stop = vm.running ? await vm.stop() : await vm.exited;
      const lines = text.split(/\r?\n/);

      // e820: every entry Linux reports is one we built, in order, and nothing else.
      const reported = lines
        .map((l) => /BIOS-e820: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] (.+)$/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => `${m[1]}-${m[2]} ${m[3].trim()}`);
      const expected = buildE820(MEM, { acpiTables: true }).map(
        (e) => `${hex16(e.addr)}-${hex16(e.addr + e.size - 1)} ${E820_NAMES[e.type]}`,
      );
      expect(
        reported,
        `serial output:\n${text.slice(0, 4000)}\nstop: ${JSON.stringify(stop, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v))}`,
      ).toEqual(expected);

      // ACPI: the RSDP where we put it, and each table at our address with our length.
      const acpi = buildAcpiTables({ vcpus: 1, virtio: [], serial: true });
      const seen = new Map(
        lines
          .map((l) => /ACPI: (\w{4}) 0x([0-9A-F]{16}) ([0-9A-F]{6})/.exec(l))
          .filter((m): m is RegExpExecArray => m !== null)
          .map((m) => [m[1], { addr: parseInt(m[2], 16), length: parseInt(m[3], 16) }]),
      );
      expect(seen.get('RSDP')).toEqual({ addr: acpi.rsdpAddr, length: 36 });
      for (const t of acpi.tables)
        expect(seen.get(t.signature), t.signature).toEqual({ addr: t.addr, length: t.length });
      // The MADT: our IOAPIC at its address with 24 GSIs, and one CPU.
      expect(text).toMatch(/IOAPIC\[0\]: apic_id 0, version \d+, address 0xfec00000, GSI 0-23/);
      expect(text).toMatch(/ACPI: Using ACPI \(MADT\) for SMP configuration information/);
      expect(text).toMatch(/smpboot: Allowing 1 CPUs, 0 hotplug CPUs/);
    },
    300_000,
  );
});
