/**
 * Kernel module dependency resolution for a guest initramfs: from `modules.dep` when the package has one, or
 * from each module's own `.modinfo` `depends=` (Debian's linux-image packages ship no modules.dep; depmod
 * writes it at install time). Produces the insmod order: dependencies first.
 */
import { BootError } from '../errors.js';

/** "virtio-rng" and "virtio_rng" are the same module to the kernel. */
export function moduleName(fileOrName: string): string {
  const base = fileOrName.split('/').pop() ?? fileOrName;
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** Parses modules.dep ("kernel/a/b.ko: kernel/c.ko kernel/d.ko") into module → [paths of deps]. */
export function parseModulesDep(text: string): Map<string, { path: string; deps: string[] }> {
  const out = new Map<string, { path: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(moduleName);
    out.set(moduleName(path), { path, deps });
  }
  return out;
}

/** The `depends=` list in an (uncompressed) module's .modinfo section. */
export function modinfoDepends(ko: Uint8Array): string[] {
  const needle = new TextEncoder().encode('\0depends=');
  const at = indexOf(ko, needle);
  if (at < 0) return [];
  let end = at + needle.length;
  while (end < ko.length && ko[end] !== 0) end++;
  const text = new TextDecoder().decode(ko.subarray(at + needle.length, end));
  return text.split(',').filter(Boolean).map(moduleName);
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  const first = needle[0];
  outer: for (
    let i = hay.indexOf(first);
    i >= 0 && i <= hay.length - needle.length;
    i = hay.indexOf(first, i + 1)
  ) {
    for (let j = 1; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Orders `wanted` modules and their dependencies so each comes after what it needs. `deps(name)` returns
 * the direct dependencies of a module, or undefined if the kernel has no such module file; names in
 * `builtin` are part of the kernel image and are skipped.
 */
export function resolveModuleOrder(
  wanted: readonly string[],
  deps: (name: string) => readonly string[] | undefined,
  builtin: ReadonlySet<string> = new Set(),
): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, chain: string[]) => {
    const n = moduleName(name);
    if (builtin.has(n) || state.get(n) === 'done') return;
    if (state.get(n) === 'visiting') {
      throw new BootError('BAD_CPIO', `module dependency cycle: ${[...chain, n].join(' -> ')}`);
    }
    const d = deps(n);
    if (d === undefined) {
      throw new BootError(
        'BAD_CPIO',
        `kernel module ${n} not found` + (chain.length ? ` (needed by ${chain[chain.length - 1]})` : ''),
      );
    }
    state.set(n, 'visiting');
    for (const dep of d) visit(dep, [...chain, n]);
    state.set(n, 'done');
    order.push(n);
  };
  for (const w of wanted) visit(w, []);
  return order;
}
