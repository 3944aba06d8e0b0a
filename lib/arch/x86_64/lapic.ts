/** Local APIC register page (KVM_GET/SET_LAPIC) helpers. */

/** LVT LINT0 and LINT1 register offsets in the 1 KiB APIC page. */
export const APIC_LVT_LINT0 = 0x350;
export const APIC_LVT_LINT1 = 0x360;
const DELIVERY_MODE_MASK = 0x700;
const DELIVERY_EXTINT = 0x700;
const DELIVERY_NMI = 0x400;

/**
 * LINT0 as ExtINT (the legacy PIC's output) and LINT1 as NMI, as on a PC: firmware and kernels that still use
 * the 8259 get its interrupts. Returns a modified copy.
 */
export function withLegacyLints(page: Uint8Array): Uint8Array {
  const out = page.slice();
  const v = new DataView(out.buffer);
  const set = (offset: number, mode: number) => {
    v.setUint32(offset, ((v.getUint32(offset, true) & ~DELIVERY_MODE_MASK) | mode) >>> 0, true);
  };
  set(APIC_LVT_LINT0, DELIVERY_EXTINT);
  set(APIC_LVT_LINT1, DELIVERY_NMI);
  return out;
}
