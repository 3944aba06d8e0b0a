/**
 * buildMicroVm(): turns a validated MicroVmConfig into a running-ready VM on the current (VM) thread: KVM VM,
 * guest RAM, vCPUs with CPUID/MSRs, buses, and one attach function per device. Firecracker's builder shape.
 */
import { readFileSync } from 'node:fs';
import { buildCpuid } from '../arch/x86_64/cpuid.js';
import {
  DEBUG_CONSOLE_PORT,
  ACPI_SLEEP_CONTROL_PORT,
  BIOS_SHADOW_END,
  DEBUG_EXIT_PORT,
  FIRMWARE_DEBUG_PORT,
  FW_CFG_SELECTOR_PORT,
  I8042_COMMAND_PORT,
  I8042_DATA_PORT,
  RESET_CONTROL_PORT,
  I8042_KBD_GSI,
  SERIAL_COM1_GSI,
  SERIAL_COM1_PORT,
  FIRMWARE_TOP,
  HIMEM_START,
  KVM_IDENTITY_MAP_ADDR,
  KVM_TSS_ADDR,
  REAL_MODE_PAYLOAD,
  ramRegions,
  virtioGsi,
  virtioMmioBase,
  VIRTIO_MMIO_SIZE,
} from '../arch/x86_64/layout.js';
import { setupLongMode, setupProtectedMode, setupRealMode } from '../arch/x86_64/modes.js';
import { bootMsrs } from '../arch/x86_64/msrs.js';
import { withLegacyLints } from '../arch/x86_64/lapic.js';
import { buildLinuxBoot } from '../boot/linux.js';
import { MmioBus, PioBus } from '../bus/bus.js';
import { AcpiPm, ACPI_PM_PORT_COUNT } from '../devices/acpi-pm.js';
import { DebugConsole } from '../devices/debug-console.js';
import { FwCfg, FW_CFG_PORT_COUNT } from '../devices/fw-cfg.js';
import { I8042 } from '../devices/i8042.js';
import { ResetControl } from '../devices/reset-control.js';
import { Serial8250, SERIAL8250_PORT_COUNT } from '../devices/serial8250.js';
import { buildRelocatableAcpi } from '../boot/acpi/index.js';
import { buildE820 } from '../boot/e820.js';
import { DebugExitPort } from '../devices/debug-exit.js';
import { PIT_SPEAKER_DUMMY } from '../kvm/constants.js';
import { Kvm } from '../kvm/kvm.js';
import type { Vcpu } from '../kvm/vcpu.js';
import type { Vm } from '../kvm/vm.js';
import { allocateGuestMemory, type AllocatedGuestMemory } from '../memory/allocate.js';
import { native } from '../native/binding.js';
import type { VirtioDevice } from '../virtio/device.js';
import { VirtioBalloon } from '../virtio/devices/balloon.js';
import { FileBlockBackend, VirtioBlock } from '../virtio/devices/block.js';
import { VirtioConsole } from '../virtio/devices/console.js';
import { VirtioEntropy } from '../virtio/devices/entropy.js';
import { TapNetBackend, VirtioNet, type NetBackend } from '../virtio/devices/net.js';
import { VirtioVsock } from '../virtio/devices/vsock.js';
import { VirtioMmioTransport } from '../virtio/mmio-transport.js';
import type { MicroVmConfig, NetConfig } from './config.js';
import { validateConfig } from './config.js';
import { applyCpuSetup } from './cpu-setup.js';
import { IrqfdLine, KvmIrqLine } from './irq-lines.js';
import { ChannelNetBackend } from './net-channel.js';
import { VmControl } from './stop.js';
import { VmLoop } from './vm-loop.js';

/** Offset of QueueNotify in the virtio-mmio register file (virtio 1.2 §4.2.2). */
const VIRTIO_MMIO_QUEUE_NOTIFY = 0x50;

export interface BuildHooks {
  /** Console output (debug console, serial, virtio console), in guest order. */
  onConsole(bytes: Uint8Array): void;
  /** Guest balloon statistics. */
  onBalloonStats?(stats: Record<string, number>): void;
  /** Progress of long build steps. */
  onProgress?(message: string): void;
  /** Firmware debug log bytes (port 0x402), when config.firmwareDebug is set. */
  onFirmwareLog?(bytes: Uint8Array): void;
}

