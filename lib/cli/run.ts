/**
 * `node-kvm run`: boot a payload, firmware or Linux kernel with devices from flags, with an interactive console
 * (raw mode; Ctrl-A x quits, as in QEMU). The exit status says how the guest stopped.
 */
import { accessSync, constants, statSync } from 'node:fs';
import type { HugepageMode } from '../memory/allocate.js';
import type {
  BootConfig,
  DiskConfig,
  MicroVmConfig,
  NetConfig,
  PayloadMode,
  VsockConfig,
} from '../vmm/config.js';
import { MicroVm } from '../vmm/micro-vm.js';
import { formatStopReason, type StopReason } from '../vmm/stop.js';

export const RUN_USAGE = `usage: node-kvm run (--kernel FILE [--initrd FILE] [--cmdline STR] | --firmware FILE | --payload FILE)
                    [options]

boot (one of):
  --kernel FILE         Linux bzImage or vmlinux (ELF); with --initrd FILE and --cmdline "..."
                        --entry bzimage|elf64|pvh (elf64: decompress a bzImage on the host first)
  --firmware FILE       firmware image mapped below 4 GiB (e.g. /usr/share/seabios/bios-microvm.bin)
  --payload FILE        flat binary; --mode real|protected|long|long-cpl3 (default real),
                        --load-address ADDR (default 0x1000 real mode, else 0x100000)
machine:
  --mem SIZE            guest RAM, e.g. 256M, 1G (default 256M)
  --cpus N              vCPUs (default 1)
  --hugepages MODE      auto|hugetlb|thp|none (default none)
devices:
  --disk PATH[,ro][,serial=ID]    virtio-blk (repeatable)
  --net tap=NAME[,mac=MAC]        virtio-net on a host tap device (repeatable)
  --vsock cid=N,uds=PATH          virtio-vsock, host side on a Unix socket (Firecracker convention)
  --rng                           virtio-rng
  --balloon                       virtio-balloon
  --virtio-console                virtio console (in addition to the 8250 UART on COM1)
  --no-serial                     no 8250 UART

Console: stdin/stdout. In a terminal, Ctrl-A x stops the VM; Ctrl-A Ctrl-A sends Ctrl-A.
Exit status: 0 guest powered off (or halted, or stopped with Ctrl-A x), 3 guest rebooted,
             1 the guest or VMM failed, 2 usage error; a debug-exit port write ends with that code.`;

export class UsageError extends Error {}

