/**
 * MicroVm sections: exits through the VM thread, virtio-blk throughput from a guest against the host's own
 * pread/pwrite, and virtio-net frames/s between two VMs against the bare frame channel. The guest is
 * bench/guest/virtio-bench.S (a polling CPL3 driver); the VM is paused while the baseline runs.
 */
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { VIRTIO_MMIO_BASE } from '../lib/arch/x86_64/layout.js';
import { native } from '../lib/native/binding.js';
import { MicroVm } from '../lib/vmm/micro-vm.js';
import { NetChannel } from '../lib/vmm/net-channel.js';
import { guest } from './build.js';
import type { BenchContext } from './context.js';
import { benchGuestConfig, DotClock } from './microvm-clock.js';
import { CMD_IDLE, CMD_QUIT, CMD_RUN, type PumpData } from './net-pump.js';
import { row, type Row, type Target } from './stats.js';

const MiB = 1024 * 1024;
const MODE_BLK_READ = 1;
const MODE_BLK_WRITE = 2;
const MODE_NET_TX = 3;
const MODE_NET_RX = 4;
const MODE_EXITS = 6;
const BLK_TARGET: Target = { on: 'ratio', op: '>=', value: 0.7, label: '≥ 0.7× host' };
const EXIT_TARGET: Target = { on: 'ratio', op: '>=', value: 0.97, label: '≥ 0.97× C' };

/** Dots per chunk so that one chunk lasts about `ms`, from a measured dot interval. */
function dotsFor(intervalMs: number, ms: number, min = 3, max = 200): number {
  return Math.max(min, Math.min(max, Math.round(ms / Math.max(intervalMs, 0.01))));
}

async function stopQuietly(vm: MicroVm): Promise<void> {
  try {
    await vm.stop();
  } catch {
    // already gone
  }
}

export async function vmThreadExits(ctx: BenchContext): Promise<Row[]> {
  const section = 'Exit round trip through MicroVm (vCPU on a native thread, devices on the VM thread), CPL3';
  ctx.log('exits through the MicroVm VM thread');
  const perDot = 200;
  const vm = new MicroVm(
    benchGuestConfig(guest(ctx.build, 'virtio-bench'), { rdi: MODE_EXITS, rcx: perDot }),
  );
  const clock = new DotClock(vm);
  const js: number[] = [];
  const c: number[] = [];
  const r: number[] = [];
  await vm.start();
  try {
    const warm = await clock.interval(3);
    const dots = dotsFor(warm / 3, ctx.chunkMs * 3, 2, 100);
    const exits = dots * (perDot + 1);
    await ctx.c.call(`exit cpl3 pio ${perDot}`);
    for (let i = 0; i < ctx.vmChunks * 2; i++) {
      if (i > 0) await vm.resume();
      const ms = await clock.interval(dots);
      await vm.pause();
      const k = (await ctx.c.call(`exit cpl3 pio ${exits}`)).ns / (exits + 1);
      const a = (ms * 1e6) / exits;
      js.push(a / 1000);
      c.push(k / 1000);
      r.push(k / a);
    }
  } finally {
    await stopQuietly(vm);
  }
  return [
    row({
      section,
      quantity: 'PIO exit, CPL3: MicroVm (VcpuThread → eventfd → VM thread → resume)',
      unit: 'µs/exit',
      samples: js,
      ratioSamples: r,
      baseline: 'C, next chunk',
      target: EXIT_TARGET,
    }),
    row({ section, quantity: 'PIO exit, CPL3: C (raw ioctls)', unit: 'µs/exit', samples: c }),
  ];
}

