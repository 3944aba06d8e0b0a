import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { readGuestAssets } from '../../../lib/boot/initramfs/assets.js';
import { CpioWriter, gzip, normalizeCpioPath, writeCpio } from '../../../lib/boot/initramfs/cpio.js';
import {
  GUEST_MODULES,
  INIT_START_MARKER,
  buildGuestCpio,
  buildGuestInitramfs,
  guestInitScript,
} from '../../../lib/boot/initramfs/guest.js';
import {
  modinfoDepends,
  moduleName,
  parseModulesDep,
  resolveModuleOrder,
} from '../../../lib/boot/initramfs/modules.js';
import { guestAssetsDir } from './fixtures.js';

const CPIO = '/usr/bin/cpio';
const haveCpio = existsSync(CPIO);
if (!haveCpio) console.log(`SKIP cpio extraction tests: ${CPIO} is missing`);

const tmp = mkdtempSync(join(tmpdir(), 'node-kvm-cpio-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
// Without root, cpio cannot create device nodes; it still extracts everything else.
const isRoot = process.getuid?.() === 0;

/** Extracts with the system cpio as root would (device nodes need root; skip those checks otherwise). */
function extract(archive: Uint8Array): { dir: string; log: string } {
  const dir = join(tmp, `x${n++}`);
  execFileSync('mkdir', ['-p', dir]);
  const file = join(tmp, `a${n}.cpio`);
  writeFileSync(file, archive);
  const log = execFileSync(
    'sh',
    ['-c', `${CPIO} -idmv --no-absolute-filenames < ${file} 2>&1${isRoot ? '' : '; exit 0'}`],
    {
      cwd: dir,
      encoding: 'utf8',
    },
  );
  return { dir, log };
}

describe('cpio newc writer', () => {
  it('writes headers, names and data padded to 4 bytes and ends with TRAILER!!!', () => {
    const a = writeCpio([{ type: 'file', path: 'a', data: 'xyz' }], { mtime: 0x1234 });
    const text = new TextDecoder('latin1').decode(a);
    expect(text.startsWith('070701')).toBe(true);
    // ino 1, mode 0100644, uid 0, gid 0, nlink 1, mtime 0x1234, size 3
    expect(text.slice(6, 6 + 8 * 7)).toBe('00000001000081a4000000000000000000000001000012340000000' + '3');
    expect(text.slice(110, 112)).toBe('a\0');
    expect(text.slice(112, 115)).toBe('xyz'); // 110 + 2 = 112 is already 4-aligned
    expect(a.length % 4).toBe(0);
    expect(text).toContain('TRAILER!!!\0');
  });

  it('normalizes paths and rejects bad ones', () => {
    expect(normalizeCpioPath('/bin//sh')).toBe('bin/sh');
    expect(normalizeCpioPath('./init')).toBe('init');
    expect(() => normalizeCpioPath('/')).toThrow(/names no file/);
    expect(() => normalizeCpioPath('a/../b')).toThrow(/\.\./);
    const w = new CpioWriter().file('a', 'x');
    expect(() => w.file('a', 'y')).toThrow(/duplicate/);
    expect(() => w.file('a/b', 'y')).toThrow(/cannot be inside/);
    expect(() => w.dir('d', 0o10000)).toThrow(/permission/);
    expect(() => w.symlink('l', '')).toThrow(/symlink target/);
  });

  it.skipIf(!haveCpio)('is extracted by the system cpio: files, dirs, symlinks, modes, device nodes', () => {
    const w = new CpioWriter({ mtime: 1_000_000_000 });
    w.file('etc/motd', 'hello\n')
      .file('bin/tool', new Uint8Array([1, 2, 3, 4, 5]), 0o755)
      .dir('empty', 0o700)
      .symlink('bin/link', 'tool')
      .charDevice('dev/console', 5, 1)
      .add({ type: 'block', path: 'dev/vda', major: 254, minor: 0, mode: 0o660 })
      .add({ type: 'fifo', path: 'run/fifo' });
    const { dir, log } = extract(w.finish());
    expect(log).toMatch(/etc\/motd/);
    expect(log).not.toMatch(/cpio: .*(error|premature|junk|Malformed)/i);
    expect(readFileSync(join(dir, 'etc/motd'), 'utf8')).toBe('hello\n');
    expect([...readFileSync(join(dir, 'bin/tool'))]).toEqual([1, 2, 3, 4, 5]);
    expect(statSync(join(dir, 'bin/tool')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(dir, 'etc/motd')).mtimeMs).toBe(1_000_000_000_000);
    expect(statSync(join(dir, 'empty')).isDirectory()).toBe(true);
    expect(statSync(join(dir, 'empty')).mode & 0o777).toBe(0o700);
    expect(readlinkSync(join(dir, 'bin/link'))).toBe('tool');
    expect(lstatSync(join(dir, 'run/fifo')).isFIFO()).toBe(true);
    if (isRoot) {
      const console = statSync(join(dir, 'dev/console'));
      expect(console.isCharacterDevice()).toBe(true);
      expect(console.rdev).toBe((5 << 8) | 1);
      const vda = statSync(join(dir, 'dev/vda'));
      expect(vda.isBlockDevice()).toBe(true);
      expect(vda.rdev).toBe((254 << 8) | 0);
    } else console.log('SKIP device-node checks: not running as root');
  });

  it('gzips so that gunzip gives back the archive', () => {
    const a = writeCpio([{ type: 'file', path: 'x', data: 'y'.repeat(1000) }]);
    const z = gzip(a);
    expect([z[0], z[1]]).toEqual([0x1f, 0x8b]);
    expect(Buffer.compare(gunzipSync(z), Buffer.from(a))).toBe(0);
  });
});

describe('kernel module order', () => {
  // Debian 6.1 cloud kernel's depends= lists (rng-core is built in there).
  const deps: Record<string, string[]> = {
    virtio: ['virtio_ring'],
    virtio_ring: [],
    virtio_mmio: ['virtio', 'virtio_ring'],
    virtio_blk: ['virtio', 'virtio_ring'],
    virtio_net: ['virtio_ring', 'virtio', 'net_failover'],
    net_failover: ['failover'],
    failover: [],
    virtio_console: ['virtio', 'virtio_ring'],
    virtio_rng: ['virtio', 'virtio_ring', 'rng_core'],
    virtio_balloon: ['virtio', 'virtio_ring'],
    vsock: [],
    vmw_vsock_virtio_transport_common: ['vsock'],
    vmw_vsock_virtio_transport: ['virtio', 'vmw_vsock_virtio_transport_common', 'virtio_ring', 'vsock'],
  };

  it('puts every dependency before its user (virtio_ring before virtio)', () => {
    const order = resolveModuleOrder(['virtio', ...GUEST_MODULES], (m) => deps[m], new Set(['rng_core']));
    expect(order.indexOf('virtio_ring')).toBeLessThan(order.indexOf('virtio'));
    for (const [m, ds] of Object.entries(deps)) {
      for (const d of ds)
        if (d !== 'rng_core') expect(order.indexOf(d), `${d} before ${m}`).toBeLessThan(order.indexOf(m));
    }
    expect(order).toContain('failover');
    expect(order).not.toContain('rng_core');
    expect(new Set(order).size).toBe(order.length);
  });

  it('reports missing modules and cycles', () => {
    expect(() => resolveModuleOrder(['virtio_rng'], (m) => deps[m])).toThrow(
      /rng_core not found \(needed by virtio_rng\)/,
    );
    expect(() => resolveModuleOrder(['a'], (m) => ({ a: ['b'], b: ['a'] })[m])).toThrow(/cycle: a -> b -> a/);
  });

  it('reads modules.dep and .modinfo depends=', () => {
    const dep = parseModulesDep(
      'kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n' +
        'kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko\n',
    );
    expect(dep.get('virtio')?.deps).toEqual(['virtio_ring']);
    expect(dep.get('virtio_rng')?.path).toBe('kernel/drivers/char/hw_random/virtio-rng.ko.xz');
    expect(moduleName('a/b/virtio-rng.ko.zst')).toBe('virtio_rng');
    const ko = new TextEncoder().encode('\x7fELF....license=GPL\0depends=virtio,virtio_ring\0retpoline=Y\0');
    expect(modinfoDepends(ko)).toEqual(['virtio', 'virtio_ring']);
    expect(modinfoDepends(new TextEncoder().encode('\0depends=\0'))).toEqual([]);
  });
});

describe('guest initramfs', () => {
  const busybox = new Uint8Array(64).fill(0xbb);
  const modules = [
    { name: 'virtio_ring', data: new Uint8Array([1]) },
    { name: 'virtio', data: new Uint8Array([2]) },
  ];

  it('/init loads modules in order, prints the marker, runs /test.sh or a shell', () => {
    const s = guestInitScript(['virtio_ring', 'virtio']);
    expect(s.startsWith('#!/bin/busybox sh\n')).toBe(true);
    expect(s).toContain('for m in virtio_ring virtio; do');
    expect(s).toContain('mount -t proc proc /proc');
    expect(s).toContain('mount -t sysfs sysfs /sys');
    expect(s).toContain('mount -t devtmpfs devtmpfs /dev');
    expect(s.indexOf('insmod')).toBeLessThan(s.indexOf(`echo ${INIT_START_MARKER}`));
    expect(s).toContain('sh /test.sh');
    expect(s).toContain('poweroff -f');
    expect(s).toContain('exec setsid cttyhack sh');
    expect(guestInitScript([], 'shell')).not.toContain('sync; poweroff');
    expect(() => guestInitScript(['a;rm'])).toThrow(/unsafe module name/);
  });

  it.skipIf(!haveCpio)('extracts to busybox, init, modules, /dev/console and a test script', () => {
    const archive = buildGuestCpio({
      busybox,
      modules,
      testScript: 'echo hi\n',
      files: [{ type: 'file', path: 'etc/extra', data: 'e' }],
    });
    const { dir } = extract(archive);
    expect(statSync(join(dir, 'init')).mode & 0o111).not.toBe(0);
    expect(readFileSync(join(dir, 'init'), 'utf8')).toContain('for m in virtio_ring virtio;');
    expect(readFileSync(join(dir, 'test.sh'), 'utf8')).toBe('echo hi\n');
    expect(readlinkSync(join(dir, 'bin/sh'))).toBe('busybox');
    expect([...readFileSync(join(dir, 'lib/modules/virtio.ko'))]).toEqual([2]);
    expect(readFileSync(join(dir, 'etc/extra'), 'utf8')).toBe('e');
    expect(statSync(join(dir, 'tmp')).mode & 0o1777).toBe(0o1777);
    if (isRoot) expect(statSync(join(dir, 'dev/console')).isCharacterDevice()).toBe(true);
    const gz = buildGuestInitramfs({ busybox, modules });
    expect([gz[0], gz[1]]).toEqual([0x1f, 0x8b]);
  });
});

const assetsDir = guestAssetsDir();
const haveAssets = existsSync(join(assetsDir, 'manifest.json'));
if (!haveAssets)
  console.log(`SKIP cached guest-assets checks: no ${assetsDir} (run: node scripts/guest-assets.mjs)`);

describe.skipIf(!haveAssets)('cached Debian guest assets', () => {
  it('has the virtio modules in an order their own .modinfo agrees with', () => {
    const assets = readGuestAssets(assetsDir);
    const names = assets.modules.map((m) => m.name);
    for (const want of GUEST_MODULES) expect(names).toContain(want);
    expect(names.indexOf('virtio_ring')).toBeLessThan(names.indexOf('virtio'));
    for (const m of assets.modules) {
      expect([...m.data.subarray(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]); // uncompressed ELF .ko
      for (const dep of modinfoDepends(m.data)) {
        if (assets.manifest.builtinModules.includes(dep)) continue;
        expect(names.indexOf(dep), `${dep} before ${m.name}`).toBeLessThan(names.indexOf(m.name));
      }
    }
  });

  it.skipIf(!haveCpio)(
    'initramfs.cpio.gz extracts with the system cpio and can be rebuilt with a /test.sh',
    () => {
      const assets = readGuestAssets(assetsDir);
      const { dir } = extract(new Uint8Array(gunzipSync(readFileSync(assets.initramfs))));
      expect(readFileSync(join(dir, 'init'), 'utf8')).toContain(
        `for m in ${assets.manifest.modules.join(' ')};`,
      );
      expect(statSync(join(dir, 'bin/busybox')).size).toBe(assets.busybox.length);
      const custom = buildGuestCpio({
        busybox: assets.busybox,
        modules: assets.modules,
        testScript: 'echo ok\n',
      });
      const x = extract(custom);
      expect(readFileSync(join(x.dir, 'test.sh'), 'utf8')).toBe('echo ok\n');
    },
  );
});
