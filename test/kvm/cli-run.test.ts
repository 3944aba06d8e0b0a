/** `node-kvm run` as a user runs it (the compiled bin). */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
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

  it('usage errors exit 2 with a clear message', () => {
    const r = spawnSync(process.execPath, [bin, 'run', '--kernel', '/no/such/bzImage'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--kernel: cannot read '\/no\/such\/bzImage': ENOENT/);
  });
});
