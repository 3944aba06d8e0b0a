import type { NativeGuestMapping, NativeVmFd } from '../native/binding.js';
import { Cap, IoeventfdFlag, IrqfdFlag, MemFlag, type CapName } from './constants.js';
import { CLOCK_DATA_SIZE, decodeClockData, encodeClockData, type ClockData } from './structs.js';
import { Vcpu } from './vcpu.js';

export interface MemoryRegionOptions {
  slot: number;
  guestPhysAddr: number;
  size: number;
  mapping: NativeGuestMapping;
  /** Byte offset of the region inside the mapping. */
  mappingOffset?: number;
  /** Guest writes become MMIO exits (KVM_MEM_READONLY). */
  readonly?: boolean;
  /** Track dirty pages for getDirtyLog() (KVM_MEM_LOG_DIRTY_PAGES). */
  logDirtyPages?: boolean;
}

export interface IoeventfdOptions {
  /** The eventfd KVM signals. */
  eventfd: number;
  /** Guest-physical address (MMIO) or port (pio: true). */
  addr: number;
  /** Access width to match: 1, 2, 4 or 8 (0 = any, with KVM_CAP_IOEVENTFD_ANY_LENGTH). */
  length: number;
  /** Only writes of this value signal the eventfd. */
  datamatch?: number | bigint;
  pio?: boolean;
}

export interface IrqfdOptions {
  eventfd: number;
  gsi: number;
  /** Level-triggered: KVM signals this eventfd when the guest EOIs, so the line can be re-asserted. */
  resamplefd?: number;
}

/** A VM: memory slots, interrupt controller, eventfds, clock and vCPUs; one method per ioctl. */
export class Vm {
  private readonly vcpuList: Vcpu[] = [];

  constructor(private readonly fd: NativeVmFd) {}

  get closed(): boolean {
    return this.fd.closed;
  }

  /** The VM fd number, for diagnostics. */
  get fdNumber(): number {
    return this.fd.fd;
  }

  get vcpus(): readonly Vcpu[] {
    return this.vcpuList;
  }

  /** KVM_CHECK_EXTENSION on this VM. */
  checkExtension(cap: CapName | number): number {
    return this.fd.checkExtension(typeof cap === 'number' ? cap : Cap[cap]);
  }

  /** KVM_SET_USER_MEMORY_REGION: map part of a host mapping into guest-physical space. */
  setUserMemoryRegion(o: MemoryRegionOptions): void {
    const flags = (o.readonly ? MemFlag.READONLY : 0) | (o.logDirtyPages ? MemFlag.LOG_DIRTY_PAGES : 0);
    if (o.size <= 0)
      throw new RangeError('memory region size must be positive; use deleteUserMemoryRegion()');
    if (o.guestPhysAddr % 4096 !== 0 || o.size % 4096 !== 0 || (o.mappingOffset ?? 0) % 4096 !== 0) {
      throw new RangeError('guestPhysAddr, size and mappingOffset must be 4 KiB aligned');
    }
    this.fd.setUserMemoryRegion(o.slot, flags, o.guestPhysAddr, o.size, o.mapping, o.mappingOffset ?? 0);
  }

  /** KVM_SET_USER_MEMORY_REGION with size 0: remove a slot (its mapping may then be closed). */
  deleteUserMemoryRegion(slot: number): void {
    this.fd.setUserMemoryRegion(slot, 0, 0, 0, null, 0);
  }

  /** KVM_SET_TSS_ADDR */
  setTssAddr(addr: number): void {
    this.fd.setTssAddr(addr);
  }

  /** KVM_SET_IDENTITY_MAP_ADDR */
  setIdentityMapAddr(addr: number): void {
    this.fd.setIdentityMapAddr(addr);
  }

  /** KVM_CREATE_IRQCHIP: in-kernel PIC + IOAPIC + LAPICs. Create it before memory slots (it is faster). */
  createIrqchip(): void {
    this.fd.createIrqchip();
  }

  /** KVM_CREATE_PIT2 */
  createPit2(flags = 0): void {
    this.fd.createPit2(flags);
  }

  /** KVM_IRQ_LINE: set the level of an in-kernel irqchip input. */
  irqLine(irq: number, level: boolean | number): void {
    this.fd.irqLine(irq, level ? 1 : 0);
  }

  /** KVM_IOEVENTFD: a guest write to addr signals the eventfd inside KVM, with no exit to userspace. */
  registerIoeventfd(o: IoeventfdOptions): void {
    this.ioeventfd(o, 0);
  }

  /** KVM_IOEVENTFD with KVM_IOEVENTFD_FLAG_DEASSIGN */
  unregisterIoeventfd(o: IoeventfdOptions): void {
    this.ioeventfd(o, IoeventfdFlag.DEASSIGN);
  }

  private ioeventfd(o: IoeventfdOptions, extra: number): void {
    const flags =
      extra | (o.pio ? IoeventfdFlag.PIO : 0) | (o.datamatch !== undefined ? IoeventfdFlag.DATAMATCH : 0);
    this.fd.ioeventfd(o.eventfd, o.addr, o.length, flags, o.datamatch ?? 0);
  }

  /** KVM_IRQFD: writing the eventfd injects an interrupt on gsi. */
  registerIrqfd(o: IrqfdOptions): void {
    const flags = o.resamplefd !== undefined ? IrqfdFlag.RESAMPLE : 0;
    this.fd.irqfd(o.eventfd, o.gsi, flags, o.resamplefd ?? 0);
  }

  /** KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN */
  unregisterIrqfd(o: IrqfdOptions): void {
    this.fd.irqfd(o.eventfd, o.gsi, IrqfdFlag.DEASSIGN, 0);
  }

  /** KVM_GET_DIRTY_LOG: one bit per 4 KiB page of the slot (bit i of byte j = page 8j+i), reset on read. */
  getDirtyLog(slot: number, slotSize: number): Uint8Array {
    const pages = Math.ceil(slotSize / 4096);
    const bitmap = new Uint8Array(Math.ceil(pages / 64) * 8);
    this.fd.getDirtyLog(slot, bitmap);
    return bitmap;
  }

  /** KVM_GET_CLOCK */
  getClock(): ClockData {
    const buf = new Uint8Array(CLOCK_DATA_SIZE);
    this.fd.getClock(buf);
    return decodeClockData(buf);
  }

  /** KVM_SET_CLOCK */
  setClock(clock: ClockData): void {
    this.fd.setClock(encodeClockData(clock));
  }

  /** KVM_CREATE_VCPU */
  createVcpu(id: number): Vcpu {
    const vcpu = new Vcpu(this.fd.createVcpu(id));
    this.vcpuList.push(vcpu);
    return vcpu;
  }

  /** Closes every vCPU, then the VM. Memory mappings used by its slots are released. */
  close(): void {
    for (const v of this.vcpuList) v.close();
    this.vcpuList.length = 0;
    this.fd.close();
  }
}