export interface AttachedVirtio {
  name: string;
  slot: number;
  transport: VirtioMmioTransport;
  device: VirtioDevice;
}

/** A built VM, owned by the thread that built it. */
export class BuiltVm {
  readonly pio = new PioBus();
  readonly mmio = new MmioBus();
  readonly control = new VmControl();
  readonly loop: VmLoop;
  readonly virtio: AttachedVirtio[] = [];
  readonly vcpus: Vcpu[] = [];
  private readonly cleanups: (() => void)[] = [];
  private readonly afterVmClose: (() => void)[] = [];
  private closed = false;

  constructor(
    readonly kvm: Kvm,
    readonly vm: Vm,
    readonly memory: AllocatedGuestMemory,
    readonly config: ReturnType<typeof validateConfig>,
    readonly hooks: BuildHooks,
  ) {
    this.loop = new VmLoop({
      pio: this.pio,
      mmio: this.mmio,
      control: this.control,
      policy: { stopOnHlt: !config.irqchip, tripleFaultIsReset: config.boot.kind !== 'payload' },
    });
  }

  /** Registers something to release on close (in reverse order), while the VM still exists. */
  onClose(fn: () => void): void {
    this.cleanups.push(fn);
  }

  /** Registers something to release once the VM is gone (e.g. host memory a memory slot used). */
  onVmClosed(fn: () => void): void {
    this.afterVmClose.push(fn);
  }

  attachDebugConsole(): void {
    this.pio.register(
      DEBUG_CONSOLE_PORT,
      1,
      new DebugConsole((b) => this.hooks.onConsole(b)),
      'debug-console',
    );
  }

  private readonly consoleInputs: ((data: Uint8Array) => void)[] = [];

  /** Host keyboard input: to every console the guest can read (8250, virtio console). */
  consoleInput(data: Uint8Array): void {
    for (const input of this.consoleInputs) input(data);
  }

  /** 8250 UART on COM1, IRQ 4 as a level line through KVM_IRQ_LINE (with the in-kernel irqchip). */
  attachSerial(): Serial8250 {
    const irq = this.config.irqchip ? new KvmIrqLine(this.vm, SERIAL_COM1_GSI) : undefined;
    const serial = new Serial8250({ irq, onOutput: (b) => this.hooks.onConsole(b) });
    this.pio.register(SERIAL_COM1_PORT, SERIAL8250_PORT_COUNT, serial, 'serial-com1');
    this.consoleInputs.push((data) => serial.input(data));
    return serial;
  }

  /** i8042: enough for Linux's probe, and its reset line stops the VM with reason 'reset'. */
  attachI8042(): I8042 {
    const kbdIrq = this.config.irqchip ? new KvmIrqLine(this.vm, I8042_KBD_GSI) : undefined;
    const device = new I8042({
      kbdIrq,
      onReset: () => this.control.requestStop({ reason: 'reset', source: 'i8042' }),
    });
    // Two one-byte registrations: port 0x61 between them is the PIT's speaker port, handled by KVM.
    this.pio.register(I8042_DATA_PORT, 1, device.dataPort, 'i8042-data');
    this.pio.register(I8042_COMMAND_PORT, 1, device.commandPort, 'i8042-command');
    return device;
  }

  /** HW-reduced ACPI sleep/reset registers: S5 → 'poweroff', the reset register → 'reset'. */
  attachAcpiPm(): AcpiPm {
    const device = new AcpiPm({
      onPowerOff: () => this.control.requestStop({ reason: 'poweroff' }),
      onReset: () => this.control.requestStop({ reason: 'reset', source: 'acpi' }),
    });
    this.pio.register(ACPI_SLEEP_CONTROL_PORT, ACPI_PM_PORT_COUNT, device, 'acpi-pm');
    const resetControl = new ResetControl(() => this.control.requestStop({ reason: 'reset', source: 'cf9' }));
    this.pio.register(RESET_CONTROL_PORT, 1, resetControl, 'reset-control');
    return device;
  }

