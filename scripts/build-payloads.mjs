#!/usr/bin/env node
// Assembles guest payloads from source with binutils: each `*.S` under the payload folders becomes
// build/payloads/<name>.bin, linked at the address its `# node-kvm: load=0x...` line names.
// Builds the freestanding C guests of test/guest (see buildCGuests below) the same way.
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
      const pkg = cmd === 'gcc' ? 'gcc' : 'binutils';
      console.error(`build-payloads: '${cmd}' not found; install ${pkg} (apt-get install ${pkg})`);
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

// C guests (the virtio driver kit): every test/guest/*.c whose text names `node-kvm: program=<name>` holds the
// guest_main of a program. Each program is start.S + its file + every other .c file of the folder (the
// library), compiled freestanding for 64-bit user mode and linked by guest.ld at HIMEM_START (0x100000), where
// MicroVm loads and enters payloads; unused library code is dropped by --gc-sections.
const GUEST_LOAD = 0x100000;
const GUEST_CFLAGS = [
  '-std=gnu11',
  '-O2',
  '-Wall',
  '-Wextra',
  '-ffreestanding',
  '-nostdlib',
  '-static',
  '-no-pie',
  '-fno-pic',
  '-fno-stack-protector',
  '-mno-red-zone',
  '-mgeneral-regs-only',
  '-fno-asynchronous-unwind-tables',
  '-fcf-protection=none',
  '-ffunction-sections',
  '-fdata-sections',
  '-Wl,--gc-sections',
  '-Wl,--build-id=none',
  // One flat RWX image is the point: code, data, stack and DMA memory share the identity map.
  '-Wl,--no-warn-rwx-segments',
];

function buildCGuests() {
  const dir = join(root, 'test', 'guest');
  if (!existsSync(dir)) return 0;
  const files = readdirSync(dir);
  const sources = files.filter((f) => f.endsWith('.c'));
  const programs = [];
  const library = [];
  for (const f of sources) {
    const name = /node-kvm:\s*program=([A-Za-z0-9_-]+)/.exec(readFileSync(join(dir, f), 'utf8'))?.[1];
    if (name) programs.push({ name, file: f });
    else library.push(f);
  }
  // Any change in the folder (headers, linker script) or in this script rebuilds every program.
  const newest = Math.max(
    statSync(fileURLToPath(import.meta.url)).mtimeMs,
    ...files.map((f) => statSync(join(dir, f)).mtimeMs),
  );
  let count = 0;
  for (const { name, file } of programs) {
    const elf = join(outDir, `${name}.elf`);
    const bin = join(outDir, `${name}.bin`);
    if (existsSync(bin) && statSync(bin).mtimeMs > newest) continue;
    run('gcc', [
      ...GUEST_CFLAGS,
      '-T',
      join(dir, 'guest.ld'),
      '-o',
      elf,
      join(dir, 'start.S'),
      join(dir, file),
      ...library.map((f) => join(dir, f)),
    ]);
    const entry = readFileSync(elf).readBigUInt64LE(24);
    if (entry !== BigInt(GUEST_LOAD)) {
      throw new Error(`${name}: entry point 0x${entry.toString(16)}, expected 0x${GUEST_LOAD.toString(16)}`);
    }
    run('objcopy', ['-O', 'binary', elf, bin]);
    count++;
  }
  return count;
}

const guests = buildCGuests();
console.log(`build-payloads: ${built} payload(s) assembled, ${guests} C guest(s) built into ${outDir}`);
