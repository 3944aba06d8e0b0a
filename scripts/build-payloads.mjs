#!/usr/bin/env node
// Assembles guest payloads from source with binutils: each `*.S` under the payload folders becomes
// build/payloads/<name>.bin, linked at the address its `# node-kvm: load=0x...` line names.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { basename, join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'build', 'payloads');
const sourceDirs = ['examples/payloads', 'test/payloads']
  .map((d) => join(root, d))
  .filter((d) => existsSync(d));
mkdirSync(outDir, { recursive: true });

function run(cmd, args) {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    if (e.code === 'ENOENT') {
      console.error(`build-payloads: '${cmd}' not found; install binutils (apt-get install binutils)`);
    }
    throw e;
  }
}

let built = 0;
for (const dir of sourceDirs) {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.S'))) {
    const src = join(dir, file);
    const name = basename(file, '.S');
    const load = /#\s*node-kvm:\s*load=(0x[0-9a-fA-F]+)/.exec(readFileSync(src, 'utf8'))?.[1];
    if (!load) throw new Error(`${src}: missing '# node-kvm: load=0x...' line`);
    const obj = join(outDir, `${name}.o`);
    const elf = join(outDir, `${name}.elf`);
    const bin = join(outDir, `${name}.bin`);
    if (existsSync(bin) && statSync(bin).mtimeMs > statSync(src).mtimeMs) continue;
    run('as', ['--64', '-o', obj, src]);
    run('ld', ['-m', 'elf_x86_64', '-nostdlib', '-static', '-Ttext', load, '-e', '_start', '-o', elf, obj]);
    run('objcopy', ['-O', 'binary', '-j', '.text', '-j', '.data', '-j', '.rodata', elf, bin]);
    built++;
  }
}
console.log(`build-payloads: ${built} payload(s) assembled into ${outDir}`);
