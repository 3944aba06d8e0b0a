/**
 * A small, deterministic mutation fuzzer for the libFuzzer-style targets (a function of one byte string that
 * throws only when an invariant breaks). No coverage instrumentation: the feedback is the *outcome label* a
 * target may return (e.g. which validation rejected the input). An input that produces a label never seen
 * before joins the corpus, so the fuzzer climbs past magic numbers and length checks one check at a time.
 *
 * Everything is driven by one seeded PRNG: the same (target, seed, cases) always runs the same inputs, which is
 * what lets `npm test` run a fixed-seed subset and a failure be reproduced from its seed alone.
 */
import { createHash } from 'node:crypto';
import { concat } from '../lib/boot/bytes.js';

export interface FuzzTarget {
  readonly name: string;
  /** One line: what the target plays and what it checks. */
  readonly description: string;
  /** Runs one case. Throws only when an invariant breaks; may return an outcome label (feedback). */
  run(bytes: Uint8Array): string | void;
  /** Well-formed (or interesting) starting inputs; mutated first. */
  seeds(): Uint8Array[];
  /** Longest input the fuzzer generates for this target. */
  readonly maxLength: number;
}

export interface FuzzOptions {
  cases: number;
  seed: number;
  /** Stop collecting (not running) after this many distinct failure signatures. Default 16. */
  maxFailures?: number;
  /** A case slower than this is a failure (a hostile input must not stall the VMM). Default 2000 ms. */
  slowCaseMs?: number;
  /** Shrink failing inputs before reporting them (default true). */
  minimize?: boolean;
  /** Called with each input just before it runs (a hang watchdog keeps it, to report the input that hung). */
  beforeCase?: (input: Uint8Array) => void;
  /** Called every `progressEvery` cases. */
  onProgress?: (done: number) => void;
  progressEvery?: number;
}

export interface FuzzFailure {
  target: string;
  /** Error class and message with numbers masked: one signature per distinct bug. */
  signature: string;
  message: string;
  input: Uint8Array;
  /** First 16 hex digits of the input's SHA-256: the fixture's file name. */
  hash: string;
}

export interface FuzzResult {
  target: string;
  cases: number;
  ms: number;
  failures: FuzzFailure[];
  /** Failing cases in total, including ones with an already-seen signature. */
  failingCases: number;
  corpusSize: number;
  /** Distinct outcome labels seen (a rough measure of how deep the inputs got). */
  outcomes: number;
  slowestMs: number;
}

/** mulberry32: a tiny, fast, well-mixed 32-bit PRNG. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  u32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Uniform in [0, n). */
  below(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }
  chance(oneIn: number): boolean {
    return this.below(oneIn) === 0;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

const INTERESTING_8 = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 16, 32, 64, 100];
const INTERESTING_16 = [0, 0x80, 0xff, 0x100, 0x200, 0x1000, 0x7fff, 0x8000, 0xfffe, 0xffff, 512, 4096];
const INTERESTING_32 = [
  0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff, 0x1_0000, 0x10_0000, 0xc000_0000, 0xfee0_0000,
];

/** Hex of the first 8 bytes of SHA-256: stable names for fixture files. */
export function inputHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

/** Error class + message, numbers masked, so one bug reached through many inputs counts once. */
export function failureSignature(error: unknown): { signature: string; message: string } {
  const e = error instanceof Error ? error : new Error(String(error));
  const message = `${e.name}: ${e.message}`;
  // An invariant may name its check explicitly; otherwise quoted strings and numbers are masked.
  const named = (e as { check?: unknown }).check;
  const masked = (typeof named === 'string' ? `${e.name}: ${named}` : message)
    .replace(/"(?:[^"\\]|\\.)*"/g, 'S')
    .replace(/0x[0-9a-f]+/gi, 'N')
    .replace(/\d+/g, 'N')
    .slice(0, 200);
  // Where it was thrown (first frame inside the project) separates same-message errors from different places.
  const frame = (e.stack ?? '')
    .split('\n')
    .slice(1)
    .find((l) => /\/(lib|fuzz)\//.test(l));
  const at = frame ? (/\/((?:lib|fuzz)\/[^:)]+)/.exec(frame)?.[1] ?? '') : '';
  return { signature: at ? `${masked} @ ${at}` : masked, message };
}

