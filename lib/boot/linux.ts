/**
 * Everything the VMM must do to boot a Linux kernel, as data: a pure function from kernel bytes, options and
 * the vCPU's current special registers to memory writes plus a CPU setup. Three ways in:
 *  - 'bzimage': the bzImage's protected-mode kernel at its preferred address, entered at startup_64
 *    (load + 0x200) in long mode with RSI = boot_params; the kernel decompresses itself.
 *  - 'elf64': an ELF vmlinux (given, or decompressed from the bzImage on the host), PT_LOAD segments at their
 *    physical addresses, entered at its ELF entry (startup_64) in long mode with RSI = boot_params.
 *  - 'pvh': the same ELF entered at its Xen PVH note's 32-bit entry, EBX = hvm_start_info.
 */
import type { Sregs } from '../kvm/structs.js';
import {
  CMDLINE_START,
  HIMEM_START,
  IDENTITY_MAP_SIZE,
  PVH_START_INFO,
  ZERO_PAGE,
  ramRegions,
} from '../arch/x86_64/layout.js';
import { setupLongMode, type CpuSetup } from '../arch/x86_64/modes.js';
import type { MemoryWrite } from '../arch/x86_64/paging.js';
import { buildAcpiTables, type AcpiConfig, type FixedAcpi } from './acpi/index.js';
import { buildBootParams } from './boot-params.js';
import { PAGE_SIZE, alignDown, alignUp, hex, view } from './bytes.js';
import { CMDLINE_MAX_LENGTH, encodeCmdline } from './cmdline.js';
import { decompressBzImage, type KernelCompression } from './decompress.js';
import { buildE820, type E820Entry } from './e820.js';
import { elfLoadWrites, isElf, parseElfKernel, type ElfKernel } from './elf.js';
import { BootError } from './errors.js';
import { buildPvhStartInfo, setupPvhEntry } from './pvh.js';
import {
  HDR,
  STARTUP_64_OFFSET,
  looksLikeBzImage,
  parseSetupHeader,
  protectedModeKernel,
  type SetupHeader,
} from './setup-header.js';

export type LinuxEntry = 'bzimage' | 'elf64' | 'pvh';

export interface LinuxBootOptions {
  /** Guest RAM in bytes (laid out by ramRegions). */
  memSize: number;
  /** Kernel command line (validated against the kernel's cmdline_size). */
  cmdline?: string;
  initrd?: Uint8Array;
  /**
   * How to enter the kernel. Default: 'bzimage' for a bzImage, 'elf64' for an ELF. 'elf64' and 'pvh' on a
   * bzImage decompress its payload on the host first (gzip or LZ4).
   */
  entry?: LinuxEntry;
  /** ACPI tables to build at ACPI_START; `false` for none (then Linux needs another way to find devices). */
  acpi?: AcpiConfig | false;
  /** Bytes the boot page tables identity-map (default IDENTITY_MAP_SIZE). */
  identityMapSize?: number;
}

export interface LinuxBootInfo {
  format: 'bzImage' | 'elf';
  entryKind: LinuxEntry;
  /** Guest address the vCPU starts at. */
  entry: number;
  /** Guest-physical range reserved for the kernel (for a bzImage, its load address + init_size). */
  kernel: { start: number; end: number };
  initrd: { addr: number; size: number } | undefined;
  cmdline: string;
  e820: E820Entry[];
  acpi: FixedAcpi | undefined;
  /** The bzImage's setup header, if the kernel came as one. */
  header: SetupHeader | undefined;
  /** How the bzImage payload was compressed, when it was decompressed on the host. */
  compression: KernelCompression | undefined;
  /** Address of boot_params (64-bit entries) or hvm_start_info (PVH). */
  bootInfoAddr: number;
}

