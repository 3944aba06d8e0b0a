import { native, type NativeKvmSystem } from '../native/binding.js';
import { Cap, KVM_API_VERSION, type CapName } from './constants.js';
import { withAccessAdvice } from './errors.js';
import { STRUCT_SIZES, decodeCpuid2, type CpuidEntry } from './structs.js';
import { Vm } from './vm.js';

let structSizesChecked = false;

function checkStructSizes(): void {
  if (structSizesChecked) return;
  structSizesChecked = true;
  const actual = native().structSizes;
  for (const [name, size] of Object.entries(STRUCT_SIZES)) {
    if (actual[name] !== size) {
      throw new Error(
        `node-kvm was built against a kvm.h where sizeof(${name}) = ${actual[name]}, expected ${size}`,
      );
    }
  }
}

/** /dev/kvm: capabilities, supported CPUID/MSRs, and VM creation. */
export class Kvm {
  private cpuidCache: CpuidEntry[] | undefined;

  private constructor(
    private readonly sys: NativeKvmSystem,
    readonly path: string,
  ) {}

  /**
   * Opens /dev/kvm (or path) read-write and checks the API version. Permission and availability problems
   * throw an Error whose message says what to do, with the original code/errno/syscall.
   */
  static open(path = '/dev/kvm'): Kvm {
    checkStructSizes();
    let sys: NativeKvmSystem;
    try {
      sys = new (native().KvmSystem)(path);
    } catch (e) {
      throw withAccessAdvice(e, path);
    }
    const version = sys.apiVersion();
    if (version !== KVM_API_VERSION) {
      sys.close();
      throw Object.assign(new Error(`${path} speaks KVM API ${version}; node-kvm needs ${KVM_API_VERSION}`), {
        code: 'ERR_KVM_API_VERSION',
      });
    }
    return new Kvm(sys, path);
  }

  get closed(): boolean {
    return this.sys.closed;
  }

  /** KVM_GET_API_VERSION */
  apiVersion(): number {
    return this.sys.apiVersion();
  }

  /** KVM_CHECK_EXTENSION: 0 if absent, else a capability-specific positive value. */
  checkExtension(cap: CapName | number): number {
    return this.sys.checkExtension(typeof cap === 'number' ? cap : Cap[cap]);
  }

  /** KVM_GET_VCPU_MMAP_SIZE */
  vcpuMmapSize(): number {
    return this.sys.vcpuMmapSize();
  }

  /** KVM_GET_SUPPORTED_CPUID (cached: the ioctl costs ~0.3 ms and the answer never changes). */
  supportedCpuid(): CpuidEntry[] {
    this.cpuidCache ??= decodeCpuid2(this.sys.supportedCpuid());
    return this.cpuidCache.map((e) => ({ ...e }));
  }

  /** KVM_GET_MSR_INDEX_LIST */
  msrIndexList(): number[] {
    return Array.from(this.sys.msrIndexList());
  }

  /** KVM_CREATE_VM */
  createVm(type = 0): Vm {
    return new Vm(this.sys.createVm(type));
  }

  close(): void {
    this.sys.close();
  }
}
