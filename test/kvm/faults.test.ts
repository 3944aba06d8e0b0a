/**
 * Fault injection: a hostile or broken guest, failing host storage, a vanishing tap, an exhausted hugepage pool
 * and a VMM killed mid-write. Every case must end in a clean, explained stop (reason + vCPU registers) or carry
 * on — never a crash, a hang or lost data the guest was told is durable.
 *
 * Guests: small payloads built here, and test/payloads/fault-virtio-guest.S, a CPL3 virtio-mmio driver (block
 * writes, flushes and reads, net frames) whose hot loops run natively on PVM hosts too.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allocateGuestMemory, readHugepagePool } from '../../lib/memory/allocate.js';
import { native } from '../../lib/native/binding.js';
import {
  STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_F_VERSION_1,
  bit,
} from '../../lib/virtio/constants.js';
import { FileBlockBackend, VirtioBlock } from '../../lib/virtio/devices/block.js';
import { EIO, ENOSPC, type BlockFileIo } from '../../lib/virtio/host-io.js';
import { createMockGuest } from '../../lib/virtio/testing/mock-driver.js';
import { MicroVm } from '../../lib/vmm/micro-vm.js';
import type { StopReason } from '../../lib/vmm/stop.js';
import { TinyVm } from '../../lib/vmm/tiny-vm.js';
import { faultGuest } from '../support/fault-guest.js';
import { describeKvm, fdsOpenedSince, openFds } from '../support/kvm.js';

const MiB = 1024 * 1024;
const root = fileURLToPath(new URL('../..', import.meta.url));
const guest = faultGuest;
/** Where the guest's transports are: slot 0, then slot 1 (disks first, then net). */
const SLOT0 = 0xd000_0000;
/** The guest's block pattern: 512 copies of PATTERN ^ block index per 4 KiB block. */
const PATTERN = 0x4e4f44454b564d21n;
const EXIT_OK = 0x31;
const isRoot = process.getuid?.() === 0;

/** One device's entry in VmStats.devices (typed unknown there). */
function deviceStats<T>(devices: Record<string, unknown>, name: string): T {
  expect(devices).toHaveProperty([name]);
  return devices[name] as T;
}

function consoleOf(vm: MicroVm): { text: () => string } {
  const chunks: Buffer[] = [];
  vm.on('console', (b) => chunks.push(Buffer.from(b)));
  return { text: () => Buffer.concat(chunks).toString('latin1') };
}

function blockMatches(image: Buffer, block: number): boolean {
  const want = PATTERN ^ BigInt(block);
  for (let w = 0; w < 512; w++) if (image.readBigUInt64LE(block * 4096 + w * 8) !== want) return false;
  return true;
}

const ZERO_BLOCK = Buffer.alloc(4096);
function blockIsZero(image: Buffer, block: number): boolean {
  return image.subarray(block * 4096, block * 4096 + 4096).equals(ZERO_BLOCK);
}

