/**
 * Runs fuzz work items on worker threads with a hang watchdog. Synchronous code cannot be interrupted from
 * inside, so a target that loops forever on some input would stall a plain loop for good; here each worker
 * bumps a shared heartbeat before every case, and a worker whose heartbeat stops for `hangMs` is terminated,
 * its current input reported as a 'hang' failure, and the rest of its shard re-queued on a fresh worker.
 */
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { failureSignature, inputHash, type FuzzFailure, type FuzzResult } from './engine.js';

export interface WorkItem {
  target: string;
  shard: number;
  cases: number;
  seed: number;
  /** Shrink failing inputs (default true). */
  minimize?: boolean;
  /** Replay exactly this input (cases 1) instead of fuzzing. */
  input?: Uint8Array;
}

export type FromWorker =
  | { type: 'progress'; item: WorkItem; done: number }
  | { type: 'result'; item: WorkItem; result: FuzzResult }
  | { type: 'error'; item: WorkItem; message: string };

/** Shared with a worker: [heartbeat counter, input length] as Int32, then the current input's bytes. */
export interface WorkerShared {
  buffer: SharedArrayBuffer;
}

export interface PoolOptions {
  jobs: number;
  /** A case running longer than this is a hang (default 10 s). */
  hangMs?: number;
  /** After this many hangs of one target, its remaining cases are dropped (default 3). */
  maxHangsPerTarget?: number;
  onProgress?: (item: WorkItem, done: number) => void;
}

export interface PoolResult {
  item: WorkItem;
  result: FuzzResult;
}

const INPUT_CAPACITY = 256 * 1024;

function workerUrl(): URL {
  const compiled = new URL('./worker.js', import.meta.url);
  if (existsSync(compiled)) return compiled;
  // Running from TypeScript sources (vitest): the worker runs the compiled copy under dist/.
  const dist = new URL('../dist/fuzz/worker.js', import.meta.url);
  if (existsSync(dist)) return dist;
  throw new Error('the compiled fuzz worker (dist/fuzz/worker.js) is missing: run `npm run build:ts`');
}

function emptyResult(item: WorkItem, cases: number, ms: number, failures: FuzzFailure[]): FuzzResult {
  return {
    target: item.target,
    cases,
    ms,
    failures,
    failingCases: failures.length,
    corpusSize: 0,
    outcomes: 0,
    slowestMs: ms,
  };
}

/** Runs every item; resolves with one result per item (and per re-queued remainder after a hang). */
export function runPool(items: readonly WorkItem[], o: PoolOptions): Promise<PoolResult[]> {
  const hangMs = o.hangMs ?? 10_000;
  const maxHangs = o.maxHangsPerTarget ?? 3;
  const queue = [...items];
  const results: PoolResult[] = [];
  const hangs = new Map<string, number>();
  const url = workerUrl();

  return new Promise((resolve, reject) => {
    let live = 0;
    let failed = false;
    const spawn = (): void => {
      const shared: WorkerShared = { buffer: new SharedArrayBuffer(8 + INPUT_CAPACITY) };
      const header = new Int32Array(shared.buffer, 0, 2);
      // Not the parent's --input-type: a worker started from a file rejects it.
      const execArgv = process.execArgv.filter(
        (a, i, all) => !a.startsWith('--input-type') && all[i - 1] !== '--input-type',
      );
      const worker = new Worker(url, { workerData: shared, execArgv });
      live++;
      let current: WorkItem | undefined;
      let startedAt = 0;
      let lastBeat = 0;
      let lastBeatAt = 0;
      let finished = false;
      const watchdog = setInterval(
        () => {
          if (current === undefined) return;
          const beat = Atomics.load(header, 0);
          const now = performance.now();
          if (beat !== lastBeat) {
            lastBeat = beat;
            lastBeatAt = now;
            return;
          }
          if (now - lastBeatAt < hangMs) return;
          // Hung: report the input in shared memory, drop this worker, re-queue what is left of the shard.
          const item = current;
          current = undefined;
          const length = Atomics.load(header, 1);
          const input = new Uint8Array(shared.buffer, 8, length).slice();
          const { signature, message } = failureSignature(
            new Error(`hang: one case ran for more than ${(hangMs / 1000).toFixed(1)} s`),
          );
          const done = Math.max(0, beat - 1);
          results.push({
            item,
            result: emptyResult(item, done, now - startedAt, [
              { target: item.target, signature, message, input, hash: inputHash(input) },
            ]),
          });
          const n = (hangs.get(item.target) ?? 0) + 1;
          hangs.set(item.target, n);
          if (n < maxHangs && item.cases - done - 1 > 0) {
            queue.push({ ...item, cases: item.cases - done - 1, seed: (item.seed + 0x9e37) >>> 0 });
          }
          finished = true;
          clearInterval(watchdog);
          void worker.terminate();
          live--;
          spawn();
        },
        Math.min(500, hangMs / 4),
      );
      const next = (): void => {
        current = queue.shift();
        if (current === undefined) {
          worker.postMessage(null);
          return;
        }
        Atomics.store(header, 0, 0);
        lastBeat = 0;
        startedAt = lastBeatAt = performance.now();
        worker.postMessage(current);
      };
      worker.on('message', (m: FromWorker) => {
        if (finished) return;
        if (m.type === 'progress') {
          o.onProgress?.(m.item, m.done);
          return;
        }
        if (m.type === 'error') {
          failed = true;
          reject(new Error(`fuzz worker failed on ${m.item.target}: ${m.message}`));
          return;
        }
        results.push({ item: m.item, result: m.result });
        next();
      });
      worker.on('error', (e) => {
        if (finished) return;
        failed = true;
        reject(e);
      });
      worker.on('exit', () => {
        clearInterval(watchdog);
        if (finished) return;
        finished = true;
        live--;
        if (live === 0 && !failed) resolve(results);
      });
      next();
    };
    const jobs = Math.max(1, Math.min(o.jobs, queue.length));
    if (queue.length === 0) resolve(results);
    else for (let i = 0; i < jobs; i++) spawn();
  });
}
