/** `node-kvm check` against this host, as the CLI a user runs (compiled bin). */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import type { HostReport } from '../../lib/vmm/host-check.js';
import { describeKvm } from '../support/kvm.js';

const bin = fileURLToPath(new URL('../../bin/node-kvm.js', import.meta.url));

function run(args: string[], options: { uid?: number; gid?: number } = {}) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', ...options });
}

describeKvm('node-kvm check', () => {
  it('--json reports a usable /dev/kvm, API 12, the capabilities, PVM-ness and measured speeds', () => {
    const r = run(['check', '--json']);
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as HostReport;
    expect(report.usable).toBe(true);
    expect(report.apiVersion).toBe(12);
    expect(report.capabilities.find((c) => c.name === 'IRQCHIP')?.ok).toBe(true);
    const flags = readFileSync('/proc/cpuinfo', 'utf8');
    const expectPvm = existsSync('/sys/module/kvm_pvm') && !/\b(vmx|svm)\b/.test(flags);
    expect(report.pvm).toBe(expectPvm);
    expect(report.speed?.cpl0?.instructionsPerSecond).toBeGreaterThan(100_000);
    expect(report.speed?.cpl3?.instructionsPerSecond).toBeGreaterThan(100_000);
    if (expectPvm) {
      // Kernel-mode code is emulated here: user-mode code must be far faster, and the verdict says so.
      expect(report.speed!.cpl3!.instructionsPerSecond).toBeGreaterThan(
        20 * report.speed!.cpl0!.instructionsPerSecond,
      );
      expect(report.verdict).toMatch(/PVM.*emulated.*stock Linux kernels will not boot/);
    }
  });

  it('human output names the verdict and the measured speeds', () => {
    const r = run(['check']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Verdict: KVM is usable/);
    expect(r.stdout).toMatch(/CPL0 \(real mode loop\)\s+[\d.]+ [MG] instr\/s/);
    expect(r.stdout).toMatch(/CPL3 \(64-bit user loop\)\s+[\d.]+ [MG] instr\/s/);
  });

  it('a user without access to /dev/kvm gets exit 1 and one clear message with the fix', () => {
    if (process.getuid?.() !== 0) return;
    const r = run(['check', '--no-speed'], { uid: 65534, gid: 65534 });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/Verdict: KVM is not usable: cannot open \/dev\/kvm: permission denied/);
    expect(r.stdout).toMatch(/kvm' group/);
    expect(r.stdout).toMatch(/udev/);
  });

  it('rejects unknown options', () => {
    expect(run(['check', '--bogus']).status).toBe(2);
    expect(run(['bogus']).status).toBe(2);
  });
});
