/**
 * Test gate for real-KVM tests: they run whenever /dev/kvm can be opened and skip, with the reason printed,
 * only when it cannot.
 */
import { describe } from 'vitest';
import { Kvm } from '../../lib/kvm/kvm.js';

function probe(): string | undefined {
  try {
    Kvm.open().close();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

export const kvmUnusableReason = probe();

if (kvmUnusableReason !== undefined) {
  console.warn(`[node-kvm] skipping KVM tests: ${kvmUnusableReason}`);
}

/** describe() that skips (printing why) when /dev/kvm is unusable. */
export const describeKvm = kvmUnusableReason === undefined ? describe : describe.skip;

/** Open file descriptors of this process. */
export async function openFdCount(): Promise<number> {
  const { readdirSync } = await import('node:fs');
  return readdirSync('/proc/self/fd').length;
}

/** The fds this process has open, as "number -> target" strings (to compare before and after a test). */
export async function openFds(): Promise<Set<string>> {
  const { readdirSync, readlinkSync } = await import('node:fs');
  const out = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      out.add(`${fd} -> ${readlinkSync(`/proc/self/fd/${fd}`)}`);
    } catch {
      // closed while listing
    }
  }
  return out;
}

/** fds open now that were not open in `before`: what a test leaked (others closing fds does not count). */
export async function fdsOpenedSince(before: Set<string>): Promise<string[]> {
  return [...(await openFds())].filter((f) => !before.has(f));
}
