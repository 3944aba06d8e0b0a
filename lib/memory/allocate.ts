/**
 * Allocating guest RAM on the host: 4 KiB pages, transparent huge pages, or hugetlbfs 2 MiB pages, optionally
 * as a memfd that another process can map.
 */
import { readFileSync } from 'node:fs';
import type { Vm } from '../kvm/vm.js';
import { native, type NativeGuestMapping } from '../native/binding.js';
import { GuestMemory, type Backing } from './guest-memory.js';

export type HugepageMode = 'none' | 'thp' | 'hugetlb' | 'auto';

export const HUGE_PAGE_SIZE = 2 * 1024 * 1024;
const MADV_DONTNEED = 4;
const MADV_REMOVE = 9;

export interface RamRegion {
  gpa: number;
  size: number;
}

export interface AllocateOptions {
  /** Host page backing: 'auto' (default) takes hugetlb when the pool has room, else THP, else 4 KiB. */
  hugepages?: HugepageMode;
  /** Back with a memfd (MAP_SHARED) so another process can map the same memory through `fds`. */
  shared?: boolean;
  /** Fault every page in now (MAP_POPULATE) instead of on first guest touch. */
  prefault?: boolean;
}

export interface HugepagePool {
  total: number;
  free: number;
  /** Bytes per huge page. */
  pageSize: number;
}

/** HugePages_Total/Free from /proc/meminfo. */
export function readHugepagePool(meminfo = '/proc/meminfo'): HugepagePool {
  const text = readFileSync(meminfo, 'utf8');
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };
  // Reserved pages (mapped but not yet touched) still count as free in HugePages_Free; they are taken.
  return {
    total: field('HugePages_Total'),
    free: Math.max(0, field('HugePages_Free') - field('HugePages_Rsvd')),
    pageSize: field('Hugepagesize') * 1024,
  };
}

/** The THP policy in /sys/kernel/mm/transparent_hugepage/enabled, or undefined when THP is absent. */
export function readThpMode(
  path = '/sys/kernel/mm/transparent_hugepage/enabled',
): 'always' | 'madvise' | 'never' | undefined {
  try {
    const m = /\[(\w+)\]/.exec(readFileSync(path, 'utf8'));
    const mode = m?.[1];
    return mode === 'always' || mode === 'madvise' || mode === 'never' ? mode : undefined;
  } catch {
    return undefined;
  }
}

function mapRegion(size: number, backing: Backing, o: AllocateOptions, name: string): NativeGuestMapping {
  return new (native().GuestMapping)(
    size,
    backing === 'hugetlb',
    !!o.shared,
    backing === 'thp',
    !!o.prefault,
    name,
  );
}

/** Guest memory whose regions are host mappings that can be attached to a VM's memory slots. */
export class AllocatedGuestMemory extends GuestMemory {
  private attachedTo: { vm: Vm; slots: number[] } | undefined;

  constructor(
    private readonly layout: readonly RamRegion[],
    readonly mappings: readonly NativeGuestMapping[],
    /** What the host memory actually is. */
    readonly backing: Backing,
  ) {
    super(
      layout.map((r, i) => ({
        gpa: r.gpa,
        buffer: mappings[i].buffer,
        backing,
        discard: (offset: number, length: number) => {
          try {
            mappings[i].madvise(offset, length, mappings[i].fd >= 0 ? MADV_REMOVE : MADV_DONTNEED);
          } catch {
            // hugetlb pages cannot be released 4 KiB at a time: zero them so the guest still sees fresh pages.
            new Uint8Array(mappings[i].buffer, offset, length).fill(0);
          }
        },
      })),
    );
  }

  /** memfds of the regions (shared: true), for handing to another process. */
  get fds(): number[] {
    return this.mappings.map((m) => m.fd).filter((fd) => fd >= 0);
  }

  /** Registers every region as a KVM memory slot, numbered from firstSlot. */
  attach(vm: Vm, firstSlot = 0): void {
    if (this.attachedTo !== undefined) throw new Error('guest memory is already attached to a VM');
    const slots: number[] = [];
    this.layout.forEach((r, i) => {
      vm.setUserMemoryRegion({
        slot: firstSlot + i,
        guestPhysAddr: r.gpa,
        size: r.size,
        mapping: this.mappings[i],
      });
      slots.push(firstSlot + i);
    });
    this.attachedTo = { vm, slots };
  }

