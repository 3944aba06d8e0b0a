/**
 * One test per ioctl, on a good object and on a closed one (kvm-ioctls style), plus argument and errno errors.
 */
import { resolve } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Cap, ExitReason, GuestDebugFlag, Kvm, MpState, type Vcpu, type Vm } from '../../lib/kvm/index.js';
import { native, nativeAddonPath, type NativeGuestMapping } from '../../lib/native/binding.js';
import { describeKvm, openFdCount } from '../support/kvm.js';

const MiB = 1024 * 1024;

function closedError(fn: () => unknown): void {
  expect(fn).toThrow(expect.objectContaining({ code: 'ERR_KVM_CLOSED' }));
}

function mapping(size = 2 * MiB): NativeGuestMapping {
  return new (native().GuestMapping)(size, false, false, false, false, 'test');
}

describeKvm('the addon under test', () => {
  it('is the one NODE_KVM_ADDON names, when set (the cmake-js and ASan builds)', () => {
    native();
    const path = nativeAddonPath()!;
    console.log(`[node-kvm] addon: ${path}`);
    if (process.env.NODE_KVM_ADDON) expect(path).toBe(resolve(process.env.NODE_KVM_ADDON));
    else expect(path).toMatch(/build\/Release\/node_kvm\.node$/);
  });
});

