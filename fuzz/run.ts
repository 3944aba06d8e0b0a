/**
 * `npm run fuzz` — runs every fuzz target for a million cases (or --cases N), split across worker threads,
 * and reports per-target counts, time and failures. Each distinct failure is minimized and saved as a
 * regression fixture, test/fuzz/fixtures/<target>/<hash>.bin (with a .txt saying what broke), which
 * test/fuzz/fixtures.test.ts replays on every `npm test`. Exit status 1 when anything failed.
 *
 *   npm run fuzz -- [--cases N] [--seed S] [--target NAME[,NAME...]] [--jobs J] [--no-save] [--fixtures DIR]
 *                   [--hang-ms MS] [--list]
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FuzzFailure } from './engine.js';
import { fixturesRoot, listFixtures } from './fixtures.js';
import { runPool, type WorkItem } from './pool.js';
import { FUZZ_TARGETS, fuzzTarget } from './targets/index.js';

export interface RunOptions {
  cases: number;
  seed: number;
  targets: string[];
  jobs: number;
  save: boolean;
  /** Where failures are saved (default test/fuzz/fixtures in the package). */
  fixtures?: string;
  /** A case running longer than this is a hang (default 10 s). */
  hangMs?: number;
}

function usage(): string {
  return (
    'usage: npm run fuzz -- [--cases N] [--seed S] [--target NAME[,NAME...]] [--jobs J] [--no-save] [--fixtures DIR]\n' +
    '       [--hang-ms MS] [--list]\n' +
    `targets: ${FUZZ_TARGETS.map((t) => t.name).join(', ')}\n`
  );
}

