/**
 * `npm run bench`: node-kvm against a raw-ioctl C baseline, measured side by side in small alternating chunks
 * so each ratio is taken under the same host load. Prints a table and writes bench/results/latest.json.
 *
 *   node dist/bench/run.js [--quick] [--only=exits,ioeventfd,lifecycle,touch,vmthread,blk,net,rss] [--out=FILE]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBench } from './build.js';
import { CBaseline } from './c-baseline.js';
import type { BenchContext } from './context.js';
import { exitRoundTrips, firstTouch, ioeventfdWrites, vmLifecycle } from './raw-kvm.js';
import { vmmRss } from './rss.js';
import { formatTable, notMeasured, type Row } from './stats.js';
import { virtioBlock, virtioNet, vmThreadExits } from './virtio.js';

const SECTIONS = ['exits', 'vmthread', 'ioeventfd', 'lifecycle', 'touch', 'blk', 'net', 'rss'] as const;
type Section = (typeof SECTIONS)[number];

function parseArgs(argv: string[]): { quick: boolean; only: Set<Section>; out: string | undefined } {
  let quick = false;
  let only = new Set<Section>(SECTIONS);
  let out: string | undefined;
  for (const a of argv) {
    if (a === '--quick') quick = true;
    else if (a.startsWith('--only=')) {
      const names = a.slice(7).split(',').filter(Boolean);
      for (const n of names) {
        if (!(SECTIONS as readonly string[]).includes(n))
          throw new Error(`unknown section '${n}' (${SECTIONS.join(', ')})`);
      }
      only = new Set(names as Section[]);
    } else if (a.startsWith('--out=')) out = a.slice(6);
    else if (a === '--help' || a === '-h') {
      console.log('usage: npm run bench -- [--quick] [--only=' + SECTIONS.join(',') + '] [--out=FILE]');
      process.exit(0);
    } else throw new Error(`unknown argument '${a}'`);
  }
  return { quick, only, out };
}

function uptime(): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return `load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`;
  }
}

function kvmFlavour(): string {
  if (existsSync('/sys/module/kvm_pvm')) return 'kvm_pvm (CPL0 guest code emulated, CPL3 native)';
  return /\b(vmx|svm)\b/.test(readFileSync('/proc/cpuinfo', 'utf8'))
    ? 'hardware KVM'
    : 'KVM (no vmx/svm flag: nested)';
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const started = Date.now();
  const build = buildBench(root);
  const c = new CBaseline(build.baseline, build.guestDir);
  const ctx: BenchContext = {
    root,
    build,
    c,
    quick: args.quick,
    chunks: args.quick ? 12 : 40,
    chunkMs: args.quick ? 20 : 30,
    touchMiB: args.quick ? 64 : 128,
    touchRounds: args.quick ? 3 : 5,
    vmChunks: args.quick ? 5 : 12,
    rssReps: args.quick ? 1 : 3,
    log: (m) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(1)}s] ${m}\n`),
  };
  const loadBefore = uptime();
  ctx.log(loadBefore);
  const rows: Row[] = [];
  const run = async (name: Section, fn: (ctx: BenchContext) => Promise<Row[]>): Promise<void> => {
    if (!args.only.has(name)) return;
    try {
      rows.push(...(await fn(ctx)));
    } catch (e) {
      const err = e as Error;
      ctx.log(`${name} failed: ${err.stack ?? err.message}`);
      rows.push(notMeasured(name, `${name}: the section failed`, '', err.message));
    }
  };
  try {
    await run('exits', exitRoundTrips);
    await run('vmthread', vmThreadExits);
    await run('ioeventfd', ioeventfdWrites);
    await run('lifecycle', vmLifecycle);
    await run('touch', firstTouch);
    await run('blk', virtioBlock);
    await run('net', virtioNet);
    await run('rss', vmmRss);
  } finally {
    await c.close();
  }
  const loadAfter = uptime();
  const table = formatTable(rows);
  const seconds = (Date.now() - started) / 1000;
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  console.log(table);
  console.log('');
  console.log(`${command}: ${seconds.toFixed(0)} s; before: ${loadBefore}; after: ${loadAfter}`);
  const out = args.out ?? join(root, 'bench', 'results', 'latest.json');
  mkdirSync(dirname(out), { recursive: true });
  const meta = {
    command,
    date: new Date().toISOString(),
    seconds,
    host: {
      kernel: release(),
      cpu: cpus()[0]?.model,
      cpus: cpus().length,
      memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
      kvm: kvmFlavour(),
      node: process.version,
    },
    loadBefore,
    loadAfter,
    settings: {
      chunks: ctx.chunks,
      chunkMs: ctx.chunkMs,
      touchMiB: ctx.touchMiB,
      touchRounds: ctx.touchRounds,
      vmChunks: ctx.vmChunks,
      rssReps: ctx.rssReps,
    },
  };
  writeFileSync(out, `${JSON.stringify({ meta, rows, table }, null, 2)}\n`);
  ctx.log(`wrote ${out}`);
  const missed = rows.filter((r) => r.met === false).map((r) => r.quantity);
  if (missed.length > 0) ctx.log(`targets missed: ${missed.join('; ')}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