describeKvm('KvmSystem (/dev/kvm)', () => {
  let kvm: Kvm;
  beforeEach(() => {
    kvm = Kvm.open();
  });
  afterEach(() => kvm.close());

  it('KVM_GET_API_VERSION', () => {
    expect(kvm.apiVersion()).toBe(12);
    kvm.close();
    closedError(() => kvm.apiVersion());
  });

  it('KVM_CHECK_EXTENSION', () => {
    expect(kvm.checkExtension('USER_MEMORY')).toBeGreaterThan(0);
    expect(kvm.checkExtension(Cap.IRQCHIP)).toBe(1);
    expect(kvm.checkExtension(0xfffff)).toBe(0);
    kvm.close();
    closedError(() => kvm.checkExtension('IRQCHIP'));
  });

  it('KVM_GET_VCPU_MMAP_SIZE', () => {
    expect(kvm.vcpuMmapSize()).toBeGreaterThanOrEqual(4096);
    kvm.close();
    closedError(() => kvm.vcpuMmapSize());
  });

  it('KVM_GET_SUPPORTED_CPUID', () => {
    const entries = kvm.supportedCpuid();
    expect(entries.length).toBeGreaterThan(10);
    const leaf0 = entries.find((e) => e.function === 0)!;
    const vendor = Buffer.alloc(12);
    vendor.writeUInt32LE(leaf0.ebx, 0);
    vendor.writeUInt32LE(leaf0.edx, 4);
    vendor.writeUInt32LE(leaf0.ecx, 8);
    expect(['GenuineIntel', 'AuthenticAMD', 'HygonGenuine']).toContain(vendor.toString('latin1'));
    const kvmLeaf = entries.find((e) => e.function === 0x4000_0000);
    expect(kvmLeaf).toBeDefined();
    kvm.close();
    // The cache is per object; a closed fresh handle must refuse.
    const k2 = Kvm.open();
    k2.close();
    closedError(() => k2.supportedCpuid());
  });

  it('KVM_GET_MSR_INDEX_LIST', () => {
    const list = kvm.msrIndexList();
    expect(list).toContain(0x10); // IA32_TSC
    kvm.close();
    closedError(() => kvm.msrIndexList());
  });

  it('KVM_CREATE_VM', () => {
    const vm = kvm.createVm();
    expect(vm.closed).toBe(false);
    vm.close();
    expect(vm.closed).toBe(true);
    kvm.close();
    closedError(() => kvm.createVm());
  });

  it('open() of a missing device says what to do', () => {
    expect(() => Kvm.open('/dev/does-not-exist-kvm')).toThrow(
      expect.objectContaining({
        code: 'ENOENT',
        syscall: 'open',
        message: expect.stringMatching(/modprobe/),
      }),
    );
  });

  it('open() of a device without permission names the kvm group and a udev rule', async () => {
    const { spawnSync } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    if (process.getuid?.() !== 0) {
      expect(() => Kvm.open()).not.toThrow();
      return;
    }
    // As root, ask an unprivileged user (nobody) to open /dev/kvm through the compiled package.
    const dist = fileURLToPath(new URL('../../dist/lib/kvm/kvm.js', import.meta.url));
    const script = `import(${JSON.stringify(dist)}).then(({ Kvm }) => { try { Kvm.open(); console.log('opened'); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); } })`;
    const child = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
    expect(child.stderr).toBe('');
    const result = JSON.parse(child.stdout) as { code: string; message: string };
    expect(result.code).toBe('EACCES');
    expect(result.message).toMatch(/kvm' group/);
    expect(result.message).toMatch(/udev/);
  });
});

describeKvm('VmFd', () => {
  let kvm: Kvm;
  let vm: Vm;
  const maps: NativeGuestMapping[] = [];
  beforeEach(() => {
    kvm = Kvm.open();
    vm = kvm.createVm();
  });
  afterEach(() => {
    vm.close();
    for (const m of maps.splice(0)) m.close();
    kvm.close();
  });
  const newMapping = (size = 2 * MiB) => {
    const m = mapping(size);
    maps.push(m);
    return m;
  };

  it('KVM_CHECK_EXTENSION on the VM', () => {
    expect(vm.checkExtension('IOEVENTFD')).toBe(1);
    vm.close();
    closedError(() => vm.checkExtension('IOEVENTFD'));
  });

  it('KVM_SET_USER_MEMORY_REGION: add, read-only, dirty log, delete, EEXIST on overlap', () => {
    const m = newMapping(4 * MiB);
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 2 * MiB, mapping: m });
    expect(m.slotRefs).toBe(1);
    vm.setUserMemoryRegion({
      slot: 1,
      guestPhysAddr: 2 * MiB,
      size: MiB,
      mapping: m,
      mappingOffset: 2 * MiB,
      readonly: true,
    });
    vm.setUserMemoryRegion({
      slot: 2,
      guestPhysAddr: 3 * MiB,
      size: MiB,
      mapping: m,
      mappingOffset: 3 * MiB,
      logDirtyPages: true,
    });
    expect(m.slotRefs).toBe(3);
    expect(() => vm.setUserMemoryRegion({ slot: 3, guestPhysAddr: MiB, size: 2 * MiB, mapping: m })).toThrow(
      expect.objectContaining({ code: 'EEXIST', errno: 17, syscall: 'KVM_SET_USER_MEMORY_REGION' }),
    );
    vm.deleteUserMemoryRegion(1);
    expect(m.slotRefs).toBe(2);
    expect(() => m.close()).toThrow(expect.objectContaining({ code: 'ERR_KVM_MAPPING_IN_USE' }));
    vm.close();
    expect(m.slotRefs).toBe(0);
    closedError(() => vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 2 * MiB, mapping: m }));
  });

  it('KVM_SET_USER_MEMORY_REGION rejects ranges outside the mapping and bad alignment', () => {
    const m = newMapping();
    expect(() => vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 4 * MiB, mapping: m })).toThrow(
      RangeError,
    );
    expect(() => vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 100, size: 2 * MiB, mapping: m })).toThrow(
      RangeError,
    );
  });

  it('KVM_SET_TSS_ADDR', () => {
    vm.setTssAddr(0xfeffd000);
    vm.close();
    closedError(() => vm.setTssAddr(0xfeffd000));
  });

  it('KVM_SET_IDENTITY_MAP_ADDR', () => {
    vm.setIdentityMapAddr(0xfeffc000);
    vm.close();
    closedError(() => vm.setIdentityMapAddr(0xfeffc000));
  });

  it('KVM_CREATE_IRQCHIP (EEXIST the second time)', () => {
    vm.createIrqchip();
    expect(() => vm.createIrqchip()).toThrow(
      expect.objectContaining({ code: 'EEXIST', syscall: 'KVM_CREATE_IRQCHIP' }),
    );
    vm.close();
    closedError(() => vm.createIrqchip());
  });

  it('KVM_CREATE_PIT2 (needs an irqchip)', () => {
    expect(() => vm.createPit2()).toThrow(expect.objectContaining({ syscall: 'KVM_CREATE_PIT2' }));
    vm.createIrqchip();
    vm.createPit2();
    vm.close();
    closedError(() => vm.createPit2());
  });

  it('KVM_IRQ_LINE', () => {
    expect(() => vm.irqLine(4, true)).toThrow(expect.objectContaining({ syscall: 'KVM_IRQ_LINE' }));
    vm.createIrqchip();
    vm.irqLine(4, true);
    vm.irqLine(4, false);
    vm.close();
    closedError(() => vm.irqLine(4, true));
  });

  it('KVM_IOEVENTFD: assign, duplicate (EEXIST), deassign', () => {
    const efd = new (native().EventFd)(0, true, false);
    try {
      vm.registerIoeventfd({ eventfd: efd.fd, addr: 0xd0000050, length: 4, datamatch: 0 });
      expect(() =>
        vm.registerIoeventfd({ eventfd: efd.fd, addr: 0xd0000050, length: 4, datamatch: 0 }),
      ).toThrow(expect.objectContaining({ code: 'EEXIST', syscall: 'KVM_IOEVENTFD' }));
      vm.registerIoeventfd({ eventfd: efd.fd, addr: 0x3f8, length: 1, pio: true });
      vm.unregisterIoeventfd({ eventfd: efd.fd, addr: 0xd0000050, length: 4, datamatch: 0 });
      vm.close();
      closedError(() => vm.registerIoeventfd({ eventfd: efd.fd, addr: 0x3f8, length: 1, pio: true }));
    } finally {
      efd.close();
    }
  });

  it('KVM_IRQFD: assign, deassign', () => {
    const efd = new (native().EventFd)(0, true, false);
    try {
      vm.createIrqchip();
      vm.registerIrqfd({ eventfd: efd.fd, gsi: 16 });
      vm.unregisterIrqfd({ eventfd: efd.fd, gsi: 16 });
      vm.close();
      closedError(() => vm.registerIrqfd({ eventfd: efd.fd, gsi: 16 }));
    } finally {
      efd.close();
    }
  });

  it('KVM_GET_DIRTY_LOG (and a bitmap too small is refused before the ioctl)', () => {
    const m = newMapping();
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 2 * MiB, mapping: m, logDirtyPages: true });
    const bitmap = vm.getDirtyLog(0, 2 * MiB);
    expect(bitmap.length).toBe(64);
    expect(
      () =>
        native().KvmSystem &&
        (vm as unknown as { fd: { getDirtyLog(s: number, b: Uint8Array): void } }).fd.getDirtyLog(
          0,
          new Uint8Array(8),
        ),
    ).toThrow(RangeError);
    expect(() => vm.getDirtyLog(5, 2 * MiB)).toThrow(
      expect.objectContaining({ syscall: 'KVM_GET_DIRTY_LOG' }),
    );
    vm.close();
    closedError(() => vm.getDirtyLog(0, 2 * MiB));
  });

  it('KVM_GET_CLOCK / KVM_SET_CLOCK', () => {
    const c = vm.getClock();
    expect(typeof c.clock).toBe('bigint');
    vm.setClock({ ...c, flags: 0, clock: c.clock + 1_000_000n });
    expect(vm.getClock().clock).toBeGreaterThanOrEqual(c.clock + 1_000_000n);
    vm.close();
    closedError(() => vm.getClock());
    closedError(() => vm.setClock(c));
  });

  it('KVM_CREATE_VCPU (EEXIST for a duplicate id)', () => {
    const v = vm.createVcpu(0);
    expect(v.id).toBe(0);
    expect(() => vm.createVcpu(0)).toThrow(
      expect.objectContaining({ code: 'EEXIST', syscall: 'KVM_CREATE_VCPU' }),
    );
    vm.close();
    expect(v.closed).toBe(true);
    closedError(() => vm.createVcpu(1));
  });

  it('native constructors cannot be called from JS', () => {
    const n = native() as unknown as Record<string, new (...a: unknown[]) => unknown>;
    expect(() => new n.VmFd(3, 12288)).toThrow(TypeError);
    expect(() => new n.VcpuFd(3, 12288, 0)).toThrow(TypeError);
  });
});

