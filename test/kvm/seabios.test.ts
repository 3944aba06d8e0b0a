/** SeaBIOS from Debian's seabios package, booting a boot sector from our virtio-blk-mmio disk. */
import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
import { SEABIOS_MICROVM, seabiosBoot } from '../../examples/seabios-boot.js';
import { MicroVm } from '../../lib/vmm/micro-vm.js';
import { describeKvm } from '../support/kvm.js';

const haveSeabios = existsSync(SEABIOS_MICROVM);
if (!haveSeabios)
  console.warn(`[node-kvm] skipping SeaBIOS tests: ${SEABIOS_MICROVM} is missing (apt-get install seabios)`);

describeKvm('SeaBIOS (bios-microvm.bin) in node-kvm', () => {
  it.skipIf(!haveSeabios)(
    'reads fw_cfg, finds virtio-blk-mmio through the DSDT, and boots our boot sector, which powers off',
    async () => {
      const r = await seabiosBoot();
      const log = r.firmwareLog;
      const ctx = `firmware log:\n${log.slice(-3000)}\nconsole:\n${r.console.slice(-2000)}`;
      // fw_cfg: found, DMA, and the RAM map we gave it.
      expect(log, ctx).toMatch(/Found QEMU fw_cfg/);
      expect(log, ctx).toMatch(/QEMU fw_cfg DMA interface supported/);
      expect(log, ctx).toMatch(/qemu\/e820: addr 0x0000000000100000 len 0x0000000007f00000 \[RAM\]/);
      expect(log, ctx).toMatch(/Found 1 cpu\(s\) max supported 1 cpu\(s\)/);
      // ACPI through the table-loader, then our DSDT parsed for virtio-mmio.
      expect(log, ctx).toMatch(/ACPI: parse DSDT at/);
      expect(log, ctx).toMatch(/ACPI: virtio-mmio device \w+ at 0xd0000000, irq 16/);
      expect(log, ctx).toMatch(/found virtio-blk-mmio at 0xd0000000/);
      expect(log, ctx).toMatch(/Booting from Hard Disk/);
      // The banner and the boot sector's greeting on our 8250, then a clean ACPI poweroff.
      expect(r.console, ctx).toMatch(/SeaBIOS \(version/);
      expect(r.console, ctx).toContain('Hello from a boot sector loaded by SeaBIOS from virtio-blk!');
      expect(r.stop).toEqual({ reason: 'poweroff' });
    },
    150_000,
  );
});

describeKvm('SeaBIOS with nothing to boot', () => {
  it.skipIf(!haveSeabios)(
    'reboots through the 0xCF9 reset register, which stops the VM with reason reset',
    async () => {
      const vm = new MicroVm({
        memory: { size: 64 * 1024 * 1024 },
        boot: { kind: 'firmware', firmware: SEABIOS_MICROVM },
      });
      let out = '';
      vm.on('console', (b) => (out += Buffer.from(b).toString('latin1')));
      await vm.start();
      const timer = setTimeout(() => void vm.stop(), 60_000);
      const stop = await vm.exited;
      clearTimeout(timer);
      expect(out).toMatch(/No bootable device/);
      expect(stop).toEqual({ reason: 'reset', source: 'cf9' });
    },
    90_000,
  );
});