function writeLe(out: Uint8Array, at: number, value: number, width: number): void {
  for (let i = 0; i < width && at + i < out.length; i++) out[at + i] = (value >>> (8 * i)) & 0xff;
}

/** One AFL-style mutation stack (1-8 mutations) applied to a copy of `input`. */
export function mutate(
  rng: Rng,
  input: Uint8Array,
  corpus: readonly Uint8Array[],
  maxLength: number,
): Uint8Array {
  let data: Uint8Array = input.slice();
  const stack = 1 + rng.below(8);
  for (let m = 0; m < stack; m++) {
    const n = data.length;
    switch (rng.below(12)) {
      case 0:
        if (n) data[rng.below(n)] ^= 1 << rng.below(8);
        break;
      case 1:
        if (n) data[rng.below(n)] = rng.u32() & 0xff;
        break;
      case 2:
        if (n) data[rng.below(n)] = INTERESTING_8[rng.below(INTERESTING_8.length)];
        break;
      case 3:
        if (n > 1) writeLe(data, rng.below(n - 1), INTERESTING_16[rng.below(INTERESTING_16.length)], 2);
        break;
      case 4:
        if (n > 3) writeLe(data, rng.below(n - 3), INTERESTING_32[rng.below(INTERESTING_32.length)], 4);
        break;
      case 5: {
        // Small arithmetic on a little-endian word.
        const width = [1, 2, 4][rng.below(3)];
        if (n >= width) {
          const at = rng.below(n - width + 1);
          let v = 0;
          for (let i = 0; i < width; i++) v += data[at + i] * 2 ** (8 * i);
          v += rng.below(35) - 17;
          writeLe(data, at, v >>> 0, width);
        }
        break;
      }
      case 6: {
        // Delete a block.
        if (n > 1) {
          const at = rng.below(n);
          const len = 1 + rng.below(Math.min(n - at, rng.chance(4) ? n : 32));
          data = concat([data.subarray(0, at), data.subarray(at + len)]);
        }
        break;
      }
      case 7: {
        // Insert random bytes or a copy of a block of the input.
        const len = 1 + rng.below(rng.chance(4) ? 256 : 16);
        const chunk = n > 0 && rng.chance(2) ? data.slice(rng.below(n), rng.below(n) + len) : rng.bytes(len);
        const at = rng.below(n + 1);
        data = concat([data.subarray(0, at), chunk, data.subarray(at)]);
        break;
      }
      case 8: {
        // Overwrite with a block copied from elsewhere in the input.
        if (n > 2) {
          const len = 1 + rng.below(Math.min(32, n - 1));
          const from = rng.below(n - len + 1);
          const to = rng.below(n - len + 1);
          data.copyWithin(to, from, from + len);
        }
        break;
      }
      case 9: {
        // Splice with another corpus entry.
        const other = corpus[rng.below(corpus.length)];
        if (other && other.length > 0 && n > 0) {
          const cut = rng.below(n);
          const from = rng.below(other.length);
          data = concat([data.subarray(0, cut), other.subarray(from)]);
        }
        break;
      }
      case 10:
        // Truncate.
        if (n > 1) data = data.slice(0, rng.below(n));
        break;
      default: {
        // A run of one byte value (zeros, 0xff...).
        if (n) {
          const at = rng.below(n);
          data.fill(rng.chance(2) ? 0 : rng.chance(2) ? 0xff : rng.u32() & 0xff, at, at + 1 + rng.below(64));
        }
      }
    }
  }
  return data.length > maxLength ? data.subarray(0, maxLength) : data;
}

