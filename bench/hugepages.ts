/**
 * Reserving hugetlb pages for the first-touch benchmark, and giving them back. The old value of
 * /proc/sys/vm/nr_hugepages is restored on every path out: normal return, exception, SIGINT/SIGTERM, exit.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { readHugepagePool } from '../lib/memory/allocate.js';

const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages';

export interface Reservation {
  /** Pages the pool had before. */
  before: number;
  /** Free pages now available to us. */
  free: number;
  /** Why hugetlb cannot be measured, if it cannot. */
  problem?: string;
  release(): void;
}

function readNr(): number {
  return Number(readFileSync(NR_HUGEPAGES, 'utf8').trim());
}

/** Grows the pool so that `pages` more are free (as root); release() puts the old size back. */
export function reserveHugepages(pages: number): Reservation {
  let before: number;
  try {
    before = readNr();
  } catch (e) {
    return {
      before: 0,
      free: 0,
      problem: `cannot read ${NR_HUGEPAGES}: ${(e as Error).message}`,
      release() {},
    };
  }
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    try {
      writeFileSync(NR_HUGEPAGES, `${before}\n`);
    } catch {
      // Nothing more we can do; the report says what we changed.
    }
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    restore();
    process.kill(process.pid, signal);
  };
  const pool = readHugepagePool();
  const want = before + Math.max(0, pages - pool.free);
  if (want !== before) {
    try {
      writeFileSync(NR_HUGEPAGES, `${want}\n`);
    } catch (e) {
      return {
        before,
        free: pool.free,
        problem: `cannot grow the hugetlb pool (${(e as Error).message}); run as root`,
        release() {},
      };
    }
    process.once('exit', restore);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  const free = readHugepagePool().free;
  return {
    before,
    free,
    problem: free < pages ? `the hugetlb pool only grew to ${free} free pages, ${pages} needed` : undefined,
    release() {
      restore();
      process.removeListener('exit', restore);
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    },
  };
}