describeKvm('VcpuFd', () => {
  let kvm: Kvm;
  let vm: Vm;
  let vcpu: Vcpu;
  let m: NativeGuestMapping;
  beforeEach(() => {
    kvm = Kvm.open();
    vm = kvm.createVm();
    m = mapping();
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 2 * MiB, mapping: m });
    vcpu = vm.createVcpu(0);
  });
  afterEach(() => {
    vm.close();
    m.close();
    kvm.close();
  });

  function realModeAt(entry: number, code: number[]): void {
    new Uint8Array(m.buffer).set(code, entry);
    const s = vcpu.getSregs();
    s.cs = { ...s.cs, base: 0n, selector: 0 };
    vcpu.setSregs(s);
    vcpu.setRegs({ rip: entry, rflags: 2 });
  }

  it('KVM_RUN returns decoded exits and the raw reason', () => {
    realModeAt(0x1000, [0xb0, 0x41, 0xe6, 0xe9, 0xf4]); // mov al,'A'; out 0xe9,al; hlt
    const exit = vcpu.run();
    expect(exit.reason).toBe('io');
    if (exit.reason !== 'io') return;
    expect([exit.port, exit.size, exit.isWrite, exit.value]).toEqual([0xe9, 1, true, 0x41]);
    expect(vcpu.runRaw()).toBe(ExitReason.HLT);
    vcpu.close();
    closedError(() => vcpu.run());
    expect(vcpu.kvmRun.bytes.length).toBe(0); // the kvm_run view is detached, not dangling
  });

  it('immediate_exit / kick make KVM_RUN return an intr exit', () => {
    realModeAt(0x1000, [0xeb, 0xfe]); // jmp $
    vcpu.kick();
    expect(vcpu.run().reason).toBe('intr');
    vcpu.kvmRun.immediateExit = false;
    vcpu.kvmRun.immediateExit = true;
    expect(vcpu.run().reason).toBe('intr');
    vcpu.close();
    closedError(() => vcpu.kick());
  });

  it('KVM_GET_REGS / KVM_SET_REGS', () => {
    vcpu.setRegs({ rax: 0x1234n, rbx: 0xffff_ffff_ffff_ffffn });
    const r = vcpu.getRegs();
    expect(r.rax).toBe(0x1234n);
    expect(r.rbx).toBe(0xffff_ffff_ffff_ffffn);
    vcpu.close();
    closedError(() => vcpu.getRegs());
    closedError(() => vcpu.setRegs({ rax: 1 }));
  });

  it('KVM_GET_SREGS / KVM_SET_SREGS', () => {
    const s = vcpu.getSregs();
    expect(s.cs.selector).toBe(0xf000);
    s.cr0 &= ~(3n << 29n); // clear CD and NW together (NW without CD is invalid)
    vcpu.setSregs(s);
    expect(vcpu.getSregs().cr0 & (3n << 29n)).toBe(0n);
    vcpu.close();
    closedError(() => vcpu.getSregs());
    closedError(() => vcpu.setSregs(s));
  });

  it('KVM_GET_FPU / KVM_SET_FPU', () => {
    const f = vcpu.getFpu();
    expect(f.fcw).toBe(0x37f);
    f.mxcsr = 0x1f80;
    f.xmm[0] = 0xaa;
    vcpu.setFpu(f);
    const g = vcpu.getFpu();
    expect(g.xmm[0]).toBe(0xaa);
    vcpu.close();
    closedError(() => vcpu.getFpu());
  });

  it('KVM_GET_MSRS / KVM_SET_MSRS (and a rejected MSR is named)', () => {
    const SYSENTER_CS = 0x174;
    vcpu.setMsrs([{ index: SYSENTER_CS, data: 0x10n }]);
    expect(vcpu.getMsrs([SYSENTER_CS])[0].data).toBe(0x10n);
    expect(() => vcpu.setMsrs([{ index: 0xdead_beef, data: 0n }])).toThrow(/0xdeadbeef/);
    vcpu.close();
    closedError(() => vcpu.getMsrs([SYSENTER_CS]));
  });

  it('KVM_SET_CPUID2', () => {
    vcpu.setCpuid2(kvm.supportedCpuid());
    vcpu.close();
    closedError(() => vcpu.setCpuid2([]));
  });

  it('KVM_GET_LAPIC / KVM_SET_LAPIC (with an in-kernel irqchip)', () => {
    const k = Kvm.open();
    const vm2 = k.createVm();
    try {
      vm2.createIrqchip();
      const v = vm2.createVcpu(0);
      const page = v.getLapic();
      expect(page.length).toBe(1024);
      const id = new DataView(page.buffer).getUint32(0x20, true) >>> 24;
      expect(id).toBe(0);
      v.setLapic(page);
      expect(() => v.setLapic(new Uint8Array(10))).toThrow(RangeError);
      v.close();
      closedError(() => v.getLapic());
    } finally {
      vm2.close();
      k.close();
    }
  });

  it('KVM_GET_MP_STATE / KVM_SET_MP_STATE', () => {
    expect(vcpu.getMpState()).toBe(MpState.RUNNABLE);
    vcpu.setMpState(MpState.RUNNABLE);
    vcpu.close();
    closedError(() => vcpu.getMpState());
  });

  it('KVM_GET_VCPU_EVENTS / KVM_SET_VCPU_EVENTS', () => {
    const e = vcpu.getVcpuEvents();
    expect(e.exception.injected).toBe(0);
    vcpu.setVcpuEvents(e);
    vcpu.close();
    closedError(() => vcpu.getVcpuEvents());
  });

  it('KVM_SET_GUEST_DEBUG (single-step gives a debug exit)', () => {
    realModeAt(0x1000, [0x90, 0x90, 0xf4]); // nop; nop; hlt
    vcpu.setGuestDebug({ control: GuestDebugFlag.ENABLE | GuestDebugFlag.SINGLESTEP, debugreg: [] });
    const exit = vcpu.run();
    expect(exit.reason).toBe('debug');
    vcpu.setGuestDebug({ control: 0, debugreg: [] });
    vcpu.close();
    closedError(() => vcpu.setGuestDebug({ control: 0, debugreg: [] }));
  });

  it('bad arguments: TypeError for types, RangeError for sizes', () => {
    const fd = vcpu.nativeHandle;
    expect(() => fd.getRegs(new Uint8Array(3))).toThrow(RangeError);
    expect(() => fd.getRegs('x' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => fd.setMsrs(new Uint8Array(4))).toThrow(RangeError);
    expect(() => fd.setCpuid2(new Uint8Array([5, 0, 0, 0, 0, 0, 0, 0]))).toThrow(RangeError);
  });
});