function sparseImage(dir: string, name: string, size: number): string {
  const path = join(dir, name);
  writeFileSync(path, '', { mode: 0o600 });
  truncateSync(path, size);
  return path;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until fn() holds (a MicroVm's last fds close when its worker exits, a moment after `exited`). */
async function eventually(fn: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  for (const end = Date.now() + ms; !(await fn()) && Date.now() < end;) await sleep(20);
}

let work: string;
beforeAll(() => {
  // The guest payload is assembled from source; this is a no-op when build/payloads is up to date.
  execFileSync(process.execPath, [join(root, 'scripts', 'build-payloads.mjs')], { stdio: 'ignore' });
  work = mkdtempSync(join(tmpdir(), 'node-kvm-faults-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function expectCleanErrorStop(stop: StopReason, kinds: string[], rip?: bigint): void {
  expect(stop.reason).toBe('error');
  if (stop.reason !== 'error') return;
  expect(kinds).toContain(stop.kind);
  expect(stop.message.length).toBeGreaterThan(10);
  expect(stop.regs, 'the stop carries the vCPU registers').toBeDefined();
  if (rip !== undefined) expect(stop.regs!.rip).toBe(rip);
}

describeKvm('guest faults stop cleanly with the reason and the registers', () => {
  it('int3 in 64-bit CPL0: KVM_EXIT_INTERNAL_ERROR on PVM, a triple fault on hardware KVM (TinyVm, raw loop)', () => {
    const vm = TinyVm.create();
    try {
      vm.load(0x10_0000, Uint8Array.of(0xcc)); // int3 with an empty IDT
      vm.enterLongMode(0x10_0000);
      const stop = vm.run({ maxExits: 100 });
      expectCleanErrorStop(stop, ['internal_error', 'triple_fault'], 0x10_0000n);
      if (stop.reason === 'error' && stop.kind === 'internal_error') {
        expect(stop.message).toMatch(/KVM internal error: \w+/);
        expect(stop.detail).toHaveProperty('suberror');
      }
    } finally {
      vm.close();
    }
  });

  it('the same on the VM thread (MicroVm): the exit event carries reason and registers', async () => {
    const vm = new MicroVm({
      memory: { size: 8 * MiB },
      boot: { kind: 'payload', payload: Uint8Array.of(0x90, 0xcc), mode: 'long' }, // nop; int3
      serial: false,
    });
    await vm.start();
    const stop = await vm.exited;
    expectCleanErrorStop(stop, ['internal_error', 'triple_fault'], 0x10_0001n);
  });

  it('an invalid guest state at entry (SS.DPL != CS.DPL): a failed entry or a triple fault, with registers', () => {
    const vm = TinyVm.create();
    try {
      vm.load(0x10_0000, Uint8Array.of(0xf4));
      vm.enterLongMode(0x10_0000);
      const s = vm.vcpu.getSregs();
      s.ss.dpl = 3; // CPL0 code with a DPL-3 stack: VMX refuses the entry (reason 0x80000021)
      vm.vcpu.setSregs(s);
      const stop = vm.run({ maxExits: 100 });
      expectCleanErrorStop(stop, ['fail_entry', 'triple_fault', 'internal_error'], 0x10_0000n);
      if (stop.reason === 'error' && stop.kind === 'fail_entry') {
        expect(stop.detail).toHaveProperty('hardwareEntryFailureReason');
      }
    } finally {
      vm.close();
    }
  });

  it('special registers KVM rejects outright throw EINVAL and leave the vCPU usable', () => {
    const vm = TinyVm.create();
    try {
      vm.load(0x10_0000, Uint8Array.of(0xb0, 0x21, 0xe6, 0xe9, 0xf4)); // out '!' to 0xe9; hlt
      vm.enterProtectedMode(0x10_0000);
      const good = vm.vcpu.getSregs();
      const pagingWithoutProtection = structuredClone(good);
      pagingWithoutProtection.cr0 = (good.cr0 | (1n << 31n)) & ~1n;
      expect(() => vm.vcpu.setSregs(pagingWithoutProtection)).toThrow(
        expect.objectContaining({ code: 'EINVAL' }),
      );
      const longActiveWithoutEnable = structuredClone(good);
      longActiveWithoutEnable.efer |= 1n << 10n; // LMA without LME and paging
      expect(() => vm.vcpu.setSregs(longActiveWithoutEnable)).toThrow(/KVM_SET_SREGS.*EINVAL/);
      expect(vm.vcpu.getSregs().cr0).toBe(good.cr0);
      expect(vm.run({ maxExits: 100 })).toEqual({ reason: 'hlt' });
      expect(vm.consoleOutput).toBe('!');
    } finally {
      vm.close();
    }
  });

  it('a guest stuck inside KVM_RUN (real-mode #GP loop: PVM never exits) is still stopped on request', async () => {
    // lidt [0x1010] (limit 0); int3 — beyond the IDT limit. Hardware KVM triple-faults; PVM's emulator spins
    // inside KVM_RUN without ever exiting, so only the kick (immediate_exit + signal) can end the run.
    const payload = new Uint8Array(0x16);
    payload.set([0x0f, 0x01, 0x1e, 0x10, 0x10, 0xcc, 0xf4]);
    const vm = new MicroVm({
      memory: { size: 2 * MiB },
      boot: { kind: 'payload', payload, mode: 'real' },
      serial: false,
    });
    await vm.start();
    await sleep(300);
    const t0 = Date.now();
    const stop = await vm.stop();
    expect(Date.now() - t0).toBeLessThan(2000);
    if (stop.reason === 'error') expectCleanErrorStop(stop, ['triple_fault', 'internal_error']);
    else expect(stop).toEqual({ reason: 'stopped' });
  });
});

describe('block backend errors in the device (injected into FileBlockBackend, real file and native I/O)', () => {
  interface FaultyIo extends BlockFileIo {
    failWrites: Set<number>;
    failReads: Set<number>;
    failFlushes: number[];
  }

  /** The native host I/O, with failures injected by file offset and call, and short writes. */
  function faultyIo(): FaultyIo {
    const io = native().hostIo;
    const f: FaultyIo = {
      failWrites: new Set<number>(),
      failReads: new Set<number>(),
      failFlushes: [],
      pread: (fd, buf, pos) => (f.failReads.has(pos) ? -EIO : io.pread(fd, buf, pos)),
      pwrite: (fd, buf, pos) => {
        if (f.failWrites.has(pos)) return -ENOSPC;
        // At most 1000 bytes per call, so the device must loop over short writes.
        return io.pwrite(fd, buf.subarray(0, Math.min(buf.length, 1000)), pos);
      },
      fdatasync: (fd) => f.failFlushes.shift() ?? io.fdatasync(fd),
      fallocate: (fd, mode, offset, length) => io.fallocate(fd, mode, offset, length),
      close: (fd) => io.close(fd),
    };
    return f;
  }

  it('EIO and ENOSPC reach the guest as VIRTIO_BLK_S_IOERR; the next requests succeed; nothing escapes', () => {
    const path = sparseImage(work, 'unit.img', 64 * 1024);
    const io = faultyIo();
    const backend = FileBlockBackend.open(path, { io });
    const device = new VirtioBlock({ backend, queueSize: 16 });
    const { driver, transport } = createMockGuest(device);
    expect(driver.init({ features: bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_BLK_F_FLUSH) })).toBe(true);
    const header = (type: number, sector: number) => {
      const h = new Uint8Array(16);
      new DataView(h.buffer).setUint32(0, type, true);
      new DataView(h.buffer).setUint32(8, sector, true);
      return h;
    };
    const request = (type: number, sector: number, data?: Uint8Array, readLength = 0) => {
      const chain = driver.send(0, [
        { data: header(type, sector) },
        ...(data ? [{ data }] : []),
        ...(readLength ? [{ length: readLength, writable: true as const }] : []),
        { length: 1, writable: true as const },
      ])!;
      const [used] = driver.takeUsed(0);
      const bytes = driver.writtenBytes(chain, used.len);
      return { status: bytes[bytes.length - 1], data: bytes.subarray(0, readLength) };
    };
    const block = new Uint8Array(4096).fill(0x5a);
    io.failWrites.add(8 * 512); // sector 8: the host disk is full there
    expect(request(VIRTIO_BLK_T_OUT, 8, block).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(device.stats.lastErrno).toBe(ENOSPC);
    expect(request(VIRTIO_BLK_T_OUT, 0, block).status).toBe(VIRTIO_BLK_S_OK); // in 1000-byte short writes
    io.failFlushes.push(-EIO);
    expect(request(VIRTIO_BLK_T_FLUSH, 0).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(device.stats.lastErrno).toBe(EIO);
    expect(request(VIRTIO_BLK_T_FLUSH, 0).status).toBe(VIRTIO_BLK_S_OK);
    io.failReads.add(0);
    expect(request(VIRTIO_BLK_T_IN, 0, undefined, 4096).status).toBe(VIRTIO_BLK_S_IOERR);
    io.failReads.clear();
    const read = request(VIRTIO_BLK_T_IN, 0, undefined, 4096);
    expect(read.status).toBe(VIRTIO_BLK_S_OK);
    expect(read.data.every((b) => b === 0x5a)).toBe(true);
    expect(device.stats.ioErrors).toBe(3);
    expect(transport.stats.internalErrors).toBe(0);
    expect(transport.status & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    backend.close();
    const image = readFileSync(path);
    expect(image.subarray(0, 4096).every((b) => b === 0x5a)).toBe(true);
    expect(image.subarray(8 * 512, 8 * 512 + 4096).equals(ZERO_BLOCK)).toBe(true);
  });
});

describeKvm('host storage failures in a running guest', () => {
  if (!isRoot) console.warn('[node-kvm] skipping the ENOSPC guest test: mounting a tiny tmpfs needs root');

  it.runIf(isRoot)(
    'a full host file system (ENOSPC on a 256 KiB tmpfs): the guest sees IOERR and the device goes on',
    async () => {
      const mnt = join(work, 'tiny-fs');
      mkdirSync(mnt);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'node-kvm-enospc', mnt]);
      try {
        const image = sparseImage(mnt, 'disk.img', 4 * MiB); // sparse: 4 MiB apparent, 256 KiB of room
        const vm = new MicroVm(guest(2, 1024, SLOT0, 0, { disks: [{ path: image }] }));
        const out = consoleOf(vm);
        await vm.start();
        expect(await vm.exited).toEqual({ reason: 'debug-exit', code: EXIT_OK });
        const m = /^E([0-9a-f]{8})\nR\n$/.exec(out.text());
        expect(m, `guest output ${JSON.stringify(out.text())}`).not.toBeNull();
        const failedAt = parseInt(m![1], 16);
        // 256 KiB holds 64 blocks of 4 KiB (tmpfs counts pages): a write near the 65th fails.
        expect(failedAt).toBeGreaterThan(32);
        expect(failedAt).toBeLessThanOrEqual(64);
        const blk = deviceStats<{
          device: { ioErrors: number; lastErrno: number; reads: number };
          transport: { internalErrors: number; needsResets: number };
        }>(vm.lastStats!.devices, 'virtio-blk@0');
        expect(blk.device.ioErrors).toBe(1);
        expect(blk.device.lastErrno).toBe(ENOSPC);
        expect(blk.device.reads).toBe(1);
        expect(blk.transport).toMatchObject({ internalErrors: 0, needsResets: 0 });
        const data = readFileSync(image);
        for (let i = 0; i < failedAt; i++) expect(blockMatches(data, i), `block ${i}`).toBe(true);
      } finally {
        execFileSync('umount', [mnt]);
      }
    },
  );
});

function tapSkipReason(): string | undefined {
  if (!isRoot) return 'creating and deleting tap devices needs root (CAP_NET_ADMIN)';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun does not exist';
  if (spawnSync('ip', ['-V']).status !== 0) return "the 'ip' command (iproute2) is missing";
  return undefined;
}
const tapSkip = tapSkipReason();

describeKvm('a tap device that vanishes', () => {
  if (tapSkip) console.warn(`[node-kvm] skipping the vanishing-tap test: ${tapSkip}`);

  it.runIf(tapSkip === undefined)(
    'deleting the tap under a running guest: the VMM carries on and stops cleanly',
    async () => {
      type NetStats = {
        device: { txFrames: number };
        transport: { internalErrors: number; needsResets: number };
      };
      const name = `nkvmflt${process.pid % 10000}`;
      const fdsBefore = await openFds();
      const vm = new MicroVm(guest(4, 0, 0, SLOT0, { net: [{ tap: name }] }));
      const out = consoleOf(vm);
      await vm.start();
      try {
        execFileSync('ip', ['link', 'set', name, 'up']);
        await sleep(400);
        expect(out.text().length).toBeGreaterThan(0);
        execFileSync('ip', ['link', 'delete', name]);
        expect(spawnSync('ip', ['link', 'show', name], { stdio: 'ignore' }).status).not.toBe(0);
        const atDelete = out.text().length;
        const framesAtDelete = deviceStats<NetStats>((await vm.stats()).devices, 'virtio-net@0').device
          .txFrames;
        await sleep(500);
        expect(out.text().length, 'the guest keeps running').toBeGreaterThan(atDelete);
        const net = deviceStats<NetStats>((await vm.stats()).devices, 'virtio-net@0');
        expect(net.device.txFrames).toBeGreaterThan(framesAtDelete);
        expect(net.transport).toMatchObject({ internalErrors: 0, needsResets: 0 });
      } finally {
        expect(await vm.stop()).toEqual({ reason: 'stopped' });
        spawnSync('ip', ['link', 'delete', name], { stdio: 'ignore' });
      }
      // Only fds this test opened count: an earlier test's worker may still be closing its own.
      await eventually(async () => (await fdsOpenedSince(fdsBefore)).length === 0);
      expect(await fdsOpenedSince(fdsBefore)).toEqual([]);
    },
  );
});

describeKvm('an exhausted hugepage pool', () => {
  const NR = '/proc/sys/vm/nr_hugepages';
  const canReserve = isRoot && existsSync(NR);
  let saved: string | undefined;
  if (!canReserve) console.warn('[node-kvm] skipping the hugepage pool test: resizing the pool needs root');

  beforeAll(() => {
    if (!canReserve) return;
    saved = readFileSync(NR, 'utf8').trim();
    // A pool of exactly 8 free pages (16 MiB): one guest's worth.
    const pool = readHugepagePool();
    writeFileSync(NR, String(pool.total - pool.free + 8));
  });
  afterAll(() => {
    if (saved !== undefined) writeFileSync(NR, saved);
  });

  it.runIf(canReserve)(
    'pages are reserved at allocation: the next guest gets a clear error (hugetlb) or falls back (auto); no SIGBUS',
    async () => {
      expect(readHugepagePool().free).toBe(8);
      const hugetlb = (hold: number, shared = false) =>
        guest(5, 16 * MiB, hold, 0, { memory: { size: 16 * MiB, hugepages: 'hugetlb', shared } });
      // The first guest takes the whole pool, touches every page of its RAM above 4 MiB, then holds it.
      const first = new MicroVm(hugetlb(1));
      const firstOut = consoleOf(first);
      await first.start();
      expect(first.backing).toBe('hugetlb');
      for (let i = 0; i < 100 && firstOut.text() !== 'T\n'; i++) await sleep(50);
      expect(firstOut.text()).toBe('T\n');

      await expect(new MicroVm(hugetlb(0)).start()).rejects.toThrow(
        /huge pages: 8 needed, \d+ of \d+ free\. Reserve more: echo \d+ > \/proc\/sys\/vm\/nr_hugepages/,
      );
      await expect(new MicroVm(hugetlb(0, true)).start()).rejects.toThrow(/nr_hugepages/);
      expect(() => allocateGuestMemory([{ gpa: 0, size: 2 * MiB }], { hugepages: 'hugetlb' })).toThrow(
        expect.objectContaining({ code: 'ERR_KVM_HUGEPAGES_UNAVAILABLE' }),
      );

      const fallback = new MicroVm(
        guest(5, 16 * MiB, 0, 0, { memory: { size: 16 * MiB, hugepages: 'auto' } }),
      );
      const fallbackOut = consoleOf(fallback);
      await fallback.start();
      expect(['thp', '4k']).toContain(fallback.backing);
      expect(await fallback.exited).toEqual({ reason: 'debug-exit', code: EXIT_OK });
      expect(fallbackOut.text()).toBe('T\n');

      expect(await first.stop()).toEqual({ reason: 'stopped' });
      expect(readHugepagePool().free).toBe(8);
    },
  );

  /** HugePages_Free still counts reserved-but-untouched pages; the pool's free count subtracts HugePages_Rsvd. */
  it.runIf(canReserve)('the error counts reserved pages as taken', () => {
    const all = allocateGuestMemory([{ gpa: 0, size: 16 * MiB }], { hugepages: 'hugetlb' }); // reserved, untouched
    try {
      expect(() => allocateGuestMemory([{ gpa: 0, size: 2 * MiB }], { hugepages: 'hugetlb' })).toThrow(
        /1 needed, 0 of 8 free/,
      );
    } finally {
      all.close();
    }
  });
});

describeKvm('kill -9 of the VMM during guest block writes', () => {
  it('every block the guest saw flushed is on disk; nothing after it is garbage', async () => {
    const blocks = 4096;
    const image = sparseImage(work, 'kill.img', blocks * 4096);
    // The VMM runs in a child process: a MicroVm whose guest writes block i, flushes, then prints '.'.
    const microVm = JSON.stringify(join(root, 'dist', 'lib', 'vmm', 'micro-vm.js'));
    const config = JSON.stringify(guest(1, blocks, SLOT0, 0, { disks: [{ path: image }] }));
    const script = [
      `const { MicroVm } = await import(${microVm});`,
      `const vm = new MicroVm(${config});`,
      `vm.on('console', (b) => process.stdout.write(b));`,
      `await vm.start();`,
      `process.stdout.write('STOP ' + JSON.stringify(await vm.exited));`,
    ].join('\n');
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
    let dots = 0;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const killedAt = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no progress from the VMM child: ${stderr}`)), 30_000);
      child.stdout.on('data', (d: Buffer) => {
        for (const b of d) if (b === 0x2e) dots++;
        if (dots >= 150 && child.exitCode === null && child.signalCode === null) {
          clearTimeout(timer);
          child.kill('SIGKILL');
          resolve(dots);
        }
      });
      void exited.then(() => reject(new Error(`the VMM child exited before the kill: ${stderr}`)));
    });
    expect(await exited).toBe('SIGKILL');
    const data = readFileSync(image);
    for (let i = 0; i < killedAt; i++) expect(blockMatches(data, i), `flushed block ${i}`).toBe(true);
    // Past what the test saw: more flushed blocks (output lags), at most one block caught mid-write, then zeros.
    let i = killedAt;
    while (i < blocks && blockMatches(data, i)) i++;
    expect(i, 'the VMM was killed mid-run').toBeLessThan(blocks);
    const torn = blockIsZero(data, i) ? 0 : 1;
    for (let j = i + torn; j < blocks; j++) expect(blockIsZero(data, j), `untouched block ${j}`).toBe(true);
  });
});
