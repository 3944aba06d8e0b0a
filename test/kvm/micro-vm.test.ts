/** MicroVm: the VM thread, control from the main thread, and stop reasons. */
import { expect, it } from 'vitest';
import { MicroVm } from '../../lib/vmm/micro-vm.js';
import type { MicroVmConfig } from '../../lib/vmm/config.js';
import { describeKvm } from '../support/kvm.js';

const MiB = 1024 * 1024;

/** CPL3: forever { spin 2^20 iterations; out 0xe9, '.' } — output paces progress. */
const DOTS = new Uint8Array([
  0xb9,
  0x00,
  0x00,
  0x10,
  0x00, // 0: mov ecx, 0x100000
  0xff,
  0xc9, //                   5: dec ecx
  0x75,
  0xfc, //                   7: jnz 5
  0xb0,
  0x2e, //                   9: mov al, '.'
  0xe6,
  0xe9, //                  11: out 0xe9, al
  0xeb,
  0xf1, //                  13: jmp 0
]);
/** CPL3: jmp . */
const SPIN = new Uint8Array([0xeb, 0xfe]);
/** Real mode: print "hi", hlt */
const HI_HLT = new Uint8Array([0xb0, 0x68, 0xe6, 0xe9, 0xb0, 0x69, 0xe6, 0xe9, 0xf4]);

function cpl3(payload: Uint8Array, extra: Partial<MicroVmConfig> = {}): MicroVmConfig {
  return {
    memory: { size: 8 * MiB },
    boot: { kind: 'payload', payload, mode: 'long-cpl3' },
    serial: false,
    ...extra,
  };
}

function collect(vm: MicroVm): { text: () => string } {
  const chunks: Uint8Array[] = [];
  vm.on('console', (b) => chunks.push(b));
  return { text: () => Buffer.concat(chunks).toString('latin1') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeKvm('MicroVm (VM thread)', () => {
  it('runs a payload on the VM thread and reports its output and the HLT stop (no irqchip)', async () => {
    const vm = new MicroVm({
      memory: { size: 2 * MiB },
      boot: { kind: 'payload', payload: HI_HLT, mode: 'real' },
      irqchip: false,
      serial: false,
    });
    const out = collect(vm);
    await vm.start();
    expect(await vm.exited).toEqual({ reason: 'hlt' });
    expect(out.text()).toBe('hi');
    expect(vm.lastStats?.exits).toBeGreaterThanOrEqual(3);
  });

  it('keeps the main event loop free while the guest spins', async () => {
    const vm = new MicroVm(cpl3(SPIN));
    await vm.start();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    await sleep(500);
    clearInterval(timer);
    expect(ticks).toBeGreaterThanOrEqual(25);
    expect(vm.running).toBe(true);
    expect(await vm.stop()).toEqual({ reason: 'stopped' });
  });

  it('pause parks the vCPU (no progress), resume continues, stop ends it', async () => {
    const vm = new MicroVm(cpl3(DOTS));
    const out = collect(vm);
    await vm.start();
    await sleep(200);
    expect(out.text().length).toBeGreaterThan(0);
    await vm.pause();
    await sleep(50); // let output posted before the pause arrive
    const atPause = out.text().length;
    await sleep(300);
    expect(out.text().length).toBe(atPause);
    await vm.resume();
    await sleep(200);
    expect(out.text().length).toBeGreaterThan(atPause);
    expect(await vm.stop()).toEqual({ reason: 'stopped' });
  });

  it('stops promptly with several vCPUs, including ones waiting for SIPI inside KVM', async () => {
    const vm = new MicroVm(cpl3(SPIN, { vcpus: 2, irqchip: true }));
    await vm.start();
    await vm.pause();
    await vm.resume();
    const t0 = Date.now();
    expect(await vm.stop()).toEqual({ reason: 'stopped' });
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('a guest triple fault stops cleanly with the reason and the registers', async () => {
    // 64-bit CPL0: ud2 with no IDT → #UD → #DF → triple fault.
    const vm = new MicroVm({
      memory: { size: 8 * MiB },
      boot: { kind: 'payload', payload: new Uint8Array([0x0f, 0x0b]), mode: 'long' },
      serial: false,
    });
    await vm.start();
    const stop = await vm.exited;
    expect(stop.reason).toBe('error');
    if (stop.reason !== 'error') return;
    expect(['triple_fault', 'internal_error']).toContain(stop.kind);
    expect(stop.regs?.rip).toBe(0x10_0000n);
  });

  it('the guest ends the run through the debug-exit port', async () => {
    // CPL3: mov dx, 0x501; mov al, 7; out dx, al
    const vm = new MicroVm(cpl3(new Uint8Array([0x66, 0xba, 0x01, 0x05, 0xb0, 0x07, 0xee, 0xeb, 0xfe])));
    await vm.start();
    expect(await vm.exited).toEqual({ reason: 'debug-exit', code: 7 });
  });

  it('rejects bad configs with TypeError/RangeError naming the field, and unbuildable VMs at start()', async () => {
    expect(
      () => new MicroVm({ memory: { size: 12345 }, boot: { kind: 'payload', payload: SPIN, mode: 'real' } }),
    ).toThrow(/memory.size/);
    expect(
      () =>
        new MicroVm({
          memory: { size: 2 * MiB },
          boot: { kind: 'payload', payload: 5 as unknown as Uint8Array, mode: 'real' },
        }),
    ).toThrow(TypeError);
    expect(() => new MicroVm(cpl3(SPIN, { vcpus: 0 }))).toThrow(RangeError);
    const vm = new MicroVm(cpl3(SPIN, { disks: [{ path: '/nonexistent/disk.img' }] }));
    await expect(vm.start()).rejects.toThrow(/disk/);
  });
});

describeKvm('MicroVm fd hygiene', () => {
  it("a disk VM's thread exit closes nothing it does not own (fds reused after stop stay open)", async () => {
    const { mkdtempSync, writeFileSync, openSync, fstatSync, closeSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'node-kvm-fd-'));
    const disk = join(dir, 'disk.img');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    const vm = new MicroVm(cpl3(SPIN, { disks: [{ path: disk }] }));
    await vm.start();
    await vm.stop();
    // Grab fd numbers the VM thread just released, then let the worker finish exiting.
    const mine = Array.from({ length: 8 }, () => openSync(disk, 'r'));
    await sleep(300);
    for (const fd of mine) expect(() => fstatSync(fd)).not.toThrow();
    for (const fd of mine) closeSync(fd);
    rmSync(dir, { recursive: true });
  });
});
