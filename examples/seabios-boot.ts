/**
 * SeaBIOS (Debian's bios-microvm.bin) in our VMM: it reads RAM size, e820 and ACPI tables from our fw_cfg, finds
 * our virtio-blk-mmio disk in the DSDT, and boots a boot sector from it that prints on the 8250 and powers off.
 * Run: node dist/examples/seabios-boot.js            (boots a generated disk)
 *      node dist/examples/seabios-boot.js --make-disk boot.img
 *      node-kvm run --firmware /usr/share/seabios/bios-microvm.bin --disk boot.img
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MicroVm } from '../lib/vmm/micro-vm.js';
import type { StopReason } from '../lib/vmm/stop.js';
import { isMain } from './lib/main.js';
import { loadPayload } from './lib/payloads.js';

export const SEABIOS_MICROVM = process.env.SEABIOS ?? '/usr/share/seabios/bios-microvm.bin';

/** A 1 MiB raw disk whose MBR is the boot sector from examples/payloads/bootsector.S. */
export function makeBootDisk(path: string): void {
  const code = loadPayload('bootsector');
  if (code.length > 510) throw new Error(`boot sector code is ${code.length} bytes; at most 510 fit`);
  const image = new Uint8Array(1024 * 1024);
  image.set(code, 0);
  image[510] = 0x55;
  image[511] = 0xaa;
  writeFileSync(path, image);
}

export async function seabiosBoot(
  options: { onConsole?: (text: string) => void } = {},
): Promise<{ console: string; firmwareLog: string; stop: StopReason }> {
  const dir = mkdtempSync(join(tmpdir(), 'node-kvm-seabios-'));
  try {
    const disk = join(dir, 'boot.img');
    makeBootDisk(disk);
    const vm = new MicroVm({
      memory: { size: 128 * 1024 * 1024 },
      boot: { kind: 'firmware', firmware: SEABIOS_MICROVM },
      disks: [{ path: disk }],
      firmwareDebug: true,
    });
    let consoleText = '';
    let firmwareLog = '';
    vm.on('console', (b) => {
      const text = Buffer.from(b).toString('latin1');
      consoleText += text;
      options.onConsole?.(text);
    });
    vm.on('firmwareLog', (b) => (firmwareLog += Buffer.from(b).toString('latin1')));
    await vm.start();
    const timer = setTimeout(() => void vm.stop(), 120_000);
    const stop = await vm.exited;
    clearTimeout(timer);
    return { console: consoleText, firmwareLog, stop };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const i = process.argv.indexOf('--make-disk');
  if (i >= 0) {
    const path = process.argv[i + 1] ?? 'boot.img';
    makeBootDisk(path);
    console.log(`wrote ${path}; boot it with: node-kvm run --firmware ${SEABIOS_MICROVM} --disk ${path}`);
  } else {
    const r = await seabiosBoot({ onConsole: (t) => process.stdout.write(t) });
    console.log(`\nstop: ${r.stop.reason}`);
  }
}
