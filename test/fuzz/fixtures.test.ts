/**
 * Replays every regression fixture the fuzz runner saved (test/fuzz/fixtures/<target>/<hash>.bin) on a worker
 * thread with a hang watchdog. A fixture must pass; one marked `open:` in its .txt (a known bug whose fix is in
 * someone else's hands) must still fail — when it starts passing, the fix has landed: delete the `open:` line.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fixturesRoot, listFixtures } from '../../fuzz/fixtures.js';
import { runPool } from '../../fuzz/pool.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = listFixtures(fixturesRoot(root));

describe('fuzz regression fixtures', () => {
  it('every fixture names a known target and records its failure signature', async () => {
    const { FUZZ_TARGETS } = await import('../../fuzz/targets/index.js');
    const names = new Set(FUZZ_TARGETS.map((t) => t.name));
    for (const f of fixtures) {
      expect(names.has(f.target), `${f.path}: unknown target`).toBe(true);
      expect(f.signature, `${f.path}: .txt lacks a signature: line`).not.toBe('');
    }
  });

  it.runIf(fixtures.length > 0)(`replays ${fixtures.length} fixture(s)`, { timeout: 120_000 }, async () => {
    const results = await runPool(
      fixtures.map((f, i) => ({ target: f.target, shard: i, cases: 1, seed: 1, input: f.input })),
      { jobs: 2, hangMs: 5_000, maxHangsPerTarget: 1000 },
    );
    const problems: string[] = [];
    for (const { item, result } of results) {
      const f = fixtures[item.shard];
      const failure = result.failures[0];
      if (f.open === undefined && failure !== undefined) {
        problems.push(`${f.path} fails again: ${failure.message.split('\n')[0]}`);
      }
      if (f.open !== undefined && failure === undefined) {
        problems.push(`${f.path} passes now: its bug (${f.open}) is fixed, delete the 'open:' line`);
      }
      if (f.open !== undefined && failure !== undefined && failure.signature !== f.signature) {
        problems.push(`${f.path} fails differently than recorded: ${failure.message.split('\n')[0]}`);
      }
    }
    const open = fixtures.filter((f) => f.open !== undefined);
    if (open.length > 0) {
      console.warn(
        `[fuzz] ${open.length} known open bug(s) still reproduce:\n` +
          open.map((f) => `  ${f.target}/${f.hash}: ${f.open}`).join('\n'),
      );
    }
    expect(problems).toEqual([]);
  });
});
