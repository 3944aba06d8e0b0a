/**
 * The guest-physical (and port) address map of node-kvm guests. Every address the VMM places something at is
 * declared here, once, with one line saying what lives there.
 */

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

// --- Low memory (below 1 MiB) ------------------------------------------------------------------------------
/** Boot GDT for protected/long-mode entry (8 descriptors; selectors in lib/arch/x86_64/gdt.ts). */
export const BOOT_GDT = 0x500;
/** Empty IDT loaded at entry (interrupts stay disabled until the guest installs its own). */
export const BOOT_IDT = 0x540;
/**
 * 64-bit TSS referenced by the boot GDT: 104 bytes (RSP0 for CPL3 payloads) followed by an all-zero I/O
 * permission bitmap, so CPL3 payloads may use every port even where IOPL is not honoured (PVM).
 */
export const BOOT_TSS = 0x1_0000;
/** Real-mode payloads are loaded and entered here (CS=0, IP=0x1000); they may extend to ZERO_PAGE. */
export const REAL_MODE_PAYLOAD = 0x1000;
/** PVH hvm_start_info, then its module list and memory map, in one page (Linux PVH entry only). */
export const PVH_START_INFO = 0x6000;
/** Linux boot_params ("zero page"). */
export const ZERO_PAGE = 0x7000;
/** Initial stack top for payloads and the Linux 64-bit entry (grows down below the page tables). */
export const BOOT_STACK_TOP = 0x8ff0;
/** Identity-mapping page tables: PML4, then PDPT, then PDs (one per GiB mapped). */
export const PML4_START = 0x9000;
export const PDPT_START = 0xa000;
export const PD_START = 0xb000;
/** How much the boot page tables identity-map with 2 MiB pages (covers the MMIO gap and the LAPIC). */
export const IDENTITY_MAP_SIZE = 4 * GiB;
/** Kernel command line. */
export const CMDLINE_START = 0x20000;
/** Longest command line we accept (the kernel's own cmdline_size may be smaller). */
export const CMDLINE_MAX_SIZE = 0x10000;
/** Start of the Extended BIOS Data Area; e820 reserves from here to 1 MiB. */
export const EBDA_START = 0x9fc00;
/** ACPI tables (RSDP first, which Linux also finds by scanning 0xE0000-0xFFFFF). */
export const ACPI_START = 0xe0000;
export const ACPI_SIZE = 0x20000;

// --- High memory --------------------------------------------------------------------------------------------
/** First byte above the legacy 1 MiB area: where kernels and protected/long-mode payloads load. */
export const HIMEM_START = 0x10_0000;

// --- The 32-bit MMIO gap [3 GiB, 4 GiB) ----------------------------------------------------------------------
/** No RAM between MMIO_GAP_START and 4 GiB; RAM beyond it continues at 4 GiB. */
export const MMIO_GAP_START = 0xc000_0000;
export const MMIO_GAP_END = 0x1_0000_0000;
/** virtio-mmio transports: one 4 KiB window each, from here up. */
export const VIRTIO_MMIO_BASE = 0xd000_0000;
export const VIRTIO_MMIO_SIZE = 0x1000;
export const VIRTIO_MMIO_MAX_DEVICES = 8;
/** In-kernel IOAPIC and local APIC (fixed by the x86 platform). */
export const IOAPIC_START = 0xfec0_0000;
export const LAPIC_START = 0xfee0_0000;
/** KVM's identity-map page (KVM_SET_IDENTITY_MAP_ADDR) and its 3-page TSS area (KVM_SET_TSS_ADDR). */
export const KVM_IDENTITY_MAP_ADDR = 0xfeff_c000;
export const KVM_TSS_ADDR = 0xfeff_d000;
/** Firmware images (e.g. SeaBIOS) are mapped read-only so that they end at 4 GiB. */
export const FIRMWARE_TOP = 0x1_0000_0000;
/** Legacy BIOS shadow where firmware also appears, below 1 MiB (0xE0000/0xF0000 - 0xFFFFF). */
export const BIOS_SHADOW_END = 0x10_0000;

// --- Interrupts (GSI numbers on the in-kernel IOAPIC) ------------------------------------------------------
/** COM1 IRQ. */
export const SERIAL_COM1_GSI = 4;
/** i8042 keyboard IRQ. */
export const I8042_KBD_GSI = 1;
/** First GSI for virtio-mmio devices (IOAPIC pins 16..23, free of ISA legacy users). */
export const VIRTIO_GSI_BASE = 16;
/** Pins on KVM's in-kernel IOAPIC (KVM_IOAPIC_NUM_PINS), so GSIs 0..23 are the ones a device can use. */
export const IOAPIC_NUM_PINS = 24;

// --- I/O ports -------------------------------------------------------------------------------------------------
/** i8042 data and command/status ports. */
export const I8042_DATA_PORT = 0x60;
export const I8042_COMMAND_PORT = 0x64;
/** Debug console: every byte written is console output (Bochs/QEMU convention). */
export const DEBUG_CONSOLE_PORT = 0xe9;
/** Firmware debug log port (QEMU isa-debugcon convention; SeaBIOS writes its debug messages here). */
export const FIRMWARE_DEBUG_PORT = 0x402;
/** Debug exit (QEMU isa-debug-exit convention): a guest write of v ends the run with exit code v. */
export const DEBUG_EXIT_PORT = 0x501;
/** 8250 UART COM1 (8 registers). */
export const SERIAL_COM1_PORT = 0x3f8;
/** PC reset control register (write with bit 2 set: reset). */
export const RESET_CONTROL_PORT = 0xcf9;
/** QEMU fw_cfg: selector (16-bit) and data ports, and the DMA address register. */
export const FW_CFG_SELECTOR_PORT = 0x510;
export const FW_CFG_DATA_PORT = 0x511;
export const FW_CFG_DMA_PORT = 0x514;

/**
 * ACPI hardware-reduced power management (FADT SLEEP_CONTROL_REG / SLEEP_STATUS_REG / RESET_REG): the guest
 * writes SLP_TYP|SLP_EN to the control port to power off, and ACPI_RESET_VALUE to the reset port to reboot.
 */
export const ACPI_SLEEP_CONTROL_PORT = 0x3c0;
export const ACPI_SLEEP_STATUS_PORT = 0x3c1;
export const ACPI_RESET_PORT = 0x3c2;
export const ACPI_RESET_VALUE = 0x1;
/** SLP_TYP value the DSDT's \_S5 package declares for soft-off. */
export const ACPI_S5_SLP_TYP = 5;

/** Base address of virtio-mmio transport n. */
export function virtioMmioBase(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n >= VIRTIO_MMIO_MAX_DEVICES) {
    throw new RangeError(`virtio-mmio slot ${n} is outside 0..${VIRTIO_MMIO_MAX_DEVICES - 1}`);
  }
  return VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE;
}

/** GSI of virtio-mmio transport n. */
export function virtioGsi(n: number): number {
  virtioMmioBase(n);
  return VIRTIO_GSI_BASE + n;
}

/** Guest RAM of `size` bytes as guest-physical regions: below the MMIO gap, then the rest from 4 GiB. */
export function ramRegions(size: number): { gpa: number; size: number }[] {
  if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError('RAM size must be a positive integer');
  const low = Math.min(size, MMIO_GAP_START);
  const regions = [{ gpa: 0, size: low }];
  if (size > low) regions.push({ gpa: MMIO_GAP_END, size: size - low });
  return regions;
}
