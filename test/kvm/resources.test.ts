/**
 * Resources: VMs must give back everything they took. 10,000 VM lifecycles leave no fd, mapping or RSS growth;
 * 8 MicroVms run at once in one process and release everything; a soak (block + net I/O for a bounded time)
 * keeps memory flat.
 *
 * NODE_KVM_LIFECYCLES (default 10000) and NODE_KVM_SOAK_SECONDS (default 12) scale the long tests.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { native } from '../../lib/native/binding.js';
import { MicroVm } from '../../lib/vmm/micro-vm.js';
import { NetChannel, NetChannelPeer } from '../../lib/vmm/net-channel.js';
import { TinyVm } from '../../lib/vmm/tiny-vm.js';
import { faultGuest } from '../support/fault-guest.js';
import { describeKvm } from '../support/kvm.js';

const MiB = 1024 * 1024;
const root = fileURLToPath(new URL('../..', import.meta.url));
const guest = faultGuest;
const SLOT0 = 0xd000_0000;
const SLOT1 = 0xd000_1000;
const PATTERN = 0x4e4f44454b564d21n;
const LIFECYCLES = Number(process.env.NODE_KVM_LIFECYCLES ?? 10_000);
const SOAK_SECONDS = Number(process.env.NODE_KVM_SOAK_SECONDS ?? 12);
/**
 * Under AddressSanitizer (npm run test:asan) freed memory sits in ASan's quarantine (up to 256 MiB by design)
 * and its allocator maps regions per thread, so RSS and mapping counts are only judged without it; fd counts
 * are judged always.
 */
const ASAN = process.env.NODE_KVM_ASAN === '1';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function fds(): number {
  return readdirSync('/proc/self/fd').length;
}
/** Every mapping in the process: also moves with V8's heap pages and malloc's arenas, so it is judged loosely. */
function mappings(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').length;
}
/**
 * What node-kvm itself holds, judged exactly: guest memory regions and kvm_run pages (the addon's own counts,
 * cross-checked against the kvm-vcpu mappings in /proc/self/maps) and threads (vCPU and VM threads).
 */
function ours() {
  const maps = readFileSync('/proc/self/maps', 'utf8');
  return {
    ...native().liveMappings(),
    vcpuMaps: maps.split('\n').filter((line) => line.includes('kvm-vcpu')).length,
    threads: readdirSync('/proc/self/task').length,
  };
}
function rssMiB(): number {
  gc();
  return process.memoryUsage().rss / MiB;
}

