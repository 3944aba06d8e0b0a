#!/usr/bin/env node
// Fetches the test guest's parts from Debian with apt-get download — the kernel package behind
// linux-image-cloud-amd64 and busybox-static — and packs them into a cache folder:
//   vmlinuz              the stock bzImage
//   busybox              static busybox
//   modules/<name>.ko    the virtio modules and their dependencies, uncompressed
//   initramfs.cpio.gz    busybox + modules + /init, written by our own cpio writer (dist/lib/boot)
//   manifest.json        package versions, kernel release, module load order
// Usage: node scripts/guest-assets.mjs [--cache DIR] [--force]
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const META_PACKAGE = 'linux-image-cloud-amd64';
const BUSYBOX_PACKAGE = 'busybox-static';
/** Bump when the cache layout or recipe changes, so old caches are rebuilt. */
const FORMAT = 1;

function usage() {
  console.log(`usage: node scripts/guest-assets.mjs [--cache DIR] [--force]
  --cache DIR   cache folder (default: .cache/guest-assets, or $NODE_KVM_GUEST_ASSETS)
  --force       download and rebuild even if the cache is current`);
}

function parseArgs(argv) {
  const opts = {
    cache: process.env.NODE_KVM_GUEST_ASSETS ?? join(root, '.cache', 'guest-assets'),
    force: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--cache') {
      if (!argv[i + 1]) fatal('--cache needs a folder');
      opts.cache = argv[++i];
    } else if (a.startsWith('--cache=')) opts.cache = a.slice('--cache='.length);
    else if (a === '--force') opts.force = true;
    else if (a === '--help' || a === '-h') {
      usage();
      process.exit(0);
    } else fatal(`unknown argument ${a}`);
  }
  opts.cache = resolve(opts.cache);
  return opts;
}

function log(msg) {
  console.log(`guest-assets: ${msg}`);
}

function fatal(msg) {
  console.error(`guest-assets: error: ${msg}`);
  process.exit(1);
}

/** Runs a command, returning stdout; throws with its stderr on failure. */
function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, ...options });
  if (r.error) {
    if (r.error.code === 'ENOENT') throw new Error(`'${cmd}' is not installed`);
    throw r.error;
  }
  if (r.status !== 0) {
    const err = new Error(
      `${cmd} ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`,
    );
    err.stderr = r.stderr ?? '';
    throw err;
  }
  return r.stdout;
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

let aptUpdated = false;
/** Runs an apt step; if it fails because the package lists are missing, runs apt-get update once and retries. */
function withAptLists(what, fn) {
  try {
    return fn();
  } catch (e) {
    const text = `${e.message}\n${e.stderr ?? ''}`;
    const listsMissing =
      /Unable to locate package|has no installation candidate|No packages found|Can't select/i.test(text);
    if (aptUpdated || !listsMissing) throw e;
    log(`${what}: package lists look empty; running apt-get update`);
    try {
      run('apt-get', ['update'], { stdio: ['ignore', 'inherit', 'pipe'] });
    } catch (u) {
      throw new Error(`apt-get update failed (are you root, and online?): ${u.message}`);
    }
    aptUpdated = true;
    return fn();
  }
}

/** The real kernel package the meta package depends on, e.g. linux-image-6.1.0-56-cloud-amd64. */
function resolveKernelPackage() {
  const out = withAptLists('resolve kernel', () => {
    const text = run('apt-cache', ['depends', META_PACKAGE]);
    if (!/Depends:/.test(text)) {
      const err = new Error(`apt-cache depends ${META_PACKAGE}: no dependencies listed`);
      err.stderr = 'No packages found';
      throw err;
    }
    return text;
  });
  const dep = out
    .split('\n')
    .map((l) => /^\s*Depends:\s*(linux-image-\S+)/.exec(l)?.[1])
    .find(Boolean);
  if (!dep) throw new Error(`could not find the kernel package in:\n${out}`);
  return dep;
}

function candidateVersion(pkg) {
  const out = withAptLists(`version of ${pkg}`, () => {
    const text = run('apt-cache', ['policy', pkg]);
    const v = /Candidate:\s*(\S+)/.exec(text)?.[1];
    if (!v || v === '(none)') {
      const err = new Error(`${pkg} has no installation candidate`);
      err.stderr = 'has no installation candidate';
      throw err;
    }
    return v;
  });
  return out;
}

