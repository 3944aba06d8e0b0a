/**
 * Inputs the virtio fuzz targets once failed on (bugs in the device or in a target's invariant), replayed on
 * every run. Add new ones from a failing fuzz run's "Counterexample".
 */
import { describe, expect, it } from 'vitest';
import { VIRTIO_FUZZ_TARGETS } from '../../lib/virtio/testing/fuzz-targets.js';

/** A run of zeros, for compact fixtures. */
function zeros(n: number): number[] {
  return new Array<number>(n).fill(0);
}

const FIXTURES: { target: string; why: string; bytes: number[] }[] = [
  {
    target: 'virtio-balloon',
    why: 'PFNs sent to the inflate queue by the stats step were not counted (target bug); statsq used unnegotiated',
    bytes: [0, 167],
  },
  {
    target: 'virtio-descriptor-chains',
    why: 'a writable buffer overlapping the used ring let the device overwrite ids the driver then read back',
    bytes: [
      199,
      ...zeros(12),
      119,
      0,
      6,
      0,
      45,
      11,
      0,
      0,
      224,
      154,
      ...zeros(365),
      1,
      ...zeros(21),
      2,
      0,
      86,
      1,
    ],
  },
];

describe('virtio fuzz regressions', () => {
  it.each(FIXTURES)('$target: $why', ({ target, bytes }) => {
    expect(() => VIRTIO_FUZZ_TARGETS[target](Uint8Array.from(bytes))).not.toThrow();
  });
});
