/** KVM ABI constants (include/uapi/linux/kvm.h, x86). */

export const KVM_API_VERSION = 12;

/** kvm_run.exit_reason values. */
export const ExitReason = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  SET_TPR: 11,
  TPR_ACCESS: 12,
  NMI: 16,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  IOAPIC_EOI: 26,
  X86_RDMSR: 29,
  X86_WRMSR: 30,
} as const;

/** kvm_run.internal.suberror values. */
export const InternalErrorSuberror = {
  EMULATION: 1,
  SIMUL_EX: 2,
  DELIVERY_EV: 3,
  UNEXPECTED_EXIT_REASON: 4,
} as const;

/** kvm_run.system_event.type values. */
export const SystemEventType = {
  SHUTDOWN: 1,
  RESET: 2,
  CRASH: 3,
  WAKEUP: 4,
  SUSPEND: 5,
  SEV_TERM: 6,
} as const;

/** KVM_CHECK_EXTENSION capability numbers used by node-kvm. */
export const Cap = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  PIT: 11,
  NOP_IO_DELAY: 12,
  MP_STATE: 14,
  COALESCED_MMIO: 15,
  SYNC_MMU: 16,
  IRQ_ROUTING: 25,
  IRQ_INJECT_STATUS: 26,
  ASSIGN_DEV_IRQ: 29,
  JOIN_MEMORY_REGIONS_WORKS: 30,
  IRQFD: 32,
  PIT2: 33,
  SET_BOOT_CPU_ID: 34,
  PIT_STATE2: 35,
  IOEVENTFD: 36,
  SET_IDENTITY_MAP_ADDR: 37,
  ADJUST_CLOCK: 39,
  VCPU_EVENTS: 41,
  PCI_SEGMENT: 47,
  INTR_SHADOW: 49,
  DEBUGREGS: 50,
  X86_ROBUST_SINGLESTEP: 51,
  XSAVE: 55,
  XCRS: 56,
  TSC_CONTROL: 60,
  GET_TSC_KHZ: 61,
  MAX_VCPUS: 66,
  TSC_DEADLINE_TIMER: 72,
  SIGNAL_MSI: 77,
  READONLY_MEM: 81,
  IRQFD_RESAMPLE: 82,
  IOEVENTFD_NO_LENGTH: 100,
  IMMEDIATE_EXIT: 136,
  SPLIT_IRQCHIP: 121,
  IOEVENTFD_ANY_LENGTH: 122,
  MAX_VCPU_ID: 128,
  X2APIC_API: 129,
  MULTI_ADDRESS_SPACE: 118,
} as const;
export type CapName = keyof typeof Cap;

/** kvm_userspace_memory_region.flags */
export const MemFlag = {
  LOG_DIRTY_PAGES: 1 << 0,
  READONLY: 1 << 1,
} as const;

/** kvm_ioeventfd.flags */
export const IoeventfdFlag = {
  DATAMATCH: 1 << 0,
  PIO: 1 << 1,
  DEASSIGN: 1 << 2,
} as const;

/** kvm_irqfd.flags */
export const IrqfdFlag = {
  DEASSIGN: 1 << 0,
  RESAMPLE: 1 << 1,
} as const;

/** kvm_mp_state.mp_state */
export const MpState = {
  RUNNABLE: 0,
  UNINITIALIZED: 1,
  INIT_RECEIVED: 2,
  HALTED: 3,
  SIPI_RECEIVED: 4,
} as const;

/** kvm_guest_debug.control */
export const GuestDebugFlag = {
  ENABLE: 0x1,
  SINGLESTEP: 0x2,
  USE_SW_BP: 0x10000,
  USE_HW_BP: 0x20000,
  INJECT_DB: 0x40000,
  INJECT_BP: 0x80000,
} as const;

/** KVM_CREATE_PIT2 flags */
export const PIT_SPEAKER_DUMMY = 1;

/** VcpuThread.takeExit() returns VCPU_NO_EXIT_BASE - state when no exit is pending. */
export const VCPU_NO_EXIT_BASE = -0x10000;

/** VcpuThread.state values (native/vcpu_thread.h). */
export const VcpuThreadState = {
  IDLE: 0,
  RUNNING: 1,
  EXITED: 2,
  PAUSED: 3,
  STOPPED: 4,
} as const;
