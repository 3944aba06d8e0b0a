/**
 * Sections that compare node-kvm's KVM API with raw ioctls in C, chunk by chunk: exit round trips, ioeventfd
 * writes, VM lifecycle, guest memory first touch.
 */
import { Kvm } from '../lib/kvm/kvm.js';
import type { HugepageMode } from '../lib/memory/allocate.js';
import { guest } from './build.js';
import type { BenchContext } from './context.js';
import { reserveHugepages } from './hugepages.js';
import {
  BusLoop,
  LoopVm,
  lifecycleOnce,
  timeNs,
  touchOnce,
  type AccessKind,
  type GuestMode,
  type LifecyclePhases,
} from './kvm-loops.js';
import { notMeasured, row, type Row, type Target } from './stats.js';

const EXIT_TARGET: Target = { on: 'ratio', op: '>=', value: 0.97, label: '≥ 0.97× C' };
const IOEVENTFD_TARGET: Target = { on: 'ratio', op: '>=', value: 0.9, label: '≥ 0.9× C' };
const LIFECYCLE_TARGET: Target = { on: 'ratio', op: '>=', value: 0.9, label: '≥ 0.9× C' };
const HUGETLB_TARGET: Target = { on: 'value', op: '>=', value: 15, label: '≥ 15×' };

/** A count that makes one C chunk last about ctx.chunkMs, from one probe chunk's time per unit. */
function scaled(ctx: BenchContext, nsPerUnit: number, min: number, max: number): number {
  return Math.max(min, Math.min(max, Math.round((ctx.chunkMs * 1e6) / Math.max(nsPerUnit, 1))));
}

/** Runs the variants of one chunk, alternating their order chunk by chunk so neither side always goes first. */
async function alternate(i: number, steps: (() => Promise<void> | void)[]): Promise<void> {
  const order = i % 2 === 0 ? steps : [...steps].reverse();
  for (const step of order) await step();
}

const MODE_LABEL: Record<GuestMode, string> = { real: 'real mode (emulated on PVM)', cpl3: 'CPL3 (native)' };

export async function exitRoundTrips(ctx: BenchContext): Promise<Row[]> {
  const section = 'Exit round trip (guest → VMM → guest), JS rate / C rate per chunk';
  const rows: Row[] = [];
  const kvm = Kvm.open();
  try {
    for (const mode of ['real', 'cpl3'] as GuestMode[]) {
      for (const kind of ['pio', 'mmio'] as AccessKind[]) {
        const label = `${kind.toUpperCase()} exit, ${MODE_LABEL[mode]}`;
        ctx.log(`exits: ${label}`);
        const loop = new LoopVm(kvm, guest(ctx.build, `exit-${kind}-${mode}`), mode);
        try {
          const bus = new BusLoop(loop);
          const cmd = (n: number) => `exit ${mode} ${kind} ${n}`;
          // Warm up both sides, then size the chunks from the C side.
          loop.runChunk(100);
          bus.runChunk(100);
          const probe = await ctx.c.call(cmd(200));
          const count = scaled(ctx, probe.ns / 201, 100, 200_000);
          const js: number[] = [];
          const viaBus: number[] = [];
          const c: number[] = [];
          const rJs: number[] = [];
          const rBus: number[] = [];
          for (let i = 0; i < ctx.chunks; i++) {
            let a = 0;
            let b = 0;
            let k = 0;
            await alternate(i, [
              () => {
                a = timeNs(() => {
                  if (loop.runChunk(count) !== count) throw new Error(`${label}: wrong exit count`);
                });
              },
              () => {
                b = timeNs(() => {
                  if (bus.runChunk(count) !== count) throw new Error(`${label}: wrong exit count (runLoop)`);
                });
              },
              async () => {
                k = (await ctx.c.call(cmd(count))).ns;
              },
            ]);
            const per = count + 1;
            js.push(a / per / 1000);
            viaBus.push(b / per / 1000);
            c.push(k / per / 1000);
            rJs.push(k / a);
            rBus.push(k / b);
          }
          const baseline = 'C, same chunk';
          rows.push(
            row({
              section,
              quantity: `${label}: JS vcpu.run()`,
              unit: 'µs/exit',
              samples: js,
              ratioSamples: rJs,
              baseline,
              target: EXIT_TARGET,
            }),
            row({
              section,
              quantity: `${label}: JS runLoop() + PioBus/MmioBus`,
              unit: 'µs/exit',
              samples: viaBus,
              ratioSamples: rBus,
              baseline,
              target: EXIT_TARGET,
            }),
            row({
              section,
              quantity: `${label}: C (raw ioctls)`,
              unit: 'µs/exit',
              samples: c,
              note: `${count} exits per chunk`,
            }),
          );
        } finally {
          loop.close();
        }
      }
    }
  } finally {
    kvm.close();
  }
  return rows;
}