function image(name: string, size: number): string {
  const path = join(work, name);
  writeFileSync(path, '', { mode: 0o600 });
  truncateSync(path, size);
  return path;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tick = () => new Promise((r) => setImmediate(r));

/** Collects garbage and lets N-API finalizers (queued for the event loop) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await tick();
  }
}

/** Polls until fn() holds (resources are released when worker threads exit, a moment after `exited`). */
async function eventually(fn: () => boolean, ms = 3000): Promise<void> {
  for (const end = Date.now() + ms; !fn() && Date.now() < end;) await sleep(20);
}

let work: string;
beforeAll(() => {
  execFileSync(process.execPath, [join(root, 'scripts', 'build-payloads.mjs')], { stdio: 'ignore' });
  work = mkdtempSync(join(tmpdir(), 'node-kvm-resources-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describeKvm('resources', () => {
  it(
    `${LIFECYCLES.toLocaleString('en-US')} VM lifecycles: no fd, mapping or RSS growth`,
    { timeout: 300_000 },
    async () => {
      // Real mode: out 'k' to the debug console; hlt.
      const payload = Uint8Array.of(0xb0, 0x6b, 0xe6, 0xe9, 0xf4);
      const lifecycle = (i: number) => {
        const vm = TinyVm.create({ memorySize: 1 * MiB });
        try {
          if (i % 10 === 0) {
            // Every tenth one runs a guest too: KVM_RUN, an I/O exit, HLT.
            vm.load(0x1000, payload);
            vm.enterRealMode(0x1000);
            const stop = vm.run({ maxExits: 10 });
            if (stop.reason !== 'hlt') throw new Error(`lifecycle ${i}: ${JSON.stringify(stop)}`);
          }
        } finally {
          vm.close();
        }
      };
      // close() releases fds and mappings at once; the small native wrapper objects are freed by N-API
      // finalizers, which run on the event loop: a loop that never yields would hold ~1.5 KiB per VM until it
      // does. Real callers yield; so does this loop, every 100 VMs.
      const run = async (n: number) => {
        for (let i = 0; i < n; i++) {
          lifecycle(i);
          if (i % 100 === 99) await tick();
        }
        await settle();
      };
      // The exact counts see a live VM: its memory region and its vCPU's kvm_run page.
      const idle = ours();
      const open = TinyVm.create({ memorySize: 1 * MiB });
      open.enterRealMode(0x1000);
      expect(ours()).toMatchObject({
        guest: idle.guest + 1,
        guestBytes: idle.guestBytes + MiB,
        vcpuRun: 1,
        vcpuMaps: 1,
      });
      open.close();
      expect(ours()).toEqual(idle);
      await run(500); // warm up: JIT, allocator pools
      const at = () => ({ fds: fds(), maps: mappings(), rss: rssMiB(), ours: ours() });
      const before = at();
      const t0 = performance.now();
      await run(LIFECYCLES / 2);
      // Measured over the second half: what the process grows to once (JIT code, heap and malloc pools reach
      // their working size) is not a leak; a leak keeps growing with every VM.
      const mid = at();
      await run(LIFECYCLES / 2);
      const ms = performance.now() - t0;
      const after = at();
      console.log(
        `[resources] ${LIFECYCLES} lifecycles in ${(ms / 1000).toFixed(1)} s (${(ms / LIFECYCLES).toFixed(2)} ms ` +
          `each); fds ${before.fds} -> ${mid.fds} -> ${after.fds}, mappings ${before.maps} -> ${mid.maps} -> ` +
          `${after.maps}, RSS ${before.rss.toFixed(1)} -> ${mid.rss.toFixed(1)} -> ${after.rss.toFixed(1)} MiB`,
      );
      expect(mid.fds).toBe(before.fds);
      expect(after.fds).toBe(before.fds);
      expect(mid.ours).toEqual(before.ours);
      expect(after.ours).toEqual(before.ours);
      expect(after.ours).toMatchObject({ guest: 0, guestBytes: 0, vcpuRun: 0, vcpuMaps: 0 });
      if (!ASAN) {
        // A leak of one mapping per VM, or per VM that ran, would add 5,000 or 500 here; V8 and malloc add a few.
        expect(after.maps - mid.maps).toBeLessThan(Math.max(8, LIFECYCLES / 200));
        // One 4 KiB page per VM would be 20 MiB over the second half.
        expect(after.rss - mid.rss).toBeLessThan(5);
      }
    },
  );

  it('8 MicroVms at once in one process, each writing and flushing its own disk; all released after', async () => {
    const batch = async (round: number) => {
      const disks = Array.from({ length: 8 }, (_, i) => image(`vm${round}-${i}.img`, 4 * MiB));
      const vms = disks.map((path) => new MicroVm(guest(1, 1024, SLOT0, 0, { disks: [{ path }] })));
      const dots = vms.map(() => 0);
      vms.forEach((vm, i) => vm.on('console', (b) => (dots[i] += b.length)));
      await Promise.all(vms.map((vm) => vm.start()));
      // All eight make progress at the same time.
      await eventually(() => dots.every((d) => d >= 10), 20_000);
      expect(vms.every((vm) => vm.running)).toBe(true);
      const seen = [...dots];
      expect(Math.min(...seen)).toBeGreaterThanOrEqual(10);
      const stops = await Promise.all(vms.map((vm) => vm.stop()));
      for (const s of stops) expect(['stopped', 'debug-exit']).toContain(s.reason);
      disks.forEach((path, i) => {
        const data = readFileSync(path);
        for (let b = 0; b < seen[i]; b++) {
          expect(data.readBigUInt64LE(b * 4096), `vm ${i} block ${b}`).toBe(PATTERN ^ BigInt(b));
          expect(data.readBigUInt64LE(b * 4096 + 4088), `vm ${i} block ${b}`).toBe(PATTERN ^ BigInt(b));
        }
      });
      await eventually(() => fds() === fdsAtStart);
      await eventually(() => ours().threads <= oursAtStart.threads);
      await settle();
      return Math.min(...seen);
    };
    const fdsAtStart = fds();
    const oursAtStart = ours();
    // The first batch also leaves what is kept on purpose (glibc's per-thread malloc arenas, V8's per-process
    // pools); a second batch must add nothing.
    await batch(0);
    expect(fds()).toBe(fdsAtStart);
    expect(ours()).toEqual(oursAtStart);
    const maps = mappings();
    const rss = rssMiB();
    const progress = await batch(1);
    expect(fds()).toBe(fdsAtStart);
    expect(ours()).toEqual(oursAtStart);
    console.log(
      `[resources] 8 MicroVms at once: each flushed >= ${progress} blocks; after a second batch mappings ` +
        `${maps} -> ${mappings()}, RSS ${rss.toFixed(1)} -> ${rssMiB().toFixed(1)} MiB, node-kvm's own ` +
        JSON.stringify(ours()),
    );
    // The process-wide mapping count is only reported here: with 16 threads at once, glibc may hand the second
    // batch malloc arenas the first did not need (CI saw +33), so it cannot tell a leak from an allocator. The
    // exact counts above (guest memory, kvm_run pages, threads, fds) and RSS can.
    if (!ASAN) expect(rssMiB() - rss).toBeLessThan(16);
  });

  it(
    `soak: ${SOAK_SECONDS} s of guest block and net I/O with flat memory`,
    { timeout: (SOAK_SECONDS + 60) * 1000 },
    async () => {
      const before = fds();
      const channel = new NetChannel();
      let echoed = 0;
      const peer = new NetChannelPeer(channel.ends[1], (frame) => {
        if (peer.send(frame)) echoed++;
      });
      const vm = new MicroVm(
        guest(3, 0, SLOT0, SLOT1, {
          disks: [{ path: image('soak.img', 1 * MiB) }],
          net: [{ channel: channel.ends[0] }],
        }),
      );
      let dots = 0;
      vm.on('console', (b) => (dots += b.length));
      await vm.start();
      const samples: { t: number; rss: number; dots: number }[] = [];
      const t0 = Date.now();
      while (Date.now() - t0 < SOAK_SECONDS * 1000) {
        await sleep(500);
        samples.push({ t: (Date.now() - t0) / 1000, rss: rssMiB(), dots });
      }
      expect(vm.running, 'the guest is still running (no I/O error ended it)').toBe(true);
      const stats = await vm.stats();
      expect(await vm.stop()).toEqual({ reason: 'stopped' });
      peer.close();
      channel.close();

      type Dev<D> = { device: D; transport: { internalErrors: number; needsResets: number } };
      const blk = stats.devices['virtio-blk@0'] as Dev<{ reads: number; writes: number; ioErrors: number }>;
      const net = stats.devices['virtio-net@1'] as Dev<{
        txFrames: number;
        rxFrames: number;
        rxDropped: number;
      }>;
      const warm = samples.filter((s) => s.t >= Math.min(4, SOAK_SECONDS / 3));
      const lastThird = samples.filter((s) => s.t >= (SOAK_SECONDS * 2) / 3);
      const growth = Math.max(...warm.map((s) => s.rss)) - warm[0].rss;
      const lateGrowth = lastThird[lastThird.length - 1].rss - lastThird[0].rss;
      console.log(
        `[resources] soak ${SOAK_SECONDS} s: ${blk.device.writes} block writes + reads, ${net.device.txFrames} frames ` +
          `out, ${net.device.rxFrames} echoed back; RSS ${warm[0].rss.toFixed(1)} -> ` +
          `${warm[warm.length - 1].rss.toFixed(1)} MiB after warm-up (max growth ${growth.toFixed(1)} MiB, ` +
          `last third ${lateGrowth.toFixed(1)} MiB)`,
      );
      expect(blk.device.writes).toBeGreaterThan(1000);
      expect(Math.abs(blk.device.reads - blk.device.writes)).toBeLessThanOrEqual(1);
      expect(blk.device.ioErrors).toBe(0);
      expect(net.device.txFrames).toBeGreaterThan(1000);
      expect(net.device.rxFrames + net.device.rxDropped).toBeLessThanOrEqual(echoed);
      expect(net.device.rxFrames).toBeGreaterThan(echoed / 2);
      for (const d of [blk, net]) expect(d.transport).toMatchObject({ internalErrors: 0, needsResets: 0 });
      // Flat: nothing grows with the work done (tens of thousands of requests).
      if (!ASAN) {
        expect(growth).toBeLessThan(12);
        expect(lateGrowth).toBeLessThan(4);
      }
      await eventually(() => fds() === before);
      expect(fds()).toBe(before);
    },
  );
});
