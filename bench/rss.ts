/**
 * VMM memory overhead: RSS of a process running MicroVms minus the guest memory resident in it, each
 * measured in a fresh process (bench/rss-child.ts); the C baseline is the same VM shape driven by raw ioctls.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cOnce } from './c-baseline.js';
import type { BenchContext } from './context.js';
import { row, type Row, type Target } from './stats.js';

const RAM_MIB = 256;
const TOUCH_MIB = 64;
const RSS_TARGET: Target = { on: 'value', op: '<=', value: 60, label: '≤ 60 MiB' };

interface ChildResult {
  rssKb: number;
  guestKb: number;
  anonKb: number;
  fileKb: number;
}

function child(ctx: BenchContext, vms: number, disk: string): ChildResult {
  const script = join(ctx.root, 'dist', 'bench', 'rss-child.js');
  const guestBin = join(ctx.build.guestDir, 'virtio-bench.bin');
  const args = [script, String(vms), String(RAM_MIB), String(TOUCH_MIB), guestBin, disk];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000 });
  // The measurement is the JSON line; it counts even if tearing the VMs down afterwards went wrong.
  const line = r.stdout?.trim().split('\n').pop() ?? '';
  if (!line.startsWith('{')) {
    throw new Error(
      `rss child (${vms} VMs) failed: ${r.error?.message ?? r.stderr?.trim() ?? `status ${r.status}`}`,
    );
  }
  return JSON.parse(line) as ChildResult;
}

export async function vmmRss(ctx: BenchContext): Promise<Row[]> {
  const section = `VMM memory overhead: process RSS − guest memory resident (guest: ${RAM_MIB} MiB RAM, ${TOUCH_MIB} MiB touched, one virtio-blk disk)`;
  const disk = join(tmpdir(), `node-kvm-bench-rss-${process.pid}.img`);
  const fd = openSync(disk, 'w');
  ftruncateSync(fd, 8 * 1024 * 1024);
  closeSync(fd);
  const bare: number[] = [];
  const one: number[] = [];
  const perVm: number[] = [];
  const cOne: number[] = [];
  const anon: number[] = [];
  const file: number[] = [];
  const ratio: number[] = [];
  const extra = 3;
  try {
    for (let i = 0; i < ctx.rssReps; i++) {
      ctx.log(`rss: round ${i + 1}/${ctx.rssReps}`);
      const b = child(ctx, 0, disk);
      const a = child(ctx, 1, disk);
      const n = child(ctx, 1 + extra, disk);
      const c = await cOnce(ctx.build.baseline, ctx.build.guestDir, `rss ${RAM_MIB} ${TOUCH_MIB}`);
      const overhead = (a.rssKb - a.guestKb) / 1024;
      const cOverhead = (c.rss_kb - c.guest_kb) / 1024;
      bare.push(b.rssKb / 1024);
      one.push(overhead);
      perVm.push((n.rssKb - n.guestKb - (a.rssKb - a.guestKb)) / 1024 / extra);
      cOne.push(cOverhead);
      anon.push(a.anonKb / 1024);
      file.push(a.fileKb / 1024);
      ratio.push(overhead / cOverhead);
    }
  } finally {
    rmSync(disk, { force: true });
  }
  return [
    row({
      section,
      quantity: 'VMM overhead, 1 MicroVm (node process + VM thread + devices)',
      unit: 'MiB',
      samples: one,
      ratioSamples: ratio,
      baseline: 'C VMM, same VM (overhead multiple)',
      target: RSS_TARGET,
    }),
    row({
      section,
      quantity: '… of which anonymous (private: JS heaps, native state, stacks)',
      unit: 'MiB',
      samples: anon,
    }),
    row({
      section,
      quantity: '… of which file-backed (node binary and libraries, shared with other processes)',
      unit: 'MiB',
      samples: file,
    }),
    row({
      section,
      quantity: `VMM overhead per extra MicroVm (1 → ${1 + extra} VMs, per VM)`,
      unit: 'MiB',
      samples: perVm,
    }),
    row({
      section,
      quantity: 'node process with node-kvm loaded, no VM (part of the 1-VM overhead)',
      unit: 'MiB',
      samples: bare,
    }),
    row({ section, quantity: 'C VMM overhead, 1 VM (raw ioctls)', unit: 'MiB', samples: cOne }),
  ];
}