export async function ioeventfdWrites(ctx: BenchContext): Promise<Row[]> {
  const section =
    'ioeventfd: guest writes signalled inside KVM (no exit), CPL3, JS-configured VM / C per chunk';
  const rows: Row[] = [];
  const kvm = Kvm.open();
  try {
    for (const kind of ['pio', 'mmio'] as AccessKind[]) {
      const label = `ioeventfd ${kind.toUpperCase()} write, CPL3`;
      ctx.log(`ioeventfd: ${label}`);
      const loop = new LoopVm(kvm, guest(ctx.build, `exit-${kind}-cpl3`), 'cpl3');
      try {
        const efd = loop.addIoeventfd(kind);
        const cmd = (n: number) => `ioeventfd ${kind} ${n}`;
        loop.runChunk(1000);
        efd.read();
        const probe = await ctx.c.call(cmd(2000));
        const count = scaled(ctx, probe.ns / 2000, 1000, 5_000_000);
        const js: number[] = [];
        const c: number[] = [];
        const r: number[] = [];
        for (let i = 0; i < ctx.chunks; i++) {
          let a = 0;
          let k = 0;
          await alternate(i, [
            () => {
              a = timeNs(() => {
                if (loop.runChunk(count) !== 0) throw new Error(`${label}: the writes exited to userspace`);
              });
              const signalled = efd.read();
              if (signalled !== count) throw new Error(`${label}: eventfd counted ${signalled} of ${count}`);
            },
            async () => {
              const reply = await ctx.c.call(cmd(count));
              if (reply.signalled !== count)
                throw new Error(`${label}: C eventfd counted ${reply.signalled}`);
              k = reply.ns;
            },
          ]);
          js.push(a / count);
          c.push(k / count);
          r.push(k / a);
        }
        rows.push(
          row({
            section,
            quantity: `${label}: JS (Vm.registerIoeventfd)`,
            unit: 'ns/write',
            samples: js,
            ratioSamples: r,
            baseline: 'C, same chunk',
            target: IOEVENTFD_TARGET,
          }),
          row({
            section,
            quantity: `${label}: C (raw ioctls)`,
            unit: 'ns/write',
            samples: c,
            note: `${count} writes per chunk`,
          }),
        );
      } finally {
        loop.close();
      }
    }
  } finally {
    kvm.close();
  }
  return rows;
}

/**
 * KVM creates and destroys a VM about twice as fast in a process that already has another VM open (measured
 * here with the C program alone), so both sides run each variant under the same condition: no other VM in the
 * process (the C child drops its loop VMs first), and one idle VM held open on each side.
 */
export async function vmLifecycle(ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = [];
  await ctx.c.call('reset');
  rows.push(...(await lifecycleVariant(ctx, 'no other VM in the process')));
  const kvm = Kvm.open();
  const held = new LoopVm(kvm, guest(ctx.build, 'exit-pio-real'), 'real');
  try {
    await ctx.c.call('hold');
    rows.push(...(await lifecycleVariant(ctx, 'one other VM open in the process')));
  } finally {
    held.close();
    kvm.close();
    await ctx.c.call('reset');
  }
  return rows;
}

async function lifecycleVariant(ctx: BenchContext, condition: string): Promise<Row[]> {
  const section = `VM lifecycle (${condition}): open /dev/kvm → VM → 2 MiB slot → vCPU → first exit (HLT) → destroy`;
  ctx.log(`lifecycle, ${condition}`);
  for (let i = 0; i < 3; i++) lifecycleOnce();
  const probe = await ctx.c.call('lifecycle 5');
  const count = scaled(ctx, probe.ns / 5, 3, 2000);
  const js: number[] = [];
  const c: number[] = [];
  const r: number[] = [];
  const phaseNames = ['setup', 'run', 'teardown'] as const;
  const phaseRatio: Record<(typeof phaseNames)[number], number[]> = { setup: [], run: [], teardown: [] };
  const phaseJs: Record<(typeof phaseNames)[number], number[]> = { setup: [], run: [], teardown: [] };
  for (let i = 0; i < ctx.chunks; i++) {
    let a = 0;
    let k = 0;
    const phases: LifecyclePhases = { setup: 0, run: 0, teardown: 0 };
    let reply: Record<string, number> = {};
    await alternate(i, [
      () => {
        a = timeNs(() => {
          for (let j = 0; j < count; j++) lifecycleOnce(phases);
        });
      },
      async () => {
        reply = await ctx.c.call(`lifecycle ${count}`);
        k = reply.ns;
      },
    ]);
    js.push(a / count / 1000);
    c.push(k / count / 1000);
    r.push(k / a);
    for (const p of phaseNames) {
      phaseJs[p].push(phases[p] / count / 1000);
      phaseRatio[p].push(reply[`${p}_ns`] / phases[p]);
    }
  }
  const label = { setup: 'open … registers', run: 'first KVM_RUN', teardown: 'close all' };
  return [
    row({
      section,
      quantity: 'VM lifecycle: JS (Kvm.open … close)',
      unit: 'µs/VM',
      samples: js,
      ratioSamples: r,
      baseline: 'C, same chunk',
      target: LIFECYCLE_TARGET,
    }),
    row({
      section,
      quantity: 'VM lifecycle: C (raw ioctls)',
      unit: 'µs/VM',
      samples: c,
      note: `${count} VMs per chunk`,
    }),
    ...phaseNames.map((p) =>
      row({
        section,
        quantity: `… phase ${p} (${label[p]}): JS`,
        unit: 'µs/VM',
        samples: phaseJs[p],
        ratioSamples: phaseRatio[p],
        baseline: 'C phase, same chunk',
      }),
    ),
  ];
}

