/**
 * Hugepage backing is real: with a hugetlb pool (reserved here as root when empty, then restored), guest RAM
 * takes pages from it; THP mappings are advised; 'auto' reports what it got.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { helloLongMode } from '../../examples/hello-long-mode.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import { allocateGuestMemory, readHugepagePool, readThpMode } from '../../lib/memory/allocate.js';
import { describeKvm } from '../support/kvm.js';

const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages';
const MiB = 1024 * 1024;

describeKvm('hugepage-backed guest memory', () => {
  let saved: string | undefined;

  beforeAll(() => {
    const pool = readHugepagePool();
    if (pool.free < 8 && process.getuid?.() === 0) {
      saved = readFileSync(NR_HUGEPAGES, 'utf8').trim();
      writeFileSync(NR_HUGEPAGES, String(pool.total + 8));
    }
  });

  afterAll(() => {
    if (saved !== undefined) writeFileSync(NR_HUGEPAGES, saved);
  });

  it('hugetlb: the guest runs from 2 MiB pages taken from the pool', () => {
    const before = readHugepagePool();
    if (before.free < 2) {
      console.warn(
        '[node-kvm] hugetlb pool cannot be reserved (not root?): checking the clear error instead',
      );
      expect(() => allocateGuestMemory([{ gpa: 0, size: 4 * MiB }], { hugepages: 'hugetlb' })).toThrow(
        expect.objectContaining({ code: 'ERR_KVM_HUGEPAGES_UNAVAILABLE' }),
      );
      return;
    }
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const mem = allocateGuestMemory([{ gpa: 0, size: 4 * MiB }], { hugepages: 'hugetlb' });
    try {
      expect(mem.backing).toBe('hugetlb');
      mem.attach(vm);
      // Pages leave the pool's free count when first touched.
      mem.fill(0, 4 * MiB, 0x5a);
      expect(before.free - readHugepagePool().free).toBe(2);
      mem.write(0, [1, 2, 3]);
      expect(mem.read(0, 3)).toEqual(new Uint8Array([1, 2, 3]));
    } finally {
      vm.close();
      mem.close();
      kvm.close();
    }
    expect(readHugepagePool().free).toBe(before.free);
    // And a whole guest run from hugetlb memory:
    const r = helloLongMode({ hugepages: 'hugetlb' });
    expect(r.backing).toBe('hugetlb');
    expect(r.output).toBe('Hello from long mode!\n');
    expect(r.marker).toBe(0x1122334455667788n);
  });

  it('hugetlb memfd when the pool has room', () => {
    if (readHugepagePool().free < 1) {
      console.warn(
        '[node-kvm] hugetlb pool is empty and cannot be reserved: skipping the hugetlb memfd check',
      );
      return;
    }
    const mem = allocateGuestMemory([{ gpa: 0, size: 2 * MiB }], { hugepages: 'hugetlb', shared: true });
    try {
      expect(mem.backing).toBe('hugetlb');
      expect(mem.fds.length).toBe(1);
      mem.setU32(0, 0x12345678);
      expect(mem.u32(0)).toBe(0x12345678);
    } finally {
      mem.close();
    }
  });

  it('hugetlb with a pool too small fails with the reservation command, never SIGBUS', () => {
    const pool = readHugepagePool();
    const tooBig = (pool.free + 1) * 2 * MiB;
    expect(() => allocateGuestMemory([{ gpa: 0, size: tooBig }], { hugepages: 'hugetlb' })).toThrow(
      /nr_hugepages/,
    );
  });

  it('thp: the mapping is advised MADV_HUGEPAGE (smaps shows it) and the guest runs', () => {
    if (readThpMode() === 'never' || readThpMode() === undefined) {
      expect(() => allocateGuestMemory([{ gpa: 0, size: 4 * MiB }], { hugepages: 'thp' })).toThrow(
        /disabled/,
      );
      return;
    }
    const mem = allocateGuestMemory([{ gpa: 0, size: 4 * MiB }], { hugepages: 'thp' });
    try {
      expect(mem.backing).toBe('thp');
      mem.fill(0, 4 * MiB, 1);
      const smaps = readFileSync('/proc/self/smaps', 'utf8');
      // The VMA of exactly 4 MiB with the "hg" (huge page advised) VmFlag.
      const vmas = smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
      const ours = vmas.filter((v) => /^Size:\s+4096 kB$/m.test(v) && /^VmFlags:.*\bhg\b/m.test(v));
      expect(ours.length).toBeGreaterThanOrEqual(1);
    } finally {
      mem.close();
    }
    expect(helloLongMode({ hugepages: 'thp' }).backing).toBe('thp');
  });

  it('auto reports what it got: hugetlb while the pool has room, else THP or 4 KiB', () => {
    const roomBefore = readHugepagePool().free >= 2;
    const mem = allocateGuestMemory([{ gpa: 0, size: 4 * MiB }], { hugepages: 'auto' });
    try {
      if (roomBefore) expect(mem.backing).toBe('hugetlb');
      else expect(mem.backing).toBe(readThpMode() === 'never' ? '4k' : 'thp');
    } finally {
      mem.close();
    }
  });
});

describeKvm('memfd-backed (shared) guest memory', () => {
  it('another process sees what the guest wrote, through the memfd', async () => {
    const { execFileSync } = await import('node:child_process');
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const mem = allocateGuestMemory([{ gpa: 0, size: 2 * MiB }], { hugepages: 'none', shared: true });
    try {
      mem.attach(vm);
      expect(mem.fds.length).toBe(1);
      mem.write(0x1000, new TextEncoder().encode('shared-with-another-process'));
      const seen = execFileSync(
        'dd',
        [`if=/proc/${process.pid}/fd/${mem.fds[0]}`, 'bs=1', 'skip=4096', 'count=27'],
        {
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      ).toString();
      expect(seen).toBe('shared-with-another-process');
    } finally {
      vm.close();
      mem.close();
      kvm.close();
    }
  });
});
