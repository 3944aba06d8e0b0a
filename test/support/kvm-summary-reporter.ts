/** Prints how many tests that need /dev/kvm ran and how many were skipped, so CI logs show it plainly. */
import type { Reporter, TestModule } from 'vitest/node';

const KVM_DIRS = ['/test/kvm/', '/test/linux/'];

export default class KvmSummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let ran = 0;
    let skipped = 0;
    let failed = 0;
    for (const m of testModules) {
      if (!KVM_DIRS.some((d) => m.moduleId.includes(d))) continue;
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'skipped' || state === 'pending') skipped++;
        else ran++;
        if (state === 'failed') failed++;
      }
    }
    process.stdout.write(`\nKVM tests: ${ran} ran (${failed} failed), ${skipped} skipped\n`);
  }
}
