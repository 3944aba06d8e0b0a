import type { BusDevice } from '../bus/bus.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { RelocatableAcpi } from '../boot/acpi/types.js';
import { encodeFileName, encodeTableLoader, FwCfgError } from './fw-cfg-loader.js';

export { FwCfgError } from './fw-cfg-loader.js';

/**
 * QEMU's firmware configuration interface (docs/specs/fw_cfg.rst, hw/nvram/fw_cfg.c), x86 I/O-port flavour,
 * as a pure state machine: how SeaBIOS (src/fw/paravirt.c) learns RAM layout, CPU count, boot order and
 * gets its ACPI tables (through the "etc/table-loader" commands).
 *
 * Register the device once at FW_CFG_SELECTOR_PORT (0x510) with length FW_CFG_PORT_COUNT (12):
 * - offset 0 (0x510): 16-bit selector, write-only. Selecting an item rewinds it to offset 0.
 * - offset 1 (0x511): data, read one byte at a time (wider reads return consecutive bytes); each read
 *   advances, past the end (or for an unknown item) reads 0. Writes are ignored (QEMU ≥ 2.4 does the same).
 *   As in QEMU, a byte read at 0x510 also reads data.
 * - offsets 4-11 (0x514-0x51B): DMA address, big-endian. A 32-bit write at 0x514 sets the high half, a 32-bit
 *   write at 0x518 sets the low half and starts the transfer; a 64-bit write at 0x514 does both. Reads return
 *   the signature "QEMU CFG".
 *
 * DMA: the guest points the register at an FWCfgDmaAccess {control BE32, length BE32, address BE64}. Control
 * bits: SELECT (key in bits 31:16), READ, SKIP, WRITE; on completion the device writes back control = 0, or
 * ERROR. Every guest address goes through GuestMemory; an address outside guest RAM sets ERROR (or, for the
 * descriptor itself, nothing happens) — a guest can never make the device throw. No item is writable, so
 * WRITE always ends in ERROR, as for QEMU's read-only items.
 */

export const FW_CFG_PORT_COUNT = 12;
export const FW_CFG_OFFSET_SELECTOR = 0;
export const FW_CFG_OFFSET_DATA = 1;
export const FW_CFG_OFFSET_DMA = 4;

/** Legacy item keys (include/standard-headers/linux/qemu_fw_cfg.h). */
export const FW_CFG_SIGNATURE = 0x00;
export const FW_CFG_ID = 0x01;
export const FW_CFG_UUID = 0x02;
export const FW_CFG_RAM_SIZE = 0x03;
export const FW_CFG_NOGRAPHIC = 0x04;
export const FW_CFG_NB_CPUS = 0x05;
export const FW_CFG_MACHINE_ID = 0x06;
export const FW_CFG_NUMA = 0x0d;
export const FW_CFG_BOOT_MENU = 0x0e;
export const FW_CFG_MAX_CPUS = 0x0f;
export const FW_CFG_FILE_DIR = 0x19;
export const FW_CFG_FILE_FIRST = 0x20;
/** Selector bits: write channel (ignored for selection) and architecture-local items. */
export const FW_CFG_WRITE_CHANNEL = 0x4000;
export const FW_CFG_ARCH_LOCAL = 0x8000;
export const FW_CFG_ACPI_TABLES = FW_CFG_ARCH_LOCAL + 0;
export const FW_CFG_SMBIOS_ENTRIES = FW_CFG_ARCH_LOCAL + 1;
export const FW_CFG_IRQ0_OVERRIDE = FW_CFG_ARCH_LOCAL + 2;
export const FW_CFG_E820_TABLE = FW_CFG_ARCH_LOCAL + 3;

/** FW_CFG_ID feature bits. */
export const FW_CFG_VERSION = 0x01;
export const FW_CFG_VERSION_DMA = 0x02;

/** FWCfgDmaAccess.control bits. */
export const FW_CFG_DMA_CTL_ERROR = 0x01;
export const FW_CFG_DMA_CTL_READ = 0x02;
export const FW_CFG_DMA_CTL_SKIP = 0x04;
export const FW_CFG_DMA_CTL_SELECT = 0x08;
export const FW_CFG_DMA_CTL_WRITE = 0x10;
export const FW_CFG_DMA_ACCESS_SIZE = 16;
/** What the DMA address register reads as. */
export const FW_CFG_DMA_SIGNATURE = 'QEMU CFG';

/** One FW_CFG_FILE_DIR entry: size BE32, select BE16, reserved BE16, name[56]. */
export const FW_CFG_FILE_ENTRY_SIZE = 64;

/** Well-known file names. */
export const FW_CFG_FILE_E820 = 'etc/e820';
export const FW_CFG_FILE_BOOTORDER = 'bootorder';
export const FW_CFG_FILE_TABLE_LOADER = 'etc/table-loader';