/** apt-get download into `dir`; returns the .deb path. */
function download(pkg, version, dir) {
  mkdirSync(dir, { recursive: true });
  const existing = readdirSync(dir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  const wanted = `${pkg}_${version.replace(/:/g, '%3a')}_`;
  if (existing && existing.startsWith(wanted)) return join(dir, existing);
  for (const f of readdirSync(dir).filter((f) => f.startsWith(`${pkg}_`))) rmSync(join(dir, f));
  log(`downloading ${pkg} ${version}`);
  withAptLists(`download ${pkg}`, () => run('apt-get', ['download', `${pkg}=${version}`], { cwd: dir }));
  const deb = readdirSync(dir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download ${pkg} produced no .deb in ${dir}`);
  return join(dir, deb);
}

function extract(deb, dir) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  run('dpkg-deb', ['-x', deb, dir]);
}

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

/** Uncompressed bytes of a module file (.ko, .ko.xz, .ko.zst, .ko.gz). */
function readModule(path) {
  if (path.endsWith('.ko')) return new Uint8Array(readFileSync(path));
  if (path.endsWith('.ko.gz')) return new Uint8Array(gunzipSync(readFileSync(path)));
  const tool = path.endsWith('.ko.xz') ? 'xz' : path.endsWith('.ko.zst') ? 'zstd' : undefined;
  if (!tool) throw new Error(`unknown module compression: ${path}`);
  return new Uint8Array(execFileSync(tool, ['-dc', path], { maxBuffer: 256 * 1024 * 1024 }));
}

async function loadBoot() {
  const entry = join(root, 'dist', 'lib', 'boot', 'index.js');
  if (!existsSync(entry)) {
    fatal(
      `${relative(process.cwd(), entry)} is missing: build the package first (npm install, or npm run build:ts)`,
    );
  }
  return import(pathToFileURL(entry).href);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const boot = await loadBoot();
  for (const tool of ['apt-get', 'apt-cache', 'dpkg-deb']) {
    if (!have(tool)) fatal(`'${tool}' is not available: this script needs a Debian-based host with apt`);
  }
  const cache = opts.cache;
  mkdirSync(cache, { recursive: true });
  log(`cache ${cache}`);

  const kernelPackage = resolveKernelPackage();
  const kernelVersion = candidateVersion(kernelPackage);
  const busyboxVersion = candidateVersion(BUSYBOX_PACKAGE);
  log(`${META_PACKAGE} -> ${kernelPackage} ${kernelVersion}; ${BUSYBOX_PACKAGE} ${busyboxVersion}`);

  const manifestPath = join(cache, boot.GUEST_ASSETS_MANIFEST);
  const old = existsSync(manifestPath) ? JSON.parse(readFileSync(manifestPath, 'utf8')) : undefined;
  const outputs = ['vmlinuz', 'busybox', 'initramfs.cpio.gz'].map((f) => join(cache, f));
  const current =
    !opts.force &&
    old?.format === FORMAT &&
    old.kernelPackage === kernelPackage &&
    old.kernelPackageVersion === kernelVersion &&
    old.busyboxPackageVersion === busyboxVersion &&
    old.initSha256 === sha256(boot.guestInitScript(old.modules)) &&
    outputs.every((f) => existsSync(f)) &&
    old.modules.every((m) => existsSync(join(cache, 'modules', `${m}.ko`)));
  if (current) {
    log(`up to date (kernel ${old.kernelRelease}, ${old.modules.length} modules); use --force to rebuild`);
    return;
  }

  const debs = join(cache, 'debs');
  const kernelDeb = download(kernelPackage, kernelVersion, debs);
  const busyboxDeb = download(BUSYBOX_PACKAGE, busyboxVersion, debs);

  log(`extracting ${relative(cache, kernelDeb)}`);
  const kx = join(cache, 'extract', 'kernel');
  extract(kernelDeb, kx);
  const bx = join(cache, 'extract', 'busybox');
  extract(busyboxDeb, bx);

  const vmlinuz = readdirSync(join(kx, 'boot')).find((f) => f.startsWith('vmlinuz-'));
  if (!vmlinuz) throw new Error(`no boot/vmlinuz-* in ${kernelPackage}`);
  const kernelRelease = vmlinuz.slice('vmlinuz-'.length);
  const image = new Uint8Array(readFileSync(join(kx, 'boot', vmlinuz)));
  const header = boot.parseSetupHeader(image);
  const compression = boot.detectCompression(boot.compressedPayload(image, header)) ?? 'unknown';
  log(
    `kernel ${kernelRelease}: boot protocol ${(header.version >> 8).toString()}.${header.version & 0xff}, payload ${compression}`,
  );

  const modRoot = [
    join(kx, 'lib', 'modules', kernelRelease),
    join(kx, 'usr', 'lib', 'modules', kernelRelease),
  ].find((d) => existsSync(d));
  if (!modRoot) throw new Error(`no lib/modules/${kernelRelease} in ${kernelPackage}`);
  const files = new Map();
  for (const p of walk(join(modRoot, 'kernel'))) {
    if (/\.ko(\.(xz|zst|gz))?$/.test(p)) files.set(boot.moduleName(p), p);
  }
  const builtinPath = join(modRoot, 'modules.builtin');
  const builtin = new Set(
    existsSync(builtinPath)
      ? readFileSync(builtinPath, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => boot.moduleName(l))
      : [],
  );
  const depPath = join(modRoot, 'modules.dep');
  const depFile = existsSync(depPath) ? boot.parseModulesDep(readFileSync(depPath, 'utf8')) : undefined;
  log(
    `module dependencies from ${depFile ? 'modules.dep' : '.modinfo depends= (the package ships no modules.dep)'}`,
  );
  const bytes = new Map();
  const moduleBytes = (name) => {
    if (!bytes.has(name)) bytes.set(name, readModule(files.get(name)));
    return bytes.get(name);
  };
  const deps = (name) => {
    if (depFile) return depFile.get(name)?.deps;
    return files.has(name) ? boot.modinfoDepends(moduleBytes(name)) : undefined;
  };
  const order = boot.resolveModuleOrder(boot.GUEST_MODULES, deps, builtin);
  const usedBuiltin = [...builtin].filter((b) =>
    ['rng_core', 'virtio', 'virtio_ring', 'virtio_mmio'].includes(b),
  );
  log(
    `modules (load order): ${order.join(' ')}${usedBuiltin.length ? `; built in: ${usedBuiltin.join(' ')}` : ''}`,
  );

  const modDir = join(cache, 'modules');
  rmSync(modDir, { recursive: true, force: true });
  mkdirSync(modDir, { recursive: true });
  const modules = order.map((name) => {
    const data = moduleBytes(name);
    writeFileSync(join(modDir, `${name}.ko`), data);
    return { name, data };
  });

  const busyboxPath = [join(bx, 'bin', 'busybox'), join(bx, 'usr', 'bin', 'busybox')].find((p) =>
    existsSync(p),
  );
  if (!busyboxPath) throw new Error(`no busybox binary in ${BUSYBOX_PACKAGE}`);
  const busybox = new Uint8Array(readFileSync(busyboxPath));

  log('packing initramfs.cpio.gz');
  const initramfs = boot.buildGuestInitramfs({ busybox, modules });
  atomicWrite(join(cache, 'initramfs.cpio.gz'), initramfs);
  atomicWrite(join(cache, 'busybox'), busybox);
  copyFileSync(join(kx, 'boot', vmlinuz), join(cache, 'vmlinuz.tmp'));
  renameSync(join(cache, 'vmlinuz.tmp'), join(cache, 'vmlinuz'));
  rmSync(join(cache, 'extract'), { recursive: true, force: true });

  const manifest = {
    format: FORMAT,
    kernelPackage,
    kernelPackageVersion: kernelVersion,
    kernelRelease,
    busyboxPackageVersion: busyboxVersion,
    modules: order,
    builtinModules: usedBuiltin,
    kernelCompression: compression,
    initSha256: sha256(boot.guestInitScript(order)),
  };
  atomicWrite(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
  log(
    `done: vmlinuz (${mib(image.length)}), initramfs.cpio.gz (${mib(initramfs.length)}), ${order.length} modules`,
  );
}

function sha256(text) {
  return createHash('sha256').update(text).digest('hex');
}

function mib(n) {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function atomicWrite(path, data) {
  writeFileSync(`${path}.tmp`, data);
  renameSync(`${path}.tmp`, path);
}

main().catch((e) => fatal(e.message));