  /** Unmaps the host memory. The VM using it must be closed (or its slots deleted) first. */
  close(): void {
    const a = this.attachedTo;
    if (a !== undefined && !a.vm.closed) for (const slot of a.slots) a.vm.deleteUserMemoryRegion(slot);
    this.attachedTo = undefined;
    for (const m of this.mappings) m.close();
  }
}

function tryAllocate(
  layout: readonly RamRegion[],
  backing: Backing,
  o: AllocateOptions,
): AllocatedGuestMemory {
  const mappings: NativeGuestMapping[] = [];
  try {
    for (const r of layout)
      mappings.push(mapRegion(r.size, backing, o, `node-kvm-ram@${r.gpa.toString(16)}`));
  } catch (e) {
    for (const m of mappings) m.close();
    throw e;
  }
  return new AllocatedGuestMemory(layout, mappings, backing);
}

/**
 * Allocates host memory for the given guest-physical regions. With hugepages 'hugetlb', every region size must
 * be a multiple of 2 MiB and the pool must have room (reserve with `echo N > /proc/sys/vm/nr_hugepages`).
 */
export function allocateGuestMemory(
  layout: readonly RamRegion[],
  options: AllocateOptions = {},
): AllocatedGuestMemory {
  if (layout.length === 0) throw new RangeError('guest memory needs at least one region');
  for (const r of layout) {
    if (
      !Number.isSafeInteger(r.gpa) ||
      !Number.isSafeInteger(r.size) ||
      r.size <= 0 ||
      r.gpa % 4096 ||
      r.size % 4096
    ) {
      throw new RangeError(
        `region 0x${r.gpa.toString(16)}+0x${r.size.toString(16)} must be 4 KiB aligned and non-empty`,
      );
    }
  }
  const mode = options.hugepages ?? 'auto';
  const total = layout.reduce((a, r) => a + r.size, 0);
  const hugeAligned = layout.every((r) => r.size % HUGE_PAGE_SIZE === 0 && r.gpa % HUGE_PAGE_SIZE === 0);
  switch (mode) {
    case 'none':
      return tryAllocate(layout, '4k', options);
    case 'thp':
      if (readThpMode() === 'never' || readThpMode() === undefined) {
        throw Object.assign(
          new Error('transparent huge pages are disabled on this host (THP mode "never")'),
          {
            code: 'ERR_KVM_THP_UNAVAILABLE',
          },
        );
      }
      return tryAllocate(layout, 'thp', options);
    case 'hugetlb': {
      if (!hugeAligned)
        throw new RangeError('hugetlb backing needs every region base and size to be 2 MiB aligned');
      try {
        return tryAllocate(layout, 'hugetlb', options);
      } catch (e) {
        const pool = readHugepagePool();
        const need = Math.ceil(total / HUGE_PAGE_SIZE);
        throw Object.assign(
          new Error(
            `cannot back ${total / 1048576} MiB of guest RAM with 2 MiB huge pages: ${need} needed, ` +
              `${pool.free} of ${pool.total} free. Reserve more: echo ${pool.total + need} > /proc/sys/vm/nr_hugepages`,
            { cause: e },
          ),
          { code: 'ERR_KVM_HUGEPAGES_UNAVAILABLE' },
        );
      }
    }
    case 'auto': {
      const pool = readHugepagePool();
      if (hugeAligned && pool.pageSize === HUGE_PAGE_SIZE && pool.free * HUGE_PAGE_SIZE >= total) {
        try {
          return tryAllocate(layout, 'hugetlb', options);
        } catch {
          // The pool shrank under us (another process): fall through to THP / 4 KiB.
        }
      }
      const thp = readThpMode();
      return tryAllocate(layout, thp === 'always' || thp === 'madvise' ? 'thp' : '4k', options);
    }
    default:
      throw new TypeError(`hugepages must be 'none', 'thp', 'hugetlb' or 'auto', got ${String(mode)}`);
  }
}
