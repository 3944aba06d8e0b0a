import { describe, expect, it } from 'vitest';
import { exitStatus, parseRunArgs, parseSize, UsageError } from '../../../lib/cli/run.js';

const payload = new URL('../../../package.json', import.meta.url).pathname; // any readable file

describe('node-kvm run arguments', () => {
  it('parses sizes', () => {
    expect(parseSize('256M', '--mem')).toBe(256 * 2 ** 20);
    expect(parseSize('1G', '--mem')).toBe(2 ** 30);
    expect(parseSize('512MiB', '--mem')).toBe(512 * 2 ** 20);
    expect(parseSize('4096', '--mem')).toBe(4096);
    expect(() => parseSize('lots', '--mem')).toThrow(/--mem: 'lots' is not a size/);
  });

  it('builds a MicroVm config from flags', () => {
    const c = parseRunArgs([
      '--payload',
      payload,
      '--mode',
      'long-cpl3',
      '--mem',
      '64M',
      '--cpus',
      '2',
      '--hugepages',
      'auto',
      '--disk',
      `${payload},ro,serial=abc`,
      '--net',
      'tap=tap7,mac=02:00:00:00:00:07',
      '--vsock',
      'cid=3,uds=/tmp/v.sock',
      '--rng',
      '--balloon',
      '--virtio-console',
      '--no-serial',
    ]);
    expect(c).toMatchObject({
      memory: { size: 64 * 2 ** 20, hugepages: 'auto' },
      vcpus: 2,
      boot: { kind: 'payload', payload, mode: 'long-cpl3' },
      disks: [{ path: payload, readOnly: true, serial: 'abc' }],
      net: [{ tap: 'tap7', mac: '02:00:00:00:00:07' }],
      vsock: { cid: 3, udsPath: '/tmp/v.sock' },
      rng: true,
      balloon: true,
      virtioConsole: true,
      serial: false,
    });
    expect(parseRunArgs(['--kernel', payload, '--cmdline', 'console=ttyS0']).boot).toEqual({
      kind: 'linux',
      kernel: payload,
      initrd: undefined,
      cmdline: 'console=ttyS0',
      entry: undefined,
    });
  });

  it.each([
    [[], /exactly one of/],
    [['--payload', payload, '--firmware', payload], /exactly one of/],
    [['--payload', '/no/such/file'], /cannot read '\/no\/such\/file': ENOENT/],
    [['--payload', '/tmp'], /not a regular file/],
    [['--payload', payload, '--mem'], /--mem needs a value/],
    [['--payload', payload, '--mode', 'v86'], /unknown mode/],
    [['--payload', payload, '--net', 'user'], /tap=NAME/],
    [['--payload', payload, '--vsock', 'cid=3'], /cid=N,uds=PATH/],
    [['--payload', payload, '--cmdline', 'x'], /need --kernel/],
    [['--payload', payload, '--frobnicate'], /unknown option/],
  ])('rejects %j', (args, message) => {
    expect(() => parseRunArgs(args as string[])).toThrow(UsageError);
    expect(() => parseRunArgs(args as string[])).toThrow(message);
  });

  it('maps stop reasons to exit statuses', () => {
    expect(exitStatus({ reason: 'poweroff' })).toBe(0);
    expect(exitStatus({ reason: 'reset', source: 'i8042' })).toBe(3);
    expect(exitStatus({ reason: 'debug-exit', code: 0x31 })).toBe(0x31);
    expect(exitStatus({ reason: 'error', kind: 'triple_fault', message: 'x' })).toBe(1);
  });
});
