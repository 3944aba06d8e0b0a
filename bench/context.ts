/** What every benchmark section gets: the C baseline, the built guests, and the run's sizes. */
import type { BenchBuild } from './build.js';
import type { CBaseline } from './c-baseline.js';

export interface BenchContext {
  /** Repository root. */
  root: string;
  build: BenchBuild;
  c: CBaseline;
  quick: boolean;
  /** Chunks (samples) per quantity for the fast loops. */
  chunks: number;
  /** Target duration of one C chunk; chunk sizes are derived from it. */
  chunkMs: number;
  /** Memory per first-touch run, and recorded rounds. */
  touchMiB: number;
  touchRounds: number;
  /** Chunks for the MicroVm-based sections (virtio, VM-thread exits). */
  vmChunks: number;
  /** Repetitions of each RSS measurement (a fresh process each). */
  rssReps: number;
  log(message: string): void;
}