/** Size of one "etc/e820" entry: u64 address, u64 length, u32 type, little-endian, packed. */
export const FW_CFG_E820_ENTRY_SIZE = 20;

/** Keys are 14 bits plus the arch-local bit; the write-channel bit does not take part in selection. */
const KEY_MASK = 0x3fff | FW_CFG_ARCH_LOCAL;
const MAX_FILES = FW_CFG_WRITE_CHANNEL - FW_CFG_FILE_FIRST;

export interface FwCfgOptions {
  /** Guest memory for the DMA interface. Without it, DMA is not offered (FW_CFG_ID bit 1 clear). */
  memory?: GuestMemory;
  /** Offer DMA (default: whenever memory is given). */
  dma?: boolean;
}

/** Anything shaped like an e820 entry (lib/boot/e820's E820Entry fits). */
export interface FwCfgE820Entry {
  addr: number;
  size: number;
  type: number;
}

export interface FwCfgFileInfo {
  name: string;
  select: number;
  size: number;
}

const EMPTY = new Uint8Array(0);

export class FwCfg implements BusDevice {
  private readonly memory: GuestMemory | undefined;
  private readonly dmaEnabled: boolean;
  private readonly items = new Map<number, Uint8Array>();
  private readonly fileList: { name: string; select: number }[] = [];
  private selected = FW_CFG_SIGNATURE;
  private current: Uint8Array = EMPTY;
  private offset = 0;
  private dmaHigh = 0;
  private readonly dmaHeader = new Uint8Array(FW_CFG_DMA_ACCESS_SIZE);
  private readonly dmaHeaderView = new DataView(this.dmaHeader.buffer);

  /** DMA transfers started by the guest, and how many ended in ERROR (or had an unreadable descriptor). */
  dmaTransfers = 0;
  dmaErrors = 0;

  constructor(options: FwCfgOptions = {}) {
    this.memory = options.memory;
    this.dmaEnabled = options.dma ?? options.memory !== undefined;
    if (this.dmaEnabled && this.memory === undefined) throw new FwCfgError('fw_cfg DMA needs guest memory');
    this.items.set(FW_CFG_SIGNATURE, new TextEncoder().encode('QEMU'));
    this.items.set(FW_CFG_ID, u32le(FW_CFG_VERSION | (this.dmaEnabled ? FW_CFG_VERSION_DMA : 0)));
    this.rebuildDirectory();
    this.select(FW_CFG_SIGNATURE);
  }

  // --- Host-side configuration ------------------------------------------------------------------------------

  /** Sets a legacy (numbered) item. Keys at or above FW_CFG_FILE_FIRST belong to files; use addFile. */
  setItem(key: number, data: Uint8Array): void {
    if (!Number.isInteger(key) || key < 0 || key > 0xffff)
      throw new FwCfgError(`fw_cfg key ${key} is invalid`);
    const k = key & KEY_MASK;
    if (!(k & FW_CFG_ARCH_LOCAL) && k >= FW_CFG_FILE_FIRST) {
      throw new FwCfgError(`fw_cfg key 0x${key.toString(16)} belongs to files: use addFile`);
    }
    if (k === FW_CFG_FILE_DIR || k === FW_CFG_SIGNATURE || k === FW_CFG_ID) {
      throw new FwCfgError(`fw_cfg key 0x${key.toString(16)} is managed by the device`);
    }
    this.items.set(k, data.slice());
    if (this.selected === k) this.select(k);
  }

  /** Adds a named file; returns its selector key. Throws if the name exists (use setFile to replace). */
  addFile(name: string, data: Uint8Array): number {
    encodeFileName(name);
    if (this.fileList.some((f) => f.name === name))
      throw new FwCfgError(`fw_cfg file ${name} already exists`);
    if (this.fileList.length >= MAX_FILES) throw new FwCfgError('fw_cfg has no free file slots');
    const select = FW_CFG_FILE_FIRST + this.fileList.length;
    this.fileList.push({ name, select });
    this.items.set(select, data.slice());
    this.rebuildDirectory();
    return select;
  }

  /** Adds or replaces a named file; returns its selector key. */
  setFile(name: string, data: Uint8Array): number {
    const existing = this.fileList.find((f) => f.name === name);
    if (existing === undefined) return this.addFile(name, data);
    this.items.set(existing.select, data.slice());
    this.rebuildDirectory();
    if (this.selected === existing.select) this.select(existing.select);
    return existing.select;
  }

  /** A little-endian integer file, the form SeaBIOS's romfile_loadint reads (e.g. "etc/boot-fail-wait"). */
  setIntFile(name: string, value: number, bytes: 1 | 2 | 4 | 8 = 4): number {
    if (!Number.isSafeInteger(value) || value < 0 || (bytes < 8 && value >= 2 ** (8 * bytes))) {
      throw new FwCfgError(`fw_cfg ${name}: ${value} does not fit in ${bytes} bytes`);
    }
    const data = new Uint8Array(8);
    new DataView(data.buffer).setBigUint64(0, BigInt(value), true);
    return this.setFile(name, data.subarray(0, bytes));
  }