export interface LinuxBootPlan {
  /** Kernel, initrd, command line, boot_params or start_info, ACPI tables. Apply these first. */
  writes: MemoryWrite[];
  /** Registers and the CPU's own writes (GDT, TSS, page tables): apply with applyCpuSetup after `writes`. */
  cpu: CpuSetup;
  info: LinuxBootInfo;
}

/** initrd_addr_max to assume for an ELF kernel without a setup header (the historical 2 GiB - 1). */
const DEFAULT_INITRD_ADDR_MAX = 0x7fff_ffff;

function lowRamEnd(memSize: number): number {
  return ramRegions(memSize)[0].size;
}

/**
 * Where the protected-mode part of a bzImage goes and what it occupies: at pref_address (HIMEM_START if the
 * kernel names none). A relocatable kernel loaded elsewhere would still decompress to at least pref_address
 * (its LOAD_PHYSICAL_ADDR), so the span runs to max(aligned load, pref_address) + init_size.
 */
export function placeBzImage(
  header: SetupHeader,
  memSize: number,
): { load: number; start: number; end: number } {
  const ramEnd = lowRamEnd(memSize);
  // A preferred address inside the first MiB would overwrite the zero page, command line and page tables.
  const pref = header.prefAddress >= HIMEM_START ? header.prefAddress : 0;
  const load = pref || HIMEM_START;
  const end = Math.max(alignUp(load, header.kernelAlignment), pref) + header.initSize;
  if (end > ramEnd) {
    throw new BootError(
      'NO_ROOM',
      `the kernel needs RAM up to ${hex(end)} (loaded at ${hex(load)}, init_size ${hex(header.initSize)}); ` +
        `the guest's low RAM ends at ${hex(ramEnd)}`,
    );
  }
  return { load, start: load, end };
}

/**
 * Places the initrd as high as possible, page-aligned, below min(initrd_addr_max + 1, end of low RAM), and
 * never over the kernel's span.
 */
export function placeInitrd(
  size: number,
  memSize: number,
  kernel: { start: number; end: number },
  initrdAddrMax: number = DEFAULT_INITRD_ADDR_MAX,
): number {
  if (size <= 0) throw new BootError('BAD_INITRD', 'the initrd is empty');
  const top = Math.min(initrdAddrMax + 1, lowRamEnd(memSize));
  const addr = alignDown(top - size, PAGE_SIZE);
  if (addr < kernel.end) {
    throw new BootError(
      'NO_ROOM',
      `no room for a ${size}-byte initrd: it must end below ${hex(top)} and start above the kernel ` +
        `(which reaches ${hex(kernel.end)}); give the guest more RAM`,
    );
  }
  return addr;
}

function checkElfFits(elf: ElfKernel, memSize: number): void {
  const ramEnd = lowRamEnd(memSize);
  if (elf.start < HIMEM_START) {
    throw new BootError(
      'BAD_KERNEL',
      `ELF segment at ${hex(elf.start)} would overwrite the boot area below 1 MiB`,
    );
  }
  if (elf.end > ramEnd) {
    throw new BootError(
      'NO_ROOM',
      `the kernel reaches ${hex(elf.end)}; the guest's low RAM ends at ${hex(ramEnd)}`,
    );
  }
}