  /** QEMU's fw_cfg for firmware: RAM size, CPUs, e820, and ACPI tables through the table-loader. */
  attachFwCfg(): FwCfg {
    const fw = new FwCfg({ memory: this.memory });
    fw.setRamSize(this.config.memory.size);
    fw.setCpus(this.config.vcpus);
    fw.setNoGraphic(true);
    fw.setBootMenu(false);
    fw.setE820(buildE820(this.config.memory.size, { acpiTables: false }));
    fw.addAcpiTables(buildRelocatableAcpi(this.acpiConfig()));
    fw.setIntFile('etc/boot-fail-wait', 0);
    this.pio.register(FW_CFG_SELECTOR_PORT, FW_CFG_PORT_COUNT, fw, 'fw-cfg');
    return fw;
  }

  /** The ACPI description of this VM: its vCPUs, virtio transports and COM1. */
  acpiConfig() {
    return {
      vcpus: this.config.vcpus,
      virtio: this.virtio.map((v) => ({
        base: virtioMmioBase(v.slot),
        size: VIRTIO_MMIO_SIZE,
        gsi: virtioGsi(v.slot),
      })),
      serial: this.config.serial,
    };
  }

  /** The firmware's debug log port (SeaBIOS writes its diagnostics there). */
  attachFirmwareDebug(): void {
    const log = new DebugConsole((b) => this.hooks.onFirmwareLog?.(b));
    this.pio.register(FIRMWARE_DEBUG_PORT, 1, log, 'firmware-debug');
  }

  attachDebugExit(): void {
    const device = new DebugExitPort((code) => this.control.requestStop({ reason: 'debug-exit', code }));
    this.pio.register(DEBUG_EXIT_PORT, 1, device, 'debug-exit');
  }

  /** Puts a virtio device behind the next virtio-mmio transport, with irqfd and (optionally) ioeventfd. */
  attachVirtio(device: VirtioDevice): AttachedVirtio {
    const slot = this.virtio.length;
    const base = virtioMmioBase(slot);
    const irq = new IrqfdLine(this.vm, virtioGsi(slot));
    this.onClose(() => irq.close());
    const transport = new VirtioMmioTransport(device, this.memory, irq);
    this.mmio.register(base, VIRTIO_MMIO_SIZE, transport, device.name);
    if (this.config.ioeventfd) {
      // One eventfd per queue, matched on the queue index the driver writes to QueueNotify.
      for (let q = 0; q < device.queueMaxSizes.length; q++) {
        const efd = new (native().EventFd)(0, true, false);
        const addr = base + VIRTIO_MMIO_QUEUE_NOTIFY;
        this.vm.registerIoeventfd({ eventfd: efd.fd, addr, length: 4, datamatch: q });
        this.loop.watch(efd.fd, 1, () => {
          efd.read();
          transport.notifyQueue(q);
        });
        this.onClose(() => {
          this.loop.unwatch(efd.fd);
          if (!this.vm.closed)
            this.vm.unregisterIoeventfd({ eventfd: efd.fd, addr, length: 4, datamatch: q });
          efd.close();
        });
      }
    }
    const attached = { name: device.name, slot, transport, device };
    this.virtio.push(attached);
    return attached;
  }

  attachBlock(d: { path: string; readOnly?: boolean; serial?: string }): VirtioBlock {
    const backend = FileBlockBackend.open(d.path, { readOnly: d.readOnly, io: native().hostIo });
    const device = new VirtioBlock({ backend, serial: d.serial });
    // Whatever the stop reason, completed writes reach the disk before the image is released.
    this.onClose(() => {
      if (!d.readOnly) backend.flush();
      backend.close();
    });
    this.attachVirtio(device);
    return device;
  }

  attachNet(n: NetConfig): VirtioNet {
    let backend: NetBackend;
    if ('tap' in n) backend = TapNetBackend.open(n.tap, { io: native().hostIo, watcher: this.loop });
    else backend = new ChannelNetBackend(n.channel, native().hostIo, this.loop);
    const device = new VirtioNet({ backend, mac: n.mac });
    this.onClose(() => backend.close());
    this.attachVirtio(device);
    return device;
  }

