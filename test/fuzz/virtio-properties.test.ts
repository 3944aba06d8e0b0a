/**
 * Structured properties of the transport and queue (fixed seed; FUZZ_RUNS scales the run count): well-formed
 * chains arrive byte-exact however they are split, and the status register only ever follows the table.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  STATUS_ACKNOWLEDGE,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_FEATURES_OK,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  bit,
} from '../../lib/virtio/constants.js';
import { createMockGuest, type MockBuffer } from '../../lib/virtio/testing/mock-driver.js';
import { ChainProbeDevice } from '../../lib/virtio/testing/probe-device.js';

const SCALE = Math.max(1, Number(process.env.FUZZ_RUNS ?? 1));
const SEED = Number(process.env.FUZZ_SEED ?? 42);
const memoryBuffer = new ArrayBuffer(1 << 20);

describe('virtio properties', () => {
  it('well-formed chains reach the device byte-exact, whatever the split', () => {
    const chainArb = fc.record({
      readable: fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { maxLength: 5 }),
      writable: fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 5 }),
      indirect: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(chainArb, { minLength: 1, maxLength: 8 }), (chains) => {
        const device = new ChainProbeDevice([16]);
        const { driver, transport } = createMockGuest(device, { buffer: memoryBuffer });
        driver.init({ features: bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) });
        for (const c of chains) {
          const buffers: MockBuffer[] = [
            ...c.readable.map((data) => ({ data })),
            ...c.writable.map((length) => ({ length, writable: true as const })),
          ];
          if (buffers.length === 0) continue;
          const sent = driver.send(0, buffers, { indirect: c.indirect })!;
          const seen = device.seen.pop()!;
          const expected = Uint8Array.from(c.readable.flatMap((d) => [...d]));
          expect([...seen.readable]).toEqual([...expected]);
          const writableTotal = c.writable.reduce((a, b) => a + b, 0);
          const used = driver.takeUsed(0);
          expect(used).toEqual([{ id: sent.head, len: writableTotal, chain: sent }]);
        }
        expect(transport.queues[0].stats.invalidChains).toBe(0);
      }),
      { seed: SEED, numRuns: 300 * SCALE },
    );
  });

  it('the status register only follows the transition table', () => {
    const ACK = STATUS_ACKNOWLEDGE;
    const sequence = [
      0,
      ACK,
      ACK | STATUS_DRIVER,
      ACK | STATUS_DRIVER | STATUS_FEATURES_OK,
      ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
    ];
    const writes = fc.array(
      fc.oneof(fc.constantFrom(...sequence, STATUS_FAILED, 0x40, 0xff), fc.integer({ min: 0, max: 255 })),
      { maxLength: 30 },
    );
    fc.assert(
      fc.property(writes, (values) => {
        const device = new ChainProbeDevice([8]);
        const { driver, transport } = createMockGuest(device, { buffer: memoryBuffer });
        let expected = 0;
        let featuresWritten = false;
        for (const v of values) {
          // A driver in the DRIVER state offers acceptable features, so FEATURES_OK can succeed.
          if (expected === (ACK | STATUS_DRIVER)) {
            driver.writeDriverFeatures(bit(VIRTIO_F_VERSION_1));
            featuresWritten = true;
          }
          driver.setStatus(v);
          const written = v & ~0x40; // DEVICE_NEEDS_RESET is not the driver's to write
          const from = sequence.indexOf(expected);
          const to = sequence.indexOf(written);
          if (v === 0) {
            expected = 0;
            featuresWritten = false;
          } else if (written === (expected | STATUS_FAILED)) expected = written;
          else if ((expected & STATUS_FAILED) === 0 && from >= 0 && to > from) {
            // One write may take several steps forward; FEATURES_OK needs the features written beforehand.
            for (let k = from + 1; k <= to; k++) {
              if ((sequence[k] & ~sequence[k - 1]) === STATUS_FEATURES_OK && !featuresWritten) break;
              expected = sequence[k];
            }
          }
          expect(transport.status).toBe(expected);
          if ((transport.status & STATUS_DRIVER_OK) !== 0) expect(device.activations).toBeGreaterThan(0);
        }
      }),
      { seed: SEED, numRuns: 500 * SCALE },
    );
  });
});