/** Builds the complete boot plan for a Linux kernel image (bzImage or ELF vmlinux). */
export function buildLinuxBoot(
  kernel: Uint8Array,
  options: LinuxBootOptions,
  currentSregs: Sregs,
): LinuxBootPlan {
  const { memSize } = options;
  if (!Number.isSafeInteger(memSize) || memSize <= 0)
    throw new BootError('NO_ROOM', `bad RAM size ${memSize}`);
  const bz = looksLikeBzImage(kernel);
  if (!bz && !isElf(kernel)) {
    throw new BootError(
      'BAD_KERNEL',
      'the kernel is neither a bzImage (no "HdrS" header at 0x202) nor an ELF file',
    );
  }
  const header = bz ? parseSetupHeader(kernel) : undefined;
  const entryKind: LinuxEntry = options.entry ?? (bz ? 'bzimage' : 'elf64');
  if (entryKind === 'bzimage' && !bz)
    throw new BootError('BAD_KERNEL', "entry 'bzimage' needs a bzImage, got ELF");

  const cmdline = options.cmdline ?? '';
  const cmdlineBytes = encodeCmdline(cmdline, header ? header.cmdlineSize : CMDLINE_MAX_LENGTH);
  const writes: MemoryWrite[] = [];
  let span: { start: number; end: number };
  let entry: number;
  let compression: KernelCompression | undefined;
  let elf: ElfKernel | undefined;

  if (entryKind === 'bzimage') {
    const placed = placeBzImage(header!, memSize);
    span = { start: placed.start, end: placed.end };
    entry = placed.load + STARTUP_64_OFFSET;
    writes.push({ gpa: placed.load, data: protectedModeKernel(kernel, header!) });
  } else {
    let image = kernel;
    if (header) {
      const d = decompressBzImage(kernel, header);
      image = d.data;
      compression = d.compression;
    }
    elf = parseElfKernel(image);
    checkElfFits(elf, memSize);
    span = { start: elf.start, end: elf.end };
    if (entryKind === 'pvh') {
      if (elf.pvhEntry === undefined) {
        throw new BootError(
          'BAD_KERNEL',
          'the kernel has no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); use elf64',
        );
      }
      entry = elf.pvhEntry;
    } else entry = elf.entry;
    writes.push(...elfLoadWrites(elf));
  }

  let initrd: { addr: number; size: number } | undefined;
  if (options.initrd) {
    const addr = placeInitrd(options.initrd.length, memSize, span, header?.initrdAddrMax);
    initrd = { addr, size: options.initrd.length };
    writes.push({ gpa: addr, data: options.initrd });
  }

  const acpi = options.acpi === false ? undefined : buildAcpiTables(options.acpi ?? defaultAcpi());
  if (acpi) writes.push(...acpi.writes);
  const e820 = buildE820(memSize, { acpiTables: acpi !== undefined });
  writes.push({ gpa: CMDLINE_START, data: cmdlineBytes });

  let cpu: CpuSetup;
  let bootInfoAddr: number;
  if (entryKind === 'pvh') {
    writes.push(
      buildPvhStartInfo({
        cmdlineAddr: CMDLINE_START,
        rsdpAddr: acpi?.rsdpAddr,
        memmap: e820,
        modules: initrd ? [initrd] : [],
      }),
    );
    bootInfoAddr = PVH_START_INFO;
    cpu = setupPvhEntry(currentSregs, entry, PVH_START_INFO);
  } else {
    let raw: Uint8Array | undefined;
    if (header) {
      raw = header.raw.slice();
      // code32_start tells the kernel where its protected-mode part was loaded.
      if (entryKind === 'bzimage') view(raw).setUint32(HDR.code32Start - HDR.setupSects, span.start, true);
    }
    writes.push({
      gpa: ZERO_PAGE,
      data: buildBootParams({
        header: raw,
        cmdlineAddr: CMDLINE_START,
        initrd,
        e820,
        rsdpAddr: acpi?.rsdpAddr,
      }),
    });
    bootInfoAddr = ZERO_PAGE;
    cpu = setupLongMode(currentSregs, {
      entry,
      identityMapSize: options.identityMapSize ?? IDENTITY_MAP_SIZE,
    });
    cpu.regs.rsi = BigInt(ZERO_PAGE);
  }

  return {
    writes,
    cpu,
    info: {
      format: bz ? 'bzImage' : 'elf',
      entryKind,
      entry,
      kernel: span,
      initrd,
      cmdline,
      e820,
      acpi,
      header,
      compression,
      bootInfoAddr,
    },
  };
}

/** ACPI for one vCPU, COM1 and the keyboard, no virtio devices. */
function defaultAcpi(): AcpiConfig {
  return { vcpus: 1, virtio: [], serial: true };
}
