/**
 * ACPI 6.x tables for a hardware-reduced x86 microVM: RSDP (rev 2), XSDT, FADT (rev 6, HW_REDUCED_ACPI),
 * MADT (a Local APIC per vCPU, one IOAPIC) and a DSDT whose AML describes the virtio-mmio transports
 * (LNRO0005), COM1, the PS/2 keyboard and \_S5. Pointers between tables are given as addresses by the caller,
 * so the same code serves fixed placement and fw_cfg's relocatable form (where they are file offsets).
 */
import {
  ACPI_RESET_PORT,
  ACPI_RESET_VALUE,
  ACPI_S5_SLP_TYP,
  ACPI_SLEEP_CONTROL_PORT,
  ACPI_SLEEP_STATUS_PORT,
  I8042_COMMAND_PORT,
  I8042_DATA_PORT,
  I8042_KBD_GSI,
  IOAPIC_NUM_PINS,
  IOAPIC_START,
  LAPIC_START,
  MMIO_GAP_END,
  MMIO_GAP_START,
  SERIAL_COM1_GSI,
  SERIAL_COM1_PORT,
  VIRTIO_MMIO_MAX_DEVICES,
} from '../../arch/x86_64/layout.js';
import { BootError } from '../errors.js';
import { concat, fixChecksum, hex, putAscii, view } from '../bytes.js';
import * as aml from './aml.js';

export const SDT_HEADER_SIZE = 36;
export const RSDP_SIZE = 36;
export const FADT_SIZE = 276;
/** Byte offset of the checksum in every SDT header. */
export const SDT_CHECKSUM_OFFSET = 9;
/** FADT fields that point to the DSDT. */
export const FADT_DSDT_OFFSET = 40;
export const FADT_X_DSDT_OFFSET = 140;
/** RSDP fields. */
export const RSDP_CHECKSUM_OFFSET = 8;
export const RSDP_XSDT_OFFSET = 24;
export const RSDP_EXT_CHECKSUM_OFFSET = 32;

/** FADT flags. */
export const FADT_WBINVD = 1 << 0;
export const FADT_PWR_BUTTON = 1 << 4;
export const FADT_SLP_BUTTON = 1 << 5;
export const FADT_RESET_REG_SUP = 1 << 10;
export const FADT_HW_REDUCED_ACPI = 1 << 20;
/** FADT IA-PC boot architecture flags. */
export const IAPC_8042 = 1 << 1;
export const IAPC_VGA_NOT_PRESENT = 1 << 2;
export const IAPC_MSI_NOT_SUPPORTED = 1 << 3;
export const IAPC_PCIE_ASPM_CONTROLS = 1 << 4;
export const IAPC_CMOS_RTC_NOT_PRESENT = 1 << 5;
/** Generic Address Structure address space IDs. */
export const GAS_SYSTEM_IO = 1;

export const OEM_ID = 'NODKVM';
export const OEM_TABLE_ID = 'NODE-KVM';
export const CREATOR_ID = 'NKVM';
export const HYPERVISOR_VENDOR = 'NODE-KVM';

/** One virtio-mmio transport as the DSDT describes it. */
export interface VirtioMmioResource {
  base: number;
  size: number;
  gsi: number;
}

export interface AcpiConfig {
  /** Number of vCPUs: one enabled Local APIC each, APIC IDs 0..n-1. */
  vcpus: number;
  virtio: readonly VirtioMmioResource[];
  /** Describe COM1 (PNP0501 at 0x3f8, IRQ 4). */
  serial: boolean;
  /** Describe the i8042 PS/2 keyboard (PNP0303 at 0x60/0x64, IRQ 1); default true. */
  keyboard?: boolean;
}

function fail(why: string): never {
  throw new BootError('BAD_ACPI', why);
}

/** A table with its SDT header filled in and its checksum fixed. */
export function sdt(signature: string, revision: number, body: Uint8Array): Uint8Array {
  const t = new Uint8Array(SDT_HEADER_SIZE + body.length);
  const v = view(t);
  putAscii(t, 0, signature, 4);
  v.setUint32(4, t.length, true);
  t[8] = revision;
  putAscii(t, 10, OEM_ID, 6);
  putAscii(t, 16, OEM_TABLE_ID, 8);
  v.setUint32(24, 1, true); // OEM revision
  putAscii(t, 28, CREATOR_ID, 4);
  v.setUint32(32, 1, true); // creator revision
  t.set(body, SDT_HEADER_SIZE);
  fixChecksum(t, SDT_CHECKSUM_OFFSET);
  return t;
}

