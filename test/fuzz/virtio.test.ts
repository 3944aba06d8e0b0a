/**
 * Hostile-guest property tests for the virtio layer: each fuzz target from lib/virtio/testing/fuzz-targets.ts
 * runs over fast-check byte strings with a fixed seed. FUZZ_RUNS scales the run count (FUZZ_RUNS=100 for a
 * long local run) and FUZZ_SEED picks another seed; a failure prints the shrunk input to add to
 * virtio-regressions.test.ts.
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { VIRTIO_FUZZ_TARGETS } from '../../lib/virtio/testing/fuzz-targets.js';

const SCALE = Math.max(1, Number(process.env.FUZZ_RUNS ?? 1));
const SEED = Number(process.env.FUZZ_SEED ?? 42);
const BASE_RUNS: Record<string, number> = {
  'virtio-descriptor-chains': 3000,
  'virtio-mmio-registers': 1500,
  'virtio-blk-requests': 1000,
  'virtio-net': 1000,
  'virtio-vsock-packets': 1000,
  'virtio-balloon': 1000,
  'virtio-console': 1000,
};

describe('virtio fuzz targets (fixed seed)', () => {
  for (const [name, target] of Object.entries(VIRTIO_FUZZ_TARGETS)) {
    it(`${name}: no exception, no access outside guest memory, spec errors`, { timeout: 600_000 }, () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 768, size: 'max' }), (bytes) => {
          target(bytes);
        }),
        { seed: SEED, numRuns: (BASE_RUNS[name] ?? 1000) * SCALE },
      );
    });
  }
});
