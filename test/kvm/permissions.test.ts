/**
 * Permissions: a user who cannot open /dev/kvm gets one clear message with the fix, from the API, from
 * MicroVm.start() and from the CLI; and nothing the VMM creates (the vsock Unix socket, guest memory memfds) is
 * world-writable, even under a umask of 0, nor does it create files next to the images it opens.
 */
import { spawnSync } from 'node:child_process';
import {
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MicroVmConfig } from '../../lib/vmm/config.js';
import { MicroVm } from '../../lib/vmm/micro-vm.js';
import { describeKvm } from '../support/kvm.js';

const MiB = 1024 * 1024;
const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (path: string) => JSON.stringify(join(root, 'dist', path));
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/** Whether uid 65534 really lacks access (a host may grant /dev/kvm to everyone: then there is nothing to see). */
function nobodyLacksKvm(): boolean {
  const r = spawnSync(process.execPath, ['-e', "require('fs').accessSync('/dev/kvm', 6)"], {
    uid: NOBODY,
    gid: NOBODY,
  });
  return r.status !== 0;
}

const skipNoAccess = !isRoot
  ? 'spawning a process as uid 65534 needs root'
  : !nobodyLacksKvm()
    ? 'uid 65534 can open /dev/kvm on this host'
    : undefined;

function occurrences(text: string, needle: RegExp): number {
  return (text.match(new RegExp(needle.source, 'g')) ?? []).length;
}

/** What the fix must say: the group, and the udev rule for hosts where /dev/kvm is root-only. */
function expectAdvice(message: string): void {
  expect(message).toMatch(/permission denied on \/dev\/kvm/);
  expect(message).toMatch(/usermod -aG kvm \$USER/);
  expect(message).toMatch(/udev/);
  expect(occurrences(message, /permission denied/), 'said once, not wrapped twice').toBe(1);
  expect(message).not.toMatch(/\n\s+at /); // no stack trace
}

describeKvm('a user without access to /dev/kvm', () => {
  if (skipNoAccess) console.warn(`[node-kvm] skipping the no-access tests: ${skipNoAccess}`);

  it.runIf(skipNoAccess === undefined)(
    'the API and MicroVm.start() fail with one clear message and the fix',
    () => {
      const script = `
      const { Kvm } = await import(${dist('lib/kvm/kvm.js')});
      const { MicroVm } = await import(${dist('lib/vmm/micro-vm.js')});
      const out = {};
      try { Kvm.open(); out.api = 'opened'; } catch (e) { out.api = { message: e.message, code: e.code, syscall: e.syscall }; }
      try {
        await new MicroVm({ memory: { size: 2 * 1024 * 1024 }, boot: { kind: 'payload', payload: Uint8Array.of(0xf4), mode: 'real' } }).start();
        out.vm = 'started';
      } catch (e) { out.vm = { message: e.message, code: e.code, stop: e.stop }; }
      console.log(JSON.stringify(out));
    `;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        uid: NOBODY,
        gid: NOBODY,
        encoding: 'utf8',
      });
      expect(r.stderr).toBe('');
      const out = JSON.parse(r.stdout) as {
        api: { message: string; code: string; syscall: string };
        vm: { message: string; code: string; stop: { reason: string; kind: string } };
      };
      expect(out.api.code).toBe('EACCES');
      expect(out.api.message).toMatch(/^cannot open \/dev\/kvm: /);
      expectAdvice(out.api.message);
      expect(out.vm.code).toBe('ERR_KVM_VM_START');
      expect(out.vm.stop).toMatchObject({ reason: 'error', kind: 'vmm' });
      expectAdvice(out.vm.message);
    },
  );

  it.runIf(skipNoAccess === undefined)(
    '`node-kvm check` and `node-kvm run` say it once, with the fix, and exit 1',
    () => {
      const bin = join(root, 'bin', 'node-kvm.js');
      const check = spawnSync(process.execPath, [bin, 'check', '--no-speed'], {
        uid: NOBODY,
        gid: NOBODY,
        encoding: 'utf8',
      });
      expect(check.status).toBe(1);
      expect(check.stderr).toBe('');
      const verdict = check.stdout.split('\n').find((l) => l.startsWith('Verdict:'))!;
      expect(verdict).toMatch(/^Verdict: KVM is not usable: cannot open \/dev\/kvm: /);
      expectAdvice(verdict);

      const run = spawnSync(
        process.execPath,
        [
          bin,
          'run',
          '--payload',
          join(root, 'build', 'payloads', 'hello-real.bin'),
          '--mode',
          'real',
          '--mem',
          '2M',
        ],
        { uid: NOBODY, gid: NOBODY, encoding: 'utf8' },
      );
      expect(run.status).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      expectAdvice(run.stderr);
    },
  );
});