  /** The files in the directory, in selector order. */
  get files(): FwCfgFileInfo[] {
    return this.fileList.map((f) => ({
      name: f.name,
      select: f.select,
      size: this.items.get(f.select)?.length ?? 0,
    }));
  }

  /** A copy of a file's contents, or undefined. */
  file(name: string): Uint8Array | undefined {
    const f = this.fileList.find((e) => e.name === name);
    return f === undefined ? undefined : this.items.get(f.select)?.slice();
  }

  /** A copy of an item's contents by key (legacy keys, files, or the directory). */
  item(key: number): Uint8Array | undefined {
    return this.items.get(key & KEY_MASK)?.slice();
  }

  /** FW_CFG_RAM_SIZE (u64 LE): total RAM in bytes. */
  setRamSize(bytes: number): void {
    this.setItem(FW_CFG_RAM_SIZE, u64le(bytes));
  }

  /** FW_CFG_NB_CPUS and FW_CFG_MAX_CPUS (u16 LE each); SeaBIOS waits for `count` CPUs to check in. */
  setCpus(count: number, max = count): void {
    if (!Number.isInteger(count) || count < 1 || !Number.isInteger(max) || max < count || max > 0xffff) {
      throw new FwCfgError(`fw_cfg CPU counts ${count}/${max} are invalid`);
    }
    this.setItem(FW_CFG_NB_CPUS, u16le(count));
    this.setItem(FW_CFG_MAX_CPUS, u16le(max));
  }

  /** FW_CFG_NOGRAPHIC (u16): SeaBIOS then adds "etc/sercon-port" = COM1, mirroring int 10h text to serial. */
  setNoGraphic(noGraphic: boolean): void {
    this.setItem(FW_CFG_NOGRAPHIC, u16le(noGraphic ? 1 : 0));
  }

  /** FW_CFG_BOOT_MENU (u16): whether SeaBIOS shows its "Press ESC for boot menu" prompt. */
  setBootMenu(show: boolean): void {
    this.setItem(FW_CFG_BOOT_MENU, u16le(show ? 1 : 0));
  }

  /**
   * "etc/e820": the memory map SeaBIOS starts from (its RamSize/RamSizeOver4G come from the RAM entries).
   * SeaBIOS uses only RAM (1) and RESERVED (2) entries from it.
   */
  setE820(entries: readonly FwCfgE820Entry[]): number {
    const data = new Uint8Array(entries.length * FW_CFG_E820_ENTRY_SIZE);
    const view = new DataView(data.buffer);
    entries.forEach((e, i) => {
      if (![e.addr, e.size, e.type].every((v) => Number.isSafeInteger(v) && v >= 0) || e.type > 0xffff_ffff) {
        throw new FwCfgError(`e820 entry ${i} is invalid`);
      }
      const at = i * FW_CFG_E820_ENTRY_SIZE;
      view.setBigUint64(at, BigInt(e.addr), true);
      view.setBigUint64(at + 8, BigInt(e.size), true);
      view.setUint32(at + 16, e.type, true);
    });
    return this.setFile(FW_CFG_FILE_E820, data);
  }

  /** "bootorder": firmware device paths, one per line, NUL-terminated (QEMU's format). */
  setBootOrder(paths: readonly string[]): number {
    for (const p of paths) {
      if (p.length === 0 || /[\n\0]/.test(p))
        throw new FwCfgError(`boot path ${JSON.stringify(p)} is invalid`);
    }
    return this.setFile(FW_CFG_FILE_BOOTORDER, new TextEncoder().encode(paths.join('\n') + '\0'));
  }

  /** The ACPI files plus "etc/table-loader" with their ALLOCATE/ADD_POINTER/ADD_CHECKSUM commands. */
  addAcpiTables(acpi: RelocatableAcpi): void {
    const loader = encodeTableLoader(acpi);
    for (const f of acpi.files) this.setFile(f.name, f.data);
    this.setFile(FW_CFG_FILE_TABLE_LOADER, loader);
  }

  private rebuildDirectory(): void {
    const dir = new Uint8Array(4 + this.fileList.length * FW_CFG_FILE_ENTRY_SIZE);
    const view = new DataView(dir.buffer);
    view.setUint32(0, this.fileList.length, false);
    this.fileList.forEach((f, i) => {
      const at = 4 + i * FW_CFG_FILE_ENTRY_SIZE;
      view.setUint32(at, this.items.get(f.select)?.length ?? 0, false);
      view.setUint16(at + 4, f.select, false);
      dir.set(encodeFileName(f.name), at + 8);
    });
    this.items.set(FW_CFG_FILE_DIR, dir);
    if (this.selected === FW_CFG_FILE_DIR) this.current = dir;
  }

