import type { RelocatableAcpi } from '../boot/acpi/types.js';

/**
 * An encoder for QEMU's BIOSLinker "etc/table-loader" (hw/acpi/bios-linker-loader.c): a list of 128-byte
 * commands that tell firmware (SeaBIOS src/fw/romfile_loader.c, OVMF's AcpiPlatformDxe) to allocate fw_cfg
 * files in guest memory, patch pointers between them with the allocated addresses, and fix checksums.
 * All integers are little-endian; names are NUL-padded to 56 bytes (FW_CFG_MAX_FILE_PATH).
 */

export const LOADER_ENTRY_SIZE = 128;
export const LOADER_FILE_NAME_SIZE = 56;

export const LOADER_COMMAND_ALLOCATE = 1;
export const LOADER_COMMAND_ADD_POINTER = 2;
export const LOADER_COMMAND_ADD_CHECKSUM = 3;
export const LOADER_COMMAND_WRITE_POINTER = 4;

export const LOADER_ZONE_HIGH = 1;
export const LOADER_ZONE_FSEG = 2;

/** Host-side misuse of the fw_cfg API (bad names, inconsistent tables). Guest accesses never throw. */
export class FwCfgError extends Error {
  readonly code = 'ERR_FW_CFG';
  constructor(message: string) {
    super(message);
    this.name = 'FwCfgError';
  }
}

/** An fw_cfg file name as its NUL-padded 56-byte field (it must leave room for the terminating NUL). */
export function encodeFileName(name: string): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length === 0 || bytes.length >= LOADER_FILE_NAME_SIZE || bytes.includes(0)) {
    throw new FwCfgError(`fw_cfg file name ${JSON.stringify(name)} must be 1-55 bytes without NUL`);
  }
  const field = new Uint8Array(LOADER_FILE_NAME_SIZE);
  field.set(bytes);
  return field;
}

/**
 * Encodes the loader commands for a relocatable ACPI set: every ALLOCATE first (so each file exists before
 * it is referenced), then every ADD_POINTER, then every ADD_CHECKSUM in the given order (a checksum must
 * follow the pointer patches inside its range, and e.g. the RSDP's 20-byte checksum must precede its
 * extended checksum, which covers it). Throws FwCfgError if the description is inconsistent.
 */
export function encodeTableLoader(acpi: RelocatableAcpi): Uint8Array {
  const sizes = new Map<string, number>();
  for (const f of acpi.files) {
    encodeFileName(f.name);
    if (sizes.has(f.name)) throw new FwCfgError(`table-loader file ${f.name} is listed twice`);
    if (!Number.isInteger(f.align) || f.align < 1 || (f.align & (f.align - 1)) !== 0 || f.align > 2 ** 31) {
      throw new FwCfgError(`table-loader file ${f.name}: align ${f.align} is not a power of two`);
    }
    if (f.zone !== 'high' && f.zone !== 'fseg') throw new FwCfgError(`table-loader file ${f.name}: bad zone`);
    sizes.set(f.name, f.data.length);
  }
  const size = (name: string): number => {
    const s = sizes.get(name);
    if (s === undefined) throw new FwCfgError(`table-loader references unknown file ${name}`);
    return s;
  };
  const inside = (what: string, file: string, start: number, length: number): void => {
    if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0) {
      throw new FwCfgError(`${what} in ${file}: bad range ${start}+${length}`);
    }
    if (start + length > size(file)) {
      throw new FwCfgError(`${what} in ${file}: ${start}+${length} exceeds the file (${size(file)} bytes)`);
    }
  };
  for (const p of acpi.pointers) {
    size(p.targetFile);
    if (![1, 2, 4, 8].includes(p.size)) throw new FwCfgError(`pointer in ${p.file}: size ${p.size}`);
    inside('pointer', p.file, p.offset, p.size);
  }
  for (const c of acpi.checksums) {
    inside('checksum range', c.file, c.start, c.length);
    inside('checksum byte', c.file, c.offset, 1);
  }

  const count = acpi.files.length + acpi.pointers.length + acpi.checksums.length;
  const out = new Uint8Array(count * LOADER_ENTRY_SIZE);
  const view = new DataView(out.buffer);
  let at = 0;
  const entry = (command: number): number => {
    const base = at;
    view.setUint32(base, command, true);
    at += LOADER_ENTRY_SIZE;
    return base + 4;
  };
  for (const f of acpi.files) {
    const p = entry(LOADER_COMMAND_ALLOCATE);
    out.set(encodeFileName(f.name), p);
    view.setUint32(p + 56, f.align, true);
    out[p + 60] = f.zone === 'high' ? LOADER_ZONE_HIGH : LOADER_ZONE_FSEG;
  }
  for (const ptr of acpi.pointers) {
    const p = entry(LOADER_COMMAND_ADD_POINTER);
    out.set(encodeFileName(ptr.file), p); // destination: the file holding the pointer
    out.set(encodeFileName(ptr.targetFile), p + 56); // source: the file whose address is added
    view.setUint32(p + 112, ptr.offset, true);
    out[p + 116] = ptr.size;
  }
  for (const c of acpi.checksums) {
    const p = entry(LOADER_COMMAND_ADD_CHECKSUM);
    out.set(encodeFileName(c.file), p);
    view.setUint32(p + 56, c.offset, true);
    view.setUint32(p + 60, c.start, true);
    view.setUint32(p + 64, c.length, true);
  }
  return out;
}