const BACKINGS: { mode: HugepageMode; c: string; label: string }[] = [
  { mode: 'none', c: '4k', label: '4 KiB pages' },
  { mode: 'hugetlb', c: 'hugetlb', label: 'hugetlb 2 MiB' },
  { mode: 'thp', c: 'thp', label: 'THP (madvise)' },
];

export async function firstTouch(ctx: BenchContext): Promise<Row[]> {
  const section = `Guest memory first touch: CPL3 guest, 2 MiB guest pages, 1 byte per 4 KiB of ${ctx.touchMiB} MiB of fresh memory`;
  const mib = ctx.touchMiB;
  const gib = mib / 1024;
  const code = guest(ctx.build, 'touch-cpl3');
  await ctx.c.call('reset'); // no other VM in either process (see vmLifecycle)
  const reservation = reserveHugepages(mib / 2 + 2);
  ctx.log(
    `first touch (${mib} MiB; hugetlb pool ${reservation.before} → ${reservation.before + Math.max(0, reservation.free)} free)`,
  );
  const skip = new Set<string>();
  if (reservation.problem !== undefined) skip.add('hugetlb');
  const js = new Map<string, number[]>();
  const c = new Map<string, number[]>();
  const ratio = new Map<string, number[]>();
  const backing = new Map<string, string>();
  const ratios = { js4kHuge: [] as number[], js4kThp: [] as number[], c4kHuge: [] as number[] };
  try {
    // Round 0 warms up (the first hugetlb use after the pool grows is slow) and is not recorded.
    for (let round = 0; round <= ctx.touchRounds; round++) {
      const jsRound = new Map<string, number>();
      const cRound = new Map<string, number>();
      for (const b of BACKINGS) {
        if (skip.has(b.c)) continue;
        await alternate(round, [
          () => {
            const t = touchOnce(code, b.mode, mib);
            backing.set(b.c, t.backing);
            jsRound.set(b.c, t.ns / 1e6 / gib);
          },
          async () => {
            cRound.set(b.c, (await ctx.c.call(`touch ${b.c} ${mib}`)).ns / 1e6 / gib);
          },
        ]);
      }
      if (round === 0) continue;
      for (const [k, v] of jsRound) {
        const cv = cRound.get(k)!;
        (js.get(k) ?? js.set(k, []).get(k)!).push(v);
        (c.get(k) ?? c.set(k, []).get(k)!).push(cv);
        (ratio.get(k) ?? ratio.set(k, []).get(k)!).push(cv / v);
      }
      if (jsRound.has('hugetlb')) {
        ratios.js4kHuge.push(jsRound.get('4k')! / jsRound.get('hugetlb')!);
        ratios.c4kHuge.push(cRound.get('4k')! / cRound.get('hugetlb')!);
      }
      ratios.js4kThp.push(jsRound.get('4k')! / jsRound.get('thp')!);
    }
  } finally {
    reservation.release();
  }
  const rows: Row[] = [];
  for (const b of BACKINGS) {
    if (skip.has(b.c)) {
      rows.push(
        notMeasured(section, `first touch, ${b.label}: JS`, 'ms/GiB', reservation.problem ?? 'skipped'),
      );
      continue;
    }
    const got = backing.get(b.c);
    rows.push(
      row({
        section,
        quantity: `first touch, ${b.label}: JS (allocateGuestMemory hugepages '${b.mode}')`,
        unit: 'ms/GiB',
        samples: js.get(b.c)!,
        ratioSamples: ratio.get(b.c)!,
        baseline: 'C, same round (speed)',
        note: got !== b.c ? `allocator gave '${got}'` : undefined,
      }),
      row({ section, quantity: `first touch, ${b.label}: C`, unit: 'ms/GiB', samples: c.get(b.c)! }),
    );
  }
  if (skip.has('hugetlb')) {
    rows.push(
      notMeasured(
        section,
        'first touch 4 KiB / hugetlb (JS, same round)',
        '×',
        reservation.problem ?? '',
        HUGETLB_TARGET,
      ),
    );
  } else {
    rows.push(
      row({
        section,
        quantity: 'speed-up hugetlb vs 4 KiB: 4 KiB time / hugetlb time (JS, same round)',
        unit: '×',
        samples: ratios.js4kHuge,
        target: HUGETLB_TARGET,
      }),
      row({
        section,
        quantity: 'speed-up hugetlb vs 4 KiB (C, same round)',
        unit: '×',
        samples: ratios.c4kHuge,
      }),
    );
  }
  rows.push(
    row({
      section,
      quantity: 'speed-up THP vs 4 KiB: 4 KiB time / THP time (JS, same round)',
      unit: '×',
      samples: ratios.js4kThp,
    }),
  );
  return rows;
}
