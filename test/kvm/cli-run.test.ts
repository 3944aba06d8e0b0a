/** `node-kvm run` as a user runs it (the compiled bin). */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { makeBootDisk, SEABIOS_MICROVM } from '../../examples/seabios-boot.js';
import { describeKvm } from '../support/kvm.js';

const bin = fileURLToPath(new URL('../../bin/node-kvm.js', import.meta.url));
const payload = (name: string) => fileURLToPath(new URL(`../../build/payloads/${name}.bin`, import.meta.url));

describeKvm('node-kvm run', () => {
  it('boots a real-mode payload and exits 0 when it halts', () => {
    const r = spawnSync(process.execPath, [bin, 'run', '--payload', payload('hello-real'), '--mem', '2M'], {
      encoding: 'utf8',
      input: '',
      timeout: 30_000,
    });
    expect(r.stdout).toBe('Hello from real mode!\n');
    expect(r.stderr).toMatch(/guest stopped: hlt/);
    expect(r.status).toBe(0);
  });

  it('exits with the status a CPL3 payload writes to the debug-exit port', () => {
    const dir = mkdtempSync(join(tmpdir(), 'node-kvm-run-'));
    const file = join(dir, 'exit5.bin');
    // mov dx, 0x501; mov al, 5; out dx, al; jmp .
    writeFileSync(file, Uint8Array.of(0x66, 0xba, 0x01, 0x05, 0xb0, 0x05, 0xee, 0xeb, 0xfe));
    const r = spawnSync(
      process.execPath,
      [bin, 'run', '--payload', file, '--mode', 'long-cpl3', '--mem', '8M'],
      {
        encoding: 'utf8',
        input: '',
        timeout: 30_000,
      },
    );
    rmSync(dir, { recursive: true });
    expect(r.stderr).toMatch(/guest stopped: debug exit with code 5/);
    expect(r.status).toBe(5);
  });

  it('boots SeaBIOS from a virtio-blk disk: --firmware bios-microvm.bin --disk image', () => {
    if (!existsSync(SEABIOS_MICROVM)) return;
    const dir = mkdtempSync(join(tmpdir(), 'node-kvm-run-'));
    const disk = join(dir, 'boot.img');
    makeBootDisk(disk);
    const r = spawnSync(
      process.execPath,
      [bin, 'run', '--firmware', SEABIOS_MICROVM, '--disk', disk, '--mem', '128M'],
      {
        encoding: 'latin1',
        input: '',
        timeout: 120_000,
      },
    );
    rmSync(dir, { recursive: true });
    expect(r.stdout).toMatch(/SeaBIOS \(version/);
    expect(r.stdout).toContain('Hello from a boot sector loaded by SeaBIOS from virtio-blk!');
    expect(r.stderr).toMatch(/guest stopped: poweroff/);
    expect(r.status).toBe(0);
  });

  it('in a terminal, Ctrl-A x stops the VM (run under script(1) for a pty)', async () => {
    const { spawn } = await import('node:child_process');
    const dir = mkdtempSync(join(tmpdir(), 'node-kvm-run-'));
    const spin = join(dir, 'spin.bin');
    writeFileSync(spin, Uint8Array.of(0xeb, 0xfe)); // jmp .
    const cmd = `${process.execPath} ${bin} run --payload ${spin} --mode long-cpl3 --mem 8M`;
    const child = spawn('script', ['-qec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => setTimeout(r, 1500));
    child.stdin.write('\x01x');
    const status = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    rmSync(dir, { recursive: true });
    expect(out).toMatch(/stopping \(Ctrl-A x\)/);
    expect(out).toMatch(/guest stopped: stopped/);
    expect(status).toBe(0);
  });

  it('usage errors exit 2 with a clear message', () => {
    const r = spawnSync(process.execPath, [bin, 'run', '--kernel', '/no/such/bzImage'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--kernel: cannot read '\/no\/such\/bzImage': ENOENT/);
  });
});