describeKvm('GuestMapping and EventFd', () => {
  it('anonymous, THP, memfd mappings are usable and unmapped exactly once', () => {
    for (const [memfd, thp] of [
      [false, false],
      [false, true],
      [true, false],
    ] as const) {
      const m = new (native().GuestMapping)(4 * MiB, false, memfd, thp, false, 'test');
      const view = new Uint8Array(m.buffer);
      view[4 * MiB - 1] = 7;
      expect(view[4 * MiB - 1]).toBe(7);
      expect(m.fd >= 0).toBe(memfd);
      m.madvise(0, 4096, 4);
      m.close();
      m.close();
      expect(view.length).toBe(0);
      closedError(() => m.buffer);
    }
  });

  it('rejects bad sizes and argument types', () => {
    const G = native().GuestMapping;
    expect(() => new G(0, false, false, false, false, 'x')).toThrow(RangeError);
    expect(() => new G(4097, false, false, false, false, 'x')).toThrow(RangeError);
    expect(() => new G(MiB, true, false, false, false, 'x')).toThrow(RangeError); // hugetlb needs 2 MiB
    expect(() => new G(-1, false, false, false, false, 'x')).toThrow(RangeError);
    expect(() => new G('1' as unknown as number, false, false, false, false, 'x')).toThrow(TypeError);
  });

  it('EventFd read/write/close', () => {
    const e = new (native().EventFd)(0, true, false);
    expect(e.read()).toBe(0);
    e.write(2);
    e.write();
    expect(e.read()).toBe(3);
    expect(() => e.write(0)).toThrow(RangeError);
    e.close();
    closedError(() => e.read());
  });
});

describeKvm('resources', () => {
  it('1,000 VM create/close cycles leave the fd count unchanged', async () => {
    const before = await openFdCount();
    const kvm = Kvm.open();
    for (let i = 0; i < 1000; i++) {
      const vm = kvm.createVm();
      const m = mapping(2 * MiB);
      vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 2 * MiB, mapping: m });
      vm.createVcpu(0);
      vm.close();
      m.close();
    }
    kvm.close();
    expect(await openFdCount()).toBe(before);
  });
});
