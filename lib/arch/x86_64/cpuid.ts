/**
 * Per-vCPU CPUID from KVM_GET_SUPPORTED_CPUID: the APIC ID of each vCPU in the leaves that report it, the
 * hypervisor bit, the KVM signature leaf, and a flat topology (one package, one thread per core).
 */
import type { CpuidEntry } from '../../kvm/structs.js';

const HYPERVISOR_BIT = 1 << 31;
const KVM_SIGNATURE_LEAF = 0x4000_0000;
/** "KVMKVMKVM\0\0\0" as three little-endian words. */
const KVM_SIGNATURE = [0x4b4d564b, 0x564b4d56, 0x0000004d];

export interface CpuidOptions {
  vcpuId: number;
  vcpuCount: number;
}

export function buildCpuid(supported: readonly CpuidEntry[], o: CpuidOptions): CpuidEntry[] {
  if (!Number.isInteger(o.vcpuId) || o.vcpuId < 0 || o.vcpuId > 254)
    throw new RangeError('vcpuId must be 0..254');
  if (!Number.isInteger(o.vcpuCount) || o.vcpuCount < 1 || o.vcpuCount > 255) {
    throw new RangeError('vcpuCount must be 1..255');
  }
  const out = supported.map((e) => ({ ...e }));
  for (const e of out) {
    switch (e.function) {
      case 1:
        // EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package; ECX[31] running under a hypervisor.
        e.ebx = ((o.vcpuId << 24) | (Math.min(o.vcpuCount, 255) << 16) | (e.ebx & 0xffff)) >>> 0;
        e.ecx = (e.ecx | HYPERVISOR_BIT) >>> 0;
        if (o.vcpuCount > 1) e.edx = (e.edx | (1 << 28)) >>> 0; // HTT: the package has several logical CPUs
        break;
      case 4:
        // EAX[31:26] cores per package - 1; EAX[25:14] threads sharing the cache - 1 (caches are per core).
        e.eax = ((e.eax & 0x3fff) | ((o.vcpuCount - 1) << 26)) >>> 0;
        break;
      case 0xb:
      case 0x1f:
        // x2APIC topology: level 0 = SMT (1 thread), level 1 = core (vcpuCount); EDX = x2APIC ID.
        e.edx = o.vcpuId >>> 0;
        if (e.index === 0) {
          e.eax = 0;
          e.ebx = 1;
          e.ecx = (1 << 8) | e.index;
        } else if (e.index === 1) {
          e.eax = Math.ceil(Math.log2(Math.max(o.vcpuCount, 1)));
          e.ebx = o.vcpuCount;
          e.ecx = (2 << 8) | e.index;
        } else {
          e.eax = 0;
          e.ebx = 0;
          e.ecx = e.index;
        }
        break;
    }
  }
  if (!out.some((e) => e.function === KVM_SIGNATURE_LEAF)) {
    out.push({
      function: KVM_SIGNATURE_LEAF,
      index: 0,
      flags: 0,
      eax: KVM_SIGNATURE_LEAF + 1,
      ebx: KVM_SIGNATURE[0],
      ecx: KVM_SIGNATURE[1],
      edx: KVM_SIGNATURE[2],
    });
  }
  return out;
}
