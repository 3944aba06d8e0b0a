/**
 * Pure boot builders: they parse kernels and build boot_params, e820, command lines, ACPI tables, PVH start
 * info and initramfs archives as data; the VMM writes the results into guest memory.
 */
export * from './errors.js';
export * from './setup-header.js';
export * from './lz4.js';
export * from './decompress.js';
export * from './elf.js';
export * from './cmdline.js';
export * from './e820.js';
export * from './boot-params.js';
export * from './pvh.js';
export * from './linux.js';
export * from './acpi/index.js';
export * as aml from './acpi/aml.js';
export {
  buildDsdt,
  buildFadt,
  buildMadt,
  buildRsdp,
  buildXsdt,
  dsdtAml,
  sdt,
  validateAcpiConfig,
} from './acpi/tables.js';
export * from './initramfs/index.js';
