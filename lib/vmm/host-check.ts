/**
 * What this host can run: CPU virtualization flags, KVM modules and parameters, hugepages and THP, and the
 * truth from /dev/kvm itself (open, API version, capabilities), plus measured guest speed at CPL0 and CPL3.
 * The verdict follows /dev/kvm, not the CPU flags: nested and software (PVM) KVM have no vmx/svm flag.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { setupLongMode, setupRealMode } from '../arch/x86_64/modes.js';
import { Cap, ExitReason } from '../kvm/constants.js';
import { Kvm } from '../kvm/kvm.js';
import { allocateGuestMemory, readHugepagePool, readThpMode } from '../memory/allocate.js';
import { applyCpuSetup } from './cpu-setup.js';

export interface CapabilityCheck {
  name: string;
  value: number;
  required: boolean;
  ok: boolean;
}

export interface SpeedMeasurement {
  /** Guest instructions per second (the loop's two instructions per iteration). */
  instructionsPerSecond: number;
  iterations: number;
  seconds: number;
}

export interface HostReport {
  cpu: { vendorFlag: 'vmx' | 'svm' | 'none'; model: string };
  modules: { kvm: boolean; kvmIntel: boolean; kvmAmd: boolean; kvmPvm: boolean };
  nested: string | undefined;
  hugepages: { mounted: boolean; total: number; free: number; pageSize: number };
  thp: string | undefined;
  device: { path: string; exists: boolean; usable: boolean; error?: string; code?: string };
  apiVersion?: number;
  capabilities: CapabilityCheck[];
  pvm: boolean;
  speed?: { cpl0?: SpeedMeasurement; cpl3?: SpeedMeasurement; error?: string };
  /** True when /dev/kvm works and every required capability is present. */
  usable: boolean;
  verdict: string;
  notes: string[];
}

const REQUIRED: (keyof typeof Cap)[] = [
  'USER_MEMORY',
  'IRQCHIP',
  'IOEVENTFD',
  'IRQFD',
  'IMMEDIATE_EXIT',
  'SET_TSS_ADDR',
  'SET_IDENTITY_MAP_ADDR',
  'EXT_CPUID',
  'MP_STATE',
  'VCPU_EVENTS',
];
const OPTIONAL: (keyof typeof Cap)[] = [
  'PIT2',
  'READONLY_MEM',
  'SPLIT_IRQCHIP',
  'IOEVENTFD_ANY_LENGTH',
  'SIGNAL_MSI',
  'TSC_DEADLINE_TIMER',
  'X2APIC_API',
  'NR_VCPUS',
  'MAX_VCPUS',
  'NR_MEMSLOTS',
];

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function cpuInfo(): HostReport['cpu'] {
  const text = read('/proc/cpuinfo') ?? '';
  const flags = /^flags\s*:(.*)$/m.exec(text)?.[1].split(/\s+/) ?? [];
  const model = /^model name\s*:\s*(.*)$/m.exec(text)?.[1] ?? 'unknown';
  return { vendorFlag: flags.includes('vmx') ? 'vmx' : flags.includes('svm') ? 'svm' : 'none', model };
}

function modules(): HostReport['modules'] {
  const has = (m: string) => existsSync(`/sys/module/${m}`);
  return { kvm: has('kvm'), kvmIntel: has('kvm_intel'), kvmAmd: has('kvm_amd'), kvmPvm: has('kvm_pvm') };
}

function nestedParam(): string | undefined {
  for (const m of ['kvm_intel', 'kvm_amd']) {
    const v = read(`/sys/module/${m}/parameters/nested`);
    if (v !== undefined) return v.trim();
  }
  return undefined;
}

function hugepageInfo(): HostReport['hugepages'] {
  const mounts = read('/proc/mounts') ?? '';
  const pool = (() => {
    try {
      return readHugepagePool();
    } catch {
      return { total: 0, free: 0, pageSize: 0 };
    }
  })();
  return { mounted: / hugetlbfs /.test(mounts) || existsSync('/dev/hugepages'), ...pool };
}

const MiB = 1024 * 1024;

/** Times a real-mode `dec ecx; jnz` loop (CPL0: emulated on PVM hosts, native on VMX/SVM). */
function measureCpl0(kvm: Kvm): SpeedMeasurement {
  // 0: 66 b9 imm32  mov ecx, N   6: 66 49  dec ecx   8: 75 fc  jnz 6   10: f4  hlt
  const code = (n: number) => {
    const b = new Uint8Array([0x66, 0xb9, 0, 0, 0, 0, 0x66, 0x49, 0x75, 0xfc, 0xf4]);
    new DataView(b.buffer).setUint32(2, n, true);
    return b;
  };
  return measure(kvm, (vm, mem) => {
    const vcpu = vm.createVcpu(0);
    return (n: number) => {
      mem.write(0x1000, code(n));
      applyCpuSetup(vcpu, mem, setupRealMode(vcpu.getSregs(), { entry: 0x1000 }));
      const start = process.hrtime.bigint();
      const reason = vcpu.runRaw();
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (reason !== ExitReason.HLT) throw new Error(`CPL0 speed loop ended with exit ${reason}`);
      return seconds;
    };
  });
}