/** Random bytes of a random length (biased towards short inputs). */
function freshInput(rng: Rng, maxLength: number): Uint8Array {
  const cap = rng.chance(4) ? maxLength : Math.min(maxLength, 64 << rng.below(4));
  return rng.bytes(rng.below(cap + 1));
}

type CaseOutcome = { ok: true; label: string | void } | { ok: false; error: unknown };

function runCase(target: FuzzTarget, input: Uint8Array): CaseOutcome {
  try {
    return { ok: true, label: target.run(input) };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Shrinks `input` while it still fails with the same signature (block deletion, then byte zeroing). */
export function minimize(
  target: FuzzTarget,
  input: Uint8Array,
  signature: string,
  budget = 3000,
): Uint8Array {
  let best = input;
  let tries = 0;
  const stillFails = (candidate: Uint8Array): boolean => {
    tries++;
    const r = runCase(target, candidate);
    return !r.ok && failureSignature(r.error).signature === signature;
  };
  for (let chunk = Math.max(1, best.length >> 1); chunk >= 1 && tries < budget; chunk >>= 1) {
    for (let at = 0; at < best.length && tries < budget;) {
      const candidate = concat([best.subarray(0, at), best.subarray(at + chunk)]);
      if (stillFails(candidate)) best = candidate;
      else at += chunk;
    }
  }
  for (let i = 0; i < best.length && tries < budget; i++) {
    if (best[i] === 0) continue;
    const candidate = best.slice();
    candidate[i] = 0;
    if (stillFails(candidate)) best = candidate;
  }
  return best;
}

/** Runs `options.cases` cases of `target`: seeds first, then mutations of the corpus and fresh random inputs. */
export function fuzz(target: FuzzTarget, options: FuzzOptions): FuzzResult {
  const rng = new Rng(options.seed);
  const maxFailures = options.maxFailures ?? 16;
  const slowCaseMs = options.slowCaseMs ?? 2000;
  const progressEvery = options.progressEvery ?? 10_000;
  const corpus: Uint8Array[] = target.seeds().map((s) => s.slice(0, target.maxLength));
  const seedCount = corpus.length;
  const labels = new Set<string>();
  const failures = new Map<string, FuzzFailure>();
  let failingCases = 0;
  let slowestMs = 0;
  const start = performance.now();
  for (let i = 0; i < options.cases; i++) {
    let input: Uint8Array;
    if (i < seedCount) input = corpus[i];
    else if (corpus.length > 0 && !rng.chance(5))
      input = mutate(rng, corpus[rng.below(corpus.length)], corpus, target.maxLength);
    else input = freshInput(rng, target.maxLength);
    options.beforeCase?.(input);
    const t0 = performance.now();
    const outcome = runCase(target, input);
    const took = performance.now() - t0;
    if (took > slowestMs) slowestMs = took;
    let error: unknown;
    if (!outcome.ok) error = outcome.error;
    else if (took > slowCaseMs)
      error = new Error(`slow case: ${Math.round(took)} ms (limit ${slowCaseMs} ms)`);
    if (error !== undefined) {
      failingCases++;
      const { signature, message } = failureSignature(error);
      if (!failures.has(signature) && failures.size < maxFailures) {
        const small =
          options.minimize === false || took > slowCaseMs ? input : minimize(target, input, signature);
        failures.set(signature, {
          target: target.name,
          signature,
          message,
          input: small,
          hash: inputHash(small),
        });
      }
    } else if (outcome.ok && typeof outcome.label === 'string' && !labels.has(outcome.label)) {
      labels.add(outcome.label);
      if (i >= seedCount && corpus.length < 4096) corpus.push(input);
    }
    if (options.onProgress && (i + 1) % progressEvery === 0) options.onProgress(i + 1);
  }
  return {
    target: target.name,
    cases: options.cases,
    ms: performance.now() - start,
    failures: [...failures.values()],
    failingCases,
    corpusSize: corpus.length,
    outcomes: labels.size,
    slowestMs,
  };
}