  // --- Guest-facing registers -------------------------------------------------------------------------------

  private select(key: number): void {
    this.selected = key & KEY_MASK;
    this.current = this.items.get(this.selected) ?? EMPTY;
    this.offset = 0;
  }

  read(offset: number, data: Uint8Array): void {
    if (offset < FW_CFG_OFFSET_DMA) {
      if (offset === FW_CFG_OFFSET_SELECTOR || offset === FW_CFG_OFFSET_DATA) {
        for (let i = 0; i < data.length; i++) data[i] = this.nextByte();
      } else {
        data.fill(0);
      }
      return;
    }
    for (let i = 0; i < data.length; i++) {
      const at = offset - FW_CFG_OFFSET_DMA + i;
      data[i] = this.dmaEnabled && at < 8 ? FW_CFG_DMA_SIGNATURE.charCodeAt(at) : 0;
    }
  }

  write(offset: number, data: Uint8Array): void {
    if (offset === FW_CFG_OFFSET_SELECTOR) {
      if (data.length === 2) this.select(data[0] | (data[1] << 8));
      return;
    }
    if (!this.dmaEnabled) return;
    if (offset === FW_CFG_OFFSET_DMA && data.length === 4) {
      this.dmaHigh = be32(data, 0);
    } else if (offset === FW_CFG_OFFSET_DMA + 4 && data.length === 4) {
      const high = this.dmaHigh;
      this.dmaHigh = 0; // QEMU resets the address before each transfer
      this.dmaTransfer(high, be32(data, 0));
    } else if (offset === FW_CFG_OFFSET_DMA && data.length === 8) {
      this.dmaHigh = 0;
      this.dmaTransfer(be32(data, 0), be32(data, 4));
    }
  }

  private nextByte(): number {
    return this.offset < this.current.length ? this.current[this.offset++] : 0;
  }

  private dmaTransfer(high: number, low: number): void {
    this.dmaTransfers++;
    const memory = this.memory;
    if (memory === undefined) return;
    // Addresses beyond 2^53 cannot be guest RAM; treat the descriptor as unreachable.
    if (high > 0x1f_ffff) {
      this.dmaErrors++;
      return;
    }
    const descriptor = high * 0x1_0000_0000 + low;
    const header = memory.tryView(descriptor, FW_CFG_DMA_ACCESS_SIZE);
    if (header === undefined) {
      this.dmaErrors++;
      return;
    }
    this.dmaHeader.set(header);
    const v = this.dmaHeaderView;
    const control = v.getUint32(0, false);
    let length = v.getUint32(4, false);
    const addrHigh = v.getUint32(8, false);
    const addrLow = v.getUint32(12, false);

    if (control & FW_CFG_DMA_CTL_SELECT) this.select(control >>> 16);
    let op: 'read' | 'write' | 'skip';
    if (control & FW_CFG_DMA_CTL_READ) op = 'read';
    else if (control & FW_CFG_DMA_CTL_WRITE) op = 'write';
    else if (control & FW_CFG_DMA_CTL_SKIP) op = 'skip';
    else {
      op = 'skip';
      length = 0;
    }

    let status = 0;
    if (length > 0) {
      if (op === 'write') {
        status = FW_CFG_DMA_CTL_ERROR; // no writable items
      } else if (op === 'skip') {
        this.offset = Math.min(this.current.length, this.offset + length);
      } else {
        const target =
          addrHigh > 0x1f_ffff ? undefined : memory.tryView(addrHigh * 0x1_0000_0000 + addrLow, length);
        if (target === undefined) {
          status = FW_CFG_DMA_CTL_ERROR;
        } else {
          const n = Math.min(length, Math.max(0, this.current.length - this.offset));
          target.set(this.current.subarray(this.offset, this.offset + n));
          target.fill(0, n); // past the end of the item reads as zeros
          this.offset += n;
        }
      }
    }
    if (status !== 0) this.dmaErrors++;
    // Completion: the guest polls control until it is 0 (or only ERROR).
    const done = memory.tryView(descriptor, 4);
    if (done !== undefined) new DataView(done.buffer, done.byteOffset, 4).setUint32(0, status, false);
  }
}

function be32(data: Uint8Array, at: number): number {
  return ((data[at] << 24) | (data[at + 1] << 16) | (data[at + 2] << 8) | data[at + 3]) >>> 0;
}

function u16le(value: number): Uint8Array {
  return Uint8Array.of(value & 0xff, (value >>> 8) & 0xff);
}

function u32le(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0, true);
  return out;
}

function u64le(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new FwCfgError(`fw_cfg value ${value} is not a u64`);
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(value), true);
  return out;
}
