/**
 * A fuzz worker thread: runs the work items the pool sends (a target, a seed, a case count) and posts results.
 * Before every case it publishes a heartbeat and a copy of the input in shared memory, so the pool can tell a
 * hung case from a slow shard and report the input that hung.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { fuzz } from './engine.js';
import { fuzzTarget } from './targets/index.js';
import type { FromWorker, WorkItem, WorkerShared } from './pool.js';

const port = parentPort!;
const shared = workerData as WorkerShared;
const header = new Int32Array(shared.buffer, 0, 2);
const inputArea = new Uint8Array(shared.buffer, 8);

function beforeCase(input: Uint8Array): void {
  const n = Math.min(input.length, inputArea.length);
  inputArea.set(n === input.length ? input : input.subarray(0, n));
  Atomics.store(header, 1, n);
  Atomics.add(header, 0, 1);
}

port.on('message', (item: WorkItem | null) => {
  if (item === null) {
    port.close();
    return;
  }
  try {
    const target = fuzzTarget(item.target);
    const replay = item.input;
    const result = fuzz(
      replay === undefined
        ? target
        : { ...target, seeds: () => [replay], maxLength: Math.max(target.maxLength, replay.length) },
      {
        cases: replay === undefined ? item.cases : 1,
        seed: item.seed,
        minimize: replay === undefined ? item.minimize : false,
        beforeCase,
        progressEvery: 50_000,
        onProgress: (done) => port.postMessage({ type: 'progress', item, done } satisfies FromWorker),
      },
    );
    port.postMessage({ type: 'result', item, result } satisfies FromWorker);
  } catch (e) {
    port.postMessage({ type: 'error', item, message: (e as Error).stack ?? String(e) } satisfies FromWorker);
  }
});
