/**
 * The relocatable form of our ACPI tables, for QEMU's fw_cfg table-loader (hw/acpi/bios-linker-loader.c):
 * firmware allocates each file, patches pointers by adding the target file's address, then fixes checksums.
 */

/** The `size`-byte little-endian field in `file` at `offset` holds an offset into targetFile; the firmware adds targetFile's address. */
export interface AcpiPointer {
  file: string;
  offset: number;
  size: 1 | 2 | 4 | 8;
  targetFile: string;
}

/** The byte at `offset` makes sum(start..start+length) == 0. */
export interface AcpiChecksum {
  file: string;
  start: number;
  length: number;
  offset: number;
}

/** 'etc/acpi/rsdp' (fseg) and 'etc/acpi/tables' (high). */
export interface RelocatableAcpi {
  files: { name: string; data: Uint8Array; align: number; zone: 'high' | 'fseg' }[];
  pointers: AcpiPointer[];
  checksums: AcpiChecksum[];
}
