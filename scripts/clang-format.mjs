#!/usr/bin/env node
// Runs clang-format over native/ (`--check` fails on any difference, `--fix` rewrites in place).
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const mode = process.argv[2] ?? '--check';
const dirs = ['native', 'test/guest', 'bench/baseline'];
const files = dirs.flatMap((d) => {
  try {
    return readdirSync(d)
      .filter((f) => /\.(cc|h|c)$/.test(f))
      .map((f) => join(d, f));
  } catch {
    return [];
  }
});
try {
  execFileSync('clang-format', mode === '--fix' ? ['-i', ...files] : ['--dry-run', '--Werror', ...files], {
    stdio: 'inherit',
  });
} catch (e) {
  if (e.code === 'ENOENT') {
    console.error('clang-format not found: apt-get install clang-format');
  }
  process.exit(1);
}