export function parseArgs(argv: string[]): RunOptions | 'list' | 'help' {
  const o: RunOptions = {
    cases: 1_000_000,
    seed: 1,
    targets: FUZZ_TARGETS.map((t) => t.name),
    jobs: Math.max(1, availableParallelism()),
    save: true,
  };
  const int = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`${flag} needs an integer >= ${min}, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--cases') o.cases = int(a, argv[++i], 1);
    else if (a === '--seed') o.seed = int(a, argv[++i], 0);
    else if (a === '--jobs') o.jobs = int(a, argv[++i], 1);
    else if (a === '--target') {
      o.targets = (argv[++i] ?? '').split(',').filter(Boolean);
      for (const t of o.targets) fuzzTarget(t);
    } else if (a === '--no-save') o.save = false;
    else if (a === '--fixtures') o.fixtures = argv[++i];
    else if (a === '--hang-ms') o.hangMs = int(a, argv[++i], 100);
    else if (a === '--list') return 'list';
    else if (a === '-h' || a === '--help') return 'help';
    else throw new Error(`unknown option ${a}\n${usage()}`);
  }
  return o;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the package root');
    dir = up;
  }
  return dir;
}

function saveFailure(root: string, fixtures: string, f: FuzzFailure, o: RunOptions): string {
  const dir = join(fixtures, f.target);
  mkdirSync(dir, { recursive: true });
  const bin = join(dir, `${f.hash}.bin`);
  writeFileSync(bin, f.input);
  writeFileSync(
    join(dir, `${f.hash}.txt`),
    `${f.message.slice(0, 2000)}\nsignature: ${f.signature}\n` +
      `found by: npm run fuzz -- --target ${f.target} --seed ${o.seed} --cases ${o.cases} --jobs ${o.jobs}\n`,
  );
  return relative(root, bin);
}

function shardSeed(seed: number, target: string, shard: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (const c of target) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193);
  return (h + Math.imul(shard + 1, 0x9e3779b9)) >>> 0;
}

function workItems(o: RunOptions): WorkItem[] {
  const items: WorkItem[] = [];
  const shards = Math.min(o.jobs, o.cases);
  for (const target of o.targets) {
    const per = Math.floor(o.cases / shards);
    for (let s = 0; s < shards; s++) {
      const cases = s === shards - 1 ? o.cases - per * (shards - 1) : per;
      items.push({ target, shard: s, cases, seed: shardSeed(o.seed, target, s) });
    }
  }
  return items;
}

function fmtTime(ms: number): string {
  return ms >= 60_000 ? `${(ms / 60_000).toFixed(1)} min` : `${(ms / 1000).toFixed(1)} s`;
}

interface TargetTotals {
  cases: number;
  cpuMs: number;
  failingCases: number;
  failures: Map<string, FuzzFailure>;
  outcomes: number;
  slowestMs: number;
}

export async function runFuzz(o: RunOptions, log: (line: string) => void = console.log): Promise<number> {
  const root = packageRoot();
  const fixtures = o.fixtures ?? fixturesRoot(root);
  const known = new Map(listFixtures(fixturesRoot(root)).map((f) => [`${f.target}\0${f.signature}`, f]));
  const totals = new Map<string, TargetTotals>(
    o.targets.map((t) => [
      t,
      { cases: 0, cpuMs: 0, failingCases: 0, failures: new Map(), outcomes: 0, slowestMs: 0 },
    ]),
  );
  log(
    `fuzz: ${o.targets.length} target(s) x ${o.cases.toLocaleString('en-US')} cases, seed ${o.seed}, ` +
      `${o.jobs} worker(s)`,
  );
  const started = performance.now();
  let lastLog = started;
  const results = await runPool(workItems(o), {
    jobs: o.jobs,
    hangMs: o.hangMs,
    onProgress: (item, done) => {
      const now = performance.now();
      if (now - lastLog < 30_000) return;
      lastLog = now;
      log(
        `  ... ${item.target} shard ${item.shard}: ${done.toLocaleString('en-US')} cases (${fmtTime(now - started)})`,
      );
    },
  });
  for (const { item, result: r } of results) {
    const t = totals.get(item.target)!;
    t.cases += r.cases;
    t.cpuMs += r.ms;
    t.failingCases += r.failingCases;
    t.outcomes = Math.max(t.outcomes, r.outcomes);
    t.slowestMs = Math.max(t.slowestMs, r.slowestMs);
    for (const f of r.failures) if (!t.failures.has(f.signature)) t.failures.set(f.signature, f);
  }
  let failed = 0;
  log('');
  log(
    `${'target'.padEnd(26)} ${'cases'.padStart(11)} ${'cpu time'.padStart(10)} ${'cases/s'.padStart(9)} ` +
      `${'slowest'.padStart(9)} ${'labels'.padStart(6)} failures`,
  );
  for (const [name, t] of totals) {
    const bad = t.failures.size;
    if (bad > 0 || t.cases < o.cases) failed++;
    log(
      `${name.padEnd(26)} ${t.cases.toLocaleString('en-US').padStart(11)} ${fmtTime(t.cpuMs).padStart(10)} ` +
        `${Math.round(t.cases / Math.max(t.cpuMs / 1000, 1e-9))
          .toLocaleString('en-US')
          .padStart(9)} ` +
        `${`${t.slowestMs.toFixed(1)} ms`.padStart(9)} ${String(t.outcomes).padStart(6)} ` +
        (bad === 0 ? '0' : `${t.failingCases} case(s), ${t.failures.size} distinct`),
    );
    for (const f of t.failures.values()) {
      const seen = known.get(`${name}\0${f.signature}`);
      const where = seen
        ? `known: ${relative(root, seen.path)}${seen.open ? ` (open: ${seen.open})` : ''}`
        : o.save
          ? `new fixture ${saveFailure(root, fixtures, f, o)}`
          : `(not saved, ${f.input.length} bytes)`;
      log(`    FAIL ${f.message.split('\n')[0].slice(0, 160)}\n         -> ${where}`);
    }
  }
  log('');
  log(
    `total: ${[...totals.values()].reduce((n, t) => n + t.cases, 0).toLocaleString('en-US')} cases in ` +
      `${fmtTime(performance.now() - started)} (wall), ` +
      (failed === 0 ? 'no failures' : `${failed} target(s) failed`),
  );
  return failed === 0 ? 0 : 1;
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  if (parsed === 'help') {
    process.stdout.write(usage());
    return;
  }
  if (parsed === 'list') {
    for (const t of FUZZ_TARGETS) process.stdout.write(`${t.name.padEnd(26)} ${t.description}\n`);
    return;
  }
  process.exitCode = await runFuzz(parsed);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main();