/** "256M", "1G", "512MiB", "4096" → bytes. */
export function parseSize(text: string, flag: string): number {
  const m = /^(\d+)\s*([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${flag}: '${text}' is not a size (examples: 256M, 1G)`);
  const units: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
  const bytes = Number(m[1]) * units[m[2].toUpperCase()];
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new UsageError(`${flag}: '${text}' is out of range`);
  return bytes;
}

function parseInt0(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new UsageError(`${flag}: '${text}' is not a non-negative integer`);
  return n;
}

/** "key=value,flag,key2=value2" → map ("flag" → ""). */
function parseList(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(',')) {
    const i = part.indexOf('=');
    if (i < 0) out.set(part, '');
    else out.set(part.slice(0, i), part.slice(i + 1));
  }
  return out;
}

function readableFile(path: string, flag: string): string {
  try {
    accessSync(path, constants.R_OK);
    if (!statSync(path).isFile()) throw new UsageError(`${flag}: '${path}' is not a regular file`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(
      `${flag}: cannot read '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  return path;
}

export function parseRunArgs(args: string[]): MicroVmConfig {
  let kernel: string | undefined;
  let initrd: string | undefined;
  let cmdline: string | undefined;
  let entry: 'bzimage' | 'elf64' | 'pvh' | undefined;
  let firmware: string | undefined;
  let payload: string | undefined;
  let mode: PayloadMode = 'real';
  let loadAddress: number | undefined;
  let mem = 256 * 2 ** 20;
  let cpus = 1;
  let hugepages: HugepageMode = 'none';
  const disks: DiskConfig[] = [];
  const net: NetConfig[] = [];
  let vsock: VsockConfig | undefined;
  let rng = false;
  let balloon = false;
  let virtioConsole = false;
  let serial = true;
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = (): string => {
      const v = args[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--kernel':
        kernel = readableFile(value(), flag);
        break;
      case '--initrd':
        initrd = readableFile(value(), flag);
        break;
      case '--cmdline':
        cmdline = value();
        break;
      case '--entry': {
        const e = value();
        if (!['bzimage', 'elf64', 'pvh'].includes(e)) throw new UsageError(`--entry: unknown entry '${e}'`);
        entry = e as 'bzimage' | 'elf64' | 'pvh';
        break;
      }
      case '--firmware':
        firmware = readableFile(value(), flag);
        break;
      case '--payload':
        payload = readableFile(value(), flag);
        break;
      case '--mode': {
        const m = value();
        if (!['real', 'protected', 'long', 'long-cpl3'].includes(m))
          throw new UsageError(`--mode: unknown mode '${m}'`);
        mode = m as PayloadMode;
        break;
      }
      case '--load-address':
        loadAddress = parseInt0(value(), flag);
        break;
      case '--mem':
        mem = parseSize(value(), flag);
        break;
      case '--cpus':
        cpus = parseInt0(value(), flag);
        break;
      case '--hugepages': {
        const h = value();
        if (!['auto', 'hugetlb', 'thp', 'none'].includes(h))
          throw new UsageError(`--hugepages: unknown mode '${h}'`);
        hugepages = h as HugepageMode;
        break;
      }
      case '--disk': {
        const [path, ...rest] = value().split(',');
        const opts = parseList(rest.join(','));
        const readOnly = opts.has('ro');
        disks.push({ path: readableFile(path, flag), readOnly, serial: opts.get('serial') });
        break;
      }
      case '--net': {
        const opts = parseList(value());
        const tap = opts.get('tap');
        if (!tap) throw new UsageError('--net: expected tap=NAME');
        net.push({ tap, mac: opts.get('mac') });
        break;
      }
      case '--vsock': {
        const opts = parseList(value());
        const cid = opts.get('cid');
        const uds = opts.get('uds');
        if (cid === undefined || !uds) throw new UsageError('--vsock: expected cid=N,uds=PATH');
        vsock = { cid: parseInt0(cid, '--vsock cid'), udsPath: uds };
        break;
      }
      case '--rng':
        rng = true;
        break;
      case '--balloon':
        balloon = true;
        break;
      case '--virtio-console':
        virtioConsole = true;
        break;
      case '--no-serial':
        serial = false;
        break;
      default:
        throw new UsageError(`unknown option '${flag}'`);
    }
  }
  const boots = [kernel, firmware, payload].filter((x) => x !== undefined).length;
  if (boots !== 1) throw new UsageError('give exactly one of --kernel, --firmware, --payload');
  if (kernel === undefined && (initrd !== undefined || cmdline !== undefined || entry !== undefined)) {
    throw new UsageError('--initrd, --cmdline and --entry need --kernel');
  }
  let boot: BootConfig;
  if (kernel !== undefined) boot = { kind: 'linux', kernel, initrd, cmdline, entry };
  else if (firmware !== undefined) boot = { kind: 'firmware', firmware };
  else boot = { kind: 'payload', payload: payload!, mode, loadAddress };
  return {
    memory: { size: mem, hugepages },
    vcpus: cpus,
    boot,
    serial,
    virtioConsole,
    disks,
    net,
    vsock,
    rng,
    balloon,
  };
}

/** Process exit status for a stop reason. */
export function exitStatus(stop: StopReason): number {
  switch (stop.reason) {
    case 'poweroff':
    case 'hlt':
    case 'stopped':
      return 0;
    case 'reset':
      return 3;
    case 'debug-exit':
      return stop.code & 0xff;
    default:
      return 1;
  }
}

const CTRL_A = 0x01;

export async function runCommand(args: string[]): Promise<number> {
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(RUN_USAGE + '\n');
    return 0;
  }
  let config: MicroVmConfig;
  try {
    config = parseRunArgs(args);
  } catch (e) {
    if (e instanceof UsageError || e instanceof RangeError || e instanceof TypeError) {
      process.stderr.write(`node-kvm run: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  let vm: MicroVm;
  try {
    vm = new MicroVm(config);
  } catch (e) {
    process.stderr.write(`node-kvm run: ${(e as Error).message}\n`);
    return 2;
  }
  vm.on('console', (data) => process.stdout.write(data));
  vm.on('progress', (message) => process.stderr.write(`node-kvm: ${message}\n`));
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  let escape = false;
  const onInput = (chunk: Buffer) => {
    const out: number[] = [];
    for (const b of chunk) {
      if (tty && escape) {
        escape = false;
        if (b === 0x78 /* x */) {
          process.stderr.write('\r\nnode-kvm: stopping (Ctrl-A x)\r\n');
          void vm.stop();
          return;
        }
        out.push(b === CTRL_A ? CTRL_A : b);
      } else if (tty && b === CTRL_A) escape = true;
      else out.push(b);
    }
    if (out.length > 0 && vm.running) vm.writeConsole(Uint8Array.from(out));
  };
  try {
    await vm.start();
  } catch (e) {
    process.stderr.write(`node-kvm run: ${(e as Error).message}\n`);
    return 1;
  }
  if (tty) stdin.setRawMode(true);
  stdin.on('data', onInput);
  stdin.resume();
  const stop = await vm.exited;
  stdin.off('data', onInput);
  if (tty) stdin.setRawMode(false);
  stdin.pause();
  process.stderr.write(`\r\nnode-kvm: guest stopped: ${formatStopReason(stop)}\n`);
  if (stop.reason === 'error' && stop.regs) {
    const r = stop.regs;
    process.stderr.write(
      `  rip=0x${r.rip.toString(16)} rsp=0x${r.rsp.toString(16)} rflags=0x${r.rflags.toString(16)}\n`,
    );
  }
  return exitStatus(stop);
}
