/** `node-kvm check [--json] [--no-speed] [--device PATH]`: can this host run KVM, and how well. */
import { checkHost, formatRate, type HostReport } from '../vmm/host-check.js';

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

export function formatReport(r: HostReport): string {
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(28)} ${v}`);
  lines.push('Host');
  row('CPU', r.cpu.model);
  row('virtualization flag', r.cpu.vendorFlag === 'none' ? 'none (no vmx/svm)' : r.cpu.vendorFlag);
  const mods = Object.entries(r.modules)
    .filter(([, v]) => v)
    .map(([k]) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase()));
  row('kvm modules loaded', mods.length ? mods.join(', ') : 'none');
  row('nested parameter', r.nested ?? 'n/a');
  row('PVM (software KVM)', yesNo(r.pvm));
  row(
    'hugetlbfs',
    `${r.hugepages.mounted ? 'mounted' : 'not mounted'}; HugePages_Total ${r.hugepages.total}, Free ${r.hugepages.free}`,
  );
  row('transparent huge pages', r.thp ?? 'unavailable');
  lines.push('/dev/kvm');
  row('exists', yesNo(r.device.exists));
  row('opens read-write', r.device.usable ? 'yes' : `no: ${r.device.error ?? ''}`);
  if (r.apiVersion !== undefined)
    row('API version', `${r.apiVersion}${r.apiVersion === 12 ? ' (ok)' : ' (expected 12)'}`);
  if (r.capabilities.length > 0) {
    lines.push('Capabilities');
    for (const c of r.capabilities) {
      row(
        c.name,
        `${c.value > 0 ? c.value : 'absent'}${c.required ? (c.ok ? '' : '  <-- required') : ' (optional)'}`,
      );
    }
  }
  if (r.speed) {
    lines.push('Measured guest speed');
    const fmt = (m?: { instructionsPerSecond: number; iterations: number; seconds: number }) =>
      m
        ? `${formatRate(m.instructionsPerSecond)} (${m.iterations} iterations in ${m.seconds.toFixed(3)} s)`
        : 'n/a';
    row('CPL0 (real mode loop)', fmt(r.speed.cpl0));
    row('CPL3 (64-bit user loop)', fmt(r.speed.cpl3));
    if (r.speed.error) row('error', r.speed.error);
  }
  lines.push('');
  lines.push(`Verdict: ${r.verdict}`);
  for (const n of r.notes) lines.push(`Note: ${n}`);
  return lines.join('\n');
}

export function checkCommand(args: string[]): number {
  let json = false;
  let measureSpeed = true;
  let path: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--json') json = true;
    else if (a === '--no-speed') measureSpeed = false;
    else if (a === '--device') path = args[++i];
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: node-kvm check [--json] [--no-speed] [--device PATH]\n');
      return 0;
    } else {
      process.stderr.write(`node-kvm check: unknown option ${a}\n`);
      return 2;
    }
  }
  const report = checkHost({ path, measureSpeed });
  process.stdout.write(json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report) + '\n');
  return report.usable ? 0 : 1;
}
