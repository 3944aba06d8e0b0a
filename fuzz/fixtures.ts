/**
 * Regression fixtures: test/fuzz/fixtures/<target>/<hash>.bin is an input that once broke <target>, and
 * <hash>.txt beside it says how (the error, its `signature:`, and how it was found). A fixture whose .txt has an
 * `open: <reason>` line is a known bug not fixed yet: its replay is expected to fail until the fix lands, when
 * the line must go (test/fuzz/fixtures.test.ts enforces both directions).
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export interface Fixture {
  target: string;
  hash: string;
  path: string;
  input: Uint8Array;
  /** The failure signature recorded when it was found (for matching new failures to known ones). */
  signature: string;
  /** Why it is still failing, when it is a known open bug. */
  open: string | undefined;
}

/** test/fuzz/fixtures under a package root. */
export function fixturesRoot(root: string): string {
  return join(root, 'test', 'fuzz', 'fixtures');
}

/** Every fixture under `dir`, sorted by target then hash. */
export function listFixtures(dir: string): Fixture[] {
  if (!existsSync(dir)) return [];
  const out: Fixture[] = [];
  for (const target of readdirSync(dir).sort()) {
    const folder = join(dir, target);
    let names: string[];
    try {
      names = readdirSync(folder);
    } catch {
      continue;
    }
    for (const name of names.filter((n) => n.endsWith('.bin')).sort()) {
      const hash = name.slice(0, -4);
      const txtPath = join(folder, `${hash}.txt`);
      const txt = existsSync(txtPath) ? readFileSync(txtPath, 'utf8') : '';
      out.push({
        target,
        hash,
        path: join(folder, name),
        input: new Uint8Array(readFileSync(join(folder, name))),
        signature: /^signature: (.*)$/m.exec(txt)?.[1] ?? '',
        open: /^open: (.*)$/m.exec(txt)?.[1],
      });
    }
  }
  return out;
}
