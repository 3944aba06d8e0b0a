/**
 * Builds what the bench runs besides the compiled TypeScript: the C baseline (gcc) and the guest programs
 * (GNU as + ld + objcopy, the same way scripts/build-payloads.mjs assembles test payloads), into build/bench/.
 * Rebuilds only what is older than its source.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface BenchBuild {
  /** The C baseline executable. */
  baseline: string;
  /** Folder with <guest>.bin files. */
  guestDir: string;
}

function newer(out: string, src: string): boolean {
  return existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs;
}

function run(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(
        `bench build: '${cmd}' not found (apt-get install ${cmd === 'gcc' ? 'gcc' : 'binutils'})`,
      );
    }
    throw e;
  }
}

export function buildBench(root: string): BenchBuild {
  const out = join(root, 'build', 'bench');
  const guestDir = join(out, 'guest');
  mkdirSync(guestDir, { recursive: true });
  const src = join(root, 'bench', 'baseline', 'kvm-bench.c');
  const baseline = join(out, 'kvm-bench');
  if (!newer(baseline, src)) run('gcc', ['-O2', '-g', '-Wall', '-Wextra', '-Werror', '-o', baseline, src]);
  const guestSrc = join(root, 'bench', 'guest');
  for (const file of readdirSync(guestSrc).filter((f) => f.endsWith('.S'))) {
    const s = join(guestSrc, file);
    const name = basename(file, '.S');
    const bin = join(guestDir, `${name}.bin`);
    if (newer(bin, s)) continue;
    const load = /#\s*node-kvm:\s*load=(0x[0-9a-fA-F]+)/.exec(readFileSync(s, 'utf8'))?.[1];
    if (load === undefined) throw new Error(`${s}: missing '# node-kvm: load=0x...' line`);
    const obj = join(guestDir, `${name}.o`);
    const elf = join(guestDir, `${name}.elf`);
    run('as', ['--64', '-o', obj, s]);
    run('ld', ['-m', 'elf_x86_64', '-nostdlib', '-static', '-Ttext', load, '-e', '_start', '-o', elf, obj]);
    run('objcopy', ['-O', 'binary', '-j', '.text', elf, bin]);
  }
  return { baseline, guestDir };
}

/** A guest program's bytes. */
export function guest(build: BenchBuild, name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(build.guestDir, `${name}.bin`)));
}
