/**
 * One RSS measurement in a fresh process: start `vms` MicroVms whose guests touch `touchMiB` of their RAM, then
 * report this process's RSS and how much of it is guest memory (the memfd mappings named node-kvm-ram).
 *
 *   node dist/bench/rss-child.js <vms> <ramMiB> <touchMiB> <guest.bin> <disk.img>
 * Prints one JSON line: { rssKb, guestKb, anonKb, fileKb, shmemKb }.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { MicroVm } from '../lib/vmm/micro-vm.js';
import { benchGuestConfig } from './microvm-clock.js';

const MiB = 1024 * 1024;
const MODE_TOUCH = 5;
/** The guest touches from here up (above its code, rings and buffers). */
const TOUCH_START = 4 * MiB;

function statusKb(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Resident kB of every mapping whose name contains `name`. */
function mappingRssKb(name: string): number {
  let total = 0;
  let inside = false;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inside = line.includes(name);
    else if (inside && line.startsWith('Rss:')) total += Number(/(\d+)/.exec(line)?.[1] ?? 0);
  }
  return total;
}

async function main(): Promise<void> {
  const [vmsArg, ramArg, touchArg, guestPath, diskPath] = process.argv.slice(2);
  const vms = Number(vmsArg);
  const ram = Number(ramArg) * MiB;
  const touch = Number(touchArg) * MiB;
  const payload = new Uint8Array(readFileSync(guestPath));
  const running: MicroVm[] = [];
  try {
    for (let i = 0; i < vms; i++) {
      const vm = new MicroVm(
        benchGuestConfig(
          payload,
          { rdi: MODE_TOUCH, rsi: TOUCH_START, r8: TOUCH_START + touch },
          { memory: { size: ram, shared: true }, disks: [{ path: diskPath, readOnly: true }] },
        ),
      );
      const touched = new Promise<void>((resolve) => vm.on('console', (b) => b.includes(0x54) && resolve()));
      await vm.start();
      running.push(vm);
      await touched;
    }
    await sleep(300);
    const out = {
      rssKb: statusKb('VmRSS'),
      guestKb: mappingRssKb('node-kvm-ram'),
      anonKb: statusKb('RssAnon'),
      fileKb: statusKb('RssFile'),
      shmemKb: statusKb('RssShmem'),
    };
    console.log(JSON.stringify(out));
  } finally {
    // process.exit() is no shortcut: it waits for VM threads sitting in a native epoll wait.
    for (const vm of running) await vm.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
