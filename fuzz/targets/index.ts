/**
 * Every fuzz target by name: the virtio ones (lib/virtio/testing/fuzz-targets.ts, a hostile guest driving the
 * transport, the queues and each device's request parser) and the boot ones (./boot.ts).
 */
import { VIRTIO_FUZZ_TARGETS } from '../../lib/virtio/testing/fuzz-targets.js';
import type { FuzzTarget } from '../engine.js';
import { BOOT_FUZZ_TARGETS } from './boot.js';

const VIRTIO_DESCRIPTIONS: Record<string, string> = {
  'virtio-descriptor-chains':
    'descriptor tables (direct, indirect), avail ring entries and indices, event idx',
  'virtio-mmio-registers': 'the virtio-mmio register space: any offset, width, value and order, per device',
  'virtio-blk-requests': 'virtio-blk request parser: every type, split headers, odd lengths, host I/O errors',
  'virtio-net': 'virtio-net tx/rx chains of any shape, peer frames, link flaps, resets',
  'virtio-vsock-packets': 'virtio-vsock packets (any op, port, length, credit) and host connections',
  'virtio-balloon': 'virtio-balloon PFN arrays, stats buffers and targets',
  'virtio-console': 'virtio-console input/output chains and host input',
};

function virtioTarget(name: string, run: (bytes: Uint8Array) => void): FuzzTarget {
  return {
    name,
    description: VIRTIO_DESCRIPTIONS[name] ?? name,
    run: (bytes) => {
      run(bytes);
    },
    // The targets read their input as a stream of small decisions; short random strings reach every branch.
    seeds: () => [new Uint8Array(0), new Uint8Array(64), new Uint8Array(256).fill(0xff)],
    maxLength: 768,
  };
}

export const FUZZ_TARGETS: readonly FuzzTarget[] = [
  ...Object.entries(VIRTIO_FUZZ_TARGETS).map(([name, run]) => virtioTarget(name, run)),
  ...BOOT_FUZZ_TARGETS,
];

export function fuzzTarget(name: string): FuzzTarget {
  const t = FUZZ_TARGETS.find((x) => x.name === name);
  if (t === undefined) {
    throw new Error(`unknown fuzz target '${name}'; known: ${FUZZ_TARGETS.map((x) => x.name).join(', ')}`);
  }
  return t;
}