/** Generic Address Structure (12 bytes) for a byte-wide I/O port. */
function gasIoByte(t: Uint8Array, offset: number, port: number): void {
  t[offset] = GAS_SYSTEM_IO;
  t[offset + 1] = 8; // register bit width
  t[offset + 2] = 0; // bit offset
  t[offset + 3] = 1; // access size: byte
  view(t).setBigUint64(offset + 4, BigInt(port), true);
}

/** RSDP revision 2 (36 bytes): no RSDT, XSDT at `xsdtAddr`; both checksums set. */
export function buildRsdp(xsdtAddr: number): Uint8Array {
  const r = new Uint8Array(RSDP_SIZE);
  const v = view(r);
  putAscii(r, 0, 'RSD PTR ', 8);
  putAscii(r, 9, OEM_ID, 6);
  r[15] = 2; // revision: ACPI 2.0+
  v.setUint32(16, 0, true); // RsdtAddress: none, XSDT only
  v.setUint32(20, RSDP_SIZE, true);
  v.setBigUint64(RSDP_XSDT_OFFSET, BigInt(xsdtAddr), true);
  fixChecksum(r, RSDP_CHECKSUM_OFFSET, 0, 20);
  fixChecksum(r, RSDP_EXT_CHECKSUM_OFFSET, 0, RSDP_SIZE);
  return r;
}

/** XSDT listing the given table addresses. */
export function buildXsdt(tableAddrs: readonly number[]): Uint8Array {
  const body = new Uint8Array(8 * tableAddrs.length);
  tableAddrs.forEach((a, i) => view(body).setBigUint64(8 * i, BigInt(a), true));
  return sdt('XSDT', 1, body);
}

/**
 * FADT revision 6 (ACPI 6.5 layout, 276 bytes), hardware-reduced: no PM blocks, no FACS; power-off and reset
 * through the sleep control/status and reset registers at our I/O ports.
 */
export function buildFadt(dsdtAddr: number): Uint8Array {
  const t = new Uint8Array(FADT_SIZE);
  const v = view(t);
  if (dsdtAddr <= 0xffff_ffff) v.setUint32(FADT_DSDT_OFFSET, dsdtAddr, true);
  v.setUint16(
    109,
    IAPC_8042 |
      IAPC_VGA_NOT_PRESENT |
      IAPC_MSI_NOT_SUPPORTED |
      IAPC_PCIE_ASPM_CONTROLS |
      IAPC_CMOS_RTC_NOT_PRESENT,
    true,
  );
  v.setUint32(
    112,
    FADT_WBINVD | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_RESET_REG_SUP | FADT_HW_REDUCED_ACPI,
    true,
  );
  gasIoByte(t, 116, ACPI_RESET_PORT);
  t[128] = ACPI_RESET_VALUE;
  t[131] = 5; // FADT minor version: ACPI 6.5
  v.setBigUint64(FADT_X_DSDT_OFFSET, BigInt(dsdtAddr), true);
  gasIoByte(t, 244, ACPI_SLEEP_CONTROL_PORT);
  gasIoByte(t, 256, ACPI_SLEEP_STATUS_PORT);
  putAscii(t, 268, HYPERVISOR_VENDOR, 8);
  return sdt('FACP', 6, t.subarray(SDT_HEADER_SIZE));
}

/** MADT: the LAPIC address, one enabled Processor Local APIC per vCPU, one IOAPIC at GSI base 0. */
export function buildMadt(vcpus: number): Uint8Array {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 255) fail(`vCPU count ${vcpus} is outside 1..255`);
  const body = new Uint8Array(8 + 8 * vcpus + 12);
  const v = view(body);
  v.setUint32(0, LAPIC_START, true);
  v.setUint32(4, 0, true); // flags: no dual-8259 setup to describe (hardware-reduced)
  for (let i = 0; i < vcpus; i++) {
    const at = 8 + 8 * i;
    body[at] = 0; // Processor Local APIC
    body[at + 1] = 8;
    body[at + 2] = i; // ACPI processor UID
    body[at + 3] = i; // APIC ID
    v.setUint32(at + 4, 1, true); // enabled
  }
  const io = 8 + 8 * vcpus;
  body[io] = 1; // I/O APIC
  body[io + 1] = 12;
  body[io + 2] = 0; // IOAPIC ID (KVM's in-kernel IOAPIC resets to 0)
  v.setUint32(io + 4, IOAPIC_START, true);
  v.setUint32(io + 8, 0, true); // GSI base
  return sdt('APIC', 5, body);
}