/** Times the same loop in 64-bit user mode (CPL3, native even on PVM hosts). */
function measureCpl3(kvm: Kvm): SpeedMeasurement {
  // 0: b9 imm32  mov ecx, N   5: ff c9  dec ecx   7: 75 fc  jnz 5   9: e6 99  out 0x99, al   11: eb fe  jmp .
  const code = (n: number) => {
    const b = new Uint8Array([0xb9, 0, 0, 0, 0, 0xff, 0xc9, 0x75, 0xfc, 0xe6, 0x99, 0xeb, 0xfe]);
    new DataView(b.buffer).setUint32(1, n, true);
    return b;
  };
  return measure(kvm, (vm, mem) => {
    const vcpu = vm.createVcpu(0);
    return (n: number) => {
      mem.write(0x10_0000, code(n));
      applyCpuSetup(vcpu, mem, setupLongMode(vcpu.getSregs(), { entry: 0x10_0000, cpl3: true }));
      const start = process.hrtime.bigint();
      const reason = vcpu.runRaw();
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (reason !== ExitReason.IO) throw new Error(`CPL3 speed loop ended with exit ${reason}`);
      return seconds;
    };
  });
}

type Runner = (iterations: number) => number;

function measure(
  kvm: Kvm,
  prepare: (vm: ReturnType<Kvm['createVm']>, mem: ReturnType<typeof allocateGuestMemory>) => Runner,
): SpeedMeasurement {
  const vm = kvm.createVm();
  const mem = allocateGuestMemory([{ gpa: 0, size: 4 * MiB }], { hugepages: 'none' });
  try {
    mem.attach(vm);
    const run = prepare(vm, mem);
    // Grow the loop until it takes long enough to time (0.1 s), whatever the host's speed.
    let n = 20_000;
    let seconds = run(n);
    while (seconds < 0.1 && n < 1_000_000_000) {
      n = Math.min(1_000_000_000, n * Math.max(2, Math.ceil((0.12 / Math.max(seconds, 1e-6)) * 1.2)));
      seconds = run(n);
    }
    return { instructionsPerSecond: (2 * n) / seconds, iterations: n, seconds };
  } finally {
    vm.close();
    mem.close();
  }
}

export function formatRate(ips: number): string {
  return ips >= 1e9 ? `${(ips / 1e9).toFixed(1)} G instr/s` : `${(ips / 1e6).toFixed(1)} M instr/s`;
}

/** Collects the host report. `measureSpeed` runs the two tiny guest loops (about a second in all). */
export function checkHost(options: { path?: string; measureSpeed?: boolean } = {}): HostReport {
  const path = options.path ?? '/dev/kvm';
  const cpu = cpuInfo();
  const mods = modules();
  const pvm = mods.kvmPvm && cpu.vendorFlag === 'none';
  const report: HostReport = {
    cpu,
    modules: mods,
    nested: nestedParam(),
    hugepages: hugepageInfo(),
    thp: readThpMode(),
    device: { path, exists: existsSync(path), usable: false },
    capabilities: [],
    pvm,
    usable: false,
    verdict: '',
    notes: [],
  };
  let kvm: Kvm | undefined;
  try {
    kvm = Kvm.open(path);
    report.device.usable = true;
    report.apiVersion = kvm.apiVersion();
    for (const name of [...REQUIRED, ...OPTIONAL]) {
      const value = kvm.checkExtension(name);
      const required = REQUIRED.includes(name);
      report.capabilities.push({ name, value, required, ok: value > 0 || !required });
    }
    if (options.measureSpeed ?? true) {
      report.speed = {};
      try {
        report.speed.cpl0 = measureCpl0(kvm);
        report.speed.cpl3 = measureCpl3(kvm);
      } catch (e) {
        report.speed.error = (e as Error).message;
      }
    }
  } catch (e) {
    const err = e as Error & { code?: string };
    report.device.error = err.message;
    report.device.code = err.code;
  } finally {
    kvm?.close();
  }
  const missing = report.capabilities.filter((c) => !c.ok).map((c) => c.name);
  report.usable = report.device.usable && missing.length === 0;

  if (!report.device.usable) {
    report.verdict = `KVM is not usable: ${report.device.error ?? 'unknown error'}`;
  } else if (missing.length > 0) {
    report.verdict = `KVM opens but lacks required capabilities: ${missing.join(', ')}`;
  } else if (pvm) {
    const c0 = report.speed?.cpl0;
    const c3 = report.speed?.cpl3;
    report.verdict =
      'KVM is usable, but it is PVM (software virtualization, kvm_pvm): kernel-mode guest code is emulated' +
      (c0 ? `: ~${formatRate(c0.instructionsPerSecond)}` : '') +
      (c3 ? `; user-mode (CPL3) guest code runs natively at ~${formatRate(c3.instructionsPerSecond)}` : '') +
      '. Tiny payloads and CPL3 guest code run well; stock Linux kernels will not boot.';
  } else {
    const c0 = report.speed?.cpl0;
    report.verdict =
      'KVM is usable with hardware virtualization' +
      (c0 ? ` (guest code at ~${formatRate(c0.instructionsPerSecond)})` : '') +
      '. Payloads, firmware and Linux guests can run.';
  }
  if (cpu.vendorFlag === 'none' && report.device.usable && !pvm) {
    report.notes.push('no vmx/svm CPU flag, yet /dev/kvm works: nested virtualization hides the flag');
  }
  if (report.hugepages.total === 0) {
    report.notes.push(
      'no hugetlb pages reserved; reserve with: echo 512 > /proc/sys/vm/nr_hugepages (1 GiB)',
    );
  }
  if (report.thp === 'never') report.notes.push('transparent huge pages are disabled');
  return report;
}

/** Devices under /dev that look like KVM, for diagnostics. */
export function kvmDeviceNodes(): string[] {
  try {
    return readdirSync('/dev').filter((n) => n.startsWith('kvm'));
  } catch {
    return [];
  }
}
