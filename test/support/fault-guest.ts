/** The CPL3 virtio guest the fault and resource tests share (test/payloads/fault-virtio-guest.S). */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MicroVmConfig } from '../../lib/vmm/config.js';

const MiB = 1024 * 1024;
const root = fileURLToPath(new URL('../..', import.meta.url));

/** The assembled guest (npm run build:payloads). */
export const FAULT_GUEST = join(root, 'build', 'payloads', 'fault-virtio-guest.bin');

/** The guest in `mode` (RDI), with its count (RSI) and its block and net transport bases (RDX, RCX). */
export function faultGuest(
  mode: number,
  count: number,
  blk: number,
  net: number,
  extra: Partial<MicroVmConfig> = {},
): MicroVmConfig {
  return {
    memory: { size: 16 * MiB },
    boot: {
      kind: 'payload',
      payload: FAULT_GUEST,
      mode: 'long-cpl3',
      regs: { rdi: mode, rsi: count, rdx: blk, rcx: net },
    },
    serial: false,
    ...extra,
  };
}
