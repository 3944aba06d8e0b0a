/**
 * The fixed-seed subset of `npm run fuzz`: every target (virtio and boot) for a few thousand cases on two
 * worker threads with a hang watchdog. FUZZ_CASES changes the count, FUZZ_SEED the seed. Failures must be
 * new-free: each one has to match a known open bug recorded as a fixture (see fixtures.test.ts).
 */
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { fixturesRoot, listFixtures } from '../../fuzz/fixtures.js';
import { runPool } from '../../fuzz/pool.js';
import { FUZZ_TARGETS } from '../../fuzz/targets/index.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CASES = Number(process.env.FUZZ_CASES ?? 2500);
const SEED = Number(process.env.FUZZ_SEED ?? 1);

it(
  `every fuzz target, ${CASES} cases each, seed ${SEED}: no failure but known open ones`,
  { timeout: 600_000 },
  async () => {
    const known = new Map(
      listFixtures(fixturesRoot(root))
        .filter((f) => f.open !== undefined)
        .map((f) => [`${f.target}\0${f.signature}`, f]),
    );
    const results = await runPool(
      FUZZ_TARGETS.map((t, i) => ({ target: t.name, shard: i, cases: CASES, seed: SEED, minimize: false })),
      { jobs: 2, hangMs: 5_000 },
    );
    const unknown: string[] = [];
    const stillOpen = new Set<string>();
    let cases = 0;
    for (const { item, result } of results) {
      cases += result.cases;
      for (const f of result.failures) {
        const k = known.get(`${item.target}\0${f.signature}`);
        if (k) stillOpen.add(`${item.target}: ${k.open}`);
        else unknown.push(`${item.target}: ${f.message.split('\n')[0].slice(0, 300)}`);
      }
    }
    if (stillOpen.size > 0) console.warn(`[fuzz] known open bugs hit:\n  ${[...stillOpen].join('\n  ')}`);
    expect(
      unknown,
      'new fuzz failures: run `npm run fuzz -- --target <name> --seed <seed>` to save fixtures',
    ).toEqual([]);
    expect(cases).toBe(CASES * FUZZ_TARGETS.length);
  },
);