describe('files the VMM creates are not world-writable', () => {
  let work: string;
  let savedUmask: number;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'node-kvm-perms-'));
    // The most permissive umask a caller could have: whatever the VMM creates must restrict itself.
    savedUmask = process.umask(0);
  });
  afterAll(() => {
    process.umask(savedUmask);
    rmSync(work, { recursive: true, force: true });
  });

  /** New fds of this process (the VM thread's included) and what they point to. */
  function fdTargets(): Map<string, string> {
    const out = new Map<string, string>();
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        out.set(fd, readlinkSync(`/proc/self/fd/${fd}`));
      } catch {
        // closed meanwhile
      }
    }
    return out;
  }

  function running(extra: Partial<MicroVmConfig>): MicroVmConfig {
    return {
      memory: { size: 16 * MiB },
      boot: { kind: 'payload', payload: Uint8Array.of(0xeb, 0xfe), mode: 'long-cpl3' }, // jmp .
      serial: false,
      ...extra,
    };
  }

  describeKvm('with a running VM', () => {
    it('the vsock Unix socket is 0600; opening a disk image changes and creates nothing beside it', async () => {
      const image = join(work, 'disk.img');
      writeFileSync(image, '', { mode: 0o640 });
      truncateSync(image, 1 * MiB);
      const udsPath = join(work, 'vsock.sock');
      const before = readdirSync(work).sort();
      const vm = new MicroVm(running({ disks: [{ path: image }], vsock: { cid: 3, udsPath } }));
      await vm.start();
      try {
        const sock = statSync(udsPath);
        expect(sock.isSocket()).toBe(true);
        expect(sock.mode & 0o777).toBe(0o600);
        expect(sock.uid).toBe(process.getuid?.());
        expect(readdirSync(work).sort()).toEqual([...before, 'vsock.sock'].sort());
      } finally {
        await vm.stop();
      }
      expect(statSync(image).mode & 0o777).toBe(0o640);
      for (const f of readdirSync(work)) {
        expect(statSync(join(work, f)).mode & 0o002, `${f} is world-writable`).toBe(0);
      }
    });

    it('regular files and memfds the VM holds open are not world-writable (except memfds: known open)', async () => {
      const before = fdTargets();
      const vm = new MicroVm(running({ disks: [{ path: join(work, 'disk.img') }] }));
      await vm.start();
      const found: string[] = [];
      try {
        for (const [fd, target] of fdTargets()) {
          if (before.has(fd) || !target.startsWith('/')) continue; // anon inodes, pipes, sockets: no path
          let mode: number;
          try {
            mode = statSync(`/proc/self/fd/${fd}`).mode;
          } catch {
            continue;
          }
          if ((mode & 0o170000) === 0o100000 && (mode & 0o002) !== 0)
            found.push(`${target} ${mode.toString(8)}`);
        }
      } finally {
        await vm.stop();
      }
      expect(found).toEqual([]);
    });

    /** memfd_create makes its inode 0777; node-kvm narrows it to 0600 at once. */
    it('shared guest memory (memfd) is not world-writable', async () => {
      const vm = new MicroVm(running({ memory: { size: 16 * MiB, shared: true } }));
      await vm.start();
      const memfds: { target: string; mode: number }[] = [];
      try {
        for (const [fd, target] of fdTargets()) {
          if (!target.startsWith('/memfd:node-kvm')) continue;
          memfds.push({ target, mode: statSync(`/proc/self/fd/${fd}`).mode & 0o777 });
        }
      } finally {
        await vm.stop();
      }
      expect(memfds.length).toBeGreaterThan(0);
      for (const m of memfds) expect(m.mode & 0o022, `${m.target} is ${m.mode.toString(8)}`).toBe(0);
    });
  });
});