/** A file of `bytes` written through (not sparse) and synced, so both sides read the page cache. */
function makeDisk(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  try {
    const chunk = new Uint8Array(MiB).fill(0x5a);
    for (let done = 0; done < bytes; done += MiB) writeSync(fd, chunk, 0, Math.min(MiB, bytes - done), done);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export async function virtioBlock(ctx: BenchContext): Promise<Row[]> {
  const depth = 16;
  const section = `virtio-blk from a CPL3 guest (${depth} requests in flight, EVENT_IDX, ioeventfd, polling) vs host pread/pwrite (C) of the same file, same sizes and ${depth} buffers`;
  const region = (ctx.quick ? 32 : 64) * MiB;
  const path = join(tmpdir(), `node-kvm-bench-${process.pid}.img`);
  makeDisk(path, region);
  const payload = guest(ctx.build, 'virtio-bench');
  const rows: Row[] = [];
  try {
    for (const size of [4096, MiB]) {
      for (const op of ['read', 'write'] as const) {
        const label = `sequential ${op}, ${size === MiB ? '1 MiB' : '4 KiB'} requests`;
        ctx.log(`virtio-blk: ${label}`);
        const perDot = size === MiB ? 16 : 512;
        const vm = new MicroVm(
          benchGuestConfig(
            payload,
            {
              rdi: op === 'read' ? MODE_BLK_READ : MODE_BLK_WRITE,
              rsi: size,
              rdx: VIRTIO_MMIO_BASE,
              rcx: perDot,
              r8: region,
              r9: depth,
            },
            { disks: [{ path }] },
          ),
        );
        const clock = new DotClock(vm);
        const guestRate: number[] = [];
        const hostRate: number[] = [];
        const ratio: number[] = [];
        await vm.start();
        try {
          const warm = await clock.interval(3);
          const dots = dotsFor(warm / 3, ctx.chunkMs * 4);
          const requests = dots * perDot;
          const bytes = requests * size;
          await ctx.c.call(`blk ${op} ${path} ${size} ${perDot} ${region} ${depth}`);
          for (let i = 0; i < ctx.vmChunks; i++) {
            if (i > 0) await vm.resume();
            const ms = await clock.interval(dots);
            await vm.pause();
            const hostMs =
              (await ctx.c.call(`blk ${op} ${path} ${size} ${requests} ${region} ${depth}`)).ns / 1e6;
            guestRate.push(bytes / MiB / (ms / 1000));
            hostRate.push(bytes / MiB / (hostMs / 1000));
            ratio.push(hostMs / ms);
          }
        } finally {
          await stopQuietly(vm);
        }
        rows.push(
          row({
            section,
            quantity: `virtio-blk ${label}: guest`,
            unit: 'MiB/s',
            samples: guestRate,
            ratioSamples: ratio,
            baseline: 'host pread/pwrite, next chunk',
            target: size === MiB ? BLK_TARGET : undefined,
          }),
          row({
            section,
            quantity: `host ${op === 'read' ? 'pread' : 'pwrite'} ${size === MiB ? '1 MiB' : '4 KiB'} (C)`,
            unit: 'MiB/s',
            samples: hostRate,
          }),
        );
      }
    }
  } finally {
    rmSync(path, { force: true });
  }
  return rows;
}

function pumpWorker(data: PumpData): Worker {
  return new Worker(new URL('./net-pump.js', import.meta.url), { workerData: data });
}

export async function virtioNet(ctx: BenchContext): Promise<Row[]> {
  const section =
    'virtio-net between two VMs over the in-process channel (60-byte frames) vs the bare channel between two threads';
  ctx.log('virtio-net: VM to VM');
  const frameLength = 60;
  const perDot = 1024;
  const payload = guest(ctx.build, 'virtio-bench');
  const vmRate: number[] = [];
  const chanRate: number[] = [];
  const ratio: number[] = [];
  // The VM pair.
  const link = new NetChannel();
  const receiver = new MicroVm(
    benchGuestConfig(
      payload,
      { rdi: MODE_NET_RX, rdx: VIRTIO_MMIO_BASE, rcx: perDot },
      { net: [{ channel: link.ends[1] }] },
    ),
  );
  const sender = new MicroVm(
    benchGuestConfig(
      payload,
      { rdi: MODE_NET_TX, rsi: frameLength, rdx: VIRTIO_MMIO_BASE, rcx: perDot, r9: 32 },
      { net: [{ channel: link.ends[0] }] },
    ),
  );
  // The bare channel pump.
  const bare = new NetChannel();
  const control = new SharedArrayBuffer(24);
  const ctl = new Int32Array(control, 0, 4);
  const elapsed = new Float64Array(control, 16, 1);
  const workers = [
    pumpWorker({ role: 'rx', end: bare.ends[1], control, frameLength, batch: 32 }),
    pumpWorker({ role: 'tx', end: bare.ends[0], control, frameLength, batch: 32 }),
  ];
  const pumpChunk = async (frames: number): Promise<number> => {
    Atomics.store(ctl, 1, frames);
    Atomics.store(ctl, 2, 0);
    Atomics.store(ctl, 0, CMD_RUN);
    Atomics.notify(ctl, 0);
    // The receiver times itself; polling here only decides when the next step starts.
    const deadline = Date.now() + 60_000;
    while (Atomics.load(ctl, 2) === 0 && Date.now() < deadline) await sleep(1);
    Atomics.store(ctl, 0, CMD_IDLE);
    Atomics.notify(ctl, 0);
    if (Atomics.load(ctl, 2) === 0) throw new Error('the bare channel pump made no progress');
    return elapsed[0];
  };
  const clock = new DotClock(receiver);
  await receiver.start();
  try {
    await sender.start();
    const warm = await clock.interval(3);
    const dots = dotsFor(warm / 3, ctx.chunkMs * 4, 2, 100);
    const frames = dots * perDot;
    // The bare channel is an order of magnitude faster: give it more frames so its chunks are as long.
    const bareFrames = frames * 8;
    await pumpChunk(bareFrames);
    for (let i = 0; i < ctx.vmChunks; i++) {
      if (i > 0) {
        await receiver.resume();
        await sender.resume();
      }
      const ms = await clock.interval(dots);
      await sender.pause();
      await receiver.pause();
      const bareMs = await pumpChunk(bareFrames);
      const vmFps = frames / (ms / 1000);
      const bareFps = bareFrames / (bareMs / 1000);
      vmRate.push(vmFps);
      chanRate.push(bareFps);
      ratio.push(vmFps / bareFps);
    }
    const stats = await sender.stats();
    const rxStats = await receiver.stats();
    ctx.log(
      `virtio-net stats: sender ${JSON.stringify(stats.devices)}; receiver ${JSON.stringify(rxStats.devices)}`,
    );
  } finally {
    await stopQuietly(sender);
    await stopQuietly(receiver);
    Atomics.store(ctl, 0, CMD_QUIT);
    Atomics.notify(ctl, 0);
    native().hostIo.write(bare.ends[1].rxDoorbell, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
    await Promise.all(workers.map((w) => new Promise((resolve) => w.once('exit', resolve))));
    link.close();
    bare.close();
  }
  return [
    row({
      section,
      quantity: 'virtio-net VM → VM, frames received by the second guest',
      unit: 'frames/s',
      samples: vmRate,
      ratioSamples: ratio,
      baseline: 'bare channel, next chunk',
    }),
    row({
      section,
      quantity: 'bare channel thread → thread (FrameRing + eventfd, no VM)',
      unit: 'frames/s',
      samples: chanRate,
    }),
  ];
}