/** The DSDT's AML body (without the table header). */
export function dsdtAml(config: AcpiConfig): Uint8Array {
  validateAcpiConfig(config);
  const devices: Uint8Array[] = [];
  config.virtio.forEach((d, n) => {
    devices.push(
      aml.device(`V${n.toString(16).toUpperCase().padStart(3, '0')}`, [
        aml.name('_HID', aml.string('LNRO0005')),
        aml.name('_UID', aml.integer(n)),
        aml.name('_CCA', aml.integer(1)),
        aml.name(
          '_CRS',
          aml.resourceTemplate([aml.memory32Fixed(true, d.base, d.size), aml.extendedInterrupt({}, [d.gsi])]),
        ),
      ]),
    );
  });
  if (config.serial) {
    devices.push(
      aml.device('COM1', [
        aml.name('_HID', aml.eisaId('PNP0501')),
        aml.name('_UID', aml.integer(1)),
        aml.name(
          '_CRS',
          aml.resourceTemplate([
            aml.io(SERIAL_COM1_PORT, SERIAL_COM1_PORT, 1, 8),
            aml.irqNoFlags([SERIAL_COM1_GSI]),
          ]),
        ),
      ]),
    );
  }
  if (config.keyboard ?? true) {
    devices.push(
      aml.device('PS2_', [
        aml.name('_HID', aml.eisaId('PNP0303')),
        aml.name(
          '_CRS',
          aml.resourceTemplate([
            aml.io(I8042_DATA_PORT, I8042_DATA_PORT, 1, 1),
            aml.io(I8042_COMMAND_PORT, I8042_COMMAND_PORT, 1, 1),
            aml.irqNoFlags([I8042_KBD_GSI]),
          ]),
        ),
      ]),
    );
  }
  const s5 = aml.name(
    '_S5',
    aml.pkg([aml.integer(ACPI_S5_SLP_TYP), aml.integer(0), aml.integer(0), aml.integer(0)]),
  );
  // Top-level names are already in the root scope, so no '\' prefix (iasl compiles them the same way).
  return concat([aml.scope('_SB', devices), s5]);
}

/** DSDT revision 2 (64-bit AML integers). */
export function buildDsdt(config: AcpiConfig): Uint8Array {
  return sdt('DSDT', 2, dsdtAml(config));
}

/** Checks the configuration before any table is built. */
export function validateAcpiConfig(config: AcpiConfig): void {
  if (!Number.isInteger(config.vcpus) || config.vcpus < 1 || config.vcpus > 255) {
    fail(`vCPU count ${config.vcpus} is outside 1..255`);
  }
  if (config.virtio.length > VIRTIO_MMIO_MAX_DEVICES) {
    fail(`${config.virtio.length} virtio-mmio devices; the layout has room for ${VIRTIO_MMIO_MAX_DEVICES}`);
  }
  // GSIs already taken by the legacy devices the DSDT describes; virtio interrupts are exclusive.
  const gsiUsers = new Map<number, string>();
  if (config.serial) gsiUsers.set(SERIAL_COM1_GSI, 'COM1');
  if (config.keyboard ?? true) gsiUsers.set(I8042_KBD_GSI, 'the PS/2 keyboard');
  config.virtio.forEach((d, i) => {
    if (!Number.isInteger(d.size) || d.size <= 0) fail(`virtio device ${i}: bad window size ${d.size}`);
    if (!Number.isInteger(d.base) || d.base < MMIO_GAP_START || d.base + d.size > MMIO_GAP_END) {
      fail(
        `virtio device ${i}: window [${hex(d.base)}, +${hex(d.size)}) is not inside the MMIO gap ` +
          `[${hex(MMIO_GAP_START)}, ${hex(MMIO_GAP_END)})`,
      );
    }
    config.virtio.slice(0, i).forEach((e, j) => {
      if (d.base < e.base + e.size && e.base < d.base + d.size) {
        fail(`virtio devices ${j} and ${i} share MMIO space at ${hex(Math.max(d.base, e.base))}`);
      }
    });
    if (!Number.isInteger(d.gsi) || d.gsi < 0 || d.gsi >= IOAPIC_NUM_PINS) {
      fail(`virtio device ${i}: GSI ${d.gsi} is not an IOAPIC pin (0..${IOAPIC_NUM_PINS - 1})`);
    }
    const user = gsiUsers.get(d.gsi);
    if (user !== undefined) fail(`virtio device ${i}: GSI ${d.gsi} is already used by ${user}`);
    gsiUsers.set(d.gsi, `virtio device ${i}`);
  });
}