  attachVsock(cid: number, udsPath: string): VirtioVsock {
    const device = new VirtioVsock({ guestCid: cid, udsPath, io: native().hostIo, watcher: this.loop });
    this.onClose(() => device.close());
    this.attachVirtio(device);
    return device;
  }

  attachConsole(): VirtioConsole {
    const device = new VirtioConsole({ output: (b) => this.hooks.onConsole(b) });
    this.consoleInputs.push((data) => device.input(data));
    this.attachVirtio(device);
    return device;
  }

  attachRng(): VirtioEntropy {
    const device = new VirtioEntropy();
    this.attachVirtio(device);
    return device;
  }

  attachBalloon(): VirtioBalloon {
    const device = new VirtioBalloon({ onStats: (s) => this.hooks.onBalloonStats?.(s) });
    this.attachVirtio(device);
    return device;
  }

  device<T extends VirtioDevice>(ctor: new (...args: never[]) => T): T | undefined {
    return this.virtio.find((v) => v.device instanceof ctor)?.device as T | undefined;
  }

  /** Stops the vCPU threads, then releases devices (backends flush and close), the VM and its memory. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.loop.close();
    for (const fn of this.cleanups.reverse()) {
      try {
        fn();
      } catch {
        // Keep releasing the rest: a failing backend close must not leak the VM.
      }
    }
    this.vm.close();
    for (const fn of this.afterVmClose) fn();
    this.memory.close();
    this.kvm.close();
  }
}

function loadBytes(payload: Uint8Array | string): Uint8Array {
  return typeof payload === 'string' ? new Uint8Array(readFileSync(payload)) : payload;
}

function bootLinux(b: BuiltVm, boot: Extract<MicroVmConfig['boot'], { kind: 'linux' }>): void {
  const kernel = new Uint8Array(readFileSync(boot.kernel));
  const initrd = boot.initrd !== undefined ? new Uint8Array(readFileSync(boot.initrd)) : undefined;
  if (boot.entry === 'elf64' || boot.entry === 'pvh')
    b.hooks.onProgress?.('decompressing the kernel on the host');
  const vcpu = b.vcpus[0];
  const plan = buildLinuxBoot(
    kernel,
    {
      memSize: b.config.memory.size,
      cmdline: boot.cmdline,
      initrd,
      entry: boot.entry,
      acpi: {
        vcpus: b.config.vcpus,
        virtio: b.virtio.map((v) => ({
          base: virtioMmioBase(v.slot),
          size: VIRTIO_MMIO_SIZE,
          gsi: virtioGsi(v.slot),
        })),
        serial: b.config.serial,
      },
    },
    vcpu.getSregs(),
  );
  for (const w of plan.writes) b.memory.write(w.gpa, w.data);
  applyCpuSetup(vcpu, b.memory, plan.cpu);
  b.hooks.onProgress?.(
    `kernel ${plan.info.format} entered at 0x${plan.info.entry.toString(16)} (${plan.info.entryKind})` +
      (plan.info.compression ? `, payload ${plan.info.compression}` : ''),
  );
}

/** KVM slot numbers for firmware: after the RAM slots (at most two: below the MMIO gap and above 4 GiB). */
const FIRMWARE_SLOT = 8;
const LEGACY_BIOS_WINDOW = 0x2_0000;

/**
 * Firmware (e.g. SeaBIOS): the image is mapped read-only so that it ends at 4 GiB, where the vCPU's reset vector
 * (0xFFFFFFF0) points, and its last 128 KiB is copied into RAM at 0xE0000-0xFFFFF, the legacy BIOS window that
 * real-mode code runs from after the first far jump.
 */
function bootFirmware(b: BuiltVm, boot: Extract<MicroVmConfig['boot'], { kind: 'firmware' }>): void {
  const image = new Uint8Array(readFileSync(boot.firmware));
  if (image.length < LEGACY_BIOS_WINDOW || image.length % 4096 !== 0 || image.length > 16 * 1024 * 1024) {
    throw new RangeError(
      `firmware ${boot.firmware} is ${image.length} bytes: expected a multiple of 4 KiB between 128 KiB and 16 MiB`,
    );
  }
  const rom = new (native().GuestMapping)(image.length, false, false, false, false, 'node-kvm-firmware');
  new Uint8Array(rom.buffer).set(image);
  b.vm.setUserMemoryRegion({
    slot: FIRMWARE_SLOT,
    guestPhysAddr: FIRMWARE_TOP - image.length,
    size: image.length,
    mapping: rom,
    readonly: true,
  });
  b.onVmClosed(() => rom.close());
  b.memory.write(BIOS_SHADOW_END - LEGACY_BIOS_WINDOW, image.subarray(image.length - LEGACY_BIOS_WINDOW));
}

function bootPayload(b: BuiltVm, boot: Extract<MicroVmConfig['boot'], { kind: 'payload' }>): void {
  const bytes = loadBytes(boot.payload);
  const load = boot.loadAddress ?? (boot.mode === 'real' ? REAL_MODE_PAYLOAD : HIMEM_START);
  const entry = boot.entry ?? load;
  b.memory.write(load, bytes);
  const vcpu = b.vcpus[0];
  const sregs = vcpu.getSregs();
  const setup =
    boot.mode === 'real'
      ? setupRealMode(sregs, { entry })
      : boot.mode === 'protected'
        ? setupProtectedMode(sregs, { entry })
        : setupLongMode(sregs, { entry, cpl3: boot.mode === 'long-cpl3' });
  applyCpuSetup(vcpu, b.memory, setup);
  if (boot.regs) vcpu.setRegs(boot.regs);
}

/** Builds the VM described by config on the calling thread. Throws (releasing everything) on any failure. */
export function buildMicroVm(input: MicroVmConfig, hooks: BuildHooks): BuiltVm {
  const config = validateConfig(input);
  const kvm = Kvm.open();
  let vm: Vm | undefined;
  let memory: AllocatedGuestMemory | undefined;
  let built: BuiltVm | undefined;
  try {
    vm = kvm.createVm();
    if (config.irqchip) {
      // The irqchip goes before the memory slots: the other order makes VM creation and destruction slower.
      vm.createIrqchip();
      vm.setTssAddr(KVM_TSS_ADDR);
      vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
      // Firmware and kernels calibrate against the i8254 PIT; bare payloads skip it (it slows VM teardown).
      if (config.boot.kind !== 'payload') vm.createPit2(PIT_SPEAKER_DUMMY);
    }
    memory = allocateGuestMemory(ramRegions(config.memory.size), {
      hugepages: config.memory.hugepages,
      shared: config.memory.shared,
    });
    memory.attach(vm);
    built = new BuiltVm(kvm, vm, memory, config, hooks);
    const supported = kvm.supportedCpuid();
    for (let id = 0; id < config.vcpus; id++) {
      const vcpu = vm.createVcpu(id);
      vcpu.setCpuid2(buildCpuid(supported, { vcpuId: id, vcpuCount: config.vcpus }));
      vcpu.setMsrs(bootMsrs());
      if (config.irqchip) vcpu.setLapic(withLegacyLints(vcpu.getLapic()));
      built.vcpus.push(vcpu);
    }
    if (config.debugConsole) built.attachDebugConsole();
    built.attachDebugExit();
    if (config.serial) built.attachSerial();
    built.attachI8042();
    built.attachAcpiPm();
    if (config.virtioConsole) built.attachConsole();
    for (const d of config.disks) built.attachBlock(d);
    for (const n of config.net) built.attachNet(n);
    if (config.vsock) built.attachVsock(config.vsock.cid, config.vsock.udsPath);
    if (config.rng) built.attachRng();
    if (config.balloon) built.attachBalloon();
    switch (config.boot.kind) {
      case 'payload':
        bootPayload(built, config.boot);
        break;
      case 'linux':
        bootLinux(built, config.boot);
        break;
      case 'firmware':
        if (config.firmwareDebug) built.attachFirmwareDebug();
        built.attachFwCfg();
        bootFirmware(built, config.boot);
        break;
    }
    for (const vcpu of built.vcpus) built.loop.addVcpu(vcpu);
    return built;
  } catch (e) {
    if (built) built.close();
    else {
      vm?.close();
      memory?.close();
      kvm.close();
    }
    throw e;
  }
}
