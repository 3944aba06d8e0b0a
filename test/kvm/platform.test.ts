/** Legacy platform devices driven by real guests: the 8250 both ways, the i8042 reset line, ACPI poweroff. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { MicroVm } from '../../lib/vmm/micro-vm.js';
import { describeKvm } from '../support/kvm.js';

const payload = (name: string) =>
  new Uint8Array(readFileSync(fileURLToPath(new URL(`../../build/payloads/${name}.bin`, import.meta.url))));

describeKvm('platform devices', () => {
  it('8250: guest output reaches the console, host input reaches the guest; i8042 0xFE stops with reason reset', async () => {
    const vm = new MicroVm({
      memory: { size: 2 * 1024 * 1024 },
      boot: { kind: 'payload', payload: payload('platform-serial-echo'), mode: 'real' },
      serial: true,
    });
    let out = '';
    const ready = new Promise<void>((resolve) =>
      vm.on('console', (b) => {
        out += Buffer.from(b).toString('latin1');
        if (out.includes('ready\n')) resolve();
      }),
    );
    await vm.start();
    await ready;
    vm.writeConsole('hello, uart.');
    expect(await vm.exited).toEqual({ reason: 'reset', source: 'i8042' });
    expect(out).toBe('ready\nHELLO, UART');
  });

  it('ACPI: a write of SLP_TYP=5|SLP_EN to the sleep control register powers off', async () => {
    const vm = new MicroVm({
      memory: { size: 2 * 1024 * 1024 },
      boot: { kind: 'payload', payload: payload('platform-acpi-off'), mode: 'real' },
    });
    await vm.start();
    expect(await vm.exited).toEqual({ reason: 'poweroff' });
  });
});
